//! Rule-level pieces shared by both planners: keep-bytes arithmetic,
//! candidate checks that do not change during a rule, the filter view of a
//! record, and the reasons for keeping.

use std::borrow::Cow;

use reclaim_model::{DiskStats, Duration, Timestamp};

use super::PruneError;
use super::plan::{KeepBytes, KeepReason, Protection};
use super::record::{CacheRecord, RecordType};
use crate::Rule;
use crate::filter::{Fields, FilterSet};

/// Go's zero `time.Time` (0001-01-01T00:00:00Z). BuildKit's last-used rank
/// walk starts from it, so a timestamp at or before it shares rank 1 with
/// never-used records.
pub(crate) const GO_ZERO_TIME: Timestamp = Timestamp::from_unix_secs(-62_135_596_800);

/// BuildKit's `calculateKeepBytes` (spec 2.2 item 4): the total below which a
/// rule stops deleting.
///
/// `total` is the rule's start total and `free` the disk's free bytes (0 when
/// the rule has no `min_free_space`). All limits 0 gives 0, which means no
/// cap. Arithmetic wraps on overflow, as Go's `int64` does, so that negative
/// limits from the prune API give upstream's results.
pub fn calculate_keep_bytes(total: i64, free: i64, rule: &Rule) -> i64 {
    if rule.max_used_space == 0 && rule.reserved_space == 0 && rule.min_free_space == 0 {
        return 0;
    }
    let mut keep = rule.max_used_space;
    let excess = rule.min_free_space.wrapping_sub(free);
    if excess > 0 {
        let lowered = total.wrapping_sub(excess);
        keep = if keep == 0 {
            lowered
        } else {
            keep.min(lowered)
        };
    } else if rule.min_free_space != 0 && keep == 0 {
        keep = total;
    }
    keep.max(rule.reserved_space)
}

/// `now - keep_duration` as Go computes it: `now.Add(-d)`, where negating
/// the most negative duration leaves it unchanged.
pub(crate) fn cut_off(now: Timestamp, keep_duration: Duration) -> Timestamp {
    now.add(Duration::from_nanos(
        keep_duration.as_nanos().wrapping_neg(),
    ))
}

/// True if the rule has any size limit, so that upstream computes a total.
pub(crate) fn has_limits(rule: &Rule) -> bool {
    rule.reserved_space != 0 || rule.max_used_space != 0 || rule.min_free_space != 0
}

/// The disk's free bytes as Go's `int64` holds them.
pub(crate) fn free_bytes(disk: DiskStats) -> i64 {
    // Go converts the unsigned statfs product to int64; the cast wraps the
    // same way for (unrealistic) values above i64::MAX.
    disk.free as i64
}

/// A record's contribution to a rule's total: its size, or 0 for an in-use
/// mutable record (spec 2.2 item 2).
pub(crate) fn counted_size(record: &CacheRecord) -> i64 {
    if record.in_use && record.mutable {
        0
    } else {
        record.size as i64
    }
}

/// The keep-bytes arithmetic of a rule, given the live records' total.
pub(crate) fn keep_bytes(rule: &Rule, unshared_total: i64, disk: DiskStats) -> KeepBytes {
    let total = if has_limits(rule) { unshared_total } else { 0 };
    let free = if rule.min_free_space != 0 {
        free_bytes(disk)
    } else {
        0
    };
    KeepBytes {
        total,
        free,
        reserved_space: rule.reserved_space,
        max_used_space: rule.max_used_space,
        min_free_space: rule.min_free_space,
        keep_bytes: calculate_keep_bytes(total, free, rule),
    }
}

/// What the checks that stay fixed during a rule say about one record.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    /// A candidate as soon as it has no remaining children.
    Eligible,
    /// Filtered out.
    Filtered,
    /// In use.
    InUse,
    /// Internal, frontend or shared, and the rule lacks `all`.
    Protected(Protection),
    /// Used after the cut-off.
    Recent,
}

/// One rule, ready to judge records.
pub(crate) struct RuleContext<'a> {
    pub index: usize,
    pub rule: &'a Rule,
    pub filter: FilterSet,
    /// `Some` when the rule has a keep-duration.
    pub cut_off: Option<Timestamp>,
}

