//! Small index structures for the fast planner: a hierarchical bit set with
//! "next set bit", a Fenwick tree of counts, a rank set, and a radix sort.

/// A set of integers below a fixed capacity, with a summary level for every 64
/// words so that `next` skips empty stretches quickly.
#[derive(Clone, Debug)]
pub(crate) struct BitSet {
    /// `levels[0]` holds the members; bit `i` of `levels[k + 1]` is set when
    /// word `i` of `levels[k]` is non-zero. The last level has at most one
    /// word... or a few, scanned linearly.
    levels: Vec<Vec<u64>>,
}

impl BitSet {
    /// An empty set for members `0..capacity`.
    pub fn new(capacity: usize) -> Self {
        let mut levels = Vec::new();
        let mut words = capacity.div_ceil(64).max(1);
        loop {
            levels.push(vec![0u64; words]);
            if words <= 8 {
                break;
            }
            words = words.div_ceil(64);
        }
        Self { levels }
    }

    /// Adds `i`.
    pub fn insert(&mut self, mut i: usize) {
        for level in &mut self.levels {
            let word = &mut level[i / 64];
            let was_empty = *word == 0;
            *word |= 1 << (i % 64);
            if !was_empty {
                return;
            }
            i /= 64;
        }
    }

    /// Removes `i`.
    pub fn remove(&mut self, mut i: usize) {
        for level in &mut self.levels {
            let word = &mut level[i / 64];
            *word &= !(1u64 << (i % 64));
            if *word != 0 {
                return;
            }
            i /= 64;
        }
    }

    /// The smallest member that is at least `from`.
    pub fn next(&self, from: usize) -> Option<usize> {
        self.next_at(0, from)
    }

    fn next_at(&self, level: usize, from: usize) -> Option<usize> {
        let words = &self.levels[level];
        let w = from / 64;
        if w >= words.len() {
            return None;
        }
        let bits = words[w] & (u64::MAX << (from % 64));
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        let next_word = if level + 1 == self.levels.len() {
            (w + 1..words.len()).find(|&i| words[i] != 0)?
        } else {
            self.next_at(level + 1, w + 1)?
        };
        Some(next_word * 64 + words[next_word].trailing_zeros() as usize)
    }
}

/// A Fenwick (binary indexed) tree of counts over slots `1..=len`.
#[derive(Clone, Debug)]
pub(crate) struct Fenwick {
    tree: Vec<u32>,
}

impl Fenwick {
    /// A tree whose slot `i` (1-based) holds `counts[i - 1]`; built in linear
    /// time.
    pub fn from_counts(counts: impl ExactSizeIterator<Item = u32>) -> Self {
        let mut tree = Vec::with_capacity(counts.len() + 1);
        tree.push(0);
        tree.extend(counts);
        let len = tree.len();
        for i in 1..len {
            let parent = i + (i & i.wrapping_neg());
            if parent < len {
                tree[parent] += tree[i];
            }
        }
        Self { tree }
    }

