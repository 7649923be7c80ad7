//! The container GC's decisions: which dead containers, sandboxes and pod
//! log directories go, in which order, and why the others stay.
//!
//! The sub-pass functions here are pure. The container sub-pass does not
//! depend on runtime outcomes at all (upstream treats a failed removal as
//! done); the sandbox sub-pass depends on which containers still exist, so
//! [`crate::ContainerCollector`] runs it after the container removals.
//!
//! # How the container sub-pass stays fast
//!
//! Grouping a million containers into evict units with one big hash table
//! costs a cache and TLB miss per container. Instead, each candidate's unit
//! key (pod UID and name bytes), creation time and position are copied
//! into a fixed-size entry, the entries are split by key hash into
//! cache-sized partitions ([`crate::partition`]), and each partition is
//! grouped and sorted on its own. Units are then visited in a
//! deterministic order (oldest candidate first) by merging the
//! partitions' sorted unit lists, and only the survivors of step 3 are
//! sorted globally (for step 4). Plans refer to the snapshot's containers
//! instead of copying their ids.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;

use reclaim_model::{Duration, Id, Timestamp};
use serde::Serialize;

use super::policy::{ContainerGcOptions, ContainerGcPolicy};
use super::snapshot::{Container, ContainerState, PodStateProvider, Sandbox, SandboxState};
use std::hash::Hasher;

use crate::hash::{self, FastHasher, FastMap, FastSet};
use crate::outcome::{CallFailure, CallStatus};
use crate::partition::{self, Hashed, Partitioner};
use crate::table::write_table;

/// The step of the container sub-pass that removes a container (spec 1.5).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionStep {
    /// Step 1: the pod is content removable (or runtime removable while
    /// evicting non-deleted pods) and all sources are ready; every candidate
    /// of the unit goes.
    DeletedPod,
    /// Step 4: the node still holds more than MaxContainers candidates after
    /// step 3; the globally oldest go.
    GlobalOldest,
    /// Step 3: more than MaxContainers candidates; every unit is trimmed to
    /// MaxContainers / units (at least 1).
    GlobalShare,
    /// Step 2: the unit holds more than MaxPerPodContainer candidates.
    PerUnitCap,
}

impl EvictionStep {
    /// The steps in the order the kubelet runs them.
    pub const IN_ORDER: [Self; 4] = [
        Self::DeletedPod,
        Self::PerUnitCap,
        Self::GlobalShare,
        Self::GlobalOldest,
    ];

    /// A short name for tables.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeletedPod => "deleted-pod",
            Self::GlobalOldest => "global-oldest",
            Self::GlobalShare => "global-share",
            Self::PerUnitCap => "per-unit-cap",
        }
    }
}

/// One dead container the GC removes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct ContainerRemoval<'a> {
    /// The container, as listed in the snapshot.
    #[serde(flatten)]
    pub container: &'a Container,
    /// The step that removes it.
    pub step: EvictionStep,
    /// Its position in its evict unit, newest first (0 = the newest).
    pub rank: u32,
    /// What happened to the runtime calls.
    pub status: CallStatus,
}

impl ContainerRemoval<'_> {
    /// True when the kubelet kills the container before removing it (its
    /// state is unknown, so it might still be running).
    pub fn stops_first(&self) -> bool {
        self.container.state == ContainerState::Unknown
    }
}

/// Why a container stays.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContainerKeepReason {
    /// It is running; running containers are never candidates.
    Running,
    /// It was created less than MinAge ago.
    TooYoung {
        /// Its age at `now` (creation to `now`).
        #[serde(with = "crate::serde_time::go_duration")]
        age: Duration,
    },
    /// It is a candidate but every limit allows it.
    WithinLimits {
        /// Its position in its evict unit, newest first.
        rank: u32,
    },
}

/// A container the GC leaves alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct KeptContainer<'a> {
    /// The container, as listed in the snapshot.
    #[serde(flatten)]
    pub container: &'a Container,
    /// Why it stays.
    #[serde(flatten)]
    pub reason: ContainerKeepReason,
}

/// The numbers behind the container sub-pass (spec 1.5).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct ContainerCounts {
    /// Containers in the snapshot.
    pub listed: u64,
    /// Running containers (never candidates).
    pub running: u64,
    /// Dead containers younger than MinAge (not candidates).
    pub too_young: u64,
    /// Candidates: not running and created at or before `now - MinAge`.
    pub candidates: u64,
    /// Evict units (pod UID + container name) among the candidates.
    pub units: u64,
    /// Units whose pod is removable (step 1).
    pub removable_units: u64,
    /// Candidates left in the other units after step 2.
    pub after_per_unit_cap: u64,
    /// The per-unit share of step 3 (`MaxContainers / units`, at least 1),
    /// if step 3 ran.
    pub share: Option<i64>,
    /// Candidates left after step 3, if it ran.
    pub after_global_share: Option<u64>,
    /// How many step 4 removes, if it ran.
    pub global_excess: Option<u64>,
}

/// Why a pod sandbox goes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxReason {
    /// An older sandbox of a live pod that is not active.
    NotNewest,
    /// The pod is removable, so every inactive sandbox of it goes.
    PodRemovable,
}

/// Why a pod sandbox stays.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKeepReason {
    /// A remaining container (any state) belongs to it.
    HasContainers,
    /// It is the newest sandbox of a pod that is not removable.
    Newest,
    /// It is ready.
    Ready,
}

