//! The agent's Prometheus metrics and the observer that feeds them and the
//! logs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reclaim_model::DiskStats;
use reclaim_runtime::{CollectorKind, Observer, Report, RunStatus, SkipReason, TracingObserver};
use tracing::{info, warn};

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct RunLabels {
    pub collector: String,
    pub status: String,
    pub dry_run: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct CollectorLabels {
    pub collector: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct PassLabels {
    pub collector: String,
    /// `rule 0`, `rule 1`… for the build cache; `age`, `space` for images;
    /// `containers`, `sandboxes`, `pod logs` for containers.
    pub rule: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct OutcomeLabels {
    pub collector: String,
    pub outcome: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct ReasonLabels {
    pub collector: String,
    pub reason: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct CallLabels {
    pub collector: String,
    pub call: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct KindLabels {
    pub kind: String,
}

/// Every metric of the agent, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    runs: Family<RunLabels, Counter>,
    duration: Family<CollectorLabels, Histogram>,
    last_run: Family<CollectorLabels, Gauge<f64, AtomicU64>>,
    bytes_targeted: Family<PassLabels, Counter>,
    bytes_freed: Family<PassLabels, Counter>,
    deletions: Family<OutcomeLabels, Counter>,
    skipped: Family<ReasonLabels, Counter>,
    errors: Family<CallLabels, Counter>,
    pub disk_total: Gauge,
    pub disk_free: Gauge,
    pub disk_available: Gauge,
    pub build_cache_bytes: Gauge,
    pub images_tracked: Gauge,
    pub daemon_up: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub events: Family<KindLabels, Counter>,
    pub triggers: Family<KindLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("reclaim");
        let runs = Family::<RunLabels, Counter>::default();
        r.register(
            "gc_runs",
            "Collector runs, by collector and how they ended",
            runs.clone(),
        );
        let duration = Family::<CollectorLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        r.register(
            "gc_run_duration_seconds",
            "Duration of collector runs",
            duration.clone(),
        );
        let last_run = Family::<CollectorLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "gc_last_run_timestamp_seconds",
            "Unix time at which the last run of each collector ended",
            last_run.clone(),
        );
        let bytes_targeted = Family::<PassLabels, Counter>::default();
        r.register(
            "gc_bytes_targeted",
            "Bytes of the items each rule or pass chose for removal (planned in a dry run)",
            bytes_targeted.clone(),
        );
        let bytes_freed = Family::<PassLabels, Counter>::default();
        r.register(
            "gc_bytes_freed",
            "Bytes given back by removals, per rule or pass",
            bytes_freed.clone(),
        );
        let deletions = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "gc_deletions",
            "Removals attempted (or planned), by outcome",
            deletions.clone(),
        );
        let skipped = Family::<ReasonLabels, Counter>::default();
        r.register(
            "gc_items_skipped",
            "Items left alone, by reason",
            skipped.clone(),
        );
        let errors = Family::<CallLabels, Counter>::default();
        r.register(
            "gc_errors",
            "Failed calls, by collector and call",
            errors.clone(),
        );
        let disk_total = Gauge::default();
        r.register(
            "disk_total_bytes",
            "Size of the disk holding the data root",
            disk_total.clone(),
        );
        let disk_free = Gauge::default();
        r.register(
            "disk_free_bytes",
            "Free bytes on the disk holding the data root (statfs f_bfree)",
            disk_free.clone(),
        );
        let disk_available = Gauge::default();
        r.register(
            "disk_available_bytes",
            "Bytes available to unprivileged users on that disk (statfs f_bavail)",
            disk_available.clone(),
        );
        let build_cache_bytes = Gauge::default();
        r.register(
            "build_cache_bytes",
            "Total size of the build cache at the last listing",
            build_cache_bytes.clone(),
        );
        let images_tracked = Gauge::default();
        r.register(
            "images_tracked",
            "Images whose last use the agent knows",
            images_tracked.clone(),
        );
        let daemon_up = Gauge::default();
        r.register(
            "docker_up",
            "1 when the Docker daemon answered the last call, else 0",
            daemon_up.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        r.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        r.register(
            "docker_events",
            "Docker events received, by type",
            events.clone(),
        );
        let triggers = Family::<KindLabels, Counter>::default();
        r.register(
            "gc_triggers",
            "Times a trigger started collectors",
            triggers.clone(),
        );
        Self {
            registry: Arc::new(r),
            runs,
            duration,
            last_run,
            bytes_targeted,
            bytes_freed,
            deletions,
            skipped,
            errors,
            disk_total,
            disk_free,
            disk_available,
            build_cache_bytes,
            images_tracked,
            daemon_up,
            reloads,
            events,
            triggers,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding to a string cannot fail");
        out
    }

    pub fn observe_disk(&self, d: DiskStats) {
        self.disk_total
            .set(i64::try_from(d.total).unwrap_or(i64::MAX));
        self.disk_free
            .set(i64::try_from(d.free).unwrap_or(i64::MAX));
        self.disk_available
            .set(i64::try_from(d.available).unwrap_or(i64::MAX));
    }

    fn record(&self, report: &Report) {
        let collector = report.collector.as_str().to_owned();
        let status = match report.status {
            RunStatus::Aborted => "aborted",
            RunStatus::Failed => "failed",
            RunStatus::Succeeded => "succeeded",
            _ => "other",
        };
        self.runs
            .get_or_create(&RunLabels {
                collector: collector.clone(),
                status: status.into(),
                dry_run: report.dry_run.to_string(),
            })
            .inc();
        let c = CollectorLabels {
            collector: collector.clone(),
        };
        self.duration
            .get_or_create(&c)
            .observe(report.duration.as_nanos() as f64 / 1e9);
        self.last_run
            .get_or_create(&c)
            .set(report.finished_at.unix_nanos() as f64 / 1e9);
        for d in &report.deletions {
            let rule = report
                .passes
                .get(d.pass)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| d.pass.to_string());
            let labels = PassLabels {
                collector: collector.clone(),
                rule,
            };
            self.bytes_targeted
                .get_or_create(&labels)
                .inc_by(d.bytes.unwrap_or(0));
            let freed = d.bytes_freed();
            if freed > 0 {
                self.bytes_freed.get_or_create(&labels).inc_by(freed);
            }
            self.deletions
                .get_or_create(&OutcomeLabels {
                    collector: collector.clone(),
                    outcome: d.outcome.as_str().into(),
                })
                .inc();
        }
        for s in &report.skips {
            self.skipped
                .get_or_create(&ReasonLabels {
                    collector: collector.clone(),
                    reason: skip_reason(&s.reason),
                })
                .inc();
        }
        for e in &report.errors {
            self.errors
                .get_or_create(&CallLabels {
                    collector: collector.clone(),
                    call: e.call.into(),
                })
                .inc();
        }
    }
}

/// A short, stable label for why an item stayed: the planner's reason
/// variant in snake case (`in_use`, `target_reached`, `too_young`…).
pub fn skip_reason(reason: &SkipReason) -> String {
    let value = serde_json::to_value(reason).unwrap_or_default();
    let detail = &value["detail"];
    let name = match detail {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => match map.get("reason").and_then(|r| r.as_str()) {
            Some(r) => r.to_owned(),
            None => map.keys().next().cloned().unwrap_or_default(),
        },
        _ => String::new(),
    };
    snake(&name)
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "other".into() } else { out }
}

/// Counts every run in the metrics and logs a summary; the per-item lines
/// come from [`TracingObserver`] (at debug level, as upstream logs them).
pub struct AgentObserver {
    pub metrics: Metrics,
    pub trigger: String,
}

impl Observer for AgentObserver {
    fn run_started(&self, collector: CollectorKind, dry_run: bool) {
        TracingObserver.run_started(collector, dry_run);
    }

    fn deletion(&self, collector: CollectorKind, deletion: &reclaim_runtime::ReportDeletion) {
        TracingObserver.deletion(collector, deletion);
    }

    fn error(&self, collector: CollectorKind, error: &reclaim_runtime::ReportError) {
        TracingObserver.error(collector, error);
    }

    fn run_finished(&self, report: &Report) {
        TracingObserver.run_finished(report);
        self.metrics.record(report);
        let collector = report.collector.as_str();
        if report.collector == CollectorKind::BuildCache && report.bytes_freed > 0 {
            // BuildKit's own line (it logs it at debug level).
            info!(
                collector,
                bytes = report.bytes_freed,
                "gc cleaned up {} bytes",
                report.bytes_freed
            );
        }
        let removed = report.removed_ids().count();
        let planned = report.planned_ids().count();
        let line = format!(
            "{collector} gc {}: {} removed{}, {} bytes freed, {} kept, {} errors, {}",
            match report.status {
                RunStatus::Aborted => "aborted",
                RunStatus::Failed => "failed",
                _ => "done",
            },
            removed,
            if report.dry_run {
                format!(" ({planned} would be removed; dry run)")
            } else {
                String::new()
            },
            report.bytes_freed,
            report.skipped,
            report.errors.len(),
            report.duration
        );
        if report.status == RunStatus::Succeeded {
            info!(
                collector,
                trigger = self.trigger.as_str(),
                removed,
                planned,
                bytes_freed = report.bytes_freed,
                dry_run = report.dry_run,
                "{line}"
            );
        } else {
            let first = report
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default();
            warn!(
                collector,
                trigger = self.trigger.as_str(),
                removed,
                bytes_freed = report.bytes_freed,
                error = first.as_str(),
                "{line}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_the_prefix() {
        let m = Metrics::new();
        m.observe_disk(DiskStats::new(100, 40));
        m.reloads
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        let text = m.encode();
        assert!(text.contains("reclaim_disk_free_bytes 40"), "{text}");
        assert!(
            text.contains("reclaim_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn skip_reasons_become_snake_case_labels() {
        use reclaim_kubelet::ImageKeepReason;
        use reclaim_policy::prune::KeepReason;
        assert_eq!(
            skip_reason(&SkipReason::BuildCache(KeepReason::InUse { rule: 0 })),
            "in_use"
        );
        assert_eq!(
            skip_reason(&SkipReason::BuildCache(KeepReason::TargetReached {
                rule: 2
            })),
            "target_reached"
        );
        assert_eq!(
            skip_reason(&SkipReason::Image(ImageKeepReason::Pinned)),
            "pinned"
        );
    }
}
