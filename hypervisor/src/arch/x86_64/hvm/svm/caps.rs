//! What the CPU's SVM offers, and turning it on: the feature leaf, the
//! shared I/O and MSR permission maps, each CPU's host save area.

use crate::arch::x86_64::cpu::{self, cpuid, rdmsr, wrmsr};
use crate::arch::x86_64::hvm::isolation::hw as iso;
use crate::mm::phys::{alloc_frames, alloc_zeroed_frame, phys_to_virt};
use core::fmt;
use core::sync::atomic::Ordering;

const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const VM_CR_SVMDIS: u64 = 1 << 4;
const VM_CR_LOCK: u64 = 1 << 3;
pub(super) const EFER_SVME: u64 = 1 << 12;

/// What this CPU's SVM offers.
#[derive(Debug, Clone, Copy)]
pub struct SvmFeatures {
    pub revision: u32,
    pub asids: u32,
    pub nested_paging: bool,
    pub nrip_save: bool,
    pub flush_by_asid: bool,
    pub decode_assists: bool,
    pub vmcb_clean: bool,
    pub pause_filter: bool,
    pub vgif: bool,
    pub avic: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum SvmError {
    NotAmd,
    NoSvm,
    DisabledByFirmware,
    NoNestedPaging,
    NoMemory,
}

impl fmt::Display for SvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SvmError::NotAmd => "the CPU is not an AMD (or Hygon) CPU",
            SvmError::NoSvm => "the CPU has no AMD-V (SVM)",
            SvmError::DisabledByFirmware => {
                "AMD-V is disabled and locked by firmware (VM_CR.SVMDIS): enable SVM in the BIOS setup"
            }
            SvmError::NoNestedPaging => "the CPU's AMD-V has no nested paging (NPT), which the hypervisor requires",
            SvmError::NoMemory => "no memory for SVM state",
        })
    }
}

pub fn detect() -> Result<SvmFeatures, SvmError> {
    let f = cpu::features();
    if !matches!(f.vendor, cpu::Vendor::Amd | cpu::Vendor::Hygon) {
        return Err(SvmError::NotAmd);
    }
    if !f.svm || f.max_ext_leaf < 0x8000_000a {
        return Err(SvmError::NoSvm);
    }
    if rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    let r = cpuid(0x8000_000a, 0);
    let feat = SvmFeatures {
        revision: r.eax & 0xff,
        asids: r.ebx,
        nested_paging: r.edx & (1 << 0) != 0,
        nrip_save: r.edx & (1 << 3) != 0,
        vmcb_clean: r.edx & (1 << 5) != 0,
        flush_by_asid: r.edx & (1 << 6) != 0,
        decode_assists: r.edx & (1 << 7) != 0,
        pause_filter: r.edx & (1 << 10) != 0,
        avic: r.edx & (1 << 13) != 0,
        vgif: r.edx & (1 << 16) != 0,
    };
    if !feat.nested_paging {
        return Err(SvmError::NoNestedPaging);
    }
    let _ = VM_CR_LOCK;
    Ok(feat)
}

pub(super) static FEATURES: spin::Once<SvmFeatures> = spin::Once::new();
/// I/O and MSR permission maps shared by every vCPU.
pub(super) static IOPM: spin::Once<u64> = spin::Once::new();
pub(super) static MSRPM: spin::Once<u64> = spin::Once::new();

/// One line for the boot log.
pub fn describe(f: &SvmFeatures) -> alloc::string::String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    alloc::format!(
        "AMD-V: SVM revision {}, {} ASIDs, nested paging; NRIP save {}, decode assists {}, flush by ASID {}, VMCB clean bits {}",
        f.revision,
        f.asids,
        yes(f.nrip_save),
        yes(f.decode_assists),
        yes(f.flush_by_asid),
        yes(f.vmcb_clean)
    )
}

pub fn features() -> &'static SvmFeatures {
    FEATURES.get().expect("SVM not initialised")
}

/// MSRs the guest reads and writes directly: VMLOAD/VMSAVE switch them.
const PASSTHROUGH_MSRS: &[u32] = &[
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
];

fn msrpm_clear(base: *mut u8, msr: u32) {
    let range = match msr {
        0..=0x1fff => 0,
        0xc000_0000..=0xc000_1fff => 0x800,
        0xc001_0000..=0xc001_1fff => 0x1000,
        _ => return,
    };
    let bit = 2 * (msr & 0x1fff) as usize;
    let byte = range + bit / 8;
    // SAFETY: byte < 0x1800 inside the 8 KiB map.
    unsafe { *base.add(byte) &= !(0b11 << (bit % 8)) };
}

/// Turns SVM on for the boot CPU and sets up what all CPUs share.
pub fn init_cpu() -> Result<SvmFeatures, SvmError> {
    let feat = detect()?;
    FEATURES.call_once(|| feat);
    iso::set_tag_count(feat.asids);
    let iopm = alloc_frames(2).ok_or(SvmError::NoMemory)?; // 16 KiB >= 12 KiB
    let iopm_v = phys_to_virt(iopm).ok_or(SvmError::NoMemory)?;
    // SAFETY: 4 freshly allocated frames: intercept every port.
    unsafe { core::ptr::write_bytes(iopm_v as *mut u8, 0xff, 4 * 4096) };
    IOPM.call_once(|| iopm);
    let msrpm = alloc_frames(1).ok_or(SvmError::NoMemory)?;
    let msrpm_v = phys_to_virt(msrpm).ok_or(SvmError::NoMemory)? as *mut u8;
    // SAFETY: 2 freshly allocated frames: intercept every MSR but a few.
    unsafe { core::ptr::write_bytes(msrpm_v, 0xff, 2 * 4096) };
    for &m in PASSTHROUGH_MSRS {
        msrpm_clear(msrpm_v, m);
    }
    MSRPM.call_once(|| msrpm);
    init_this_cpu()?;
    Ok(feat)
}

/// SVM on the calling CPU: EFER.SVME, its host save area and host VMCB.
pub fn init_this_cpu() -> Result<(), SvmError> {
    if FEATURES.get().is_none() || rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    // SAFETY: SVM is present and not disabled (checked by detect).
    unsafe { wrmsr(cpu::MSR_EFER, rdmsr(cpu::MSR_EFER) | EFER_SVME) };
    let hsave = alloc_zeroed_frame().ok_or(SvmError::NoMemory)?;
    // SAFETY: a page for this CPU's host save area.
    unsafe { wrmsr(MSR_VM_HSAVE_PA, hsave) };
    let host = alloc_zeroed_frame().ok_or(SvmError::NoMemory)?;
    if let Some(p) = crate::arch::x86_64::percpu::this_cpu() {
        p.hvm_area.store(hsave, Ordering::Relaxed);
        p.host_vmcb.store(host, Ordering::Relaxed);
    }
    Ok(())
}
