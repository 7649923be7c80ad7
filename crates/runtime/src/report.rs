//! What one collector run did: the [`Report`] value and its parts.
//!
//! A report is plain data, serializable to JSON under the schema tag
//! [`REPORT_SCHEMA`] (bump the version when a field changes meaning), and
//! printable for people through `Display`.

use std::fmt;

use reclaim_kubelet::{
    ContainerKeepReason, EvictionStep, ImageKeepReason, ImagePass, PodLogKeepReason,
    SandboxKeepReason, SandboxReason,
};
use reclaim_model::{ByteSize, Duration, Id, Timestamp};
use reclaim_policy::prune::{DeletionReason, KeepBytes, KeepReason};
use serde::{Serialize, Serializer};

use crate::store::{RemoveOutcome, StopOutcome};

/// The schema tag of [`Report`]'s JSON form.
pub const REPORT_SCHEMA: &str = "reclaim.runtime.report/v1";

/// What one collector run did.
///
/// Invariants: every item the run listed (after any selector) appears
/// exactly once, either in `deletions` (whatever the outcome) or, when
/// skips are itemized, in `skips`; `skipped` counts the latter either way.
/// `bytes_freed` is the sum over deletions whose outcome is
/// [`Outcome::Removed`] of the reclaimed bytes (or the item's listed size
/// when the engine did not say), and the per-pass figures add up to it.
/// `deletions` is in call order.
#[must_use]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The format, [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// The collector that ran.
    pub collector: CollectorKind,
    /// True when nothing was removed on purpose: deletions are what would
    /// have been attempted ([`Outcome::Planned`]).
    pub dry_run: bool,
    /// Wall-clock time at the start; the planners' `now`.
    pub started_at: Timestamp,
    /// Wall-clock time at the end.
    pub finished_at: Timestamp,
    /// Run time on the monotonic clock.
    #[serde(serialize_with = "go_duration")]
    pub duration: Duration,
    /// How the run ended.
    pub status: RunStatus,
    /// Bytes given back by successful removals.
    pub bytes_freed: u64,
    /// One entry per rule (build cache) or pass (kubelet collectors).
    pub passes: Vec<PassReport>,
    /// Every removal the run attempted (or planned), in call order.
    pub deletions: Vec<ReportDeletion>,
    /// Number of listed items left alone.
    pub skipped: u64,
    /// The items left alone, with the reason, when the collector itemizes
    /// them (the default); empty otherwise.
    pub skips: Vec<Skip>,
    /// Failures: listings and statistics that could not be read, removals
    /// that failed, and the errors upstream's GC would return.
    pub errors: Vec<ReportError>,
    /// Build cache only: how many times the collector re-planned after the
    /// engine refused a record.
    pub replans: u32,
}

impl Report {
    /// An empty report of a run of `collector` starting at `started_at`.
    pub(crate) fn new(collector: CollectorKind, dry_run: bool, started_at: Timestamp) -> Self {
        Self {
            schema: REPORT_SCHEMA,
            collector,
            dry_run,
            started_at,
            finished_at: started_at,
            duration: Duration::ZERO,
            status: RunStatus::Succeeded,
            bytes_freed: 0,
            passes: Vec::new(),
            deletions: Vec::new(),
            skipped: 0,
            skips: Vec::new(),
            errors: Vec::new(),
            replans: 0,
        }
    }

    /// Ids of the items removed (outcome [`Outcome::Removed`] or
    /// [`Outcome::AlreadyGone`]), in call order.
    pub fn removed_ids(&self) -> impl Iterator<Item = &Id> {
        self.deletions
            .iter()
            .filter(|d| d.outcome.is_gone())
            .map(|d| &d.id)
    }

    /// Ids of the items a dry run would remove, in call order.
    pub fn planned_ids(&self) -> impl Iterator<Item = &Id> {
        self.deletions
            .iter()
            .filter(|d| d.outcome == Outcome::Planned)
            .map(|d| &d.id)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize to JSON")
    }
}

/// The collector a report comes from.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CollectorKind {
    /// BuildKit's build-cache GC.
    BuildCache,
    /// The kubelet's container GC (containers, sandboxes, pod logs).
    Containers,
    /// The kubelet's image GC.
    Images,
}

