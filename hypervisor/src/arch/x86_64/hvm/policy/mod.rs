//! What a guest's CPU may do, decided from the CPUID it sees (Xen's
//! `cpu_policy`): the control-register, EFER and XCR0 bits it may set
//! (`cr`), the MSRs Xen answers for an HVM guest of the host's vendor
//! (`msrs`) and its MTRRs (`mtrr`). Pure rules, host-tested; the run loop
//! applies them on both backends.

mod bits;
pub mod cr;
pub mod msrs;
pub mod mtrr;

use crate::arch::x86_64::Vendor;
use core::arch::x86_64::CpuidResult;

/// The feature bits of the guest's CPUID that the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy {
    pub vendor: Vendor,
    /// The family CPUID leaf 1 gives (base plus extended).
    pub family: u32,
    pub l1_ecx: u32,
    pub l1_edx: u32,
    pub l7_ebx: u32,
    pub l7_ecx: u32,
    pub l7_edx: u32,
    pub e1_ecx: u32,
    pub e1_edx: u32,
    /// XCR0 components leaf 0xd offers.
    pub xcr0_mask: u64,
    /// Physical address width (leaf 0x80000008, 36 without it).
    pub phys_bits: u8,
    /// The host's OS-visible workarounds (length, status), when the guest
    /// sees the OSVW feature.
    pub host_osvw: Option<(u64, u64)>,
}

// Leaf 1 EDX.
const D1_VME: u32 = 1 << 1;
const D1_DE: u32 = 1 << 2;
const D1_PSE: u32 = 1 << 3;
const D1_TSC: u32 = 1 << 4;
const D1_PAE: u32 = 1 << 6;
const D1_MCE: u32 = 1 << 7;
pub(crate) const D1_MTRR: u32 = 1 << 12;
const D1_PGE: u32 = 1 << 13;
const D1_MCA: u32 = 1 << 14;
const D1_FXSR: u32 = 1 << 24;
const D1_SSE: u32 = 1 << 25;
// Leaf 1 ECX.
const C1_PCID: u32 = 1 << 17;
const C1_XSAVE: u32 = 1 << 26;
// Leaf 7.0.
const B7_FSGSBASE: u32 = 1 << 0;
const B7_SMEP: u32 = 1 << 7;
const B7_SMAP: u32 = 1 << 20;
const C7_UMIP: u32 = 1 << 2;
const C7_PKU: u32 = 1 << 3;
const C7_CET_SS: u32 = 1 << 7;
const C7_PKS: u32 = 1 << 31;
const D7_CET_IBT: u32 = 1 << 20;
// Leaf 0x80000001.
const E1D_SYSCALL: u32 = 1 << 11;
const E1D_NX: u32 = 1 << 20;
const E1D_FFXSR: u32 = 1 << 25;
const E1D_LM: u32 = 1 << 29;
pub(crate) const E1C_OSVW: u32 = 1 << 9;

/// AMD's OS-visible workaround registers.
pub const OSVW_ID_LENGTH: u32 = 0xc001_0140;
pub const OSVW_STATUS: u32 = 0xc001_0141;

