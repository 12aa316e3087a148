//! The MSRs Xen answers for an HVM guest beyond those the run loop keeps
//! in the hardware state (EFER, PAT, TSC, the APIC): Xen 4.17's
//! guest_rdmsr/guest_wrmsr (msr.c), hvm_msr_read/write_intercept (hvm.c)
//! and the vendor's svm/vmx_msr_read/write_intercept, for a guest of the
//! host's vendor, with Xen's defaults (no vPMU, no nested virtualisation,
//! vMCE with two banks, MTRRs as `mtrr`). Anything else raises #GP, as in
//! Xen since 4.15. docs/abi-coverage.md lists them.

use super::GuestPolicy;
use super::mtrr::Mtrr;
pub use crate::arch::x86_64::hvm::msr::Gp;

pub const P5_MC_ADDR: u32 = 0x0;
pub const P5_MC_TYPE: u32 = 0x1;
pub const PLATFORM_ID: u32 = 0x17;
pub const EBC_FREQUENCY_ID: u32 = 0x2c;
pub const FEATURE_CONTROL: u32 = 0x3a;
pub const UCODE_WRITE: u32 = 0x79;
pub const UCODE_REV: u32 = 0x8b;
pub const PLATFORM_INFO: u32 = 0xce;
pub const MISC_FEATURES_ENABLES: u32 = 0x140;
pub const MCG_CAP: u32 = 0x179;
pub const MCG_STATUS: u32 = 0x17a;
pub const MCG_CTL: u32 = 0x17b;
pub const PERF_STATUS: u32 = 0x198;
pub const PERF_CTL: u32 = 0x199;
pub const THERM_STATUS: u32 = 0x19c;
pub const MISC_ENABLE: u32 = 0x1a0;
pub const DEBUGCTL: u32 = 0x1d9;
/// AMD's last-branch and last-exception records (0x1db-0x1de).
pub const LAST_BRANCH_FROM: u32 = 0x1db;
pub const LAST_INT_TO: u32 = 0x1de;
pub const MC_CTL2_FIRST: u32 = 0x280;
pub const MC_CTL2_LAST: u32 = 0x29f;
pub const MC_FIRST: u32 = 0x400;
pub const MC_LAST: u32 = 0x47f;
pub const MCG_EXT_CTL: u32 = 0x4d0;
pub const TSC_DEADLINE: u32 = 0x6e0;
pub const AMD_TSC_RATIO: u32 = 0xc000_0104;
pub const F10_MC4_MISC1: u32 = 0xc000_0408;
pub const F10_MC4_MISC3: u32 = 0xc000_040a;
pub const K7_EVNTSEL0: u32 = 0xc001_0000;
pub const K7_PERFCTR3: u32 = 0xc001_0007;
pub const K8_SYSCFG: u32 = 0xc001_0010;
pub const K8_HWCR: u32 = 0xc001_0015;
pub const K8_TOP_MEM1: u32 = 0xc001_001a;
pub const K8_TOP_MEM2: u32 = 0xc001_001d;
pub const AMD64_NB_CFG: u32 = 0xc001_001f;
pub const AMD_PATCHLOADER: u32 = 0xc001_0020;
/// Linux's MSR_K8_INT_PENDING_MSG, read unchecked on CPUs with erratum 400.
pub const K8_ENABLE_C1E: u32 = 0xc001_0055;
pub const K8_VM_CR: u32 = 0xc001_0114;
pub const K8_VM_HSAVE_PA: u32 = 0xc001_0117;
pub use super::{OSVW_ID_LENGTH, OSVW_STATUS};
pub const FAM15H_PERF_FIRST: u32 = 0xc001_0200;
pub const FAM15H_PERF_LAST: u32 = 0xc001_020b;
pub const F10_BU_CFG: u32 = 0xc001_1023;
pub const F10_BU_CFG2: u32 = 0xc001_102a;
pub const AMD64_EX_CFG: u32 = 0xc001_102c;
pub const AMD64_DE_CFG: u32 = 0xc001_1029;

