//! Device interrupts for the hardware domain: a device's MSI arrives on a
//! host vector the hypervisor chose and programmed, and is delivered as
//! an event on the port dom0 bound its pirq to (Xen's pirqs:
//! PHYSDEVOP_map_pirq, EVTCHNOP_bind_pirq). dom0 never picks a host
//! vector or writes an MSI address.
//!
//! `vectors` and `pirq` are logic with host tests; `deliver` takes the
//! interrupts and `msi` programs the devices.

pub mod pirq;
pub mod vectors;

#[cfg(target_os = "none")]
pub mod deliver;
#[cfg(target_os = "none")]
pub mod msi;
#[cfg(target_os = "none")]
pub mod msix;
