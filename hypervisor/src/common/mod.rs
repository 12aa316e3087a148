//! Architecture-independent hypervisor code: domains, vCPUs, guest memory,
//! the scheduler, exits and hypercalls. Hardware specifics (SVM, VMX, page
//! formats, the APIC) live under `arch/`.

pub mod config;
pub mod console;
pub mod cpuid;
pub mod exit;
pub mod guest_mem;
pub mod hypercall;
pub mod msr;
pub mod pvh;
pub mod vcpu;

#[cfg(target_os = "none")]
pub mod domain;
#[cfg(target_os = "none")]
pub mod run;
