//! The signalling core's randomness: seeded by the driver, so that a test replays
//! a run exactly.

/// SplitMix64: small, seedable, good enough for tags, branches and SSRCs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// 64 random bits as 16 hex digits (tags, branches).
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }
}
