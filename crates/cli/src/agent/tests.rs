use std::path::Path;
use std::time::Duration;

use reclaim_docker::ContainerGrouping;

use super::config::{LogFormat, Threshold, parse};

fn ok(text: &str) -> super::config::AgentConfig {
    parse(text, Path::new("/etc/reclaim/agent.toml")).unwrap_or_else(|e| panic!("{e:#}"))
}

fn err(text: &str) -> String {
    format!(
        "{:#}",
        parse(text, Path::new("/etc/reclaim/agent.toml")).expect_err("should be refused")
    )
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let c = ok("");
    assert!(!c.agent.dry_run);
    assert_eq!(c.agent.state_file, Path::new("/var/lib/reclaim/state.json"));
    assert_eq!(c.agent.metrics_address.as_deref(), Some("127.0.0.1:9842"));
    assert_eq!(c.agent.log_format, LogFormat::Text);
    assert_eq!(c.agent.reload_interval, Duration::from_secs(5));
    assert!(c.build_cache.enabled && c.build_cache.after_builds);
    assert_eq!(c.build_cache.cooldown, Duration::from_secs(60));
    assert_eq!(c.build_cache.delay, Duration::from_secs(1));
    assert_eq!(c.build_cache.build_poll_interval, Duration::from_secs(30));
    assert!(c.build_cache.period.is_zero());
    assert!(c.build_cache.gc.enabled && c.build_cache.gc.policy.is_none());
    assert_eq!(c.images.period, Duration::from_secs(300));
    assert_eq!(c.images.policy, reclaim_kubelet::ImagePolicy::default());
    assert_eq!(c.containers.period, Duration::from_secs(60));
    assert_eq!(
        c.containers.policy,
        reclaim_kubelet::ContainerGcPolicy::default()
    );
    assert_eq!(c.containers.group_by, ContainerGrouping::Name);
    assert!(!c.watermarks.enabled);
    assert_eq!(c.watermarks.low, Threshold::Percent(10));
    assert_eq!(c.watermarks.high, Threshold::Percent(20));
    assert!(c.pins().is_empty());
}