/// One pod sandbox the GC stops and removes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct SandboxRemoval<'a> {
    /// The sandbox, as listed in the snapshot.
    #[serde(flatten)]
    pub sandbox: &'a Sandbox,
    /// Why it goes.
    pub reason: SandboxReason,
    /// What happened to `StopPodSandbox` and `RemovePodSandbox`.
    pub status: CallStatus,
}

/// A pod sandbox the GC leaves alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct KeptSandbox<'a> {
    /// The sandbox, as listed in the snapshot.
    #[serde(flatten)]
    pub sandbox: &'a Sandbox,
    /// Why it stays.
    pub reason: SandboxKeepReason,
}

/// One pod log directory the GC removes recursively.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct PodLogRemoval<'a> {
    /// The entry name under the pod log root.
    pub dir: &'a str,
    /// The pod UID parsed from it (the last `_`-separated field).
    pub pod_uid: &'a str,
    /// What happened to the removal.
    pub status: CallStatus,
}

/// Why a pod log directory stays.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PodLogKeepReason {
    /// The pod's content is not removable.
    PodNotRemovable,
    /// Not all pod config sources have been seen, so the sub-pass is skipped.
    SourcesNotReady,
}

/// A pod log directory the GC leaves alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct KeptPodLogDir<'a> {
    /// The entry name under the pod log root.
    pub dir: &'a str,
    /// The pod UID parsed from it.
    pub pod_uid: &'a str,
    /// Why it stays.
    pub reason: PodLogKeepReason,
}

/// The container GC's plan, or, from a [`crate::ContainerCollector`], the
/// record of what it did. It borrows the snapshot it was computed from.
///
/// Invariants: every snapshot container appears exactly once, in
/// `removals` or in `kept`; the same holds for sandboxes (when the sandbox
/// sub-pass ran) and pod log directories (when the pod log sub-pass ran).
///
/// Order (deterministic, independent of the snapshot's order):
/// `removals` is in call order: step 1, then steps 2 and 3 unit by unit,
/// then step 4 oldest first. Units are visited oldest candidate first, and
/// within a unit containers go oldest first. "Oldest" compares creation
/// times, then ids (upstream leaves equal times unordered). `kept` lists
/// the kept candidates in the same unit order, then the other containers
/// oldest first. Sandboxes are oldest first; pod log directories keep
/// their listing order.
#[must_use]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerPlan<'a> {
    /// The plan format, `reclaim.kubelet.container-plan/v1`.
    pub schema: &'static str,
    /// True for a plan no runtime has executed: outcomes are assumed.
    pub dry_run: bool,
    /// The policy applied.
    pub policy: ContainerGcPolicy,
    /// The run's options (clock, sources ready, eviction mode, sub-passes).
    pub options: ContainerGcOptions,
    /// The arithmetic of the container sub-pass.
    pub counts: ContainerCounts,
    /// Dead containers to remove, in call order.
    pub removals: Vec<ContainerRemoval<'a>>,
    /// Containers that stay.
    pub kept: Vec<KeptContainer<'a>>,
    /// Sandboxes to remove, oldest first.
    pub sandbox_removals: Vec<SandboxRemoval<'a>>,
    /// Sandboxes that stay.
    pub kept_sandboxes: Vec<KeptSandbox<'a>>,
    /// Pod log directories to remove, in listing order.
    pub pod_log_removals: Vec<PodLogRemoval<'a>>,
    /// Pod log directories that stay.
    pub kept_pod_log_dirs: Vec<KeptPodLogDir<'a>>,
    /// The runtime's messages for failed calls, in call order.
    pub failures: Vec<CallFailure>,
}

/// The schema tag of [`ContainerPlan`].
pub const CONTAINER_PLAN_SCHEMA: &str = "reclaim.kubelet.container-plan/v1";

impl<'a> ContainerPlan<'a> {
    /// Ids of containers for which `RemoveContainer` was (or would be)
    /// called, in call order, including calls that failed.
    pub fn remove_calls(&self) -> impl Iterator<Item = &'a Id> + '_ {
        self.removals
            .iter()
            .filter(|r| r.status.remove_called())
            .map(|r| &r.container.id)
    }

    /// Removals made by one step, in call order.
    pub fn removals_by(
        &self,
        step: EvictionStep,
    ) -> impl Iterator<Item = &ContainerRemoval<'a>> + '_ {
        self.removals.iter().filter(move |r| r.step == step)
    }
}

