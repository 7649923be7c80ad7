//! The seam: the traits an engine implements, the items they list, and the
//! outcomes of the calls that change an engine.
//!
//! The traits are split by capability, so that an engine implements only
//! what it has: [`BuildCacheStore`] (BuildKit's cache), [`ImageStore`] and
//! [`ContainerStore`] (containers, and the kubelet's sandboxes, pods and pod
//! log directories where the engine has them). Every method is `async` and
//! returns its failures as values: listings return [`RuntimeError`],
//! changes return a [`RemoveOutcome`] or a [`StopOutcome`].
//!
//! # Contracts every engine keeps
//!
//! - A removal never forces. Whatever is in use, pinned or running at the
//!   moment of the call is refused with `InUse`, even if it was free when
//!   the collector listed it: collectors plan on a snapshot, and only the
//!   engine knows the present.
//! - An item that no longer exists is `AlreadyGone`, never an error.
//! - `Transient` means "try again later" (the engine is restarting, a
//!   timeout, a lock); `Fatal` means retrying cannot help (permissions, a
//!   broken engine, an unsupported call). A collector stops at the first
//!   fatal outcome and carries on after transient ones.
//! - Listings are complete snapshots at one moment; their order carries no
//!   meaning (the planners sort).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use reclaim_kubelet::{ContainerState, Pod, PodState, SandboxState};
use reclaim_model::{DiskStats, Id, Timestamp};
use reclaim_policy::prune::CacheRecord;
use serde::{Deserialize, Serialize};

/// An engine with a BuildKit build cache.
pub trait BuildCacheStore: Send + Sync {
    /// Every cache record, as `docker system df -v` or `buildctl du` list
    /// them: sizes, types, parents, usage counts and last-use times, and
    /// whether each is in use, shared or mutable.
    fn cache_records(&self) -> impl Future<Output = Result<Vec<CacheRecord>, RuntimeError>> + Send;

    /// Statistics of the filesystem holding the build cache (BuildKit reads
    /// its `free` field for `min_free_space` rules).
    fn cache_disk_stats(&self) -> impl Future<Output = Result<DiskStats, RuntimeError>> + Send;

    /// Removes one cache record, unless something holds it or other records
    /// are built on it (then [`RemoveOutcome::InUse`]).
    fn remove_cache_record(&self, id: &Id) -> impl Future<Output = RemoveOutcome> + Send;
}

/// An engine with an image store.
pub trait ImageStore: Send + Sync {
    /// Every image, with its size, tags, labels and whether it is pinned.
    fn images(&self) -> impl Future<Output = Result<Vec<ImageInfo>, RuntimeError>> + Send;

    /// Statistics of the image filesystem (the kubelet reads `total` and
    /// `available`).
    fn image_fs_stats(&self) -> impl Future<Output = Result<DiskStats, RuntimeError>> + Send;

    /// Removes one image by id, with all its tags, without forcing: an image
    /// that is pinned or used by any container (running or not) is refused
    /// with [`RemoveOutcome::InUse`].
    fn remove_image(&self, id: &Id) -> impl Future<Output = RemoveOutcome> + Send;
}

/// An engine with containers, and optionally the kubelet's pod sandboxes,
/// pod states and pod log directories.
///
/// Engines without pods (plain Docker) implement the three required
/// methods; the others default to "nothing there".
pub trait ContainerStore: Send + Sync {
    /// Every container, in any state.
    fn containers(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// Every pod sandbox. Default: none.
    fn sandboxes(&self) -> impl Future<Output = Result<Vec<SandboxInfo>, RuntimeError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// What the engine knows about pods: the kubelet's pod-worker view,
    /// which answers its two removability predicates. Default: no pods, and
    /// unknown pods are [`PodState::Active`] (nothing is removable because
    /// its pod is gone).
    fn pods(&self) -> impl Future<Output = Result<PodList, RuntimeError>> + Send {
        async { Ok(PodList::default()) }
    }

    /// Entry names under the pod log root (`/var/log/pods`). Default: none.
    fn pod_log_dirs(&self) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Stops a container the collector listed in an unknown state, before
    /// it removes it (the kubelet kills such containers first).
    ///
    /// An engine that now knows the container to be running must refuse
    /// with [`StopOutcome::InUse`] instead of stopping it: reclaim never
    /// stops a container it knows to run.
    fn stop_container(&self, id: &Id) -> impl Future<Output = StopOutcome> + Send;

    /// Removes one container without forcing: a running container (or one
    /// whose removal is already in progress) is refused with
    /// [`RemoveOutcome::InUse`].
    fn remove_container(&self, id: &Id) -> impl Future<Output = RemoveOutcome> + Send;

    /// Stops a pod sandbox before its removal (CRI `StopPodSandbox`).
    /// Default: unsupported (an engine without sandboxes never lists one, so
    /// collectors never call it).
    fn stop_sandbox(&self, id: &Id) -> impl Future<Output = StopOutcome> + Send {
        let message = format!("stop sandbox {id}: this engine has no pod sandboxes");
        async move { StopOutcome::Fatal { message } }
    }

    /// Removes a stopped pod sandbox; a ready one is refused with
    /// [`RemoveOutcome::InUse`]. Default: unsupported.
    fn remove_sandbox(&self, id: &Id) -> impl Future<Output = RemoveOutcome> + Send {
        let message = format!("remove sandbox {id}: this engine has no pod sandboxes");
        async move { RemoveOutcome::Fatal { message } }
    }

    /// Removes a pod log directory recursively. Default: unsupported.
    fn remove_pod_log_dir(&self, dir: &str) -> impl Future<Output = RemoveOutcome> + Send {
        let message = format!("remove pod log directory {dir}: this engine has no pod logs");
        async move { RemoveOutcome::Fatal { message } }
    }
}

/// An image as an engine lists it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ImageInfo {
    /// The image id (for example `sha256:…`), never a tag.
    pub id: Id,
    /// Bytes the image occupies.
    pub size: u64,
    /// Whether the engine pins it (never removed; the pause image usually
    /// is).
    #[serde(default)]
    pub pinned: bool,
    /// Its `repository:tag` references; empty for a dangling image.
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the image was built (not when it was pulled or last used).
    pub created: Timestamp,
}

