//! `reclaim plan images` and `reclaim plan containers` through the real
//! binary, on the example inputs in `examples/kubelet/`: which ids go and
//! which stay, the JSON schemas, the kubelet flag aliases, and errors that
//! name the flag or field and the value.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kubelet")
        .join(name)
}

fn reclaim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reclaim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the command, expects exit code 0 and returns stdout.
fn ok(args: &[&str]) -> String {
    let out = reclaim(args);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

/// Runs the command with `--json`, expects exit code 0 and parses stdout.
fn json(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = ok(&args);
    // The plan's own field order: the schema tag first.
    assert!(
        stdout.starts_with("{\n  \"schema\": \"reclaim.kubelet."),
        "{stdout}"
    );
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

/// Runs the command, expects exit code 2 (bad input) and returns stderr.
fn fails(args: &[&str]) -> String {
    let out = reclaim(args);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}\n{}\n{stderr}",
        text(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn ids<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("{field} is not a list: {list}"))
        .iter()
        .map(|v| v[field].as_str().unwrap())
        .collect()
}

fn reasons(list: &Value) -> Vec<(&str, &str)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["reason"].as_str().unwrap()))
        .collect()
}

struct Paths {
    config: String,
    images: String,
    containers: String,
}

fn paths() -> Paths {
    let s = |name: &str| example(name).to_str().unwrap().to_owned();
    Paths {
        config: s("kubelet.yaml"),
        images: s("images.json"),
        containers: s("containers.json"),
    }
}

// ---- plan images ----

#[test]
fn images_example_plan_as_json() {
    let p = paths();
    let v = json(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.images,
    ]);
    assert_eq!(v["schema"], "reclaim.kubelet.image-plan/v1");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["entry"], "garbage_collect");
    // The four fields of kubelet.yaml.
    assert_eq!(
        v["policy"],
        serde_json::json!({"high_threshold_percent": 80, "low_threshold_percent": 75,
                           "min_age": "10m0s", "max_age": "336h0m0s"})
    );
    // --now defaults to the snapshot's taken_at.
    assert_eq!(v["free_time"], "2026-07-01T12:00:00Z");
    assert_eq!(v["age_pass_ran"], true);
    assert_eq!(v["usage_percent"], 82);
    // 25 % of 100 GiB minus 18 GiB available.
    assert_eq!(v["amount_to_free"], 7_516_192_768_i64);
    assert_eq!(v["space_freed"], 8_084_101_528_i64);

    // Unused for more than 14 days: the age pass; then least recently used
    // first until the target is freed, skipping the image detected 8
    // minutes ago.
    let removals: Vec<(&str, &str)> = v["removals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["pass"].as_str().unwrap()))
        .collect();
    assert_eq!(
        removals,
        [
            ("sha256:1e2f3a4b5c6d", "age"),
            ("sha256:7a6b5c4d3e2f", "age"),
            ("sha256:2c3d4e5f6a7b", "space"),
            ("sha256:3d4e5f6a7b8c", "space"),
            ("sha256:4e5f6a7b8c9d", "space"),
            ("sha256:5a6b7c8d9e0f", "space"),
        ]
    );
    let kept = reasons(&v["kept"]);
    for expected in [
        ("sha256:873ed7510279", "pinned"),
        ("sha256:8b9a0c1d2e3f", "too_young"),
        ("sha256:9f8e7d6c5b4a", "target_reached"),
        ("sha256:5ef79149e0ec", "in_use"),
        ("sha256:6f7e8d9c0b1a", "in_use"),
        ("sha256:c4a3f1b2d8e7", "in_use"),
        // Listed, in use, but not in the saved records: detected now.
        ("sha256:0b1d5c7e9a41", "in_use"),
    ] {
        assert!(kept.contains(&expected), "{expected:?} not in {kept:?}");
    }
    assert_eq!(kept.len(), 7, "{kept:?}");
    // The saved record of an image no longer listed is dropped.
    let all = format!("{v}");
    assert!(!all.contains("sha256:d0e1f2a3b4c5"), "{all}");
    assert_eq!(v["error"], Value::Null);
}