impl fmt::Display for ContainerPlan<'_> {
    /// A summary with one table per sub-pass. The alternate form (`{:#}`)
    /// also lists every kept item.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let c = &self.counts;
        writeln!(
            f,
            "Container GC {} at {}",
            if self.dry_run { "plan" } else { "report" },
            o.now()
        )?;
        writeln!(f, "policy: {}", self.policy)?;
        writeln!(
            f,
            "all sources ready: {}; evict non-deleted pods: {}",
            yes_no(o.sources_ready()),
            yes_no(o.evicts_non_deleted_pods())
        )?;
        writeln!(
            f,
            "containers: {} listed, {} running, {} too young, {} candidates in {} units ({} of removable pods)",
            c.listed, c.running, c.too_young, c.candidates, c.units, c.removable_units
        )?;
        if let Some(share) = c.share {
            writeln!(
                f,
                "over the node limit: {} candidates after the per-unit cap > {}; share per unit {} leaves {}; {} more oldest go",
                c.after_per_unit_cap,
                self.policy.max_containers(),
                share,
                c.after_global_share.unwrap_or(0),
                c.global_excess.unwrap_or(0)
            )?;
        }
        let verb = if self.dry_run { "to remove" } else { "removed" };
        writeln!(f, "\nContainers {verb}: {}", self.removals.len())?;
        if !self.removals.is_empty() {
            let rows: Vec<Vec<String>> = self
                .removals
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let k = r.container;
                    vec![
                        (i + 1).to_string(),
                        r.step.as_str().to_owned(),
                        k.id.to_string(),
                        format!("{}/{}", k.pod_uid, k.name),
                        k.state.to_string(),
                        k.created_at.to_string(),
                        container_reason(self, r),
                        r.status.to_string(),
                    ]
                })
                .collect();
            write_table(
                f,
                &[
                    "#",
                    "STEP",
                    "CONTAINER",
                    "POD/NAME",
                    "STATE",
                    "CREATED",
                    "REASON",
                    "STATUS",
                ],
                &rows,
            )?;
        }
        if o.sub_passes().sandboxes {
            writeln!(f, "\nSandboxes {verb}: {}", self.sandbox_removals.len())?;
            if !self.sandbox_removals.is_empty() {
                let rows: Vec<Vec<String>> = self
                    .sandbox_removals
                    .iter()
                    .map(|s| {
                        vec![
                            s.sandbox.id.to_string(),
                            s.sandbox.pod_uid.to_string(),
                            s.sandbox.created_at.to_string(),
                            match s.reason {
                                SandboxReason::NotNewest => "older inactive sandbox of a live pod",
                                SandboxReason::PodRemovable => {
                                    "inactive sandbox of a removable pod"
                                }
                            }
                            .to_owned(),
                            s.status.to_string(),
                        ]
                    })
                    .collect();
                write_table(f, &["SANDBOX", "POD", "CREATED", "REASON", "STATUS"], &rows)?;
            }
        }
        if o.sub_passes().pod_logs {
            writeln!(
                f,
                "\nPod log directories {verb}: {}",
                self.pod_log_removals.len()
            )?;
            if !self.pod_log_removals.is_empty() {
                let rows: Vec<Vec<String>> = self
                    .pod_log_removals
                    .iter()
                    .map(|d| vec![d.dir.to_owned(), d.pod_uid.to_owned(), d.status.to_string()])
                    .collect();
                write_table(f, &["DIRECTORY", "POD", "STATUS"], &rows)?;
            }
        }
        for failure in &self.failures {
            writeln!(
                f,
                "  {} {}: {}",
                failure.call, failure.target, failure.message
            )?;
        }
        let mut running = 0;
        let mut young = 0;
        let mut within = 0;
        for k in &self.kept {
            match k.reason {
                ContainerKeepReason::Running => running += 1,
                ContainerKeepReason::TooYoung { .. } => young += 1,
                ContainerKeepReason::WithinLimits { .. } => within += 1,
            }
        }
        writeln!(
            f,
            "\nKept: {} containers ({running} running, {young} too young, {within} within limits), {} sandboxes, {} pod log directories",
            self.kept.len(),
            self.kept_sandboxes.len(),
            self.kept_pod_log_dirs.len()
        )?;
        if f.alternate() && !self.kept.is_empty() {
            let rows: Vec<Vec<String>> = self
                .kept
                .iter()
                .map(|k| {
                    let c = k.container;
                    vec![
                        c.id.to_string(),
                        format!("{}/{}", c.pod_uid, c.name),
                        c.state.to_string(),
                        c.created_at.to_string(),
                        match k.reason {
                            ContainerKeepReason::Running => "running".to_owned(),
                            ContainerKeepReason::TooYoung { age } => {
                                format!("too young ({age} < {})", self.policy.min_age())
                            }
                            ContainerKeepReason::WithinLimits { rank } => {
                                format!("within limits (#{} newest of its unit)", rank + 1)
                            }
                        },
                    ]
                })
                .collect();
            write_table(
                f,
                &["CONTAINER", "POD/NAME", "STATE", "CREATED", "WHY KEPT"],
                &rows,
            )?;
        }
        if f.alternate() && !self.kept_sandboxes.is_empty() {
            let rows: Vec<Vec<String>> = self
                .kept_sandboxes
                .iter()
                .map(|k| {
                    vec![
                        k.sandbox.id.to_string(),
                        k.sandbox.pod_uid.to_string(),
                        match k.reason {
                            SandboxKeepReason::HasContainers => "has containers",
                            SandboxKeepReason::Newest => "newest of a live pod",
                            SandboxKeepReason::Ready => "ready",
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            write_table(f, &["SANDBOX", "POD", "WHY KEPT"], &rows)?;
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn container_reason(plan: &ContainerPlan<'_>, r: &ContainerRemoval<'_>) -> String {
    let c = &plan.counts;
    let stop = if r.stops_first() {
        " (stopped first)"
    } else {
        ""
    };
    let text = match r.step {
        EvictionStep::DeletedPod => {
            if plan.options.evicts_non_deleted_pods() {
                "pod deleted or terminated".to_owned()
            } else {
                "pod deleted".to_owned()
            }
        }
        EvictionStep::PerUnitCap => format!(
            "#{} newest of its unit; unit keeps {}",
            r.rank + 1,
            plan.policy.max_per_pod_container()
        ),
        EvictionStep::GlobalShare => format!(
            "#{} newest of its unit; share {} = max({} / {} units, 1)",
            r.rank + 1,
            c.share.unwrap_or(0),
            plan.policy.max_containers(),
            c.units - c.removable_units
        ),
        EvictionStep::GlobalOldest => format!(
            "among the {} globally oldest over {}",
            c.global_excess.unwrap_or(0),
            plan.policy.max_containers()
        ),
    };
    format!("{text}{stop}")
}

/// How long before `now` a container was created, in nanoseconds, clamped
/// to `0..=u64::MAX`. Larger is older. Clamped values compare equal and
/// fall back to the full creation times (see [`oldest_first`]).
fn age_key(now: Timestamp, created: Timestamp) -> u64 {
    let d = now.unix_nanos() - created.unix_nanos();
    if d <= 0 {
        0
    } else {
        u64::try_from(d).unwrap_or(u64::MAX)
    }
}

/// Average candidates per partition: large partitions keep the split to a
/// single pass (at most 16 partitions up to a million candidates).
const PER_PART: usize = 65536;

/// Unit key bytes copied inline (pod UID followed by the name); longer keys
/// are compared through the snapshot.
const INLINE: usize = 64;

/// One candidate copied for partitioned grouping.
///
/// Partitions go by the pod's hash, so that all units of a pod meet in one
/// partition; units are told apart by the hash of pod and name.
#[derive(Clone, Copy)]
struct Staged {
    pod_hash: u64,
    hash: u64,
    age: u64,
    idx: u32,
    pod_len: u16,
    name_len: u16,
    inline: bool,
    /// Pod UID bytes then name bytes, zero-padded, as words (compared
    /// word by word without a library call).
    key: [u64; INLINE / 8],
}

impl Hashed for Staged {
    fn partition_key(&self) -> u64 {
        self.pod_hash
    }
}

impl Staged {
    /// The pod UID bytes of an inline key.
    fn pod_bytes(&self, buf: &mut [u8; INLINE]) -> usize {
        for (chunk, word) in buf.chunks_exact_mut(8).zip(&self.key) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        usize::from(self.pod_len)
    }
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged").field("idx", &self.idx).finish()
    }
}

/// One candidate in its unit's member list.
#[derive(Clone, Copy, Debug)]
struct Member {
    age: u64,
    idx: u32,
}

/// One evict unit after grouping.
#[derive(Clone, Copy, Debug)]
struct Unit {
    /// Members are `members[start..start + len]`, oldest first.
    start: u32,
    len: u32,
    removable: bool,
}

/// Compares two snapshot containers oldest first: creation time (through
/// the age keys, then exactly), then id, then position (only duplicate ids
/// get that far).
fn oldest_first(containers: &[Container], a: (u64, u32), b: (u64, u32)) -> Ordering {
    b.0.cmp(&a.0).then_with(|| {
        let (x, y) = (&containers[a.1 as usize], &containers[b.1 as usize]);
        x.created_at
            .cmp(&y.created_at)
            .then_with(|| x.id.cmp(&y.id))
            .then(a.1.cmp(&b.1))
    })
}

/// Working memory of the container sub-pass, kept between runs by
/// [`crate::ContainerPlanner`] so that a periodic GC does not fault in
/// fresh memory every time.
#[derive(Debug, Default)]
pub(crate) struct PassScratch {
    /// Average candidates per partition aimed for; 0 means the default.
    pub(crate) per_part: usize,
    staged: Partitioner<Staged>,
    others: Vec<Member>,
    members: Vec<Member>,
    units: Vec<Unit>,
    part_units: Vec<usize>,
    table: Vec<u64>,
    local_of: Vec<u32>,
    reps: Vec<Staged>,
    local_members: Vec<Member>,
    local_units: Vec<Unit>,
    offsets: Vec<u32>,
    fill: Vec<u32>,
    ordered_members: Vec<Member>,
    ordered_units: Vec<Unit>,
    in_step4: Vec<bool>,
    pod_order: Vec<u32>,
    unit_removable: Vec<Option<bool>>,
}

/// The result of the container sub-pass.
pub(crate) struct ContainerPass<'a> {
    pub(crate) counts: ContainerCounts,
    pub(crate) removals: Vec<ContainerRemoval<'a>>,
    pub(crate) kept: Vec<KeptContainer<'a>>,
}

/// The container sub-pass (spec 1.4-1.5) over `containers`.
///
/// Pure: the result does not depend on runtime outcomes (upstream counts a
/// failed stop or removal as done) nor on the order of `containers`.
///
/// Removals start with status `initial` (`NotAttempted` for a collector,
/// `Succeeded` for a dry run).
pub(crate) fn container_pass<'a, P: PodStateProvider + ?Sized>(
    scratch: &mut PassScratch,
    containers: &'a [Container],
    policy: &ContainerGcPolicy,
    pods: &P,
    options: &ContainerGcOptions,
    initial: CallStatus,
) -> ContainerPass<'a> {
    let PassScratch {
        per_part,
        staged,
        others,
        members,
        units,
        part_units,
        table,
        local_of,
        reps,
        local_members,
        local_units,
        offsets,
        fill,
        ordered_members,
        ordered_units,
        in_step4,
        pod_order,
        unit_removable,
    } = scratch;
    others.clear();
    members.clear();
    units.clear();
    part_units.clear();
    let now = options.now();
    let newest_allowed = now.sub(policy.min_age());
    let mut counts = ContainerCounts {
        listed: containers.len() as u64,
        ..ContainerCounts::default()
    };

    // Candidates (not running, created at or before now - MinAge), copied
    // for grouping; everything else is kept outright.
    let per_part = if *per_part == 0 { PER_PART } else { *per_part };
    staged.begin(
        partition::bits_for(containers.len(), per_part),
        containers.len(),
    );
    for (i, c) in containers.iter().enumerate() {
        if c.state == ContainerState::Running || c.created_at > newest_allowed {
            if c.state == ContainerState::Running {
                counts.running += 1;
            } else {
                counts.too_young += 1;
            }
            others.push(Member {
                age: age_key(now, c.created_at),
                idx: i as u32,
            });
            continue;
        }
        let pod = c.pod_uid.as_str().as_bytes();
        let name = c.name.as_str().as_bytes();
        let mut bytes = [0u8; INLINE];
        let inline = pod.len() + name.len() <= INLINE;
        if inline {
            bytes[..pod.len()].copy_from_slice(pod);
            bytes[pod.len()..pod.len() + name.len()].copy_from_slice(name);
        }
        let mut key = [0u64; INLINE / 8];
        for (word, chunk) in key.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            *word = u64::from_le_bytes(w);
        }
        // One pass over the pod bytes gives both hashes.
        let mut hasher = FastHasher::default();
        hasher.write(pod);
        let pod_hash = hasher.finish();
        hasher.write_usize(pod.len());
        hasher.write(name);
        staged.push(Staged {
            pod_hash,
            hash: hasher.finish(),
            age: age_key(now, c.created_at),
            idx: i as u32,
            pod_len: pod.len().min(usize::from(u16::MAX)) as u16,
            name_len: name.len().min(usize::from(u16::MAX)) as u16,
            inline,
            key,
        });
    }
    staged.finish();

    // Group each partition into units, sort each unit oldest first, and
    // order each partition's units by their oldest member.
    let removable_of = |pod: &str| {
        options.sources_ready()
            && (pods.content_removable(pod)
                || (options.evicts_non_deleted_pods() && pods.runtime_removable(pod)))
    };
    members.reserve(containers.len() - others.len());
    // `part_units[p]` is where partition p's units start in `units`.
    for p in 0..staged.len() {
        part_units.push(units.len());
        let part = staged.part(p);
        if part.is_empty() {
            continue;
        }
        // A table slot holds a unit's hash tag (the high 32 bits) and its
        // local number plus one (0 is empty); units' keys are copied into
        // `reps` as they appear. Both stay small enough for the fastest
        // caches, unlike the partition itself.
        let cap = (part.len() * 2).next_power_of_two();
        table.clear();
        table.resize(cap, 0);
        reps.clear();
        local_of.clear();
        let mask = cap - 1;
        for e in part.iter() {
            let tag = e.hash >> 32;
            let mut j = e.hash as usize & mask;
            let unit = loop {
                let slot = table[j];
                if slot == 0 {
                    table[j] = (tag << 32) | (reps.len() as u64 + 1);
                    reps.push(*e);
                    break reps.len() - 1;
                }
                if slot >> 32 == tag {
                    let u = (slot & 0xffff_ffff) as usize - 1;
                    if same_unit(containers, &reps[u], e) {
                        break u;
                    }
                }
                j = (j + 1) & mask;
            };
            local_of.push(unit as u32);
        }
        // Counting sort of the partition's members by unit.
        offsets.clear();
        offsets.resize(reps.len() + 1, 0);
        for &u in local_of.iter() {
            offsets[u as usize + 1] += 1;
        }
        for u in 0..reps.len() {
            offsets[u + 1] += offsets[u];
        }
        local_members.clear();
        local_members.resize(part.len(), Member { age: 0, idx: 0 });
        fill.clear();
        fill.extend_from_slice(offsets);
        for (e, &u) in part.iter().zip(local_of.iter()) {
            local_members[fill[u as usize] as usize] = Member {
                age: e.age,
                idx: e.idx,
            };
            fill[u as usize] += 1;
        }
        // Pod states, asked once per pod: units of a pod share this
        // partition; sorting them by pod hash brings them together.
        pod_order.clear();
        pod_order.extend(0..reps.len() as u32);
        pod_order.sort_unstable_by_key(|&u| reps[u as usize].pod_hash);
        unit_removable.clear();
        unit_removable.resize(reps.len(), None);
        for k in 0..pod_order.len() {
            let u = pod_order[k] as usize;
            if unit_removable[u].is_some() {
                continue;
            }
            let e = &reps[u];
            let removable = if e.inline {
                let mut buf = [0u8; INLINE];
                let n = e.pod_bytes(&mut buf);
                match std::str::from_utf8(&buf[..n]) {
                    Ok(pod) => removable_of(pod),
                    Err(_) => removable_of(containers[e.idx as usize].pod_uid.as_str()),
                }
            } else {
                removable_of(containers[e.idx as usize].pod_uid.as_str())
            };
            for &v in &pod_order[k..] {
                let other = &reps[v as usize];
                if other.pod_hash != e.pod_hash {
                    break;
                }
                if unit_removable[v as usize].is_none() && same_pod(containers, e, other) {
                    unit_removable[v as usize] = Some(removable);
                }
            }
        }
        local_units.clear();
        for u in 0..reps.len() {
            let (start, end) = (offsets[u] as usize, offsets[u + 1] as usize);
            let list = &mut local_members[start..end];
            list.sort_unstable_by(|a, b| oldest_first(containers, (a.age, a.idx), (b.age, b.idx)));
            let removable = unit_removable[u].unwrap_or(false);
            local_units.push(Unit {
                start: start as u32,
                len: (end - start) as u32,
                removable,
            });
        }
        local_units.sort_unstable_by(|a, b| {
            let (x, y) = (
                &local_members[a.start as usize],
                &local_members[b.start as usize],
            );
            oldest_first(containers, (x.age, x.idx), (y.age, y.idx))
        });
        for u in local_units.iter() {
            let start = members.len() as u32;
            members.extend_from_slice(&local_members[u.start as usize..(u.start + u.len) as usize]);
            units.push(Unit { start, ..*u });
        }
    }
    part_units.push(units.len());

    // Lay units and their members out in the deterministic unit order
    // (oldest candidate first) by merging the partitions' sorted unit
    // lists; every later step then walks memory sequentially.
    ordered_members.clear();
    ordered_members.reserve(members.len());
    ordered_units.clear();
    ordered_units.reserve(units.len());
    {
        let unit_key = |u: usize| {
            let m = &members[units[u].start as usize];
            (m.age, m.idx)
        };
        let mut heap: BinaryHeap<Reverse<HeapItem<'_>>> =
            BinaryHeap::with_capacity(part_units.len().saturating_sub(1));
        for p in 0..part_units.len() - 1 {
            if part_units[p] < part_units[p + 1] {
                let u = part_units[p];
                heap.push(Reverse(HeapItem {
                    key: unit_key(u),
                    containers,
                    unit: u,
                    end: part_units[p + 1],
                }));
            }
        }
        while let Some(Reverse(item)) = heap.pop() {
            let unit = units[item.unit];
            let start = ordered_members.len() as u32;
            ordered_members
                .extend_from_slice(&members[unit.start as usize..(unit.start + unit.len) as usize]);
            ordered_units.push(Unit { start, ..unit });
            if item.unit + 1 < item.end {
                heap.push(Reverse(HeapItem {
                    key: unit_key(item.unit + 1),
                    unit: item.unit + 1,
                    ..item
                }));
            }
        }
    }
    let (members, units, others) = (&*ordered_members, &*ordered_units, others);
    counts.candidates = members.len() as u64;
    counts.units = units.len() as u64;
    counts.removable_units = units.iter().filter(|u| u.removable).count() as u64;

    // Steps 2 and 3: how many each unit keeps.
    let max_per_pod = policy.max_per_pod_container();
    let keep: Vec<u32> = units
        .iter()
        .map(|u| {
            if u.removable {
                0
            } else if max_per_pod >= 0 {
                u.len.min(u32::try_from(max_per_pod).unwrap_or(u32::MAX))
            } else {
                u.len
            }
        })
        .collect();
    let after_cap: u64 = keep.iter().map(|&k| u64::from(k)).sum();
    counts.after_per_unit_cap = after_cap;
    let mut keep_share = keep.clone();
    let mut excess: u64 = 0;
    let max_containers = policy.max_containers();
    if max_containers >= 0 && after_cap > max_containers as u64 {
        let live_units = (counts.units - counts.removable_units) as i64;
        let share = max_share(max_containers, live_units);
        let share_u32 = u32::try_from(share).unwrap_or(u32::MAX);
        for k in &mut keep_share {
            *k = (*k).min(share_u32);
        }
        let after_share: u64 = keep_share.iter().map(|&k| u64::from(k)).sum();
        counts.share = Some(share);
        counts.after_global_share = Some(after_share);
        if after_share > max_containers as u64 {
            excess = after_share - max_containers as u64;
            counts.global_excess = Some(excess);
        }
    }

    // Step 4: the globally oldest of the survivors (each unit's newest
    // `keep_share` members).
    in_step4.clear();
    let mut oldest_out: Vec<u32> = Vec::new();
    if excess > 0 {
        in_step4.resize(members.len(), false);
        let mut survivors: Vec<u32> = Vec::new();
        for (unit, &k) in units.iter().zip(&keep_share) {
            survivors.extend(unit.start + unit.len - k..unit.start + unit.len);
        }
        let by_age = |a: &u32, b: &u32| {
            let (x, y) = (&members[*a as usize], &members[*b as usize]);
            oldest_first(containers, (x.age, x.idx), (y.age, y.idx))
        };
        let take = excess as usize;
        if take < survivors.len() {
            survivors.select_nth_unstable_by(take, by_age);
            survivors.truncate(take);
        }
        survivors.sort_unstable_by(by_age);
        for &m in &survivors {
            in_step4[m as usize] = true;
        }
        oldest_out = survivors;
    }

    // Emit the removals step by step, each unit by unit (oldest member
    // first), then the kept candidates in the same order.
    let removed_by_share: usize = keep_share.iter().map(|&k| k as usize).sum();
    let total_removed = members.len() - removed_by_share + oldest_out.len();
    let mut removals = Vec::with_capacity(total_removed);
    let mut kept = Vec::with_capacity(members.len() + others.len() - total_removed);
    // (step, first position from the oldest, end position from the oldest)
    // per unit, as functions of the unit's length and keeps.
    let emit = |removals: &mut Vec<ContainerRemoval<'a>>,
                step: EvictionStep,
                range: &dyn Fn(usize, &Unit) -> (u32, u32)| {
        for (u, unit) in units.iter().enumerate() {
            let (from, to) = range(u, unit);
            for j in from..to {
                let m = members[(unit.start + j) as usize];
                removals.push(ContainerRemoval {
                    container: &containers[m.idx as usize],
                    step,
                    rank: unit.len - 1 - j,
                    status: initial,
                });
            }
        }
    };
    if counts.removable_units > 0 {
        emit(&mut removals, EvictionStep::DeletedPod, &|_, unit| {
            if unit.removable {
                (0, unit.len)
            } else {
                (0, 0)
            }
        });
    }
    emit(&mut removals, EvictionStep::PerUnitCap, &|u, unit| {
        if unit.removable {
            (0, 0)
        } else {
            (0, unit.len - keep[u])
        }
    });
    emit(&mut removals, EvictionStep::GlobalShare, &|u, unit| {
        if unit.removable {
            (0, 0)
        } else {
            (unit.len - keep[u], unit.len - keep_share[u])
        }
    });
    for &m in &oldest_out {
        let member = members[m as usize];
        let u = units.partition_point(|unit| unit.start + unit.len <= m);
        let unit = units[u];
        removals.push(ContainerRemoval {
            container: &containers[member.idx as usize],
            step: EvictionStep::GlobalOldest,
            rank: unit.start + unit.len - 1 - m,
            status: initial,
        });
    }
    for (unit, &k) in units.iter().zip(&keep_share) {
        for j in unit.len - k..unit.len {
            let pos = (unit.start + j) as usize;
            if !in_step4.is_empty() && in_step4[pos] {
                continue;
            }
            kept.push(KeptContainer {
                container: &containers[members[pos].idx as usize],
                reason: ContainerKeepReason::WithinLimits {
                    rank: unit.len - 1 - j,
                },
            });
        }
    }

    // Containers that were never candidates, oldest first.
    others.sort_unstable_by(|a, b| oldest_first(containers, (a.age, a.idx), (b.age, b.idx)));
    for m in others.iter() {
        let c = &containers[m.idx as usize];
        kept.push(KeptContainer {
            container: c,
            reason: if c.state == ContainerState::Running {
                ContainerKeepReason::Running
            } else {
                ContainerKeepReason::TooYoung {
                    age: now.saturating_duration_since(c.created_at),
                }
            },
        });
    }

    ContainerPass {
        counts,
        removals,
        kept,
    }
}

