//! dom0's kernel, the parts that need no hardware (host-tested): the PCI
//! bus walk, and more as dom0 grows drivers and backends.

#![cfg_attr(not(test), no_std)]

pub mod pci;