#[test]
fn a_full_file_is_read() {
    let c = ok(r#"
        [docker]
        host = "tcp://10.0.0.2:2376"
        disk_path = "/host/var/lib/docker"
        timeout = "30s"

        [agent]
        dry_run = true
        state_file = "/data/state.json"
        metrics_address = ""
        log_format = "json"

        [build_cache]
        ordering = "lru"
        cooldown = "2m"
        period = "1h"
        [build_cache.gc]
        defaultKeepStorage = "10GB"
        [[build_cache.gc.policy]]
        filter = ["unused-for=168h"]
        keepStorage = "5GB"

        [images]
        high_threshold_percent = 70
        low_threshold_percent = 50
        min_age = "1h"
        keep_tags = ["^registry.local/base:"]
        keep_labels = ["keep=true"]
        only_label = "team=ci"

        [containers]
        min_age = "10m"
        max_per_name = 2
        max_total = 100
        group_by = "label:job"

        [watermarks]
        enabled = true
        low = "5GB"
        high = "10GB"
    "#);
    assert_eq!(c.docker.host.as_deref(), Some("tcp://10.0.0.2:2376"));
    assert_eq!(c.docker.timeout, Duration::from_secs(30));
    assert!(c.agent.dry_run);
    assert_eq!(c.agent.metrics_address, None);
    assert_eq!(c.agent.log_format, LogFormat::Json);
    assert_eq!(c.build_cache.cooldown, Duration::from_secs(120));
    assert_eq!(c.build_cache.period, Duration::from_secs(3600));
    let policy = c.build_cache.gc.policy.as_ref().unwrap();
    assert_eq!(policy.len(), 1);
    assert_eq!(c.images.policy.high_threshold_percent(), 70);
    assert_eq!(
        c.containers.group_by,
        ContainerGrouping::Label("job".into())
    );
    assert_eq!(c.watermarks.low, Threshold::Bytes(5 << 30));
    assert!(!c.pins().is_empty());
    assert_eq!(c.images.only_label.as_ref().unwrap().to_string(), "team=ci");
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    assert_eq!(
        err("[images]\nhigh_threshold_percent = 120\n"),
        format!(
            "images (high_threshold_percent = 120, low_threshold_percent = 80): {}",
            err_text_high()
        )
    );
    assert_eq!(
        err("[images]\nmin_age = \"5 minutes\"\n").split(':').next(),
        Some("images.min_age = \"5 minutes\"")
    );
    assert!(
        err("[agent]\nlog_format = \"xml\"\n")
            .contains("agent.log_format = \"xml\": expected \"text\" or \"json\"")
    );
    assert!(err("[containers]\ngroup_by = \"pod\"\n").contains("containers.group_by = \"pod\""));
    assert!(err("[images]\nkeep_tags = [\"(\"]\n").contains("images.keep_tags: keep rule \"(\""));
    assert!(
        err("[watermarks]\nlow = \"30%\"\nhigh = \"20%\"\n")
            .contains("watermarks.low = \"30%\" is above watermarks.high = \"20%\"")
    );
    assert!(err("[watermarks]\nlow = \"120%\"\n").contains("watermarks.low = \"120%\""));
    assert!(
        err("[agent]\nmetrics_address = \"localhost\"\n")
            .contains("agent.metrics_address = \"localhost\"")
    );
    assert!(err("[docker]\nhost = \"ssh://x\"\n").contains("docker.host = \"ssh://x\""));
    assert!(err("[agent]\nreload_interval = \"0s\"\n").contains("must be more than zero"));
}

fn err_text_high() -> String {
    reclaim_kubelet::ImagePolicy::new(
        120,
        80,
        reclaim_model::Duration::ZERO,
        reclaim_model::Duration::ZERO,
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let e = err("[images]\nhigh_treshold_percent = 90\n");
    assert!(e.contains("high_treshold_percent"), "{e}");
    let e = err("[agent]\ndry_run = \"yes\"\n");
    assert!(e.contains("dry_run") && e.contains("invalid type"), "{e}");
    let e = err("[nonsense]\n");
    assert!(e.contains("nonsense"), "{e}");
}

#[test]
fn the_gc_table_is_decoded_as_dockerd_decodes_daemon_json() {
    // Keys inside builder.gc match case-insensitively, as in dockerd.
    let c = ok("[build_cache.gc]\nENABLED = false\n");
    assert!(!c.build_cache.gc.enabled);
    // A type error is refused the way dockerd refuses the file.
    let e = err("[build_cache.gc]\npolicy = \"all\"\n");
    assert!(e.starts_with("build_cache.gc: "), "{e}");
    assert!(e.contains("cannot unmarshal"), "{e}");
    // Both sources at once are refused.
    let e = err("[build_cache]\ndaemon_json = \"daemon.json\"\n[build_cache.gc]\nenabled = true\n");
    assert!(e.contains("both set"), "{e}");
}

#[test]
fn daemon_json_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("daemon.json"),
        r#"{"builder": {"gc": {"policy": [{"keepStorage": "1GB"}]}}}"#,
    )
    .unwrap();
    let c = parse(
        "[build_cache]\ndaemon_json = \"daemon.json\"\n",
        &dir.path().join("agent.toml"),
    )
    .unwrap();
    assert_eq!(c.build_cache.gc.policy.as_ref().unwrap().len(), 1);
    let e = format!(
        "{:#}",
        parse(
            "[build_cache]\ndaemon_json = \"missing.json\"\n",
            &dir.path().join("a.toml")
        )
        .unwrap_err()
    );
    assert!(
        e.contains("build_cache.daemon_json") && e.contains("missing.json"),
        "{e}"
    );
}

#[test]
fn thresholds_resolve_against_the_disk() {
    assert_eq!(Threshold::Percent(10).bytes(1000), 100);
    assert_eq!(Threshold::Bytes(42).bytes(1000), 42);
}
