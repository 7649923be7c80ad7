//! Radix partitioning of hashed entries into cache-sized groups.
//!
//! Large hash tables are slow when every probe misses the caches and the
//! TLB (one probe per item costs a few hundred nanoseconds on a virtual
//! machine without huge pages). The planners therefore copy what they need
//! of each item into a fixed-size entry with a 64-bit hash, split the
//! entries by the top bits of the hash into partitions of a few thousand,
//! and then work on one partition at a time with everything in cache.
//!
//! Splitting writes to at most 16 output streams at a time: the first pass
//! goes by the top four bits, the second by the next four. Partition order
//! is hash order, so callers must never let it reach their output without
//! sorting.

/// An entry that carries its own 64-bit hash to partition by.
pub(crate) trait Hashed: Copy {
    fn partition_key(&self) -> u64;
}

/// The largest number of partition bits (256 partitions).
pub(crate) const MAX_BITS: u32 = 8;

/// The partition bits for `n` items at about `per_part` items per
/// partition, capped at [`MAX_BITS`].
pub(crate) fn bits_for(n: usize, per_part: usize) -> u32 {
    let mut bits = 0;
    while bits < MAX_BITS && (n >> bits) > per_part {
        bits += 1;
    }
    bits
}

/// The partition of `hash` among `1 << bits`.
#[inline]
pub(crate) fn part_of(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

/// Reusable buffers that split entries into `1 << bits` partitions.
#[derive(Debug)]
pub(crate) struct Partitioner<T> {
    bits: u32,
    /// First-pass buckets (top four bits) when `bits > 4`.
    buckets: Vec<Vec<T>>,
    /// Final partitions.
    parts: Vec<Vec<T>>,
    /// Final partition sizes, counted during the first pass.
    sizes: Vec<usize>,
}

impl<T> Default for Partitioner<T> {
    fn default() -> Self {
        Self {
            bits: 0,
            buckets: Vec::new(),
            parts: Vec::new(),
            sizes: Vec::new(),
        }
    }
}

impl<T: Hashed> Partitioner<T> {
    /// Starts a new split into `1 << bits` partitions (`bits <= MAX_BITS`)
    /// of about `expected` entries in all, keeping the buffers' capacity
    /// and reserving enough that pushing never reallocates in the common
    /// case (reallocation would copy every entry again).
    pub(crate) fn begin(&mut self, bits: u32, expected: usize) {
        debug_assert!(bits <= MAX_BITS);
        self.bits = bits;
        let n = 1usize << bits;
        self.parts.resize_with(n.max(self.parts.len()), Vec::new);
        self.parts.truncate(n);
        // Hash partitions are even; a quarter more covers the spread.
        let share = |parts: usize| expected / parts + expected / parts / 4 + 16;
        if bits > 4 {
            self.buckets.resize_with(16, Vec::new);
            for b in &mut self.buckets {
                b.clear();
                b.reserve(share(16));
            }
            self.sizes.clear();
            self.sizes.resize(n, 0);
            for p in &mut self.parts {
                p.clear();
            }
        } else {
            for p in &mut self.parts {
                p.clear();
                p.reserve(share(n));
            }
        }
    }

    /// Adds one entry.
    #[inline]
    pub(crate) fn push(&mut self, entry: T) {
        let h = entry.partition_key();
        if self.bits > 4 {
            self.sizes[part_of(h, self.bits)] += 1;
            self.buckets[(h >> 60) as usize].push(entry);
        } else {
            self.parts[part_of(h, self.bits)].push(entry);
        }
    }

    /// Completes the split; afterwards [`Partitioner::part`] returns each
    /// partition's entries in the order they were pushed.
    pub(crate) fn finish(&mut self) {
        if self.bits <= 4 {
            return;
        }
        for (p, &size) in self.parts.iter_mut().zip(&self.sizes) {
            p.reserve(size);
        }
        let bits = self.bits;
        // Each bucket feeds only its own 16 partitions.
        for bucket in &mut self.buckets {
            for e in bucket.iter() {
                self.parts[part_of(e.partition_key(), bits)].push(*e);
            }
            bucket.clear();
        }
    }

    /// The number of partitions.
    pub(crate) fn len(&self) -> usize {
        1usize << self.bits
    }

    /// The entries of partition `p`.
    pub(crate) fn part(&self, p: usize) -> &[T] {
        &self.parts[p]
    }

    /// Frees the buffers.
    pub(crate) fn release(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct E(u64, u32);

    impl Hashed for E {
        fn partition_key(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn splits_by_top_bits_and_keeps_push_order() {
        for bits in [0, 3, 4, 5, 8] {
            let mut p = Partitioner::default();
            p.begin(bits, 5000);
            let mut x = 0x1234_5678_9abc_def0u64;
            let mut all = Vec::new();
            for i in 0..5000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                all.push(E(x, i));
                p.push(E(x, i));
            }
            p.finish();
            assert_eq!(p.len(), 1 << bits);
            let mut seen = 0;
            for k in 0..p.len() {
                let part = p.part(k);
                assert!(part.iter().all(|e| part_of(e.0, bits) == k));
                assert!(part.windows(2).all(|w| w[0].1 < w[1].1), "push order kept");
                seen += part.len();
            }
            assert_eq!(seen, all.len());
        }
    }

    #[test]
    fn bits_grow_with_the_input() {
        assert_eq!(bits_for(0, 2048), 0);
        assert_eq!(bits_for(2048, 2048), 0);
        assert_eq!(bits_for(4097, 2048), 1);
        assert_eq!(bits_for(8193, 2048), 2);
        assert_eq!(bits_for(1_000_000, 4096), 8);
        assert_eq!(bits_for(100_000_000, 4096), MAX_BITS);
    }
}
