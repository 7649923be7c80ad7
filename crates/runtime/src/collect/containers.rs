//! The kubelet's container GC against an engine.

use std::collections::HashMap;

use reclaim_kubelet::{
    CallError, CallStatus, Container, ContainerCall, ContainerGcOptions, ContainerGcPolicy,
    ContainerPlan, ContainerPlanner, ContainerSnapshot, Sandbox,
};

use super::{LabelSelector, RunState};
use crate::clock::Clock;
use crate::observer::Observer;
use crate::report::{
    CollectorKind, ItemKind, Outcome, PassReport, Reason, Report, ReportDeletion, Skip, SkipReason,
};
use crate::store::{ContainerStore, RemoveOutcome, StopOutcome};

/// The kubelet's container GC over an engine: dead containers, then pod
/// sandboxes, then pod log directories, exactly as one kubelet GC call
/// (`reclaim_kubelet`'s planner and its sans-IO collector).
///
/// The upstream effects of failed calls hold: a container whose removal
/// failed still counts against the per-container and node caps (no other
/// container is removed in its place), a container whose stop (kill)
/// failed is not removed and keeps its sandbox, and a sandbox whose stop
/// failed is not removed. Refusals (`InUse`) count as failures, as a CRI
/// error does for the kubelet. A fatal outcome ends the run; the calls not
/// made are reported [`Outcome::NotAttempted`].
///
/// Deletions reach the observer when the run ends, in call order.
#[derive(Debug)]
pub struct ContainerGcCollector {
    policy: ContainerGcPolicy,
    all_sources_ready: bool,
    evict_non_deleted_pods: bool,
    dry_run: bool,
    itemize_skips: bool,
    selector: Option<LabelSelector>,
    planner: ContainerPlanner,
}

