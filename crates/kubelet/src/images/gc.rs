//! The image GC entry points (spec 2.4-2.9) as a sans-IO collector, and the
//! dry-run planner built on it.
//!
//! Removals can fail, and the space pass counts only successful ones
//! towards its target, so the order of calls depends on their outcomes.
//! [`ImageCollector`] therefore hands out one step at a time and takes the
//! result back; [`plan_images`] drives it with every removal assumed to
//! succeed.
//!
//! Plans refer to the records they were computed from ([`RecordRef`]
//! handles) instead of copying ids: copying means touching every id's
//! memory in eviction order, which at 100,000 images costs more than the
//! whole plan.

use std::fmt;

use reclaim_model::{Duration, Timestamp};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::policy::ImagePolicy;
use super::records::{ImageFsStats, ImageRecords, ImageSnapshot, RecordRef};
use crate::outcome::{CallError, CallFailure, CallStatus, go_aggregate};
use crate::table::write_table;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which the kubelet stores as
/// the last-used time of a never-used image. Using the same instant makes
/// the saturating arithmetic of the MaxAge check identical to Go's.
pub(crate) const GO_ZERO_TIME: Timestamp = Timestamp::from_unix_secs(-62_135_596_800);

/// The kubelet entry point a collector runs.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageGcEntry {
    /// `DeleteUnusedImages`: the eviction manager's reclaim function; the
    /// space pass with an unreachable target, no thresholds, no age pass.
    DeleteUnusedImages,
    /// `freeOldImages` alone: the age pass (upstream's unit-test entry).
    FreeOldImages,
    /// `freeSpace` alone with a given target (upstream's unit-test entry).
    FreeSpace,
    /// `GarbageCollect`: the periodic pass (age pass, stats, space pass).
    GarbageCollect,
}

/// The pass of the image GC that removes an image.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePass {
    /// The MaxAge pass: unused for longer than MaxAge.
    Age,
    /// The space pass: least recently used first until the target is freed.
    Space,
}

/// One image removal call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ImageRemoval {
    /// The image (resolve with [`ImagePlan::id`] or [`ImageRecords::id_of`]).
    pub record: RecordRef,
    /// Its size from the records.
    pub size_bytes: u64,
    /// The pass that removes it.
    pub pass: ImagePass,
    /// Its position in the eviction order among the candidates (0 = least
    /// recently used).
    pub rank: u32,
    /// Space pass only: bytes freed by the pass after this call.
    pub freed_after: Option<i64>,
    /// What happened to the call.
    pub status: CallStatus,
}

/// Why an image stays.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageKeepReason {
    /// Disk usage is below the high threshold, so the space pass did not run.
    BelowHighThreshold,
    /// A container the runtime still has uses it.
    InUse,
    /// The runtime pins it.
    Pinned,
    /// An error ended the GC before the space pass reached it.
    Stopped,
    /// The space pass freed its target before reaching it.
    TargetReached,
    /// The space pass skipped it: first detected less than MinAge ago.
    TooYoung,
    /// The space pass skipped it: last used at or after the GC's clock.
    UsedAtFreeTime,
    /// The age pass (run alone) kept it: unused for at most MaxAge, or the
    /// GC has not yet run longer than MaxAge.
    WithinMaxAge,
}

/// An image the GC leaves alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct KeptImage {
    /// The image (resolve with [`ImagePlan::id`]).
    pub record: RecordRef,
    /// Its size from the records.
    pub size_bytes: u64,
    /// Why it stays.
    pub reason: ImageKeepReason,
}

/// Why an image GC entry point failed. The texts are the kubelet's.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageGcError {
    /// The age pass could not remove some images; the GC stops there (no
    /// stats, no space pass). Check the runtime's errors.
    #[error(
        "wanted to free images older than {max_age}, encountered errors in image deletion: {}",
        go_aggregate(errors)
    )]
    AgeDeletion {
        /// The policy's MaxAge.
        max_age: Duration,
        /// The runtime's error texts, in call order.
        errors: Vec<String>,
    },
    /// The space pass could not remove some images. Check the runtime's
    /// errors; the other removals stand.
    #[error(
        "wanted to free {bytes_to_free} bytes, but freed {freed} bytes space with errors in image deletion: {}",
        go_aggregate(errors)
    )]
    Deletion {
        /// The space pass's target.
        bytes_to_free: i64,
        /// Bytes freed by successful removals.
        freed: i64,
        /// The runtime's error texts, in call order.
        errors: Vec<String>,
    },
    /// Not enough unused images could be removed to reach the low
    /// threshold (the v1.35+ `FreeDiskSpaceFailed` text; see
    /// [`ImageGcError::legacy_message`] for the older one). Something other
    /// than unused images fills the disk.
    #[error(
        "Insufficient free disk space on the node's image filesystem ({usage_percent}% of {} used). Failed to free sufficient space by deleting unused images (freed {freed} bytes). Investigate disk usage, as it could be used by active images, logs, volumes, or other data.",
        format_capacity(*capacity)
    )]
    InsufficientSpace {
        /// Usage percent computed before the space pass.
        usage_percent: i64,
        /// Capacity of the image filesystem.
        capacity: i64,
        /// Bytes freed by the space pass.
        freed: i64,
        /// Bytes the space pass had to free.
        amount_to_free: i64,
    },
    /// The image filesystem reports a capacity of 0; the stats provider is
    /// not ready or broken.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Reading the image filesystem stats failed; the text is the
    /// provider's.
    #[error("{message}")]
    Stats {
        /// The provider's error text.
        message: String,
    },
}

