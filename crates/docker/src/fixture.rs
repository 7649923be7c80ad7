//! Test support against a live daemon (feature `fixture`): creates
//! labelled images, containers and build cache, cleans them up, and runs
//! the runtime-conformance suite of `reclaim_runtime` against
//! [`DockerRuntime`].
//!
//! Everything a [`DockerFixture`] creates carries the label
//! `reclaim.test=<run id>` (images, containers) or is remembered by id
//! (build-cache records), and only those objects are ever removed by its
//! cleanup, which runs on drop, even when a test panics. Run ids are unique
//! per fixture, so tests can run in parallel next to other users of the
//! daemon.
//!
//! Tests that need a daemon call [`DockerFixture::connect_or_skip`]: with no
//! daemon it prints why and returns `None`, unless `RECLAIM_REQUIRE_DOCKER=1`
//! is set, in which case it panics.
//!
//! Images are made without a registry: `POST /images/create?fromSrc=-`
//! (docker import) of a tarball holding a static busybox (from
//! `RECLAIM_BUSYBOX`, `/bin/busybox` or `/usr/bin/busybox`; on Debian
//! `apt-get install busybox-static`) and a marker file that makes every
//! image unique. Build cache comes from BuildKit builds through the raw
//! Engine API (`POST /build?version=2` with the context as a tar, no
//! session).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use reclaim_model::Id;
use reclaim_policy::prune::CacheRecord;
use reclaim_runtime::conformance::{CacheSpec, ContainerSpec, Fixture, FixtureError, ImageSpec};
use reclaim_runtime::{BuildCacheStore, LabelSelector, SystemClock};
use serde_json::json;

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::runtime::{DockerOptions, DockerRuntime, PinRules, encode};

/// The label every fixture object carries; its value is the run id.
pub const TEST_LABEL: &str = "reclaim.test";

/// The label of images the fixture asks the adapter to pin.
pub const PIN_LABEL: &str = "reclaim.test.pin";

/// Serializes builds within the process, so that the records a build
/// creates can be told apart by listing the cache before and after.
static BUILD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs a future to completion on a fresh tokio runtime: the `block_on` of
/// [`reclaim_runtime::conformance_tests!`] for this adapter.
///
/// # Panics
///
/// If a runtime cannot be created.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Whether `RECLAIM_REQUIRE_DOCKER=1` makes a missing daemon a failure.
pub fn docker_required() -> bool {
    std::env::var("RECLAIM_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// A unique run id: process id, a counter and the time.
pub fn unique_run_id() -> String {
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    #[expect(
        clippy::disallowed_methods,
        reason = "test object names only need to be unique, not reproducible"
    )]
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{}-{n}-{nanos:x}", std::process::id())
}

/// A static busybox to put in test images, or why there is none.
///
/// # Errors
///
/// A message saying how to install one.
pub fn busybox() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = std::env::var_os("RECLAIM_BUSYBOX")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/bin/busybox", "/usr/bin/busybox"].map(PathBuf::from))
        .collect();
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "no static busybox for test images: apt-get install busybox-static, or set RECLAIM_BUSYBOX"
            .to_owned()
    })
}

/// What a container should be left as.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// Started, ran `true`, exited 0.
    Exited,
    /// Running `sleep`.
    Running,
}

/// The outcome of a build.
#[derive(Clone, Debug)]
pub struct Build {
    /// The image the build produced (dangling unless tagged).
    pub image: Option<Id>,
    /// Cache records that did not exist before the build.
    pub new_records: Vec<CacheRecord>,
}

/// A build context: a Dockerfile and files, kept to rebuild on top of.
#[derive(Clone, Debug)]
struct Context {
    dockerfile: String,
    files: Vec<(String, Vec<u8>)>,
}

/// Objects on a live daemon owned by one test, removed on drop.
pub struct DockerFixture {
    docker: DockerRuntime,
    clock: SystemClock,
    run: String,
    busybox: Option<Vec<u8>>,
    images: Vec<Id>,
    containers: Vec<Id>,
    records: Vec<Id>,
    contexts: BTreeMap<Id, Context>,
}

