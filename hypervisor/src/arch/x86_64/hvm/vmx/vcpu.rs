//! A vCPU on VT-x: its VMCS, the world switch (`vmx_enter`), and the
//! operations of `VendorVcpu`.

use super::caps::*;
use super::hw::*;
use super::vmcs::*;
use crate::arch::x86_64::cpu::{self, rdmsr, wrmsr};
use crate::arch::x86_64::hvm::exit::{CrWrite, IoExit, NpfAccess, VmExit};
use crate::arch::x86_64::hvm::isolation::asid::Flush;
use crate::arch::x86_64::hvm::isolation::hw::{self as iso, GuestCpuState};
use crate::arch::x86_64::hvm::regs::GuestRegs;
use crate::arch::x86_64::hvm::regs::Seg;
use crate::arch::x86_64::hvm::vcpu_init::{ATTR_P, InitialState};
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::arch::x86_64::insn::Expected;
use crate::arch::x86_64::percpu;
use crate::memory::guest_mem::Paging;
use crate::mm::addr::Gpa;
use crate::mm::phys::{alloc_zeroed_frame, free_frames, phys_to_virt};
use core::arch::asm;
use core::fmt;
use core::sync::atomic::Ordering;

unsafe extern "C" {
    /// Enters the guest with the current VMCS. Returns 0 after a VM exit, 1
    /// if VMLAUNCH/VMRESUME failed with no current VMCS, 2 if it failed
    /// with an error number in the VMCS.
    fn vmx_enter(regs: *mut GuestRegs, launched: u32) -> u32;
    fn vmx_exit_entry();
}

core::arch::global_asm!(
    concat!(
        r#"
    .section .text.vmx_enter, "ax"
    .global vmx_enter
vmx_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
"#,
        crate::verw_if_wanted!(),
        r#"    mov rax, rdi
    test esi, esi
"#,
        crate::guest_gprs_load!(),
        r#"    mov rax, [rax]
    jnz 2f
    vmlaunch
    jmp 3f
2:  vmresume
3:  pushfq
    pop rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    test eax, 1
    mov eax, 1
    jnz 4f
    mov eax, 2
4:  ret

    .global vmx_exit_entry
vmx_exit_entry:
"#,
        crate::rsb_overwrite!(),
        r#"    push rax
    mov rax, [rsp + 8]
"#,
        crate::guest_gprs_store!(),
        r#"    pop rbx
    mov [rax], rbx
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret
"#
    ),
    host_rsp = const HOST_RSP,
);

/// The VMX-preemption timer's start value: one scheduler slice.
///
/// A backstop, not the scheduler's clock: the host tick normally ends a
/// slice through external-interrupt exiting. Some VT-x implementations
/// (Bochs 2.7) do not deliver that exit to a guest that entered with
/// RFLAGS.IF clear until the guest itself touches IF, so a guest spinning
/// with interrupts off would keep the CPU. The preemption timer exits
/// regardless, and the pending tick is then taken at the interrupt window.
///
/// The value is the same at every entry (the TSC rate and the slice are
/// fixed once the CPUs run guests): worked out at the first entry and
/// kept, not recomputed (a multiplication and a division) at each.
fn slice_backstop(shift: u8) -> u64 {
    let kept = BACKSTOP.load(Ordering::Relaxed);
    if kept != 0 {
        return kept;
    }
    let khz = crate::time::tsc_khz();
    let tsc_per_tick = khz * (SLICE_NS.load(Ordering::Relaxed) / 1_000_000);
    let v = (tsc_per_tick >> shift).clamp(1, u32::MAX as u64);
    if khz != 0 {
        BACKSTOP.store(v, Ordering::Relaxed);
    }
    v
}

/// `slice_backstop`'s value once worked out (0 before).
static BACKSTOP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A vCPU's VMX state.
pub struct VmxVcpu {
    vmcs: u64,
    launched: bool,
    /// The CPU on which the VMCS is active (loaded, not yet VMCLEARed).
    active_on: core::cell::Cell<Option<u32>>,
    /// The CPU it last ran on (host state and TLBs are per CPU).
    last_cpu: Option<u32>,
    eptp: u64,
    /// INVEPT before the next entry (a p2m change, or a new CPU).
    flush: bool,
    /// What the VMCS does not switch, and the vCPU's VPID.
    iso: GuestCpuState,
    /// CR2 is not in the VMCS: the guest's value, restored before entry.
    cr2: u64,
    /// The guest's CR8 (task priority): kept here so it cannot block host
    /// interrupts.
    cr8: u64,
    /// Registers VMX does not switch, loaded while the vCPU has the CPU.
    syscall_msrs: [u64; 5],
    /// Exit-reason details of the last exit, for reports.
    last_qualification: u64,
}

// SAFETY: the VMCS page belongs to this vCPU and is only used by the CPU
// that runs it.
unsafe impl Send for VmxVcpu {}

