//! `reclaim plan docker`: what the agent would delete now on a live
//! daemon, and why. Nothing is deleted: every collector runs as a dry run,
//! and the adapter refuses removals on top of that.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use reclaim_docker::{DockerRuntime, DockerState};
use reclaim_model::{DiskStats, Id};
use reclaim_policy::config::effective_rules;
use reclaim_policy::prune::{self, Snapshot};
use reclaim_runtime::{
    BuildCacheStore, Clock, ContainerGcCollector, ImageGcCollector, ImageStore, NoopObserver,
    Report, SystemClock,
};
use serde_json::json;

use crate::agent::config::{self, AgentConfig};
use crate::agent::metrics::skip_reason;

/// Arguments of `reclaim plan docker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's configuration (TOML, docs/agent.md) whose policies to
    /// explain. Default: dockerd's default build-cache policy and the
    /// kubelet's image and container defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A state file with image last-use records. Default: the
    /// configuration's `agent.state_file`, if it exists.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print at most this many deletions and kept records per collector
    /// (0: all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print everything as one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: exit code 0, or 1 when a collector's plan reports an
/// error (as the agent's run would).
pub fn run(args: &Args) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => config::load(path)?,
        None => config::parse("", std::path::Path::new("reclaim-agent.toml"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(plan(args, &config))
}

async fn plan(args: &Args, config: &AgentConfig) -> Result<ExitCode> {
    let endpoint = crate::agent::endpoint(config)?;
    let docker = DockerRuntime::connect(&endpoint, crate::agent::docker_options(config))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    // Belt and braces: the collectors run dry, and the adapter refuses any
    // removal as well.
    docker.drain();
    let clock = SystemClock::new();
    let now = clock.now();
    let disk = docker.disk_stats().ok();
    let mut failed = false;

    // Build cache: the same plan as `reclaim plan buildkit`.
    let records = docker
        .cache_records()
        .await
        .map_err(|e| anyhow!("listing the build cache: {e}"))?;
    let build_json = if config.build_cache.enabled {
        let effective = effective_rules(&config.build_cache.gc, disk.map(|d| d.total), now)
            .map_err(|e| {
                anyhow!(
                    "{}: dockerd would fail to start its builder: {e}",
                    config.build_cache.gc_source
                )
            })?;
        let snapshot = Snapshot::new(records.clone()).map_err(|e| anyhow!("{e}"))?;
        let disk = disk.unwrap_or(DiskStats::new(0, 0));
        let plan = prune::plan_with(
            &snapshot,
            &effective.rules,
            disk,
            now,
            config.build_cache.ordering,
        );
        failed |= plan.error.is_some();
        if !args.json {
            println!(
                "== build cache ({}) on {} (Docker {}, API {})",
                config.build_cache.gc_source,
                docker.endpoint(),
                docker.server_version(),
                docker.api_version()
            );
            if effective.enabled {
                explain_build_cache(args, config, &records, disk, now)?;
            } else {
                println!("builder.gc is disabled: no build-cache GC");
            }
        }
        json!({
            "source": config.build_cache.gc_source,
            "enabled": effective.enabled,
            "now": now.to_string(),
            "disk": disk,
            "ordering": format!("{:?}", config.build_cache.ordering),
            "rules": effective.rules.iter().map(crate::check::rule_json).collect::<Vec<_>>(),
            "plan": plan,
            "bytes_freed": plan.bytes_freed(),
        })
    } else {
        serde_json::Value::Null
    };

    // Containers, then images, as the agent runs them.
    let containers = if config.containers.enabled {
        let mut gc = ContainerGcCollector::new(config.containers.policy);
        gc.dry_run(true)
            .select(config.containers.only_label.clone());
        let report = gc.run(&docker, &clock, &NoopObserver).await;
        Some(report)
    } else {
        None
    };
    let images = if config.images.enabled {
        let mut gc = ImageGcCollector::new(config.images.policy);
        gc.dry_run(true)
            .mode(config.images.mode)
            .select(config.images.only_label.clone());
        let state_file = args
            .state
            .clone()
            .unwrap_or(config.agent.state_file.clone());
        match DockerState::load(&state_file) {
            Ok(Some(mut state)) => {
                if let Ok(listed) = docker.images().await {
                    let ids: HashSet<Id> = listed.iter().map(|i| i.id.clone()).collect();
                    state.usage.retain_listed(&ids);
                }
                state.usage.apply(&mut state.image_gc);
                gc.restore(state.image_gc);
                if !args.json {
                    println!(
                        "\n(image last use from {}: {} images)",
                        state_file.display(),
                        state.usage.len()
                    );
                }
            }
            Ok(None) => {
                if !args.json {
                    println!(
                        "\n(no state file at {}: every image counts as first seen now, so MinAge keeps them all)",
                        state_file.display()
                    );
                }
            }
            Err(e) if args.state.is_some() => return Err(anyhow!("{e}")),
            Err(e) => eprintln!("warning: {e}; planning without saved state"),
        }
        Some(gc.run(&docker, &clock, &NoopObserver).await)
    } else {
        None
    };
    for report in containers.iter().chain(&images) {
        failed |= !report.errors.is_empty();
        if !args.json {
            print_report(report, args.limit);
        }
    }
    if args.json {
        crate::util::print_json(&json!({
            "docker": {
                "endpoint": docker.endpoint().to_string(),
                "version": docker.server_version(),
                "api": docker.api_version().to_string(),
            },
            "build_cache": build_json,
            "containers": containers,
            "images": images,
        }))?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the build-cache plan through `reclaim plan buildkit` itself, on
/// the live records and disk, so that both explain the same way.
fn explain_build_cache(
    args: &Args,
    config: &AgentConfig,
    records: &[prune::CacheRecord],
    disk: DiskStats,
    now: reclaim_model::Timestamp,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("reclaim-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let snapshot = dir.join("snapshot.json");
    let daemon_json = dir.join("daemon.json");
    std::fs::write(&snapshot, serde_json::to_vec(records)?)?;
    std::fs::write(&daemon_json, &config.build_cache.gc_json)?;
    let result = super::buildkit::run(&super::buildkit::Args {
        config: daemon_json,
        snapshot,
        disk_total: Some(disk.total.to_string()),
        disk_free: Some(disk.free.to_string()),
        data_root: PathBuf::from("/"),
        now: Some(now.to_string()),
        ordering: config.build_cache.ordering,
        limit: args.limit,
        json: false,
    });
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| ())
}

fn print_report(report: &Report, limit: usize) {
    println!("\n== {} ", report.collector);
    let mut text = report.to_string();
    if limit > 0 {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > limit + 4 {
            let kept = lines[..limit + 4].join("\n");
            text = format!(
                "{kept}\n  ... {} more lines (use --limit 0 to show all)\n",
                lines.len() - limit - 4
            );
        }
    }
    print!("{text}");
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for s in &report.skips {
        *by_reason.entry(skip_reason(&s.reason)).or_default() += 1;
    }
    println!(
        "Would remove {} items ({} bytes); keep {}:",
        report.planned_ids().count(),
        report.deletions.iter().filter_map(|d| d.bytes).sum::<u64>(),
        report.skipped
    );
    for (reason, count) in &by_reason {
        println!("  {count:>8}  {reason}");
    }
    let shown = if limit == 0 {
        report.skips.len()
    } else {
        limit.min(report.skips.len())
    };
    for s in report.skips.iter().take(shown) {
        println!("  keep {}: {}", s.id, skip_reason(&s.reason));
    }
    if shown < report.skips.len() {
        println!(
            "  ... {} more (use --limit 0 to show all)",
            report.skips.len() - shown
        );
    }
}