impl<'a> RuleContext<'a> {
    /// Parses the rule's filters; a parse error is the rule's error.
    pub fn new(index: usize, rule: &'a Rule, now: Timestamp) -> Result<Self, PruneError> {
        let filter = FilterSet::parse_all(&rule.filter).map_err(|cause| PruneError::Filter {
            rule: index,
            filters: rule.filter.clone(),
            cause,
        })?;
        let cut_off = (!rule.keep_duration.is_zero()).then(|| cut_off(now, rule.keep_duration));
        Ok(Self {
            index,
            rule,
            filter,
            cut_off,
        })
    }

    /// The fixed checks of spec 2.3 step 3, in upstream's order.
    /// `shared` is the record's propagated shared flag.
    pub fn verdict(&self, record: &CacheRecord, shared: bool) -> Verdict {
        let facts = Facts {
            in_use: record.in_use,
            protection: protection(&record.record_type),
            shared,
            recent: self.is_recent(record.last_used_at),
        };
        self.verdict_with(&facts, || {
            self.filter.matches(&CandidateFields { record, shared })
        })
    }

    /// True if the keep-duration keeps a record last used at `last_used`:
    /// used strictly after the cut-off (never used records never are).
    pub fn is_recent(&self, last_used: Option<Timestamp>) -> bool {
        matches!((self.cut_off, last_used), (Some(cut_off), Some(t)) if t > cut_off)
    }

    /// [`RuleContext::verdict`] from a record's facts, with `matches`
    /// evaluating the rule's filter on the record (called only when the
    /// other checks pass).
    pub fn verdict_with(&self, facts: &Facts, matches: impl FnOnce() -> bool) -> Verdict {
        if facts.in_use {
            return Verdict::InUse;
        }
        if !self.rule.all {
            if let Some(class) = facts.protection {
                return Verdict::Protected(class);
            }
            if facts.shared {
                return Verdict::Protected(Protection::Shared);
            }
        }
        if facts.recent {
            return Verdict::Recent;
        }
        if !matches() {
            return Verdict::Filtered;
        }
        Verdict::Eligible
    }

    /// Why `record` (not deleted) stays after this rule, the last that ran.
    /// `children` is the number of parent links to it from remaining records.
    pub fn keep_reason(&self, record: &CacheRecord, shared: bool, children: u32) -> KeepReason {
        self.keep_reason_with(record.in_use, children, || self.verdict(record, shared))
    }

    /// [`RuleContext::keep_reason`] with `verdict` giving the record's
    /// [`RuleContext::verdict`] (called only when needed).
    pub fn keep_reason_with(
        &self,
        in_use: bool,
        children: u32,
        verdict: impl FnOnce() -> Verdict,
    ) -> KeepReason {
        let rule = self.index;
        if in_use {
            return KeepReason::InUse { rule };
        }
        if children > 0 {
            return KeepReason::ChildrenRemain { rule, children };
        }
        match verdict() {
            Verdict::Protected(class) => KeepReason::Protected { rule, class },
            Verdict::Recent => KeepReason::Recent { rule },
            Verdict::Filtered => KeepReason::Filtered { rule },
            // A candidate without children that survived: only a rule that
            // stopped at its target leaves one behind.
            Verdict::Eligible | Verdict::InUse => KeepReason::TargetReached { rule },
        }
    }
}

/// What the fixed checks read of a record, besides the filter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub in_use: bool,
    /// The type's protection: internal and frontend records need `all`.
    pub protection: Option<Protection>,
    /// The propagated shared flag.
    pub shared: bool,
    /// Used after the rule's cut-off ([`RuleContext::is_recent`]).
    pub recent: bool,
}

/// The protection a record type has from rules without `all`.
pub(crate) fn protection(record_type: &RecordType) -> Option<Protection> {
    match record_type {
        RecordType::Internal => Some(Protection::Internal),
        RecordType::Frontend => Some(Protection::Frontend),
        _ => None,
    }
}

/// A prune candidate as BuildKit's filter adaptor sees it (spec 2.4 table):
/// in-use and parents are never populated for candidates, and only the first
/// element of a field path counts.
pub(crate) struct CandidateFields<'a> {
    pub record: &'a CacheRecord,
    pub shared: bool,
}

