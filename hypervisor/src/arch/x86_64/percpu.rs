//! Per-CPU data, reached through the GS base.
//!
//! The GS base of every CPU points at its `PerCpu`, whose first field points
//! back at itself, so `gs:[0]` gives the structure and `gs:[8]` the CPU
//! number in one instruction. Before the boot CPU's GS base is set (the
//! very first log lines) this module answers "CPU 0, early". Every CPU's
//! structure is also listed by index, for code that works on other CPUs
//! (IPIs, kicks).

use super::cpu::{MSR_GS_BASE, wrmsr};
use crate::util::cpumask::{CpuMask, MAX_CPUS};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    pub index: u32,
    pub apic_id: u32,
    /// How deep this CPU is in trap handling (a fault inside a fault
    /// handler must not try the full report again).
    pub trap_depth: AtomicU32,
    _pad: u32,
    /// Physical address of the VMCS loaded on this CPU (VT-x), 0 if none.
    pub current_vmcs: AtomicU64,
    /// SVM: host save area and host VMCB; VT-x: the VMXON region.
    pub hvm_area: AtomicU64,
    pub host_vmcb: AtomicU64,
    /// This CPU's TSS (VT-x host state) and its stacks, for stack walks.
    pub tss_base: AtomicU64,
    pub stack: (AtomicU64, AtomicU64),
    pub ist_stacks: (AtomicU64, AtomicU64),
}

// SAFETY: each PerCpu is only written by its own CPU or before that CPU
// starts; every mutable field is atomic.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    pub const fn new(index: u32, apic_id: u32) -> PerCpu {
        PerCpu {
            self_ptr: core::ptr::null(),
            index,
            apic_id,
            trap_depth: AtomicU32::new(0),
            _pad: 0,
            current_vmcs: AtomicU64::new(0),
            hvm_area: AtomicU64::new(0),
            host_vmcb: AtomicU64::new(0),
            tss_base: AtomicU64::new(0),
            stack: (AtomicU64::new(0), AtomicU64::new(0)),
            ist_stacks: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }
}

static mut BSP: PerCpu = PerCpu::new(0, 0);
static READY: AtomicBool = AtomicBool::new(false);
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Points the boot CPU's GS base at its per-CPU data.
pub fn init_bsp(apic_id: u32) {
    // SAFETY: runs once on the boot CPU before any other CPU exists, so
    // nothing else can reach BSP while it is written.
    unsafe {
        let p = &raw mut BSP;
        (*p).self_ptr = p;
        (*p).apic_id = apic_id;
        wrmsr(MSR_GS_BASE, p as u64);
        CPUS[0].store(p, Ordering::Release);
    }
    READY.store(true, Ordering::Release);
}

/// Per-CPU data for another CPU, before it starts (it calls `enter`).
pub fn create(index: u32, apic_id: u32) -> &'static PerCpu {
    let p = alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu::new(index, apic_id)));
    p.self_ptr = p;
    CPUS[index as usize].store(p, Ordering::Release);
    p
}

/// Makes `p` this CPU's per-CPU data (the GS base of a starting CPU).
pub fn enter(p: &'static PerCpu) {
    // SAFETY: points GS at a 'static PerCpu whose self pointer is set.
    unsafe { wrmsr(MSR_GS_BASE, p as *const PerCpu as u64) };
}

/// The per-CPU data of CPU `index`, if that CPU exists.
pub fn get(index: usize) -> Option<&'static PerCpu> {
    let p = CPUS.get(index)?.load(Ordering::Acquire);
    // SAFETY: pointers in CPUS are to 'static PerCpu structures.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// This CPU's data, if set up.
pub fn this_cpu() -> Option<&'static PerCpu> {
    if !READY.load(Ordering::Acquire) {
        return None;
    }
    let p: u64;
    // SAFETY: once READY, every CPU that runs hypervisor code has its GS
    // base at its PerCpu, whose first field is its own address.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    // SAFETY: as above: a 'static PerCpu.
    Some(unsafe { &*(p as *const PerCpu) })
}

/// This CPU's number (0 before per-CPU data exists).
pub fn cpu_index() -> u32 {
    if !READY.load(Ordering::Acquire) {
        return 0;
    }
    let i: u32;
    // SAFETY: as in this_cpu: gs:[8] is this CPU's index.
    unsafe {
        core::arch::asm!("mov {:e}, gs:[{off}]", out(reg) i, off = const core::mem::offset_of!(PerCpu, index),
            options(nostack, readonly, preserves_flags))
    };
    i
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

/// CPUs that have started, and which.
static ONLINE: AtomicU32 = AtomicU32::new(1);
static ONLINE_MASK: [AtomicU64; MAX_CPUS / 64] = [const { AtomicU64::new(0) }; MAX_CPUS / 64];

pub fn online_count() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

pub fn online_mask() -> CpuMask {
    let mut m = CpuMask::empty();
    for (w, word) in ONLINE_MASK.iter().enumerate() {
        let bits = word.load(Ordering::Acquire);
        for b in 0..64 {
            if bits & (1 << b) != 0 {
                m.set(w * 64 + b);
            }
        }
    }
    m
}

/// A CPU came up (the boot CPU counts from the start).
pub fn mark_online(cpu: u32) {
    if cpu != 0 {
        ONLINE.fetch_add(1, Ordering::AcqRel);
    }
    ONLINE_MASK[cpu as usize / 64].fetch_or(1 << (cpu % 64), Ordering::AcqRel);
}
