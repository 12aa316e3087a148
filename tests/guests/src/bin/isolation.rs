//! Attacks the isolation between vCPUs that share a CPU. Run several
//! domains of it at once (`cmdline="mark=N"`, a different N each, and
//! `vcpus=` up to 8): every vCPU, round after round, puts its own values
//! in the state the CPU does not switch by itself (DR0-3, DR6, DR7, PKRU
//! when CR4.PKE can be set, TSC_AUX when offered, MSR_SPEC_CTRL when
//! offered), gives the CPU away, and checks it reads its own values back.
//! Its DR0 watches, for writes, a variable only domains of the other
//! parity write (the same address in every domain, as they are one
//! image), with breakpoints enabled: a vCPU that ran with another
//! domain's DR0 takes a #DB it never asked for. Every domain also maps
//! one page of its own at the same virtual address with its mark in it
//! and reads it every round: with more vCPUs than the CPU has TLB tags
//! (QEMU's SVM has 15 ASIDs for guests), a translation another domain
//! left under a recycled tag would show that domain's mark.
//!
//! vCPU 0 first checks that what CPUID offers matches what the MSRs do:
//! SPEC_CTRL, PRED_CMD, ARCH_CAPABILITIES and FLUSH_CMD answer exactly
//! when CPUID lists them (#GP otherwise), TSC_AUX when RDTSCP or RDPID is
//! offered, and RDTSCP raises #UD when it is not.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use test_guests::x86::{self, rdmsr, vcpu_op, wrmsr};
use test_guests::xen::{self, Args};
use test_guests::*;
use xen_abi::vcpu::VCPUOP_IS_UP;

const SPEC_CTRL: u32 = 0x48;
const PRED_CMD: u32 = 0x49;
const ARCH_CAPS: u32 = 0x10a;
const FLUSH_CMD: u32 = 0x10b;
const TSC_AUX: u32 = 0xc000_0103;
const CR4_PKE: u64 = 1 << 22;
/// The mark page's virtual address: PML4 slot 2, nothing else there.
const MARK_VA: u64 = 2 << 39;

// --- catching faults on purpose --------------------------------------------

/// Where a probed instruction resumes after #GP/#UD (0: a fault is a bug).
#[unsafe(no_mangle)]
static ISO_FIXUP: AtomicU64 = AtomicU64::new(0);
/// The vector of the last probed fault (0: none).
#[unsafe(no_mangle)]
static ISO_FAULT: AtomicU64 = AtomicU64::new(0);
/// #DB exceptions taken: none is ever asked for.
#[unsafe(no_mangle)]
static ISO_DB: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text.iso_traps, "ax"
iso_trap_gp:
    add rsp, 8
    push 13
    jmp iso_fault
iso_trap_ud:
    push 6
iso_fault:
    push rax
    mov rax, [rip + ISO_FIXUP]
    test rax, rax
    jz 3f
    mov [rsp + 16], rax
    mov qword ptr [rip + ISO_FIXUP], 0
    mov rax, [rsp + 8]
    mov [rip + ISO_FAULT], rax
    pop rax
    add rsp, 8
    iretq
3:  mov rdi, [rsp + 8]
    mov rsi, [rsp + 16]
    and rsp, -16
    call iso_unexpected
iso_trap_db:
    lock inc qword ptr [rip + ISO_DB]
    iretq
"#
);

unsafe extern "C" {
    fn iso_trap_gp();
    fn iso_trap_ud();
    fn iso_trap_db();
}

