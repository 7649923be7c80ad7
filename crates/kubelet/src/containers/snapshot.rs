//! What the container GC sees: pods with their state, containers,
//! sandboxes and pod log directories.

use std::fmt;

use reclaim_model::{Id, Timestamp};
use serde::{Deserialize, Serialize};

use crate::hash::{self, FastMap, FastSet};

/// The runtime state of a container, as the CRI reports it.
///
/// Only [`ContainerState::Running`] protects a container from the GC;
/// [`ContainerState::Unknown`] containers are stopped before removal.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created but never started.
    Created,
    /// Started and then exited.
    Exited,
    /// Running; never a GC candidate.
    Running,
    /// The runtime cannot tell; the GC stops it before removing it.
    Unknown,
}

impl ContainerState {
    /// The lowercase name used in snapshot files and plans.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Exited => "exited",
            Self::Running => "running",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a pod sandbox. A ready sandbox is never removed.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
pub enum SandboxState {
    /// Stopped (`SANDBOX_NOTREADY`).
    #[serde(rename = "notready", alias = "not_ready")]
    NotReady,
    /// Running (`SANDBOX_READY`).
    #[serde(rename = "ready")]
    Ready,
}

/// What the kubelet's pod workers know about a pod, reduced to the three
/// states that matter to the GC.
///
/// | state | content removable | runtime removable |
/// | --- | --- | --- |
/// | `active` | no | no |
/// | `terminated` | no | yes |
/// | `deleted` | yes | yes |
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PodState {
    /// The pod exists and has not terminated.
    #[default]
    Active,
    /// The pod was deleted (or evicted) and has terminated: everything of it
    /// may go.
    Deleted,
    /// The pod has terminated but still exists in the API.
    Terminated,
}

impl PodState {
    /// The kubelet's `ShouldPodContentBeRemoved`: containers, sandboxes and
    /// logs of the pod may all be removed.
    pub const fn content_removable(self) -> bool {
        matches!(self, Self::Deleted)
    }

    /// The kubelet's `ShouldPodRuntimeBeRemoved`: the pod's containers and
    /// sandboxes may be removed (used only when evicting non-deleted pods).
    pub const fn runtime_removable(self) -> bool {
        matches!(self, Self::Deleted | Self::Terminated)
    }

    /// The lowercase name used in snapshot files and plans.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
            Self::Terminated => "terminated",
        }
    }
}

impl fmt::Display for PodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two questions the container GC asks about a pod (spec 1.3).
///
/// This is the injection point for the kubelet's pod workers: an embedder
/// answers from its own pod bookkeeping, a snapshot answers from its
/// [`Pod`] list through [`PodStates`]. Implementations must be pure (the
/// same UID always gives the same answer during one GC run).
pub trait PodStateProvider {
    /// True when everything of the pod (containers, sandboxes, logs) may be
    /// removed: the kubelet's `ShouldPodContentBeRemoved`.
    fn content_removable(&self, pod_uid: &str) -> bool;

    /// True when the pod's containers and sandboxes may be removed: the
    /// kubelet's `ShouldPodRuntimeBeRemoved`.
    fn runtime_removable(&self, pod_uid: &str) -> bool;
}

impl<P: PodStateProvider + ?Sized> PodStateProvider for &P {
    fn content_removable(&self, pod_uid: &str) -> bool {
        (**self).content_removable(pod_uid)
    }

    fn runtime_removable(&self, pod_uid: &str) -> bool {
        (**self).runtime_removable(pod_uid)
    }
}

/// A [`PodStateProvider`] backed by a table of [`PodState`]s.
///
/// UIDs missing from the table get the `unknown` state given at
/// construction. The kubelet answers "removable" for UIDs its pod workers do
/// not know once they have synced; use [`PodState::Deleted`] to reproduce
/// that, or [`PodState::Active`] to protect unknown pods.
#[derive(Clone, Debug, Default)]
pub struct PodStates {
    states: FastMap<Id, PodState>,
    unknown: PodState,
}

