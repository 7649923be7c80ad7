//! BuildKit's build-cache GC against an engine.

use std::collections::{BTreeSet, HashSet};

use reclaim_model::{DiskStats, Id};
use reclaim_policy::Rule;
use reclaim_policy::prune::{
    CacheRecord, Deletion, KeepReason, Ordering, PrunePlan, Snapshot, plan_with,
};

use super::RunState;
use crate::clock::Clock;
use crate::observer::Observer;
use crate::report::{
    CollectorKind, ItemKind, Outcome, PassReport, Reason, Report, ReportDeletion, Skip, SkipReason,
};
use crate::store::{BuildCacheStore, RemoveOutcome};

/// BuildKit's GC over an engine's build cache: the whole policy, every
/// rule, one record at a time in the planner's order.
///
/// A run lists the records, plans every rule with
/// [`reclaim_policy::prune::plan_with`] (BuildKit's ranking unless another
/// [`Ordering`] is set), and removes the planned records one by one. When
/// the engine refuses one (in use, a conflict, or a transient failure),
/// the collector marks it unavailable for the rest of the run, lists the
/// records again and re-plans the remaining rules, starting with the rule
/// in progress, from that state. A fatal outcome stops the run. A dry run
/// plans and reports what would be removed.
///
/// # Where re-planning differs from upstream
///
/// BuildKit never re-plans; it holds its records locked while it prunes.
/// Re-planning starts the rule in progress afresh, so:
///
/// - its start total is recomputed from the records that remain, where
///   upstream keeps a running total. Under `all`, upstream subtracts deleted
///   shared records from the running total although they never counted in
///   it, so it can stop earlier than a re-planned rule does;
/// - its keep-bytes is recomputed: identical for `reserved_space` and
///   `max_used_space`, and for `min_free_space` as long as the disk's free
///   bytes grew by what was deleted (the statistics are read again);
/// - batch-mode waves restart at 0.
///
/// Without refusals the run is exactly the plan, which is exactly upstream.
///
/// ```
/// use reclaim_model::Timestamp;
/// use reclaim_policy::Rule;
/// use reclaim_policy::prune::CacheRecord;
/// use reclaim_runtime::{BuildCacheCollector, ManualClock, MemoryRuntime, NoopObserver, block_on};
///
/// let mut rt = MemoryRuntime::new(1 << 30);
/// for (id, size) in [("a", 600), ("b", 500)] {
///     rt.state_mut().add_record(CacheRecord::new(id, size))?;
/// }
/// rt.state_mut().use_record("b", Timestamp::from_unix_secs(50));
/// let collector = BuildCacheCollector::new(vec![Rule { max_used_space: 1000, ..Rule::default() }]);
/// let clock = ManualClock::new(Timestamp::from_unix_secs(100));
/// let report = block_on(collector.run(&rt, &clock, &NoopObserver));
/// assert_eq!(report.removed_ids().map(|id| id.as_str()).collect::<Vec<_>>(), ["a"]);
/// assert_eq!(report.bytes_freed, 600);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct BuildCacheCollector {
    rules: Vec<Rule>,
    ordering: Ordering,
    dry_run: bool,
    itemize_skips: bool,
    transient_limit: u32,
}

impl BuildCacheCollector {
    /// A collector applying `rules` in order (for dockerd's, see
    /// [`reclaim_policy::config::effective_rules`]).
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            rules,
            ordering: Ordering::BuildKit,
            dry_run: false,
            itemize_skips: true,
            transient_limit: 5,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Replaces the rules (a reloaded policy).
    pub fn set_rules(&mut self, rules: Vec<Rule>) -> &mut Self {
        self.rules = rules;
        self
    }

    /// Sets the order in which gc-mode rules delete. Default
    /// [`Ordering::BuildKit`], the only one that reproduces upstream.
    pub fn ordering(&mut self, ordering: Ordering) -> &mut Self {
        self.ordering = ordering;
        self
    }

    /// Plans without removing anything. Default `false`.
    pub fn dry_run(&mut self, dry_run: bool) -> &mut Self {
        self.dry_run = dry_run;
        self
    }

    /// Whether the report lists every kept record (default `true`); the
    /// count is always there.
    pub fn itemize_skips(&mut self, itemize: bool) -> &mut Self {
        self.itemize_skips = itemize;
        self
    }

