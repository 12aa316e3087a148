//! The local APIC as the hypervisor's own interrupt controller and tick.
//!
//! x2APIC (MSRs) when the CPU has it, xAPIC (uncached MMIO) otherwise. The
//! legacy 8259 PICs are masked so that only the APIC delivers interrupts.
//! The timer runs periodically at `TICK_HZ` and its rate is measured against
//! the TSC.

use super::cpu::{self, outb, rdmsr, wrmsr};
use crate::mm::phys::map_mmio;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const VECTOR_TIMER: u8 = 0xf0;
pub const VECTOR_SPURIOUS: u8 = 0xff;
pub const TICK_HZ: u64 = 100;

const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MMIO: AtomicU64 = AtomicU64::new(0);
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

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

/// Enables this CPU's APIC; `phys` is the MADT's local APIC address.
pub fn init(phys: u64) -> Result<&'static str, &'static str> {
    disable_pic();
    let base = rdmsr(MSR_APIC_BASE);
    let x2 = cpu::features().x2apic;
    let mut new = (base & !0xfff) | APIC_BASE_ENABLE;
    if x2 {
        new |= APIC_BASE_X2APIC;
    }
    // SAFETY: enabling the APIC (and x2APIC mode when the CPU has it).
    unsafe { wrmsr(MSR_APIC_BASE, new) };
    X2APIC.store(x2, Ordering::Relaxed);
    if !x2 {
        let v = map_mmio(phys, 4096).map_err(|_| "cannot map the local APIC")?;
        MMIO.store(v, Ordering::Relaxed);
    }
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_SVR, 0x100 | VECTOR_SPURIOUS as u32);
    Ok(if x2 { "x2APIC" } else { "xAPIC" })
}

pub fn id() -> u32 {
    let v = read(REG_ID);
    if X2APIC.load(Ordering::Relaxed) { v } else { v >> 24 }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Measures the timer's input rate against the TSC, then starts it
/// periodically at TICK_HZ on VECTOR_TIMER. Returns the timer rate in Hz.
pub fn start_tick() -> u64 {
    write(REG_TIMER_DIVIDE, 0b1011); // divide by 1
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, u32::MAX);
    let tsc_khz = crate::time::tsc_khz().max(1);
    let start = cpu::rdtsc();
    crate::time::delay_us(1_000);
    let elapsed_tsc = cpu::rdtsc() - start;
    let counted = u32::MAX - read(REG_TIMER_CURRENT);
    let hz = (counted as u128 * tsc_khz as u128 * 1000 / elapsed_tsc.max(1) as u128) as u64;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    let period = (hz / TICK_HZ).clamp(1000, u32::MAX as u64) as u32;
    write(REG_LVT_TIMER, LVT_PERIODIC | VECTOR_TIMER as u32);
    write(REG_TIMER_INIT, period);
    hz
}
