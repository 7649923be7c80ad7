//! `reclaim plan images` and `reclaim plan containers`: the kubelet's image
//! GC and container GC as dry runs over snapshot files
//! (docs/kubelet-snapshot-format.md, docs/kubelet-gc.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use reclaim_kubelet::{
    ContainerGcOptions, ContainerGcPolicy, ContainerPolicyError, ContainerSnapshot, ImageSnapshot,
    KubeletConfig, MAX_CONTAINERS_FLAG, MAX_PER_POD_CONTAINER_FLAG, MIN_AGE_FLAG, plan_containers,
    plan_images, records_from_snapshot,
};
use reclaim_model::{ByteSize, Timestamp};

use crate::util;

/// Arguments of `reclaim plan images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// The kubelet's KubeletConfiguration file (YAML or JSON); only
    /// imageGCHighThresholdPercent, imageGCLowThresholdPercent,
    /// imageMinimumGCAge and imageMaximumGCAge are read, with the kubelet's
    /// defaults and validation.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Image snapshot: listed images, containers using them, image
    /// filesystem stats and saved records (docs/kubelet-snapshot-format.md).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// Time of the GC run (RFC 3339 or Unix seconds). Default: the
    /// snapshot's `taken_at`, else the system clock.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Print the plan as JSON (schema reclaim.kubelet.image-plan/v1)
    /// instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `reclaim plan containers`.
#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    /// Container snapshot: pods with their state, containers, sandboxes and
    /// pod log directories (docs/kubelet-snapshot-format.md).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// Minimum age of a dead container before it may be removed, counted
    /// from its creation (Go duration: 30s, 1h30m). Kubelet default 0s.
    #[arg(
        long,
        value_name = "DURATION",
        visible_alias = MIN_AGE_FLAG,
        allow_hyphen_values = true
    )]
    pub min_age: Option<String>,
    /// Dead containers kept per pod and container name; negative: no limit.
    /// Kubelet default 1.
    #[arg(
        long,
        value_name = "N",
        visible_alias = MAX_PER_POD_CONTAINER_FLAG,
        allow_hyphen_values = true
    )]
    pub max_per_pod: Option<String>,
    /// Dead containers kept on the node; negative: no limit. Kubelet
    /// default -1.
    #[arg(
        long,
        value_name = "N",
        visible_alias = MAX_CONTAINERS_FLAG,
        allow_hyphen_values = true
    )]
    pub max_containers: Option<String>,
    /// Time of the GC run (RFC 3339 or Unix seconds). Default: the
    /// snapshot's `taken_at`, else the system clock.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Print the plan as JSON (schema reclaim.kubelet.container-plan/v1)
    /// instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `reclaim plan images`: the kubelet's periodic `GarbageCollect` at
/// `now`, every removal assumed to succeed. Exit code 0, or 1 when the GC
/// would return an error (for example, unused images cannot free enough
/// space), which the plan explains.
pub fn run_images(args: &ImagesArgs) -> Result<ExitCode> {
    let config_text = util::read_text(&args.config)?;
    let config = KubeletConfig::parse(&config_text).with_context(|| {
        format!(
            "{}: the kubelet would refuse this configuration",
            args.config.display()
        )
    })?;
    let policy = config.image_policy();
    let snapshot_text = util::read_text(&args.snapshot)?;
    let snapshot = ImageSnapshot::from_json(&snapshot_text)
        .with_context(|| format!("{}: not an image snapshot", args.snapshot.display()))?;
    let (now, now_source) = gc_time(args.now.as_deref(), snapshot.taken_at)?;

    let records = records_from_snapshot(&snapshot, now);
    let (began_gc, fs) = snapshot.plan_inputs(now);
    let plan = plan_images(&records, &policy, now, began_gc, fs);
    let code = if plan.error.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };

    if args.json {
        print_plan_json(&plan)?;
        return Ok(code);
    }
    println!("config: {}", args.config.display());
    println!(
        "snapshot: {}: {} images, {} containers, {}; now {now} ({now_source})",
        args.snapshot.display(),
        snapshot.images.len(),
        snapshot.containers.len(),
        match &snapshot.records {
            Some(saved) => format!("{} saved records", saved.len()),
            None => "no saved records (every image first detected now)".to_owned(),
        },
    );
    println!();
    print!("{plan:#}");
    let bytes = plan.bytes_removed();
    println!(
        "\nWould remove {} images, {} ({bytes} bytes); keep {}.",
        plan.removed().count(),
        ByteSize(bytes),
        plan.kept.len()
    );
    Ok(code)
}

/// Runs `reclaim plan containers`: one periodic container GC call of the
/// kubelet at `now` (all sources ready), every call assumed to succeed.
pub fn run_containers(args: &ContainersArgs) -> Result<ExitCode> {
    let policy = ContainerGcPolicy::from_flags(
        args.min_age.as_deref(),
        args.max_per_pod.as_deref(),
        args.max_containers.as_deref(),
    )
    .map_err(|e| policy_error(args, e))?;
    let snapshot_text = util::read_text(&args.snapshot)?;
    let snapshot = ContainerSnapshot::from_json(&snapshot_text)
        .with_context(|| format!("{}: not a container snapshot", args.snapshot.display()))?;
    let (now, now_source) = gc_time(args.now.as_deref(), snapshot.taken_at)?;

    let pods = snapshot.pod_states();
    let plan = plan_containers(&snapshot, &policy, &pods, &ContainerGcOptions::new(now));

    if args.json {
        print_plan_json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "snapshot: {}: {} pods (unlisted pods count as {}), {} containers, {} sandboxes, {} pod log directories; now {now} ({now_source})",
        args.snapshot.display(),
        snapshot.pods.len(),
        snapshot.unknown_pods,
        snapshot.containers.len(),
        snapshot.sandboxes.len(),
        snapshot.pod_log_dirs.len(),
    );
    println!();
    print!("{plan:#}");
    Ok(ExitCode::SUCCESS)
}

/// Prints a plan as pretty JSON in its own field order (`schema` first),
/// which a detour through `serde_json::Value` would sort away.
fn print_plan_json(plan: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(plan)?);
    Ok(())
}

/// The GC clock: `--now`, else the snapshot's `taken_at`, else the system
/// clock; with a word on where it came from.
fn gc_time(flag: Option<&str>, taken_at: Option<Timestamp>) -> Result<(Timestamp, &'static str)> {
    Ok(match (flag, taken_at) {
        (Some(text), _) => (util::parse_now(Some(text))?, "--now"),
        (None, Some(t)) => (t, "the snapshot's taken_at"),
        (None, None) => (util::system_now(), "the system clock"),
    })
}

/// Names the flag as the user can spell it, then gives the kubelet's own
/// message (which names the kubelet flag): `--max-per-pod "x": invalid
/// argument "x" for "--maximum-dead-containers-per-container" flag: ...`.
fn policy_error(args: &ContainersArgs, err: ContainerPolicyError) -> anyhow::Error {
    let (flag, value) = match &err {
        ContainerPolicyError::InvalidFlag { flag, .. } => match *flag {
            MIN_AGE_FLAG => ("--min-age", args.min_age.as_deref()),
            MAX_PER_POD_CONTAINER_FLAG => ("--max-per-pod", args.max_per_pod.as_deref()),
            _ => ("--max-containers", args.max_containers.as_deref()),
        },
        ContainerPolicyError::NegativeMinAge(_) => ("--min-age", args.min_age.as_deref()),
        _ => return anyhow!("{err}"),
    };
    anyhow!("{flag} {:?}: {err}", value.unwrap_or_default())
}