    /// Stops the run after this many transient failures in a row (the
    /// engine is probably gone). Default 5; 0 means never.
    pub fn transient_limit(&mut self, limit: u32) -> &mut Self {
        self.transient_limit = limit;
        self
    }

    /// One GC run against `store` at `clock`'s time.
    pub async fn run<S, C, O>(&self, store: &S, clock: &C, observer: &O) -> Report
    where
        S: BuildCacheStore + ?Sized,
        C: Clock + ?Sized,
        O: Observer + ?Sized,
    {
        let mut run = RunState::start(
            CollectorKind::BuildCache,
            self.dry_run,
            self.itemize_skips,
            clock,
            observer,
        );
        run.report.passes = (0..self.rules.len())
            .map(|i| PassReport::named(format!("rule {i}")))
            .collect();
        let now = run.now();
        let needs_disk = self.rules.iter().any(|r| r.min_free_space != 0);

        let records = match store.cache_records().await {
            Ok(records) => records,
            Err(e) => {
                run.error("ListCacheRecords", None, e.to_string(), true);
                return run.finish(clock);
            }
        };
        let mut disk = DiskStats::default();
        if needs_disk {
            match store.cache_disk_stats().await {
                Ok(d) => disk = d,
                Err(e) => {
                    run.error("CacheDiskStats", None, e.to_string(), true);
                    return run.finish(clock);
                }
            }
        }
        let mut snapshot = match Snapshot::new(records) {
            Ok(s) => s,
            Err(e) => {
                run.error("ListCacheRecords", None, e.to_string(), true);
                return run.finish(clock);
            }
        };
        let mut plan = plan_with(&snapshot, &self.rules, disk, now, self.ordering);
        let mut offset = 0;
        note_rules(&mut run, &plan, offset);

        if self.dry_run {
            for d in &plan.deletions {
                run.deletion(deletion(d, offset, Outcome::Planned));
            }
            finish_plan(&mut run, &plan, offset, &BTreeSet::new());
            return run.finish(clock);
        }

        let mut refused: BTreeSet<Id> = BTreeSet::new();
        let mut gone: HashSet<Id> = HashSet::new();
        let mut streak = 0u32;
        let mut i = 0;
        while let Some(d) = plan.deletions.get(i) {
            let outcome = store.remove_cache_record(&d.id).await;
            let rule = d.rule + offset;
            match &outcome {
                RemoveOutcome::Removed { .. } | RemoveOutcome::AlreadyGone => {
                    streak = 0;
                    gone.insert(d.id.clone());
                    run.deletion(deletion(d, offset, outcome.into()));
                    i += 1;
                    continue;
                }
                RemoveOutcome::Fatal { message } => {
                    run.error(
                        "RemoveCacheRecord",
                        Some(d.id.to_string()),
                        message.clone(),
                        true,
                    );
                    run.deletion(deletion(d, offset, outcome.into()));
                    for rest in &plan.deletions[i + 1..] {
                        run.deletion(deletion(rest, offset, Outcome::NotAttempted));
                    }
                    break;
                }
                RemoveOutcome::Transient { message } => {
                    streak += 1;
                    run.error(
                        "RemoveCacheRecord",
                        Some(d.id.to_string()),
                        message.clone(),
                        false,
                    );
                }
                // In use, or an outcome this collector does not know: the
                // record stays, and is not tried again in this run.
                _ => streak = 0,
            }
            refused.insert(d.id.clone());
            run.deletion(deletion(d, offset, outcome.into()));
            if self.transient_limit > 0 && streak >= self.transient_limit {
                run.error(
                    "RemoveCacheRecord",
                    None,
                    format!(
                        "giving up after {streak} transient failures in a row; the rest waits for the next run"
                    ),
                    true,
                );
                for rest in &plan.deletions[i + 1..] {
                    run.deletion(deletion(rest, offset, Outcome::NotAttempted));
                }
                break;
            }

            // Re-plan the remaining rules from the engine's current state,
            // with every refused record held out.
            let records = match store.cache_records().await {
                Ok(records) => records,
                Err(e) => {
                    // Fall back on what this run knows.
                    run.error("ListCacheRecords", None, e.to_string(), false);
                    snapshot.records().to_vec()
                }
            };
            if needs_disk {
                match store.cache_disk_stats().await {
                    Ok(d) => disk = d,
                    Err(e) => {
                        run.error("CacheDiskStats", None, e.to_string(), false);
                        let freed = run.report.bytes_freed;
                        disk.free = disk.free.saturating_add(freed);
                        disk.available = disk.available.saturating_add(freed);
                    }
                }
            }
            snapshot = match Snapshot::new(hold_out(records, &gone, &refused)) {
                Ok(s) => s,
                Err(e) => {
                    run.error("ListCacheRecords", None, e.to_string(), true);
                    return run.finish(clock);
                }
            };
            plan = plan_with(&snapshot, &self.rules[rule..], disk, now, self.ordering);
            offset = rule;
            i = 0;
            run.report.replans += 1;
            note_rules(&mut run, &plan, offset);
        }
        finish_plan(&mut run, &plan, offset, &refused);
        run.finish(clock)
    }
}