impl PodStates {
    /// An empty table where every UID has the state `unknown`.
    pub fn new(unknown: PodState) -> Self {
        Self {
            states: FastMap::default(),
            unknown,
        }
    }

    /// Sets the state of one pod, replacing any earlier entry.
    pub fn insert(&mut self, uid: Id, state: PodState) -> &mut Self {
        self.states.insert(uid, state);
        self
    }

    /// The state of the pod with this UID.
    pub fn state(&self, uid: &str) -> PodState {
        self.states.get(uid).copied().unwrap_or(self.unknown)
    }
}

impl PodStateProvider for PodStates {
    fn content_removable(&self, pod_uid: &str) -> bool {
        self.state(pod_uid).content_removable()
    }

    fn runtime_removable(&self, pod_uid: &str) -> bool {
        self.state(pod_uid).runtime_removable()
    }
}

/// A pod and its state.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Pod {
    /// The pod UID.
    pub uid: Id,
    /// What the pod workers know about it.
    pub state: PodState,
}

/// A kubelet-managed container, as listed by the runtime.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Container {
    /// The runtime's container id.
    pub id: Id,
    /// The pod UID from the container's `io.kubernetes.pod.uid` label.
    pub pod_uid: Id,
    /// The container name from its metadata (the name in the pod spec).
    pub name: Id,
    /// The runtime state.
    pub state: ContainerState,
    /// When the container was created. MinAge is measured from here.
    #[serde(with = "crate::serde_time::instant")]
    pub created_at: Timestamp,
    /// The sandbox the container belongs to, if the runtime reports one.
    #[serde(default)]
    pub sandbox_id: Option<Id>,
}

/// A pod sandbox, as listed by the runtime.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Sandbox {
    /// The runtime's sandbox id.
    pub id: Id,
    /// The pod UID from the sandbox metadata.
    pub pod_uid: Id,
    /// Ready or not.
    pub state: SandboxState,
    /// When the sandbox was created.
    #[serde(with = "crate::serde_time::instant")]
    pub created_at: Timestamp,
}

/// Everything the container GC looks at on one node at one moment.
///
/// The file format is described in `docs/kubelet-snapshot-format.md`.
/// Container and sandbox ids must be unique and pod UIDs may appear once in
/// [`ContainerSnapshot::pods`]; [`ContainerSnapshot::validate`] checks this.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSnapshot {
    /// When the snapshot was taken; a caller may use it as the GC's `now`.
    #[serde(default, with = "crate::serde_time::opt_instant")]
    pub taken_at: Option<Timestamp>,
    /// The state of every pod the kubelet knows.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// The state assumed for pod UIDs missing from `pods` (default
    /// `active`, which protects them).
    #[serde(default)]
    pub unknown_pods: PodState,
    /// Every kubelet-managed container, in any state.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Every kubelet-managed pod sandbox.
    #[serde(default)]
    pub sandboxes: Vec<Sandbox>,
    /// Entry names under the pod log root (`/var/log/pods`), in the order
    /// the kubelet would read them (sorted by name, as Go's `os.ReadDir`).
    #[serde(default)]
    pub pod_log_dirs: Vec<String>,
}

