//! Devices the hardware domain (dom0) owns: its I/O ports, its view of PCI
//! configuration space, the hypervisor's own access to it.
//!
//! `ioports` and `vpci` are logic with host tests; `pci` reaches the
//! hardware; `config` serves the domain's configuration accesses.

pub mod ioports;
pub mod vpci;

#[cfg(target_os = "none")]
pub mod access;
#[cfg(target_os = "none")]
pub mod config;
#[cfg(target_os = "none")]
pub mod pci;
