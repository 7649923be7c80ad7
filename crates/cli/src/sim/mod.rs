//! `reclaim simulate` and `reclaim compare`: replays of the built-in CI-node
//! workload (or of a recorded trace) through GC policies, with tables,
//! progress bars and SVG plots.
//!
//! Everything here is glue: the workload, the replay, the metrics and the
//! plots come from `reclaim_sim`.

pub mod compare;
pub mod simulate;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reclaim_kubelet::ImagePolicy;
use reclaim_sim::{KubeletGc, Policy, PolicySpec, Trace, Watermark, Workload};

use crate::util;

/// Where the workload comes from: the built-in generator or a trace file.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Replay this trace (JSON lines, docs/trace-format.md) instead of
    /// generating the built-in CI-node workload.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["days", "seed", "pipelines_per_hour", "projects"])]
    pub workload: Option<PathBuf>,
    /// Simulated days of the built-in workload.
    #[arg(long, value_name = "N", default_value_t = 30.0)]
    pub days: f64,
    /// Seed of the built-in workload.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Pipelines per hour of the built-in workload, averaged over the week
    /// (each runs one or two builds).
    #[arg(long, value_name = "RATE", default_value_t = 6.0)]
    pub pipelines_per_hour: f64,
    /// Projects built on the node by the built-in workload.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub projects: u32,
    /// Size of the node's disk (Docker size syntax: `100GB` is 100 GiB).
    /// Default: 100GB for the built-in workload, the trace's disk_total for
    /// --workload.
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
}

/// The collectors besides `builder.gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// The kubelet's image and container GC: `on` (the kubelet's defaults:
    /// images at 85%/80% disk use every 5 minutes, dead containers of
    /// deleted pods every minute), `off`, or `HIGH:LOW` image thresholds in
    /// percent.
    #[arg(long, value_name = "on|off|HIGH:LOW", default_value = "on")]
    pub kubelet: String,
    /// reclaim's free-space trigger for the builder.gc rules, `LOW:HIGH`
    /// percent free (run when free space drops below LOW, re-arm above
    /// HIGH). Default: off, as in dockerd.
    #[arg(long, value_name = "LOW:HIGH")]
    pub watermark: Option<String>,
}

/// The workload's trace, and a sentence describing it.
pub struct Loaded {
    pub trace: Trace,
    pub description: String,
}

impl WorkloadArgs {
    /// Generates or reads the trace, with the disk size applied.
    pub fn load(&self) -> Result<Loaded> {
        let disk = self
            .disk_size
            .as_deref()
            .map(|s| util::parse_size("--disk-size", s))
            .transpose()?;
        if let Some(path) = &self.workload {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let trace = Trace::read(std::io::BufReader::new(file))
                .with_context(|| format!("{}: not a valid trace", path.display()))?;
            let trace = match disk {
                Some(total) => {
                    let mut header = trace.header().clone();
                    header.disk_total = total;
                    trace.with_header(header)?
                }
                None => trace,
            };
            let days = trace.duration_ms() as f64 / 86_400_000.0;
            let description = format!(
                "{} ({:.1} days, {} builds, {} events)",
                path.display(),
                days,
                trace.build_count(),
                trace.len()
            );
            return Ok(Loaded { trace, description });
        }
        let mut w = Workload::new();
        w.days(self.days)
            .seed(self.seed)
            .pipelines_per_hour(self.pipelines_per_hour)
            .projects(self.projects);
        if let Some(total) = disk {
            w.disk_total(total);
        }
        let trace = w.generate()?;
        let description = format!(
            "built-in CI node, {} days, {} projects, {} pipelines/h, seed {}",
            self.days, self.projects, self.pipelines_per_hour, self.seed
        );
        Ok(Loaded { trace, description })
    }
}

impl GcArgs {
    /// The kubelet's GC settings (`None` when off).
    pub fn kubelet(&self) -> Result<Option<KubeletGc>> {
        match self.kubelet.as_str() {
            "on" => Ok(Some(KubeletGc::default())),
            "off" => Ok(None),
            text => {
                let (high, low) = percent_pair("--kubelet", text)?;
                let defaults = ImagePolicy::default();
                let images = ImagePolicy::new(
                    i32::from(high),
                    i32::from(low),
                    defaults.min_age(),
                    defaults.max_age(),
                )
                .map_err(|e| anyhow::anyhow!("--kubelet {text:?}: {e}"))?;
                Ok(Some(KubeletGc {
                    images: Some(images),
                    ..KubeletGc::default()
                }))
            }
        }
    }

    /// The watermark trigger, if asked for.
    pub fn watermark(&self) -> Result<Option<Watermark>> {
        self.watermark
            .as_deref()
            .map(|text| {
                let (low, high) = percent_pair("--watermark", text)?;
                Ok(Watermark {
                    low_percent: low,
                    high_percent: high,
                })
            })
            .transpose()
    }

