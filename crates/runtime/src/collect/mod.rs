//! Collectors: a planner joined to an engine, one run at a time.
//!
//! Each collector takes a snapshot through the runtime traits, plans with
//! the pure planner, applies the plan one call at a time, and returns a
//! [`Report`]. Collectors never force a removal, keep going after a
//! transient failure, stop at a fatal one, and never fail themselves:
//! every problem is in the report.

mod buildkit;
mod containers;
mod images;

use std::collections::BTreeMap;
use std::fmt;

pub use self::buildkit::BuildCacheCollector;
pub use self::containers::ContainerGcCollector;
pub use self::images::{ImageGcCollector, ImageGcMode, ImageGcState};
use crate::clock::{Clock, Instant};
use crate::observer::Observer;
use crate::report::{CollectorKind, Report, ReportDeletion, ReportError, RunStatus, Skip};
use crate::store::{BuildCacheStore, ContainerStore, ImageStore};

/// Selects items by label: `key` present, or `key=value`.
///
/// Collectors given a selector look only at the items it matches, as if the
/// engine held nothing else. This scopes a collector to what one tenant (or
/// one test) owns on a shared engine.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct LabelSelector {
    key: String,
    value: Option<String>,
}

impl LabelSelector {
    /// Matches items whose label `key` is present (`value` `None`) or equal
    /// to `value`.
    pub fn new(key: impl Into<String>, value: Option<String>) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }

    /// Reads `key` or `key=value`.
    ///
    /// # Errors
    ///
    /// [`SelectorError`] if the key is empty.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (text, None),
        };
        if key.is_empty() {
            return Err(SelectorError {
                input: text.to_owned(),
            });
        }
        Ok(Self::new(key, value))
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// A label selector that does not parse.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("label selector {input:?}: the key is empty (expected `key` or `key=value`)")]
pub struct SelectorError {
    /// The text given.
    pub input: String,
}

/// The three collectors of an engine, run one after another.
///
/// Each is optional. [`Collectors::run_all`] runs the container GC, then
/// the image GC (images freed by removed containers become candidates),
/// then the build-cache GC; one collector's failure never stops the next.
#[derive(Debug, Default)]
pub struct Collectors {
    /// The kubelet's container GC.
    pub containers: Option<ContainerGcCollector>,
    /// The kubelet's image GC.
    pub images: Option<ImageGcCollector>,
    /// BuildKit's build-cache GC.
    pub build_cache: Option<BuildCacheCollector>,
}

impl Collectors {
    /// Runs every configured collector against `store`, returning their
    /// reports in run order.
    pub async fn run_all<S, C, O>(&mut self, store: &S, clock: &C, observer: &O) -> Vec<Report>
    where
        S: BuildCacheStore + ImageStore + ContainerStore + ?Sized,
        C: Clock + ?Sized,
        O: Observer + ?Sized,
    {
        let mut reports = Vec::with_capacity(3);
        if let Some(c) = &mut self.containers {
            reports.push(c.run(store, clock, observer).await);
        }
        if let Some(c) = &mut self.images {
            reports.push(c.run(store, clock, observer).await);
        }
        if let Some(c) = &self.build_cache {
            reports.push(c.run(store, clock, observer).await);
        }
        reports
    }
}

/// The report of a run in progress, and the observer to tell.
pub(crate) struct RunState<'o, O: ?Sized> {
    pub report: Report,
    observer: &'o O,
    started: Instant,
    itemize_skips: bool,
    aborted: bool,
}

impl<'o, O: Observer + ?Sized> RunState<'o, O> {
    pub fn start<C: Clock + ?Sized>(
        collector: CollectorKind,
        dry_run: bool,
        itemize_skips: bool,
        clock: &C,
        observer: &'o O,
    ) -> Self {
        observer.run_started(collector, dry_run);
        let started = clock.instant();
        Self {
            report: Report::new(collector, dry_run, clock.now()),
            observer,
            started,
            itemize_skips,
            aborted: false,
        }
    }

    /// The planners' `now`.
    pub fn now(&self) -> reclaim_model::Timestamp {
        self.report.started_at
    }

    pub fn deletion(&mut self, d: ReportDeletion) {
        let freed = d.bytes_freed();
        if let Some(pass) = self.report.passes.get_mut(d.pass) {
            pass.planned += 1;
            if d.outcome.is_gone() {
                pass.removed += 1;
                pass.bytes_freed += freed;
            }
        }
        self.report.bytes_freed += freed;
        self.observer.deletion(self.report.collector, &d);
        self.report.deletions.push(d);
    }

    pub fn skip(&mut self, s: Skip) {
        self.report.skipped += 1;
        self.observer.skip(self.report.collector, &s);
        if self.itemize_skips {
            self.report.skips.push(s);
        }
    }

    pub fn error(
        &mut self,
        call: &'static str,
        target: Option<String>,
        message: String,
        fatal: bool,
    ) {
        let e = ReportError {
            call,
            target,
            message,
            fatal,
        };
        self.aborted |= fatal;
        self.observer.error(self.report.collector, &e);
        self.report.errors.push(e);
    }

    /// Marks the last error of one of these calls as the one that ended
    /// the run.
    pub fn last_error_fatal(&mut self, calls: &[&str]) {
        if let Some(e) = self
            .report
            .errors
            .iter_mut()
            .rev()
            .find(|e| calls.contains(&e.call))
        {
            e.fatal = true;
        }
        self.aborted = true;
    }

    pub fn finish<C: Clock + ?Sized>(mut self, clock: &C) -> Report {
        let r = &mut self.report;
        r.finished_at = clock.now();
        let nanos = clock
            .instant()
            .saturating_duration_since(self.started)
            .as_nanos();
        r.duration = reclaim_model::Duration::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
        r.status = if self.aborted {
            RunStatus::Aborted
        } else if r.errors.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        self.observer.run_finished(&self.report);
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let labels: BTreeMap<String, String> =
            [("team".to_owned(), "ci".to_owned())].into_iter().collect();
        assert!(LabelSelector::parse("team").unwrap().matches(&labels));
        assert!(LabelSelector::parse("team=ci").unwrap().matches(&labels));
        assert!(!LabelSelector::parse("team=web").unwrap().matches(&labels));
        assert!(!LabelSelector::parse("owner").unwrap().matches(&labels));
        assert_eq!(
            LabelSelector::parse("=x").unwrap_err().to_string(),
            "label selector \"=x\": the key is empty (expected `key` or `key=value`)"
        );
        assert_eq!(LabelSelector::parse("a=b=c").unwrap().to_string(), "a=b=c");
    }
}
