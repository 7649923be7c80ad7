//! Checks one `prune` vector against both planners.
//!
//! The case's records, rules, disk and time go through
//! `reclaim_policy::prune::plan` (the fast planner) and `plan_reference` (the
//! oracle). Each result must equal one of the listed outcomes: per rule,
//! `ordered` rules compare their deletions as sequences and the others as
//! sets; the top-level `deleted` list compares as a sequence when every rule
//! is ordered, else as a multiset. An expected error must name the same rule
//! and contain the expected text. The two planners must also agree exactly.

use std::collections::BTreeMap;

use reclaim_model::{DiskStats, Duration, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{Mode, PrunePlan, Snapshot, plan, plan_reference};
use serde_json::{Value, json};

/// Runs the case; `Err` carries a printable diff.
pub fn run(case: &Value) -> Result<(), String> {
    let input = &case["input"];
    let now: Timestamp =
        serde_json::from_value(input["now"].clone()).map_err(|e| format!("input.now: {e}"))?;
    let disk = DiskStats::new(
        input["disk"]["total"].as_u64().ok_or("input.disk.total")?,
        input["disk"]["free"].as_u64().ok_or("input.disk.free")?,
    );
    let rules = input["rules"]
        .as_array()
        .ok_or("input.rules")?
        .iter()
        .map(rule)
        .collect::<Result<Vec<_>, _>>()?;
    let snapshot: Snapshot = serde_json::from_value(input["records"].clone())
        .map_err(|e| format!("input.records: {e}"))?;

    let fast = plan(&snapshot, &rules, disk, now);
    let reference = plan_reference(&snapshot, &rules, disk, now);
    if fast != reference {
        return Err(format!(
            "fast and reference planners disagree\n{}",
            crate::json_diff(&to_json(&reference), &to_json(&fast))
        ));
    }

    let actual = outcome(&fast);
    check_error(&case["expected"]["error"], &fast)?;
    let outcomes = case["expected"]["outcomes"]
        .as_array()
        .ok_or("expected.outcomes")?;
    if outcomes
        .iter()
        .any(|expected| same_outcome(expected, &actual))
    {
        return Ok(());
    }
    let first = outcomes.first().cloned().unwrap_or(Value::Null);
    Err(format!(
        "no listed outcome matches ({} listed; diff against the first)\n{}",
        outcomes.len(),
        crate::json_diff(&first, &actual)
    ))
}

fn rule(v: &Value) -> Result<Rule, String> {
    let int = |k: &str| v[k].as_i64().ok_or_else(|| format!("rule.{k}: {}", v[k]));
    Ok(Rule {
        all: v["all"].as_bool().ok_or("rule.all")?,
        filter: v["filter"]
            .as_array()
            .ok_or("rule.filter")?
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or("rule.filter[]"))
            .collect::<Result<_, _>>()?,
        keep_duration: Duration::from_secs(int("keep_duration_seconds")?),
        reserved_space: int("reserved_space")?,
        max_used_space: int("max_used_space")?,
        min_free_space: int("min_free_space")?,
    })
}

/// The plan in the vectors' outcome shape.
fn outcome(p: &PrunePlan) -> Value {
    let per_rule: Vec<Value> = p
        .rules
        .iter()
        .map(|o| {
            let deleted: Vec<&str> = p.deletions_of(o).iter().map(|d| d.id.as_str()).collect();
            json!({
                "rule": o.rule,
                "total_size": o.keep.total,
                "keep_bytes": o.keep.keep_bytes,
                "ordered": o.mode == Mode::Ranked,
                "deleted": deleted,
            })
        })
        .collect();
    let deleted: Vec<&str> = p.deleted_ids().map(|id| id.as_str()).collect();
    json!({
        "deleted": deleted,
        "bytes_freed": p.bytes_freed(),
        "per_rule": per_rule,
    })
}

fn same_outcome(expected: &Value, actual: &Value) -> bool {
    if expected["bytes_freed"] != actual["bytes_freed"] {
        return false;
    }
    let (Some(er), Some(ar)) = (
        expected["per_rule"].as_array(),
        actual["per_rule"].as_array(),
    ) else {
        return false;
    };
    if er.len() != ar.len() {
        return false;
    }
    let mut all_ordered = true;
    for (e, a) in er.iter().zip(ar) {
        for key in ["rule", "total_size", "keep_bytes", "ordered"] {
            if e[key] != a[key] {
                return false;
            }
        }
        let ordered = e["ordered"].as_bool() == Some(true);
        all_ordered &= ordered;
        if !same_ids(&e["deleted"], &a["deleted"], ordered) {
            return false;
        }
    }
    same_ids(&expected["deleted"], &actual["deleted"], all_ordered)
}

fn same_ids(expected: &Value, actual: &Value, ordered: bool) -> bool {
    if ordered {
        return expected == actual;
    }
    let bag = |v: &Value| -> Option<BTreeMap<String, usize>> {
        let mut bag = BTreeMap::new();
        for id in v.as_array()? {
            *bag.entry(id.as_str()?.to_owned()).or_default() += 1;
        }
        Some(bag)
    };
    bag(expected).is_some() && bag(expected) == bag(actual)
}

fn check_error(expected: &Value, p: &PrunePlan) -> Result<(), String> {
    match (expected.is_null(), &p.error) {
        (true, None) => Ok(()),
        (true, Some(err)) => Err(format!("unexpected error: {err}")),
        (false, None) => Err(format!("expected an error {expected}, got none")),
        (false, Some(err)) => {
            let rule = expected["rule"].as_u64().ok_or("expected.error.rule")?;
            let contains = expected["contains"]
                .as_str()
                .ok_or("expected.error.contains")?;
            if err.rule() as u64 != rule || !err.to_string().contains(contains) {
                return Err(format!(
                    "error mismatch: expected rule {rule} containing {contains:?}, got rule {}: {err}",
                    err.rule()
                ));
            }
            Ok(())
        }
    }
}

fn to_json(p: &PrunePlan) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}