impl CollectorKind {
    /// `build-cache`, `containers` or `images`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BuildCache => "build-cache",
            Self::Containers => "containers",
            Self::Images => "images",
        }
    }
}

impl fmt::Display for CollectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// The run stopped early: a listing failed, a removal failed fatally,
    /// or the engine failed transiently too many times in a row. Removals
    /// made before stand.
    Aborted,
    /// The run went to the end, but some calls failed or upstream's GC
    /// would return an error (for example the kubelet's "insufficient free
    /// disk space").
    Failed,
    /// The run went to the end without errors.
    Succeeded,
}

/// The kind of item a deletion or skip is about.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemKind {
    /// A BuildKit cache record.
    CacheRecord,
    /// A container.
    Container,
    /// An image.
    Image,
    /// A pod log directory (the id is its entry name).
    PodLogDir,
    /// A pod sandbox.
    Sandbox,
}

/// One removal a run attempted or, in a dry run, planned.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportDeletion {
    /// What kind of item.
    pub item: ItemKind,
    /// The item's id.
    pub id: Id,
    /// Index into [`Report::passes`] of the rule or pass that chose it.
    pub pass: usize,
    /// The item's size as listed, if the engine reports sizes for it.
    pub bytes: Option<u64>,
    /// Why the planner chose it.
    pub reason: Reason,
    /// What happened.
    pub outcome: Outcome,
}

impl ReportDeletion {
    /// Bytes this deletion gave back: the reclaimed bytes of a successful
    /// removal (or the listed size if the engine did not say), else 0.
    pub fn bytes_freed(&self) -> u64 {
        match self.outcome {
            Outcome::Removed { reclaimed } => reclaimed.or(self.bytes).unwrap_or(0),
            _ => 0,
        }
    }
}

/// What happened to one planned removal.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The item was already gone.
    AlreadyGone,
    /// The removal failed and the collector stopped.
    Fatal {
        /// The engine's error text.
        message: String,
    },
    /// The engine refused: in use, pinned, running, or being removed.
    InUse {
        /// The engine's explanation.
        message: String,
    },
    /// The run ended before this call (a fatal error came first).
    NotAttempted,
    /// A dry run: the removal would be attempted.
    Planned,
    /// The item was removed.
    Removed {
        /// Bytes given back, if the engine said.
        reclaimed: Option<u64>,
    },
    /// The stop that must precede the removal failed or was refused, so the
    /// removal was not attempted.
    StopFailed {
        /// The engine's text.
        message: String,
    },
    /// The removal failed for now.
    Transient {
        /// The engine's error text.
        message: String,
    },
}

impl Outcome {
    /// True for [`Outcome::Removed`] and [`Outcome::AlreadyGone`].
    pub const fn is_gone(&self) -> bool {
        matches!(self, Self::Removed { .. } | Self::AlreadyGone)
    }

    /// A short lowercase name for tables and metrics labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::AlreadyGone => "already_gone",
            Self::Fatal { .. } => "fatal",
            Self::InUse { .. } => "in_use",
            Self::NotAttempted => "not_attempted",
            Self::Planned => "planned",
            Self::Removed { .. } => "removed",
            Self::StopFailed { .. } => "stop_failed",
            Self::Transient { .. } => "transient",
        }
    }
}

impl From<RemoveOutcome> for Outcome {
    fn from(outcome: RemoveOutcome) -> Self {
        match outcome {
            RemoveOutcome::AlreadyGone => Self::AlreadyGone,
            RemoveOutcome::Fatal { message } => Self::Fatal { message },
            RemoveOutcome::InUse { message } => Self::InUse { message },
            RemoveOutcome::Removed { reclaimed } => Self::Removed { reclaimed },
            RemoveOutcome::Transient { message } => Self::Transient { message },
        }
    }
}

impl From<StopOutcome> for Outcome {
    /// The outcome of a removal whose preceding stop ended this way: a
    /// successful stop is not an outcome of the removal, so it maps to
    /// [`Outcome::NotAttempted`].
    fn from(outcome: StopOutcome) -> Self {
        match outcome {
            StopOutcome::AlreadyGone => Self::AlreadyGone,
            StopOutcome::Fatal { message } => Self::Fatal { message },
            StopOutcome::InUse { message } | StopOutcome::Transient { message } => {
                Self::StopFailed { message }
            }
            StopOutcome::Stopped => Self::NotAttempted,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fatal { message }
            | Self::InUse { message }
            | Self::StopFailed { message }
            | Self::Transient { message } => write!(f, "{}: {message}", self.as_str()),
            Self::Removed {
                reclaimed: Some(bytes),
            } => write!(f, "removed ({bytes} bytes)"),
            _ => f.write_str(self.as_str()),
        }
    }
}

