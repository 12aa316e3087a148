//! Per-CPU data, reached through the GS base.
//!
//! The GS base of every CPU points at its `PerCpu`, whose first field points
//! back at itself, so `gs:[0]` gives the structure and `gs:[8]` the CPU
//! number in one instruction. Before the GS base is set (the very first log
//! lines) it is zero, which this module treats as "CPU 0, early".

use super::cpu::{MSR_GS_BASE, rdmsr, wrmsr};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    pub index: u32,
    pub apic_id: u32,
    /// How deep this CPU is in trap handling (a fault inside a fault
    /// handler must not try the full report again).
    pub trap_depth: AtomicU32,
    /// Physical address of the VMCS loaded on this CPU (VT-x), 0 if none.
    pub current_vmcs: AtomicU64,
}

// SAFETY: each PerCpu is only written by its own CPU (trap_depth is atomic).
unsafe impl Sync for PerCpu {}

static mut BSP: PerCpu = PerCpu {
    self_ptr: core::ptr::null(),
    index: 0,
    apic_id: 0,
    trap_depth: AtomicU32::new(0),
    current_vmcs: AtomicU64::new(0),
};

/// Points the boot CPU's GS base at its per-CPU data.
pub fn init_bsp(apic_id: u32) {
    // SAFETY: runs once on the boot CPU before any other CPU exists, so
    // nothing else can reach BSP while it is written.
    unsafe {
        let p = &raw mut BSP;
        (*p).self_ptr = p;
        (*p).apic_id = apic_id;
        wrmsr(MSR_GS_BASE, p as u64);
    }
}

/// This CPU's data, if set up.
pub fn this_cpu() -> Option<&'static PerCpu> {
    let base = rdmsr(MSR_GS_BASE);
    if base == 0 {
        return None;
    }
    // SAFETY: a non-zero GS base was set by init_* to a 'static PerCpu.
    Some(unsafe { &*(base as *const PerCpu) })
}

/// This CPU's number (0 before per-CPU data exists).
pub fn cpu_index() -> u32 {
    this_cpu().map_or(0, |p| p.index)
}

pub fn trap_depth() -> &'static AtomicU32 {
    static EARLY: AtomicU32 = AtomicU32::new(0);
    this_cpu().map_or(&EARLY, |p| &p.trap_depth)
}

pub fn enter_trap() -> u32 {
    trap_depth().fetch_add(1, Ordering::SeqCst) + 1
}

pub fn leave_trap() {
    trap_depth().fetch_sub(1, Ordering::SeqCst);
}

/// The VMCS this CPU has loaded (0 if none); one GS-relative load, as
/// VT-x code asks before every VMCS access.
pub fn current_vmcs() -> u64 {
    let v: u64;
    // SAFETY: the GS base points at this CPU's PerCpu once VT-x is in use
    // (per-CPU data is set up first); the field is a naturally aligned u64.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) v, off = const core::mem::offset_of!(PerCpu, current_vmcs),
            options(nostack, readonly, preserves_flags))
    };
    v
}

pub fn set_current_vmcs(pa: u64) {
    if let Some(p) = this_cpu() {
        p.current_vmcs.store(pa, Ordering::Relaxed);
    }
}
