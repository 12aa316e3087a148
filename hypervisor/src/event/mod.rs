//! Event channels: each domain's port table and Xen's 2-level rules
//! (`table`, host-tested), delivery into shared_info and vcpu_info
//! (`deliver`) and the operations between real domains (`ops`).

pub mod table;

#[cfg(target_os = "none")]
pub mod deliver;
#[cfg(target_os = "none")]
pub mod ops;
