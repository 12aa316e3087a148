//! AMD-V (SVM): the hardware backend on AMD CPUs.
//!
//! One VMCB per vCPU; the host's hidden state (FS, GS, TR, LDTR and the
//! SYSCALL MSRs) lives in a per-CPU host VMCB that VMSAVE/VMLOAD switch
//! around every VMRUN, so hypervisor code always runs with its own GS base
//! (per-CPU data) and TSS. Physical interrupts exit the guest (INTR
//! intercept, V_INTR_MASKING) and are taken by the host IDT at the next
//! interrupt window of the run loop.

pub mod caps;
pub mod vmcb;

use self::caps::{EFER_SVME, IOPM, MSRPM};
pub use self::caps::{SvmError, SvmFeatures, describe, detect, features, init_cpu, init_this_cpu};

use self::vmcb::*;
use super::regs::Seg;
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::hvm::exit::{CrWrite, IoExit, NpfAccess, VmExit};
use crate::arch::x86_64::hvm::isolation::asid::Flush;
use crate::arch::x86_64::hvm::isolation::hw::{self as iso, GuestCpuState};
use crate::arch::x86_64::hvm::npt::P2mFormat;
use crate::arch::x86_64::hvm::regs::GuestRegs;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::{HvmBackend, VendorVcpu};
use crate::arch::x86_64::insn::Expected;
use crate::arch::x86_64::page_table::PageSize;
use crate::memory::guest_mem::Paging;
use crate::mm::addr::Gpa;
use crate::mm::phys::{alloc_zeroed_frame, free_frames, phys_to_virt};
use core::fmt;
use core::sync::atomic::Ordering;

/// AMD-V as the hypervisor's backend.
pub struct Svm;

impl HvmBackend for Svm {
    type Vcpu = SvmVcpu;
    type Error = SvmError;
    const HYPERCALL: Expected = Expected::Vmmcall;

    fn init_boot_cpu(_slice_ns: u64) -> Result<alloc::string::String, SvmError> {
        init_cpu().map(|f| describe(&f))
    }

    fn init_this_cpu() -> Result<(), SvmError> {
        init_this_cpu()
    }

    fn p2m_format() -> P2mFormat {
        P2mFormat::Npt
    }

    fn p2m_largest() -> PageSize {
        if cpu::features().page1g { PageSize::Size1G } else { PageSize::Size2M }
    }

    fn new_vcpu(p2m_root: u64, io_bitmap: Option<u64>) -> Result<SvmVcpu, SvmError> {
        SvmVcpu::new(p2m_root, io_bitmap)
    }
}

/// DR0-7 read and write intercepts (the VMCB's DR intercept word), and
/// their exit codes (reads 0x20-0x2f, writes 0x30-0x3f).
const ALL_DR_INTERCEPTS: u32 = 0x00ff_00ff;
const EXIT_DR_FIRST: u64 = 0x20;
const EXIT_DR_LAST: u64 = 0x3f;
const I2_RDTSCP: u32 = 1 << 7;
const EXIT_RDTSCP: u64 = 0x87;
/// DR7's breakpoint enables (L0-3, G0-3).
const DR7_ACTIVE: u64 = 0xff;

/// A vCPU's SVM state.
pub struct SvmVcpu {
    vmcb_phys: u64,
    vmcb: Vmcb,
    /// What the VMCB does not switch, and the vCPU's ASID.
    iso: GuestCpuState,
    /// The host VMCB of the CPU it was switched in on (VMSAVE/VMLOAD of
    /// the host's hidden state around VMRUN).
    host_vmcb: u64,
    /// An external interrupt chosen for the next entry, where
    /// [`virq_delivery`] holds: the entry decides how it goes in.
    irq_to_enter: Option<u8>,
    /// The interrupt the current entry offers as a virtual interrupt
    /// (V_IRQ); after the exit it was taken or goes in by EVENTINJ.
    irq_offered: Option<u8>,
}

