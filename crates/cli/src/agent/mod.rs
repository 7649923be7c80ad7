//! `reclaim agent`: the collectors against a live Docker daemon, driven by
//! BuildKit's trigger, the kubelet's periods and free-space watermarks,
//! with last-use tracking from events, a state file, metrics, and reloads
//! without a restart. docs/agent.md describes every key and behaviour.

pub mod config;
pub(crate) mod metrics;
mod server;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use reclaim_docker::{
    DockerEvent, DockerOptions, DockerRuntime, DockerState, Endpoint, ImageUsage, TlsOptions,
    UseOf, use_of,
};
use reclaim_model::{Id, Timestamp};
use reclaim_policy::config::effective_rules;
use reclaim_runtime::{
    BuildCacheCollector, BuildCacheStore, BuildKitTrigger, Clock, ContainerGcCollector,
    ImageGcCollector, ImageStore, Instant, PeriodicTrigger, Report, RunStatus, SystemClock,
    Trigger, WatermarkTrigger,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use self::config::{AgentConfig, LogFormat};
use self::metrics::{AgentObserver, KindLabels, Metrics, ResultLabels};

/// Arguments of `reclaim agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML, see docs/agent.md).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Plan and report, delete nothing (as `agent.dry_run = true`).
    #[arg(long)]
    pub dry_run: bool,
    /// Check the configuration, print the effective settings, and exit.
    #[arg(long)]
    pub check: bool,
    /// Run every enabled collector once, save the state, and exit (exit
    /// code 1 if a run failed).
    #[arg(long)]
    pub once: bool,
}

/// Runs the agent until SIGTERM or SIGINT (or once, with `--once`).
///
/// # Errors
///
/// A configuration that does not load (nothing is deleted then), a state
/// file that cannot be read, or a daemon that refuses the agent for good
/// (not one that is merely down: that is retried).
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = config::load(&args.config)?;
    if args.check {
        print_check(&config);
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let agent = match Agent::start(config, args, &mut signals).await? {
            Some(agent) => agent,
            None => return Ok(ExitCode::SUCCESS),
        };
        agent.run(&mut signals, args.once).await
    })
}

fn print_check(config: &AgentConfig) {
    let d = |d: Duration| reclaim_model::Duration::from_std(d).to_string();
    let on = |b: bool| if b { "on" } else { "off" };
    let label = |l: &Option<reclaim_runtime::LabelSelector>| {
        l.as_ref()
            .map_or_else(|| "all".to_owned(), |s| format!("labelled {s}"))
    };
    println!("configuration {} is valid", config.path.display());
    let bc = &config.build_cache;
    println!(
        "build cache: {}; policy from {}; ordering {:?}; after builds {} (cooldown {}, delay {}, cache listed every {}); period {}",
        on(bc.enabled),
        bc.gc_source,
        bc.ordering,
        on(bc.after_builds),
        d(bc.cooldown),
        d(bc.delay),
        d(bc.build_poll_interval),
        d(bc.period)
    );
    if bc.enabled {
        // The disk size matters only for dockerd's default policy.
        match effective_rules(&bc.gc, None, SystemClock::new().now()) {
            Ok(e) if !e.enabled => println!("  builder.gc disabled: no build-cache GC"),
            Ok(e) => {
                if bc.gc.policy.is_none() {
                    println!("  (default policy: its sizes follow the disk, read at start)");
                }
                for (i, rule) in e.rules.iter().enumerate() {
                    println!("  rule {i}: {rule}");
                }
            }
            Err(e) => println!("  {e}"),
        }
    }
    let im = &config.images;
    println!(
        "images: {}; {:?}; high {}%, low {}%, min age {}, max age {}; every {}; {}; keep tags {:?}, keep labels {:?}",
        on(im.enabled),
        im.mode,
        im.policy.high_threshold_percent(),
        im.policy.low_threshold_percent(),
        im.policy.min_age(),
        im.policy.max_age(),
        d(im.period),
        label(&im.only_label),
        im.keep_tags,
        im.keep_labels
    );
    let ct = &config.containers;
    println!(
        "containers: {}; min age {}, max per name {}, max total {}; grouped by {:?}; every {}; {}",
        on(ct.enabled),
        ct.policy.min_age(),
        ct.policy.max_per_pod_container(),
        ct.policy.max_containers(),
        ct.group_by,
        d(ct.period),
        label(&ct.only_label)
    );
    let wm = &config.watermarks;
    println!(
        "watermarks: {}; low {:?}, high {:?}, at least {} apart, disk read every {}",
        on(wm.enabled),
        wm.low,
        wm.high,
        d(wm.min_interval),
        d(wm.poll_interval)
    );
    println!(
        "agent: dry run {}; state {}; metrics {}",
        on(config.agent.dry_run),
        config.agent.state_file.display(),
        config.agent.metrics_address.as_deref().unwrap_or("off")
    );
}

