//! Decoding of daemon.json into [`BuilderGc`] with the semantics of dockerd's
//! loader and Go's `encoding/json`.
//!
//! The moby types involved (daemon/config/builder.go) each have a custom
//! `UnmarshalJSON` that decodes into a fresh private struct with one nested
//! `json.Unmarshal` call. That shapes the error behaviour reproduced here:
//! inside one such call, type errors are remembered and decoding goes on
//! (the first one is returned at the end), while an error returned by a
//! nested custom decoder aborts the enclosing call at once.

use std::collections::{BTreeMap, BTreeSet};

use reclaim_model::go_to_lower;

use super::json::{self, Doc, Kind, Member, NodeId};
use super::lint::{self, FilterEntry};
use super::{
    BuilderGc, ConfigError, Diagnostic, DiagnosticCode, Filter, GcRule, Origin, Severity, SizeText,
};

/// Converts the raw bytes of a file to text as dockerd does: a UTF-8
/// byte-order mark is removed later by [`decode`]; UTF-16 with a byte-order
/// mark is converted (unpaired surrogates and a dangling odd byte become
/// U+FFFD); anything else must be valid UTF-8.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, ConfigError> {
    let utf16 = |rest: &[u8], big_endian: bool| {
        let units = rest.chunks(2).map(|pair| match pair {
            [a, b] if big_endian => u16::from_be_bytes([*a, *b]),
            [a, b] => u16::from_le_bytes([*a, *b]),
            // A trailing odd byte cannot be a code unit: U+FFFD stands in.
            _ => 0xFFFD,
        });
        char::decode_utf16(units)
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .collect::<String>()
    };
    match bytes {
        [0xFE, 0xFF, rest @ ..] => Ok(utf16(rest, true)),
        [0xFF, 0xFE, rest @ ..] => Ok(utf16(rest, false)),
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(ConfigError::Encoding {
                offset: e.valid_up_to(),
            }),
        },
    }
}

/// Decodes daemon.json text; see [`super::parse`].
pub(crate) fn decode(text: &str) -> Result<(BuilderGc, Vec<Diagnostic>), ConfigError> {
    let ctx = Ctx::new(text);
    let body_start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[body_start..];
    // Go's bytes.TrimSpace and Rust's trim use the same White_Space set.
    let start = body_start + (body.len() - body.trim_start().len());
    let trimmed = text[start..].trim_end();
    let mut top = TopState::default();
    if !trimmed.is_empty() {
        let doc = json::parse(trimmed, start).map_err(|e| ConfigError::Syntax {
            origin: ctx.origin("", e.offset),
            message: e.message,
        })?;
        let decoder = Decoder {
            ctx: &ctx,
            doc: &doc,
        };
        decoder.top(&mut top)?;
    }
    Ok(finish(top))
}

/// What the top-level decode accumulated.
#[derive(Default)]
struct TopState {
    /// The last `gc` object decoded, with its diagnostics.
    gc: Option<(BuilderGc, Vec<Diagnostic>)>,
    /// Diagnostics outside `gc`.
    diagnostics: Vec<Diagnostic>,
}

fn finish(top: TopState) -> (BuilderGc, Vec<Diagnostic>) {
    let mut diagnostics = top.diagnostics;
    let gc = match top.gc {
        Some((gc, gc_diagnostics)) => {
            diagnostics.extend(gc_diagnostics);
            gc
        }
        None => {
            let gc = BuilderGc::new();
            lint::gc_level(&gc, None, &mut diagnostics);
            gc
        }
    };
    (gc, diagnostics)
}

/// Positions and paths.
struct Ctx<'t> {
    text: &'t str,
    line_starts: Vec<usize>,
    /// Number of UTF-8 continuation bytes before every multiple of
    /// [`BLOCK`], so that a column costs at most one block of scanning.
    continuation_prefix: Vec<usize>,
}

/// Granularity of [`Ctx::continuation_prefix`].
const BLOCK: usize = 64;