/// vMCE banks a guest has (Xen's GUEST_MC_BANK_NUM).
const MC_BANKS: usize = 2;
const MCG_CAP_INTEL: u64 = 1 << 24 | 1 << 11 | 1 << 10 | MC_BANKS as u64;
const MCG_CAP_AMD: u64 = MC_BANKS as u64;
/// PLATFORM_INFO: CPUID faulting is always available to an HVM guest.
const PLATFORM_INFO_CPUID_FAULTING: u64 = 1 << 32;
pub const MISC_FEATURES_CPUID_FAULTING: u64 = 1 << 0;
/// MISC_ENABLE on Intel: fast strings, no BTS, no PEBS.
const MISC_ENABLE_VALUE: u64 = 1 | 1 << 11 | 1 << 12;
const DEBUGCTL_LBR: u64 = 1 << 0;
const DEBUGCTL_BTF: u64 = 1 << 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct McBank {
    status: u64,
    addr: u64,
    misc: u64,
    ctl2: u64,
}

/// A vCPU's MSRs that live in no hardware state: all 0 at first but the
/// MTRRs' default type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestMsrs {
    pub debugctl: u64,
    pub mtrr: Mtrr,
    pub misc_features: u64,
    mcg_status: u64,
    banks: [McBank; MC_BANKS],
    /// AMD's last-branch records (kept, not used: no LBR virtualisation).
    lbr: [u64; 4],
    hsave_pa: u64,
    tsc_ratio: u64,
}

impl GuestMsrs {
    pub const fn new() -> GuestMsrs {
        GuestMsrs {
            debugctl: 0,
            mtrr: Mtrr::new(),
            misc_features: 0,
            mcg_status: 0,
            banks: [McBank { status: 0, addr: 0, misc: 0, ctl2: 0 }; MC_BANKS],
            lbr: [0; 4],
            hsave_pa: 0,
            tsc_ratio: 0,
        }
    }

    /// CPUID at CPL > 0 raises #GP (the guest turned CPUID faulting on).
    pub fn cpuid_faults(&self, cpl: u8) -> bool {
        self.misc_features & MISC_FEATURES_CPUID_FAULTING != 0 && cpl > 0
    }
}

/// OSVW as Xen shows it (svm_guest_osvw_init): at least 3 bits long, the
/// errata Xen works around itself (bits 1 and 2) cleared.
pub fn guest_osvw(host_len: u64, host_status: u64, family: u32) -> (u64, u64) {
    let host_status = if host_len >= 64 { host_status } else { host_status & ((1 << host_len) - 1) };
    let mut status = host_status & !6;
    if host_len == 0 && family == 0x10 {
        status |= 1;
    }
    (host_len.clamp(3, 64), status)
}

/// Intel's and AMD's architectural performance counters: no vPMU, so
/// they read 0 and drop writes (Xen's vpmu_do_msr with the vPMU off).
fn pmu(p: &GuestPolicy, msr: u32, write: bool) -> bool {
    let intel = matches!(msr, 0xc1..=0xc8 | 0x309..=0x30b | 0x38d..=0x390 | 0x3f1 | 0x600)
        || if write { (0x186..=0x18d).contains(&msr) } else { (0x186..=0x189).contains(&msr) };
    let amd = matches!(msr, K7_EVNTSEL0..=K7_PERFCTR3 | FAM15H_PERF_FIRST..=FAM15H_PERF_LAST);
    (p.intel() && intel) || (p.amd() && amd)
}

/// vMCE (Xen's vmce_rdmsr): MCG_*, the banks, CTL2 and the P5 pair.
fn mce_read(p: &GuestPolicy, s: &GuestMsrs, msr: u32) -> Result<u64, Gp> {
    match msr {
        MCG_CAP => Ok(if p.intel() { MCG_CAP_INTEL } else { MCG_CAP_AMD }),
        MCG_STATUS => Ok(s.mcg_status),
        MCG_CTL => Ok(0),
        MCG_EXT_CTL => Err(Gp),
        P5_MC_ADDR if p.intel() => Ok(s.banks[1].addr),
        P5_MC_TYPE if p.intel() => Ok(s.banks[1].status),
        MC_CTL2_FIRST..=MC_CTL2_LAST if p.intel() => {
            Ok(s.banks.get((msr - MC_CTL2_FIRST) as usize).map_or(0, |b| b.ctl2))
        }
        MC_FIRST..=MC_LAST => {
            let Some(b) = s.banks.get(((msr - MC_FIRST) / 4) as usize) else { return Ok(0) };
            Ok(match msr & 3 {
                0 => u64::MAX,
                1 => b.status,
                2 => b.addr,
                _ => b.misc,
            })
        }
        _ => Ok(0),
    }
}

