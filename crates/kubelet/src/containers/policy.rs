//! The container GC policy and the options of one GC run.

use std::fmt;

use reclaim_model::{Duration, Timestamp, parse_go_duration};
use serde::Serialize;

use crate::goparse::{go_quote, parse_go_int32};

/// The kubelet's flag for [`ContainerGcPolicy::min_age`].
pub const MIN_AGE_FLAG: &str = "minimum-container-ttl-duration";
/// The kubelet's flag for [`ContainerGcPolicy::max_per_pod_container`].
pub const MAX_PER_POD_CONTAINER_FLAG: &str = "maximum-dead-containers-per-container";
/// The kubelet's flag for [`ContainerGcPolicy::max_containers`].
pub const MAX_CONTAINERS_FLAG: &str = "maximum-dead-containers";

/// The container GC policy (the kubelet's `GCPolicy`).
///
/// Invariant: `min_age` is not negative. Negative counts mean "no limit".
/// The kubelet takes these three values only from its (deprecated)
/// command-line flags; [`ContainerGcPolicy::from_flags`] reads them the way
/// the kubelet does.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct ContainerGcPolicy {
    #[serde(with = "crate::serde_time::go_duration")]
    min_age: Duration,
    max_per_pod_container: i64,
    max_containers: i64,
}

impl Default for ContainerGcPolicy {
    /// The kubelet's flag defaults: MinAge `0s`, MaxPerPodContainer `1`,
    /// MaxContainers `-1`.
    fn default() -> Self {
        Self {
            min_age: Duration::ZERO,
            max_per_pod_container: 1,
            max_containers: -1,
        }
    }
}

impl ContainerGcPolicy {
    /// A policy from its three values, checked as the kubelet's
    /// `NewContainerGC` does: only a negative `min_age` is rejected.
    pub fn new(
        min_age: Duration,
        max_per_pod_container: i64,
        max_containers: i64,
    ) -> Result<Self, ContainerPolicyError> {
        if min_age.is_negative() {
            return Err(ContainerPolicyError::NegativeMinAge(min_age));
        }
        Ok(Self {
            min_age,
            max_per_pod_container,
            max_containers,
        })
    }

    /// A policy from the text of the kubelet's three flags; `None` means
    /// the flag was not given and its default applies.
    ///
    /// `min_age` is `--minimum-container-ttl-duration` (Go duration text
    /// such as `30s` or `1h30m`); the counts are
    /// `--maximum-dead-containers-per-container` and
    /// `--maximum-dead-containers`, read as Go's `ParseInt(text, 0, 32)`
    /// reads them (so `0x10`, `010` and `1_000` are accepted). Errors carry
    /// the kubelet's message text.
    pub fn from_flags(
        min_age: Option<&str>,
        max_per_pod_container: Option<&str>,
        max_containers: Option<&str>,
    ) -> Result<Self, ContainerPolicyError> {
        let defaults = Self::default();
        let min_age = match min_age {
            Some(text) => {
                parse_go_duration(text).map_err(|e| ContainerPolicyError::InvalidFlag {
                    flag: MIN_AGE_FLAG,
                    value: text.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => defaults.min_age,
        };
        let count =
            |flag: &'static str, text: Option<&str>, default: i64| match text {
                Some(text) => parse_go_int32(text).map(i64::from).map_err(|e| {
                    ContainerPolicyError::InvalidFlag {
                        flag,
                        value: text.to_owned(),
                        message: e.go_text(text),
                    }
                }),
                None => Ok(default),
            };
        let max_per_pod = count(
            MAX_PER_POD_CONTAINER_FLAG,
            max_per_pod_container,
            defaults.max_per_pod_container,
        )?;
        let max_containers = count(MAX_CONTAINERS_FLAG, max_containers, defaults.max_containers)?;
        Self::new(min_age, max_per_pod, max_containers)
    }

    /// Minimum age of a dead container before it may be removed, counted
    /// from its creation time. Default `0s`.
    pub const fn min_age(&self) -> Duration {
        self.min_age
    }

    /// Dead containers kept per evict unit (pod UID + container name);
    /// negative means no limit. Default `1`.
    pub const fn max_per_pod_container(&self) -> i64 {
        self.max_per_pod_container
    }

    /// Dead containers kept on the node; negative means no limit. Default
    /// `-1`.
    pub const fn max_containers(&self) -> i64 {
        self.max_containers
    }
}

impl fmt::Display for ContainerGcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min age {}, max per pod container {}, max containers {}",
            self.min_age,
            limit_text(self.max_per_pod_container),
            limit_text(self.max_containers)
        )
    }
}

fn limit_text(n: i64) -> String {
    if n < 0 {
        format!("{n} (unlimited)")
    } else {
        n.to_string()
    }
}

