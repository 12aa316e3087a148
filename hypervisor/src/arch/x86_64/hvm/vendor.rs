//! What a virtualization backend offers, as two traits that AMD-V
//! (`svm::Svm`, `svm::SvmVcpu`) and VT-x (`vmx::Vmx`, `vmx::VmxVcpu`) both
//! implement: an operation one of them lacks does not compile. Neutral code
//! reaches the backend in use through `backend` (`HvmVcpu` and the
//! functions beside it), never by naming a vendor. Xen's
//! `hvm_function_table` plays this part there.

use super::exit::VmExit;
use super::npt::P2mFormat;
use super::regs::{GuestRegs, Seg};
use super::vcpu_init::InitialState;
use crate::arch::x86_64::insn::Expected;
use crate::arch::x86_64::page_table::PageSize;
use crate::memory::guest_mem::Paging;
use alloc::string::String;
use core::fmt;

/// A backend: turning the extension on, and what its guests need from the
/// rest of the hypervisor.
pub trait HvmBackend {
    type Vcpu: VendorVcpu;
    type Error: fmt::Display;
    /// The guest's native hypercall instruction (VMMCALL on AMD-V, VMCALL on
    /// VT-x); the other one reaches the hypervisor as #UD.
    const HYPERCALL: Expected;

    /// Turns the extension on for the boot CPU and sets up what all CPUs
    /// share; a line for the boot log. `slice_ns` is the scheduler's slice,
    /// for a backend that needs a backstop timer of its own.
    fn init_boot_cpu(slice_ns: u64) -> Result<String, Self::Error>;
    /// The same on a CPU started later.
    fn init_this_cpu() -> Result<(), Self::Error>;
    /// The format of the nested page tables (AMD's NPT or Intel's EPT).
    fn p2m_format() -> P2mFormat;
    /// The largest page the nested tables may use.
    fn p2m_largest() -> PageSize;
    /// A vCPU over the nested page table rooted at `p2m_root`, its port
    /// accesses intercepted as the bitmap at `io_bitmap` says (the
    /// layout of `passthrough::ioports`; 12 KiB) or all of them (None).
    fn new_vcpu(p2m_root: u64, io_bitmap: Option<u64>) -> Result<Self::Vcpu, Self::Error>;
}

/// One vCPU's hardware state (a VMCB or a VMCS) and what the run loop
/// does with it.
pub trait VendorVcpu {
    /// Enters the guest with `regs` and runs it until it exits.
    fn run(&mut self, regs: &mut GuestRegs) -> VmExit;
    /// Loads a starting state (the caller also sets the general registers).
    fn set_state(&mut self, s: &InitialState);
    /// Whether an external interrupt can be injected now.
    fn interrupt_window_open(&self) -> bool;
    fn inject_interrupt(&mut self, vector: u8);
    /// Asks for an exit as soon as the guest can take an interrupt.
    fn set_interrupt_window(&mut self, on: bool);
    fn inject_nmi(&mut self);
    /// The guest's task priority (CR8).
    fn tpr(&self) -> u64;
    fn set_tpr(&mut self, tpr: u64);
    /// After touching a vCPU that is not running (building it, starting
    /// it): leave nothing of it cached on this CPU.
    fn release(&mut self);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn rflags(&self) -> u64;
    /// The guest's current privilege level.
    fn cpl(&self) -> u8;
    fn efer(&self) -> u64;
    fn set_efer(&mut self, efer: u64);
    fn pat(&self) -> u64;
    fn set_pat(&mut self, pat: u64);
    /// Added to the host TSC to give the guest's.
    fn tsc_offset(&self) -> u64;
    fn set_tsc_offset(&mut self, off: u64);
    fn cr3(&self) -> u64;
    /// Loads CR0 or CR4 as the guest sees it (after the policy's checks);
    /// the backend adds the bits it owns.
    fn set_cr0(&mut self, cr0: u64);
    fn set_cr4(&mut self, cr4: u64);
    /// Clears CS.L (EFER.LME was just set: see `policy::cr::efer_write`).
    fn clear_cs_long(&mut self);
    /// Loads the guest's IA32_DEBUGCTL where the hardware uses it.
    fn set_debugctl(&mut self, value: u64);
    /// The guest's paging mode, for walking its page tables.
    fn paging(&self) -> Paging;
    /// 16, 32 or 64: the code size the guest runs.
    fn bitness(&self) -> u32;
    fn cs_base(&self) -> u64;
    fn segment_base(&self, s: Seg) -> u64;
    /// Where the instruction after the exiting one starts, when the
    /// hardware says so.
    fn next_rip(&self) -> Option<u64>;
    fn clear_interrupt_shadow(&mut self);
    /// Moves RIP to `next` past an instruction that completed and ends an
    /// interrupt shadow; returns whether the guest single-steps (RFLAGS.TF),
    /// so the caller reports the step. One call for the three, as every
    /// skipped instruction does them.
    #[inline]
    fn complete_insn(&mut self, next: u64) -> bool {
        self.set_rip(next);
        self.clear_interrupt_shadow();
        self.rflags() & (1 << 8) != 0
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>);
    fn set_cr2(&mut self, cr2: u64);
    /// Drops the guest's cached translations before the next entry.
    fn flush_tlb(&mut self);
    /// Called when the vCPU gets the CPU, and when it leaves it.
    fn switch_in(&mut self);
    fn switch_out(&mut self);
    /// What no VMCB/VMCS field switches (debug registers, PKRU, TSC_AUX,
    /// MSR_SPEC_CTRL) and the vCPU's ASID or VPID.
    fn guest_state(&mut self) -> &mut super::isolation::hw::GuestCpuState;
    /// The guest's state, for a crash report.
    fn dump(&self, out: &mut impl fmt::Write);
}