/// The records as the planner should see them after refusals: without
/// those already removed, and with the refused ones held out of candidacy.
///
/// A refused record is marked in use and immutable: in use keeps it from
/// being a candidate (for every rule, with any filter), and immutable keeps
/// its size counted in the rule totals exactly as before (an in-use mutable
/// record would count 0).
fn hold_out(
    mut records: Vec<CacheRecord>,
    gone: &HashSet<Id>,
    refused: &BTreeSet<Id>,
) -> Vec<CacheRecord> {
    records.retain(|r| !gone.contains(&r.id));
    for r in &mut records {
        if refused.contains(&r.id) {
            if !r.in_use {
                r.mutable = false;
            }
            r.in_use = true;
        }
    }
    records
}

fn deletion(d: &Deletion, offset: usize, outcome: Outcome) -> ReportDeletion {
    ReportDeletion {
        item: ItemKind::CacheRecord,
        id: d.id.clone(),
        pass: d.rule + offset,
        bytes: Some(d.bytes),
        reason: Reason::BuildCache {
            rule: d.rule + offset,
            reason: d.reason,
        },
        outcome,
    }
}

/// Records the keep-bytes arithmetic of every rule the plan ran.
fn note_rules<O: Observer + ?Sized>(run: &mut RunState<'_, O>, plan: &PrunePlan, offset: usize) {
    for outcome in &plan.rules {
        if let Some(pass) = run.report.passes.get_mut(outcome.rule + offset) {
            pass.keep = Some(outcome.keep);
        }
    }
}

/// Reports the final plan's kept records (minus the refused ones, which are
/// among the deletions) and its error.
fn finish_plan<O: Observer + ?Sized>(
    run: &mut RunState<'_, O>,
    plan: &PrunePlan,
    offset: usize,
    refused: &BTreeSet<Id>,
) {
    for k in &plan.kept {
        if refused.contains(&k.id) {
            continue;
        }
        run.skip(Skip {
            item: ItemKind::CacheRecord,
            id: k.id.clone(),
            bytes: None,
            reason: SkipReason::BuildCache(shift(k.reason, offset)),
        });
    }
    if let Some(e) = &plan.error {
        run.error(
            "Plan",
            Some(format!("rule {}", e.rule() + offset)),
            e.to_string(),
            false,
        );
    }
}

/// A keep reason of a plan over `rules[offset..]`, with its rule index
/// made absolute.
fn shift(reason: KeepReason, offset: usize) -> KeepReason {
    match reason {
        KeepReason::ChildrenRemain { rule, children } => KeepReason::ChildrenRemain {
            rule: rule + offset,
            children,
        },
        KeepReason::Filtered { rule } => KeepReason::Filtered {
            rule: rule + offset,
        },
        KeepReason::InUse { rule } => KeepReason::InUse {
            rule: rule + offset,
        },
        KeepReason::Protected { rule, class } => KeepReason::Protected {
            rule: rule + offset,
            class,
        },
        KeepReason::Recent { rule } => KeepReason::Recent {
            rule: rule + offset,
        },
        KeepReason::TargetReached { rule } => KeepReason::TargetReached {
            rule: rule + offset,
        },
        other => other,
    }
}