const SYSCALL_MSRS: [u32; 5] = [MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK, MSR_KERNEL_GS_BASE];
impl VmxVcpu {
    pub fn new(ept_root: u64, io_bitmap: Option<u64>) -> Result<VmxVcpu, VmxError> {
        let f = features();
        let vmcs = alloc_zeroed_frame().ok_or(VmxError::NoMemory)?;
        let v = phys_to_virt(vmcs).ok_or(VmxError::NoMemory)?;
        // SAFETY: a fresh page: the revision identifier goes first.
        unsafe { core::ptr::write_volatile(v as *mut u32, f.revision) };
        if !vmclear(vmcs) || !vmptrld(vmcs) {
            let _ = free_frames(vmcs, 1);
            return Err(VmxError::NoMemory);
        }
        percpu::set_current_vmcs(vmcs);
        let eptp = ept_root | (3 << 3) | 6;
        let mut me = VmxVcpu {
            vmcs,
            launched: false,
            active_on: core::cell::Cell::new(Some(percpu::cpu_index())),
            last_cpu: None,
            eptp,
            flush: true,
            iso: GuestCpuState::new(),
            cr2: 0,
            cr8: 0,
            syscall_msrs: [0; 5],
            last_qualification: 0,
        };
        me.write_controls(f, io_bitmap);
        me.write_host_state();
        Ok(me)
    }

    fn write_controls(&mut self, f: &VmxFeatures, io_bitmap: Option<u64>) {
        vmwrite(PIN_BASED_CONTROLS, f.pin as u64);
        vmwrite(PRIMARY_CONTROLS, f.cpu as u64);
        vmwrite(SECONDARY_CONTROLS, f.cpu2 as u64);
        vmwrite(EXIT_CONTROLS, f.exit as u64);
        vmwrite(ENTRY_CONTROLS, f.entry as u64);
        // #DB and #AC so a guest cannot hang the CPU in an exception loop,
        // #MC for the host, #UD for the other vendor's hypercall.
        vmwrite(EXCEPTION_BITMAP, 1 << 1 | 1 << 6 | 1 << 17 | 1 << 18);
        vmwrite(PAGE_FAULT_ERROR_CODE_MASK, 0);
        vmwrite(PAGE_FAULT_ERROR_CODE_MATCH, 0);
        vmwrite(CR3_TARGET_COUNT, 0);
        vmwrite(EXIT_MSR_STORE_COUNT, 0);
        vmwrite(EXIT_MSR_LOAD_COUNT, 0);
        vmwrite(ENTRY_MSR_LOAD_COUNT, 0);
        vmwrite(ENTRY_INTERRUPTION_INFO, 0);
        vmwrite(MSR_BITMAP, *MSR_BITMAP_PA.get().expect("VMX initialised"));
        // Bitmap A then B: the same layout as a whole-port-space bitmap.
        let io = io_bitmap.unwrap_or_else(|| *IO_BITMAPS_PA.get().expect("VMX initialised"));
        vmwrite(IO_BITMAP_A, io);
        vmwrite(IO_BITMAP_B, io + 4096);
        vmwrite(EPT_POINTER, self.eptp);
        vmwrite(TSC_OFFSET, 0);
        // Every CR4 bit the guest may not set is owned too, so that a write
        // of one exits and is refused (Xen's cr4_host_mask); CD and NW so
        // that NW without CD faults.
        vmwrite(CR0_GUEST_HOST_MASK, cr0_owned(f) | CR0_CD | CR0_NW);
        let valid = crate::arch::x86_64::hvm::policy::guest_policy().cr4_valid();
        vmwrite(CR4_GUEST_HOST_MASK, cr4_owned(f) | !valid);
        vmwrite(VMCS_LINK_POINTER, u64::MAX);
    }

    fn write_host_state(&mut self) {
        vmwrite(HOST_CR0, read_cr(0));
        vmwrite(HOST_CR3, read_cr(3));
        vmwrite(HOST_CR4, read_cr(4));
        vmwrite(HOST_CS_SELECTOR, crate::arch::x86_64::gdt::KERNEL_CS as u64);
        for s in [HOST_SS_SELECTOR, HOST_DS_SELECTOR, HOST_ES_SELECTOR] {
            vmwrite(s, crate::arch::x86_64::gdt::KERNEL_DS as u64);
        }
        vmwrite(HOST_FS_SELECTOR, 0);
        vmwrite(HOST_GS_SELECTOR, 0);
        vmwrite(HOST_TR_SELECTOR, crate::arch::x86_64::gdt::TSS_SELECTOR as u64);
        vmwrite(HOST_FS_BASE, rdmsr(MSR_FS_BASE));
        vmwrite(HOST_GS_BASE, rdmsr(cpu::MSR_GS_BASE));
        vmwrite(HOST_TR_BASE, crate::arch::x86_64::gdt::tss_base());
        let (gdt, idt) = crate::arch::x86_64::gdt::table_bases();
        vmwrite(HOST_GDTR_BASE, gdt);
        vmwrite(HOST_IDTR_BASE, idt);
        vmwrite(HOST_SYSENTER_CS, rdmsr(MSR_SYSENTER_CS));
        vmwrite(HOST_SYSENTER_ESP, rdmsr(MSR_SYSENTER_ESP));
        vmwrite(HOST_SYSENTER_EIP, rdmsr(MSR_SYSENTER_EIP));
        vmwrite(HOST_IA32_PAT, rdmsr(MSR_PAT));
        vmwrite(HOST_IA32_EFER, rdmsr(cpu::MSR_EFER));
        vmwrite(HOST_RIP, vmx_exit_entry as *const () as u64);
    }

