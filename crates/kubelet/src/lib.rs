//! The kubelet's container GC and image GC as pure planners, exact to
//! upstream (Kubernetes `kuberuntime_gc.go` and `image_gc_manager.go`).
//!
//! This crate never talks to a container runtime, the disk or the clock:
//! give it a snapshot and the time, and it returns a plan that explains
//! every removal and every kept item. Runtime calls that can fail (and
//! whose outcome changes what the kubelet does next) go through small
//! sans-IO collectors that hand out one call at a time; an engine adapter
//! drives them.
//!
//! # Overview
//!
//! Containers (spec section 1):
//!
//! - [`ContainerSnapshot`] lists pods with their state, containers,
//!   sandboxes and pod log directories; [`PodStateProvider`] is the
//!   injected view of the kubelet's pod workers.
//! - [`ContainerGcPolicy`] holds MinAge, MaxPerPodContainer and
//!   MaxContainers ([`ContainerGcPolicy::from_flags`] reads the kubelet's
//!   flags); [`ContainerGcOptions`] the clock and run mode.
//! - [`plan_containers`] is the dry run; [`ContainerCollector`] runs the
//!   same GC call against a runtime, reproducing how the kubelet counts
//!   failed stops and removals. Both return a [`ContainerPlan`].
//!
//! Images (spec section 2):
//!
//! - [`ImageRecords`] is the kubelet's per-image bookkeeping (first
//!   detected, last used, size, pinned) as a value to keep and save between
//!   runs; [`ImageRecords::detect`] refreshes it from a runtime listing.
//! - [`ImagePolicy`] holds the thresholds and ages; [`KubeletConfig`] reads
//!   them from a KubeletConfiguration file with the kubelet's defaults and
//!   validation.
//! - [`plan_images`] is the dry run of `GarbageCollect`; [`ImageCollector`]
//!   runs any entry point (`GarbageCollect`, `DeleteUnusedImages`, or one
//!   pass) against a runtime. Both return an [`ImagePlan`].
//!
//! Plans borrow the snapshot or records they were computed from (so that
//! planning a million containers copies no ids); they implement `Display`
//! for people and `Serialize` for scripts. Wherever upstream leaves an order
//! open (unstable sorts, Go map iteration), the plan follows a documented
//! deterministic rule, and it never depends on the order of the input.
//!
//! # Example
//!
//! ```
//! use reclaim_kubelet::{
//!     ContainerGcOptions, ContainerGcPolicy, ContainerSnapshot, EvictionStep, ImageFsStats,
//!     ImagePolicy, ImageRecords, ListedImage, plan_containers, plan_images,
//! };
//! use reclaim_model::{Duration, Timestamp};
//!
//! // Containers: keep one dead container per pod and name.
//! let snapshot = ContainerSnapshot::from_json(r#"{
//!     "pods": [{"uid": "pod-1", "state": "active"}],
//!     "containers": [
//!         {"id": "a", "pod_uid": "pod-1", "name": "app", "state": "exited", "created_at": 100},
//!         {"id": "b", "pod_uid": "pod-1", "name": "app", "state": "exited", "created_at": 200}
//!     ]
//! }"#)?;
//! let now = Timestamp::from_unix_secs(1_000);
//! let policy = ContainerGcPolicy::from_flags(Some("1m"), Some("1"), None)?;
//! let pods = snapshot.pod_states();
//! let plan = plan_containers(&snapshot, &policy, &pods, &ContainerGcOptions::new(now));
//! assert_eq!(plan.removals.len(), 1);
//! assert_eq!(plan.removals[0].container.id.as_str(), "a");
//! assert_eq!(plan.removals[0].step, EvictionStep::PerUnitCap);
//!
//! // Images: a full disk frees down to the low threshold, least recently
//! // used (then earliest detected) first.
//! let old = ListedImage { id: "sha256:old".into(), size_bytes: 600, pinned: false };
//! let new = ListedImage { id: "sha256:new".into(), size_bytes: 300, pinned: false };
//! let mut records = ImageRecords::new();
//! let t = Timestamp::from_unix_secs;
//! records.detect(&[old.clone()], &[], t(0), t(0));
//! records.detect(&[old, new], &[], t(10), t(10));
//! let policy = ImagePolicy::new(85, 80, Duration::from_secs(120), Duration::ZERO)?;
//! let fs = ImageFsStats::new(1_000, 100); // 90 % used
//! let plan = plan_images(&records, &policy, now, now, fs);
//! assert_eq!(plan.amount_to_free, Some(100)); // down to 80 %
//! assert_eq!(plan.removed().collect::<Vec<_>>(), ["sha256:old"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod containers;
mod goparse;
mod hash;
mod images;
mod outcome;
mod partition;
mod serde_time;
#[cfg(feature = "synth")]
pub mod synth;
mod table;

pub use config::{ConfigError, KUBELET_CONFIG_API_VERSION, KUBELET_CONFIG_KIND, KubeletConfig};
pub use containers::*;
pub use images::*;
pub use outcome::{CallError, CallFailure, CallStatus};
