//! A small, fast, non-cryptographic hasher for the planners' lookup tables.
//!
//! Keys are ids and names that come from the container runtime, so hash
//! flooding is not a concern, and the standard SipHash costs more than the
//! rest of a lookup at node scale. Output order never depends on this hash:
//! every table built with it is either only probed, or its contents are
//! sorted before they reach a plan.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map with the fast hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A hash set with the fast hasher.
pub(crate) type FastSet<T> = HashSet<T, BuildHasherDefault<FastHasher>>;

/// An empty [`FastMap`] with room for `capacity` entries.
pub(crate) fn map_with_capacity<K, V>(capacity: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}

/// An empty [`FastSet`] with room for `capacity` entries.
pub(crate) fn set_with_capacity<T>(capacity: usize) -> FastSet<T> {
    HashSet::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}

/// The hash of a byte string, as [`FastHasher`] computes it.
#[inline]
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = FastHasher::default();
    h.write(bytes);
    h.finish()
}

/// Word-at-a-time multiply-rotate hashing with a final avalanche step.
///
/// The avalanche matters because the table implementation takes the bucket
/// from the low bits and a tag from the high bits of the hash; without it,
/// the low bits of a multiplicative hash depend on too few input bits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher {
    state: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length goes into the top byte so that "a" and "a\0" differ.
            word[7] ^= rest.len() as u8;
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The murmur3 64-bit finaliser spreads every input bit over the word.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    fn hash_str(s: &str) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(s)
    }

    #[test]
    fn distinct_short_strings_hash_differently() {
        let words = ["", "a", "a\0", "b", "ab", "ba", "abcdefgh", "abcdefghi"];
        let hashes: FastSet<u64> = words.iter().map(|w| hash_str(w)).collect();
        assert_eq!(hashes.len(), words.len());
    }

    #[test]
    fn low_bits_spread_over_buckets() {
        // Ids that differ only in one character must still land in many of
        // the 256 buckets a small table would use.
        let buckets: FastSet<u64> = (0..1000)
            .map(|i| hash_str(&format!("sha256:{i:064x}")) & 0xff)
            .collect();
        assert!(buckets.len() > 200, "only {} buckets used", buckets.len());
    }
}