    /// Makes this VMCS the CPU's current one, which every VMREAD and
    /// VMWRITE acts on. Each accessor calls it first, so code that reaches
    /// another vCPU (building a domain from a hypercall, say) cannot leave
    /// the running vCPU's state in the wrong VMCS.
    ///
    /// Single CPU for now: a vCPU moving between CPUs needs VMCLEAR on the
    /// old one first (SMP bring-up).
    ///
    /// The check is inline in every accessor; the VMPTRLD is out of line.
    #[inline]
    fn load(&self) {
        if percpu::current_vmcs() != self.vmcs {
            self.load_slow();
        }
    }

    #[inline(never)]
    fn load_slow(&self) {
        let me = percpu::cpu_index();
        if let Some(other) = self.active_on.get()
            && other != me
        {
            // Active on another CPU: its cached state would be lost.
            log::error!("VMCS {:#x} is active on CPU{other}, used on CPU{me}", self.vmcs);
        }
        if !vmptrld(self.vmcs) {
            log::error!("VMPTRLD of the VMCS at {:#x} failed", self.vmcs);
        }
        percpu::set_current_vmcs(self.vmcs);
        self.active_on.set(Some(me));
    }

    /// Sets EFER.LMA and the "IA-32e mode guest" entry control from the
    /// guest's EFER.LME and CR0.PG (what the CPU does when paging turns on).
    fn sync_long_mode(&mut self) {
        let efer = vmread(GUEST_IA32_EFER);
        let pg = vmread(GUEST_CR0) & CR0_PG != 0;
        let lma = efer & EFER_LME != 0 && pg;
        vmwrite(GUEST_IA32_EFER, if lma { efer | EFER_LMA } else { efer & !EFER_LMA });
        let entry = vmread(ENTRY_CONTROLS);
        vmwrite(
            ENTRY_CONTROLS,
            if lma { entry | ENTRY_IA32E_MODE_GUEST as u64 } else { entry & !(ENTRY_IA32E_MODE_GUEST as u64) },
        );
    }