fn init_logging(config: &AgentConfig) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.agent.log_level))
        .map_err(|e| anyhow!("agent.log_level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match config.agent.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow!("cannot set up logging: {e}"))
}

/// The endpoint of the `[docker]` section, on top of the environment.
pub fn endpoint(config: &AgentConfig) -> Result<Endpoint> {
    let d = &config.docker;
    let env = |name: &str| std::env::var(name).ok();
    let host = d.host.clone().or_else(|| env("DOCKER_HOST"));
    let verify = d
        .tls_verify
        .unwrap_or_else(|| env("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()));
    let tls = verify
        || d.tls
            .unwrap_or_else(|| env("DOCKER_TLS").is_some_and(|v| !v.is_empty()));
    let cert_path = d
        .cert_path
        .clone()
        .map(|p| p.to_string_lossy().into_owned());
    Endpoint::from_vars(|name| match name {
        "DOCKER_HOST" => host.clone(),
        "DOCKER_TLS_VERIFY" => verify.then(|| "1".to_owned()),
        "DOCKER_TLS" => tls.then(|| "1".to_owned()),
        "DOCKER_CERT_PATH" => cert_path.clone().or_else(|| env("DOCKER_CERT_PATH")),
        other => env(other),
    })
    .map_err(|e| anyhow!("{e}"))
    .map(|e| match (e, d.tls_verify) {
        // An explicit tls_verify = false keeps TLS but skips verification.
        (
            Endpoint::Tcp {
                host,
                port,
                tls: Some(t),
            },
            Some(false),
        ) => Endpoint::Tcp {
            host,
            port,
            tls: Some(TlsOptions { verify: false, ..t }),
        },
        (e, _) => e,
    })
}

/// The adapter options of a configuration.
pub fn docker_options(config: &AgentConfig) -> DockerOptions {
    let mut options = DockerOptions::new();
    options
        .timeout(config.docker.timeout)
        .disk_path(config.docker.disk_path.clone())
        .pins(config.pins())
        .grouping(config.containers.group_by.clone())
        .remove_volumes(config.containers.remove_volumes);
    options
}

/// SIGTERM, SIGINT and SIGHUP.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM received: shutting down"),
            _ = self.int.recv() => info!("SIGINT received: shutting down"),
        }
    }
}

/// What the event task sends.
enum EventMsg {
    Event(DockerEvent),
    Lost(String),
}

struct Triggers {
    build: BuildKitTrigger,
    build_period: Option<PeriodicTrigger>,
    images: PeriodicTrigger,
    containers: PeriodicTrigger,
    watermark: Option<WatermarkTrigger>,
}

struct Agent {
    config: AgentConfig,
    dry_run_flag: bool,
    clock: SystemClock,
    metrics: Metrics,
    docker: DockerRuntime,
    tracker: Tracker,
    events: mpsc::UnboundedReceiver<EventMsg>,
    cold_start: bool,
    build_gc: Option<BuildCacheCollector>,
    image_gc: ImageGcCollector,
    container_gc: ContainerGcCollector,
    triggers: Triggers,
    next_reload_check: Instant,
    next_disk_poll: Instant,
    next_build_poll: Instant,
    cache_signature: Option<(usize, u64, i128)>,
    disk_total: Option<u64>,
    failed_runs: u32,
}

impl Agent {
    /// Loads the state, connects (retrying while the daemon is down) and
    /// sets everything up. `None` if a stop signal came first.
    async fn start(
        config: AgentConfig,
        args: &Args,
        signals: &mut Signals,
    ) -> Result<Option<Self>> {
        let clock = SystemClock::new();
        let state = DockerState::load(&config.agent.state_file)
            .map_err(|e| anyhow!("{e} (move it away to start without saved state)"))?;
        let cold_start = state.is_none();
        let state = state.unwrap_or_default();
        info!(
            state_file = %config.agent.state_file.display(),
            images = state.usage.len(),
            records = state.image_gc.records.len(),
            "{}",
            if cold_start {
                "no saved state: starting fresh".to_owned()
            } else {
                format!(
                    "restored state: last use of {} images, {} image records",
                    state.usage.len(),
                    state.image_gc.records.len()
                )
            }
        );
        let metrics = Metrics::new();
        if let Some(addr) = &config.agent.metrics_address {
            let addr: std::net::SocketAddr = addr.parse().expect("checked at load");
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("agent.metrics_address = {addr:?}: cannot listen"))?;
            info!(address = %listener.local_addr()?, "serving metrics on /metrics");
            tokio::spawn(server::serve(listener, metrics.clone()));
        }

