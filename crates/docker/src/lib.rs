//! The Docker Engine adapter of reclaim: the runtime traits of
//! `reclaim_runtime` over a live dockerd, image last-use tracking from its
//! events, and a crash-safe state file.
//!
//! This crate is where reclaim meets Docker, and the only one that knows
//! Docker's API exists. It does not plan (the planners of `reclaim_policy`
//! and `reclaim_kubelet`, run by the collectors of `reclaim_runtime`, do),
//! and it never forces a removal: whatever the daemon refuses stays, as an
//! "in use" outcome. bollard (the Engine API client it uses) never appears
//! in its API.
//!
//! # Overview
//!
//! - [`Endpoint`]: where the daemon listens, read from `DOCKER_HOST`,
//!   `DOCKER_TLS_VERIFY`, `DOCKER_TLS` and `DOCKER_CERT_PATH` as the docker
//!   CLI reads them (unix socket, TCP, TCP with TLS).
//! - [`DockerRuntime`]: `BuildCacheStore`, `ImageStore` and `ContainerStore`
//!   over the Engine API, for every API version from 1.39 (it reads the
//!   legacy build-cache listing that bollard drops), with [`PinRules`] it
//!   enforces itself and [`DockerRuntime::prune_build_cache`] for
//!   BuildKit's own prune.
//! - [`ImageUsage`] and [`use_of`]: image last use from `/events`;
//!   [`DockerState`]: what an agent saves between restarts, written
//!   atomically.
//! - `fixture` (feature `fixture`): creates labelled images, containers and
//!   build cache on a live daemon, and runs the runtime-conformance suite.
//!
//! How Engine API failures map to outcomes is in the `error` module's
//! table: 404 is already gone, 409 is in use, connection errors and 5xx are
//! transient. `docs/docker.md` describes the adapter in full.
//!
//! # Example
//!
//! Last use from events, folded into the image collector's records:
//!
//! ```
//! use std::collections::BTreeMap;
//! use reclaim_docker::{DockerEvent, ImageUsage, PinRules, UseOf, use_of};
//! use reclaim_model::{Id, Timestamp};
//! use reclaim_runtime::ImageGcState;
//!
//! let event = DockerEvent {
//!     time: Timestamp::from_unix_secs(1_700_000_000),
//!     kind: "image".into(),
//!     action: "pull".into(),
//!     actor: "busybox:latest".into(),
//!     attributes: BTreeMap::new(),
//! };
//! // The adapter resolves the reference to an image id.
//! assert_eq!(use_of(&event), Some(UseOf::Image("busybox:latest".into())));
//! let mut usage = ImageUsage::new();
//! usage.record(Id::from("sha256:b1"), event.time);
//!
//! let mut state = ImageGcState::default();
//! usage.apply(&mut state);
//! assert_eq!(state.records.get("sha256:b1").unwrap().last_used, Some(event.time));
//!
//! // Keep rules the adapter enforces on every removal.
//! let mut pins = PinRules::new();
//! pins.tag_pattern("^busybox:")?;
//! assert!(pins.matching(&["busybox:latest".into()], &BTreeMap::new()).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Against a live daemon (a dry run of the kubelet's image GC):
//!
//! ```no_run
//! use reclaim_docker::{DockerOptions, DockerRuntime, Endpoint};
//! use reclaim_kubelet::ImagePolicy;
//! use reclaim_runtime::{ImageGcCollector, SystemClock, TracingObserver};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let docker = DockerRuntime::connect(&Endpoint::from_env()?, DockerOptions::new()).await?;
//! let mut gc = ImageGcCollector::new(ImagePolicy::default());
//! gc.dry_run(true);
//! let report = gc.run(&docker, &SystemClock::new(), &TracingObserver).await;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod buildcache;
mod endpoint;
mod error;
#[cfg(feature = "fixture")]
pub mod fixture;
mod runtime;
mod state;
mod transport;
mod usage;

pub use buildcache::PruneResponse;
pub use endpoint::{DEFAULT_SOCKET, Endpoint, EndpointError, TlsOptions};
pub use error::DockerError;
pub use runtime::{
    ApiVersion, CONTAINER_NAME_LABEL, ContainerGrouping, DockerEvent, DockerOptions, DockerRuntime,
    MAX_API_VERSION, MIN_API_VERSION, POD_UID_LABEL, PinError, PinRules, PruneRequest,
    SANDBOX_ID_LABEL,
};
pub use state::{DockerState, STATE_SCHEMA, StateError, write_atomic};
pub use usage::{CONTAINER_USE_ACTIONS, IMAGE_USE_ACTIONS, ImageUsage, ImageUse, UseOf, use_of};

/// Reads the build-cache records of a raw `GET /system/df` response body,
/// whatever the API version (for recorded responses and tests).
///
/// # Errors
///
/// A message naming the record and field that do not parse.
pub fn parse_build_cache(body: &[u8]) -> Result<Vec<reclaim_policy::prune::CacheRecord>, String> {
    buildcache::parse_df(body)
}
