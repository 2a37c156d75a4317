//! Seeded, platform-independent generators: every order of a plan derives from these, so a
//! change here changes every epoch of every run.

/// SplitMix64 (Steele, Lea, Flood 2014): used to derive independent seeds from small integers.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one purpose (`stream`) and one index, derived from a user seed and an epoch.
/// Distinct inputs give unrelated seeds.
pub fn derive_seed(seed: u64, epoch: u64, stream: u64, index: u64) -> u64 {
    let mut s = seed;
    let mut h = splitmix64(&mut s);
    for v in [epoch, stream, index] {
        let mut t = h ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h = splitmix64(&mut t);
    }
    h
}

/// xoshiro256** (Blackman, Vigna 2018), seeded through SplitMix64 as its authors recommend.
/// Small, fast, and bit-for-bit the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire 2019).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

// Purposes of derived seeds; never renumber (that would change every order).
pub(crate) const STREAM_GROUP_ORDER: u64 = 1;
pub(crate) const STREAM_WINDOW: u64 = 2;
pub(crate) const STREAM_MIXTURE: u64 = 3;
pub(crate) const STREAM_PACK: u64 = 4;
pub(crate) const STREAM_MIXTURE_PACK: u64 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_stable() {
        // Pinned values: the order of every epoch depends on them.
        let mut sm = 0u64;
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::new(42);
        for n in [1u64, 2, 3, 7, 1 << 40] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        let mut rows: Vec<u32> = (0..10).collect();
        Rng::new(7).shuffle(&mut rows);
        let mut again: Vec<u32> = (0..10).collect();
        Rng::new(7).shuffle(&mut again);
        assert_eq!(rows, again);
    }
}
