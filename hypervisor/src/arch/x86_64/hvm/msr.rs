//! Guest MSR accesses the hardware does not pass through. Unknown MSRs
//! raise #GP, as in Xen since 4.15.

use crate::arch::x86_64::Vendor;

pub const EFER: u32 = 0xc000_0080;
pub const TSC: u32 = 0x10;
pub const TSC_ADJUST: u32 = 0x3b;
pub const APIC_BASE: u32 = 0x1b;
pub const FEATURE_CONTROL: u32 = 0x3a;
pub const BIOS_SIGN_ID: u32 = 0x8b;
pub const MTRR_CAP: u32 = 0xfe;
pub const MISC_ENABLE: u32 = 0x1a0;
pub const PAT: u32 = 0x277;
pub const HWCR: u32 = 0xc001_0015;
pub const VM_CR: u32 = 0xc001_0114;
pub const DE_CFG: u32 = 0xc001_1029;
/// AMD's interrupt-pending/C1E MSR (Linux: MSR_K8_INT_PENDING_MSG), which
/// Linux reads unchecked on CPUs with erratum 400 (family 0xf from model
/// 0x41, early family 0x10: QEMU's `qemu64` among them).
pub const K8_ENABLE_C1E: u32 = 0xc001_0055;
pub const AMD64_NB_CFG: u32 = 0xc001_001f;

const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
pub const EFER_SVME: u64 = 1 << 12;
const EFER_FFXSR: u64 = 1 << 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gp;

/// The EFER a guest write produces, from the guest-visible value now:
/// reserved bits and SVME (no nested virtualisation) fault, LMA cannot be
/// written, LME cannot change while paging is on.
pub fn efer_write(current: u64, value: u64, paging: bool, ffxsr: bool) -> Result<u64, Gp> {
    let mut allowed = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
    if ffxsr {
        allowed |= EFER_FFXSR;
    }
    if value & !allowed != 0 {
        return Err(Gp);
    }
    if paging && (value ^ current) & EFER_LME != 0 {
        return Err(Gp);
    }
    Ok((value & !EFER_LMA) | (current & EFER_LMA))
}

/// The guest's TSC offset and IA32_TSC_ADJUST after the guest writes
/// `value` to IA32_TSC: the TSC reads `value` now, and TSC_ADJUST moves
/// by as much as the TSC did (the SDM's rule, and Xen's
/// hvm_set_guest_tsc_msr). Returns (offset, adjust).
pub fn tsc_write(offset: u64, adjust: u64, host_tsc: u64, value: u64) -> (u64, u64) {
    let new_offset = value.wrapping_sub(host_tsc);
    (new_offset, adjust.wrapping_add(new_offset.wrapping_sub(offset)))
}

/// The same after a write of `value` to IA32_TSC_ADJUST: the TSC moves by
/// the change (Xen's hvm_set_guest_tsc_adjust). Returns (offset, adjust).
pub fn tsc_adjust_write(offset: u64, adjust: u64, value: u64) -> (u64, u64) {
    (offset.wrapping_add(value.wrapping_sub(adjust)), value)
}