/// A container GC policy that cannot be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerPolicyError {
    /// A flag value does not parse; the text is the kubelet's (pflag's)
    /// message. Fix the value.
    #[error(
        "invalid argument {} for \"--{flag}\" flag: {message}",
        go_quote(value)
    )]
    InvalidFlag {
        /// The flag name without dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Go's parse error text.
        message: String,
    },
    /// `min_age` is negative, which the kubelet's `NewContainerGC` rejects.
    #[error("invalid minimum garbage collection age: {0}")]
    NegativeMinAge(Duration),
}

/// Which of the three sub-passes of one container GC call run.
///
/// The kubelet always runs all three, in the order containers, sandboxes,
/// pod log directories; upstream's unit tests call them one at a time.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct SubPasses {
    /// Dead containers (spec 1.4-1.5).
    pub containers: bool,
    /// Pod sandboxes (spec 1.6).
    pub sandboxes: bool,
    /// Pod log directories (spec 1.7).
    pub pod_logs: bool,
}

impl Default for SubPasses {
    /// All three sub-passes.
    fn default() -> Self {
        Self {
            containers: true,
            sandboxes: true,
            pod_logs: true,
        }
    }
}

/// The inputs of one container GC run besides the snapshot and the policy.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct ContainerGcOptions {
    #[serde(with = "crate::serde_time::instant")]
    now: Timestamp,
    all_sources_ready: bool,
    evict_non_deleted_pods: bool,
    passes: SubPasses,
}

impl ContainerGcOptions {
    /// The periodic GC at `now`: all sources ready, non-deleted pods not
    /// evicted, all three sub-passes.
    pub const fn new(now: Timestamp) -> Self {
        Self {
            now,
            all_sources_ready: true,
            evict_non_deleted_pods: false,
            passes: SubPasses {
                containers: true,
                sandboxes: true,
                pod_logs: true,
            },
        }
    }

    /// Sets whether all pod config sources have been seen. Without that,
    /// deleted pods' containers are not bulk-removed and pod log
    /// directories are left alone. Default `true`.
    pub fn all_sources_ready(&mut self, ready: bool) -> &mut Self {
        self.all_sources_ready = ready;
        self
    }

    /// Sets whether terminated (not only deleted) pods lose their containers
    /// and sandboxes: `false` for the periodic loop, `true` for the
    /// eviction manager's `DeleteAllUnusedContainers`. Default `false`.
    pub fn evict_non_deleted_pods(&mut self, evict: bool) -> &mut Self {
        self.evict_non_deleted_pods = evict;
        self
    }

    /// Selects the sub-passes to run. Default: all three.
    pub fn passes(&mut self, passes: SubPasses) -> &mut Self {
        self.passes = passes;
        self
    }

    /// The GC clock.
    pub const fn now(&self) -> Timestamp {
        self.now
    }

    /// Whether all pod config sources have been seen.
    pub const fn sources_ready(&self) -> bool {
        self.all_sources_ready
    }

    /// Whether terminated pods are evicted too.
    pub const fn evicts_non_deleted_pods(&self) -> bool {
        self.evict_non_deleted_pods
    }

    /// The sub-passes that run.
    pub const fn sub_passes(&self) -> SubPasses {
        self.passes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kubelet_flag_defaults() {
        let p = ContainerGcPolicy::default();
        assert_eq!(p.min_age(), Duration::ZERO);
        assert_eq!(p.max_per_pod_container(), 1);
        assert_eq!(p.max_containers(), -1);
        assert_eq!(ContainerGcPolicy::from_flags(None, None, None), Ok(p));
    }

    #[test]
    fn negative_min_age_is_rejected_with_the_kubelet_text() {
        let err = ContainerGcPolicy::new(Duration::from_secs(-60), 1, -1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid minimum garbage collection age: -1m0s"
        );
    }

    #[test]
    fn count_flags_parse_like_pflag_int32() {
        let p = ContainerGcPolicy::from_flags(None, Some("0x10"), Some("-5")).unwrap();
        assert_eq!(p.max_per_pod_container(), 16);
        assert_eq!(p.max_containers(), -5);
        let err = ContainerGcPolicy::from_flags(None, None, Some("lots")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument \"lots\" for \"--maximum-dead-containers\" flag: \
             strconv.ParseInt: parsing \"lots\": invalid syntax"
        );
        let err = ContainerGcPolicy::from_flags(None, Some("3000000000"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument \"3000000000\" for \"--maximum-dead-containers-per-container\" \
             flag: strconv.ParseInt: parsing \"3000000000\": value out of range"
        );
    }

    #[test]
    fn options_builder_sets_fields() {
        let mut o = ContainerGcOptions::new(Timestamp::from_unix_secs(5));
        o.all_sources_ready(false).evict_non_deleted_pods(true);
        assert!(!o.sources_ready());
        assert!(o.evicts_non_deleted_pods());
        assert_eq!(o.now(), Timestamp::from_unix_secs(5));
        assert_eq!(o.sub_passes(), SubPasses::default());
    }
}
