//! Writes to CR0, CR4, EFER and XCR0, and whole starting states, checked
//! against the guest's policy as Xen checks them (hvm_set_cr0,
//! hvm_set_cr4, hvm_set_efer with hvm_efer_valid, handle_xsetbv,
//! arch_set_info_hvm_guest): what the guest may not have raises #GP (or is
//! refused), so the hardware never sees a state it would refuse to enter.

use super::GuestPolicy;

pub use super::bits::{cr0, cr4, efer, xcr0};

/// The access raises #GP in the guest.
pub use super::super::msr::Gp;

/// A CR0 write's result: the new CR0 and EFER (LMA follows paging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cr0Write {
    pub cr0: u64,
    pub efer: u64,
}

/// The guest writes `value` to CR0, which holds `old`; `efer` and `cr4`
/// are its current values, `cs_long` whether it runs 64-bit code.
pub fn cr0_write(old: u64, value: u64, efer: u64, cr4: u64, cs_long: bool) -> Result<Cr0Write, Gp> {
    use self::cr0::*;
    if value >> 32 != 0 {
        return Err(Gp);
    }
    // Undefined low bits are ignored; ET always reads 1.
    let value = (value & DEFINED) | ET;
    if value & (PE | PG) == PG {
        return Err(Gp);
    }
    // Both vendors fault on it (Xen leaves it to the hardware).
    if value & NW != 0 && value & CD == 0 {
        return Err(Gp);
    }
    if value & WP == 0 && cr4 & cr4::CET != 0 {
        return Err(Gp);
    }
    let mut efer_out = efer;
    if value & PG != 0 && old & PG == 0 && efer & efer::LME != 0 {
        if cr4 & cr4::PAE == 0 {
            return Err(Gp);
        }
        efer_out |= efer::LMA;
    } else if value & PG == 0 && old & PG != 0 {
        // Intel faults here (and VM entry would refuse the state); AMD
        // would shut down: Xen follows Intel.
        if efer & efer::LME != 0 && cs_long {
            return Err(Gp);
        }
        if cr4 & cr4::PCIDE != 0 {
            return Err(Gp);
        }
        efer_out &= !efer::LMA;
    }
    Ok(Cr0Write { cr0: value, efer: efer_out })
}

/// The guest writes `value` to CR4, which holds `old`.
pub fn cr4_write(p: &GuestPolicy, old: u64, value: u64, cr0: u64, cr3: u64, efer: u64) -> Result<u64, Gp> {
    use self::cr4::*;
    if value & !p.cr4_valid() != 0 {
        return Err(Gp);
    }
    let long = efer & efer::LMA != 0;
    if value & PAE == 0 && long {
        return Err(Gp);
    }
    if value & CET != 0 && cr0 & cr0::WP == 0 {
        return Err(Gp);
    }
    if value & PCIDE != 0 && old & PCIDE == 0 && (!long || cr3 & 0xfff != 0) {
        return Err(Gp);
    }
    // LA57 cannot change in long mode (and is never offered today).
    if (value ^ old) & LA57 != 0 && long {
        return Err(Gp);
    }
    Ok(value)
}

/// An EFER write's result: the new value, and whether LME has just been
/// set (the caller clears CS.L, as Xen does, so that a CS loaded with L
/// and D in legacy mode cannot make the entry after CR0.PG fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EferWrite {
    pub efer: u64,
    pub lme_set: bool,
}

/// Why an EFER value is not one the guest may have (Xen's hvm_efer_valid);
/// `cr0_pg` is CR0.PG when LMA must agree with it.
pub fn efer_invalid(p: &GuestPolicy, value: u64, cr0_pg: Option<bool>) -> Option<&'static str> {
    use self::efer::*;
    if value & !p.efer_valid() != 0 {
        return Some(if value & SVME != 0 { "SVME without nested virtualisation" } else { "bits the vCPU lacks" });
    }
    if value & LMA != 0 && (value & LME == 0 || cr0_pg == Some(false)) {
        return Some("LMA without LME and paging");
    }
    None
}