impl ImageInfo {
    /// An unpinned image without tags or labels, created at `created`.
    pub fn new(id: impl Into<Id>, size: u64, created: Timestamp) -> Self {
        Self {
            id: id.into(),
            size,
            pinned: false,
            repo_tags: Vec::new(),
            labels: BTreeMap::new(),
            created,
        }
    }
}

/// A container as an engine lists it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ContainerInfo {
    /// The engine's container id.
    pub id: Id,
    /// The pod UID (the kubelet's `io.kubernetes.pod.uid` label); engines
    /// without pods report an empty id or one of their own grouping.
    #[serde(default = "empty_id")]
    pub pod_uid: Id,
    /// The container name within its pod (for Docker, the container name).
    pub name: Id,
    /// The engine's state. Engines map states the kubelet does not know to
    /// the nearest one: paused or restarting is [`ContainerState::Running`]
    /// (protected), a state that cannot be read is
    /// [`ContainerState::Unknown`].
    pub state: ContainerState,
    /// When the container was created; MinAge is measured from here.
    pub created: Timestamp,
    /// The pod sandbox the container belongs to, if any.
    #[serde(default)]
    pub sandbox_id: Option<Id>,
    /// The resolved id of the image it runs (not the image name). Every
    /// container, running or not, keeps its image in use.
    pub image_id: Id,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn empty_id() -> Id {
    Id::new("")
}

impl ContainerInfo {
    /// A container in `state`, without pod, sandbox or labels.
    pub fn new(
        id: impl Into<Id>,
        name: impl Into<Id>,
        image_id: impl Into<Id>,
        state: ContainerState,
        created: Timestamp,
    ) -> Self {
        Self {
            id: id.into(),
            pod_uid: empty_id(),
            name: name.into(),
            state,
            created,
            sandbox_id: None,
            image_id: image_id.into(),
            labels: BTreeMap::new(),
        }
    }
}

/// A pod sandbox as an engine lists it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct SandboxInfo {
    /// The engine's sandbox id.
    pub id: Id,
    /// The pod UID.
    pub pod_uid: Id,
    /// Ready (running) or not.
    pub state: SandboxState,
    /// When the sandbox was created.
    pub created: Timestamp,
}

/// What an engine knows about pods: the pods it tracks with their states,
/// and the state it assumes for every other pod UID.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct PodList {
    /// Known pods.
    pub pods: Vec<Pod>,
    /// The state of pod UIDs missing from `pods`. The kubelet answers
    /// "removable" for pods its workers do not know ([`PodState::Deleted`]);
    /// the default, [`PodState::Active`], protects them.
    pub unknown: PodState,
}

/// What happened to one removal call.
///
/// Errors are values: a refused or failed removal is an outcome like a
/// successful one, and the collector decides what to do next.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RemoveOutcome {
    /// The item did not exist (any more). Collectors treat it as removed,
    /// with no bytes reclaimed.
    AlreadyGone,
    /// The call failed and retrying cannot help (permission denied, an
    /// unsupported call, a corrupt store). The collector stops.
    Fatal {
        /// The engine's error text.
        message: String,
    },
    /// The engine refused: the item is in use, pinned, running, has
    /// dependants, or its removal is already in progress (Docker's 409
    /// conflict). The item stays; the collector must not retry it in this
    /// run.
    InUse {
        /// The engine's explanation.
        message: String,
    },
    /// The item is gone.
    Removed {
        /// Bytes the removal gave back, if the engine knows.
        reclaimed: Option<u64>,
    },
    /// The call failed for a reason that may pass (engine restarting,
    /// timeout, lock contention). The item stays for this run.
    Transient {
        /// The engine's error text.
        message: String,
    },
}

