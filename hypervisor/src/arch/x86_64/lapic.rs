//! The local APIC as the hypervisor's own interrupt controller, timer and
//! way to reach other CPUs.
//!
//! x2APIC (MSRs) when the CPU has it, xAPIC (uncached MMIO) otherwise. The
//! legacy 8259 PICs are masked so that only the APIC delivers interrupts.
//! The timer is one-shot, aimed at the next deadline a CPU has: in
//! TSC-deadline mode when the CPU offers it (no conversion, no drift),
//! else counting down at its own rate, measured once against the TSC.

use super::cpu::{self, outb, rdmsr, wrmsr};
use crate::mm::phys::map_mmio;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const VECTOR_TIMER: u8 = 0xf0;
/// "Look at your run queue" (a woken vCPU, a kick to leave a guest).
pub const VECTOR_RESCHED: u8 = 0xf1;
/// "Run the work posted for you" (remote flushes and similar).
pub const VECTOR_CALL: u8 = 0xf2;
pub const VECTOR_SPURIOUS: u8 = 0xff;

const MSR_APIC_BASE: u32 = 0x1b;
const MSR_TSC_DEADLINE: u32 = 0x6e0;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_NMI: u32 = 4 << 8;
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;
const ICR_ALL_BUT_SELF: u32 = 3 << 18;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MMIO: AtomicU64 = AtomicU64::new(0);
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        rdmsr(0x800 + reg / 16) as u32
    } else {
        // SAFETY: MMIO was mapped uncached to the APIC's registers in init.
        unsafe { core::ptr::read_volatile((MMIO.load(Ordering::Relaxed) + reg as u64) as *const u32) }
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: architectural x2APIC register.
        unsafe { wrmsr(0x800 + reg / 16, v as u64) };
    } else {
        // SAFETY: as in read.
        unsafe { core::ptr::write_volatile((MMIO.load(Ordering::Relaxed) + reg as u64) as *mut u32, v) };
    }
}

/// Masks both 8259 PICs (after remapping them away from the exception
/// vectors, so a stray interrupt cannot look like a CPU exception).
fn disable_pic() {
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 4);
    outb(0xa1, 2);
    outb(0x21, 1);
    outb(0xa1, 1);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/// Enables the boot CPU's APIC; `phys` is the MADT's local APIC address.
pub fn init(phys: u64) -> Result<&'static str, &'static str> {
    disable_pic();
    let x2 = cpu::features().x2apic;
    X2APIC.store(x2, Ordering::Relaxed);
    if !x2 {
        let v = map_mmio(phys, 4096).map_err(|_| "cannot map the local APIC")?;
        MMIO.store(v, Ordering::Relaxed);
    }
    init_this_cpu();
    Ok(if x2 { "x2APIC" } else { "xAPIC" })
}

/// Enables this CPU's APIC in the mode the boot CPU chose, with every
/// local interrupt masked.
pub fn init_this_cpu() {
    let base = rdmsr(MSR_APIC_BASE);
    let mut new = (base & !0xfff) | APIC_BASE_ENABLE;
    if X2APIC.load(Ordering::Relaxed) {
        new |= APIC_BASE_X2APIC;
    }
    // SAFETY: enabling the APIC (and x2APIC mode when the CPU has it).
    unsafe { wrmsr(MSR_APIC_BASE, new) };
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_SVR, 0x100 | VECTOR_SPURIOUS as u32);
    // A CPU started after the boot CPU measured the timer uses the same
    // mode and rate (every APIC timer counts the same bus clock).
    if DEADLINE_MODE.load(Ordering::Relaxed) {
        write(REG_LVT_TIMER, LVT_TSC_DEADLINE | VECTOR_TIMER as u32);
    } else if TIMER_HZ.load(Ordering::Relaxed) != 0 {
        write(REG_TIMER_DIVIDE, 0b1011); // divide by 1, as calibrated
        write(REG_LVT_TIMER, VECTOR_TIMER as u32); // one-shot
    }
}

pub fn id() -> u32 {
    let v = read(REG_ID);
    if X2APIC.load(Ordering::Relaxed) { v } else { v >> 24 }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Measures the timer's input rate against the TSC (for the count-down
/// mode) and chooses the mode. Returns (rate in Hz, TSC-deadline mode).
pub fn calibrate_timer() -> (u64, bool) {
    write(REG_TIMER_DIVIDE, 0b1011); // divide by 1
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, u32::MAX);
    let tsc_khz = crate::time::tsc_khz().max(1);
    let start = cpu::rdtsc();
    crate::time::delay_us(1_000);
    let elapsed_tsc = cpu::rdtsc() - start;
    let counted = u32::MAX - read(REG_TIMER_CURRENT);
    write(REG_TIMER_INIT, 0);
    let hz = (counted as u128 * tsc_khz as u128 * 1000 / elapsed_tsc.max(1) as u128) as u64;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    let deadline = cpu::features().tsc_deadline;
    DEADLINE_MODE.store(deadline, Ordering::Relaxed);
    write(REG_LVT_TIMER, if deadline { LVT_TSC_DEADLINE } else { 0 } | VECTOR_TIMER as u32);
    (hz, deadline)
}

/// Interrupts this CPU on VECTOR_TIMER at `tsc` (TSC value), or as soon
/// as possible if that has passed; `None` stops the timer.
pub fn arm(tsc: Option<u64>) {
    if DEADLINE_MODE.load(Ordering::Relaxed) {
        // SAFETY: IA32_TSC_DEADLINE exists in TSC-deadline mode; 0 disarms.
        unsafe { wrmsr(MSR_TSC_DEADLINE, tsc.map_or(0, |t| t.max(1))) };
        return;
    }
    let Some(t) = tsc else {
        write(REG_TIMER_INIT, 0);
        return;
    };
    let now = cpu::rdtsc();
    let tsc_khz = crate::time::tsc_khz().max(1);
    let hz = TIMER_HZ.load(Ordering::Relaxed).max(1);
    let ticks = (t.saturating_sub(now) as u128 * hz as u128 / (tsc_khz as u128 * 1000)) as u64;
    write(REG_TIMER_INIT, ticks.clamp(1, u32::MAX as u64) as u32);
}

fn send(apic_id: u32, low: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: the x2APIC ICR: destination in the high half.
        unsafe { wrmsr(0x830, ((apic_id as u64) << 32) | low as u64) };
    } else {
        write(REG_ICR_HIGH, apic_id << 24);
        write(REG_ICR_LOW, low);
        for _ in 0..1_000_000 {
            if read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// A fixed interrupt on `vector` to the CPU with APIC id `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send(apic_id, ICR_LEVEL_ASSERT | vector as u32);
}

/// An NMI to every other CPU (stopping them on panic and power-off).
pub fn send_nmi_all_but_self() {
    send(0, ICR_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_NMI);
}

pub fn send_init(apic_id: u32) {
    send(apic_id, ICR_LEVEL_ASSERT | ICR_INIT);
}

/// STARTUP: the CPU begins in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, ICR_LEVEL_ASSERT | ICR_STARTUP | page as u32);
}
