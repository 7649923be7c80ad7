//! Eviction orderings for gc-mode rules: BuildKit's own, and alternatives
//! for the simulator to compare against.

use std::cmp::Ordering as CmpOrdering;

use serde::{Deserialize, Serialize};

use super::record::CacheRecord;

/// The order in which a gc-mode rule (one with a byte target) deletes its
/// candidates.
///
/// Every ordering keeps the rest of BuildKit's rules unchanged: the same
/// candidates (not in use, no remaining children, type/shared protection,
/// keep-duration, filters), children before parents, the same strict
/// `total < keep_bytes` stop test, and batch mode for rules without a target.
/// Only [`Ordering::BuildKit`] reproduces upstream; the others exist to
/// compare policies. Ties always fall back to the record id.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Ordering {
    /// BuildKit's ranking, re-computed after every deletion (spec 2.5):
    /// lowest `last_used_rank / max + usage_rank / max` first. Exact to
    /// upstream.
    #[default]
    BuildKit,
    /// First in, first out: oldest `created_at` first. Key: creation time in
    /// Unix seconds.
    Fifo,
    /// GreedyDual-Size-Frequency: lowest `(usage_count + 1) * cost / size`
    /// first, where cost is the record's `rebuild_seconds` or, when unset,
    /// one second per GiB of size (so that without costs GDSF reduces to
    /// LFU); a size of 0 counts as 1 byte. Every record enters with the
    /// same inflation value, so within one run the priority is static. Ties:
    /// older last-used first. Key: the priority.
    Gdsf,
    /// Largest size first. Key: the size in bytes.
    LargestFirst,
    /// Least frequently used: lowest usage count first, then older last-used
    /// (never used first). Key: the usage count.
    Lfu,
    /// Least recently used: oldest last-used first, never used before
    /// everything. Key: last-used time in Unix seconds (negative infinity
    /// for never used).
    Lru,
}

impl Ordering {
    /// Every ordering, BuildKit's first.
    pub const ALL: [Ordering; 6] = [
        Ordering::BuildKit,
        Ordering::Fifo,
        Ordering::Gdsf,
        Ordering::LargestFirst,
        Ordering::Lfu,
        Ordering::Lru,
    ];

    /// The key reported for `record` in a deletion reason. Meaningless for
    /// [`Ordering::BuildKit`], whose ranking is reported as a
    /// [`super::Score`] instead; returns 0 there.
    pub fn key(self, record: &CacheRecord) -> f64 {
        match self {
            Ordering::BuildKit => 0.0,
            Ordering::Fifo => seconds(record.created_at.unix_nanos()),
            Ordering::Gdsf => gdsf_priority(record),
            Ordering::LargestFirst => record.size as f64,
            Ordering::Lfu => record.usage_count as f64,
            Ordering::Lru => record
                .last_used_at
                .map_or(f64::NEG_INFINITY, |t| seconds(t.unix_nanos())),
        }
    }

    /// Compares two records under a static ordering: `Less` is deleted
    /// first. Total and deterministic (ties fall back to the id).
    /// [`Ordering::BuildKit`] is not static; here it compares like
    /// [`Ordering::Lfu`], and the planner never calls it that way.
    pub(crate) fn compare(self, a: &CacheRecord, b: &CacheRecord) -> CmpOrdering {
        let by_last = || a.last_used_at.cmp(&b.last_used_at);
        let first = match self {
            Ordering::Fifo => a.created_at.cmp(&b.created_at),
            Ordering::Gdsf => gdsf_priority(a)
                .total_cmp(&gdsf_priority(b))
                .then_with(by_last),
            Ordering::LargestFirst => b.size.cmp(&a.size),
            Ordering::BuildKit | Ordering::Lfu => {
                a.usage_count.cmp(&b.usage_count).then_with(by_last)
            }
            Ordering::Lru => by_last(),
        };
        first.then_with(|| a.id.cmp(&b.id))
    }
}

/// GDSF's priority of a record (see [`Ordering::Gdsf`]).
pub fn gdsf_priority(record: &CacheRecord) -> f64 {
    const GIB: f64 = (1u64 << 30) as f64;
    let size = record.size.max(1) as f64;
    let cost = record.rebuild_seconds.unwrap_or(record.size as f64 / GIB);
    (record.usage_count as f64 + 1.0) * cost / size
}

fn seconds(nanos: i128) -> f64 {
    nanos as f64 / 1e9
}
