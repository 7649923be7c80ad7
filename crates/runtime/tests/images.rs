//! The kubelet image collector against the in-memory engine: records kept
//! between runs and restored, failures, refusals, keep predicates.

use reclaim_kubelet::{ContainerState, ImageKeepReason, ImagePass, ImagePolicy};
use reclaim_model::{Duration, Id, Timestamp};
use reclaim_runtime::conformance::check_accounting;
use reclaim_runtime::memory::{Failure, Fault, Target};
use reclaim_runtime::{
    ContainerInfo, ImageGcCollector, ImageGcMode, ImageGcState, ImageInfo, ManualClock,
    MemoryRuntime, NoopObserver, Outcome, Reason, Report, RunStatus, SkipReason, block_on,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000 + secs)
}

fn pull(rt: &mut MemoryRuntime, name: &str, size: u64) {
    let mut image = ImageInfo::new(format!("sha256:{name}"), size, t(-86_400));
    image.repo_tags = vec![format!("{name}:latest")];
    rt.state_mut().pull_image(image).unwrap();
}

fn policy() -> ImagePolicy {
    ImagePolicy::new(85, 80, Duration::from_secs(120), Duration::ZERO).unwrap()
}

fn run_at(gc: &mut ImageGcCollector, rt: &MemoryRuntime, secs: i64) -> Report {
    let clock = ManualClock::new(t(secs));
    let report = block_on(gc.run(rt, &clock, &NoopObserver));
    check_accounting(&report);
    report
}

fn removed(report: &Report) -> Vec<&str> {
    report.removed_ids().map(Id::as_str).collect()
}

fn skip_reason(report: &Report, id: &str) -> SkipReason {
    report
        .skips
        .iter()
        .find(|s| s.id.as_str() == id)
        .unwrap_or_else(|| panic!("{id} not skipped:\n{report}"))
        .reason
        .clone()
}

/// Images a (300) and b (200) at t=0; b used by a container at t=60 (and
/// its container removed at t=100); c (100) pulled at t=200; then the disk
/// fills (900 of 1000 bytes used).
fn history(gc: &mut ImageGcCollector) -> MemoryRuntime {
    let mut rt = MemoryRuntime::new(1000);
    pull(&mut rt, "a", 300);
    pull(&mut rt, "b", 200);
    let first = run_at(gc, &rt, 0);
    assert!(first.deletions.is_empty());
    assert_eq!(
        skip_reason(&first, "sha256:a"),
        SkipReason::Image(ImageKeepReason::BelowHighThreshold)
    );
    let c = ContainerInfo::new("c1", "app", "sha256:b", ContainerState::Running, t(50));
    rt.state_mut().create_container(c).unwrap();
    let second = run_at(gc, &rt, 60);
    assert_eq!(
        skip_reason(&second, "sha256:b"),
        SkipReason::Image(ImageKeepReason::InUse)
    );
    rt.state_mut().delete_container("c1");
    pull(&mut rt, "c", 100);
    rt.state_mut().set_other_used(300);
    rt.state_mut().record_journal(true);
    rt
}

#[test]
fn records_kept_between_runs_decide_the_eviction_order() {
    let mut gc = ImageGcCollector::new(policy());
    let rt = history(&mut gc);
    let b = gc.state().records.get("sha256:b").unwrap();
    assert_eq!((b.first_detected, b.last_used), (t(0), Some(t(60))));

    let report = run_at(&mut gc, &rt, 300);
    // Usage 90 % >= 85 %: free 1000 * 20 % - 100 = 100 bytes. a was never
    // used: it goes first, and its 300 bytes are enough.
    assert_eq!(removed(&report), ["sha256:a"]);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.passes[1].target, Some(100));
    assert_eq!(report.passes[1].bytes_freed, 300);
    assert_eq!(
        report.deletions[0].reason,
        Reason::Image {
            pass: ImagePass::Space,
            rank: 0
        }
    );
    assert_eq!(
        skip_reason(&report, "sha256:b"),
        SkipReason::Image(ImageKeepReason::TargetReached)
    );
    assert!(
        gc.state().records.get("sha256:a").is_none(),
        "record dropped"
    );
    assert_eq!(gc.state().records.len(), 2);
}

#[test]
fn saved_state_survives_a_restart_and_a_fresh_start_does_not() {
    let mut gc = ImageGcCollector::new(policy());
    let rt = history(&mut gc);
    let saved = serde_json::to_string(&gc.state()).unwrap();

    // A fresh collector (a kubelet restart): every image is first detected
    // now, too young for MinAge, and the GC cannot free anything.
    let mut fresh = ImageGcCollector::new(policy());
    let report = run_at(&mut fresh, &rt, 300);
    assert!(removed(&report).is_empty());
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.errors[0]
            .message
            .starts_with("Insufficient free disk space on the node's image filesystem (90% of"),
        "{}",
        report.errors[0].message
    );

    // The restored one behaves as if it never stopped.
    let state: ImageGcState = serde_json::from_str(&saved).unwrap();
    assert_eq!(state.began_gc, Some(t(0)));
    let mut restored = ImageGcCollector::new(policy());
    restored.restore(state);
    let report = run_at(&mut restored, &rt, 300);
    assert_eq!(removed(&report), ["sha256:a"]);
}

