//! The agent's configuration file (TOML), read into checked values.
//!
//! Every key is optional and has the default documented in docs/agent.md;
//! unknown keys are errors (a typo must not silently change what is
//! deleted). Errors name the key and the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reclaim_docker::{ContainerGrouping, PinRules};
use reclaim_kubelet::{ContainerGcPolicy, ImagePolicy};
use reclaim_model::{parse_go_duration, ram_in_bytes};
use reclaim_policy::config::BuilderGc;
use reclaim_policy::prune::Ordering;
use reclaim_runtime::{ImageGcMode, LabelSelector};
use serde::Deserialize;

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the file was read from.
    pub path: PathBuf,
    /// A hash of the file's bytes, to notice changes.
    pub fingerprint: u64,
    pub docker: DockerSection,
    pub agent: AgentSection,
    pub build_cache: BuildCacheSection,
    pub images: ImagesSection,
    pub containers: ContainersSection,
    pub watermarks: WatermarkSection,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DockerSection {
    /// `DOCKER_HOST`-style address; `None`: the environment's.
    pub host: Option<String>,
    /// `DOCKER_CERT_PATH` override.
    pub cert_path: Option<PathBuf>,
    /// TLS on; verification per `tls_verify`. `None`: the environment's.
    pub tls: Option<bool>,
    /// Verify the daemon's certificate. `None`: the environment's.
    pub tls_verify: Option<bool>,
    /// Where the daemon's data root is mounted here.
    pub disk_path: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentSection {
    pub dry_run: bool,
    pub state_file: PathBuf,
    /// `None`: no metrics endpoint.
    pub metrics_address: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub reload_interval: Duration,
    pub shutdown_timeout: Duration,
    pub retry_interval: Duration,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Debug)]
pub struct BuildCacheSection {
    pub enabled: bool,
    /// The `builder.gc` section, decoded as dockerd decodes it.
    pub gc: BuilderGc,
    /// Where it came from (for messages).
    pub gc_source: String,
    /// The daemon.json text it was decoded from (`{}` for the default).
    pub gc_json: String,
    pub ordering: Ordering,
    pub after_builds: bool,
    pub cooldown: Duration,
    pub delay: Duration,
    /// How often the cache is listed to notice builds; zero: never.
    pub build_poll_interval: Duration,
    /// A run every period on top of the build trigger; zero: never.
    pub period: Duration,
}

#[derive(Clone, Debug)]
pub struct ImagesSection {
    pub enabled: bool,
    pub policy: ImagePolicy,
    /// The kubelet entry point each run uses.
    pub mode: ImageGcMode,
    pub period: Duration,
    pub keep_tags: Vec<String>,
    pub keep_labels: Vec<String>,
    pub seed_from_created: bool,
    /// Only images with this label are considered.
    pub only_label: Option<LabelSelector>,
}

#[derive(Clone, Debug)]
pub struct ContainersSection {
    pub enabled: bool,
    pub policy: ContainerGcPolicy,
    pub group_by: ContainerGrouping,
    pub period: Duration,
    pub remove_volumes: bool,
    /// Only containers with this label are considered.
    pub only_label: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkSection {
    pub enabled: bool,
    pub low: Threshold,
    pub high: Threshold,
    pub min_interval: Duration,
    pub poll_interval: Duration,
}

/// Free space: bytes, or a percentage of the disk.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(u8),
}

impl Threshold {
    /// The threshold in bytes on a disk of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Self::Bytes(b) => b,
            Self::Percent(p) => (u128::from(total) * u128::from(p) / 100) as u64,
        }
    }
}

impl AgentConfig {
    /// The keep rules of the images section.
    pub fn pins(&self) -> PinRules {
        let mut pins = PinRules::new();
        for t in &self.images.keep_tags {
            pins.tag_pattern(t).expect("checked at load");
        }
        for l in &self.images.keep_labels {
            pins.label(l).expect("checked at load");
        }
        pins
    }

    /// Keys whose change needs a restart, which differ between `self` and
    /// `new`.
    pub fn restart_keys(&self, new: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.docker != new.docker {
            keys.push("docker");
        }
        if self.agent.state_file != new.agent.state_file {
            keys.push("agent.state_file");
        }
        if self.agent.metrics_address != new.agent.metrics_address {
            keys.push("agent.metrics_address");
        }
        if self.agent.log_format != new.agent.log_format
            || self.agent.log_level != new.agent.log_level
        {
            keys.push("agent.log_format/log_level");
        }
        keys
    }
}