impl Fields for CandidateFields<'_> {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        let r = self.record;
        let flag = |present: bool| present.then_some(Cow::Borrowed(""));
        match path.first().map(String::as_str)? {
            "id" => (!r.id.as_str().is_empty()).then_some(Cow::Borrowed(r.id.as_str())),
            "type" => Some(Cow::Borrowed(r.record_type.as_str())),
            "description" => (!r.description.is_empty()).then_some(Cow::Borrowed(&r.description)),
            "mutable" => flag(r.mutable),
            "immutable" => flag(!r.mutable),
            "shared" => flag(self.shared),
            "private" => flag(!self.shared),
            // "inuse" and "parents" exist in the adaptor but are never set for
            // prune candidates; every other name is absent.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(reserved: i64, max_used: i64, min_free: i64) -> Rule {
        Rule {
            reserved_space: reserved,
            max_used_space: max_used,
            min_free_space: min_free,
            ..Rule::default()
        }
    }

    /// Every case of buildkit cache/manager_test.go `TestCalculateKeepBytes`
    /// @ 73ed682: (name, total, free, rule, expected keep-bytes). The disk's
    /// free bytes are passed as the test passes them, even when the rule has
    /// no minFreeSpace (a negative excess changes nothing).
    #[test]
    fn keep_bytes_table() {
        let cases: &[(&str, i64, i64, Rule, i64)] = &[
            ("empty", 1000, 9000, rule(0, 0, 0), 0),
            ("only buildkit max", 1000, 9000, rule(0, 2000, 0), 2000),
            ("only buildkit free", 7000, 3000, rule(0, 0, 5000), 5000),
            (
                "only buildkit free with min",
                7000,
                3000,
                rule(6000, 0, 5000),
                6000,
            ),
            (
                "only buildkit free all",
                7000,
                3000,
                rule(2000, 4000, 5000),
                4000,
            ),
            ("mixed max", 4000, 2000, rule(0, 2000, 0), 2000),
            ("mixed free", 4000, 2000, rule(0, 0, 5000), 1000),
            ("mixed free with min", 4000, 2000, rule(2000, 0, 5000), 2000),
            ("mixed free all", 4000, 2000, rule(2000, 4000, 5000), 2000),
        ];
        for (name, total, free, r, want) in cases {
            assert_eq!(calculate_keep_bytes(*total, *free, r), *want, "{name}");
        }
    }

    #[test]
    fn keep_bytes_negative_values() {
        // A negative result is lifted to reservedSpace (0 = no cap).
        assert_eq!(calculate_keep_bytes(100, 0, &rule(0, 0, 1000)), 0);
        assert_eq!(calculate_keep_bytes(100, 0, &rule(5, 0, 1000)), 5);
        // Negative limits from the API flow through unchanged.
        assert_eq!(calculate_keep_bytes(100, 0, &rule(-10, -5, 0)), -5);
        assert_eq!(calculate_keep_bytes(100, 50, &rule(0, 0, -1)), 100);
        // Overflow wraps as in Go: an excess that overflows is negative.
        assert_eq!(calculate_keep_bytes(7, -1, &rule(0, 0, i64::MAX)), 7);
        // total - excess wraps around too.
        assert_eq!(
            calculate_keep_bytes(i64::MIN + 5, 0, &rule(0, 0, 10)),
            i64::MAX - 4
        );
    }

    #[test]
    fn cut_off_negates_like_go() {
        let now = Timestamp::from_unix_secs(1_000);
        assert_eq!(
            cut_off(now, Duration::from_secs(10)),
            Timestamp::from_unix_secs(990)
        );
        assert_eq!(
            cut_off(now, Duration::from_secs(-10)),
            Timestamp::from_unix_secs(1_010)
        );
        // -MIN == MIN in two's complement.
        assert_eq!(cut_off(now, Duration::MIN), now.add(Duration::MIN));
    }

    #[test]
    fn adaptor_fields() {
        let mut r = CacheRecord::new("abc", 1);
        r.description = "desc".into();
        let f = CandidateFields {
            record: &r,
            shared: true,
        };
        let get = |name: &str| f.field(&[name.to_owned()]).map(|c| c.into_owned());
        assert_eq!(get("id").as_deref(), Some("abc"));
        assert_eq!(get("type").as_deref(), Some("regular"));
        assert_eq!(get("description").as_deref(), Some("desc"));
        assert_eq!(get("immutable").as_deref(), Some(""));
        assert_eq!(get("mutable"), None);
        assert_eq!(get("shared").as_deref(), Some(""));
        assert_eq!(get("private"), None);
        assert_eq!(get("inuse"), None);
        assert_eq!(get("parents"), None);
        assert_eq!(get("parent"), None);
        r.description.clear();
        let f = CandidateFields {
            record: &r,
            shared: false,
        };
        assert_eq!(f.field(&["description".to_owned()]), None);
        assert_eq!(f.field(&["private".to_owned()]).as_deref(), Some(""));
    }
}
