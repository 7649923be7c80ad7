//! Property tests: under random nodes, policies and fault schedules, the
//! collectors never ask to remove what was in use, pinned, running or too
//! young when they looked, never retry a refusal, report every removal,
//! and without faults do exactly what the planners say.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use reclaim_kubelet::{ContainerGcPolicy, ContainerState, ImagePolicy, PodState};
use reclaim_model::{DiskStats, Duration, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{self, CacheRecord, RecordType, Snapshot};
use reclaim_runtime::conformance::check_accounting;
use reclaim_runtime::memory::{Call, FaultRates, JournalEntry, JournalResult};
use reclaim_runtime::{
    BuildCacheCollector, Collectors, ContainerGcCollector, ContainerInfo, ImageGcCollector,
    ImageInfo, ItemKind, ManualClock, MemoryRuntime, MemoryState, NoopObserver, Reason,
    RemoveOutcome, Report, StopOutcome, block_on,
};

const START: i64 = 1_700_000_000;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(START + secs)
}

#[derive(Clone, Debug)]
struct RecordSpec {
    size: u64,
    kind: u8,
    last_used: Option<i64>,
    usage: u64,
    in_use: bool,
    shared: bool,
    mutable: bool,
    parent: Option<usize>,
}

#[derive(Clone, Debug)]
struct ContainerSpec {
    image: usize,
    pod: usize,
    name: usize,
    state: u8,
    created: i64,
}

#[derive(Clone, Debug)]
struct NodeSpec {
    records: Vec<RecordSpec>,
    images: Vec<(u64, bool)>,
    containers: Vec<ContainerSpec>,
    pods: Vec<u8>,
    other_used: u64,
    rules: Vec<(bool, i64, i64, i64, u8)>,
    container_policy: (i64, i64, i64),
    image_policy: (i32, i32, i64),
    rates: Option<(u64, f64, f64, f64)>,
}

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    (
        1u64..2000,
        0u8..6,
        prop::option::of(-20_000i64..0),
        0u64..6,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop::option::of(0usize..40),
    )
        .prop_map(
            |(size, kind, last_used, usage, in_use, shared, mutable, parent)| RecordSpec {
                size,
                kind,
                last_used,
                usage,
                in_use,
                shared,
                mutable,
                parent,
            },
        )
}

fn container_spec() -> impl Strategy<Value = ContainerSpec> {
    (0usize..40, 0usize..4, 0usize..3, 0u8..4, -3000i64..0).prop_map(
        |(image, pod, name, state, created)| ContainerSpec {
            image,
            pod,
            name,
            state,
            created,
        },
    )
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop::collection::vec(record_spec(), 0..40),
        prop::collection::vec((1u64..3000, prop::bool::weighted(0.2)), 0..12),
        prop::collection::vec(container_spec(), 0..25),
        prop::collection::vec(0u8..3, 4),
        0u64..40_000,
        prop::collection::vec(
            (
                any::<bool>(),
                0i64..8000,
                0i64..20_000,
                0i64..10_000,
                0u8..3,
            ),
            1..3,
        ),
        (0i64..600, -1i64..3, -1i64..6),
        (0i32..=100, 0i32..=100, 0i64..600),
        prop::option::of((any::<u64>(), 0.0..0.15, 0.0..0.3, 0.0..0.3)),
    )
        .prop_map(
            |(records, images, containers, pods, other_used, rules, cp, ip, rates)| NodeSpec {
                records,
                images,
                containers,
                pods,
                other_used,
                rules,
                container_policy: cp,
                image_policy: ip,
                rates,
            },
        )
}

const TYPES: [RecordType; 6] = [
    RecordType::Regular,
    RecordType::Regular,
    RecordType::ExecCachemount,
    RecordType::SourceLocal,
    RecordType::Internal,
    RecordType::Frontend,
];

