//! Golden traces: a small generated trace and its replay, compared with
//! files under tests/data (rewrite them with `UPDATE_EXPECT=1`), and a
//! hand-written trace whose replay is worked out by hand.

mod common;

use std::path::PathBuf;

use common::assert_same_text;
use reclaim_policy::Rule;
use reclaim_policy::prune::Ordering;
use reclaim_sim::{KubeletGc, Policy, SimBuilder, Trace, Workload};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Compares `actual` with the file, or rewrites the file when
/// `UPDATE_EXPECT=1`.
fn check(name: &str, actual: &str) {
    let path = data(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1)", path.display()));
    assert_same_text(&expected, actual, name);
}

fn small() -> Trace {
    Workload::new()
        // Monday 08:00 UTC, for three hours.
        .start(reclaim_model::Timestamp::from_unix_secs(1_736_150_400))
        .days(0.125)
        .seed(3)
        .projects(2)
        .pipelines_per_hour(1.0)
        .disk_total(6 << 30)
        .other_bytes(1 << 30)
        .generate()
        .unwrap()
}

#[test]
fn the_small_generated_trace_is_stable() {
    let trace = small();
    check("golden-small.jsonl", &trace.to_json_lines());
}

#[test]
fn the_replay_of_the_small_trace_is_stable() {
    let trace = small();
    let policy =
        Policy::dockerd_default(trace.header().disk_total).with_kubelet(Some(KubeletGc::default()));
    let result = SimBuilder::new(policy)
        .sample_interval(std::time::Duration::from_secs(3600))
        .annotate(true)
        .build(&trace)
        .run();
    let mut written = Vec::new();
    result.write_trace(&trace, &mut written).unwrap();
    check(
        "golden-small-replay.jsonl",
        &String::from_utf8(written).unwrap(),
    );
    check("golden-small-report.json", &result.report.to_json());
}

/// The hand-written trace under one rule keeping the cache below 7000
/// bytes. Worked out by hand:
///
/// - GC runs at 1 s (start), 61 s (after b1, a minute after the previous
///   run), 122 s, 402 s and 502 s (1 s after b2, b3, b4).
/// - At 122 s the cache is base 2000 + app1 3000 + app2 3000 + mnt 500 =
///   8500: the oldest leaf, app1 (last used at 0 s), goes; 5500 < 7000.
/// - b3 rebuilds app1 (a rebuild caused by GC: 100 s, 3000 bytes) and uses
///   the mount, which grows by 200 to 700 because app1 ran.
/// - At 402 s the cache is 8700: app2 (last used at 120 s) goes; 5700.
/// - b4 hits app1, so its mount line is skipped; at 502 s nothing goes.
#[test]
fn the_hand_written_trace_replays_as_worked_out() {
    let text = std::fs::read_to_string(data("handwritten.jsonl")).unwrap();
    let trace = Trace::from_json_lines(&text).unwrap();
    for ordering in [Ordering::BuildKit, Ordering::Lru] {
        let policy = Policy {
            builder_gc: Some(vec![Rule {
                max_used_space: 7000,
                ..Rule::default()
            }]),
            ..Policy::none()
        };
        let mut result = SimBuilder::new(policy)
            .ordering(ordering)
            .check_invariants(true)
            .annotate(true)
            .build(&trace)
            .run();
        assert!(result.violations.is_empty(), "{:?}", result.violations);
        let r = &result.report;
        let gc = &r.gc[0];
        assert_eq!(gc.name, "builder-gc/build-cache");
        assert_eq!((gc.runs, gc.runs_with_removals, gc.removed), (5, 2, 2));
        assert_eq!(gc.bytes_freed, 6000);
        assert_eq!(r.steps.total, 10);
        assert_eq!(r.steps.skipped_mounts, 1);
        assert_eq!((r.steps.hits, r.steps.misses), (5, 5));
        assert_eq!(r.steps.hit_bytes, 2000 * 3 + 700 + 3000);
        assert_eq!(r.steps.miss_bytes, 2000 + 3000 + 3000 + 500 + 3000);
        assert_eq!((r.cold.count, r.cold.bytes), (4, 8500));
        assert_eq!(r.cold.seconds, 10.0 + 100.0 + 50.0 + 20.0);
        assert_eq!((r.rebuilds.count, r.rebuilds.bytes), (1, 3000));
        assert_eq!(r.rebuilds.seconds, 100.0);
        assert_eq!((r.disk.peak_used, r.disk.peak_at_ms), (9700, 400_000));
        assert_eq!(r.disk.final_used, 1000 + 2000 + 3000 + 700);
        assert_eq!(r.disk.over_capacity_ms, 0);
        assert_eq!(r.builds.total, 4);
        let state = result.engine();
        let mut left: Vec<&str> = state.records().map(|r| r.id.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["app1", "base", "mnt"]);
        assert_eq!(state.record("mnt").unwrap().size, 700);
        assert!(state.records().all(|r| !r.in_use), "holds are released");
        // The written trace carries the outcomes and the two GC runs.
        let mut out = Vec::new();
        result.write_trace(&trace, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let outcomes: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(r#""ev":"step""#))
            .map(|l| {
                ["hit", "miss", "skipped"]
                    .into_iter()
                    .find(|o| l.contains(&format!(r#""outcome":"{o}""#)))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                "miss", "miss", "hit", "miss", "miss", "hit", "miss", "hit", "hit", "hit",
                "skipped"
            ]
        );
        let gc_lines: Vec<&str> = out.lines().filter(|l| l.contains(r#""ev":"gc""#)).collect();
        assert_eq!(gc_lines.len(), 2);
        assert!(
            gc_lines[0].contains(r#""t":122000"#) && gc_lines[0].contains(r#""bytes_freed":3000"#)
        );
        assert!(gc_lines[1].contains(r#""t":402000"#));
    }
}
