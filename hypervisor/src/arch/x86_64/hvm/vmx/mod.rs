//! Intel VT-x (VMX): the hardware backend on Intel CPUs.
//!
//! One VMCS per vCPU. Every control is fitted to the capability MSRs (the
//! "true" ones when the CPU offers them). Guests use EPT, VPID and
//! "unrestricted guest" (a PVH vCPU starts in protected mode with paging
//! off, which VMX can only run with it). Physical interrupts and NMIs exit
//! the guest and are taken by the host at the run loop's interrupt window.
//!
//! State VMX does not switch is switched here: CR2 around every entry, and
//! the SYSCALL MSRs and KERNEL_GS_BASE (which the guest uses directly) when
//! a vCPU gets or leaves the CPU. CR0 and CR4 bits the hardware requires in
//! VMX operation (NE, VMXE) are owned by the hypervisor and hidden from the
//! guest through the read shadows; CR8 is virtualised so a guest cannot
//! raise the host's task priority.

pub mod caps;
#[cfg(target_os = "none")]
mod hw;
pub mod vmcs;

pub use caps::{VmxError, VmxFeatures, describe, evaluate};
#[cfg(target_os = "none")]
pub use hw::*;
