//! Property tests: the planners against straightforward reference
//! implementations of spec sections 1 and 2, plus the invariants of the
//! issue (running containers survive, caps hold, permutation invariance,
//! protected images are never chosen, applying a plan leaves nothing more
//! to do).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use reclaim_kubelet::{
    CallError, Container, ContainerCall, ContainerCollector, ContainerGcOptions, ContainerGcPolicy,
    ContainerPlanner, ContainerSnapshot, ContainerState, EvictionStep, ImageCollector,
    ImageFsStats, ImageGcError, ImagePass, ImagePlan, ImagePolicy, ImageRecord, ImageRecords,
    ImageUser, ListedImage, Pod, PodState, Sandbox, SandboxState, plan_containers, plan_images,
};
use reclaim_model::{Duration, Id, Timestamp};

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

// ---- container GC: inputs ----------------------------------------------

#[derive(Clone, Debug)]
struct ContainerCase {
    snapshot: ContainerSnapshot,
    policy: ContainerGcPolicy,
    now: i64,
    all_sources_ready: bool,
    evict: bool,
    kill_fails: BTreeSet<String>,
    remove_fails: BTreeSet<String>,
    stop_fails: BTreeSet<String>,
}

fn pod_state() -> impl Strategy<Value = PodState> {
    prop_oneof![
        3 => Just(PodState::Active),
        1 => Just(PodState::Terminated),
        1 => Just(PodState::Deleted),
    ]
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        2 => Just(ContainerState::Exited),
        1 => Just(ContainerState::Running),
        1 => Just(ContainerState::Created),
        1 => Just(ContainerState::Unknown),
    ]
}

prop_compose! {
    fn container_case()(
        pods in prop::collection::vec(pod_state(), 1..6),
        raw in prop::collection::vec(
            (0usize..7, 0usize..3, container_state(), 0i64..40, 0usize..4, any::<bool>(), any::<bool>()),
            0..45,
        ),
        raw_sandboxes in prop::collection::vec((0usize..7, any::<bool>(), 0i64..40, any::<bool>()), 0..10),
        dirs in prop::collection::vec((0usize..7, any::<bool>()), 0..6),
        min_age in 0i64..15,
        max_per_pod in -1i64..4,
        max_containers in -1i64..12,
        now in 35i64..50,
        all_sources_ready in prop::bool::weighted(0.8),
        evict in any::<bool>(),
    ) -> ContainerCase {
        // Pod uids p0..p6; p5 and p6 are never in the pod table (unknown).
        let mut snapshot = ContainerSnapshot::default();
        for (i, state) in pods.iter().enumerate() {
            snapshot.pods.push(Pod { uid: Id::new(format!("p{i}")), state: *state });
        }
        let mut kill_fails = BTreeSet::new();
        let mut remove_fails = BTreeSet::new();
        for (n, (pod, name, state, created, sandbox, kf, rf)) in raw.into_iter().enumerate() {
            let id = format!("c{n:02}");
            if kf && n % 3 == 0 { kill_fails.insert(id.clone()); }
            if rf && n % 4 == 0 { remove_fails.insert(id.clone()); }
            snapshot.containers.push(Container {
                id: Id::new(&id),
                pod_uid: Id::new(format!("p{pod}")),
                name: Id::new(["app", "side", "init"][name]),
                state,
                created_at: t(created),
                sandbox_id: (sandbox < 3).then(|| Id::new(format!("s{pod}-{sandbox}"))),
            });
        }
        let mut stop_fails = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (pod, ready, created, sf) in raw_sandboxes {
            let k = (0..3).find(|k| !seen.contains(&(pod, *k)));
            let Some(k) = k else { continue };
            seen.insert((pod, k));
            let id = format!("s{pod}-{k}");
            if sf && created % 3 == 0 { stop_fails.insert(id.clone()); }
            snapshot.sandboxes.push(Sandbox {
                id: Id::new(&id),
                pod_uid: Id::new(format!("p{pod}")),
                state: if ready { SandboxState::Ready } else { SandboxState::NotReady },
                created_at: t(created),
            });
        }
        for (pod, legacy) in dirs {
            snapshot.pod_log_dirs.push(if legacy { format!("p{pod}") } else { format!("ns_name-{pod}_p{pod}") });
        }
        ContainerCase {
            snapshot,
            policy: ContainerGcPolicy::new(Duration::from_secs(min_age), max_per_pod, max_containers).unwrap(),
            now,
            all_sources_ready,
            evict,
            kill_fails,
            remove_fails,
            stop_fails,
        }
    }
}

impl ContainerCase {
    fn options(&self) -> ContainerGcOptions {
        let mut o = ContainerGcOptions::new(t(self.now));
        o.all_sources_ready(self.all_sources_ready)
            .evict_non_deleted_pods(self.evict);
        o
    }
}

/// What a container GC run did, in the form both implementations produce.
#[derive(Debug, Default, PartialEq)]
struct Calls {
    /// Per step: the ids whose RemoveContainer was called.
    steps: BTreeMap<&'static str, BTreeSet<String>>,
    /// Step 4's remove calls in order.
    oldest_order: Vec<String>,
    killed: BTreeSet<String>,
    remaining: BTreeSet<String>,
    stopped_sandboxes: BTreeSet<String>,
    removed_sandboxes: BTreeSet<String>,
    log_dirs: Vec<String>,
}

