//! The fuzzer's random numbers: a seeded splitmix64 stream per vCPU, and
//! the values a structure-aware fuzzer draws most: boundary values of
//! every width, small counts, and picks from lists.

/// splitmix64 (Steele, Lea and Flood): one 64-bit state, every value
/// reachable, cheap; one stream per vCPU, derived from the seed.
#[derive(Clone)]
pub struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Boundary values of 64-bit arguments.
const EDGES64: [u64; 40] = [
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    127,
    128,
    255,
    256,
    511,
    512,
    1023,
    1024,
    4095,
    4096,
    4097,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    (1 << 52) - 1,
    1 << 52,
    1 << 62,
    1 << 63,
    u64::MAX - 511,
    u64::MAX - 4095,
    u64::MAX - 1,
    u64::MAX,
    0x7ff0,
];

impl Rng {
    /// Stream `stream` of `seed` (each vCPU its own).
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed ^ mix(stream.wrapping_add(0x9e37_79b9_7f4a_7c15))))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability num/den.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// A boundary value, a power of two give or take one, or anything.
    pub fn edge64(&mut self) -> u64 {
        match self.below(8) {
            0..=3 => self.pick(&EDGES64),
            4 | 5 => {
                let p = 1u64 << self.below(64);
                match self.below(3) {
                    0 => p - 1,
                    1 => p,
                    _ => p.wrapping_add(1),
                }
            }
            6 => self.below(64),
            _ => self.next(),
        }
    }

    pub fn edge32(&mut self) -> u32 {
        match self.below(4) {
            0 => self.pick(&[0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff]),
            _ => self.edge64() as u32,
        }
    }

    pub fn edge16(&mut self) -> u16 {
        match self.below(4) {
            0 => self.pick(&[0, 1, 0x7fef, 0x7ff0, 0x7ff1, 0x7ff2, 0x7ff3, 0x7ff4, 0x7fff, 0x8000, 0xffff]),
            _ => self.edge64() as u16,
        }
    }

    /// A count: mostly small (0..=typical), sometimes a boundary value.
    pub fn count(&mut self, typical: u64) -> u64 {
        match self.below(8) {
            0 => self.edge64(),
            1 => self.pick(&[0, 1]),
            _ => self.below(typical + 1),
        }
    }
}
