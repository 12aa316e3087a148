//! A vCPU's architectural starting state, in one vendor-neutral form that
//! both backends load: the PVH entry, the real-mode start after INIT and
//! STARTUP, and the state a guest passes to VCPUOP_initialise (Xen's
//! `vcpu_hvm_context`, validated here as Xen validates it).

use super::policy::GuestPolicy;
use super::policy::cr::state_invalid;
use super::regs::GuestRegs;
use xen_abi::Pod;
use xen_abi::vcpu::{VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B, VcpuHvmContext, VcpuHvmX86_32, VcpuHvmX86_64};

/// A segment register with its hidden part. `attr` uses Xen's packing:
/// type 0-3, S 4, DPL 5-6, P 7, AVL 8, L 9, D/B 10, G 11; 0 = unusable.
/// `limit` is in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    pub selector: u16,
    pub attr: u16,
    pub limit: u32,
    pub base: u64,
}

pub const ATTR_P: u16 = 1 << 7;
pub const ATTR_S: u16 = 1 << 4;
pub const ATTR_L: u16 = 1 << 9;
pub const ATTR_DB: u16 = 1 << 10;
pub const ATTR_G: u16 = 1 << 11;

impl Segment {
    const fn flat(attr: u16) -> Segment {
        Segment { selector: 0, attr, limit: 0xffff_ffff, base: 0 }
    }

    fn present(&self) -> bool {
        self.attr & ATTR_P != 0
    }

    fn dpl(&self) -> u16 {
        (self.attr >> 5) & 3
    }

    fn kind(&self) -> u16 {
        self.attr & 0xf
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitialState {
    pub regs: GuestRegs,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub ss: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: (u64, u32),
    pub idtr: (u64, u32),
}

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bits a guest may set (CF..ID) and the one that is always 1.
const RFLAGS_ALL: u64 = 0x003f_7fd7;
const RFLAGS_MBS: u64 = 0x2;

/// TR: a busy 32-bit TSS.
const TR_BUSY_TSS: u16 = ATTR_P | 0xb;

impl InitialState {
    /// Xen's PVH entry: 32-bit protected mode, paging off, flat 4 GiB
    /// segments, `rbx` = the hvm_start_info address.
    pub fn pvh_entry(entry: u64, start_info: u64) -> InitialState {
        let code = ATTR_G | ATTR_DB | ATTR_P | ATTR_S | 0xb;
        let data = ATTR_G | ATTR_DB | ATTR_P | ATTR_S | 0x3;
        InitialState {
            regs: GuestRegs { rbx: start_info, ..GuestRegs::default() },
            rip: entry,
            rflags: RFLAGS_MBS,
            cr0: CR0_PE | CR0_ET,
            cs: Segment { selector: 0x10, ..Segment::flat(code) },
            ds: Segment { selector: 0x18, ..Segment::flat(data) },
            es: Segment { selector: 0x18, ..Segment::flat(data) },
            ss: Segment { selector: 0x18, ..Segment::flat(data) },
            tr: Segment { selector: 0x20, attr: TR_BUSY_TSS, limit: 0x67, base: 0 },
            ..InitialState::default()
        }
    }

    /// What a processor does on STARTUP with vector `v` after INIT: real
    /// mode at `v << 8`:0 (linear `v << 12`), caches off as after reset.
    pub fn startup(vector: u8) -> InitialState {
        let real = |attr: u16| Segment { selector: 0, attr, limit: 0xffff, base: 0 };
        let data = real(ATTR_P | ATTR_S | 0x3);
        InitialState {
            rip: 0,
            rflags: RFLAGS_MBS,
            cr0: CR0_ET | CR0_CD | CR0_NW,
            cs: Segment {
                selector: (vector as u16) << 8,
                attr: ATTR_P | ATTR_S | 0xb,
                limit: 0xffff,
                base: (vector as u64) << 12,
            },
            ds: data,
            es: data,
            ss: data,
            fs: data,
            gs: data,
            tr: Segment { selector: 0, attr: ATTR_P | 0xb, limit: 0xffff, base: 0 },
            ldtr: Segment { selector: 0, attr: ATTR_P | 0x2, limit: 0xffff, base: 0 },
            gdtr: (0, 0xffff),
            idtr: (0, 0xffff),
            ..InitialState::default()
        }
    }

    /// Validates a VCPUOP_initialise argument as Xen's
    /// `arch_set_info_hvm_guest` does, against the guest's CPU policy (CR4
    /// and EFER bits it may set; CR0 and the combinations the hardware
    /// would refuse to enter too). Err is the reason (the hypercall says
    /// -EINVAL).
    pub fn from_hvm_context(ctx: &VcpuHvmContext, policy: &GuestPolicy) -> Result<InitialState, &'static str> {
        if ctx.pad != 0 {
            return Err("padding is not zero");
        }
        let mut s = match ctx.mode {
            VCPU_HVM_MODE_32B => {
                let r = VcpuHvmX86_32::read_from(&ctx.regs).ok_or("short context")?;
                from_32(&r)?
            }
            VCPU_HVM_MODE_64B => {
                let r = VcpuHvmX86_64::read_from(&ctx.regs).ok_or("short context")?;
                from_64(&r)?
            }
            _ => return Err("unknown mode"),
        };
        if s.efer & EFER_LME != 0 {
            s.efer |= EFER_LMA;
        }
        match state_invalid(policy, s.cr0, s.cr4, s.efer) {
            Some(why) => Err(why),
            None => Ok(s),
        }
    }
}

fn seg(attr: u16, limit: u32, base: u32) -> Result<Segment, &'static str> {
    if attr & 0xf000 != 0 {
        return Err("segment attribute bits 12-15 are not zero");
    }
    let mut s = Segment { selector: 0, attr, limit, base: base as u64 };
    if s.present() {
        s.attr |= 1; // accessed
        if s.attr & ATTR_G != 0 && limit & 0xfff != 0xfff {
            return Err("a page-granular limit must end in 0xfff");
        }
        if s.attr & ATTR_G == 0 && limit > 0xf_ffff {
            return Err("a byte-granular limit is above 1 MiB");
        }
    }
    Ok(s)
}

