//! The hypervisor's console: the serial line, the logger and panics; the
//! line buffer for what guests print; each domain's console ring and the
//! serial input that goes to the domain in focus.

pub mod line;
pub mod ratelimit;

#[cfg(target_os = "none")]
pub mod focus;
#[cfg(target_os = "none")]
pub mod input;
#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod panic;
#[cfg(target_os = "none")]
pub mod ring;
#[cfg(target_os = "none")]
pub mod serial;