/// Whether every byte of a PAT value is a valid memory type.
pub fn pat_valid(v: u64) -> bool {
    (0..8).all(|i| matches!((v >> (i * 8)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7))
}

/// Values for read-only MSRs whose answer does not depend on the vCPU.
pub fn read_fixed(msr: u32, vendor: Vendor) -> Result<u64, Gp> {
    let intel = vendor == Vendor::Intel;
    let amd = matches!(vendor, Vendor::Amd | Vendor::Hygon);
    match msr {
        BIOS_SIGN_ID => Ok(0),
        // Locked, VMX off: a guest must not try to enable it.
        FEATURE_CONTROL if intel => Ok(1),
        // Fast strings; no BTS, no PEBS.
        MISC_ENABLE if intel => Ok(1 | 1 << 11 | 1 << 12),
        // SVM disabled and locked.
        VM_CR if amd => Ok(0x18),
        // TSC counts at the P0 rate.
        HWCR if amd => Ok(1 << 24),
        // LFENCE is dispatch-serialising.
        DE_CFG if amd => Ok(1 << 1),
        // Read as zero on every vendor, as Xen's hvm_msr_read_intercept
        // does (so a guest moved off AMD does not crash): no C1E, so no
        // erratum-400 workaround needed.
        K8_ENABLE_C1E | AMD64_NB_CFG => Ok(0),
        _ => Err(Gp),
    }
}

/// MSRs whose writes are accepted and dropped.
pub fn write_ignored(msr: u32, vendor: Vendor) -> bool {
    let intel = vendor == Vendor::Intel;
    let amd = matches!(vendor, Vendor::Amd | Vendor::Hygon);
    match msr {
        BIOS_SIGN_ID => true,
        MISC_ENABLE => intel,
        HWCR | DE_CFG => amd,
        // Xen drops NB_CFG writes for every HVM guest; C1E writes fault.
        AMD64_NB_CFG => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efer_rules() {
        assert_eq!(efer_write(0, EFER_LME | EFER_NXE | EFER_SCE, false, false), Ok(EFER_LME | EFER_NXE | EFER_SCE));
        assert_eq!(efer_write(0, EFER_SVME, false, false), Err(Gp), "no nested SVM");
        assert_eq!(efer_write(0, 1 << 20, false, false), Err(Gp), "reserved bit");
        assert_eq!(efer_write(0, EFER_FFXSR, false, false), Err(Gp));
        assert_eq!(efer_write(0, EFER_FFXSR, false, true), Ok(EFER_FFXSR));
        // LMA is kept from the current value whatever is written.
        assert_eq!(efer_write(EFER_LME | EFER_LMA, EFER_LME, true, false), Ok(EFER_LME | EFER_LMA));
        assert_eq!(efer_write(EFER_LME, EFER_LME | EFER_LMA, false, false), Ok(EFER_LME));
        // LME cannot change with paging on.
        assert_eq!(efer_write(EFER_LME | EFER_LMA, 0, true, false), Err(Gp));
    }

    #[test]
    fn tsc_and_tsc_adjust_move_together() {
        let host = 1_000_000u64;
        // The guest sets its TSC to 5000: TSC_ADJUST records the jump.
        let (off, adj) = tsc_write(0, 0, host, 5000);
        assert_eq!(host.wrapping_add(off), 5000);
        assert_eq!(adj, off, "TSC_ADJUST moved as much as the TSC");
        // Writing TSC_ADJUST back to 0 undoes the jump.
        let (off2, adj2) = tsc_adjust_write(off, adj, 0);
        assert_eq!((off2, adj2), (0, 0));
        // Adding 100 to TSC_ADJUST adds 100 to the TSC.
        let (off3, adj3) = tsc_adjust_write(off2, adj2, 100);
        assert_eq!((host.wrapping_add(off3), adj3), (host + 100, 100));
        // Negative adjustments wrap as two's complement.
        let (off4, adj4) = tsc_adjust_write(off3, adj3, (-50i64) as u64);
        assert_eq!(host.wrapping_add(off4), host - 50);
        assert_eq!(adj4 as i64, -50);
    }

    #[test]
    fn pat_types() {
        assert!(pat_valid(0x0007_0406_0007_0406));
        assert!(!pat_valid(0x0007_0406_0007_0402), "type 2 is reserved");
        assert!(!pat_valid(0x0807_0406_0007_0406));
    }

    #[test]
    fn vendor_specific_msrs() {
        assert_eq!(read_fixed(VM_CR, Vendor::Amd), Ok(0x18));
        assert_eq!(read_fixed(VM_CR, Vendor::Intel), Err(Gp));
        assert_eq!(read_fixed(FEATURE_CONTROL, Vendor::Intel), Ok(1));
        assert_eq!(read_fixed(FEATURE_CONTROL, Vendor::Amd), Err(Gp));
        assert_eq!(read_fixed(0x1234, Vendor::Amd), Err(Gp));
        assert!(write_ignored(DE_CFG, Vendor::Amd));
        assert!(!write_ignored(DE_CFG, Vendor::Intel));
    }

    #[test]
    fn c1e_and_nb_cfg_read_as_zero_on_every_vendor_as_in_xen() {
        for v in [Vendor::Amd, Vendor::Intel, Vendor::Hygon] {
            assert_eq!(read_fixed(K8_ENABLE_C1E, v), Ok(0), "{v:?}");
            assert_eq!(read_fixed(AMD64_NB_CFG, v), Ok(0), "{v:?}");
            assert!(write_ignored(AMD64_NB_CFG, v));
            assert!(!write_ignored(K8_ENABLE_C1E, v), "a C1E write still faults");
        }
    }
}
