//! What the CPU's VT-x offers and which controls the hypervisor uses:
//! decided from the capability MSRs alone, so it is unit-tested on the host.

use super::vmcs::*;
use alloc::string::String;
use core::fmt;

pub(super) const MSR_FEATURE_CONTROL: u32 = 0x3a;
pub(super) const FC_LOCK: u64 = 1 << 0;
pub(super) const FC_VMX_OUTSIDE_SMX: u64 = 1 << 2;
pub(super) const MSR_VMX_BASIC: u32 = 0x480;
pub(super) const MSR_VMX_PINBASED: u32 = 0x481;
pub(super) const MSR_VMX_PROCBASED: u32 = 0x482;
pub(super) const MSR_VMX_EXIT: u32 = 0x483;
pub(super) const MSR_VMX_ENTRY: u32 = 0x484;
pub(super) const MSR_VMX_MISC: u32 = 0x485;
pub(super) const MSR_VMX_CR0_FIXED0: u32 = 0x486;
pub(super) const MSR_VMX_CR0_FIXED1: u32 = 0x487;
pub(super) const MSR_VMX_CR4_FIXED0: u32 = 0x488;
pub(super) const MSR_VMX_CR4_FIXED1: u32 = 0x489;
pub(super) const MSR_VMX_PROCBASED2: u32 = 0x48b;
pub(super) const MSR_VMX_EPT_VPID_CAP: u32 = 0x48c;
pub(super) const MSR_VMX_TRUE_PINBASED: u32 = 0x48d;
pub(super) const MSR_VMX_TRUE_PROCBASED: u32 = 0x48e;
pub(super) const MSR_VMX_TRUE_EXIT: u32 = 0x48f;
pub(super) const MSR_VMX_TRUE_ENTRY: u32 = 0x490;

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) const CR0_PE: u64 = 1 << 0;
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) const CR0_PG: u64 = 1 << 31;
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) const CR4_VMXE: u64 = 1 << 13;

/// What this CPU's VMX offers.
#[derive(Debug, Clone, Copy)]
pub struct VmxFeatures {
    pub revision: u32,
    pub true_controls: bool,
    pub unrestricted_guest: bool,
    pub vpid: bool,
    pub ept_2m: bool,
    pub ept_1g: bool,
    pub invept_single: bool,
    pub invvpid_single: bool,
    pub invvpid_all: bool,
    pub invept_all: bool,
    /// The VMX-preemption timer counts down once every 2^shift TSC ticks;
    /// None if the CPU has no such timer.
    pub preemption_timer_shift: Option<u8>,
    pub pin: u32,
    pub cpu: u32,
    pub cpu2: u32,
    pub exit: u32,
    pub entry: u32,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum VmxError {
    NotIntel,
    NoVmx,
    DisabledByFirmware,
    /// A control the hypervisor needs is not offered.
    Missing(&'static str),
    VmxonFailed,
    NoMemory,
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmxError::NotIntel => f.write_str("the CPU is not an Intel CPU"),
            VmxError::NoVmx => f.write_str("the CPU has no VT-x (VMX)"),
            VmxError::DisabledByFirmware => f.write_str(
                "VT-x is disabled and locked by firmware (IA32_FEATURE_CONTROL): enable it in the BIOS setup",
            ),
            VmxError::Missing(what) => write!(f, "the CPU's VT-x lacks {what}, which the hypervisor requires"),
            VmxError::VmxonFailed => f.write_str("VMXON failed"),
            VmxError::NoMemory => f.write_str("no memory for VMX state"),
        }
    }
}

/// Fits `want` to a capability MSR: bits the low half forces to 1 are set,
/// bits the high half does not allow are cleared.
pub(super) fn fit(want: u32, cap: u64) -> u32 {
    (want | cap as u32) & (cap >> 32) as u32
}

pub(super) fn allowed(cap: u64, bit: u32) -> bool {
    (cap >> 32) as u32 & bit != 0
}

