//! The hardware virtualization backend in use: AMD-V (`svm::Svm`) or
//! Intel VT-x (`vmx::Vmx`), chosen at boot by CPU vendor and features (or
//! the `hvm=` option), behind one vCPU type (`HvmVcpu`). Both implement the
//! traits of `vendor`; neutral code sees only these functions, `HvmVcpu`
//! and `VmExit`.

use super::exit::VmExit;
use super::npt::P2mFormat;
use super::regs::{GuestRegs, Seg};
use super::svm::{Svm, SvmVcpu};
use super::vcpu_init::InitialState;
use super::vendor::{HvmBackend, VendorVcpu};
use super::vmx::{Vmx, VmxVcpu};
use crate::arch::x86_64::insn::Expected;
use crate::arch::x86_64::page_table::PageSize;
use crate::cmdline::HvmChoice;
use crate::memory::guest_mem::Paging;
use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Svm,
    Vmx,
}

static BACKEND: spin::Once<Backend> = spin::Once::new();

/// The backend in use (after `init`).
pub fn backend() -> Option<Backend> {
    BACKEND.get().copied()
}

/// The format of nested page tables for the backend in use.
pub fn p2m_format() -> P2mFormat {
    match backend() {
        Some(Backend::Vmx) => Vmx::p2m_format(),
        _ => Svm::p2m_format(),
    }
}

/// The largest page the nested tables may use.
pub fn p2m_largest() -> PageSize {
    match backend() {
        Some(Backend::Vmx) => Vmx::p2m_largest(),
        _ => Svm::p2m_largest(),
    }
}

/// The guest's native hypercall instruction.
pub fn hypercall_insn() -> Expected {
    match backend() {
        Some(Backend::Vmx) => Vmx::HYPERCALL,
        _ => Svm::HYPERCALL,
    }
}

/// The other vendor's hypercall instruction, which a guest may still use
/// (it reaches the hypervisor as #UD).
pub fn foreign_hypercall_insn() -> Expected {
    match backend() {
        Some(Backend::Vmx) => Svm::HYPERCALL,
        _ => Vmx::HYPERCALL,
    }
}

/// Why neither backend can run guests.
pub struct NoBackend {
    pub svm: Option<<Svm as HvmBackend>::Error>,
    pub vmx: Option<<Vmx as HvmBackend>::Error>,
}

impl fmt::Display for NoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.svm, &self.vmx) {
            (Some(s), Some(v)) => write!(f, "neither AMD-V nor VT-x is usable (AMD-V: {s}; VT-x: {v})"),
            (Some(s), None) => write!(f, "AMD-V is not usable: {s}"),
            (None, Some(v)) => write!(f, "VT-x is not usable: {v}"),
            (None, None) => f.write_str("no virtualization backend"),
        }
    }
}

/// Enables the backend on this CPU: the one `choice` forces, or the one the
/// CPU has. Returns a line describing it. `slice_ns` is the scheduler's
/// slice (a backend may need a backstop timer of its own).
pub fn init(choice: HvmChoice, slice_ns: u64) -> Result<(Backend, alloc::string::String), NoBackend> {
    let try_svm = || Svm::init_boot_cpu(slice_ns).map(|line| (Backend::Svm, line));
    let try_vmx = || Vmx::init_boot_cpu(slice_ns).map(|line| (Backend::Vmx, line));
    let r = match choice {
        HvmChoice::Svm => try_svm().map_err(|e| NoBackend { svm: Some(e), vmx: None }),
        HvmChoice::Vmx => try_vmx().map_err(|e| NoBackend { svm: None, vmx: Some(e) }),
        HvmChoice::Auto => match crate::arch::x86_64::cpu::features().vendor {
            crate::arch::x86_64::Vendor::Intel => {
                try_vmx().or_else(|v| try_svm().map_err(|s| NoBackend { svm: Some(s), vmx: Some(v) }))
            }
            _ => try_svm().or_else(|s| try_vmx().map_err(|v| NoBackend { svm: Some(s), vmx: Some(v) })),
        },
    };
    if let Ok((b, _)) = &r {
        BACKEND.call_once(|| *b);
        // VT-x runs RDTSCP/RDPID only with its "enable RDTSCP" control.
        let rdtscp_ok = match b {
            Backend::Svm => true,
            Backend::Vmx => super::vmx::features().cpu2 & super::vmx::vmcs::CPU2_ENABLE_RDTSCP != 0,
        };
        super::isolation::hw::init_boot(rdtscp_ok);
    }
    r
}

/// The backend on a CPU started after the boot CPU.
pub fn init_this_cpu() -> Result<(), &'static str> {
    super::isolation::hw::init_cpu();
    match backend() {
        Some(Backend::Svm) => Svm::init_this_cpu().map_err(|_| "SVM could not be enabled"),
        Some(Backend::Vmx) => Vmx::init_this_cpu().map_err(|_| "VMX could not be enabled"),
        None => Ok(()),
    }
}

pub enum HvmVcpu {
    Svm(SvmVcpu),
    Vmx(VmxVcpu),
}

macro_rules! dispatch {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            HvmVcpu::Svm($v) => $e,
            HvmVcpu::Vmx($v) => $e,
        }
    };
}

