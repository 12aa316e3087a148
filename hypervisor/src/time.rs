//! Time since boot, from the TSC, and the wall clock.
//!
//! The TSC rate is first measured against the PIT (channel 2, whose gate
//! and output the CPU can see through port 0x61), which needs no tables,
//! so that even the first log lines carry times. Once ACPI is read, it is
//! measured again against a better clock: the ACPI PM timer, or the HPET
//! (CPUID's stated rate, then a guess, are the last resorts). The second
//! measurement rebases the clock so that time never jumps backwards. The
//! wall clock comes from the CMOS real-time clock at boot.

use core::sync::atomic::{AtomicU64, Ordering};

/// One point of the TSC-to-time line: now = BASE_NS + (tsc - BASE_TSC) at
/// TSC_KHZ.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
static BASE_NS: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
/// UTC seconds and nanoseconds at system time 0.
static WALLCLOCK_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// How the TSC rate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    PmTimer,
    Hpet,
    Pit,
    Cpuid,
    Guess,
}

/// TSC kHz from `ticks` of the TSC over `ref_ticks` of a reference clock
/// running at `ref_hz`.
pub fn khz_from_reference(ticks: u64, ref_ticks: u64, ref_hz: u64) -> u64 {
    if ref_ticks == 0 {
        return 0;
    }
    (ticks as u128 * ref_hz as u128 / ref_ticks as u128 / 1000) as u64
}

/// Nanoseconds to TSC ticks at `khz` kHz.
pub fn ns_to_ticks(ns: u64, khz: u64) -> u64 {
    (ns as u128 * khz as u128 / 1_000_000).min(u64::MAX as u128) as u64
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
    khz_from_reference(ticks, pit_ticks, 1_193_182)
}

