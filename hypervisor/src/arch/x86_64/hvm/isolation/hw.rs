//! The isolation measures on the hardware: the policy chosen at boot
//! (`spec::policy` for this CPU), each CPU's ASID/VPID allocator, IBPB on
//! a switch to another vCPU, the speculation work around every entry and
//! exit, and the per-vCPU state the CPU does not switch by itself (debug
//! registers, PKRU, TSC_AUX, MSR_SPEC_CTRL).

use super::asid::{AsidCore, Entry, VcpuAsid};
use super::msrs::{self, Action, GuestOffer, VcpuMsrs};
use super::spec::{self, HostSpec, SpecPolicy};
use crate::arch::x86_64::cpu::{self, rdmsr, wrmsr};
use crate::arch::x86_64::percpu;
use crate::util::cpumask::MAX_CPUS;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// What was decided at boot.
struct Global {
    policy: SpecPolicy,
    offer: GuestOffer,
    /// The CPU has PKRU (CR4.PKE can be set, by the host or a guest).
    pku: bool,
    /// The CPU has TSC_AUX (RDTSCP or RDPID read it).
    tsc_aux: bool,
}

static GLOBAL: spin::Once<Global> = spin::Once::new();

/// Work before each entry or after each exit beyond the RSB overwrite
/// (which the world-switch code always does): bits of `WORK_*`. One load
/// tells the common case (none) apart.
static WORK: AtomicU8 = AtomicU8::new(0);
const WORK_L1D_FLUSH: u8 = 1 << 0;
const WORK_IBPB_EXIT: u8 = 1 << 1;
const WORK_SPEC_CTRL: u8 = 1 << 2;

/// Read by the world-switch code right before entry: 1 when VERW must
/// clear the CPU's buffers, with the selector it verifies.
#[unsafe(no_mangle)]
pub static hv_verw_entry: AtomicU8 = AtomicU8::new(0);
#[unsafe(no_mangle)]
pub static hv_verw_sel: u16 = crate::arch::x86_64::gdt::KERNEL_DS;

const MSR_PRED_CMD: u32 = msrs::PRED_CMD;
const MSR_FLUSH_CMD: u32 = msrs::FLUSH_CMD;
const MSR_SPEC_CTRL: u32 = msrs::SPEC_CTRL;
const MSR_ARCH_CAPABILITIES: u32 = msrs::ARCH_CAPABILITIES;
const MSR_TSC_AUX: u32 = msrs::TSC_AUX;
const CR4_PKE: u64 = 1 << 22;

/// Overwrites the return stack buffer with 32 harmless entries (Xen's
/// DO_OVERWRITE_RSB, unrolled): after a VM exit its entries are the
/// guest's, and a `ret` the hypervisor runs deeper than its calls would
/// be predicted to a guest-chosen target. Touches only RSP and the flags;
/// for the world-switch code, before its first `ret` after the exit.
#[macro_export]
macro_rules! rsb_overwrite {
    () => {
        "    .rept 32\n    call 7f\n    int3\n7:\n    .endr\n    add rsp, 256\n"
    };
}

/// VERW right before entry when `hv_verw_entry` says so (MDS and its
/// relatives): clears the buffers the hypervisor's data went through.
/// Touches the flags only.
#[macro_export]
macro_rules! verw_if_wanted {
    () => {
        "    cmp byte ptr [rip + hv_verw_entry], 0\n    je 8f\n    verw word ptr [rip + hv_verw_sel]\n8:\n"
    };
}

