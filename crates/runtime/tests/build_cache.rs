//! The build-cache collector against the in-memory engine: exactness
//! without faults, re-planning on refusals, dry runs, failures.

use std::sync::Mutex;

use reclaim_model::{DiskStats, Duration, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{self, CacheRecord, KeepReason, RecordType, Snapshot};
use reclaim_runtime::conformance::check_accounting;
use reclaim_runtime::memory::{Failure, Fault, Target};
use reclaim_runtime::{
    BuildCacheCollector, CollectorKind, ItemKind, ManualClock, MemoryRuntime, NoopObserver,
    Observer, Outcome, Reason, Report, ReportDeletion, ReportError, RunStatus, Skip, SkipReason,
    block_on,
};

fn day(d: u32) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("2024-05-{d:02}T00:00:00Z")).unwrap()
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2024-06-01T00:00:00Z").unwrap()
}

/// The worked example of the BuildKit spec (section 5).
fn worked_example() -> (Vec<CacheRecord>, Vec<Rule>) {
    let rec = |id: &str, ty: RecordType, size, last: Option<Timestamp>, usage, parents: &[&str]| {
        let mut r = CacheRecord::new(id, size);
        r.record_type = ty;
        r.last_used_at = last;
        r.usage_count = usage;
        r.parents = parents.iter().map(Id::new).collect();
        r
    };
    let records = vec![
        rec("a", RecordType::ExecCachemount, 600, Some(day(10)), 2, &[]),
        rec("b", RecordType::ExecCachemount, 500, Some(day(30)), 4, &[]),
        rec("c", RecordType::Regular, 1200, Some(day(1)), 1, &[]),
        rec("d", RecordType::Regular, 900, None, 0, &[]),
        rec("e", RecordType::Regular, 400, Some(day(20)), 3, &["c"]),
        rec(
            "f",
            RecordType::Internal,
            300,
            Some(day(1).sub(Duration::from_hours(30 * 24))),
            1,
            &[],
        ),
    ];
    let rules = vec![
        Rule {
            filter: vec!["type==exec.cachemount".into()],
            keep_duration: Duration::from_hours(7 * 24),
            max_used_space: 1024,
            ..Rule::default()
        },
        Rule {
            filter: vec![String::new()],
            reserved_space: 1024,
            max_used_space: 2048,
            ..Rule::default()
        },
    ];
    (records, rules)
}

fn engine(records: &[CacheRecord]) -> MemoryRuntime {
    let mut rt = MemoryRuntime::new(1 << 30);
    for r in records {
        rt.state_mut().add_record(r.clone()).unwrap();
    }
    rt.state_mut().record_journal(true);
    rt
}

fn removed(report: &Report) -> Vec<&str> {
    report.removed_ids().map(Id::as_str).collect()
}

fn run(gc: &BuildCacheCollector, rt: &MemoryRuntime) -> Report {
    let clock = ManualClock::new(now());
    let report = block_on(gc.run(rt, &clock, &NoopObserver));
    check_accounting(&report);
    report
}

#[test]
fn without_faults_the_run_is_the_plan() {
    let (records, rules) = worked_example();
    let rt = engine(&records);
    let report = run(&BuildCacheCollector::new(rules.clone()), &rt);
    assert_eq!(removed(&report), ["a", "d", "e"]);
    assert_eq!(report.bytes_freed, 1900);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.replans, 0);
    assert_eq!(report.collector, CollectorKind::BuildCache);

    // Reasons, passes and skips are the planner's.
    let plan = prune::plan(
        &Snapshot::new(records.clone()).unwrap(),
        &rules,
        DiskStats::default(),
        now(),
    );
    for (d, p) in report.deletions.iter().zip(&plan.deletions) {
        assert_eq!(d.id, p.id);
        assert_eq!(d.pass, p.rule);
        assert_eq!(
            d.reason,
            Reason::BuildCache {
                rule: p.rule,
                reason: p.reason
            }
        );
        assert_eq!(
            d.outcome,
            Outcome::Removed {
                reclaimed: Some(p.bytes)
            }
        );
    }
    for (pass, rule) in report.passes.iter().zip(&plan.rules) {
        assert_eq!(pass.bytes_freed, rule.bytes_freed);
        assert_eq!(pass.keep, Some(rule.keep));
    }
    assert_eq!(report.passes[0].name, "rule 0");
    let skipped: Vec<(&str, SkipReason)> = report
        .skips
        .iter()
        .map(|s| (s.id.as_str(), s.reason.clone()))
        .collect();
    let expected: Vec<(&str, SkipReason)> = plan
        .kept
        .iter()
        .map(|k| (k.id.as_str(), SkipReason::BuildCache(k.reason)))
        .collect();
    assert_eq!(skipped, expected);
    let mut left: Vec<String> = rt.lock().records().map(|r| r.id.to_string()).collect();
    left.sort();
    assert_eq!(left, ["b", "c", "f"]);
}

