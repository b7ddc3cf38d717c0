//! Deterministic pseudo-random bytes for dits-core's unit tests: data that no chunker,
//! hash or comparison can shortcut, the same on every run.

/// `len` xorshift bytes from `seed`. The seed is scrambled first, so neighbouring seeds
/// (2 and 3, say) give unrelated streams.
pub(crate) fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
