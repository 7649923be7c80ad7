//! The kubelet container collector against the in-memory engine: the
//! upstream effects of failed calls, refusals, dry runs.

use reclaim_kubelet::{
    ContainerGcOptions, ContainerGcPolicy, ContainerKeepReason, ContainerSnapshot, ContainerState,
    EvictionStep, PodState, SandboxKeepReason, SandboxState, plan_containers,
};
use reclaim_model::{Duration, Id, Timestamp};
use reclaim_runtime::conformance::check_accounting;
use reclaim_runtime::memory::{Call, Failure, Fault, JournalResult, Target};
use reclaim_runtime::{
    ContainerGcCollector, ContainerInfo, ItemKind, ManualClock, MemoryRuntime, NoopObserver,
    Outcome, Reason, Report, RunStatus, SandboxInfo, SkipReason, block_on,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn add(
    rt: &mut MemoryRuntime,
    id: &str,
    pod: &str,
    name: &str,
    state: ContainerState,
    created: i64,
) {
    let mut c = ContainerInfo::new(id, name, "sha256:img", state, t(created));
    c.pod_uid = pod.into();
    rt.state_mut().create_container(c).unwrap();
}

/// Pod `p` (active) has three dead `app` containers and a running one; pod
/// `gone` (deleted) has a dead container in sandbox `s1` and a log
/// directory.
fn node() -> MemoryRuntime {
    let mut rt = MemoryRuntime::new(1 << 30);
    add(&mut rt, "app-1", "p", "app", ContainerState::Exited, 10);
    add(&mut rt, "app-2", "p", "app", ContainerState::Exited, 20);
    add(&mut rt, "app-3", "p", "app", ContainerState::Exited, 30);
    add(&mut rt, "app-live", "p", "app", ContainerState::Running, 40);
    let mut c = ContainerInfo::new("job-1", "job", "sha256:img", ContainerState::Exited, t(5));
    c.pod_uid = "gone".into();
    c.sandbox_id = Some("s1".into());
    let s = rt.state_mut();
    s.create_container(c).unwrap();
    s.add_sandbox(SandboxInfo {
        id: "s1".into(),
        pod_uid: "gone".into(),
        state: SandboxState::NotReady,
        created: t(4),
    })
    .unwrap();
    s.set_pod_state("p", PodState::Active);
    s.delete_pod("gone");
    s.add_pod_log_dir("ci_job_gone");
    s.add_pod_log_dir("ci_app_p");
    s.record_journal(true);
    rt
}

fn policy() -> ContainerGcPolicy {
    ContainerGcPolicy::new(Duration::from_secs(60), 1, -1).unwrap()
}

fn run(gc: &mut ContainerGcCollector, rt: &MemoryRuntime) -> Report {
    let clock = ManualClock::new(t(1000));
    let report = block_on(gc.run(rt, &clock, &NoopObserver));
    check_accounting(&report);
    report
}

fn outcomes(report: &Report) -> Vec<(String, &'static str)> {
    report
        .deletions
        .iter()
        .map(|d| (d.id.to_string(), d.outcome.as_str()))
        .collect()
}

fn pairs(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), *b)).collect()
}

#[test]
fn without_faults_the_run_is_the_kubelet_plan() {
    let rt = node();
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    assert_eq!(
        outcomes(&report),
        pairs(&[
            ("job-1", "removed"),
            ("app-1", "removed"),
            ("app-2", "removed"),
            ("s1", "removed"),
            ("ci_job_gone", "removed"),
        ])
    );
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(
        report.deletions[0].reason,
        Reason::Container {
            step: EvictionStep::DeletedPod,
            rank: 0
        }
    );
    let live = report
        .skips
        .iter()
        .find(|s| s.id.as_str() == "app-live")
        .unwrap();
    assert_eq!(
        live.reason,
        SkipReason::Container(ContainerKeepReason::Running)
    );
    let names: Vec<&str> = report.passes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["containers", "sandboxes", "pod logs"]);
    assert_eq!(report.passes[0].removed, 3);

    let s = rt.lock();
    let mut left: Vec<&str> = s.containers().map(|c| c.id.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["app-3", "app-live"]);
    assert!(s.sandbox("s1").is_none());
    assert!(!s.has_pod_log_dir("ci_job_gone") && s.has_pod_log_dir("ci_app_p"));
}

