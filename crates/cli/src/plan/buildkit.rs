//! `reclaim plan buildkit`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reclaim_model::{ByteSize, DiskStats};
use reclaim_policy::config;
use reclaim_policy::prune::{self, DeletionReason, KeepReason, Ordering, Snapshot};
use serde_json::json;

use crate::table::{Align, Table};
use crate::util;

/// Arguments of `reclaim plan buildkit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// daemon.json whose `builder.gc` section gives the rules.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// JSON array of cache records (docs/snapshot-format.md).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// Size of the disk holding the build cache (Docker size syntax or
    /// bytes). Default: the file system of --data-root.
    #[arg(long, value_name = "SIZE")]
    pub disk_total: Option<String>,
    /// Free bytes on that disk (statfs f_bfree). Default: the file system
    /// of --data-root.
    #[arg(long, value_name = "SIZE")]
    pub disk_free: Option<String>,
    /// Where to read the disk when --disk-total/--disk-free are not given.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/docker")]
    pub data_root: PathBuf,
    /// Time of the GC run (RFC 3339 or Unix seconds); also the daemon start
    /// time for `until` filters. Default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Eviction ordering inside size-limited rules: buildkit (upstream's,
    /// exact), lru, lfu, fifo, largest, gdsf.
    #[arg(long, value_name = "ORDERING", default_value = "buildkit", value_parser = parse_ordering)]
    pub ordering: Ordering,
    /// Print at most this many deletions and kept records (0: all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print the full plan as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Reads an ordering name.
pub fn parse_ordering(text: &str) -> Result<Ordering, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "buildkit" => Ordering::BuildKit,
        "lru" => Ordering::Lru,
        "lfu" => Ordering::Lfu,
        "fifo" => Ordering::Fifo,
        "largest" | "largest-first" => Ordering::LargestFirst,
        "gdsf" => Ordering::Gdsf,
        other => {
            return Err(format!(
                "unknown ordering {other:?}; expected buildkit, lru, lfu, fifo, largest or gdsf"
            ));
        }
    })
}