fn step_name(step: EvictionStep) -> &'static str {
    match step {
        EvictionStep::DeletedPod => "1-deleted",
        EvictionStep::PerUnitCap => "2-per-unit",
        EvictionStep::GlobalShare => "3-share",
        EvictionStep::GlobalOldest => "4-oldest",
    }
}

/// Runs the collector with the case's failure injection.
fn run_collector(case: &ContainerCase) -> Calls {
    run_collector_with(case, ContainerPlanner::new())
}

/// Runs the collector of `planner` with the case's failure injection.
fn run_collector_with(case: &ContainerCase, mut planner: ContainerPlanner) -> Calls {
    let pods = case.snapshot.pod_states();
    let options = case.options();
    let mut calls = Calls::default();
    let mut removed_ok = BTreeSet::new();
    let report = planner
        .collector(&case.snapshot, &case.policy, &pods, &options)
        .run_with(|call| match call {
            ContainerCall::KillContainer { id } => {
                calls.killed.insert(id.to_string());
                if case.kill_fails.contains(id.as_str()) {
                    Err(CallError::new("kill failed"))
                } else {
                    Ok(())
                }
            }
            ContainerCall::RemoveContainer { id } => {
                if case.remove_fails.contains(id.as_str()) {
                    Err(CallError::new("remove failed"))
                } else {
                    removed_ok.insert(id.to_string());
                    Ok(())
                }
            }
            ContainerCall::StopSandbox { id } => {
                calls.stopped_sandboxes.insert(id.to_string());
                if case.stop_fails.contains(id.as_str()) {
                    Err(CallError::new("stop failed"))
                } else {
                    Ok(())
                }
            }
            ContainerCall::RemoveSandbox { id } => {
                calls.removed_sandboxes.insert(id.to_string());
                Ok(())
            }
            ContainerCall::RemovePodLogDir { dir } => {
                calls.log_dirs.push(dir.clone());
                Ok(())
            }
            _ => Err(CallError::new("unexpected")),
        });
    for r in &report.removals {
        if r.status.remove_called() {
            calls
                .steps
                .entry(step_name(r.step))
                .or_default()
                .insert(r.container.id.to_string());
            if r.step == EvictionStep::GlobalOldest {
                calls.oldest_order.push(r.container.id.to_string());
            }
        }
    }
    calls.remaining = case
        .snapshot
        .containers
        .iter()
        .map(|c| c.id.to_string())
        .filter(|id| !removed_ok.contains(id))
        .collect();
    calls
}

// ---- container GC: the reference (spec 1.4-1.7, written naively) --------

#[derive(Clone, Debug)]
struct Info {
    id: String,
    created: Timestamp,
    unknown: bool,
}

/// Sorts newest first: creation time descending; among equal times the
/// larger id counts as newer (the crate's documented tie-break).
fn sort_newest_first(list: &mut [Info]) {
    list.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
}

struct Reference<'a> {
    case: &'a ContainerCase,
    calls: Calls,
    removed_ok: BTreeSet<String>,
}

