//! Serde helpers for instants and durations in snapshot and plan files.
//!
//! Instants are written as RFC 3339 strings (`2026-07-01T12:00:00Z`) and
//! read from either such a string or an integer number of seconds since the
//! Unix epoch, so that hand-written snapshots and the conformance vectors'
//! integer clocks both load. Durations are written in Go's notation
//! (`1h0m0s`), the form every kubelet message uses.

use reclaim_model::{Duration, Timestamp};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// An instant as an RFC 3339 string, or an integer number of Unix seconds.
pub(crate) mod instant {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        d.deserialize_any(InstantVisitor)
    }
}

/// An optional instant; `null` or a missing field is `None`.
pub(crate) mod opt_instant {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        d.deserialize_option(OptionalInstantVisitor)
    }
}

/// A duration written in Go's notation. Only serialisation is provided:
/// durations enter through typed constructors and the config loader.
pub(crate) mod go_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }
}

struct InstantVisitor;

impl<'de> Visitor<'de> for InstantVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 timestamp string or an integer number of Unix seconds")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
        Ok(Timestamp::from_unix_secs(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
        let secs = i64::try_from(v)
            .map_err(|_| E::custom(format_args!("timestamp {v} is too large for Unix seconds")))?;
        Ok(Timestamp::from_unix_secs(secs))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
        Err(E::custom(format_args!(
            "timestamp {v} is not an integer number of seconds; use an RFC 3339 string for fractions"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        Timestamp::parse_rfc3339(v).map_err(E::custom)
    }
}

struct OptionalInstantVisitor;

impl<'de> Visitor<'de> for OptionalInstantVisitor {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null, an RFC 3339 timestamp string or an integer number of Unix seconds")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(InstantVisitor).map(Some)
    }
}