/// Reads and checks the file at `path`.
///
/// # Errors
///
/// The file cannot be read, is not TOML, has an unknown key, or a value is
/// invalid; the message names the file, the key and the value.
pub fn load(path: &Path) -> Result<AgentConfig> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("config {}: not UTF-8", path.display()))?;
    parse(text, path).with_context(|| format!("config {}", path.display()))
}

/// Checks configuration text; `path` resolves relative paths (the
/// `daemon_json` key) and is kept for messages.
///
/// # Errors
///
/// As [`load`], without the file name.
pub fn parse(text: &str, path: &Path) -> Result<AgentConfig> {
    let raw: Raw = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))?;
    let base = path.parent().unwrap_or(Path::new("."));

    let docker = DockerSection {
        host: raw.docker.host.filter(|h| !h.is_empty()),
        cert_path: raw.docker.cert_path.map(PathBuf::from),
        tls: raw.docker.tls,
        tls_verify: raw.docker.tls_verify,
        disk_path: raw.docker.disk_path.map(PathBuf::from),
        timeout: duration("docker.timeout", raw.docker.timeout.as_deref(), "2m")?,
    };
    if let Some(host) = &docker.host {
        reclaim_docker::Endpoint::parse(host, None)
            .map_err(|e| anyhow!("docker.host = {host:?}: {}", e.reason))?;
    }

    let log_format = match raw.agent.log_format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => bail!("agent.log_format = {other:?}: expected \"text\" or \"json\""),
    };
    let log_level = raw.agent.log_level.unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&log_level)
        .map_err(|e| anyhow!("agent.log_level = {log_level:?}: {e}"))?;
    let metrics_address = match raw.agent.metrics_address {
        None => Some("127.0.0.1:9842".to_owned()),
        Some(a) if a.is_empty() => None,
        Some(a) => {
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow!("agent.metrics_address = {a:?}: {e} (expected host:port)"))?;
            Some(a)
        }
    };
    let agent = AgentSection {
        dry_run: raw.agent.dry_run.unwrap_or(false),
        state_file: PathBuf::from(
            raw.agent
                .state_file
                .unwrap_or_else(|| "/var/lib/reclaim/state.json".into()),
        ),
        metrics_address,
        log_format,
        log_level,
        reload_interval: positive(
            "agent.reload_interval",
            raw.agent.reload_interval.as_deref(),
            "5s",
        )?,
        shutdown_timeout: duration(
            "agent.shutdown_timeout",
            raw.agent.shutdown_timeout.as_deref(),
            "30s",
        )?,
        retry_interval: positive(
            "agent.retry_interval",
            raw.agent.retry_interval.as_deref(),
            "10s",
        )?,
    };

    let bc = raw.build_cache;
    let (gc, gc_source, gc_json) = match (bc.daemon_json, bc.gc) {
        (Some(_), Some(_)) => {
            bail!("build_cache.daemon_json and build_cache.gc are both set; use one")
        }
        (Some(file), None) => {
            let file = base.join(file);
            let bytes = std::fs::read(&file).map_err(|e| {
                anyhow!(
                    "build_cache.daemon_json = {:?}: cannot read it: {e}",
                    file.display()
                )
            })?;
            let (gc, _) = reclaim_policy::config::parse_bytes(&bytes)
                .map_err(|e| anyhow!("build_cache.daemon_json = {:?}: {e}", file.display()))?;
            (
                gc,
                file.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
        (None, Some(table)) => {
            // The table is daemon.json's `builder.gc`, decoded as dockerd
            // decodes it.
            let json = serde_json::json!({ "builder": { "gc": table } }).to_string();
            let (gc, _) =
                reclaim_policy::config::parse(&json).map_err(|e| anyhow!("build_cache.gc: {e}"))?;
            (gc, "build_cache.gc".to_owned(), json)
        }
        (None, None) => (
            BuilderGc::new(),
            "dockerd's default policy".to_owned(),
            "{}".to_owned(),
        ),
    };
    let ordering = match bc.ordering.as_deref() {
        None => Ordering::BuildKit,
        Some(o) => {
            crate::plan::parse_ordering(o).map_err(|e| anyhow!("build_cache.ordering: {e}"))?
        }
    };
    // Sizes and filters are checked now, as dockerd checks them when its
    // builder starts; the disk size and the time do not change the result.
    reclaim_policy::config::effective_rules(
        &gc,
        Some(1 << 40),
        reclaim_model::Timestamp::from_unix_secs(1_700_000_000),
    )
    .map_err(|e| {
        anyhow!("build_cache ({gc_source}): dockerd would fail to start its builder: {e}")
    })?;
    let build_cache = BuildCacheSection {
        enabled: bc.enabled.unwrap_or(true),
        gc,
        gc_source,
        gc_json,
        ordering,
        after_builds: bc.after_builds.unwrap_or(true),
        cooldown: duration("build_cache.cooldown", bc.cooldown.as_deref(), "1m")?,
        delay: duration("build_cache.delay", bc.delay.as_deref(), "1s")?,
        build_poll_interval: duration(
            "build_cache.build_poll_interval",
            bc.build_poll_interval.as_deref(),
            "30s",
        )?,
        period: duration("build_cache.period", bc.period.as_deref(), "0s")?,
    };

    let im = raw.images;
    let high = im.high_threshold_percent.unwrap_or(85);
    let low = im.low_threshold_percent.unwrap_or(80);
    let min_age = model_duration("images.min_age", im.min_age.as_deref(), "2m")?;
    let max_age = model_duration("images.max_age", im.max_age.as_deref(), "0s")?;
    let policy = ImagePolicy::new(high, low, min_age, max_age).map_err(|e| {
        anyhow!("images (high_threshold_percent = {high}, low_threshold_percent = {low}): {e}")
    })?;
    let keep_tags = im.keep_tags.unwrap_or_default();
    let keep_labels = im.keep_labels.unwrap_or_default();
    let mut pins = PinRules::new();
    for t in &keep_tags {
        pins.tag_pattern(t)
            .map_err(|e| anyhow!("images.keep_tags: {e}"))?;
    }
    for l in &keep_labels {
        pins.label(l)
            .map_err(|e| anyhow!("images.keep_labels: {e}"))?;
    }
    let seed_from_created = match im.cold_start_last_used.as_deref().unwrap_or("created") {
        "created" => true,
        "never" => false,
        other => {
            bail!("images.cold_start_last_used = {other:?}: expected \"created\" or \"never\"")
        }
    };
    let mode = match im.mode.as_deref().unwrap_or("garbage_collect") {
        "garbage_collect" => ImageGcMode::GarbageCollect,
        "delete_unused" => ImageGcMode::DeleteUnusedImages,
        other => bail!(
            "images.mode = {other:?}: expected \"garbage_collect\" (thresholds) or \"delete_unused\" (every unused image past min_age)"
        ),
    };
    let images = ImagesSection {
        enabled: im.enabled.unwrap_or(true),
        policy,
        mode,
        period: positive("images.period", im.period.as_deref(), "5m")?,
        keep_tags,
        keep_labels,
        seed_from_created,
        only_label: only_label("images.only_label", im.only_label.as_deref())?,
    };

    let ct = raw.containers;
    let min_age = model_duration("containers.min_age", ct.min_age.as_deref(), "0s")?;
    let max_per_name = ct.max_per_name.unwrap_or(1);
    let max_total = ct.max_total.unwrap_or(-1);
    let policy = ContainerGcPolicy::new(min_age, max_per_name, max_total).map_err(|e| {
        anyhow!(
            "containers.min_age = {:?}: {e}",
            ct.min_age.unwrap_or_default()
        )
    })?;
    let group_by = match ct.group_by.as_deref() {
        None => ContainerGrouping::Name,
        Some(g) => ContainerGrouping::parse(g).map_err(|e| anyhow!("containers.group_by = {e}"))?,
    };
    let containers = ContainersSection {
        enabled: ct.enabled.unwrap_or(true),
        policy,
        group_by,
        period: positive("containers.period", ct.period.as_deref(), "1m")?,
        remove_volumes: ct.remove_volumes.unwrap_or(false),
        only_label: only_label("containers.only_label", ct.only_label.as_deref())?,
    };

    let wm = raw.watermarks;
    let low = threshold("watermarks.low", wm.low.as_deref(), "10%")?;
    let high = threshold("watermarks.high", wm.high.as_deref(), "20%")?;
    let inverted = match (low, high) {
        (Threshold::Bytes(l), Threshold::Bytes(h)) => l > h,
        (Threshold::Percent(l), Threshold::Percent(h)) => l > h,
        // Mixed units are compared once the disk size is known.
        _ => false,
    };
    if inverted {
        bail!(
            "watermarks.low = {:?} is above watermarks.high = {:?}: the agent runs below low and re-arms above high",
            wm.low.as_deref().unwrap_or("10%"),
            wm.high.as_deref().unwrap_or("20%")
        );
    }
    let watermarks = WatermarkSection {
        enabled: wm.enabled.unwrap_or(false),
        low,
        high,
        min_interval: duration("watermarks.min_interval", wm.min_interval.as_deref(), "5m")?,
        poll_interval: positive(
            "watermarks.poll_interval",
            wm.poll_interval.as_deref(),
            "10s",
        )?,
    };

    Ok(AgentConfig {
        path: path.to_owned(),
        fingerprint: fingerprint(text.as_bytes()),
        docker,
        agent,
        build_cache,
        images,
        containers,
        watermarks,
    })
}

/// FNV-1a of the bytes (a change detector, not a security measure).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn model_duration(key: &str, text: Option<&str>, default: &str) -> Result<reclaim_model::Duration> {
    let text = text.unwrap_or(default);
    let d = parse_go_duration(text).map_err(|e| anyhow!("{key} = {text:?}: {e}"))?;
    if d.is_negative() {
        bail!("{key} = {text:?}: must not be negative");
    }
    Ok(d)
}

