//! The VMX hardware on each CPU: detection, VMXON, the shared MSR and I/O
//! bitmaps, the VMX instructions, and VT-x as an `HvmBackend`.

use super::caps::*;
use crate::arch::x86_64::cpu::{self, rdmsr, wrmsr};
use crate::arch::x86_64::percpu;
use crate::mm::phys::{alloc_frames, alloc_zeroed_frame, phys_to_virt};
use core::arch::asm;
use core::sync::atomic::Ordering;

pub(super) const MSR_PAT: u32 = 0x277;
pub(super) const MSR_SYSENTER_CS: u32 = 0x174;
pub(super) const MSR_SYSENTER_ESP: u32 = 0x175;
pub(super) const MSR_SYSENTER_EIP: u32 = 0x176;
pub(super) const MSR_FS_BASE: u32 = 0xc000_0100;
pub(super) const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub(super) const MSR_STAR: u32 = 0xc000_0081;
pub(super) const MSR_LSTAR: u32 = 0xc000_0082;
pub(super) const MSR_CSTAR: u32 = 0xc000_0083;
pub(super) const MSR_SFMASK: u32 = 0xc000_0084;
pub(super) const CR0_NW: u64 = 1 << 29;
pub(super) const CR0_CD: u64 = 1 << 30;
pub(super) const EFER_LME: u64 = 1 << 8;
pub(super) const EFER_LMA: u64 = 1 << 10;

pub fn detect() -> Result<VmxFeatures, VmxError> {
    let f = cpu::features();
    evaluate(f.vendor == cpu::Vendor::Intel, f.vmx, rdmsr)
}

static FEATURES: spin::Once<VmxFeatures> = spin::Once::new();
pub(super) static MSR_BITMAP_PA: spin::Once<u64> = spin::Once::new();
/// I/O bitmaps A (ports 0-0x7fff) and B (0x8000-0xffff), adjacent: every
/// port exits. A privileged domain's direct port ranges clear bits in a
/// copy of its own.
pub(super) static IO_BITMAPS_PA: spin::Once<u64> = spin::Once::new();

pub fn features() -> &'static VmxFeatures {
    FEATURES.get().expect("VMX not initialised")
}

/// Whether the guest-physical pages may be large (EPT's own limits).
pub fn ept_largest() -> crate::arch::x86_64::page_table::PageSize {
    let f = features();
    if f.ept_1g && cpu::features().page1g {
        crate::arch::x86_64::page_table::PageSize::Size1G
    } else if f.ept_2m {
        crate::arch::x86_64::page_table::PageSize::Size2M
    } else {
        crate::arch::x86_64::page_table::PageSize::Size4K
    }
}

pub(super) fn vmread(field: u64) -> u64 {
    let v: u64;
    // SAFETY: reads a field of the current VMCS; a bad field sets flags
    // that are ignored (the value is then 0), it does not fault.
    unsafe { asm!("vmread {v}, {f}", v = lateout(reg) v, f = in(reg) field, options(nostack)) };
    v
}

pub(super) fn vmwrite(field: u64, value: u64) {
    // SAFETY: writes a field of the current VMCS, which this vCPU owns.
    unsafe { asm!("vmwrite {f}, {v}", f = in(reg) field, v = in(reg) value, options(nostack)) };
}

/// VMX instructions report failure in CF (no current VMCS) or ZF (error
/// number in the VMCS).
pub(super) fn vmx_ok(rflags: u64) -> bool {
    rflags & 0x41 == 0
}

pub(super) fn vmptrld(pa: u64) -> bool {
    let f: u64;
    // SAFETY: `pa` is the physical address of a VMCS region we initialised.
    unsafe { asm!("vmptrld [{p}]", "pushfq", "pop {f}", p = in(reg) &pa, f = lateout(reg) f) };
    vmx_ok(f)
}

pub(super) fn vmclear(pa: u64) -> bool {
    let f: u64;
    // SAFETY: as for vmptrld.
    unsafe { asm!("vmclear [{p}]", "pushfq", "pop {f}", p = in(reg) &pa, f = lateout(reg) f) };
    vmx_ok(f)
}

/// Invalidates EPT-derived translations for `eptp` (single context when
/// the CPU offers it, else all).
pub(super) fn invept(eptp: u64) {
    let desc = [eptp, 0u64];
    let kind: u64 = if features().invept_single { 1 } else { 2 };
    // SAFETY: a valid INVEPT descriptor and type.
    unsafe { asm!("invept {k}, [{d}]", k = in(reg) kind, d = in(reg) &desc, options(nostack)) };
}

pub(super) fn invvpid(vpid: u16) {
    let desc = [vpid as u64, 0u64];
    let kind: u64 = if features().invvpid_single { 1 } else { 2 };
    // SAFETY: a valid INVVPID descriptor and type.
    unsafe { asm!("invvpid {k}, [{d}]", k = in(reg) kind, d = in(reg) &desc, options(nostack)) };
}

