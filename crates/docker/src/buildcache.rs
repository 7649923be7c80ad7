//! Build-cache records from `GET /system/df`, for every API version, and
//! the answer of `POST /build/prune`.
//!
//! The shapes (moby api/types and swagger; observed on dockerd 20.10):
//!
//! - API 1.39-1.51: a top-level `BuildCache` array (or `null`); records
//!   carry a single `Parent` string up to 1.41, a `Parents` array from 1.42
//!   (moby's Go tag spells that key `" Parents"` with a leading space, so
//!   both spellings are read).
//! - API 1.52: both the legacy array and `BuildCacheUsage.Items` (listed
//!   with `verbose=1`).
//! - API 1.53+: only `BuildCacheUsage.Items`.
//!
//! `Items` wins when it is present and non-empty. The API does not say
//! whether a record is mutable, so every record reads as immutable: an
//! in-use mutable record is listed with size 0, which counts the same in a
//! rule's total, but a `mutable`/`immutable` filter cannot be evaluated as
//! BuildKit would (no daemon.json or API filter produces one by default).

use reclaim_model::{Id, Timestamp};
use reclaim_policy::prune::{CacheRecord, RecordType};
use serde::Deserialize;
use serde_json::Value;

/// Reads the build-cache records of a `/system/df` response body.
///
/// # Errors
///
/// A description of what does not parse (not JSON, a record without an
/// id, a field of the wrong type, a timestamp that is not RFC 3339).
pub fn parse_df(body: &[u8]) -> Result<Vec<CacheRecord>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = doc
        .get("BuildCacheUsage")
        .and_then(|u| u.get("Items"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let legacy = doc.get("BuildCache").and_then(Value::as_array);
    let raw = match (items, legacy) {
        (Some(items), _) => items.as_slice(),
        (None, Some(legacy)) => legacy.as_slice(),
        (None, None) => &[],
    };
    let mut records = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    for (i, value) in raw.iter().enumerate() {
        let wire: WireRecord = serde_json::from_value(value.clone())
            .map_err(|e| format!("build cache record {i}: {e}"))?;
        let record = wire
            .into_record()
            .map_err(|e| format!("build cache record {i}: {e}"))?;
        // A record listed twice (never seen on a daemon) is kept once.
        if seen.insert(record.id.clone()) {
            records.push(record);
        }
    }
    Ok(records)
}

/// One record as the API writes it.
#[derive(Debug, Deserialize)]
struct WireRecord {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Parent", default)]
    parent: Option<String>,
    #[serde(rename = "Parents", default)]
    parents: Option<Vec<String>>,
    #[serde(rename = " Parents", default)]
    parents_spaced: Option<Vec<String>>,
    #[serde(rename = "Type", default)]
    record_type: Option<String>,
    #[serde(rename = "Description", default)]
    description: Option<String>,
    #[serde(rename = "InUse", default)]
    in_use: bool,
    #[serde(rename = "Shared", default)]
    shared: bool,
    #[serde(rename = "Size", default)]
    size: i64,
    #[serde(rename = "CreatedAt", default)]
    created_at: Option<String>,
    #[serde(rename = "LastUsedAt", default)]
    last_used_at: Option<String>,
    #[serde(rename = "UsageCount", default)]
    usage_count: i64,
}

impl WireRecord {
    fn into_record(self) -> Result<CacheRecord, String> {
        if self.id.is_empty() {
            return Err("empty ID".into());
        }
        let mut record = CacheRecord::new(self.id.as_str(), u64::try_from(self.size).unwrap_or(0));
        record.record_type = RecordType::parse(self.record_type.as_deref().unwrap_or(""));
        record.in_use = self.in_use;
        record.shared = self.shared;
        record.description = self.description.unwrap_or_default();
        record.usage_count = u64::try_from(self.usage_count).unwrap_or(0);
        record.created_at = match self.created_at.as_deref() {
            None | Some("") => Timestamp::UNIX_EPOCH,
            Some(t) => parse_time("CreatedAt", t)?,
        };
        record.last_used_at = match self.last_used_at.as_deref() {
            None | Some("") => None,
            Some(t) => Some(parse_time("LastUsedAt", t)?),
        };
        let mut parents: Vec<Id> = self
            .parents
            .or(self.parents_spaced)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(Id::from)
            .collect();
        if parents.is_empty()
            && let Some(p) = self.parent.filter(|p| !p.is_empty())
        {
            parents.push(Id::from(p));
        }
        record.parents = parents;
        Ok(record)
    }
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| format!("{field} {text:?}: {e}"))
}

