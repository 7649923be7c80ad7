//! Cache records and the snapshot the planners read.

use std::collections::HashMap;
use std::fmt;

use reclaim_model::{Id, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One BuildKit cache record, as `docker system df -v` / `buildctl du` list
/// them (spec 2.1).
///
/// The serde shape is the snapshot file format (docs/snapshot-format.md):
/// `id` and `size` are required, every other field has a default, and unknown
/// fields are rejected.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRecord {
    /// The record's id; unique and non-empty within a [`Snapshot`].
    pub id: Id,
    /// Size in bytes.
    pub size: u64,
    /// The record's type; `""` reads as [`RecordType::Regular`].
    #[serde(rename = "type", default)]
    pub record_type: RecordType,
    /// Referenced by something other than its own child records (a build, a
    /// mount): never a prune candidate. Default false.
    #[serde(default)]
    pub in_use: bool,
    /// Backs an image in the image store. Every ancestor of a shared record is
    /// treated as shared too. Default false.
    #[serde(default)]
    pub shared: bool,
    /// A mutable snapshot; an in-use mutable record counts 0 bytes toward a
    /// rule's total. Default false.
    #[serde(default)]
    pub mutable: bool,
    /// Creation time. Default: the Unix epoch. Only the FIFO ordering reads
    /// it.
    #[serde(default)]
    pub created_at: Timestamp,
    /// Last time a build released the record; `None` (or `null`) means never
    /// used. Default `None`.
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Number of times the record was used. Default 0.
    #[serde(default)]
    pub usage_count: u64,
    /// Human-readable description (`[stage 2/5] RUN make`). Default empty.
    #[serde(default)]
    pub description: String,
    /// Ids of the records this one was built on (one layer parent, several
    /// merge parents, or diff parents). Ids that are not in the snapshot are
    /// ignored. Default empty.
    #[serde(default)]
    pub parents: Vec<Id>,
    /// Seconds it would take to rebuild this record if it were deleted, for
    /// the GDSF ordering (`None`: assume one second per GiB, see
    /// [`crate::prune::Ordering::Gdsf`]). Not a BuildKit field; omitted from
    /// the output when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_seconds: Option<f64>,
}

impl CacheRecord {
    /// A regular, unused, unshared, immutable record of `size` bytes created
    /// at the epoch and never used, with no parents: a starting point for
    /// tests and examples.
    pub fn new(id: impl Into<Id>, size: u64) -> Self {
        Self {
            id: id.into(),
            size,
            record_type: RecordType::Regular,
            in_use: false,
            shared: false,
            mutable: false,
            created_at: Timestamp::UNIX_EPOCH,
            last_used_at: None,
            usage_count: 0,
            description: String::new(),
            parents: Vec::new(),
            rebuild_seconds: None,
        }
    }
}

/// A cache record's type (BuildKit's `UsageRecordType`).
///
/// Types BuildKit does not define are kept as [`RecordType::Other`] and
/// behave like regular records, except that a filter sees their own name.
#[derive(Clone, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum RecordType {
    /// `exec.cachemount`: a `RUN --mount=type=cache` directory.
    ExecCachemount,
    /// `frontend`: a frontend image; only pruned with `all`.
    Frontend,
    /// `internal`: BuildKit's own data; only pruned with `all`.
    Internal,
    /// `regular`: an ordinary build layer (also the reading of `""`).
    #[default]
    Regular,
    /// `source.git.checkout`: a git checkout.
    SourceGitCheckout,
    /// `source.local`: a copy of a local build context.
    SourceLocal,
    /// Any other type name, kept verbatim.
    Other(Box<str>),
}

impl RecordType {
    /// Reads a type name; `""` is [`RecordType::Regular`].
    pub fn parse(name: &str) -> Self {
        match name {
            "" | "regular" => Self::Regular,
            "internal" => Self::Internal,
            "frontend" => Self::Frontend,
            "source.local" => Self::SourceLocal,
            "source.git.checkout" => Self::SourceGitCheckout,
            "exec.cachemount" => Self::ExecCachemount,
            other => Self::Other(other.into()),
        }
    }

    /// The type's name, as filters and the snapshot format spell it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ExecCachemount => "exec.cachemount",
            Self::Frontend => "frontend",
            Self::Internal => "internal",
            Self::Regular => "regular",
            Self::SourceGitCheckout => "source.git.checkout",
            Self::SourceLocal => "source.local",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RecordType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RecordType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::parse(&name))
    }
}

/// A validated set of cache records: every id is non-empty and unique.
///
/// Deserializes from a JSON array of [`CacheRecord`]s (the snapshot file
/// format) and serializes back to one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    records: Vec<CacheRecord>,
}