#[unsafe(no_mangle)]
extern "C" fn iso_unexpected(vector: u64, rip: u64) -> ! {
    println!("unexpected exception {vector} at rip {rip:#x}");
    println!("VERDICT: FAIL unexpected exception");
    shutdown(SHUTDOWN_CRASH)
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Idtr {
    limit: u16,
    base: u64,
}

static IDTR: AtomicU64 = AtomicU64::new(0);

/// Points #DB, #UD and #GP of the shared IDT at the handlers above.
fn patch_idt() {
    let mut r = Idtr { limit: 0, base: 0 };
    // SAFETY: stores the IDT register.
    unsafe { core::arch::asm!("sidt [{}]", in(reg) &mut r, options(nostack)) };
    IDTR.store(r.base, Ordering::SeqCst);
    for (vector, f) in [
        (1u64, iso_trap_db as *const () as u64),
        (6, iso_trap_ud as *const () as u64),
        (13, iso_trap_gp as *const () as u64),
    ] {
        let low = (f & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((f >> 16) & 0xffff) << 48;
        // SAFETY: the IDT install_idt built (4 KiB, 16-byte gates).
        unsafe {
            let gate = (r.base + 16 * vector) as *mut u64;
            gate.write_volatile(low);
            gate.add(1).write_volatile(f >> 32);
        }
    }
}

/// Loads vCPU 0's IDT (with the patched gates) on a secondary vCPU.
fn load_idt() {
    let r = Idtr { limit: 256 * 16 - 1, base: IDTR.load(Ordering::SeqCst) };
    // SAFETY: the IDT vCPU 0 built and patched.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &r, options(nostack)) };
}

/// Runs `f` (one instruction's worth of asm, resuming at label 2) with a
/// fault turned into Err(vector).
macro_rules! probe {
    ($($asm:tt)*) => {{
        ISO_FAULT.store(0, Ordering::SeqCst);
        $($asm)*
        ISO_FIXUP.store(0, Ordering::SeqCst);
        match ISO_FAULT.load(Ordering::SeqCst) {
            0 => Ok(()),
            v => Err(v),
        }
    }};
}

fn try_rdmsr(msr: u32) -> Result<u64, u64> {
    let (lo, hi): (u32, u32);
    let r = probe! {
        // SAFETY: a fault resumes at label 2 through ISO_FIXUP.
        unsafe {
            core::arch::asm!("lea {t}, [rip + 2f]", "mov [rip + {fix}], {t}", "rdmsr", "2:",
                t = out(reg) _, fix = sym ISO_FIXUP, in("ecx") msr, inout("eax") 0u32 => lo, inout("edx") 0u32 => hi,
                options(nostack))
        };
    };
    r.map(|_| (hi as u64) << 32 | lo as u64)
}

fn try_wrmsr(msr: u32, v: u64) -> Result<(), u64> {
    probe! {
        // SAFETY: as for try_rdmsr.
        unsafe {
            core::arch::asm!("lea {t}, [rip + 2f]", "mov [rip + {fix}], {t}", "wrmsr", "2:",
                t = out(reg) _, fix = sym ISO_FIXUP, in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
                options(nostack))
        };
    }
}

/// RDTSCP: TSC_AUX, or the fault.
fn try_rdtscp() -> Result<u64, u64> {
    let aux: u32;
    let r = probe! {
        // SAFETY: as for try_rdmsr.
        unsafe {
            core::arch::asm!("lea {t}, [rip + 2f]", "mov [rip + {fix}], {t}", "rdtscp", "2:",
                t = out(reg) _, fix = sym ISO_FIXUP, inout("ecx") 0u32 => aux, out("eax") _, out("edx") _,
                options(nostack))
        };
    };
    r.map(|_| aux as u64)
}

/// Sets CR4 bits, or the fault.
fn try_set_cr4(bits: u64) -> Result<(), u64> {
    probe! {
        // SAFETY: as for try_rdmsr; only bits the probe asks about.
        unsafe {
            core::arch::asm!("lea {t}, [rip + 2f]", "mov [rip + {fix}], {t}", "mov {c}, cr4", "or {c}, {b}",
                "mov cr4, {c}", "2:",
                t = out(reg) _, fix = sym ISO_FIXUP, c = out(reg) _, b = in(reg) bits, options(nostack))
        };
    }
}

fn read_pid() -> u64 {
    let v: u64;
    // SAFETY: only called when CPUID offers RDPID.
    unsafe { core::arch::asm!("rdpid {}", out(reg) v, options(nomem, nostack)) };
    v
}

fn rdpkru() -> u32 {
    let v: u32;
    // SAFETY: CR4.PKE is set when this runs.
    unsafe { core::arch::asm!("rdpkru", in("ecx") 0, out("eax") v, out("edx") _, options(nomem, nostack)) };
    v
}

fn wrpkru(v: u32) {
    // SAFETY: as for rdpkru; the guest's pages are all supervisor pages.
    unsafe { core::arch::asm!("wrpkru", in("ecx") 0, in("edx") 0, in("eax") v, options(nomem, nostack)) };
}

fn set_debug_regs(d: &[u64; 4], dr6: u64, dr7: u64) {
    // SAFETY: the guest's own debug registers; breakpoints hit only
    // addresses nobody here touches, and #DB is caught.
    unsafe {
        core::arch::asm!("mov dr0, {}", in(reg) d[0], options(nomem, nostack));
        core::arch::asm!("mov dr1, {}", in(reg) d[1], options(nomem, nostack));
        core::arch::asm!("mov dr2, {}", in(reg) d[2], options(nomem, nostack));
        core::arch::asm!("mov dr3, {}", in(reg) d[3], options(nomem, nostack));
        core::arch::asm!("mov dr6, {}", in(reg) dr6, options(nomem, nostack));
        core::arch::asm!("mov dr7, {}", in(reg) dr7, options(nomem, nostack));
    }
}

fn debug_regs() -> ([u64; 4], u64, u64) {
    let (a, b, c, d, e, f): (u64, u64, u64, u64, u64, u64);
    // SAFETY: reads the guest's own debug registers.
    unsafe {
        core::arch::asm!("mov {}, dr0", out(reg) a, options(nomem, nostack));
        core::arch::asm!("mov {}, dr1", out(reg) b, options(nomem, nostack));
        core::arch::asm!("mov {}, dr2", out(reg) c, options(nomem, nostack));
        core::arch::asm!("mov {}, dr3", out(reg) d, options(nomem, nostack));
        core::arch::asm!("mov {}, dr6", out(reg) e, options(nomem, nostack));
        core::arch::asm!("mov {}, dr7", out(reg) f, options(nomem, nostack));
    }
    ([a, b, c, d], e, f)
}

// --- the mark page ----------------------------------------------------------

#[repr(C, align(4096))]
struct Page([u64; 512]);
static mut PDPT: Page = Page([0; 512]);
static mut PD: Page = Page([0; 512]);
static mut PT: Page = Page([0; 512]);
static mut MARK: Page = Page([0; 512]);

/// Maps MARK at MARK_VA in this domain's page tables (shared by its vCPUs).
fn map_mark(mark: u64) {
    // SAFETY: vCPU 0 alone, before the others start; the tables are this
    // guest's identity-mapped statics, and PML4 slot 2 is unused.
    unsafe {
        (*(&raw mut MARK)).0[0] = mark;
        (*(&raw mut PT)).0[0] = (&raw const MARK) as u64 | 3;
        (*(&raw mut PD)).0[0] = (&raw const PT) as u64 | 3;
        (*(&raw mut PDPT)).0[0] = (&raw const PD) as u64 | 3;
        let pml4 = (x86::read_cr3() & !0xfff) as *mut u64;
        pml4.add(2).write_volatile((&raw const PDPT) as u64 | 3);
        core::arch::asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack));
    }
}