impl RemoveOutcome {
    /// The outcome of a call that failed with `error`.
    pub fn failed(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Fatal { message } => Self::Fatal { message },
            RuntimeError::Transient { message } => Self::Transient { message },
        }
    }

    /// True for [`RemoveOutcome::Removed`] and [`RemoveOutcome::AlreadyGone`]:
    /// the item no longer exists.
    pub const fn is_gone(&self) -> bool {
        matches!(self, Self::Removed { .. } | Self::AlreadyGone)
    }

    /// The error text of a refused or failed call.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Fatal { message } | Self::InUse { message } | Self::Transient { message } => {
                Some(message)
            }
            Self::AlreadyGone | Self::Removed { .. } => None,
        }
    }
}

impl fmt::Display for RemoveOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyGone => f.write_str("already gone"),
            Self::Fatal { message } => write!(f, "fatal: {message}"),
            Self::InUse { message } => write!(f, "in use: {message}"),
            Self::Removed {
                reclaimed: Some(bytes),
            } => write!(f, "removed ({bytes} bytes)"),
            Self::Removed { reclaimed: None } => f.write_str("removed"),
            Self::Transient { message } => write!(f, "transient: {message}"),
        }
    }
}

/// What happened to one stop call (a container or sandbox stopped before
/// its removal).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopOutcome {
    /// The item did not exist (any more).
    AlreadyGone,
    /// The call failed and retrying cannot help; the collector stops.
    Fatal {
        /// The engine's error text.
        message: String,
    },
    /// The engine refused to stop it (it is known to be running, or ready).
    InUse {
        /// The engine's explanation.
        message: String,
    },
    /// The item is stopped (or was already).
    Stopped,
    /// The call failed for a reason that may pass.
    Transient {
        /// The engine's error text.
        message: String,
    },
}

impl StopOutcome {
    /// The outcome of a call that failed with `error`.
    pub fn failed(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Fatal { message } => Self::Fatal { message },
            RuntimeError::Transient { message } => Self::Transient { message },
        }
    }
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyGone => f.write_str("already gone"),
            Self::Fatal { message } => write!(f, "fatal: {message}"),
            Self::InUse { message } => write!(f, "in use: {message}"),
            Self::Stopped => f.write_str("stopped"),
            Self::Transient { message } => write!(f, "transient: {message}"),
        }
    }
}

/// A listing or statistics call that failed.
///
/// The text is the engine's, verbatim.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuntimeError {
    /// Retrying cannot help: permission denied, an unsupported API version,
    /// a response that does not parse. Fix the engine or the configuration.
    #[error("{message}")]
    Fatal {
        /// The engine's error text.
        message: String,
    },
    /// The engine is unreachable or busy for now (restarting, a timeout);
    /// the next run may succeed.
    #[error("{message}")]
    Transient {
        /// The engine's error text.
        message: String,
    },
}

impl RuntimeError {
    /// A fatal error with this text.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal {
            message: message.into(),
        }
    }

    /// A transient error with this text.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
        }
    }

    /// True for [`RuntimeError::Transient`].
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The engine's error text.
    pub fn message(&self) -> &str {
        match self {
            Self::Fatal { message } | Self::Transient { message } => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialize_with_a_tag() {
        let json = serde_json::to_string(&RemoveOutcome::Removed { reclaimed: Some(5) }).unwrap();
        assert_eq!(json, r#"{"outcome":"removed","reclaimed":5}"#);
        let json = serde_json::to_string(&RemoveOutcome::InUse {
            message: "busy".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"outcome":"in_use","message":"busy"}"#);
        let back: RemoveOutcome = serde_json::from_str(&json).unwrap();
        assert_eq!(back.message(), Some("busy"));
    }

    #[test]
    fn failed_calls_keep_their_kind() {
        let t = RemoveOutcome::failed(RuntimeError::transient("later"));
        assert_eq!(
            t,
            RemoveOutcome::Transient {
                message: "later".into()
            }
        );
        assert!(!t.is_gone());
        assert!(RemoveOutcome::AlreadyGone.is_gone());
        let f = StopOutcome::failed(RuntimeError::fatal("denied"));
        assert_eq!(f.to_string(), "fatal: denied");
        assert_eq!(RuntimeError::fatal("x").to_string(), "x");
        assert!(RuntimeError::transient("x").is_transient());
    }
}
