//! The same seed and inputs give byte-identical traces and reports.

mod common;

use common::{SeedGuard, assert_same_text, seed};
use reclaim_policy::prune::Ordering;
use reclaim_sim::{KubeletGc, Policy, RunResult, SimBuilder, Trace, Workload};

fn workload(seed: u64) -> Workload {
    let mut w = Workload::new();
    w.days(3.0).seed(seed).disk_total(30 << 30);
    w
}

/// One annotated replay: its written trace and its report, as bytes.
fn replay(trace: &Trace, ordering: Ordering) -> (Vec<u8>, String, RunResult) {
    let policy =
        Policy::dockerd_default(trace.header().disk_total).with_kubelet(Some(KubeletGc::default()));
    let result = SimBuilder::new(policy)
        .ordering(ordering)
        .annotate(true)
        .build(trace)
        .run();
    let mut written = Vec::new();
    result.write_trace(trace, &mut written).unwrap();
    let report = result.report.to_json();
    (written, report, result)
}

#[test]
fn the_same_seed_gives_byte_identical_traces_and_reports() {
    let seed = seed(42);
    let _guard = SeedGuard(seed);
    let a = workload(seed).generate().unwrap();
    let b = workload(seed).generate().unwrap();
    assert_same_text(&a.to_json_lines(), &b.to_json_lines(), "generated traces");
    for ordering in [Ordering::BuildKit, Ordering::Gdsf] {
        let (trace_a, report_a, _) = replay(&a, ordering);
        let (trace_b, report_b, _) = replay(&b, ordering);
        assert!(trace_a == trace_b, "annotated traces differ ({ordering:?})");
        assert_same_text(&report_a, &report_b, "reports");
    }
    let other = workload(seed.wrapping_add(1)).generate().unwrap();
    assert_ne!(a.to_json_lines(), other.to_json_lines(), "the seed is used");
}

#[test]
fn written_traces_read_back_and_replay_the_same() {
    let seed = seed(7);
    let _guard = SeedGuard(seed);
    let trace = workload(seed).generate().unwrap();
    let text = trace.to_json_lines();
    let back = Trace::from_json_lines(&text).unwrap();
    assert_eq!(back, trace);
    // An annotated trace (outcomes, gc and disk lines) replays exactly like
    // the plain one: the annotations are observations.
    let (annotated, report, result) = replay(&trace, Ordering::Lru);
    let text = String::from_utf8(annotated).unwrap();
    assert!(text.contains(r#""outcome":"miss""#));
    assert!(text.contains(r#""ev":"gc""#));
    let reread = Trace::from_json_lines(&text).unwrap();
    assert_eq!(reread.len(), trace.len(), "observations are not kept");
    let (_, report_again, _) = replay(&reread, Ordering::Lru);
    assert_same_text(&report, &report_again, "reports");
    assert!(result.report.gc_runs() > 0);
}

#[test]
fn timing_is_kept_out_of_the_report() {
    let trace = workload(seed(3)).generate().unwrap();
    let (_, report, result) = replay(&trace, Ordering::BuildKit);
    assert!(!report.contains("_ns"), "wall times leaked into the report");
    let builder = result
        .timing
        .gc
        .iter()
        .find(|g| g.name == "builder-gc/build-cache")
        .expect("builder.gc ran");
    assert!(builder.runs > 0);
    assert!(builder.max_ns <= builder.total_ns);
}
