//! [`DockerRuntime`]: the runtime traits over the Docker Engine API.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::Method;
use reclaim_kubelet::ContainerState;
use reclaim_model::{DiskStats, Id, Timestamp};
use reclaim_policy::prune::CacheRecord;
use reclaim_runtime::{
    BuildCacheStore, ContainerInfo, ContainerStore, ImageInfo, ImageStore, LabelSelector,
    RemoveOutcome, RuntimeError, StopOutcome,
};
use regex::Regex;
use serde::Deserialize;

use crate::buildcache::{self, PruneResponse};
use crate::endpoint::Endpoint;
use crate::error::{ApiError, DockerError};
use crate::transport::Transport;

/// The oldest Engine API reclaim talks to: 1.39 (Docker 18.09) introduced
/// the build-cache fields of `/system/df` and the filters of
/// `/build/prune`.
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 39);

/// The newest Engine API reclaim asks for: the version of the API models
/// it was built with. A newer daemon serves this version.
pub const MAX_API_VERSION: ApiVersion = ApiVersion::new(1, 53);

/// The label the kubelet (through cri-dockerd) puts on containers for
/// their pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// The label cri-dockerd puts on a container for its name within the pod.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// The label cri-dockerd puts on a container for its pod sandbox.
pub const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";

/// An Engine API version such as `1.41`.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ApiVersion {
    /// Major version (1).
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

impl ApiVersion {
    /// The version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Reads `1.41`.
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self::new(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Keep rules the adapter enforces: a matching image is listed as pinned
/// and its removal is refused, whoever asks.
///
/// Tag patterns are regular expressions searched (unanchored, as docuum's
/// `--keep`) in every `repository:tag` of the image; use `^` and `$` to
/// anchor. Label selectors are `key` or `key=value`.
///
/// ```
/// use std::collections::BTreeMap;
/// use reclaim_docker::PinRules;
///
/// let mut pins = PinRules::new();
/// pins.tag_pattern("^registry.local/base:")?;
/// pins.label("keep=true")?;
/// let none = BTreeMap::new();
/// assert!(pins.matching(&["registry.local/base:1".into()], &none).is_some());
/// assert!(pins.matching(&["app:1".into()], &none).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct PinRules {
    tags: Vec<Regex>,
    labels: Vec<LabelSelector>,
}

/// A keep rule that does not parse.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("keep rule {input:?}: {reason}")]
pub struct PinError {
    /// The rule as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PinRules {
    /// No rules: nothing is pinned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins images with a `repository:tag` matching `pattern`.
    ///
    /// # Errors
    ///
    /// [`PinError`] if the pattern is not a valid regular expression.
    pub fn tag_pattern(&mut self, pattern: &str) -> Result<&mut Self, PinError> {
        let re = Regex::new(pattern).map_err(|e| PinError {
            input: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        self.tags.push(re);
        Ok(self)
    }

    /// Pins images whose labels match `selector` (`key` or `key=value`).
    ///
    /// # Errors
    ///
    /// [`PinError`] if the key is empty.
    pub fn label(&mut self, selector: &str) -> Result<&mut Self, PinError> {
        let s = LabelSelector::parse(selector).map_err(|e| PinError {
            input: selector.to_owned(),
            reason: e.to_string(),
        })?;
        self.labels.push(s);
        Ok(self)
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.labels.is_empty()
    }

    /// The first rule an image with these tags and labels matches, as
    /// text (`tag /re/` or `label k=v`), or `None`.
    pub fn matching(&self, tags: &[String], labels: &BTreeMap<String, String>) -> Option<String> {
        for re in &self.tags {
            if let Some(tag) = tags.iter().find(|t| re.is_match(t)) {
                return Some(format!("tag {tag} matches /{}/", re.as_str()));
            }
        }
        self.labels
            .iter()
            .find(|s| s.matches(labels))
            .map(|s| format!("label {s}"))
    }
}

/// How the container GC groups containers for its per-group cap (the
/// kubelet's "max dead containers per container name").
///
/// Docker container names are unique, so grouping by name only caps
/// anything for containers that carry the kubelet's labels; grouping by
/// image or by a label (for example a CI job name) is usually what a
/// Docker host wants.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub enum ContainerGrouping {
    /// The image the container was created from (its resolved id).
    Image,
    /// The value of a label (containers without it form one group named
    /// after the empty value).
    Label(String),
    /// The container name, or `io.kubernetes.container.name` when the
    /// container has the kubelet's labels.
    #[default]
    Name,
}

impl ContainerGrouping {
    /// Reads `name`, `image` or `label:<key>`.
    ///
    /// # Errors
    ///
    /// A message naming the value for anything else.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "name" => Ok(Self::Name),
            "image" => Ok(Self::Image),
            _ => match text.strip_prefix("label:") {
                Some(key) if !key.is_empty() => Ok(Self::Label(key.to_owned())),
                _ => Err(format!(
                    "{text:?}: expected \"name\", \"image\" or \"label:<key>\""
                )),
            },
        }
    }
}

