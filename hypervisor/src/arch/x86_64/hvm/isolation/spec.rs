//! Speculative-execution isolation between domains: which measures this
//! CPU needs and which speculation controls guests get, decided from its
//! CPUID bits and IA32_ARCH_CAPABILITIES with Xen's defaults
//! (`xen/arch/x86/spec_ctrl.c`, `init_speculation_mitigations`, and the
//! HVM default policy of `cpufeatureset.h`). Pure logic, host-tested; the
//! measures themselves are `hw`'s, and `describe` gives the boot lines
//! Xen prints.
//!
//! - IBPB when a CPU switches to another vCPU than the last it ran
//!   (Xen's `opt_ibpb_ctxt_switch`: on whenever the CPU has IBPB);
//! - IBPB on every VM exit on AMD parts with Branch Type Confusion or
//!   SRSO that IBPB mitigates (Xen's IBPB-entry);
//! - the return stack buffer overwritten after every VM exit (Xen's
//!   `opt_rsb_hvm`, on for every CPU: a guest can always fill it with its
//!   own targets);
//! - VERW before VM entry where it clears leaky buffers (MDS with
//!   MD_CLEAR, RFDS_CLEAR, AMD's VERW_CLEAR), and an L1D flush before VM
//!   entry on L1TF-affected Intel parts (which also does VERW's work where
//!   MD_CLEAR is the only buffer-clearing feature);
//! - the guest's MSR_SPEC_CTRL per vCPU, loaded around entry when it
//!   differs from the host's (0), and PRED_CMD writes performed.

use crate::arch::x86_64::Vendor;

/// The CPU's speculation-related features, as read at boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostSpec {
    pub intel: bool,
    pub amd: bool,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    // CPUID 7.0 EDX.
    pub ibrsb: bool,
    pub stibp: bool,
    pub l1d_flush: bool,
    pub arch_caps_msr: bool,
    pub ssbd: bool,
    pub md_clear: bool,
    // CPUID 0x80000008 EBX.
    pub amd_ibpb: bool,
    pub amd_ibrs: bool,
    pub amd_stibp: bool,
    pub amd_ssbd: bool,
    pub btc_no: bool,
    pub ibpb_ret: bool,
    // CPUID 0x80000021 EAX.
    pub verw_clear: bool,
    pub ibpb_brtype: bool,
    pub srso_no: bool,
    /// IA32_ARCH_CAPABILITIES (0 without the MSR).
    pub arch_caps: u64,
}

// IA32_ARCH_CAPABILITIES bits.
pub const CAPS_RDCL_NO: u64 = 1 << 0;
pub const CAPS_EIBRS: u64 = 1 << 1;
pub const CAPS_SKIP_L1DFL: u64 = 1 << 3;
pub const CAPS_MDS_NO: u64 = 1 << 5;
pub const CAPS_FB_CLEAR: u64 = 1 << 17;
pub const CAPS_RFDS_CLEAR: u64 = 1 << 28;
/// The hints a guest may see (immunities and what mitigation to prefer):
/// RDCL_NO, EIBRS, RSBA, SKIP_L1DFL, SSB_NO, MDS_NO, TAA_NO,
/// SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, FB_CLEAR, RRSBA, BHI_NO, PBRSB_NO,
/// GDS_NO, RFDS_NO, RFDS_CLEAR. No control bits (TSX_CTRL, ...): the
/// MSRs they name are not the guest's.
pub const GUEST_CAPS_MASK: u64 = 0b11_1111 | 1 << 8 | 0b111 << 13 | 1 << 17 | 0b11 << 19 | 1 << 24 | 0b111 << 26;

// MSR_SPEC_CTRL bits.
pub const SPEC_CTRL_IBRS: u64 = 1 << 0;
pub const SPEC_CTRL_STIBP: u64 = 1 << 1;
pub const SPEC_CTRL_SSBD: u64 = 1 << 2;

