//! The plan a prune run produces: deletions in order, per-rule outcomes, and
//! a reason for every record that stays.

use std::fmt;
use std::ops::Range;

use reclaim_model::{ByteSize, Id, Timestamp};
use serde::{Serialize, Serializer};

use super::ordering::Ordering;
use crate::filter::FilterError;

/// The result of planning one GC run: what BuildKit would delete, in order,
/// and why every other record stays.
///
/// Invariants: every record of the snapshot appears exactly once, either in
/// [`PrunePlan::deletions`] or in [`PrunePlan::kept`]; `rules` lists the rules
/// that ran to completion, in order, and their `deletions` ranges tile
/// `deletions`; `error` is set when a rule failed, in which case no later
/// rule ran and the deletions of earlier rules stand. `kept` is sorted by id.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrunePlan {
    /// Every deletion, in the order BuildKit performs them.
    pub deletions: Vec<Deletion>,
    /// One entry per rule that ran to completion.
    pub rules: Vec<RuleOutcome>,
    /// Every record that stays, with the reason, sorted by id.
    pub kept: Vec<Kept>,
    /// The error that stopped the run, if any.
    pub error: Option<PruneError>,
}

impl PrunePlan {
    /// Sum of the sizes of all deleted records (shared ones included).
    pub fn bytes_freed(&self) -> u64 {
        self.deletions
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(d.bytes))
    }

    /// The ids of the deleted records, in deletion order.
    pub fn deleted_ids(&self) -> impl Iterator<Item = &Id> {
        self.deletions.iter().map(|d| &d.id)
    }

    /// The deletions made by one rule.
    pub fn deletions_of(&self, outcome: &RuleOutcome) -> &[Deletion] {
        &self.deletions[outcome.deletions.clone()]
    }
}

/// One deleted record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deletion {
    /// The record's id.
    pub id: Id,
    /// Index (0-based) of the rule that deleted it.
    pub rule: usize,
    /// The record's size, released by the deletion.
    pub bytes: u64,
    /// Why it went, and when.
    pub reason: DeletionReason,
}

/// How a deleted record was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub enum DeletionReason {
    /// The rule has no byte target (keep-bytes 0), so every candidate goes.
    /// Candidates are deleted in waves: a wave takes every candidate at its
    /// start, in id order; parents freed by a wave are candidates of the next.
    Batch {
        /// 0-based wave number within the rule.
        wave: u32,
    },
    /// Chosen by an alternative ordering (simulator only; see
    /// [`Ordering`]): the candidate with the lowest key.
    Ordered {
        /// The rule's running total when the record was chosen (at least
        /// the rule's keep-bytes).
        total_before: i64,
        /// The ordering used.
        ordering: Ordering,
        /// The record's key under that ordering (see [`Ordering`]).
        key: f64,
    },
    /// The rule has a byte target and the total was not below it: BuildKit
    /// ranked the candidates and this one had the lowest score.
    Ranked {
        /// The rule's running total when the record was chosen (at least
        /// the rule's keep-bytes).
        total_before: i64,
        /// The ranking of the pass that chose it.
        score: Score,
    },
}

/// BuildKit's ranking of a record within one gc-mode pass (spec 2.5).
///
/// `score = last_used_rank / last_used_max + usage_rank / usage_max`,
/// computed in binary64 in that order. Ranks are dense and 1-based: never
/// used records (and usage count 0) rank 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    /// The score; the pass deletes the lowest.
    pub score: f64,
    /// Dense rank of the record's last-used time among the candidates.
    pub last_used_rank: u32,
    /// 1 + the number of distinct last-used times among the candidates.
    pub last_used_max: u32,
    /// Dense rank of the record's usage count among the candidates.
    pub usage_rank: u32,
    /// 1 + the number of distinct non-zero usage counts among the candidates.
    pub usage_max: u32,
}

