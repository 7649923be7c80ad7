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
