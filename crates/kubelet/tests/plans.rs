//! The plans' output forms: the JSON for scripts and the tables for people.

use reclaim_kubelet::{
    CallError, ContainerCall, ContainerCollector, ContainerGcOptions, ContainerGcPolicy,
    ContainerSnapshot, ImageCollector, ImageFsStats, ImagePolicy, ImageSnapshot, KubeletConfig,
    plan_containers, plan_images, records_from_snapshot,
};
use reclaim_model::{Duration, Timestamp};
use serde_json::json;

const CONTAINERS: &str = r#"{
    "taken_at": "2026-07-01T12:00:00Z",
    "pods": [
        {"uid": "live", "state": "active"},
        {"uid": "gone", "state": "deleted"}
    ],
    "containers": [
        {"id": "l1", "pod_uid": "live", "name": "app", "state": "exited",
         "created_at": "2026-07-01T10:00:00Z", "sandbox_id": "s-live"},
        {"id": "l2", "pod_uid": "live", "name": "app", "state": "exited",
         "created_at": "2026-07-01T11:00:00Z", "sandbox_id": "s-live"},
        {"id": "l3", "pod_uid": "live", "name": "app", "state": "running",
         "created_at": "2026-07-01T11:30:00Z", "sandbox_id": "s-live"},
        {"id": "g1", "pod_uid": "gone", "name": "job", "state": "unknown",
         "created_at": "2026-07-01T09:00:00Z", "sandbox_id": "s-gone"}
    ],
    "sandboxes": [
        {"id": "s-live", "pod_uid": "live", "state": "ready", "created_at": "2026-07-01T10:00:00Z"},
        {"id": "s-gone", "pod_uid": "gone", "state": "notready", "created_at": "2026-07-01T09:00:00Z"}
    ],
    "pod_log_dirs": ["default_job_gone", "default_web_live"]
}"#;

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-07-01T12:00:00Z").unwrap()
}

#[test]
fn container_plan_json_names_every_decision() {
    let snapshot = ContainerSnapshot::from_json(CONTAINERS).unwrap();
    let pods = snapshot.pod_states();
    let policy = ContainerGcPolicy::from_flags(Some("30m"), Some("1"), Some("-1")).unwrap();
    let plan = plan_containers(&snapshot, &policy, &pods, &ContainerGcOptions::new(now()));
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["schema"], "reclaim.kubelet.container-plan/v1");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["policy"]["min_age"], "30m0s");
    assert_eq!(v["options"]["now"], "2026-07-01T12:00:00Z");
    let removals = v["removals"].as_array().unwrap();
    assert_eq!(removals.len(), 2);
    assert_eq!(
        removals[0],
        json!({
            "id": "g1", "pod_uid": "gone", "name": "job", "state": "unknown",
            "created_at": "2026-07-01T09:00:00Z", "sandbox_id": "s-gone",
            "step": "deleted_pod", "rank": 0, "status": "succeeded"
        })
    );
    assert_eq!(removals[1]["id"], "l1");
    assert_eq!(removals[1]["step"], "per_unit_cap");
    assert_eq!(removals[1]["rank"], 1);
    let kept = v["kept"].as_array().unwrap();
    assert_eq!(kept[0]["id"], "l2");
    assert_eq!(kept[0]["reason"], "within_limits");
    assert_eq!(kept[1]["id"], "l3");
    assert_eq!(kept[1]["reason"], "running");
    assert_eq!(v["sandbox_removals"][0]["id"], "s-gone");
    assert_eq!(v["sandbox_removals"][0]["reason"], "pod_removable");
    // The live pod's only sandbox is its newest, kept whatever its state.
    assert_eq!(v["kept_sandboxes"][0]["reason"], "newest");
    assert_eq!(
        v["pod_log_removals"],
        json!([{"dir": "default_job_gone", "pod_uid": "gone", "status": "succeeded"}])
    );
    assert_eq!(v["counts"]["candidates"], 3);
    assert_eq!(v["counts"]["units"], 2);
}

#[test]
fn container_plan_table_explains_removals() {
    let snapshot = ContainerSnapshot::from_json(CONTAINERS).unwrap();
    let pods = snapshot.pod_states();
    let policy = ContainerGcPolicy::from_flags(Some("30m"), Some("1"), None).unwrap();
    let plan = plan_containers(&snapshot, &policy, &pods, &ContainerGcOptions::new(now()));
    let text = plan.to_string();
    assert!(
        text.starts_with("Container GC plan at 2026-07-01T12:00:00Z\n"),
        "{text}"
    );
    assert!(text.contains("Containers to remove: 2"), "{text}");
    assert!(text.contains("pod deleted (stopped first)"), "{text}");
    assert!(
        text.contains("#2 newest of its unit; unit keeps 1"),
        "{text}"
    );
    assert!(
        text.contains("inactive sandbox of a removable pod"),
        "{text}"
    );
    assert!(
        !text.contains("WHY KEPT"),
        "kept items only in the alternate form"
    );
    let long = format!("{plan:#}");
    assert!(
        long.contains("within limits (#1 newest of its unit)"),
        "{long}"
    );
}