impl ImageGcError {
    /// For [`ImageGcError::InsufficientSpace`], the text kubelets before
    /// v1.35 used.
    pub fn legacy_message(&self) -> Option<String> {
        match self {
            Self::InsufficientSpace {
                freed,
                amount_to_free,
                ..
            } => Some(format!(
                "Failed to garbage collect required amount of images. Attempted to free {amount_to_free} bytes, but only found {freed} bytes eligible to free."
            )),
            _ => None,
        }
    }

    /// The reason of the node event the kubelet emits with this error, if
    /// any (besides the loop's own `ImageGCFailed` on repeated failures).
    pub fn event_reason(&self) -> Option<&'static str> {
        match self {
            Self::InsufficientSpace { .. } => Some("FreeDiskSpaceFailed"),
            Self::InvalidCapacity => Some("InvalidDiskCapacity"),
            _ => None,
        }
    }

    /// A short snake_case name of the variant, used in JSON plans.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgeDeletion { .. } => "age_deletion_errors",
            Self::Deletion { .. } => "deletion_errors",
            Self::InsufficientSpace { .. } => "insufficient_space",
            Self::InvalidCapacity => "invalid_capacity",
            Self::Stats { .. } => "stats_error",
        }
    }
}

impl Serialize for ImageGcError {
    /// `{kind, message, ...}` with the variant's numbers; durations in Go
    /// notation.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", self.kind())?;
        m.serialize_entry("message", &self.to_string())?;
        match self {
            Self::AgeDeletion { max_age, errors } => {
                m.serialize_entry("max_age", &max_age.to_string())?;
                m.serialize_entry("errors", errors)?;
            }
            Self::Deletion {
                bytes_to_free,
                freed,
                errors,
            } => {
                m.serialize_entry("bytes_to_free", bytes_to_free)?;
                m.serialize_entry("freed_bytes", freed)?;
                m.serialize_entry("errors", errors)?;
            }
            Self::InsufficientSpace {
                usage_percent,
                capacity,
                freed,
                amount_to_free,
            } => {
                m.serialize_entry("usage_percent", usage_percent)?;
                m.serialize_entry("capacity_bytes", capacity)?;
                m.serialize_entry("freed_bytes", freed)?;
                m.serialize_entry("amount_to_free", amount_to_free)?;
                m.serialize_entry("legacy_message", &self.legacy_message())?;
            }
            Self::InvalidCapacity | Self::Stats { .. } => {}
        }
        m.end()
    }
}

/// The capacity in the kubelet's insufficient-space message: `%d B` below
/// 1 KiB, then one decimal in KiB, MiB, GiB or TiB (TiB is the largest
/// unit, so 2 PiB prints as `2048.0 TiB`).
pub fn format_capacity(bytes: i64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * KIB;
    const GIB: f64 = 1024.0 * MIB;
    const TIB: f64 = 1024.0 * GIB;
    let size = bytes as f64;
    if size < KIB {
        format!("{bytes} B")
    } else if size < MIB {
        format!("{:.1} KiB", size / KIB)
    } else if size < GIB {
        format!("{:.1} MiB", size / MIB)
    } else if size < TIB {
        format!("{:.1} GiB", size / GIB)
    } else {
        format!("{:.1} TiB", size / TIB)
    }
}

/// The image GC's plan, or, from an [`ImageCollector`], the record of what
/// it did. It borrows the records it was computed from.
///
/// Invariants: every record appears exactly once, in `removals` (whatever
/// the status) or in `kept`; `removals` is in call order, age pass first;
/// `kept` is in eviction order (last used, then first detected, then id),
/// protected images included.
#[must_use]
#[derive(Clone, Debug)]
pub struct ImagePlan<'a> {
    /// The records the plan refers to.
    pub records: &'a ImageRecords,
    /// True for a plan no runtime has executed: outcomes are assumed.
    pub dry_run: bool,
    /// The entry point that ran.
    pub entry: ImageGcEntry,
    /// The policy applied.
    pub policy: ImagePolicy,
    /// Whether the kubelet would run its periodic image GC loop at all with
    /// this policy (spec 2.2); the plan is computed regardless.
    pub loop_enabled: bool,
    /// The GC's clock (`freeTime`).
    pub free_time: Timestamp,
    /// When the periodic GC began (for the MaxAge pass), if the entry uses it.
    pub began_gc: Option<Timestamp>,
    /// Records that are removal candidates (neither in use nor pinned).
    pub candidates: u64,
    /// Whether the MaxAge pass ran (MaxAge set and the GC has run longer
    /// than MaxAge).
    pub age_pass_ran: bool,
    /// The image filesystem stats as read, if they were.
    pub fs: Option<ImageFsStats>,
    /// `100 - available * 100 / capacity`, if computed.
    pub usage_percent: Option<i64>,
    /// `capacity * (100 - low) / 100 - available`, if usage reached the high
    /// threshold.
    pub amount_to_free: Option<i64>,
    /// The space pass's target, if it ran (`amount_to_free`, the unit-test
    /// target, or `i64::MAX` for `DeleteUnusedImages`).
    pub bytes_to_free: Option<i64>,
    /// Bytes the space pass freed, if it ran (age-pass removals never count).
    pub space_freed: Option<i64>,
    /// Removal calls in order, with their status.
    pub removals: Vec<ImageRemoval>,
    /// Images that stay.
    pub kept: Vec<KeptImage>,
    /// The runtime's messages for failed removals, in call order.
    pub failures: Vec<CallFailure>,
    /// The error the entry point returns, if any.
    pub error: Option<ImageGcError>,
}

/// The schema tag of [`ImagePlan`]'s JSON form.
pub const IMAGE_PLAN_SCHEMA: &str = "reclaim.kubelet.image-plan/v1";