/// Decides the measures for this CPU, prints them as Xen does, and
/// returns nothing; `rdtscp_ok` says whether the backend can let guests
/// run RDTSCP/RDPID (VT-x: the "enable RDTSCP" control).
pub fn init_boot(rdtscp_ok: bool) {
    let f = cpu::features();
    let host = HostSpec::read(
        f.vendor,
        (f.family, f.model, f.stepping),
        |l, s| {
            let r = cpu::cpuid(l, s);
            [r.eax, r.ebx, r.ecx, r.edx]
        },
        || rdmsr(MSR_ARCH_CAPABILITIES),
    );
    let policy = spec::policy(&host);
    let l7_ecx = if f.max_leaf >= 7 { cpu::cpuid(7, 0).ecx } else { 0 };
    let rdtscp_hw = f.max_ext_leaf >= 0x8000_0001 && cpu::cpuid(0x8000_0001, 0).edx & (1 << 27) != 0;
    let rdpid_hw = l7_ecx & (1 << 22) != 0;
    let pku = l7_ecx & (1 << 3) != 0;
    let offer = GuestOffer { spec: policy.guest, rdtscp: rdtscp_hw && rdtscp_ok, rdpid: rdpid_hw && rdtscp_ok };
    let mut work = 0;
    if policy.l1d_flush_entry {
        work |= WORK_L1D_FLUSH;
    }
    if policy.ibpb_entry {
        work |= WORK_IBPB_EXIT;
    }
    if policy.msr_spec_ctrl {
        work |= WORK_SPEC_CTRL;
    }
    WORK.store(work, Ordering::Relaxed);
    hv_verw_entry.store(policy.verw_entry as u8, Ordering::Relaxed);
    GLOBAL.call_once(|| Global { policy, offer, pku, tsc_aux: rdtscp_hw || rdpid_hw });
    let mut s = alloc::string::String::new();
    let _ = spec::describe(&host, &policy, &mut s);
    for line in s.lines() {
        log::info!("{line}");
    }
    log::info!(
        "HVM: per-vCPU state switched: debug registers (lazily, MOV DR intercepted){}{}; guests offered{}{}{}",
        if pku { ", PKRU" } else { "" },
        if rdtscp_hw || rdpid_hw { ", TSC_AUX" } else { "" },
        if offer.rdtscp { " RDTSCP" } else { "" },
        if offer.rdpid { " RDPID" } else { "" },
        if offer.rdtscp || offer.rdpid { "" } else { " neither RDTSCP nor RDPID" },
    );
    init_cpu();
}

/// Per CPU: CR4.PKE on where the CPU has protection keys, so the
/// hypervisor can read and write PKRU (its own pages are all supervisor
/// pages, which keys do not restrict).
pub fn init_cpu() {
    if GLOBAL.get().is_some_and(|g| g.pku) {
        // SAFETY: PKE only adds checks on user pages, which the
        // hypervisor's page tables have none of.
        unsafe {
            core::arch::asm!("mov {t}, cr4", "or {t}, {pke}", "mov cr4, {t}", t = out(reg) _, pke = in(reg) CR4_PKE,
                options(nostack, nomem))
        };
    }
}

/// What guests are offered (nothing before `init_boot`).
pub fn offer() -> &'static GuestOffer {
    static NOTHING: GuestOffer = GuestOffer { spec: super::spec::GuestSpec::NONE, rdtscp: false, rdpid: false };
    GLOBAL.get().map_or(&NOTHING, |g| &g.offer)
}

// --- ASIDs / VPIDs ---------------------------------------------------------

/// Each CPU's allocator, touched only by that CPU with interrupts off.
struct CpuLocal([UnsafeCell<Option<AsidCore>>; MAX_CPUS]);
// SAFETY: slot i is only used by CPU i, in the run loop (interrupts off).
unsafe impl Sync for CpuLocal {}
static CORES: CpuLocal = CpuLocal([const { UnsafeCell::new(None) }; MAX_CPUS]);
/// Tags the hardware offers (set by the backend at boot).
static TAGS: AtomicU32 = AtomicU32::new(0);

/// The backend says how many tags (ASIDs or VPIDs, 0 included) it has.
pub fn set_tag_count(n: u32) {
    TAGS.store(n, Ordering::Relaxed);
}

/// The tag and flush for `a`'s entry on this CPU.
pub fn asid_enter(a: &mut VcpuAsid) -> Entry {
    let cpu = percpu::cpu_index();
    let slot = &CORES.0[cpu as usize % MAX_CPUS];
    // SAFETY: this CPU's own slot, used with interrupts off (see CpuLocal).
    let core = unsafe { &mut *slot.get() }.get_or_insert_with(|| AsidCore::new(TAGS.load(Ordering::Relaxed)));
    a.enter(core, cpu)
}

// --- switching vCPUs --------------------------------------------------------

