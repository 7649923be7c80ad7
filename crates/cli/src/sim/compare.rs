//! `reclaim compare`: several policies and orderings on the same workload,
//! one table, one plot over time, and a sweep of disk sizes giving
//! miss-ratio curves.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use reclaim_policy::prune::Ordering;
use reclaim_sim::{Cell, CellResult, PolicySpec, RunReport, SimBuilder, parse_ordering, plot};
use serde_json::json;

use super::{GcArgs, WorkloadArgs, gb, hours, hours_ms, percent, wall};
use crate::table::{Align, Table};
use crate::util;

/// Arguments of `reclaim compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Policies to compare, comma-separated: `none`, `dockerd-default`,
    /// `weekly-system-prune`, `daily-buildx-prune`, or daemon.json files.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "none,weekly-system-prune,daily-buildx-prune,dockerd-default"
    )]
    pub policies: Vec<String>,
    /// Orderings to compare, comma-separated, for the policies whose
    /// builder.gc rules have size limits (the others delete every
    /// candidate, in any order): buildkit, lru, lfu, fifo, largest, gdsf.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "buildkit,lru,lfu,fifo,largest,gdsf"
    )]
    pub orderings: Vec<String>,
    /// Disk sizes for the miss-ratio sweep, comma-separated (Docker size
    /// syntax); `none` skips the sweep.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "50GB,75GB,100GB,150GB,200GB"
    )]
    pub budgets: Vec<String>,
    #[command(flatten)]
    pub gc: GcArgs,
    /// Replays run at once. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Directory for compare.svg, miss-ratio.svg and compare.json.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Print compare.json on standard output instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// One row of the comparison: a policy and, if it matters, an ordering.
struct Row {
    spec: PolicySpec,
    ordering: Ordering,
    /// Whether the ordering changes anything for this policy.
    ordered: bool,
}

impl Row {
    fn label(&self) -> String {
        if self.ordered {
            format!(
                "{} / {}",
                self.spec.name(),
                reclaim_sim::ordering_name(self.ordering)
            )
        } else {
            self.spec.name().to_owned()
        }
    }
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let specs = args
        .policies
        .iter()
        .map(|p| super::policy_spec(p.trim()))
        .collect::<Result<Vec<_>>>()?;
    let orderings = args
        .orderings
        .iter()
        .map(|o| parse_ordering(o.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() || orderings.is_empty() {
        bail!("--policies and --orderings need at least one entry each");
    }
    let budgets = if args.budgets.iter().any(|b| b.trim() == "none") {
        Vec::new()
    } else {
        args.budgets
            .iter()
            .map(|b| util::parse_size("--budgets", b.trim()))
            .collect::<Result<Vec<_>>>()?
    };
    let spinner = super::spinner("generating the workload");
    let loaded = args.workload.load()?;
    spinner.finish_and_clear();
    let trace = &loaded.trace;
    let disk = trace.header().disk_total;

    // The rows, then the sweep's extra cells (a budget equal to the disk
    // reuses the row's run).
    let mut rows = Vec::new();
    for spec in &specs {
        let ordered = args.gc.policy(spec, disk, trace)?.is_ordering_sensitive();
        if ordered {
            for &ordering in &orderings {
                rows.push(Row {
                    spec: spec.clone(),
                    ordering,
                    ordered,
                });
            }
        } else {
            rows.push(Row {
                spec: spec.clone(),
                ordering: Ordering::BuildKit,
                ordered,
            });
        }
    }
    let mut cells = Vec::new();
    for row in &rows {
        cells.push(Cell {
            policy: args.gc.policy(&row.spec, disk, trace)?,
            ordering: row.ordering,
            capacity: None,
        });
    }
    // sweep[row][budget] = index into cells.
    let mut sweep: Vec<Vec<usize>> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut indices = Vec::new();
        for &budget in &budgets {
            if budget == disk {
                indices.push(i);
                continue;
            }
            indices.push(cells.len());
            cells.push(Cell {
                policy: args.gc.policy(&row.spec, budget, trace)?,
                ordering: row.ordering,
                capacity: Some(budget),
            });
        }
        sweep.push(indices);
    }

    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let total = trace.len() as u64 * cells.len() as u64;
    let bar = super::progress(total, &format!("{} replays", cells.len()));
    let results = reclaim_sim::run_cells(
        trace,
        &cells,
        &SimBuilder::new(reclaim_sim::Policy::none()),
        jobs,
        &|n| bar.set_position(n),
    );
    bar.finish_and_clear();

    super::out_dir(&args.out)?;
    let main: Vec<(String, &RunReport)> = rows
        .iter()
        .zip(&results)
        .map(|(row, r)| (row.label(), &r.report))
        .collect();
    let title = format!("reclaim compare: {}, {} disk", loaded.description, gb(disk));
    let compare_svg = args.out.join("compare.svg");
    super::write(&compare_svg, plot::comparison_svg(&main, &title)?)?;
    let mut written = vec![compare_svg];
    if !budgets.is_empty() {
        let curves: Vec<plot::Curve<'_>> = rows
            .iter()
            .zip(&sweep)
            .map(|(row, indices)| plot::Curve {
                label: row.label(),
                runs: indices.iter().map(|&i| &results[i].report).collect(),
            })
            .collect();
        let title = format!(
            "reclaim compare: miss-ratio curves over disk sizes, {}",
            loaded.description
        );
        let path = args.out.join("miss-ratio.svg");
        super::write(&path, plot::miss_ratio_svg(&curves, &title)?)?;
        written.push(path);
    }
    let json = compare_json(&loaded.description, &rows, &results, &sweep, &budgets);
    let path = args.out.join("compare.json");
    super::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    written.push(path);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}, {} disk; {}\n",
        loaded.description,
        gb(disk),
        args.gc.describe()
    );
    print!("{}", table(&rows, &results));
    if !budgets.is_empty() {
        println!();
        print!("{}", sweep_table(&rows, &results, &sweep, &budgets));
    }
    let gc_ns: u64 = results.iter().map(|r| r.timing.gc_ns()).sum();
    println!(
        "\n{} replays of {} events on {jobs} threads; {} of GC runs in all",
        cells.len(),
        trace.len(),
        wall(gc_ns)
    );
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The comparison table.
fn table(rows: &[Row], results: &[CellResult]) -> String {
    let mut t = Table::new(&[
        ("policy", Align::Left),
        ("ordering", Align::Left),
        ("peak disk", Align::Right),
        ("over capacity", Align::Right),
        ("failed builds", Align::Right),
        ("hit ratio", Align::Right),
        ("byte hits", Align::Right),
        ("rebuilds", Align::Right),
        ("rebuild time", Align::Right),
        ("re-pulls", Align::Right),
        ("freed", Align::Right),
        ("GC runs", Align::Right),
    ]);
    for (row, result) in rows.iter().zip(results) {
        let r = &result.report;
        t.row(vec![
            row.spec.name().to_owned(),
            if row.ordered {
                r.ordering.clone()
            } else {
                "(any)".to_owned()
            },
            gb(r.disk.peak_used),
            hours_ms(r.disk.over_capacity_ms),
            r.builds.would_fail.to_string(),
            percent(r.steps.hit_ratio),
            percent(r.steps.byte_hit_ratio),
            r.rebuilds.count.to_string(),
            hours(r.rebuilds.seconds),
            r.pulls.repulls.to_string(),
            gb(r.bytes_freed),
            r.gc_runs().to_string(),
        ]);
    }
    t.render(0)
}