/// Whether two staged candidates have the same pod UID.
fn same_pod(containers: &[Container], a: &Staged, b: &Staged) -> bool {
    if a.pod_hash != b.pod_hash || a.pod_len != b.pod_len {
        return false;
    }
    if a.inline && b.inline {
        let n = usize::from(a.pod_len);
        let (full, rest) = (n / 8, n % 8);
        if a.key[..full] != b.key[..full] {
            return false;
        }
        if rest == 0 {
            return true;
        }
        let mask = (1u64 << (rest * 8)) - 1;
        return a.key[full] & mask == b.key[full] & mask;
    }
    let (x, y) = (&containers[a.idx as usize], &containers[b.idx as usize]);
    x.pod_uid == y.pod_uid
}

/// Whether two staged candidates belong to the same evict unit.
fn same_unit(containers: &[Container], a: &Staged, b: &Staged) -> bool {
    if a.hash != b.hash || a.pod_len != b.pod_len || a.name_len != b.name_len {
        return false;
    }
    if a.inline && b.inline {
        // Unused key bytes are zero and the lengths are equal, so comparing
        // the whole arrays compares the keys.
        return a.key == b.key;
    }
    let (x, y) = (&containers[a.idx as usize], &containers[b.idx as usize]);
    x.pod_uid == y.pod_uid && x.name == y.name
}

