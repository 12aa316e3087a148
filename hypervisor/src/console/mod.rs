//! The hypervisor's console: the serial line, the logger, panics, and the
//! line buffer for what guests print.

pub mod line;

#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod panic;
#[cfg(target_os = "none")]
pub mod serial;
