//! The image GC policy (the kubelet's `ImageGCPolicy`).

use std::fmt;

use reclaim_model::Duration;
use serde::Serialize;

/// The image GC policy, validated as the kubelet's image GC manager
/// constructor validates it (spec 2.1).
///
/// Invariants: both thresholds lie in `0..=100` and low is not above high.
/// Low equal to high passes here; only the configuration layer
/// ([`crate::KubeletConfig`]) rejects it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct ImagePolicy {
    high_threshold_percent: i32,
    low_threshold_percent: i32,
    #[serde(with = "crate::serde_time::go_duration")]
    min_age: Duration,
    #[serde(with = "crate::serde_time::go_duration")]
    max_age: Duration,
}

impl Default for ImagePolicy {
    /// The kubelet's defaults: high 85, low 80, MinAge `2m0s`, MaxAge `0s`
    /// (off).
    fn default() -> Self {
        Self {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

impl ImagePolicy {
    /// A policy from its four values, checked in the kubelet's order: high
    /// in range, low in range, low not above high.
    ///
    /// Durations are not checked here (the kubelet's constructor does not);
    /// a negative MinAge makes every image old enough and a negative MaxAge
    /// behaves like a tiny one.
    pub fn new(
        high_threshold_percent: i32,
        low_threshold_percent: i32,
        min_age: Duration,
        max_age: Duration,
    ) -> Result<Self, ImagePolicyError> {
        if !(0..=100).contains(&high_threshold_percent) {
            return Err(ImagePolicyError::HighOutOfRange(high_threshold_percent));
        }
        if !(0..=100).contains(&low_threshold_percent) {
            return Err(ImagePolicyError::LowOutOfRange(low_threshold_percent));
        }
        if low_threshold_percent > high_threshold_percent {
            return Err(ImagePolicyError::LowAboveHigh {
                low: low_threshold_percent,
                high: high_threshold_percent,
            });
        }
        Ok(Self {
            high_threshold_percent,
            low_threshold_percent,
            min_age,
            max_age,
        })
    }

    /// A policy the configuration layer has already validated more strictly.
    pub(crate) const fn from_validated_config(
        high_threshold_percent: i32,
        low_threshold_percent: i32,
        min_age: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            high_threshold_percent,
            low_threshold_percent,
            min_age,
            max_age,
        }
    }

    /// Disk usage percent at or above which the space pass runs. Default 85.
    pub const fn high_threshold_percent(&self) -> i32 {
        self.high_threshold_percent
    }

    /// Disk usage percent the space pass frees down to. Default 80.
    pub const fn low_threshold_percent(&self) -> i32 {
        self.low_threshold_percent
    }

    /// Minimum time since an image was first detected before the space pass
    /// may remove it. Default `2m0s`.
    pub const fn min_age(&self) -> Duration {
        self.min_age
    }

    /// Time an image may stay unused before the age pass removes it; zero
    /// disables the age pass. Default `0s`.
    pub const fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Whether the kubelet starts its periodic image GC loop at all: not
    /// when the high threshold is 100 and MaxAge is zero (spec 2.2).
    pub fn loop_enabled(&self) -> bool {
        !(self.high_threshold_percent == 100 && self.max_age.is_zero())
    }
}

impl fmt::Display for ImagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "high {}%, low {}%, min age {}, max age {}",
            self.high_threshold_percent,
            self.low_threshold_percent,
            self.min_age,
            if self.max_age.is_zero() {
                "off".to_owned()
            } else {
                self.max_age.to_string()
            }
        )
    }
}

/// An image GC policy the kubelet's image GC manager refuses.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImagePolicyError {
    /// The high threshold is outside `0..=100`.
    #[error("invalid HighThresholdPercent {0}, must be in range [0-100]")]
    HighOutOfRange(i32),
    /// The low threshold is outside `0..=100`.
    #[error("invalid LowThresholdPercent {0}, must be in range [0-100]")]
    LowOutOfRange(i32),
    /// The low threshold is above the high one.
    #[error("LowThresholdPercent {low} can not be higher than HighThresholdPercent {high}")]
    LowAboveHigh {
        /// The low threshold.
        low: i32,
        /// The high threshold.
        high: i32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks_in_upstream_order() {
        let z = Duration::ZERO;
        assert_eq!(
            ImagePolicy::new(101, -1, z, z).unwrap_err().to_string(),
            "invalid HighThresholdPercent 101, must be in range [0-100]"
        );
        assert_eq!(
            ImagePolicy::new(0, -1, z, z).unwrap_err().to_string(),
            "invalid LowThresholdPercent -1, must be in range [0-100]"
        );
        assert_eq!(
            ImagePolicy::new(80, 90, z, z).unwrap_err().to_string(),
            "LowThresholdPercent 90 can not be higher than HighThresholdPercent 80"
        );
        assert!(ImagePolicy::new(85, 85, z, z).is_ok());
    }

    #[test]
    fn loop_disabled_only_for_high_100_and_no_max_age() {
        let z = Duration::ZERO;
        assert!(!ImagePolicy::new(100, 80, z, z).unwrap().loop_enabled());
        assert!(
            ImagePolicy::new(100, 80, z, Duration::from_secs(60))
                .unwrap()
                .loop_enabled()
        );
        assert!(ImagePolicy::default().loop_enabled());
    }
}
