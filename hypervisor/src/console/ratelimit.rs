//! How much a guest may print: a token bucket of bytes per domain, so that
//! one domain can neither keep the serial line to itself nor fill the
//! transmit ring that the hypervisor's own messages need (Xen rate-limits
//! guest console output the same way, with its printk ratelimit).

/// Bytes a domain may print in a burst.
pub const BURST: u64 = 64 << 10;

/// Bytes per second it may print after that: above the 11.5 KB/s of a
/// 115200-baud line, so one busy domain can still use all of it.
pub const RATE: u64 = 16 << 10;

use super::line::LineBuffer;

/// What the hypervisor keeps of a domain's console output: the line being
/// assembled, the domain's allowance, and the lines it lost to the limit
/// since the last one printed.
#[derive(Default)]
pub struct GuestOutput {
    pub line: LineBuffer,
    pub bucket: Bucket,
    pub dropped: u64,
}

/// Once a domain has run dry, what it must have saved again before it
/// prints more: a flood then shows as a few long gaps with a note each,
/// not a note between every line.
pub const RESUME: u64 = BURST / 4;

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: u64,
    /// Ran dry and not yet back to RESUME.
    dry: bool,
    /// When `tokens` was last brought up to date (ns of system time).
    at: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

impl Bucket {
    pub const fn new() -> Bucket {
        Bucket { tokens: BURST, dry: false, at: 0 }
    }

    fn refill(&mut self, now: u64) {
        if now <= self.at {
            return;
        }
        let earned = ((now - self.at) as u128 * RATE as u128 / 1_000_000_000) as u64;
        if earned == 0 {
            return;
        }
        self.tokens = self.tokens.saturating_add(earned).min(BURST);
        // Only the time that earned whole bytes is used up.
        self.at += (earned as u128 * 1_000_000_000 / RATE as u128) as u64;
        if self.tokens == BURST {
            self.at = now;
        }
    }

    /// Bytes the domain may print now.
    pub fn available(&mut self, now: u64) -> u64 {
        self.refill(now);
        self.tokens
    }

    /// Takes `n` bytes if the bucket holds them (and, after running dry,
    /// has saved RESUME again).
    pub fn take(&mut self, n: u64, now: u64) -> bool {
        self.refill(now);
        if self.dry && self.tokens < RESUME.max(n) {
            return false;
        }
        if self.tokens < n {
            self.dry = true;
            return false;
        }
        self.dry = false;
        self.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Bucket::new();
        let t0 = 5 * SEC;
        assert!(b.take(BURST, t0));
        assert!(!b.take(1, t0));
        assert_eq!(b.available(t0), 0);
        // Half a second earns half the rate, however it is asked for.
        for k in 1..=500 {
            b.available(t0 + k * SEC / 1000);
        }
        assert_eq!(b.available(t0 + SEC / 2), RATE / 2);
        // It ran dry: half a second's worth is below RESUME.
        assert!(RATE / 2 < RESUME);
        assert!(!b.take(1, t0 + SEC / 2));
        assert!(b.take(RATE, t0 + SEC));
        assert!(!b.take(1, t0 + SEC));
        // Never more than the burst, however long it waits.
        assert_eq!(b.available(t0 + 3600 * SEC), BURST);
    }

    #[test]
    fn a_flood_gets_the_rate_and_no_more() {
        let mut b = Bucket::new();
        let mut printed = 0;
        // 10 s of trying to print 1000 bytes every millisecond.
        for ms in 0..10_000u64 {
            if b.take(1000, ms * SEC / 1000) {
                printed += 1000;
            }
        }
        assert!(printed <= BURST + 10 * RATE, "{printed}");
        assert!(printed >= 10 * RATE, "{printed}");
    }

    #[test]
    fn after_running_dry_it_waits_for_a_quarter_of_the_burst() {
        let mut b = Bucket::new();
        assert!(b.take(BURST - 10, 0));
        assert!(!b.take(100, 0));
        // Enough for the line, not yet for RESUME.
        let t = SEC / 100;
        assert!(b.available(t) >= 100);
        assert!(!b.take(100, t));
        let t = RESUME * SEC / RATE + SEC / 100;
        assert!(b.take(100, t));
        assert!(b.take(100, t));
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut b = Bucket::new();
        assert!(b.take(BURST, 10 * SEC));
        assert_eq!(b.available(SEC), 0);
        assert_eq!(b.available(10 * SEC), 0);
    }
}
