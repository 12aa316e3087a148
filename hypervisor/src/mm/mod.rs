//! Memory: physical ranges and frames (host-testable), and the hypervisor's
//! own address space (bare metal only).

pub mod addr;
pub mod frame;
pub mod layout;
pub mod ranges;

#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod phys;
#[cfg(target_os = "none")]
pub mod setup;
