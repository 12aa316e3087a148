//! The hardware virtualization backend behind one interface: AMD-V (SVM)
//! or Intel VT-x (VMX), chosen at boot by CPU vendor and features (or the
//! `hvm=` option). Common code sees only `HvmVcpu` and `VmExit`.

use super::npt::P2mFormat;
use super::svm::{self, SvmVcpu};
use super::vmx::{self, VmxVcpu};
use crate::arch::x86_64::hvm::exit::VmExit;
use crate::arch::x86_64::hvm::regs::{GuestRegs, Seg};
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
        Some(Backend::Vmx) => P2mFormat::Ept,
        _ => P2mFormat::Npt,
    }
}

/// The largest page the nested tables may use.
pub fn p2m_largest() -> crate::arch::x86_64::page_table::PageSize {
    use crate::arch::x86_64::page_table::PageSize;
    match backend() {
        Some(Backend::Vmx) => vmx::ept_largest(),
        _ if crate::arch::x86_64::cpu::features().page1g => PageSize::Size1G,
        _ => PageSize::Size2M,
    }
}

/// Why neither backend can run guests.
pub struct NoBackend {
    pub svm: Option<svm::SvmError>,
    pub vmx: Option<vmx::VmxError>,
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
/// CPU has. Returns a line describing it.
pub fn init(choice: HvmChoice) -> Result<(Backend, alloc::string::String), NoBackend> {
    let try_svm = || svm::init_cpu().map(|f| (Backend::Svm, svm::describe(&f)));
    let try_vmx = || vmx::init_cpu().map(|f| (Backend::Vmx, vmx::describe(&f)));
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
    }
    r
}

/// The backend on a CPU started after the boot CPU.
pub fn init_this_cpu() -> Result<(), &'static str> {
    match backend() {
        Some(Backend::Svm) => svm::init_this_cpu().map_err(|_| "SVM could not be enabled"),
        Some(Backend::Vmx) => vmx::init_this_cpu().map_err(|_| "VMX could not be enabled"),
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
    /// A vCPU of the backend in use over the p2m rooted at `p2m_root`.
    pub fn new(p2m_root: u64) -> Result<HvmVcpu, &'static str> {
        match backend() {
            Some(Backend::Svm) => SvmVcpu::new(p2m_root).map(HvmVcpu::Svm).map_err(|_| "cannot set up an SVM vCPU"),
            Some(Backend::Vmx) => VmxVcpu::new(p2m_root).map(HvmVcpu::Vmx).map_err(|_| "cannot set up a VMX vCPU"),
            None => Err("no virtualization backend"),
        }
    }

    pub fn run(&mut self, regs: &mut GuestRegs) -> VmExit {
        dispatch!(self, v => v.run(regs))
    }
    /// Loads a starting state (the caller also sets the general registers).
    pub fn set_state(&mut self, s: &crate::arch::x86_64::hvm::vcpu_init::InitialState) {
        dispatch!(self, v => v.set_state(s))
    }
    pub fn interrupt_window_open(&self) -> bool {
        dispatch!(self, v => v.interrupt_window_open())
    }
    pub fn inject_interrupt(&mut self, vector: u8) {
        dispatch!(self, v => v.inject_interrupt(vector))
    }
    pub fn set_interrupt_window(&mut self, on: bool) {
        dispatch!(self, v => v.set_interrupt_window(on))
    }
    pub fn inject_nmi(&mut self) {
        dispatch!(self, v => v.inject_nmi())
    }
    pub fn tpr(&self) -> u64 {
        dispatch!(self, v => v.tpr())
    }
    pub fn set_tpr(&mut self, tpr: u64) {
        dispatch!(self, v => v.set_tpr(tpr))
    }
    /// After touching a vCPU that is not running (building it, starting
    /// it): leave nothing of it cached on this CPU.
    pub fn release(&mut self) {
        dispatch!(self, v => v.release())
    }
    pub fn rip(&self) -> u64 {
        dispatch!(self, v => v.rip())
    }
    pub fn set_rip(&mut self, rip: u64) {
        dispatch!(self, v => v.set_rip(rip))
    }
    pub fn rflags(&self) -> u64 {
        dispatch!(self, v => v.rflags())
    }
    pub fn cpl(&self) -> u8 {
        dispatch!(self, v => v.cpl())
    }
    pub fn efer(&self) -> u64 {
        dispatch!(self, v => v.efer())
    }
    pub fn set_efer(&mut self, efer: u64) {
        dispatch!(self, v => v.set_efer(efer))
    }
    pub fn pat(&self) -> u64 {
        dispatch!(self, v => v.pat())
    }
    pub fn set_pat(&mut self, pat: u64) {
        dispatch!(self, v => v.set_pat(pat))
    }
    pub fn tsc_offset(&self) -> u64 {
        dispatch!(self, v => v.tsc_offset())
    }
    pub fn set_tsc_offset(&mut self, off: u64) {
        dispatch!(self, v => v.set_tsc_offset(off))
    }
    pub fn cr3(&self) -> u64 {
        dispatch!(self, v => v.cr3())
    }
    pub fn paging(&self) -> Paging {
        dispatch!(self, v => v.paging())
    }
    pub fn bitness(&self) -> u32 {
        dispatch!(self, v => v.bitness())
    }
    pub fn cs_base(&self) -> u64 {
        dispatch!(self, v => v.cs_base())
    }
    pub fn segment_base(&self, s: Seg) -> u64 {
        dispatch!(self, v => v.segment_base(s))
    }
    /// Where the instruction after the exiting one starts, when the
    /// hardware says so.
    pub fn next_rip(&self) -> Option<u64> {
        dispatch!(self, v => v.next_rip())
    }
    pub fn clear_interrupt_shadow(&mut self) {
        dispatch!(self, v => v.clear_interrupt_shadow())
    }
    pub fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        dispatch!(self, v => v.inject_exception(vector, error_code))
    }
    pub fn set_cr2(&mut self, cr2: u64) {
        dispatch!(self, v => v.set_cr2(cr2))
    }
    pub fn flush_tlb(&mut self) {
        dispatch!(self, v => v.flush_tlb())
    }
    /// Called when the vCPU gets the CPU and when it leaves it.
    pub fn switch_in(&mut self) {
        dispatch!(self, v => v.switch_in())
    }
    pub fn switch_out(&mut self) {
        dispatch!(self, v => v.switch_out())
    }
    pub fn dump(&self, out: &mut impl fmt::Write) {
        dispatch!(self, v => v.dump(out))
    }
}
