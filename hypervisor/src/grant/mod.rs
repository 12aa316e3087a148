//! Grant tables (version 1): a domain's grant frames, pins and maptrack
//! (`table`, host-tested), mapping granted pages (`map`) and copying
//! through grants (`copy`).

pub mod table;

#[cfg(target_os = "none")]
pub mod copy;
#[cfg(target_os = "none")]
pub mod map;
