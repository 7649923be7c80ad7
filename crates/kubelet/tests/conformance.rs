//! Runs the kubelet conformance vectors (`reclaim-gc-vector/1`) against the
//! public API.
//!
//! Cases are read from `kubelet/container-gc/` and `kubelet/image-gc/` under
//! `RECLAIM_CONFORMANCE_DIR` when it is set, else under the repository's
//! `conformance/` copy. Prints `conformance: N passed, M failed`, and for
//! each failure its id, title and a diff of expected against actual. Fails
//! when a case fails or none ran.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reclaim_kubelet::{
    CallError, Container, ContainerCall, ContainerCollector, ContainerGcOptions, ContainerGcPolicy,
    ContainerSnapshot, ContainerState, EvictionStep, ImageCollector, ImageFsStats, ImageGcError,
    ImagePass, ImagePlan, ImagePolicy, ImageRecord, ImageRecords, ImageUser, ListedImage, Pod,
    PodState, Sandbox, SandboxState, SubPasses,
};
use reclaim_model::{Duration, Id, Timestamp};
use serde_json::{Map, Value, json};

fn main() {
    let root = match std::env::var_os("RECLAIM_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance"),
    };
    let mut files = Vec::new();
    for sub in ["container-gc", "image-gc"] {
        let dir = root.join("kubelet").join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("conformance: cannot read {}", dir.display());
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                failed += 1;
                println!("FAIL {}: cannot read: {e}", path.display());
                continue;
            }
        };
        let case: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failed += 1;
                println!("FAIL {}: invalid JSON: {e}", path.display());
                continue;
            }
        };
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        let title = case["title"].as_str().unwrap_or("").to_owned();
        let outcome = std::panic::catch_unwind(|| run_case(&case));
        match outcome {
            Ok(Ok(())) => passed += 1,
            Ok(Err(diff)) => {
                failed += 1;
                println!("FAIL {id}: {title}\n{diff}");
            }
            Err(_) => {
                failed += 1;
                println!("FAIL {id}: {title}\n  (panicked)");
            }
        }
    }
    println!("conformance: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}

/// Runs one case; `Err` carries the diff.
fn run_case(case: &Value) -> Result<(), String> {
    if case["format"] != "reclaim-gc-vector/1" {
        return Err(format!("  unsupported format {}", case["format"]));
    }
    let (expected, actual) = match case["kind"].as_str() {
        Some("container_gc") => container_case(&case["input"], &case["expected"])?,
        Some("image_gc") => image_case(
            case["operation"].as_str().unwrap_or(""),
            &case["input"],
            &case["expected"],
        )?,
        other => return Err(format!("  unsupported kind {other:?}")),
    };
    compare(&expected, &actual)
}

fn compare(expected: &Value, actual: &Value) -> Result<(), String> {
    if expected == actual {
        return Ok(());
    }
    let e = serde_json::to_string_pretty(expected).unwrap_or_default();
    let a = serde_json::to_string_pretty(actual).unwrap_or_default();
    let diff = similar::TextDiff::from_lines(&e, &a);
    let mut out = String::from("  --- expected\n  +++ actual\n");
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        out.push_str(&format!("  {sign}{change}"));
    }
    Err(out)
}

// ---- helpers ----------------------------------------------------------

fn secs(v: &Value, what: &str) -> Result<Timestamp, String> {
    v.as_i64()
        .map(Timestamp::from_unix_secs)
        .ok_or_else(|| format!("  {what}: expected integer seconds, found {v}"))
}

fn opt_secs(v: &Value, what: &str) -> Result<Option<Timestamp>, String> {
    if v.is_null() {
        Ok(None)
    } else {
        secs(v, what).map(Some)
    }
}

fn dur(v: &Value, what: &str) -> Result<Duration, String> {
    v.as_i64()
        .map(Duration::from_secs)
        .ok_or_else(|| format!("  {what}: expected integer seconds, found {v}"))
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("  {what}: expected an integer, found {v}"))
}