#[test]
fn the_report_matches_the_dry_run_of_the_planner() {
    let rt = node();
    let mut gc = ContainerGcCollector::new(policy());
    gc.dry_run(true);
    let report = run(&mut gc, &rt);
    // Build the planner's own snapshot of the same node.
    let s = rt.lock();
    let snapshot: ContainerSnapshot = serde_json::from_value(serde_json::json!({
        "pods": [{"uid": "p", "state": "active"}, {"uid": "gone", "state": "deleted"}],
        "containers": s.containers().map(|c| serde_json::json!({
            "id": c.id, "pod_uid": c.pod_uid, "name": c.name, "state": c.state,
            "created_at": c.created, "sandbox_id": c.sandbox_id,
        })).collect::<Vec<_>>(),
        "sandboxes": [{"id": "s1", "pod_uid": "gone", "state": "notready", "created_at": 4}],
        "pod_log_dirs": ["ci_app_p", "ci_job_gone"],
    }))
    .unwrap();
    let plan = plan_containers(
        &snapshot,
        &policy(),
        &snapshot.pod_states(),
        &ContainerGcOptions::new(t(1000)),
    );
    let planned: Vec<&str> = plan
        .removals
        .iter()
        .map(|r| r.container.id.as_str())
        .chain(plan.sandbox_removals.iter().map(|r| r.sandbox.id.as_str()))
        .chain(plan.pod_log_removals.iter().map(|r| r.dir))
        .collect();
    assert_eq!(
        report.planned_ids().map(Id::as_str).collect::<Vec<_>>(),
        planned
    );
    assert_eq!(s.container_count(), 5, "a dry run removes nothing");
    assert!(s.journal().iter().all(|e| e.target.is_none()));
}

#[test]
fn a_failed_removal_still_counts_toward_the_cap() {
    let mut rt = node();
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::Container("app-1".into()),
        failure: Failure::Transient,
        times: 1,
    });
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    // app-1 failed; the kubelet does not remove app-3 in its place.
    let app: Vec<(String, &str)> = outcomes(&report)
        .into_iter()
        .filter(|(id, _)| id.starts_with("app"))
        .collect();
    assert_eq!(app, pairs(&[("app-1", "transient"), ("app-2", "removed")]));
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].call, "RemoveContainer");
    let s = rt.lock();
    assert!(s.container("app-1").is_some() && s.container("app-3").is_some());
}

#[test]
fn a_failed_kill_skips_the_removal_and_keeps_the_sandbox() {
    let mut rt = node();
    // job-1's state cannot be read: the kubelet kills it first.
    rt.state_mut()
        .set_container_state("job-1", ContainerState::Unknown);
    rt.state_mut().inject(Fault::FailStop {
        target: Target::Container("job-1".into()),
        failure: Failure::Transient,
        times: 1,
    });
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    let job = report
        .deletions
        .iter()
        .find(|d| d.id.as_str() == "job-1")
        .unwrap();
    assert!(
        matches!(job.outcome, Outcome::StopFailed { .. }),
        "{:?}",
        job.outcome
    );
    assert_eq!(report.errors[0].call, "KillContainer");
    // The sandbox sub-pass sees job-1 still there.
    let s1 = report.skips.iter().find(|s| s.id.as_str() == "s1").unwrap();
    assert_eq!(
        s1.reason,
        SkipReason::Sandbox(SandboxKeepReason::HasContainers)
    );
    let calls: Vec<(Call, Option<&str>)> = rt
        .state_mut()
        .journal()
        .iter()
        .filter(|e| e.target.as_deref() == Some("job-1"))
        .map(|e| (e.call, e.target.as_deref()))
        .collect();
    assert_eq!(calls, [(Call::StopContainer, Some("job-1"))]);
}