/// Runs the command. Exit code 0 when the plan completed, 1 when a rule
/// failed (BuildKit would log `gc error`) or the config is invalid.
pub fn run(args: &Args) -> Result<ExitCode> {
    let now = util::parse_now(args.now.as_deref())?;
    let disk = disk_stats(args)?;
    let text = util::read_text(&args.config)?;
    let (gc, _diagnostics) = config::parse(&text)
        .with_context(|| format!("{}: dockerd would refuse this file", args.config.display()))?;
    let effective = config::effective_rules(&gc, Some(disk.total), now).map_err(|e| {
        anyhow::anyhow!(
            "{}: dockerd would fail to start its builder: {e}",
            args.config.display()
        )
    })?;
    let snapshot_text = util::read_text(&args.snapshot)?;
    let snapshot = Snapshot::from_json(&snapshot_text)
        .with_context(|| format!("{}: not a cache snapshot", args.snapshot.display()))?;

    if !effective.enabled {
        bail!(
            "{}: builder.gc is disabled; dockerd runs no GC",
            args.config.display()
        );
    }
    let plan = prune::plan_with(&snapshot, &effective.rules, disk, now, args.ordering);

    if args.json {
        util::print_json(&json!({
            "now": now.to_string(),
            "disk": disk,
            "ordering": format!("{:?}", args.ordering),
            "rules": effective.rules.iter().map(crate::check::rule_json).collect::<Vec<_>>(),
            "plan": plan,
            "bytes_freed": plan.bytes_freed(),
        }))?;
        return Ok(if plan.error.is_some() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }

    let records: BTreeMap<&str, &prune::CacheRecord> = snapshot
        .records()
        .iter()
        .map(|r| (r.id.as_str(), r))
        .collect();
    println!(
        "{} records, {} in total; disk {} total, {} free; now {now}; ordering {:?}",
        snapshot.len(),
        ByteSize(snapshot.records().iter().map(|r| r.size).sum()),
        ByteSize(disk.total),
        ByteSize(disk.free),
        args.ordering
    );
    println!("\nRules:");
    print!("{}", crate::check::rules_table(&effective.rules).render(2));
    for outcome in &plan.rules {
        println!("\n{outcome}");
        let deletions = plan.deletions_of(outcome);
        if deletions.is_empty() {
            continue;
        }
        let mut t = Table::new(&[
            ("#", Align::Right),
            ("id", Align::Left),
            ("type", Align::Left),
            ("size", Align::Right),
            ("last used", Align::Left),
            ("uses", Align::Right),
            ("why", Align::Left),
        ]);
        let shown = if args.limit == 0 {
            deletions.len()
        } else {
            args.limit.min(deletions.len())
        };
        for (i, d) in deletions.iter().take(shown).enumerate() {
            let record = records.get(d.id.as_str());
            t.row(vec![
                (outcome.deletions.start + i + 1).to_string(),
                d.id.to_string(),
                record
                    .map(|r| r.record_type.as_str().to_owned())
                    .unwrap_or_default(),
                ByteSize(d.bytes).to_string(),
                record
                    .and_then(|r| r.last_used_at)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "never".to_owned()),
                record
                    .map(|r| r.usage_count.to_string())
                    .unwrap_or_default(),
                reason_text(&d.reason),
            ]);
        }
        print!("{}", t.render(2));
        if shown < deletions.len() {
            println!(
                "  ... {} more (use --limit 0 to show all)",
                deletions.len() - shown
            );
        }
    }
    if let Some(err) = &plan.error {
        println!(
            "\nrule {} failed, later rules did not run: {err}",
            err.rule()
        );
        println!("dockerd would log: gc error: {err}");
    }

    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for k in &plan.kept {
        *by_reason
            .entry(reason_kind(&k.reason).to_owned())
            .or_default() += 1;
    }
    println!(
        "\nDeleted {} records, {} ({} bytes); kept {} records:",
        plan.deletions.len(),
        ByteSize(plan.bytes_freed()),
        plan.bytes_freed(),
        plan.kept.len()
    );
    for (reason, count) in &by_reason {
        println!("  {count:>8}  {reason}");
    }
    let shown = if args.limit == 0 {
        plan.kept.len()
    } else {
        args.limit.min(plan.kept.len())
    };
    if shown > 0 {
        println!("\nKept records:");
        for k in plan.kept.iter().take(shown) {
            println!("  {}: {}", k.id, k.reason);
        }
        if shown < plan.kept.len() {
            println!(
                "  ... {} more (use --limit 0 to show all)",
                plan.kept.len() - shown
            );
        }
    }
    Ok(if plan.error.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn disk_stats(args: &Args) -> Result<DiskStats> {
    let stat = || {
        nix::sys::statvfs::statvfs(&args.data_root).with_context(|| {
            format!(
                "cannot read the disk of {}; pass --disk-total and --disk-free",
                args.data_root.display()
            )
        })
    };
    let total = match &args.disk_total {
        Some(text) => util::parse_size("--disk-total", text)?,
        None => {
            let s = stat()?;
            disk_bytes(s.fragment_size(), s.blocks())
        }
    };
    let free = match &args.disk_free {
        Some(text) => util::parse_size("--disk-free", text)?,
        None => {
            let s = stat()?;
            disk_bytes(s.fragment_size(), s.blocks_free())
        }
    };
    if free > total {
        bail!("--disk-free ({free}) is larger than --disk-total ({total})");
    }
    Ok(DiskStats::new(total, free))
}

/// Bytes in `blocks` blocks of `fragment` bytes. statvfs field widths differ
/// between platforms (u32 on some, u64 on Linux), hence the casts.
#[allow(clippy::unnecessary_cast)]
fn disk_bytes(fragment: nix::libc::c_ulong, blocks: nix::libc::fsblkcnt_t) -> u64 {
    (fragment as u64).saturating_mul(blocks as u64)
}

fn reason_text(reason: &DeletionReason) -> String {
    match reason {
        DeletionReason::Batch { wave } => {
            format!("no size limit: everything eligible (wave {wave})")
        }
        DeletionReason::Ranked {
            total_before,
            score,
        } => format!(
            "total {} >= keep; lowest score {:.4} = {}/{} + {}/{}",
            total_before,
            score.score,
            score.last_used_rank,
            score.last_used_max,
            score.usage_rank,
            score.usage_max
        ),
        DeletionReason::Ordered {
            total_before,
            ordering,
            key,
        } => {
            format!("total {total_before} >= keep; lowest {ordering:?} key {key}")
        }
        _ => format!("{reason:?}"),
    }
}

fn reason_kind(reason: &KeepReason) -> &'static str {
    match reason {
        KeepReason::ChildrenRemain { .. } => "parent of a record that stays",
        KeepReason::Filtered { .. } => "not matched by the rule's filter",
        KeepReason::InUse { .. } => "in use",
        KeepReason::NoRuleRan => "no rule ran",
        KeepReason::Protected { .. } => "internal, frontend or shared (rule lacks all)",
        KeepReason::Recent { .. } => "used too recently (keep-duration)",
        KeepReason::TargetReached { .. } => "eligible, but the target was reached first",
        _ => "other",
    }
}