fn string(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("  {what}: expected a string, found {v}"))
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    let s: BTreeSet<&str> = items.into_iter().collect();
    json!(s)
}

fn sorted_strings(v: &Value) -> Value {
    let mut items: Vec<String> = list(v)
        .iter()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    items.sort();
    json!(items)
}

// ---- container GC -----------------------------------------------------

fn container_case(input: &Value, expected: &Value) -> Result<(Value, Value), String> {
    let now = secs(&input["now"], "now")?;
    let p = &input["policy"];
    let policy = ContainerGcPolicy::new(
        dur(&p["min_age_seconds"], "policy.min_age_seconds")?,
        int(&p["max_per_pod_container"], "policy.max_per_pod_container")?,
        int(&p["max_containers"], "policy.max_containers")?,
    )
    .map_err(|e| format!("  policy: {e}"))?;
    let mut snapshot = ContainerSnapshot::default();
    for pod in list(&input["pods"]) {
        let state = match pod["state"].as_str() {
            Some("active") => PodState::Active,
            Some("terminated") => PodState::Terminated,
            Some("deleted") => PodState::Deleted,
            other => return Err(format!("  unknown pod state {other:?}")),
        };
        snapshot.pods.push(Pod {
            uid: Id::new(string(&pod["uid"], "pod uid")?),
            state,
        });
    }
    let mut kill_fails = BTreeSet::new();
    let mut remove_fails = BTreeSet::new();
    for c in list(&input["containers"]) {
        let id = string(&c["id"], "container id")?;
        if flag(&c["kill_fails"]) {
            kill_fails.insert(id.clone());
        }
        if flag(&c["remove_fails"]) {
            remove_fails.insert(id.clone());
        }
        let state = match c["state"].as_str() {
            Some("running") => ContainerState::Running,
            Some("exited") => ContainerState::Exited,
            Some("created") => ContainerState::Created,
            Some("unknown") => ContainerState::Unknown,
            other => return Err(format!("  unknown container state {other:?}")),
        };
        snapshot.containers.push(Container {
            id: Id::new(id),
            pod_uid: Id::new(string(&c["pod_uid"], "pod_uid")?),
            name: Id::new(string(&c["name"], "name")?),
            state,
            created_at: secs(&c["created_at"], "created_at")?,
            sandbox_id: c["sandbox_id"].as_str().map(Id::new),
        });
    }
    let mut stop_fails = BTreeSet::new();
    for s in list(&input["sandboxes"]) {
        let id = string(&s["id"], "sandbox id")?;
        if flag(&s["stop_fails"]) {
            stop_fails.insert(id.clone());
        }
        let state = match s["state"].as_str() {
            Some("ready") => SandboxState::Ready,
            Some("notready") => SandboxState::NotReady,
            other => return Err(format!("  unknown sandbox state {other:?}")),
        };
        snapshot.sandboxes.push(Sandbox {
            id: Id::new(id),
            pod_uid: Id::new(string(&s["pod_uid"], "sandbox pod_uid")?),
            state,
            created_at: secs(&s["created_at"], "sandbox created_at")?,
        });
    }
    for d in list(&input["pod_log_dirs"]) {
        snapshot.pod_log_dirs.push(string(d, "pod log dir")?);
    }
    let steps: Vec<&str> = list(&input["steps"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut options = ContainerGcOptions::new(now);
    options
        .all_sources_ready(flag(&input["all_sources_ready"]))
        .evict_non_deleted_pods(flag(&input["evict_non_deleted_pods"]))
        .passes(SubPasses {
            containers: steps.contains(&"containers"),
            sandboxes: steps.contains(&"sandboxes"),
            pod_logs: steps.contains(&"pod_logs"),
        });

    let pods = snapshot.pod_states();
    let collector = ContainerCollector::new(&snapshot, &policy, &pods, &options);
    let mut killed = Vec::new();
    let mut stopped = Vec::new();
    let mut removed_sandboxes = Vec::new();
    let mut removed_logs = Vec::new();
    let report = collector.run_with(|call| match call {
        ContainerCall::KillContainer { id } => {
            killed.push(id.to_string());
            if kill_fails.contains(id.as_str()) {
                Err(CallError::new(format!("kill {id}: injected failure")))
            } else {
                Ok(())
            }
        }
        ContainerCall::RemoveContainer { id } => {
            if remove_fails.contains(id.as_str()) {
                Err(CallError::new(format!("remove {id}: injected failure")))
            } else {
                Ok(())
            }
        }
        ContainerCall::StopSandbox { id } => {
            stopped.push(id.to_string());
            if stop_fails.contains(id.as_str()) {
                Err(CallError::new(format!("stop {id}: injected failure")))
            } else {
                Ok(())
            }
        }
        ContainerCall::RemoveSandbox { id } => {
            removed_sandboxes.push(id.to_string());
            Ok(())
        }
        ContainerCall::RemovePodLogDir { dir } => {
            removed_logs.push(dir.clone());
            Ok(())
        }
        _ => Err(CallError::new("unexpected call")),
    });

    let called: Vec<_> = report
        .removals
        .iter()
        .filter(|r| r.status.remove_called())
        .collect();
    let step_set = |step: EvictionStep| {
        set(called
            .iter()
            .filter(|r| r.step == step)
            .map(|r| r.container.id.as_str()))
    };
    let strict = expected["global_oldest_order_strict"]
        .as_bool()
        .unwrap_or(true);
    let oldest: Vec<&str> = called
        .iter()
        .filter(|r| r.step == EvictionStep::GlobalOldest)
        .map(|r| r.container.id.as_str())
        .collect();
    let gone: BTreeSet<&str> = report
        .removals
        .iter()
        .filter(|r| r.status.succeeded())
        .map(|r| r.container.id.as_str())
        .collect();
    let remaining = set(snapshot
        .containers
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| !gone.contains(id)));

    let mut exp = expected.clone();
    let actual_oldest = if strict {
        json!(oldest)
    } else {
        exp["phases"]["global_oldest"] = sorted_strings(&expected["phases"]["global_oldest"]);
        set(oldest.iter().copied())
    };
    let actual = json!({
        "removed_containers": set(called.iter().map(|r| r.container.id.as_str())),
        "phases": {
            "deleted_pods": step_set(EvictionStep::DeletedPod),
            "per_unit_cap": step_set(EvictionStep::PerUnitCap),
            "global_share": step_set(EvictionStep::GlobalShare),
            "global_oldest": actual_oldest,
        },
        "global_oldest_order_strict": strict,
        "killed_containers": set(killed.iter().map(String::as_str)),
        "containers_remaining": remaining,
        "stopped_sandboxes": set(stopped.iter().map(String::as_str)),
        "removed_sandboxes": set(removed_sandboxes.iter().map(String::as_str)),
        "removed_pod_log_dirs": removed_logs,
    });
    // Sets in the vectors are sorted by id already; sort again to be safe.
    for key in [
        "removed_containers",
        "killed_containers",
        "containers_remaining",
        "stopped_sandboxes",
        "removed_sandboxes",
    ] {
        exp[key] = sorted_strings(&expected[key]);
    }
    for key in ["deleted_pods", "per_unit_cap", "global_share"] {
        exp["phases"][key] = sorted_strings(&expected["phases"][key]);
    }
    Ok((exp, actual))
}

// ---- image GC ---------------------------------------------------------

fn image_policy(p: &Value) -> Result<Result<ImagePolicy, String>, String> {
    let high = int(
        &p["high_threshold_percent"],
        "policy.high_threshold_percent",
    )?;
    let low = int(&p["low_threshold_percent"], "policy.low_threshold_percent")?;
    let clamp = |n: i64| i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX });
    Ok(ImagePolicy::new(
        clamp(high),
        clamp(low),
        dur(&p["min_age_seconds"], "policy.min_age_seconds")?,
        dur(&p["max_age_seconds"], "policy.max_age_seconds")?,
    )
    .map_err(|e| e.to_string()))
}