impl<'a> ImagePlan<'a> {
    /// The id of a record handle of this plan.
    pub fn id(&self, record: RecordRef) -> &'a str {
        self.records.id_of(record)
    }

    /// Ids of the images removed successfully (or, in a dry run, to be
    /// removed), age pass first.
    pub fn removed(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.removals
            .iter()
            .filter(|r| r.status.succeeded())
            .map(|r| self.records.id_of(r.record))
    }

    /// Ids of the successful removals of one pass.
    pub fn removed_by(&self, pass: ImagePass) -> impl Iterator<Item = &'a str> + '_ {
        self.removals
            .iter()
            .filter(move |r| r.pass == pass && r.status.succeeded())
            .map(|r| self.records.id_of(r.record))
    }

    /// Ids of every removal call made, in order, including failed ones.
    pub fn remove_calls(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.removals
            .iter()
            .filter(|r| r.status.remove_called())
            .map(|r| self.records.id_of(r.record))
    }

    /// Bytes of all successful removals (both passes).
    pub fn bytes_removed(&self) -> u64 {
        self.removals
            .iter()
            .filter(|r| r.status.succeeded())
            .map(|r| r.size_bytes)
            .sum()
    }

    fn age_of(&self, record: RecordRef) -> Duration {
        self.free_time
            .saturating_duration_since(self.records.record_of(record).first_detected)
    }
}

struct RemovalView<'p, 'a> {
    plan: &'p ImagePlan<'a>,
    removal: &'p ImageRemoval,
}

impl Serialize for RemovalView<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.removal;
        let rec = self.plan.records.record_of(r.record);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", self.plan.id(r.record))?;
        m.serialize_entry("size_bytes", &r.size_bytes)?;
        m.serialize_entry("pass", &r.pass)?;
        m.serialize_entry("rank", &r.rank)?;
        m.serialize_entry("first_detected", &rec.first_detected.to_string())?;
        m.serialize_entry("last_used", &rec.last_used.map(|t| t.to_string()))?;
        m.serialize_entry("freed_after", &r.freed_after)?;
        m.serialize_entry("status", &r.status)?;
        m.end()
    }
}

struct KeptView<'p, 'a> {
    plan: &'p ImagePlan<'a>,
    kept: &'p KeptImage,
}

impl Serialize for KeptView<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let k = self.kept;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", self.plan.id(k.record))?;
        m.serialize_entry("size_bytes", &k.size_bytes)?;
        m.serialize_entry("reason", &k.reason)?;
        if k.reason == ImageKeepReason::TooYoung {
            m.serialize_entry("age", &self.plan.age_of(k.record).to_string())?;
        }
        m.end()
    }
}

impl Serialize for ImagePlan<'_> {
    /// The plan with ids resolved, under the schema tag
    /// `reclaim.kubelet.image-plan/v1`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", IMAGE_PLAN_SCHEMA)?;
        m.serialize_entry("dry_run", &self.dry_run)?;
        m.serialize_entry("entry", &self.entry)?;
        m.serialize_entry("policy", &self.policy)?;
        m.serialize_entry("loop_enabled", &self.loop_enabled)?;
        m.serialize_entry("free_time", &self.free_time.to_string())?;
        m.serialize_entry("began_gc", &self.began_gc.map(|t| t.to_string()))?;
        m.serialize_entry("candidates", &self.candidates)?;
        m.serialize_entry("age_pass_ran", &self.age_pass_ran)?;
        m.serialize_entry("fs", &self.fs)?;
        m.serialize_entry("usage_percent", &self.usage_percent)?;
        m.serialize_entry("amount_to_free", &self.amount_to_free)?;
        m.serialize_entry("bytes_to_free", &self.bytes_to_free)?;
        m.serialize_entry("space_freed", &self.space_freed)?;
        let removals: Vec<RemovalView<'_, '_>> = self
            .removals
            .iter()
            .map(|removal| RemovalView {
                plan: self,
                removal,
            })
            .collect();
        m.serialize_entry("removals", &removals)?;
        let kept: Vec<KeptView<'_, '_>> = self
            .kept
            .iter()
            .map(|kept| KeptView { plan: self, kept })
            .collect();
        m.serialize_entry("kept", &kept)?;
        m.serialize_entry("failures", &self.failures)?;
        m.serialize_entry("error", &self.error)?;
        m.end()
    }
}