        let endpoint = endpoint(&config)?;
        let docker = loop {
            let attempt = DockerRuntime::connect(&endpoint, docker_options(&config));
            let result = tokio::select! {
                r = attempt => r,
                () = signals.stop() => return Ok(None),
            };
            match result {
                Ok(d) => break d,
                Err(e) if e.is_transient() => {
                    metrics.daemon_up.set(0);
                    warn!(
                        error = %e,
                        "cannot reach the Docker daemon; retrying in {:?}",
                        config.agent.retry_interval
                    );
                    tokio::select! {
                        () = tokio::time::sleep(config.agent.retry_interval) => {}
                        () = signals.stop() => return Ok(None),
                    }
                }
                Err(e) => return Err(anyhow!("{e}")),
            }
        };
        metrics.daemon_up.set(1);
        info!(
            endpoint = %docker.endpoint(),
            version = docker.server_version(),
            api = %docker.api_version(),
            data_root = ?docker.data_root(),
            "connected to the Docker daemon"
        );

        let disk_total = match docker.disk_stats() {
            Ok(d) => {
                metrics.observe_disk(d);
                Some(d.total)
            }
            Err(e) => {
                warn!(error = %e, "no disk statistics: percentages and watermarks cannot be used");
                None
            }
        };
        let now = clock.now();
        let build_gc = build_collector(&config, disk_total, now, args.dry_run)?;
        let mut image_gc = ImageGcCollector::new(config.images.policy);
        image_gc.restore(state.image_gc);
        let container_gc = ContainerGcCollector::new(config.containers.policy);
        let start = clock.instant();
        let triggers = triggers(&config, start, disk_total);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(watch_events(
            docker.clone(),
            state.events_since,
            tx,
            config.agent.retry_interval,
        ));
        let tracker = Tracker {
            usage: state.usage,
            events_since: state.events_since,
            image_gc: image_gc.state().clone(),
            state_file: config.agent.state_file.clone(),
            after_builds: config.build_cache.after_builds,
            build_requested: false,
            dirty: false,
            next_save: start,
        };
        let mut agent = Self {
            dry_run_flag: args.dry_run,
            clock,
            metrics,
            docker,
            tracker,
            events,
            cold_start,
            build_gc,
            image_gc,
            container_gc,
            triggers,
            next_reload_check: start + config.agent.reload_interval,
            next_disk_poll: start,
            next_build_poll: start + config.build_cache.build_poll_interval,
            cache_signature: None,
            disk_total,
            failed_runs: 0,
            config,
        };
        agent.configure_collectors();
        Ok(Some(agent))
    }

    fn dry_run(&self) -> bool {
        self.dry_run_flag || self.config.agent.dry_run
    }

    /// Applies the configuration's collector settings (at start and after
    /// a reload); the image records stay.
    fn configure_collectors(&mut self) {
        let dry = self.dry_run();
        if let Some(gc) = &mut self.build_gc {
            gc.dry_run(dry).ordering(self.config.build_cache.ordering);
        }
        self.image_gc
            .set_policy(self.config.images.policy)
            .mode(self.config.images.mode)
            .dry_run(dry)
            .select(self.config.images.only_label.clone());
        self.container_gc
            .set_policy(self.config.containers.policy)
            .dry_run(dry)
            .select(self.config.containers.only_label.clone());
        self.docker.set_pins(self.config.pins());
        self.docker
            .set_grouping(self.config.containers.group_by.clone());
        if dry {
            info!("dry run: collectors plan and report, nothing is deleted");
        }
    }

    async fn run(mut self, signals: &mut Signals, once: bool) -> Result<ExitCode> {
        if once {
            return self.run_once(signals).await;
        }
        loop {
            let stop = self.run_due(signals).await;
            if stop {
                break;
            }
            self.chores().await;
            let deadline = self.next_deadline();
            let wait = deadline.saturating_duration_since(self.clock.instant());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                Some(msg) = self.events.recv() => {
                    self.tracker.handle(msg, &self.docker, &self.metrics).await;
                    // Take whatever else is queued before planning again.
                    while let Ok(msg) = self.events.try_recv() {
                        self.tracker.handle(msg, &self.docker, &self.metrics).await;
                    }
                    self.take_build_request();
                }
                _ = signals.hup.recv() => {
                    info!("SIGHUP received: reloading the configuration");
                    self.reload(true);
                }
                _ = signals.term.recv() => {
                    info!("SIGTERM received: shutting down");
                    break;
                }
                _ = signals.int.recv() => {
                    info!("SIGINT received: shutting down");
                    break;
                }
            }
        }
        // Take the events already received, then save.
        while let Ok(msg) = self.events.try_recv() {
            self.tracker.handle(msg, &self.docker, &self.metrics).await;
        }
        self.save_state();
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    }

    /// A build seen in the events asks BuildKit's trigger for a run.
    fn take_build_request(&mut self) {
        if std::mem::take(&mut self.tracker.build_requested) {
            self.triggers.build.request(self.clock.instant());
        }
    }

    /// `--once`: each enabled collector once.
    async fn run_once(mut self, signals: &mut Signals) -> Result<ExitCode> {
        let mut stopped = false;
        if self.build_gc.is_some() && !stopped {
            stopped = self.run_build_cache("once", signals).await;
        }
        if self.config.containers.enabled && !stopped {
            stopped = self.run_containers("once", signals).await;
        }
        if self.config.images.enabled && !stopped {
            stopped = self.run_images("once", signals).await;
        }
        self.save_state();
        Ok(if self.failed_runs == 0 && !stopped {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    /// Runs every collector whose trigger is due; true if a stop signal
    /// came during a run.
    async fn run_due(&mut self, signals: &mut Signals) -> bool {
        let now = self.clock.instant();
        if let Some(fire) = self.triggers.build.poll(now) {
            let stop = self.run_build_cache("buildkit", signals).await;
            let _ = self.triggers.build.finish(fire, self.clock.instant());
            if stop {
                return true;
            }
        }
        if let Some(t) = &mut self.triggers.build_period
            && let Some(fire) = t.poll(self.clock.instant())
        {
            let stop = self.run_build_cache("period", signals).await;
            if let Some(t) = &mut self.triggers.build_period {
                let _ = t.finish(fire, self.clock.instant());
            }
            if stop {
                return true;
            }
        }
        if let Some(fire) = self.triggers.containers.poll(self.clock.instant()) {
            let stop =
                self.config.containers.enabled && self.run_containers("period", signals).await;
            let _ = self.triggers.containers.finish(fire, self.clock.instant());
            if stop {
                return true;
            }
        }
        if let Some(fire) = self.triggers.images.poll(self.clock.instant()) {
            let stop = self.config.images.enabled && self.run_images("period", signals).await;
            let _ = self.triggers.images.finish(fire, self.clock.instant());
            if stop {
                return true;
            }
        }
        if let Some(t) = &mut self.triggers.watermark
            && let Some(fire) = t.poll(self.clock.instant())
        {
            self.metrics
                .triggers
                .get_or_create(&KindLabels {
                    kind: "watermark".into(),
                })
                .inc();
            warn!("free space is below the low watermark: running every collector");
            let mut stop = false;
            if self.config.containers.enabled {
                stop = self.run_containers("watermark", signals).await;
            }
            if !stop && self.config.images.enabled {
                stop = self.run_images("watermark", signals).await;
            }
            if !stop && self.build_gc.is_some() {
                stop = self.run_build_cache("watermark", signals).await;
            }
            if let Some(t) = &mut self.triggers.watermark {
                let _ = t.finish(fire, self.clock.instant());
            }
            self.next_disk_poll = self.clock.instant();
            if stop {
                return true;
            }
        }
        false
    }

    async fn run_build_cache(&mut self, trigger: &str, signals: &mut Signals) -> bool {
        let Some(gc) = &self.build_gc else {
            return false;
        };
        let observer = self.observer(trigger);
        let docker = self.docker.clone();
        let (report, stop) = guarded(
            gc.run(&docker, &self.clock, &observer),
            signals,
            Background {
                docker: &docker,
                events: &mut self.events,
                tracker: &mut self.tracker,
                metrics: &self.metrics,
                clock: &self.clock,
            },
            self.config.agent.shutdown_timeout,
        )
        .await;
        self.after_run(report.as_ref());
        stop
    }

    async fn run_containers(&mut self, trigger: &str, signals: &mut Signals) -> bool {
        let observer = self.observer(trigger);
        let docker = self.docker.clone();
        let (report, stop) = guarded(
            self.container_gc.run(&docker, &self.clock, &observer),
            signals,
            Background {
                docker: &docker,
                events: &mut self.events,
                tracker: &mut self.tracker,
                metrics: &self.metrics,
                clock: &self.clock,
            },
            self.config.agent.shutdown_timeout,
        )
        .await;
        self.after_run(report.as_ref());
        stop
    }

    async fn run_images(&mut self, trigger: &str, signals: &mut Signals) -> bool {
        // Fold the last use seen in events into the collector's records.
        match self.docker.images().await {
            Ok(images) => {
                let listed: HashSet<Id> = images.iter().map(|i| i.id.clone()).collect();
                self.tracker.usage.retain_listed(&listed);
                if self.cold_start && self.config.images.seed_from_created {
                    let selected: Vec<_> = images
                        .iter()
                        .filter(|i| {
                            self.config
                                .images
                                .only_label
                                .as_ref()
                                .is_none_or(|s| s.matches(&i.labels))
                        })
                        .cloned()
                        .collect();
                    self.tracker.usage.seed(&selected, self.clock.now());
                }
                self.cold_start = false;
                let mut state = self.image_gc.take_state();
                self.tracker.usage.apply(&mut state);
                self.image_gc.restore(state);
                self.metrics
                    .images_tracked
                    .set(i64::try_from(self.tracker.usage.len()).unwrap_or(i64::MAX));
            }
            Err(e) => debug!(error = %e, "could not list images before the image GC"),
        }
        let observer = self.observer(trigger);
        let docker = self.docker.clone();
        let (report, stop) = guarded(
            self.image_gc.run(&docker, &self.clock, &observer),
            signals,
            Background {
                docker: &docker,
                events: &mut self.events,
                tracker: &mut self.tracker,
                metrics: &self.metrics,
                clock: &self.clock,
            },
            self.config.agent.shutdown_timeout,
        )
        .await;
        if let Some(r) = &report
            && !r.dry_run
        {
            let removed: HashSet<Id> = r.removed_ids().cloned().collect();
            if !removed.is_empty() {
                let still: HashSet<Id> = self
                    .tracker
                    .usage
                    .iter()
                    .map(|(id, _)| id.clone())
                    .filter(|id| !removed.contains(id))
                    .collect();
                self.tracker.usage.retain_listed(&still);
            }
        }
        self.after_run(report.as_ref());
        stop
    }

    fn observer(&self, trigger: &str) -> AgentObserver {
        self.metrics
            .triggers
            .get_or_create(&KindLabels {
                kind: trigger.to_owned(),
            })
            .inc();
        AgentObserver {
            metrics: self.metrics.clone(),
            trigger: trigger.to_owned(),
        }
    }

    fn after_run(&mut self, report: Option<&Report>) {
        match report {
            Some(r) => {
                if r.status != RunStatus::Succeeded {
                    self.failed_runs += 1;
                }
                let unreachable = r.errors.iter().any(|e| {
                    e.message.contains("cannot connect to the Docker daemon")
                        || e.message
                            .contains("the connection to the Docker daemon failed")
                });
                self.metrics.daemon_up.set(i64::from(!unreachable));
                if unreachable {
                    warn!(
                        "the Docker daemon went away during the run; the next run retries in {:?} at the latest",
                        self.config.agent.retry_interval
                    );
                    self.retry_soon();
                }
            }
            None => self.failed_runs += 1,
        }
        self.take_build_request();
        self.tracker.image_gc = self.image_gc.state().clone();
        self.tracker.dirty = true;
        self.tracker.next_save = self.clock.instant();
    }

    /// After a run the daemon failed, make sure the collectors try again
    /// within the retry interval (their own periods may be much longer).
    fn retry_soon(&mut self) {
        let at = self.clock.instant() + self.config.agent.retry_interval;
        let images = self.triggers.images.period();
        if images > self.config.agent.retry_interval {
            self.triggers.images = PeriodicTrigger::new(at, images);
        }
        let containers = self.triggers.containers.period();
        if containers > self.config.agent.retry_interval {
            self.triggers.containers = PeriodicTrigger::new(at, containers);
        }
        self.triggers.build.request(self.clock.instant());
    }

    /// Periodic work between runs: reload checks, disk and cache polls,
    /// saving the state.
    async fn chores(&mut self) {
        let now = self.clock.instant();
        if now >= self.next_reload_check {
            self.next_reload_check = now + self.config.agent.reload_interval;
            self.reload(false);
        }
        if now >= self.next_disk_poll {
            self.next_disk_poll = now + self.config.watermarks.poll_interval;
            match self.docker.disk_stats() {
                Ok(d) => {
                    self.metrics.observe_disk(d);
                    if let Some(w) = &mut self.triggers.watermark {
                        w.observe(d, now);
                    }
                }
                Err(e) => debug!(error = %e, "disk statistics"),
            }
        }
        if !self.config.build_cache.build_poll_interval.is_zero() && now >= self.next_build_poll {
            self.next_build_poll = now + self.config.build_cache.build_poll_interval;
            self.poll_build_cache().await;
        }
        if self.tracker.dirty && now >= self.tracker.next_save {
            self.save_state();
        }
    }

    /// Lists the cache; a change since the last listing means a build ran
    /// (BuildKit's own trigger fires after every build).
    async fn poll_build_cache(&mut self) {
        match self.docker.cache_records().await {
            Ok(records) => {
                self.metrics.daemon_up.set(1);
                let total: u64 = records.iter().map(|r| r.size).sum();
                self.metrics
                    .build_cache_bytes
                    .set(i64::try_from(total).unwrap_or(i64::MAX));
                let signature = (
                    records.len(),
                    records.iter().map(|r| r.usage_count).sum::<u64>(),
                    records
                        .iter()
                        .filter_map(|r| r.last_used_at)
                        .map(Timestamp::unix_nanos)
                        .max()
                        .unwrap_or(0),
                );
                let changed = self.cache_signature.is_some_and(|s| s != signature);
                self.cache_signature = Some(signature);
                if changed && self.config.build_cache.after_builds {
                    debug!("the build cache changed: a build ran");
                    self.triggers.build.request(self.clock.instant());
                }
            }
            Err(e) => {
                if e.is_transient() {
                    self.metrics.daemon_up.set(0);
                }
                debug!(error = %e, "listing the build cache");
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut next = self.next_reload_check.min(self.next_disk_poll);
        if !self.config.build_cache.build_poll_interval.is_zero() {
            next = next.min(self.next_build_poll);
        }
        if self.tracker.dirty {
            next = next.min(self.tracker.next_save);
        }
        let timeouts = [
            self.triggers.build.poll_timeout(),
            self.triggers
                .build_period
                .as_ref()
                .and_then(Trigger::poll_timeout),
            self.triggers.images.poll_timeout(),
            self.triggers.containers.poll_timeout(),
            self.triggers
                .watermark
                .as_ref()
                .and_then(Trigger::poll_timeout),
        ];
        for t in timeouts.into_iter().flatten() {
            next = next.min(t);
        }
        next
    }

    fn save_state(&mut self) {
        self.tracker.image_gc = self.image_gc.state().clone();
        self.tracker.save(&self.clock);
    }

    /// Reloads the file; with `force` even if unchanged. A bad file is
    /// reported and the running configuration stays.
    fn reload(&mut self, force: bool) {
        let path = self.config.path.clone();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                if force {
                    self.reload_failed(&anyhow!("cannot read {}: {e}", path.display()));
                }
                return;
            }
        };
        if !force && config::fingerprint(&bytes) == self.config.fingerprint {
            return;
        }
        if !force {
            info!(file = %path.display(), "the configuration file changed: reloading");
        }
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => return self.reload_failed(&e),
        };
        let build_gc =
            match build_collector(&new, self.disk_total, self.clock.now(), self.dry_run_flag) {
                Ok(gc) => gc,
                Err(e) => return self.reload_failed(&e),
            };
        for key in self.config.restart_keys(&new) {
            warn!(
                key,
                "this setting changes only at restart; the old value stays in force"
            );
        }
        let now = self.clock.instant();
        let old = std::mem::replace(&mut self.config, new);
        // Settings that need a restart keep their running values.
        self.config.docker = old.docker.clone();
        self.config.agent.state_file = old.agent.state_file.clone();
        self.config.agent.metrics_address = old.agent.metrics_address.clone();
        self.config.agent.log_format = old.agent.log_format;
        self.config.agent.log_level = old.agent.log_level.clone();
        self.build_gc = build_gc;
        self.tracker.after_builds = self.config.build_cache.after_builds;
        if self.config.images.period != old.images.period {
            self.triggers.images =
                PeriodicTrigger::new(now + self.config.images.period, self.config.images.period);
        }
        if self.config.containers.period != old.containers.period {
            self.triggers.containers = PeriodicTrigger::new(
                now + self.config.containers.period,
                self.config.containers.period,
            );
        }
        if self.config.build_cache.cooldown != old.build_cache.cooldown
            || self.config.build_cache.delay != old.build_cache.delay
        {
            self.triggers.build = BuildKitTrigger::with_timing(
                now,
                self.config.build_cache.cooldown,
                self.config.build_cache.delay,
            );
        }
        if self.config.build_cache.period != old.build_cache.period {
            self.triggers.build_period = period_trigger(now, self.config.build_cache.period);
        }
        if self.config.watermarks != old.watermarks {
            self.triggers.watermark = watermark(&self.config, self.disk_total);
        }
        self.configure_collectors();
        self.metrics
            .reloads
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        info!(file = %path.display(), "configuration reloaded; state kept");
    }

    fn reload_failed(&mut self, e: &anyhow::Error) {
        self.metrics
            .reloads
            .get_or_create(&ResultLabels {
                result: "error".into(),
            })
            .inc();
        // Do not try the same bad file again until it changes.
        if let Ok(bytes) = std::fs::read(&self.config.path) {
            self.config.fingerprint = config::fingerprint(&bytes);
        }
        error!("configuration reload failed, keeping the previous configuration: {e:#}");
    }
}

/// The build-cache collector of a configuration: dockerd's effective
/// rules for the disk, or `None` when disabled.
fn build_collector(
    config: &AgentConfig,
    disk_total: Option<u64>,
    now: Timestamp,
    dry_run_flag: bool,
) -> Result<Option<BuildCacheCollector>> {
    if !config.build_cache.enabled {
        return Ok(None);
    }
    let effective = effective_rules(&config.build_cache.gc, disk_total, now).map_err(|e| {
        anyhow!(
            "build_cache ({}): dockerd would fail to start its builder: {e}",
            config.build_cache.gc_source
        )
    })?;
    if !effective.enabled {
        info!("builder.gc is disabled: no build-cache GC");
        return Ok(None);
    }
    let mut gc = BuildCacheCollector::new(effective.rules);
    gc.dry_run(dry_run_flag || config.agent.dry_run)
        .ordering(config.build_cache.ordering);
    Ok(Some(gc))
}

fn period_trigger(now: Instant, period: Duration) -> Option<PeriodicTrigger> {
    (!period.is_zero()).then(|| PeriodicTrigger::new(now + period, period))
}

fn watermark(config: &AgentConfig, disk_total: Option<u64>) -> Option<WatermarkTrigger> {
    if !config.watermarks.enabled {
        return None;
    }
    let Some(total) = disk_total else {
        warn!("watermarks need disk statistics; they are off");
        return None;
    };
    let w = &config.watermarks;
    match WatermarkTrigger::new(w.low.bytes(total), w.high.bytes(total), w.min_interval) {
        Ok(t) => Some(t),
        Err(e) => {
            error!("watermarks: {e}; they are off");
            None
        }
    }
}

fn triggers(config: &AgentConfig, start: Instant, disk_total: Option<u64>) -> Triggers {
    Triggers {
        build: BuildKitTrigger::with_timing(
            start,
            config.build_cache.cooldown,
            config.build_cache.delay,
        ),
        build_period: period_trigger(start, config.build_cache.period),
        images: PeriodicTrigger::new(start, config.images.period),
        containers: PeriodicTrigger::new(start, config.containers.period),
        watermark: watermark(config, disk_total),
    }
}

/// What keeps going while a collector runs: events are handled (and the
/// state saved) as they come.
struct Background<'a> {
    docker: &'a DockerRuntime,
    events: &'a mut mpsc::UnboundedReceiver<EventMsg>,
    tracker: &'a mut Tracker,
    metrics: &'a Metrics,
    clock: &'a SystemClock,
}

