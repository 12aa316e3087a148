//! Guest memory: the only door into a domain's memory (`guest_mem`), the
//! guest-physical map as the hypervisor changes it (`physmap`), memory
//! reservation (`reservation`) and references that keep frames alive while
//! something besides their owner uses them (`frame_ref`).

pub mod guest_mem;

#[cfg(target_os = "none")]
pub mod frame_ref;
#[cfg(target_os = "none")]
pub mod physmap;
#[cfg(target_os = "none")]
pub mod reservation;