/// Whether external interrupts go in as virtual interrupts (V_IRQ with
/// V_IGN_TPR, which the CPU takes when the guest's IF allows, as it would
/// an EVENTINJ at an open window) instead of by EVENTINJ.
///
/// Only where the SVM implementation lacks NRIP save: QEMU's software
/// emulation (and AMD parts before 2010, where it is just as correct).
/// QEMU delivers an EVENTINJ interrupt inside its VMRUN but leaves the
/// vector as its pending exception, and delivers it a second time if its
/// execution loop is kicked before the guest's next exception or exit: an
/// interrupt at an arbitrary later point, IF clear or not (one in three
/// two-vCPU Linux boots crashed so with QEMU in one thread under load).
/// A virtual interrupt takes QEMU's own interrupt path, which has no such
/// leftover. EVENTINJ stays for exceptions, NMIs, events an exit cut short,
/// and an interrupt whose entry also asks for an interrupt window (the
/// window uses V_IRQ itself).
fn virq_delivery() -> bool {
    !features().nrip_save
}

// SAFETY: the VMCB page belongs to this vCPU; it is only touched by the CPU
// that runs the vCPU (vCPUs are locked while running).
unsafe impl Send for SvmVcpu {}

unsafe extern "C" {
    fn svm_vmrun(guest_vmcb: u64, host_vmcb: u64, regs: *mut GuestRegs);
}

// The world switch. Entered with interrupts off; runs the guest with host
// IF=1 (physical interrupts exit the guest) and GIF cleared around the
// switch; returns with interrupts off and GIF set. VMRUN is never right
// after STI (the STI shadow would leak into the guest).
core::arch::global_asm!(concat!(
    r#"
    .section .text.svm_vmrun, "ax"
    .global svm_vmrun
svm_vmrun:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx
    push rsi
    push rdi
    clgi
    sti
    mov rax, rsi
    vmsave rax
    mov rax, [rsp]
    vmload rax
    mov rax, [rsp + 16]
"#,
    crate::verw_if_wanted!(),
    crate::guest_gprs_load!(),
    r#"    mov rax, [rsp]
    vmrun rax
"#,
    crate::rsb_overwrite!(),
    r#"    vmsave rax
    push rax
    mov rax, [rsp + 24]
"#,
    crate::guest_gprs_store!(),
    r#"    add rsp, 8
    mov rax, [rsp + 8]
    vmload rax
    cli
    stgi
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
));

/// Segment attributes of the PVH entry state (Xen's values).
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