fn read_mark() -> u64 {
    // SAFETY: MARK_VA is mapped by map_mark.
    unsafe { (MARK_VA as *const u64).read_volatile() }
}

// --- the rounds -----------------------------------------------------------------

/// Written by domains of one parity each (`HOT[mark & 1]`); DR0 watches
/// the other one.
static HOT: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static MARK_NR: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU32 = AtomicU32::new(0);
static YIELDS: AtomicU32 = AtomicU32::new(0);
/// What vCPU 0 found out, for the others.
static PKE: AtomicU32 = AtomicU32::new(0);
static AUX: AtomicU32 = AtomicU32::new(0);
static SPEC: AtomicU32 = AtomicU32::new(0);
/// Mismatches, by kind: DR, PKRU, TSC_AUX, SPEC_CTRL, mark page.
static BAD: [AtomicU32; 5] = [const { AtomicU32::new(0) }; 5];
const KINDS: [&str; 5] = ["debug registers", "PKRU", "TSC_AUX", "MSR_SPEC_CTRL", "mark page"];
static DONE: AtomicU32 = AtomicU32::new(0);
/// vCPU 0 has probed what the vCPU offers: the rounds may start.
static GO: AtomicU32 = AtomicU32::new(0);
/// `pke=0` on the command line: leave CR4.PKE alone.
static TRY_PKE: AtomicU32 = AtomicU32::new(1);
/// `breakpoints=0`: DR7 enables nothing (the addresses are still checked).
static BREAKPOINTS: AtomicU32 = AtomicU32::new(1);