impl Reference<'_> {
    /// Spec 1.5 "remove oldest N", returning the kept prefix.
    fn remove_oldest_n(&mut self, mut list: Vec<Info>, n: usize, step: &'static str) -> Vec<Info> {
        let keep = list.len() - n;
        // Step 1 does not sort (keep == 0); the crate's documented order for
        // it is oldest first, so the reference sorts anyway: the sets are
        // what is compared.
        sort_newest_first(&mut list);
        for i in (keep..list.len()).rev() {
            let c = list[i].clone();
            if c.unknown {
                self.calls.killed.insert(c.id.clone());
                if self.case.kill_fails.contains(&c.id) {
                    continue;
                }
            }
            self.calls
                .steps
                .entry(step)
                .or_default()
                .insert(c.id.clone());
            if step == "4-oldest" {
                self.calls.oldest_order.push(c.id.clone());
            }
            if !self.case.remove_fails.contains(&c.id) {
                self.removed_ok.insert(c.id.clone());
            }
        }
        list.truncate(keep);
        list
    }

    fn run(mut self) -> Calls {
        let case = self.case;
        let pods = case.snapshot.pod_states();
        let p = &case.policy;
        let removable = |uid: &str| {
            let s = pods.state(uid);
            s.content_removable() || (case.evict && s.runtime_removable())
        };
        // Candidates grouped by unit.
        let cutoff = t(case.now).sub(p.min_age());
        let mut units: BTreeMap<(String, String), Vec<Info>> = BTreeMap::new();
        for c in &case.snapshot.containers {
            if c.state == ContainerState::Running || c.created_at > cutoff {
                continue;
            }
            units
                .entry((c.pod_uid.to_string(), c.name.to_string()))
                .or_default()
                .push(Info {
                    id: c.id.to_string(),
                    created: c.created_at,
                    unknown: c.state == ContainerState::Unknown,
                });
        }
        // Step 1.
        if case.all_sources_ready {
            let keys: Vec<_> = units.keys().cloned().collect();
            for key in keys {
                if removable(&key.0) {
                    let unit = units.remove(&key).unwrap();
                    let n = unit.len();
                    self.remove_oldest_n(unit, n, "1-deleted");
                }
            }
        }
        // Step 2.
        let enforce =
            |me: &mut Self, units: &mut BTreeMap<(String, String), Vec<Info>>, max: i64, step| {
                let keys: Vec<_> = units.keys().cloned().collect();
                for key in keys {
                    let unit = units.remove(&key).unwrap();
                    let to_remove = unit.len() as i64 - max;
                    let unit = if to_remove > 0 {
                        me.remove_oldest_n(unit, to_remove as usize, step)
                    } else {
                        unit
                    };
                    units.insert(key, unit);
                }
            };
        if p.max_per_pod_container() >= 0 {
            enforce(
                &mut self,
                &mut units,
                p.max_per_pod_container(),
                "2-per-unit",
            );
        }
        // Steps 3 and 4.
        let total = |units: &BTreeMap<(String, String), Vec<Info>>| {
            units.values().map(Vec::len).sum::<usize>() as i64
        };
        if p.max_containers() >= 0 && total(&units) > p.max_containers() {
            let mut share = p.max_containers() / units.len() as i64;
            if share < 1 {
                share = 1;
            }
            enforce(&mut self, &mut units, share, "3-share");
            let n = total(&units);
            if n > p.max_containers() {
                let flat: Vec<Info> = units.values().flatten().cloned().collect();
                self.remove_oldest_n(flat, (n - p.max_containers()) as usize, "4-oldest");
            }
        }
        // Sandboxes (spec 1.6), over the containers that still exist.
        let existing: Vec<&Container> = case
            .snapshot
            .containers
            .iter()
            .filter(|c| !self.removed_ok.contains(c.id.as_str()))
            .collect();
        let referenced: BTreeSet<String> = existing
            .iter()
            .map(|c| {
                c.sandbox_id
                    .as_ref()
                    .map_or(String::new(), |s| s.to_string())
            })
            .collect();
        let mut by_pod: BTreeMap<String, Vec<&Sandbox>> = BTreeMap::new();
        for s in &case.snapshot.sandboxes {
            by_pod.entry(s.pod_uid.to_string()).or_default().push(s);
        }
        for (pod, mut list) in by_pod {
            list.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            let skip = if removable(&pod) { 0 } else { 1 };
            for s in list.iter().skip(skip) {
                let active = s.state == SandboxState::Ready || referenced.contains(s.id.as_str());
                if active {
                    continue;
                }
                self.calls.stopped_sandboxes.insert(s.id.to_string());
                if !case.stop_fails.contains(s.id.as_str()) {
                    self.calls.removed_sandboxes.insert(s.id.to_string());
                }
            }
        }
        // Pod log directories (spec 1.7).
        if case.all_sources_ready {
            for d in &case.snapshot.pod_log_dirs {
                let uid = d.split('_').next_back().unwrap();
                if pods.state(uid).content_removable() {
                    self.calls.log_dirs.push(d.clone());
                }
            }
        }
        self.calls.remaining = case
            .snapshot
            .containers
            .iter()
            .map(|c| c.id.to_string())
            .filter(|id| !self.removed_ok.contains(id))
            .collect();
        self.calls
    }
}

fn reference(case: &ContainerCase) -> Calls {
    Reference {
        case,
        calls: Calls::default(),
        removed_ok: BTreeSet::new(),
    }
    .run()
}