    /// `spec` resolved for a disk, with these collectors added.
    pub fn policy(&self, spec: &PolicySpec, disk: u64, trace: &Trace) -> Result<Policy> {
        let policy = spec
            .resolve(disk, trace.header().start)?
            .with_kubelet(self.kubelet()?);
        Ok(policy.with_watermark(self.watermark()?)?)
    }

    /// A short description of the collectors besides `builder.gc`.
    pub fn describe(&self) -> String {
        let kubelet = match self.kubelet.as_str() {
            "on" => "kubelet GC at its defaults".to_owned(),
            "off" => "no kubelet GC".to_owned(),
            t => format!("kubelet image GC at {t}"),
        };
        match &self.watermark {
            Some(w) => format!("{kubelet}, watermark trigger {w}% free"),
            None => kubelet,
        }
    }
}

/// Reads `A:B`, two percentages.
fn percent_pair(flag: &str, text: &str) -> Result<(u8, u8)> {
    let parse = |part: &str| -> Result<u8> {
        match part.trim().parse::<u8>() {
            Ok(p) if p <= 100 => Ok(p),
            _ => bail!("{flag} {text:?}: {part:?} is not a percentage (0 to 100)"),
        }
    };
    match text.split_once(':') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => bail!("{flag} {text:?}: expected two percentages, `A:B`"),
    }
}

/// A policy by name (`none`, `dockerd-default`, `weekly-system-prune`,
/// `daily-buildx-prune`) or a daemon.json file.
pub fn policy_spec(text: &str) -> Result<PolicySpec> {
    if let Some(spec) = PolicySpec::from_name(text) {
        return Ok(spec);
    }
    let path = Path::new(text);
    if !path.exists() {
        bail!(
            "policy {text:?}: no such file, and not one of {}",
            PolicySpec::NAMES.join(", ")
        );
    }
    let body = util::read_text(path)?;
    let name = path
        .file_name()
        .map_or_else(|| text.to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(PolicySpec::DaemonJson { name, text: body })
}

/// A progress bar on standard error, hidden when it is not a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:32}] {percent:>3}% {human_pos}/{human_len} events, {per_sec}, eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A spinner for a step of unknown length (generating the workload).
pub fn spinner(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Creates the output directory.
pub fn out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes a file, naming it in the error.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Decimal gigabytes with one decimal.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// A duration in milliseconds as hours (`0 s` when zero).
pub fn hours_ms(ms: u64) -> String {
    if ms == 0 {
        "0 s".to_owned()
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    }
}

/// Seconds as hours with one decimal.
pub fn hours(seconds: f64) -> String {
    format!("{:.1} h", seconds / 3600.0)
}

/// Nanoseconds of wall time, readable: `850 µs`, `12.3 ms`, `2.54 s`.
pub fn wall(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A ratio as a percentage with one decimal.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_read_well() {
        assert_eq!(wall(850_000), "850 µs");
        assert_eq!(wall(12_345_678), "12.3 ms");
        assert_eq!(wall(2_540_000_000), "2.54 s");
    }

    #[test]
    fn percent_pairs_name_the_flag() {
        assert_eq!(percent_pair("--kubelet", "90:80").unwrap(), (90, 80));
        let err = percent_pair("--watermark", "10").unwrap_err().to_string();
        assert_eq!(err, "--watermark \"10\": expected two percentages, `A:B`");
        let err = percent_pair("--kubelet", "101:5").unwrap_err().to_string();
        assert_eq!(
            err,
            "--kubelet \"101:5\": \"101\" is not a percentage (0 to 100)"
        );
    }

    #[test]
    fn policies_by_name_or_file() {
        assert_eq!(policy_spec("none").unwrap(), PolicySpec::None);
        assert_eq!(policy_spec("default").unwrap(), PolicySpec::DockerdDefault);
        let err = policy_spec("no-such-policy.json").unwrap_err().to_string();
        assert!(err.contains("not one of none, dockerd-default"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tight.json");
        std::fs::write(
            &file,
            r#"{"builder":{"gc":{"defaultMaxUsedSpace":"10GB"}}}"#,
        )
        .unwrap();
        match policy_spec(file.to_str().unwrap()).unwrap() {
            PolicySpec::DaemonJson { name, .. } => assert_eq!(name, "tight.json"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kubelet_settings() {
        let args = |k: &str| GcArgs {
            kubelet: k.to_owned(),
            watermark: None,
        };
        assert_eq!(args("on").kubelet().unwrap(), Some(KubeletGc::default()));
        assert_eq!(args("off").kubelet().unwrap(), None);
        let custom = args("90:70").kubelet().unwrap().unwrap();
        assert_eq!(custom.images.unwrap().high_threshold_percent(), 90);
        let err = args("70:90").kubelet().unwrap_err().to_string();
        assert!(err.starts_with("--kubelet \"70:90\": "), "{err}");
    }
}