impl SvmVcpu {
    /// A vCPU whose guest-physical memory is the nested table at `n_cr3`
    /// (ports: see `Vendor::new_vcpu`).
    pub fn new(n_cr3: u64, io_bitmap: Option<u64>) -> Result<SvmVcpu, SvmError> {
        let vmcb_phys = alloc_zeroed_frame().ok_or(SvmError::NoMemory)?;
        let v = phys_to_virt(vmcb_phys).ok_or(SvmError::NoMemory)?;
        // SAFETY: a freshly allocated page, this vCPU's VMCB alone.
        let mut vmcb = unsafe { Vmcb::new(v as *mut u8) };

        // Intercepts: Xen's set for a PVH guest under nested paging. CR0
        // and CR4 writes, checked against what the guest may set (the
        // hardware checks only what the host CPU has: a bit the guest lacks
        // would make the next VMRUN fail). #DB
        // and #AC are intercepted so a guest cannot hang the CPU in an
        // endless exception loop; #MC is the host's; #UD lets a guest use
        // the other vendor's hypercall instruction.
        vmcb.write_u32(INTERCEPT_CR, CR_WRITE_CR0 | CR_WRITE_CR4);
        vmcb.write_u32(INTERCEPT_EXCEPTIONS, 1 << 1 | 1 << 6 | 1 << 17 | 1 << 18);
        // Debug registers: DR0-3 are the CPU's, not the VMCB's, so MOV DR
        // exits until the vCPU first touches them (then they are switched
        // with it, as Xen does).
        vmcb.write_u32(INTERCEPT_DR, ALL_DR_INTERCEPTS);
        vmcb.write_u32(
            INTERCEPT_MISC1,
            I1_INTR
                | I1_NMI
                | I1_SMI
                | I1_INIT
                | I1_CPUID
                | I1_INVD
                | I1_HLT
                | I1_INVLPGA
                | I1_IOIO
                | I1_MSR
                | I1_TASK_SWITCH
                | I1_SHUTDOWN,
        );
        vmcb.write_u32(
            INTERCEPT_MISC2,
            I2_VMRUN
                | I2_VMMCALL
                | I2_VMLOAD
                | I2_VMSAVE
                | I2_STGI
                | I2_CLGI
                | I2_SKINIT
                | I2_WBINVD
                | I2_MONITOR
                | I2_MWAIT
                | I2_MWAIT_COND
                | I2_XSETBV
                | I2_RDPRU
                // RDTSCP reads TSC_AUX: #UD unless the guest is offered it.
                | if iso::offer().rdtscp { 0 } else { I2_RDTSCP },
        );
        let iopm = match io_bitmap {
            Some(pa) => pa,
            None => *IOPM.get().ok_or(SvmError::NoMemory)?,
        };
        vmcb.write_u64(IOPM_BASE_PA, iopm);
        vmcb.write_u64(MSRPM_BASE_PA, *MSRPM.get().ok_or(SvmError::NoMemory)?);
        vmcb.write_u64(V_INTR, V_INTR_MASKING);
        vmcb.write_u64(NP_CONTROL, NP_ENABLE);
        vmcb.write_u64(N_CR3, n_cr3);
        vmcb.write_u64(G_PAT, DEFAULT_PAT);
        vmcb.write_u64(DR6, 0xffff_0ff0);
        vmcb.write_u64(DR7, 0x400);
        vmcb.write_u64(EFER, EFER_SVME);
        Ok(SvmVcpu { vmcb_phys, vmcb, iso: GuestCpuState::new(), host_vmcb: 0, irq_to_enter: None, irq_offered: None })
    }

    /// Puts the chosen external interrupt into this entry: as a virtual
    /// interrupt, or by EVENTINJ when the entry also wants an interrupt
    /// window; kept for a later entry while EVENTINJ holds another event.
    fn enter_interrupt(&mut self, vector: u8) {
        if self.vmcb.read_u64(EVENTINJ) & EVENT_VALID != 0 {
            self.irq_to_enter = Some(vector);
        } else if self.vmcb.read_u32(INTERCEPT_MISC1) & I1_VINTR != 0 {
            self.inject_by_eventinj(vector);
        } else {
            let v = self.vmcb.read_u64(V_INTR) & !V_INTR_VECTOR_MASK;
            self.vmcb.write_u64(V_INTR, v | V_IRQ_OFFER | (vector as u64) << V_INTR_VECTOR_SHIFT);
            self.irq_offered = Some(vector);
        }
    }

    /// After an exit from an entry that offered `vector` as a virtual
    /// interrupt: if the guest did not take it, or the exit cut its
    /// delivery short (`cut_short`, QEMU's EXITINTINFO for it), it goes in
    /// by EVENTINJ at the next entry, unless another event the exit cut
    /// short must go first (then it waits for a later entry).
    fn settle_offered_interrupt(&mut self, vector: u8, cut_short: Option<u64>) {
        let v = self.vmcb.read_u64(V_INTR);
        let not_taken = v & V_IRQ != 0;
        if not_taken {
            self.vmcb.write_u64(V_INTR, v & !(V_IRQ_OFFER | V_INTR_VECTOR_MASK));
        }
        match cut_short {
            Some(e) if e & 0xff == vector as u64 && e & EVENT_TYPE_MASK != EVENT_TYPE_NMI => {
                self.inject_by_eventinj(vector);
            }
            Some(e) => {
                self.vmcb.write_u64(EVENTINJ, e);
                if not_taken {
                    self.irq_to_enter = Some(vector);
                }
            }
            None if not_taken => self.inject_by_eventinj(vector),
            None => {}
        }
    }