/// Applies a dry-run plan to a snapshot: removed containers, sandboxes and
/// log directories disappear.
fn apply(
    snapshot: &ContainerSnapshot,
    plan: &reclaim_kubelet::ContainerPlan<'_>,
) -> ContainerSnapshot {
    let gone: BTreeSet<&str> = plan
        .removals
        .iter()
        .map(|r| r.container.id.as_str())
        .collect();
    let gone_sb: BTreeSet<&str> = plan
        .sandbox_removals
        .iter()
        .map(|r| r.sandbox.id.as_str())
        .collect();
    let gone_dirs: BTreeSet<&str> = plan.pod_log_removals.iter().map(|r| r.dir).collect();
    let mut next = snapshot.clone();
    next.containers.retain(|c| !gone.contains(c.id.as_str()));
    next.sandboxes.retain(|s| !gone_sb.contains(s.id.as_str()));
    next.pod_log_dirs
        .retain(|d| !gone_dirs.contains(d.as_str()));
    next
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn container_gc_matches_the_reference(case in container_case()) {
        prop_assert_eq!(run_collector(&case), reference(&case));
    }

    #[test]
    fn running_containers_are_never_removed(case in container_case()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        let running: BTreeSet<&str> = case.snapshot.containers.iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.id.as_str())
            .collect();
        for r in &plan.removals {
            prop_assert!(!running.contains(r.container.id.as_str()), "running container {} removed", r.container.id);
        }
    }

    #[test]
    fn caps_hold_after_the_plan_counting_failures_as_upstream(case in container_case()) {
        // Upstream treats a failed kill or removal as done, so the caps hold
        // for the containers it believes remain; actually remaining
        // containers exceed that exactly by the failed ones.
        let pods = case.snapshot.pod_states();
        let options = case.options();
        let report = ContainerCollector::new(&case.snapshot, &case.policy, &pods, &options)
            .run_with(|call| match call {
                ContainerCall::KillContainer { id } if case.kill_fails.contains(id.as_str()) => {
                    Err(CallError::new("kill failed"))
                }
                ContainerCall::RemoveContainer { id } if case.remove_fails.contains(id.as_str()) => {
                    Err(CallError::new("remove failed"))
                }
                _ => Ok(()),
            });
        let planned: BTreeSet<&str> = report.removals.iter().map(|r| r.container.id.as_str()).collect();
        let cutoff = t(case.now).sub(case.policy.min_age());
        let mut per_unit: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut total = 0i64;
        for c in &case.snapshot.containers {
            let candidate = c.state != ContainerState::Running && c.created_at <= cutoff;
            if candidate && !planned.contains(c.id.as_str()) {
                *per_unit.entry((c.pod_uid.as_str(), c.name.as_str())).or_default() += 1;
                total += 1;
            }
        }
        if case.policy.max_per_pod_container() >= 0 {
            for (unit, n) in &per_unit {
                prop_assert!(*n <= case.policy.max_per_pod_container(), "unit {:?} keeps {}", unit, n);
            }
        }
        if case.policy.max_containers() >= 0 {
            prop_assert!(total <= case.policy.max_containers());
        }
        let failed = report.removals.iter().filter(|r| !r.status.succeeded()).count();
        let actually_remaining = case.snapshot.containers.len() - (report.removals.len() - failed);
        prop_assert_eq!(
            actually_remaining,
            case.snapshot.containers.len() - planned.len() + failed
        );
    }

    #[test]
    fn container_plan_is_invariant_under_permutation(case in container_case(), seed in any::<u64>()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        let mut shuffled = case.snapshot.clone();
        shuffle(&mut shuffled.containers, seed);
        shuffle(&mut shuffled.sandboxes, seed ^ 1);
        shuffle(&mut shuffled.pods, seed ^ 2);
        let pods2 = shuffled.pod_states();
        let plan2 = plan_containers(&shuffled, &case.policy, &pods2, &case.options());
        prop_assert_eq!(plan, plan2);
    }

    #[test]
    fn applying_a_container_plan_leaves_nothing_to_do(case in container_case()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        let next = apply(&case.snapshot, &plan);
        let again = plan_containers(&next, &case.policy, &pods, &case.options());
        prop_assert!(again.removals.is_empty(), "{:?}", again.removals);
        prop_assert!(again.sandbox_removals.is_empty(), "{:?}", again.sandbox_removals);
        prop_assert!(again.pod_log_removals.is_empty());
    }

    #[test]
    fn every_container_is_removed_or_kept_once(case in container_case()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        let mut ids: Vec<&str> = plan.removals.iter().map(|r| r.container.id.as_str())
            .chain(plan.kept.iter().map(|k| k.container.id.as_str()))
            .collect();
        ids.sort_unstable();
        let mut want: Vec<&str> = case.snapshot.containers.iter().map(|c| c.id.as_str()).collect();
        want.sort_unstable();
        prop_assert_eq!(ids, want);
        let mut sb: Vec<&str> = plan.sandbox_removals.iter().map(|r| r.sandbox.id.as_str())
            .chain(plan.kept_sandboxes.iter().map(|k| k.sandbox.id.as_str()))
            .collect();
        sb.sort_unstable();
        let mut want: Vec<&str> = case.snapshot.sandboxes.iter().map(|s| s.id.as_str()).collect();
        want.sort_unstable();
        prop_assert_eq!(sb, want);
    }
}

/// A seeded Fisher-Yates shuffle (splitmix64), so the property tests need no
/// extra dependency.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

// ---- image GC -------------------------------------------------------------

#[derive(Clone, Debug)]
struct ImageCase {
    images: Vec<(String, ImageRecord, bool)>,
    policy: ImagePolicy,
    now: i64,
    began_gc: i64,
    capacity: u64,
    available: u64,
    remove_fails: BTreeSet<String>,
}

prop_compose! {
    fn image_case()(
        raw in prop::collection::vec(
            (0i64..150, prop::option::weighted(0.7, 0i64..150), 1u64..400, prop::bool::weighted(0.1),
             prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
            0..30,
        ),
        high in 0i32..=100,
        low_frac in 0i32..=100,
        min_age in 0i64..60,
        max_age in prop_oneof![Just(0i64), 1i64..120],
        now in 100i64..160,
        began_gc in 0i64..160,
        capacity in 0u64..8000,
        available_frac in 0u64..120,
    ) -> ImageCase {
        let low = high * low_frac / 100;
        let mut images = Vec::new();
        let mut remove_fails = BTreeSet::new();
        for (n, (first, last, size, pinned, in_use, fails)) in raw.into_iter().enumerate() {
            let id = format!("img{n:02}");
            if fails { remove_fails.insert(id.clone()); }
            images.push((id, ImageRecord {
                first_detected: t(first),
                last_used: last.map(t),
                size_bytes: size,
                pinned,
            }, in_use));
        }
        ImageCase {
            images,
            policy: ImagePolicy::new(high, low, Duration::from_secs(min_age), Duration::from_secs(max_age)).unwrap(),
            now,
            began_gc,
            capacity,
            available: capacity * available_frac / 100,
            remove_fails,
        }
    }
}

impl ImageCase {
    /// The records, inserted in listing order or shuffled by `order_seed`,
    /// with in-use flags set.
    fn records(&self, order_seed: Option<u64>) -> ImageRecords {
        let mut list = self.images.clone();
        if let Some(seed) = order_seed {
            shuffle(&mut list, seed);
        }
        // Large cases use small hash partitions, to exercise that path.
        let mut records = if list.len() > 1000 {
            ImageRecords::with_partition_size(256)
        } else {
            ImageRecords::new()
        };
        for (id, r, used) in list {
            records.insert(&id, r);
            if used {
                records.set_in_use(&id, true);
            }
        }
        records
    }

    fn fs(&self) -> ImageFsStats {
        ImageFsStats::new(self.capacity, self.available)
    }

    fn run<'a>(&self, records: &'a ImageRecords, failures: bool) -> ImagePlan<'a> {
        ImageCollector::garbage_collect(records, &self.policy, t(self.now), t(self.began_gc))
            .run_with(
                |id| {
                    if failures && self.remove_fails.contains(id) {
                        Err(CallError::new(format!("cannot remove {id}")))
                    } else {
                        Ok(())
                    }
                },
                || Ok(self.fs()),
            )
    }
}