    fn exit(&mut self, regs: &mut GuestRegs) -> VmExit {
        let reason = vmread(EXIT_REASON);
        let q = vmread(EXIT_QUALIFICATION);
        self.last_qualification = q;
        if reason & EXIT_REASON_ENTRY_FAILURE != 0 {
            return VmExit::InvalidState;
        }
        match reason as u32 & 0xffff {
            EXIT_CPUID => VmExit::Cpuid,
            EXIT_RDMSR => VmExit::Rdmsr,
            EXIT_WRMSR => VmExit::Wrmsr,
            EXIT_VMCALL => VmExit::Hypercall(Expected::Vmcall),
            EXIT_HLT => VmExit::Hlt,
            EXIT_IO => {
                let string = q & (1 << 4) != 0;
                let info = vmread(EXIT_INSTRUCTION_INFO);
                VmExit::Io(IoExit {
                    port: (q >> 16) as u16,
                    size: ((q & 7) + 1) as u8,
                    input: q & (1 << 3) != 0,
                    string,
                    rep: q & (1 << 5) != 0,
                    addr_size: match (info >> 7) & 7 {
                        0 => 2,
                        1 => 4,
                        _ => 8,
                    },
                    next_rip: self.rip().wrapping_add(vmread(EXIT_INSTRUCTION_LEN)),
                })
            }
            EXIT_EPT_VIOLATION => VmExit::NestedPageFault {
                gpa: Gpa(vmread(GUEST_PHYSICAL_ADDRESS)),
                access: NpfAccess {
                    write: q & 2 != 0,
                    fetch: q & 4 != 0,
                    present: q & 0x38 != 0,
                    in_guest_walk: q & (1 << 7) != 0 && q & (1 << 8) == 0,
                },
            },
            // A misconfigured EPT entry would be the hypervisor's fault; the
            // domain cannot go on either way.
            EXIT_EPT_MISCONFIG => {
                VmExit::Unknown { code: EXIT_EPT_MISCONFIG as u64, info1: vmread(GUEST_PHYSICAL_ADDRESS), info2: q }
            }
            EXIT_EXCEPTION_NMI => {
                let info = vmread(EXIT_INTERRUPTION_INFO) as u32;
                if info & (7 << 8) == INTR_TYPE_NMI {
                    // The exit consumed the host's NMI (SVM would hold it
                    // pending): hand it to the host's handler now.
                    // SAFETY: vector 2's gate runs the NMI handler on its
                    // own IST stack and returns.
                    unsafe { asm!("int 2", options(nomem)) };
                    return VmExit::Nmi;
                }
                let vector = info as u8;
                VmExit::Exception {
                    vector,
                    error_code: (info & INTR_ERROR_VALID != 0).then(|| vmread(EXIT_INTERRUPTION_ERROR_CODE) as u32),
                    cr2: if vector == 14 { q } else { 0 },
                }
            }
            EXIT_EXTERNAL_INTERRUPT => VmExit::ExternalInterrupt,
            EXIT_PREEMPTION_TIMER => VmExit::SliceExpired,
            EXIT_INTERRUPT_WINDOW => VmExit::InterruptWindow,
            EXIT_TRIPLE_FAULT => VmExit::Shutdown,
            EXIT_CR_ACCESS => self.cr_access(regs, q),
            EXIT_DR_ACCESS => {
                self.load_debug_regs();
                VmExit::Handled
            }
            EXIT_INVD => VmExit::Invd,
            EXIT_WBINVD => VmExit::Wbinvd,
            EXIT_XSETBV => VmExit::Xsetbv,
            EXIT_PAUSE => VmExit::Pause,
            EXIT_MONITOR => VmExit::Undefined(Expected::Monitor),
            EXIT_MWAIT => VmExit::Undefined(Expected::Mwait),
            EXIT_RDPMC => VmExit::Undefined(Expected::Rdpmc),
            EXIT_VMCLEAR | EXIT_VMLAUNCH | EXIT_VMPTRLD | EXIT_VMPTRST | EXIT_VMREAD | EXIT_VMRESUME | EXIT_VMWRITE
            | EXIT_VMXOFF | EXIT_VMXON | EXIT_INVEPT | EXIT_INVVPID | EXIT_VMFUNC | EXIT_GETSEC => {
                VmExit::Undefined(Expected::Vmrun)
            }
            code => VmExit::Unknown { code: code as u64, info1: q, info2: vmread(GUEST_PHYSICAL_ADDRESS) },
        }
    }

    /// The guest touched a debug register: its DR0-3 and DR6 go into the
    /// CPU and MOV DR runs without exits until it leaves the CPU (Xen's
    /// lazy switch); the instruction runs again. Without MOV-DR exiting
    /// they are loaded whenever it gets the CPU.
    fn load_debug_regs(&mut self) {
        if !self.iso.dr_loaded {
            self.iso.load_debug_regs(true);
            let c = vmread(PRIMARY_CONTROLS);
            vmwrite(PRIMARY_CONTROLS, c & !(CPU_MOV_DR_EXITING as u64));
        }
    }

    /// The VPID for this entry, and INVVPID where it needs one.
    fn pick_vpid(&mut self) {
        self.iso.asid_stale = false;
        if features().cpu2 & CPU2_ENABLE_VPID == 0 {
            return;
        }
        let e = iso::asid_enter(&mut self.iso.asid);
        vmwrite(VPID, e.asid as u64);
        match e.flush {
            Flush::None => {}
            Flush::ThisTag => {
                // Tags are off: every vCPU shares VPID 1, flushed each entry.
                self.iso.asid_stale = true;
                invvpid(e.asid as u16);
            }
            Flush::All => invvpid_all(),
        }
    }

    /// MOV to/from CR0, CR4 (bits the hypervisor owns) and CR8 (always).
    /// CR8 is handled here, where the format lives; CR0 and CR4 writes go
    /// to the common code, which checks them against the guest's policy.
    fn cr_access(&mut self, regs: &mut GuestRegs, q: u64) -> VmExit {
        let cr = (q & 0xf) as u8;
        let kind = (q >> 4) & 3;
        let reg = ((q >> 8) & 0xf) as u8;
        match (kind, cr) {
            (0, 0 | 4) => return VmExit::CrWrite(CrWrite::Mov { cr, gpr: reg }),
            (2, _) => return VmExit::CrWrite(CrWrite::Clts),
            (3, _) => return VmExit::CrWrite(CrWrite::Lmsw((q >> 16) as u16)),
            (0, 8) => {
                let v = regs.by_number(reg);
                if v > 15 {
                    self.inject_exception(13, Some(0));
                    return VmExit::Handled;
                }
                self.cr8 = v;
            }
            (1, 8) => regs.set_by_number(reg, self.cr8),
            // MOV from CR0/CR4 reads the shadows without exiting.
            _ => {}
        }
        if regs.rsp != vmread(GUEST_RSP) {
            vmwrite(GUEST_RSP, regs.rsp);
        }
        self.set_rip(self.rip().wrapping_add(vmread(EXIT_INSTRUCTION_LEN)));
        VmExit::Handled
    }
}

