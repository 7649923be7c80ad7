//! Tests of the in-memory engine: bookkeeping, removal semantics, faults.

use reclaim_kubelet::{ContainerState, PodState, SandboxState};
use reclaim_model::{Id, Timestamp};
use reclaim_policy::prune::CacheRecord;

use super::*;
use crate::block_on;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn record(id: &str, size: u64, parents: &[&str]) -> CacheRecord {
    let mut r = CacheRecord::new(id, size);
    r.parents = parents.iter().map(Id::new).collect();
    r
}

fn container(id: &str, image: &str, state: ContainerState) -> ContainerInfo {
    ContainerInfo::new(id, id, image, state, t(10))
}

fn removed(bytes: u64) -> RemoveOutcome {
    RemoveOutcome::Removed {
        reclaimed: Some(bytes),
    }
}

fn is_in_use(o: &RemoveOutcome) -> bool {
    matches!(o, RemoveOutcome::InUse { .. })
}

#[test]
fn disk_usage_follows_what_is_stored() {
    let mut rt = MemoryRuntime::new(1000);
    let s = rt.state_mut();
    s.add_record(record("r", 100, &[])).unwrap();
    s.pull_image(ImageInfo::new("i", 200, t(0))).unwrap();
    s.create_container(container("c", "i", ContainerState::Exited))
        .unwrap();
    s.set_container_size("c", 50);
    s.set_other_used(25);
    assert_eq!(s.used(), 375);
    assert_eq!(s.disk_stats(), DiskStats::new(1000, 625));
    s.set_record_size("r", 10);
    assert_eq!(s.cache_bytes(), 10);
    s.set_other_used(5000);
    assert_eq!(s.disk_stats().free, 0, "free never goes negative");
    s.set_other_used(0);
    assert_eq!(
        block_on(rt.remove_container(&"c".into())),
        removed(50),
        "a container gives back its writable layer"
    );
    assert_eq!(block_on(rt.remove_image(&"i".into())), removed(200));
    assert_eq!(block_on(rt.remove_cache_record(&"r".into())), removed(10));
    assert_eq!(rt.state_mut().used(), 0);
    assert_eq!(
        block_on(rt.cache_disk_stats()).unwrap(),
        block_on(rt.image_fs_stats()).unwrap()
    );
}

#[test]
fn use_record_counts_hits_and_reports_misses() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    s.add_record(record("a", 1, &[])).unwrap();
    assert!(s.use_record("a", t(5)));
    assert!(s.use_record("a", t(9)));
    assert!(!s.use_record("missing", t(9)));
    let a = s.record("a").unwrap();
    assert_eq!((a.usage_count, a.last_used_at), (2, Some(t(9))));
    assert_eq!(s.now(), t(9));
    assert_eq!(
        s.add_record(record("a", 1, &[])),
        Err(MemoryError::DuplicateId {
            kind: ItemKind::CacheRecord,
            id: "a".into()
        })
    );
    assert_eq!(
        s.add_record(record("", 1, &[])).unwrap_err().to_string(),
        "CacheRecord id is empty"
    );
}

#[test]
fn records_in_use_or_with_children_are_refused() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    s.add_record(record("base", 10, &[])).unwrap();
    s.add_record(record("child", 20, &["base", "not-there"]))
        .unwrap();
    s.add_record(record("busy", 30, &[])).unwrap();
    s.set_record_in_use("busy", true);
    let remove = |rt: &MemoryRuntime, id: &str| block_on(rt.remove_cache_record(&id.into()));
    let parent = remove(&rt, "base");
    assert_eq!(
        parent.message(),
        Some("cache record base has 1 child records")
    );
    assert!(is_in_use(&remove(&rt, "busy")));
    assert_eq!(remove(&rt, "child"), removed(20));
    assert_eq!(remove(&rt, "base"), removed(10), "no children left");
    assert_eq!(remove(&rt, "base"), RemoveOutcome::AlreadyGone);
    let listed = block_on(rt.cache_records()).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].in_use);
}

#[test]
fn images_in_use_or_pinned_are_refused_and_tags_move() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    let mut app = ImageInfo::new("sha256:app1", 100, t(0));
    app.repo_tags = vec!["app:latest".into(), "app:1".into()];
    s.pull_image(app).unwrap();
    let mut newer = ImageInfo::new("sha256:app2", 100, t(1));
    newer.repo_tags = vec!["app:latest".into()];
    s.pull_image(newer).unwrap();
    assert_eq!(s.image("sha256:app1").unwrap().repo_tags, ["app:1"]);
    assert_eq!(
        s.image_by_tag("app:latest").unwrap().id.as_str(),
        "sha256:app2"
    );
    s.pull_image(ImageInfo::new("sha256:pause", 1, t(0)))
        .unwrap();
    s.set_image_pinned("sha256:pause", true);
    s.create_container(container("stopped", "sha256:app1", ContainerState::Exited))
        .unwrap();
    assert_eq!(s.image_users("sha256:app1"), 1);

    let remove = |rt: &MemoryRuntime, id: &str| block_on(rt.remove_image(&id.into()));
    assert_eq!(
        remove(&rt, "sha256:pause").message(),
        Some("image sha256:pause is pinned")
    );
    let used = remove(&rt, "sha256:app1");
    assert!(
        used.message()
            .unwrap()
            .contains("image is being used by 1 container"),
        "{used}"
    );
    assert_eq!(remove(&rt, "sha256:app2"), removed(100));
    assert!(rt.state_mut().image_by_tag("app:latest").is_none());
    rt.state_mut().delete_container("stopped");
    assert_eq!(rt.state_mut().image_users("sha256:app1"), 0);
    assert_eq!(remove(&rt, "sha256:app1"), removed(100));
    assert_eq!(remove(&rt, "sha256:app1"), RemoveOutcome::AlreadyGone);
    assert!(!rt.state_mut().untag("app:1"), "tags go with their image");
}