/// Settings of a [`DockerRuntime`], with defaults that suit a local daemon.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    timeout: Duration,
    disk_path: Option<PathBuf>,
    pins: PinRules,
    grouping: ContainerGrouping,
    remove_volumes: bool,
}

impl Default for DockerOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            disk_path: None,
            pins: PinRules::new(),
            grouping: ContainerGrouping::Name,
            remove_volumes: false,
        }
    }
}

impl DockerOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time allowed for one API call, in seconds of wall time. Default
    /// 120 s (a prune of a large cache can take long).
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// A path on the filesystem that holds the daemon's data root, as this
    /// process sees it (for example a host path mounted into the agent's
    /// container). Default: the daemon's `DockerRootDir` when the daemon is
    /// local (a unix socket); a remote daemon has no disk statistics
    /// without it.
    pub fn disk_path(&mut self, path: Option<PathBuf>) -> &mut Self {
        self.disk_path = path;
        self
    }

    /// Images the adapter pins (lists as pinned, never removes). Default:
    /// none.
    pub fn pins(&mut self, pins: PinRules) -> &mut Self {
        self.pins = pins;
        self
    }

    /// How containers are grouped for the container GC. Default
    /// [`ContainerGrouping::Name`].
    pub fn grouping(&mut self, grouping: ContainerGrouping) -> &mut Self {
        self.grouping = grouping;
        self
    }

    /// Whether removing a container also removes its anonymous volumes
    /// (`docker rm -v`). Default `false`.
    pub fn remove_volumes(&mut self, remove: bool) -> &mut Self {
        self.remove_volumes = remove;
        self
    }
}

/// The daemon as reclaim sees it: every runtime trait over the Docker
/// Engine API, through a unix socket, TCP or TLS.
///
/// - Build cache: records from `GET /system/df` (any API version from
///   1.39, legacy `BuildCache` array included); a record is removed with
///   `POST /build/prune?all=1` and an anchored `id` filter (`^<id>$`,
///   which moby turns into BuildKit's `id~=` regular expression), and the
///   answer is checked: the record in `CachesDeleted` is removed; otherwise
///   a fresh listing tells an in-use record (still listed) from a gone one.
/// - Images: `GET /images/json`; removal never forces. An image some
///   container uses (in any state) or a pin rule keeps is refused before any
///   call. An image with several tags is untagged one tag at a time, then
///   deleted; if the daemon refuses at any step, the removed tags are put
///   back.
/// - Containers: `GET /containers/json?all=1`; removal never forces, so a
///   running container is refused by the daemon (409, in use). Paused,
///   restarting and removing containers count as running.
/// - Disk statistics: `statvfs` of the data root (see
///   [`DockerOptions::disk_path`]).
///
/// Failures become the runtime's outcomes: 404 is already gone, 409 is in
/// use, connection errors, timeouts and 5xx are transient, everything else
/// is fatal. The handle is cheap to clone.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    bollard: bollard::Docker,
    api: ApiVersion,
    server_version: String,
    root_dir: Option<PathBuf>,
    disk_path: Option<PathBuf>,
    pins: RwLock<PinRules>,
    grouping: RwLock<ContainerGrouping>,
    remove_volumes: bool,
    draining: AtomicBool,
}

impl fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("endpoint", self.endpoint())
            .field("api", &self.inner.api)
            .field("server_version", &self.inner.server_version)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct VersionResponse {
    #[serde(rename = "ApiVersion", default)]
    api_version: String,
    #[serde(rename = "Version", default)]
    version: String,
}

#[derive(Deserialize)]
struct InfoResponse {
    #[serde(rename = "DockerRootDir", default)]
    docker_root_dir: Option<String>,
}