impl VendorVcpu for VmxVcpu {
    /// Loads an architectural starting state (the PVH entry, a real-mode
    /// start after INIT and STARTUP, a VCPUOP_initialise context):
    /// unrestricted guest runs any of them as is.
    fn set_state(&mut self, st: &InitialState) {
        let f = features();
        self.load();
        // VMX access rights: the low byte as in a descriptor, AVL/L/DB/G
        // at bits 12-15, bit 16 for an unusable segment.
        let ar = |attr: u16| {
            if attr & ATTR_P == 0 { AR_UNUSABLE } else { (attr & 0xff) as u64 | ((attr as u64 & 0xf00) << 4) }
        };
        for (s, (sel, limit, arf, base)) in [
            (&st.es, (GUEST_ES_SELECTOR, GUEST_ES_LIMIT, GUEST_ES_AR, GUEST_ES_BASE)),
            (&st.cs, (GUEST_CS_SELECTOR, GUEST_CS_LIMIT, GUEST_CS_AR, GUEST_CS_BASE)),
            (&st.ss, (GUEST_SS_SELECTOR, GUEST_SS_LIMIT, GUEST_SS_AR, GUEST_SS_BASE)),
            (&st.ds, (GUEST_DS_SELECTOR, GUEST_DS_LIMIT, GUEST_DS_AR, GUEST_DS_BASE)),
            (&st.fs, (GUEST_FS_SELECTOR, GUEST_FS_LIMIT, GUEST_FS_AR, GUEST_FS_BASE)),
            (&st.gs, (GUEST_GS_SELECTOR, GUEST_GS_LIMIT, GUEST_GS_AR, GUEST_GS_BASE)),
            (&st.ldtr, (GUEST_LDTR_SELECTOR, GUEST_LDTR_LIMIT, GUEST_LDTR_AR, GUEST_LDTR_BASE)),
            (&st.tr, (GUEST_TR_SELECTOR, GUEST_TR_LIMIT, GUEST_TR_AR, GUEST_TR_BASE)),
        ] {
            vmwrite(sel, s.selector as u64);
            vmwrite(limit, s.limit as u64);
            vmwrite(arf, ar(s.attr));
            vmwrite(base, s.base);
        }
        vmwrite(GUEST_GDTR_BASE, st.gdtr.0);
        vmwrite(GUEST_GDTR_LIMIT, st.gdtr.1 as u64);
        vmwrite(GUEST_IDTR_BASE, st.idtr.0);
        vmwrite(GUEST_IDTR_LIMIT, st.idtr.1 as u64);
        vmwrite(GUEST_CR0, cr0_real(f, st.cr0));
        vmwrite(CR0_READ_SHADOW, st.cr0);
        vmwrite(GUEST_CR3, st.cr3);
        vmwrite(GUEST_CR4, cr4_real(f, st.cr4));
        vmwrite(CR4_READ_SHADOW, st.cr4);
        vmwrite(GUEST_DR7, 0x400);
        vmwrite(GUEST_RSP, st.regs.rsp);
        vmwrite(GUEST_RIP, st.rip);
        vmwrite(GUEST_RFLAGS, st.rflags);
        vmwrite(GUEST_PENDING_DBG_EXCEPTIONS, 0);
        vmwrite(GUEST_INTERRUPTIBILITY, 0);
        vmwrite(GUEST_ACTIVITY_STATE, 0);
        vmwrite(GUEST_SYSENTER_CS, 0);
        vmwrite(GUEST_SYSENTER_ESP, 0);
        vmwrite(GUEST_SYSENTER_EIP, 0);
        vmwrite(GUEST_IA32_DEBUGCTL, 0);
        vmwrite(GUEST_IA32_PAT, 0x0007_0406_0007_0406);
        vmwrite(GUEST_IA32_EFER, st.efer);
        vmwrite(ENTRY_CONTROLS, f.entry as u64);
        vmwrite(ENTRY_INTERRUPTION_INFO, 0);
        self.sync_long_mode();
        self.set_interrupt_window(false);
        self.cr2 = 0;
        self.cr8 = 0;
        self.syscall_msrs = [0; 5];
        self.flush = true;
        self.iso.reset(true);
        self.iso.asid.invalidate();
        self.iso.asid_stale = true;
    }

    /// Whether an external interrupt can be injected now: IF set, no
    /// STI or MOV-SS shadow, no event already being injected.
    fn interrupt_window_open(&self) -> bool {
        self.load();
        vmread(GUEST_RFLAGS) & (1 << 9) != 0
            && vmread(GUEST_INTERRUPTIBILITY) & 3 == 0
            && vmread(ENTRY_INTERRUPTION_INFO) as u32 & INTR_VALID == 0
    }