#[test]
fn images_example_plan_as_tables() {
    let p = paths();
    let out = ok(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.images,
    ]);
    assert!(
        out.contains("now 2026-07-01T12:00:00Z (the snapshot's taken_at)"),
        "{out}"
    );
    assert!(
        out.contains("policy: high 80%, low 75%, min age 10m0s, max age 336h0m0s"),
        "{out}"
    );
    assert!(out.contains("usage 82% (high 80%)"), "{out}");
    assert!(out.contains("Images to remove: 6"), "{out}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{out}"))
            .to_owned()
    };
    assert!(
        line("sha256:1e2f3a4b5c6d").contains("unused for 667h40m0s > 336h0m0s"),
        "{out}"
    );
    assert!(
        line("sha256:5a6b7c8d9e0f").contains("LRU #7; freed 8084101528 so far"),
        "{out}"
    );
    // Kept items are listed with their reason.
    assert!(
        line("sha256:8b9a0c1d2e3f").contains("too young (8m0s < 10m0s)"),
        "{out}"
    );
    assert!(line("sha256:873ed7510279").ends_with("pinned"), "{out}");
    assert!(line("sha256:0b1d5c7e9a41").ends_with("in use"), "{out}");
    assert!(
        out.contains("Would remove 6 images, 19.4 GiB (20861629233 bytes); keep 7."),
        "{out}"
    );
}

#[test]
fn images_now_flag_overrides_the_snapshot_time() {
    let p = paths();
    // Five minutes later the report image is 13 minutes old: no longer
    // too young, so the space pass takes it before the backup image.
    let v = json(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.images,
        "--now",
        "2026-07-01T12:05:00Z",
    ]);
    assert_eq!(v["free_time"], "2026-07-01T12:05:00Z");
    let removed = ids(&v["removals"], "id");
    assert!(removed.contains(&"sha256:8b9a0c1d2e3f"), "{removed:?}");
    assert_eq!(removed.len(), 7, "{removed:?}");
    let out = ok(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.images,
        "--now",
        "1782907500",
    ]);
    assert!(out.contains("now 2026-07-01T12:05:00Z (--now)"), "{out}");
}

#[test]
fn images_gc_error_exits_with_1_and_explains() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    // No image filesystem stats: the kubelet's GC fails.
    let snapshot = dir.path().join("no-fs.json");
    std::fs::write(
        &snapshot,
        r#"{"taken_at": 1782907200, "images": [{"id": "sha256:a", "size_bytes": 5}]}"#,
    )
    .unwrap();
    let out = reclaim(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        snapshot.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error: invalid capacity 0 on image filesystem"),
        "{stdout}"
    );
}

#[test]
fn images_bad_inputs_name_the_field_and_value() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    let low_high = write(
        "low-high.yaml",
        &format!("{head}imageGCHighThresholdPercent: 70\nimageGCLowThresholdPercent: 90\n"),
    );
    let err = fails(&[
        "plan",
        "images",
        "--config",
        &low_high,
        "--snapshot",
        &p.images,
    ]);
    assert!(err.contains("low-high.yaml"), "{err}");
    assert!(
        err.contains(
            "imageGCLowThresholdPercent (--image-gc-low-threshold) 90 must be less than \
             imageGCHighThresholdPercent (--image-gc-high-threshold) 70"
        ),
        "{err}"
    );

    let bad_yaml = write(
        "bad.yaml",
        &format!("{head}imageGCHighThresholdPercent: [90\n"),
    );
    let err = fails(&[
        "plan",
        "images",
        "--config",
        &bad_yaml,
        "--snapshot",
        &p.images,
    ]);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");

    let bad_age = write("age.yaml", &format!("{head}imageMaximumGCAge: 14d\n"));
    let err = fails(&[
        "plan",
        "images",
        "--config",
        &bad_age,
        "--snapshot",
        &p.images,
    ]);
    assert!(
        err.contains("imageMaximumGCAge: time: unknown unit \"d\" in duration \"14d\""),
        "{err}"
    );

    let bad_json = write("images.json", r#"{"images": [{"id": "sha256:a"}]}"#);
    let err = fails(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &bad_json,
    ]);
    assert!(err.contains("not an image snapshot"), "{err}");
    assert!(err.contains("missing field `size_bytes`"), "{err}");

    // A container snapshot is not an image snapshot.
    let err = fails(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.containers,
    ]);
    assert!(err.contains("unknown field `pods`"), "{err}");

    let err = fails(&[
        "plan",
        "images",
        "--config",
        &p.config,
        "--snapshot",
        &p.images,
        "--now",
        "yesterday",
    ]);
    assert!(err.contains("--now \"yesterday\""), "{err}");
}

