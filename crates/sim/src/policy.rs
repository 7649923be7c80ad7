//! GC policies a replay runs, and the eviction orderings it compares.
//!
//! A [`Policy`] says which collectors run and what triggers them:
//!
//! - dockerd's `builder.gc` ([`Policy::builder_gc`]): the BuildKit rules,
//!   run by BuildKit's own trigger (1 s after the daemon starts, then 1 s
//!   after each build, at most once a minute after the previous run ended);
//! - cron jobs ([`Cron`]): a weekly `docker system prune -af` or a daily
//!   `docker buildx prune --filter until=168h`, at fixed times;
//! - the kubelet's image and container GC ([`KubeletGc`], every 5 minutes
//!   and every minute);
//! - a free-space watermark ([`Watermark`]) that runs the `builder.gc`
//!   rules when the disk fills between builds (no upstream has this).
//!
//! [`PolicySpec`] is a policy before the disk is known: dockerd's default
//! rules depend on the disk's size, so a sweep over disk sizes resolves one
//! spec per size.

use std::fmt;
use std::time::Duration as StdDuration;

use reclaim_kubelet::{ContainerGcPolicy, ImagePolicy};
use reclaim_model::{Duration, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::config;
use reclaim_policy::prune::Ordering;

/// Everything that collects on the simulated node, resolved for one disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// A short name for tables and plots.
    pub name: String,
    /// dockerd's `builder.gc` rules, run by BuildKit's trigger; `None` when
    /// GC is disabled.
    pub builder_gc: Option<Vec<Rule>>,
    /// Jobs run at fixed times.
    pub crons: Vec<Cron>,
    /// The kubelet's image and container GC, if the node has a kubelet.
    pub kubelet: Option<KubeletGc>,
    /// A free-space trigger for the `builder_gc` rules.
    pub watermark: Option<Watermark>,
}

/// A job run at fixed times: first `first` after the trace's start, then
/// every `period`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cron {
    /// Its name, in reports (`cron:<name>`).
    pub name: String,
    /// Delay of the first run after the start.
    pub first: StdDuration,
    /// Time between runs.
    pub period: StdDuration,
    /// What it does.
    pub action: CronAction,
}

/// What a cron job runs.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CronAction {
    /// `docker buildx prune` (or `docker builder prune`) with the given
    /// rule, through BuildKit's planner.
    BuildPrune(Rule),
    /// `docker system prune -af`: every stopped container, every image no
    /// container uses, and all build cache not in use. Run through the
    /// kubelet's container GC (no age, no per-pod or node allowance,
    /// terminated pods included), the kubelet's `DeleteUnusedImages` (no
    /// minimum age) and BuildKit's planner with `all` and no limits.
    SystemPruneAll,
}

/// The kubelet's GC settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KubeletGc {
    /// Image GC, run every 5 minutes; `None` disables it.
    pub images: Option<ImagePolicy>,
    /// Container GC, run every minute; `None` disables it.
    pub containers: Option<ContainerGcPolicy>,
}

impl Default for KubeletGc {
    /// The kubelet's defaults: images at 85% / 80% with a 2-minute MinAge,
    /// containers with MinAge 0, one dead container per pod and name, no
    /// node limit.
    fn default() -> Self {
        Self {
            images: Some(ImagePolicy::default()),
            containers: Some(ContainerGcPolicy::default()),
        }
    }
}

/// Free-space watermarks, in percent of the disk: below `low_percent` free,
/// the `builder.gc` rules run (at most once a minute); the trigger re-arms
/// above `high_percent`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Watermark {
    /// Free space (percent) under which GC runs.
    pub low_percent: u8,
    /// Free space (percent) above which the trigger re-arms.
    pub high_percent: u8,
}