/// Runs `run` to completion unless a stop signal comes; then the adapter
/// stops making removals (the one in flight finishes) and the run gets
/// `timeout` to wind down before it is abandoned. Events are handled
/// meanwhile. Returns the report (none if abandoned) and whether to stop.
async fn guarded<F: Future<Output = Report>>(
    run: F,
    signals: &mut Signals,
    bg: Background<'_>,
    timeout: Duration,
) -> (Option<Report>, bool) {
    tokio::pin!(run);
    loop {
        tokio::select! {
            report = &mut run => return (Some(report), false),
            () = signals.stop() => break,
            Some(msg) = bg.events.recv() => {
                bg.tracker.handle(msg, bg.docker, bg.metrics).await;
                if bg.tracker.dirty && bg.clock.instant() >= bg.tracker.next_save {
                    bg.tracker.save(bg.clock);
                }
            }
        }
    }
    info!("finishing the removal in progress, then stopping");
    bg.docker.drain();
    match tokio::time::timeout(timeout, run).await {
        Ok(report) => (Some(report), true),
        Err(_) => {
            warn!("the run did not wind down within {timeout:?}; abandoned");
            (None, true)
        }
    }
}

/// Image use from events, and saving it.
struct Tracker {
    usage: ImageUsage,
    events_since: Option<Timestamp>,
    /// The image collector's state as of its last run (the collector is
    /// busy while it runs).
    image_gc: reclaim_runtime::ImageGcState,
    state_file: PathBuf,
    after_builds: bool,
    /// An event showed a build since the trigger was last asked.
    build_requested: bool,
    dirty: bool,
    next_save: Instant,
}

