//! `reclaim record --docker`: a replayable trace (docs/trace-format.md)
//! from a live daemon.
//!
//! What the daemon tells, and how it becomes trace lines:
//!
//! - at the start, the state: every cache record (`record`, parents first),
//!   image (`pull` at t=0) and container (`container_start`, plus
//!   `container_exit` for stopped ones), and a `disk` sample;
//! - `/events`: a container started, exited, removed (`container_start`,
//!   `container_exit`, `container_remove`; its pod from the kubelet's
//!   `io.kubernetes.pod.uid` label), an image pulled, tagged, loaded or
//!   imported (`pull`), removed (`image_remove`);
//! - builds leave no events, so the cache is listed every poll interval:
//!   records that appeared are misses, records whose usage count grew are
//!   hits, and each poll that saw either becomes one build (`build_start`,
//!   its `step`s parents first, `build_end`). Rebuild costs are unknown to
//!   the daemon and recorded as 0; records deleted by the daemon's own GC
//!   simply stop appearing.
//! - a `disk` sample every poll.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use reclaim_docker::{DockerEvent, DockerOptions, DockerRuntime, Endpoint};
use reclaim_model::{Id, Timestamp};
use reclaim_policy::prune::CacheRecord;
use reclaim_runtime::{BuildCacheStore, Clock, ContainerStore, ImageInfo, ImageStore, SystemClock};
use reclaim_sim::trace::{
    BuildEndEvent, BuildStartEvent, ContainerExitEvent, ContainerRemoveEvent, ContainerStartEvent,
    DiskEvent, ImageRemoveEvent, Outcome, PullEvent, RecordEvent, StepEvent, Trace, TraceEvent,
    TraceHeader,
};
use tokio::signal::unix::{SignalKind, signal};

/// Arguments of `reclaim record`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record from the Docker daemon of `DOCKER_HOST` (the local socket by
    /// default). The only source so far; required.
    #[arg(long)]
    pub docker: bool,
    /// Where to write the trace (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Stop after this long (Go duration, `10m`); default: at SIGINT or
    /// SIGTERM.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// How often the build cache and the disk are read (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub poll_interval: String,
    /// The path of the daemon's data root on this machine, for disk
    /// statistics of a remote daemon.
    #[arg(long, value_name = "PATH")]
    pub disk_path: Option<PathBuf>,
}

