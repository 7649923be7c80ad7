//! The JSON-lines form of a trace: one header, then one event per line.
//!
//! These types are the format (docs/trace-format.md); the simulator reads
//! them into the compact [`super::Trace`] and writes them back.

use reclaim_model::Timestamp;
use serde::{Deserialize, Serialize};

/// The `format` value of every trace header.
pub const TRACE_FORMAT: &str = "reclaim-trace";

/// The version of the format this crate reads and writes.
pub const TRACE_VERSION: u32 = 1;

/// The first line of a trace.
///
/// Times of events are milliseconds since [`TraceHeader::start`].
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TraceHeader {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    /// The format version, [`TRACE_VERSION`].
    pub version: u32,
    /// Wall-clock time of `t = 0`.
    pub start: Timestamp,
    /// Length of the trace in milliseconds; the replay runs its timers up to
    /// here. Default: the time of the last event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Size in bytes of the disk that holds the engine's data.
    pub disk_total: u64,
    /// What wrote the trace (`reclaim-sim 0.0.0`, a recorder and its engine).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The workload generator's seed, for generated traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The workload's parameters, for generated traces (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<serde_json::Value>,
    /// The GC policy in force when the outcomes (`outcome` fields, `gc` and
    /// `disk` samples) were recorded; absent when the trace holds no
    /// outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<String>,
}

impl TraceHeader {
    /// A header for a trace starting at `start` on a disk of `disk_total`
    /// bytes.
    pub fn new(start: Timestamp, disk_total: u64) -> Self {
        Self {
            format: TRACE_FORMAT.to_owned(),
            version: TRACE_VERSION,
            start,
            duration_ms: None,
            disk_total,
            source: String::new(),
            seed: None,
            workload: None,
            outcomes: None,
        }
    }
}

/// What happened to a cache step or an image pull when the trace was
/// recorded (informational: a replay decides again).
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The record or image was there and was reused.
    Hit,
    /// It was missing and had to be built or pulled.
    Miss,
    /// A cache mount whose user step hit: the mount was not touched.
    Skipped,
}

/// One line after the header. The `ev` field names the kind; `t` is
/// milliseconds since the header's `start` and never decreases from one line
/// to the next.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceEvent {
    /// A build (one `docker build` / BuildKit solve) began.
    BuildStart(BuildStartEvent),
    /// A build needed a cache record.
    Step(StepEvent),
    /// A build returned, successfully or not.
    BuildEnd(BuildEndEvent),
    /// A cache record that exists without a build in the trace (state at
    /// the start of a recording).
    Record(RecordEvent),
    /// A container or client needed an image (pull policy IfNotPresent).
    Pull(PullEvent),
    /// A client removed an image (`docker rmi`).
    ImageRemove(ImageRemoveEvent),
    /// A container was created and started.
    ContainerStart(ContainerStartEvent),
    /// A container exited.
    ContainerExit(ContainerExitEvent),
    /// A client removed a container (`docker rm`).
    ContainerRemove(ContainerRemoveEvent),
    /// A pod was deleted from the API: its containers may be collected.
    PodDelete(PodDeleteEvent),
    /// Disk statistics observed at this time.
    Disk(DiskEvent),
    /// A GC run finished (an observation; replays ignore it).
    Gc(GcEvent),
}

impl TraceEvent {
    /// The event's time in milliseconds since the trace's start.
    pub fn t(&self) -> u64 {
        match self {
            Self::BuildStart(e) => e.t,
            Self::Step(e) => e.t,
            Self::BuildEnd(e) => e.t,
            Self::Record(e) => e.t,
            Self::Pull(e) => e.t,
            Self::ImageRemove(e) => e.t,
            Self::ContainerStart(e) => e.t,
            Self::ContainerExit(e) => e.t,
            Self::ContainerRemove(e) => e.t,
            Self::PodDelete(e) => e.t,
            Self::Disk(e) => e.t,
            Self::Gc(e) => e.t,
        }
    }

    /// The `ev` name of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BuildStart(_) => "build_start",
            Self::Step(_) => "step",
            Self::BuildEnd(_) => "build_end",
            Self::Record(_) => "record",
            Self::Pull(_) => "pull",
            Self::ImageRemove(_) => "image_remove",
            Self::ContainerStart(_) => "container_start",
            Self::ContainerExit(_) => "container_exit",
            Self::ContainerRemove(_) => "container_remove",
            Self::PodDelete(_) => "pod_delete",
            Self::Disk(_) => "disk",
            Self::Gc(_) => "gc",
        }
    }
}