impl HostSpec {
    /// Reads the features through `cpuid(leaf, subleaf) -> [eax, ebx,
    /// ecx, edx]`; `arch_caps` reads the MSR (called only when CPUID
    /// lists it).
    pub fn read(
        vendor: Vendor,
        (family, model, stepping): (u32, u32, u32),
        cpuid: impl Fn(u32, u32) -> [u32; 4],
        arch_caps: impl FnOnce() -> u64,
    ) -> HostSpec {
        let max = cpuid(0, 0)[0];
        let max_ext = cpuid(0x8000_0000, 0)[0];
        let d7 = if max >= 7 { cpuid(7, 0)[3] } else { 0 };
        let e8b = if max_ext >= 0x8000_0008 { cpuid(0x8000_0008, 0)[1] } else { 0 };
        let e21a = if max_ext >= 0x8000_0021 { cpuid(0x8000_0021, 0)[0] } else { 0 };
        let bit = |r: u32, b: u32| r & (1 << b) != 0;
        let arch_caps_msr = bit(d7, 29);
        HostSpec {
            intel: vendor == Vendor::Intel,
            amd: matches!(vendor, Vendor::Amd | Vendor::Hygon),
            family,
            model,
            stepping,
            md_clear: bit(d7, 10),
            ibrsb: bit(d7, 26),
            stibp: bit(d7, 27),
            l1d_flush: bit(d7, 28),
            arch_caps_msr,
            ssbd: bit(d7, 31),
            amd_ibpb: bit(e8b, 12),
            amd_ibrs: bit(e8b, 14),
            amd_stibp: bit(e8b, 15),
            amd_ssbd: bit(e8b, 24),
            btc_no: bit(e8b, 29),
            ibpb_ret: bit(e8b, 30),
            verw_clear: bit(e21a, 5),
            ibpb_brtype: bit(e21a, 28),
            srso_no: bit(e21a, 29),
            arch_caps: if arch_caps_msr { arch_caps() } else { 0 },
        }
    }

    pub fn has_ibpb(&self) -> bool {
        self.ibrsb || self.amd_ibpb
    }

    /// Whether the CPU has MSR_SPEC_CTRL at all.
    pub fn has_spec_ctrl(&self) -> bool {
        self.ibrsb || self.amd_ibrs || self.amd_stibp || self.amd_ssbd
    }

    /// Xen's `l1tf_calculations`: Intel family 6 cores, not Atoms, unless
    /// RDCL_NO.
    pub fn l1tf_affected(&self) -> bool {
        if !self.intel || self.family != 6 || self.arch_caps & CAPS_RDCL_NO != 0 {
            return false;
        }
        const ATOMS: &[u32] = &[0x1c, 0x26, 0x27, 0x35, 0x36, 0x37, 0x4d, 0x4c, 0x4a, 0x5a, 0x5c, 0x5f, 0x7a];
        !ATOMS.contains(&self.model)
    }

    /// Xen's `mds_calculations`: the Intel family 6 cores it lists, unless
    /// MDS_NO.
    pub fn mds_affected(&self) -> bool {
        if !self.intel || self.family != 6 || self.arch_caps & CAPS_MDS_NO != 0 {
            return false;
        }
        match self.model {
            0x1f | 0x1e | 0x1a | 0x2e | 0x25 | 0x2c | 0x2f | 0x2a | 0x2d | 0x3a | 0x3e | 0x3c | 0x3f | 0x45 | 0x46
            | 0x3d | 0x47 | 0x4f | 0x56 | 0x4e | 0x5e => true,
            0x55 => self.stepping <= 5,
            0x8e => self.stepping <= 0xb,
            0x9e => self.stepping <= 0xc,
            _ => false,
        }
    }
}

/// The measures in use, decided once at boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecPolicy {
    /// IBPB when a CPU switches to a vCPU other than the last it ran.
    pub ibpb_ctxt_switch: bool,
    /// IBPB after every VM exit (AMD: BTC, SRSO).
    pub ibpb_entry: bool,
    /// Overwrite the return stack buffer after every VM exit.
    pub rsb_after_exit: bool,
    /// VERW right before VM entry.
    pub verw_entry: bool,
    /// L1D flush (MSR_FLUSH_CMD) right before VM entry.
    pub l1d_flush_entry: bool,
    /// MSR_SPEC_CTRL switched between the host's value and each vCPU's.
    pub msr_spec_ctrl: bool,
    /// What guests are offered.
    pub guest: GuestSpec,
}