fn from_32(r: &VcpuHvmX86_32) -> Result<InitialState, &'static str> {
    if r.pad1 != 0 || r.pad2 != [0; 3] {
        return Err("padding is not zero");
    }
    let cs = seg(r.cs_ar, r.cs_limit, r.cs_base)?;
    let ds = seg(r.ds_ar, r.ds_limit, r.ds_base)?;
    let ss = seg(r.ss_ar, r.ss_limit, r.ss_base)?;
    let es = seg(r.es_ar, r.es_limit, r.es_base)?;
    let tr = seg(r.tr_ar | 2, r.tr_limit, r.tr_base)?;
    for (s, what) in [(&cs, "CS"), (&ss, "SS")] {
        if s.attr == 0 {
            return Err(if what == "CS" { "null CS" } else { "null SS" });
        }
    }
    if tr.attr & ATTR_S != 0 || tr.kind() != 0xb {
        return Err("TR is not a busy 32-bit TSS");
    }
    for s in [&cs, &ss, &ds, &es] {
        if s.attr != 0 && (s.attr & ATTR_S == 0 || !s.present()) {
            return Err("a code or data segment is a system segment or not present");
        }
    }
    if !tr.present() {
        return Err("TR is not present");
    }
    if cs.kind() & 0x8 == 0 {
        return Err("CS is not a code segment");
    }
    if ss.kind() & 0x8 != 0 || ss.kind() & 0x2 == 0 {
        return Err("SS is not a writable data segment");
    }
    for s in [&ds, &es] {
        if s.attr != 0 && s.kind() & 0x8 != 0 && s.kind() & 0x2 == 0 {
            return Err("DS or ES is an unreadable code segment");
        }
    }
    if r.eip > cs.limit {
        return Err("EIP is outside CS");
    }
    if ss.dpl() != cs.dpl() {
        return Err("SS.DPL differs from CS.DPL");
    }
    if (ds.present() && ds.dpl() > cs.dpl()) || (es.present() && es.dpl() > cs.dpl()) {
        return Err("DS or ES DPL above CS.DPL");
    }
    if r.efer & EFER_LMA != 0 && r.efer & EFER_LME == 0 {
        return Err("EFER.LMA without EFER.LME");
    }
    Ok(InitialState {
        regs: GuestRegs {
            rax: r.eax as u64,
            rcx: r.ecx as u64,
            rdx: r.edx as u64,
            rbx: r.ebx as u64,
            rsp: r.esp as u64,
            rbp: r.ebp as u64,
            rsi: r.esi as u64,
            rdi: r.edi as u64,
            ..GuestRegs::default()
        },
        rip: r.eip as u64,
        rflags: (r.eflags as u64 & RFLAGS_ALL) | RFLAGS_MBS,
        cr0: r.cr0 as u64 | CR0_ET,
        cr3: r.cr3 as u64,
        cr4: r.cr4 as u64,
        efer: r.efer,
        cs,
        ds,
        es,
        ss,
        tr,
        ..InitialState::default()
    })
}