    /// An external interrupt by EVENTINJ, at this entry.
    fn inject_by_eventinj(&mut self, vector: u8) {
        self.vmcb.write_u64(EVENTINJ, EVENT_VALID | EVENT_TYPE_INTR | vector as u64);
    }

    pub fn asid(&self) -> u32 {
        self.iso.asid.asid()
    }

    /// The guest touched a debug register: its DR0-3 go into the CPU and
    /// MOV DR runs unintercepted until it leaves the CPU (Xen's
    /// `__restore_debug_registers`); the instruction runs again.
    fn load_debug_regs(&mut self) {
        if !self.iso.dr_loaded {
            self.iso.load_debug_regs(false);
            self.vmcb.write_u32(INTERCEPT_DR, 0);
        }
    }

    /// The ASID for this entry and the flush it needs.
    fn pick_asid(&mut self) -> u8 {
        let e = iso::asid_enter(&mut self.iso.asid);
        // Without ASIDs every vCPU shares tag 1 and flushes at each entry.
        self.iso.asid_stale = e.flush == Flush::ThisTag;
        self.vmcb.write_u32(GUEST_ASID, e.asid);
        match e.flush {
            Flush::None => TLB_NOTHING,
            Flush::ThisTag if features().flush_by_asid => TLB_FLUSH_ASID,
            Flush::ThisTag | Flush::All => TLB_FLUSH_ALL,
        }
    }

    pub fn set_rflags(&mut self, f: u64) {
        self.vmcb.write_u64(RFLAGS, f);
    }

    fn exit(&mut self) -> VmExit {
        let code = self.vmcb.read_u64(EXITCODE);
        let info1 = self.vmcb.read_u64(EXITINFO1);
        let info2 = self.vmcb.read_u64(EXITINFO2);
        match code {
            EXIT_CPUID => VmExit::Cpuid,
            EXIT_WRITE_CR0 | EXIT_WRITE_CR4 => {
                let cr = (code - EXIT_WRITE_CR0) as u8;
                // Decode assists name the register of a MOV (bit 63).
                if features().decode_assists && info1 & (1 << 63) != 0 {
                    VmExit::CrWrite(CrWrite::Mov { cr, gpr: (info1 & 0xf) as u8 })
                } else {
                    VmExit::CrWrite(CrWrite::Decode { cr })
                }
            }
            EXIT_MSR => {
                if info1 & 1 == 0 {
                    VmExit::Rdmsr
                } else {
                    VmExit::Wrmsr
                }
            }
            EXIT_IOIO => VmExit::Io(IoExit {
                port: (info1 >> 16) as u16,
                size: ((info1 >> 4) & 7) as u8,
                input: info1 & 1 != 0,
                string: info1 & (1 << 2) != 0,
                rep: info1 & (1 << 3) != 0,
                addr_size: match (info1 >> 7) & 7 {
                    1 => 2,
                    2 => 4,
                    _ => 8,
                },
                next_rip: info2,
            }),
            EXIT_NPF => VmExit::NestedPageFault {
                gpa: Gpa(info2),
                access: NpfAccess {
                    present: info1 & 1 != 0,
                    write: info1 & 2 != 0,
                    fetch: info1 & 16 != 0,
                    in_guest_walk: info1 & (1 << 33) != 0,
                },
            },
            EXIT_VMMCALL => VmExit::Hypercall(Expected::Vmmcall),
            EXIT_HLT => VmExit::Hlt,
            EXIT_INTR => VmExit::ExternalInterrupt,
            EXIT_NMI => VmExit::Nmi,
            EXIT_VINTR => VmExit::InterruptWindow,
            EXIT_SHUTDOWN => VmExit::Shutdown,
            EXIT_INVD => VmExit::Invd,
            EXIT_WBINVD => VmExit::Wbinvd,
            EXIT_XSETBV => VmExit::Xsetbv,
            EXIT_PAUSE => VmExit::Pause,
            EXIT_VMRUN => VmExit::Undefined(Expected::Vmrun),
            EXIT_VMLOAD => VmExit::Undefined(Expected::Vmload),
            EXIT_VMSAVE => VmExit::Undefined(Expected::Vmsave),
            EXIT_STGI => VmExit::Undefined(Expected::Stgi),
            EXIT_CLGI => VmExit::Undefined(Expected::Clgi),
            EXIT_SKINIT => VmExit::Undefined(Expected::Skinit),
            EXIT_MONITOR => VmExit::Undefined(Expected::Monitor),
            EXIT_MWAIT | EXIT_MWAIT_COND => VmExit::Undefined(Expected::Mwait),
            c if (EXIT_EXCEPTION_BASE..EXIT_EXCEPTION_BASE + 32).contains(&c) => {
                let vector = (c - EXIT_EXCEPTION_BASE) as u8;
                let has_code = matches!(vector, 8 | 10..=14 | 17 | 21);
                VmExit::Exception {
                    vector,
                    error_code: has_code.then_some(info1 as u32),
                    cr2: if vector == 14 { info2 } else { 0 },
                }
            }
            EXIT_DR_FIRST..=EXIT_DR_LAST => {
                self.load_debug_regs();
                VmExit::Handled
            }
            // Not offered: #UD, as the CPU gives where it lacks RDTSCP.
            EXIT_RDTSCP => VmExit::Exception { vector: 6, error_code: None, cr2: 0 },
            EXIT_INVALID | EXIT_INVALID_32 => VmExit::InvalidState,
            _ => VmExit::Unknown { code, info1, info2 },
        }
    }
}