impl ContainerSnapshot {
    /// Parses a snapshot from JSON text and validates it.
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        let snapshot: Self =
            serde_json::from_str(text).map_err(|e| SnapshotError::Json(e.to_string()))?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    /// Checks that container ids, sandbox ids and pod UIDs are unique.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        let mut seen: FastSet<&str> = hash::set_with_capacity(self.containers.len());
        for c in &self.containers {
            if !seen.insert(c.id.as_str()) {
                return Err(SnapshotError::DuplicateId {
                    field: "containers",
                    id: c.id.to_string(),
                });
            }
        }
        seen.clear();
        for s in &self.sandboxes {
            if !seen.insert(s.id.as_str()) {
                return Err(SnapshotError::DuplicateId {
                    field: "sandboxes",
                    id: s.id.to_string(),
                });
            }
        }
        seen.clear();
        for p in &self.pods {
            if !seen.insert(p.uid.as_str()) {
                return Err(SnapshotError::DuplicateId {
                    field: "pods",
                    id: p.uid.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The pod states of this snapshot as a [`PodStateProvider`].
    pub fn pod_states(&self) -> PodStates {
        let mut states = PodStates::new(self.unknown_pods);
        states.states.reserve(self.pods.len());
        for p in &self.pods {
            states.insert(p.uid.clone(), p.state);
        }
        states
    }
}

/// A snapshot file that cannot be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The text is not valid JSON for the snapshot format; the message says
    /// where and what was expected. Fix the file.
    #[error("invalid snapshot: {0}")]
    Json(String),
    /// Two entries of one list share an id. Runtimes never report that, so
    /// the snapshot was assembled wrongly; remove the duplicate.
    #[error("invalid snapshot: {field} lists id {id:?} more than once")]
    DuplicateId {
        /// The list holding the duplicate (`containers`, `sandboxes`,
        /// `pods`, `images`, `records`).
        field: &'static str,
        /// The repeated id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_states_map_onto_the_two_predicates() {
        assert!(!PodState::Active.content_removable());
        assert!(!PodState::Active.runtime_removable());
        assert!(!PodState::Terminated.content_removable());
        assert!(PodState::Terminated.runtime_removable());
        assert!(PodState::Deleted.content_removable());
        assert!(PodState::Deleted.runtime_removable());
    }

    #[test]
    fn unknown_uids_get_the_configured_state() {
        let mut states = PodStates::new(PodState::Deleted);
        states.insert(Id::new("a"), PodState::Active);
        assert!(!states.content_removable("a"));
        assert!(states.content_removable("zzz"));
    }

    #[test]
    fn snapshot_parses_integer_and_rfc3339_times() {
        let text = r#"{
            "pods": [{"uid": "p", "state": "terminated"}],
            "containers": [
                {"id": "a", "pod_uid": "p", "name": "app", "state": "exited", "created_at": 10},
                {"id": "b", "pod_uid": "p", "name": "app", "state": "running",
                 "created_at": "1970-01-01T00:00:20Z", "sandbox_id": "s"}
            ],
            "sandboxes": [{"id": "s", "pod_uid": "p", "state": "notready", "created_at": 5}],
            "pod_log_dirs": ["ns_name_p"]
        }"#;
        let snap = ContainerSnapshot::from_json(text).unwrap();
        assert_eq!(snap.containers[0].created_at, Timestamp::from_unix_secs(10));
        assert_eq!(snap.containers[1].created_at, Timestamp::from_unix_secs(20));
        assert_eq!(snap.containers[1].sandbox_id, Some(Id::new("s")));
        assert_eq!(snap.sandboxes[0].state, SandboxState::NotReady);
        assert_eq!(snap.pod_states().state("p"), PodState::Terminated);
    }

    #[test]
    fn duplicate_ids_are_rejected_with_the_field_and_value() {
        let text = r#"{"containers": [
            {"id": "a", "pod_uid": "p", "name": "x", "state": "exited", "created_at": 1},
            {"id": "a", "pod_uid": "q", "name": "y", "state": "exited", "created_at": 2}
        ]}"#;
        let err = ContainerSnapshot::from_json(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid snapshot: containers lists id \"a\" more than once"
        );
    }

    #[test]
    fn unknown_states_are_reported() {
        let text = r#"{"containers": [
            {"id": "a", "pod_uid": "p", "name": "x", "state": "paused", "created_at": 1}
        ]}"#;
        let err = ContainerSnapshot::from_json(text).unwrap_err().to_string();
        assert!(err.contains("unknown variant `paused`"), "{err}");
    }
}
