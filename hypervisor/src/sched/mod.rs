//! The scheduler: Xen's credit policy (`credit`, host-tested) and the
//! mechanism that runs it on the real CPUs (`scheduler`).

pub mod credit;

#[cfg(target_os = "none")]
mod scheduler;
#[cfg(target_os = "none")]
pub use scheduler::*;
