//! Diagnostics: configurations dockerd accepts but that likely do not do what
//! their author meant, and facts that change their meaning across Docker
//! versions.

use reclaim_model::{
    ByteSize, Timestamp, from_human_size, parse_go_duration, parse_until, ram_in_bytes,
};

use super::effective::{PASS_THROUGH, selectors};
use super::{BuilderGc, Diagnostic, DiagnosticCode, Filter, GcRule, Origin, Severity, SizeText};

/// One entry of a filter as written, for diagnostics.
pub(crate) struct FilterEntry {
    /// The key after moby's processing (trimmed and lower-cased in the list
    /// form, verbatim in the map form).
    pub(crate) key: String,
    /// The value after processing; `None` for a map-form key without values.
    pub(crate) value: Option<String>,
    /// The entry as written (the list string, or the map key).
    pub(crate) written: String,
    pub(crate) origin: Origin,
    pub(crate) map_form: bool,
    /// The map form's boolean, when there is one.
    pub(crate) flag: Option<bool>,
}

/// Record types BuildKit reports (`regular` stands for the empty type).
const RECORD_TYPES: [&str; 6] = [
    "regular",
    "internal",
    "frontend",
    "source.local",
    "source.git.checkout",
    "exec.cachemount",
];

fn warning(code: DiagnosticCode, origin: Option<Origin>, message: String) -> Diagnostic {
    Diagnostic {
        code,
        severity: Severity::Warning,
        origin,
        message,
    }
}

fn note(code: DiagnosticCode, origin: Option<Origin>, message: String) -> Diagnostic {
    Diagnostic {
        code,
        severity: Severity::Note,
        origin,
        message,
    }
}

/// Resolves a deprecated alias as moby does (the alias is used only when
/// the new key's text is empty) and reports it.
pub(crate) fn alias(
    target: &mut SizeText,
    alias: SizeText,
    name: &str,
    alias_name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if alias.text.is_empty() {
        return;
    }
    if target.text.is_empty() {
        diagnostics.push(note(
            DiagnosticCode::AliasUsed,
            alias.origin.clone(),
            format!("\"{alias_name}\" is deprecated; dockerd uses it as \"{name}\" because \"{name}\" is not set"),
        ));
        *target = alias;
    } else {
        diagnostics.push(warning(
            DiagnosticCode::AliasShadowed,
            alias.origin.clone(),
            format!(
                "\"{alias_name}\" is ignored because \"{name}\" is set (\"{}\")",
                target.text
            ),
        ));
    }
}

/// Whether a size text means "unset" (empty, or any spelling of zero).
pub(crate) fn size_is_unset(size: &SizeText) -> bool {
    size.text.is_empty() || ram_in_bytes(&size.text) == Ok(0)
}

/// Diagnostics for one size text: zero, overflow, decimal-looking units.
/// Invalid sizes are reported by `effective_rules` as dockerd would.
fn size(size: &SizeText, name: &str, diagnostics: &mut Vec<Diagnostic>) {
    if size.text.is_empty() {
        return;
    }
    let Ok(bytes) = ram_in_bytes(&size.text) else {
        return;
    };
    let origin = size.origin.clone();
    if bytes == 0 {
        diagnostics.push(note(
            DiagnosticCode::SizeZero,
            origin,
            format!(
                "{name} \"{}\" is zero, which means \"not set\", not \"keep nothing\"",
                size.text
            ),
        ));
        return;
    }
    if bytes < 0 {
        diagnostics.push(warning(
            DiagnosticCode::SizeOverflow,
            origin,
            format!(
                "{name} \"{}\" does not fit a signed 64-bit integer; dockerd (amd64) turns it into {bytes}, a negative limit",
                size.text
            ),
        ));
        return;
    }
    // The suffix as go-units splits it: after the last digit, '.' or space.
    let cut = size
        .text
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .map_or(0, |i| i + 1);
    let suffix = size.text[cut..].to_ascii_lowercase();
    if suffix.is_empty() || suffix == "b" || suffix.ends_with("ib") {
        return;
    }
    let decimal = from_human_size(&size.text)
        .map(|d| format!(", not {d}"))
        .unwrap_or_default();
    diagnostics.push(warning(
        DiagnosticCode::BinaryUnits,
        origin,
        format!(
            "{name} \"{}\" is {bytes} bytes ({}{decimal}): daemon.json size units are binary, 1 GB = 1024^3 bytes",
            size.text,
            ByteSize(bytes.unsigned_abs())
        ),
    ));
}