fn image_case(op: &str, input: &Value, expected: &Value) -> Result<(Value, Value), String> {
    match op {
        "detect" => detect_case(input, expected),
        "validate_policy" => {
            let actual = match image_policy(&input["policy"])? {
                Ok(_) => json!({"error": null}),
                Err(message) => json!({"error": {"kind": "invalid_policy", "message": message}}),
            };
            Ok((expected.clone(), actual))
        }
        "loop_enabled" => {
            let p = &input["policy"];
            let started = match image_policy(p)? {
                Ok(policy) => policy.loop_enabled(),
                Err(_) => !(p["high_threshold_percent"] == 100 && p["max_age_seconds"] == 0),
            };
            Ok((expected.clone(), json!({"image_gc_loop_started": started})))
        }
        "free_space" | "free_old_images" | "garbage_collect" | "delete_unused_images" => {
            gc_case(op, input, expected)
        }
        other => Err(format!("  unsupported image_gc operation {other:?}")),
    }
}

fn detect_case(input: &Value, expected: &Value) -> Result<(Value, Value), String> {
    let mut records = ImageRecords::new();
    for step in list(&input["steps"]) {
        let mut images = Vec::new();
        for i in list(&step["listed_images"]) {
            images.push(ListedImage {
                id: Id::new(string(&i["id"], "listed image id")?),
                size_bytes: i["size_bytes"].as_u64().unwrap_or(0),
                pinned: flag(&i["pinned"]),
            });
        }
        let mut users = Vec::new();
        for c in list(&step["containers"]) {
            users.push(ImageUser {
                id: None,
                image_id: Id::new(string(&c["image_id"], "container image_id")?),
                state: None,
            });
        }
        records.detect(
            &images,
            &users,
            secs(&step["detect_time"], "detect_time")?,
            secs(&step["now"], "now")?,
        );
    }
    let after: Vec<Value> = records
        .sorted()
        .into_iter()
        .map(|(id, r)| {
            json!({
                "id": id,
                "size_bytes": r.size_bytes,
                "pinned": r.pinned,
                "first_detected": r.first_detected.unix_secs(),
                "last_used": r.last_used.map(Timestamp::unix_secs),
            })
        })
        .collect();
    Ok((expected.clone(), json!({"records_after": after})))
}