#[test]
fn containers_running_unknown_or_stuck_are_refused() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    s.create_container(container("run", "i", ContainerState::Running))
        .unwrap();
    s.create_container(container("unk", "i", ContainerState::Unknown))
        .unwrap();
    s.create_container(container("stuck", "i", ContainerState::Exited))
        .unwrap();
    s.inject(Fault::StuckRemoving {
        container: "stuck".into(),
    });
    let remove = |rt: &MemoryRuntime, id: &str| block_on(rt.remove_container(&id.into()));
    let stop = |rt: &MemoryRuntime, id: &str| block_on(rt.stop_container(&id.into()));
    assert!(is_in_use(&remove(&rt, "run")));
    assert!(matches!(stop(&rt, "run"), StopOutcome::InUse { .. }));
    assert!(is_in_use(&remove(&rt, "unk")), "unknown might be running");
    assert_eq!(stop(&rt, "unk"), StopOutcome::Stopped);
    assert_eq!(
        rt.state_mut().container("unk").unwrap().state,
        ContainerState::Exited
    );
    assert_eq!(remove(&rt, "unk"), removed(0));
    let stuck = remove(&rt, "stuck");
    assert!(
        stuck.message().unwrap().contains("already in progress"),
        "{stuck}"
    );
    rt.state_mut().clear_faults();
    assert_eq!(remove(&rt, "stuck"), removed(0));
    assert_eq!(stop(&rt, "stuck"), StopOutcome::AlreadyGone);
    assert_eq!(rt.state_mut().image_users("i"), 1);
}

#[test]
fn sandboxes_pods_and_log_dirs() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    let sandbox = |id: &str, state| SandboxInfo {
        id: id.into(),
        pod_uid: "p".into(),
        state,
        created: t(1),
    };
    s.add_sandbox(sandbox("ready", SandboxState::Ready))
        .unwrap();
    s.add_sandbox(sandbox("old", SandboxState::NotReady))
        .unwrap();
    s.add_sandbox(sandbox("busy", SandboxState::NotReady))
        .unwrap();
    assert!(s.add_sandbox(sandbox("old", SandboxState::Ready)).is_err());
    let mut member = container("m", "i", ContainerState::Exited);
    member.sandbox_id = Some("busy".into());
    s.create_container(member).unwrap();
    s.set_pod_state("p", PodState::Terminated);
    s.delete_pod("q");
    s.set_unknown_pod_state(PodState::Deleted);
    s.add_pod_log_dir("ns_b_q");
    s.add_pod_log_dir("ns_a_p");

    assert!(matches!(
        block_on(rt.stop_sandbox(&"ready".into())),
        StopOutcome::InUse { .. }
    ));
    assert!(is_in_use(&block_on(rt.remove_sandbox(&"ready".into()))));
    assert!(is_in_use(&block_on(rt.remove_sandbox(&"busy".into()))));
    assert_eq!(
        block_on(rt.stop_sandbox(&"old".into())),
        StopOutcome::Stopped
    );
    assert_eq!(
        block_on(rt.remove_sandbox(&"old".into())),
        RemoveOutcome::Removed { reclaimed: None }
    );
    let pods = block_on(rt.pods()).unwrap();
    assert_eq!(pods.unknown, PodState::Deleted);
    assert_eq!(pods.pods.len(), 2);
    assert_eq!(
        block_on(rt.pod_log_dirs()).unwrap(),
        ["ns_a_p", "ns_b_q"],
        "listed sorted, as os.ReadDir does"
    );
    assert_eq!(
        block_on(rt.remove_pod_log_dir("ns_a_p")),
        RemoveOutcome::Removed { reclaimed: None }
    );
    assert_eq!(
        block_on(rt.remove_pod_log_dir("ns_a_p")),
        RemoveOutcome::AlreadyGone
    );
    let s = rt.state_mut();
    s.forget_pod("q");
    assert_eq!(s.pod_state("q"), PodState::Deleted, "now the unknown state");
    assert_eq!(block_on(rt.sandboxes()).unwrap().len(), 2);
}