impl VendorVcpu for SvmVcpu {
    /// Loads an architectural starting state (the PVH entry, a real-mode
    /// start after INIT and STARTUP, a VCPUOP_initialise context). The
    /// VMCB's segment attributes use the same packing as `Segment::attr`.
    fn set_state(&mut self, st: &InitialState) {
        let v = &mut self.vmcb;
        let seg = |s: &crate::arch::x86_64::hvm::vcpu_init::Segment| Segment {
            selector: s.selector,
            attrib: s.attr,
            limit: s.limit,
            base: s.base,
        };
        for (off, s) in [(ES, &st.es), (CS, &st.cs), (SS, &st.ss), (DS, &st.ds), (FS, &st.fs), (GS, &st.gs)] {
            v.set_segment(off, seg(s));
        }
        v.set_segment(TR, seg(&st.tr));
        v.set_segment(LDTR, seg(&st.ldtr));
        v.set_segment(GDTR, Segment { selector: 0, attrib: 0, limit: st.gdtr.1, base: st.gdtr.0 });
        v.set_segment(IDTR, Segment { selector: 0, attrib: 0, limit: st.idtr.1, base: st.idtr.0 });
        v.write_u8(CPL, ((st.ss.attr >> 5) & 3) as u8);
        v.write_u64(CR0, st.cr0);
        v.write_u64(CR3, st.cr3);
        v.write_u64(CR4, st.cr4);
        v.write_u64(EFER, st.efer | EFER_SVME);
        v.write_u64(RFLAGS, st.rflags);
        v.write_u64(RIP, st.rip);
        v.write_u64(RSP, st.regs.rsp);
        v.write_u64(DR7, 0x400);
        v.write_u64(CR2, 0);
        v.write_u64(G_PAT, DEFAULT_PAT);
        v.write_u64(DBGCTL, 0);
        v.write_u64(EVENTINJ, 0);
        v.write_u64(INTERRUPT_STATE, 0);
        for off in [STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP] {
            v.write_u64(off, 0);
        }
        v.write_u64(V_INTR, V_INTR_MASKING);
        self.set_interrupt_window(false);
        self.irq_to_enter = None;
        self.irq_offered = None;
        self.vmcb.write_u64(DR6, 0xffff_0ff0);
        self.iso.reset(false);
        self.iso.asid.invalidate();
        self.iso.asid_stale = true;
    }

