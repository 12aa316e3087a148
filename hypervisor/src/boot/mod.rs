//! The boot: what the loader handed over (host-testable parsing) and the
//! sequence that brings the hypervisor up (bare metal).

pub mod info;
pub mod modules;

#[cfg(target_os = "none")]
pub mod domains;
#[cfg(target_os = "none")]
pub mod start;