fn gc_case(op: &str, input: &Value, expected: &Value) -> Result<(Value, Value), String> {
    let policy = image_policy(&input["policy"])?.map_err(|e| format!("  policy: {e}"))?;
    let now = secs(&input["now"], "now")?;
    let mut records = ImageRecords::new();
    let mut in_use = Vec::new();
    let mut remove_fails = BTreeSet::new();
    for i in list(&input["images"]) {
        let id = string(&i["id"], "image id")?;
        if flag(&i["in_use"]) {
            in_use.push(id.clone());
        }
        if flag(&i["remove_fails"]) {
            remove_fails.insert(id.clone());
        }
        records.insert(
            &id,
            ImageRecord {
                first_detected: secs(&i["first_detected"], "first_detected")?,
                last_used: opt_secs(&i["last_used"], "last_used")?,
                size_bytes: i["size_bytes"].as_u64().unwrap_or(0),
                pinned: flag(&i["pinned"]),
            },
        );
    }
    for id in &in_use {
        records.set_in_use(id, true);
    }
    let collector = match op {
        "free_space" => ImageCollector::free_space(
            &records,
            &policy,
            now,
            int(&input["bytes_to_free"], "bytes_to_free")?,
        ),
        "free_old_images" => ImageCollector::free_old_images(
            &records,
            &policy,
            now,
            secs(&input["began_gc"], "began_gc")?,
        ),
        "garbage_collect" => ImageCollector::garbage_collect(
            &records,
            &policy,
            now,
            secs(&input["began_gc"], "began_gc")?,
        ),
        _ => ImageCollector::delete_unused_images(&records, &policy, now),
    };
    let fs = &input["fs"];
    let plan = collector.run_with(
        |id| {
            if remove_fails.contains(id) {
                Err(CallError::new(format!(
                    "remove image {id}: injected failure"
                )))
            } else {
                Ok(())
            }
        },
        || {
            if flag(&fs["stats_error"]) {
                Err(CallError::new("image filesystem stats: injected failure"))
            } else {
                Ok(ImageFsStats {
                    capacity_bytes: fs["capacity_bytes"].as_u64(),
                    available_bytes: fs["available_bytes"].as_u64(),
                })
            }
        },
    );
    let strict = expected["order_strict"].as_bool().unwrap_or(true);
    let ids = |it: Vec<&str>| -> Value {
        let mut v = it;
        if !strict {
            v.sort_unstable();
        }
        json!(v)
    };
    let calls: Vec<&str> = plan.remove_calls().collect();
    let actual = json!({
        "removed_images": ids(plan.removed().collect()),
        "order_strict": strict,
        "removed_by_age": ids(plan.removed_by(ImagePass::Age).collect()),
        "removed_by_space": ids(plan.removed_by(ImagePass::Space).collect()),
        "remove_image_calls": ids(calls),
        "space_pass_bytes_freed": plan.space_freed,
        "usage_percent": plan.usage_percent,
        "amount_to_free": plan.amount_to_free,
        "error": error_view(&plan, &expected["error"]),
    });
    let mut exp = expected.clone();
    if !strict {
        for key in [
            "removed_images",
            "removed_by_age",
            "removed_by_space",
            "remove_image_calls",
        ] {
            exp[key] = sorted_strings(&expected[key]);
        }
    }
    Ok((exp, actual))
}