fn duration(key: &str, text: Option<&str>, default: &str) -> Result<Duration> {
    Ok(model_duration(key, text, default)?.to_std())
}

fn positive(key: &str, text: Option<&str>, default: &str) -> Result<Duration> {
    let d = duration(key, text, default)?;
    if d.is_zero() {
        bail!(
            "{key} = {:?}: must be more than zero",
            text.unwrap_or(default)
        );
    }
    Ok(d)
}

fn only_label(key: &str, text: Option<&str>) -> Result<Option<LabelSelector>> {
    text.map(|t| LabelSelector::parse(t).map_err(|e| anyhow!("{key} = {t:?}: {e}")))
        .transpose()
}

fn threshold(key: &str, text: Option<&str>, default: &str) -> Result<Threshold> {
    let text = text.unwrap_or(default);
    if let Some(p) = text.strip_suffix('%') {
        let p: u8 = p
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| anyhow!("{key} = {text:?}: a percentage must be 0% to 100%"))?;
        return Ok(Threshold::Percent(p));
    }
    let bytes = ram_in_bytes(text).map_err(|e| anyhow!("{key} = {text:?}: {e}"))?;
    Ok(Threshold::Bytes(
        u64::try_from(bytes).map_err(|_| anyhow!("{key} = {text:?}: out of range"))?,
    ))
}