/// A policy that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The daemon.json does not parse (dockerd would refuse it).
    #[error("{name}: {source}")]
    Config {
        /// The policy's name (the file's).
        name: String,
        /// The parser's error.
        source: Box<config::ConfigError>,
    },
    /// dockerd would fail to start its builder with this configuration.
    #[error("{name}: error initializing buildkit: {source}")]
    Init {
        /// The policy's name.
        name: String,
        /// The conversion's error.
        source: Box<config::InitError>,
    },
    /// An unknown ordering name.
    #[error("ordering {name:?} is not one of buildkit, lru, lfu, fifo, largest, gdsf")]
    Ordering {
        /// The name given.
        name: String,
    },
    /// A watermark out of range.
    #[error("watermark: low {low}% and high {high}% must satisfy low <= high <= 100")]
    Watermark {
        /// The low watermark.
        low: u8,
        /// The high watermark.
        high: u8,
    },
}

impl Policy {
    /// No collection at all.
    pub fn none() -> Self {
        Self {
            name: "none".to_owned(),
            builder_gc: None,
            crons: Vec::new(),
            kubelet: None,
            watermark: None,
        }
    }

    /// dockerd's default `builder.gc` (an empty daemon.json) on a disk of
    /// `disk_total` bytes: four rules sized at 10%, 80% and 20% of the disk.
    pub fn dockerd_default(disk_total: u64) -> Self {
        let rules = config::default_policy(0, 0, 0, Some(disk_total));
        Self {
            name: "dockerd-default".to_owned(),
            builder_gc: Some(rules),
            ..Self::none()
        }
    }

    /// The `builder.gc` of a daemon.json, as dockerd would start with it on
    /// a disk of `disk_total` bytes at `start` (which freezes `until`
    /// filters into ages).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Config`] or [`PolicyError::Init`] where dockerd
    /// would refuse the file.
    pub fn daemon_json(
        name: &str,
        text: &str,
        disk_total: u64,
        start: Timestamp,
    ) -> Result<Self, PolicyError> {
        let (gc, _) = config::parse(text).map_err(|source| PolicyError::Config {
            name: name.to_owned(),
            source: Box::new(source),
        })?;
        let effective =
            config::effective_rules(&gc, Some(disk_total), start).map_err(|source| {
                PolicyError::Init {
                    name: name.to_owned(),
                    source: Box::new(source),
                }
            })?;
        Ok(Self {
            name: name.to_owned(),
            builder_gc: effective.enabled.then_some(effective.rules),
            ..Self::none()
        })
    }

    /// A weekly `docker system prune -af`, Sundays at 03:00 UTC, and no
    /// `builder.gc` (as on daemons older than Docker 28.2, where it was
    /// off by default).
    pub fn weekly_system_prune(start: Timestamp) -> Self {
        Self {
            name: "weekly-system-prune".to_owned(),
            crons: vec![Cron {
                name: "system-prune".to_owned(),
                first: until_next(start, 6, 3),
                period: StdDuration::from_secs(7 * 86_400),
                action: CronAction::SystemPruneAll,
            }],
            ..Self::none()
        }
    }

    /// A daily `docker buildx prune -f --filter until=168h` at 03:00 UTC,
    /// and no `builder.gc`.
    pub fn daily_buildx_prune(start: Timestamp) -> Self {
        Self {
            name: "daily-buildx-prune".to_owned(),
            crons: vec![Cron {
                name: "buildx-prune".to_owned(),
                first: until_next(start, 7, 3),
                period: StdDuration::from_secs(86_400),
                action: CronAction::BuildPrune(Rule {
                    keep_duration: Duration::from_hours(168),
                    ..Rule::default()
                }),
            }],
            ..Self::none()
        }
    }

    /// Sets the kubelet's GC (builder style).
    pub fn with_kubelet(mut self, kubelet: Option<KubeletGc>) -> Self {
        self.kubelet = kubelet;
        self
    }

