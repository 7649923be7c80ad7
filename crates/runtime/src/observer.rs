//! Hooks for metrics and logs: an [`Observer`] sees every run as it
//! happens.

use tracing::{debug, error, info, warn};

use crate::report::{CollectorKind, Report, ReportDeletion, ReportError, RunStatus, Skip};

/// Called by collectors while they run, so that embedders can count, log
/// or trace without parsing reports.
///
/// Every method has an empty default; implement the ones you need. Calls
/// come in this order: [`Observer::run_started`], then
/// [`Observer::deletion`], [`Observer::skip`] and [`Observer::error`] as
/// the run produces them (deletions once their outcome is known, skips once
/// the plan is final), then [`Observer::run_finished`] with the whole
/// report. Observers must not block for long: the collector waits for
/// them.
pub trait Observer: Send + Sync {
    /// A run of `collector` starts.
    fn run_started(&self, collector: CollectorKind, dry_run: bool) {
        let _ = (collector, dry_run);
    }

    /// A removal was attempted (or, in a dry run, planned).
    fn deletion(&self, collector: CollectorKind, deletion: &ReportDeletion) {
        let _ = (collector, deletion);
    }

    /// An item stays. Called for every kept item, whether or not the
    /// collector itemizes skips in its report.
    fn skip(&self, collector: CollectorKind, skip: &Skip) {
        let _ = (collector, skip);
    }

    /// Something failed.
    fn error(&self, collector: CollectorKind, error: &ReportError) {
        let _ = (collector, error);
    }

    /// The run is over.
    fn run_finished(&self, report: &Report) {
        let _ = report;
    }
}

impl<O: Observer + ?Sized> Observer for &O {
    fn run_started(&self, collector: CollectorKind, dry_run: bool) {
        (**self).run_started(collector, dry_run);
    }

    fn deletion(&self, collector: CollectorKind, deletion: &ReportDeletion) {
        (**self).deletion(collector, deletion);
    }

    fn skip(&self, collector: CollectorKind, skip: &Skip) {
        (**self).skip(collector, skip);
    }

    fn error(&self, collector: CollectorKind, error: &ReportError) {
        (**self).error(collector, error);
    }

    fn run_finished(&self, report: &Report) {
        (**self).run_finished(report);
    }
}