#[test]
fn failed_calls_are_reported_with_their_messages() {
    let snapshot = ContainerSnapshot::from_json(CONTAINERS).unwrap();
    let pods = snapshot.pod_states();
    let policy = ContainerGcPolicy::from_flags(Some("30m"), Some("1"), None).unwrap();
    let options = ContainerGcOptions::new(now());
    let report =
        ContainerCollector::new(&snapshot, &policy, &pods, &options).run_with(|call| match call {
            ContainerCall::KillContainer { .. } => {
                Err(CallError::new("rpc error: deadline exceeded"))
            }
            _ => Ok(()),
        });
    assert!(!report.dry_run);
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["removals"][0]["status"], "stop_failed");
    assert_eq!(
        v["failures"],
        json!([{"call": "KillContainer", "target": "g1", "message": "rpc error: deadline exceeded"}])
    );
    // The killed-but-not-removed container keeps its sandbox active.
    assert!(report.sandbox_removals.is_empty());
    assert!(
        report
            .to_string()
            .contains("KillContainer g1: rpc error: deadline exceeded")
    );
}

const IMAGES: &str = r#"{
    "taken_at": "2026-07-01T12:00:00Z",
    "gc_started_at": "2026-06-01T00:00:00Z",
    "images": [
        {"id": "sha256:aaa", "size_bytes": 400},
        {"id": "sha256:bbb", "size_bytes": 300},
        {"id": "sha256:ccc", "size_bytes": 200},
        {"id": "sha256:pause", "size_bytes": 10, "pinned": true}
    ],
    "containers": [{"id": "c1", "image_id": "sha256:ccc", "state": "exited"}],
    "fs": {"capacity_bytes": 1000, "available_bytes": 50},
    "records": [
        {"id": "sha256:aaa", "first_detected": "2026-06-01T00:00:00Z", "last_used": "2026-06-10T00:00:00Z", "size_bytes": 400},
        {"id": "sha256:bbb", "first_detected": "2026-06-01T00:00:00Z", "last_used": null, "size_bytes": 300}
    ]
}"#;

#[test]
fn image_snapshot_plan_json() {
    let snapshot = ImageSnapshot::from_json(IMAGES).unwrap();
    let records = records_from_snapshot(&snapshot, now());
    assert!(records.is_in_use("sha256:ccc"));
    let (began, fs) = snapshot.plan_inputs(now());
    let policy = ImagePolicy::default();
    let plan = plan_images(&records, &policy, now(), began, fs);
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["schema"], "reclaim.kubelet.image-plan/v1");
    assert_eq!(v["usage_percent"], 95);
    assert_eq!(v["amount_to_free"], 150);
    // Never used (bbb) before used (aaa); the pause image is pinned and ccc
    // in use; the newly detected nothing else.
    let removals = v["removals"].as_array().unwrap();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0]["id"], "sha256:bbb");
    assert_eq!(removals[0]["pass"], "space");
    assert_eq!(removals[0]["freed_after"], 300);
    assert_eq!(removals[0]["last_used"], json!(null));
    let kept: Vec<(&str, &str)> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["reason"].as_str().unwrap()))
        .collect();
    assert!(kept.contains(&("sha256:aaa", "target_reached")), "{kept:?}");
    assert!(kept.contains(&("sha256:ccc", "in_use")), "{kept:?}");
    assert!(kept.contains(&("sha256:pause", "pinned")), "{kept:?}");
    assert_eq!(v["error"], json!(null));
    let text = plan.to_string();
    assert!(text.contains("usage 95% (high 85%)"), "{text}");
    assert!(text.contains("to free: 150 bytes (down to 80%)"), "{text}");
    assert!(text.contains("LRU #1; freed 300 so far"), "{text}");
}

#[test]
fn image_errors_carry_kubelet_texts() {
    let snapshot = ImageSnapshot::from_json(IMAGES).unwrap();
    let records = records_from_snapshot(&snapshot, now());
    let policy = ImagePolicy::new(
        85,
        80,
        Duration::from_secs(120),
        Duration::from_hours(24 * 7),
    )
    .unwrap();
    let (began, _) = snapshot.plan_inputs(now());
    let plan = ImageCollector::garbage_collect(&records, &policy, now(), began).run_with(
        |id| {
            if id == "sha256:bbb" {
                Err(CallError::new("image is in use by a stopped container"))
            } else {
                Ok(())
            }
        },
        || Ok(ImageFsStats::new(1000, 50)),
    );
    let err = plan.error.as_ref().unwrap();
    assert_eq!(
        err.to_string(),
        "wanted to free images older than 168h0m0s, encountered errors in image deletion: image is in use by a stopped container"
    );
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["error"]["kind"], "age_deletion_errors");
    assert_eq!(v["error"]["max_age"], "168h0m0s");
    assert_eq!(v["failures"][0]["call"], "RemoveImage");
    // aaa (unused for 21 days) went in the age pass; bbb failed.
    assert_eq!(plan.removed().collect::<Vec<_>>(), ["sha256:aaa"]);
}

#[test]
fn a_config_file_drives_the_plan() {
    let config = KubeletConfig::parse(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimageGCHighThresholdPercent: 96\n",
    )
    .unwrap();
    let snapshot = ImageSnapshot::from_json(IMAGES).unwrap();
    let records = records_from_snapshot(&snapshot, now());
    let (began, fs) = snapshot.plan_inputs(now());
    let plan = plan_images(&records, &config.image_policy(), now(), began, fs);
    // 95 % < 96 %: nothing goes.
    assert!(plan.removals.is_empty());
    assert!(plan.to_string().contains("below the high threshold"));
}