    fn inject_interrupt(&mut self, vector: u8) {
        self.load();
        vmwrite(ENTRY_INTERRUPTION_INFO, (INTR_VALID | INTR_TYPE_EXTERNAL | vector as u32) as u64);
    }

    /// Exit as soon as the guest can take an interrupt (or stop asking).
    fn set_interrupt_window(&mut self, on: bool) {
        self.load();
        let c = vmread(PRIMARY_CONTROLS);
        let want =
            if on { c | CPU_INTERRUPT_WINDOW_EXITING as u64 } else { c & !(CPU_INTERRUPT_WINDOW_EXITING as u64) };
        if want != c {
            vmwrite(PRIMARY_CONTROLS, want);
        }
    }

    fn inject_nmi(&mut self) {
        self.load();
        if vmread(GUEST_INTERRUPTIBILITY) & (1 << 3) == 0 && vmread(ENTRY_INTERRUPTION_INFO) as u32 & INTR_VALID == 0 {
            vmwrite(ENTRY_INTERRUPTION_INFO, (INTR_VALID | INTR_TYPE_NMI | 2) as u64);
        }
    }

    /// The guest's task priority (CR8), kept by the hypervisor.
    fn tpr(&self) -> u64 {
        self.cr8
    }

    fn set_tpr(&mut self, v: u64) {
        self.cr8 = v & 0xf;
    }

    /// Writes the VMCS back to memory and makes it inactive, so that any
    /// CPU may load it next (after running it, or after touching it from
    /// another vCPU's hypercall).
    fn release(&mut self) {
        if self.active_on.get().is_none() {
            return;
        }
        vmclear(self.vmcs);
        self.active_on.set(None);
        self.launched = false;
        if percpu::current_vmcs() == self.vmcs {
            percpu::set_current_vmcs(0);
        }
    }

    /// Makes this vCPU's VMCS current on this CPU and loads what VMX does
    /// not switch; host state and cached translations are renewed when the
    /// vCPU comes from another CPU.
    fn switch_in(&mut self) {
        self.load();
        let cpu = percpu::cpu_index();
        if self.last_cpu != Some(cpu) {
            self.write_host_state();
            self.flush = true;
            self.last_cpu = Some(cpu);
        }
        for (m, v) in SYSCALL_MSRS.iter().zip(self.syscall_msrs) {
            // SAFETY: architectural MSRs the hypervisor itself does not use.
            unsafe { wrmsr(*m, v) };
        }
        self.iso.switch_in();
        if vmread(GUEST_DR7) & 0xff != 0 || features().cpu & CPU_MOV_DR_EXITING == 0 {
            self.load_debug_regs();
        }
    }

    /// Saves what VMX does not switch and releases the VMCS (the vCPU may
    /// run on another CPU next).
    fn switch_out(&mut self) {
        for (m, v) in SYSCALL_MSRS.iter().zip(self.syscall_msrs.iter_mut()) {
            *v = rdmsr(*m);
        }
        self.iso.switch_out();
        if self.iso.dr_loaded {
            self.load();
            self.iso.save_debug_regs(true);
            let c = vmread(PRIMARY_CONTROLS);
            vmwrite(PRIMARY_CONTROLS, c | (features().cpu & CPU_MOV_DR_EXITING) as u64);
        }
        self.release();
    }

    fn guest_state(&mut self) -> &mut GuestCpuState {
        &mut self.iso
    }

    #[inline]
    fn rip(&self) -> u64 {
        self.load();
        vmread(GUEST_RIP)
    }

    #[inline]
    fn set_rip(&mut self, rip: u64) {
        self.load();
        vmwrite(GUEST_RIP, rip);
    }

    #[inline]
    fn rflags(&self) -> u64 {
        self.load();
        vmread(GUEST_RFLAGS)
    }

    #[inline]
    fn cpl(&self) -> u8 {
        self.load();
        ((vmread(GUEST_SS_AR) >> 5) & 3) as u8
    }

    fn efer(&self) -> u64 {
        self.load();
        vmread(GUEST_IA32_EFER)
    }

    fn set_efer(&mut self, efer: u64) {
        self.load();
        vmwrite(GUEST_IA32_EFER, efer);
        self.sync_long_mode();
    }

    fn pat(&self) -> u64 {
        self.load();
        vmread(GUEST_IA32_PAT)
    }

    fn set_pat(&mut self, pat: u64) {
        self.load();
        vmwrite(GUEST_IA32_PAT, pat);
    }

    fn tsc_offset(&self) -> u64 {
        self.load();
        vmread(TSC_OFFSET)
    }

    fn set_tsc_offset(&mut self, off: u64) {
        self.load();
        vmwrite(TSC_OFFSET, off);
    }

    #[inline]
    fn cr3(&self) -> u64 {
        self.load();
        vmread(GUEST_CR3)
    }