/// Runs the command.
///
/// # Errors
///
/// Without `--docker`, with a bad duration, an unreachable daemon, or an
/// output file that cannot be written.
pub fn run(args: &Args) -> Result<ExitCode> {
    if !args.docker {
        bail!("reclaim record needs a source: --docker (the daemon of DOCKER_HOST)");
    }
    let duration = args
        .duration
        .as_deref()
        .map(|d| crate::util::parse_duration("--duration", d).map(|d| d.to_std()))
        .transpose()?;
    let poll = crate::util::parse_duration("--poll-interval", &args.poll_interval)?.to_std();
    if poll.is_zero() {
        bail!(
            "--poll-interval {:?}: must be more than zero",
            args.poll_interval
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(record(args, duration, poll))
}

async fn record(args: &Args, duration: Option<Duration>, poll: Duration) -> Result<ExitCode> {
    let endpoint = Endpoint::from_env().map_err(|e| anyhow!("{e}"))?;
    let mut options = DockerOptions::new();
    options.disk_path(args.disk_path.clone());
    let docker = DockerRuntime::connect(&endpoint, options)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let clock = SystemClock::new();
    let mut rec = Recorder::new(&docker, clock.now());
    rec.snapshot().await?;
    eprintln!(
        "recording from {} (Docker {}); {} records, {} images, {} containers at the start; stop with Ctrl-C",
        docker.endpoint(),
        docker.server_version(),
        rec.records.len(),
        rec.images.len(),
        rec.containers.len()
    );

    let mut events = Box::pin(docker.events(Some(rec.start)));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(poll);
    tick.tick().await;
    let until = duration.map(|d| tokio::time::Instant::now() + d);
    let stop = async {
        match until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => rec.poll(clock.now()).await?,
            item = events.next() => match item {
                Some(Ok(e)) => rec.event(&e, clock.now()).await,
                Some(Err(e)) => bail!("the Docker event stream broke: {e}"),
                None => bail!("the Docker daemon closed the event stream"),
            },
        }
    }
    // One last look at the cache, for builds since the last poll.
    rec.poll(clock.now()).await?;
    let end = rec.t(clock.now());
    let mut header = TraceHeader::new(rec.start, rec.disk_total);
    header.duration_ms = Some(end);
    header.source = format!(
        "reclaim record {} from Docker {} (API {}) at {}",
        env!("CARGO_PKG_VERSION"),
        docker.server_version(),
        docker.api_version(),
        docker.endpoint()
    );
    header.outcomes = Some("the live daemon's (builder.gc and any other collector)".into());
    let count = rec.events.len();
    // Validate, then write the lines as recorded: the compact form would
    // drop the recorded outcomes (hit, miss), which are worth keeping.
    Trace::from_events(header.clone(), rec.events.iter().cloned())
        .map_err(|e| anyhow!("the recorded trace does not validate: {e}"))?;
    let mut bytes = serde_json::to_vec(&header)?;
    bytes.push(b'\n');
    for event in &rec.events {
        serde_json::to_writer(&mut bytes, event)?;
        bytes.push(b'\n');
    }
    reclaim_docker::write_atomic(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} events over {:.1}s to {} ({} builds, {} steps)",
        count,
        end as f64 / 1000.0,
        args.out.display(),
        rec.builds,
        rec.steps
    );
    Ok(ExitCode::SUCCESS)
}

/// Turns what the daemon shows into trace events.
struct Recorder<'a> {
    docker: &'a DockerRuntime,
    start: Timestamp,
    last_t: u64,
    disk_total: u64,
    events: Vec<TraceEvent>,
    /// Known records: usage count last seen.
    records: HashMap<Id, u64>,
    images: HashSet<Id>,
    /// Containers started in the trace, and whether they are running.
    containers: HashMap<String, bool>,
    builds: u64,
    steps: u64,
}

impl<'a> Recorder<'a> {
    fn new(docker: &'a DockerRuntime, start: Timestamp) -> Self {
        Self {
            docker,
            start,
            last_t: 0,
            disk_total: 0,
            events: Vec::new(),
            records: HashMap::new(),
            images: HashSet::new(),
            containers: HashMap::new(),
            builds: 0,
            steps: 0,
        }
    }

    /// Milliseconds since the start, never decreasing.
    fn t(&mut self, at: Timestamp) -> u64 {
        let ms = u64::try_from((at.unix_nanos() - self.start.unix_nanos()).max(0) / 1_000_000)
            .unwrap_or(u64::MAX);
        self.last_t = self.last_t.max(ms);
        self.last_t
    }

    async fn snapshot(&mut self) -> Result<()> {
        if let Ok(d) = self.docker.disk_stats() {
            self.disk_total = d.total;
            self.events.push(TraceEvent::Disk(DiskEvent {
                t: 0,
                total: Some(d.total),
                used: Some(d.used()),
                other: None,
            }));
        }
        let records = self
            .docker
            .cache_records()
            .await
            .map_err(|e| anyhow!("listing the build cache: {e}"))?;
        for r in parents_first(&records) {
            let parents = self.known_parents(r);
            self.events.push(TraceEvent::Record(RecordEvent {
                t: 0,
                record: r.id.to_string(),
                size: r.size,
                cost: 0.0,
                record_type: Some(r.record_type.as_str().to_owned()),
                parents,
                mutable: None,
                description: non_empty(&r.description),
                created_at: Some(r.created_at),
                last_used_at: r.last_used_at,
                usage_count: r.usage_count,
            }));
            self.records.insert(r.id.clone(), r.usage_count);
        }
        let images = self
            .docker
            .images()
            .await
            .map_err(|e| anyhow!("listing images: {e}"))?;
        for i in &images {
            self.pull(0, i, Some(Outcome::Hit));
        }
        let containers = self
            .docker
            .containers()
            .await
            .map_err(|e| anyhow!("listing containers: {e}"))?;
        for c in containers {
            if !self.images.contains(&c.image_id) {
                // A container of an image that is gone: define the image.
                self.pull(0, &ImageInfo::new(c.image_id.clone(), 0, self.start), None);
            }
            let running = c.state == reclaim_kubelet::ContainerState::Running;
            self.start_container(0, c.id.as_str(), &c.image_id, &c.name, &c.pod_uid);
            if !running {
                self.events
                    .push(TraceEvent::ContainerExit(ContainerExitEvent {
                        t: 0,
                        container: c.id.to_string(),
                        size: None,
                    }));
                self.containers.insert(c.id.to_string(), false);
            }
        }
        Ok(())
    }