/// `build_start`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildStartEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The build's id, unique in the trace.
    pub build: String,
    /// The project (repository) built, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The branch built, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// `step`: a build needed the cache record `record`. It is a hit if the
/// record exists at this moment, else the build creates it (a miss).
///
/// `type`, `parents`, `mutable` and `description` define the record; they
/// are required the first time a record appears (defaults apply when
/// absent) and may be omitted afterwards; when repeated they must be equal
/// to the first definition.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The build that needs the record (started, not yet ended).
    pub build: String,
    /// The record's id: the same id always means the same content.
    pub record: String,
    /// Size of the record in bytes after this step (a cache mount grows).
    pub size: u64,
    /// Seconds the step takes when the record is missing (rebuild cost).
    #[serde(default)]
    pub cost: f64,
    /// The record type (`regular`, `source.local`, `exec.cachemount`,
    /// `source.git.checkout`, `frontend`, `internal`). Default `regular`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// The records this one is built on, defined by earlier lines. Default
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<String>>,
    /// Whether the record is a mutable snapshot. Default: true for
    /// `exec.cachemount` and `source.local`, false otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutable: Option<bool>,
    /// Human-readable description (`[build 2/4] RUN make`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A conditional use: the record (a cache mount) is used only if the
    /// step that needed record `used_by` in the same build was a miss (the
    /// step ran). Absent: always used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
    /// What happened when the trace was recorded (ignored by replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// `build_end`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildEndEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The build (started, not yet ended).
    pub build: String,
    /// Whether the build would have failed when recorded (the disk was
    /// full during it); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
}

/// `record`: a cache record present without a build of the trace.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The record's id.
    pub record: String,
    /// Its size in bytes.
    pub size: u64,
    /// Seconds to rebuild it if it goes. Default 0.
    #[serde(default)]
    pub cost: f64,
    /// The record type. Default `regular`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// Parent records, defined by earlier lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<String>>,
    /// Mutable snapshot (default as for `step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutable: Option<bool>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time. Default: this event's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Last use; absent means never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// Number of uses so far. Default 0.
    #[serde(default)]
    pub usage_count: u64,
}

/// `pull`: an image was needed. A hit if the image exists, else it is
/// pulled (a miss).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PullEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The image id (`sha256:…`).
    pub image: String,
    /// Its size in bytes.
    pub size: u64,
    /// Seconds a pull takes (re-pull cost). Default 0.
    #[serde(default)]
    pub cost: f64,
    /// Its `repository:tag` references; tags move to the newest image that
    /// claims them. Given with the image's first pull.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Pinned by the engine (never collected). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// What happened when the trace was recorded (ignored by replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// `image_remove`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRemoveEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The image id.
    pub image: String,
}

/// `container_start`: a container was created and is running.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStartEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The container id, unique in the trace.
    pub container: String,
    /// The image id it runs (pulled by an earlier line).
    pub image: String,
    /// The pod UID, if the container belongs to a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The container's name in its pod. Default: the container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bytes of its writable layer. Default 0.
    #[serde(default)]
    pub size: u64,
}

/// `container_exit`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerExitEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The container.
    pub container: String,
    /// Bytes of its writable layer at exit; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `container_remove`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRemoveEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The container.
    pub container: String,
}

/// `pod_delete`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodDeleteEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// The pod UID.
    pub pod: String,
}

/// `disk`: statistics of the data disk. `other`, when present, sets the
/// bytes used by things the trace does not track (system, logs, volumes);
/// `total` and `used` are observations.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// Size of the disk in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// Bytes used by untracked data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<u64>,
}

/// `gc`: one collector run finished.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcEvent {
    /// Milliseconds since the trace's start.
    pub t: u64,
    /// `build-cache`, `images` or `containers`.
    pub collector: String,
    /// What started it (`builder-gc`, `kubelet`, `cron:<name>`,
    /// `watermark`).
    pub trigger: String,
    /// Items removed.
    pub removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Errors reported.
    #[serde(default)]
    pub errors: u64,
}