    /// Whether an external interrupt can be injected now: IF set, no
    /// interrupt shadow, no event already being injected.
    fn interrupt_window_open(&self) -> bool {
        self.vmcb.read_u64(RFLAGS) & (1 << 9) != 0
            && self.vmcb.read_u64(INTERRUPT_STATE) & 1 == 0
            && self.vmcb.read_u64(EVENTINJ) & EVENT_VALID == 0
            && self.irq_to_enter.is_none()
    }

    fn inject_interrupt(&mut self, vector: u8) {
        if virq_delivery() {
            self.irq_to_enter = Some(vector);
        } else {
            self.inject_by_eventinj(vector);
        }
    }

    /// Exit as soon as the guest can take an interrupt: a virtual
    /// interrupt the guest cannot refuse by priority, intercepted when the
    /// guest would take it (VINTR).
    fn set_interrupt_window(&mut self, on: bool) {
        let v = self.vmcb.read_u64(V_INTR);
        let want = if on { v | V_IRQ_OFFER } else { v & !V_IRQ_OFFER };
        if want != v {
            self.vmcb.write_u64(V_INTR, want);
        }
        let i = self.vmcb.read_u32(INTERCEPT_MISC1);
        let want = if on { i | I1_VINTR } else { i & !I1_VINTR };
        if want != i {
            self.vmcb.write_u32(INTERCEPT_MISC1, want);
        }
    }

    fn inject_nmi(&mut self) {
        if self.vmcb.read_u64(EVENTINJ) & EVENT_VALID == 0 {
            self.vmcb.write_u64(EVENTINJ, EVENT_VALID | EVENT_TYPE_NMI | 2);
        }
    }

    /// The guest's task priority (CR8), which V_INTR_MASKING keeps in
    /// V_TPR instead of the host's.
    fn tpr(&self) -> u64 {
        self.vmcb.read_u64(V_INTR) & 0xf
    }

    fn set_tpr(&mut self, tpr: u64) {
        let v = self.vmcb.read_u64(V_INTR);
        if v & 0xf != tpr & 0xf {
            self.vmcb.write_u64(V_INTR, (v & !0xff) | (tpr & 0xf));
        }
    }

    fn rip(&self) -> u64 {
        self.vmcb.read_u64(RIP)
    }

    fn set_rip(&mut self, rip: u64) {
        self.vmcb.write_u64(RIP, rip);
    }

    fn rflags(&self) -> u64 {
        self.vmcb.read_u64(RFLAGS)
    }

    fn cpl(&self) -> u8 {
        self.vmcb.read_u8(CPL)
    }

    /// Guest EFER as the guest sees it (SVME is the hypervisor's).
    fn efer(&self) -> u64 {
        self.vmcb.read_u64(EFER) & !EFER_SVME
    }

    fn set_efer(&mut self, efer: u64) {
        self.vmcb.write_u64(EFER, efer | EFER_SVME);
    }

    fn pat(&self) -> u64 {
        self.vmcb.read_u64(G_PAT)
    }

    fn set_pat(&mut self, pat: u64) {
        self.vmcb.write_u64(G_PAT, pat);
    }

    fn tsc_offset(&self) -> u64 {
        self.vmcb.read_u64(TSC_OFFSET)
    }

    fn set_tsc_offset(&mut self, off: u64) {
        self.vmcb.write_u64(TSC_OFFSET, off);
    }

    fn cr3(&self) -> u64 {
        self.vmcb.read_u64(CR3)
    }

