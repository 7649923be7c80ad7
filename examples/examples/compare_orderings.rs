//! Compares eviction orderings inside BuildKit's collector on the same
//! workload: which records should go first when the cache is over its
//! limit?
//!
//! ```text
//! cargo run --release -p reclaim-examples --example compare_orderings
//! ```
//!
//! Every ordering keeps the rest of BuildKit's rules (candidates, children
//! before parents, byte targets); only the choice among candidates changes.
//! `buildkit` is upstream's rank blend; `lru`, `lfu`, `fifo` and `largest`
//! are the classics; `gdsf` weighs rebuild seconds against size. The
//! replays run on all cores; the figures do not depend on how many.

use reclaim_policy::prune::Ordering;
use reclaim_sim::{Cell, KubeletGc, Policy, SimBuilder, Workload, ordering_name, run_cells};

fn main() -> anyhow::Result<()> {
    // Ten days on a tight disk, so that the ordering matters.
    let disk = 50u64 << 30;
    let trace = Workload::new()
        .days(10.0)
        .disk_total(disk)
        .seed(2)
        .generate()?;
    let policy = Policy::dockerd_default(disk).with_kubelet(Some(KubeletGc::default()));
    let cells: Vec<Cell> = Ordering::ALL
        .into_iter()
        .map(|ordering| Cell {
            policy: policy.clone(),
            ordering,
            capacity: None,
        })
        .collect();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results = run_cells(
        &trace,
        &cells,
        &SimBuilder::new(Policy::none()),
        jobs,
        &|_| {},
    );

    println!(
        "{:<10} {:>9} {:>10} {:>9} {:>13} {:>12}",
        "ordering", "hit ratio", "byte hits", "rebuilds", "rebuild time", "peak disk"
    );
    for (cell, result) in cells.iter().zip(&results) {
        let r = &result.report;
        println!(
            "{:<10} {:>8.1}% {:>9.1}% {:>9} {:>11.1} h {:>9.1} GB",
            ordering_name(cell.ordering),
            r.steps.hit_ratio * 100.0,
            r.steps.byte_hit_ratio * 100.0,
            r.rebuilds.count,
            r.rebuilds.seconds / 3600.0,
            r.disk.peak_used as f64 / 1e9
        );
    }
    let best = results
        .iter()
        .zip(&cells)
        .min_by(|a, b| {
            a.0.report
                .rebuilds
                .seconds
                .total_cmp(&b.0.report.rebuilds.seconds)
        })
        .map(|(_, c)| ordering_name(c.ordering))
        .unwrap_or("none");
    println!("least rebuild time caused by GC: {best}");
    Ok(())
}