impl DockerRuntime {
    /// Connects to the daemon at `endpoint`: asks its version (and uses
    /// the highest API version both sides speak) and its data root.
    ///
    /// # Errors
    ///
    /// [`DockerError::Unreachable`] when the daemon does not answer (retry
    /// later), [`DockerError::UnsupportedVersion`] for a daemon older than
    /// API 1.39, [`DockerError::Tls`] for unusable TLS files,
    /// [`DockerError::Api`] for other failures.
    pub async fn connect(endpoint: &Endpoint, options: DockerOptions) -> Result<Self, DockerError> {
        let transport = Transport::new(endpoint, options.timeout)?;
        let (status, body) = transport
            .request(Method::GET, "/version", None, Bytes::new())
            .await
            .map_err(DockerError::from)?;
        if !status.is_success() {
            return Err(ApiError::status("GET /version", status.as_u16(), &body).into());
        }
        let version: VersionResponse = serde_json::from_slice(&body)
            .map_err(|e| DockerError::from(ApiError::protocol("GET /version", e)))?;
        let server_api = ApiVersion::parse(&version.api_version).ok_or_else(|| {
            DockerError::from(ApiError::protocol(
                "GET /version",
                format!("ApiVersion {:?}", version.api_version),
            ))
        })?;
        if server_api < MIN_API_VERSION {
            return Err(DockerError::UnsupportedVersion {
                endpoint: endpoint.to_string(),
                version: server_api.to_string(),
                minimum: MIN_API_VERSION.to_string(),
            });
        }
        let api = server_api.min(MAX_API_VERSION);

        let (status, body) = transport
            .request(Method::GET, &format!("/v{api}/info"), None, Bytes::new())
            .await
            .map_err(DockerError::from)?;
        if !status.is_success() {
            return Err(ApiError::status("GET /info", status.as_u16(), &body).into());
        }
        let info: InfoResponse = serde_json::from_slice(&body)
            .map_err(|e| DockerError::from(ApiError::protocol("GET /info", e)))?;

        let bollard = bollard_client(&transport, api, options.timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                bollard,
                api,
                server_version: version.version,
                root_dir: info
                    .docker_root_dir
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from),
                disk_path: options.disk_path,
                pins: RwLock::new(options.pins),
                grouping: RwLock::new(options.grouping),
                remove_volumes: options.remove_volumes,
                draining: AtomicBool::new(false),
            }),
        })
    }

    /// The daemon's address.
    pub fn endpoint(&self) -> &Endpoint {
        self.inner.transport.endpoint()
    }

    /// The API version in use.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.api
    }

    /// The daemon's version (`20.10.24`).
    pub fn server_version(&self) -> &str {
        &self.inner.server_version
    }

    /// The daemon's data root as it reports it (`/var/lib/docker`).
    pub fn data_root(&self) -> Option<&Path> {
        self.inner.root_dir.as_deref()
    }

    /// Replaces the pin rules (a reloaded configuration).
    pub fn set_pins(&self, pins: PinRules) {
        *self.inner.pins.write().unwrap_or_else(|e| e.into_inner()) = pins;
    }

    /// Replaces the container grouping (a reloaded configuration).
    pub fn set_grouping(&self, grouping: ContainerGrouping) {
        *self
            .inner
            .grouping
            .write()
            .unwrap_or_else(|e| e.into_inner()) = grouping;
    }

    /// Refuses every removal from now on (answering transient, without
    /// calling the daemon), so that a collector in progress winds down
    /// quickly: used on shutdown. A removal already sent finishes.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`DockerRuntime::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Checks that the daemon answers (`GET /_ping`).
    ///
    /// # Errors
    ///
    /// [`DockerError::Unreachable`] or [`DockerError::Api`].
    pub async fn ping(&self) -> Result<(), DockerError> {
        let (status, body) = self
            .inner
            .transport
            .request(Method::GET, "/_ping", None, Bytes::new())
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ApiError::status("GET /_ping", status.as_u16(), &body).into())
        }
    }

    /// Runs `POST /build/prune` with these parameters and returns the
    /// daemon's answer: what BuildKit deleted, in its order. Sizes go out
    /// as `keep-storage` to daemons older than API 1.48 (which know no
    /// other size) and as `reserved-space`, `max-used-space` and
    /// `min-free-space` to newer ones.
    ///
    /// # Errors
    ///
    /// [`DockerError::Api`] if the daemon refuses the request (for example
    /// an unknown filter), [`DockerError::Unreachable`] if it cannot be
    /// reached.
    pub async fn prune_build_cache(
        &self,
        request: &PruneRequest,
    ) -> Result<PruneResponse, DockerError> {
        let query = request.query(self.inner.api).map_err(DockerError::Api)?;
        self.prune_raw(&query).await.map_err(DockerError::from)
    }

    async fn prune_raw(&self, query: &str) -> Result<PruneResponse, ApiError> {
        let path = format!("/v{}/build/prune?{query}", self.inner.api);
        let (status, body) = self
            .inner
            .transport
            .request(Method::POST, &path, None, Bytes::new())
            .await?;
        if !status.is_success() {
            return Err(ApiError::status(
                "POST /build/prune",
                status.as_u16(),
                &body,
            ));
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::protocol("POST /build/prune", e))
    }

    async fn list_cache(&self) -> Result<Vec<CacheRecord>, ApiError> {
        let api = self.inner.api;
        let query = if api >= ApiVersion::new(1, 42) {
            "?type=build-cache&verbose=1"
        } else {
            ""
        };
        let path = format!("/v{api}/system/df{query}");
        // dockerd before 23.0 refuses a disk-usage call while another one
        // runs (HTTP 500 "a disk usage operation is already running"), for
        // example a user's `docker system df`, and before API 1.42 the call
        // also lists images and fails when one is deleted meanwhile ("layer
        // ... was not found"): both pass, so retry for up to about 15 s.
        let mut delay = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            let (status, body) = self
                .inner
                .transport
                .request(Method::GET, &path, None, Bytes::new())
                .await?;
            if status.is_success() {
                return buildcache::parse_df(&body)
                    .map_err(|e| ApiError::protocol("GET /system/df", e));
            }
            let text = String::from_utf8_lossy(&body);
            let busy = status.as_u16() == 500
                && (text.contains("disk usage operation is already running")
                    || text.contains("was not found")
                    || text.contains("No such image")
                    || text.contains("no such file or directory"));
            if !busy || waited >= Duration::from_secs(15) {
                return Err(ApiError::status("GET /system/df", status.as_u16(), &body));
            }
            tokio::time::sleep(delay).await;
            waited += delay;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Statistics of the filesystem at `path`.
    fn statvfs(&self, path: Option<&Path>) -> Result<DiskStats, RuntimeError> {
        let Some(path) = path else {
            return Err(RuntimeError::fatal(format!(
                "disk statistics: the daemon at {} is not local and no disk path is configured; \
                 mount the daemon's data root and set its path",
                self.endpoint()
            )));
        };
        let s = nix::sys::statvfs::statvfs(path).map_err(|e| {
            RuntimeError::fatal(format!("disk statistics of {}: {e}", path.display()))
        })?;
        // 64-bit fields on the 64-bit Linux targets reclaim supports.
        let unit = s.fragment_size();
        let free = unit.saturating_mul(s.blocks_free());
        Ok(DiskStats {
            total: unit.saturating_mul(s.blocks()),
            free,
            available: unit.saturating_mul(s.blocks_available()).min(free),
        })
    }

    /// Where disk statistics are read: the configured path, else the data
    /// root of a local daemon.
    pub fn disk_path(&self) -> Option<&Path> {
        self.inner.disk_path.as_deref().or_else(|| {
            if self.endpoint().is_local() {
                self.inner.root_dir.as_deref()
            } else {
                None
            }
        })
    }

    /// Statistics of the filesystem holding the data root.
    ///
    /// # Errors
    ///
    /// A fatal [`RuntimeError`] if there is no local path to read (a remote
    /// daemon without [`DockerOptions::disk_path`]) or `statvfs` fails.
    pub fn disk_stats(&self) -> Result<DiskStats, RuntimeError> {
        self.statvfs(self.disk_path())
    }

    fn refuse_if_draining(&self) -> Option<RemoveOutcome> {
        self.is_draining().then(|| RemoveOutcome::Transient {
            message: "reclaim is shutting down; removal not attempted".into(),
        })
    }

    /// The id of the image `reference` (a name, `name:tag` or id) names now,
    /// or `None` if there is no such image.
    ///
    /// # Errors
    ///
    /// A [`RuntimeError`] if the daemon cannot be asked.
    pub async fn resolve_image(&self, reference: &str) -> Result<Option<Id>, RuntimeError> {
        match self.inner.bollard.inspect_image(reference).await {
            Ok(image) => Ok(image.id.map(Id::from)),
            Err(e) => {
                let e = ApiError::from_bollard("GET /images/{name}/json", e);
                if e.status_code() == Some(404) {
                    Ok(None)
                } else {
                    Err(e.into_runtime())
                }
            }
        }
    }

    /// The id of the image container `id` runs, or `None` if the container
    /// is gone.
    ///
    /// # Errors
    ///
    /// A [`RuntimeError`] if the daemon cannot be asked.
    pub async fn container_image(&self, id: &str) -> Result<Option<Id>, RuntimeError> {
        match self.inner.bollard.inspect_container(id, None).await {
            Ok(c) => Ok(c.image.map(Id::from)),
            Err(e) => {
                let e = ApiError::from_bollard("GET /containers/{id}/json", e);
                if e.status_code() == Some(404) {
                    Ok(None)
                } else {
                    Err(e.into_runtime())
                }
            }
        }
    }

    /// The daemon's event stream (container, image and builder events)
    /// from `since` (inclusive, nanosecond precision) on, or from now.
    ///
    /// The stream ends when the connection does; an error item says why
    /// (the daemon went away). Events older than the daemon's in-memory
    /// buffer (its last 256 events) cannot be replayed.
    pub fn events(
        &self,
        since: Option<Timestamp>,
    ) -> impl Stream<Item = Result<DockerEvent, DockerError>> + Send + 'static {
        let filters: HashMap<String, Vec<String>> = [(
            "type".to_owned(),
            vec!["container".into(), "image".into(), "builder".into()],
        )]
        .into_iter()
        .collect();
        let options = bollard::query_parameters::EventsOptions {
            since: since.map(|t| format!("{}.{:09}", t.unix_secs(), t.subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        self.inner
            .bollard
            .events(Some(options))
            .map(|item| match item {
                Ok(message) => Ok(DockerEvent::from_message(message)),
                Err(e) => Err(DockerError::from(ApiError::from_bollard("GET /events", e))),
            })
    }

    /// The raw transport, for the fixture.
    #[cfg(feature = "fixture")]
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    fn pins(&self) -> PinRules {
        self.inner
            .pins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn untag(&self, tag: &str) -> Result<(), ApiError> {
        let options = bollard::query_parameters::RemoveImageOptions {
            force: false,
            noprune: false,
            platforms: None,
        };
        self.inner
            .bollard
            .remove_image(tag, Some(options), None)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_bollard("DELETE /images/{name}", e))
    }

    /// Puts back tags removed before a refused removal.
    async fn retag(&self, id: &str, tags: &[String]) {
        for tag in tags {
            let (repo, t) = split_tag(tag);
            let options = bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(t.to_owned()),
            };
            if let Err(e) = self.inner.bollard.tag_image(id, Some(options)).await {
                tracing::warn!(image = id, tag = tag.as_str(), error = %e, "could not restore a tag after a refused removal");
            }
        }
    }
}

/// Splits `repo:tag` at the tag's colon (not a registry port's).
fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

fn bollard_client(
    transport: &Transport,
    api: ApiVersion,
    timeout: Duration,
) -> Result<bollard::Docker, DockerError> {
    let t = transport.clone();
    let client = bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let t = t.clone();
            async move { t.send(req).await.map_err(|e| e.into_bollard()) }
        },
        Some("http://docker"),
        timeout.as_secs().max(1),
        &bollard::ClientVersion {
            major_version: usize::from(api.major),
            minor_version: usize::from(api.minor),
        },
    )
    .map_err(|e| DockerError::Api(format!("cannot set up the API client: {e}")))?;
    Ok(client)
}