impl fmt::Display for ImagePlan<'_> {
    /// A summary and the removals; the alternate form (`{:#}`) also lists
    /// every kept image.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entry = match self.entry {
            ImageGcEntry::DeleteUnusedImages => "DeleteUnusedImages",
            ImageGcEntry::FreeOldImages => "age pass",
            ImageGcEntry::FreeSpace => "space pass",
            ImageGcEntry::GarbageCollect => "GarbageCollect",
        };
        writeln!(
            f,
            "Image GC {} ({entry}) at {}",
            if self.dry_run { "plan" } else { "report" },
            self.free_time
        )?;
        writeln!(f, "policy: {}", self.policy)?;
        if !self.loop_enabled {
            writeln!(
                f,
                "note: the kubelet does not run its image GC loop with high threshold 100 and no MaxAge"
            )?;
        }
        writeln!(
            f,
            "records: {} ({} candidates)",
            self.removals.len() + self.kept.len(),
            self.candidates
        )?;
        let max_age = self.policy.max_age();
        if !max_age.is_zero() {
            writeln!(
                f,
                "age pass: {}",
                if self.age_pass_ran {
                    format!("images unused for more than {max_age} go")
                } else {
                    format!("not yet (the GC must run longer than {max_age})")
                }
            )?;
        }
        if let (Some(fs), Some(usage)) = (self.fs, self.usage_percent) {
            writeln!(
                f,
                "image filesystem: {} available of {}, usage {usage}% (high {}%)",
                fs.available_bytes.unwrap_or(0),
                fs.capacity_bytes.unwrap_or(0),
                self.policy.high_threshold_percent()
            )?;
        }
        if let Some(amount) = self.amount_to_free {
            writeln!(
                f,
                "to free: {amount} bytes (down to {}%)",
                self.policy.low_threshold_percent()
            )?;
        }
        if let Some(freed) = self.space_freed {
            writeln!(f, "space pass freed: {freed} bytes")?;
        }
        let verb = if self.dry_run { "to remove" } else { "removed" };
        writeln!(f, "\nImages {verb}: {}", self.removals.len())?;
        if !self.removals.is_empty() {
            let rows: Vec<Vec<String>> = self
                .removals
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let rec = self.records.record_of(r.record);
                    vec![
                        (i + 1).to_string(),
                        match r.pass {
                            ImagePass::Age => "age",
                            ImagePass::Space => "space",
                        }
                        .to_owned(),
                        self.id(r.record).to_owned(),
                        r.size_bytes.to_string(),
                        rec.last_used
                            .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                        rec.first_detected.to_string(),
                        match r.pass {
                            ImagePass::Age => format!(
                                "unused for {} > {}",
                                idle(self.free_time, rec.last_used),
                                max_age
                            ),
                            ImagePass::Space => format!(
                                "LRU #{}; freed {} so far",
                                r.rank + 1,
                                r.freed_after.unwrap_or(0)
                            ),
                        },
                        r.status.to_string(),
                    ]
                })
                .collect();
            write_table(
                f,
                &[
                    "#",
                    "PASS",
                    "IMAGE",
                    "BYTES",
                    "LAST USED",
                    "FIRST SEEN",
                    "REASON",
                    "STATUS",
                ],
                &rows,
            )?;
        }
        for failure in &self.failures {
            writeln!(
                f,
                "  {} {}: {}",
                failure.call, failure.target, failure.message
            )?;
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for k in &self.kept {
            let name = keep_text(k.reason);
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        let summary: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
        writeln!(f, "\nKept: {} ({})", self.kept.len(), summary.join(", "))?;
        if f.alternate() && !self.kept.is_empty() {
            let rows: Vec<Vec<String>> = self
                .kept
                .iter()
                .map(|k| {
                    let why = match k.reason {
                        ImageKeepReason::TooYoung => format!(
                            "too young ({} < {})",
                            self.age_of(k.record),
                            self.policy.min_age()
                        ),
                        other => keep_text(other).to_owned(),
                    };
                    vec![self.id(k.record).to_owned(), k.size_bytes.to_string(), why]
                })
                .collect();
            write_table(f, &["IMAGE", "BYTES", "WHY KEPT"], &rows)?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

fn keep_text(reason: ImageKeepReason) -> &'static str {
    match reason {
        ImageKeepReason::BelowHighThreshold => "below the high threshold",
        ImageKeepReason::InUse => "in use",
        ImageKeepReason::Pinned => "pinned",
        ImageKeepReason::Stopped => "GC stopped by an error",
        ImageKeepReason::TargetReached => "target reached",
        ImageKeepReason::TooYoung => "too young",
        ImageKeepReason::UsedAtFreeTime => "used at GC time",
        ImageKeepReason::WithinMaxAge => "within MaxAge",
    }
}

/// Time since `last_used` at `free_time`, as Go computes it (a never-used
/// image is unused since Go's zero time, which saturates).
fn idle(free_time: Timestamp, last_used: Option<Timestamp>) -> Duration {
    free_time.saturating_duration_since(last_used.unwrap_or(GO_ZERO_TIME))
}

/// One step an [`ImageCollector`] asks its driver to take.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ImageStep<'a> {
    /// The entry point is over; take the plan with [`ImageCollector::finish`].
    Done,
    /// Read the image filesystem stats and hand them to
    /// [`ImageCollector::record_fs_stats`].
    ReadFsStats,
    /// Remove this image and hand the result to
    /// [`ImageCollector::record_removal`].
    RemoveImage {
        /// The image id.
        id: &'a str,
        /// The pass that removes it.
        pass: ImagePass,
    },
}

// Per-candidate facts, computed once while scanning the records.
const IN_USE: u8 = 1;
const PINNED: u8 = 2;
const USED_AT_FREE_TIME: u8 = 4;
const TOO_YOUNG: u8 = 8;
const OVER_MAX_AGE: u8 = 16;

/// One record in eviction order: a compact sort key and what the passes
/// need, so that the walk never goes back to the records.
#[derive(Clone, Copy, Debug)]
struct Cand {
    /// (last used, first detected) as offsets, compared as a pair.
    key: [u64; 2],
    size: u64,
    record: RecordRef,
    flags: u8,
}

/// [`ImageStep`] before the id is looked up.
#[derive(Clone, Copy, Debug)]
enum Next {
    Done,
    Stats,
    Remove(RecordRef, ImagePass),
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Stage {
    Age,
    Stats,
    Space,
    Done,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Fate {
    Undecided,
    Called,
    Kept(ImageKeepReason),
}

/// Runs one image GC entry point against a runtime, one step at a time.
///
/// Build it with one of the entry-point constructors from records refreshed
/// by [`ImageRecords::detect`] (the kubelet detects at the start of every
/// entry point), then loop on [`ImageCollector::poll`] until
/// [`ImageStep::Done`], and take the plan with [`ImageCollector::finish`].
/// Afterwards drop the removed images' records with
/// [`ImageRecords::forget`].
#[derive(Debug)]
pub struct ImageCollector<'a> {
    records: &'a ImageRecords,
    entry: ImageGcEntry,
    policy: ImagePolicy,
    free_time: Timestamp,
    began_gc: Option<Timestamp>,
    /// Every record in eviction order.
    order: Vec<Cand>,
    fate: Vec<Fate>,
    /// Each position's rank among the candidates (in-use and pinned records
    /// excluded).
    rank: Vec<u32>,
    candidates: u64,
    stage: Stage,
    /// Positions in `order` the current pass walks.
    walk: Vec<u32>,
    cursor: usize,
    pending: bool,
    /// Candidates the age pass kept (the space pass's list).
    after_age: Vec<u32>,
    age_pass_ran: bool,
    errors: Vec<String>,
    fs: Option<ImageFsStats>,
    usage_percent: Option<i64>,
    amount_to_free: Option<i64>,
    bytes_to_free: Option<i64>,
    freed: i64,
    removals: Vec<ImageRemoval>,
    failures: Vec<CallFailure>,
    error: Option<ImageGcError>,
}

impl<'a> ImageCollector<'a> {
    /// `GarbageCollect(beganGC)` at `now`: the age pass, then the stats, then
    /// the space pass if usage reached the high threshold (spec 2.7).
    pub fn garbage_collect(
        records: &'a ImageRecords,
        policy: &ImagePolicy,
        now: Timestamp,
        began_gc: Timestamp,
    ) -> Self {
        let mut c = Self::new(
            ImageGcEntry::GarbageCollect,
            records,
            policy,
            now,
            Some(began_gc),
        );
        c.start_age_pass();
        c
    }

    /// `DeleteUnusedImages` at `now`: every eligible image goes (spec 2.8).
    pub fn delete_unused_images(
        records: &'a ImageRecords,
        policy: &ImagePolicy,
        now: Timestamp,
    ) -> Self {
        let mut c = Self::new(ImageGcEntry::DeleteUnusedImages, records, policy, now, None);
        c.after_age = c.candidate_positions();
        c.start_space_pass(i64::MAX);
        c
    }

    /// The space pass alone with target `bytes_to_free` (spec 2.5).
    pub fn free_space(
        records: &'a ImageRecords,
        policy: &ImagePolicy,
        now: Timestamp,
        bytes_to_free: i64,
    ) -> Self {
        let mut c = Self::new(ImageGcEntry::FreeSpace, records, policy, now, None);
        c.after_age = c.candidate_positions();
        c.start_space_pass(bytes_to_free);
        c
    }

    /// The age pass alone (spec 2.6).
    pub fn free_old_images(
        records: &'a ImageRecords,
        policy: &ImagePolicy,
        now: Timestamp,
        began_gc: Timestamp,
    ) -> Self {
        let mut c = Self::new(
            ImageGcEntry::FreeOldImages,
            records,
            policy,
            now,
            Some(began_gc),
        );
        c.start_age_pass();
        c
    }

    fn new(
        entry: ImageGcEntry,
        records: &'a ImageRecords,
        policy: &ImagePolicy,
        free_time: Timestamp,
        began_gc: Option<Timestamp>,
    ) -> Self {
        let order = eviction_order(records, policy, free_time);
        let mut candidates = 0u32;
        let rank = order
            .iter()
            .map(|c| {
                let r = candidates;
                if c.flags & (IN_USE | PINNED) == 0 {
                    candidates += 1;
                }
                r
            })
            .collect();
        let fate = order
            .iter()
            .map(|c| {
                if c.flags & IN_USE != 0 {
                    Fate::Kept(ImageKeepReason::InUse)
                } else if c.flags & PINNED != 0 {
                    Fate::Kept(ImageKeepReason::Pinned)
                } else {
                    Fate::Undecided
                }
            })
            .collect();
        Self {
            records,
            entry,
            policy: *policy,
            free_time,
            began_gc,
            order,
            fate,
            rank,
            candidates: u64::from(candidates),
            stage: Stage::Done,
            walk: Vec::new(),
            cursor: 0,
            pending: false,
            after_age: Vec::new(),
            age_pass_ran: false,
            errors: Vec::new(),
            fs: None,
            usage_percent: None,
            amount_to_free: None,
            bytes_to_free: None,
            freed: 0,
            removals: Vec::new(),
            failures: Vec::new(),
            error: None,
        }
    }

    fn candidate_positions(&self) -> Vec<u32> {
        (0..self.order.len() as u32)
            .filter(|&i| self.fate[i as usize] == Fate::Undecided)
            .collect()
    }

    fn start_age_pass(&mut self) {
        let max_age = self.policy.max_age();
        let began = self.began_gc.unwrap_or(self.free_time);
        // The kubelet must have run the GC for longer than MaxAge first.
        let runs = !max_age.is_zero() && self.free_time.saturating_duration_since(began) > max_age;
        self.age_pass_ran = runs;
        if runs {
            self.walk = self.candidate_positions();
            self.after_age = Vec::with_capacity(self.walk.len());
            self.cursor = 0;
            self.stage = Stage::Age;
        } else {
            self.after_age = self.candidate_positions();
            self.end_age_pass();
        }
    }

    fn end_age_pass(&mut self) {
        self.walk.clear();
        self.cursor = 0;
        if !self.errors.is_empty() {
            self.error = Some(ImageGcError::AgeDeletion {
                max_age: self.policy.max_age(),
                errors: std::mem::take(&mut self.errors),
            });
            self.stage = Stage::Done;
        } else if self.entry == ImageGcEntry::FreeOldImages {
            self.stage = Stage::Done;
        } else {
            self.stage = Stage::Stats;
        }
    }

    fn start_space_pass(&mut self, bytes_to_free: i64) {
        self.bytes_to_free = Some(bytes_to_free);
        self.walk = std::mem::take(&mut self.after_age);
        self.cursor = 0;
        self.freed = 0;
        self.stage = Stage::Space;
    }

    /// The next step. Until its result is recorded, the same step is
    /// returned again.
    pub fn poll(&mut self) -> ImageStep<'a> {
        match self.next_step() {
            Next::Done => ImageStep::Done,
            Next::Stats => ImageStep::ReadFsStats,
            Next::Remove(record, pass) => ImageStep::RemoveImage {
                id: self.records.id_of(record),
                pass,
            },
        }
    }

    fn next_step(&mut self) -> Next {
        loop {
            match self.stage {
                Stage::Done => return Next::Done,
                Stage::Stats => return Next::Stats,
                Stage::Age | Stage::Space => {
                    let pass = if self.stage == Stage::Age {
                        ImagePass::Age
                    } else {
                        ImagePass::Space
                    };
                    let Some(&i) = self.walk.get(self.cursor) else {
                        if pass == ImagePass::Age {
                            self.end_age_pass();
                        } else {
                            self.end_space_pass();
                        }
                        continue;
                    };
                    let c = self.order[i as usize];
                    if self.pending {
                        return Next::Remove(c.record, pass);
                    }
                    let kept = match pass {
                        // Strictly longer than MaxAge; MinAge is not consulted.
                        ImagePass::Age if c.flags & OVER_MAX_AGE == 0 => {
                            self.after_age.push(i);
                            true
                        }
                        ImagePass::Age => false,
                        ImagePass::Space if c.flags & USED_AT_FREE_TIME != 0 => {
                            self.fate[i as usize] = Fate::Kept(ImageKeepReason::UsedAtFreeTime);
                            true
                        }
                        ImagePass::Space if c.flags & TOO_YOUNG != 0 => {
                            self.fate[i as usize] = Fate::Kept(ImageKeepReason::TooYoung);
                            true
                        }
                        ImagePass::Space => false,
                    };
                    if kept {
                        self.cursor += 1;
                    } else {
                        self.pending = true;
                        self.fate[i as usize] = Fate::Called;
                        self.removals.push(ImageRemoval {
                            record: c.record,
                            size_bytes: c.size,
                            pass,
                            rank: self.rank[i as usize],
                            freed_after: None,
                            status: CallStatus::NotAttempted,
                        });
                    }
                }
            }
        }
    }

    /// Records the result of the [`ImageStep::RemoveImage`] last returned by
    /// [`ImageCollector::poll`].
    ///
    /// # Panics
    ///
    /// If no removal is outstanding.
    pub fn record_removal(&mut self, result: Result<(), CallError>) {
        assert!(
            self.pending && matches!(self.stage, Stage::Age | Stage::Space),
            "ImageCollector::record_removal called without an outstanding removal"
        );
        self.pending = false;
        let i = self.walk[self.cursor];
        self.cursor += 1;
        let space = self.stage == Stage::Space;
        let removal = self.removals.last_mut().expect("a removal is outstanding");
        match result {
            Ok(()) => {
                removal.status = CallStatus::Succeeded;
                if space {
                    self.freed = self.freed.wrapping_add(self.order[i as usize].size as i64);
                    removal.freed_after = Some(self.freed);
                    // The target is checked after the removal, so a target of
                    // zero or less still removes one image.
                    if self.freed >= self.bytes_to_free.unwrap_or(i64::MAX) {
                        self.end_space_pass();
                    }
                }
            }
            Err(e) => {
                removal.status = CallStatus::Failed;
                if space {
                    removal.freed_after = Some(self.freed);
                } else {
                    // The age pass keeps a failed image in its list.
                    self.after_age.push(i);
                }
                self.failures.push(CallFailure {
                    call: "RemoveImage",
                    target: self.records.id_of(self.order[i as usize].record).to_owned(),
                    message: e.message.clone(),
                });
                self.errors.push(e.message);
            }
        }
    }

    /// Records the image filesystem stats asked for by
    /// [`ImageStep::ReadFsStats`], and computes usage and target (spec 2.7,
    /// steps 3-7).
    ///
    /// # Panics
    ///
    /// If the collector did not ask for stats.
    pub fn record_fs_stats(&mut self, result: Result<ImageFsStats, CallError>) {
        assert!(
            self.stage == Stage::Stats,
            "ImageCollector::record_fs_stats called while not waiting for stats"
        );
        let stats = match result {
            Ok(stats) => stats,
            Err(e) => {
                self.error = Some(ImageGcError::Stats { message: e.message });
                self.stage = Stage::Done;
                return;
            }
        };
        self.fs = Some(stats);
        // Go converts the unsigned stats to int64 and computes in int64.
        let capacity = stats.capacity_bytes.unwrap_or(0) as i64;
        let mut available = stats.available_bytes.unwrap_or(0) as i64;
        if available > capacity {
            available = capacity;
        }
        if capacity == 0 {
            self.error = Some(ImageGcError::InvalidCapacity);
            self.stage = Stage::Done;
            return;
        }
        let usage = usage_percent(capacity, available);
        self.usage_percent = Some(usage);
        if usage >= i64::from(self.policy.high_threshold_percent()) {
            let amount = amount_to_free(capacity, available, self.policy.low_threshold_percent());
            self.amount_to_free = Some(amount);
            self.start_space_pass(amount);
        } else {
            for i in std::mem::take(&mut self.after_age) {
                self.fate[i as usize] = Fate::Kept(ImageKeepReason::BelowHighThreshold);
            }
            self.stage = Stage::Done;
        }
    }

    fn end_space_pass(&mut self) {
        // Candidates after an early stop were never visited.
        for &i in &self.walk[self.cursor.min(self.walk.len())..] {
            if self.fate[i as usize] == Fate::Undecided {
                self.fate[i as usize] = Fate::Kept(ImageKeepReason::TargetReached);
            }
        }
        self.walk.clear();
        self.cursor = 0;
        self.stage = Stage::Done;
        if !self.errors.is_empty() {
            self.error = Some(ImageGcError::Deletion {
                bytes_to_free: self.bytes_to_free.unwrap_or(0),
                freed: self.freed,
                errors: std::mem::take(&mut self.errors),
            });
        } else if let (ImageGcEntry::GarbageCollect, Some(amount)) =
            (self.entry, self.amount_to_free)
            && self.freed < amount
        {
            self.error = Some(ImageGcError::InsufficientSpace {
                usage_percent: self.usage_percent.unwrap_or(0),
                capacity: self.fs.and_then(|f| f.capacity_bytes).unwrap_or(0) as i64,
                freed: self.freed,
                amount_to_free: amount,
            });
        }
    }

    /// Ends the run and returns the plan. Steps never taken leave their
    /// images kept (reason [`ImageKeepReason::Stopped`]) or their removal
    /// [`CallStatus::NotAttempted`].
    pub fn finish(self) -> ImagePlan<'a> {
        let undecided = match self.entry {
            ImageGcEntry::FreeOldImages => ImageKeepReason::WithinMaxAge,
            _ => ImageKeepReason::Stopped,
        };
        let mut kept = Vec::with_capacity(self.order.len() - self.removals.len());
        for (c, fate) in self.order.iter().zip(&self.fate) {
            let reason = match fate {
                Fate::Called => continue,
                Fate::Kept(reason) => *reason,
                Fate::Undecided => undecided,
            };
            kept.push(KeptImage {
                record: c.record,
                size_bytes: c.size,
                reason,
            });
        }
        let space_ran = self.bytes_to_free.is_some();
        ImagePlan {
            records: self.records,
            dry_run: false,
            entry: self.entry,
            policy: self.policy,
            loop_enabled: self.policy.loop_enabled(),
            free_time: self.free_time,
            began_gc: self.began_gc,
            candidates: self.candidates,
            age_pass_ran: self.age_pass_ran,
            fs: self.fs,
            usage_percent: self.usage_percent,
            amount_to_free: self.amount_to_free,
            bytes_to_free: self.bytes_to_free,
            space_freed: space_ran.then_some(self.freed),
            removals: self.removals,
            kept,
            failures: self.failures,
            error: self.error,
        }
    }

    /// Runs the entry point to the end: `remove` performs each removal,
    /// `fs_stats` reads the image filesystem stats when asked.
    pub fn run_with(
        mut self,
        mut remove: impl FnMut(&str) -> Result<(), CallError>,
        mut fs_stats: impl FnMut() -> Result<ImageFsStats, CallError>,
    ) -> ImagePlan<'a> {
        loop {
            match self.poll() {
                ImageStep::Done => return self.finish(),
                ImageStep::ReadFsStats => {
                    let stats = fs_stats();
                    self.record_fs_stats(stats);
                }
                ImageStep::RemoveImage { id, .. } => {
                    let result = remove(id);
                    self.record_removal(result);
                }
            }
        }
    }

    /// Marks every removal as succeeded without making it: the dry run with
    /// the stats the image filesystem will report after the age pass.
    fn assume_success(mut self, fs: ImageFsStats) -> ImagePlan<'a> {
        loop {
            match self.next_step() {
                Next::Done => break,
                Next::Stats => self.record_fs_stats(Ok(fs)),
                Next::Remove(..) => self.record_removal(Ok(())),
            }
        }
        let mut plan = self.finish();
        plan.dry_run = true;
        plan
    }
}