#[test]
fn a_successful_kill_is_followed_by_the_removal() {
    let mut rt = node();
    rt.state_mut()
        .set_container_state("job-1", ContainerState::Unknown);
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    assert_eq!(report.status, RunStatus::Succeeded);
    let calls: Vec<Call> = rt
        .state_mut()
        .journal()
        .iter()
        .filter(|e| e.target.as_deref() == Some("job-1"))
        .map(|e| e.call)
        .collect();
    assert_eq!(calls, [Call::StopContainer, Call::RemoveContainer]);
    assert!(rt.lock().container("job-1").is_none());
}

#[test]
fn a_container_that_starts_before_its_removal_is_not_removed() {
    let mut rt = node();
    rt.state_mut().inject(Fault::UseBeforeRemoval {
        target: Target::Container("app-2".into()),
    });
    rt.state_mut().inject(Fault::StuckRemoving {
        container: "app-1".into(),
    });
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    for id in ["app-1", "app-2"] {
        let d = report
            .deletions
            .iter()
            .find(|d| d.id.as_str() == id)
            .unwrap();
        assert!(
            matches!(d.outcome, Outcome::InUse { .. }),
            "{id}: {:?}",
            d.outcome
        );
    }
    let s = rt.lock();
    assert_eq!(s.container("app-2").unwrap().state, ContainerState::Running);
    assert!(s.container("app-1").is_some());
    let removals: Vec<&JournalResult> = s
        .journal()
        .iter()
        .filter(|e| e.call == Call::RemoveContainer)
        .map(|e| &e.result)
        .collect();
    // job-1, app-1 and app-2 were planned; each was asked for once.
    assert_eq!(removals.len(), 3);
}

#[test]
fn a_fatal_failure_ends_the_run() {
    let mut rt = node();
    rt.state_mut().inject(Fault::FailRemoval {
        target: Target::Container("job-1".into()),
        failure: Failure::Fatal,
        times: 1,
    });
    let report = run(&mut ContainerGcCollector::new(policy()), &rt);
    assert_eq!(report.status, RunStatus::Aborted);
    assert_eq!(
        outcomes(&report)[..3],
        pairs(&[
            ("job-1", "fatal"),
            ("app-1", "not_attempted"),
            ("app-2", "not_attempted"),
        ])
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.fatal && e.call == "RemoveContainer")
    );
    assert_eq!(rt.lock().container_count(), 5);
}

#[test]
fn selectors_scope_the_collector() {
    let mut rt = node();
    let mut c = ContainerInfo::new("mine", "tool", "sha256:img", ContainerState::Exited, t(1));
    c.labels.insert("owner".into(), "me".into());
    rt.state_mut().create_container(c).unwrap();
    let mut gc = ContainerGcCollector::new(ContainerGcPolicy::new(Duration::ZERO, 0, -1).unwrap());
    gc.select(Some(
        reclaim_runtime::LabelSelector::parse("owner=me").unwrap(),
    ));
    let report = run(&mut gc, &rt);
    let containers: Vec<&str> = report
        .deletions
        .iter()
        .filter(|d| d.item == ItemKind::Container)
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(containers, ["mine"]);
    assert_eq!(rt.lock().container_count(), 5);
}

#[test]
fn sources_not_ready_keep_deleted_pods_and_logs() {
    let rt = node();
    let mut gc = ContainerGcCollector::new(policy());
    gc.all_sources_ready(false);
    let report = run(&mut gc, &rt);
    assert!(
        report
            .deletions
            .iter()
            .all(|d| d.id.as_str() != "ci_job_gone")
    );
    assert!(rt.lock().has_pod_log_dir("ci_job_gone"));
}