/// Raw TOML shape; `deny_unknown_fields` makes typos errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    docker: RawDocker,
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    build_cache: RawBuildCache,
    #[serde(default)]
    images: RawImages,
    #[serde(default)]
    containers: RawContainers,
    #[serde(default)]
    watermarks: RawWatermarks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    host: Option<String>,
    cert_path: Option<String>,
    tls: Option<bool>,
    tls_verify: Option<bool>,
    disk_path: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    dry_run: Option<bool>,
    state_file: Option<String>,
    metrics_address: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    reload_interval: Option<String>,
    shutdown_timeout: Option<String>,
    retry_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuildCache {
    enabled: Option<bool>,
    daemon_json: Option<String>,
    gc: Option<toml::Table>,
    ordering: Option<String>,
    after_builds: Option<bool>,
    cooldown: Option<String>,
    delay: Option<String>,
    build_poll_interval: Option<String>,
    period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImages {
    enabled: Option<bool>,
    high_threshold_percent: Option<i32>,
    low_threshold_percent: Option<i32>,
    min_age: Option<String>,
    max_age: Option<String>,
    mode: Option<String>,
    period: Option<String>,
    keep_tags: Option<Vec<String>>,
    keep_labels: Option<Vec<String>>,
    cold_start_last_used: Option<String>,
    only_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainers {
    enabled: Option<bool>,
    min_age: Option<String>,
    max_per_name: Option<i64>,
    max_total: Option<i64>,
    group_by: Option<String>,
    period: Option<String>,
    remove_volumes: Option<bool>,
    only_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatermarks {
    enabled: Option<bool>,
    low: Option<String>,
    high: Option<String>,
    min_interval: Option<String>,
    poll_interval: Option<String>,
}
