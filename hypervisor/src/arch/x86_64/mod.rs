//! x86-64: the CPU, page-table format, descriptor tables, traps, local
//! APIC, other CPUs and power; `hvm/` runs guests on AMD-V or VT-x.

pub mod insn;
pub mod page_table;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod fpu;
#[cfg(target_os = "none")]
pub mod gdt;
pub mod hvm;
#[cfg(target_os = "none")]
pub mod lapic;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod traps;

/// The CPU's maker, which decides the virtualization extension and some
/// MSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Hygon,
    Other,
}
