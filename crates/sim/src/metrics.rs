//! What a replay measures: the deterministic [`RunReport`], and the wall
//! times of GC runs ([`Timing`]), kept apart because they differ from run
//! to run.

use reclaim_model::Timestamp;
use serde::Serialize;

/// The schema tag of [`RunReport`]'s JSON form.
pub const RUN_REPORT_SCHEMA: &str = "reclaim.sim.report/v1";

/// Everything a replay measured, deterministic: the same trace, policy,
/// ordering and options give an equal report (and equal JSON bytes).
///
/// Wall-clock measurements are in [`Timing`], never here.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunReport {
    /// [`RUN_REPORT_SCHEMA`].
    pub schema: &'static str,
    /// The policy's name.
    pub policy: String,
    /// The eviction ordering of gc-mode rules.
    pub ordering: String,
    /// Size of the simulated disk in bytes.
    pub disk_total: u64,
    /// Wall-clock time of the trace's start.
    pub start: Timestamp,
    /// Simulated time in milliseconds.
    pub duration_ms: u64,
    /// Trace events replayed.
    pub events: u64,
    /// Disk usage.
    pub disk: DiskMetrics,
    /// Builds.
    pub builds: BuildMetrics,
    /// Cache steps.
    pub steps: StepMetrics,
    /// Rebuilds of records that existed before and were collected: the
    /// cost a policy causes.
    pub rebuilds: CostMetrics,
    /// First builds of records never seen before: the same under every
    /// policy.
    pub cold: CostMetrics,
    /// Image pulls.
    pub pulls: PullMetrics,
    /// One entry per collector and trigger, sorted by name.
    pub gc: Vec<GcMetrics>,
    /// Bytes freed by all collectors.
    pub bytes_freed: u64,
    /// Samples over time.
    pub series: Series,
}

/// Disk usage over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DiskMetrics {
    /// Highest bytes used at any moment.
    pub peak_used: u64,
    /// When the peak was first reached, in ms since the start.
    pub peak_at_ms: u64,
    /// Bytes used at the end.
    pub final_used: u64,
    /// Time during which more bytes were used than the disk has: on a
    /// real node, writes fail with ENOSPC then.
    pub over_capacity_ms: u64,
    /// Number of separate periods over capacity.
    pub over_capacity_periods: u64,
}

/// Builds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BuildMetrics {
    /// Builds started.
    pub total: u64,
    /// Builds during which the disk was over capacity after one of their
    /// steps: on a real node they would have failed. The replay keeps the
    /// workload fixed, so they complete here.
    pub would_fail: u64,
}

/// Cache steps: hits, misses and their bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Steps replayed (cache mounts whose user step hit are not counted).
    pub total: u64,
    /// Steps whose record existed.
    pub hits: u64,
    /// Steps whose record had to be built.
    pub misses: u64,
    /// Conditional cache-mount uses skipped because their user step hit.
    pub skipped_mounts: u64,
    /// Bytes of the records reused.
    pub hit_bytes: u64,
    /// Bytes of the records built.
    pub miss_bytes: u64,
    /// `hits / total` (0 without steps).
    pub hit_ratio: f64,
    /// `hit_bytes / (hit_bytes + miss_bytes)` (0 without steps).
    pub byte_hit_ratio: f64,
}

/// Count, time and bytes of a kind of (re)build.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CostMetrics {
    /// Number of steps.
    pub count: u64,
    /// Seconds they took (the steps' costs).
    pub seconds: f64,
    /// Bytes they wrote.
    pub bytes: u64,
}

/// Image pulls.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PullMetrics {
    /// Images needed.
    pub total: u64,
    /// Needed images already present.
    pub hits: u64,
    /// Images pulled.
    pub misses: u64,
    /// Pulls of images that had been pulled before and were collected.
    pub repulls: u64,
    /// Bytes of those re-pulls.
    pub repull_bytes: u64,
    /// Seconds of those re-pulls.
    pub repull_seconds: f64,
}

/// What one collector did under one trigger.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcMetrics {
    /// `<trigger>/<collector>`: `builder-gc/build-cache`,
    /// `kubelet/images`, `cron:system-prune/containers`,
    /// `watermark/build-cache`.
    pub name: String,
    /// Runs.
    pub runs: u64,
    /// Runs that removed something.
    pub runs_with_removals: u64,
    /// Items removed.
    pub removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Errors reported by the runs.
    pub errors: u64,
    /// Runs that stopped early (a fatal error, the engine unreachable).
    pub aborted: u64,
}

/// Samples taken every `interval_ms`, the first at time 0; sample `i` is
/// the state at `i * interval_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// Time between samples in milliseconds.
    pub interval_ms: u64,
    /// Bytes used on the disk.
    pub used: Vec<u64>,
    /// Bytes of build cache.
    pub cache: Vec<u64>,
    /// Bytes of images.
    pub images: Vec<u64>,
    /// Bytes of containers' writable layers.
    pub containers: Vec<u64>,
    /// Cumulative cache misses (all).
    pub misses: Vec<u64>,
    /// Cumulative cache misses of records collected earlier.
    pub rebuilds: Vec<u64>,
    /// Cumulative seconds of those rebuilds.
    pub rebuild_seconds: Vec<f64>,
}

/// Wall-clock time spent in GC runs (snapshot, plan and in-memory apply).
/// It changes from run to run, so it is kept out of [`RunReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Wall time of the whole replay in nanoseconds.
    pub replay_ns: u64,
    /// Per collector and trigger, sorted by name.
    pub gc: Vec<GcTiming>,
}

/// Wall time of one collector's runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcTiming {
    /// As [`GcMetrics::name`].
    pub name: String,
    /// Runs.
    pub runs: u64,
    /// Total nanoseconds.
    pub total_ns: u64,
    /// Longest run in nanoseconds.
    pub max_ns: u64,
}

impl Timing {
    /// Total nanoseconds spent in GC runs.
    pub fn gc_ns(&self) -> u64 {
        self.gc.iter().map(|g| g.total_ns).sum()
    }
}

impl RunReport {
    /// The report as pretty JSON (deterministic).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize to JSON")
    }

    /// Cache misses per step (`1 - hit_ratio`).
    pub fn miss_ratio(&self) -> f64 {
        if self.steps.total == 0 {
            0.0
        } else {
            self.steps.misses as f64 / self.steps.total as f64
        }
    }

    /// Simulated days.
    pub fn days(&self) -> f64 {
        self.duration_ms as f64 / 86_400_000.0
    }

    /// Rebuild hours caused by collection, per simulated day.
    pub fn rebuild_hours_per_day(&self) -> f64 {
        let days = self.days();
        if days == 0.0 {
            0.0
        } else {
            self.rebuilds.seconds / 3600.0 / days
        }
    }

    /// GC runs of all collectors.
    pub fn gc_runs(&self) -> u64 {
        self.gc.iter().map(|g| g.runs).sum()
    }
}