#[test]
fn scripted_faults_fire_in_order() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    for id in ["a", "b", "c"] {
        s.add_record(record(id, 1, &[])).unwrap();
    }
    s.inject(Fault::FailRemoval {
        target: Target::CacheRecord("a".into()),
        failure: Failure::Transient,
        times: 1,
    });
    s.inject(Fault::FailRemoval {
        target: Target::Any,
        failure: Failure::Fatal,
        times: 1,
    });
    s.inject(Fault::UseBeforeRemoval {
        target: Target::CacheRecord("c".into()),
    });
    let remove = |rt: &MemoryRuntime, id: &str| block_on(rt.remove_cache_record(&id.into()));
    assert!(matches!(remove(&rt, "a"), RemoveOutcome::Transient { .. }));
    assert!(matches!(remove(&rt, "b"), RemoveOutcome::Fatal { .. }));
    assert!(is_in_use(&remove(&rt, "c")), "c became in use first");
    assert_eq!(remove(&rt, "a"), removed(1));
    assert_eq!(remove(&rt, "b"), removed(1));
    assert!(is_in_use(&remove(&rt, "c")), "the hold stays");
    assert!(block_on(rt.cache_records()).unwrap()[0].in_use);
    rt.state_mut().release_holds();
    assert_eq!(remove(&rt, "c"), removed(1));
}

#[test]
fn use_before_removal_changes_containers_images_and_sandboxes() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    s.pull_image(ImageInfo::new("i", 5, t(0))).unwrap();
    s.create_container(container("c", "other", ContainerState::Exited))
        .unwrap();
    s.add_sandbox(SandboxInfo {
        id: "s".into(),
        pod_uid: "p".into(),
        state: SandboxState::NotReady,
        created: t(0),
    })
    .unwrap();
    for target in [
        Target::Image("i".into()),
        Target::Container("c".into()),
        Target::Sandbox("s".into()),
    ] {
        s.inject(Fault::UseBeforeRemoval { target });
    }
    assert!(is_in_use(&block_on(rt.remove_image(&"i".into()))));
    assert!(is_in_use(&block_on(rt.remove_container(&"c".into()))));
    assert_eq!(
        rt.state_mut().container("c").unwrap().state,
        ContainerState::Running
    );
    assert!(matches!(
        block_on(rt.stop_sandbox(&"s".into())),
        StopOutcome::InUse { .. }
    ));
    rt.state_mut().inject(Fault::FailStop {
        target: Target::Container("c".into()),
        failure: Failure::Transient,
        times: 1,
    });
    assert!(matches!(
        block_on(rt.stop_container(&"c".into())),
        StopOutcome::Transient { .. }
    ));
}

#[test]
fn an_outage_fails_every_call_until_it_ends() {
    let mut rt = MemoryRuntime::new(1 << 20);
    let s = rt.state_mut();
    s.add_record(record("a", 1, &[])).unwrap();
    s.set_now(t(100));
    s.inject(Fault::Outage { until: t(200) });
    s.record_journal(true);
    let err = block_on(rt.cache_records()).unwrap_err();
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "Cannot connect to the engine: unavailable until 1970-01-01T00:03:20Z"
    );
    assert!(block_on(rt.images()).is_err());
    assert!(block_on(rt.image_fs_stats()).is_err());
    assert!(matches!(
        block_on(rt.remove_cache_record(&"a".into())),
        RemoveOutcome::Transient { .. }
    ));
    rt.state_mut().set_now(t(200));
    assert_eq!(block_on(rt.cache_records()).unwrap().len(), 1);
    let journal = rt.state_mut().take_journal();
    let calls: Vec<Call> = journal.iter().map(|e| e.call).collect();
    assert_eq!(
        calls,
        [
            Call::ListCacheRecords,
            Call::ListImages,
            Call::ImageFsStats,
            Call::RemoveCacheRecord,
            Call::ListCacheRecords
        ]
    );
    assert_eq!(journal[3].target.as_deref(), Some("a"));
    assert!(matches!(journal[0].result, JournalResult::Failed(_)));
    assert_eq!(journal[4].result, JournalResult::Listed);
    assert!(rt.state_mut().journal().is_empty());
}

#[test]
fn random_faults_are_reproducible() {
    let run = |seed| {
        let mut rt = MemoryRuntime::new(1 << 30);
        let s = rt.state_mut();
        for i in 0..200 {
            s.add_record(record(&format!("r{i}"), 1, &[])).unwrap();
        }
        s.set_fault_rates(Some(FaultRates {
            seed,
            fatal: 0.05,
            transient: 0.2,
            in_use: 0.2,
        }));
        (0..200)
            .map(|i| block_on(rt.remove_cache_record(&format!("r{i}").into())))
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    let ok = a.iter().filter(|o| o.is_gone()).count();
    assert!((80..150).contains(&ok), "{ok} of 200 removed");
    assert!(a.iter().any(is_in_use));
}

#[test]
fn a_shared_runtime_is_mutated_through_the_lock() {
    let rt = MemoryRuntime::new(100);
    rt.lock().add_record(record("a", 10, &[])).unwrap();
    assert_eq!(block_on(rt.cache_records()).unwrap().len(), 1);
    let state = rt.into_state();
    assert_eq!(state.record_count(), 1);
    let rt = MemoryRuntime::from_state(state);
    assert_eq!(rt.lock().cache_bytes(), 10);
}