/// The guest writes `value` to EFER, which holds `old`; `paging` is CR0.PG.
pub fn efer_write(p: &GuestPolicy, old: u64, value: u64, paging: bool) -> Result<EferWrite, Gp> {
    use self::efer::*;
    // LMA is the CPU's: what the guest writes there is ignored.
    let value = value & !LMA;
    if efer_invalid(p, value, None).is_some() {
        return Err(Gp);
    }
    if paging && (value ^ old) & LME != 0 {
        return Err(Gp);
    }
    Ok(EferWrite { efer: value | (old & LMA), lme_set: value & LME != 0 && old & LME == 0 })
}

/// XSETBV of `value` into XCR `index` (Xen's x86emul_write_xcr and
/// handle_xsetbv): only XCR0, only components the guest's leaf 0xd
/// offers, x87 always, YMM with SSE, the AVX-512, MPX and AMX groups
/// whole. (No XCR0 is valid while XSAVE is hidden: the mask is empty.)
pub fn xcr0_write(p: &GuestPolicy, index: u32, value: u64) -> Result<u64, Gp> {
    use self::xcr0::*;
    if index != 0 || value & !p.xcr0_mask != 0 || value & X87 == 0 {
        return Err(Gp);
    }
    if value & YMM != 0 && value & SSE == 0 {
        return Err(Gp);
    }
    let whole = |g: u64| value & g == 0 || value & g == g;
    if !whole(AVX512) || (value & AVX512 != 0 && value & YMM == 0) || !whole(BNDREGS | BNDCSR) || !whole(TILE) {
        return Err(Gp);
    }
    Ok(value)
}

