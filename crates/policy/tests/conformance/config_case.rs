//! Checks one `config` vector: daemon.json text, disk size and start time in;
//! either the effective rule list or an error (class and message fragment)
//! out.
//!
//! Durations: the vectors give `keep_duration_seconds` as an integer. A
//! computed keep duration that is not a whole number of seconds (an absolute
//! `until` time with a fraction) matches if the expected value is that
//! duration rounded down or up to whole seconds.

use reclaim_model::Timestamp;
use reclaim_policy::Rule;
use reclaim_policy::config::{self, ConfigError, InitError};
use serde_json::{Value, json};

/// Runs the case; `Err` carries a printable diff.
pub fn run(case: &Value) -> Result<(), String> {
    let input = &case["input"];
    let text = input["daemon_json"]
        .as_str()
        .ok_or("input.daemon_json is not a string")?;
    let now = input["now"]
        .as_str()
        .ok_or("input.now is not a string")
        .and_then(|t| Timestamp::parse_rfc3339(t).map_err(|_| "input.now is not RFC 3339"))?;
    let disk_total = match &input["disk"] {
        Value::Null => None,
        disk => Some(
            disk["total"]
                .as_u64()
                .ok_or("input.disk.total is not an unsigned integer")?,
        ),
    };
    let expected = &case["expected"];
    let actual = evaluate(text, disk_total, now, expected);
    if matches(expected, &actual) {
        Ok(())
    } else {
        Err(crate::json_diff(expected, &actual))
    }
}

/// What reclaim computes, in the vector's shape. For errors the actual
/// message is reported under `contains` when it contains the expected
/// fragment (so a passing error compares equal), and in full otherwise.
fn evaluate(text: &str, disk_total: Option<u64>, now: Timestamp, expected: &Value) -> Value {
    let (gc, _diagnostics) = match config::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => return error_value("json", &config_error_message(&e), expected),
    };
    match config::effective_rules(&gc, disk_total, now) {
        Ok(effective) => {
            let expected_rules = expected["rules"].as_array();
            let rules: Vec<Value> = effective
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let hint = expected_rules
                        .and_then(|r| r.get(i))
                        .and_then(|r| r["keep_duration_seconds"].as_i64());
                    rule_value(rule, hint)
                })
                .collect();
            json!({"gc_enabled": effective.enabled, "rules": rules})
        }
        Err(e) => error_value("buildkit_init", &init_error_message(&e), expected),
    }
}

fn config_error_message(error: &ConfigError) -> String {
    error.to_string()
}

fn init_error_message(error: &InitError) -> String {
    error.to_string()
}

fn error_value(class: &str, message: &str, expected: &Value) -> Value {
    let fragment = expected["error"]["contains"].as_str().unwrap_or("");
    let shown = if !fragment.is_empty() && message.contains(fragment) {
        fragment
    } else {
        message
    };
    json!({"error": {"contains": shown, "stage": "startup", "error_class": class}})
}

/// A rule in the vector's shape. `hint` is the expected whole seconds, used
/// only to settle a fractional duration (see the module docs).
fn rule_value(rule: &Rule, hint: Option<i64>) -> Value {
    let nanos = rule.keep_duration.as_nanos();
    let floor = nanos.div_euclid(1_000_000_000);
    let ceil = floor + i64::from(nanos.rem_euclid(1_000_000_000) != 0);
    let seconds = match hint {
        Some(h) if h == floor || h == ceil => h,
        _ => floor,
    };
    json!({
        "all": rule.all,
        "filter": rule.filter,
        "keep_duration_seconds": seconds,
        "reserved_space": rule.reserved_space,
        "max_used_space": rule.max_used_space,
        "min_free_space": rule.min_free_space,
    })
}

fn matches(expected: &Value, actual: &Value) -> bool {
    if expected.get("error").is_some() {
        // Only class and fragment are compared; the stage is always startup.
        let e = &expected["error"];
        let a = &actual["error"];
        return e["error_class"] == a["error_class"] && e["contains"] == a["contains"];
    }
    expected["gc_enabled"] == actual["gc_enabled"] && expected["rules"] == actual["rules"]
}