impl std::fmt::Debug for DockerFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerFixture")
            .field("run", &self.run)
            .field("images", &self.images.len())
            .field("containers", &self.containers.len())
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl DockerFixture {
    /// Connects to the daemon of the environment (`DOCKER_HOST`, default
    /// the local socket) with a fresh run id, or explains why not.
    ///
    /// # Errors
    ///
    /// The reason the daemon cannot be used.
    pub async fn connect() -> Result<Self, String> {
        let endpoint = Endpoint::from_env().map_err(|e| e.to_string())?;
        Self::connect_to(&endpoint, DockerOptions::new()).await
    }

    /// Like [`DockerFixture::connect`], to `endpoint` with `options` (the
    /// fixture adds its pin label to the options' pins).
    ///
    /// # Errors
    ///
    /// The reason the daemon cannot be used.
    pub async fn connect_to(
        endpoint: &Endpoint,
        mut options: DockerOptions,
    ) -> Result<Self, String> {
        let run = unique_run_id();
        let mut pins = PinRules::new();
        pins.label(&format!("{PIN_LABEL}={run}"))
            .map_err(|e| e.to_string())?;
        options.pins(pins);
        let docker = DockerRuntime::connect(endpoint, options)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            docker,
            clock: SystemClock::new(),
            run,
            busybox: None,
            images: Vec::new(),
            containers: Vec::new(),
            records: Vec::new(),
            contexts: BTreeMap::new(),
        })
    }

    /// A fixture for `test`, or `None` after printing why there is no
    /// daemon. Panics instead when `RECLAIM_REQUIRE_DOCKER=1`.
    ///
    /// # Panics
    ///
    /// With `RECLAIM_REQUIRE_DOCKER=1` and no usable daemon.
    pub fn connect_or_skip(test: &str) -> Option<Self> {
        match block_on(Self::connect()) {
            Ok(f) => Some(f),
            Err(reason) if docker_required() => {
                panic!(
                    "{test}: RECLAIM_REQUIRE_DOCKER=1 but the Docker daemon cannot be used: {reason}"
                )
            }
            Err(reason) => {
                eprintln!("{test} skipped: no Docker daemon ({reason})");
                None
            }
        }
    }

    /// The adapter under test.
    pub fn docker(&self) -> &DockerRuntime {
        &self.docker
    }

    /// The run id (the value of [`TEST_LABEL`] on every object).
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Selects this fixture's images and containers.
    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector::new(TEST_LABEL, Some(self.run.clone()))
    }

    /// A name unique to this fixture.
    pub fn name(&self, base: &str) -> String {
        format!("reclaim-test-{}-{base}", self.run)
    }

    fn busybox_bytes(&mut self) -> Result<Vec<u8>, FixtureError> {
        if let Some(b) = &self.busybox {
            return Ok(b.clone());
        }
        let path = busybox().map_err(FixtureError::Unsupported)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| FixtureError::Failed(format!("reading {}: {e}", path.display())))?;
        self.busybox = Some(bytes.clone());
        Ok(bytes)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes, FixtureError> {
        let api = self.docker.api_version();
        let (status, bytes) = self
            .docker
            .transport()
            .request_with_timeout(
                method.clone(),
                &format!("/v{api}{path}"),
                content_type,
                body,
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| FixtureError::Failed(e.message))?;
        if !status.is_success() {
            return Err(FixtureError::Failed(
                ApiError::status(&format!("{method} {path}"), status.as_u16(), &bytes).message,
            ));
        }
        Ok(bytes)
    }

    /// Imports an image with a static busybox and a unique marker file,
    /// tagged `<repo>:v1` (repo from [`DockerFixture::name`]), labelled with
    /// the run id and `extra_labels`. Its command is `busybox sleep 600`.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Unsupported`] without a busybox, else
    /// [`FixtureError::Failed`].
    pub async fn import_image(
        &mut self,
        base: &str,
        extra_labels: &[(&str, &str)],
    ) -> Result<Id, FixtureError> {
        let busybox = self.busybox_bytes()?;
        let marker = format!("{} {base}\n", self.run).into_bytes();
        let tar = tarball(&[("bin/busybox", &busybox, 0o755), ("marker", &marker, 0o644)])?;
        let repo = self.name(base);
        let mut changes = vec![
            format!("LABEL {TEST_LABEL}={}", self.run),
            r#"CMD ["/bin/busybox","sleep","600"]"#.to_owned(),
        ];
        for (k, v) in extra_labels {
            changes.push(format!("LABEL {k}={v}"));
        }
        let mut query = format!("fromSrc=-&repo={}&tag=v1", encode(&repo));
        for c in &changes {
            query.push_str("&changes=");
            query.push_str(&encode(c));
        }
        let body = self
            .call(
                Method::POST,
                &format!("/images/create?{query}"),
                Some("application/x-tar"),
                Bytes::from(tar),
            )
            .await?;
        if let Some(error) = stream_error(&body) {
            return Err(FixtureError::Failed(format!("import {repo}: {error}")));
        }
        let id = self
            .docker
            .resolve_image(&format!("{repo}:v1"))
            .await
            .map_err(|e| FixtureError::Failed(e.to_string()))?
            .ok_or_else(|| FixtureError::Failed(format!("imported {repo}:v1 is not listed")))?;
        self.images.push(id.clone());
        Ok(id)
    }

    /// Adds the tag `repo:tag` to image `id`.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`].
    pub async fn tag(&self, id: &Id, repo: &str, tag: &str) -> Result<(), FixtureError> {
        self.call(
            Method::POST,
            &format!("/images/{id}/tag?repo={}&tag={}", encode(repo), encode(tag)),
            None,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Creates a labelled container `name` (made unique) from `image`, left
    /// in `status`.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`].
    pub async fn container(
        &mut self,
        base: &str,
        image: &Id,
        status: ContainerStatus,
    ) -> Result<Id, FixtureError> {
        let name = self.name(base);
        let cmd = match status {
            ContainerStatus::Running => json!(["/bin/busybox", "sleep", "600"]),
            _ => json!(["/bin/busybox", "true"]),
        };
        let body = json!({
            "Image": image.as_str(),
            "Cmd": cmd,
            "Labels": { TEST_LABEL: self.run },
            "HostConfig": { "NetworkMode": "none" },
        });
        let created = self
            .call(
                Method::POST,
                &format!("/containers/create?name={}", encode(&name)),
                Some("application/json"),
                Bytes::from(body.to_string()),
            )
            .await?;
        let id: serde_json::Value = serde_json::from_slice(&created)
            .map_err(|e| FixtureError::Failed(format!("create {name}: {e}")))?;
        let id = Id::from(
            id["Id"]
                .as_str()
                .ok_or_else(|| FixtureError::Failed(format!("create {name}: no Id")))?,
        );
        self.containers.push(id.clone());
        if status != ContainerStatus::Created {
            self.call(
                Method::POST,
                &format!("/containers/{id}/start"),
                None,
                Bytes::new(),
            )
            .await?;
        }
        if status == ContainerStatus::Exited {
            self.call(
                Method::POST,
                &format!("/containers/{id}/wait"),
                None,
                Bytes::new(),
            )
            .await?;
        }
        Ok(id)
    }

    /// Builds `dockerfile` with `files` as the context (BuildKit, no
    /// session), tagged `tag` if given, labelled with the run id; returns
    /// the image and the cache records that appeared. Records and image are
    /// cleaned up with the fixture.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`] if the build fails.
    pub async fn build(
        &mut self,
        dockerfile: &str,
        files: &[(&str, Vec<u8>)],
        tag: Option<&str>,
    ) -> Result<Build, FixtureError> {
        let mut entries: Vec<(&str, &[u8], u32)> =
            vec![("Dockerfile", dockerfile.as_bytes(), 0o644)];
        for (name, bytes) in files {
            entries.push((name, bytes, 0o755));
        }
        let tar = tarball(&entries)?;
        let labels = json!({ TEST_LABEL: self.run }).to_string();
        let mut query = format!("version=2&rm=1&forcerm=1&labels={}", encode(&labels));
        if let Some(t) = tag {
            query.push_str("&t=");
            query.push_str(&encode(t));
        }
        let _guard = BUILD_LOCK.lock().await;
        let before: std::collections::HashSet<Id> = self
            .docker
            .cache_records()
            .await
            .map_err(|e| FixtureError::Failed(e.to_string()))?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let body = self
            .call(
                Method::POST,
                &format!("/build?{query}"),
                Some("application/x-tar"),
                Bytes::from(tar),
            )
            .await?;
        if let Some(error) = stream_error(&body) {
            return Err(FixtureError::Failed(format!("build: {error}")));
        }
        let image = built_image(&body);
        if let Some(id) = &image {
            self.images.push(id.clone());
        }
        // The context record of a build can be committed a moment after
        // the build returns: list until two listings agree.
        let mut after = self
            .docker
            .cache_records()
            .await
            .map_err(|e| FixtureError::Failed(e.to_string()))?;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let again = self
                .docker
                .cache_records()
                .await
                .map_err(|e| FixtureError::Failed(e.to_string()))?;
            let same =
                again.len() == after.len() && again.iter().zip(&after).all(|(a, b)| a.id == b.id);
            after = again;
            if same {
                break;
            }
        }
        let new_records: Vec<CacheRecord> = after
            .into_iter()
            .filter(|r| !before.contains(&r.id))
            .collect();
        self.records
            .extend(new_records.iter().map(|r| r.id.clone()));
        Ok(Build { image, new_records })
    }

    /// Builds `dockerfile` (no context files) with the classic builder
    /// (`version=1`), which records the parent image, so that the parent
    /// cannot be deleted while this child exists. Returns the image id.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`] if the build fails.
    pub async fn classic_build(&mut self, dockerfile: &str) -> Result<Id, FixtureError> {
        let tar = tarball(&[("Dockerfile", dockerfile.as_bytes(), 0o644)])?;
        let labels = json!({ TEST_LABEL: self.run }).to_string();
        let query = format!("version=1&rm=1&forcerm=1&labels={}", encode(&labels));
        let body = self
            .call(
                Method::POST,
                &format!("/build?{query}"),
                Some("application/x-tar"),
                Bytes::from(tar),
            )
            .await?;
        if let Some(error) = stream_error(&body) {
            return Err(FixtureError::Failed(format!("classic build: {error}")));
        }
        let id = serde_json::Deserializer::from_slice(&body)
            .into_iter::<serde_json::Value>()
            .filter_map(Result::ok)
            .find_map(|v| v["aux"]["ID"].as_str().map(Id::from))
            .ok_or_else(|| FixtureError::Failed("classic build: no image id".into()))?;
        self.images.push(id.clone());
        Ok(id)
    }

    /// Pauses a running container.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`].
    pub async fn pause(&self, id: &Id) -> Result<(), FixtureError> {
        self.call(
            Method::POST,
            &format!("/containers/{id}/pause"),
            None,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Unpauses a paused container.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`].
    pub async fn unpause(&self, id: &Id) -> Result<(), FixtureError> {
        self.call(
            Method::POST,
            &format!("/containers/{id}/unpause"),
            None,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Removes an image this fixture made, forcing (test cleanup only).
    ///
    /// # Errors
    ///
    /// [`FixtureError::Failed`].
    pub async fn remove_image_forced(&mut self, id: &Id) -> Result<(), FixtureError> {
        self.call(
            Method::DELETE,
            &format!("/images/{id}?force=1"),
            None,
            Bytes::new(),
        )
        .await?;
        self.images.retain(|i| i != id);
        Ok(())
    }

    /// Content of `size` bytes unique to this fixture and `seed`.
    pub fn unique_bytes(&self, seed: &str, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.run.bytes().chain(seed.bytes()) {
            x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        while out.len() < size {
            // xorshift64*.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(size);
        out
    }

    /// Removes everything this fixture created: containers (forced, they
    /// are the test's own), images, then build-cache records (children
    /// first, by pruning their ids). Errors are printed, not returned.
    pub async fn cleanup(&mut self) {
        let api = self.docker.api_version();
        let transport = self.docker.transport().clone();
        let call = |method: Method, path: String| {
            let transport = transport.clone();
            async move {
                let r = transport
                    .request(method, &format!("/v{api}{path}"), None, Bytes::new())
                    .await;
                match r {
                    Ok((s, body)) if !s.is_success() && s.as_u16() != 404 => {
                        eprintln!("cleanup {path}: {s}: {}", String::from_utf8_lossy(&body));
                    }
                    Err(e) => eprintln!("cleanup {path}: {}", e.message),
                    _ => {}
                }
            }
        };
        // Containers and images found by label, in case a test lost track.
        let filter =
            encode(&json!({ "label": [format!("{TEST_LABEL}={}", self.run)] }).to_string());
        let mut containers = std::mem::take(&mut self.containers);
        let mut images = std::mem::take(&mut self.images);
        if let Ok((s, body)) = transport
            .request(
                Method::GET,
                &format!("/v{api}/containers/json?all=1&filters={filter}"),
                None,
                Bytes::new(),
            )
            .await
            && s.is_success()
            && let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
        {
            containers.extend(list.iter().filter_map(|c| c["Id"].as_str()).map(Id::from));
        }
        containers.sort();
        containers.dedup();
        for c in containers {
            call(Method::DELETE, format!("/containers/{c}?force=1&v=1")).await;
        }
        if let Ok((s, body)) = transport
            .request(
                Method::GET,
                &format!("/v{api}/images/json?filters={filter}"),
                None,
                Bytes::new(),
            )
            .await
            && s.is_success()
            && let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
        {
            images.extend(list.iter().filter_map(|i| i["Id"].as_str()).map(Id::from));
        }
        images.sort();
        images.dedup();
        // A parent image goes only after its children: a few passes.
        for _ in 0..4 {
            let mut left = Vec::new();
            for i in images {
                let path = format!("/v{api}/images/{i}?force=1");
                match transport
                    .request(Method::DELETE, &path, None, Bytes::new())
                    .await
                {
                    Ok((s, _)) if s.as_u16() == 409 => left.push(i),
                    Ok((s, body)) if !s.is_success() && s.as_u16() != 404 => {
                        eprintln!("cleanup {path}: {s}: {}", String::from_utf8_lossy(&body));
                    }
                    Err(e) => eprintln!("cleanup {path}: {}", e.message),
                    _ => {}
                }
            }
            images = left;
            if images.is_empty() {
                break;
            }
        }
        if !images.is_empty() {
            eprintln!("cleanup: images left behind: {images:?}");
        }
        // Records: prune their ids (children go before parents within one
        // prune); retry what a concurrent build still held.
        let mut records = std::mem::take(&mut self.records);
        for attempt in 0..3 {
            for chunk in records.chunks(40) {
                let ids: Vec<&str> = chunk.iter().map(Id::as_str).collect();
                let filters = json!({ "id": [format!("^({})$", ids.join("|"))] }).to_string();
                call(
                    Method::POST,
                    format!("/build/prune?all=1&filters={}", encode(&filters)),
                )
                .await;
            }
            let Ok(listed) = self.docker.cache_records().await else {
                break;
            };
            records.retain(|id| listed.iter().any(|r| &r.id == id));
            if records.is_empty() {
                break;
            }
            if attempt == 2 {
                eprintln!("cleanup: build cache records left behind: {records:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Adopts records created outside [`DockerFixture::build`] for cleanup.
    pub fn adopt_records(&mut self, ids: impl IntoIterator<Item = Id>) {
        self.records.extend(ids);
    }
}

impl Drop for DockerFixture {
    fn drop(&mut self) {
        if self.images.is_empty() && self.containers.is_empty() && self.records.is_empty() {
            return;
        }
        let mut owned = DockerFixture {
            docker: self.docker.clone(),
            clock: self.clock,
            run: self.run.clone(),
            busybox: None,
            images: std::mem::take(&mut self.images),
            containers: std::mem::take(&mut self.containers),
            records: std::mem::take(&mut self.records),
            contexts: BTreeMap::new(),
        };
        // Drop may run inside a runtime (or while unwinding): clean up on
        // a thread with its own runtime.
        let handle = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(owned.cleanup());
        });
        let _ = handle.join();
    }
}

impl Fixture for DockerFixture {
    type Runtime = DockerRuntime;
    type Clock = SystemClock;

    fn runtime(&self) -> &DockerRuntime {
        &self.docker
    }

    fn clock(&self) -> &SystemClock {
        &self.clock
    }

    fn selector(&self) -> Option<LabelSelector> {
        Some(self.label_selector())
    }

    async fn create_image(&mut self, spec: ImageSpec) -> Result<Id, FixtureError> {
        let pin = self.run.clone();
        let labels: Vec<(&str, &str)> = if spec.pinned {
            vec![(PIN_LABEL, pin.as_str())]
        } else {
            Vec::new()
        };
        self.import_image(&spec.name, &labels).await
    }

    async fn create_container(&mut self, spec: ContainerSpec) -> Result<Id, FixtureError> {
        let status = if spec.running {
            ContainerStatus::Running
        } else {
            ContainerStatus::Exited
        };
        self.container(&spec.name, &spec.image, status).await
    }

    async fn create_cache_record(&mut self, spec: CacheSpec) -> Result<Id, FixtureError> {
        let size = usize::try_from(spec.size).unwrap_or(4096).max(1);
        let content = self.unique_bytes(&spec.name, size);
        let dockerfile = "FROM scratch\nCOPY f /f\n".to_owned();
        let build = self
            .build(&dockerfile, &[("f", content.clone())], None)
            .await?;
        // The image shares the COPY record; without it the record is an
        // ordinary unused one.
        if let Some(image) = &build.image {
            self.remove_image_forced(image).await?;
        }
        let record = build
            .new_records
            .iter()
            .find(|r| r.size == spec.size && r.description == "fileop target")
            .ok_or_else(|| {
                FixtureError::Failed(format!(
                    "no new {}-byte COPY record among {:?}",
                    spec.size,
                    build
                        .new_records
                        .iter()
                        .map(|r| (&r.id, r.size))
                        .collect::<Vec<_>>()
                ))
            })?;
        let id = record.id.clone();
        self.contexts.insert(
            id.clone(),
            Context {
                dockerfile,
                files: vec![("f".into(), content)],
            },
        );
        Ok(id)
    }

    async fn hold_cache_record(&mut self, id: &Id) -> Result<(), FixtureError> {
        // A child record holds its parent: build one more step on top.
        let context = self.contexts.get(id).cloned().ok_or_else(|| {
            FixtureError::Failed(format!("record {id} was not made by this fixture"))
        })?;
        let mut files: Vec<(&str, Vec<u8>)> = context
            .files
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        let extra = self.unique_bytes(&format!("{id}-child"), 64);
        files.push(("g", extra));
        let dockerfile = format!("{}COPY g /g\n", context.dockerfile);
        let build = self.build(&dockerfile, &files, None).await?;
        if let Some(image) = &build.image {
            self.remove_image_forced(image).await?;
        }
        if !build.new_records.iter().any(|r| r.parents.contains(id)) {
            return Err(FixtureError::Failed(format!(
                "the child build did not reuse record {id}"
            )));
        }
        Ok(())
    }
}

/// A tar archive of `entries` (path, bytes, mode) with fixed metadata, so
/// that the same content always gives the same cache key.
fn tarball(entries: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, FixtureError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *bytes)
            .map_err(|e| FixtureError::Failed(format!("tar {path}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| FixtureError::Failed(format!("tar: {e}")))
}

/// The first error of a JSON-lines progress stream (`{"error": ...}` or
/// `{"errorDetail": ...}`).
fn stream_error(body: &[u8]) -> Option<String> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find_map(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .or_else(|| {
                    v.get("errorDetail")
                        .and_then(|d| d.get("message"))
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
        })
}

/// The image id a BuildKit build reports (`moby.image.id`).
fn built_image(body: &[u8]) -> Option<Id> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find_map(|v| {
            (v.get("id").and_then(|i| i.as_str()) == Some("moby.image.id"))
                .then(|| v["aux"]["ID"].as_str().map(Id::from))
                .flatten()
        })
}

/// Where a [`Proxy`] listens.
#[derive(Clone, Debug)]
pub enum ProxyAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address on the loopback interface.
    Tcp(std::net::SocketAddr),
}

/// A byte-level proxy in front of the daemon's unix socket, to test other
/// transports (TCP, TLS) and a daemon that goes away: [`Proxy::kill`] makes
/// it drop every connection (as a daemon that died mid-request), and
/// [`Proxy::die_after_deletes`] does so by itself once a number of
/// `DELETE` requests went through. [`Proxy::restore`] brings it back.
#[derive(Debug)]
pub struct Proxy {
    addr: ProxyAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deletes_left: std::sync::Arc<std::sync::atomic::AtomicI64>,
    requests: std::sync::Arc<AtomicU64>,
    deletes: std::sync::Arc<AtomicU64>,
    delete_delay_ms: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<PathBuf>,
}

impl Proxy {
    /// A proxy on a fresh unix socket in `dir`, forwarding to `target`.
    ///
    /// # Errors
    ///
    /// If the socket cannot be bound.
    pub async fn unix(dir: &std::path::Path, target: PathBuf) -> std::io::Result<Self> {
        let path = dir.join(format!("proxy-{}.sock", unique_run_id()));
        let listener = tokio::net::UnixListener::bind(&path)?;
        let state = ProxyState::new();
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(s.clone().serve(conn, target.clone(), None));
            }
        });
        Ok(state.into_proxy(ProxyAddr::Unix(path.clone()), task, Some(path)))
    }

    /// A proxy on a loopback TCP port, forwarding to the unix socket
    /// `target`, terminating TLS with `tls` if given.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn tcp(
        target: PathBuf,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = ProxyState::new();
        let s = state.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(s.clone().serve(conn, target.clone(), acceptor.clone()));
            }
        });
        Ok(state.into_proxy(ProxyAddr::Tcp(addr), task, None))
    }

    /// The address, as `DOCKER_HOST` writes it.
    pub fn docker_host(&self) -> String {
        match &self.addr {
            ProxyAddr::Unix(p) => format!("unix://{}", p.display()),
            ProxyAddr::Tcp(a) => format!("tcp://{a}"),
        }
    }

    /// The address.
    pub fn addr(&self) -> &ProxyAddr {
        &self.addr
    }

    /// Drops every connection from now on, as a dead daemon.
    pub fn kill(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.deletes_left.store(i64::MAX, Ordering::SeqCst);
        self.down.store(false, Ordering::SeqCst);
    }

    /// Lets `n` more `DELETE` requests through, then goes down as
    /// [`Proxy::kill`] does (the `n + 1`-th is dropped unanswered).
    pub fn die_after_deletes(&self, n: i64) {
        self.deletes_left.store(n, Ordering::SeqCst);
    }

    /// Holds every `DELETE` request this long before forwarding it (a slow
    /// daemon), so that a test can act in the middle of a run.
    pub fn delay_deletes(&self, delay: Duration) {
        self.delete_delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Whether the proxy is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// `DELETE` requests received so far (forwarded or not).
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        if let ProxyAddr::Unix(p) = &self.addr {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Clone)]
struct ProxyState {
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deletes_left: std::sync::Arc<std::sync::atomic::AtomicI64>,
    requests: std::sync::Arc<AtomicU64>,
    deletes: std::sync::Arc<AtomicU64>,
    delete_delay_ms: std::sync::Arc<AtomicU64>,
}

impl ProxyState {
    fn new() -> Self {
        Self {
            down: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            deletes_left: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX)),
            requests: std::sync::Arc::new(AtomicU64::new(0)),
            deletes: std::sync::Arc::new(AtomicU64::new(0)),
            delete_delay_ms: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    fn into_proxy(
        self,
        addr: ProxyAddr,
        task: tokio::task::JoinHandle<()>,
        dir: Option<PathBuf>,
    ) -> Proxy {
        Proxy {
            addr,
            down: self.down,
            deletes_left: self.deletes_left,
            requests: self.requests,
            deletes: self.deletes,
            delete_delay_ms: self.delete_delay_ms,
            task,
            _dir: dir,
        }
    }

    async fn serve<S>(self, conn: S, target: PathBuf, tls: Option<tokio_rustls::TlsAcceptor>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match tls {
            Some(acceptor) => {
                if let Ok(stream) = acceptor.accept(conn).await {
                    self.forward(stream, target).await;
                }
            }
            None => self.forward(conn, target).await,
        }
    }

    async fn forward<S>(self, mut client: S, target: PathBuf)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        // The transport opens one connection per request, so the first
        // bytes are the request line.
        let mut first = vec![0u8; 16 * 1024];
        let n = match client.read(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        first.truncate(n);
        if first.starts_with(b"DELETE ") {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            if self.deletes_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
                self.down.store(true, Ordering::SeqCst);
            }
            let delay = self.delete_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut server) = tokio::net::UnixStream::connect(&target).await else {
            return;
        };
        self.requests.fetch_add(1, Ordering::SeqCst);
        if server.write_all(&first).await.is_err() {
            return;
        }
        let down = self.down.clone();
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        tokio::pin!(copy);
        loop {
            tokio::select! {
                _ = &mut copy => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if down.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
    }
}