    /// The guest's CR0 and CR4 are the hardware's (SVM owns no bits).
    fn set_cr0(&mut self, cr0: u64) {
        self.vmcb.write_u64(CR0, cr0);
    }

    fn set_cr4(&mut self, cr4: u64) {
        self.vmcb.write_u64(CR4, cr4);
    }

    fn clear_cs_long(&mut self) {
        let mut cs = self.vmcb.segment(CS);
        cs.attrib &= !(1 << 9);
        self.vmcb.set_segment(CS, cs);
    }

    /// Kept in the VMCB; without LBR virtualisation the CPU does not load
    /// it (as in Xen).
    fn set_debugctl(&mut self, value: u64) {
        self.vmcb.write_u64(DBGCTL, value);
    }

    fn paging(&self) -> Paging {
        Paging {
            cr0: self.vmcb.read_u64(CR0),
            cr3: self.vmcb.read_u64(CR3),
            cr4: self.vmcb.read_u64(CR4),
            efer: self.vmcb.read_u64(EFER),
        }
    }

    /// 16, 32 or 64: the guest's current code size.
    fn bitness(&self) -> u32 {
        let cs = self.vmcb.segment(CS);
        let lma = self.vmcb.read_u64(EFER) & (1 << 10) != 0;
        if lma && cs.attrib & (1 << 9) != 0 {
            64
        } else if self.vmcb.read_u64(CR0) & 1 == 0 || cs.attrib & (1 << 10) == 0 {
            16
        } else {
            32
        }
    }

    fn cs_base(&self) -> u64 {
        if self.bitness() == 64 { 0 } else { self.vmcb.segment(CS).base }
    }

    fn segment_base(&self, seg: Seg) -> u64 {
        let off = match seg {
            Seg::Es => ES,
            Seg::Cs => CS,
            Seg::Ss => SS,
            Seg::Ds => DS,
            Seg::Fs => FS,
            Seg::Gs => GS,
        };
        self.vmcb.segment(off).base
    }

    /// VMLOAD/VMSAVE switch the guest's hidden state on every run; what
    /// they do not (PKRU, TSC_AUX, and DR0-3 if its DR7 enables a
    /// breakpoint) is loaded here, and its ASID checked at the next entry
    /// (one from another CPU or generation is void).
    fn switch_in(&mut self) {
        self.iso.switch_in();
        if self.vmcb.read_u64(DR7) & DR7_ACTIVE != 0 {
            self.load_debug_regs();
        }
        self.host_vmcb = crate::arch::x86_64::percpu::this_cpu().map_or(0, |p| p.host_vmcb.load(Ordering::Relaxed));
    }

    /// Saves what the VMCB does not hold; the next vCPU finds MOV DR
    /// intercepted again (Xen's `svm_save_dr`).
    fn switch_out(&mut self) {
        self.iso.switch_out();
        if self.iso.dr_loaded {
            self.iso.save_debug_regs(false);
            self.vmcb.write_u32(INTERCEPT_DR, ALL_DR_INTERCEPTS);
        }
    }

    fn guest_state(&mut self) -> &mut GuestCpuState {
        &mut self.iso
    }

    /// Nothing is cached per CPU between runs.
    fn release(&mut self) {}

    /// Where the hardware says the next instruction starts, when it does.
    fn next_rip(&self) -> Option<u64> {
        if features().nrip_save { Some(self.vmcb.read_u64(NEXT_RIP)) } else { None }
    }

    /// Ends an interrupt shadow (after emulating the instruction under it).
    fn clear_interrupt_shadow(&mut self) {
        let s = self.vmcb.read_u64(INTERRUPT_STATE);
        self.vmcb.write_u64(INTERRUPT_STATE, s & !1);
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut ev = EVENT_VALID | EVENT_TYPE_EXCEPTION | vector as u64;
        if let Some(code) = error_code {
            ev |= EVENT_ERROR_VALID | (code as u64) << 32;
        }
        self.vmcb.write_u64(EVENTINJ, ev);
    }