#[test]
fn a_refused_record_is_held_out_and_the_rule_is_re_planned() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    // d becomes in use between the snapshot and its removal.
    rt.state_mut().inject(Fault::UseBeforeRemoval {
        target: Target::CacheRecord("d".into()),
    });
    let report = run(&BuildCacheCollector::new(rules), &rt);
    // Re-planned from rule 1 over a, d (held, counted) gone/held: total
    // 3300, keep 2048. Candidates b, e: e scores 2/3 and goes (2900); then
    // c is free of children and scores 2/3 against b's 4/3 (1700 < 2048).
    assert_eq!(removed(&report), ["a", "e", "c"]);
    assert_eq!(report.replans, 1);
    assert_eq!(report.bytes_freed, 600 + 400 + 1200);
    let d = report
        .deletions
        .iter()
        .find(|d| d.id.as_str() == "d")
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::InUse { .. }),
        "{:?}",
        d.outcome
    );
    assert_eq!(d.pass, 1);
    // Refusals are not errors, and the refused record is not a skip.
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(report.skips.iter().all(|s| s.id.as_str() != "d"));
    // Kept reasons of the re-planned rule carry absolute rule indexes.
    let b = report.skips.iter().find(|s| s.id.as_str() == "b").unwrap();
    assert_eq!(
        b.reason,
        SkipReason::BuildCache(KeepReason::TargetReached { rule: 1 })
    );
    // Each record was asked for once.
    let journal = rt.state_mut().take_journal();
    let mut asked: Vec<&str> = journal.iter().filter_map(|e| e.target.as_deref()).collect();
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(asked.len(), 4);
    assert!(rt.state_mut().has_record("d"));
}

#[test]
fn transient_failures_are_reported_and_the_run_continues() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::CacheRecord("a".into()),
        failure: Failure::Transient,
        times: 1,
    });
    let report = run(&BuildCacheCollector::new(rules), &rt);
    // a failed; rule 0 re-planned has no other candidate; rule 1 deletes
    // from a total that still counts a: 3900 >= 2048: d, e, then c.
    assert_eq!(removed(&report), ["d", "e", "c"]);
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].call, "RemoveCacheRecord");
    assert_eq!(report.errors[0].target.as_deref(), Some("a"));
    assert!(!report.errors[0].fatal);
    assert!(rt.state_mut().has_record("a"));
}

#[test]
fn a_fatal_failure_stops_the_run() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::CacheRecord("d".into()),
        failure: Failure::Fatal,
        times: 1,
    });
    let report = run(&BuildCacheCollector::new(rules), &rt);
    assert_eq!(removed(&report), ["a"]);
    assert_eq!(report.status, RunStatus::Aborted);
    let outcomes: Vec<(&str, &str)> = report
        .deletions
        .iter()
        .map(|d| (d.id.as_str(), d.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("a", "removed"), ("d", "fatal"), ("e", "not_attempted")]
    );
    assert!(report.errors[0].fatal);
    assert!(rt.state_mut().has_record("e"));
}

#[test]
fn repeated_transient_failures_give_up() {
    let records: Vec<CacheRecord> = (0..20)
        .map(|i| CacheRecord::new(format!("r{i:02}"), 10))
        .collect();
    let mut rt = engine(&records);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::Any,
        failure: Failure::Transient,
        times: 1000,
    });
    let mut gc = BuildCacheCollector::new(vec![Rule::default()]);
    gc.transient_limit(3);
    let report = run(&gc, &rt);
    assert_eq!(report.status, RunStatus::Aborted);
    let attempted = report
        .deletions
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::Transient { .. }))
        .count();
    assert_eq!(attempted, 3);
    assert_eq!(report.replans, 2);
    assert!(
        report
            .errors
            .last()
            .unwrap()
            .message
            .contains("3 transient failures in a row")
    );
    assert_eq!(rt.state_mut().record_count(), 20);
}

#[test]
fn a_failed_listing_aborts_without_removing() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    rt.state_mut().inject(Fault::Outage { until: now() });
    let report = run(&BuildCacheCollector::new(rules), &rt);
    assert_eq!(report.status, RunStatus::Aborted);
    assert!(report.deletions.is_empty());
    assert_eq!(report.errors[0].call, "ListCacheRecords");
    assert_eq!(rt.state_mut().record_count(), 6);
}

#[test]
fn a_dry_run_plans_and_removes_nothing() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    let mut gc = BuildCacheCollector::new(rules);
    gc.dry_run(true);
    let report = run(&gc, &rt);
    assert!(report.dry_run);
    assert_eq!(
        report.planned_ids().map(Id::as_str).collect::<Vec<_>>(),
        ["a", "d", "e"]
    );
    assert_eq!(report.bytes_freed, 0);
    assert_eq!(rt.state_mut().record_count(), 6);
    let removals = rt
        .state_mut()
        .journal()
        .iter()
        .filter(|e| e.target.is_some())
        .count();
    assert_eq!(removals, 0, "a dry run makes no removal call");
}

