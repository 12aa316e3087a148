//! Architecture-independent hypervisor code: domains, vCPUs, guest memory,
//! the scheduler, exits and hypercalls. Hardware specifics (SVM, VMX, page
//! formats, the APIC) live under `arch/`.

pub mod acpi_build;
pub mod config;
pub mod console;
pub mod cpuid;
pub mod cpumask;
pub mod credit;
pub mod evtchn;
pub mod evtchn_op;
pub mod exit;
pub mod gnttab_op;
pub mod grant;
pub mod guest_mem;
pub mod hypercall;
pub mod msr;
pub mod pvclock;
pub mod pvh;
pub mod timer;
pub mod vcpu;
pub mod vcpu_init;
pub mod vlapic;

#[cfg(target_os = "none")]
pub mod domain;
#[cfg(target_os = "none")]
pub mod interdomain;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
pub mod sched;