#[test]
fn a_failed_removal_keeps_the_record_and_the_pass_goes_on() {
    let mut gc = ImageGcCollector::new(policy());
    let mut rt = history(&mut gc);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::Image("sha256:a".into()),
        failure: Failure::Transient,
        times: 1,
    });
    let report = run_at(&mut gc, &rt, 300);
    assert_eq!(removed(&report), ["sha256:b"]);
    assert!(matches!(
        report.deletions[0].outcome,
        Outcome::Transient { .. }
    ));
    assert_eq!(report.status, RunStatus::Failed);
    let messages: Vec<&str> = report.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "injected transient failure on Image sha256:a",
            "wanted to free 100 bytes, but freed 200 bytes space with errors in image deletion: \
             injected transient failure on Image sha256:a",
        ]
    );
    assert!(gc.state().records.get("sha256:a").is_some());
    assert!(gc.state().records.get("sha256:b").is_none());
}

#[test]
fn an_image_used_before_its_removal_is_refused_and_kept() {
    let mut gc = ImageGcCollector::new(policy());
    let mut rt = history(&mut gc);
    rt.state_mut().inject(Fault::UseBeforeRemoval {
        target: Target::Image("sha256:a".into()),
    });
    let report = run_at(&mut gc, &rt, 300);
    assert!(matches!(report.deletions[0].outcome, Outcome::InUse { .. }));
    assert_eq!(removed(&report), ["sha256:b"]);
    assert!(rt.state_mut().image("sha256:a").is_some());
}

#[test]
fn a_fatal_failure_stops_the_run() {
    let mut gc = ImageGcCollector::new(policy());
    let mut rt = history(&mut gc);
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::Any,
        failure: Failure::Fatal,
        times: 1,
    });
    let report = run_at(&mut gc, &rt, 300);
    assert_eq!(report.status, RunStatus::Aborted);
    assert_eq!(report.deletions.len(), 1);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.fatal && e.call == "RemoveImage")
    );
    assert_eq!(
        skip_reason(&report, "sha256:b"),
        SkipReason::Image(ImageKeepReason::Stopped)
    );
    assert_eq!(rt.state_mut().image_count(), 3);
}

#[test]
fn kept_images_are_treated_as_pinned() {
    let mut gc = ImageGcCollector::new(policy());
    let rt = history(&mut gc);
    gc.keep_images(Some(|i: &ImageInfo| {
        i.repo_tags.iter().any(|t| t.starts_with("a:"))
    }));
    let report = run_at(&mut gc, &rt, 300);
    assert_eq!(
        skip_reason(&report, "sha256:a"),
        SkipReason::Image(ImageKeepReason::Pinned)
    );
    assert_eq!(removed(&report), ["sha256:b"]);
}

#[test]
fn delete_unused_images_ignores_the_thresholds() {
    let mut gc = ImageGcCollector::new(policy());
    let mut rt = history(&mut gc);
    rt.state_mut().set_other_used(0);
    gc.mode(ImageGcMode::DeleteUnusedImages);
    let report = run_at(&mut gc, &rt, 300);
    // c is too young (first detected now); a and b go.
    assert_eq!(removed(&report), ["sha256:a", "sha256:b"]);
    assert_eq!(
        skip_reason(&report, "sha256:c"),
        SkipReason::Image(ImageKeepReason::TooYoung)
    );
}

#[test]
fn a_dry_run_plans_without_removing_but_refreshes_records() {
    let mut gc = ImageGcCollector::new(policy());
    let rt = history(&mut gc);
    gc.dry_run(true);
    let report = run_at(&mut gc, &rt, 300);
    assert_eq!(
        report.planned_ids().map(Id::as_str).collect::<Vec<_>>(),
        ["sha256:a"]
    );
    assert_eq!(rt.lock().image_count(), 3);
    assert!(gc.state().records.get("sha256:c").is_some(), "c detected");
    assert!(
        gc.state().records.get("sha256:a").is_some(),
        "a not forgotten"
    );
}

#[test]
fn an_engine_outage_aborts_the_run() {
    let mut gc = ImageGcCollector::new(policy());
    let mut rt = history(&mut gc);
    rt.state_mut().set_now(t(290));
    rt.state_mut().inject(Fault::Outage { until: t(400) });
    let report = run_at(&mut gc, &rt, 300);
    assert_eq!(report.status, RunStatus::Aborted);
    assert_eq!(report.errors[0].call, "ListImages");
    assert_eq!(gc.state().records.len(), 2, "records untouched");
}