/// The reference `GarbageCollect` (spec 2.4-2.7): the remove calls in order
/// with their outcome, the space pass's freed bytes and the error kind.
fn image_reference(case: &ImageCase) -> (Vec<(String, bool)>, Option<i64>, Option<&'static str>) {
    let go_zero = Timestamp::from_unix_secs(-62_135_596_800);
    let free_time = t(case.now);
    let p = &case.policy;
    let mut list: Vec<&(String, ImageRecord, bool)> = case
        .images
        .iter()
        .filter(|(_, r, used)| !used && !r.pinned)
        .collect();
    list.sort_by(|a, b| {
        (a.1.last_used.unwrap_or(go_zero), a.1.first_detected, &a.0).cmp(&(
            b.1.last_used.unwrap_or(go_zero),
            b.1.first_detected,
            &b.0,
        ))
    });
    let mut calls = Vec::new();
    let fails = |id: &str| case.remove_fails.contains(id);
    // Age pass.
    if !p.max_age().is_zero() && free_time.saturating_duration_since(t(case.began_gc)) > p.max_age()
    {
        let mut kept = Vec::new();
        let mut errors = false;
        for img in list {
            let idle = free_time.saturating_duration_since(img.1.last_used.unwrap_or(go_zero));
            if idle > p.max_age() {
                calls.push((img.0.clone(), !fails(&img.0)));
                if fails(&img.0) {
                    errors = true;
                    kept.push(img);
                }
            } else {
                kept.push(img);
            }
        }
        if errors {
            return (calls, None, Some("age_deletion_errors"));
        }
        list = kept;
    }
    // Stats.
    let capacity = case.capacity as i64;
    let available = (case.available as i64).min(capacity);
    if capacity == 0 {
        return (calls, None, Some("invalid_capacity"));
    }
    let usage = 100 - available * 100 / capacity;
    if usage < i64::from(p.high_threshold_percent()) {
        return (calls, None, None);
    }
    let amount = capacity * (100 - i64::from(p.low_threshold_percent())) / 100 - available;
    // Space pass.
    let mut freed = 0i64;
    let mut errors = false;
    for img in list {
        if img.1.last_used.unwrap_or(go_zero) >= free_time {
            continue;
        }
        if free_time.saturating_duration_since(img.1.first_detected) < p.min_age() {
            continue;
        }
        calls.push((img.0.clone(), !fails(&img.0)));
        if fails(&img.0) {
            errors = true;
            continue;
        }
        freed += img.1.size_bytes as i64;
        if freed >= amount {
            break;
        }
    }
    let error = if errors {
        Some("deletion_errors")
    } else if freed < amount {
        Some("insufficient_space")
    } else {
        None
    };
    (calls, Some(freed), error)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn image_gc_matches_the_reference(case in image_case()) {
        let records = case.records(None);
        let plan = case.run(&records, true);
        let calls: Vec<(String, bool)> = plan.removals.iter()
            .map(|r| (plan.id(r.record).to_owned(), r.status.succeeded()))
            .collect();
        let (want_calls, want_freed, want_error) = image_reference(&case);
        prop_assert_eq!(calls, want_calls);
        prop_assert_eq!(plan.space_freed, want_freed);
        prop_assert_eq!(plan.error.as_ref().map(ImageGcError::kind), want_error);
    }

    #[test]
    fn protected_images_are_never_chosen(case in image_case()) {
        let records = case.records(None);
        let plan = case.run(&records, false);
        let free_time = t(case.now);
        let by_id: BTreeMap<&str, (&ImageRecord, bool)> =
            case.images.iter().map(|(id, r, used)| (id.as_str(), (r, *used))).collect();
        for r in &plan.removals {
            let (rec, used) = by_id[plan.id(r.record)];
            prop_assert!(!used, "in-use image {} removed", plan.id(r.record));
            prop_assert!(!rec.pinned, "pinned image {} removed", plan.id(r.record));
            match r.pass {
                // The space pass respects MinAge and skips images used at
                // the GC's time.
                ImagePass::Space => {
                    prop_assert!(free_time.saturating_duration_since(rec.first_detected) >= case.policy.min_age());
                    prop_assert!(rec.last_used.is_none_or(|u| u < free_time));
                }
                // The age pass ignores MinAge by design (spec 2.6) but only
                // takes images unused for longer than MaxAge.
                ImagePass::Age => {
                    let idle = rec.last_used.map_or(Duration::MAX, |u| free_time.saturating_duration_since(u));
                    prop_assert!(idle > case.policy.max_age());
                }
            }
        }
        // DeleteUnusedImages has the same protections.
        let unused = ImageCollector::delete_unused_images(&records, &case.policy, free_time)
            .run_with(|_| Ok(()), || Ok(ImageFsStats::default()));
        for r in &unused.removals {
            let (rec, used) = by_id[unused.id(r.record)];
            prop_assert!(!used && !rec.pinned);
            prop_assert!(free_time.saturating_duration_since(rec.first_detected) >= case.policy.min_age());
        }
    }

    #[test]
    fn image_plan_is_invariant_under_record_order(case in image_case(), seed in any::<u64>()) {
        let a = case.records(None);
        let b = case.records(Some(seed));
        let pa = plan_images(&a, &case.policy, t(case.now), t(case.began_gc), case.fs());
        let pb = plan_images(&b, &case.policy, t(case.now), t(case.began_gc), case.fs());
        prop_assert_eq!(serde_json::to_value(&pa).unwrap(), serde_json::to_value(&pb).unwrap());
    }

    #[test]
    fn applying_an_image_plan_leaves_at_most_upstreams_rounding_slack(case in image_case()) {
        // Model of the disk: removing an image frees its size.
        let mut records = case.records(None);
        let now = t(case.now);
        let plan = plan_images(&records, &case.policy, now, t(case.began_gc), case.fs());
        let removed: Vec<String> = plan.removed().map(str::to_owned).collect();
        let freed = plan.bytes_removed();
        drop(plan);
        records.forget(&removed);
        let available = case.available.min(case.capacity) + freed;
        let fs2 = ImageFsStats::new(case.capacity, available.min(case.capacity));
        let again = plan_images(&records, &case.policy, now, t(case.began_gc), fs2);
        // The space pass checks its target after each removal, so when the
        // truncating usage arithmetic still reaches the high threshold, the
        // second run's target is at most zero and it removes at most one image.
        if again.removals.is_empty() {
            return Ok(());
        }
        prop_assert!(again.removals.iter().all(|r| r.pass == ImagePass::Space));
        prop_assert_eq!(again.removals.len(), 1);
        prop_assert!(again.amount_to_free.is_some_and(|a| a <= 0), "{:?}", again.amount_to_free);
    }

    #[test]
    fn every_record_is_removed_or_kept_once(case in image_case()) {
        let records = case.records(None);
        let plan = case.run(&records, true);
        let mut ids: Vec<&str> = plan.removals.iter().map(|r| plan.id(r.record))
            .chain(plan.kept.iter().map(|k| plan.id(k.record)))
            .collect();
        ids.sort_unstable();
        let mut want: Vec<&str> = case.images.iter().map(|(id, _, _)| id.as_str()).collect();
        want.sort_unstable();
        prop_assert_eq!(ids, want);
    }

    #[test]
    fn saved_records_restore_to_the_same_plan(case in image_case()) {
        let records = case.records(None);
        let json = serde_json::to_string(&records).unwrap();
        let restored: ImageRecords = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &records);
        // In-use flags belong to a detection and are not saved; set them
        // again as the next detection would.
        let mut restored = restored;
        for (id, _, used) in &case.images {
            if *used {
                restored.set_in_use(id, true);
            }
        }
        let now = t(case.now);
        let a = plan_images(&records, &case.policy, now, t(case.began_gc), case.fs());
        let b = plan_images(&restored, &case.policy, now, t(case.began_gc), case.fs());
        prop_assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
    }

    #[test]
    fn detection_matches_the_reference(
        steps in prop::collection::vec(
            (prop::collection::vec((0usize..12, 1u64..100, any::<bool>()), 0..15),
             prop::collection::vec(0usize..14, 0..6)),
            1..5,
        )
    ) {
        let mut records = ImageRecords::new();
        let mut model: BTreeMap<String, ImageRecord> = BTreeMap::new();
        for (round, (listed, used)) in steps.into_iter().enumerate() {
            let detect = t(round as i64 * 10);
            let now = t(round as i64 * 10 + 3);
            let images: Vec<ListedImage> = listed.iter()
                .map(|&(i, size, pinned)| ListedImage { id: Id::new(format!("i{i}")), size_bytes: size, pinned })
                .collect();
            let users: Vec<ImageUser> = used.iter()
                .map(|&i| ImageUser { id: None, image_id: Id::new(format!("i{i}")), state: None })
                .collect();
            records.detect(&images, &users, detect, now);
            // Reference: spec 2.3, step by step.
            let in_use: BTreeSet<String> = users.iter().map(|u| u.image_id.to_string()).collect();
            let mut current = BTreeSet::new();
            for img in &images {
                let key = img.id.to_string();
                current.insert(key.clone());
                let r = model.entry(key.clone()).or_insert(ImageRecord {
                    first_detected: detect,
                    last_used: None,
                    size_bytes: 0,
                    pinned: false,
                });
                if in_use.contains(&key) {
                    r.last_used = Some(now);
                }
                r.size_bytes = img.size_bytes;
                r.pinned = img.pinned;
            }
            model.retain(|k, _| current.contains(k));
            let got: Vec<(String, ImageRecord)> =
                records.sorted().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            for (k, _) in &got {
                prop_assert_eq!(records.is_in_use(k), in_use.contains(k));
            }
            let want: Vec<(String, ImageRecord)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(got, want);
        }
    }
}