    fn known_parents(&self, r: &CacheRecord) -> Option<Vec<String>> {
        let parents: Vec<String> = r
            .parents
            .iter()
            .filter(|p| self.records.contains_key(*p))
            .map(|p| p.to_string())
            .collect();
        (!parents.is_empty()).then_some(parents)
    }

    fn pull(&mut self, t: u64, image: &ImageInfo, outcome: Option<Outcome>) {
        let first = self.images.insert(image.id.clone());
        self.events.push(TraceEvent::Pull(PullEvent {
            t,
            image: image.id.to_string(),
            size: image.size,
            cost: 0.0,
            tags: if first {
                image.repo_tags.clone()
            } else {
                Vec::new()
            },
            pinned: first && image.pinned,
            outcome,
        }));
    }

    fn start_container(&mut self, t: u64, id: &str, image: &Id, name: &Id, pod: &Id) {
        self.events
            .push(TraceEvent::ContainerStart(ContainerStartEvent {
                t,
                container: id.to_owned(),
                image: image.to_string(),
                pod: non_empty(pod.as_str()),
                name: non_empty(name.as_str()),
                size: 0,
            }));
        self.containers.insert(id.to_owned(), true);
    }

    /// One daemon event.
    async fn event(&mut self, e: &DockerEvent, now: Timestamp) {
        let t = self.t(now);
        match (e.kind.as_str(), e.action.as_str()) {
            ("container", "start") if !self.containers.contains_key(&e.actor) => {
                let Ok(Some(image)) = self.docker.container_image(&e.actor).await else {
                    return;
                };
                if !self.images.contains(&image) {
                    let info = self.image_info(&image).await;
                    self.pull(t, &info, Some(Outcome::Hit));
                }
                let name = Id::from(e.attributes.get("name").map_or("", String::as_str));
                let pod = Id::from(
                    e.attributes
                        .get(reclaim_docker::POD_UID_LABEL)
                        .map_or("", String::as_str),
                );
                self.start_container(t, &e.actor, &image, &name, &pod);
            }
            ("container", "die") if self.containers.get(&e.actor) == Some(&true) => {
                self.events
                    .push(TraceEvent::ContainerExit(ContainerExitEvent {
                        t,
                        container: e.actor.clone(),
                        size: None,
                    }));
                self.containers.insert(e.actor.clone(), false);
            }
            ("container", "destroy") if self.containers.contains_key(&e.actor) => {
                self.events
                    .push(TraceEvent::ContainerRemove(ContainerRemoveEvent {
                        t,
                        container: e.actor.clone(),
                    }));
            }
            ("image", "pull" | "tag" | "load" | "import" | "create") => {
                let Ok(Some(id)) = self.docker.resolve_image(&e.actor).await else {
                    return;
                };
                let info = self.image_info(&id).await;
                let outcome = if self.images.contains(&id) {
                    Outcome::Hit
                } else {
                    Outcome::Miss
                };
                self.pull(t, &info, Some(outcome));
            }
            ("image", "delete") => {
                let id = Id::from(e.actor.as_str());
                if self.images.remove(&id) {
                    self.events.push(TraceEvent::ImageRemove(ImageRemoveEvent {
                        t,
                        image: id.to_string(),
                    }));
                    // A later pull of the same id is a new first pull for
                    // this recorder, but the trace knows the image already.
                    self.images.insert(id);
                }
            }
            _ => {}
        }
    }

