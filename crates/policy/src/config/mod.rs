//! dockerd's daemon.json `builder.gc` section: parsing exactly as dockerd
//! decodes it, lint diagnostics, and the effective BuildKit rule list.
//!
//! Two steps, mirroring the two places dockerd can fail:
//!
//! 1. [`parse`] (or [`parse_bytes`]) reads the whole daemon.json text the way
//!    dockerd's configuration loader and Go's `encoding/json` do: other
//!    daemon keys are ignored, keys inside `builder` match case-insensitively,
//!    the last duplicate wins, `null` keeps the default, both filter shapes
//!    are accepted. It fails with a [`ConfigError`] where dockerd would refuse
//!    the file ("invalid JSON", type errors, a misspelt `builder` key). It
//!    never parses sizes or filter values: dockerd does not either at that
//!    point. Warnings about traps come back as [`Diagnostic`]s.
//! 2. [`effective_rules`] converts the decoded [`BuilderGc`] into the ordered
//!    [`Rule`](crate::Rule) list BuildKit receives, exactly as moby's
//!    `getGCPolicy` does when the builder starts, or fails with the
//!    [`InitError`] that would abort dockerd's start.
//!
//! Deterministic choices where upstream is arbitrary: filter selectors are
//! sorted by their text before being joined with `,` (upstream walks a Go
//! map); errors about multiple values do not depend on the order. See
//! `docs/daemon-json.md` for the full surface and the upstream sources.
//!
//! # Example
//!
//! ```
//! use reclaim_model::Timestamp;
//! use reclaim_policy::config;
//!
//! let text = r#"{"builder": {"gc": {"policy": [
//!     {"filter": ["unused-for=168h", "type=exec.cachemount"], "maxUsedSpace": "1KB"}
//! ]}}}"#;
//! let (gc, diagnostics) = config::parse(text)?;
//! let now = Timestamp::parse_rfc3339("2024-06-01T00:00:00Z")?;
//! let effective = config::effective_rules(&gc, Some(100 << 30), now)?;
//! assert!(effective.enabled);
//! assert_eq!(effective.rules[0].filter, ["type==exec.cachemount"]);
//! assert_eq!(effective.rules[0].keep_duration.as_secs(), 7 * 24 * 3600);
//! assert_eq!(effective.rules[0].max_used_space, 1024);
//! // "1KB" is binary (1024 bytes): a diagnostic says so.
//! assert!(diagnostics.iter().any(|d| d.code == config::DiagnosticCode::BinaryUnits));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod effective;
mod json;
mod lint;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use effective::{
    DEFAULT_KEEP_DURATION_LONG, DEFAULT_KEEP_DURATION_TEMP, EffectiveGc, InitError,
    TEMP_CACHE_PERCENT, default_policy, effective_rules, effective_rules_with_offset,
};

/// Parses daemon.json text and decodes its `builder.gc` section as dockerd
/// does.
///
/// A leading byte-order mark is skipped and surrounding white space is
/// trimmed, as dockerd does; an empty file is a valid configuration with GC
/// enabled and the default policy. Keys other than `builder` are ignored
/// (reclaim does not model the rest of the daemon configuration), but a key
/// that is `builder` spelt with different case is an error, because dockerd
/// refuses to start with it.
///
/// # Errors
///
/// [`ConfigError`] for anything that makes dockerd refuse the file while
/// loading it: malformed JSON, a value of the wrong JSON type anywhere in
/// `builder`, or a misspelt `builder` key. Sizes, filter values and
/// timestamps are not checked here; [`effective_rules`] does that, as
/// dockerd's builder does at start.
pub fn parse(text: &str) -> Result<(BuilderGc, Vec<Diagnostic>), ConfigError> {
    decode::decode(text)
}

/// Like [`parse`], for the raw bytes of a file.
///
/// As dockerd does, a UTF-8 byte-order mark is skipped and a UTF-16 (LE or
/// BE) file with a byte-order mark is converted to UTF-8 first; anything
/// else must be valid UTF-8.
///
/// # Errors
///
/// [`ConfigError::Encoding`] for invalid UTF-8, otherwise as [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<(BuilderGc, Vec<Diagnostic>), ConfigError> {
    let text = decode::decode_text(bytes)?;
    parse(&text)
}

/// The decoded `builder.gc` section, after dockerd's own post-processing
/// (deprecated aliases resolved), before any size or filter is parsed.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct BuilderGc {
    /// Whether GC runs at all. Defaults to true (since Docker Engine 28.2);
    /// only `"enabled": false` turns it off.
    pub enabled: bool,
    /// Where `enabled` was set, if it was.
    pub enabled_origin: Option<Origin>,
    /// The rules as written. `None` when the key is absent or `null` (the
    /// default policy applies); `Some(vec![])` for `[]` (no rules at all).
    pub policy: Option<Vec<GcRule>>,
    /// Where `policy` was set, if it was.
    pub policy_origin: Option<Origin>,
    /// `defaultReservedSpace`, or the deprecated `defaultKeepStorage` when
    /// the former is empty. Used only for the default policy.
    pub default_reserved_space: SizeText,
    /// `defaultMaxUsedSpace`. Used only for the default policy.
    pub default_max_used_space: SizeText,
    /// `defaultMinFreeSpace`. Used only for the default policy.
    pub default_min_free_space: SizeText,
}