// ---- large inputs: several partitions --------------------------------------

prop_compose! {
    /// Thousands of containers in hundreds of units, so that grouping runs
    /// over several hash partitions; creation times collide often.
    fn large_container_case()(
        pods in 50usize..400,
        n in 4_000usize..12_000,
        seed in any::<u64>(),
        max_per_pod in -1i64..3,
        max_containers in prop_oneof![Just(-1i64), 0i64..3000],
        evict in any::<bool>(),
    ) -> ContainerCase {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut snapshot = ContainerSnapshot::default();
        for p in 0..pods {
            let state = match next() % 10 { 0 => PodState::Deleted, 1 => PodState::Terminated, _ => PodState::Active };
            snapshot.pods.push(Pod { uid: Id::new(format!("{p:08x}-aaaa-bbbb-cccc-{p:012x}")), state });
        }
        let mut kill_fails = BTreeSet::new();
        let mut remove_fails = BTreeSet::new();
        for i in 0..n {
            let p = (next() % pods as u64) as usize;
            let state = match next() % 8 { 0 => ContainerState::Running, 1 => ContainerState::Unknown, 2 => ContainerState::Created, _ => ContainerState::Exited };
            let id = format!("c{:016x}", next());
            if next() % 50 == 0 { kill_fails.insert(id.clone()); }
            if next() % 50 == 0 { remove_fails.insert(id.clone()); }
            // A long name now and then goes through the non-inline path.
            let name = match next() % 40 { 0 => "x".repeat(70), k => format!("app-{}", k % 3) };
            snapshot.containers.push(Container {
                id: Id::new(id),
                pod_uid: Id::new(format!("{p:08x}-aaaa-bbbb-cccc-{p:012x}")),
                name: Id::new(name),
                state,
                created_at: t((next() % 500) as i64 + (i % 2) as i64),
                sandbox_id: Some(Id::new(format!("s{p}"))),
            });
        }
        for p in 0..pods {
            snapshot.sandboxes.push(Sandbox {
                id: Id::new(format!("s{p}")),
                pod_uid: Id::new(format!("{p:08x}-aaaa-bbbb-cccc-{p:012x}")),
                state: SandboxState::NotReady,
                created_at: t((next() % 500) as i64),
            });
        }
        ContainerCase {
            snapshot,
            policy: ContainerGcPolicy::new(Duration::from_secs(10), max_per_pod, max_containers).unwrap(),
            now: 505,
            all_sources_ready: true,
            evict,
            kill_fails,
            remove_fails,
            stop_fails: BTreeSet::new(),
        }
    }
}