/// The speculation controls guests see (CPUID and MSRs), Xen 4.17's HVM
/// default policy for what this CPU has: IBRSB, STIBP, SSBD, MD_CLEAR and
/// ARCH_CAPS on Intel, IBPB (and IBPB_RET) on either vendor; AMD's
/// IBRS/STIBP/SSBD and L1D_FLUSH are in Xen's max policy only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestSpec {
    pub ibrsb: bool,
    pub stibp: bool,
    pub ssbd: bool,
    pub md_clear: bool,
    pub l1d_flush: bool,
    pub ibpb: bool,
    pub ibpb_ret: bool,
    /// Some(value the guest reads) when ARCH_CAPS is offered.
    pub arch_caps: Option<u64>,
}

impl GuestSpec {
    /// Nothing offered.
    pub const NONE: GuestSpec = GuestSpec {
        ibrsb: false,
        stibp: false,
        ssbd: false,
        md_clear: false,
        l1d_flush: false,
        ibpb: false,
        ibpb_ret: false,
        arch_caps: None,
    };

    /// The MSR_SPEC_CTRL bits a guest may set (Xen's
    /// `msr_spec_ctrl_valid_bits`: STIBP is always accepted, a no-op
    /// where absent).
    pub fn spec_ctrl_valid(&self) -> u64 {
        SPEC_CTRL_IBRS | SPEC_CTRL_STIBP | if self.ssbd { SPEC_CTRL_SSBD } else { 0 }
    }

    /// CPUID 7.0 EDX bits for these controls.
    pub fn leaf7_edx(&self) -> u32 {
        let b = |on: bool, bit: u32| if on { 1 << bit } else { 0 };
        b(self.md_clear, 10)
            | b(self.ibrsb, 26)
            | b(self.stibp, 27)
            | b(self.l1d_flush, 28)
            | b(self.arch_caps.is_some(), 29)
            | b(self.ssbd, 31)
    }

    /// CPUID 0x80000008 EBX bits for these controls.
    pub fn leaf_e8_ebx(&self) -> u32 {
        (if self.ibpb { 1 << 12 } else { 0 }) | if self.ibpb_ret { 1 << 30 } else { 0 }
    }
}

/// Xen's defaults for `host` (no command-line overrides).
pub fn policy(host: &HostSpec) -> SpecPolicy {
    let ibpb = host.has_ibpb();
    let ibpb_entry = host.amd && ibpb && (!host.btc_no || (!host.srso_no && host.ibpb_brtype));
    let l1d_flush_entry = host.l1d_flush && host.l1tf_affected() && host.arch_caps & CAPS_SKIP_L1DFL == 0;
    let useful_md_clear = host.md_clear && host.mds_affected();
    let rfds_clear = host.arch_caps & CAPS_RFDS_CLEAR != 0;
    let fb_clear = host.arch_caps & CAPS_FB_CLEAR != 0;
    let mut verw_entry = useful_md_clear || rfds_clear || host.verw_clear;
    // The L1D flush clears the buffers VERW would, where MD_CLEAR is the
    // only clearing feature.
    if l1d_flush_entry && host.md_clear && !fb_clear && !rfds_clear {
        verw_entry = false;
    }
    let guest = GuestSpec {
        ibrsb: host.ibrsb,
        stibp: host.ibrsb && host.stibp,
        ssbd: host.ibrsb && host.ssbd,
        md_clear: host.md_clear,
        l1d_flush: false,
        ibpb,
        ibpb_ret: ibpb && host.ibpb_ret,
        arch_caps: host.arch_caps_msr.then_some(host.arch_caps & GUEST_CAPS_MASK),
    };
    SpecPolicy {
        ibpb_ctxt_switch: ibpb,
        ibpb_entry,
        rsb_after_exit: true,
        verw_entry,
        l1d_flush_entry,
        msr_spec_ctrl: host.has_spec_ctrl(),
        guest,
    }
}