fn mce_write(p: &GuestPolicy, s: &mut GuestMsrs, msr: u32, v: u64) -> Result<(), Gp> {
    match msr {
        MCG_STATUS => s.mcg_status = v,
        MCG_EXT_CTL => return Err(Gp),
        MC_CTL2_FIRST..=MC_CTL2_LAST if p.intel() => {
            if let Some(b) = s.banks.get_mut((msr - MC_CTL2_FIRST) as usize) {
                b.ctl2 = v;
            }
        }
        MC_FIRST..=MC_LAST => {
            if let Some(b) = s.banks.get_mut(((msr - MC_FIRST) / 4) as usize) {
                // CTL sticks at all ones; the rest take only 0.
                let reg = match msr & 3 {
                    0 => return Ok(()),
                    1 => &mut b.status,
                    2 => &mut b.addr,
                    _ => &mut b.misc,
                };
                if v != 0 {
                    return Err(Gp);
                }
                *reg = 0;
            }
        }
        // MCG_CAP and MCG_CTL are read-only; the P5 pair drops writes.
        _ => {}
    }
    Ok(())
}

fn is_mce(msr: u32) -> bool {
    matches!(
        msr,
        P5_MC_ADDR | P5_MC_TYPE | MCG_CAP..=MCG_CTL | MC_CTL2_FIRST..=MC_CTL2_LAST | MC_FIRST..=MC_LAST | MCG_EXT_CTL
    )
}

/// RDMSR of `msr`.
pub fn read(p: &GuestPolicy, s: &GuestMsrs, msr: u32) -> Result<u64, Gp> {
    let (intel, amd) = (p.intel(), p.amd());
    if is_mce(msr) {
        return mce_read(p, s, msr);
    }
    if Mtrr::owns(msr) {
        return if p.mtrr() { s.mtrr.read(msr) } else { Err(Gp) };
    }
    if pmu(p, msr, false) {
        return Ok(0);
    }
    match msr {
        DEBUGCTL => Ok(s.debugctl),
        LAST_BRANCH_FROM..=LAST_INT_TO if amd => Ok(s.lbr[(msr - LAST_BRANCH_FROM) as usize]),
        // Locked, VMX off (no nested virtualisation), no LMCE.
        FEATURE_CONTROL if intel => Ok(1),
        // Xen forwards the host's platform id and microcode revision; they
        // read 0 here (the hypervisor has no fault-safe RDMSR of the host).
        PLATFORM_ID if intel => Ok(0),
        UCODE_REV if intel || amd => Ok(0),
        PLATFORM_INFO => Ok(PLATFORM_INFO_CPUID_FAULTING),
        MISC_FEATURES_ENABLES => Ok(s.misc_features),
        PERF_STATUS | PERF_CTL | THERM_STATUS if intel => Ok(0),
        MISC_ENABLE if intel => Ok(MISC_ENABLE_VALUE),
        // Read 0 while the LVT timer is not in TSC-deadline mode, which the
        // emulated local APIC does not offer.
        TSC_DEADLINE => Ok(0),
        // Read as zero on every vendor (a guest moved off AMD must not
        // crash): no C1E, so no erratum-400 workaround.
        K8_ENABLE_C1E | AMD64_NB_CFG => Ok(0),
        EBC_FREQUENCY_ID if amd => Ok(0),
        K8_SYSCFG | K8_TOP_MEM1 | K8_TOP_MEM2 | K8_VM_CR | AMD64_EX_CFG if amd => Ok(0),
        K8_HWCR if amd => Ok(0),
        // LFENCE is dispatch-serialising.
        AMD64_DE_CFG if amd => Ok(1 << 1),
        K8_VM_HSAVE_PA if amd => Ok(s.hsave_pa),
        AMD_TSC_RATIO if amd => Ok(s.tsc_ratio),
        OSVW_ID_LENGTH | OSVW_STATUS if amd => match p.host_osvw {
            Some((len, status)) => {
                let (l, st) = guest_osvw(len, status, p.family);
                Ok(if msr == OSVW_ID_LENGTH { l } else { st })
            }
            None => Err(Gp),
        },
        // Threshold registers: locked by the firmware.
        F10_MC4_MISC1..=F10_MC4_MISC3 if amd => Ok(1 << 61),
        // Xen reads the host's; on family 0xf, where it does not exist,
        // the family 0x10 reset value. Elsewhere it faults here.
        F10_BU_CFG if amd && p.family == 0xf => Ok(0x1020_0020),
        _ => Err(Gp),
    }
}

