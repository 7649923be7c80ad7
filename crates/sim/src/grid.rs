//! Many replays of one trace: comparisons of policies and orderings, and
//! sweeps over disk sizes, run on several threads with results in input
//! order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use reclaim_policy::prune::Ordering;

use crate::metrics::{RunReport, Timing};
use crate::policy::Policy;
use crate::sim::SimBuilder;
use crate::trace::Trace;

/// One replay of a grid: a policy and an ordering on a disk.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The policy (resolved for `capacity`).
    pub policy: Policy,
    /// The ordering of gc-mode rules.
    pub ordering: Ordering,
    /// The disk's size in bytes; `None` takes the trace's.
    pub capacity: Option<u64>,
}

/// The outcome of one cell (the engine's final state is dropped).
#[derive(Clone, Debug, PartialEq)]
pub struct CellResult {
    /// Deterministic measurements.
    pub report: RunReport,
    /// Wall times.
    pub timing: Timing,
    /// Invariant violations, when `base` checked them.
    pub violations: Vec<String>,
}

/// Replays `trace` once per cell, on up to `jobs` threads (at least one),
/// and returns the results in cell order. `base` gives the options shared
/// by every cell (samples, faults, checks); each cell sets the policy,
/// ordering and disk size. `progress` receives the number of events
/// replayed so far, summed over all cells, from the worker threads.
///
/// The results do not depend on `jobs`: each cell is an independent,
/// deterministic replay.
pub fn run_cells(
    trace: &Trace,
    cells: &[Cell],
    base: &SimBuilder,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<CellResult> {
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<Option<CellResult>>> = Mutex::new(vec![None; cells.len()]);
    let workers = jobs.clamp(1, cells.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                    let Some(cell) = cells.get(i) else {
                        return;
                    };
                    let mut options = base.clone();
                    options
                        .policy(cell.policy.clone())
                        .ordering(cell.ordering)
                        .capacity(cell.capacity)
                        .annotate(false);
                    let mut reported = 0u64;
                    let result = options.build(trace).run_with_progress(|events| {
                        let events = events as u64;
                        let total = done.fetch_add(events - reported, AtomicOrdering::Relaxed)
                            + (events - reported);
                        reported = events;
                        progress(total);
                    });
                    let cell_result = CellResult {
                        report: result.report,
                        timing: result.timing,
                        violations: result.violations,
                    };
                    let mut slots = results.lock().unwrap_or_else(|e| e.into_inner());
                    slots[i] = Some(cell_result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every cell ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    #[test]
    fn results_come_back_in_cell_order_whatever_the_threads() {
        let trace = Workload::new().days(1.0).generate().unwrap();
        let disk = trace.header().disk_total;
        let cells: Vec<Cell> = [Ordering::Lru, Ordering::BuildKit, Ordering::Fifo]
            .into_iter()
            .map(|ordering| Cell {
                policy: Policy::dockerd_default(disk / 20),
                ordering,
                capacity: Some(disk / 20),
            })
            .collect();
        let base = SimBuilder::new(Policy::none());
        let one = run_cells(&trace, &cells, &base, 1, &|_| {});
        let three = run_cells(&trace, &cells, &base, 3, &|_| {});
        let reports = |r: &[CellResult]| r.iter().map(|c| c.report.clone()).collect::<Vec<_>>();
        assert_eq!(reports(&one), reports(&three));
        let orderings: Vec<&str> = one.iter().map(|c| c.report.ordering.as_str()).collect();
        assert_eq!(orderings, ["lru", "buildkit", "fifo"]);
        assert!(one.iter().all(|c| c.report.disk_total == disk / 20));
    }
}