// ---- plan containers ----

#[test]
fn containers_example_with_the_kubelet_defaults() {
    let p = paths();
    let v = json(&["plan", "containers", "--snapshot", &p.containers]);
    assert_eq!(v["schema"], "reclaim.kubelet.container-plan/v1");
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["policy"],
        serde_json::json!({"min_age": "0s", "max_per_pod_container": 1, "max_containers": -1})
    );
    assert_eq!(v["options"]["now"], "2026-07-01T12:00:00Z");
    let removals: Vec<(&str, &str)> = v["removals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        removals,
        [
            // Everything of the deleted report pod, including the container
            // in an unknown state.
            ("7e6d5c4b3a29", "deleted_pod"),
            ("8f7e6d5c4b3a", "deleted_pod"),
            ("9a8f7e6d5c4b", "deleted_pod"),
            // All but the newest dead nginx of the web pod, and the older
            // attempt of the terminated migrate pod.
            ("1f0e9d8c7b6a", "per_unit_cap"),
            ("2a1b0c9d8e7f", "per_unit_cap"),
            ("4d3c2b1a0f9e", "per_unit_cap"),
            ("a9f8e7d6c5b4", "per_unit_cap"),
        ]
    );
    assert_eq!(
        reasons(&v["kept"]),
        [
            ("0c1d2e3f4a5b", "within_limits"),
            ("58d1f3a7c2e0", "within_limits"),
            ("b4f2c8e1d7a3", "within_limits"),
            ("e3b8d2f1a6c9", "running"),
            ("c2e7a9b4d1f6", "running"),
            ("6a0c4e2f9b17", "running"),
        ]
    );
    // The web pod's old sandbox loses its last containers; the deleted
    // pod's sandbox goes with the pod.
    assert_eq!(
        reasons(&v["sandbox_removals"]),
        [
            ("a7c3e9f1b5d2", "not_newest"),
            ("b1c2d3e4f5a6", "pod_removable"),
        ]
    );
    assert_eq!(v["kept_sandboxes"].as_array().unwrap().len(), 4);
    assert_eq!(
        ids(&v["pod_log_removals"], "dir"),
        ["batch_report-28961234-x7k2p_0f6f4f6e-2b1c-4f8e-a1c4-8e0b7c3e2a77"]
    );
    assert_eq!(v["kept_pod_log_dirs"].as_array().unwrap().len(), 4);
}

#[test]
fn containers_example_as_tables() {
    let p = paths();
    let out = ok(&["plan", "containers", "--snapshot", &p.containers]);
    assert!(
        out.contains("now 2026-07-01T12:00:00Z (the snapshot's taken_at)"),
        "{out}"
    );
    assert!(
        out.contains("policy: min age 0s, max per pod container 1, max containers -1 (unlimited)"),
        "{out}"
    );
    assert!(out.contains("Containers to remove: 7"), "{out}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{out}"))
            .to_owned()
    };
    assert!(
        line("9a8f7e6d5c4b").contains("pod deleted (stopped first)"),
        "{out}"
    );
    assert!(
        line("1f0e9d8c7b6a").contains("#4 newest of its unit; unit keeps 1"),
        "{out}"
    );
    assert!(
        line("a7c3e9f1b5d2").contains("older inactive sandbox of a live pod"),
        "{out}"
    );
    // Kept containers are listed with their reason.
    assert!(
        line("58d1f3a7c2e0").contains("within limits (#1 newest of its unit)"),
        "{out}"
    );
    assert!(line("6a0c4e2f9b17").ends_with("running"), "{out}");
}

