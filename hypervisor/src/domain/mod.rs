//! Domains: what a domain is (`state`) and its vCPUs (`vcpu`), the
//! registry of live domains, their lifecycle (create, shut down, destroy),
//! their view of time, and the domain builder (`build/`).

pub mod build;
pub mod unit;

#[cfg(target_os = "none")]
pub mod lifecycle;
#[cfg(target_os = "none")]
pub mod registry;
#[cfg(target_os = "none")]
mod state;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod vcpu;

#[cfg(target_os = "none")]
pub use state::*;
#[cfg(target_os = "none")]
pub use vcpu::{RunState, RunstateAcct, Vcpu, VcpuShared, VcpuTimers, vflags};