fn from_64(r: &VcpuHvmX86_64) -> Result<InitialState, &'static str> {
    let canonical = |a: u64| ((a as i64) << 16 >> 16) as u64 == a;
    if !canonical(r.rip) {
        return Err("RIP is not canonical");
    }
    if r.cr0 & CR0_PG == 0 {
        return Err("CR0 does not enable paging");
    }
    if r.cr4 & CR4_PAE == 0 {
        return Err("CR4 does not enable PAE");
    }
    if r.efer & EFER_LME == 0 {
        return Err("EFER does not enable long mode");
    }
    let code = Segment { selector: 0, attr: ATTR_G | ATTR_L | ATTR_P | ATTR_S | 0xb, limit: 0xffff_ffff, base: 0 };
    let data = Segment { selector: 0, attr: ATTR_G | ATTR_DB | ATTR_P | ATTR_S | 0x3, limit: 0xffff_ffff, base: 0 };
    Ok(InitialState {
        regs: GuestRegs {
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            rbx: r.rbx,
            rsp: r.rsp,
            rbp: r.rbp,
            rsi: r.rsi,
            rdi: r.rdi,
            ..GuestRegs::default()
        },
        rip: r.rip,
        rflags: (r.rflags & RFLAGS_ALL) | RFLAGS_MBS,
        cr0: r.cr0 | CR0_ET,
        cr3: r.cr3,
        cr4: r.cr4,
        efer: r.efer,
        cs: code,
        ds: data,
        es: data,
        ss: data,
        tr: Segment { selector: 0, attr: TR_BUSY_TSS, limit: 0x67, base: 0 },
        ..InitialState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::arch::x86_64::hvm::policy::tests::qemu64;

    fn ctx32(r: VcpuHvmX86_32) -> VcpuHvmContext {
        let mut c = VcpuHvmContext { mode: VCPU_HVM_MODE_32B, ..VcpuHvmContext::default() };
        c.regs[..120].copy_from_slice(r.as_bytes());
        c
    }

    fn flat32() -> VcpuHvmX86_32 {
        VcpuHvmX86_32 {
            eip: 0x100000,
            esp: 0x9000,
            cr0: 1,
            cs_ar: 0xc9b,
            ds_ar: 0xc93,
            ss_ar: 0xc93,
            es_ar: 0xc93,
            tr_ar: 0x8b,
            cs_limit: 0xffff_ffff,
            ds_limit: 0xffff_ffff,
            ss_limit: 0xffff_ffff,
            es_limit: 0xffff_ffff,
            tr_limit: 0x67,
            ..VcpuHvmX86_32::default()
        }
    }

    #[test]
    fn a_flat_32_bit_context_is_accepted() {
        let s = InitialState::from_hvm_context(&ctx32(flat32()), &qemu64()).unwrap();
        assert_eq!(s.rip, 0x100000);
        assert_eq!(s.regs.rsp, 0x9000);
        assert_eq!(s.cs.attr, 0xc9b, "the accessed bit was already set");
        assert_eq!(s.rflags, 2);
        assert_eq!(s.cr0 & CR0_PE, 1);
    }

    #[test]
    fn bad_32_bit_contexts_are_refused_with_a_reason() {
        let cases: [(fn(&mut VcpuHvmX86_32), &str); 9] = [
            (|r| r.cs_ar = 0, "null CS"),
            (|r| r.cs_ar = 0xc93, "CS is not a code segment"),
            (|r| r.ss_ar = 0xc9b, "SS is not"),
            (|r| r.ss_ar = 0xcf3, "SS.DPL"),
            (|r| r.tr_ar = 0x89 | 0x10, "TR is not"),
            (|r| r.cs_ar = 0x1c9b, "bits 12-15"),
            (|r| r.cs_limit = 0x1_2345, "page-granular"),
            (|r| r.pad1 = 1, "padding"),
            (|r| r.efer = EFER_LMA, "EFER.LMA without"),
        ];
        for (mutate, why) in cases {
            let mut r = flat32();
            mutate(&mut r);
            let e = InitialState::from_hvm_context(&ctx32(r), &qemu64()).unwrap_err();
            assert!(e.contains(why), "{why}: got {e}");
        }
        let mut r = flat32();
        r.eip = 0x2000;
        r.cs_ar = 0x9b;
        r.cs_limit = 0xfff;
        assert_eq!(InitialState::from_hvm_context(&ctx32(r), &qemu64()).unwrap_err(), "EIP is outside CS");
        let mut r = flat32();
        r.cr4 = 1 << 30;
        assert!(InitialState::from_hvm_context(&ctx32(r), &qemu64()).unwrap_err().contains("CR4"));
    }

    #[test]
    fn the_64_bit_context_needs_long_mode_and_gets_flat_segments() {
        let r = VcpuHvmX86_64 {
            rip: 0xffff_ffff_8100_0000,
            rsp: 0xffff_ffff_8200_0000,
            cr0: CR0_PG | CR0_PE,
            cr4: CR4_PAE,
            efer: EFER_LME,
            cr3: 0x1000,
            ..VcpuHvmX86_64::default()
        };
        let mut c = VcpuHvmContext { mode: VCPU_HVM_MODE_64B, ..VcpuHvmContext::default() };
        c.regs[..112].copy_from_slice(r.as_bytes());
        let s = InitialState::from_hvm_context(&c, &qemu64()).unwrap();
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_ne!(s.cs.attr & ATTR_L, 0);
        for (mutate, why) in [
            ((|r: &mut VcpuHvmX86_64| r.rip = 0x8000_0000_0000_0000) as fn(&mut VcpuHvmX86_64), "canonical"),
            (|r| r.cr0 = CR0_PE, "paging"),
            (|r| r.cr4 = 0, "PAE"),
            (|r| r.efer = 0, "long mode"),
            (|r| r.cr4 |= 1 << 13, "CR4"),
            (|r| r.cr4 |= 1 << 11, "CR4"),
            (|r| r.efer |= 1 << 12, "SVME"),
            (|r| r.cr0 |= 1 << 32, "CR0"),
            (|r| r.cr0 |= 1 << 29, "CR0.NW"),
        ] {
            let mut bad = r;
            mutate(&mut bad);
            c.regs[..112].copy_from_slice(bad.as_bytes());
            let e = InitialState::from_hvm_context(&c, &qemu64()).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        c.mode = 7;
        assert_eq!(InitialState::from_hvm_context(&c, &qemu64()).unwrap_err(), "unknown mode");
    }

    #[test]
    fn startup_state_is_real_mode_at_the_vector() {
        let s = InitialState::startup(0x9a);
        assert_eq!(s.cs.selector, 0x9a00);
        assert_eq!(s.cs.base, 0x9a000);
        assert_eq!(s.rip, 0);
        assert_eq!(s.cr0 & CR0_PE, 0);
        let p = InitialState::pvh_entry(0x100000, 0x5000);
        assert_eq!(p.regs.rbx, 0x5000);
        assert_eq!(p.cr0 & CR0_PE, 1);
    }
}