prop_compose! {
    /// Thousands of image records over several partitions, with colliding
    /// times so that the id tie-break matters.
    fn large_image_case()(
        n in 3_000usize..9_000,
        seed in any::<u64>(),
        high in 50i32..=100,
        low_frac in 0i32..=100,
        max_age in prop_oneof![Just(0i64), 1i64..200],
        began_gc in 0i64..300,
        available_frac in 0u64..100,
    ) -> ImageCase {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut images = Vec::new();
        let mut remove_fails = BTreeSet::new();
        let mut total = 0;
        for i in 0..n {
            let id = format!("sha256:{:064x}", next() as u128 * 7 + i as u128);
            if next() % 100 == 0 { remove_fails.insert(id.clone()); }
            let size = next() % 1000 + 1;
            total += size;
            let last = (next() % 4 != 0).then(|| t((next() % 50) as i64 + 200));
            images.push((id, ImageRecord { first_detected: t((next() % 50) as i64), last_used: last, size_bytes: size, pinned: next() % 50 == 0 }, next() % 10 == 0));
        }
        let capacity = total + total / 10;
        ImageCase {
            images,
            policy: ImagePolicy::new(high, high * low_frac / 100, Duration::from_secs(30), Duration::from_secs(max_age)).unwrap(),
            now: 300,
            began_gc,
            capacity,
            available: capacity * available_frac / 100,
            remove_fails,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn large_container_gc_matches_the_reference(case in large_container_case()) {
        let want = reference(&case);
        prop_assert_eq!(&run_collector_with(&case, ContainerPlanner::with_partition_size(300)), &want);
        prop_assert_eq!(&run_collector(&case), &want);
    }

    #[test]
    fn large_container_plan_is_invariant_under_permutation(case in large_container_case(), seed in any::<u64>()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        let mut shuffled = case.snapshot.clone();
        shuffle(&mut shuffled.containers, seed);
        shuffle(&mut shuffled.sandboxes, seed ^ 1);
        let mut small = ContainerPlanner::with_partition_size(200);
        let plan2 = small.plan(&shuffled, &case.policy, &pods, &case.options());
        prop_assert_eq!(plan, plan2);
    }

    #[test]
    fn large_image_gc_matches_the_reference(case in large_image_case()) {
        let records = case.records(None);
        let plan = case.run(&records, true);
        let calls: Vec<(String, bool)> = plan.removals.iter()
            .map(|r| (plan.id(r.record).to_owned(), r.status.succeeded()))
            .collect();
        let (want_calls, want_freed, want_error) = image_reference(&case);
        prop_assert_eq!(calls, want_calls);
        prop_assert_eq!(plan.space_freed, want_freed);
        prop_assert_eq!(plan.error.as_ref().map(ImageGcError::kind), want_error);
        let shuffled = case.records(Some(7));
        let again = case.run(&shuffled, true);
        prop_assert_eq!(serde_json::to_value(&plan).unwrap(), serde_json::to_value(&again).unwrap());
    }

    #[test]
    fn large_detection_matches_a_map(seed in any::<u64>(), n in 3_000usize..12_000) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut records = ImageRecords::with_partition_size(300);
        let mut model: BTreeMap<String, ImageRecord> = BTreeMap::new();
        for round in 0..3i64 {
            // Ids from a pool larger than the listing, so images come and go;
            // a few are too long to be copied inline.
            let images: Vec<ListedImage> = (0..n)
                .map(|_| {
                    let k = next() % (n as u64 * 3 / 2);
                    let id = if k.is_multiple_of(97) { format!("registry.example/{}/{k}", "y".repeat(80)) } else { format!("sha256:{k:064x}") };
                    ListedImage { id: Id::new(id), size_bytes: next() % 100, pinned: next() % 30 == 0 }
                })
                .collect();
            let users: Vec<ImageUser> = images.iter().step_by(7)
                .map(|i| ImageUser { id: None, image_id: i.id.clone(), state: None })
                .collect();
            let (detect, now) = (t(round * 10), t(round * 10 + 1));
            records.detect(&images, &users, detect, now);
            let in_use: BTreeSet<&str> = users.iter().map(|u| u.image_id.as_str()).collect();
            let mut current = BTreeSet::new();
            for img in &images {
                current.insert(img.id.to_string());
                let r = model.entry(img.id.to_string()).or_insert(ImageRecord { first_detected: detect, last_used: None, size_bytes: 0, pinned: false });
                if in_use.contains(img.id.as_str()) { r.last_used = Some(now); }
                r.size_bytes = img.size_bytes;
                r.pinned = img.pinned;
            }
            model.retain(|k, _| current.contains(k));
            prop_assert_eq!(records.len(), model.len());
            for (k, v) in &model {
                prop_assert_eq!(records.get(k), Some(*v));
                prop_assert_eq!(records.is_in_use(k), in_use.contains(k.as_str()));
            }
        }
    }
}

/// Checks the documented order of a container plan against the snapshot:
/// within steps 1-3, units by oldest candidate (creation time, then id) and
/// containers oldest first within a unit; step 4 oldest first; kept
/// candidates in unit order, then the other containers oldest first.
fn check_documented_order(
    case: &ContainerCase,
    plan: &reclaim_kubelet::ContainerPlan<'_>,
) -> Result<(), TestCaseError> {
    let cutoff = t(case.now).sub(case.policy.min_age());
    let mut oldest: BTreeMap<(&str, &str), (Timestamp, &str)> = BTreeMap::new();
    for c in &case.snapshot.containers {
        if c.state != ContainerState::Running && c.created_at <= cutoff {
            let key = (c.pod_uid.as_str(), c.name.as_str());
            let v = (c.created_at, c.id.as_str());
            oldest
                .entry(key)
                .and_modify(|o| *o = (*o).min(v))
                .or_insert(v);
        }
    }
    let unit_order = |c: &Container| {
        let (t0, id0) = oldest[&(c.pod_uid.as_str(), c.name.as_str())];
        ((t0, id0.to_owned()), c.created_at, c.id.to_string())
    };
    for step in [
        EvictionStep::DeletedPod,
        EvictionStep::PerUnitCap,
        EvictionStep::GlobalShare,
    ] {
        let keys: Vec<_> = plan
            .removals_by(step)
            .map(|r| unit_order(r.container))
            .collect();
        prop_assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "step {:?} out of order",
            step
        );
    }
    let oldest_keys: Vec<_> = plan
        .removals_by(EvictionStep::GlobalOldest)
        .map(|r| (r.container.created_at, r.container.id.as_str()))
        .collect();
    prop_assert!(oldest_keys.windows(2).all(|w| w[0] <= w[1]));
    let steps: Vec<EvictionStep> = plan.removals.iter().map(|r| r.step).collect();
    let rank = |s: &EvictionStep| EvictionStep::IN_ORDER.iter().position(|x| x == s).unwrap();
    prop_assert!(
        steps.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "steps out of order"
    );
    let within: Vec<_> = plan
        .kept
        .iter()
        .filter(|k| {
            matches!(
                k.reason,
                reclaim_kubelet::ContainerKeepReason::WithinLimits { .. }
            )
        })
        .map(|k| unit_order(k.container))
        .collect();
    prop_assert!(
        within.windows(2).all(|w| w[0] <= w[1]),
        "kept candidates out of order"
    );
    let n = within.len();
    let rest: Vec<_> = plan.kept[n..]
        .iter()
        .map(|k| (k.container.created_at, k.container.id.as_str()))
        .collect();
    prop_assert!(
        rest.windows(2).all(|w| w[0] <= w[1]),
        "other kept out of order"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn container_plan_follows_the_documented_order(case in container_case()) {
        let pods = case.snapshot.pod_states();
        let plan = plan_containers(&case.snapshot, &case.policy, &pods, &case.options());
        check_documented_order(&case, &plan)?;
        let mut small = ContainerPlanner::with_partition_size(4);
        let plan = small.plan(&case.snapshot, &case.policy, &pods, &case.options());
        check_documented_order(&case, &plan)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn large_container_plan_follows_the_documented_order(case in large_container_case()) {
        let pods = case.snapshot.pod_states();
        let mut small = ContainerPlanner::with_partition_size(300);
        let plan = small.plan(&case.snapshot, &case.policy, &pods, &case.options());
        check_documented_order(&case, &plan)?;
    }
}
