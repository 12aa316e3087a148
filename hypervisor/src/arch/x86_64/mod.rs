//! x86-64: page-table format (host-testable) and the CPU, descriptor-table,
//! trap and power code that only runs on bare metal.

pub mod insn;
pub mod page_table;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod fpu;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod hvm;
#[cfg(target_os = "none")]
pub mod lapic;
#[cfg(target_os = "none")]
pub mod npt;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod svm;
#[cfg(target_os = "none")]
pub mod traps;
pub mod vmx;

/// The CPU's maker, which decides the virtualization extension and some
/// MSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Hygon,
    Other,
}
