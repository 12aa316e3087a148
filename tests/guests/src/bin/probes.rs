//! Probes what guests nobody here wrote probe, and expects Xen's answers:
//! control-register, EFER and XCR0 bits the virtual CPU does not offer
//! (#GP, and the domain lives on), VCPUOP_initialise with such a state
//! (-EINVAL), the MSRs Xen answers for an HVM guest of this vendor, reads
//! of guest-physical addresses nothing backs (all ones; writes dropped)
//! and ports nothing answers. Start it with vcpus=2; `only=cr,msr,...`
//! on its command line runs some sections (cr efer xcr init msr mmio io).

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use test_guests::x86::{self, read_cr0, read_cr4};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::vcpu::*;

/// Where the trap handlers resume a probed instruction that faulted (0:
/// no probe is running, a fault is fatal) and which vector it raised.
#[unsafe(no_mangle)]
static PROBE_FIXUP: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
static PROBE_VECTOR: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text.probe_traps, "ax"
    .global probe_gp
probe_gp:
    add rsp, 8
    mov qword ptr [rip + PROBE_VECTOR], 13
    jmp 2f
    .global probe_ud
probe_ud:
    mov qword ptr [rip + PROBE_VECTOR], 6
2:  cmp qword ptr [rip + PROBE_FIXUP], 0
    je 3f
    push rax
    mov rax, [rip + PROBE_FIXUP]
    mov [rsp + 8], rax
    mov qword ptr [rip + PROBE_FIXUP], 0
    pop rax
    iretq
3:  mov rdi, [rip + PROBE_VECTOR]
    mov rsi, [rsp]
    call probe_unexpected
"#
);

unsafe extern "C" {
    fn probe_gp();
    fn probe_ud();
}

#[unsafe(no_mangle)]
extern "C" fn probe_unexpected(vector: u64, rip: u64) -> ! {
    println!("unexpected exception {vector} at rip {rip:#x}");
    println!("VERDICT: FAIL unexpected exception");
    shutdown(SHUTDOWN_CRASH)
}

/// Runs one instruction (with the asm operands given) so that a #GP or #UD
/// it raises resumes after it; evaluates to the vector (0: no fault).
macro_rules! probe {
    ($insn:literal $(, $($ops:tt)*)?) => {{
        PROBE_VECTOR.store(0, Ordering::SeqCst);
        // SAFETY: the instruction is the probe; a fault it raises returns
        // to the label after it through the trap handlers above.
        unsafe {
            core::arch::asm!(
                "lea {t}, [rip + 5f]",
                "mov [{fix}], {t}",
                $insn,
                "5:",
                "mov qword ptr [{fix}], 0",
                t = out(reg) _,
                fix = in(reg) PROBE_FIXUP.as_ptr(),
                $($($ops)*)?
            )
        };
        PROBE_VECTOR.load(Ordering::SeqCst) as i64
    }};
}

const GP: i64 = 13;
const UD: i64 = 6;

fn write_cr0(v: u64) -> i64 {
    probe!("mov cr0, {v}", v = in(reg) v)
}

fn write_cr4(v: u64) -> i64 {
    probe!("mov cr4, {v}", v = in(reg) v)
}

fn rdmsr(msr: u32) -> Result<u64, i64> {
    let (lo, hi): (u32, u32);
    let f = probe!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi);
    if f == 0 { Ok((hi as u64) << 32 | lo as u64) } else { Err(f) }
}

fn wrmsr(msr: u32, v: u64) -> i64 {
    probe!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32)
}

fn xsetbv(index: u32, v: u64) -> i64 {
    probe!("xsetbv", in("ecx") index, in("eax") v as u32, in("edx") (v >> 32) as u32)
}

const EFER: u32 = 0xc000_0080;

struct Cpu {
    intel: bool,
    amd: bool,
    l1: core::arch::x86_64::CpuidResult,
    l7: core::arch::x86_64::CpuidResult,
    e1: core::arch::x86_64::CpuidResult,
}

impl Cpu {
    fn read() -> Cpu {
        let v = cpuid(0, 0);
        let max = v.eax;
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&v.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&v.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&v.ecx.to_le_bytes());
        let zero = core::arch::x86_64::CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 };
        Cpu {
            intel: &vendor == b"GenuineIntel",
            amd: &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine",
            l1: cpuid(1, 0),
            l7: if max >= 7 { cpuid(7, 0) } else { zero },
            e1: cpuid(0x8000_0001, 0),
        }
    }
}

