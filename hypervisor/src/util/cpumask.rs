//! Sets of physical CPUs (hard affinity, kick lists), up to `MAX_CPUS`.

use core::fmt;

pub const MAX_CPUS: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask([u64; MAX_CPUS / 64]);

impl CpuMask {
    pub const fn empty() -> CpuMask {
        CpuMask([0; MAX_CPUS / 64])
    }

    /// CPUs 0..n.
    pub fn first(n: usize) -> CpuMask {
        let mut m = CpuMask::empty();
        for c in 0..n.min(MAX_CPUS) {
            m.set(c);
        }
        m
    }

    pub fn all() -> CpuMask {
        CpuMask([u64::MAX; MAX_CPUS / 64])
    }

    pub fn single(cpu: usize) -> CpuMask {
        let mut m = CpuMask::empty();
        m.set(cpu);
        m
    }

    pub fn set(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.0[cpu / 64] |= 1 << (cpu % 64);
        }
    }

    pub fn clear(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.0[cpu / 64] &= !(1 << (cpu % 64));
        }
    }

    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn and(&self, other: &CpuMask) -> CpuMask {
        let mut m = *self;
        for (a, b) in m.0.iter_mut().zip(other.0.iter()) {
            *a &= *b;
        }
        m
    }

    pub fn or(&mut self, other: &CpuMask) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }

    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The CPUs in the set, in ascending order: word by word, set bits
    /// only (the scheduler walks kick lists and affinities on every wake,
    /// where testing all MAX_CPUS bits one by one cost ~2,300
    /// instructions for an empty set).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        Bits { words: self.0, word: 0, cur: self.0[0] }
    }

    /// Parses xl.cfg's `cpus=` syntax: a comma-separated list of CPUs and
    /// ranges, each optionally negated with `^` (`"0-3,^1"`; a list of
    /// negations alone starts from every CPU), or `all`.
    pub fn parse(s: &str) -> Option<CpuMask> {
        let s = s.trim();
        if s == "all" {
            return Some(CpuMask::all());
        }
        let mut items = [(false, 0usize, 0usize); 64];
        let mut n = 0;
        for item in s.split(',') {
            let item = item.trim();
            let (neg, item) = match item.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?),
                None => {
                    let c = item.parse::<usize>().ok()?;
                    (c, c)
                }
            };
            if lo > hi || hi >= MAX_CPUS || n == items.len() {
                return None;
            }
            items[n] = (neg, lo, hi);
            n += 1;
        }
        let mut m = if items[..n].iter().all(|i| i.0) { CpuMask::all() } else { CpuMask::empty() };
        for &(neg, lo, hi) in &items[..n] {
            for c in lo..=hi {
                if neg {
                    m.clear(c);
                } else {
                    m.set(c);
                }
            }
        }
        Some(m)
    }
}

/// The set bits of a mask, lowest first.
struct Bits {
    words: [u64; MAX_CPUS / 64],
    /// The word `cur` came from.
    word: usize,
    /// What is left of that word.
    cur: u64,
}

impl Iterator for Bits {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.cur == 0 {
            self.word += 1;
            self.cur = *self.words.get(self.word)?;
        }
        let bit = self.cur.trailing_zeros() as usize;
        self.cur &= self.cur - 1;
        Some(self.word * 64 + bit)
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `0-3,6` style, as xl prints affinities.
impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == CpuMask::all() {
            return f.write_str("all");
        }
        let mut first = true;
        let mut c = 0;
        while c < MAX_CPUS {
            if !self.contains(c) {
                c += 1;
                continue;
            }
            let start = c;
            while c + 1 < MAX_CPUS && self.contains(c + 1) {
                c += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == c {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{c}")?;
            }
            c += 1;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_and_count() {
        let mut m = CpuMask::empty();
        m.set(0);
        m.set(65);
        m.set(255);
        m.set(256); // ignored
        assert!(m.contains(65) && !m.contains(64));
        assert_eq!(m.count(), 3);
        m.clear(65);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 255]);
        assert_eq!(CpuMask::empty().iter().next(), None);
        assert_eq!(CpuMask::all().iter().count(), MAX_CPUS);
        assert!(CpuMask::all().iter().eq(0..MAX_CPUS));
        let odd = CpuMask::parse("1,63-64,127,128,200-202").unwrap();
        assert_eq!(odd.iter().collect::<Vec<_>>(), vec![1, 63, 64, 127, 128, 200, 201, 202]);
        assert_eq!(CpuMask::first(3).and(&CpuMask::single(2)), CpuMask::single(2));
    }

    #[test]
    fn parses_xl_cpu_lists() {
        assert_eq!(CpuMask::parse("0-3,^1").unwrap().iter().collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(CpuMask::parse("2").unwrap(), CpuMask::single(2));
        assert_eq!(CpuMask::parse("all").unwrap(), CpuMask::all());
        let not1 = CpuMask::parse("^1").unwrap();
        assert!(not1.contains(0) && !not1.contains(1) && not1.contains(2));
        for bad in ["", "x", "3-1", "1-", "256", "0,,1"] {
            assert_eq!(CpuMask::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prints_ranges() {
        assert_eq!(CpuMask::parse("0-3,6,8-9").unwrap().to_string(), "0-3,6,8-9");
        assert_eq!(CpuMask::empty().to_string(), "none");
        assert_eq!(CpuMask::all().to_string(), "all");
    }
}