fn build(spec: &NodeSpec) -> MemoryRuntime {
    let mut rt = MemoryRuntime::new(100_000);
    let s = rt.state_mut();
    for (i, r) in spec.records.iter().enumerate() {
        let mut rec = CacheRecord::new(format!("r{i:02}"), r.size);
        rec.record_type = TYPES[r.kind as usize].clone();
        rec.last_used_at = r.last_used.map(t);
        rec.usage_count = r.usage;
        rec.in_use = r.in_use;
        rec.shared = r.shared;
        rec.mutable = r.mutable;
        if let Some(p) = r.parent.filter(|p| *p < i) {
            rec.parents = vec![Id::new(format!("r{p:02}"))];
        }
        s.add_record(rec).unwrap();
    }
    for (i, (size, pinned)) in spec.images.iter().enumerate() {
        let mut image = ImageInfo::new(format!("sha256:i{i:02}"), *size, t(-90_000));
        image.pinned = *pinned;
        s.pull_image(image).unwrap();
    }
    const STATES: [ContainerState; 4] = [
        ContainerState::Created,
        ContainerState::Exited,
        ContainerState::Running,
        ContainerState::Unknown,
    ];
    for (i, c) in spec.containers.iter().enumerate() {
        let mut info = ContainerInfo::new(
            format!("c{i:02}"),
            format!("n{}", c.name),
            format!("sha256:i{:02}", c.image),
            STATES[c.state as usize],
            t(c.created),
        );
        info.pod_uid = Id::new(format!("p{}", c.pod));
        s.create_container(info).unwrap();
    }
    const POD_STATES: [PodState; 3] = [PodState::Active, PodState::Terminated, PodState::Deleted];
    for (i, p) in spec.pods.iter().enumerate() {
        s.set_pod_state(&format!("p{i}"), POD_STATES[*p as usize]);
    }
    s.set_other_used(spec.other_used);
    s.set_now(t(0));
    if let Some((seed, fatal, transient, in_use)) = spec.rates {
        s.set_fault_rates(Some(FaultRates {
            seed,
            fatal,
            transient,
            in_use,
        }));
    }
    s.record_journal(true);
    rt
}

fn rules(spec: &NodeSpec) -> Vec<Rule> {
    const FILTERS: [&str; 3] = ["", "type==regular", "type==exec.cachemount"];
    spec.rules
        .iter()
        .map(|&(all, keep_secs, max_used, min_free, filter)| Rule {
            all,
            filter: vec![FILTERS[filter as usize].to_owned()],
            keep_duration: Duration::from_secs(keep_secs),
            max_used_space: max_used,
            min_free_space: min_free,
            ..Rule::default()
        })
        .collect()
}

fn collectors(spec: &NodeSpec) -> Collectors {
    let (min_age, per_pod, max) = spec.container_policy;
    let (high, low, image_min_age) = spec.image_policy;
    let (high, low) = (high.max(low), high.min(low));
    let image_policy = ImagePolicy::new(
        high,
        low,
        Duration::from_secs(image_min_age),
        Duration::ZERO,
    )
    .unwrap();
    Collectors {
        containers: Some(ContainerGcCollector::new(
            ContainerGcPolicy::new(Duration::from_secs(min_age), per_pod, max).unwrap(),
        )),
        images: Some(ImageGcCollector::new(image_policy)),
        build_cache: Some(BuildCacheCollector::new(rules(spec))),
    }
}

/// What one snapshot said about every item.
struct Before {
    state: MemoryState,
    first_detected: HashMap<String, Timestamp>,
}

fn removal_calls(journal: &[JournalEntry]) -> Vec<(Call, &str, &JournalResult)> {
    journal
        .iter()
        .filter_map(|e| e.target.as_deref().map(|t| (e.call, t, &e.result)))
        .collect()
}