/// Diagnostics about the `gc` object as a whole, on its final values.
pub(crate) fn gc_level(gc: &BuilderGc, origin: Option<Origin>, diagnostics: &mut Vec<Diagnostic>) {
    if !gc.enabled {
        diagnostics.push(warning(
            DiagnosticCode::GcDisabled,
            gc.enabled_origin.clone(),
            "GC is disabled: dockerd runs no automatic build-cache GC, and does not even parse the policy or the sizes".to_owned(),
        ));
        return;
    }
    if gc.enabled_origin.is_none() {
        diagnostics.push(note(
            DiagnosticCode::EnabledDefault,
            origin.clone(),
            "\"enabled\" is not set: GC is on by default since Docker Engine 28.2.0; Docker 28.1 and older run no build-cache GC unless \"enabled\": true".to_owned(),
        ));
    }
    let defaults = [
        (&gc.default_reserved_space, "defaultReservedSpace"),
        (&gc.default_max_used_space, "defaultMaxUsedSpace"),
        (&gc.default_min_free_space, "defaultMinFreeSpace"),
    ];
    match &gc.policy {
        Some(rules) => {
            if rules.is_empty() {
                diagnostics.push(warning(
                    DiagnosticCode::EmptyPolicy,
                    gc.policy_origin.clone(),
                    "\"policy\": [] means no rules at all: GC is enabled but never deletes anything; leave \"policy\" out (or null) for the default policy".to_owned(),
                ));
            }
            for (text, name) in defaults {
                if !text.text.is_empty() {
                    diagnostics.push(warning(
                        DiagnosticCode::DefaultsUnused,
                        text.origin.clone(),
                        format!("{name} is ignored (never even parsed) because \"policy\" is set; it only feeds the default policy"),
                    ));
                }
            }
            if rules
                .iter()
                .any(|r| !r.max_used_space.text.is_empty() || !r.min_free_space.text.is_empty())
            {
                diagnostics.push(note(
                    DiagnosticCode::VersionHistory,
                    gc.policy_origin.clone(),
                    "\"maxUsedSpace\" and \"minFreeSpace\" exist since Docker Engine 28.0.0; older daemons ignore them and know only \"keepStorage\"".to_owned(),
                ));
            }
        }
        None => {
            for (text, name) in defaults {
                size(text, name, diagnostics);
            }
            let all_unset = defaults.iter().all(|(text, _)| size_is_unset(text));
            let any_invalid = defaults
                .iter()
                .any(|(text, _)| !text.text.is_empty() && ram_in_bytes(&text.text).is_err());
            if all_unset {
                diagnostics.push(note(
                    DiagnosticCode::DefaultPolicyFromDisk,
                    origin.clone(),
                    "no policy and no default sizes: the default policy's limits are computed at daemon start from the size of the disk holding dockerd's buildkit directory (10% reserved, 80% max used, 20% min free, counted in GiB but produced in decimal GB; 2e9 reserved only if the disk cannot be read)".to_owned(),
                ));
                diagnostics.push(note(
                    DiagnosticCode::VersionHistory,
                    origin,
                    "the default policy differs by Docker version: up to 27.x a single keep size of 10% of the disk; 28.0.0 to 28.5.0 computed max used and min free as total/p (about 1.25% and 5% of the disk); before 29.6.0 its first rule's filter was one AND-ed string that matched nothing".to_owned(),
                ));
            } else if !any_invalid {
                diagnostics.push(note(
                    DiagnosticCode::DefaultPolicyFromDisk,
                    origin,
                    "the default policy uses the default sizes given; the disk is not consulted and the unset limits stay 0".to_owned(),
                ));
            }
        }
    }
}

/// Diagnostics about one policy rule, on its final values.
pub(crate) fn rule_level(rule: &GcRule, diagnostics: &mut Vec<Diagnostic>) {
    size(&rule.reserved_space, "reservedSpace", diagnostics);
    size(&rule.max_used_space, "maxUsedSpace", diagnostics);
    size(&rule.min_free_space, "minFreeSpace", diagnostics);
    let all_unset = size_is_unset(&rule.reserved_space)
        && size_is_unset(&rule.max_used_space)
        && size_is_unset(&rule.min_free_space);
    if all_unset {
        diagnostics.push(warning(
            DiagnosticCode::NoSizeLimit,
            rule.origin.clone(),
            "this rule sets no reservedSpace, maxUsedSpace or minFreeSpace: every GC run deletes every record it matches (BuildKit's batch mode), whatever the cache size".to_owned(),
        ));
    }
}

/// Suggests a filter key for a misspelt one.
fn suggestion(key: &str) -> Option<&'static str> {
    let normalized: String = key
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    let squashed: String = normalized.chars().filter(|&c| c != '-').collect();
    PASS_THROUGH
        .iter()
        .chain(&["until", "unused-for"])
        .copied()
        .find(|k| *k == normalized || k.replace('-', "") == squashed)
}

