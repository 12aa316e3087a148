//! The guest's speculation-control MSRs and TSC_AUX: what a read returns
//! and what a write does, by Xen's `guest_rdmsr` / `guest_wrmsr` rules for
//! what the guest's CPUID offers (an MSR it is not offered raises #GP).
//! Pure logic, host-tested; the run loop's MSR exits come here first.

use super::spec::GuestSpec;

pub const SPEC_CTRL: u32 = 0x48;
pub const PRED_CMD: u32 = 0x49;
pub const ARCH_CAPABILITIES: u32 = 0x10a;
pub const FLUSH_CMD: u32 = 0x10b;
pub const TSC_AUX: u32 = 0xc000_0103;

pub const PRED_CMD_IBPB: u64 = 1 << 0;
pub const FLUSH_CMD_L1D: u64 = 1 << 0;

/// What a guest is offered beyond the speculation controls: RDTSCP and
/// RDPID, which read TSC_AUX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestOffer {
    pub spec: GuestSpec,
    pub rdtscp: bool,
    pub rdpid: bool,
}

/// A vCPU's values of these MSRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuMsrs {
    pub spec_ctrl: u64,
    pub tsc_aux: u64,
}

/// What a write asks the hardware to do now, besides storing a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Ibpb,
    L1dFlush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<T> {
    /// Not one of these MSRs: the general policy decides.
    NotMine,
    Gp,
    Ok(T),
}

/// RDMSR of `msr` by a vCPU with `m`.
pub fn read(msr: u32, offer: &GuestOffer, m: &VcpuMsrs) -> Answer<u64> {
    match msr {
        SPEC_CTRL if offer.spec.ibrsb => Answer::Ok(m.spec_ctrl),
        ARCH_CAPABILITIES => match offer.spec.arch_caps {
            Some(v) => Answer::Ok(v),
            None => Answer::Gp,
        },
        TSC_AUX if offer.rdtscp || offer.rdpid => Answer::Ok(m.tsc_aux),
        // Write-only, or not offered.
        SPEC_CTRL | PRED_CMD | FLUSH_CMD | TSC_AUX => Answer::Gp,
        _ => Answer::NotMine,
    }
}

/// WRMSR of `value` to `msr`: the vCPU's new values and what to do now.
pub fn write(msr: u32, value: u64, offer: &GuestOffer, m: &mut VcpuMsrs) -> Answer<Action> {
    let s = &offer.spec;
    match msr {
        SPEC_CTRL if s.ibrsb && value & !s.spec_ctrl_valid() == 0 => {
            m.spec_ctrl = value;
            Answer::Ok(Action::None)
        }
        PRED_CMD if s.ibpb && value & !PRED_CMD_IBPB == 0 => {
            Answer::Ok(if value & PRED_CMD_IBPB != 0 { Action::Ibpb } else { Action::None })
        }
        FLUSH_CMD if s.l1d_flush && value & !FLUSH_CMD_L1D == 0 => {
            Answer::Ok(if value & FLUSH_CMD_L1D != 0 { Action::L1dFlush } else { Action::None })
        }
        // TSC_AUX holds 32 bits (Xen: #GP on anything above).
        TSC_AUX if (offer.rdtscp || offer.rdpid) && value >> 32 == 0 => {
            m.tsc_aux = value;
            Answer::Ok(Action::None)
        }
        SPEC_CTRL | PRED_CMD | FLUSH_CMD | TSC_AUX | ARCH_CAPABILITIES => Answer::Gp,
        _ => Answer::NotMine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intel() -> GuestOffer {
        GuestOffer {
            spec: GuestSpec {
                ibrsb: true,
                stibp: true,
                ssbd: true,
                ibpb: true,
                arch_caps: Some(0x21),
                ..GuestSpec::default()
            },
            rdtscp: true,
            rdpid: false,
        }
    }

    #[test]
    fn nothing_offered_means_gp_for_every_one() {
        let o = GuestOffer::default();
        let mut m = VcpuMsrs::default();
        for msr in [SPEC_CTRL, PRED_CMD, FLUSH_CMD, TSC_AUX, ARCH_CAPABILITIES] {
            assert_eq!(read(msr, &o, &m), Answer::Gp, "{msr:#x}");
            assert_eq!(write(msr, 0, &o, &mut m), Answer::Gp, "{msr:#x}");
        }
        assert_eq!(read(0x1234, &o, &m), Answer::NotMine);
        assert_eq!(write(0x1234, 0, &o, &mut m), Answer::NotMine);
    }

    #[test]
    fn spec_ctrl_is_the_vcpus_own_and_checks_bits() {
        let o = intel();
        let mut m = VcpuMsrs::default();
        assert_eq!(write(SPEC_CTRL, 0b101, &o, &mut m), Answer::Ok(Action::None));
        assert_eq!(read(SPEC_CTRL, &o, &m), Answer::Ok(0b101));
        assert_eq!(write(SPEC_CTRL, 1 << 3, &o, &mut m), Answer::Gp, "reserved bit");
        assert_eq!(m.spec_ctrl, 0b101, "a refused write changes nothing");
        let no_ssbd = GuestOffer { spec: GuestSpec { ssbd: false, ..o.spec }, ..o };
        assert_eq!(write(SPEC_CTRL, 0b100, &no_ssbd, &mut m), Answer::Gp);
        assert_eq!(write(SPEC_CTRL, 0b010, &no_ssbd, &mut m), Answer::Ok(Action::None), "STIBP always accepted");
    }

    #[test]
    fn pred_cmd_and_flush_cmd_are_write_only_commands() {
        let o = intel();
        let mut m = VcpuMsrs::default();
        assert_eq!(write(PRED_CMD, 1, &o, &mut m), Answer::Ok(Action::Ibpb));
        assert_eq!(write(PRED_CMD, 0, &o, &mut m), Answer::Ok(Action::None));
        assert_eq!(write(PRED_CMD, 2, &o, &mut m), Answer::Gp);
        assert_eq!(read(PRED_CMD, &o, &m), Answer::Gp);
        // L1D_FLUSH is not offered by default.
        assert_eq!(write(FLUSH_CMD, 1, &o, &mut m), Answer::Gp);
        let l1d = GuestOffer { spec: GuestSpec { l1d_flush: true, ..o.spec }, ..o };
        assert_eq!(write(FLUSH_CMD, 1, &l1d, &mut m), Answer::Ok(Action::L1dFlush));
        assert_eq!(read(FLUSH_CMD, &l1d, &m), Answer::Gp);
    }

    #[test]
    fn arch_caps_reads_the_offered_value_and_is_read_only() {
        let o = intel();
        let mut m = VcpuMsrs::default();
        assert_eq!(read(ARCH_CAPABILITIES, &o, &m), Answer::Ok(0x21));
        assert_eq!(write(ARCH_CAPABILITIES, 0x21, &o, &mut m), Answer::Gp);
    }

    #[test]
    fn tsc_aux_holds_32_bits_when_rdtscp_or_rdpid_is_offered() {
        let mut m = VcpuMsrs::default();
        for o in [intel(), GuestOffer { rdtscp: false, rdpid: true, ..intel() }] {
            assert_eq!(write(TSC_AUX, 0xdead_beef, &o, &mut m), Answer::Ok(Action::None));
            assert_eq!(read(TSC_AUX, &o, &m), Answer::Ok(0xdead_beef));
            assert_eq!(write(TSC_AUX, 1 << 32, &o, &mut m), Answer::Gp);
            assert_eq!(m.tsc_aux, 0xdead_beef);
        }
    }
}