    /// Sets the watermark trigger (builder style).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Watermark`] unless `low <= high <= 100`.
    pub fn with_watermark(mut self, watermark: Option<Watermark>) -> Result<Self, PolicyError> {
        if let Some(w) = watermark
            && (w.low_percent > w.high_percent || w.high_percent > 100)
        {
            return Err(PolicyError::Watermark {
                low: w.low_percent,
                high: w.high_percent,
            });
        }
        self.watermark = watermark;
        Ok(self)
    }

    /// Whether the eviction ordering can change anything: some
    /// `builder.gc` rule has a byte target (gc mode). Batch rules and cron
    /// prunes delete every candidate whatever the order.
    pub fn is_ordering_sensitive(&self) -> bool {
        self.builder_gc
            .as_ref()
            .is_some_and(|rules| rules.iter().any(|r| !r.has_no_size_limit()))
    }
}

/// A policy before the disk is known.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum PolicySpec {
    /// [`Policy::none`].
    None,
    /// [`Policy::dockerd_default`].
    DockerdDefault,
    /// [`Policy::weekly_system_prune`].
    WeeklySystemPrune,
    /// [`Policy::daily_buildx_prune`].
    DailyBuildxPrune,
    /// [`Policy::daemon_json`].
    DaemonJson {
        /// The policy's name.
        name: String,
        /// The daemon.json text.
        text: String,
    },
}

impl PolicySpec {
    /// Every built-in name, as [`PolicySpec::from_name`] reads them.
    pub const NAMES: [&str; 4] = [
        "none",
        "dockerd-default",
        "weekly-system-prune",
        "daily-buildx-prune",
    ];

    /// The built-in policy with this name (`default` is an alias of
    /// `dockerd-default`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "default" | "dockerd-default" => Some(Self::DockerdDefault),
            "weekly-system-prune" => Some(Self::WeeklySystemPrune),
            "daily-buildx-prune" => Some(Self::DailyBuildxPrune),
            _ => None,
        }
    }

    /// The name of the policy it resolves to.
    pub fn name(&self) -> &str {
        match self {
            Self::None => "none",
            Self::DockerdDefault => "dockerd-default",
            Self::WeeklySystemPrune => "weekly-system-prune",
            Self::DailyBuildxPrune => "daily-buildx-prune",
            Self::DaemonJson { name, .. } => name,
        }
    }

    /// The policy on a disk of `disk_total` bytes for a trace starting at
    /// `start`.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for a daemon.json dockerd would refuse.
    pub fn resolve(&self, disk_total: u64, start: Timestamp) -> Result<Policy, PolicyError> {
        Ok(match self {
            Self::None => Policy::none(),
            Self::DockerdDefault => Policy::dockerd_default(disk_total),
            Self::WeeklySystemPrune => Policy::weekly_system_prune(start),
            Self::DailyBuildxPrune => Policy::daily_buildx_prune(start),
            Self::DaemonJson { name, text } => Policy::daemon_json(name, text, disk_total, start)?,
        })
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads an ordering name: `buildkit`, `lru`, `lfu`, `fifo`, `largest`
/// (or `largest-first`), `gdsf`.
///
/// # Errors
///
/// [`PolicyError::Ordering`] for any other name.
pub fn parse_ordering(name: &str) -> Result<Ordering, PolicyError> {
    match name {
        "buildkit" => Ok(Ordering::BuildKit),
        "lru" => Ok(Ordering::Lru),
        "lfu" => Ok(Ordering::Lfu),
        "fifo" => Ok(Ordering::Fifo),
        "largest" | "largest-first" => Ok(Ordering::LargestFirst),
        "gdsf" => Ok(Ordering::Gdsf),
        _ => Err(PolicyError::Ordering {
            name: name.to_owned(),
        }),
    }
}

/// The short name of an ordering, as [`parse_ordering`] reads it.
pub fn ordering_name(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::BuildKit => "buildkit",
        Ordering::Lru => "lru",
        Ordering::Lfu => "lfu",
        Ordering::Fifo => "fifo",
        Ordering::LargestFirst => "largest",
        Ordering::Gdsf => "gdsf",
        _ => "other",
    }
}

