//! What a guest sees from CPUID: the host's answers with everything the
//! hypervisor does not virtualise taken out, the hypervisor bit set, and
//! Xen's leaves at 0x40000000.
//!
//! Hidden for now (each comes back with the work that virtualises it):
//! VMX/SVM (no nested virtualisation), CET and PKS (their MSRs are not
//! offered, as in Xen 4.17), MONITOR/MWAIT (idle is HLT), XSAVE
//! and the AVX family (guest FPU state is switched with FXSAVE),
//! TSC-deadline (the emulated local APIC has one-shot and periodic timers;
//! it and x2APIC are shown), performance monitoring, MCE/MCA, protection
//! keys (PKU needs XSAVE in Xen's policy; PKRU is still switched per vCPU),
//! and INVPCID (VMX would need it enabled per VMCS).
//!
//! Speculation controls (IBRSB, STIBP, SSBD, MD_CLEAR, ARCH_CAPS, IBPB)
//! and RDTSCP/RDPID come from `CpuidContext::offer`: what the isolation
//! policy virtualises on this CPU (`isolation::spec`), Xen's HVM default.

use super::isolation::msrs::GuestOffer;
use core::arch::x86_64::CpuidResult;
use xen_abi::cpuid as xc;

#[derive(Debug, Clone, Copy)]
pub struct CpuidContext<'a> {
    pub vcpu_id: u32,
    pub domid: u16,
    pub nr_vcpus: u32,
    pub tsc_khz: u32,
    pub host_tsc_reliable: bool,
    /// Speculation controls and RDTSCP/RDPID the vCPU is offered.
    pub offer: &'a GuestOffer,
}

const ZERO: CpuidResult = CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 };

/// Highest basic leaf a guest sees.
const MAX_BASIC: u32 = 0xd;
/// Highest extended leaf a guest sees.
const MAX_EXTENDED: u32 = 0x8000_0008;

// Leaf 1 ECX.
const ECX_DTES64: u32 = 1 << 2;
const ECX_MONITOR: u32 = 1 << 3;
const ECX_DSCPL: u32 = 1 << 4;
const ECX_VMX: u32 = 1 << 5;
const ECX_SMX: u32 = 1 << 6;
const ECX_EST: u32 = 1 << 7;
const ECX_TM2: u32 = 1 << 8;
const ECX_SDBG: u32 = 1 << 11;
const ECX_PDCM: u32 = 1 << 15;
const ECX_X2APIC: u32 = 1 << 21;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_XSAVE: u32 = 1 << 26;
const ECX_OSXSAVE: u32 = 1 << 27;
const ECX_AVX: u32 = 1 << 28;
const ECX_F16C: u32 = 1 << 29;
const ECX_FMA: u32 = 1 << 12;
const ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX.
const EDX_MCE: u32 = 1 << 7;
const EDX_APIC: u32 = 1 << 9;
const EDX_MCA: u32 = 1 << 14;
const EDX_DS: u32 = 1 << 21;
const EDX_ACPI: u32 = 1 << 22;
const EDX_HTT: u32 = 1 << 28;
const EDX_TM: u32 = 1 << 29;
const EDX_PBE: u32 = 1 << 31;
// Leaf 7.0 EBX.
const B7_SGX: u32 = 1 << 2;
const B7_HLE: u32 = 1 << 4;
const B7_AVX2: u32 = 1 << 5;
const B7_RTM: u32 = 1 << 11;
const B7_PQM: u32 = 1 << 12;
const B7_MPX: u32 = 1 << 14;
const B7_PQE: u32 = 1 << 15;
const B7_AVX512_MASK: u32 =
    (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
const B7_PT: u32 = 1 << 25;
const B7_INVPCID: u32 = 1 << 10;
// Leaf 7.0 ECX.
const C7_AVX512_MASK: u32 = (1 << 1) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14);
const C7_PKU: u32 = 1 << 3;
const C7_OSPKE: u32 = 1 << 4;
const C7_WAITPKG: u32 = 1 << 5;
const C7_VAES: u32 = 1 << 9;
const C7_VPCLMUL: u32 = 1 << 10;
const C7_LA57: u32 = 1 << 16;
const C7_SGX_LC: u32 = 1 << 30;
const C7_CET_SS: u32 = 1 << 7;
const C7_PKS: u32 = 1 << 31;
// Leaf 7.0 EDX: keep only what needs no MSR or state support; the
// speculation controls come from the offer.
const D7_KEEP: u32 = 1 << 4 /* FSRM */;
// Leaf 0x80000001 ECX.
const E1C_SVM: u32 = 1 << 2;
const E1C_IBS: u32 = 1 << 10;
const E1C_SKINIT: u32 = 1 << 12;
const E1C_WDT: u32 = 1 << 13;
const E1C_LWP: u32 = 1 << 15;
const E1C_NODEID: u32 = 1 << 19;
const E1C_TOPOEXT: u32 = 1 << 22;
const E1C_PERFCTR_CORE: u32 = 1 << 23;
const E1C_PERFCTR_NB: u32 = 1 << 24;
const E1C_PERFCTR_LLC: u32 = 1 << 28;
const E1C_MONITORX: u32 = 1 << 29;
const E1C_XOP: u32 = 1 << 11;
const E1C_FMA4: u32 = 1 << 16;
const E1C_TBM: u32 = 1 << 21;
// Leaf 0x80000001 EDX.
const E1D_RDTSCP: u32 = 1 << 27;
// Leaf 7.0 ECX.
const C7_RDPID: u32 = 1 << 22;

