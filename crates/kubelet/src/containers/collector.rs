//! The container collector: the seam between the pure planner and a
//! container runtime.
//!
//! [`ContainerCollector`] is a small state machine in the sans-IO style. It
//! hands out one runtime call at a time ([`ContainerCollector::next_call`]),
//! takes its result ([`ContainerCollector::record`]) and reproduces the
//! kubelet's bookkeeping of outcomes:
//!
//! * an unknown-state container is killed first; if the kill fails, the
//!   removal call is skipped, and the container still counts as removed;
//! * a failed `RemoveContainer` is only logged upstream, so it changes no
//!   later decision of the container sub-pass;
//! * the sandbox sub-pass runs after the container removals and sees the
//!   containers that still exist, so a container whose kill or removal
//!   failed keeps its sandbox active;
//! * a sandbox whose `StopPodSandbox` fails is not removed.
//!
//! [`plan_containers`] is the dry run: the same machine with every call
//! assumed to succeed.

use reclaim_model::Id;

use super::plan::{
    CONTAINER_PLAN_SCHEMA, ContainerPlan, PassScratch, SandboxPass, container_pass, pod_log_pass,
    sandbox_pass,
};
use super::policy::{ContainerGcOptions, ContainerGcPolicy};
use super::snapshot::{Container, ContainerSnapshot, PodStateProvider, Sandbox};
use crate::outcome::{CallError, CallFailure, CallStatus};

/// One runtime call a [`ContainerCollector`] asks its driver to make.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ContainerCall {
    /// Stop (kill) a container whose state is unknown, before removing it.
    KillContainer {
        /// The container id.
        id: Id,
    },
    /// Remove a container (CRI `RemoveContainer`).
    RemoveContainer {
        /// The container id.
        id: Id,
    },
    /// Remove a pod log directory recursively.
    RemovePodLogDir {
        /// The entry name under the pod log root.
        dir: String,
    },
    /// Remove a pod sandbox (CRI `RemovePodSandbox`), after a successful stop.
    RemoveSandbox {
        /// The sandbox id.
        id: Id,
    },
    /// Stop a pod sandbox (CRI `StopPodSandbox`) before removing it.
    StopSandbox {
        /// The sandbox id.
        id: Id,
    },
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Stage {
    Containers,
    Sandboxes,
    PodLogs,
    Done,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Pending {
    Kill,
    Remove,
    StopSandbox,
    RemoveSandbox,
    RemoveLog,
}

/// Runs one container GC call against a runtime, one call at a time.
///
/// Create it from a snapshot, then loop: take [`ContainerCollector::next_call`],
/// perform it, and report the result with [`ContainerCollector::record`];
/// when `next_call` returns `None`, take the report with
/// [`ContainerCollector::finish`]. [`ContainerCollector::run_with`] does the
/// loop with a closure. The collector never touches a runtime itself.
///
/// ```
/// use reclaim_kubelet::{
///     ContainerCall, ContainerCollector, ContainerGcOptions, ContainerGcPolicy,
///     ContainerSnapshot,
/// };
/// use reclaim_model::Timestamp;
///
/// let snapshot = ContainerSnapshot::from_json(r#"{
///     "pods": [{"uid": "p", "state": "active"}],
///     "containers": [
///         {"id": "old", "pod_uid": "p", "name": "app", "state": "exited", "created_at": 10},
///         {"id": "new", "pod_uid": "p", "name": "app", "state": "exited", "created_at": 20}
///     ]
/// }"#)?;
/// let pods = snapshot.pod_states();
/// let options = ContainerGcOptions::new(Timestamp::from_unix_secs(100));
/// let collector = ContainerCollector::new(&snapshot, &ContainerGcPolicy::default(), &pods, &options);
/// let report = collector.run_with(|call| {
///     assert_eq!(call, &ContainerCall::RemoveContainer { id: "old".into() });
///     Ok(())
/// });
/// assert_eq!(report.removals.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ContainerCollector<'a> {
    containers: &'a [Container],
    sandboxes: &'a [Sandbox],
    plan: ContainerPlan<'a>,
    sandbox_pod_removable: Vec<bool>,
    sandboxes_planned: bool,
    stage: Stage,
    cursor: usize,
    pending: Option<Pending>,
}

