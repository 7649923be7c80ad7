//! Behaviour tests for daemon.json parsing and effective rules, one group per
//! section of spec/buildkit-gc.md (1.1 to 1.6).

use proptest::prelude::*;
use reclaim_model::{Duration, Timestamp};

use super::*;
use crate::Rule;

const GIB: u64 = 1 << 30;

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2024-01-31T00:00:00Z").unwrap()
}

fn parsed(text: &str) -> (BuilderGc, Vec<Diagnostic>) {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn gc(text: &str) -> BuilderGc {
    parsed(text).0
}

/// Effective rules of a `builder.gc` body, on a 100 GiB disk.
fn rules_of(gc_body: &str) -> Vec<Rule> {
    let text = format!(r#"{{"builder": {{"gc": {gc_body}}}}}"#);
    effective_rules(&gc(&text), Some(100 * GIB), now())
        .unwrap_or_else(|e| panic!("{gc_body}: {e}"))
        .rules
}

/// The single rule of a one-rule policy.
fn rule(rule_body: &str) -> Rule {
    let rules = rules_of(&format!(r#"{{"policy": [{rule_body}]}}"#));
    assert_eq!(rules.len(), 1);
    rules.into_iter().next().unwrap()
}

fn init_error(gc_body: &str) -> String {
    let text = format!(r#"{{"builder": {{"gc": {gc_body}}}}}"#);
    match effective_rules(&gc(&text), Some(100 * GIB), now()) {
        Ok(r) => panic!("{gc_body} gave {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn rule_error(rule_body: &str) -> String {
    init_error(&format!(r#"{{"policy": [{rule_body}]}}"#))
}

fn config_error(text: &str) -> ConfigError {
    match parse(text) {
        Ok(r) => panic!("{text} parsed as {r:?}"),
        Err(e) => e,
    }
}

fn codes(text: &str) -> Vec<DiagnosticCode> {
    parsed(text).1.iter().map(|d| d.code).collect()
}

fn has(text: &str, code: DiagnosticCode) -> bool {
    codes(text).contains(&code)
}

fn filter(rule: &Rule) -> &str {
    assert_eq!(rule.filter.len(), 1, "{rule:?}");
    &rule.filter[0]
}

// 1.1 Shape: defaults, null, [], enabled.

#[test]
fn empty_and_null_files_are_the_default_configuration() {
    for text in [
        "",
        "  \n\t",
        "null",
        "{}",
        "\u{feff}{}",
        "\u{a0}{}\u{3000}",
        "{\"other\": 1}",
    ] {
        let gc = gc(text);
        assert!(gc.enabled, "{text:?}");
        assert_eq!(gc.policy, None, "{text:?}");
        let effective = effective_rules(&gc, Some(100 * GIB), now()).unwrap();
        assert_eq!(effective.rules, default_policy(0, 0, 0, Some(100 * GIB)));
    }
}

#[test]
fn enabled_defaults_to_true_and_only_false_disables() {
    assert!(gc(r#"{"builder": {}}"#).enabled);
    assert!(gc(r#"{"builder": {"gc": {}}}"#).enabled);
    assert!(gc(r#"{"builder": {"gc": null}}"#).enabled);
    assert!(gc(r#"{"builder": {"gc": {"enabled": null}}}"#).enabled);
    assert!(gc(r#"{"builder": {"gc": {"enabled": true}}}"#).enabled);
    let disabled = gc(r#"{"builder": {"gc": {"enabled": false, "policy": [{"all": true}]}}}"#);
    assert!(!disabled.enabled);
    let effective = effective_rules(&disabled, Some(GIB), now()).unwrap();
    assert_eq!(
        effective,
        EffectiveGc {
            enabled: false,
            rules: vec![]
        }
    );
}

#[test]
fn null_keeps_the_previous_value_of_a_scalar_but_resets_a_list() {
    // `enabled` is a bool: null is a no-op, the earlier duplicate stays.
    assert!(!gc(r#"{"builder": {"gc": {"enabled": false, "enabled": null}}}"#).enabled);
    // `policy` is a slice: null sets it back to nil (default policy).
    let g = gc(r#"{"builder": {"gc": {"policy": [{"all": true}], "policy": null}}}"#);
    assert_eq!(g.policy, None);
    // A later `gc` object replaces the earlier one entirely, even null.
    let g = gc(r#"{"builder": {"gc": {"enabled": false}, "gc": null}}"#);
    assert!(g.enabled);
    // Sizes are strings: null keeps the earlier value.
    let g =
        gc(r#"{"builder": {"gc": {"defaultReservedSpace": "1GB", "defaultReservedSpace": null}}}"#);
    assert_eq!(g.default_reserved_space.text, "1GB");
}

#[test]
fn empty_policy_means_no_rules() {
    let g = gc(r#"{"builder": {"gc": {"enabled": true, "policy": []}}}"#);
    let effective = effective_rules(&g, Some(100 * GIB), now()).unwrap();
    assert!(effective.enabled);
    assert!(effective.rules.is_empty());
}

#[test]
fn null_policy_element_is_an_all_zero_rule() {
    let rules = rules_of(r#"{"policy": [null, {"all": true}]}"#);
    assert_eq!(
        rules[0],
        Rule {
            filter: vec![String::new()],
            ..Rule::default()
        }
    );
    assert!(rules[1].all);
}

#[test]
fn keys_match_case_insensitively_and_exact_match_is_preferred() {
    let rules = rules_of(
        r#"{"poliCy": [{"ReservedSpace": "1KB", "ALL": true, "FILTER": ["TYPE=regular"]}]}"#,
    );
    assert_eq!(rules[0].reserved_space, 1024);
    assert!(rules[0].all);
    assert_eq!(filter(&rules[0]), "type==regular");
    let g = gc(r#"{"builder": {"GC": {"Enabled": false}}}"#);
    assert!(!g.enabled);
    // Kelvin sign and long s fold to k and s, as in Go.
    assert_eq!(rule(r#"{"\u212aeepStorage": "2KB"}"#).reserved_space, 2048);
    assert_eq!(
        rule(r#"{"re\u017fervedSpace": "3KB"}"#).reserved_space,
        3072
    );
    // Escaped keys are decoded before matching.
    assert!(rule(r#"{"\u0061ll": true}"#).all);
}

#[test]
fn last_duplicate_wins() {
    let r = rule(r#"{"reservedSpace": "1KB", "reservedSpace": "2KB", "ReservedSpace": "3KB"}"#);
    assert_eq!(r.reserved_space, 3072);
    let r = rule(r#"{"filter": ["type=regular"], "filter": ["type=internal"]}"#);
    assert_eq!(filter(&r), "type==internal");
    let rules =
        rules_of(r#"{"policy": [{"all": true}, {}], "policy": [{"reservedSpace": "1KB"}]}"#);
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].all);
    // Two `builder` objects merge field by field.
    let g = gc(r#"{"builder": {"gc": {"enabled": false}}, "builder": {"entitlements": {}}}"#);
    assert!(!g.enabled);
    let g = gc(r#"{"builder": {"gc": {"enabled": false}}, "builder": {"gc": {}}}"#);
    assert!(g.enabled);
}

#[test]
fn unknown_keys_are_ignored_with_a_diagnostic() {
    let text = r#"{"builder": {"gc": {"policy": [{"keepDuration": "48h", "maxUsedSpace": "512MB", "filter": ["type=source.local"]}], "foo": 1}, "bar": [], "history": {"maxAge": "48h"}}, "debug": true}"#;
    let (g, diagnostics) = parsed(text);
    let effective = effective_rules(&g, None, now()).unwrap();
    assert_eq!(effective.rules[0].keep_duration, Duration::ZERO);
    assert_eq!(effective.rules[0].max_used_space, 512 << 20);
    let find = |code| {
        diagnostics
            .iter()
            .filter(move |d: &&Diagnostic| d.code == code)
    };
    let keep = find(DiagnosticCode::KeepDurationIgnored).next().unwrap();
    let origin = keep.origin.as_ref().unwrap();
    assert_eq!(origin.path, "builder.gc.policy[0].keepDuration");
    assert_eq!((origin.line, origin.column), (1, 33));
    let ignored: Vec<&str> = find(DiagnosticCode::IgnoredKey)
        .map(|d| d.origin.as_ref().unwrap().path.as_str())
        .collect();
    assert_eq!(ignored, ["builder.bar", "builder.gc.foo"]);
}

// 1.1 Type errors.

#[test]
fn type_errors_name_the_path_value_and_position() {
    let text = "{\n  \"builder\": {\n    \"gc\": {\n      \"policy\": [\n        {\"reservedSpace\": 10000000000}\n      ]\n    }\n  }\n}";
    let e = config_error(text);
    let ConfigError::Type {
        origin,
        value,
        message,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(origin.path, "builder.gc.policy[0].reservedSpace");
    assert_eq!((origin.line, origin.column), (5, 27));
    assert_eq!(value, "10000000000");
    assert!(message.contains("cannot unmarshal number"), "{message}");
    assert!(e.to_string().contains("line 5, column 27"), "{e}");
}

#[test]
fn type_errors_for_every_field_kind() {
    let cases = [
        (r#"{"builder": "x"}"#, "cannot unmarshal string", "builder"),
        (
            r#"{"builder": {"gc": []}}"#,
            "cannot unmarshal array",
            "builder.gc",
        ),
        (
            r#"{"builder": {"gc": {"enabled": "false"}}}"#,
            "cannot unmarshal string",
            "builder.gc.enabled",
        ),
        (
            r#"{"builder": {"gc": {"enabled": 0}}}"#,
            "cannot unmarshal number",
            "builder.gc.enabled",
        ),
        (
            r#"{"builder": {"gc": {"policy": {}}}}"#,
            "cannot unmarshal object",
            "builder.gc.policy",
        ),
        (
            r#"{"builder": {"gc": {"policy": "x"}}}"#,
            "cannot unmarshal string",
            "builder.gc.policy",
        ),
        (
            r#"{"builder": {"gc": {"policy": [1]}}}"#,
            "cannot unmarshal number",
            "builder.gc.policy[0]",
        ),
        (
            r#"{"builder": {"gc": {"policy": [[]]}}}"#,
            "cannot unmarshal array",
            "builder.gc.policy[0]",
        ),
        (
            r#"{"builder": {"gc": {"defaultKeepStorage": true}}}"#,
            "cannot unmarshal bool",
            "builder.gc.defaultKeepStorage",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"all": "true"}]}}}"#,
            "cannot unmarshal string",
            "builder.gc.policy[0].all",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"keepStorage": {}}]}}}"#,
            "cannot unmarshal object",
            "builder.gc.policy[0].keepStorage",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"filter": "type=regular"}]}}}"#,
            "cannot unmarshal string",
            "builder.gc.policy[0].filter",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"filter": 1}]}}}"#,
            "cannot unmarshal number",
            "builder.gc.policy[0].filter",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"filter": ["a", 1]}]}}}"#,
            "cannot unmarshal array",
            "builder.gc.policy[0].filter",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"filter": {"type": ["regular"]}}]}}}"#,
            "cannot unmarshal array",
            "builder.gc.policy[0].filter.type",
        ),
        (
            r#"{"builder": {"gc": {"policy": [{"filter": {"type": {"regular": "yes"}}}]}}}"#,
            "cannot unmarshal string",
            "builder.gc.policy[0].filter.type.regular",
        ),
        (
            r#"{"builder": {"entitlements": {"network-host": "yes"}}}"#,
            "cannot unmarshal string",
            "builder.entitlements.network-host",
        ),
        (
            r#"{"builder": {"history": []}}"#,
            "cannot unmarshal array",
            "builder.history",
        ),
        (
            r#"{"builder": {"proxy-network": 1}}"#,
            "cannot unmarshal number",
            "builder.proxy-network",
        ),
        ("[]", "cannot unmarshal array", ""),
        ("\"x\"", "cannot unmarshal string", ""),
    ];
    for (text, fragment, path) in cases {
        let e = config_error(text);
        let ConfigError::Type {
            origin, message, ..
        } = &e
        else {
            panic!("{text}: {e:?}");
        };
        assert!(message.contains(fragment), "{text}: {message}");
        assert_eq!(origin.path, path, "{text}");
    }
}

#[test]
fn a_nested_decoder_error_wins_over_an_earlier_remembered_one() {
    // `enabled` is a remembered type error in gc's decode; the rule's error
    // comes from a nested custom decoder and aborts at once.
    let e = config_error(r#"{"builder": {"gc": {"enabled": "x", "policy": [{"all": 1}]}}}"#);
    assert_eq!(e.origin().unwrap().path, "builder.gc.policy[0].all");
    // Within one object, the first remembered error is reported.
    let e = config_error(r#"{"builder": {"gc": {"enabled": "x", "defaultReservedSpace": 1}}}"#);
    assert_eq!(e.origin().unwrap().path, "builder.gc.enabled");
    // A gc error beats a remembered builder-level error before it.
    let e = config_error(r#"{"builder": {"proxy-network": 1, "gc": {"enabled": 1}}}"#);
    assert_eq!(e.origin().unwrap().path, "builder.gc.enabled");
}

#[test]
fn syntax_errors_have_go_messages_and_positions() {
    let e = config_error("{\n  \"builder\": {\n    \"gc\": {,}\n  }\n}");
    let ConfigError::Syntax { origin, message } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(
        message,
        "invalid character ',' looking for beginning of object key string"
    );
    assert_eq!((origin.line, origin.column), (3, 12));
    let e = config_error("{\"builder\": {\"gc\": {}},}");
    assert!(
        e.to_string()
            .contains("invalid character '}' looking for beginning of object key string"),
        "{e}"
    );
    let e = config_error("{\"builder\": ");
    assert!(
        e.to_string().contains("unexpected end of JSON input"),
        "{e}"
    );
    let e = config_error("{} x");
    assert!(e.to_string().contains("after top-level value"), "{e}");
}

#[test]
fn misspelt_builder_key_is_refused_like_dockerd() {
    let e = config_error(r#"{"Builder": {"GC": {"enabled": true}}}"#);
    assert_eq!(
        e.to_string(),
        "Builder (line 1, column 2): the following directives don't match any configuration option: GC (the key must be spelt \"builder\")"
    );
    let e = config_error(r#"{"BUILDER": {"gc": {}, "entitlements": {}, "features": {}}}"#);
    let ConfigError::UnknownDirectives { directives, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(directives, &["entitlements", "gc"]);
    let e = config_error(r#"{"Builder": null}"#);
    assert!(
        e.to_string().contains("configuration option: Builder"),
        "{e}"
    );
    // An empty object flattens to nothing: dockerd accepts it.
    assert!(gc(r#"{"Builder": {}}"#).enabled);
    // With the exact key present too, the exact one still decodes.
    assert!(!gc(r#"{"builder": {"gc": {"enabled": false}}, "Builder": {}}"#).enabled);
}

#[test]
fn raw_bytes_in_utf16_and_invalid_utf8() {
    let text = r#"{"builder": {"gc": {"enabled": false}}}"#;
    let mut le = vec![0xFF, 0xFE];
    le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    assert!(!parse_bytes(&le).unwrap().0.enabled);
    let mut be = vec![0xFE, 0xFF];
    be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    assert!(!parse_bytes(&be).unwrap().0.enabled);
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(text.as_bytes());
    assert!(!parse_bytes(&bom).unwrap().0.enabled);
    assert_eq!(
        parse_bytes(b"{\"a\": \"\xc3\"}").unwrap_err(),
        ConfigError::Encoding { offset: 7 }
    );
}

// 1.2 Sizes.

#[test]
fn sizes_are_binary_and_parsed_in_order() {
    let r = rule(r#"{"reservedSpace": "512MB", "maxUsedSpace": "1.5GB", "minFreeSpace": "20gb"}"#);
    assert_eq!(
        (r.reserved_space, r.max_used_space, r.min_free_space),
        (512 << 20, 1_610_612_736, 20 << 30)
    );
    let r = rule(r#"{"reservedSpace": "0", "maxUsedSpace": "", "minFreeSpace": "0.5k"}"#);
    assert_eq!(
        (r.reserved_space, r.max_used_space, r.min_free_space),
        (0, 0, 512)
    );
    // The first failing key in the order reserved, max-used, min-free wins.
    assert_eq!(
        rule_error(r#"{"minFreeSpace": "1x", "maxUsedSpace": "8EB", "reservedSpace": "20GB "}"#),
        "failed to parse reservedSpace: strconv.ParseFloat: parsing \"20GB\": invalid syntax"
    );
    assert_eq!(
        rule_error(r#"{"minFreeSpace": "1x", "maxUsedSpace": "8EB"}"#),
        "failed to parse maxUsedSpace: invalid suffix: 'eb'"
    );
    assert_eq!(
        rule_error(r#"{"minFreeSpace": "-1"}"#),
        "failed to parse minFreeSpace: invalid size: '-1'"
    );
    assert_eq!(
        rule_error(r#"{"keepStorage": "1 0"}"#),
        "failed to parse reservedSpace: strconv.ParseFloat: parsing \"1 0\": invalid syntax"
    );
}

#[test]
fn default_size_errors_use_upper_cased_keys() {
    assert_eq!(
        init_error(r#"{"defaultReservedSpace": "20XB"}"#),
        "failed to parse defaultRESERVEDSPACE: invalid suffix: 'xb'"
    );
    assert_eq!(
        init_error(r#"{"defaultKeepStorage": "x"}"#),
        "failed to parse defaultRESERVEDSPACE: invalid size: 'x'"
    );
    assert_eq!(
        init_error(r#"{"defaultMaxUsedSpace": "1.2.3"}"#),
        "failed to parse defaultMAXUSEDSPACE: strconv.ParseFloat: parsing \"1.2.3\": invalid syntax"
    );
    assert_eq!(
        init_error(r#"{"defaultMinFreeSpace": "1e400"}"#),
        "failed to parse defaultMINFREESPACE: strconv.ParseFloat: parsing \"1e400\": value out of range"
    );
}

#[test]
fn sizes_are_not_parsed_when_not_needed() {
    // Disabled: nothing is parsed.
    let g = gc(
        r#"{"builder": {"gc": {"enabled": false, "defaultReservedSpace": "bad", "policy": [{"reservedSpace": "bad"}]}}}"#,
    );
    assert!(effective_rules(&g, None, now()).is_ok());
    // A policy: the defaults are never parsed.
    let rules = rules_of(r#"{"defaultReservedSpace": "bad", "policy": [{"all": true}]}"#);
    assert_eq!(rules.len(), 1);
    // An empty policy too.
    assert!(rules_of(r#"{"defaultMaxUsedSpace": "bad", "policy": []}"#).is_empty());
}

#[test]
fn deprecated_aliases_apply_only_when_the_new_key_is_empty() {
    assert_eq!(rule(r#"{"keepStorage": "1KB"}"#).reserved_space, 1024);
    assert_eq!(
        rule(r#"{"keepStorage": "1KB", "reservedSpace": "2KB"}"#).reserved_space,
        2048
    );
    assert_eq!(
        rule(r#"{"reservedSpace": "2KB", "keepStorage": "1KB"}"#).reserved_space,
        2048
    );
    assert_eq!(
        rule(r#"{"reservedSpace": "", "keepStorage": "1KB"}"#).reserved_space,
        1024
    );
    assert_eq!(
        rule(r#"{"reservedSpace": null, "keepStorage": "1KB"}"#).reserved_space,
        1024
    );
    // "0" is not empty: the alias is not used.
    assert_eq!(
        rule(r#"{"reservedSpace": "0", "keepStorage": "1KB"}"#).reserved_space,
        0
    );
    let rules = rules_of(r#"{"defaultKeepStorage": "20GB"}"#);
    assert_eq!(rules[1].reserved_space, 20 << 30);
    assert_eq!((rules[1].max_used_space, rules[1].min_free_space), (0, 0));
    assert_eq!(rules[0].max_used_space, 2_967_302_759);
    let rules = rules_of(r#"{"defaultKeepStorage": "20GB", "defaultReservedSpace": "10GB"}"#);
    assert_eq!(rules[1].reserved_space, 10 << 30);
}

// 1.3 Filter shapes.

#[test]
fn list_form_splits_at_the_first_equals_sign() {
    let r = rule(r#"{"filter": [" TYPE = regular ", "Description=a=b", "id"]}"#);
    assert_eq!(filter(&r), "description==a=b,id~=,type==regular");
    let r = rule(r#"{"filter": ["type=source.local,type=exec.cachemount"]}"#);
    assert_eq!(filter(&r), "type==source.local,type=exec.cachemount");
    // Identical pairs collapse.
    let r = rule(r#"{"filter": ["type=regular", "type = regular"]}"#);
    assert_eq!(filter(&r), "type==regular");
    // A null element is an empty string: key "" is dropped.
    let r = rule(r#"{"filter": [null, "inuse"]}"#);
    assert_eq!(filter(&r), "inuse==");
    // Unicode lower-casing as Go's strings.ToLower.
    let r = rule(r#"{"filter": ["\u0130D=abc"]}"#);
    assert_eq!(filter(&r), "id~=abc");
}

#[test]
fn map_form_is_verbatim_and_ignores_the_boolean() {
    let r = rule(r#"{"all": true, "filter": {"private": {}, "mutable": {}}}"#);
    assert_eq!(filter(&r), "mutable,private");
    let r = rule(r#"{"filter": {"type": {"regular": false}}}"#);
    assert_eq!(filter(&r), "type==regular");
    let r = rule(r#"{"filter": {"Type": {"regular": true}, " type": {"x": true}}}"#);
    assert_eq!(filter(&r), "");
    let r = rule(r#"{"filter": {"shared": null}}"#);
    assert_eq!(filter(&r), "shared");
    let r = rule(r#"{"filter": {"type": {"a": true}, "type": {"b": true}}}"#);
    assert_eq!(filter(&r), "type==b");
    let r = rule(r#"{"filter": {"description": {" spaced ": true}}}"#);
    assert_eq!(filter(&r), "description== spaced ");
    let r = rule(r#"{"filter": {"unused-for": {"3300h": true}}}"#);
    assert_eq!(r.keep_duration, Duration::from_hours(3300));
    // A key with no values is ignored for until.
    let r = rule(r#"{"filter": {"until": {}, "unused-for": {}}}"#);
    assert_eq!(r.keep_duration, Duration::ZERO);
    assert_eq!(filter(&r), "");
}

#[test]
fn null_and_empty_filters_match_all() {
    for body in [
        r#"{"filter": null}"#,
        r#"{"filter": []}"#,
        r#"{"filter": {}}"#,
        "{}",
    ] {
        assert_eq!(rule(body).filter, [""], "{body}");
    }
}

// 1.4 Conversion.

#[test]
fn pass_through_keys_and_id_regex() {
    let r = rule(
        r#"{"filter": ["type=exec.cachemount", "id=abc", "description=foo", "label=team=a", "unknown=1", "label!=x"]}"#,
    );
    assert_eq!(filter(&r), "description==foo,id~=abc,type==exec.cachemount");
    let r = rule(
        r#"{"filter": ["parent=p", "inuse=true", "shared=true", "private=1", "mutable=x", "immutable=y"]}"#,
    );
    assert_eq!(
        filter(&r),
        "immutable==y,inuse==true,mutable==x,parent==p,private==1,shared==true"
    );
}

#[test]
fn until_and_unused_for_become_keep_duration() {
    let r = rule(r#"{"filter": ["until=24h", "type=regular"]}"#);
    assert_eq!(r.keep_duration, Duration::from_hours(24));
    assert_eq!(filter(&r), "type==regular");
    assert_eq!(
        rule(r#"{"filter": ["unused-for=1h30m"]}"#).keep_duration,
        Duration::from_secs(5400)
    );
    // "0" is the epoch: 1706659200 s before 2024-01-31.
    assert_eq!(
        rule(r#"{"filter": ["until=0"]}"#).keep_duration,
        Duration::from_secs(1_706_659_200)
    );
    // "-0" and "0s" are durations of zero: no age limit.
    assert_eq!(
        rule(r#"{"filter": ["until=-0"]}"#).keep_duration,
        Duration::ZERO
    );
    assert_eq!(
        rule(r#"{"filter": ["until=-1h"]}"#).keep_duration,
        Duration::from_hours(-1)
    );
    // Absolute times freeze into a duration at start.
    assert_eq!(
        rule(r#"{"filter": ["until=2024-01-01"]}"#).keep_duration,
        Duration::from_hours(30 * 24)
    );
    assert_eq!(
        rule(r#"{"filter": ["until=2024-01-30T12:00:00Z"]}"#).keep_duration,
        Duration::from_hours(12)
    );
    assert_eq!(
        rule(r#"{"filter": ["until=1706572800"]}"#).keep_duration,
        Duration::from_hours(24)
    );
    assert_eq!(
        rule(r#"{"filter": ["until=1706659199.5"]}"#).keep_duration,
        Duration::from_nanos(500_000_000)
    );
    // A future time gives a negative duration.
    assert_eq!(
        rule(r#"{"filter": ["until=2024-02-01"]}"#).keep_duration,
        Duration::from_hours(-24)
    );
    // Values are trimmed in the list form.
    assert_eq!(
        rule(r#"{"filter": ["until = 2h "]}"#).keep_duration,
        Duration::from_hours(2)
    );
}

#[test]
fn local_zone_applies_to_zoneless_until_values() {
    let g = gc(r#"{"builder": {"gc": {"policy": [{"filter": ["until=2024-01-30T00:00"]}]}}}"#);
    let east = effective_rules_with_offset(&g, None, now(), 3600).unwrap();
    assert_eq!(east.rules[0].keep_duration, Duration::from_hours(25));
    let utc = effective_rules(&g, None, now()).unwrap();
    assert_eq!(utc.rules[0].keep_duration, Duration::from_hours(24));
}

#[test]
fn conversion_error_texts() {
    assert_eq!(
        rule_error(r#"{"filter": ["until=1h", "unused-for=2h"]}"#),
        "conflicting filters: \"until\" and \"unused-for\""
    );
    assert_eq!(
        rule_error(r#"{"filter": ["until=1h", "until=2h"]}"#),
        "filters expect only one value"
    );
    assert_eq!(
        rule_error(r#"{"filter": ["type=regular", "type=source.local"]}"#),
        "filters expect only one value"
    );
    assert_eq!(
        rule_error(r#"{"filter": {"id": {"a": true, "b": false}}}"#),
        "filters expect only one value"
    );
    assert_eq!(
        rule_error(r#"{"filter": ["unused-for=7d"]}"#),
        "\"unused-for\" filter expects a duration (e.g., '24h') or a timestamp: failed to parse value as time or duration: invalid seconds \"7d\": invalid syntax"
    );
    assert_eq!(
        rule_error(r#"{"filter": ["until="]}"#),
        "\"until\" filter expects a duration (e.g., '24h') or a timestamp: failed to parse value as time or duration: value is empty"
    );
    assert_eq!(
        rule_error(r#"{"filter": ["until=2024-13-01"]}"#),
        "\"until\" filter expects a duration (e.g., '24h') or a timestamp: parsing time \"2024-13-01\": month out of range"
    );
    assert_eq!(
        rule_error(r#"{"filter": {"until": {"1.5.5": true}}}"#),
        "\"until\" filter expects a duration (e.g., '24h') or a timestamp: failed to parse value as time or duration: invalid nanoseconds: invalid character '.' at position 1"
    );
    // The age filter is checked before the pass-through keys.
    assert!(
        rule_error(r#"{"filter": ["type=a", "type=b", "until=x"]}"#)
            .starts_with("\"until\" filter")
    );
    // Rules are converted in order; sizes before filters.
    assert_eq!(
        init_error(
            r#"{"policy": [{"filter": ["until=x"], "reservedSpace": "1q"}, {"reservedSpace": "2q"}]}"#
        ),
        "failed to parse reservedSpace: invalid suffix: 'q'"
    );
    let g = gc(r#"{"builder": {"gc": {"policy": [{}, {"filter": ["until=1h", "until=2h"]}]}}}"#);
    let e = effective_rules(&g, None, now()).unwrap_err();
    assert_eq!(e.rule(), Some(1));
    assert_eq!(e.origin().unwrap().path, "builder.gc.policy[1]");
}

// 1.5 Default policy.

#[test]
fn default_policy_depends_on_the_disk_only_without_default_sizes() {
    let g = gc("{}");
    let on = |disk| effective_rules(&g, disk, now()).unwrap().rules;
    assert_eq!(on(Some(100 * GIB))[1].reserved_space, 11_000_000_000);
    assert_eq!(on(Some(1024 * GIB))[1].max_used_space, 820_000_000_000);
    assert_eq!(on(None)[1].reserved_space, 2_000_000_000);
    assert_eq!(on(None)[1].max_used_space, 0);
    assert_eq!(on(None)[0].max_used_space, 512_000_000);
    // Defaults given as zero still consult the disk.
    let zero =
        gc(r#"{"builder": {"gc": {"defaultReservedSpace": "0GB", "defaultMinFreeSpace": "0"}}}"#);
    assert_eq!(
        effective_rules(&zero, Some(100 * GIB), now())
            .unwrap()
            .rules[1]
            .min_free_space,
        21_000_000_000
    );
    let rules = rules_of(r#"{"defaultMaxUsedSpace": "50GB", "defaultMinFreeSpace": "10GB"}"#);
    assert_eq!(
        rules[3],
        Rule {
            all: true,
            filter: vec![],
            keep_duration: Duration::ZERO,
            reserved_space: 0,
            max_used_space: 50 << 30,
            min_free_space: 10 << 30,
        }
    );
    assert_eq!(rules[0].max_used_space, 512_000_000);
}

// Diagnostics.

#[test]
fn diagnostics_for_common_traps() {
    use DiagnosticCode as C;
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"reservedSpace": "10GB"}]}}}"#,
        C::BinaryUnits
    ));
    assert!(!has(
        r#"{"builder": {"gc": {"policy": [{"reservedSpace": "10GiB"}]}}}"#,
        C::BinaryUnits
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"reservedSpace": "0"}]}}}"#,
        C::SizeZero
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"reservedSpace": "1e300"}]}}}"#,
        C::SizeOverflow
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"all": true}]}}}"#,
        C::NoSizeLimit
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [null]}}}"#,
        C::NullRule
    ));
    assert!(!has(
        r#"{"builder": {"gc": {"policy": [null]}}}"#,
        C::NoSizeLimit
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": []}}}"#,
        C::EmptyPolicy
    ));
    assert!(has(
        r#"{"builder": {"gc": {"enabled": false}}}"#,
        C::GcDisabled
    ));
    assert!(has("{}", C::EnabledDefault));
    assert!(!has(
        r#"{"builder": {"gc": {"enabled": true}}}"#,
        C::EnabledDefault
    ));
    assert!(has("{}", C::DefaultPolicyFromDisk));
    assert!(has("{}", C::VersionHistory));
    assert!(has(
        r#"{"builder": {"gc": {"defaultKeepStorage": "1GB"}}}"#,
        C::AliasUsed
    ));
    assert!(has(
        r#"{"builder": {"gc": {"defaultKeepStorage": "1GB", "defaultReservedSpace": "2GB"}}}"#,
        C::AliasShadowed
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"keepStorage": "1GB"}]}}}"#,
        C::AliasUsed
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"keepStorage": "1GB", "reservedSpace": "1GB"}]}}}"#,
        C::AliasShadowed
    ));
    assert!(has(
        r#"{"builder": {"gc": {"defaultReservedSpace": "1GB", "policy": [{"reservedSpace": "1GiB"}]}}}"#,
        C::DefaultsUnused
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["label=a"]}]}}}"#,
        C::FilterKeyDropped
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["unused_for=24h"]}]}}}"#,
        C::FilterKeyDropped
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": {"type": {"regular": false}}}]}}}"#,
        C::MapFormBoolean
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["id=abc"]}]}}}"#,
        C::IdIsRegex
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["shared=true"]}]}}}"#,
        C::FilterNeverMatches
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["type=bogus"]}]}}}"#,
        C::FilterNeverMatches
    ));
    assert!(!has(
        r#"{"builder": {"gc": {"policy": [{"filter": {"shared": {}}}]}}}"#,
        C::FilterNeverMatches
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["until=0"]}]}}}"#,
        C::UntilEpoch
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["until=-1h"]}]}}}"#,
        C::UntilNotPositive
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["until=2024-01-01"]}]}}}"#,
        C::UntilAbsolute
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["inuse"]}]}}}"#,
        C::FilterParseFails
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["type=source.local,type=exec.cachemount"]}]}}}"#,
        C::FilterParseFails
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["type==regular"]}]}}}"#,
        C::FilterParseFails
    ));
    assert!(!has(
        r#"{"builder": {"gc": {"policy": [{"filter": ["type=regular"]}]}}}"#,
        C::FilterParseFails
    ));
    assert!(has(r#"{"builder": {"gc": {"Policy": []}}}"#, C::KeyCase));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [], "policy": []}}}"#,
        C::DuplicateKey
    ));
    assert!(has(
        r#"{"builder": {"gc": {"enabled": null}}}"#,
        C::NullIgnored
    ));
    assert!(has(
        r#"{"builder": {"gc": {"policy": [{"maxUsedSpace": "1GB"}]}}}"#,
        C::VersionHistory
    ));
}