/// A CR4 bit and whether the CPUID the guest sees offers it.
fn cr4_bits(cpu: &Cpu) -> [(u32, &'static str, bool); 22] {
    let (l1, l7) = (&cpu.l1, &cpu.l7);
    [
        (0, "VME", l1.edx & (1 << 1) != 0),
        (2, "TSD", l1.edx & (1 << 4) != 0),
        (3, "DE", l1.edx & (1 << 2) != 0),
        (6, "MCE", l1.edx & (1 << 7 | 1 << 14) != 0),
        (8, "PCE", true),
        (11, "UMIP", l7.ecx & (1 << 2) != 0),
        (12, "LA57", false),
        (13, "VMXE", false),
        (14, "SMXE", false),
        (15, "reserved bit 15", false),
        (16, "FSGSBASE", l7.ebx & 1 != 0),
        (17, "PCIDE", l1.ecx & (1 << 17) != 0),
        (18, "OSXSAVE", l1.ecx & (1 << 26) != 0),
        (19, "KL", false),
        (20, "SMEP", l7.ebx & (1 << 7) != 0),
        (21, "SMAP", l7.ebx & (1 << 20) != 0),
        (22, "PKE", l7.ecx & (1 << 3) != 0),
        // CET needs CR0.WP, which this guest leaves clear.
        (23, "CET", false),
        (24, "PKS", l7.ecx & (1 << 31) != 0),
        (25, "UINTR", false),
        (31, "reserved bit 31", false),
        (32, "reserved bit 32", false),
    ]
}

fn control_registers(c: &mut Checks, cpu: &Cpu) {
    let cr4 = read_cr4();
    for (bit, name, offered) in cr4_bits(cpu) {
        let f = write_cr4(cr4 | 1 << bit);
        if offered {
            c.eq(&fmt(format_args!("CR4.{name} (offered) can be set")), f, 0);
            c.check(&fmt(format_args!("CR4.{name} reads back")), read_cr4() & (1 << bit) != 0);
            c.eq(&fmt(format_args!("CR4.{name} can be cleared again")), write_cr4(cr4), 0);
        } else {
            c.eq(&fmt(format_args!("CR4.{name} (not offered) raises #GP")), f, GP);
        }
        c.eq(&fmt(format_args!("CR4 unchanged after {name}")), read_cr4() as i64, cr4 as i64);
    }
    c.eq("clearing CR4.PAE in long mode raises #GP", write_cr4(cr4 & !(1 << 5)), GP);

    let cr0 = read_cr0();
    c.eq("CR0 bit 32 raises #GP", write_cr0(cr0 | 1 << 32), GP);
    c.eq("CR0.PG without CR0.PE raises #GP", write_cr0(cr0 & !1), GP);
    c.eq("CR0.NW without CR0.CD raises #GP", write_cr0(cr0 | 1 << 29), GP);
    c.eq("clearing CR0.PG in 64-bit mode raises #GP", write_cr0(cr0 & !(1 << 31)), GP);
    c.eq("CR0 reserved bit 6 is ignored", write_cr0(cr0 | 1 << 6), 0);
    c.eq("CR0 unchanged", read_cr0() as i64, cr0 as i64);
    c.eq("CR0.CD can be set", write_cr0(cr0 | 1 << 30), 0);
    c.check("CR0.CD reads back", read_cr0() & (1 << 30) != 0);
    c.eq("CR0.CD can be cleared (through r9)", probe!("mov cr0, r9", in("r9") cr0), 0);
    c.eq("CLTS", probe!("clts"), 0);
    c.eq("LMSW cannot clear PE", probe!("lmsw ax", in("ax") (cr0 as u16) & !1), 0);
    c.eq("CR0 after CLTS and LMSW", read_cr0() as i64, cr0 as i64);
    c.eq("CR4 after the CR0 probes", read_cr4() as i64, cr4 as i64);
}

fn efer(c: &mut Checks, cpu: &Cpu) {
    let efer = x86::rdmsr(EFER);
    c.eq("EFER reads LME and LMA", (efer & 0x500) as i64, 0x500);
    for (bit, name, offered) in [
        (0, "SCE", cpu.e1.edx & (1 << 11) != 0),
        (11, "NXE", cpu.e1.edx & (1 << 20) != 0),
        (12, "SVME", false),
        (13, "LMSLE", false),
        (14, "FFXSR", cpu.amd && cpu.e1.edx & (1 << 25) != 0),
        (15, "TCE", false),
        (20, "reserved bit 20", false),
        (21, "AIBRSE", false),
        (40, "reserved bit 40", false),
    ] {
        let f = wrmsr(EFER, efer | 1 << bit);
        if offered {
            c.eq(&fmt(format_args!("EFER.{name} (offered) can be set")), f, 0);
            c.eq(&fmt(format_args!("EFER.{name} can be cleared")), wrmsr(EFER, efer), 0);
        } else {
            c.eq(&fmt(format_args!("EFER.{name} (not offered) raises #GP")), f, GP);
        }
    }
    c.eq("clearing EFER.LME with paging on raises #GP", wrmsr(EFER, efer & !(1 << 8)), GP);
    c.eq("EFER.LMA cannot be written (write without it)", wrmsr(EFER, efer & !(1 << 10)), 0);
    c.eq("EFER unchanged", x86::rdmsr(EFER) as i64, efer as i64);
}

fn xcr0(c: &mut Checks, cpu: &Cpu) {
    let cr4 = read_cr4();
    if cpu.l1.ecx & (1 << 26) == 0 {
        c.eq("XSETBV without CR4.OSXSAVE raises #UD", xsetbv(0, 1), UD);
        return;
    }
    c.eq("CR4.OSXSAVE can be set", write_cr4(cr4 | 1 << 18), 0);
    let offered = cpuid(0xd, 0);
    let mask = (offered.edx as u64) << 32 | offered.eax as u64;
    c.eq("XCR0 without x87 raises #GP", xsetbv(0, mask & !1), GP);
    c.eq("XCR0 with a component not offered raises #GP", xsetbv(0, 1 | (!mask & (1 << 62))), GP);
    c.eq("XCR1 raises #GP", xsetbv(1, 1), GP);
    c.eq("XCR0 = x87|SSE is accepted", xsetbv(0, mask & 3), 0);
    c.eq("CR4.OSXSAVE can be cleared", write_cr4(cr4), 0);
}

/// VCPUOP_initialise of vCPU 1 with a state the vCPU cannot have: -EINVAL
/// (Xen's arch_set_info_hvm_guest), and nothing reaches the hardware.
fn initialise(c: &mut Checks, cpu: &Cpu) {
    let good = VcpuHvmX86_64 {
        rip: 0x10_0000,
        rsp: 0x8000,
        rflags: 2,
        cr0: read_cr0(),
        cr3: x86::read_cr3(),
        cr4: read_cr4(),
        efer: x86::rdmsr(EFER) & !(1 << 10),
        ..VcpuHvmX86_64::default()
    };
    let init = |r: &VcpuHvmX86_64| {
        let mut ctx = VcpuHvmContext { mode: VCPU_HVM_MODE_64B, ..VcpuHvmContext::default() };
        ctx.regs[..112].copy_from_slice(xen_abi::Pod::as_bytes(r));
        // SAFETY: `ctx` is a vcpu_hvm_context in this guest's memory.
        unsafe { hypercall(xen_abi::hypercall::VCPU_OP, VCPUOP_INITIALISE, 1, &ctx as *const _ as u64, 0, 0) }
    };
    let mut cases: [(&str, VcpuHvmX86_64); 6] = [("", good); 6];
    cases[0] = ("CR4.VMXE", VcpuHvmX86_64 { cr4: good.cr4 | 1 << 13, ..good });
    cases[1] = ("CR4.PKE", VcpuHvmX86_64 { cr4: good.cr4 | 1 << 22, ..good });
    cases[2] = ("EFER.SVME", VcpuHvmX86_64 { efer: good.efer | 1 << 12, ..good });
    cases[3] = ("CR0 bit 32", VcpuHvmX86_64 { cr0: good.cr0 | 1 << 32, ..good });
    cases[4] = ("CR0.NW without CD", VcpuHvmX86_64 { cr0: good.cr0 | 1 << 29, ..good });
    cases[5] = ("CR4.LA57", VcpuHvmX86_64 { cr4: good.cr4 | 1 << 12, ..good });
    for (what, r) in cases {
        c.eq(&fmt(format_args!("VCPUOP_initialise with {what} is -EINVAL")), init(&r), -EINVAL);
    }
    for (bit, name, offered) in cr4_bits(cpu) {
        if !offered {
            let r = VcpuHvmX86_64 { cr4: good.cr4 | 1 << bit, ..good };
            c.eq(&fmt(format_args!("VCPUOP_initialise with CR4.{name} (not offered) is -EINVAL")), init(&r), -EINVAL);
        }
    }
    c.eq("VCPUOP_initialise with a good state", init(&good), 0);
    c.eq("vCPU 1 stays down", x86::vcpu_op(VCPUOP_IS_UP, 1, 0), 0);
}

fn msr(c: &mut Checks, name: &str, msr: u32, want: Result<u64, i64>) {
    let got = rdmsr(msr);
    match (got, want) {
        (Ok(g), Ok(w)) => c.eq(&fmt(format_args!("rdmsr {name} ({msr:#x})")), g as i64, w as i64),
        (Err(f), Err(w)) => c.eq(&fmt(format_args!("rdmsr {name} ({msr:#x}) faults")), f, w),
        (Ok(g), Err(_)) => c.eq(&fmt(format_args!("rdmsr {name} ({msr:#x}) should fault")), g as i64, -1),
        (Err(f), Ok(w)) => c.eq(&fmt(format_args!("rdmsr {name} ({msr:#x}) should read {w:#x}")), f, 0),
    }
}

fn wr(c: &mut Checks, name: &str, m: u32, v: u64, want: i64) {
    c.eq(&fmt(format_args!("wrmsr {name} ({m:#x}) {v:#x}")), wrmsr(m, v), want);
}

fn msrs(c: &mut Checks, cpu: &Cpu) {
    // DEBUGCTL: every HVM guest has one, 0 at first.
    msr(c, "DEBUGCTL", 0x1d9, Ok(0));
    wr(c, "DEBUGCTL", 0x1d9, 0, 0);
    if cpu.intel {
        wr(c, "DEBUGCTL BTF", 0x1d9, 2, 0);
        msr(c, "DEBUGCTL after BTF", 0x1d9, Ok(2));
        wr(c, "DEBUGCTL LBR (discarded)", 0x1d9, 1, 0);
        msr(c, "DEBUGCTL after LBR", 0x1d9, Ok(0));
        wr(c, "DEBUGCTL reserved bit", 0x1d9, 1 << 6, GP);
    } else {
        wr(c, "DEBUGCTL LBR", 0x1d9, 1, 0);
        msr(c, "DEBUGCTL after LBR", 0x1d9, Ok(1));
        wr(c, "DEBUGCTL", 0x1d9, 0, 0);
    }

    // MTRRs, as Xen gives a PVH domU: WB by default, no ranges.
    c.check("cpuid shows MTRR", cpu.l1.edx & (1 << 12) != 0);
    msr(c, "MTRRcap", 0xfe, Ok(0x508));
    wr(c, "MTRRcap", 0xfe, 0x508, GP);
    msr(c, "MTRRdefType", 0x2ff, Ok(0x806));
    wr(c, "MTRRdefType unchanged", 0x2ff, 0x806, 0);
    wr(c, "MTRRdefType type 2", 0x2ff, 0x802, GP);
    wr(c, "MTRRdefType reserved bit", 0x2ff, 0x1806, GP);
    msr(c, "MTRRfix64K_00000", 0x250, Ok(0));
    wr(c, "MTRRfix4K_C0000 all WB", 0x268, 0x0606_0606_0606_0606, 0);
    msr(c, "MTRRfix4K_C0000", 0x268, Ok(0x0606_0606_0606_0606));
    wr(c, "MTRRfix4K_C0000 type 7", 0x268, 0x0707, GP);
    wr(c, "MTRRfix4K_C0000 back", 0x268, 0, 0);
    let phys_bits = (cpuid(0x8000_0008, 0).eax & 0xff).max(32);
    let mask = ((1u64 << phys_bits) - 1) & !0xfff_ffff | 1 << 11;
    wr(c, "MTRRphysBase0 WB", 0x200, 0x1000_0006, 0);
    wr(c, "MTRRphysMask0", 0x201, mask, 0);
    msr(c, "MTRRphysMask0", 0x201, Ok(mask));
    wr(c, "MTRRphysMask0 above the address width", 0x201, mask | 1 << 60, GP);
    wr(c, "MTRRphysBase0 reserved bit 8", 0x200, 0x1000_0106, GP);
    wr(c, "MTRRphysBase0 type 3", 0x200, 0x1000_0003, GP);
    wr(c, "MTRRphysMask0 off", 0x201, 0, 0);
    wr(c, "MTRRphysBase0 off", 0x200, 0, 0);
    msr(c, "MTRRphysBase8 (beyond the 8 ranges)", 0x210, Err(GP));

    // Machine check: Xen's vMCE, two banks.
    msr(c, "MCG_CAP", 0x179, Ok(if cpu.intel { 1 << 24 | 1 << 11 | 1 << 10 | 2 } else { 2 }));
    msr(c, "MCG_STATUS", 0x17a, Ok(0));
    msr(c, "MCG_CTL", 0x17b, Ok(0));
    msr(c, "MC0_CTL", 0x400, Ok(u64::MAX));
    msr(c, "MC0_STATUS", 0x401, Ok(0));
    wr(c, "MC0_STATUS", 0x401, 0, 0);
    wr(c, "MC0_STATUS non-zero", 0x401, 1, GP);
    msr(c, "MC1_ADDR", 0x406, Ok(0));
    msr(c, "MC2_CTL (no such bank)", 0x408, Ok(0));
    msr(c, "MCG_EXT_CTL", 0x4d0, Err(GP));

    msr(c, "PLATFORM_INFO", 0xce, Ok(1 << 32));
    msr(c, "MISC_FEATURES_ENABLES", 0x140, Ok(0));
    wr(c, "MISC_FEATURES_ENABLES CPUID faulting", 0x140, 1, 0);
    c.eq("CPUID at CPL 0 with faulting on", cpuid(0x4000_0000, 0).eax as i64, 0x4000_0005);
    wr(c, "MISC_FEATURES_ENABLES off", 0x140, 0, 0);
    wr(c, "MISC_FEATURES_ENABLES bit 1", 0x140, 2, GP);
    msr(c, "TSC_DEADLINE", 0x6e0, Ok(0));
    c.check("rdmsr UCODE_REV", rdmsr(0x8b).is_ok());
    msr(c, "an unknown MSR", 0x1234_5678, Err(GP));
    msr(c, "another unknown MSR", 0xc001_1234, Err(GP));

    if cpu.amd {
        msr(c, "HWCR", 0xc001_0015, Ok(0));
        wr(c, "HWCR", 0xc001_0015, 0, GP);
        msr(c, "VM_CR", 0xc001_0114, Ok(0));
        msr(c, "SYSCFG", 0xc001_0010, Ok(0));
        wr(c, "SYSCFG (ignored)", 0xc001_0010, 1, 0);
        msr(c, "TOP_MEM1", 0xc001_001a, Ok(0));
        msr(c, "IORR_BASE0", 0xc001_0016, Err(GP));
        msr(c, "DE_CFG", 0xc001_1029, Ok(2));
        wr(c, "DE_CFG (dropped)", 0xc001_1029, 0, 0);
        msr(c, "LS_CFG", 0xc001_1020, Err(GP));
        msr(c, "NB_CFG", 0xc001_001f, Ok(0));
        wr(c, "NB_CFG (dropped)", 0xc001_001f, 1, 0);
        msr(c, "INT_PENDING_MSG/C1E", 0xc001_0055, Ok(0));
        wr(c, "INT_PENDING_MSG/C1E", 0xc001_0055, 0, GP);
        msr(c, "MC4_MISC1 (locked)", 0xc000_0408, Ok(1 << 61));
        msr(c, "PERFCTR0 (no vPMU)", 0xc001_0004, Ok(0));
        wr(c, "PERFCTR0 (no vPMU)", 0xc001_0004, 5, 0);
        msr(c, "MISC_ENABLE (Intel's)", 0x1a0, Err(GP));
        if cpu.e1.ecx & (1 << 9) != 0 {
            c.check("OSVW_ID_LENGTH at least 3", rdmsr(0xc001_0140).is_ok_and(|l| l >= 3));
        } else {
            msr(c, "OSVW_ID_LENGTH (not offered)", 0xc001_0140, Err(GP));
        }
    }
    if cpu.intel {
        msr(c, "FEATURE_CONTROL", 0x3a, Ok(1));
        wr(c, "FEATURE_CONTROL", 0x3a, 5, GP);
        let misc = rdmsr(0x1a0);
        c.check("MISC_ENABLE reads, no BTS or PEBS", misc.is_ok_and(|m| m & (3 << 11) == 3 << 11));
        let misc = misc.unwrap_or(0);
        wr(c, "MISC_ENABLE unchanged", 0x1a0, misc, 0);
        wr(c, "MISC_ENABLE changed", 0x1a0, misc ^ 1, GP);
        msr(c, "PERF_STATUS", 0x198, Ok(0));
        msr(c, "THERM_STATUS", 0x19c, Ok(0));
        msr(c, "PMC0 (no vPMU)", 0xc1, Ok(0));
        wr(c, "PMC0 (no vPMU)", 0xc1, 5, 0);
        msr(c, "VMX_BASIC (no nested VMX)", 0x480, Err(GP));
        msr(c, "HWCR (AMD's)", 0xc001_0015, Err(GP));
    }
}

const HPET: u64 = 0xfed0_0000;

fn mmio(c: &mut Checks, si_paddr: u64) {
    // SAFETY: the first 4 GiB are identity-mapped; nothing backs the HPET
    // page of a PVH domU, so the hypervisor answers.
    unsafe {
        c.eq("HPET read (32-bit) is all ones", core::ptr::read_volatile(HPET as *const u32) as i64, 0xffff_ffff);
        c.eq("HPET read (8-bit)", core::ptr::read_volatile((HPET + 1) as *const u8) as i64, 0xff);
        c.eq("HPET read (64-bit)", core::ptr::read_volatile((HPET + 8) as *const u64) as i64, -1);
        core::ptr::write_volatile((HPET + 0x10) as *mut u32, 0);
        c.eq("an HPET write is dropped", core::ptr::read_volatile((HPET + 0x10) as *const u32) as i64, 0xffff_ffff);
    }
    let (r8, r9): (u64, u64);
    // SAFETY: loads from the unbacked page, as above.
    unsafe {
        core::arch::asm!(
            "mov r8d, [{a}]",
            "mov r9w, [{a}]",
            a = in(reg) HPET,
            inout("r8") 0x1111_1111_1111_1111u64 => r8,
            inout("r9") 0x1111_1111_1111_1111u64 => r9,
            options(nostack)
        )
    };
    c.eq("a 32-bit load zero-extends", r8 as i64, 0xffff_ffff);
    c.eq("a 16-bit load merges", r9 as i64, 0x1111_1111_1111_ffff);
    let ram_end = memmap(start_info(si_paddr)).iter().filter(|e| e.kind == 1).map(|e| e.addr + e.size).max();
    if let Some(end) = ram_end {
        let hole = (end + 0x20_0000) & !0xfff;
        // SAFETY: above the domain's RAM, nothing is mapped there.
        let v = unsafe { core::ptr::read_volatile(hole as *const u32) };
        c.eq("a read above RAM is all ones", v as i64, 0xffff_ffff);
    }
}

fn port_io(c: &mut Checks) {
    let (a, b): (u64, u64);
    // SAFETY: port 0x1234 has no device; only registers change.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") 0x1234u16, inout("rax") 0x5555_5555_5555_5500u64 => a, options(nostack));
        core::arch::asm!("in eax, dx", in("dx") 0x1234u16, inout("rax") 0x5555_5555_0000_0000u64 => b, options(nostack));
        core::arch::asm!("out dx, eax", in("dx") 0x1234u16, in("eax") 0u32, options(nostack));
    }
    c.eq("IN AL from an unhandled port is 0xff", a as i64, 0x5555_5555_5555_55ff);
    c.eq("IN EAX is all ones, zero-extended", b as i64, 0xffff_ffff);
}