impl<'t> Ctx<'t> {
    fn new(text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut continuation_prefix = Vec::with_capacity(text.len() / BLOCK + 1);
        let mut count = 0;
        for block in text.as_bytes().chunks(BLOCK) {
            continuation_prefix.push(count);
            count += block.iter().filter(|&&b| b & 0xC0 == 0x80).count();
        }
        continuation_prefix.push(count);
        Self {
            text,
            line_starts,
            continuation_prefix,
        }
    }

    /// Characters before byte `offset`.
    fn chars_before(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        let block = offset / BLOCK;
        let scanned = self.text.as_bytes()[block * BLOCK..offset]
            .iter()
            .filter(|&&b| b & 0xC0 == 0x80)
            .count();
        offset - self.continuation_prefix[block] - scanned
    }

    fn origin(&self, path: &str, offset: usize) -> Origin {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let line_start = self.line_starts[line - 1];
        let mut column = self.chars_before(offset) - self.chars_before(line_start) + 1;
        if line == 1 && offset > 0 && self.text.starts_with('\u{feff}') {
            // Editors do not show a byte-order mark.
            column -= 1;
        }
        Origin {
            path: path.to_owned(),
            line,
            column,
        }
    }
}

struct Decoder<'a, 't> {
    ctx: &'a Ctx<'t>,
    doc: &'a Doc,
}

/// The first type error seen in one Go `json.Unmarshal` call.
#[derive(Default)]
struct Saved(Option<ConfigError>);

impl Saved {
    fn save(&mut self, error: ConfigError) {
        if self.0.is_none() {
            self.0 = Some(error);
        }
    }

    fn into_result(self) -> Result<(), ConfigError> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Appends an object key to a JSON path, quoting keys that are not plain
/// identifiers.
fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '!');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", serde_json::Value::from(key)),
    }
}

fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Go's `encoding/json` field matching: an exact match, or a match under
/// Unicode simple case folding. Every field name here is ASCII, so the only
/// non-ASCII characters that can match are the Kelvin sign (folds to `k`)
/// and the long s (folds to `s`).
pub(crate) fn go_field_matches(key: &str, field: &str) -> bool {
    let mut key_chars = key.chars();
    for f in field.chars() {
        let Some(k) = key_chars.next() else {
            return false;
        };
        let k = match k {
            '\u{212a}' => 'k',
            '\u{17f}' => 's',
            other => other,
        };
        if !k.eq_ignore_ascii_case(&f) {
            return false;
        }
    }
    key_chars.next().is_none()
}

/// One decodable field of a Go struct: its Go (or tag) name, matched
/// case-insensitively, and the spelling the documentation uses.
struct Field {
    go_name: &'static str,
    documented: &'static str,
}

const fn field(go_name: &'static str, documented: &'static str) -> Field {
    Field {
        go_name,
        documented,
    }
}

const BUILDER_FIELDS: [Field; 4] = [
    field("GC", "gc"),
    field("Entitlements", "entitlements"),
    field("History", "history"),
    field("proxy-network", "proxy-network"),
];
const GC_FIELDS: [Field; 6] = [
    field("Enabled", "enabled"),
    field("Policy", "policy"),
    field("DefaultReservedSpace", "defaultReservedSpace"),
    field("DefaultMaxUsedSpace", "defaultMaxUsedSpace"),
    field("DefaultMinFreeSpace", "defaultMinFreeSpace"),
    field("DefaultKeepStorage", "defaultKeepStorage"),
];
const RULE_FIELDS: [Field; 6] = [
    field("All", "all"),
    field("Filter", "filter"),
    field("ReservedSpace", "reservedSpace"),
    field("MaxUsedSpace", "maxUsedSpace"),
    field("MinFreeSpace", "minFreeSpace"),
    field("KeepStorage", "keepStorage"),
];
const ENTITLEMENT_FIELDS: [Field; 3] = [
    field("network-host", "network-host"),
    field("security-insecure", "security-insecure"),
    field("device", "device"),
];

/// Keys dockerd's directive check skips (config.go `skipValidateOptions`).
const SKIP_VALIDATE: [&str; 4] = [
    "features",
    "builder",
    "deprecated-key-path",
    "allow-nondistributable-artifacts",
];