/// The answer of `POST /build/prune`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq)]
pub struct PruneResponse {
    /// Ids of the deleted records, in the order BuildKit deleted them.
    #[serde(rename = "CachesDeleted", default, deserialize_with = "null_as_empty")]
    pub caches_deleted: Vec<String>,
    /// Sum of their sizes.
    #[serde(rename = "SpaceReclaimed", default)]
    pub space_reclaimed: u64,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Whether an id can be put in an anchored `id` prune filter: BuildKit ids
/// are lowercase base-36; anything with a filter or regex metacharacter is
/// refused rather than escaped, since moby passes the value unquoted.
pub fn is_filter_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response recorded from dockerd 20.10.24 (API 1.41), trimmed.
    const DF_1_41: &str = r#"{"LayersSize":6,"Images":[],"Containers":[],"Volumes":[],
      "BuildCache":[
        {"ID":"n0c4k2dfdfci0qvs0n7te15hg","Parent":"","Type":"regular","Description":"fileop target","InUse":false,"Shared":true,"Size":1982256,"CreatedAt":"2026-11-22T05:55:57.225232182Z","LastUsedAt":"2026-11-22T05:55:58.010601805Z","UsageCount":1},
        {"ID":"8eufbx9zdf98j7teo6d7oiz89","Parent":"n0c4k2dfdfci0qvs0n7te15hg","Type":"regular","Description":"fileop target","InUse":false,"Shared":true,"Size":5000,"CreatedAt":"2026-11-22T05:55:57.244377709Z","LastUsedAt":"2026-11-22T05:55:58.01644698Z","UsageCount":1},
        {"ID":"183nafa5u3zjo2ou4vc7ys9ys","Parent":"","Type":"exec.cachemount","Description":"cached mount /cache","InUse":false,"Shared":false,"Size":5000,"CreatedAt":"2026-11-22T05:55:57.448890545Z","LastUsedAt":null,"UsageCount":0}
      ],"BuilderSize":10283}"#;

    #[test]
    fn legacy_array_with_single_parents() {
        let records = parse_df(DF_1_41.as_bytes()).unwrap();
        assert_eq!(records.len(), 3);
        let child = &records[1];
        assert_eq!(child.id.as_str(), "8eufbx9zdf98j7teo6d7oiz89");
        assert_eq!(child.parents, vec![Id::from("n0c4k2dfdfci0qvs0n7te15hg")]);
        assert!(child.shared);
        assert_eq!(child.size, 5000);
        assert_eq!(
            child.last_used_at.unwrap(),
            Timestamp::parse_rfc3339("2026-11-22T05:55:58.01644698Z").unwrap()
        );
        assert!(records[0].parents.is_empty());
        let mount = &records[2];
        assert_eq!(mount.record_type, RecordType::ExecCachemount);
        assert_eq!(mount.last_used_at, None);
        assert_eq!(mount.usage_count, 0);
        assert!(!mount.mutable);
    }

    #[test]
    fn parents_arrays_both_spellings() {
        let body = r#"{"BuildCache":[
            {"ID":"a","Parents":["p","q"],"Type":"","Size":1,"CreatedAt":"2024-01-01T00:00:00Z","UsageCount":2},
            {"ID":"b"," Parents":["a"],"Type":"source.local","Size":2,"CreatedAt":"2024-01-01T00:00:00Z","LastUsedAt":"2024-01-02T00:00:00Z","UsageCount":1},
            {"ID":"c","Type":"internal","Size":-1,"CreatedAt":"0001-01-01T00:00:00Z","UsageCount":0}
        ]}"#;
        let r = parse_df(body.as_bytes()).unwrap();
        assert_eq!(r[0].parents, vec![Id::from("p"), Id::from("q")]);
        assert_eq!(r[0].record_type, RecordType::Regular);
        assert_eq!(r[1].parents, vec![Id::from("a")]);
        assert_eq!(r[1].record_type, RecordType::SourceLocal);
        // A size the daemon could not compute reads as 0.
        assert_eq!(r[2].size, 0);
        assert_eq!(r[2].record_type, RecordType::Internal);
    }

    #[test]
    fn api_1_52_items_win_and_1_53_has_only_items() {
        let both = r#"{"BuildCache":[{"ID":"old","Size":1}],
            "BuildCacheUsage":{"ActiveCount":0,"TotalCount":1,"Reclaimable":5,"TotalSize":5,
              "Items":[{"ID":"new","Parents":["x"],"Type":"regular","Size":5,"CreatedAt":"2025-01-01T00:00:00Z","LastUsedAt":"2025-01-02T00:00:00.5Z","UsageCount":3}]}}"#;
        let r = parse_df(both.as_bytes()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id.as_str(), "new");
        assert_eq!(r[0].usage_count, 3);
        let only = r#"{"BuildCacheUsage":{"Items":[{"ID":"n","Size":7}]},"ImageUsage":{}}"#;
        assert_eq!(parse_df(only.as_bytes()).unwrap()[0].size, 7);
        // Empty and null listings.
        assert!(parse_df(br#"{"BuildCache":null}"#).unwrap().is_empty());
        assert!(parse_df(br#"{"BuildCacheUsage":{}}"#).unwrap().is_empty());
        assert!(parse_df(b"{}").unwrap().is_empty());
    }

    #[test]
    fn bad_records_are_named() {
        let err = parse_df(br#"{"BuildCache":[{"ID":"a","Size":1},{"Size":2}]}"#).unwrap_err();
        assert!(err.starts_with("build cache record 1:"), "{err}");
        let err = parse_df(br#"{"BuildCache":[{"ID":"a","LastUsedAt":"yesterday"}]}"#).unwrap_err();
        assert!(err.contains("LastUsedAt \"yesterday\""), "{err}");
        assert!(parse_df(b"<html>").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn prune_responses() {
        let r: PruneResponse =
            serde_json::from_str(r#"{"CachesDeleted":null,"SpaceReclaimed":0}"#).unwrap();
        assert!(r.caches_deleted.is_empty());
        let r: PruneResponse =
            serde_json::from_str(r#"{"CachesDeleted":["a","b"],"SpaceReclaimed":70}"#).unwrap();
        assert_eq!(r.caches_deleted, ["a", "b"]);
        assert_eq!(r.space_reclaimed, 70);
    }

    #[test]
    fn filter_safe_ids() {
        assert!(is_filter_safe_id("183nafa5u3zjo2ou4vc7ys9ys"));
        assert!(!is_filter_safe_id("a,b"));
        assert!(!is_filter_safe_id("a|b"));
        assert!(!is_filter_safe_id(""));
    }
}
