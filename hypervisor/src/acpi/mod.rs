//! ACPI: what the firmware tables say about CPUs, interrupt controllers and
//! power control. Tables are read with the `acpi` crate on bare metal; the
//! two pieces of parsing it does not cover (the `\_S5` package and the early
//! walk that keeps tables out of the free pool) are plain functions with
//! host tests.

/// Where the ACPI root is (from the RSDP copy GRUB put in the MBI, or
/// found in the BIOS areas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiRoot {
    /// 0 for ACPI 1.0 (RSDT), 2 or more for XSDT.
    pub revision: u8,
    /// Physical address of the XSDT (revision >= 2) or RSDT.
    pub table_address: u64,
    pub checksum_ok: bool,
}

pub mod aml;
pub mod walk;

#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
pub use platform::*;