/// The invariants of one round of `run_all` over the engine, given its
/// state before the round.
fn check_round(
    spec: &NodeSpec,
    before: &Before,
    rt: &mut MemoryRuntime,
    reports: &[Report],
    now: Timestamp,
) {
    for r in reports {
        check_accounting(r);
    }
    let (container_min_age, _, _) = spec.container_policy;
    let image_min_age = Duration::from_secs(spec.image_policy.2);
    let rules = rules(spec);
    let b = &before.state;
    let journal = rt.state_mut().take_journal();
    let calls = removal_calls(&journal);

    // Every item is asked for at most once per kind of call.
    let mut asked = HashSet::new();
    for (call, target, _) in &calls {
        assert!(
            asked.insert((*call, *target)),
            "{call:?} {target} asked twice"
        );
    }

    let build_cache = reports
        .iter()
        .find(|r| r.collector == reclaim_runtime::CollectorKind::BuildCache)
        .unwrap();
    let rule_of: HashMap<&str, usize> = build_cache
        .deletions
        .iter()
        .map(|d| match d.reason {
            Reason::BuildCache { rule, .. } => (d.id.as_str(), rule),
            _ => unreachable!(),
        })
        .collect();

    let removed_containers: HashSet<&str> = reports
        .iter()
        .filter(|r| r.collector == reclaim_runtime::CollectorKind::Containers)
        .flat_map(|r| r.deletions.iter())
        .filter(|d| d.item == ItemKind::Container && d.outcome.is_gone())
        .map(|d| d.id.as_str())
        .collect();
    for (call, target, result) in &calls {
        match call {
            Call::StopContainer => {
                let c = b.container(target).expect("stopped a listed container");
                assert_eq!(
                    c.state,
                    ContainerState::Unknown,
                    "stopped {target} in state {}",
                    c.state
                );
            }
            Call::RemoveContainer => {
                let c = b.container(target).expect("removed a listed container");
                assert_ne!(
                    c.state,
                    ContainerState::Running,
                    "asked to remove running {target}"
                );
                let age = now.saturating_duration_since(c.created);
                assert!(
                    age >= Duration::from_secs(container_min_age),
                    "asked to remove {target}, {age} old"
                );
            }
            Call::RemoveImage => {
                let i = b.image(target).expect("removed a listed image");
                assert!(!i.pinned, "asked to remove pinned {target}");
                // The image GC lists after the container GC: the containers
                // that one removed no longer use anything.
                let users = b
                    .containers()
                    .filter(|c| c.image_id.as_str() == *target)
                    .filter(|c| !removed_containers.contains(c.id.as_str()))
                    .count();
                assert_eq!(users, 0, "asked to remove {target}, used by a container");
                let first = before.first_detected.get(*target).copied().unwrap_or(now);
                assert!(
                    now.saturating_duration_since(first) >= image_min_age,
                    "asked to remove {target}, first detected {first}"
                );
            }
            Call::RemoveCacheRecord => {
                let r = b.record(target).expect("removed a listed record");
                assert!(!r.in_use, "asked to remove in-use {target}");
                let rule = &rules[rule_of[target]];
                if !rule.keep_duration.is_zero() {
                    let cut_off = now.sub(rule.keep_duration);
                    assert!(
                        r.last_used_at.is_none_or(|u| u <= cut_off),
                        "asked to remove {target}, used after the cut-off"
                    );
                }
                if !rule.all {
                    assert!(
                        !r.shared
                            && !matches!(
                                r.record_type,
                                RecordType::Internal | RecordType::Frontend
                            ),
                        "asked to remove protected {target} without `all`"
                    );
                }
            }
            _ => {}
        }
        // What the engine says is gone is gone; everything else stays.
        let gone = matches!(
            result,
            JournalResult::Remove(RemoveOutcome::Removed { .. } | RemoveOutcome::AlreadyGone)
        );
        let s = rt.state_mut();
        let present = match call {
            Call::RemoveContainer => s.container(target).is_some(),
            Call::RemoveImage => s.image(target).is_some(),
            Call::RemoveCacheRecord => s.has_record(target),
            _ => !gone,
        };
        if !matches!(call, Call::StopContainer | Call::StopSandbox) {
            assert_eq!(present, !gone, "{call:?} {target}: {result:?}");
        }
    }

    // Nothing disappeared without a reported removal.
    let reported: HashSet<(ItemKind, &str)> = reports
        .iter()
        .flat_map(|r| r.deletions.iter())
        .filter(|d| d.outcome.is_gone())
        .map(|d| (d.item, d.id.as_str()))
        .collect();
    let s = rt.state_mut();
    for c in b.containers() {
        if s.container(c.id.as_str()).is_none() {
            assert!(
                reported.contains(&(ItemKind::Container, c.id.as_str())),
                "{} vanished",
                c.id
            );
        }
    }
    for i in b.images() {
        if s.image(i.id.as_str()).is_none() {
            assert!(
                reported.contains(&(ItemKind::Image, i.id.as_str())),
                "{} vanished",
                i.id
            );
        }
    }
    for r in b.records() {
        if !s.has_record(r.id.as_str()) {
            assert!(
                reported.contains(&(ItemKind::CacheRecord, r.id.as_str())),
                "{} vanished",
                r.id
            );
        }
    }
}

