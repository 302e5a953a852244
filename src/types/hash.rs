//! The fixed 64-bit mixer several tables share (SNAT port owners, persistence, Maglev
//! permutations, fragments). Fixed, not seeded: every instance computes the same values.

/// MurmurHash3's 64-bit finaliser: a cheap, well-mixed bijection.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}