impl HvmVcpu {
    /// A vCPU of the backend in use over the p2m rooted at `p2m_root`,
    /// with the port intercepts at `io_bitmap` (None: every port exits).
    pub fn new(p2m_root: u64, io_bitmap: Option<u64>) -> Result<HvmVcpu, &'static str> {
        match backend() {
            Some(Backend::Svm) => {
                Svm::new_vcpu(p2m_root, io_bitmap).map(HvmVcpu::Svm).map_err(|_| "cannot set up an SVM vCPU")
            }
            Some(Backend::Vmx) => {
                Vmx::new_vcpu(p2m_root, io_bitmap).map(HvmVcpu::Vmx).map_err(|_| "cannot set up a VMX vCPU")
            }
            None => Err("no virtualization backend"),
        }
    }
}

/// Each operation goes to the backend's own (which the trait makes both
/// have).
impl VendorVcpu for HvmVcpu {
    #[inline]
    fn run(&mut self, regs: &mut GuestRegs) -> VmExit {
        dispatch!(self, v => v.run(regs))
    }
    #[inline]
    fn set_state(&mut self, s: &InitialState) {
        dispatch!(self, v => v.set_state(s))
    }
    #[inline]
    fn interrupt_window_open(&self) -> bool {
        dispatch!(self, v => v.interrupt_window_open())
    }
    #[inline]
    fn inject_interrupt(&mut self, vector: u8) {
        dispatch!(self, v => v.inject_interrupt(vector))
    }
    #[inline]
    fn set_interrupt_window(&mut self, on: bool) {
        dispatch!(self, v => v.set_interrupt_window(on))
    }
    #[inline]
    fn inject_nmi(&mut self) {
        dispatch!(self, v => v.inject_nmi())
    }
    #[inline]
    fn tpr(&self) -> u64 {
        dispatch!(self, v => v.tpr())
    }
    #[inline]
    fn set_tpr(&mut self, tpr: u64) {
        dispatch!(self, v => v.set_tpr(tpr))
    }
    #[inline]
    fn release(&mut self) {
        dispatch!(self, v => v.release())
    }
    #[inline]
    fn rip(&self) -> u64 {
        dispatch!(self, v => v.rip())
    }
    #[inline]
    fn set_rip(&mut self, rip: u64) {
        dispatch!(self, v => v.set_rip(rip))
    }
    #[inline]
    fn rflags(&self) -> u64 {
        dispatch!(self, v => v.rflags())
    }
    #[inline]
    fn cpl(&self) -> u8 {
        dispatch!(self, v => v.cpl())
    }
    #[inline]
    fn efer(&self) -> u64 {
        dispatch!(self, v => v.efer())
    }
    #[inline]
    fn set_efer(&mut self, efer: u64) {
        dispatch!(self, v => v.set_efer(efer))
    }
    #[inline]
    fn pat(&self) -> u64 {
        dispatch!(self, v => v.pat())
    }
    #[inline]
    fn set_pat(&mut self, pat: u64) {
        dispatch!(self, v => v.set_pat(pat))
    }
    #[inline]
    fn tsc_offset(&self) -> u64 {
        dispatch!(self, v => v.tsc_offset())
    }
    #[inline]
    fn set_tsc_offset(&mut self, off: u64) {
        dispatch!(self, v => v.set_tsc_offset(off))
    }
    #[inline]
    fn cr3(&self) -> u64 {
        dispatch!(self, v => v.cr3())
    }
    #[inline]
    fn set_cr0(&mut self, cr0: u64) {
        dispatch!(self, v => v.set_cr0(cr0))
    }
    #[inline]
    fn set_cr4(&mut self, cr4: u64) {
        dispatch!(self, v => v.set_cr4(cr4))
    }
    #[inline]
    fn clear_cs_long(&mut self) {
        dispatch!(self, v => v.clear_cs_long())
    }
    #[inline]
    fn set_debugctl(&mut self, value: u64) {
        dispatch!(self, v => v.set_debugctl(value))
    }
    #[inline]
    fn paging(&self) -> Paging {
        dispatch!(self, v => v.paging())
    }
    #[inline]
    fn bitness(&self) -> u32 {
        dispatch!(self, v => v.bitness())
    }
    #[inline]
    fn cs_base(&self) -> u64 {
        dispatch!(self, v => v.cs_base())
    }
    #[inline]
    fn segment_base(&self, s: Seg) -> u64 {
        dispatch!(self, v => v.segment_base(s))
    }
    #[inline]
    fn next_rip(&self) -> Option<u64> {
        dispatch!(self, v => v.next_rip())
    }
    #[inline]
    fn clear_interrupt_shadow(&mut self) {
        dispatch!(self, v => v.clear_interrupt_shadow())
    }
    #[inline]
    fn complete_insn(&mut self, next: u64) -> bool {
        dispatch!(self, v => v.complete_insn(next))
    }
    #[inline]
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        dispatch!(self, v => v.inject_exception(vector, error_code))
    }
    #[inline]
    fn set_cr2(&mut self, cr2: u64) {
        dispatch!(self, v => v.set_cr2(cr2))
    }
    #[inline]
    fn flush_tlb(&mut self) {
        dispatch!(self, v => v.flush_tlb())
    }
    #[inline]
    fn switch_in(&mut self) {
        dispatch!(self, v => v.switch_in())
    }
    #[inline]
    fn switch_out(&mut self) {
        dispatch!(self, v => v.switch_out())
    }
    #[inline]
    fn guest_state(&mut self) -> &mut super::isolation::hw::GuestCpuState {
        dispatch!(self, v => v.guest_state())
    }
    #[inline]
    fn dump(&self, out: &mut impl fmt::Write) {
        dispatch!(self, v => v.dump(out))
    }
}