impl GuestPolicy {
    /// The policy of a guest whose CPUID is `cpuid`; `host_osvw` reads the
    /// host's OSVW registers (called only when the guest sees OSVW).
    pub fn from_cpuid(
        vendor: Vendor,
        cpuid: impl Fn(u32, u32) -> CpuidResult,
        host_osvw: impl FnOnce() -> (u64, u64),
    ) -> GuestPolicy {
        let max = cpuid(0, 0).eax;
        let max_ext = cpuid(0x8000_0000, 0).eax;
        let zero = CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 };
        let l1 = cpuid(1, 0);
        let l7 = if max >= 7 { cpuid(7, 0) } else { zero };
        let ld = if max >= 0xd { cpuid(0xd, 0) } else { zero };
        let e1 = if max_ext >= 0x8000_0001 { cpuid(0x8000_0001, 0) } else { zero };
        let e8 = if max_ext >= 0x8000_0008 { cpuid(0x8000_0008, 0) } else { zero };
        let base = (l1.eax >> 8) & 0xf;
        let family = if base == 0xf { base + ((l1.eax >> 20) & 0xff) } else { base };
        let phys_bits = match e8.eax & 0xff {
            0 => 36,
            n => n as u8,
        };
        GuestPolicy {
            vendor,
            family,
            l1_ecx: l1.ecx,
            l1_edx: l1.edx,
            l7_ebx: l7.ebx,
            l7_ecx: l7.ecx,
            l7_edx: l7.edx,
            e1_ecx: e1.ecx,
            e1_edx: e1.edx,
            xcr0_mask: (ld.edx as u64) << 32 | ld.eax as u64,
            phys_bits,
            host_osvw: (e1.ecx & E1C_OSVW != 0).then(host_osvw),
        }
    }

    pub fn intel(&self) -> bool {
        self.vendor == Vendor::Intel
    }

    pub fn amd(&self) -> bool {
        matches!(self.vendor, Vendor::Amd | Vendor::Hygon)
    }

    pub fn mtrr(&self) -> bool {
        self.l1_edx & D1_MTRR != 0
    }

    /// The CR4 bits the guest may set (Xen's hvm_cr4_guest_valid_bits,
    /// without nested virtualisation: never VMXE).
    pub fn cr4_valid(&self) -> u64 {
        use bits::cr4::*;
        let (d1, c1) = (self.l1_edx, self.l1_ecx);
        let bit = |have: bool, bits: u64| if have { bits } else { 0 };
        bit(d1 & D1_VME != 0, VME | PVI)
            | bit(d1 & D1_TSC != 0, TSD)
            | bit(d1 & D1_DE != 0, DE)
            | bit(d1 & D1_PSE != 0, PSE)
            | bit(d1 & D1_PAE != 0, PAE)
            | bit(d1 & (D1_MCE | D1_MCA) != 0, MCE)
            | bit(d1 & D1_PGE != 0, PGE)
            | PCE
            | bit(d1 & D1_FXSR != 0, OSFXSR)
            | bit(d1 & D1_SSE != 0, OSXMMEXCPT)
            | bit(self.l7_ecx & C7_UMIP != 0, UMIP)
            | bit(self.l7_ebx & B7_FSGSBASE != 0, FSGSBASE)
            | bit(c1 & C1_PCID != 0, PCIDE)
            | bit(c1 & C1_XSAVE != 0, OSXSAVE)
            | bit(self.l7_ebx & B7_SMEP != 0, SMEP)
            | bit(self.l7_ebx & B7_SMAP != 0, SMAP)
            | bit(self.l7_ecx & C7_PKU != 0, PKE)
            | bit(self.l7_ecx & C7_CET_SS != 0 || self.l7_edx & D7_CET_IBT != 0, CET)
            | bit(self.l7_ecx & C7_PKS != 0, PKS)
    }

    /// The EFER bits the guest may set (Xen's hvm_efer_valid: each with its
    /// feature; never SVME, which would be nested virtualisation).
    pub fn efer_valid(&self) -> u64 {
        use bits::efer::*;
        let e = self.e1_edx;
        let bit = |have: bool, bits: u64| if have { bits } else { 0 };
        bit(e & E1D_SYSCALL != 0, SCE)
            | bit(e & E1D_LM != 0, LME | LMA)
            | bit(e & E1D_NX != 0, NXE)
            | bit(e & E1D_FFXSR != 0, FFXSR)
    }
}