#[test]
fn min_free_space_rules_read_the_disk_again_after_a_refusal() {
    // A 10 000-byte disk holding 9 000 bytes of cache: min-free 5 000 makes
    // keep-bytes 9 000 - (5 000 - 1 000) = 5 000, and the strict stop test
    // (total < 5 000) takes five records. r2 is refused after r0 and r1 went:
    // the re-plan reads total 7 000 and free 3 000, so keep-bytes stays
    // 5 000 and r3..r5 go. (With the stale free bytes it would be 3 000, and
    // r6 and r7 would go too.)
    let records: Vec<CacheRecord> = (0..9)
        .map(|i| {
            let mut r = CacheRecord::new(format!("r{i}"), 1000);
            r.last_used_at = Some(day(1 + i));
            r.usage_count = 1;
            r
        })
        .collect();
    let mut rt = engine(&records);
    rt.state_mut().set_capacity(10_000);
    rt.state_mut().inject(Fault::UseBeforeRemoval {
        target: Target::CacheRecord("r2".into()),
    });
    let rule = Rule {
        min_free_space: 5000,
        ..Rule::default()
    };
    let report = run(&BuildCacheCollector::new(vec![rule]), &rt);
    assert_eq!(removed(&report), ["r0", "r1", "r3", "r4", "r5"]);
    assert_eq!(rt.state_mut().disk_stats().free, 6000);
    let keep = report.passes[0].keep.unwrap();
    assert_eq!((keep.total, keep.free, keep.keep_bytes), (7000, 3000, 5000));
}

#[test]
fn alternative_orderings_are_used() {
    let (records, rules) = worked_example();
    let rt = engine(&records);
    let mut gc = BuildCacheCollector::new(rules);
    gc.ordering(prune::Ordering::LargestFirst);
    let report = run(&gc, &rt);
    // Rule 1 candidates b (500), d (900), e (400): largest first takes d
    // (2400), then b (1900 < 2048).
    assert_eq!(removed(&report), ["a", "d", "b"]);
    assert!(matches!(
        report.deletions[1].reason,
        Reason::BuildCache {
            reason: prune::DeletionReason::Ordered { .. },
            ..
        }
    ));
}

#[test]
fn skips_can_be_counted_without_listing_them() {
    let (records, rules) = worked_example();
    let rt = engine(&records);
    let mut gc = BuildCacheCollector::new(rules);
    gc.itemize_skips(false);
    let report = run(&gc, &rt);
    assert!(report.skips.is_empty());
    assert_eq!(report.skipped, 3);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn run_started(&self, collector: CollectorKind, dry_run: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {collector} {dry_run}"));
    }
    fn deletion(&self, _: CollectorKind, d: &ReportDeletion) {
        self.0
            .lock()
            .unwrap()
            .push(format!("delete {} {}", d.id, d.outcome.as_str()));
    }
    fn skip(&self, _: CollectorKind, s: &Skip) {
        self.0.lock().unwrap().push(format!("skip {}", s.id));
    }
    fn error(&self, _: CollectorKind, e: &ReportError) {
        self.0.lock().unwrap().push(format!("error {}", e.call));
    }
    fn run_finished(&self, report: &Report) {
        self.0
            .lock()
            .unwrap()
            .push(format!("end {}", report.bytes_freed));
    }
}

#[test]
fn the_observer_sees_the_run_in_order() {
    let (records, rules) = worked_example();
    let mut rt = engine(&records);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::CacheRecord("e".into()),
        failure: Failure::Transient,
        times: 1,
    });
    let recorder = Recorder::default();
    let clock = ManualClock::new(now());
    let report = block_on(BuildCacheCollector::new(rules).run(&rt, &clock, &recorder));
    let events = recorder.0.into_inner().unwrap();
    assert_eq!(events[0], "start build-cache false");
    assert_eq!(
        events[1..4],
        [
            "delete a removed",
            "delete d removed",
            "error RemoveCacheRecord"
        ]
    );
    assert_eq!(events[4], "delete e transient");
    assert_eq!(
        events.last().unwrap(),
        &format!("end {}", report.bytes_freed)
    );
    assert_eq!(
        events.iter().filter(|e| e.starts_with("skip")).count() as u64,
        report.skipped
    );
    assert!(
        report
            .deletions
            .iter()
            .all(|d| d.item == ItemKind::CacheRecord)
    );
}

#[test]
fn collector_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = MemoryRuntime::new(1);
    let clock = ManualClock::new(now());
    let gc = BuildCacheCollector::new(Vec::new());
    let future = gc.run(&rt, &clock, &NoopObserver);
    assert_send(&future);
    let report = block_on(future);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert!(report.duration.is_zero(), "a manual clock does not move");
}