impl ContainerGcCollector {
    /// A collector applying `policy` like the kubelet's periodic loop: all
    /// pod sources ready, pods not yet deleted left alone.
    pub fn new(policy: ContainerGcPolicy) -> Self {
        Self {
            policy,
            all_sources_ready: true,
            evict_non_deleted_pods: false,
            dry_run: false,
            itemize_skips: true,
            selector: None,
            planner: ContainerPlanner::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ContainerGcPolicy {
        &self.policy
    }

    /// Replaces the policy (a reloaded configuration).
    pub fn set_policy(&mut self, policy: ContainerGcPolicy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// Whether all pod config sources have been seen (the kubelet's
    /// `allSourcesReady`); without it, deleted pods are not emptied in bulk
    /// and pod logs stay. Default `true`.
    pub fn all_sources_ready(&mut self, ready: bool) -> &mut Self {
        self.all_sources_ready = ready;
        self
    }

    /// Whether terminated (not only deleted) pods lose their containers:
    /// the eviction manager's `DeleteAllUnusedContainers`. Default `false`.
    pub fn evict_non_deleted_pods(&mut self, evict: bool) -> &mut Self {
        self.evict_non_deleted_pods = evict;
        self
    }

    /// Plans without removing anything. Default `false`.
    pub fn dry_run(&mut self, dry_run: bool) -> &mut Self {
        self.dry_run = dry_run;
        self
    }

    /// Whether the report lists every kept item (default `true`).
    pub fn itemize_skips(&mut self, itemize: bool) -> &mut Self {
        self.itemize_skips = itemize;
        self
    }

    /// Looks only at containers whose labels match (sandboxes and pod logs
    /// are unaffected). Default: every container.
    pub fn select(&mut self, selector: Option<LabelSelector>) -> &mut Self {
        self.selector = selector;
        self
    }

    /// One GC call against `store` at `clock`'s time.
    pub async fn run<S, C, O>(&mut self, store: &S, clock: &C, observer: &O) -> Report
    where
        S: ContainerStore + ?Sized,
        C: Clock + ?Sized,
        O: Observer + ?Sized,
    {
        let mut run = RunState::start(
            CollectorKind::Containers,
            self.dry_run,
            self.itemize_skips,
            clock,
            observer,
        );
        run.report.passes = ["containers", "sandboxes", "pod logs"]
            .into_iter()
            .map(PassReport::named)
            .collect();
        let now = run.now();

        let Some(snapshot) = self.snapshot(store, &mut run).await else {
            return run.finish(clock);
        };
        let pods = snapshot.pod_states();
        let mut options = ContainerGcOptions::new(now);
        options
            .all_sources_ready(self.all_sources_ready)
            .evict_non_deleted_pods(self.evict_non_deleted_pods);

        if self.dry_run {
            let plan = self.planner.plan(&snapshot, &self.policy, &pods, &options);
            report_plan(&mut run, &plan, &HashMap::new(), true);
            return run.finish(clock);
        }

        let mut collector = self
            .planner
            .collector(&snapshot, &self.policy, &pods, &options);
        let mut outcomes: HashMap<(ItemKind, String), Outcome> = HashMap::new();
        let mut fatal = false;
        while let Some(call) = collector.next_call() {
            let (result, is_fatal) = perform(store, &call, &mut outcomes).await;
            collector.record(result);
            if is_fatal {
                fatal = true;
                break;
            }
        }
        let plan = collector.finish();
        report_plan(&mut run, &plan, &outcomes, false);
        if fatal {
            // The fatal call is the plan's last failure; it ended the run.
            run.last_error_fatal(&[
                "KillContainer",
                "RemoveContainer",
                "StopPodSandbox",
                "RemovePodSandbox",
                "RemovePodLogDir",
            ]);
        }
        run.finish(clock)
    }

    /// Lists everything the container GC looks at; `None` (with the error
    /// reported) if a listing failed.
    async fn snapshot<S, O>(
        &self,
        store: &S,
        run: &mut RunState<'_, O>,
    ) -> Option<ContainerSnapshot>
    where
        S: ContainerStore + ?Sized,
        O: Observer + ?Sized,
    {
        let containers = match store.containers().await {
            Ok(c) => c,
            Err(e) => {
                run.error("ListContainers", None, e.to_string(), true);
                return None;
            }
        };
        let sandboxes = match store.sandboxes().await {
            Ok(s) => s,
            Err(e) => {
                run.error("ListSandboxes", None, e.to_string(), true);
                return None;
            }
        };
        let pods = match store.pods().await {
            Ok(p) => p,
            Err(e) => {
                run.error("ListPods", None, e.to_string(), true);
                return None;
            }
        };
        let pod_log_dirs = match store.pod_log_dirs().await {
            Ok(d) => d,
            Err(e) => {
                run.error("ListPodLogDirs", None, e.to_string(), true);
                return None;
            }
        };
        let containers = containers
            .into_iter()
            .filter(|c| self.selector.as_ref().is_none_or(|s| s.matches(&c.labels)))
            .map(|c| Container {
                id: c.id,
                pod_uid: c.pod_uid,
                name: c.name,
                state: c.state,
                created_at: c.created,
                sandbox_id: c.sandbox_id,
            })
            .collect();
        let sandboxes = sandboxes
            .into_iter()
            .map(|s| Sandbox {
                id: s.id,
                pod_uid: s.pod_uid,
                state: s.state,
                created_at: s.created,
            })
            .collect();
        let snapshot = ContainerSnapshot {
            taken_at: Some(run.now()),
            pods: pods.pods,
            unknown_pods: pods.unknown,
            containers,
            sandboxes,
            pod_log_dirs,
        };
        if let Err(e) = snapshot.validate() {
            run.error("ListContainers", None, e.to_string(), true);
            return None;
        }
        Some(snapshot)
    }
}

/// Makes one runtime call the kubelet collector asked for. Returns its
/// result as the collector needs it, and whether it was fatal.
async fn perform<S: ContainerStore + ?Sized>(
    store: &S,
    call: &ContainerCall,
    outcomes: &mut HashMap<(ItemKind, String), Outcome>,
) -> (Result<(), CallError>, bool) {
    let stopped = |o: StopOutcome| match o {
        StopOutcome::Stopped | StopOutcome::AlreadyGone => (Ok(()), false, None),
        StopOutcome::Fatal { message } => (
            Err(CallError::new(message.clone())),
            true,
            Some(Outcome::Fatal { message }),
        ),
        other => {
            let outcome = Outcome::from(other);
            let message = match &outcome {
                Outcome::StopFailed { message } => message.clone(),
                _ => outcome.to_string(),
            };
            (Err(CallError::new(message)), false, Some(outcome))
        }
    };
    let removed = |o: RemoveOutcome| {
        let fatal = matches!(o, RemoveOutcome::Fatal { .. });
        let result = match o.message() {
            None => Ok(()),
            Some(m) => Err(CallError::new(m)),
        };
        (result, fatal, Some(Outcome::from(o)))
    };
    let (key, (result, fatal, outcome)) = match call {
        ContainerCall::KillContainer { id } => (
            (ItemKind::Container, id.to_string()),
            stopped(store.stop_container(id).await),
        ),
        ContainerCall::RemoveContainer { id } => (
            (ItemKind::Container, id.to_string()),
            removed(store.remove_container(id).await),
        ),
        ContainerCall::StopSandbox { id } => (
            (ItemKind::Sandbox, id.to_string()),
            stopped(store.stop_sandbox(id).await),
        ),
        ContainerCall::RemoveSandbox { id } => (
            (ItemKind::Sandbox, id.to_string()),
            removed(store.remove_sandbox(id).await),
        ),
        ContainerCall::RemovePodLogDir { dir } => (
            (ItemKind::PodLogDir, dir.clone()),
            removed(store.remove_pod_log_dir(dir).await),
        ),
        other => {
            let message = format!("unsupported call {other:?}");
            return (Err(CallError::new(message)), true);
        }
    };
    if let Some(outcome) = outcome {
        outcomes.insert(key, outcome);
    }
    (result, fatal)
}

/// The outcome of a planned removal, from its status and the engine's
/// answers.
fn outcome_of(
    status: CallStatus,
    key: (ItemKind, String),
    outcomes: &HashMap<(ItemKind, String), Outcome>,
    dry_run: bool,
) -> Outcome {
    if dry_run {
        return Outcome::Planned;
    }
    match status {
        CallStatus::NotAttempted => Outcome::NotAttempted,
        _ => outcomes.get(&key).cloned().unwrap_or(match status {
            CallStatus::Succeeded => Outcome::Removed { reclaimed: None },
            _ => Outcome::NotAttempted,
        }),
    }
}

fn report_plan<O: Observer + ?Sized>(
    run: &mut RunState<'_, O>,
    plan: &ContainerPlan<'_>,
    outcomes: &HashMap<(ItemKind, String), Outcome>,
    dry_run: bool,
) {
    for r in &plan.removals {
        let id = &r.container.id;
        run.deletion(ReportDeletion {
            item: ItemKind::Container,
            id: id.clone(),
            pass: 0,
            bytes: None,
            reason: Reason::Container {
                step: r.step,
                rank: r.rank,
            },
            outcome: outcome_of(
                r.status,
                (ItemKind::Container, id.to_string()),
                outcomes,
                dry_run,
            ),
        });
    }
    for s in &plan.sandbox_removals {
        let id = &s.sandbox.id;
        run.deletion(ReportDeletion {
            item: ItemKind::Sandbox,
            id: id.clone(),
            pass: 1,
            bytes: None,
            reason: Reason::Sandbox { reason: s.reason },
            outcome: outcome_of(
                s.status,
                (ItemKind::Sandbox, id.to_string()),
                outcomes,
                dry_run,
            ),
        });
    }
    for d in &plan.pod_log_removals {
        run.deletion(ReportDeletion {
            item: ItemKind::PodLogDir,
            id: d.dir.into(),
            pass: 2,
            bytes: None,
            reason: Reason::PodLogDir {
                pod_uid: d.pod_uid.to_owned(),
            },
            outcome: outcome_of(
                d.status,
                (ItemKind::PodLogDir, d.dir.to_owned()),
                outcomes,
                dry_run,
            ),
        });
    }
    for k in &plan.kept {
        run.skip(Skip {
            item: ItemKind::Container,
            id: k.container.id.clone(),
            bytes: None,
            reason: SkipReason::Container(k.reason),
        });
    }
    for k in &plan.kept_sandboxes {
        run.skip(Skip {
            item: ItemKind::Sandbox,
            id: k.sandbox.id.clone(),
            bytes: None,
            reason: SkipReason::Sandbox(k.reason),
        });
    }
    for k in &plan.kept_pod_log_dirs {
        run.skip(Skip {
            item: ItemKind::PodLogDir,
            id: k.dir.into(),
            bytes: None,
            reason: SkipReason::PodLogDir(k.reason),
        });
    }
    for f in &plan.failures {
        run.error(f.call, Some(f.target.clone()), f.message.clone(), false);
    }
}