/// A partition's next unit in the merge of all partitions' unit lists.
struct HeapItem<'c> {
    key: (u64, u32),
    containers: &'c [Container],
    unit: usize,
    end: usize,
}

impl PartialEq for HeapItem<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for HeapItem<'_> {}

impl PartialOrd for HeapItem<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapItem<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        oldest_first(self.containers, self.key, other.key)
    }
}

/// The per-unit share of step 3: `max_containers / units` with Go's
/// truncating integer division, raised to 1 when it is below 1 (spec 1.5,
/// step 3). `units` is the number of evict units left after step 1, units
/// emptied by step 2 included.
pub(crate) fn max_share(max_containers: i64, units: i64) -> i64 {
    let share = if units == 0 {
        0
    } else {
        max_containers / units
    };
    share.max(1)
}

/// The result of the sandbox sub-pass.
pub(crate) struct SandboxPass<'a> {
    pub(crate) removals: Vec<SandboxRemoval<'a>>,
    pub(crate) kept: Vec<KeptSandbox<'a>>,
}

/// The sandbox sub-pass (spec 1.6).
///
/// `existing` are the containers that still exist after the container
/// sub-pass (every container it kept, and every removal that did not
/// succeed). `pod_removable[j]` says whether the pod of sandbox `j` is
/// content removable, or runtime removable while evicting non-deleted pods.
pub(crate) fn sandbox_pass<'a, 'c>(
    sandboxes: &'a [Sandbox],
    existing: impl Iterator<Item = &'c Container>,
    pod_removable: &[bool],
) -> SandboxPass<'a> {
    if sandboxes.is_empty() {
        return SandboxPass {
            removals: Vec::new(),
            kept: Vec::new(),
        };
    }
    // Sandboxes named by a container that still exists are active.
    let mut referenced: FastSet<&str> = hash::set_with_capacity(sandboxes.len());
    for c in existing {
        // A container without a sandbox id names the empty id, as upstream's
        // set of `PodSandboxId`s does.
        referenced.insert(c.sandbox_id.as_ref().map_or("", Id::as_str));
    }
    // The newest sandbox of each pod: latest creation time, ties to the
    // larger id (the same total order as for containers).
    let newer = |a: usize, b: usize| {
        let (x, y) = (&sandboxes[a], &sandboxes[b]);
        (x.created_at, &x.id, a) > (y.created_at, &y.id, b)
    };
    let mut newest: FastMap<&str, usize> = hash::map_with_capacity(sandboxes.len());
    for (j, s) in sandboxes.iter().enumerate() {
        newest
            .entry(s.pod_uid.as_str())
            .and_modify(|n| {
                if newer(j, *n) {
                    *n = j;
                }
            })
            .or_insert(j);
    }
    // Decide every sandbox in listing order (the lookups read the
    // sandboxes' strings front to back), then emit oldest first.
    let decided: Vec<(bool, bool)> = sandboxes
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let considered = pod_removable[j] || newest[s.pod_uid.as_str()] != j;
            let active = s.state == SandboxState::Ready || referenced.contains(s.id.as_str());
            (considered, active)
        })
        .collect();
    let mut order: Vec<usize> = (0..sandboxes.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&sandboxes[a], &sandboxes[b]);
        (x.created_at, &x.id, a).cmp(&(y.created_at, &y.id, b))
    });
    let mut removals = Vec::new();
    let mut kept = Vec::new();
    for j in order {
        let s = &sandboxes[j];
        let removable = pod_removable[j];
        let (considered, active) = decided[j];
        let ready = s.state == SandboxState::Ready;
        if considered && !active {
            removals.push(SandboxRemoval {
                sandbox: s,
                reason: if removable {
                    SandboxReason::PodRemovable
                } else {
                    SandboxReason::NotNewest
                },
                status: CallStatus::NotAttempted,
            });
        } else {
            kept.push(KeptSandbox {
                sandbox: s,
                reason: if !considered {
                    SandboxKeepReason::Newest
                } else if ready {
                    SandboxKeepReason::Ready
                } else {
                    SandboxKeepReason::HasContainers
                },
            });
        }
    }
    SandboxPass { removals, kept }
}

