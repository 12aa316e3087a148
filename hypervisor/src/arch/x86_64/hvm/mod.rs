//! Running guests with hardware virtualization: the vendor backends (`svm/`
//! for AMD-V, `vmx/` for VT-x) behind one vCPU type, the one exit enum, the
//! run loop that handles every exit once, and what a guest's CPU sees
//! (emulated local APIC, CPUID and MSR policies, what control registers
//! it may hold, starting states, pvclock).

pub mod cpuid;
pub mod exit;
pub mod intr;
pub mod isolation;
pub mod msr;
pub mod policy;
pub mod pvclock;
pub mod regs;
pub mod vcpu_init;
pub mod vlapic;
pub mod vmx;

#[cfg(target_os = "none")]
mod backend;
#[cfg(target_os = "none")]
pub mod npt;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
pub mod svm;
#[cfg(target_os = "none")]
pub mod vendor;

#[cfg(target_os = "none")]
pub use backend::*;