/// Xen's boot lines: "Speculative mitigation facilities:", what the
/// hardware offers, and "Support for HVM VMs:" with the measures in use.
pub fn describe(host: &HostSpec, p: &SpecPolicy, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    let on = |b: bool, s: &'static str| if b { s } else { "" };
    let caps = host.arch_caps;
    writeln!(out, "Speculative mitigation facilities:")?;
    writeln!(
        out,
        "  Hardware hints:{}{}{}{}{}",
        on(caps & CAPS_RDCL_NO != 0, " RDCL_NO"),
        on(caps & CAPS_EIBRS != 0, " EIBRS"),
        on(caps & CAPS_SKIP_L1DFL != 0, " SKIP_L1DFL"),
        on(caps & CAPS_MDS_NO != 0, " MDS_NO"),
        on(host.btc_no, " BTC_NO"),
    )?;
    let none = !(host.has_ibpb() || host.has_spec_ctrl() || host.l1d_flush || host.md_clear || host.verw_clear);
    writeln!(
        out,
        "  Hardware features:{}{}{}{}{}{}{}{}",
        on(none, " None"),
        on(host.has_ibpb(), " IBPB"),
        on(host.ibrsb || host.amd_ibrs, " IBRS"),
        on(host.stibp || host.amd_stibp, " STIBP"),
        on(host.ssbd || host.amd_ssbd, " SSBD"),
        on(host.l1d_flush, " L1D_FLUSH"),
        on(host.md_clear, " MD_CLEAR"),
        on(host.verw_clear, " VERW_CLEAR"),
    )?;
    writeln!(
        out,
        "  Xen settings: SPEC_CTRL: {}, Other:{}{}{}",
        if host.has_spec_ctrl() { "IBRS-" } else { "No" },
        on(p.ibpb_ctxt_switch, " IBPB-ctxt"),
        on(p.l1d_flush_entry, " L1D_FLUSH"),
        on(p.verw_entry, " VERW"),
    )?;
    if host.l1tf_affected() {
        writeln!(out, "  L1TF: believed vulnerable")?;
    }
    let any = p.msr_spec_ctrl || p.rsb_after_exit || p.verw_entry || p.ibpb_entry;
    writeln!(
        out,
        "  Support for HVM VMs:{}{}{}{}{}",
        on(!any, " None"),
        on(p.msr_spec_ctrl, " MSR_SPEC_CTRL"),
        on(p.rsb_after_exit, " RSB"),
        on(p.verw_entry, " VERW"),
        on(p.ibpb_entry, " IBPB-entry"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's `qemu64` (TCG) and Bochs: no speculation controls at all.
    fn bare(vendor: Vendor) -> HostSpec {
        HostSpec::read(vendor, (6, 0x55, 4), |_, _| [0x8000_0008, 0, 0, 0], || panic!("no ARCH_CAPS"))
    }

    fn text(h: &HostSpec) -> String {
        let mut s = String::new();
        describe(h, &policy(h), &mut s).unwrap();
        s
    }

    #[test]
    fn an_emulated_cpu_without_controls_gets_rsb_stuffing_only() {
        for v in [Vendor::Amd, Vendor::Intel] {
            let h = bare(v);
            let p = policy(&h);
            assert_eq!(p, SpecPolicy { rsb_after_exit: true, ..SpecPolicy::default() }, "{v:?}: nothing but the RSB");
            assert_eq!(p.guest.leaf7_edx(), 0);
            assert_eq!(p.guest.leaf_e8_ebx(), 0);
            let t = text(&h);
            assert!(t.contains("Hardware features: None\n"), "{t}");
            assert!(t.contains("Support for HVM VMs: RSB\n"), "{t}");
            assert!(t.contains("SPEC_CTRL: No"), "{t}");
        }
    }

    fn skylake_x(arch_caps: Option<u64>) -> HostSpec {
        let d7 = 1 << 10 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 31 | if arch_caps.is_some() { 1 << 29 } else { 0 };
        HostSpec::read(
            Vendor::Intel,
            (6, 0x55, 4),
            move |leaf, _| match leaf {
                0 => [0x16, 0, 0, 0],
                7 => [0, 0, 0, d7],
                0x8000_0000 => [0x8000_0008, 0, 0, 0],
                _ => [0; 4],
            },
            move || arch_caps.unwrap_or(0),
        )
    }

    #[test]
    fn an_l1tf_and_mds_affected_intel_core_flushes_l1d_instead_of_verw() {
        let h = skylake_x(None);
        assert!(h.l1tf_affected() && h.mds_affected());
        let p = policy(&h);
        assert!(p.ibpb_ctxt_switch && p.rsb_after_exit && p.msr_spec_ctrl);
        assert!(p.l1d_flush_entry, "L1TF: flush L1D on entry");
        assert!(!p.verw_entry, "the L1D flush does VERW's work (MD_CLEAR only)");
        assert!(!p.ibpb_entry, "IBPB-entry is AMD's");
        let g = p.guest;
        assert!(g.ibrsb && g.stibp && g.ssbd && g.md_clear && g.ibpb);
        assert!(!g.l1d_flush, "L1D_FLUSH is in Xen's max policy only");
        assert_eq!(g.arch_caps, None);
        assert_eq!(g.leaf7_edx(), 1 << 10 | 1 << 26 | 1 << 27 | 1 << 31);
        assert_eq!(g.spec_ctrl_valid(), 0b111);
        let t = text(&h);
        assert!(t.contains("Support for HVM VMs: MSR_SPEC_CTRL RSB\n"), "{t}");
        assert!(t.contains("Other: IBPB-ctxt L1D_FLUSH\n"), "{t}");
        assert!(t.contains("L1TF: believed vulnerable"), "{t}");
    }

    #[test]
    fn arch_caps_hints_decide_l1tf_mds_and_reach_the_guest_masked() {
        // RDCL_NO and MDS_NO: neither flush; FB_CLEAR kept; TSX_CTRL (bit
        // 7) is a control, not shown.
        let h = skylake_x(Some(CAPS_RDCL_NO | CAPS_MDS_NO | CAPS_FB_CLEAR | 1 << 7));
        assert!(!h.l1tf_affected() && !h.mds_affected());
        let p = policy(&h);
        assert!(!p.l1d_flush_entry && !p.verw_entry);
        assert_eq!(p.guest.arch_caps, Some(CAPS_RDCL_NO | CAPS_MDS_NO | CAPS_FB_CLEAR));
        assert_ne!(p.guest.leaf7_edx() & 1 << 29, 0);
        // SKIP_L1DFL (a nested hypervisor flushes for us): no flush, VERW.
        let h = skylake_x(Some(CAPS_SKIP_L1DFL));
        let p = policy(&h);
        assert!(!p.l1d_flush_entry && p.verw_entry);
        // RFDS_CLEAR: VERW even beside the L1D flush.
        let p = policy(&skylake_x(Some(CAPS_RFDS_CLEAR)));
        assert!(p.l1d_flush_entry && p.verw_entry);
    }

    #[test]
    fn amd_gets_ibpb_entry_for_btc_and_only_ibpb_for_guests() {
        let zen2 = |e8b: u32| {
            HostSpec::read(
                Vendor::Amd,
                (0x17, 0x31, 0),
                move |leaf, _| match leaf {
                    0 => [0x10, 0, 0, 0],
                    0x8000_0000 => [0x8000_0021, 0, 0, 0],
                    0x8000_0008 => [0, e8b, 0, 0],
                    _ => [0; 4],
                },
                || panic!("no ARCH_CAPS on AMD"),
            )
        };
        let h = zen2(1 << 12 | 1 << 14 | 1 << 15 | 1 << 24);
        let p = policy(&h);
        assert!(p.ibpb_ctxt_switch && p.ibpb_entry && p.msr_spec_ctrl && p.rsb_after_exit);
        assert!(!p.verw_entry && !p.l1d_flush_entry);
        assert_eq!(p.guest, GuestSpec { ibpb: true, ..GuestSpec::default() });
        assert_eq!(p.guest.leaf_e8_ebx(), 1 << 12);
        // BTC_NO and no SRSO: IBPB on context switches only.
        let p = policy(&zen2(1 << 12 | 1 << 29 | 1 << 30));
        assert!(p.ibpb_ctxt_switch && !p.ibpb_entry);
        assert_eq!(p.guest.leaf_e8_ebx(), 1 << 12 | 1 << 30);
        // No IBPB at all: neither.
        let p = policy(&zen2(0));
        assert!(!p.ibpb_ctxt_switch && !p.ibpb_entry && !p.msr_spec_ctrl);
    }

    #[test]
    fn leaves_the_cpu_lacks_are_not_read() {
        // Max basic leaf 1: leaf 7 must not be read (it would be garbage).
        let h = HostSpec::read(
            Vendor::Intel,
            (6, 0x1a, 0),
            |leaf, _| match leaf {
                0 => [1, 0, 0, 0],
                0x8000_0000 => [0x8000_0004, 0, 0, 0],
                _ => [u32::MAX; 4],
            },
            || panic!("no ARCH_CAPS"),
        );
        assert_eq!(h, HostSpec { intel: true, family: 6, model: 0x1a, ..HostSpec::default() });
    }
}