/// Why a planner chose an item, in the planner's own terms.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "planner", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// BuildKit's prune planner.
    BuildCache {
        /// Index of the rule in the policy.
        rule: usize,
        /// How the rule chose it (batch wave, rank, or alternative order).
        reason: DeletionReason,
    },
    /// The kubelet's container sub-pass.
    Container {
        /// The eviction step.
        step: EvictionStep,
        /// Position in its evict unit, newest first.
        rank: u32,
    },
    /// The kubelet's image GC.
    Image {
        /// The age or space pass.
        pass: ImagePass,
        /// Position in the eviction order among the candidates.
        rank: u32,
    },
    /// The kubelet's pod log sub-pass: the pod's content is removable.
    PodLogDir {
        /// The pod UID parsed from the directory name.
        pod_uid: String,
    },
    /// The kubelet's sandbox sub-pass.
    Sandbox {
        /// Why the sandbox goes.
        reason: SandboxReason,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuildCache { rule, reason } => match reason {
                DeletionReason::Batch { wave } => write!(f, "rule {rule}, batch wave {wave}"),
                DeletionReason::Ranked {
                    total_before,
                    score,
                } => write!(
                    f,
                    "rule {rule}, total {total_before}, score {} = {}/{} + {}/{}",
                    score.score,
                    score.last_used_rank,
                    score.last_used_max,
                    score.usage_rank,
                    score.usage_max
                ),
                DeletionReason::Ordered {
                    total_before,
                    ordering,
                    key,
                } => write!(
                    f,
                    "rule {rule}, total {total_before}, lowest {ordering:?} key {key}"
                ),
                other => write!(f, "rule {rule}, {other:?}"),
            },
            Self::Container { step, rank } => write!(f, "{}, rank {rank}", step.as_str()),
            Self::Image { pass, rank } => {
                let pass = match pass {
                    ImagePass::Age => "age pass",
                    ImagePass::Space => "space pass",
                };
                write!(f, "{pass}, rank {rank}")
            }
            Self::PodLogDir { pod_uid } => write!(f, "pod {pod_uid} removable"),
            Self::Sandbox { reason } => match reason {
                SandboxReason::NotNewest => f.write_str("not the newest sandbox of its pod"),
                SandboxReason::PodRemovable => f.write_str("pod removable"),
            },
        }
    }
}

/// An item a run left alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skip {
    /// What kind of item.
    pub item: ItemKind,
    /// The item's id.
    pub id: Id,
    /// The item's size as listed, if the engine reports sizes for it.
    pub bytes: Option<u64>,
    /// Why it stays.
    pub reason: SkipReason,
}

/// Why an item stays, in the planner's own terms.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "planner", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// BuildKit's prune planner (rule indexes refer to the whole policy).
    BuildCache(KeepReason),
    /// The kubelet's container sub-pass.
    Container(ContainerKeepReason),
    /// The kubelet's image GC.
    Image(ImageKeepReason),
    /// The kubelet's pod log sub-pass.
    PodLogDir(PodLogKeepReason),
    /// The kubelet's sandbox sub-pass.
    Sandbox(SandboxKeepReason),
}

/// What one rule (build cache) or pass (kubelet collectors) did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PassReport {
    /// `rule 0`, `rule 1`, … for the build cache; `containers`,
    /// `sandboxes`, `pod logs` for the container GC; `age`, `space` for the
    /// image GC.
    pub name: String,
    /// Build cache: the rule's keep-bytes arithmetic, from the last plan
    /// that ran the rule (`None` if no plan reached it).
    pub keep: Option<KeepBytes>,
    /// Image space pass: the bytes it had to free.
    pub target: Option<i64>,
    /// Removals attempted (or planned, in a dry run).
    pub planned: u64,
    /// Removals that left the item gone.
    pub removed: u64,
    /// Bytes those removals gave back.
    pub bytes_freed: u64,
}

