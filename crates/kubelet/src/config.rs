//! The image GC part of a KubeletConfiguration file: decoding, the
//! kubelet's defaults and its validation (spec 2.1).

use std::fmt;

use reclaim_model::{Duration, parse_go_duration};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::images::ImagePolicy;
use crate::outcome::go_aggregate;

/// The `apiVersion` a KubeletConfiguration file must carry.
pub const KUBELET_CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// The `kind` a KubeletConfiguration file must carry.
pub const KUBELET_CONFIG_KIND: &str = "KubeletConfiguration";

const HIGH: &str = "imageGCHighThresholdPercent";
const LOW: &str = "imageGCLowThresholdPercent";
const MIN_AGE: &str = "imageMinimumGCAge";
const MAX_AGE: &str = "imageMaximumGCAge";

/// The image GC settings of a KubeletConfiguration, defaulted and validated
/// as the kubelet does.
///
/// Only `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`,
/// `imageMinimumGCAge` and `imageMaximumGCAge` are read; every other field
/// is ignored (the kubelet itself only warns about unknown fields). Feature
/// gates are not modelled: `ImageMaximumGCAge` is GA and locked on since
/// v1.35.
///
/// ```
/// use reclaim_kubelet::KubeletConfig;
///
/// let config = KubeletConfig::parse(
///     "apiVersion: kubelet.config.k8s.io/v1beta1\n\
///      kind: KubeletConfiguration\n\
///      imageGCHighThresholdPercent: 90\n\
///      imageMaximumGCAge: 168h\n",
/// )?;
/// let policy = config.image_policy();
/// assert_eq!(policy.high_threshold_percent(), 90);
/// assert_eq!(policy.low_threshold_percent(), 80);
/// assert_eq!(policy.min_age().to_string(), "2m0s");
/// assert_eq!(policy.max_age().to_string(), "168h0m0s");
/// # Ok::<(), reclaim_kubelet::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct KubeletConfig {
    image_gc_high_threshold_percent: i32,
    image_gc_low_threshold_percent: i32,
    #[serde(with = "crate::serde_time::go_duration")]
    image_minimum_gc_age: Duration,
    #[serde(with = "crate::serde_time::go_duration")]
    image_maximum_gc_age: Duration,
}

impl Default for KubeletConfig {
    /// The defaults of an empty KubeletConfiguration: 85, 80, `2m0s`, `0s`.
    fn default() -> Self {
        Self {
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: Duration::from_secs(120),
            image_maximum_gc_age: Duration::ZERO,
        }
    }
}

