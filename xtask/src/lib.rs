//! Build, boot and test tooling for the hypervisor, shared by the `xtask`
//! command and the integration-test harness in `tests/`.

pub mod bench;
pub mod devices;
pub mod emulator;
pub mod fuzz;
pub mod host;
pub mod images;
pub mod layers;
pub mod linux;
pub mod paths;
pub mod sched_report;
pub mod toolchain;