impl Snapshot {
    /// Checks the records and wraps them.
    ///
    /// Fails on the first empty id or the first id seen twice, naming the
    /// index (0-based position in `records`) of the offending records.
    pub fn new(records: Vec<CacheRecord>) -> Result<Self, SnapshotError> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            if record.id.as_str().is_empty() {
                return Err(SnapshotError::EmptyId { index });
            }
            if let Some(first) = seen.insert(record.id.as_str(), index) {
                return Err(SnapshotError::DuplicateId {
                    id: record.id.clone(),
                    first,
                    second: index,
                });
            }
        }
        drop(seen);
        Ok(Self { records })
    }

    /// Parses a snapshot file: a JSON array of records.
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        let records: Vec<CacheRecord> = serde_json::from_str(text).map_err(SnapshotError::Json)?;
        Self::new(records)
    }

    /// The records, in the order given.
    pub fn records(&self) -> &[CacheRecord] {
        &self.records
    }

    /// Unwraps the records.
    pub fn into_records(self) -> Vec<CacheRecord> {
        self.records
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.records.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let records = Vec::<CacheRecord>::deserialize(deserializer)?;
        Self::new(records).map_err(serde::de::Error::custom)
    }
}

/// A snapshot that cannot be planned over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Two records have the same id. Ids identify records (parents refer to
    /// them), so each must appear once; merge or drop the duplicates.
    #[error("records[{second}].id: duplicate id {id:?} (first used by records[{first}])")]
    DuplicateId {
        /// The repeated id.
        id: Id,
        /// Index of the first record with that id.
        first: usize,
        /// Index of the second record with that id.
        second: usize,
    },
    /// A record's id is the empty string.
    #[error("records[{index}].id: id is empty")]
    EmptyId {
        /// Index of the record.
        index: usize,
    },
    /// The text is not a JSON array of records (syntax error, wrong type,
    /// missing `id`/`size`, unknown field, bad timestamp); the message names
    /// the field and the line and column.
    #[error("snapshot is not a valid record list: {0}")]
    Json(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shape_round_trips() {
        let text = r#"[{"id": "a", "size": 10, "type": "exec.cachemount", "in_use": true,
            "shared": false, "mutable": true, "created_at": "2024-01-01T00:00:00Z",
            "last_used_at": "2024-05-01T00:00:00.000000001Z", "usage_count": 3,
            "description": "mount", "parents": ["b"]},
            {"id": "b", "size": 5}]"#;
        let snap = Snapshot::from_json(text).unwrap();
        let a = &snap.records()[0];
        assert_eq!(a.record_type, RecordType::ExecCachemount);
        assert!(a.in_use && a.mutable && !a.shared);
        assert_eq!(a.last_used_at.unwrap().subsec_nanos(), 1);
        assert_eq!(a.parents, vec![Id::new("b")]);
        let b = &snap.records()[1];
        assert_eq!(b, &CacheRecord::new("b", 5));
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn types_read_and_print() {
        assert_eq!(RecordType::parse(""), RecordType::Regular);
        assert_eq!(RecordType::parse("frontend"), RecordType::Frontend);
        let other = RecordType::parse("custom.kind");
        assert_eq!(other.as_str(), "custom.kind");
        assert_eq!(other, RecordType::Other("custom.kind".into()));
        let json = serde_json::to_string(&RecordType::parse("")).unwrap();
        assert_eq!(json, "\"regular\"");
    }

    #[test]
    fn bad_snapshots_name_the_field() {
        let unknown = Snapshot::from_json(r#"[{"id": "a", "size": 1, "sise": 2}]"#).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `sise`"),
            "{unknown}"
        );
        let missing = Snapshot::from_json(r#"[{"id": "a"}]"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `size`"),
            "{missing}"
        );
        let negative = Snapshot::from_json(r#"[{"id": "a", "size": -1}]"#).unwrap_err();
        assert!(negative.to_string().contains("-1"), "{negative}");
        let time = Snapshot::from_json(r#"[{"id": "a", "size": 1, "last_used_at": "yesterday"}]"#)
            .unwrap_err();
        assert!(time.to_string().contains("yesterday"), "{time}");
        let dup =
            Snapshot::from_json(r#"[{"id": "a", "size": 1}, {"id": "a", "size": 2}]"#).unwrap_err();
        assert_eq!(
            dup.to_string(),
            "records[1].id: duplicate id \"a\" (first used by records[0])"
        );
        let empty = Snapshot::new(vec![CacheRecord::new("", 1)]).unwrap_err();
        assert_eq!(empty.to_string(), "records[0].id: id is empty");
    }
}