/// The guest's CPUID answer for (`leaf`, `subleaf`); `host` gives the real
/// CPU's answer.
pub fn guest_cpuid(host: impl Fn(u32, u32) -> CpuidResult, leaf: u32, subleaf: u32, ctx: &CpuidContext) -> CpuidResult {
    if (xc::BASE..xc::BASE + 0x1_0000).contains(&leaf) {
        return xen_leaf(leaf - xc::BASE, subleaf, ctx);
    }
    let max_basic = host(0, 0).eax.min(MAX_BASIC);
    let max_ext = host(0x8000_0000, 0).eax.min(MAX_EXTENDED);
    let in_range = if leaf >= 0x8000_0000 { leaf <= max_ext } else { leaf <= max_basic };
    if !in_range {
        return ZERO;
    }
    let mut r = host(leaf, subleaf);
    match leaf {
        0 => r.eax = max_basic,
        1 => {
            r.ecx &= !(ECX_DTES64
                | ECX_MONITOR
                | ECX_DSCPL
                | ECX_VMX
                | ECX_SMX
                | ECX_EST
                | ECX_TM2
                | ECX_SDBG
                | ECX_PDCM
                | ECX_TSC_DEADLINE
                | ECX_XSAVE
                | ECX_OSXSAVE
                | ECX_AVX
                | ECX_F16C
                | ECX_FMA);
            r.ecx |= ECX_HYPERVISOR;
            r.ecx |= ECX_X2APIC;
            r.edx |= EDX_APIC;
            r.edx &= !(EDX_MCE | EDX_MCA | EDX_DS | EDX_ACPI | EDX_TM | EDX_PBE);
            if ctx.nr_vcpus > 1 {
                r.edx |= EDX_HTT;
            } else {
                r.edx &= !EDX_HTT;
            }
            // APIC id = 2 * vCPU id (Xen's convention); logical count.
            let count = (ctx.nr_vcpus * 2).min(255);
            r.ebx = (r.ebx & 0x0000_ffff) | (count << 16) | ((ctx.vcpu_id * 2) & 0xff) << 24;
        }
        // Cache descriptors stay; core counts would describe the host.
        4 => r.eax &= 0x3fff,
        // Power management, perfmon, topology: nothing to show.
        5 | 6 | 0xa | 0xb => r = ZERO,
        7 => {
            if subleaf == 0 {
                r.eax = 0;
                r.ebx &= !(B7_SGX
                    | B7_HLE
                    | B7_AVX2
                    | B7_RTM
                    | B7_PQM
                    | B7_MPX
                    | B7_PQE
                    | B7_AVX512_MASK
                    | B7_PT
                    | B7_INVPCID);
                r.ecx &= !(C7_AVX512_MASK
                    | C7_PKU
                    | C7_OSPKE
                    | C7_WAITPKG
                    | C7_VAES
                    | C7_VPCLMUL
                    | C7_LA57
                    | C7_SGX_LC
                    | C7_CET_SS
                    | C7_PKS);
                if !ctx.offer.rdpid {
                    r.ecx &= !C7_RDPID;
                }
                r.edx = (r.edx & D7_KEEP) | ctx.offer.spec.leaf7_edx();
            } else {
                r = ZERO;
            }
        }
        // XSAVE is hidden, so its leaf is empty.
        0xd => r = ZERO,
        0x8000_0000 => r.eax = max_ext,
        0x8000_0001 => {
            r.ecx &= !(E1C_SVM
                | E1C_IBS
                | E1C_SKINIT
                | E1C_WDT
                | E1C_LWP
                | E1C_NODEID
                | E1C_TOPOEXT
                | E1C_PERFCTR_CORE
                | E1C_PERFCTR_NB
                | E1C_PERFCTR_LLC
                | E1C_MONITORX
                | E1C_XOP
                | E1C_FMA4
                | E1C_TBM);
            // RDTSCP reads TSC_AUX, switched per vCPU where offered.
            if !ctx.offer.rdtscp {
                r.edx &= !E1D_RDTSCP;
            }
        }
        // Address sizes stay; core counts go; IBPB as offered.
        0x8000_0008 => {
            r.ebx = ctx.offer.spec.leaf_e8_ebx();
            r.ecx = 0;
            r.edx = 0;
        }
        _ => {}
    }
    r
}