/// Parameters of one `POST /build/prune`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PruneRequest {
    /// Also prune internal, frontend and shared records.
    pub all: bool,
    /// Filters, as the API takes them: key to values (`until`, `id`,
    /// `type`, `description`, `inuse`, `shared`, `private`, `parent`).
    pub filters: BTreeMap<String, Vec<String>>,
    /// Bytes to keep (`keep-storage` before API 1.48, `reserved-space`
    /// after).
    pub reserved_space: i64,
    /// API 1.48+: the cache's size target.
    pub max_used_space: i64,
    /// API 1.48+: free disk space to restore.
    pub min_free_space: i64,
}

impl PruneRequest {
    /// The query string for API `api`.
    ///
    /// # Errors
    ///
    /// A message if `max_used_space` or `min_free_space` is set for a
    /// daemon older than API 1.48, which would ignore them.
    pub fn query(&self, api: ApiVersion) -> Result<String, String> {
        let mut parts = Vec::new();
        if self.all {
            parts.push("all=1".to_owned());
        }
        if !self.filters.is_empty() {
            let json = serde_json::to_string(&self.filters).unwrap_or_default();
            parts.push(format!("filters={}", encode(&json)));
        }
        let three = api >= ApiVersion::new(1, 48);
        if self.reserved_space != 0 {
            let key = if three {
                "reserved-space"
            } else {
                "keep-storage"
            };
            parts.push(format!("{key}={}", self.reserved_space));
        }
        for (key, value) in [
            ("max-used-space", self.max_used_space),
            ("min-free-space", self.min_free_space),
        ] {
            if value != 0 {
                if !three {
                    return Err(format!(
                        "{key} needs API 1.48 (Docker 28); this daemon speaks {api}"
                    ));
                }
                parts.push(format!("{key}={value}"));
            }
        }
        Ok(parts.join("&"))
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One event of the daemon's `/events` stream, reduced to what reclaim
/// reads.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DockerEvent {
    /// When it happened (nanosecond precision when the daemon gives it).
    pub time: Timestamp,
    /// `container`, `image`, `builder`, ...
    pub kind: String,
    /// `create`, `start`, `pull`, `tag`, `exec_start: sh`, ...
    pub action: String,
    /// The object: a container id, an image id or reference.
    pub actor: String,
    /// The actor's attributes (a container's `image` and `name`, labels).
    pub attributes: BTreeMap<String, String>,
}

impl DockerEvent {
    fn from_message(m: bollard::models::EventMessage) -> Self {
        let time = match (m.time_nano, m.time) {
            (Some(n), _) if n > 0 => Timestamp::from_unix_nanos(i128::from(n)),
            (_, Some(s)) => Timestamp::from_unix_secs(s),
            _ => Timestamp::UNIX_EPOCH,
        };
        let kind = m.typ.map(|t| t.to_string()).unwrap_or_default();
        let (actor, attributes) = match m.actor {
            Some(a) => (
                a.id.unwrap_or_default(),
                a.attributes.unwrap_or_default().into_iter().collect(),
            ),
            None => (String::new(), BTreeMap::new()),
        };
        Self {
            time,
            kind,
            action: m.action.unwrap_or_default(),
            actor,
            attributes,
        }
    }
}

impl BuildCacheStore for DockerRuntime {
    async fn cache_records(&self) -> Result<Vec<CacheRecord>, RuntimeError> {
        self.list_cache().await.map_err(ApiError::into_runtime)
    }

