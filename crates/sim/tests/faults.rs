//! Replays under engine faults: collectors keep the engine's invariants,
//! report their errors, and carry on; the replay stays deterministic.

mod common;

use common::{SeedGuard, assert_same_text, seed};
use reclaim_model::Timestamp;
use reclaim_runtime::memory::{Failure, Fault, FaultRates, Target};
use reclaim_sim::{KubeletGc, Policy, RunResult, SimBuilder, Trace, Workload};

fn trace(seed: u64) -> Trace {
    Workload::new()
        .days(2.0)
        .seed(seed)
        .disk_total(25 << 30)
        .generate()
        .unwrap()
}

fn run(trace: &Trace, rates: Option<FaultRates>, faults: &[Fault]) -> RunResult {
    let policy =
        Policy::dockerd_default(trace.header().disk_total).with_kubelet(Some(KubeletGc::default()));
    let mut options = SimBuilder::new(policy);
    options.check_invariants(true).fault_rates(rates);
    for f in faults {
        options.inject(f.clone());
    }
    options.build(trace).run()
}

fn errors(result: &RunResult, name: &str) -> u64 {
    result
        .report
        .gc
        .iter()
        .find(|g| g.name == name)
        .map_or(0, |g| g.errors)
}

#[test]
fn random_faults_keep_invariants_and_are_reported() {
    let seed = seed(11);
    let _guard = SeedGuard(seed);
    let trace = trace(seed);
    let clean = run(&trace, None, &[]);
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
    assert_eq!(errors(&clean, "builder-gc/build-cache"), 0);

    let rates = FaultRates {
        seed,
        fatal: 0.01,
        transient: 0.05,
        in_use: 0.05,
    };
    let faulty = run(&trace, Some(rates), &[]);
    // No record held by a running build disappeared, and no record
    // outlived a parent.
    assert!(faulty.violations.is_empty(), "{:?}", faulty.violations);
    let gc = faulty
        .report
        .gc
        .iter()
        .find(|g| g.name == "builder-gc/build-cache")
        .unwrap();
    assert!(gc.errors > 0, "failed removals are reported");
    assert!(gc.aborted > 0, "fatal failures end runs");
    assert!(
        gc.runs_with_removals > gc.aborted,
        "later runs carry on after an aborted one"
    );
    // Refused removals leave more on the disk, never less.
    assert!(faulty.report.bytes_freed > 0);
    assert!(faulty.report.disk.peak_used >= clean.report.disk.peak_used / 2);
    // Faults are drawn from a seeded generator: the same seed, the same run.
    let again = run(&trace, Some(rates), &[]);
    assert_same_text(
        &faulty.report.to_json(),
        &again.report.to_json(),
        "reports under the same faults",
    );
}

#[test]
fn an_outage_fails_runs_until_it_ends() {
    let seed = seed(5);
    let _guard = SeedGuard(seed);
    let trace = trace(seed);
    let start = trace.header().start;
    // The engine is unreachable for the first 12 hours.
    let until = Timestamp::from_unix_secs(start.unix_secs() + 12 * 3600);
    let result = run(&trace, None, &[Fault::Outage { until }]);
    assert!(result.violations.is_empty(), "{:?}", result.violations);
    for name in [
        "builder-gc/build-cache",
        "kubelet/containers",
        "kubelet/images",
    ] {
        let gc = result.report.gc.iter().find(|g| g.name == name).unwrap();
        assert!(gc.aborted > 0, "{name}: runs during the outage abort");
        assert!(gc.errors >= gc.aborted, "{name}: and say why");
        assert!(gc.runs > gc.aborted, "{name}: runs resume afterwards");
    }
    // Nothing is removed while the engine is away: the build cache only
    // grows during the first 12 hours (72 samples of 10 minutes), where
    // without the outage it shrinks at some point.
    let shrinks = |r: &RunResult| r.report.series.cache[..=72].windows(2).any(|w| w[1] < w[0]);
    assert!(
        !shrinks(&result),
        "a collector removed something during the outage"
    );
    assert!(
        shrinks(&run(&trace, None, &[])),
        "the clean run collects early"
    );
}

#[test]
fn a_container_stuck_in_removing_is_never_removed() {
    let seed = seed(9);
    let _guard = SeedGuard(seed);
    let trace = trace(seed);
    // The first CI container of the trace (after the dind daemon).
    let text = trace.to_json_lines();
    let container = text
        .lines()
        .filter(|l| l.contains(r#""ev":"container_start""#) && !l.contains(r#""pod":"dind""#))
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v["container"].as_str()?.to_owned())
        })
        .expect("a CI container");
    let fault = Fault::StuckRemoving {
        container: container.as_str().into(),
    };
    let mut result = run(&trace, None, &[fault]);
    assert!(result.violations.is_empty(), "{:?}", result.violations);
    assert!(
        result.engine().container(&container).is_some(),
        "the stuck container is still there"
    );
    assert!(errors(&result, "kubelet/containers") > 0);
    // Every other container of deleted pods went.
    let clean = run(&trace, None, &[]);
    let gc = |r: &RunResult| {
        r.report
            .gc
            .iter()
            .find(|g| g.name == "kubelet/containers")
            .unwrap()
            .removed
    };
    assert_eq!(gc(&result) + 1, gc(&clean));
}

#[test]
fn transient_failures_on_one_record_do_not_stop_the_others() {
    let seed = seed(13);
    let _guard = SeedGuard(seed);
    let trace = trace(seed);
    let clean = run(&trace, None, &[]);
    let fault = Fault::FailRemoval {
        target: Target::Any,
        failure: Failure::Transient,
        times: 3,
    };
    let result = run(&trace, None, &[fault]);
    assert!(result.violations.is_empty(), "{:?}", result.violations);
    let failed = errors(&result, "builder-gc/build-cache")
        + errors(&result, "kubelet/containers")
        + errors(&result, "kubelet/images");
    assert!(failed >= 3, "the three failures are reported");
    assert!(result.report.bytes_freed > clean.report.bytes_freed / 2);
}