fn bad(kind: usize, vcpu: u32, round: u32, got: u64, want: u64) {
    if BAD[kind].fetch_add(1, Ordering::SeqCst) == 0 {
        println!("vCPU {vcpu} round {round}: {} read back {got:#x}, its own is {want:#x}", KINDS[kind]);
    }
}

fn rounds(vcpu: u32) {
    let mark = MARK_NR.load(Ordering::SeqCst);
    let parity = (mark & 1) as usize;
    let watch = (&HOT[1 - parity]) as *const AtomicU64 as u64;
    for round in 0..ROUNDS.load(Ordering::SeqCst) {
        let tag = (mark << 12) | ((vcpu as u64) << 8) | (round as u64 & 0xff);
        let dr = [watch, 0x7e00_0000_0000 + tag * 64, 0x7e00_0000_0008 + tag * 64, 0x7e00_0000_0010 + tag * 64];
        // L0-L3 on, each a write breakpoint of 8 bytes.
        let dr7 = if BREAKPOINTS.load(Ordering::SeqCst) != 0 {
            0x400 | 0x55 | (0b1001 << 16) | (0b1001 << 20) | (0b1001 << 24) | (0b1001 << 28)
        } else {
            0x400
        };
        let dr6 = 0xffff_0ff0 | (tag & 0xf);
        set_debug_regs(&dr, dr6, dr7);
        let pkru = (tag as u32) << 2;
        if PKE.load(Ordering::SeqCst) != 0 {
            wrpkru(pkru);
        }
        let aux = tag | mark << 24;
        if AUX.load(Ordering::SeqCst) != 0 {
            wrmsr(TSC_AUX, aux);
        }
        let spec = tag & 3;
        if SPEC.load(Ordering::SeqCst) != 0 {
            wrmsr(SPEC_CTRL, spec);
        }
        for _ in 0..YIELDS.load(Ordering::SeqCst) {
            xen::yield_cpu();
            HOT[parity].fetch_add(1, Ordering::SeqCst);
        }
        let (got, got6, got7) = debug_regs();
        for i in 0..4 {
            if got[i] != dr[i] {
                bad(0, vcpu, round, got[i], dr[i]);
            }
        }
        // B0-B3, BD, BS, BT: what the guest wrote (the rest is fixed).
        if got6 & 0xe00f != dr6 & 0xe00f {
            bad(0, vcpu, round, got6, dr6);
        }
        if got7 & 0xffff_00ff != dr7 & 0xffff_00ff {
            bad(0, vcpu, round, got7, dr7);
        }
        if PKE.load(Ordering::SeqCst) != 0 && rdpkru() != pkru {
            bad(1, vcpu, round, rdpkru() as u64, pkru as u64);
        }
        match AUX.load(Ordering::SeqCst) {
            0 => {}
            a => {
                if rdmsr(TSC_AUX) != aux {
                    bad(2, vcpu, round, rdmsr(TSC_AUX), aux);
                }
                if a & 1 != 0 && try_rdtscp() != Ok(aux) {
                    bad(2, vcpu, round, try_rdtscp().unwrap_or(u64::MAX), aux);
                }
                if a & 2 != 0 && read_pid() != aux {
                    bad(2, vcpu, round, read_pid(), aux);
                }
            }
        }
        if SPEC.load(Ordering::SeqCst) != 0 && rdmsr(SPEC_CTRL) != spec {
            bad(3, vcpu, round, rdmsr(SPEC_CTRL), spec);
        }
        if read_mark() != mark {
            bad(4, vcpu, round, read_mark(), mark);
        }
    }
    // Breakpoints off before the vCPU ends.
    set_debug_regs(&[0; 4], 0xffff_0ff0, 0x400);
}