/// Diagnostics about one rule's filter.
pub(crate) fn filter_level(
    filter: &Filter,
    entries: &[FilterEntry],
    origin: &Origin,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // A fixed instant: only the shape of `until` values matters here.
    let reference = Timestamp::UNIX_EPOCH;
    for entry in entries {
        let at = Some(entry.origin.clone());
        if entry.flag == Some(false) {
            diagnostics.push(warning(
                DiagnosticCode::MapFormBoolean,
                at.clone(),
                format!(
                    "the boolean is ignored: {{\"{}\": {{\"{}\": false}}}} still selects {} = {}",
                    entry.key,
                    entry.value.as_deref().unwrap_or(""),
                    entry.key,
                    entry.value.as_deref().unwrap_or("")
                ),
            ));
        }
        let key = entry.key.as_str();
        let value = entry.value.as_deref();
        match key {
            "until" | "unused-for" => match value {
                None => diagnostics.push(warning(
                    DiagnosticCode::FilterKeyDropped,
                    at,
                    format!("\"{key}\" without a value is ignored: the rule has no age limit"),
                )),
                Some("0") => diagnostics.push(note(
                    DiagnosticCode::UntilEpoch,
                    at,
                    format!("{key}=0 means the Unix epoch, not zero: only records never used at all are old enough"),
                )),
                Some(v) => match parse_go_duration(v) {
                    Ok(d) if d.is_negative() => diagnostics.push(warning(
                        DiagnosticCode::UntilNotPositive,
                        at,
                        format!("{key}={v} is negative: the cut-off lies in the future, so nearly every record is old enough"),
                    )),
                    Ok(d) if d.is_zero() => diagnostics.push(warning(
                        DiagnosticCode::UntilNotPositive,
                        at,
                        format!("{key}={v} is a zero duration: the rule has no age limit"),
                    )),
                    Ok(_) => {}
                    Err(_) => {
                        if parse_until(v, reference).is_ok() {
                            diagnostics.push(note(
                                DiagnosticCode::UntilAbsolute,
                                at,
                                format!("{key}={v} is an absolute time: dockerd turns it into a fixed age when it starts, so the cut-off moves forward while the daemon runs"),
                            ));
                        }
                    }
                },
            },
            "label" | "label!" => diagnostics.push(warning(
                DiagnosticCode::FilterKeyDropped,
                at,
                format!("\"{key}\" filters are accepted by the build-prune API but dropped from daemon.json rules: this entry has no effect"),
            )),
            "id" => {
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    diagnostics.push(note(
                        DiagnosticCode::IdIsRegex,
                        at,
                        format!("id values are regular expressions matched anywhere in the id (id~={v}); anchor with ^...$ for an exact match"),
                    ));
                }
            }
            "inuse" => diagnostics.push(warning(
                DiagnosticCode::FilterNeverMatches,
                at,
                "records in use are never prune candidates, so an \"inuse\" selector matches nothing and this rule deletes nothing".to_owned(),
            )),
            "parent" => diagnostics.push(warning(
                DiagnosticCode::FilterNeverMatches,
                at,
                "BuildKit's prune filter has no \"parent\" field (it has \"parents\", and leaves it empty for prune candidates): this rule deletes nothing".to_owned(),
            )),
            "shared" | "private" | "mutable" | "immutable" => {
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    diagnostics.push(warning(
                        DiagnosticCode::FilterNeverMatches,
                        at,
                        format!("boolean fields have an empty value in BuildKit's filter, so {key}=={v} never matches; use the map form {{\"{key}\": {{}}}} for a presence test"),
                    ));
                }
            }
            "type" => {
                if let Some(v) = value.filter(|v| !v.is_empty() && !RECORD_TYPES.contains(v)) {
                    diagnostics.push(warning(
                        DiagnosticCode::FilterNeverMatches,
                        at,
                        format!("no cache record has type \"{v}\" (types: {}): this rule deletes nothing", RECORD_TYPES.join(", ")),
                    ));
                }
            }
            "description" => {}
            _ => {
                let hint = match suggestion(key) {
                    Some(s) if entry.map_form => format!(
                        "; map-form keys are taken verbatim (not trimmed or lower-cased), write \"{s}\""
                    ),
                    Some(s) => format!("; did you mean \"{s}\"?"),
                    None => String::new(),
                };
                let shown = if key.is_empty() { &entry.written } else { &entry.key };
                diagnostics.push(warning(
                    DiagnosticCode::FilterKeyDropped,
                    at,
                    format!("filter key \"{shown}\" is not one dockerd passes to BuildKit; it is dropped silently{hint}"),
                ));
            }
        }
    }
    if let Ok(selectors) = selectors(filter) {
        let joined = selectors.join(",");
        if let Some(problem) = selector_problem(&joined) {
            diagnostics.push(warning(
                DiagnosticCode::FilterParseFails,
                Some(origin.clone()),
                format!("BuildKit will fail to parse the filter \"{joined}\" when GC runs ({problem}); the rule then fails and stops every later rule"),
            ));
        }
    }
}

/// Why BuildKit's containerd filter parser would reject `filter`, if it
/// would (the parser's error text).
fn selector_problem(filter: &str) -> Option<String> {
    crate::filter::Filter::parse(filter)
        .err()
        .map(|e| e.to_string())
}