/// The policy of this machine's guests (every domain sees the same CPUID
/// features), worked out once.
#[cfg(target_os = "none")]
pub fn guest_policy() -> &'static GuestPolicy {
    use crate::arch::x86_64::cpu;
    static POLICY: spin::Once<GuestPolicy> = spin::Once::new();
    POLICY.call_once(|| {
        let ctx = super::cpuid::CpuidContext {
            vcpu_id: 0,
            domid: 0,
            nr_vcpus: 1,
            tsc_khz: 0,
            host_tsc_reliable: false,
            offer: super::isolation::hw::offer(),
        };
        GuestPolicy::from_cpuid(
            cpu::features().vendor,
            |leaf, sub| super::cpuid::guest_cpuid(cpu::cpuid, leaf, sub, &ctx),
            // The guest sees OSVW only where the host has it, so the host's
            // registers exist.
            || (cpu::rdmsr(OSVW_ID_LENGTH), cpu::rdmsr(OSVW_STATUS)),
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy with what QEMU's `qemu64` shows a guest (AMD family 0xf:
    /// no UMIP, SMEP, PCID, XSAVE, FFXSR) and what the tests change.
    pub fn qemu64() -> GuestPolicy {
        GuestPolicy {
            vendor: Vendor::Amd,
            family: 0xf,
            l1_ecx: 1 << 0 | 1 << 13 | 1 << 23 | 1 << 31,
            l1_edx: (0x078b_f9fd & !(D1_MCE | D1_MCA)) | D1_MTRR,
            l7_ebx: 0,
            l7_ecx: 0,
            l7_edx: 0,
            e1_ecx: 1 << 0,
            e1_edx: E1D_SYSCALL | E1D_NX | E1D_LM,
            xcr0_mask: 0,
            phys_bits: 40,
            host_osvw: None,
        }
    }

    #[test]
    fn cr4_bits_follow_the_features_the_guest_sees() {
        use cr::cr4::*;
        let p = qemu64();
        let v = p.cr4_valid();
        for (b, name) in [(PAE, "PAE"), (PGE, "PGE"), (PSE, "PSE"), (OSFXSR, "OSFXSR"), (PCE, "PCE"), (TSD, "TSD")] {
            assert_ne!(v & b, 0, "{name}");
        }
        for (b, name) in [
            (VMXE, "VMXE"),
            (UMIP, "UMIP"),
            (LA57, "LA57"),
            (SMEP, "SMEP"),
            (PKE, "PKE"),
            (OSXSAVE, "OSXSAVE"),
            (FSGSBASE, "FSGSBASE"),
            (PCIDE, "PCIDE"),
            (CET, "CET"),
            (VME, "VME (not in qemu64)"),
            (MCE, "MCE (hidden)"),
            (1 << 15, "reserved"),
            (1 << 32, "above 31"),
        ] {
            assert_eq!(v & b, 0, "{name}");
        }
        let with = GuestPolicy { l7_ecx: C7_UMIP | C7_PKU, l7_ebx: B7_SMEP | B7_SMAP, l1_ecx: C1_XSAVE, ..p };
        let v = with.cr4_valid();
        assert_eq!(v & (UMIP | PKE | SMEP | SMAP | OSXSAVE), UMIP | PKE | SMEP | SMAP | OSXSAVE);
        assert_eq!(v & VMXE, 0, "never VMXE, whatever the CPU has");
    }

    #[test]
    fn efer_bits_follow_the_features_the_guest_sees() {
        use cr::efer::*;
        let p = qemu64();
        assert_eq!(p.efer_valid(), SCE | LME | LMA | NXE);
        let no_nx = GuestPolicy { e1_edx: E1D_LM, ..p };
        assert_eq!(no_nx.efer_valid(), LME | LMA);
        let ffxsr = GuestPolicy { e1_edx: p.e1_edx | E1D_FFXSR, ..p };
        assert_ne!(ffxsr.efer_valid() & FFXSR, 0);
    }

    #[test]
    fn the_policy_is_read_from_cpuid() {
        let cpuid = |leaf: u32, _sub: u32| match leaf {
            0 => CpuidResult { eax: 0xd, ebx: 0, ecx: 0, edx: 0 },
            1 => CpuidResult { eax: 0x00a2_0f12, ebx: 0, ecx: C1_XSAVE, edx: D1_MTRR },
            7 => CpuidResult { eax: 0, ebx: B7_SMEP, ecx: C7_UMIP, edx: 0 },
            0xd => CpuidResult { eax: 7, ebx: 0, ecx: 0, edx: 0 },
            0x8000_0000 => CpuidResult { eax: 0x8000_0008, ebx: 0, ecx: 0, edx: 0 },
            0x8000_0001 => CpuidResult { eax: 0, ebx: 0, ecx: E1C_OSVW, edx: E1D_LM },
            0x8000_0008 => CpuidResult { eax: 0x3028, ebx: 0, ecx: 0, edx: 0 },
            _ => CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 },
        };
        let p = GuestPolicy::from_cpuid(Vendor::Amd, cpuid, || (4, 0b1010));
        assert_eq!(p.family, 0x19);
        assert_eq!(p.xcr0_mask, 7);
        assert_eq!(p.phys_bits, 40);
        assert_eq!(p.host_osvw, Some((4, 0b1010)));
        assert!(p.mtrr() && p.amd() && !p.intel());
        let mut asked = false;
        let no_osvw = |leaf: u32, sub: u32| {
            let mut r = cpuid(leaf, sub);
            if leaf == 0x8000_0001 {
                r.ecx = 0;
            }
            r
        };
        let p = GuestPolicy::from_cpuid(Vendor::Amd, no_osvw, || {
            asked = true;
            (0, 0)
        });
        assert_eq!(p.host_osvw, None);
        assert!(!asked, "the host's OSVW registers are read only where they exist");
    }
}
