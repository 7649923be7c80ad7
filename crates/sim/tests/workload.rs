//! Sanity of the built-in workload: its shape, and hit ratios that respond
//! to disk pressure the way a cache must.

mod common;

use std::collections::BTreeMap;

use common::{SeedGuard, seed};
use reclaim_policy::prune::Ordering;
use reclaim_sim::trace::TraceEvent;
use reclaim_sim::{KubeletGc, Policy, RunReport, SimBuilder, Trace, Workload};

fn trace(seed: u64, days: f64) -> Trace {
    Workload::new().days(days).seed(seed).generate().unwrap()
}

fn replay(trace: &Trace, policy: Policy, capacity: u64, ordering: Ordering) -> RunReport {
    let mut options = SimBuilder::new(policy.with_kubelet(Some(KubeletGc::default())));
    options
        .capacity(Some(capacity))
        .ordering(ordering)
        .check_invariants(true);
    let result = options.build(trace).run();
    assert!(result.violations.is_empty(), "{:?}", result.violations);
    result.report
}

#[test]
fn the_trace_has_the_documented_shape() {
    let seed = seed(21);
    let _guard = SeedGuard(seed);
    let trace = trace(seed, 14.0);
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut weekday_builds = 0u64;
    let mut weekend_builds = 0u64;
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for event in trace.events() {
        *kinds.entry(event.kind()).or_default() += 1;
        match &event {
            TraceEvent::Step(s) => {
                if let Some(t) = &s.record_type {
                    *types.entry(t.clone()).or_default() += 1;
                }
            }
            TraceEvent::BuildStart(b) => {
                // The trace starts on a Monday.
                let day = b.t / 86_400_000 % 7;
                if day >= 5 {
                    weekend_builds += 1;
                } else {
                    weekday_builds += 1;
                }
            }
            _ => {}
        }
    }
    for t in [
        "source.local",
        "exec.cachemount",
        "source.git.checkout",
        "frontend",
    ] {
        assert!(types.contains_key(t), "no {t} record in {types:?}");
    }
    // Weekends are quiet: per day, far fewer builds than on weekdays.
    let per_weekday = weekday_builds as f64 / 10.0;
    let per_weekend_day = weekend_builds as f64 / 4.0;
    assert!(
        per_weekend_day * 3.0 < per_weekday,
        "{per_weekday} builds per weekday, {per_weekend_day} per weekend day"
    );
    // Every pod started is deleted; every build started ends.
    assert_eq!(kinds["build_start"], kinds["build_end"]);
    assert_eq!(
        kinds["container_start"],
        kinds["container_exit"] + 1,
        "all but dind exit"
    );
    // The rate parameter drives the number of builds.
    let busy = Workload::new()
        .days(14.0)
        .seed(seed)
        .pipelines_per_hour(12.0)
        .generate()
        .unwrap();
    let ratio = busy.build_count() as f64 / trace.build_count() as f64;
    assert!(
        (1.7..2.3).contains(&ratio),
        "twice the rate gave {ratio} times the builds"
    );
}

#[test]
fn hits_are_high_without_pressure_and_fall_on_tight_disks() {
    let seed = seed(4);
    let _guard = SeedGuard(seed);
    let trace = trace(seed, 7.0);
    let disk = |gib: u64| gib << 30;
    // Without collection only first builds miss: the workload's ceiling.
    let none = replay(&trace, Policy::none(), disk(4096), Ordering::BuildKit);
    assert_eq!(none.rebuilds.count, 0);
    assert_eq!(none.steps.misses, none.cold.count);
    assert!(
        none.steps.hit_ratio > 0.75,
        "ceiling {}",
        none.steps.hit_ratio
    );
    // A disk far larger than a week of cache: only dockerd's 48-hour rule
    // for contexts and cache mounts deletes anything a build needs later
    // (after a quiet weekend), so the hit ratio stays at the ceiling.
    let roomy = replay(
        &trace,
        Policy::dockerd_default(disk(4096)),
        disk(4096),
        Ordering::BuildKit,
    );
    assert!(
        roomy.rebuilds.count * 200 < roomy.steps.total,
        "{} rebuilds in {} steps",
        roomy.rebuilds.count,
        roomy.steps.total
    );
    assert!(none.steps.hit_ratio - roomy.steps.hit_ratio < 0.005);
    assert_eq!(roomy.disk.over_capacity_ms, 0);
    // Tighter disks: GC deletes what later builds need.
    let mid = replay(
        &trace,
        Policy::dockerd_default(disk(60)),
        disk(60),
        Ordering::Lru,
    );
    let tight = replay(
        &trace,
        Policy::dockerd_default(disk(25)),
        disk(25),
        Ordering::Lru,
    );
    assert!(mid.rebuilds.count > 0);
    assert!(tight.steps.hit_ratio < mid.steps.hit_ratio);
    assert!(mid.steps.hit_ratio < roomy.steps.hit_ratio);
    assert!(tight.rebuilds.seconds > mid.rebuilds.seconds);
    // Cold misses are a property of the workload, not of the policy.
    assert_eq!(tight.cold.count, roomy.cold.count);
    assert_eq!(tight.steps.misses, tight.cold.count + tight.rebuilds.count);
    // Without any GC a small disk overflows and builds would fail.
    let overflow = replay(&trace, Policy::none(), disk(25), Ordering::BuildKit);
    assert!(overflow.disk.over_capacity_ms > 0);
    assert!(overflow.builds.would_fail > 0);
    assert!(
        !overflow.gc.iter().any(|g| g.name.ends_with("build-cache")),
        "only the kubelet collects: {:?}",
        overflow.gc
    );
}

#[test]
fn cron_prunes_run_on_their_schedule() {
    let seed = seed(8);
    let _guard = SeedGuard(seed);
    let trace = trace(seed, 9.0);
    let start = trace.header().start;
    let disk = 200u64 << 30;
    let weekly = replay(
        &trace,
        Policy::weekly_system_prune(start),
        disk,
        Ordering::BuildKit,
    );
    let runs =
        |r: &RunReport, name: &str| r.gc.iter().find(|g| g.name == name).map_or(0, |g| g.runs);
    // One Sunday in nine days from a Monday.
    assert_eq!(runs(&weekly, "cron:system-prune/build-cache"), 1);
    assert_eq!(runs(&weekly, "cron:system-prune/images"), 1);
    let daily = replay(
        &trace,
        Policy::daily_buildx_prune(start),
        disk,
        Ordering::BuildKit,
    );
    assert_eq!(runs(&daily, "cron:buildx-prune/build-cache"), 9);
    // A week of `until=168h` keeps everything used in the last week: in
    // nine days it deletes only records unused since the first two days.
    let freed_daily = daily.gc.iter().map(|g| g.bytes_freed).sum::<u64>();
    assert!(freed_daily < weekly.bytes_freed);
}