impl Tracker {
    async fn handle(&mut self, msg: EventMsg, docker: &DockerRuntime, metrics: &Metrics) {
        let event = match msg {
            EventMsg::Lost(error) => {
                metrics.daemon_up.set(0);
                warn!(
                    error = error.as_str(),
                    "lost the Docker event stream; reconnecting"
                );
                return;
            }
            EventMsg::Event(e) => e,
        };
        metrics.daemon_up.set(1);
        metrics
            .events
            .get_or_create(&KindLabels {
                kind: event.kind.clone(),
            })
            .inc();
        if self.events_since.is_none_or(|s| event.time > s) {
            self.events_since = Some(event.time);
        }
        self.dirty = true;
        if self.after_builds
            && (event.kind == "builder"
                || (event.kind == "image"
                    && matches!(event.action.as_str(), "tag" | "create" | "import" | "load")))
        {
            debug!(
                action = event.action.as_str(),
                "image event: asking for a build-cache GC"
            );
            self.build_requested = true;
        }
        let Some(used) = use_of(&event) else {
            return;
        };
        let image = match &used {
            UseOf::Container { id, image } => match docker.container_image(id).await {
                Ok(Some(i)) => Some(i),
                _ => match image {
                    Some(reference) => resolve(docker, reference).await,
                    None => None,
                },
            },
            UseOf::Image(reference) => resolve(docker, reference).await,
            _ => None,
        };
        if let Some(image) = image {
            debug!(
                image = image.as_str(),
                action = event.action.as_str(),
                "image used"
            );
            self.usage.record(image, event.time);
            metrics
                .images_tracked
                .set(i64::try_from(self.usage.len()).unwrap_or(i64::MAX));
        }
    }