/// A formatted check name, kept on the stack.
fn fmt(args: core::fmt::Arguments<'_>) -> Name {
    let mut n = Name { buf: [0; 96], len: 0 };
    let _ = core::fmt::write(&mut n, args);
    n
}

struct Name {
    buf: [u8; 96],
    len: usize,
}

impl core::fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    x86::install_idt();
    x86::set_gate(13, probe_gp as *const () as u64);
    x86::set_gate(6, probe_ud as *const () as u64);
    let cmdline = c_str(start_info(si_paddr).cmdline_paddr);
    let only = cmdline.split(' ').find_map(|w| w.strip_prefix("only="));
    let run = |s: &str| only.is_none_or(|o| o.split(',').any(|w| w == s));
    let cpu = Cpu::read();
    println!("probing as an {} guest ({cmdline})", if cpu.intel { "Intel" } else { "AMD" });
    let mut c = Checks::new();
    for (name, f) in [
        ("cr", control_registers as fn(&mut Checks, &Cpu)),
        ("efer", efer),
        ("xcr", xcr0),
        ("init", initialise),
        ("msr", msrs),
    ] {
        if run(name) {
            println!("-- {name}");
            f(&mut c, &cpu);
        }
    }
    if run("mmio") {
        println!("-- mmio");
        mmio(&mut c, si_paddr);
    }
    if run("io") {
        println!("-- io");
        port_io(&mut c);
    }
    println!("the domain survived its probes");
    c.finish()
}