/// An observer that does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// An observer that logs through the `tracing` crate, with upstream's
/// messages where upstream has them.
///
/// - Build cache: `gc cleaned up <N> bytes` at DEBUG level when a run freed
///   N > 0 bytes, and `gc error: <error>` at ERROR level for every error,
///   as BuildKit's controller logs them.
/// - Containers: `Container garbage collection failed` at ERROR level (with
///   the errors as a field) when a run did not succeed, else
///   `Container garbage collection succeeded` at DEBUG level, as the
///   kubelet's loop logs them.
/// - Images: `Image garbage collection failed` at ERROR level, else
///   `Image garbage collection succeeded` at DEBUG level. (The kubelet words
///   its first and repeated failures differently; this observer keeps no
///   history between runs.)
/// - Every deletion at DEBUG level, with its id, reason and outcome as
///   fields; refusals and failures at INFO and WARN level.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn run_started(&self, collector: CollectorKind, dry_run: bool) {
        debug!(collector = collector.as_str(), dry_run, "gc run starts");
    }

    fn deletion(&self, collector: CollectorKind, deletion: &ReportDeletion) {
        let outcome = deletion.outcome.as_str();
        match &deletion.outcome {
            crate::Outcome::InUse { message } | crate::Outcome::StopFailed { message } => info!(
                collector = collector.as_str(),
                id = %deletion.id,
                reason = %deletion.reason,
                outcome,
                message = message.as_str(),
                "gc skipped an item the engine refused"
            ),
            crate::Outcome::Fatal { message } | crate::Outcome::Transient { message } => warn!(
                collector = collector.as_str(),
                id = %deletion.id,
                reason = %deletion.reason,
                outcome,
                message = message.as_str(),
                "gc removal failed"
            ),
            _ => debug!(
                collector = collector.as_str(),
                id = %deletion.id,
                reason = %deletion.reason,
                outcome,
                bytes = deletion.bytes,
                "gc deletion"
            ),
        }
    }

    fn error(&self, collector: CollectorKind, e: &ReportError) {
        if collector == CollectorKind::BuildCache {
            error!(
                call = e.call,
                target = e.target.as_deref(),
                fatal = e.fatal,
                "gc error: {}",
                e.message
            );
        }
    }

    fn run_finished(&self, report: &Report) {
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        match report.collector {
            CollectorKind::BuildCache => {
                if report.bytes_freed > 0 {
                    debug!("gc cleaned up {} bytes", report.bytes_freed);
                }
            }
            CollectorKind::Containers => {
                if report.status == RunStatus::Succeeded {
                    debug!("Container garbage collection succeeded");
                } else {
                    error!(errors = ?errors, "Container garbage collection failed");
                }
            }
            CollectorKind::Images => {
                if report.status == RunStatus::Succeeded {
                    debug!("Image garbage collection succeeded");
                } else {
                    error!(errors = ?errors, "Image garbage collection failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use reclaim_model::{Id, Timestamp};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id as SpanId, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;
    use crate::report::{ItemKind, Outcome, Reason};

    /// A subscriber that keeps every event's level and message.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<(Level, String)>>>);

    struct Message<'a>(&'a mut String);

    impl Visit for Message<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> SpanId {
            SpanId::from_u64(1)
        }
        fn record(&self, _: &SpanId, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &SpanId, _: &SpanId) {}
        fn event(&self, event: &Event<'_>) {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), message));
        }
        fn enter(&self, _: &SpanId) {}
        fn exit(&self, _: &SpanId) {}
    }

    fn capture(f: impl FnOnce()) -> Vec<(Level, String)> {
        let sub = Capture::default();
        tracing::subscriber::with_default(sub.clone(), f);
        sub.0.lock().unwrap().clone()
    }

    fn report(collector: CollectorKind, freed: u64) -> Report {
        let mut r = Report::new(collector, false, Timestamp::UNIX_EPOCH);
        r.bytes_freed = freed;
        r
    }

    #[test]
    fn buildkit_lines_match_upstream() {
        let lines = capture(|| {
            TracingObserver.run_finished(&report(CollectorKind::BuildCache, 1900));
            TracingObserver.run_finished(&report(CollectorKind::BuildCache, 0));
            TracingObserver.error(
                CollectorKind::BuildCache,
                &ReportError {
                    call: "Plan",
                    target: None,
                    message: "failed to parse prune filters".into(),
                    fatal: false,
                },
            );
        });
        assert_eq!(
            lines,
            [
                (Level::DEBUG, "gc cleaned up 1900 bytes".to_owned()),
                (
                    Level::ERROR,
                    "gc error: failed to parse prune filters".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn kubelet_lines_match_upstream() {
        let lines = capture(|| {
            let mut failed = report(CollectorKind::Containers, 0);
            failed.status = RunStatus::Failed;
            TracingObserver.run_finished(&failed);
            TracingObserver.run_finished(&report(CollectorKind::Images, 5));
        });
        assert_eq!(
            lines[0],
            (Level::ERROR, "Container garbage collection failed".into())
        );
        assert_eq!(
            lines[1],
            (Level::DEBUG, "Image garbage collection succeeded".into())
        );
    }

    #[test]
    fn refusals_log_at_info() {
        let lines = capture(|| {
            TracingObserver.deletion(
                CollectorKind::Images,
                &ReportDeletion {
                    item: ItemKind::Image,
                    id: Id::new("sha256:a"),
                    pass: 0,
                    bytes: None,
                    reason: Reason::PodLogDir {
                        pod_uid: "p".into(),
                    },
                    outcome: Outcome::InUse {
                        message: "used by c".into(),
                    },
                },
            );
        });
        assert_eq!(lines[0].0, Level::INFO);
        NoopObserver.run_finished(&report(CollectorKind::Images, 0));
    }
}
