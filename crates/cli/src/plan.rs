//! `reclaim plan`: what a collector would delete now, and why. Nothing is
//! deleted; the plan comes from snapshot files (or, later, a live daemon).

mod buildkit;
mod docker;
mod kubelet;

pub use self::buildkit::parse_ordering;

use std::process::ExitCode;

use anyhow::Result;

/// The collectors `reclaim plan` can explain.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// BuildKit build-cache GC: the deletion plan of one GC run of a
    /// daemon.json policy over a snapshot of cache records.
    Buildkit(buildkit::Args),
    /// All three collectors against a live Docker daemon, as `reclaim
    /// agent` would run them now (the issue's `plan --docker`): the
    /// build-cache plan in the same form as `plan buildkit`, and the image
    /// and container GC dry runs. Deletes nothing.
    Docker(docker::Args),
    /// Kubelet image GC: the plan of one periodic `GarbageCollect` of a
    /// KubeletConfiguration's image policy over an image snapshot
    /// (docs/kubelet-gc.md). Exits with 1 when the kubelet's GC would
    /// return an error (such as not enough unused images to free).
    Images(kubelet::ImagesArgs),
    /// Kubelet container GC: the dead containers, pod sandboxes and pod log
    /// directories one periodic GC call would remove from a container
    /// snapshot, under the kubelet's three container GC flags.
    Containers(kubelet::ContainersArgs),
}

/// Runs the chosen plan subcommand.
pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Buildkit(args) => buildkit::run(&args),
        Command::Docker(args) => docker::run(&args),
        Command::Images(args) => kubelet::run_images(&args),
        Command::Containers(args) => kubelet::run_containers(&args),
    }
}