    fn save(&mut self, clock: &SystemClock) {
        let state = DockerState {
            saved_at: Some(clock.now()),
            events_since: self.events_since,
            usage: self.usage.clone(),
            image_gc: self.image_gc.clone(),
            ..DockerState::default()
        };
        if let Some(dir) = self.state_file.parent()
            && !dir.as_os_str().is_empty()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            error!(error = %e, dir = %dir.display(), "cannot create the state directory");
        }
        match state.save(&self.state_file) {
            Ok(()) => {
                self.dirty = false;
                self.next_save = clock.instant() + Duration::from_secs(1);
                debug!(file = %self.state_file.display(), "state saved");
            }
            Err(e) => {
                self.next_save = clock.instant() + Duration::from_secs(10);
                error!(error = %e, "cannot save the state; retrying in 10s");
            }
        }
    }
}

async fn resolve(docker: &DockerRuntime, reference: &str) -> Option<Id> {
    match docker.resolve_image(reference).await {
        Ok(id) => id,
        Err(e) => {
            debug!(reference, error = %e, "cannot resolve an image reference");
            None
        }
    }
}

/// Follows the daemon's events, reconnecting after `retry` when the stream
/// breaks, from the last event seen.
async fn watch_events(
    docker: DockerRuntime,
    mut since: Option<Timestamp>,
    tx: mpsc::UnboundedSender<EventMsg>,
    retry: Duration,
) {
    loop {
        let mut stream = Box::pin(docker.events(since));
        let mut error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    since = Some(event.time);
                    if tx.send(EventMsg::Event(event)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let message = error.unwrap_or_else(|| "the daemon closed the stream".to_owned());
        if tx.send(EventMsg::Lost(message)).is_err() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests;