/// Time from `start` to the next `weekday` (0 Monday … 6 Sunday; 7 means
/// any day) at `hour`:00 UTC, strictly after `start`.
fn until_next(start: Timestamp, weekday: i64, hour: i64) -> StdDuration {
    let secs = start.unix_secs();
    let day = secs.div_euclid(86_400);
    let mut candidate = day * 86_400 + hour * 3600;
    loop {
        let wd = (candidate.div_euclid(86_400) + 3).rem_euclid(7);
        if candidate > secs && (weekday == 7 || wd == weekday) {
            let nanos = Timestamp::from_unix_secs(candidate)
                .saturating_duration_since(start)
                .as_nanos();
            return StdDuration::from_nanos(nanos.max(0) as u64);
        }
        candidate += 86_400;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crons_fire_at_their_wall_clock_times() {
        // 2025-01-06T00:00:00Z is a Monday.
        let monday = Timestamp::from_unix_secs(1_736_121_600);
        let weekly = Policy::weekly_system_prune(monday);
        assert_eq!(
            weekly.crons[0].first,
            StdDuration::from_secs((6 * 24 + 3) * 3600)
        );
        let daily = Policy::daily_buildx_prune(monday);
        assert_eq!(daily.crons[0].first, StdDuration::from_secs(3 * 3600));
        let CronAction::BuildPrune(rule) = &daily.crons[0].action else {
            panic!("a build prune");
        };
        assert_eq!(rule.keep_duration, Duration::from_hours(168));
        assert!(rule.has_no_size_limit());
        // Just after 03:00 the next daily run is tomorrow's.
        let late = Timestamp::from_unix_secs(1_736_121_600 + 3 * 3600 + 1);
        assert_eq!(until_next(late, 7, 3), StdDuration::from_secs(86_399));
    }

    #[test]
    fn default_rules_follow_the_disk() {
        let p = Policy::dockerd_default(100 << 30);
        let rules = p.builder_gc.as_ref().unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[1].max_used_space, 81_000_000_000);
        assert_eq!(rules[1].min_free_space, 21_000_000_000);
        assert!(p.is_ordering_sensitive());
        assert!(!Policy::weekly_system_prune(Timestamp::UNIX_EPOCH).is_ordering_sensitive());
        let spec = PolicySpec::from_name("default").unwrap();
        assert_eq!(spec.resolve(100 << 30, Timestamp::UNIX_EPOCH).unwrap(), p);
    }

    #[test]
    fn daemon_json_errors_name_the_policy() {
        let start = Timestamp::UNIX_EPOCH;
        let err = Policy::daemon_json("bad.json", "{", 1 << 30, start).unwrap_err();
        assert!(err.to_string().starts_with("bad.json: "), "{err}");
        let err = Policy::daemon_json(
            "size.json",
            r#"{"builder":{"gc":{"policy":[{"maxUsedSpace":"lots"}]}}}"#,
            1 << 30,
            start,
        )
        .unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
        let off = Policy::daemon_json("off", r#"{"builder":{"gc":{"enabled":false}}}"#, 1, start)
            .unwrap();
        assert_eq!(off.builder_gc, None);
        let bad = Policy::none().with_watermark(Some(Watermark {
            low_percent: 30,
            high_percent: 20,
        }));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "watermark: low 30% and high 20% must satisfy low <= high <= 100"
        );
    }

    #[test]
    fn ordering_names_round_trip() {
        for o in Ordering::ALL {
            assert_eq!(parse_ordering(ordering_name(o)).unwrap(), o);
        }
        assert_eq!(
            parse_ordering("mru").unwrap_err().to_string(),
            "ordering \"mru\" is not one of buildkit, lru, lfu, fifo, largest, gdsf"
        );
    }
}