    /// Adds one to slot `i` (1-based).
    pub fn increment(&mut self, mut i: usize) {
        while i < self.tree.len() {
            self.tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }

    /// Subtracts one from slot `i` (1-based).
    pub fn decrement(&mut self, mut i: usize) {
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum of slots `1..=i`.
    pub fn prefix(&self, mut i: usize) -> u32 {
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }
}

/// A set of slots `1..=len` with rank queries ("how many members are at or
/// below `i`"), laid out for fast queries: a bit per slot, the number of
/// members before each block of 512 slots counted from the start of its
/// superblock of 65,536 slots, and the number of members before each
/// superblock. A query reads one superblock count, one block count and at
/// most eight words of bits; an update adjusts the later counts of its
/// superblock (at most 127, side by side) and the later superblock counts.
#[derive(Clone, Debug)]
pub(crate) struct RankSet {
    words: Vec<u64>,
    /// Members before each block, from the start of its superblock.
    blocks: Vec<u16>,
    /// Members before each superblock.
    superblocks: Vec<u32>,
}

/// Slots per block: eight 64-bit words.
const BLOCK: usize = 512;
/// Blocks per superblock, so that a block count fits in 16 bits.
const SUPER: usize = 128;

impl RankSet {
    /// A set of slots `1..=len` whose members are the slots `i` with
    /// `present(i)`.
    pub fn new(len: usize, present: impl Fn(usize) -> bool) -> Self {
        let mut words = vec![0u64; (len + 1).div_ceil(BLOCK) * (BLOCK / 64)];
        for i in 1..=len {
            if present(i) {
                words[i / 64] |= 1 << (i % 64);
            }
        }
        let block_count = words.len() / (BLOCK / 64);
        let mut blocks = vec![0u16; block_count];
        let mut superblocks = vec![0u32; block_count.div_ceil(SUPER)];
        let mut total = 0u32;
        let mut within = 0u32;
        for (b, chunk) in words.chunks(BLOCK / 64).enumerate() {
            if b % SUPER == 0 {
                superblocks[b / SUPER] = total;
                within = 0;
            }
            blocks[b] = within as u16;
            let count: u32 = chunk.iter().map(|w| w.count_ones()).sum();
            within += count;
            total += count;
        }
        Self {
            words,
            blocks,
            superblocks,
        }
    }

    /// Adds `delta` (plus or minus one) to the counts after slot `i`.
    fn adjust(&mut self, i: usize, delta: i32) {
        let block = i / BLOCK;
        let end = ((block / SUPER + 1) * SUPER).min(self.blocks.len());
        for count in &mut self.blocks[block + 1..end] {
            *count = count.wrapping_add_signed(delta as i16);
        }
        for count in &mut self.superblocks[block / SUPER + 1..] {
            *count = count.wrapping_add_signed(delta);
        }
    }

    /// Adds slot `i` (which must be absent).
    pub fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
        self.adjust(i, 1);
    }

    /// Removes slot `i` (which must be present).
    pub fn remove(&mut self, i: usize) {
        self.words[i / 64] &= !(1u64 << (i % 64));
        self.adjust(i, -1);
    }

    /// Number of members at or below slot `i`.
    pub fn rank(&self, i: usize) -> u32 {
        let block = i / BLOCK;
        let mut count = self.superblocks[block / SUPER] + u32::from(self.blocks[block]);
        let first = block * (BLOCK / 64);
        let last = i / 64;
        for w in &self.words[first..last] {
            count += w.count_ones();
        }
        let mask = if i % 64 == 63 {
            u64::MAX
        } else {
            (1u64 << (i % 64 + 1)) - 1
        };
        count + (self.words[last] & mask).count_ones()
    }
}

/// Bits per radix-sort digit: 2,048 buckets, whose write positions stay in
/// the second-level cache while a pass scatters.
const DIGIT: u32 = 11;

/// Sorts `items` by the low `bits` bits of `key(item)`, stably (a
/// least-significant-digit radix sort). Linear in the number of items; a
/// pass whose digit is the same for every item is skipped.
pub(crate) fn radix_sort<T: Copy>(items: &mut Vec<T>, bits: u32, key: impl Fn(&T) -> u64) {
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    if items.len() < 2
        || items
            .windows(2)
            .all(|w| key(&w[0]) & mask <= key(&w[1]) & mask)
    {
        return;
    }
    assert!(u32::try_from(items.len()).is_ok(), "fewer than 2^32 items");
    let passes = bits.div_ceil(DIGIT) as usize;
    let buckets = 1usize << DIGIT;
    // Every pass's histogram, from one read of the items.
    let mut counts = vec![0u32; passes * buckets];
    for item in items.iter() {
        let k = key(item) & mask;
        for (pass, histogram) in counts.chunks_mut(buckets).enumerate() {
            histogram[((k >> (pass as u32 * DIGIT)) as usize) & (buckets - 1)] += 1;
        }
    }
    let mut scratch: Vec<T> = Vec::new();
    for (pass, histogram) in counts.chunks_mut(buckets).enumerate() {
        if histogram.contains(&(items.len() as u32)) {
            // Every item has the same digit: the pass would change nothing.
            continue;
        }
        let mut sum = 0;
        for c in histogram.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        if scratch.is_empty() {
            scratch = items.clone();
        }
        let shift = pass as u32 * DIGIT;
        // Every slot of `scratch` is overwritten: the counts partition it
        // exactly.
        for item in items.iter() {
            let d = (((key(item) & mask) >> shift) as usize) & (buckets - 1);
            scratch[histogram[d] as usize] = *item;
            histogram[d] += 1;
        }
        std::mem::swap(items, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_matches_a_stable_sort() {
        let mut x = 7u64;
        for (len, bits, spread) in [
            (0usize, 64, 64),
            (1, 64, 64),
            (1_000, 64, 64),
            (5_000, 32, 40),
            (3_000, 64, 3),
            (2_500, 22, 22),
        ] {
            let items: Vec<(u64, u32)> = (0..len as u32)
                .map(|i| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (x >> (64 - spread), i)
                })
                .collect();
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let mut want = items.clone();
            want.sort_by_key(|&(k, _)| k & mask);
            let mut got = items;
            radix_sort(&mut got, bits, |&(k, _)| k);
            assert_eq!(got, want, "len {len} bits {bits}");
        }
    }

    #[test]
    fn rank_set_counts_members_below() {
        for len in [1usize, 63, 64, 511, 512, 513, 5_000, 200_000] {
            let mut model: Vec<bool> = (0..=len).map(|i| i > 0 && i % 3 == 0).collect();
            let mut set = RankSet::new(len, |i| model[i]);
            let mut x = 99u64;
            for step in 0..500 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let i = 1 + (x >> 33) as usize % len;
                if model[i] {
                    set.remove(i);
                } else {
                    set.insert(i);
                }
                model[i] = !model[i];
                let q = 1 + (x >> 11) as usize % len;
                let want = model[..=q].iter().filter(|&&m| m).count() as u32;
                assert_eq!(set.rank(q), want, "len {len} step {step}");
            }
        }
    }

    #[test]
    fn bitset_next_matches_a_scan() {
        for capacity in [1usize, 63, 64, 65, 4096, 5000, 300_000] {
            let mut set = BitSet::new(capacity);
            let mut model = vec![false; capacity];
            let mut x = 12_345u64;
            for step in 0..2_000 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let i = (x >> 33) as usize % capacity;
                if step % 3 == 0 {
                    set.remove(i);
                    model[i] = false;
                } else {
                    set.insert(i);
                    model[i] = true;
                }
                let from = (x >> 13) as usize % capacity;
                let want = (from..capacity).find(|&j| model[j]);
                assert_eq!(set.next(from), want, "capacity {capacity} step {step}");
            }
        }
    }

    #[test]
    fn fenwick_prefix_sums() {
        let counts = [3u32, 0, 1, 4, 1, 5, 9, 2, 6];
        let mut tree = Fenwick::from_counts(counts.iter().copied());
        let mut model = counts.to_vec();
        for i in 0..=counts.len() {
            assert_eq!(tree.prefix(i), model[..i].iter().sum::<u32>());
        }
        tree.increment(2);
        model[1] += 1;
        tree.decrement(7);
        model[6] -= 1;
        for i in 0..=counts.len() {
            assert_eq!(tree.prefix(i), model[..i].iter().sum::<u32>());
        }
    }
}