impl<'a> ContainerCollector<'a> {
    /// Plans the container sub-pass (and the pod log sub-pass, which does
    /// not depend on outcomes) and prepares to run them. Pod states are
    /// asked here, once per pod UID; the provider is not kept.
    pub fn new<P: PodStateProvider + ?Sized>(
        snapshot: &'a ContainerSnapshot,
        policy: &ContainerGcPolicy,
        pods: &P,
        options: &ContainerGcOptions,
    ) -> Self {
        ContainerPlanner::new().collector(snapshot, policy, pods, options)
    }

    fn with_scratch<P: PodStateProvider + ?Sized>(
        scratch: &mut PassScratch,
        snapshot: &'a ContainerSnapshot,
        policy: &ContainerGcPolicy,
        pods: &P,
        options: &ContainerGcOptions,
        initial: CallStatus,
    ) -> Self {
        let passes = options.sub_passes();
        let (counts, removals, kept) = if passes.containers {
            let pass = container_pass(
                scratch,
                &snapshot.containers,
                policy,
                pods,
                options,
                initial,
            );
            (pass.counts, pass.removals, pass.kept)
        } else {
            Default::default()
        };
        let (pod_log_removals, kept_pod_log_dirs) = if passes.pod_logs {
            pod_log_pass(&snapshot.pod_log_dirs, pods, options.sources_ready())
        } else {
            Default::default()
        };
        let evict = options.evicts_non_deleted_pods();
        let sandbox_pod_removable = if passes.sandboxes {
            snapshot
                .sandboxes
                .iter()
                .map(|s| {
                    pods.content_removable(s.pod_uid.as_str())
                        || (evict && pods.runtime_removable(s.pod_uid.as_str()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let plan = ContainerPlan {
            schema: CONTAINER_PLAN_SCHEMA,
            dry_run: false,
            policy: *policy,
            options: *options,
            counts,
            removals,
            kept,
            sandbox_removals: Vec::new(),
            kept_sandboxes: Vec::new(),
            pod_log_removals,
            kept_pod_log_dirs,
            failures: Vec::new(),
        };
        Self {
            containers: &snapshot.containers,
            sandboxes: &snapshot.sandboxes,
            plan,
            sandbox_pod_removable,
            sandboxes_planned: !passes.sandboxes,
            stage: Stage::Containers,
            cursor: 0,
            pending: None,
        }
    }

    /// The plan as it stands: the container and pod log sub-passes are
    /// planned from the start, the sandbox sub-pass once the container
    /// removals are done.
    pub fn plan(&self) -> &ContainerPlan<'a> {
        &self.plan
    }

    /// The next runtime call to make, or `None` when the GC call is over.
    ///
    /// Until its result is recorded, the same call is returned again.
    pub fn next_call(&mut self) -> Option<ContainerCall> {
        loop {
            if let Some(pending) = self.pending {
                return Some(self.call_for(pending));
            }
            match self.stage {
                Stage::Containers => match self.plan.removals.get(self.cursor) {
                    Some(r) => {
                        self.pending = Some(if r.stops_first() {
                            Pending::Kill
                        } else {
                            Pending::Remove
                        });
                    }
                    None => {
                        self.plan_sandboxes();
                        self.stage = Stage::Sandboxes;
                        self.cursor = 0;
                    }
                },
                Stage::Sandboxes => {
                    if self.cursor < self.plan.sandbox_removals.len() {
                        self.pending = Some(Pending::StopSandbox);
                    } else {
                        self.stage = Stage::PodLogs;
                        self.cursor = 0;
                    }
                }
                Stage::PodLogs => {
                    if self.cursor < self.plan.pod_log_removals.len() {
                        self.pending = Some(Pending::RemoveLog);
                    } else {
                        self.stage = Stage::Done;
                    }
                }
                Stage::Done => return None,
            }
        }
    }

    /// Records the result of the call last returned by
    /// [`ContainerCollector::next_call`].
    ///
    /// # Panics
    ///
    /// If no call is outstanding.
    pub fn record(&mut self, result: Result<(), CallError>) {
        let pending = self
            .pending
            .take()
            .expect("ContainerCollector::record called without an outstanding call");
        let i = self.cursor;
        match (pending, result) {
            (Pending::Kill, Ok(())) => self.pending = Some(Pending::Remove),
            (Pending::Kill, Err(e)) => {
                self.plan.removals[i].status = CallStatus::StopFailed;
                self.fail(
                    "KillContainer",
                    self.plan.removals[i].container.id.to_string(),
                    e,
                );
                self.cursor += 1;
            }
            (Pending::Remove, Ok(())) => {
                self.plan.removals[i].status = CallStatus::Succeeded;
                self.cursor += 1;
            }
            (Pending::Remove, Err(e)) => {
                self.plan.removals[i].status = CallStatus::Failed;
                self.fail(
                    "RemoveContainer",
                    self.plan.removals[i].container.id.to_string(),
                    e,
                );
                self.cursor += 1;
            }
            (Pending::StopSandbox, Ok(())) => self.pending = Some(Pending::RemoveSandbox),
            (Pending::StopSandbox, Err(e)) => {
                self.plan.sandbox_removals[i].status = CallStatus::StopFailed;
                self.fail(
                    "StopPodSandbox",
                    self.plan.sandbox_removals[i].sandbox.id.to_string(),
                    e,
                );
                self.cursor += 1;
            }
            (Pending::RemoveSandbox, result) => {
                self.plan.sandbox_removals[i].status = match result {
                    Ok(()) => CallStatus::Succeeded,
                    Err(e) => {
                        self.fail(
                            "RemovePodSandbox",
                            self.plan.sandbox_removals[i].sandbox.id.to_string(),
                            e,
                        );
                        CallStatus::Failed
                    }
                };
                self.cursor += 1;
            }
            (Pending::RemoveLog, result) => {
                self.plan.pod_log_removals[i].status = match result {
                    Ok(()) => CallStatus::Succeeded,
                    Err(e) => {
                        self.fail(
                            "RemovePodLogDir",
                            self.plan.pod_log_removals[i].dir.to_owned(),
                            e,
                        );
                        CallStatus::Failed
                    }
                };
                self.cursor += 1;
            }
        }
    }

    fn fail(&mut self, call: &'static str, target: String, error: CallError) {
        self.plan.failures.push(CallFailure {
            call,
            target,
            message: error.message,
        });
    }

    /// Ends the run and returns the report. Calls never made are reported
    /// as [`CallStatus::NotAttempted`]; if the container removals were not
    /// all attempted, the sandbox sub-pass is planned from the containers
    /// that are known to be gone.
    pub fn finish(mut self) -> ContainerPlan<'a> {
        self.plan_sandboxes();
        self.plan
    }

    /// Runs the whole GC call, performing each call with `call`.
    pub fn run_with(
        mut self,
        mut call: impl FnMut(&ContainerCall) -> Result<(), CallError>,
    ) -> ContainerPlan<'a> {
        while let Some(c) = self.next_call() {
            let result = call(&c);
            self.record(result);
        }
        self.finish()
    }

    fn call_for(&self, pending: Pending) -> ContainerCall {
        let i = self.cursor;
        match pending {
            Pending::Kill => ContainerCall::KillContainer {
                id: self.plan.removals[i].container.id.clone(),
            },
            Pending::Remove => ContainerCall::RemoveContainer {
                id: self.plan.removals[i].container.id.clone(),
            },
            Pending::StopSandbox => ContainerCall::StopSandbox {
                id: self.plan.sandbox_removals[i].sandbox.id.clone(),
            },
            Pending::RemoveSandbox => ContainerCall::RemoveSandbox {
                id: self.plan.sandbox_removals[i].sandbox.id.clone(),
            },
            Pending::RemoveLog => ContainerCall::RemovePodLogDir {
                dir: self.plan.pod_log_removals[i].dir.to_owned(),
            },
        }
    }

    fn plan_sandboxes(&mut self) {
        if self.sandboxes_planned {
            return;
        }
        self.sandboxes_planned = true;
        // The containers that still exist: all of them if the container
        // sub-pass did not run, else every kept one and every removal that
        // did not succeed (the kubelet re-lists the runtime here). They are
        // visited in snapshot order, which reads the snapshot front to back
        // instead of jumping around it.
        let SandboxPass { removals, kept } = if self.plan.options.sub_passes().containers {
            let base = self.containers.as_ptr() as usize;
            let size = std::mem::size_of::<Container>();
            // Every plan entry refers into `self.containers`, so its offset
            // from the start of the slice gives its position.
            let position = |c: &Container| (c as *const Container as usize - base) / size;
            let mut existing: Vec<usize> = self
                .plan
                .kept
                .iter()
                .map(|k| position(k.container))
                .chain(
                    self.plan
                        .removals
                        .iter()
                        .filter(|r| !r.status.succeeded())
                        .map(|r| position(r.container)),
                )
                .collect();
            existing.sort_unstable();
            let containers = self.containers;
            sandbox_pass(
                self.sandboxes,
                existing.iter().map(|&i| &containers[i]),
                &self.sandbox_pod_removable,
            )
        } else {
            sandbox_pass(
                self.sandboxes,
                self.containers.iter(),
                &self.sandbox_pod_removable,
            )
        };
        self.plan.sandbox_removals = removals;
        self.plan.kept_sandboxes = kept;
    }

    /// Marks every call as succeeded without making it: the dry run. The
    /// container removals were created succeeded.
    fn assume_success(mut self) -> ContainerPlan<'a> {
        self.plan_sandboxes();
        for s in &mut self.plan.sandbox_removals {
            s.status = CallStatus::Succeeded;
        }
        for d in &mut self.plan.pod_log_removals {
            d.status = CallStatus::Succeeded;
        }
        self.plan.dry_run = true;
        self.plan
    }
}

/// Reusable working memory for container GC planning.
///
/// Planning a million containers needs a few hundred megabytes of
/// temporary buffers; a planner keeps them between runs, so that a
/// periodic GC (the kubelet's runs every minute) does not fault in fresh
/// memory each time. [`plan_containers`] and [`ContainerCollector::new`]
/// use a fresh one.
#[derive(Debug, Default)]
pub struct ContainerPlanner {
    scratch: PassScratch,
}

impl ContainerPlanner {
    /// A planner with no buffers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A planner that splits candidates into hash partitions of about
    /// `per_part` instead of the default. Plans do not depend on it; tests
    /// use small partitions to exercise the partitioned paths on small
    /// inputs.
    #[doc(hidden)]
    pub fn with_partition_size(per_part: usize) -> Self {
        let mut planner = Self::default();
        planner.scratch.per_part = per_part.max(1);
        planner
    }