impl BuilderGc {
    /// The configuration of an empty daemon.json: GC enabled, default
    /// policy, no default sizes.
    pub fn new() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// One entry of `builder.gc.policy`, after dockerd resolved the deprecated
/// `keepStorage` alias.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct GcRule {
    /// Also consider internal, frontend and shared records.
    pub all: bool,
    /// The filter as a key-to-value-set map.
    pub filter: Filter,
    /// `reservedSpace`, or the deprecated `keepStorage` when the former is
    /// empty.
    pub reserved_space: SizeText,
    /// `maxUsedSpace`.
    pub max_used_space: SizeText,
    /// `minFreeSpace`.
    pub min_free_space: SizeText,
    /// Where the rule is in the file.
    pub origin: Option<Origin>,
}

/// A size as written in daemon.json (go-units syntax, e.g. `"20GB"`), not
/// yet parsed. Empty means unset.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct SizeText {
    /// The text; empty when the key is absent, `null` or `""`.
    pub text: String,
    /// Where the text was written, if it was.
    pub origin: Option<Origin>,
}

impl SizeText {
    /// A size text with no origin.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            origin: None,
        }
    }
}

/// A rule's filter: keys mapped to sets of values, as moby's `filters.Args`.
///
/// A key can be present with no values (the map form `{"private": {}}`),
/// which later becomes a bare presence selector. Ordered, so iteration is
/// deterministic.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Filter {
    fields: BTreeMap<String, BTreeSet<String>>,
}

impl Filter {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` to the set of `key` (moby's `Args.Add`).
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.fields
            .entry(key.into())
            .or_default()
            .insert(value.into());
    }

    /// Makes `key` present, with its current values (none if it is new).
    pub fn insert_key(&mut self, key: impl Into<String>) {
        self.fields.entry(key.into()).or_default();
    }

    /// Replaces the values of `key` (the map form's last-duplicate-wins).
    pub fn set(&mut self, key: impl Into<String>, values: BTreeSet<String>) {
        self.fields.insert(key.into(), values);
    }

    /// Whether `key` is present, even with no values.
    pub fn contains(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// The values of `key`, in order; empty if absent.
    pub fn values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.fields
            .get(key)
            .into_iter()
            .flat_map(|values| values.iter().map(String::as_str))
    }

    /// Number of values of `key`.
    pub fn value_count(&self, key: &str) -> usize {
        self.fields.get(key).map_or(0, BTreeSet::len)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Where something is in daemon.json: a JSON path and a 1-based line and
/// column (the column counts characters, not bytes).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Origin {
    /// The JSON path with keys as written, e.g.
    /// `builder.gc.policy[1].reservedSpace`.
    pub path: String,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "line {}, column {}", self.line, self.column)
        } else {
            write!(
                f,
                "{} (line {}, column {})",
                self.path, self.line, self.column
            )
        }
    }
}

/// A daemon.json that dockerd refuses to load.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The bytes are not valid UTF-8 (after byte-order-mark handling).
    /// dockerd: `failed to decode configuration JSON at offset N`.
    #[error("failed to decode configuration JSON at offset {offset}: invalid UTF-8")]
    Encoding {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// Malformed JSON. `message` is Go's `encoding/json` text, e.g.
    /// `invalid character '}' looking for beginning of object key string`.
    #[error("invalid JSON at {origin}: {message}")]
    Syntax {
        /// Where the offending character is.
        origin: Origin,
        /// Go's message.
        message: String,
    },
    /// A value of the wrong JSON type, e.g. a number for a size. `message`
    /// is in the style of Go's `encoding/json` (`json: cannot unmarshal
    /// number into Go struct field ... of type string`); its exact Go
    /// wording is not guaranteed, the `cannot unmarshal <kind>` part is.
    #[error("invalid JSON at {origin}: {message} (value: {value})")]
    Type {
        /// The offending value's path and position.
        origin: Origin,
        /// The offending value as written (shortened if long).
        value: String,
        /// The decoding error.
        message: String,
    },
    /// A top-level key that is `builder` spelt with different case: dockerd
    /// treats its contents as unknown directives and refuses to start.
    #[error(
        "{origin}: the following directives don't match any configuration option: {} (the key must be spelt \"builder\")",
        directives.join(", ")
    )]
    UnknownDirectives {
        /// Where the misspelt key is.
        origin: Origin,
        /// The directives dockerd reports, sorted.
        directives: Vec<String>,
    },
}