/// WRMSR of `value` to `msr`; the caller loads DEBUGCTL into the hardware
/// state afterwards.
pub fn write(p: &GuestPolicy, s: &mut GuestMsrs, msr: u32, value: u64) -> Result<(), Gp> {
    let (intel, amd) = (p.intel(), p.amd());
    if is_mce(msr) {
        return mce_write(p, s, msr, value);
    }
    if Mtrr::owns(msr) {
        return if p.mtrr() { s.mtrr.write(msr, value, p.phys_bits) } else { Err(Gp) };
    }
    if pmu(p, msr, true) {
        return Ok(());
    }
    match msr {
        DEBUGCTL if intel => {
            // LBR and BTF only; no model-specific LBRs are known, so LBR
            // is discarded (reads 0), as on parts without them.
            if value & !(DEBUGCTL_LBR | DEBUGCTL_BTF) != 0 {
                return Err(Gp);
            }
            s.debugctl = value & !DEBUGCTL_LBR;
        }
        // Kept as written (Xen's SVM without LBR virtualisation).
        DEBUGCTL => s.debugctl = value,
        LAST_BRANCH_FROM..=LAST_INT_TO if amd => s.lbr[(msr - LAST_BRANCH_FROM) as usize] = value,
        MISC_FEATURES_ENABLES => {
            if value & !MISC_FEATURES_CPUID_FAULTING != 0 {
                return Err(Gp);
            }
            s.misc_features = value;
        }
        // Intel asks for 0 to be written before reading the revision.
        UCODE_REV if intel && value == 0 => {}
        UCODE_WRITE if intel => {}
        AMD_PATCHLOADER if amd => {}
        PERF_CTL if intel => {}
        // Accepted only unchanged (some Windows write back what they read).
        MISC_ENABLE if intel && value == MISC_ENABLE_VALUE => {}
        TSC_DEADLINE => {}
        AMD64_NB_CFG => {}
        K8_SYSCFG | K8_TOP_MEM1 | K8_TOP_MEM2 | K8_VM_CR | AMD64_EX_CFG if amd => {}
        // OpenBSD panics if this faults.
        AMD64_DE_CFG if amd => {}
        K8_VM_HSAVE_PA if amd => {
            if value & 0xfff != 0 || value > 0xfd_0000_0000 {
                return Err(Gp);
            }
            s.hsave_pa = value;
        }
        AMD_TSC_RATIO if amd => {
            if value & 0xffff_ff00_0000_0000 != 0 {
                return Err(Gp);
            }
            s.tsc_ratio = value;
        }
        OSVW_ID_LENGTH | OSVW_STATUS if amd && p.host_osvw.is_some() => {}
        F10_MC4_MISC1..=F10_MC4_MISC3 if amd => {}
        _ => return Err(Gp),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::qemu64;
    use super::*;
    use crate::arch::x86_64::Vendor;

    fn intel() -> GuestPolicy {
        GuestPolicy { vendor: Vendor::Intel, family: 6, ..qemu64() }
    }

    #[test]
    fn debugctl_is_every_guests_and_starts_at_0() {
        for p in [qemu64(), intel()] {
            let mut s = GuestMsrs::new();
            assert_eq!(read(&p, &s, DEBUGCTL), Ok(0));
            assert_eq!(write(&p, &mut s, DEBUGCTL, 0), Ok(()));
        }
        let p = intel();
        let mut s = GuestMsrs::new();
        assert_eq!(write(&p, &mut s, DEBUGCTL, DEBUGCTL_BTF | DEBUGCTL_LBR), Ok(()));
        assert_eq!(read(&p, &s, DEBUGCTL), Ok(DEBUGCTL_BTF), "LBR is discarded");
        assert_eq!(write(&p, &mut s, DEBUGCTL, 1 << 6), Err(Gp));
        let p = qemu64();
        assert_eq!(write(&p, &mut s, DEBUGCTL, 1), Ok(()));
        assert_eq!(read(&p, &s, DEBUGCTL), Ok(1));
        assert_eq!(write(&p, &mut s, 0x1dc, 0x1234), Ok(()));
        assert_eq!(read(&p, &s, 0x1dc), Ok(0x1234));
        assert_eq!(read(&intel(), &s, 0x1dc), Err(Gp), "no LBR records on Intel");
    }

    #[test]
    fn vendor_rows() {
        let (amd, intel) = (qemu64(), intel());
        let s = GuestMsrs::new();
        for (msr, want_amd, want_intel) in [
            (K8_HWCR, Ok(0), Err(Gp)),
            (K8_VM_CR, Ok(0), Err(Gp)),
            (K8_SYSCFG, Ok(0), Err(Gp)),
            (AMD64_DE_CFG, Ok(2), Err(Gp)),
            (0xc001_1020, Err(Gp), Err(Gp)), // LS_CFG
            (0xc001_0016, Err(Gp), Err(Gp)), // IORR_BASE0
            (F10_MC4_MISC1, Ok(1 << 61), Err(Gp)),
            (F10_BU_CFG, Ok(0x1020_0020), Err(Gp)),
            (K8_ENABLE_C1E, Ok(0), Ok(0)),
            (AMD64_NB_CFG, Ok(0), Ok(0)),
            (FEATURE_CONTROL, Err(Gp), Ok(1)),
            (MISC_ENABLE, Err(Gp), Ok(MISC_ENABLE_VALUE)),
            (PERF_STATUS, Err(Gp), Ok(0)),
            (THERM_STATUS, Err(Gp), Ok(0)),
            (PLATFORM_INFO, Ok(1 << 32), Ok(1 << 32)),
            (0xc1, Err(Gp), Ok(0)),
            (0x18a, Err(Gp), Err(Gp)), // EVNTSEL4: Xen reads only 0-3
            (0xc001_0004, Ok(0), Err(Gp)),
            (OSVW_ID_LENGTH, Err(Gp), Err(Gp)),
            (0x480, Err(Gp), Err(Gp)), // VMX_BASIC
            (0x1234_5678, Err(Gp), Err(Gp)),
        ] {
            assert_eq!(read(&amd, &s, msr), want_amd, "AMD {msr:#x}");
            assert_eq!(read(&intel, &s, msr), want_intel, "Intel {msr:#x}");
        }
        let mut s = GuestMsrs::new();
        assert_eq!(write(&amd, &mut s, K8_HWCR, 0), Err(Gp));
        assert_eq!(write(&amd, &mut s, AMD64_DE_CFG, 0), Ok(()));
        assert_eq!(write(&amd, &mut s, K8_ENABLE_C1E, 0), Err(Gp));
        assert_eq!(write(&intel, &mut s, AMD64_NB_CFG, 1), Ok(()));
        assert_eq!(write(&intel, &mut s, MISC_ENABLE, MISC_ENABLE_VALUE), Ok(()));
        assert_eq!(write(&intel, &mut s, MISC_ENABLE, MISC_ENABLE_VALUE ^ 1), Err(Gp));
        assert_eq!(write(&intel, &mut s, UCODE_REV, 0), Ok(()));
        assert_eq!(write(&intel, &mut s, UCODE_REV, 1), Err(Gp));
        assert_eq!(write(&amd, &mut s, UCODE_REV, 0), Err(Gp));
        assert_eq!(write(&intel, &mut s, 0x18d, 5), Ok(()), "EVNTSEL7 writes are dropped");
        assert_eq!(write(&amd, &mut s, K8_VM_HSAVE_PA, 0x1001), Err(Gp));
        assert_eq!(write(&amd, &mut s, K8_VM_HSAVE_PA, 0x1000), Ok(()));
        assert_eq!(read(&amd, &s, K8_VM_HSAVE_PA), Ok(0x1000));
        assert_eq!(write(&amd, &mut s, FEATURE_CONTROL, 1), Err(Gp));
    }

    #[test]
    fn vmce_has_two_banks() {
        let (amd, intel) = (qemu64(), intel());
        let mut s = GuestMsrs::new();
        assert_eq!(read(&intel, &s, MCG_CAP), Ok(0x0100_0c02));
        assert_eq!(read(&amd, &s, MCG_CAP), Ok(2));
        assert_eq!(read(&amd, &s, MCG_CTL), Ok(0));
        assert_eq!(read(&amd, &s, 0x400), Ok(u64::MAX));
        assert_eq!(read(&amd, &s, 0x405), Ok(0));
        assert_eq!(read(&amd, &s, 0x408), Ok(0), "bank 2 does not exist: 0");
        assert_eq!(read(&amd, &s, MCG_EXT_CTL), Err(Gp));
        assert_eq!(write(&amd, &mut s, 0x401, 0), Ok(()));
        assert_eq!(write(&amd, &mut s, 0x401, 1), Err(Gp));
        assert_eq!(write(&amd, &mut s, 0x400, 0), Ok(()), "CTL writes are dropped");
        assert_eq!(read(&amd, &s, 0x400), Ok(u64::MAX));
        assert_eq!(write(&amd, &mut s, MCG_STATUS, 4), Ok(()));
        assert_eq!(read(&amd, &s, MCG_STATUS), Ok(4));
        assert_eq!(write(&intel, &mut s, 0x281, 0x7fff), Ok(()));
        assert_eq!(read(&intel, &s, 0x281), Ok(0x7fff));
        assert_eq!(read(&amd, &s, 0x281), Ok(0), "no CTL2 on AMD");
        assert_eq!(read(&intel, &s, P5_MC_TYPE), Ok(0));
    }

    #[test]
    fn mtrrs_follow_the_cpuid_bit_and_cpuid_faulting_its_msr() {
        let p = qemu64();
        let mut s = GuestMsrs::new();
        assert_eq!(read(&p, &s, 0x2ff), Ok(0x806));
        assert_eq!(write(&p, &mut s, 0x201, 0xff_f000_0800), Ok(()));
        assert_eq!(write(&p, &mut s, 0x201, 1 << 40 | 0x800), Err(Gp), "40 address bits");
        let hidden = GuestPolicy { l1_edx: p.l1_edx & !super::super::D1_MTRR, ..p };
        assert_eq!(read(&hidden, &s, 0xfe), Err(Gp));
        assert!(!s.cpuid_faults(3));
        assert_eq!(write(&p, &mut s, MISC_FEATURES_ENABLES, 2), Err(Gp));
        assert_eq!(write(&p, &mut s, MISC_FEATURES_ENABLES, 1), Ok(()));
        assert!(s.cpuid_faults(3) && !s.cpuid_faults(0));
    }

    #[test]
    fn osvw_as_xen_shows_it() {
        assert_eq!(guest_osvw(0, 0, 0x10), (3, 1));
        assert_eq!(guest_osvw(0, 0, 0x15), (3, 0));
        assert_eq!(guest_osvw(4, 0b11111_1111, 0x15), (4, 0b1001));
        assert_eq!(guest_osvw(200, u64::MAX, 0x17), (64, !6));
        let p = GuestPolicy { host_osvw: Some((4, 0xf)), ..qemu64() };
        let mut s = GuestMsrs::new();
        assert_eq!(read(&p, &s, OSVW_ID_LENGTH), Ok(4));
        assert_eq!(read(&p, &s, OSVW_STATUS), Ok(9));
        assert_eq!(write(&p, &mut s, OSVW_STATUS, 0), Ok(()));
    }
}