#[test]
fn containers_kubelet_flag_names_are_aliases() {
    let p = paths();
    let short = json(&[
        "plan",
        "containers",
        "--snapshot",
        &p.containers,
        "--min-age",
        "30m",
        "--max-per-pod",
        "1",
        "--max-containers",
        "2",
    ]);
    let kubelet = json(&[
        "plan",
        "containers",
        "--snapshot",
        &p.containers,
        "--minimum-container-ttl-duration",
        "30m",
        "--maximum-dead-containers-per-container",
        "1",
        "--maximum-dead-containers=2",
    ]);
    assert_eq!(short, kubelet);
    assert_eq!(
        kubelet["policy"],
        serde_json::json!({"min_age": "30m0s", "max_per_pod_container": 1, "max_containers": 2})
    );
    // The report pod's containers are younger than 30 minutes: kept, and
    // so is their sandbox; the pod's log directory still goes.
    assert_eq!(kubelet["counts"]["too_young"], 3);
    assert_eq!(kubelet["counts"]["removable_units"], 0);
    let kept = reasons(&kubelet["kept"]);
    assert!(kept.contains(&("9a8f7e6d5c4b", "too_young")), "{kept:?}");
    assert!(
        reasons(&kubelet["kept_sandboxes"]).contains(&("b1c2d3e4f5a6", "has_containers")),
        "{}",
        kubelet["kept_sandboxes"]
    );
    assert_eq!(kubelet["pod_log_removals"].as_array().unwrap().len(), 1);
    // Three dead containers remain after the per-unit cap, one over the
    // node limit of 2: the oldest goes.
    let removals = kubelet["removals"].as_array().unwrap();
    let last = removals.last().unwrap();
    assert_eq!(last["id"], "0c1d2e3f4a5b");
    assert_eq!(last["step"], "global_oldest");
    assert_eq!(removals.len(), 5);
}

#[test]
fn containers_negative_counts_mean_unlimited() {
    let p = paths();
    // Negative values need no `=`: the flags take hyphen values.
    let v = json(&[
        "plan",
        "containers",
        "--snapshot",
        &p.containers,
        "--max-per-pod",
        "-1",
        "--max-containers",
        "4",
    ]);
    assert_eq!(v["policy"]["max_per_pod_container"], -1);
    // 7 candidates in 3 units over 4: each unit keeps max(4 / 3, 1) = 1,
    // which leaves 3 (fewer than 4, as upstream).
    assert_eq!(v["counts"]["share"], 1);
    assert_eq!(v["counts"]["after_global_share"], 3);
    let share: Vec<&str> = v["removals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["step"] == "global_share")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        share,
        [
            "1f0e9d8c7b6a",
            "2a1b0c9d8e7f",
            "4d3c2b1a0f9e",
            "a9f8e7d6c5b4"
        ]
    );
}

#[test]
fn containers_bad_flag_values_name_the_flag_and_value() {
    let p = paths();
    let run = |flag: &str, value: &str| {
        fails(&[
            "plan",
            "containers",
            "--snapshot",
            &p.containers,
            flag,
            value,
        ])
    };
    let err = run("--max-per-pod", "lots");
    assert!(
        err.contains(
            "--max-per-pod \"lots\": invalid argument \"lots\" for \
             \"--maximum-dead-containers-per-container\" flag: \
             strconv.ParseInt: parsing \"lots\": invalid syntax"
        ),
        "{err}"
    );
    let err = run("--maximum-dead-containers", "3000000000");
    assert!(
        err.contains("\"3000000000\" for \"--maximum-dead-containers\" flag"),
        "{err}"
    );
    assert!(err.contains("value out of range"), "{err}");
    let err = run("--minimum-container-ttl-duration", "5x");
    assert!(
        err.contains("--min-age \"5x\": invalid argument \"5x\" for \"--minimum-container-ttl-duration\" flag: time: unknown unit \"x\" in duration \"5x\""),
        "{err}"
    );
    let err = run("--min-age", "-1m");
    assert!(
        err.contains("--min-age \"-1m\": invalid minimum garbage collection age: -1m0s"),
        "{err}"
    );
}

#[test]
fn containers_bad_snapshots_are_reported() {
    let p = paths();
    let err = fails(&["plan", "containers", "--snapshot", &p.images]);
    assert!(err.contains("not a container snapshot"), "{err}");
    assert!(err.contains("unknown field `gc_started_at`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.json");
    std::fs::write(
        &dup,
        r#"{"containers": [
            {"id": "a", "pod_uid": "p", "name": "x", "state": "exited", "created_at": 1},
            {"id": "a", "pod_uid": "p", "name": "x", "state": "exited", "created_at": 2}
        ]}"#,
    )
    .unwrap();
    let err = fails(&["plan", "containers", "--snapshot", dup.to_str().unwrap()]);
    assert!(
        err.contains("containers lists id \"a\" more than once"),
        "{err}"
    );

    let missing = dir.path().join("missing.json");
    let err = fails(&[
        "plan",
        "containers",
        "--snapshot",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot read"), "{err}");
    assert!(err.contains("missing.json"), "{err}");
}