/// The vCPU each CPU ran last (domain id << 16 | vCPU id, plus one), for
/// IBPB: Xen's `opt_ibpb_ctxt_switch`, which skips it only when a CPU goes
/// back to the very vCPU it left.
static LAST: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// A CPU is about to run vCPU `vcpu` of domain `domid`.
pub fn context_switch(domid: u16, vcpu: u32) {
    let Some(g) = GLOBAL.get() else { return };
    if !g.policy.ibpb_ctxt_switch {
        return;
    }
    let id = ((domid as u32) << 16 | (vcpu & 0xffff)).wrapping_add(1);
    let last = &LAST[percpu::cpu_index() as usize % MAX_CPUS];
    if last.swap(id, Ordering::Relaxed) != id {
        ibpb();
    }
}

fn ibpb() {
    // SAFETY: a command MSR the CPU has (checked by the policy).
    unsafe { wrmsr(MSR_PRED_CMD, msrs::PRED_CMD_IBPB) };
}

/// A vCPU's state that no VMCB/VMCS field switches.
#[derive(Debug, Default)]
pub struct GuestCpuState {
    pub msrs: VcpuMsrs,
    pub pkru: u32,
    /// DR0-3, and DR6 where the VMCS has no field for it (VT-x).
    pub dr: [u64; 4],
    pub dr6: u64,
    /// The guest's DR0-3 (and DR6 on VT-x) are in the hardware and MOV DR
    /// is not intercepted.
    pub dr_loaded: bool,
    pub asid: VcpuAsid,
    /// The tag must be (re)checked at the next entry: set when the vCPU
    /// gets the CPU and by a flush request.
    pub asid_stale: bool,
    /// Between switch_in and switch_out: PKRU and TSC_AUX in the CPU are
    /// this vCPU's.
    on_cpu: bool,
}

impl GuestCpuState {
    pub fn new() -> GuestCpuState {
        GuestCpuState { dr6: 0xffff_0ff0, asid_stale: true, ..GuestCpuState::default() }
    }

    /// The vCPU gets this CPU: its PKRU and TSC_AUX go into the hardware,
    /// and its tag is checked at the next entry.
    pub fn switch_in(&mut self) {
        self.asid_stale = true;
        self.on_cpu = true;
        let Some(g) = GLOBAL.get() else { return };
        if g.pku {
            wrpkru(self.pkru);
        }
        if g.tsc_aux {
            // SAFETY: TSC_AUX exists (RDTSCP or RDPID); the hypervisor does
            // not use it.
            unsafe { wrmsr(MSR_TSC_AUX, self.msrs.tsc_aux) };
        }
    }

    /// The vCPU leaves the CPU: PKRU, which the guest writes directly, is
    /// read back.
    pub fn switch_out(&mut self) {
        self.on_cpu = false;
        if GLOBAL.get().is_some_and(|g| g.pku) {
            self.pkru = rdpkru();
        }
    }

    /// A starting state (INIT, VCPUOP_initialise): debug registers as
    /// after reset, in the hardware too if they are loaded; PKRU 0.
    pub fn reset(&mut self, with_dr6: bool) {
        self.dr = [0; 4];
        self.dr6 = 0xffff_0ff0;
        self.pkru = 0;
        if self.dr_loaded {
            self.load_debug_regs(with_dr6);
        }
        if self.on_cpu && GLOBAL.get().is_some_and(|g| g.pku) {
            wrpkru(0);
        }
    }

    /// Loads the guest's DR0-3 (and DR6 if `with_dr6`) into the hardware.
    pub fn load_debug_regs(&mut self, with_dr6: bool) {
        // SAFETY: debug address registers take any value; breakpoints in
        // them act only where DR7 (the guest's, in its VMCB/VMCS) enables
        // them, i.e. in the guest.
        unsafe {
            core::arch::asm!("mov dr0, {}", in(reg) self.dr[0], options(nomem, nostack));
            core::arch::asm!("mov dr1, {}", in(reg) self.dr[1], options(nomem, nostack));
            core::arch::asm!("mov dr2, {}", in(reg) self.dr[2], options(nomem, nostack));
            core::arch::asm!("mov dr3, {}", in(reg) self.dr[3], options(nomem, nostack));
            if with_dr6 {
                core::arch::asm!("mov dr6, {}", in(reg) self.dr6, options(nomem, nostack));
            }
        }
        self.dr_loaded = true;
    }

