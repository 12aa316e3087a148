//! Event channels: each domain's port table with the 2-level rules
//! (`table`, host-tested) and the FIFO ABI's queues (`fifo`, host-tested),
//! delivery into shared_info, vcpu_info and the FIFO pages (`deliver`) and
//! the operations between real domains (`ops`).

pub mod fifo;
pub mod table;

#[cfg(target_os = "none")]
pub mod deliver;
#[cfg(target_os = "none")]
pub mod ops;