    fn set_cr2(&mut self, cr2: u64) {
        self.vmcb.write_u64(CR2, cr2);
    }

    /// Drops cached translations of this vCPU: a fresh ASID at the next
    /// entry.
    fn flush_tlb(&mut self) {
        self.iso.asid.invalidate();
        self.iso.asid_stale = true;
    }

    /// Runs the guest until the next exit.
    fn run(&mut self, regs: &mut GuestRegs) -> VmExit {
        if let Some(vector) = self.irq_to_enter.take() {
            self.enter_interrupt(vector);
        }
        self.vmcb.write_u64(RAX, regs.rax);
        self.vmcb.write_u64(RSP, regs.rsp);
        let tlb = if self.iso.asid_stale { self.pick_asid() } else { TLB_NOTHING };
        self.vmcb.write_u8(TLB_CONTROL, tlb);
        // QEMU and older CPUs keep no VMCB state cache; on CPUs that do,
        // nothing may be reused because every field may have changed.
        self.vmcb.write_u32(CLEAN_BITS, 0);
        let host = self.host_vmcb;
        self.iso.before_entry();
        // SAFETY: both VMCBs are valid, page-aligned and set up above;
        // `regs` outlives the call; interrupts are off (the run loop's
        // invariant).
        unsafe { svm_vmrun(self.vmcb_phys, host, regs) };
        self.iso.after_exit();
        regs.rax = self.vmcb.read_u64(RAX);
        regs.rsp = self.vmcb.read_u64(RSP);
        // An event the exit interrupted must still be delivered.
        let pending = self.vmcb.read_u64(EXITINTINFO);
        let cut_short = pending & EVENT_VALID != 0;
        if let Some(vector) = self.irq_offered.take() {
            self.settle_offered_interrupt(vector, cut_short.then_some(pending));
        } else if cut_short {
            self.vmcb.write_u64(EVENTINJ, pending);
        }
        self.exit()
    }

    /// The fields that matter when VMRUN refuses the guest state.
    fn dump(&self, out: &mut impl fmt::Write) {
        let v = &self.vmcb;
        let seg = |o| v.segment(o);
        let _ = writeln!(
            out,
            "    rip {:#x} rflags {:#x} cpl {} efer {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x}",
            v.read_u64(RIP),
            v.read_u64(RFLAGS),
            v.read_u8(CPL),
            v.read_u64(EFER),
            v.read_u64(CR0),
            v.read_u64(CR3),
            v.read_u64(CR4)
        );
        for (name, o) in [("cs", CS), ("ss", SS), ("ds", DS), ("tr", TR)] {
            let s = seg(o);
            let _ = writeln!(
                out,
                "    {name} sel {:#x} attr {:#x} limit {:#x} base {:#x}",
                s.selector, s.attrib, s.limit, s.base
            );
        }
        let (idtr, gdtr) = (seg(IDTR), seg(GDTR));
        let _ = writeln!(
            out,
            "    rsp {:#x} idtr {:#x}+{:#x} gdtr {:#x}+{:#x} interrupt state {:#x}",
            v.read_u64(RSP),
            idtr.base,
            idtr.limit,
            gdtr.base,
            gdtr.limit,
            v.read_u64(INTERRUPT_STATE)
        );
        let _ = writeln!(
            out,
            "    asid {} n_cr3 {:#x} eventinj {:#x} exitintinfo {:#x} exitinfo1 {:#x} exitinfo2 {:#x}",
            v.read_u32(GUEST_ASID),
            v.read_u64(N_CR3),
            v.read_u64(EVENTINJ),
            v.read_u64(EXITINTINFO),
            v.read_u64(EXITINFO1),
            v.read_u64(EXITINFO2)
        );
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        let _ = free_frames(self.vmcb_phys, 1);
    }
}
