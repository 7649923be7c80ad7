//! The `reclaim` command line.
//!
//! Every subcommand is a thin shell over the library crates: it reads files
//! and flags, asks a planner or collector, and prints the result as a table
//! for people or as JSON (`--json`) for scripts. This is the only crate that
//! reads the system clock (see [`util::system_now`]).

mod agent;
mod check;
mod plan;
mod record;
mod sim;
mod table;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// reclaim: garbage collection for container-engine disks, explained.
#[derive(Debug, Parser)]
#[command(name = "reclaim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a daemon.json and print the BuildKit GC rules dockerd would
    /// use, with warnings about known traps.
    Check(check::Args),
    /// Explain what a collector would delete now and why (deletes nothing).
    #[command(subcommand)]
    Plan(plan::Command),
    /// Run the collectors against a live Docker daemon: BuildKit's trigger,
    /// kubelet periods and free-space watermarks, with metrics, a state
    /// file and reloads without a restart (docs/agent.md).
    Agent(agent::Args),
    /// Record a replayable trace (docs/trace-format.md) from a live Docker
    /// daemon.
    Record(record::Args),
    /// Replay the built-in CI-node workload (or a recorded trace) through a
    /// GC policy: a summary, the annotated trace and a plot of disk usage
    /// and misses over time (docs/simulator.md).
    Simulate(Box<sim::simulate::Args>),
    /// Compare policies and eviction orderings on the same workload: one
    /// table, a plot over time, and miss-ratio curves over disk sizes.
    Compare(Box<sim::compare::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The long-running commands talk to dockerd over sockets and must
    // survive a peer that goes away; they keep Rust's ignored SIGPIPE.
    if !matches!(cli.command, Command::Agent(_) | Command::Record(_)) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Plan(command) => plan::run(command),
        Command::Agent(args) => agent::run(&args),
        Command::Record(args) => record::run(&args),
        Command::Simulate(args) => sim::simulate::run(&args),
        Command::Compare(args) => sim::compare::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Lets `reclaim ... | head` end quietly. Rust ignores SIGPIPE, so a write to
/// a closed pipe is an error and `println!` panics on it; a command-line tool
/// should instead die of the signal, as `cat` does.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called from `main` before any other thread exists;
    // `SigDfl` installs no handler of ours, so nothing can run in signal
    // context.
    if let Err(err) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore the default SIGPIPE action: {err}");
    }
}