/// The kubelet's usage percent: `100 - available * 100 / capacity` in
/// 64-bit integers. The subtracted part truncates, so usage rounds up
/// (84.9 % used counts as 85). Overflow wraps, as in Go.
pub(crate) fn usage_percent(capacity: i64, available: i64) -> i64 {
    100i64.wrapping_sub(available.wrapping_mul(100).wrapping_div(capacity))
}

/// The kubelet's space target: `capacity * (100 - low) / 100 - available`,
/// multiplication before the truncating division, in 64-bit integers.
pub(crate) fn amount_to_free(capacity: i64, available: i64, low_threshold_percent: i32) -> i64 {
    capacity
        .wrapping_mul(100 - i64::from(low_threshold_percent))
        .wrapping_div(100)
        .wrapping_sub(available)
}

/// Every record in eviction order (spec 2.4): last used ascending (never
/// used first, as Go's zero time), then first detected ascending, then id
/// ascending. Upstream's sort is unstable and stops at first detected; the
/// id is the documented deterministic tie-break.
///
/// In-use and pinned records are sorted too (they only ever appear as
/// kept), and each record's flags say what the passes will decide.
fn eviction_order(records: &ImageRecords, policy: &ImagePolicy, free_time: Timestamp) -> Vec<Cand> {
    let mut cands = Vec::with_capacity(records.len());
    let (mut lu_min, mut lu_max) = (i128::MAX, i128::MIN);
    let (mut fd_min, mut fd_max) = (i128::MAX, i128::MIN);
    let zero = GO_ZERO_TIME.unix_nanos();
    let mut exotic = false;
    records.for_each_slot(|record, r, in_use| {
        let mut flags = 0;
        if in_use {
            flags |= IN_USE;
        }
        if r.pinned {
            flags |= PINNED;
        }
        let last_used = r.last_used.unwrap_or(GO_ZERO_TIME);
        if last_used >= free_time {
            flags |= USED_AT_FREE_TIME;
        }
        if free_time.saturating_duration_since(r.first_detected) < policy.min_age() {
            flags |= TOO_YOUNG;
        }
        if free_time.saturating_duration_since(last_used) > policy.max_age() {
            flags |= OVER_MAX_AGE;
        }
        let lu = last_used.unix_nanos();
        if lu > zero {
            lu_min = lu_min.min(lu);
            lu_max = lu_max.max(lu);
        } else if lu < zero {
            exotic = true;
        }
        let fd = r.first_detected.unix_nanos();
        fd_min = fd_min.min(fd);
        fd_max = fd_max.max(fd);
        cands.push(Cand {
            key: [0, 0],
            size: r.size_bytes,
            record,
            flags,
        });
    });
    // Compact keys: never used (Go's zero time) is 0, a real last-used time
    // its offset from the smallest plus one; first detected its offset.
    let fits =
        |min: i128, max: i128| min > max || u64::try_from(max - min).is_ok_and(|d| d < u64::MAX);
    if !exotic && fits(lu_min, lu_max) && fits(fd_min, fd_max) {
        for c in &mut cands {
            let r = records.record_of(c.record);
            let lu = r.last_used.unwrap_or(GO_ZERO_TIME).unix_nanos();
            c.key[0] = if lu > zero {
                (lu - lu_min) as u64 + 1
            } else {
                0
            };
            c.key[1] = (r.first_detected.unix_nanos() - fd_min) as u64;
        }
        cands.sort_unstable_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| records.cmp_ids(a.record, b.record))
        });
    } else {
        // Instants centuries apart: compare the full values.
        let full = |c: &Cand| {
            let r = records.record_of(c.record);
            (r.last_used.unwrap_or(GO_ZERO_TIME), r.first_detected)
        };
        cands.sort_unstable_by(|a, b| {
            full(a)
                .cmp(&full(b))
                .then_with(|| records.cmp_ids(a.record, b.record))
        });
    }
    cands
}

