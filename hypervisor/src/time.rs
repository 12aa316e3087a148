//! Time since boot, from the TSC.
//!
//! The TSC rate is measured once at boot against the PIT (channel 2, whose
//! gate and output the CPU can see through port 0x61). CPUID's stated rate is
//! the fallback when there is no PIT. The SMP/scheduler work refines this
//! against the ACPI PM timer or the HPET.

use core::sync::atomic::{AtomicU64, Ordering};

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// How the TSC rate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    Pit,
    Cpuid,
    Guess,
}

/// Converts TSC ticks to nanoseconds at `khz` kHz without overflow.
pub fn ticks_to_ns(ticks: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    (ticks as u128 * 1_000_000 / khz as u128).min(u64::MAX as u128) as u64
}

/// TSC kHz from a measurement of `ticks` over `pit_ticks` of the 1.193182 MHz
/// PIT.
pub fn khz_from_pit(ticks: u64, pit_ticks: u64) -> u64 {
    const PIT_HZ: u128 = 1_193_182;
    if pit_ticks == 0 {
        return 0;
    }
    (ticks as u128 * PIT_HZ / pit_ticks as u128 / 1000) as u64
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::arch::x86_64::cpu::{self, inb, outb, rdtsc};

    /// Records the boot TSC (the zero of every log time stamp).
    pub fn mark_boot() {
        BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
    }

    /// Measures the TSC rate over 2 ms of PIT channel 2 (the read loop
    /// resolves about a microsecond, so the error is below 0.1%).
    fn calibrate_with_pit() -> Option<u64> {
        const PIT_TICKS: u16 = 2_386; // 2 ms
        let gate = inb(0x61);
        // Gate high, speaker off.
        outb(0x61, (gate & !0x02) | 0x01);
        // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count).
        outb(0x43, 0b1011_0000);
        outb(0x42, PIT_TICKS as u8);
        outb(0x42, (PIT_TICKS >> 8) as u8);
        let start = rdtsc();
        let mut loops: u64 = 0;
        // OUT2 (bit 5) rises at terminal count. A machine without a PIT never
        // raises it: give up after far longer than 10 ms could take.
        while inb(0x61) & 0x20 == 0 {
            loops += 1;
            if loops > 50_000_000 {
                outb(0x61, gate);
                return None;
            }
        }
        let end = rdtsc();
        outb(0x61, gate);
        // A counter that finished at once did not count.
        if loops < 10 {
            return None;
        }
        Some(khz_from_pit(end - start, PIT_TICKS as u64))
    }

    pub fn calibrate() -> (u64, Calibration) {
        let (khz, how) = match calibrate_with_pit() {
            Some(k) if k > 1000 => (k, Calibration::Pit),
            _ => match cpu::features().tsc_khz_cpuid {
                Some(k) => (k, Calibration::Cpuid),
                None => (2_000_000, Calibration::Guess),
            },
        };
        TSC_KHZ.store(khz, Ordering::Relaxed);
        (khz, how)
    }

    /// Nanoseconds since boot (0 before calibration).
    pub fn now_ns() -> u64 {
        let boot = BOOT_TSC.load(Ordering::Relaxed);
        ticks_to_ns(rdtsc().saturating_sub(boot), TSC_KHZ.load(Ordering::Relaxed))
    }

    /// Busy-waits for `us` microseconds.
    pub fn delay_us(us: u64) {
        let khz = TSC_KHZ.load(Ordering::Relaxed).max(1_000_000);
        let end = rdtsc().saturating_add(us.saturating_mul(khz) / 1000);
        while rdtsc() < end {
            core::hint::spin_loop();
        }
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(ticks_to_ns(3_000_000, 3_000_000), 1_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX, "saturates instead of wrapping");
        assert_eq!(ticks_to_ns(5, 0), 0);
        // 10 ms of PIT at 2 GHz = 20,000,000 ticks.
        let k = khz_from_pit(20_000_000, 11_932);
        assert!((1_999_000..=2_001_000).contains(&k), "{k}");
        assert_eq!(khz_from_pit(1, 0), 0);
    }
}