extern "C" fn ap_main(vcpu: u32) -> ! {
    load_idt();
    while GO.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    if PKE.load(Ordering::SeqCst) != 0 && try_set_cr4(CR4_PKE).is_err() {
        println!("vCPU {vcpu}: CR4.PKE refused here but not on vCPU 0");
        BAD[1].fetch_add(1, Ordering::SeqCst);
    }
    rounds(vcpu);
    DONE.fetch_add(1, Ordering::SeqCst);
    loop {
        x86::block();
    }
}

/// What CPUID offers against what the MSRs and instructions do.
fn cpuid_matches_msrs(c: &mut Checks) {
    let l7 = cpuid(7, 0);
    let e1 = cpuid(0x8000_0001, 0).edx;
    let e8 = if cpuid(0x8000_0000, 0).eax >= 0x8000_0008 { cpuid(0x8000_0008, 0).ebx } else { 0 };
    let ibrsb = l7.edx & (1 << 26) != 0;
    let ibpb = e8 & (1 << 12) != 0 || ibrsb;
    let arch_caps = l7.edx & (1 << 29) != 0;
    let l1d = l7.edx & (1 << 28) != 0;
    let rdtscp = e1 & (1 << 27) != 0;
    let rdpid = l7.ecx & (1 << 22) != 0;
    println!(
        "CPUID offers: IBRSB {ibrsb} STIBP {} SSBD {} MD_CLEAR {} ARCH_CAPS {arch_caps} L1D_FLUSH {l1d} IBPB {ibpb} \
         RDTSCP {rdtscp} RDPID {rdpid} PKU {}",
        l7.edx & (1 << 27) != 0,
        l7.edx & (1 << 31) != 0,
        l7.edx & (1 << 10) != 0,
        l7.ecx & (1 << 3) != 0
    );
    c.eq("SPEC_CTRL reads exactly when CPUID offers IBRSB", try_rdmsr(SPEC_CTRL).is_ok() as i64, ibrsb as i64);
    c.eq("SPEC_CTRL writes exactly when CPUID offers IBRSB", try_wrmsr(SPEC_CTRL, 0).is_ok() as i64, ibrsb as i64);
    if ibrsb {
        c.check("SPEC_CTRL reads back what was written", try_wrmsr(SPEC_CTRL, 1).is_ok() && rdmsr(SPEC_CTRL) == 1);
        c.eq("a reserved SPEC_CTRL bit raises #GP", try_wrmsr(SPEC_CTRL, 1 << 20).err().unwrap_or(0) as i64, 13);
        wrmsr(SPEC_CTRL, 0);
    }
    c.eq("PRED_CMD takes IBPB exactly when CPUID offers IBPB", try_wrmsr(PRED_CMD, 1).is_ok() as i64, ibpb as i64);
    c.eq("PRED_CMD cannot be read", try_rdmsr(PRED_CMD).err().unwrap_or(0) as i64, 13);
    c.eq("ARCH_CAPABILITIES reads exactly when CPUID offers it", try_rdmsr(ARCH_CAPS).is_ok() as i64, arch_caps as i64);
    c.eq(
        "FLUSH_CMD takes a flush exactly when CPUID offers L1D_FLUSH",
        try_wrmsr(FLUSH_CMD, 1).is_ok() as i64,
        l1d as i64,
    );
    let aux_ok = try_wrmsr(TSC_AUX, 0x1234).is_ok();
    c.eq("TSC_AUX writes exactly when RDTSCP or RDPID is offered", aux_ok as i64, (rdtscp || rdpid) as i64);
    if aux_ok {
        c.eq("TSC_AUX reads back", try_rdmsr(TSC_AUX).unwrap_or(0) as i64, 0x1234);
        c.eq("TSC_AUX holds 32 bits only (#GP above)", try_wrmsr(TSC_AUX, 1 << 32).err().unwrap_or(0) as i64, 13);
    }
    match try_rdtscp() {
        Ok(aux) => {
            c.check("RDTSCP runs only where CPUID offers it", rdtscp);
            c.eq("RDTSCP gives the vCPU's TSC_AUX", aux as i64, 0x1234);
        }
        Err(v) => {
            c.check("RDTSCP runs where CPUID offers it", !rdtscp);
            c.eq("RDTSCP not offered raises #UD", v as i64, 6);
        }
    }
    if rdpid {
        c.eq("RDPID gives the vCPU's TSC_AUX", read_pid() as i64, 0x1234);
    }
    // Bit 2: TSC_AUX is the vCPU's; bits 0 and 1: RDTSCP, RDPID read it.
    AUX.store(if aux_ok { 4 | rdtscp as u32 | (rdpid as u32) << 1 } else { 0 }, Ordering::SeqCst);
    SPEC.store(ibrsb as u32, Ordering::SeqCst);
    // CR4.PKE: either refused (PKU is not offered) or PKRU is the vCPU's.
    let pke = TRY_PKE.load(Ordering::SeqCst) != 0 && try_set_cr4(CR4_PKE).is_ok() && x86::read_cr4() & CR4_PKE != 0;
    println!("CR4.PKE {}", if pke { "set: PKRU is checked per vCPU" } else { "refused" });
    PKE.store(pke as u32, Ordering::SeqCst);
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si: u64) -> ! {
    let mut c = Checks::new();
    let args = Args::from_start_info(si);
    let mark = args.num_or("mark", 1);
    ROUNDS.store(args.num_or("rounds", 30) as u32, Ordering::SeqCst);
    YIELDS.store(args.num_or("yields", 3) as u32, Ordering::SeqCst);
    MARK_NR.store(mark, Ordering::SeqCst);
    let mut vcpus = 1;
    while vcpus < x86::MAX_VCPUS as u32 && vcpu_op(VCPUOP_IS_UP, vcpus, 0) >= 0 {
        vcpus += 1;
    }
    TRY_PKE.store(args.num_or("pke", 1) as u32, Ordering::SeqCst);
    BREAKPOINTS.store(args.num_or("breakpoints", 1) as u32, Ordering::SeqCst);
    println!("isolation: mark {mark}, {vcpus} vCPUs");
    x86::install_idt();
    patch_idt();
    map_mark(mark);
    c.eq("the mark page reads this domain's mark", read_mark() as i64, mark as i64);
    // The others start on this vCPU's CR4 (before PKE) and wait for GO.
    for v in 1..vcpus {
        let (init, up) = x86::start_vcpu(v, ap_main);
        if init != 0 || up != 0 {
            println!("vCPU {v}: initialise {init}, up {up}");
        }
        c.check("a vCPU starts", init == 0 && up == 0);
    }
    cpuid_matches_msrs(&mut c);
    GO.store(1, Ordering::SeqCst);
    rounds(0);
    let mut spins = 0u64;
    while DONE.load(Ordering::SeqCst) < vcpus - 1 && spins < 1 << 34 {
        xen::yield_cpu();
        spins += 1;
    }
    c.eq("every vCPU finished its rounds", DONE.load(Ordering::SeqCst) as i64, vcpus as i64 - 1);
    for (k, name) in KINDS.iter().enumerate() {
        c.eq(&own_name(name), BAD[k].load(Ordering::SeqCst) as i64, 0);
    }
    c.eq("no #DB from another domain's breakpoints", ISO_DB.load(Ordering::SeqCst) as i64, 0);
    c.finish()
}

/// "own <kind> after every switch", without a heap.
fn own_name(kind: &str) -> Name {
    let mut n = Name { b: [0; 64], len: 0 };
    for part in ["own ", kind, " after every switch"] {
        for &b in part.as_bytes() {
            if n.len < n.b.len() {
                n.b[n.len] = b;
                n.len += 1;
            }
        }
    }
    n
}

struct Name {
    b: [u8; 64],
    len: usize,
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.b[..self.len]).unwrap_or("?")
    }
}