/// The image GC's dry run of `GarbageCollect` (spec 2.7): what the kubelet
/// would remove at `now` if every removal succeeded and the image
/// filesystem reported `fs` after the age pass.
///
/// `records` must be refreshed for `now` (see [`ImageRecords::detect`]),
/// which also sets which images are in use. Pure and deterministic: the
/// plan does not depend on the order records were inserted in.
pub fn plan_images<'a>(
    records: &'a ImageRecords,
    policy: &ImagePolicy,
    now: Timestamp,
    began_gc: Timestamp,
    fs: ImageFsStats,
) -> ImagePlan<'a> {
    ImageCollector::garbage_collect(records, policy, now, began_gc).assume_success(fs)
}

/// Prepares the dry run for a whole [`ImageSnapshot`] at `now`: restores
/// its saved records (or starts with none) and runs a detection at `now`.
/// Plan on the result with [`plan_images`], using the snapshot's stats
/// (missing: capacity 0) and `gc_started_at` (missing: `now`); see
/// [`ImageSnapshot::plan_inputs`].
pub fn records_from_snapshot(snapshot: &ImageSnapshot, now: Timestamp) -> ImageRecords {
    let mut records = snapshot.records.clone().unwrap_or_default();
    records.detect(&snapshot.images, &snapshot.containers, now, now);
    records
}