    async fn cache_disk_stats(&self) -> Result<DiskStats, RuntimeError> {
        // BuildKit reads the filesystem of <data-root>/buildkit.
        let path = self.disk_path().map(|p| {
            let bk = p.join("buildkit");
            if bk.exists() { bk } else { p.to_owned() }
        });
        self.statvfs(path.as_deref())
    }

    async fn remove_cache_record(&self, id: &Id) -> RemoveOutcome {
        if let Some(refused) = self.refuse_if_draining() {
            return refused;
        }
        if !buildcache::is_filter_safe_id(id.as_str()) {
            return RemoveOutcome::Fatal {
                message: format!(
                    "build cache record {id:?}: the id cannot be put in a prune filter"
                ),
            };
        }
        let request = PruneRequest {
            all: true,
            filters: [("id".to_owned(), vec![format!("^{id}$")])]
                .into_iter()
                .collect(),
            ..PruneRequest::default()
        };
        let query = match request.query(self.inner.api) {
            Ok(q) => q,
            Err(message) => return RemoveOutcome::Fatal { message },
        };
        let response = match self.prune_raw(&query).await {
            Ok(r) => r,
            Err(e) => return e.into_remove_outcome(),
        };
        if response.caches_deleted.iter().any(|d| d == id.as_str()) {
            if response.caches_deleted.len() > 1 {
                tracing::warn!(
                    id = id.as_str(),
                    deleted = ?response.caches_deleted,
                    "an anchored id filter pruned more than one record"
                );
            }
            return RemoveOutcome::Removed {
                reclaimed: Some(response.space_reclaimed),
            };
        }
        // Nothing deleted: is the record still there?
        match self.list_cache().await {
            Ok(records) => {
                if let Some(r) = records.iter().find(|r| &r.id == id) {
                    RemoveOutcome::InUse {
                        message: format!(
                            "the daemon kept build cache record {id}{}: it is in use or other records are built on it",
                            if r.in_use { " (in use)" } else { "" }
                        ),
                    }
                } else {
                    RemoveOutcome::AlreadyGone
                }
            }
            Err(e) => RemoveOutcome::Transient {
                message: format!(
                    "build cache record {id} was not pruned, and listing the cache to find out why failed: {}",
                    e.message
                ),
            },
        }
    }
}

impl ImageStore for DockerRuntime {
    async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let options = bollard::query_parameters::ListImagesOptions {
            all: false,
            ..Default::default()
        };
        let listed = self
            .inner
            .bollard
            .list_images(Some(options))
            .await
            .map_err(|e| ApiError::from_bollard("GET /images/json", e).into_runtime())?;
        let pins = self.pins();
        Ok(listed
            .into_iter()
            .map(|i| {
                let repo_tags = real_tags(i.repo_tags);
                let labels: BTreeMap<String, String> = i.labels.into_iter().collect();
                let pinned = pins.matching(&repo_tags, &labels).is_some();
                ImageInfo {
                    id: Id::from(i.id),
                    size: u64::try_from(i.size).unwrap_or(0),
                    pinned,
                    repo_tags,
                    labels,
                    created: Timestamp::from_unix_secs(i.created),
                }
            })
            .collect())
    }

