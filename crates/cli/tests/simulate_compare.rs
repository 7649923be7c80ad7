//! `reclaim simulate` and `reclaim compare` through the real binary, on
//! short workloads: the files they promise, and errors that name the flag.

use std::path::Path;
use std::process::Command;

fn reclaim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reclaim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn simulate_writes_the_trace_report_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = reclaim(
        &["simulate", "--days", "1", "--disk-size", "30GB"],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("hit ratio"), "{stdout}");
    assert!(stdout.contains("builder-gc/build-cache"), "{stdout}");
    for file in [
        "trace.jsonl",
        "report.json",
        "timing.json",
        "disk-usage.svg",
    ] {
        let path = dir.path().join("out").join(file);
        assert!(path.is_file(), "{} missing", path.display());
        assert!(stdout.contains(&format!("wrote out/{file}")), "{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema"], "reclaim.sim.report/v1");
    assert_eq!(report["policy"], "dockerd-default");
    assert_eq!(report["disk_total"], 30u64 << 30);
    let svg = std::fs::read_to_string(dir.path().join("out/disk-usage.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Disk used"));

    // The annotated trace replays to the same report.
    let again = reclaim(
        &[
            "simulate",
            "--workload",
            "out/trace.jsonl",
            "--out",
            "again",
            "--no-trace",
            "--json",
        ],
        dir.path(),
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let replayed: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(replayed, report);
}

#[test]
fn compare_writes_a_table_and_two_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = reclaim(
        &[
            "compare",
            "--days",
            "1",
            "--disk-size",
            "30GB",
            "--policies",
            "weekly-system-prune,dockerd-default",
            "--orderings",
            "buildkit,lru",
            "--budgets",
            "20GB,30GB",
            "--jobs",
            "2",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // One row for the cron policy (the order does not matter), two for
    // dockerd's rules.
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("weekly-system-prune") || l.starts_with("dockerd-default"))
        .collect();
    assert_eq!(
        rows.len(),
        3 + 3,
        "three table rows and three sweep rows:\n{stdout}"
    );
    assert!(rows[0].contains("(any)"), "{stdout}");
    for file in ["compare.svg", "miss-ratio.svg", "compare.json"] {
        assert!(
            dir.path().join("out").join(file).is_file(),
            "{file} missing"
        );
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/compare.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 3);
    assert_eq!(json["sweep"][1]["points"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = reclaim(&["simulate", "--ordering", "mru"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ordering \"mru\" is not one of"),
        "{}",
        text(&out.stderr)
    );
    let out = reclaim(&["compare", "--policies", "nope.json"], dir.path());
    assert!(text(&out.stderr).contains("policy \"nope.json\": no such file"));
    let out = reclaim(&["simulate", "--days", "0"], dir.path());
    assert!(
        text(&out.stderr).contains("`days` is 0"),
        "{}",
        text(&out.stderr)
    );
    let out = reclaim(
        &["simulate", "--workload", "x.jsonl", "--days", "3"],
        dir.path(),
    );
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}