/// Decides from the vendor, CPUID's VMX bit and the capability MSRs
/// (`msr` reads one) whether VT-x can run guests here, and with which
/// controls. No hardware access of its own, so it is unit-tested.
pub fn evaluate(intel: bool, has_vmx: bool, msr: impl Fn(u32) -> u64) -> Result<VmxFeatures, VmxError> {
    let rdmsr = msr;
    if !intel {
        return Err(VmxError::NotIntel);
    }
    if !has_vmx {
        return Err(VmxError::NoVmx);
    }
    let fc = rdmsr(MSR_FEATURE_CONTROL);
    if fc & FC_LOCK != 0 && fc & FC_VMX_OUTSIDE_SMX == 0 {
        return Err(VmxError::DisabledByFirmware);
    }
    let basic = rdmsr(MSR_VMX_BASIC);
    let true_controls = basic & (1 << 55) != 0;
    let (pin_msr, cpu_msr, exit_msr, entry_msr) = if true_controls {
        (MSR_VMX_TRUE_PINBASED, MSR_VMX_TRUE_PROCBASED, MSR_VMX_TRUE_EXIT, MSR_VMX_TRUE_ENTRY)
    } else {
        (MSR_VMX_PINBASED, MSR_VMX_PROCBASED, MSR_VMX_EXIT, MSR_VMX_ENTRY)
    };
    let pin_cap = rdmsr(pin_msr);
    let cpu_cap = rdmsr(cpu_msr);
    if !allowed(cpu_cap, CPU_ACTIVATE_SECONDARY) {
        return Err(VmxError::Missing("secondary processor-based controls"));
    }
    let cpu2_cap = rdmsr(MSR_VMX_PROCBASED2);
    if !allowed(cpu2_cap, CPU2_ENABLE_EPT) {
        return Err(VmxError::Missing("EPT"));
    }
    if !allowed(cpu2_cap, CPU2_UNRESTRICTED_GUEST) {
        return Err(VmxError::Missing(
            "unrestricted guest (a PVH vCPU starts in protected mode with paging off, which VMX runs only with it)",
        ));
    }
    let ept_cap = rdmsr(MSR_VMX_EPT_VPID_CAP);
    if ept_cap & (1 << 6) == 0 || ept_cap & (1 << 14) == 0 {
        return Err(VmxError::Missing("4-level EPT with write-back paging structures"));
    }
    if ept_cap & (1 << 20) == 0 {
        return Err(VmxError::Missing("INVEPT"));
    }
    let vpid = allowed(cpu2_cap, CPU2_ENABLE_VPID) && ept_cap & (1 << 32) != 0;
    let pin = fit(PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING | PIN_PREEMPTION_TIMER, pin_cap);
    if pin & PIN_EXTERNAL_INTERRUPT_EXITING == 0 || pin & PIN_NMI_EXITING == 0 {
        return Err(VmxError::Missing("external-interrupt and NMI exiting"));
    }
    let want_cpu = CPU_USE_TSC_OFFSETTING
        | CPU_HLT_EXITING
        | CPU_MWAIT_EXITING
        | CPU_RDPMC_EXITING
        | CPU_CR8_LOAD_EXITING
        | CPU_CR8_STORE_EXITING
        | CPU_USE_IO_BITMAPS
        | CPU_USE_MSR_BITMAPS
        | CPU_MONITOR_EXITING
        | CPU_MOV_DR_EXITING
        | CPU_ACTIVATE_SECONDARY;
    // EPT handles CR3 and INVLPG: no exits for them if the CPU allows that.
    let cpu = fit(want_cpu, cpu_cap)
        & !(CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING | CPU_INVLPG_EXITING | CPU_RDTSC_EXITING)
        | (cpu_cap as u32 & (CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING | CPU_INVLPG_EXITING | CPU_RDTSC_EXITING));
    for (bit, what) in [
        (CPU_HLT_EXITING, "HLT exiting"),
        (CPU_USE_IO_BITMAPS, "I/O bitmaps"),
        (CPU_USE_MSR_BITMAPS, "MSR bitmaps"),
        (CPU_CR8_LOAD_EXITING | CPU_CR8_STORE_EXITING, "CR8 exiting"),
    ] {
        if cpu & bit != bit {
            return Err(VmxError::Missing(what));
        }
    }
    // RDTSCP and RDPID (which read the vCPU's own TSC_AUX) where allowed.
    let mut want2 = CPU2_ENABLE_EPT | CPU2_UNRESTRICTED_GUEST | CPU2_WBINVD_EXITING | CPU2_ENABLE_RDTSCP;
    if vpid {
        want2 |= CPU2_ENABLE_VPID;
    }
    let cpu2 = fit(want2, cpu2_cap);
    let exit = fit(
        EXIT_HOST_ADDRESS_SPACE_SIZE
            | EXIT_SAVE_PAT
            | EXIT_LOAD_PAT
            | EXIT_SAVE_EFER
            | EXIT_LOAD_EFER
            | EXIT_SAVE_DEBUG_CONTROLS,
        rdmsr(exit_msr),
    );
    let entry =
        fit(ENTRY_LOAD_PAT | ENTRY_LOAD_EFER | ENTRY_LOAD_DEBUG_CONTROLS, rdmsr(entry_msr)) & !ENTRY_IA32E_MODE_GUEST;
    for (have, bit, what) in [
        (exit, EXIT_HOST_ADDRESS_SPACE_SIZE, "64-bit host exits"),
        (exit, EXIT_LOAD_EFER | EXIT_SAVE_EFER, "EFER switching on exit"),
        (entry, ENTRY_LOAD_EFER, "EFER loading on entry"),
        (exit, EXIT_LOAD_PAT | EXIT_SAVE_PAT, "PAT switching on exit"),
        (entry, ENTRY_LOAD_PAT, "PAT loading on entry"),
    ] {
        if have & bit != bit {
            return Err(VmxError::Missing(what));
        }
    }
    Ok(VmxFeatures {
        revision: (basic & 0x7fff_ffff) as u32,
        true_controls,
        unrestricted_guest: true,
        vpid,
        ept_2m: ept_cap & (1 << 16) != 0,
        ept_1g: ept_cap & (1 << 17) != 0,
        invept_single: ept_cap & (1 << 25) != 0,
        invvpid_single: ept_cap & (1 << 41) != 0,
        invvpid_all: ept_cap & (1 << 42) != 0,
        invept_all: ept_cap & (1 << 26) != 0,
        preemption_timer_shift: (pin & PIN_PREEMPTION_TIMER != 0).then(|| (rdmsr(MSR_VMX_MISC) & 0x1f) as u8),
        pin,
        cpu,
        cpu2,
        exit,
        entry,
        cr0_fixed0: rdmsr(MSR_VMX_CR0_FIXED0),
        cr0_fixed1: rdmsr(MSR_VMX_CR0_FIXED1),
        cr4_fixed0: rdmsr(MSR_VMX_CR4_FIXED0),
        cr4_fixed1: rdmsr(MSR_VMX_CR4_FIXED1),
    })
}

