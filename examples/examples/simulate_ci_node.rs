//! Simulates a week of a CI node under dockerd's default `builder.gc` and
//! the kubelet's GC, then prints what happened to the disk and the cache.
//!
//! ```text
//! cargo run --release -p reclaim-examples --example simulate_ci_node
//! ```
//!
//! The node is reclaim-sim's built-in workload: GitLab Runner on
//! Kubernetes with a persistent Docker-in-Docker daemon, four projects
//! built on many branches, on a 60 GiB disk. The replay runs reclaim's
//! collectors over an in-memory engine on a virtual clock, so a week takes
//! about a second, and the same seed always gives the same figures.

use reclaim_sim::{KubeletGc, Policy, SimBuilder, Workload, plot};

fn main() -> anyhow::Result<()> {
    let trace = Workload::new()
        .days(7.0)
        .disk_total(60 << 30)
        .seed(1)
        .generate()?;
    println!(
        "workload: {} builds, {} trace events, {} distinct cache records",
        trace.build_count(),
        trace.len(),
        trace.record_count()
    );

    let policy =
        Policy::dockerd_default(trace.header().disk_total).with_kubelet(Some(KubeletGc::default()));
    let rules = policy.builder_gc.clone().unwrap_or_default();
    println!("dockerd's default builder.gc for this disk:");
    for (i, rule) in rules.iter().enumerate() {
        println!("  rule {i}: {rule}");
    }

    let result = SimBuilder::new(policy).build(&trace).run();
    let r = &result.report;
    println!(
        "peak disk use {:.1} GB of {:.1} GB; {:.1} h over capacity",
        r.disk.peak_used as f64 / 1e9,
        r.disk_total as f64 / 1e9,
        r.disk.over_capacity_ms as f64 / 3.6e6
    );
    println!(
        "cache: {} steps, {:.1}% hits; {} rebuilds caused by GC ({:.1} h)",
        r.steps.total,
        r.steps.hit_ratio * 100.0,
        r.rebuilds.count,
        r.rebuilds.seconds / 3600.0
    );
    for gc in &r.gc {
        println!(
            "  {:<24} {:>6} runs, {:>6} removed, {:>8.1} GB freed",
            gc.name,
            gc.runs,
            gc.removed,
            gc.bytes_freed as f64 / 1e9
        );
    }

    // The plot `reclaim simulate` writes, here into the temporary directory.
    let svg = plot::disk_usage_svg(r, "A week of the built-in CI node, 60 GiB disk")?;
    let path = std::env::temp_dir().join("reclaim-simulate-ci-node.svg");
    std::fs::write(&path, svg)?;
    println!("plot: {}", path.display());
    Ok(())
}
