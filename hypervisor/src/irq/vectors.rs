//! Host interrupt vectors for device interrupts: a pool between the
//! exceptions' range and the hypervisor's own vectors (timer, IPIs,
//! spurious at 0xf0 and up). The logic only.

/// The first and last vector handed to devices.
pub const FIRST: u8 = 0x30;
pub const LAST: u8 = 0xdf;

/// Which device vectors are taken.
#[derive(Debug, Clone, Default)]
pub struct VectorPool {
    used: [u64; 4],
}

impl VectorPool {
    pub const fn new() -> VectorPool {
        VectorPool { used: [0; 4] }
    }

    fn taken(&self, v: u8) -> bool {
        self.used[v as usize / 64] & (1 << (v % 64)) != 0
    }

    /// A free vector, the lowest (None: all taken).
    pub fn alloc(&mut self) -> Option<u8> {
        let v = (FIRST..=LAST).find(|&v| !self.taken(v))?;
        self.used[v as usize / 64] |= 1 << (v % 64);
        Some(v)
    }

    /// Gives `v` back (false if it was not taken or is not a device
    /// vector).
    pub fn free(&mut self, v: u8) -> bool {
        if !(FIRST..=LAST).contains(&v) || !self.taken(v) {
            return false;
        }
        self.used[v as usize / 64] &= !(1 << (v % 64));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_come_from_the_device_range_and_go_back() {
        let mut p = VectorPool::new();
        assert_eq!(p.alloc(), Some(FIRST));
        assert_eq!(p.alloc(), Some(FIRST + 1));
        assert!(p.free(FIRST));
        assert!(!p.free(FIRST), "twice");
        assert!(!p.free(0xf0), "the timer's");
        assert_eq!(p.alloc(), Some(FIRST));
        let n = (FIRST..=LAST).count() - 2;
        for _ in 0..n {
            assert!(p.alloc().is_some_and(|v| (FIRST..=LAST).contains(&v)));
        }
        assert_eq!(p.alloc(), None, "all taken");
    }
}