impl KubeletConfig {
    /// Parses a KubeletConfiguration file, JSON or YAML (text starting with
    /// `{` is read as JSON), then applies the kubelet's defaults and
    /// validation.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim_start().starts_with('{') {
            Self::from_json(text)
        } else {
            Self::from_yaml(text)
        }
    }

    /// Parses a KubeletConfiguration in JSON.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        Self::from_value(&value)
    }

    /// Parses a KubeletConfiguration in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?;
        Self::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::Field {
                field: "(document)",
                message: format!("expected a mapping of fields, found {}", describe(value)),
            });
        };
        check_type_meta(map)?;
        let defaults = Self::default();
        let high = int32_field(map, HIGH)?.unwrap_or(defaults.image_gc_high_threshold_percent);
        let low = int32_field(map, LOW)?.unwrap_or(defaults.image_gc_low_threshold_percent);
        // A zero (or absent) MinAge is defaulted; MaxAge has no default.
        let min_age = duration_field(map, MIN_AGE)?
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.image_minimum_gc_age);
        let max_age = duration_field(map, MAX_AGE)?.unwrap_or(Duration::ZERO);
        let config = Self {
            image_gc_high_threshold_percent: high,
            image_gc_low_threshold_percent: low,
            image_minimum_gc_age: min_age,
            image_maximum_gc_age: max_age,
        };
        config.validate()?;
        Ok(config)
    }

    /// The kubelet's checks of these four fields, in its order; all
    /// failures are reported together.
    fn validate(&self) -> Result<(), ConfigError> {
        let (high, low) = (
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
        );
        let (min_age, max_age) = (self.image_minimum_gc_age, self.image_maximum_gc_age);
        let mut errors = Vec::new();
        if !(0..=100).contains(&high) {
            errors.push(format!(
                "invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) {high} must be between 0 and 100, inclusive"
            ));
        }
        if !(0..=100).contains(&low) {
            errors.push(format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be between 0 and 100, inclusive"
            ));
        }
        if low >= high {
            errors.push(format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {high}"
            ));
        }
        if min_age.is_negative() {
            errors.push(format!(
                "invalid configuration: imageMinimumGCAge {min_age} must not be negative"
            ));
        }
        if max_age.is_negative() {
            errors.push(format!(
                "invalid configuration: imageMaximumGCAge {max_age} must not be negative"
            ));
        }
        if max_age > Duration::ZERO && max_age <= min_age {
            errors.push(format!(
                "invalid configuration: imageMaximumGCAge {max_age} must be greater than imageMinimumGCAge {min_age}"
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { errors })
        }
    }

    /// `imageGCHighThresholdPercent` after defaulting.
    pub const fn image_gc_high_threshold_percent(&self) -> i32 {
        self.image_gc_high_threshold_percent
    }

    /// `imageGCLowThresholdPercent` after defaulting.
    pub const fn image_gc_low_threshold_percent(&self) -> i32 {
        self.image_gc_low_threshold_percent
    }

    /// `imageMinimumGCAge` after defaulting.
    pub const fn image_minimum_gc_age(&self) -> Duration {
        self.image_minimum_gc_age
    }

    /// `imageMaximumGCAge` after defaulting.
    pub const fn image_maximum_gc_age(&self) -> Duration {
        self.image_maximum_gc_age
    }

    /// The image GC policy the kubelet builds from this configuration. The
    /// configuration's validation is stricter than the GC's, so this cannot
    /// fail.
    pub const fn image_policy(&self) -> ImagePolicy {
        ImagePolicy::from_validated_config(
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
            self.image_minimum_gc_age,
            self.image_maximum_gc_age,
        )
    }
}

