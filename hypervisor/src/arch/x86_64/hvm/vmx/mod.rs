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
#[cfg(target_os = "none")]
mod vcpu;
pub mod vmcs;

pub use caps::{VmxError, VmxFeatures, describe, evaluate};
#[cfg(target_os = "none")]
pub use hw::*;
#[cfg(target_os = "none")]
pub use vcpu::VmxVcpu;

#[cfg(target_os = "none")]
mod backend {
    use super::hw::{SLICE_NS, ept_largest, init_cpu, init_this_cpu};
    use super::{VmxError, VmxVcpu, describe};
    use crate::arch::x86_64::hvm::npt::P2mFormat;
    use crate::arch::x86_64::hvm::vendor::HvmBackend;
    use crate::arch::x86_64::insn::Expected;
    use crate::arch::x86_64::page_table::PageSize;
    use core::sync::atomic::Ordering;

    /// VT-x as the hypervisor's backend.
    pub struct Vmx;

    impl HvmBackend for Vmx {
        type Vcpu = VmxVcpu;
        type Error = VmxError;
        const HYPERCALL: Expected = Expected::Vmcall;

        fn init_boot_cpu(slice_ns: u64) -> Result<alloc::string::String, VmxError> {
            SLICE_NS.store(slice_ns, Ordering::Relaxed);
            init_cpu().map(|f| describe(&f))
        }

        fn init_this_cpu() -> Result<(), VmxError> {
            init_this_cpu()
        }

        fn p2m_format() -> P2mFormat {
            P2mFormat::Ept
        }

        fn p2m_largest() -> PageSize {
            ept_largest()
        }

        fn new_vcpu(p2m_root: u64, io_bitmap: Option<u64>) -> Result<VmxVcpu, VmxError> {
            VmxVcpu::new(p2m_root, io_bitmap)
        }
    }
}
#[cfg(target_os = "none")]
pub use backend::Vmx;