#[test]
fn diagnostics_of_replaced_values_are_dropped() {
    // The first policy's null rule is replaced: no NullRule warning.
    let text = r#"{"builder": {"gc": {"policy": [null], "policy": [{"reservedSpace": "1GiB"}]}}}"#;
    assert!(!has(text, DiagnosticCode::NullRule));
    let text = r#"{"builder": {"gc": {"foo": 1}, "gc": {}}}"#;
    assert!(!has(text, DiagnosticCode::IgnoredKey));
}

#[test]
fn filter_parse_failure_message_quotes_buildkit() {
    let (_, diagnostics) = parsed(
        r#"{"builder": {"gc": {"policy": [{"filter": ["type=source.local,type=exec.cachemount"]}]}}}"#,
    );
    let d = diagnostics
        .iter()
        .find(|d| d.code == DiagnosticCode::FilterParseFails)
        .unwrap();
    assert!(
        d.message.contains("unsupported operator \"=\""),
        "{}",
        d.message
    );
    assert_eq!(
        d.origin.as_ref().unwrap().path,
        "builder.gc.policy[0].filter"
    );
    assert!(
        d.to_string()
            .starts_with("warning[filter-parse-fails] at builder.gc.policy[0].filter (line 1")
    );
}

// Robustness.

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok((g, _)) = parse_bytes(&bytes) {
            let _ = effective_rules(&g, Some(100 * GIB), now());
        }
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[\[\]{}:,"0-9a-zA-Z.=\- \\nu]{0,120}"#) {
        if let Ok((g, _)) = parse(&text) {
            let _ = effective_rules(&g, None, now());
        }
    }

    #[test]
    fn generated_configs_decode_and_convert(config in arb_config()) {
        let (g, _) = parse(&config).map_err(|e| TestCaseError::fail(format!("{config}: {e}")))?;
        match effective_rules(&g, Some(64 * GIB), now()) {
            Ok(effective) => {
                if let Some(policy) = &g.policy
                    && g.enabled
                {
                    prop_assert_eq!(effective.rules.len(), policy.len());
                    for rule in &effective.rules {
                        prop_assert_eq!(rule.filter.len(), 1);
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// Random but well-typed daemon.json documents.
fn arb_config() -> impl Strategy<Value = String> {
    let size = prop_oneof![
        Just(String::new()),
        "[0-9]{1,4}(\\.[0-9])?( ?[kKmMgGtTpP]?[iI]?[bB]?)?",
        "[a-z0-9 .]{0,6}",
    ];
    let entry = prop_oneof![
        "(type|id|description|inuse|shared|private|mutable|immutable|parent|label|until|unused-for|foo) ?= ?[a-z0-9.]{0,8}",
        "(until|unused-for)=[0-9]{1,3}(h|m|s|d)",
        Just("until=2024-01-01".to_owned()),
    ];
    let filter = prop_oneof![
        Just("null".to_owned()),
        proptest::collection::vec(entry, 0..4).prop_map(|v| serde_json::to_string(&v).unwrap()),
        proptest::collection::btree_map(
            "(type|id|shared|private|until)",
            proptest::collection::btree_map("[a-z0-9.]{0,6}", any::<bool>(), 0..3),
            0..3
        )
        .prop_map(|m| serde_json::to_string(&m).unwrap()),
    ];
    let rule = (any::<bool>(), filter, size.clone(), size.clone(), size.clone(), size.clone()).prop_map(
        |(all, filter, reserved, max_used, min_free, keep)| {
            format!(
                r#"{{"all": {all}, "filter": {filter}, "reservedSpace": {}, "maxUsedSpace": {}, "minFreeSpace": {}, "keepStorage": {}}}"#,
                serde_json::Value::from(reserved),
                serde_json::Value::from(max_used),
                serde_json::Value::from(min_free),
                serde_json::Value::from(keep),
            )
        },
    );
    let policy = prop_oneof![
        Just("null".to_owned()),
        proptest::collection::vec(rule, 0..4).prop_map(|rules| format!("[{}]", rules.join(","))),
    ];
    (any::<bool>(), policy, size.clone(), size).prop_map(|(enabled, policy, reserved, max_used)| {
        format!(
            r#"{{"debug": true, "builder": {{"gc": {{"enabled": {enabled}, "policy": {policy}, "defaultReservedSpace": {}, "defaultMaxUsedSpace": {}}}}}}}"#,
            serde_json::Value::from(reserved),
            serde_json::Value::from(max_used),
        )
    })
}