    async fn image_fs_stats(&self) -> Result<DiskStats, RuntimeError> {
        self.disk_stats()
    }

    async fn remove_image(&self, id: &Id) -> RemoveOutcome {
        if let Some(refused) = self.refuse_if_draining() {
            return refused;
        }
        let image = match self.inner.bollard.inspect_image(id.as_str()).await {
            Ok(i) => i,
            Err(e) => {
                return ApiError::from_bollard("GET /images/{name}/json", e).into_remove_outcome();
            }
        };
        // The listing id and the inspected id must agree: a tag given as
        // an id would otherwise remove another image.
        if image.id.as_deref() != Some(id.as_str()) {
            return RemoveOutcome::AlreadyGone;
        }
        let tags = real_tags(image.repo_tags.unwrap_or_default());
        let labels: BTreeMap<String, String> = image
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(rule) = self.pins().matching(&tags, &labels) {
            return RemoveOutcome::InUse {
                message: format!("image {id} is kept by reclaim ({rule})"),
            };
        }
        // Never untag an image a container uses: check first.
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        match self.inner.bollard.list_containers(Some(options)).await {
            Ok(containers) => {
                if let Some(c) = containers
                    .iter()
                    .find(|c| c.image_id.as_deref() == Some(id.as_str()))
                {
                    return RemoveOutcome::InUse {
                        message: format!(
                            "image {id} is used by container {} ({})",
                            c.id.as_deref().unwrap_or("?"),
                            c.state.map(|s| s.to_string()).unwrap_or_default()
                        ),
                    };
                }
            }
            Err(e) => {
                return ApiError::from_bollard("GET /containers/json", e).into_remove_outcome();
            }
        }
        // Several tags: the daemon refuses to delete by id without force,
        // so remove all tags but the last one by one, then the image.
        let mut removed = Vec::new();
        if tags.len() > 1 {
            for tag in &tags[..tags.len() - 1] {
                if let Err(e) = self.untag(tag).await {
                    self.retag(id.as_str(), &removed).await;
                    return e.into_remove_outcome();
                }
                removed.push(tag.clone());
            }
        }
        match self.untag(id.as_str()).await {
            Ok(()) => RemoveOutcome::Removed { reclaimed: None },
            Err(e) => {
                self.retag(id.as_str(), &removed).await;
                e.into_remove_outcome()
            }
        }
    }
}

