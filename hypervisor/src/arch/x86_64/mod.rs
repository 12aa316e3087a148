//! x86-64: page-table format (host-testable) and the CPU, descriptor-table,
//! trap and power code that only runs on bare metal.

pub mod page_table;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod traps;
