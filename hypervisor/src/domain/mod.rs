//! Domains: what a domain and its vCPUs are, the registry of live domains,
//! their lifecycle, and the domain builder (`build/`).

pub mod build;

#[cfg(target_os = "none")]
mod dom;
#[cfg(target_os = "none")]
pub use dom::*;