fn first_detected(gc: &Collectors) -> HashMap<String, Timestamp> {
    gc.images
        .as_ref()
        .unwrap()
        .state()
        .records
        .sorted()
        .into_iter()
        .map(|(id, r)| (id.to_owned(), r.first_detected))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn collectors_never_ask_for_what_they_must_keep(spec in node_spec()) {
        let mut rt = build(&spec);
        let mut gc = collectors(&spec);
        // Two rounds, five minutes apart, so that image records age.
        for (round, secs) in [0i64, 300].into_iter().enumerate() {
            let now = t(secs);
            rt.state_mut().set_now(now);
            let before = Before {
                state: rt.state_mut().clone(),
                first_detected: first_detected(&gc),
            };
            let clock = ManualClock::new(now);
            let reports = block_on(gc.run_all(&rt, &clock, &NoopObserver));
            assert_eq!(reports.len(), 3, "round {round}");
            check_round(&spec, &before, &mut rt, &reports, now);
            rt.state_mut().release_holds();
        }
    }

    #[test]
    fn without_faults_the_build_cache_run_is_the_plan(spec in node_spec()) {
        let spec = NodeSpec { rates: None, ..spec };
        let rt = build(&spec);
        let records: Vec<CacheRecord> = rt.lock().records().cloned().collect();
        let disk = rt.lock().disk_stats();
        let rules = rules(&spec);
        let plan = prune::plan(&Snapshot::new(records).unwrap(), &rules, disk, t(0));
        let clock = ManualClock::new(t(0));
        let report = block_on(BuildCacheCollector::new(rules).run(&rt, &clock, &NoopObserver));
        let ran: Vec<&Id> = report.removed_ids().collect();
        let planned: Vec<&Id> = plan.deleted_ids().collect();
        prop_assert_eq!(ran, planned);
        prop_assert_eq!(report.bytes_freed, plan.bytes_freed());
        prop_assert_eq!(report.replans, 0);
        let bytes_per_rule: Vec<u64> = plan.rules.iter().map(|r| r.bytes_freed).collect();
        let reported: Vec<u64> = report.passes[..plan.rules.len()].iter().map(|p| p.bytes_freed).collect();
        prop_assert_eq!(reported, bytes_per_rule);
    }

    #[test]
    fn dry_runs_change_nothing(spec in node_spec()) {
        let mut rt = build(&spec);
        let mut gc = collectors(&spec);
        gc.containers.as_mut().unwrap().dry_run(true);
        gc.images.as_mut().unwrap().dry_run(true);
        gc.build_cache.as_mut().unwrap().dry_run(true);
        let count = |s: &mut MemoryState| (s.record_count(), s.image_count(), s.container_count(), s.used());
        let before = count(rt.state_mut());
        let clock = ManualClock::new(t(0));
        let reports = block_on(gc.run_all(&rt, &clock, &NoopObserver));
        for r in &reports {
            check_accounting(r);
            prop_assert_eq!(r.bytes_freed, 0);
        }
        prop_assert_eq!(count(rt.state_mut()), before);
        prop_assert!(removal_calls(rt.state_mut().journal()).is_empty());
    }
}

#[test]
fn one_collector_failing_does_not_stop_the_others() {
    use reclaim_runtime::{BuildCacheStore, ContainerStore, ImageStore, RuntimeError, SandboxInfo};

    /// The memory engine, except that containers cannot be listed.
    struct NoContainers(MemoryRuntime);

    impl BuildCacheStore for NoContainers {
        async fn cache_records(&self) -> Result<Vec<CacheRecord>, RuntimeError> {
            self.0.cache_records().await
        }
        async fn cache_disk_stats(&self) -> Result<DiskStats, RuntimeError> {
            self.0.cache_disk_stats().await
        }
        async fn remove_cache_record(&self, id: &Id) -> RemoveOutcome {
            self.0.remove_cache_record(id).await
        }
    }
    impl ImageStore for NoContainers {
        async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
            self.0.images().await
        }
        async fn image_fs_stats(&self) -> Result<DiskStats, RuntimeError> {
            self.0.image_fs_stats().await
        }
        async fn remove_image(&self, id: &Id) -> RemoveOutcome {
            self.0.remove_image(id).await
        }
    }
    impl ContainerStore for NoContainers {
        async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
            Err(RuntimeError::fatal("permission denied"))
        }
        async fn sandboxes(&self) -> Result<Vec<SandboxInfo>, RuntimeError> {
            self.0.sandboxes().await
        }
        async fn stop_container(&self, id: &Id) -> StopOutcome {
            self.0.stop_container(id).await
        }
        async fn remove_container(&self, id: &Id) -> RemoveOutcome {
            self.0.remove_container(id).await
        }
    }

    let mut rt = MemoryRuntime::new(1 << 20);
    rt.state_mut()
        .add_record(CacheRecord::new("r", 10))
        .unwrap();
    let engine = NoContainers(rt);
    let mut gc = Collectors {
        containers: Some(ContainerGcCollector::new(ContainerGcPolicy::default())),
        images: Some(ImageGcCollector::new(ImagePolicy::default())),
        build_cache: Some(BuildCacheCollector::new(vec![Rule::default()])),
    };
    let clock = ManualClock::new(t(0));
    let reports = block_on(gc.run_all(&engine, &clock, &NoopObserver));
    let statuses: BTreeMap<String, String> = reports
        .iter()
        .map(|r| (r.collector.to_string(), format!("{:?}", r.status)))
        .collect();
    assert_eq!(statuses["containers"], "Aborted");
    assert_eq!(
        statuses["images"], "Aborted",
        "image GC needs the container list"
    );
    assert_eq!(statuses["build-cache"], "Succeeded");
    assert_eq!(reports[2].removed_ids().count(), 1);
    assert_eq!(reports[0].errors[0].message, "permission denied");
}