impl ConfigError {
    /// Where the problem is, when known.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::Encoding { .. } => None,
            ConfigError::Syntax { origin, .. }
            | ConfigError::Type { origin, .. }
            | ConfigError::UnknownDirectives { origin, .. } => Some(origin),
        }
    }
}

/// A warning or note about a configuration that dockerd accepts.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Diagnostic {
    /// What kind of trap this is.
    pub code: DiagnosticCode,
    /// How serious it is.
    pub severity: Severity,
    /// Where it is, when it refers to a place in the file.
    pub origin: Option<Origin>,
    /// A full-sentence explanation.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]", self.code.as_str())?;
        if let Some(origin) = &self.origin {
            write!(f, " at {origin}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing; the configuration does what it says.
    Note,
    /// The configuration probably does not do what its author meant.
    Warning,
}

/// The kinds of [`Diagnostic`]. See docs/daemon-json.md for each.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum DiagnosticCode {
    /// A deprecated alias (`keepStorage`, `defaultKeepStorage`) is used.
    AliasUsed,
    /// A deprecated alias is ignored because the new key is set.
    AliasShadowed,
    /// A size unit like `GB` that looks decimal but is binary.
    BinaryUnits,
    /// The default policy is computed from the disk size at daemon start.
    DefaultPolicyFromDisk,
    /// `default*` sizes that are never used because `policy` is set.
    DefaultsUnused,
    /// A key appears more than once; the last one wins.
    DuplicateKey,
    /// `enabled` is not set; its default changed in Docker 28.2.
    EnabledDefault,
    /// A filter key that dockerd silently drops.
    FilterKeyDropped,
    /// A filter selector that can never match a prune candidate.
    FilterNeverMatches,
    /// A filter string that BuildKit will fail to parse when GC runs.
    FilterParseFails,
    /// GC is disabled.
    GcDisabled,
    /// An `id` filter value is a regular expression.
    IdIsRegex,
    /// A key dockerd ignores (unknown, or `keepDuration` in a rule).
    IgnoredKey,
    /// `keepDuration` in a rule: dockerd ignores it, there is no age limit.
    KeepDurationIgnored,
    /// A key spelt with different case than documented; accepted.
    KeyCase,
    /// The map filter form's boolean is ignored (`false` still selects).
    MapFormBoolean,
    /// A rule with no size limit: every run deletes everything eligible.
    NoSizeLimit,
    /// A `null` value that keeps the default.
    NullIgnored,
    /// A `null` policy entry, an all-zero rule.
    NullRule,
    /// `policy: []`: GC is enabled but has no rules.
    EmptyPolicy,
    /// A size that does not fit a signed 64-bit integer.
    SizeOverflow,
    /// A size of zero, which means unset.
    SizeZero,
    /// An absolute `until` time becomes a fixed age at daemon start.
    UntilAbsolute,
    /// `until=0` means the Unix epoch.
    UntilEpoch,
    /// A negative or zero `until` duration.
    UntilNotPositive,
    /// Behaviour that differs in older Docker Engine versions.
    VersionHistory,
}

impl DiagnosticCode {
    /// A stable kebab-case name, e.g. `binary-units`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticCode::AliasUsed => "alias-used",
            DiagnosticCode::AliasShadowed => "alias-shadowed",
            DiagnosticCode::BinaryUnits => "binary-units",
            DiagnosticCode::DefaultPolicyFromDisk => "default-policy-from-disk",
            DiagnosticCode::DefaultsUnused => "defaults-unused",
            DiagnosticCode::DuplicateKey => "duplicate-key",
            DiagnosticCode::EnabledDefault => "enabled-default",
            DiagnosticCode::FilterKeyDropped => "filter-key-dropped",
            DiagnosticCode::FilterNeverMatches => "filter-never-matches",
            DiagnosticCode::FilterParseFails => "filter-parse-fails",
            DiagnosticCode::GcDisabled => "gc-disabled",
            DiagnosticCode::IdIsRegex => "id-is-regex",
            DiagnosticCode::IgnoredKey => "ignored-key",
            DiagnosticCode::KeepDurationIgnored => "keep-duration-ignored",
            DiagnosticCode::KeyCase => "key-case",
            DiagnosticCode::MapFormBoolean => "map-form-boolean",
            DiagnosticCode::NoSizeLimit => "no-size-limit",
            DiagnosticCode::NullIgnored => "null-ignored",
            DiagnosticCode::NullRule => "null-rule",
            DiagnosticCode::EmptyPolicy => "empty-policy",
            DiagnosticCode::SizeOverflow => "size-overflow",
            DiagnosticCode::SizeZero => "size-zero",
            DiagnosticCode::UntilAbsolute => "until-absolute",
            DiagnosticCode::UntilEpoch => "until-epoch",
            DiagnosticCode::UntilNotPositive => "until-not-positive",
            DiagnosticCode::VersionHistory => "version-history",
        }
    }
}

impl fmt::Display for DiagnosticCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