/// The sweep as a table: miss ratio and rebuild hours per day per disk
/// size.
fn sweep_table(
    rows: &[Row],
    results: &[CellResult],
    sweep: &[Vec<usize>],
    budgets: &[u64],
) -> String {
    let headers: Vec<String> = budgets.iter().map(|&b| gb(b)).collect();
    let mut columns: Vec<(&str, Align)> = vec![("miss ratio / rebuild h per day", Align::Left)];
    columns.extend(headers.iter().map(|h| (h.as_str(), Align::Right)));
    let mut t = Table::new(&columns);
    for (row, indices) in rows.iter().zip(sweep) {
        let mut cells = vec![row.label()];
        for &i in indices {
            let r = &results[i].report;
            let over = if r.disk.over_capacity_ms > 0 {
                " !"
            } else {
                ""
            };
            cells.push(format!(
                "{} / {:.2}{over}",
                percent(r.miss_ratio()),
                r.rebuild_hours_per_day()
            ));
        }
        t.row(cells);
    }
    let mut out = t.render(0);
    out.push_str("(! = the disk was over capacity at some point)\n");
    out
}

/// Everything as JSON: the rows' reports, and the sweep's without their
/// series.
fn compare_json(
    description: &str,
    rows: &[Row],
    results: &[CellResult],
    sweep: &[Vec<usize>],
    budgets: &[u64],
) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = rows
        .iter()
        .zip(results)
        .map(|(row, r)| {
            json!({
                "label": row.label(),
                "ordering_matters": row.ordered,
                "report": r.report,
                "timing": r.timing,
            })
        })
        .collect();
    let curves: Vec<serde_json::Value> = rows
        .iter()
        .zip(sweep)
        .map(|(row, indices)| {
            let points: Vec<serde_json::Value> = indices
                .iter()
                .zip(budgets)
                .map(|(&i, &budget)| {
                    let r = &results[i].report;
                    json!({
                        "disk_total": budget,
                        "miss_ratio": r.miss_ratio(),
                        "rebuild_hours_per_day": r.rebuild_hours_per_day(),
                        "over_capacity_ms": r.disk.over_capacity_ms,
                        "peak_used": r.disk.peak_used,
                        "bytes_freed": r.bytes_freed,
                    })
                })
                .collect();
            json!({"label": row.label(), "points": points})
        })
        .collect();
    json!({
        "schema": "reclaim.compare/v1",
        "workload": description,
        "runs": runs,
        "sweep": curves,
    })
}