/// Tracks which fields of one object were already seen, for duplicate and
/// spelling diagnostics.
struct Fields<'f> {
    fields: &'f [Field],
    seen: Vec<bool>,
}

impl<'f> Fields<'f> {
    fn new(fields: &'f [Field]) -> Self {
        Self {
            fields,
            seen: vec![false; fields.len()],
        }
    }

    /// The index of the field `key` selects (exact match first, as Go).
    fn lookup(&self, key: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.go_name == key)
            .or_else(|| {
                self.fields
                    .iter()
                    .position(|f| go_field_matches(key, f.go_name))
            })
    }
}

impl Decoder<'_, '_> {
    fn kind(&self, id: NodeId) -> &Kind {
        &self.doc.nodes[id].kind
    }

    fn value_origin(&self, path: &str, id: NodeId) -> Origin {
        self.ctx.origin(path, self.doc.nodes[id].start)
    }

    fn key_origin(&self, path: &str, member: &Member) -> Origin {
        self.ctx.origin(path, member.key_start)
    }

    /// The value as written, shortened to at most 60 characters.
    fn excerpt(&self, id: NodeId) -> String {
        let node = &self.doc.nodes[id];
        let text = self.ctx.text.get(node.start..node.end).unwrap_or("");
        if text.chars().count() <= 60 {
            text.to_owned()
        } else {
            let head: String = text.chars().take(57).collect();
            format!("{head}...")
        }
    }

    /// A Go `UnmarshalTypeError` for the value at `id`. `go_field` is the
    /// Go struct-field context (`Struct.field.path`), if any.
    fn type_error(
        &self,
        id: NodeId,
        path: &str,
        go_field: Option<&str>,
        go_type: &str,
    ) -> ConfigError {
        let kind = self.kind(id).go_name();
        let message = match go_field {
            Some(f) => {
                format!("json: cannot unmarshal {kind} into Go struct field {f} of type {go_type}")
            }
            None => format!("json: cannot unmarshal {kind} into Go value of type {go_type}"),
        };
        ConfigError::Type {
            origin: self.value_origin(path, id),
            value: self.excerpt(id),
            message,
        }
    }

    /// Diagnostics every object member gets: spelling and duplicates.
    fn member_notes(
        &self,
        fields: &mut Fields<'_>,
        index: usize,
        member: &Member,
        path: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let f = &fields.fields[index];
        if member.key != f.documented {
            diagnostics.push(Diagnostic {
                code: DiagnosticCode::KeyCase,
                severity: Severity::Note,
                origin: Some(self.key_origin(path, member)),
                message: format!(
                    "\"{}\" is accepted because dockerd matches keys case-insensitively, but the documented spelling is \"{}\"",
                    member.key, f.documented
                ),
            });
        }
        if fields.seen[index] {
            diagnostics.push(Diagnostic {
                code: DiagnosticCode::DuplicateKey,
                severity: Severity::Warning,
                origin: Some(self.key_origin(path, member)),
                message: format!(
                    "\"{}\" is given more than once in this object; the last one wins",
                    f.documented
                ),
            });
        }
        fields.seen[index] = true;
    }

    fn ignored_key(&self, member: &Member, path: &str, what: &str) -> Diagnostic {
        Diagnostic {
            code: DiagnosticCode::IgnoredKey,
            severity: Severity::Warning,
            origin: Some(self.key_origin(path, member)),
            message: format!(
                "\"{}\" is not a {what} setting; dockerd ignores it silently",
                member.key
            ),
        }
    }

    fn null_ignored(&self, id: NodeId, path: &str, what: &str) -> Diagnostic {
        Diagnostic {
            code: DiagnosticCode::NullIgnored,
            severity: Severity::Note,
            origin: Some(self.value_origin(path, id)),
            message: format!("null is ignored here: {what}"),
        }
    }