fn check_type_meta(map: &Map<String, Value>) -> Result<(), ConfigError> {
    for (field, want) in [
        ("apiVersion", KUBELET_CONFIG_API_VERSION),
        ("kind", KUBELET_CONFIG_KIND),
    ] {
        match map.get(field) {
            Some(Value::String(s)) if s == want => {}
            Some(other) => {
                return Err(ConfigError::Field {
                    field,
                    message: format!("expected {want:?}, found {}", describe(other)),
                });
            }
            None => {
                return Err(ConfigError::Field {
                    field,
                    message: format!(
                        "missing; a KubeletConfiguration file must set it to {want:?}"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// An `*int32` field: absent or `null` is `None`; anything but an integer
/// in the `int32` range is an error.
fn int32_field(map: &Map<String, Value>, field: &'static str) -> Result<Option<i32>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ConfigError::Field {
                field,
                message: format!("expected an integer percentage, found {}", describe(v)),
            }),
    }
}

/// A `metav1.Duration` field: a string in Go's duration syntax. `null`
/// reaches Go's parser as the empty string and fails there, as upstream.
fn duration_field(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    let text = match map.get(field) {
        None => return Ok(None),
        Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(ConfigError::Field {
                field,
                message: format!(
                    "expected a duration string such as \"2m0s\", found {}",
                    describe(v)
                ),
            });
        }
    };
    parse_go_duration(text)
        .map(Some)
        .map_err(|e| ConfigError::Field {
            field,
            message: e.to_string(),
        })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// A KubeletConfiguration that cannot be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid JSON or YAML; the message says where.
    #[error("kubelet config: invalid {format}: {message}")]
    Syntax {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A field has the wrong type or an unparsable value, or `apiVersion` /
    /// `kind` are missing or wrong. Fix that field.
    #[error("kubelet config: {field}: {message}")]
    Field {
        /// The field name as written in the file.
        field: &'static str,
        /// What is wrong, with the value found.
        message: String,
    },
    /// The kubelet's validation rejects the values; the texts are the
    /// kubelet's, joined as its aggregated error is.
    #[error("{}", go_aggregate(errors))]
    Invalid {
        /// One kubelet message per failed check, in the kubelet's order.
        errors: Vec<String>,
    },
}

impl fmt::Display for KubeletConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HIGH}: {}, {LOW}: {}, {MIN_AGE}: {}, {MAX_AGE}: {}",
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
            self.image_minimum_gc_age,
            self.image_maximum_gc_age
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    fn yaml(body: &str) -> Result<KubeletConfig, ConfigError> {
        KubeletConfig::parse(&format!("{HEAD}{body}"))
    }

    #[test]
    fn empty_config_gets_the_documented_defaults() {
        let c = yaml("").unwrap();
        assert_eq!(c, KubeletConfig::default());
        assert_eq!(c.image_policy(), ImagePolicy::default());
    }

    #[test]
    fn json_and_yaml_read_the_same_fields() {
        let j = KubeletConfig::parse(
            r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration",
               "imageGCHighThresholdPercent":70,"imageGCLowThresholdPercent":50,
               "imageMinimumGCAge":"5m","imageMaximumGCAge":"1h30m","maxPods":200}"#,
        )
        .unwrap();
        let y = yaml(
            "imageGCHighThresholdPercent: 70\nimageGCLowThresholdPercent: 50\n\
             imageMinimumGCAge: 5m\nimageMaximumGCAge: 1h30m\nmaxPods: 200\n",
        )
        .unwrap();
        assert_eq!(j, y);
        assert_eq!(j.image_minimum_gc_age(), Duration::from_secs(300));
        assert_eq!(j.image_maximum_gc_age(), Duration::from_secs(5400));
    }

    #[test]
    fn zero_min_age_is_defaulted_but_zero_thresholds_are_not() {
        let c = yaml("imageMinimumGCAge: 0s\nimageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\n")
            .unwrap();
        assert_eq!(c.image_minimum_gc_age(), Duration::from_secs(120));
        assert_eq!(c.image_gc_low_threshold_percent(), 0);
        // A null threshold is an unset pointer: defaulted.
        let c = yaml("imageGCHighThresholdPercent: null\n").unwrap();
        assert_eq!(c.image_gc_high_threshold_percent(), 85);
    }

    #[test]
    fn validation_messages_are_the_kubelets() {
        let err =
            yaml("imageGCHighThresholdPercent: 80\nimageGCLowThresholdPercent: 80\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 80 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 80"
        );
        let err = yaml("imageGCHighThresholdPercent: 101\nimageMaximumGCAge: 1m\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "[invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive, invalid configuration: imageMaximumGCAge 1m0s must be greater than imageMinimumGCAge 2m0s]"
        );
        let err = yaml("imageMinimumGCAge: -1m\nimageMaximumGCAge: -1s\n").unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                errors: vec![
                    "invalid configuration: imageMinimumGCAge -1m0s must not be negative".into(),
                    "invalid configuration: imageMaximumGCAge -1s must not be negative".into(),
                ]
            }
        );
    }

    #[test]
    fn bad_values_name_the_field_and_value() {
        let err = yaml("imageGCHighThresholdPercent: \"90\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: imageGCHighThresholdPercent: expected an integer percentage, found the string \"90\""
        );
        let err = yaml("imageGCLowThresholdPercent: 3000000000\n").unwrap_err();
        assert!(err.to_string().contains("the number 3000000000"), "{err}");
        let err = yaml("imageMinimumGCAge: 120\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: imageMinimumGCAge: expected a duration string such as \"2m0s\", found the number 120"
        );
        let err = yaml("imageMaximumGCAge: 7d\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: imageMaximumGCAge: time: unknown unit \"d\" in duration \"7d\""
        );
        let err = yaml("imageMaximumGCAge: null\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: imageMaximumGCAge: time: invalid duration \"\""
        );
    }

    #[test]
    fn type_meta_is_required() {
        let err = KubeletConfig::parse("imageGCHighThresholdPercent: 90\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: apiVersion: missing; a KubeletConfiguration file must set it to \"kubelet.config.k8s.io/v1beta1\""
        );
        let err = KubeletConfig::parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubelet config: kind: expected \"KubeletConfiguration\", found the string \"KubeProxyConfiguration\""
        );
        assert!(matches!(
            KubeletConfig::parse("{not json"),
            Err(ConfigError::Syntax { format: "JSON", .. })
        ));
        assert!(matches!(
            KubeletConfig::parse("- a\n- b\n"),
            Err(ConfigError::Field {
                field: "(document)",
                ..
            })
        ));
    }
}