    /// The guest's value in the read shadow, the hardware's with the bits
    /// VMX needs; LMA follows CR0.PG and EFER.LME.
    fn set_cr0(&mut self, cr0: u64) {
        self.load();
        vmwrite(CR0_READ_SHADOW, cr0);
        vmwrite(GUEST_CR0, cr0_real(features(), cr0));
        self.sync_long_mode();
    }

    fn set_cr4(&mut self, cr4: u64) {
        self.load();
        vmwrite(CR4_READ_SHADOW, cr4);
        vmwrite(GUEST_CR4, cr4_real(features(), cr4));
    }

    fn clear_cs_long(&mut self) {
        self.load();
        vmwrite(GUEST_CS_AR, vmread(GUEST_CS_AR) & !(1 << 13));
    }

    /// Loaded by every VM entry.
    fn set_debugctl(&mut self, value: u64) {
        self.load();
        vmwrite(GUEST_IA32_DEBUGCTL, value);
    }

    /// The guest's view of its paging controls (CR0/CR4 through the read
    /// shadows for the bits the hypervisor owns).
    fn paging(&self) -> Paging {
        self.load();
        let f = features();
        let cr0 = (vmread(GUEST_CR0) & !cr0_owned(f)) | (vmread(CR0_READ_SHADOW) & cr0_owned(f));
        let cr4 = (vmread(GUEST_CR4) & !cr4_owned(f)) | (vmread(CR4_READ_SHADOW) & cr4_owned(f));
        Paging { cr0: cr0 | (vmread(GUEST_CR0) & CR0_PG), cr3: vmread(GUEST_CR3), cr4, efer: vmread(GUEST_IA32_EFER) }
    }

    #[inline]
    fn bitness(&self) -> u32 {
        self.load();
        let ar = vmread(GUEST_CS_AR);
        let lma = vmread(GUEST_IA32_EFER) & EFER_LMA != 0;
        if lma && ar & (1 << 13) != 0 {
            64
        } else if vmread(GUEST_CR0) & CR0_PE == 0 || ar & (1 << 14) == 0 {
            16
        } else {
            32
        }
    }

    #[inline]
    fn cs_base(&self) -> u64 {
        self.load();
        if self.bitness() == 64 { 0 } else { vmread(GUEST_CS_BASE) }
    }

    fn segment_base(&self, seg: Seg) -> u64 {
        self.load();
        vmread(match seg {
            Seg::Es => GUEST_ES_BASE,
            Seg::Cs => GUEST_CS_BASE,
            Seg::Ss => GUEST_SS_BASE,
            Seg::Ds => GUEST_DS_BASE,
            Seg::Fs => GUEST_FS_BASE,
            Seg::Gs => GUEST_GS_BASE,
        })
    }

    /// VMX reports the exiting instruction's length for instruction exits.
    #[inline]
    fn next_rip(&self) -> Option<u64> {
        self.load();
        Some(vmread(GUEST_RIP).wrapping_add(vmread(EXIT_INSTRUCTION_LEN)))
    }

    #[inline]
    fn clear_interrupt_shadow(&mut self) {
        self.load();
        let s = vmread(GUEST_INTERRUPTIBILITY);
        vmwrite(GUEST_INTERRUPTIBILITY, s & !3);
    }

    #[inline]
    fn complete_insn(&mut self, next: u64) -> bool {
        self.load();
        vmwrite(GUEST_RIP, next);
        let s = vmread(GUEST_INTERRUPTIBILITY);
        if s & 3 != 0 {
            vmwrite(GUEST_INTERRUPTIBILITY, s & !3);
        }
        vmread(GUEST_RFLAGS) & (1 << 8) != 0
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        self.load();
        let mut info = INTR_VALID | INTR_TYPE_HW_EXCEPTION | vector as u32;
        if let Some(c) = error_code {
            info |= INTR_ERROR_VALID;
            vmwrite(ENTRY_EXCEPTION_ERROR_CODE, c as u64);
        }
        vmwrite(ENTRY_INTERRUPTION_INFO, info as u64);
    }

    fn set_cr2(&mut self, cr2: u64) {
        self.cr2 = cr2;
    }

    /// EPT translations go with INVEPT, the rest with a fresh VPID.
    fn flush_tlb(&mut self) {
        self.flush = true;
        self.iso.asid.invalidate();
        self.iso.asid_stale = true;
    }