/// What one rule did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleOutcome {
    /// Index (0-based) of the rule.
    pub rule: usize,
    /// Batch mode (no byte target) or gc mode (one ranked deletion per pass).
    pub mode: Mode,
    /// The rule's target and the arithmetic behind it.
    pub keep: KeepBytes,
    /// Records last used strictly after this instant were not candidates
    /// (`now - keep_duration`); `None` when the rule has no keep-duration.
    pub cut_off: Option<Timestamp>,
    /// The rule's deletions, as a range of [`PrunePlan::deletions`].
    pub deletions: Range<usize>,
    /// Bytes the rule released (shared records included).
    pub bytes_freed: u64,
    /// The running total when the rule stopped: the start total minus every
    /// released size, as upstream counts (in batch mode the start total is 0,
    /// so this goes negative).
    pub end_total: i64,
    /// Why the rule stopped.
    pub stop: Stop,
}

/// A rule's deletion mode (spec 2.3 step 4).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub enum Mode {
    /// Keep-bytes is 0: every candidate is deleted, in no ranked order.
    Batch,
    /// Keep-bytes is non-zero: one ranked deletion per pass until the total
    /// is below keep-bytes.
    Ranked,
}

/// Why a rule stopped.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub enum Stop {
    /// A pass found no candidate.
    NoCandidates,
    /// The running total was strictly below keep-bytes.
    TargetReached,
}

/// `calculateKeepBytes` with its inputs (spec 2.2 item 4).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct KeepBytes {
    /// Sum of the sizes of the unshared records at the rule's start (in-use
    /// mutable records count 0). 0 when the rule has no size limit, as
    /// upstream does not compute it then.
    pub total: i64,
    /// Free bytes on the disk, read when `min_free_space` is non-zero, else 0.
    pub free: i64,
    /// The rule's reservedSpace.
    pub reserved_space: i64,
    /// The rule's maxUsedSpace.
    pub max_used_space: i64,
    /// The rule's minFreeSpace.
    pub min_free_space: i64,
    /// The result: the rule deletes while `total >= keep_bytes`; 0 means no
    /// cap (batch mode).
    pub keep_bytes: i64,
}

/// A record that stays, and why.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct Kept {
    /// The record's id.
    pub id: Id,
    /// Why the last rule that ran did not delete it.
    pub reason: KeepReason,
}

/// Why a record was not deleted, judged against the last rule that ran.
///
/// The checks are made in upstream's order, and the first that applies is
/// reported: in use, then remaining children, then type/shared protection,
/// then keep-duration, then the filter; a record that passed them all was a
/// candidate when the rule reached its target.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[non_exhaustive]
pub enum KeepReason {
    /// Other records that remain list it as a parent.
    ChildrenRemain {
        /// The rule judged against.
        rule: usize,
        /// Number of parent links to it from remaining records.
        children: u32,
    },
    /// The rule's filter does not match it.
    Filtered {
        /// The rule judged against.
        rule: usize,
    },
    /// Something holds a reference to it (a build, a mount).
    InUse {
        /// The rule judged against.
        rule: usize,
    },
    /// No rule ran (the list is empty or the first rule failed).
    NoRuleRan,
    /// Its type or shared flag protects it from a rule without `all`.
    Protected {
        /// The rule judged against.
        rule: usize,
        /// What protects it.
        class: Protection,
    },
    /// Used after the rule's keep-duration cut-off
    /// ([`RuleOutcome::cut_off`]).
    Recent {
        /// The rule judged against.
        rule: usize,
    },
    /// It was a candidate, but the rule reached its byte target first.
    TargetReached {
        /// The rule judged against.
        rule: usize,
    },
}

/// What keeps a record away from rules without `all`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub enum Protection {
    /// A frontend record.
    Frontend,
    /// An internal record.
    Internal,
    /// The record (or a descendant) backs an image.
    Shared,
}