/// One line for the boot log.
pub fn describe(f: &VmxFeatures) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    alloc::format!(
        "VT-x: VMCS revision {:#x}{}, EPT (2 MiB pages {}, 1 GiB pages {}), unrestricted guest, VPID {}, INVEPT single-context {}, preemption timer {}",
        f.revision,
        if f.true_controls { ", true controls" } else { "" },
        yes(f.ept_2m),
        yes(f.ept_1g),
        yes(f.vpid),
        yes(f.invept_single),
        yes(f.preemption_timer_shift.is_some())
    )
}

/// CR0 bits the hypervisor owns: those VMX forces (except PE and PG, which
/// unrestricted guest leaves to the guest) and those it forbids.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) fn cr0_owned(f: &VmxFeatures) -> u64 {
    ((f.cr0_fixed0 & !(CR0_PE | CR0_PG)) | !f.cr0_fixed1) & 0xffff_ffff
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) fn cr4_owned(f: &VmxFeatures) -> u64 {
    (f.cr4_fixed0 | !f.cr4_fixed1 | CR4_VMXE) & 0xffff_ffff
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) fn cr0_real(f: &VmxFeatures, guest: u64) -> u64 {
    (guest | (f.cr0_fixed0 & !(CR0_PE | CR0_PG))) & f.cr0_fixed1
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))] // used by the hardware half
pub(super) fn cr4_real(f: &VmxFeatures, guest: u64) -> u64 {
    (guest | f.cr4_fixed0) & f.cr4_fixed1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capability MSRs of a CPU that offers everything (allowed-1 all set,
    /// nothing forced) with the true controls, a locked-on
    /// FEATURE_CONTROL, 4-level write-back EPT with large pages, INVEPT and
    /// INVVPID, and a preemption timer at TSC/32.
    fn full(m: u32) -> u64 {
        match m {
            MSR_FEATURE_CONTROL => FC_LOCK | FC_VMX_OUTSIDE_SMX,
            MSR_VMX_BASIC => 1 << 55 | 6 << 50 | 0x1000 << 32 | 4,
            MSR_VMX_MISC => 5,
            MSR_VMX_EPT_VPID_CAP => {
                1 << 6 | 1 << 14 | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 25 | 1 << 26 | 1 << 32 | 1 << 41
            }
            MSR_VMX_CR0_FIXED0 => 0x8000_0021,
            MSR_VMX_CR0_FIXED1 => 0xffff_ffff,
            MSR_VMX_CR4_FIXED0 => 0x2000,
            MSR_VMX_CR4_FIXED1 => 0x3767ff,
            _ => 0xffff_ffff_0000_0000,
        }
    }

    fn with(base: fn(u32) -> u64, msr: u32, value: u64) -> impl Fn(u32) -> u64 {
        move |m| if m == msr { value } else { base(m) }
    }

    #[test]
    fn a_full_featured_cpu_gets_the_controls_the_hypervisor_wants() {
        let f = evaluate(true, true, full).unwrap();
        assert_eq!(f.revision, 4);
        assert!(f.true_controls && f.vpid && f.ept_2m && f.ept_1g && f.invept_single && f.invvpid_single);
        assert_eq!(f.preemption_timer_shift, Some(5));
        assert_eq!(f.pin, PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING | PIN_PREEMPTION_TIMER);
        // EPT makes CR3 and INVLPG exits unnecessary; RDTSC runs natively.
        for bit in [CPU_CR3_LOAD_EXITING, CPU_CR3_STORE_EXITING, CPU_INVLPG_EXITING, CPU_RDTSC_EXITING] {
            assert_eq!(f.cpu & bit, 0, "{bit:#x}");
        }
        for bit in
            [CPU_HLT_EXITING, CPU_USE_IO_BITMAPS, CPU_USE_MSR_BITMAPS, CPU_ACTIVATE_SECONDARY, CPU_CR8_LOAD_EXITING]
        {
            assert_eq!(f.cpu & bit, bit, "{bit:#x}");
        }
        assert_eq!(
            f.cpu2,
            CPU2_ENABLE_EPT | CPU2_UNRESTRICTED_GUEST | CPU2_WBINVD_EXITING | CPU2_ENABLE_VPID | CPU2_ENABLE_RDTSCP
        );
        assert_eq!(f.cpu & CPU_MOV_DR_EXITING, CPU_MOV_DR_EXITING, "debug registers are switched lazily");
        assert_eq!(f.entry & ENTRY_IA32E_MODE_GUEST, 0, "long mode is the guest's choice, set at run time");
    }

    #[test]
    fn controls_the_cpu_forces_are_kept_and_those_it_forbids_dropped() {
        // Old-style (non-true) MSRs that force CR3 exiting on, and a CPU
        // without the preemption timer or VPID.
        let cpu = |m: u32| match m {
            MSR_VMX_BASIC => 6 << 50 | 4,
            MSR_VMX_PROCBASED => {
                let forced = (CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING) as u64;
                0xffff_ffff_0000_0000 | forced
            }
            MSR_VMX_PINBASED => !((PIN_PREEMPTION_TIMER as u64) << 32) & 0xffff_ffff_0000_0000,
            MSR_VMX_PROCBASED2 => !((CPU2_ENABLE_VPID as u64) << 32) & 0xffff_ffff_0000_0000,
            m => full(m),
        };
        let f = evaluate(true, true, cpu).unwrap();
        assert!(!f.true_controls);
        assert_eq!(f.cpu & CPU_CR3_LOAD_EXITING, CPU_CR3_LOAD_EXITING);
        assert_eq!(f.preemption_timer_shift, None);
        assert_eq!(f.pin & PIN_PREEMPTION_TIMER, 0);
        assert!(!f.vpid);
        assert_eq!(f.cpu2 & CPU2_ENABLE_VPID, 0);
    }

    #[test]
    fn each_missing_requirement_is_named() {
        assert!(matches!(evaluate(false, true, full), Err(VmxError::NotIntel)));
        assert!(matches!(evaluate(true, false, full), Err(VmxError::NoVmx)));
        assert!(matches!(
            evaluate(true, true, with(full, MSR_FEATURE_CONTROL, FC_LOCK)),
            Err(VmxError::DisabledByFirmware)
        ));
        // Unlocked firmware setting is fine: init_cpu enables and locks it.
        assert!(evaluate(true, true, with(full, MSR_FEATURE_CONTROL, 0)).is_ok());
        let no2 = 0xffff_ffff_0000_0000 & !((CPU_ACTIVATE_SECONDARY as u64) << 32);
        assert!(matches!(
            evaluate(true, true, with(full, MSR_VMX_TRUE_PROCBASED, no2)),
            Err(VmxError::Missing(m)) if m.contains("secondary")
        ));
        let no_ug = 0xffff_ffff_0000_0000 & !((CPU2_UNRESTRICTED_GUEST as u64) << 32);
        match evaluate(true, true, with(full, MSR_VMX_PROCBASED2, no_ug)) {
            Err(e @ VmxError::Missing(_)) => {
                let text = alloc::format!("{e}");
                assert!(text.contains("unrestricted guest") && text.contains("paging off"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let no_ept = 0xffff_ffff_0000_0000 & !((CPU2_ENABLE_EPT as u64) << 32);
        assert!(matches!(evaluate(true, true, with(full, MSR_VMX_PROCBASED2, no_ept)), Err(VmxError::Missing("EPT"))));
        let no_wb = full(MSR_VMX_EPT_VPID_CAP) & !(1 << 14);
        assert!(matches!(
            evaluate(true, true, with(full, MSR_VMX_EPT_VPID_CAP, no_wb)),
            Err(VmxError::Missing(m)) if m.contains("write-back")
        ));
        let no_efer = 0xffff_ffff_0000_0000 & !((EXIT_LOAD_EFER as u64) << 32);
        assert!(matches!(
            evaluate(true, true, with(full, MSR_VMX_TRUE_EXIT, no_efer)),
            Err(VmxError::Missing(m)) if m.contains("EFER")
        ));
        let no_hlt = 0xffff_ffff_0000_0000 & !((CPU_HLT_EXITING as u64) << 32);
        assert!(matches!(
            evaluate(true, true, with(full, MSR_VMX_TRUE_PROCBASED, no_hlt)),
            Err(VmxError::Missing("HLT exiting"))
        ));
    }

    #[test]
    fn fit_sets_forced_bits_and_clears_forbidden_ones() {
        // Bit 1 forced on, bit 2 not allowed.
        let cap = (0xffff_fffbu64 << 32) | 0b10;
        assert_eq!(fit(0b101, cap), 0b011);
        assert!(allowed(cap, 1) && !allowed(cap, 4));
    }

    #[test]
    fn the_hypervisor_owns_ne_and_vmxe_but_not_pe_or_pg() {
        let f = evaluate(true, true, full).unwrap();
        let owned0 = cr0_owned(&f);
        assert_eq!(owned0 & (CR0_PE | CR0_PG), 0);
        assert_eq!(owned0 & (1 << 5), 1 << 5, "NE");
        assert_eq!(cr0_real(&f, CR0_PE), CR0_PE | 1 << 5);
        assert_eq!(cr4_owned(&f) & CR4_VMXE, CR4_VMXE);
        assert_eq!(cr4_real(&f, 0) & CR4_VMXE, CR4_VMXE);
    }
}
