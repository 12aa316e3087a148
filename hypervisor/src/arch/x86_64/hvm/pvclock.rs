//! Xen's paravirtual clock arithmetic (`vcpu_time_info`): a guest computes
//! `system_time + (((tsc - tsc_timestamp) << shift) * mul) >> 32` (a right
//! shift when `shift` is negative), and the TSC rate as
//! `((10^9 << 32) / mul) >> shift`. Also the wall clock's calendar maths.

/// A TSC-to-nanoseconds scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeScale {
    pub mul: u32,
    pub shift: i8,
}

const NS_PER_SEC: u64 = 1_000_000_000;

impl TimeScale {
    /// The scale for a TSC running at `hz` (> 0): the shift brings the rate
    /// into (1e9, 2e9] so that the multiplier keeps 32 bits of precision.
    pub fn for_hz(hz: u64) -> TimeScale {
        let mut rate = hz.max(1);
        let mut shift: i8 = 0;
        while rate > 2 * NS_PER_SEC {
            rate >>= 1;
            shift -= 1;
        }
        while rate <= NS_PER_SEC {
            rate <<= 1;
            shift += 1;
        }
        let mul = ((NS_PER_SEC as u128) << 32) / rate as u128;
        TimeScale { mul: mul as u32, shift }
    }

    /// Nanoseconds for `ticks`, as a guest computes them (with 128-bit
    /// intermediates, so large deltas do not wrap).
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let t = if self.shift >= 0 { (ticks as u128) << self.shift } else { (ticks as u128) >> -self.shift };
        ((t * self.mul as u128) >> 32) as u64
    }

    /// The TSC rate in kHz a guest derives from the scale (Linux's
    /// `pvclock_tsc_khz`).
    pub fn khz(&self) -> u64 {
        let mut k = (1_000_000u128 << 32) / self.mul.max(1) as u128;
        if self.shift < 0 {
            k <<= -self.shift;
        } else {
            k >>= self.shift;
        }
        k as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_keep_the_rate_within_a_part_per_million() {
        for hz in [1_000_000u64, 199_979_000, 1_000_000_000, 1_000_000_001, 2_100_000_000, 3_600_000_000, 5_000_000_000]
        {
            let s = TimeScale::for_hz(hz);
            // One second of ticks is one second, to well under 1 ppm.
            let ns = s.ticks_to_ns(hz) as i64;
            assert!((ns - 1_000_000_000).abs() < 10, "{hz} Hz: {ns} ns per second ({s:?})");
            let k = s.khz() as i64;
            assert!((k - (hz / 1000) as i64).abs() <= 1, "{hz} Hz: {k} kHz");
        }
        // Xen's scale for a 2 GHz TSC: shift 0, mul 2^31.
        assert_eq!(TimeScale::for_hz(2_000_000_000), TimeScale { mul: 1 << 31, shift: 0 });
        assert_eq!(TimeScale::for_hz(1_000_000_000).shift, 1);
    }

    #[test]
    fn large_deltas_do_not_wrap() {
        let s = TimeScale::for_hz(3_000_000_000);
        let day = 86_400u64 * 3_000_000_000;
        let ns = s.ticks_to_ns(day) as i64;
        assert!((ns - 86_400_000_000_000).abs() < 1_000_000, "a day is a day to within a millisecond: {ns}");
        assert_eq!(s.ticks_to_ns(0), 0);
    }
}