/// The wall clock at system time 0 as (seconds, nanoseconds) since the
/// Unix epoch (0 if unknown).
pub fn boot_wallclock() -> (u64, u32) {
    let ns = WALLCLOCK_AT_BOOT.load(Ordering::Relaxed);
    (ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::arch::x86_64::cpu::{self, inb, outb, rdtsc};

    /// Records the boot TSC (the zero of every log time stamp).
    pub fn mark_boot() {
        BASE_TSC.store(rdtsc(), Ordering::Relaxed);
        BASE_NS.store(0, Ordering::Relaxed);
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
        tsc_to_ns(rdtsc())
    }

    /// The system time at TSC value `tsc`.
    pub fn tsc_to_ns(tsc: u64) -> u64 {
        let base = BASE_TSC.load(Ordering::Relaxed);
        BASE_NS
            .load(Ordering::Relaxed)
            .saturating_add(ticks_to_ns(tsc.saturating_sub(base), TSC_KHZ.load(Ordering::Relaxed)))
    }

    /// The TSC value at system time `ns`.
    pub fn ns_to_tsc(ns: u64) -> u64 {
        let base_ns = BASE_NS.load(Ordering::Relaxed);
        // Saturating: a guest's deadline may be u64::MAX, and a wrapped
        // sum would aim the APIC timer in the past, over and over.
        BASE_TSC
            .load(Ordering::Relaxed)
            .saturating_add(ns_to_ticks(ns.saturating_sub(base_ns), TSC_KHZ.load(Ordering::Relaxed)))
    }

    /// One (TSC, system time) point of the clock, for guests' pvclock.
    pub fn reference() -> (u64, u64) {
        (BASE_TSC.load(Ordering::Relaxed), BASE_NS.load(Ordering::Relaxed))
    }

    /// Measures the TSC over about 10 ms of a counter that `read` returns
    /// (`bits` wide, `hz` fast).
    fn calibrate_against(read: &dyn Fn() -> u64, bits: u32, hz: u64) -> Option<u64> {
        let mask = if bits >= 64 { u64::MAX } else { (1 << bits) - 1 };
        let want = hz / 100;
        let c0 = read() & mask;
        let t0 = rdtsc();
        let mut spins: u64 = 0;
        loop {
            let c = read() & mask;
            let elapsed = c.wrapping_sub(c0) & mask;
            if elapsed >= want {
                let t1 = rdtsc();
                return Some(khz_from_reference(t1 - t0, elapsed, hz));
            }
            spins += 1;
            // A counter that does not move is not a clock.
            if spins > 50_000_000 {
                return None;
            }
        }
    }

    /// Measures the TSC again against the ACPI PM timer or the HPET and
    /// continues the clock from where it is at the new rate.
    pub fn recalibrate(
        pm_timer: Option<&dyn Fn() -> u64>,
        pm_32bit: bool,
        hpet: Option<u64>,
    ) -> Option<(u64, Calibration)> {
        let measured = pm_timer
            .and_then(|r| calibrate_against(r, if pm_32bit { 32 } else { 24 }, 3_579_545))
            .filter(|k| *k > 1000)
            .map(|k| (k, Calibration::PmTimer))
            .or_else(|| {
                let base = hpet?;
                // SAFETY: `base` maps the HPET's registers (uncached).
                let cap = unsafe { core::ptr::read_volatile(base as *const u64) };
                let period_fs = cap >> 32;
                if period_fs == 0 || period_fs > 100_000_000 {
                    return None;
                }
                // SAFETY: as above: general configuration, enable counting.
                unsafe {
                    let cfg = (base + 0x10) as *mut u64;
                    core::ptr::write_volatile(cfg, core::ptr::read_volatile(cfg) | 1);
                }
                // SAFETY: as above: the main counter.
                let read = || unsafe { core::ptr::read_volatile((base + 0xf0) as *const u64) };
                let hz = 1_000_000_000_000_000 / period_fs;
                calibrate_against(&read, 64, hz).filter(|k| *k > 1000).map(|k| (k, Calibration::Hpet))
            })?;
        let tsc = rdtsc();
        let now = tsc_to_ns(tsc);
        BASE_NS.store(now, Ordering::Relaxed);
        BASE_TSC.store(tsc, Ordering::Relaxed);
        TSC_KHZ.store(measured.0, Ordering::Relaxed);
        Some(measured)
    }

    /// Reads the CMOS real-time clock and records the wall clock at
    /// system time 0. Returns the UTC seconds read, if the RTC made sense.
    pub fn read_rtc() -> Option<u64> {
        let cmos = |reg: u8| {
            outb(0x70, reg);
            inb(0x71)
        };
        let updating = || cmos(0x0a) & 0x80 != 0;
        let snapshot = || {
            let mut spins = 0;
            while updating() && spins < 1_000_000 {
                spins += 1;
            }
            [cmos(0x00), cmos(0x02), cmos(0x04), cmos(0x07), cmos(0x08), cmos(0x09), cmos(0x32)]
        };
        // Two equal reads in a row: not torn by an update.
        let mut a = snapshot();
        for _ in 0..10 {
            let b = snapshot();
            if a == b {
                break;
            }
            a = b;
        }
        let status_b = cmos(0x0b);
        let bcd = status_b & 0x04 == 0;
        let conv = |v: u8| if bcd { (v & 0x0f) as u32 + (v >> 4) as u32 * 10 } else { v as u32 };
        let [sec, min, hour, day, month, year, century] = a;
        let pm = status_b & 0x02 == 0 && hour & 0x80 != 0;
        let mut h = conv(hour & 0x7f);
        if status_b & 0x02 == 0 {
            h %= 12;
            if pm {
                h += 12;
            }
        }
        let cent = conv(century);
        let y = conv(year) + if (19..=30).contains(&cent) { cent * 100 } else { 2000 };
        let secs = unix_time(y, conv(month), conv(day), h, conv(min), conv(sec))?;
        let boot_ns = (secs as u128 * 1_000_000_000).saturating_sub(now_ns() as u128) as u64;
        WALLCLOCK_AT_BOOT.store(boot_ns, Ordering::Relaxed);
        Some(secs)
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

/// Seconds since 1970-01-01 00:00:00 UTC for a calendar date and time, or
/// None if a field is out of range.
pub fn unix_time(year: u32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mdays = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day == 0 || day > mdays[month as usize - 1] {
        return None;
    }
    let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    days += mdays[..month as usize - 1].iter().map(|&d| d as u64).sum::<u64>();
    days += day as u64 - 1;
    Some(days * 86_400 + hour as u64 * 3600 + min as u64 * 60 + sec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_to_unix_time() {
        assert_eq!(unix_time(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_time(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(unix_time(2026, 11, 22, 12, 34, 56), Some(1_795_350_896));
        assert_eq!(unix_time(2024, 2, 29, 23, 59, 59), Some(1_709_251_199));
        assert_eq!(unix_time(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(unix_time(2026, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_time(1969, 12, 31, 0, 0, 0), None);
    }

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
