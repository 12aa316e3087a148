//! Guest memory: the only door into a domain's memory (`guest_mem`), the
//! guest-physical map as the hypervisor changes it (`physmap`), memory
//! reservation (`reservation`) and references that keep frames alive while
//! something besides their owner uses them (`frame_ref`), and the hardware
//! domain's 1:1 RAM layout (`identity`).

pub mod guest_mem;
pub mod identity;

#[cfg(target_os = "none")]
pub mod frame_ref;
#[cfg(target_os = "none")]
pub mod physmap;
#[cfg(target_os = "none")]
pub mod reservation;
