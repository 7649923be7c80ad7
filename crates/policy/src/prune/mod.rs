//! BuildKit's build-cache prune, as a pure planner.
//!
//! Given a snapshot of cache records, the ordered GC rules, the disk's
//! statistics and the current time, [`plan`] returns what one BuildKit GC run
//! would delete, in order, and why every other record stays (spec 2). It
//! never deletes anything, reads no clock and touches no disk.
//!
//! # What it reproduces
//!
//! - Rules run in order, each to completion; the first rule whose filter does
//!   not parse stops the run ([`PruneError`]), earlier deletions standing.
//! - Per rule: the total of unshared records (in-use mutable ones count 0),
//!   the disk's free bytes when `min_free_space` is set, and
//!   [`calculate_keep_bytes`]; the strict `total < keep_bytes` stop test;
//!   candidates that are not in use, have no remaining children, are not
//!   internal/frontend/shared without `all`, were last used at or before
//!   `now - keep_duration` (or never), and match the filters.
//! - Batch mode (keep-bytes 0) deletes every candidate, children before
//!   parents; gc mode deletes one record per pass, chosen by BuildKit's
//!   ranking recomputed over the remaining candidates after every deletion,
//!   with scores computed in binary64 as upstream does.
//!
//! # Choices where upstream is arbitrary
//!
//! - Score ties go to the lower usage count, then the older last-used (never
//!   used first), then the lower id. Upstream's stable sort gives the same
//!   order for up to 12 candidates except between records with equal usage
//!   count and last-used, where it picks at random; beyond 12 its sort is
//!   unstable and any tied record may win. This rule is always one of
//!   upstream's possible outcomes.
//! - Batch mode deletes in waves: all current candidates in id order, then
//!   the parents that freed up, and so on. Upstream deletes the same set in
//!   map order, ten at a time.
//! - Parent ids that are not in the snapshot are ignored; a record that lists
//!   itself as parent has a child forever and is never deleted.
//! - Shared is fixed for the run and spreads to every ancestor.
//!
//! # Two planners
//!
//! [`plan`] is fast (about 3.5 ms for 10,000 records and 0.65 s for a million
//! on the development machine; see docs/performance.md). [`plan_reference`] is the straightforward quadratic
//! version that rescans and re-ranks after every deletion; property tests
//! check that both return identical plans. [`plan_with`] takes an
//! alternative [`Ordering`] for gc-mode rules, for the simulator.
//!
//! # Example
//!
//! ```
//! use reclaim_model::{DiskStats, Timestamp};
//! use reclaim_policy::prune::{plan, CacheRecord, Snapshot};
//! use reclaim_policy::Rule;
//!
//! let day = |d: i64| Timestamp::from_unix_secs(1_700_000_000 + d * 86_400);
//! let mut old = CacheRecord::new("old", 600);
//! old.last_used_at = Some(day(1));
//! old.usage_count = 1;
//! let mut new = CacheRecord::new("new", 500);
//! new.last_used_at = Some(day(5));
//! new.usage_count = 3;
//! let snapshot = Snapshot::new(vec![old, new])?;
//!
//! // Keep at most 1000 bytes.
//! let rule = Rule { max_used_space: 1000, ..Rule::default() };
//! let plan = plan(&snapshot, &[rule], DiskStats::new(1 << 40, 1 << 39), day(6));
//! let deleted: Vec<&str> = plan.deleted_ids().map(|id| id.as_str()).collect();
//! assert_eq!(deleted, ["old"]);
//! assert_eq!(plan.bytes_freed(), 600);
//! println!("{plan}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod core;
mod fast;
mod ordering;
mod plan;
mod record;
mod reference;
mod structures;

use reclaim_model::{DiskStats, Timestamp};

pub use self::core::calculate_keep_bytes;
pub use self::ordering::{Ordering, gdsf_priority};
pub use self::plan::{
    Deletion, DeletionReason, KeepBytes, KeepReason, Kept, Mode, Protection, PruneError, PrunePlan,
    RuleOutcome, Score, Stop,
};
pub use self::record::{CacheRecord, RecordType, Snapshot, SnapshotError};
pub use self::reference::plan_reference;
use crate::Rule;

/// Plans one BuildKit GC run over `snapshot`: `rules` in order, with the
/// disk's statistics read where a rule needs them and `now` as the time of
/// the run (for keep-duration cut-offs).
///
/// Same input, same output: the plan depends neither on the order of the
/// records nor on hashing. See the module documentation for what is
/// reproduced and the tie-breaks chosen.
pub fn plan(snapshot: &Snapshot, rules: &[Rule], disk: DiskStats, now: Timestamp) -> PrunePlan {
    fast::plan_fast(snapshot, rules, disk, now, Ordering::BuildKit)
}

/// Like [`plan`], with another ordering for gc-mode rules. Everything else
/// (candidates, children first, targets, batch mode) stays BuildKit's.
/// `plan_with(.., Ordering::BuildKit)` is [`plan`].
pub fn plan_with(
    snapshot: &Snapshot,
    rules: &[Rule],
    disk: DiskStats,
    now: Timestamp,
    ordering: Ordering,
) -> PrunePlan {
    fast::plan_fast(snapshot, rules, disk, now, ordering)
}

#[cfg(test)]
mod tests;