    async fn image_info(&self, id: &Id) -> ImageInfo {
        match self.docker.images().await {
            Ok(list) => list
                .into_iter()
                .find(|i| &i.id == id)
                .unwrap_or_else(|| ImageInfo::new(id.clone(), 0, self.start)),
            Err(_) => ImageInfo::new(id.clone(), 0, self.start),
        }
    }

    /// Reads the cache and the disk: new or more-used records become a
    /// build.
    async fn poll(&mut self, now: Timestamp) -> Result<()> {
        let t = self.t(now);
        if let Ok(d) = self.docker.disk_stats() {
            self.events.push(TraceEvent::Disk(DiskEvent {
                t,
                total: Some(d.total),
                used: Some(d.used()),
                other: None,
            }));
        }
        let records = match self.docker.cache_records().await {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                eprintln!("warning: listing the build cache: {e}");
                return Ok(());
            }
            Err(e) => return Err(anyhow!("listing the build cache: {e}")),
        };
        let changed: Vec<&CacheRecord> = parents_first(&records)
            .into_iter()
            .filter(|r| {
                self.records
                    .get(&r.id)
                    .is_none_or(|used| r.usage_count > *used)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.builds += 1;
        let build = format!("b{}", self.builds);
        self.events.push(TraceEvent::BuildStart(BuildStartEvent {
            t,
            build: build.clone(),
            project: None,
            branch: None,
        }));
        for r in changed {
            let first = !self.records.contains_key(&r.id);
            let parents = if first { self.known_parents(r) } else { None };
            self.events.push(TraceEvent::Step(StepEvent {
                t,
                build: build.clone(),
                record: r.id.to_string(),
                size: r.size,
                cost: 0.0,
                record_type: first.then(|| r.record_type.as_str().to_owned()),
                parents,
                mutable: None,
                description: if first {
                    non_empty(&r.description)
                } else {
                    None
                },
                used_by: None,
                outcome: Some(if first { Outcome::Miss } else { Outcome::Hit }),
            }));
            self.steps += 1;
            self.records.insert(r.id.clone(), r.usage_count);
        }
        self.events.push(TraceEvent::BuildEnd(BuildEndEvent {
            t,
            build,
            failed: None,
        }));
        Ok(())
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The records, each after its parents (parents not listed are ignored);
/// ties in id order, so the output is deterministic.
fn parents_first(records: &[CacheRecord]) -> Vec<&CacheRecord> {
    let by_id: HashMap<&Id, &CacheRecord> = records.iter().map(|r| (&r.id, r)).collect();
    let mut sorted: Vec<&CacheRecord> = records.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut done: HashSet<&Id> = HashSet::new();
    let mut out = Vec::with_capacity(records.len());
    fn visit<'r>(
        r: &'r CacheRecord,
        by_id: &HashMap<&Id, &'r CacheRecord>,
        done: &mut HashSet<&'r Id>,
        out: &mut Vec<&'r CacheRecord>,
        depth: usize,
    ) {
        if done.contains(&r.id) || depth > 10_000 {
            return;
        }
        done.insert(&r.id);
        for p in &r.parents {
            if let Some(parent) = by_id.get(p) {
                visit(parent, by_id, done, out, depth + 1);
            }
        }
        out.push(r);
    }
    for r in sorted {
        visit(r, &by_id, &mut done, &mut out, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first() {
        let mut a = CacheRecord::new("a", 1);
        a.parents = vec![Id::from("c")];
        let b = CacheRecord::new("b", 1);
        let mut c = CacheRecord::new("c", 1);
        c.parents = vec![Id::from("b"), Id::from("missing")];
        let records = vec![a, b, c];
        let order: Vec<&str> = parents_first(&records)
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }
}