/// The pod UID of a pod log directory name: the last `_`-separated field
/// (`<namespace>_<name>_<uid>`; a legacy bare UID parses to itself).
pub fn pod_uid_of_log_dir(name: &str) -> &str {
    name.rsplit('_').next().unwrap_or(name)
}

/// The pod log sub-pass (spec 1.7): in listing order, a directory goes
/// when its pod's content is removable; nothing goes before all sources are
/// ready.
pub(crate) fn pod_log_pass<'a, P: PodStateProvider + ?Sized>(
    dirs: &'a [String],
    pods: &P,
    all_sources_ready: bool,
) -> (Vec<PodLogRemoval<'a>>, Vec<KeptPodLogDir<'a>>) {
    let mut removals = Vec::new();
    let mut kept = Vec::new();
    for dir in dirs {
        let uid = pod_uid_of_log_dir(dir);
        if !all_sources_ready {
            kept.push(KeptPodLogDir {
                dir,
                pod_uid: uid,
                reason: PodLogKeepReason::SourcesNotReady,
            });
        } else if pods.content_removable(uid) {
            removals.push(PodLogRemoval {
                dir,
                pod_uid: uid,
                status: CallStatus::NotAttempted,
            });
        } else {
            kept.push(KeptPodLogDir {
                dir,
                pod_uid: uid,
                reason: PodLogKeepReason::PodNotRemovable,
            });
        }
    }
    (removals, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_truncates_then_raises_to_one() {
        // Spec 1.5 step 3 and the worked example of spec 1.9.
        assert_eq!(max_share(2, 3), 1);
        assert_eq!(max_share(5, 2), 2);
        assert_eq!(max_share(0, 4), 1);
        assert_eq!(max_share(6, 8), 1);
        assert_eq!(max_share(50_000, 100_000), 1);
        assert_eq!(max_share(10, 3), 3);
    }

    #[test]
    fn log_dir_uid_is_the_last_underscore_field() {
        assert_eq!(pod_uid_of_log_dir("default_web-1_aaa"), "aaa");
        assert_eq!(pod_uid_of_log_dir("bbb"), "bbb");
        assert_eq!(pod_uid_of_log_dir("ns_name_"), "");
    }

    #[test]
    fn age_keys_order_older_first_and_clamp() {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let older = age_key(now, Timestamp::from_unix_secs(5));
        let newer = age_key(now, Timestamp::from_unix_secs(1_600_000_000));
        assert!(older > newer);
        assert_eq!(age_key(now, now), 0);
        assert_eq!(age_key(now, Timestamp::from_unix_secs(1_800_000_000)), 0);
        assert_eq!(
            age_key(now, Timestamp::from_unix_nanos(i128::MIN / 2)),
            u64::MAX
        );
    }
}