    /// Reads the guest's DR0-3 (and DR6) back from the hardware.
    pub fn save_debug_regs(&mut self, with_dr6: bool) {
        let (a, b, c, d, e): (u64, u64, u64, u64, u64);
        // SAFETY: reading debug registers has no side effects.
        unsafe {
            core::arch::asm!("mov {}, dr0", out(reg) a, options(nomem, nostack));
            core::arch::asm!("mov {}, dr1", out(reg) b, options(nomem, nostack));
            core::arch::asm!("mov {}, dr2", out(reg) c, options(nomem, nostack));
            core::arch::asm!("mov {}, dr3", out(reg) d, options(nomem, nostack));
            core::arch::asm!("mov {}, dr6", out(reg) e, options(nomem, nostack));
        }
        self.dr = [a, b, c, d];
        if with_dr6 {
            self.dr6 = e;
        }
        self.dr_loaded = false;
    }

    /// Right before entry (interrupts off): the guest's MSR_SPEC_CTRL and
    /// the L1D flush, where the policy asks for them.
    #[inline]
    pub fn before_entry(&self) {
        let w = WORK.load(Ordering::Relaxed);
        if w != 0 {
            self.entry_work(w);
        }
    }

    #[cold]
    fn entry_work(&self, w: u8) {
        if w & WORK_SPEC_CTRL != 0 && self.msrs.spec_ctrl != 0 {
            // SAFETY: the CPU has MSR_SPEC_CTRL; the value passed the
            // guest policy's valid-bits check.
            unsafe { wrmsr(MSR_SPEC_CTRL, self.msrs.spec_ctrl) };
        }
        if w & WORK_L1D_FLUSH != 0 {
            // SAFETY: the CPU has L1D_FLUSH (checked by the policy).
            unsafe { wrmsr(MSR_FLUSH_CMD, msrs::FLUSH_CMD_L1D) };
        }
    }

    /// Right after the exit (the RSB is already overwritten): the host's
    /// MSR_SPEC_CTRL back, and IBPB where the policy asks for it.
    #[inline]
    pub fn after_exit(&self) {
        let w = WORK.load(Ordering::Relaxed);
        if w != 0 {
            self.exit_work(w);
        }
    }

    #[cold]
    fn exit_work(&self, w: u8) {
        if w & WORK_SPEC_CTRL != 0 && self.msrs.spec_ctrl != 0 {
            // SAFETY: as in entry_work; the host's value is 0.
            unsafe { wrmsr(MSR_SPEC_CTRL, 0) };
        }
        if w & WORK_IBPB_EXIT != 0 {
            ibpb();
        }
    }
}

/// RDMSR of one of the MSRs `msrs` answers for.
pub fn read_msr(msr: u32, st: &GuestCpuState) -> msrs::Answer<u64> {
    msrs::read(msr, offer(), &st.msrs)
}

/// WRMSR of one of them; a command (IBPB, L1D flush) is carried out.
pub fn write_msr(msr: u32, value: u64, st: &mut GuestCpuState) -> msrs::Answer<()> {
    match msrs::write(msr, value, offer(), &mut st.msrs) {
        msrs::Answer::Ok(a) => {
            match a {
                Action::Ibpb => ibpb(),
                // SAFETY: offered only where the CPU has it.
                Action::L1dFlush => unsafe { wrmsr(MSR_FLUSH_CMD, msrs::FLUSH_CMD_L1D) },
                Action::None => {}
            }
            if msr == MSR_TSC_AUX && st.on_cpu {
                // SAFETY: TSC_AUX exists where it is offered.
                unsafe { wrmsr(MSR_TSC_AUX, st.msrs.tsc_aux) };
            }
            msrs::Answer::Ok(())
        }
        msrs::Answer::Gp => msrs::Answer::Gp,
        msrs::Answer::NotMine => msrs::Answer::NotMine,
    }
}

fn rdpkru() -> u32 {
    let v: u32;
    // SAFETY: CR4.PKE is set on every CPU that has PKU (init_cpu).
    unsafe { core::arch::asm!("rdpkru", in("ecx") 0, out("eax") v, out("edx") _, options(nomem, nostack)) };
    v
}

fn wrpkru(v: u32) {
    // SAFETY: as for rdpkru; PKRU restricts user pages only.
    unsafe { core::arch::asm!("wrpkru", in("ecx") 0, in("edx") 0, in("eax") v, options(nostack)) };
}