    fn top(&self, top: &mut TopState) -> Result<(), ConfigError> {
        let root = self.doc.root;
        let members = match self.kind(root) {
            // A `null` document decodes to an empty configuration.
            Kind::Null => return Ok(()),
            Kind::Object(members) => members,
            _ => {
                return Err(self.type_error(root, "", None, "map[string]interface {}"));
            }
        };
        self.directive_check(members)?;
        let mut saved = Saved::default();
        for member in members {
            if member.key == "builder" || go_field_matches(&member.key, "builder") {
                let path = child_path("", &member.key);
                self.builder(member.value, &path, top, &mut saved)?;
            }
        }
        saved.into_result()
    }

    /// dockerd flattens every top-level object except a few (`builder` among
    /// them, exact spelling) into directives and refuses unknown ones. A
    /// mis-cased `builder` is therefore flattened and its keys rejected.
    fn directive_check(&self, members: &[Member]) -> Result<(), ConfigError> {
        let mut directives = BTreeSet::new();
        let mut first: Option<&Member> = None;
        let candidates: Vec<(usize, &Member)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.key != "builder" && go_field_matches(&m.key, "builder"))
            .collect();
        let last: BTreeMap<&str, usize> = candidates
            .iter()
            .map(|&(i, m)| (m.key.as_str(), i))
            .collect();
        for &(i, member) in &candidates {
            // Go's map keeps the last duplicate.
            if last[member.key.as_str()] != i {
                continue;
            }
            let flattened: Vec<&str> = match self.kind(member.value) {
                Kind::Object(children) => children.iter().map(|c| c.key.as_str()).collect(),
                _ => vec![member.key.as_str()],
            };
            let before = directives.len();
            directives.extend(
                flattened
                    .into_iter()
                    .filter(|k| !SKIP_VALIDATE.contains(k))
                    .map(str::to_owned),
            );
            if directives.len() > before && first.is_none() {
                first = Some(member);
            }
        }
        match first {
            None => Ok(()),
            Some(member) => Err(ConfigError::UnknownDirectives {
                origin: self.key_origin(&child_path("", &member.key), member),
                directives: directives.into_iter().collect(),
            }),
        }
    }

    /// `builder`: a plain Go struct, so repeated `builder` keys merge field by
    /// field, and type errors are remembered rather than fatal.
    fn builder(
        &self,
        id: NodeId,
        path: &str,
        top: &mut TopState,
        saved: &mut Saved,
    ) -> Result<(), ConfigError> {
        let members = match self.kind(id) {
            Kind::Null => return Ok(()),
            Kind::Object(members) => members,
            _ => {
                saved.save(self.type_error(
                    id,
                    path,
                    Some("Config.builder"),
                    "config.BuilderConfig",
                ));
                return Ok(());
            }
        };
        let mut fields = Fields::new(&BUILDER_FIELDS);
        for member in members {
            let child = child_path(path, &member.key);
            let Some(index) = fields.lookup(&member.key) else {
                top.diagnostics
                    .push(self.ignored_key(member, &child, "builder"));
                continue;
            };
            let repeated = fields.seen[index];
            self.member_notes(&mut fields, index, member, &child, &mut top.diagnostics);
            match fields.fields[index].go_name {
                "GC" => {
                    let mut diagnostics = Vec::new();
                    let gc = self.gc(member.value, &child, &mut diagnostics)?;
                    if top.gc.is_some() && !repeated {
                        // Another `builder` object set `gc` before: this one
                        // replaces it as a whole.
                        diagnostics.push(Diagnostic {
                            code: DiagnosticCode::DuplicateKey,
                            severity: Severity::Warning,
                            origin: Some(self.key_origin(&child, member)),
                            message: "\"gc\" was already set by an earlier \"builder\" object; this one replaces it entirely".to_owned(),
                        });
                    }
                    top.gc = Some((gc, diagnostics));
                }
                "Entitlements" => {
                    self.entitlements(member.value, &child, &mut top.diagnostics, saved)
                }
                "History" => {
                    // Not GC related; only its JSON type is checked.
                    if !matches!(self.kind(member.value), Kind::Null | Kind::Object(_)) {
                        saved.save(self.type_error(
                            member.value,
                            &child,
                            Some("BuilderConfig.builder.History"),
                            "config.BuilderHistoryConfig",
                        ));
                    }
                }
                _ => {
                    if !matches!(self.kind(member.value), Kind::Null | Kind::Bool(_)) {
                        saved.save(self.type_error(
                            member.value,
                            &child,
                            Some("BuilderConfig.builder.proxy-network"),
                            "bool",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn entitlements(
        &self,
        id: NodeId,
        path: &str,
        diagnostics: &mut Vec<Diagnostic>,
        saved: &mut Saved,
    ) {
        let members = match self.kind(id) {
            Kind::Null => return,
            Kind::Object(members) => members,
            _ => {
                saved.save(self.type_error(
                    id,
                    path,
                    Some("BuilderConfig.builder.Entitlements"),
                    "config.BuilderEntitlements",
                ));
                return;
            }
        };
        let mut fields = Fields::new(&ENTITLEMENT_FIELDS);
        for member in members {
            let child = child_path(path, &member.key);
            let Some(index) = fields.lookup(&member.key) else {
                diagnostics.push(self.ignored_key(member, &child, "builder.entitlements"));
                continue;
            };
            self.member_notes(&mut fields, index, member, &child, diagnostics);
            if !matches!(self.kind(member.value), Kind::Null | Kind::Bool(_)) {
                let go_field = format!(
                    "BuilderEntitlements.builder.Entitlements.{}",
                    fields.fields[index].go_name
                );
                saved.save(self.type_error(member.value, &child, Some(&go_field), "bool"));
            }
        }
    }

    /// moby's `BuilderGCConfig.UnmarshalJSON`.
    fn gc(
        &self,
        id: NodeId,
        path: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Result<BuilderGc, ConfigError> {
        let mut gc = BuilderGc::new();
        let mut keep_storage = SizeText::default();
        let mut saved = Saved::default();
        let mut policy_diagnostics = Vec::new();
        let mut enabled_null = None;
        match self.kind(id) {
            Kind::Null => {
                diagnostics.push(self.null_ignored(
                    id,
                    path,
                    "\"gc\": null keeps every default (GC enabled, default policy)",
                ));
            }
            Kind::Object(members) => {
                let mut fields = Fields::new(&GC_FIELDS);
                for member in members {
                    let child = child_path(path, &member.key);
                    let Some(index) = fields.lookup(&member.key) else {
                        diagnostics.push(self.ignored_key(member, &child, "builder.gc"));
                        continue;
                    };
                    self.member_notes(&mut fields, index, member, &child, diagnostics);
                    let go_name = fields.fields[index].go_name;
                    let go_field = format!("BuilderConfig.builder.GC.{go_name}");
                    let value = member.value;
                    match go_name {
                        "Enabled" => match self.kind(value) {
                            Kind::Bool(b) => {
                                gc.enabled = *b;
                                gc.enabled_origin = Some(self.value_origin(&child, value));
                            }
                            Kind::Null => enabled_null = Some(self.value_origin(&child, value)),
                            _ => {
                                saved.save(self.type_error(value, &child, Some(&go_field), "bool"))
                            }
                        },
                        "Policy" => match self.kind(value) {
                            Kind::Null => {
                                gc.policy = None;
                                gc.policy_origin = Some(self.value_origin(&child, value));
                                policy_diagnostics.clear();
                            }
                            Kind::Array(items) => {
                                let mut local = Vec::new();
                                let mut rules = Vec::with_capacity(items.len());
                                for (i, &item) in items.iter().enumerate() {
                                    rules.push(self.rule(
                                        item,
                                        &index_path(&child, i),
                                        &mut local,
                                    )?);
                                }
                                gc.policy = Some(rules);
                                gc.policy_origin = Some(self.value_origin(&child, value));
                                policy_diagnostics = local;
                            }
                            _ => saved.save(self.type_error(
                                value,
                                &child,
                                Some(&go_field),
                                "[]config.BuilderGCRule",
                            )),
                        },
                        _ => {
                            let target = match go_name {
                                "DefaultReservedSpace" => &mut gc.default_reserved_space,
                                "DefaultMaxUsedSpace" => &mut gc.default_max_used_space,
                                "DefaultMinFreeSpace" => &mut gc.default_min_free_space,
                                _ => &mut keep_storage,
                            };
                            self.string_field(
                                value,
                                &child,
                                &go_field,
                                target,
                                &mut saved,
                                diagnostics,
                            );
                        }
                    }
                }
            }
            _ => saved.save(self.type_error(
                id,
                path,
                Some("BuilderConfig.builder.GC"),
                "config.BuilderGCConfig",
            )),
        }
        saved.into_result()?;
        if let Some(origin) = enabled_null
            && gc.enabled_origin.is_none()
        {
            diagnostics.push(Diagnostic {
                code: DiagnosticCode::NullIgnored,
                severity: Severity::Note,
                origin: Some(origin),
                message: "null is ignored here: \"enabled\": null leaves GC enabled".to_owned(),
            });
        }
        lint::alias(
            &mut gc.default_reserved_space,
            keep_storage,
            "defaultReservedSpace",
            "defaultKeepStorage",
            diagnostics,
        );
        diagnostics.extend(policy_diagnostics);
        lint::gc_level(&gc, Some(self.value_origin(path, id)), diagnostics);
        Ok(gc)
    }

    /// A Go `string` field: strings are taken, `null` is a no-op, anything
    /// else is a remembered type error.
    fn string_field(
        &self,
        id: NodeId,
        path: &str,
        go_field: &str,
        target: &mut SizeText,
        saved: &mut Saved,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match self.kind(id) {
            Kind::String(s) => {
                *target = SizeText {
                    text: s.clone(),
                    origin: Some(self.value_origin(path, id)),
                };
            }
            Kind::Null => diagnostics.push(self.null_ignored(
                id,
                path,
                "the size stays as it was (unset unless given earlier)",
            )),
            _ => saved.save(self.type_error(id, path, Some(go_field), "string")),
        }
    }

    /// moby's `BuilderGCRule.UnmarshalJSON`.
    fn rule(
        &self,
        id: NodeId,
        path: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Result<GcRule, ConfigError> {
        let mut rule = GcRule {
            origin: Some(self.value_origin(path, id)),
            ..GcRule::default()
        };
        let mut keep_storage = SizeText::default();
        let mut saved = Saved::default();
        let mut filter_diagnostics = Vec::new();
        match self.kind(id) {
            Kind::Null => diagnostics.push(Diagnostic {
                code: DiagnosticCode::NullRule,
                severity: Severity::Warning,
                origin: rule.origin.clone(),
                message: "a null policy entry is an all-zero rule: no filter, no age limit and no size limit, so every GC run deletes every record it may touch".to_owned(),
            }),
            Kind::Object(members) => {
                let mut fields = Fields::new(&RULE_FIELDS);
                for member in members {
                    let child = child_path(path, &member.key);
                    let Some(index) = fields.lookup(&member.key) else {
                        if go_field_matches(&member.key, "keepDuration") {
                            diagnostics.push(Diagnostic {
                                code: DiagnosticCode::KeepDurationIgnored,
                                severity: Severity::Warning,
                                origin: Some(self.key_origin(&child, member)),
                                message: "dockerd has no \"keepDuration\" in daemon.json rules (the docker/cli reference example notwithstanding): it is ignored and this rule has no age limit; use the filter \"until=<duration>\" instead".to_owned(),
                            });
                        } else {
                            diagnostics.push(self.ignored_key(member, &child, "policy rule"));
                        }
                        continue;
                    };
                    self.member_notes(&mut fields, index, member, &child, diagnostics);
                    let go_name = fields.fields[index].go_name;
                    let go_field = format!("BuilderConfig.builder.GC.Policy.{go_name}");
                    let value = member.value;
                    match go_name {
                        "All" => match self.kind(value) {
                            Kind::Bool(b) => rule.all = *b,
                            Kind::Null => {}
                            _ => saved.save(self.type_error(value, &child, Some(&go_field), "bool")),
                        },
                        "Filter" => {
                            let mut local = Vec::new();
                            rule.filter = self.filter(value, &child, &mut local)?;
                            filter_diagnostics = local;
                        }
                        _ => {
                            let target = match go_name {
                                "ReservedSpace" => &mut rule.reserved_space,
                                "MaxUsedSpace" => &mut rule.max_used_space,
                                "MinFreeSpace" => &mut rule.min_free_space,
                                _ => &mut keep_storage,
                            };
                            self.string_field(value, &child, &go_field, target, &mut saved, diagnostics);
                        }
                    }
                }
            }
            _ => saved.save(self.type_error(
                id,
                path,
                Some("BuilderConfig.builder.GC.Policy"),
                "config.BuilderGCRule",
            )),
        }
        saved.into_result()?;
        lint::alias(
            &mut rule.reserved_space,
            keep_storage,
            "reservedSpace",
            "keepStorage",
            diagnostics,
        );
        diagnostics.extend(filter_diagnostics);
        if !matches!(self.kind(id), Kind::Null) {
            // A null rule already has its own, more specific warning.
            lint::rule_level(&rule, diagnostics);
        }
        Ok(rule)
    }

    /// moby's `BuilderGCFilter.UnmarshalJSON`: first as a list of strings,
    /// then, if that fails, as `map[string]map[string]bool`.
    fn filter(
        &self,
        id: NodeId,
        path: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Result<Filter, ConfigError> {
        let mut filter = Filter::new();
        let mut entries = Vec::new();
        match self.kind(id) {
            Kind::Null => {}
            Kind::Array(items)
                if items
                    .iter()
                    .all(|&i| matches!(self.kind(i), Kind::String(_) | Kind::Null)) =>
            {
                for (i, &item) in items.iter().enumerate() {
                    // A null element decodes to "" in a []string.
                    let text = match self.kind(item) {
                        Kind::String(s) => s.as_str(),
                        _ => "",
                    };
                    let (name, value) = text.split_once('=').unwrap_or((text, ""));
                    let key = go_to_lower(name.trim());
                    let value = value.trim().to_owned();
                    filter.add(key.clone(), value.clone());
                    entries.push(FilterEntry {
                        key,
                        value: Some(value),
                        written: text.to_owned(),
                        origin: self.value_origin(&index_path(path, i), item),
                        map_form: false,
                        flag: None,
                    });
                }
            }
            Kind::Object(members) => {
                let mut saved = Saved::default();
                // Entries per key, in first-seen key order; a repeated key
                // replaces its entries, a repeated value its entry.
                let mut by_key: Vec<Vec<FilterEntry>> = Vec::new();
                let mut key_index: BTreeMap<&str, usize> = BTreeMap::new();
                for member in members {
                    let child = child_path(path, &member.key);
                    if filter.contains(&member.key) {
                        diagnostics.push(Diagnostic {
                            code: DiagnosticCode::DuplicateKey,
                            severity: Severity::Warning,
                            origin: Some(self.key_origin(&child, member)),
                            message: format!(
                                "filter key \"{}\" is given more than once; only the last one counts",
                                member.key
                            ),
                        });
                    }
                    let bare = |origin| FilterEntry {
                        key: member.key.clone(),
                        value: None,
                        written: member.key.clone(),
                        origin,
                        map_form: true,
                        flag: None,
                    };
                    let mut values = BTreeSet::new();
                    let mut local: Vec<FilterEntry> = Vec::new();
                    match self.kind(member.value) {
                        Kind::Null => local.push(bare(self.key_origin(&child, member))),
                        Kind::Object(inner) => {
                            if inner.is_empty() {
                                local.push(bare(self.key_origin(&child, member)));
                            }
                            let mut value_index: BTreeMap<&str, usize> = BTreeMap::new();
                            for value in inner {
                                let value_path = child_path(&child, &value.key);
                                let flag = match self.kind(value.value) {
                                    Kind::Bool(b) => Some(*b),
                                    Kind::Null => Some(false),
                                    _ => {
                                        saved.save(self.type_error(
                                            value.value,
                                            &value_path,
                                            Some("BuilderConfig.builder.GC.Policy.Filter"),
                                            "bool",
                                        ));
                                        None
                                    }
                                };
                                values.insert(value.key.clone());
                                let entry = FilterEntry {
                                    key: member.key.clone(),
                                    value: Some(value.key.clone()),
                                    written: member.key.clone(),
                                    origin: self.key_origin(&value_path, value),
                                    map_form: true,
                                    flag,
                                };
                                match value_index.get(value.key.as_str()) {
                                    Some(&at) => local[at] = entry,
                                    None => {
                                        value_index.insert(value.key.as_str(), local.len());
                                        local.push(entry);
                                    }
                                }
                            }
                        }
                        _ => saved.save(self.type_error(
                            member.value,
                            &child,
                            Some("BuilderConfig.builder.GC.Policy.Filter"),
                            "map[string]bool",
                        )),
                    }
                    filter.set(member.key.clone(), values);
                    match key_index.get(member.key.as_str()) {
                        Some(&at) => by_key[at] = local,
                        None => {
                            key_index.insert(member.key.as_str(), by_key.len());
                            by_key.push(local);
                        }
                    }
                }
                saved.into_result()?;
                entries.extend(by_key.into_iter().flatten());
            }
            _ => {
                return Err(self.type_error(
                    id,
                    path,
                    Some("BuilderConfig.builder.GC.Policy.Filter"),
                    "map[string]map[string]bool",
                ));
            }
        }
        lint::filter_level(&filter, &entries, &self.value_origin(path, id), diagnostics);
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_matching_follows_go_folding() {
        assert!(go_field_matches("policy", "Policy"));
        assert!(go_field_matches("poliCy", "Policy"));
        assert!(go_field_matches("POLICY", "Policy"));
        assert!(go_field_matches("\u{212a}eepStorage", "KeepStorage"));
        assert!(go_field_matches("re\u{17f}ervedSpace", "ReservedSpace"));
        assert!(!go_field_matches("polic", "Policy"));
        assert!(!go_field_matches("policyy", "Policy"));
        assert!(!go_field_matches("po_licy", "Policy"));
        assert!(go_field_matches("PROXY-NETWORK", "proxy-network"));
    }

    #[test]
    fn text_decoding_handles_byte_order_marks() {
        assert_eq!(decode_text(b"{}").unwrap(), "{}");
        assert_eq!(decode_text(b"\xef\xbb\xbf{}").unwrap(), "\u{feff}{}");
        assert_eq!(decode_text(b"\xff\xfe{\x00}\x00").unwrap(), "{}");
        assert_eq!(decode_text(b"\xfe\xff\x00{\x00}").unwrap(), "{}");
        assert_eq!(decode_text(b"\xff\xfe{\x00}").unwrap(), "{\u{FFFD}");
        assert_eq!(
            decode_text(b"{\"a\xff\"}").unwrap_err(),
            ConfigError::Encoding { offset: 3 }
        );
    }

    #[test]
    fn origins_count_lines_and_characters() {
        let ctx = Ctx::new("ab\nçd\n");
        assert_eq!(ctx.origin("p", 0).line, 1);
        assert_eq!(ctx.origin("p", 4).line, 2);
        assert_eq!(ctx.origin("p", 4).column, 2);
        assert_eq!(ctx.origin("p", 7).line, 3);
        assert_eq!(ctx.origin("p", 7).column, 1);
        // Long lines with multi-byte characters across sampling blocks.
        let long = format!("{}x", "é".repeat(100));
        let ctx = Ctx::new(&long);
        assert_eq!(ctx.origin("p", 200).column, 101);
        // A byte-order mark is not a column.
        let ctx = Ctx::new("\u{feff}{}");
        assert_eq!(ctx.origin("p", 3).column, 1);
    }

    #[test]
    fn paths_quote_unusual_keys() {
        assert_eq!(child_path("", "builder"), "builder");
        assert_eq!(child_path("builder", "gc"), "builder.gc");
        assert_eq!(child_path("a", "label!"), "a.label!");
        assert_eq!(child_path("a", "x.y"), "a[\"x.y\"]");
        assert_eq!(child_path("a", ""), "a[\"\"]");
        assert_eq!(index_path("a.policy", 2), "a.policy[2]");
    }
}