    fn run(&mut self, regs: &mut GuestRegs) -> VmExit {
        self.load();
        vmwrite(GUEST_RSP, regs.rsp);
        if let Some(shift) = features().preemption_timer_shift {
            vmwrite(GUEST_PREEMPTION_TIMER, slice_backstop(shift));
        }
        if self.flush {
            invept(self.eptp);
            self.flush = false;
        }
        if self.iso.asid_stale {
            self.pick_vpid();
        }
        if read_cr(2) != self.cr2 {
            // SAFETY: CR2 only holds the last page-fault address.
            unsafe { asm!("mov cr2, {}", in(reg) self.cr2, options(nomem, nostack)) };
        }
        self.iso.before_entry();
        // SAFETY: this vCPU's VMCS is current (switch_in) and fully set up;
        // interrupts are off (the run loop's invariant).
        let r = unsafe { vmx_enter(regs, self.launched as u32) };
        self.iso.after_exit();
        if r != 0 {
            return VmExit::InvalidState;
        }
        self.launched = true;
        self.cr2 = read_cr(2);
        regs.rsp = vmread(GUEST_RSP);
        // An event the exit interrupted must still be delivered.
        let idt = vmread(IDT_VECTORING_INFO) as u32;
        if idt & INTR_VALID != 0 {
            vmwrite(ENTRY_INTERRUPTION_INFO, (idt & !(1 << 12)) as u64);
            if idt & INTR_ERROR_VALID != 0 {
                vmwrite(ENTRY_EXCEPTION_ERROR_CODE, vmread(IDT_VECTORING_ERROR_CODE));
            }
            if matches!(idt & (7 << 8), INTR_TYPE_SW_INTERRUPT | INTR_TYPE_SW_EXCEPTION | INTR_TYPE_PRIV_SW_EXCEPTION) {
                vmwrite(ENTRY_INSTRUCTION_LEN, vmread(EXIT_INSTRUCTION_LEN));
            }
        }
        self.exit(regs)
    }

    /// The VM-instruction error and the fields that matter when an entry
    /// fails.
    fn dump(&self, out: &mut impl fmt::Write) {
        self.load();
        let reason = vmread(EXIT_REASON);
        if reason & EXIT_REASON_ENTRY_FAILURE != 0 {
            let _ = writeln!(
                out,
                "    VM entry failed: exit reason {} ({}), qualification {:#x}",
                reason & 0xffff,
                match reason as u32 & 0xffff {
                    EXIT_INVALID_GUEST_STATE => "invalid guest state",
                    EXIT_MSR_LOADING => "MSR loading",
                    EXIT_MACHINE_CHECK => "machine check",
                    _ => "?",
                },
                self.last_qualification
            );
        } else {
            // After a failed VMLAUNCH/VMRESUME this names why; after a
            // normal exit it is the last failed VMX instruction's, if any.
            let e = vmread(VM_INSTRUCTION_ERROR);
            let _ = writeln!(
                out,
                "    last exit reason {} qualification {:#x}; VM-instruction error {e} ({}); \
                 interruptibility {:#x} idt-vectoring {:#x} entry event {:#x}",
                reason & 0xffff,
                self.last_qualification,
                instruction_error(e),
                vmread(GUEST_INTERRUPTIBILITY),
                vmread(IDT_VECTORING_INFO),
                vmread(ENTRY_INTERRUPTION_INFO)
            );
        }
        let _ = writeln!(
            out,
            "    rip {:#x} rsp {:#x} rflags {:#x} cr0 {:#x} (shadow {:#x}) cr3 {:#x} cr4 {:#x} (shadow {:#x}) efer {:#x}",
            vmread(GUEST_RIP),
            vmread(GUEST_RSP),
            vmread(GUEST_RFLAGS),
            vmread(GUEST_CR0),
            vmread(CR0_READ_SHADOW),
            vmread(GUEST_CR3),
            vmread(GUEST_CR4),
            vmread(CR4_READ_SHADOW),
            vmread(GUEST_IA32_EFER)
        );
        for (name, sel, ar, limit, base) in [
            ("cs", GUEST_CS_SELECTOR, GUEST_CS_AR, GUEST_CS_LIMIT, GUEST_CS_BASE),
            ("ss", GUEST_SS_SELECTOR, GUEST_SS_AR, GUEST_SS_LIMIT, GUEST_SS_BASE),
            ("ds", GUEST_DS_SELECTOR, GUEST_DS_AR, GUEST_DS_LIMIT, GUEST_DS_BASE),
            ("tr", GUEST_TR_SELECTOR, GUEST_TR_AR, GUEST_TR_LIMIT, GUEST_TR_BASE),
        ] {
            let _ = writeln!(
                out,
                "    {name} sel {:#x} ar {:#x} limit {:#x} base {:#x}",
                vmread(sel),
                vmread(ar),
                vmread(limit),
                vmread(base)
            );
        }
        let _ = writeln!(
            out,
            "    controls pin {:#x} cpu {:#x} cpu2 {:#x} exit {:#x} entry {:#x} eptp {:#x} vpid {}",
            vmread(PIN_BASED_CONTROLS),
            vmread(PRIMARY_CONTROLS),
            vmread(SECONDARY_CONTROLS),
            vmread(EXIT_CONTROLS),
            vmread(ENTRY_CONTROLS),
            vmread(EPT_POINTER),
            self.iso.asid.asid()
        );
    }
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        self.release();
        let _ = free_frames(self.vmcs, 1);
    }
}