/// Tags without the `<none>:<none>` placeholder of old daemons.
fn real_tags(tags: Vec<String>) -> Vec<String> {
    tags.into_iter().filter(|t| t != "<none>:<none>").collect()
}

/// The container state the kubelet planner understands.
fn container_state(state: Option<&str>) -> ContainerState {
    match state.unwrap_or("") {
        "created" => ContainerState::Created,
        "exited" | "dead" => ContainerState::Exited,
        // Paused, restarting, stopping and removing containers are still
        // alive or being handled by the daemon: protected like running
        // ones.
        "running" | "paused" | "restarting" | "removing" | "stopping" => ContainerState::Running,
        _ => ContainerState::Unknown,
    }
}

impl ContainerStore for DockerRuntime {
    async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let listed = self
            .inner
            .bollard
            .list_containers(Some(options))
            .await
            .map_err(|e| ApiError::from_bollard("GET /containers/json", e).into_runtime())?;
        let grouping = self
            .inner
            .grouping
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            let Some(id) = c.id else { continue };
            let labels: BTreeMap<String, String> =
                c.labels.unwrap_or_default().into_iter().collect();
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let image_id = c.image_id.unwrap_or_default();
            let group = match &grouping {
                ContainerGrouping::Name => {
                    labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or(name)
                }
                ContainerGrouping::Image => image_id.clone(),
                ContainerGrouping::Label(key) => labels.get(key).cloned().unwrap_or_default(),
            };
            let state = container_state(c.state.map(|s| s.to_string()).as_deref());
            let mut info = ContainerInfo::new(
                id,
                group,
                image_id,
                state,
                Timestamp::from_unix_secs(c.created.unwrap_or(0)),
            );
            if let Some(uid) = labels.get(POD_UID_LABEL) {
                info.pod_uid = Id::from(uid.as_str());
            }
            info.sandbox_id = labels.get(SANDBOX_ID_LABEL).map(|s| Id::from(s.as_str()));
            info.labels = labels;
            out.push(info);
        }
        Ok(out)
    }

    async fn stop_container(&self, id: &Id) -> StopOutcome {
        // reclaim never stops a container: one that runs is refused, one
        // that does not is stopped already.
        match self
            .inner
            .bollard
            .inspect_container(id.as_str(), None)
            .await
        {
            Ok(c) => {
                let status = c
                    .state
                    .as_ref()
                    .and_then(|s| s.status)
                    .map(|s| s.to_string());
                match container_state(status.as_deref()) {
                    ContainerState::Running => StopOutcome::InUse {
                        message: format!(
                            "container {id} is {}; reclaim does not stop containers",
                            status.unwrap_or_default()
                        ),
                    },
                    _ => StopOutcome::Stopped,
                }
            }
            Err(e) => ApiError::from_bollard("GET /containers/{id}/json", e).into_stop_outcome(),
        }
    }

    async fn remove_container(&self, id: &Id) -> RemoveOutcome {
        if let Some(refused) = self.refuse_if_draining() {
            return refused;
        }
        let options = bollard::query_parameters::RemoveContainerOptions {
            v: self.inner.remove_volumes,
            force: false,
            link: false,
        };
        match self
            .inner
            .bollard
            .remove_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => RemoveOutcome::Removed { reclaimed: None },
            Err(e) => ApiError::from_bollard("DELETE /containers/{id}", e).into_remove_outcome(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_order_and_parse() {
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion::new(1, 41)));
        assert!(ApiVersion::new(1, 41) < ApiVersion::new(1, 48));
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 41));
        assert_eq!(ApiVersion::parse("x"), None);
        assert_eq!(ApiVersion::new(1, 53).to_string(), "1.53");
    }

    #[test]
    fn prune_queries_follow_the_api_version() {
        let mut r = PruneRequest {
            all: true,
            reserved_space: 1000,
            ..PruneRequest::default()
        };
        r.filters.insert("id".into(), vec!["^abc$".into()]);
        assert_eq!(
            r.query(ApiVersion::new(1, 41)).unwrap(),
            "all=1&filters=%7B%22id%22%3A%5B%22%5Eabc%24%22%5D%7D&keep-storage=1000"
        );
        assert_eq!(
            r.query(ApiVersion::new(1, 48)).unwrap(),
            "all=1&filters=%7B%22id%22%3A%5B%22%5Eabc%24%22%5D%7D&reserved-space=1000"
        );
        r.max_used_space = 5;
        let err = r.query(ApiVersion::new(1, 41)).unwrap_err();
        assert_eq!(
            err,
            "max-used-space needs API 1.48 (Docker 28); this daemon speaks 1.41"
        );
        assert!(
            r.query(ApiVersion::new(1, 53))
                .unwrap()
                .ends_with("max-used-space=5")
        );
    }

    #[test]
    fn tags_split_at_the_tag_colon() {
        assert_eq!(split_tag("a:1"), ("a", "1"));
        assert_eq!(split_tag("reg:5000/a/b:x"), ("reg:5000/a/b", "x"));
        assert_eq!(split_tag("reg:5000/a"), ("reg:5000/a", "latest"));
    }

    #[test]
    fn states_map_conservatively() {
        assert_eq!(container_state(Some("exited")), ContainerState::Exited);
        assert_eq!(container_state(Some("dead")), ContainerState::Exited);
        assert_eq!(container_state(Some("created")), ContainerState::Created);
        for s in ["running", "paused", "restarting", "removing"] {
            assert_eq!(container_state(Some(s)), ContainerState::Running, "{s}");
        }
        assert_eq!(container_state(Some("weird")), ContainerState::Unknown);
    }

    #[test]
    fn pins_report_the_matching_rule() {
        let mut pins = PinRules::new();
        pins.tag_pattern("^base:").unwrap().label("keep=1").unwrap();
        let labels: BTreeMap<String, String> =
            [("keep".to_owned(), "1".to_owned())].into_iter().collect();
        assert_eq!(
            pins.matching(&["base:2".into()], &BTreeMap::new()).unwrap(),
            "tag base:2 matches /^base:/"
        );
        assert_eq!(pins.matching(&[], &labels).unwrap(), "label keep=1");
        assert!(pins.tag_pattern("(").is_err());
        assert_eq!(
            ContainerGrouping::parse("label:job").unwrap(),
            ContainerGrouping::Label("job".into())
        );
        assert!(ContainerGrouping::parse("label:").is_err());
    }
}