/// Xen's leaves (Xen 4.17's answers for a PVH guest).
fn xen_leaf(idx: u32, subleaf: u32, ctx: &CpuidContext) -> CpuidResult {
    match idx {
        0 => CpuidResult { eax: xc::BASE + 5, ebx: xc::SIGNATURE_EBX, ecx: xc::SIGNATURE_ECX, edx: xc::SIGNATURE_EDX },
        1 => CpuidResult {
            eax: (xen_abi::version::XEN_MAJOR << 16) | xen_abi::version::XEN_MINOR,
            ebx: 0,
            ecx: 0,
            edx: 0,
        },
        2 => CpuidResult { eax: 1, ebx: xc::HYPERCALL_PAGE_MSR, ecx: 0, edx: 0 },
        3 => match subleaf {
            // TSC mode 0 (native, not emulated); the guest TSC rate.
            0 => CpuidResult { eax: (ctx.host_tsc_reliable as u32) << 1, ebx: 0, ecx: ctx.tsc_khz, edx: 0 },
            2 => CpuidResult { eax: ctx.tsc_khz, ebx: 0, ecx: 0, edx: 0 },
            _ => ZERO,
        },
        4 if subleaf == 0 => CpuidResult {
            eax: xc::HVM_IOMMU_MAPPINGS | xc::HVM_VCPU_ID_PRESENT | xc::HVM_DOMID_PRESENT | xc::HVM_UPCALL_VECTOR,
            ebx: ctx.vcpu_id,
            ecx: ctx.domid as u32,
            edx: 0,
        },
        _ => ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::hvm::isolation::spec::GuestSpec;

    /// An AMD-ish host with everything set, to see what gets taken out.
    fn host(leaf: u32, _sub: u32) -> CpuidResult {
        match leaf {
            0 => CpuidResult { eax: 0x16, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65 },
            0x8000_0000 => CpuidResult { eax: 0x8000_001f, ebx: 0, ecx: 0, edx: 0 },
            _ => CpuidResult { eax: u32::MAX, ebx: u32::MAX, ecx: u32::MAX, edx: u32::MAX },
        }
    }

    static NOTHING: GuestOffer = GuestOffer { spec: GuestSpec::NONE, rdtscp: false, rdpid: false };

    fn ctx(vcpu: u32) -> CpuidContext<'static> {
        CpuidContext {
            vcpu_id: vcpu,
            domid: 3,
            nr_vcpus: 2,
            tsc_khz: 2_000_000,
            host_tsc_reliable: false,
            offer: &NOTHING,
        }
    }

    #[test]
    fn xen_signature_and_leaves() {
        let c = ctx(1);
        let r = guest_cpuid(host, 0x4000_0000, 0, &c);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(r.eax, 0x4000_0005);
        assert_eq!(guest_cpuid(host, 0x4000_0001, 0, &c).eax, 0x0004_0011);
        let l2 = guest_cpuid(host, 0x4000_0002, 0, &c);
        assert_eq!((l2.eax, l2.ebx), (1, 0x4000_0000));
        let l4 = guest_cpuid(host, 0x4000_0004, 0, &c);
        assert_eq!((l4.eax, l4.ebx, l4.ecx), (0x5c, 1, 3));
        assert_eq!(guest_cpuid(host, 0x4000_0005, 0, &c), ZERO);
        assert_eq!(guest_cpuid(host, 0x4000_0100, 0, &c), ZERO);
    }

    #[test]
    fn leaf_1_hides_what_is_not_virtualised_and_sets_the_hypervisor_bit() {
        let r = guest_cpuid(host, 1, 0, &ctx(1));
        assert_ne!(r.ecx & ECX_HYPERVISOR, 0);
        for bit in [ECX_VMX, ECX_MONITOR, ECX_XSAVE, ECX_OSXSAVE, ECX_AVX, ECX_TSC_DEADLINE] {
            assert_eq!(r.ecx & bit, 0, "ecx bit {bit:#x}");
        }
        assert_eq!(r.edx & EDX_MCE, 0);
        assert_ne!(r.edx & (1 << 12), 0, "MTRRs are emulated, as Xen's");
        // The emulated local APIC, in both modes.
        assert_ne!(r.edx & EDX_APIC, 0);
        assert_ne!(r.ecx & ECX_X2APIC, 0);
        assert_eq!(r.ebx >> 24, 2, "APIC id is twice the vCPU id");
        assert_eq!((r.ebx >> 16) & 0xff, 4);
        assert_eq!(guest_cpuid(host, 1, 0, &ctx(0)).ebx >> 24, 0);
    }

    #[test]
    fn limits_and_hidden_leaves() {
        let c = ctx(0);
        assert_eq!(guest_cpuid(host, 0, 0, &c).eax, 0xd);
        assert_eq!(guest_cpuid(host, 0x10, 0, &c), ZERO, "above the guest's max basic leaf");
        assert_eq!(guest_cpuid(host, 0x8000_0000, 0, &c).eax, 0x8000_0008);
        assert_eq!(guest_cpuid(host, 0x8000_000a, 0, &c), ZERO, "no SVM leaf");
        assert_eq!(guest_cpuid(host, 0x8000_0001, 0, &c).ecx & E1C_SVM, 0);
        assert_eq!(guest_cpuid(host, 0xd, 0, &c), ZERO);
        let l7 = guest_cpuid(host, 7, 0, &c);
        assert_eq!(l7.ebx & B7_AVX2, 0);
        assert_eq!(l7.ecx & (C7_CET_SS | C7_PKS | C7_PKU | C7_LA57), 0, "no CET, PKS, PKU or LA57");
        assert_eq!(l7.edx, D7_KEEP);
        assert_eq!(guest_cpuid(host, 7, 1, &c), ZERO);
    }

    /// The speculation controls and RDTSCP/RDPID are what the offer says,
    /// whatever else the host has: nothing offered, nothing shown (not
    /// MD_CLEAR without the rest either), and what is offered is shown.
    #[test]
    fn speculation_controls_and_tsc_aux_readers_follow_the_offer() {
        let none = ctx(0);
        let l7 = guest_cpuid(host, 7, 0, &none);
        assert_eq!(l7.edx & !D7_KEEP, 0, "no speculation control unless offered");
        assert_eq!(l7.ecx & C7_RDPID, 0);
        assert_eq!(guest_cpuid(host, 0x8000_0001, 0, &none).edx & E1D_RDTSCP, 0);
        assert_eq!(guest_cpuid(host, 0x8000_0008, 0, &none).ebx, 0);
        let spec =
            GuestSpec { ibrsb: true, stibp: true, ssbd: true, md_clear: true, ibpb: true, ..GuestSpec::default() };
        let offer = GuestOffer { spec, rdtscp: true, rdpid: true };
        let offered = CpuidContext { offer: &offer, ..ctx(0) };
        let l7 = guest_cpuid(host, 7, 0, &offered);
        assert_eq!(l7.edx, D7_KEEP | 1 << 10 | 1 << 26 | 1 << 27 | 1 << 31);
        assert_ne!(l7.ecx & C7_RDPID, 0);
        assert_ne!(guest_cpuid(host, 0x8000_0001, 0, &offered).edx & E1D_RDTSCP, 0);
        assert_eq!(guest_cpuid(host, 0x8000_0008, 0, &offered).ebx, 1 << 12);
    }
}