impl PassReport {
    pub(crate) fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A failure during a run.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct ReportError {
    /// What failed: a call (`ListImages`, `RemoveCacheRecord`, …) or
    /// `Plan` for an error upstream's GC itself returns.
    pub call: &'static str,
    /// The item the call was about, if any.
    pub target: Option<String>,
    /// The text: the engine's, or upstream's message.
    pub message: String,
    /// Whether the error stopped the run.
    pub fatal: bool,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(f, "{} {target}: {}", self.call, self.message),
            None => write!(f, "{}: {}", self.call, self.message),
        }
    }
}

impl fmt::Display for Report {
    /// A summary line, one line per pass, and one per deletion and error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            RunStatus::Aborted => "aborted",
            RunStatus::Failed => "failed",
            RunStatus::Succeeded => "succeeded",
        };
        writeln!(
            f,
            "{} GC{} at {}: {status}; {} deletions, {} freed ({} bytes), {} kept, {} errors, took {}",
            self.collector,
            if self.dry_run { " (dry run)" } else { "" },
            self.started_at,
            self.deletions.len(),
            ByteSize(self.bytes_freed),
            self.bytes_freed,
            self.skipped,
            self.errors.len(),
            self.duration
        )?;
        for pass in &self.passes {
            write!(
                f,
                "  {}: {} planned, {} removed, {} bytes",
                pass.name, pass.planned, pass.removed, pass.bytes_freed
            )?;
            if let Some(keep) = pass.keep {
                write!(f, "; keep {} of total {}", keep.keep_bytes, keep.total)?;
            }
            if let Some(target) = pass.target {
                write!(f, "; target {target}")?;
            }
            writeln!(f)?;
        }
        for d in &self.deletions {
            let bytes = d.bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default();
            writeln!(f, "  delete {}{bytes}: {} -> {}", d.id, d.reason, d.outcome)?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

fn go_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_count_reclaimed_bytes_or_their_size() {
        let mut d = ReportDeletion {
            item: ItemKind::Image,
            id: Id::new("sha256:a"),
            pass: 0,
            bytes: Some(100),
            reason: Reason::Image {
                pass: ImagePass::Space,
                rank: 0,
            },
            outcome: Outcome::Removed { reclaimed: None },
        };
        assert_eq!(d.bytes_freed(), 100);
        d.outcome = Outcome::Removed {
            reclaimed: Some(40),
        };
        assert_eq!(d.bytes_freed(), 40);
        d.outcome = Outcome::AlreadyGone;
        assert_eq!(d.bytes_freed(), 0);
        assert!(d.outcome.is_gone());
    }

    #[test]
    fn reports_serialize_under_the_schema_tag() {
        let mut report = Report::new(
            CollectorKind::Images,
            true,
            Timestamp::from_unix_secs(1_700_000_000),
        );
        report.duration = Duration::from_nanos(1_500_000);
        report.deletions.push(ReportDeletion {
            item: ItemKind::Image,
            id: Id::new("sha256:a"),
            pass: 0,
            bytes: Some(7),
            reason: Reason::Image {
                pass: ImagePass::Age,
                rank: 3,
            },
            outcome: Outcome::Planned,
        });
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["schema"], REPORT_SCHEMA);
        assert_eq!(json["collector"], "images");
        assert_eq!(json["duration"], "1.5ms");
        assert_eq!(json["started_at"], "2023-11-14T22:13:20Z");
        let d = &json["deletions"][0];
        assert_eq!(d["outcome"]["status"], "planned");
        assert_eq!(d["reason"]["planner"], "image");
        assert_eq!(d["reason"]["detail"]["pass"], "age");
        assert_eq!(report.planned_ids().count(), 1);
        let text = report.to_string();
        assert!(text.starts_with("images GC (dry run) at 2023-11-14T22:13:20Z"));
        assert!(text.contains("delete sha256:a (7 bytes): age pass, rank 3 -> planned"));
    }

    #[test]
    fn stop_outcomes_become_removal_outcomes() {
        assert_eq!(
            Outcome::from(StopOutcome::InUse {
                message: "running".into()
            }),
            Outcome::StopFailed {
                message: "running".into()
            }
        );
        assert_eq!(
            Outcome::from(StopOutcome::AlreadyGone),
            Outcome::AlreadyGone
        );
    }
}