/// Why a whole state (a VCPUOP_initialise context, a start state) is one
/// the vCPU cannot have; None if it may run it. Xen's
/// arch_set_info_hvm_guest checks CR4 and EFER; CR0 and the combinations
/// the hardware would refuse to enter are checked here too.
pub fn state_invalid(p: &GuestPolicy, cr0: u64, cr4: u64, efer: u64) -> Option<&'static str> {
    use self::cr0::*;
    if cr0 >> 32 != 0 || cr0 & !DEFINED != 0 {
        return Some("CR0 has reserved bits set");
    }
    if cr0 & (PE | PG) == PG {
        return Some("CR0.PG without CR0.PE");
    }
    if cr0 & NW != 0 && cr0 & CD == 0 {
        return Some("CR0.NW without CR0.CD");
    }
    if cr4 & !p.cr4_valid() != 0 {
        return Some("CR4 has bits the vCPU cannot set");
    }
    if let Some(why) = efer_invalid(p, efer, Some(cr0 & PG != 0)) {
        return Some(why);
    }
    let long = efer & efer::LMA != 0;
    if long && cr4 & cr4::PAE == 0 {
        return Some("long mode without PAE");
    }
    if cr0 & PG != 0 && efer & efer::LME != 0 && !long {
        return Some("paging with EFER.LME but not LMA");
    }
    if cr4 & cr4::PCIDE != 0 && !long {
        return Some("CR4.PCIDE outside long mode");
    }
    if cr4 & cr4::CET != 0 && cr0 & WP == 0 {
        return Some("CR4.CET without CR0.WP");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::qemu64;
    use super::*;

    const LONG_CR0: u64 = cr0::PE | cr0::ET | cr0::PG;
    const LONG_EFER: u64 = efer::LME | efer::LMA;

    #[test]
    fn cr0_rules() {
        use cr0::*;
        // High bits fault; undefined low bits are dropped, ET kept.
        assert_eq!(cr0_write(LONG_CR0, LONG_CR0 | 1 << 32, LONG_EFER, cr4::PAE, true), Err(Gp));
        assert_eq!(cr0_write(LONG_CR0, LONG_CR0 | 1 << 6, LONG_EFER, cr4::PAE, true).map(|w| w.cr0), Ok(LONG_CR0));
        assert_eq!(cr0_write(PE | ET, PE, 0, 0, false).map(|w| w.cr0), Ok(PE | ET));
        assert_eq!(cr0_write(LONG_CR0, PG | ET, LONG_EFER, cr4::PAE, true), Err(Gp), "PG without PE");
        assert_eq!(cr0_write(LONG_CR0, LONG_CR0 | NW, LONG_EFER, cr4::PAE, true), Err(Gp), "NW without CD");
        assert!(cr0_write(LONG_CR0, LONG_CR0 | NW | CD, LONG_EFER, cr4::PAE, true).is_ok());
        // Clearing PG: not from 64-bit code, not with PCIDE; LMA goes.
        assert_eq!(cr0_write(LONG_CR0, PE | ET, LONG_EFER, cr4::PAE, true), Err(Gp));
        assert_eq!(cr0_write(LONG_CR0, PE | ET, LONG_EFER, cr4::PAE | cr4::PCIDE, false), Err(Gp));
        assert_eq!(
            cr0_write(LONG_CR0, PE | ET, LONG_EFER, cr4::PAE, false),
            Ok(Cr0Write { cr0: PE | ET, efer: efer::LME })
        );
        // Setting PG with LME: PAE first, then LMA follows.
        assert_eq!(cr0_write(PE | ET, LONG_CR0, efer::LME, 0, false), Err(Gp));
        assert_eq!(
            cr0_write(PE | ET, LONG_CR0, efer::LME, cr4::PAE, false),
            Ok(Cr0Write { cr0: LONG_CR0, efer: LONG_EFER })
        );
        // Without LME, paging is 32-bit: no LMA.
        assert_eq!(cr0_write(PE | ET, LONG_CR0, 0, 0, false), Ok(Cr0Write { cr0: LONG_CR0, efer: 0 }));
        // WP cannot go while CET is on.
        assert_eq!(cr0_write(LONG_CR0 | WP, LONG_CR0, LONG_EFER, cr4::PAE | cr4::CET, true), Err(Gp));
    }

    #[test]
    fn cr4_rules() {
        use cr4::*;
        let p = qemu64();
        let cr4 = PAE | PGE | OSFXSR;
        assert_eq!(cr4_write(&p, cr4, cr4 | PSE, LONG_CR0, 0x1000, LONG_EFER), Ok(cr4 | PSE));
        for bit in [VMXE, UMIP, SMEP, SMAP, PKE, OSXSAVE, FSGSBASE, LA57, 1 << 15, 1 << 40] {
            assert_eq!(cr4_write(&p, cr4, cr4 | bit, LONG_CR0, 0x1000, LONG_EFER), Err(Gp), "{bit:#x}");
        }
        // PAE stays in long mode; may go outside it.
        assert_eq!(cr4_write(&p, cr4, cr4 & !PAE, LONG_CR0, 0x1000, LONG_EFER), Err(Gp));
        assert_eq!(cr4_write(&p, cr4, cr4 & !PAE, cr0::PE, 0x1000, 0), Ok(cr4 & !PAE));
        // PCIDE: long mode and CR3[11:0] = 0.
        let pcid = GuestPolicy { l1_ecx: p.l1_ecx | 1 << 17, ..p };
        assert_eq!(cr4_write(&pcid, cr4, cr4 | PCIDE, LONG_CR0, 0x1000, LONG_EFER), Ok(cr4 | PCIDE));
        assert_eq!(cr4_write(&pcid, cr4, cr4 | PCIDE, LONG_CR0, 0x1001, LONG_EFER), Err(Gp));
        assert_eq!(cr4_write(&pcid, cr4, cr4 | PCIDE, cr0::PE, 0x1000, 0), Err(Gp));
        // UMIP where offered.
        let umip = GuestPolicy { l7_ecx: 1 << 2, ..p };
        assert_eq!(cr4_write(&umip, cr4, cr4 | UMIP, LONG_CR0, 0, LONG_EFER), Ok(cr4 | UMIP));
    }

    #[test]
    fn efer_rules() {
        use efer::*;
        let p = qemu64();
        assert_eq!(efer_write(&p, 0, LME | NXE | SCE, false), Ok(EferWrite { efer: LME | NXE | SCE, lme_set: true }));
        assert_eq!(efer_write(&p, LME, LME | SCE, false), Ok(EferWrite { efer: LME | SCE, lme_set: false }));
        assert_eq!(efer_write(&p, 0, SVME, false), Err(Gp), "no nested SVM");
        assert_eq!(efer_write(&p, 0, 1 << 20, false), Err(Gp), "reserved bit");
        assert_eq!(efer_write(&p, 0, 1 << 21, false), Err(Gp), "AutoIBRS is not offered");
        assert_eq!(efer_write(&p, 0, FFXSR, false), Err(Gp));
        let ffxsr = GuestPolicy { e1_edx: p.e1_edx | 1 << 25, ..p };
        assert_eq!(efer_write(&ffxsr, 0, FFXSR, false).map(|w| w.efer), Ok(FFXSR));
        let no_nx = GuestPolicy { e1_edx: 1 << 29, ..p };
        assert_eq!(efer_write(&no_nx, 0, NXE, false), Err(Gp));
        // LMA is kept from the current value whatever is written.
        assert_eq!(efer_write(&p, LONG_EFER, LME, true).map(|w| w.efer), Ok(LONG_EFER));
        assert_eq!(efer_write(&p, LME, LME | LMA, false).map(|w| w.efer), Ok(LME));
        // LME cannot change with paging on.
        assert_eq!(efer_write(&p, LONG_EFER, 0, true), Err(Gp));
    }

    #[test]
    fn xcr0_rules() {
        use xcr0::*;
        let none = qemu64();
        assert_eq!(xcr0_write(&none, 0, X87), Err(Gp), "XSAVE hidden: nothing is valid");
        let p = GuestPolicy { xcr0_mask: X87 | SSE | YMM | AVX512, ..none };
        assert_eq!(xcr0_write(&p, 0, X87 | SSE | YMM), Ok(X87 | SSE | YMM));
        assert_eq!(xcr0_write(&p, 0, SSE), Err(Gp), "x87 is required");
        assert_eq!(xcr0_write(&p, 0, X87 | YMM), Err(Gp), "YMM needs SSE");
        assert_eq!(xcr0_write(&p, 0, X87 | SSE | YMM | 1 << 5), Err(Gp), "AVX-512 whole");
        assert_eq!(xcr0_write(&p, 0, X87 | SSE | AVX512), Err(Gp), "AVX-512 needs YMM");
        assert!(xcr0_write(&p, 0, X87 | SSE | YMM | AVX512).is_ok());
        assert_eq!(xcr0_write(&p, 0, X87 | BNDREGS), Err(Gp), "not offered");
        assert_eq!(xcr0_write(&p, 1, X87), Err(Gp), "XCR1");
    }

    #[test]
    fn whole_states() {
        let p = qemu64();
        let pae = cr4::PAE;
        assert_eq!(state_invalid(&p, LONG_CR0, pae, LONG_EFER), None);
        assert_eq!(state_invalid(&p, cr0::PE | cr0::ET, 0, 0), None, "the PVH entry state");
        assert_eq!(state_invalid(&p, cr0::ET | cr0::CD | cr0::NW, 0, 0), None, "after STARTUP");
        assert!(state_invalid(&p, LONG_CR0 | 1 << 32, pae, LONG_EFER).is_some());
        assert!(state_invalid(&p, LONG_CR0 | 1 << 6, pae, LONG_EFER).is_some());
        assert!(state_invalid(&p, LONG_CR0 | cr0::NW, pae, LONG_EFER).is_some());
        assert!(state_invalid(&p, cr0::PG, 0, 0).is_some());
        assert!(state_invalid(&p, LONG_CR0, pae | cr4::VMXE, LONG_EFER).unwrap().contains("CR4"));
        assert!(state_invalid(&p, LONG_CR0, pae | cr4::UMIP, LONG_EFER).is_some());
        assert!(state_invalid(&p, LONG_CR0, pae, LONG_EFER | efer::SVME).unwrap().contains("SVME"));
        assert!(state_invalid(&p, LONG_CR0, 0, LONG_EFER).is_some(), "long mode needs PAE");
        assert!(state_invalid(&p, cr0::PE | cr0::ET, 0, LONG_EFER).is_some(), "LMA without paging");
        assert!(state_invalid(&p, LONG_CR0, pae, efer::LME).is_some(), "LME and PG without LMA");
    }
}