impl ImageSnapshot {
    /// The `began_gc` and stats a dry run of this snapshot uses at `now`:
    /// `gc_started_at` (or `now`) and `fs` (or no stats, which the GC
    /// reports as an invalid capacity of 0).
    pub fn plan_inputs(&self, now: Timestamp) -> (Timestamp, ImageFsStats) {
        (
            self.gc_started_at.unwrap_or(now),
            self.fs.unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_rounds_up_and_target_truncates() {
        // Spec 2.7 steps 6 and 7.
        assert_eq!(usage_percent(1000, 151), 85); // 84.9 % used counts as 85
        assert_eq!(usage_percent(1000, 150), 85);
        assert_eq!(usage_percent(1000, 600), 40);
        assert_eq!(usage_percent(1000, 0), 100);
        assert_eq!(amount_to_free(1000, 50, 80), 150);
        assert_eq!(amount_to_free(1001, 0, 80), 200);
        // With low == high the target can be negative.
        assert_eq!(amount_to_free(1000, 160, 85), -10);
    }

    #[test]
    fn capacity_format_matches_the_kubelet() {
        assert_eq!(format_capacity(0), "0 B");
        assert_eq!(format_capacity(1000), "1000 B");
        assert_eq!(format_capacity(1023), "1023 B");
        assert_eq!(format_capacity(1024), "1.0 KiB");
        assert_eq!(format_capacity(1_048_575), "1024.0 KiB");
        assert_eq!(format_capacity(10 * (1 << 30)), "10.0 GiB");
        assert_eq!(format_capacity(28_346_784_153), "26.4 GiB");
        assert_eq!(format_capacity(2 << 50), "2048.0 TiB");
    }

    #[test]
    fn never_used_is_idle_for_the_saturated_maximum() {
        let now = Timestamp::from_unix_secs(1_000_000);
        assert_eq!(idle(now, None), Duration::MAX);
        assert_eq!(
            idle(now, Some(Timestamp::from_unix_secs(999_000))),
            Duration::from_secs(1000)
        );
    }
}
