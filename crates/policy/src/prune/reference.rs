//! The reference planner: BuildKit's algorithm written out the long way.
//!
//! Every pass rescans every record for candidates and, in gc mode, ranks the
//! candidates from scratch exactly as `sortDeleteRecords` does (sort by
//! last-used and walk, sort by usage count and walk, score). It is
//! quadratic, like upstream, and exists to be obviously right: property
//! tests check the fast planner against it.

use std::collections::BTreeMap;

use reclaim_model::{DiskStats, Id, Timestamp};

use super::core::{GO_ZERO_TIME, RuleContext, Verdict, counted_size, keep_bytes};
use super::plan::{
    Deletion, DeletionReason, KeepReason, Kept, Mode, PrunePlan, RuleOutcome, Score, Stop,
};
use super::record::{CacheRecord, Snapshot};
use crate::Rule;

/// Plans a GC run the slow, obviously correct way. Same contract and same
/// output as [`super::plan`].
pub fn plan_reference(
    snapshot: &Snapshot,
    rules: &[Rule],
    disk: DiskStats,
    now: Timestamp,
) -> PrunePlan {
    let records = snapshot.records();
    let n = records.len();

    // Resolve parent ids; ids that are not in the snapshot are ignored.
    let by_id: BTreeMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = records
        .iter()
        .map(|r| {
            r.parents
                .iter()
                .filter_map(|p| by_id.get(p.as_str()).copied())
                .collect()
        })
        .collect();

    // Shared spreads to every ancestor: repeat until nothing changes.
    let mut shared: Vec<bool> = records.iter().map(|r| r.shared).collect();
    loop {
        let mut changed = false;
        for child in 0..n {
            if shared[child] {
                for &p in &parents[child] {
                    if !shared[p] {
                        shared[p] = true;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }

    let mut deleted = vec![false; n];
    let mut plan = PrunePlan::default();
    let mut last_rule: Option<RuleContext<'_>> = None;

    for (index, rule) in rules.iter().enumerate() {
        let ctx = match RuleContext::new(index, rule, now) {
            Ok(ctx) => ctx,
            Err(err) => {
                plan.error = Some(err);
                break;
            }
        };
        let unshared_total = (0..n)
            .filter(|&r| !deleted[r] && !shared[r])
            .fold(0i64, |sum, r| sum.wrapping_add(counted_size(&records[r])));
        let keep = keep_bytes(rule, unshared_total, disk);
        let mode = if keep.keep_bytes == 0 {
            Mode::Batch
        } else {
            Mode::Ranked
        };
        let first = plan.deletions.len();
        let mut total = keep.total;
        let mut bytes_freed = 0u64;
        let mut wave = 0u32;

        let stop = loop {
            if keep.keep_bytes != 0 && total < keep.keep_bytes {
                break Stop::TargetReached;
            }
            let children = live_children(&parents, &deleted);
            let mut candidates: Vec<usize> = (0..n)
                .filter(|&r| {
                    !deleted[r]
                        && children[r] == 0
                        && ctx.verdict(&records[r], shared[r]) == Verdict::Eligible
                })
                .collect();
            if candidates.is_empty() {
                break Stop::NoCandidates;
            }
            let chosen: Vec<(usize, DeletionReason)> = if mode == Mode::Batch {
                candidates.sort_by(|&a, &b| records[a].id.cmp(&records[b].id));
                candidates
                    .into_iter()
                    .map(|r| (r, DeletionReason::Batch { wave }))
                    .collect()
            } else {
                let (r, score) = lowest_score(records, &candidates);
                vec![(
                    r,
                    DeletionReason::Ranked {
                        total_before: total,
                        score,
                    },
                )]
            };
            for (r, reason) in chosen {
                deleted[r] = true;
                total = total.wrapping_sub(records[r].size as i64);
                bytes_freed = bytes_freed.saturating_add(records[r].size);
                plan.deletions.push(Deletion {
                    id: records[r].id.clone(),
                    rule: index,
                    bytes: records[r].size,
                    reason,
                });
            }
            wave += 1;
        };

        plan.rules.push(RuleOutcome {
            rule: index,
            mode,
            keep,
            cut_off: ctx.cut_off,
            deletions: first..plan.deletions.len(),
            bytes_freed,
            end_total: total,
            stop,
        });
        last_rule = Some(ctx);
    }

    let children = live_children(&parents, &deleted);
    let mut kept: Vec<Kept> = (0..n)
        .filter(|&r| !deleted[r])
        .map(|r| Kept {
            id: records[r].id.clone(),
            reason: match &last_rule {
                None => KeepReason::NoRuleRan,
                Some(ctx) => ctx.keep_reason(&records[r], shared[r], children[r]),
            },
        })
        .collect();
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    plan.kept = kept;
    plan
}

/// For every record, the number of parent links to it from records that are
/// not deleted.
fn live_children(parents: &[Vec<usize>], deleted: &[bool]) -> Vec<u32> {
    let mut children = vec![0u32; parents.len()];
    for (child, ps) in parents.iter().enumerate() {
        if !deleted[child] {
            for &p in ps {
                children[p] += 1;
            }
        }
    }
    children
}

/// BuildKit's `sortDeleteRecords` followed by "take the first": ranks the
/// candidates and returns the one with the lowest score, ties broken by
/// (usage count, last-used with never-used first, id).
fn lowest_score(records: &[CacheRecord], candidates: &[usize]) -> (usize, Score) {
    // Last-used ranks: walk in ascending last-used order (never used first);
    // the counter starts at 1 and steps up at every time later than the
    // largest seen so far, which starts at Go's zero time.
    let mut by_last: Vec<usize> = candidates.to_vec();
    by_last.sort_by_key(|&r| records[r].last_used_at);
    let mut last_rank = BTreeMap::new();
    let mut counter = 1u32;
    let mut latest = GO_ZERO_TIME;
    for &r in &by_last {
        if let Some(t) = records[r].last_used_at
            && t > latest
        {
            latest = t;
            counter += 1;
        }
        last_rank.insert(r, counter);
    }
    let last_max = counter;

    // Usage ranks: the counter starts at 1 with "previous count" 0 and steps
    // up at every count different from the previous one.
    let mut by_usage: Vec<usize> = candidates.to_vec();
    by_usage.sort_by_key(|&r| records[r].usage_count);
    let mut usage_rank = BTreeMap::new();
    let mut counter = 1u32;
    let mut previous = 0u64;
    for &r in &by_usage {
        if records[r].usage_count != previous {
            previous = records[r].usage_count;
            counter += 1;
        }
        usage_rank.insert(r, counter);
    }
    let usage_max = counter;

    let scored = candidates.iter().map(|&r| {
        let (lr, ur) = (last_rank[&r], usage_rank[&r]);
        let score = f64::from(lr) / f64::from(last_max) + f64::from(ur) / f64::from(usage_max);
        (
            r,
            Score {
                score,
                last_used_rank: lr,
                last_used_max: last_max,
                usage_rank: ur,
                usage_max,
            },
        )
    });
    let key = |r: usize, s: &Score| -> (f64, u64, Option<Timestamp>, Id) {
        let rec = &records[r];
        (s.score, rec.usage_count, rec.last_used_at, rec.id.clone())
    };
    scored
        .min_by(|(a, sa), (b, sb)| {
            let (ka, kb) = (key(*a, sa), key(*b, sb));
            ka.0.total_cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(ka.2.cmp(&kb.2))
                .then(ka.3.cmp(&kb.3))
        })
        .expect("called with at least one candidate")
}
