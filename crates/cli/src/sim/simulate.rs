//! `reclaim simulate`: one replay, with a summary table, the annotated
//! trace, the report and a plot of disk usage and misses over time.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use reclaim_sim::{RunReport, SimBuilder, Timing, parse_ordering, plot};

use super::{GcArgs, WorkloadArgs, gb, hours, hours_ms, percent, wall};
use crate::table::{Align, Table};

/// Arguments of `reclaim simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// The builder.gc policy: `dockerd-default` (dockerd's default rules
    /// for the disk), `none`, `weekly-system-prune`, `daily-buildx-prune`,
    /// or a daemon.json file.
    #[arg(long, value_name = "NAME|FILE", default_value = "dockerd-default")]
    pub policy: String,
    /// Eviction ordering of builder.gc's size-limited rules: buildkit
    /// (upstream's), lru, lfu, fifo, largest, gdsf.
    #[arg(long, value_name = "ORDERING", default_value = "buildkit")]
    pub ordering: String,
    #[command(flatten)]
    pub gc: GcArgs,
    /// Directory for trace.jsonl, report.json, timing.json and
    /// disk-usage.svg.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Do not write the annotated trace (the largest output).
    #[arg(long)]
    pub no_trace: bool,
    /// Print the report as JSON on standard output instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let spec = super::policy_spec(&args.policy)?;
    let ordering = parse_ordering(&args.ordering)?;
    let spinner = super::spinner("generating the workload");
    let loaded = args.workload.load()?;
    spinner.finish_and_clear();
    let trace = &loaded.trace;
    let disk = trace.header().disk_total;
    let policy = args.gc.policy(&spec, disk, trace)?;
    let rules = policy.builder_gc.as_ref().map_or(0, Vec::len);

    let bar = super::progress(trace.len() as u64, "replaying");
    let result = SimBuilder::new(policy)
        .ordering(ordering)
        .annotate(!args.no_trace)
        .build(trace)
        .run_with_progress(|n| bar.set_position(n as u64));
    bar.finish_and_clear();

    super::out_dir(&args.out)?;
    let mut written = Vec::new();
    if !args.no_trace {
        let path = args.out.join("trace.jsonl");
        let file = std::fs::File::create(&path)?;
        result.write_trace(trace, std::io::BufWriter::new(file))?;
        written.push(path);
    }
    let report = &result.report;
    let path = args.out.join("report.json");
    super::write(&path, report.to_json() + "\n")?;
    written.push(path);
    let path = args.out.join("timing.json");
    super::write(&path, serde_json::to_string_pretty(&result.timing)? + "\n")?;
    written.push(path);
    let title = format!(
        "reclaim simulate: {} under {} ({}), {} disk",
        loaded.description,
        report.policy,
        report.ordering,
        gb(disk)
    );
    let path = args.out.join("disk-usage.svg");
    super::write(&path, plot::disk_usage_svg(report, &title)?)?;
    written.push(path);

    if args.json {
        println!("{}", report.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    let header = format!(
        "{}\npolicy {} ({rules} builder.gc rules), ordering {}, {}\n",
        loaded.description,
        report.policy,
        report.ordering,
        args.gc.describe()
    );
    print!("{header}\n{}", summary(report, &result.timing));
    println!();
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary table of one run.
pub fn summary(r: &RunReport, timing: &Timing) -> String {
    let mut t = Table::new(&[("", Align::Left), ("", Align::Left)]);
    let mut row = |k: &str, v: String| t.row(vec![k.to_owned(), v]);
    row(
        "disk",
        format!(
            "{} total; peak {} ({}) at day {:.1}; {} at the end",
            gb(r.disk_total),
            gb(r.disk.peak_used),
            percent(r.disk.peak_used as f64 / r.disk_total.max(1) as f64),
            r.disk.peak_at_ms as f64 / 86_400_000.0,
            gb(r.disk.final_used)
        ),
    );
    row(
        "time over capacity",
        format!(
            "{} in {} periods; {} of {} builds would have failed",
            hours_ms(r.disk.over_capacity_ms),
            r.disk.over_capacity_periods,
            r.builds.would_fail,
            r.builds.total
        ),
    );
    row(
        "cache steps",
        format!(
            "{} steps, hit ratio {} ({} of bytes)",
            r.steps.total,
            percent(r.steps.hit_ratio),
            percent(r.steps.byte_hit_ratio)
        ),
    );
    row(
        "rebuilds caused by GC",
        format!(
            "{} steps, {}, {}",
            r.rebuilds.count,
            hours(r.rebuilds.seconds),
            gb(r.rebuilds.bytes)
        ),
    );
    row(
        "first builds",
        format!(
            "{} steps, {}, {} (the same under every policy)",
            r.cold.count,
            hours(r.cold.seconds),
            gb(r.cold.bytes)
        ),
    );
    row(
        "image pulls",
        format!(
            "{} needed, {} pulled, {} re-pulled after GC ({})",
            r.pulls.total,
            r.pulls.misses,
            r.pulls.repulls,
            gb(r.pulls.repull_bytes)
        ),
    );
    row("bytes freed", gb(r.bytes_freed));
    row(
        "replay",
        format!(
            "{} events in {} ({} of it in GC runs)",
            r.events,
            wall(timing.replay_ns),
            wall(timing.gc_ns())
        ),
    );
    let mut out = t.render(2).lines().skip(1).fold(String::new(), |mut s, l| {
        let _ = writeln!(s, "{l}");
        s
    });
    if !r.gc.is_empty() {
        let mut g = Table::new(&[
            ("collector", Align::Left),
            ("runs", Align::Right),
            ("with removals", Align::Right),
            ("removed", Align::Right),
            ("freed", Align::Right),
            ("errors", Align::Right),
            ("wall time", Align::Right),
            ("longest run", Align::Right),
        ]);
        for m in &r.gc {
            let w = timing.gc.iter().find(|w| w.name == m.name);
            g.row(vec![
                m.name.clone(),
                m.runs.to_string(),
                m.runs_with_removals.to_string(),
                m.removed.to_string(),
                gb(m.bytes_freed),
                m.errors.to_string(),
                w.map_or_else(String::new, |w| wall(w.total_ns)),
                w.map_or_else(String::new, |w| wall(w.max_ns)),
            ]);
        }
        out.push('\n');
        out.push_str(&g.render(2));
    }
    out
}