/// Invalidates every VPID's cached translations on this CPU (a new VPID
/// generation): INVVPID all-context, or INVEPT all-context (which takes
/// every combined mapping with it) where the CPU lacks the former.
pub(super) fn invvpid_all() {
    let desc = [0u64, 0u64];
    let f = features();
    // SAFETY: valid descriptors and types (all-context: the address part
    // is ignored).
    unsafe {
        if f.invvpid_all {
            asm!("invvpid {k}, [{d}]", k = in(reg) 2u64, d = in(reg) &desc, options(nostack));
        } else {
            asm!("invept {k}, [{d}]", k = in(reg) 2u64, d = in(reg) &desc, options(nostack));
        }
    }
}

pub(super) fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading control registers has no side effects.
    unsafe {
        match n {
            0 => asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)),
            2 => asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)),
            3 => asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)),
            _ => asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// Turns VMX on for this CPU.
/// Turns VMX on for the boot CPU and sets up what all CPUs share.
pub fn init_cpu() -> Result<VmxFeatures, VmxError> {
    let feat = detect()?;
    FEATURES.call_once(|| feat);
    // VPIDs 1-65535 for guests (0 is the host's); none without VPID.
    crate::arch::x86_64::hvm::isolation::hw::set_tag_count(if feat.vpid { 1 << 16 } else { 0 });
    init_this_cpu()?;
    // MSR bitmap: intercept everything but the MSRs the guest may use
    // directly (FS/GS bases and SYSENTER are VMCS fields; the SYSCALL MSRs
    // and KERNEL_GS_BASE are switched per vCPU).
    let bitmap = alloc_zeroed_frame().ok_or(VmxError::NoMemory)?;
    let b = phys_to_virt(bitmap).ok_or(VmxError::NoMemory)? as *mut u8;
    // SAFETY: a fresh page: set every intercept bit, then clear a few.
    unsafe { core::ptr::write_bytes(b, 0xff, 4096) };
    for m in [
        MSR_FS_BASE,
        MSR_FS_BASE + 1,
        MSR_KERNEL_GS_BASE,
        MSR_STAR,
        MSR_LSTAR,
        MSR_CSTAR,
        MSR_SFMASK,
        MSR_SYSENTER_CS,
        MSR_SYSENTER_ESP,
        MSR_SYSENTER_EIP,
    ] {
        let (base, idx) = if m >= 0xc000_0000 { (1024, m - 0xc000_0000) } else { (0, m) };
        for half in [0, 2048] {
            let byte = base + half + (idx / 8) as usize;
            // SAFETY: byte < 4096 within the bitmap page.
            unsafe { *b.add(byte) &= !(1 << (idx % 8)) };
        }
    }
    MSR_BITMAP_PA.call_once(|| bitmap);
    let io = alloc_frames(1).ok_or(VmxError::NoMemory)?; // 2 frames
    let io_v = phys_to_virt(io).ok_or(VmxError::NoMemory)?;
    // SAFETY: two fresh frames: intercept every port.
    unsafe { core::ptr::write_bytes(io_v as *mut u8, 0xff, 2 * 4096) };
    IO_BITMAPS_PA.call_once(|| io);
    Ok(feat)
}

/// VMX operation on the calling CPU: IA32_FEATURE_CONTROL, the CR0/CR4
/// bits VMX requires (NE, VMXE) and a VMXON region of its own.
pub fn init_this_cpu() -> Result<(), VmxError> {
    let feat = *FEATURES.get().ok_or(VmxError::NoVmx)?;
    let fc = rdmsr(MSR_FEATURE_CONTROL);
    if fc & FC_LOCK == 0 {
        // SAFETY: firmware left it unlocked: allow VMX outside SMX and lock.
        unsafe { wrmsr(MSR_FEATURE_CONTROL, fc | FC_VMX_OUTSIDE_SMX | FC_LOCK) };
    } else if fc & FC_VMX_OUTSIDE_SMX == 0 {
        return Err(VmxError::DisabledByFirmware);
    }
    // SAFETY: setting bits the fixed-bit MSRs demand; none changes how the
    // hypervisor's own code runs.
    unsafe {
        let cr0 = (read_cr(0) | feat.cr0_fixed0) & feat.cr0_fixed1;
        asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        let cr4 = (read_cr(4) | feat.cr4_fixed0 | CR4_VMXE) & feat.cr4_fixed1;
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
    let region = alloc_zeroed_frame().ok_or(VmxError::NoMemory)?;
    let v = phys_to_virt(region).ok_or(VmxError::NoMemory)?;
    // SAFETY: a fresh page: write the revision identifier VMXON wants.
    unsafe { core::ptr::write_volatile(v as *mut u32, feat.revision) };
    let f: u64;
    // SAFETY: VMXON with a valid, page-aligned region; CR0/CR4 are set.
    unsafe { asm!("vmxon [{p}]", "pushfq", "pop {f}", p = in(reg) &region, f = lateout(reg) f) };
    if !vmx_ok(f) {
        return Err(VmxError::VmxonFailed);
    }
    if let Some(p) = percpu::this_cpu() {
        p.hvm_area.store(region, Ordering::Relaxed);
    }
    Ok(())
}

/// The scheduler's slice, for the preemption-timer backstop (set at boot).
pub(super) static SLICE_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(10_000_000);