    /// [`plan_containers`] with this planner's buffers.
    pub fn plan<'a, P: PodStateProvider + ?Sized>(
        &mut self,
        snapshot: &'a ContainerSnapshot,
        policy: &ContainerGcPolicy,
        pods: &P,
        options: &ContainerGcOptions,
    ) -> ContainerPlan<'a> {
        ContainerCollector::with_scratch(
            &mut self.scratch,
            snapshot,
            policy,
            pods,
            options,
            CallStatus::Succeeded,
        )
        .assume_success()
    }

    /// [`ContainerCollector::new`] with this planner's buffers.
    pub fn collector<'a, P: PodStateProvider + ?Sized>(
        &mut self,
        snapshot: &'a ContainerSnapshot,
        policy: &ContainerGcPolicy,
        pods: &P,
        options: &ContainerGcOptions,
    ) -> ContainerCollector<'a> {
        ContainerCollector::with_scratch(
            &mut self.scratch,
            snapshot,
            policy,
            pods,
            options,
            CallStatus::NotAttempted,
        )
    }

    /// Frees the buffers kept between runs.
    pub fn release_buffers(&mut self) {
        let per_part = self.scratch.per_part;
        self.scratch = PassScratch::default();
        self.scratch.per_part = per_part;
    }
}

/// The container GC's dry run: what one kubelet GC call (spec 1.2-1.7)
/// would do to `snapshot` if every runtime call succeeded.
///
/// Pure and deterministic: the plan does not depend on the order of the
/// snapshot's containers, sandboxes or pods (pod log directories keep their
/// listing order, as upstream).
pub fn plan_containers<'a, P: PodStateProvider + ?Sized>(
    snapshot: &'a ContainerSnapshot,
    policy: &ContainerGcPolicy,
    pods: &P,
    options: &ContainerGcOptions,
) -> ContainerPlan<'a> {
    ContainerPlanner::new().plan(snapshot, policy, pods, options)
}