/// Why a GC run stopped early (spec 2.6).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A rule's filter list does not parse. BuildKit returns this before the
    /// rule deletes anything and runs no later rule; fix the filter text
    /// (daemon.json filters are inserted unquoted, so values with spaces or a
    /// single `=` break them).
    #[error("failed to parse prune filters [{}]: {cause}: invalid argument", .filters.join(" "))]
    Filter {
        /// Index of the failing rule.
        rule: usize,
        /// The rule's filter strings.
        filters: Vec<String>,
        /// The parse error of the first bad string.
        cause: FilterError,
    },
}

impl PruneError {
    /// Index of the rule that failed.
    pub fn rule(&self) -> usize {
        match self {
            Self::Filter { rule, .. } => *rule,
        }
    }
}

impl Serialize for PruneError {
    /// `{"rule": i, "message": "..."}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("PruneError", 2)?;
        s.serialize_field("rule", &self.rule())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

impl fmt::Display for PrunePlan {
    /// A readable report: one block per rule with its keep-bytes arithmetic
    /// and deletions, then the error if any, then the kept records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for outcome in &self.rules {
            writeln!(f, "{outcome}")?;
            for d in self.deletions_of(outcome) {
                writeln!(f, "  {d}")?;
            }
        }
        if let Some(err) = &self.error {
            writeln!(f, "rule {} failed: {err}", err.rule())?;
        }
        writeln!(
            f,
            "deleted {} records, {} ({} bytes); kept {} records",
            self.deletions.len(),
            ByteSize(self.bytes_freed()),
            self.bytes_freed(),
            self.kept.len()
        )?;
        for k in &self.kept {
            writeln!(f, "  keep {}: {}", k.id, k.reason)?;
        }
        Ok(())
    }
}

impl fmt::Display for RuleOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.keep;
        let mode = match self.mode {
            Mode::Batch => "batch (no cap)",
            Mode::Ranked => "ranked",
        };
        write!(
            f,
            "rule {}: {mode}; keep {} = f(total {}, free {}, reserved {}, max-used {}, min-free {})",
            self.rule,
            k.keep_bytes,
            k.total,
            k.free,
            k.reserved_space,
            k.max_used_space,
            k.min_free_space
        )?;
        if let Some(cut_off) = self.cut_off {
            write!(f, "; unused since {cut_off}")?;
        }
        let stop = match self.stop {
            Stop::NoCandidates => "no candidates left",
            Stop::TargetReached => "total below keep",
        };
        write!(
            f,
            "; deleted {} ({} bytes); stopped: {stop} (total {})",
            self.deletions.len(),
            self.bytes_freed,
            self.end_total
        )
    }
}

impl fmt::Display for Deletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delete {} ({} bytes): ", self.id, self.bytes)?;
        match self.reason {
            DeletionReason::Batch { wave } => write!(f, "batch wave {wave}"),
            DeletionReason::Ordered {
                total_before,
                ordering,
                key,
            } => write!(f, "total {total_before}, lowest {ordering:?} key {key}"),
            DeletionReason::Ranked {
                total_before,
                score,
            } => write!(
                f,
                "total {total_before}, score {} = {}/{} + {}/{}",
                score.score,
                score.last_used_rank,
                score.last_used_max,
                score.usage_rank,
                score.usage_max
            ),
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ChildrenRemain { rule, children } => {
                write!(f, "{children} remaining child link(s) (rule {rule})")
            }
            Self::Filtered { rule } => write!(f, "not matched by the filter (rule {rule})"),
            Self::InUse { rule } => write!(f, "in use (rule {rule})"),
            Self::NoRuleRan => f.write_str("no rule ran"),
            Self::Protected { rule, class } => {
                let what = match class {
                    Protection::Frontend => "frontend",
                    Protection::Internal => "internal",
                    Protection::Shared => "shared",
                };
                write!(f, "{what}, and the rule lacks `all` (rule {rule})")
            }
            Self::Recent { rule } => write!(f, "used after the cut-off (rule {rule})"),
            Self::TargetReached { rule } => {
                write!(
                    f,
                    "a candidate, but the target was reached first (rule {rule})"
                )
            }
        }
    }
}