/// The actual error in the vector's shape, restricted to the keys the
/// expected error names (prefix and suffix keys are checked against the
/// message and echoed back when they hold).
fn error_view(plan: &ImagePlan<'_>, expected: &Value) -> Value {
    let Some(err) = &plan.error else {
        return Value::Null;
    };
    let mut full = Map::new();
    full.insert("kind".into(), json!(err.kind()));
    full.insert("message".into(), json!(err.to_string()));
    match err {
        ImageGcError::AgeDeletion { max_age, .. } => {
            full.insert("max_age_seconds".into(), json!(max_age.as_secs()));
        }
        ImageGcError::Deletion {
            bytes_to_free,
            freed,
            ..
        } => {
            full.insert("bytes_to_free".into(), json!(bytes_to_free));
            full.insert("amount_to_free".into(), json!(bytes_to_free));
            full.insert("freed_bytes".into(), json!(freed));
        }
        ImageGcError::InsufficientSpace {
            usage_percent,
            capacity,
            freed,
            amount_to_free,
        } => {
            full.insert("usage_percent".into(), json!(usage_percent));
            full.insert("capacity_bytes".into(), json!(capacity));
            full.insert("freed_bytes".into(), json!(freed));
            full.insert("amount_to_free".into(), json!(amount_to_free));
            full.insert("legacy_message".into(), json!(err.legacy_message()));
        }
        ImageGcError::InvalidCapacity => {
            full.insert("capacity_bytes".into(), json!(0));
        }
        _ => {}
    }
    let Some(wanted) = expected.as_object() else {
        return Value::Object(full);
    };
    let message = err.to_string();
    let mut view = Map::new();
    for (key, want) in wanted {
        let got = match key.as_str() {
            "message_prefix" => match want.as_str() {
                Some(p) if message.starts_with(p) => want.clone(),
                _ => json!(message),
            },
            "message_suffix" => match want.as_str() {
                Some(s) if message.ends_with(s) => want.clone(),
                _ => json!(message),
            },
            _ => full.get(key).cloned().unwrap_or(json!("<not produced>")),
        };
        view.insert(key.clone(), got);
    }
    Value::Object(view)
}
