//! Deterministic simulation of a CI node's disk: a workload model, a
//! versioned trace format, replay of traces through GC policies and
//! eviction orderings on a virtual clock, metrics, and SVG plots.
//!
//! This crate runs reclaim's real collectors (`reclaim_runtime`) and
//! planners (`reclaim_policy`, `reclaim_kubelet`) over the in-memory engine
//! ([`reclaim_runtime::MemoryRuntime`]); it plans nothing itself. It never
//! reads the clock for simulated time and never touches the file system:
//! traces and plots come in and go out as values, readers and writers. The
//! only real-time reading is the wall time of GC runs, reported apart in
//! [`Timing`].
//!
//! # Overview
//!
//! - [`Workload`] generates the built-in workload: a GitLab Runner node on
//!   Kubernetes with a persistent Docker-in-Docker daemon, building several
//!   projects on many branches (see the [`workload`] module for the model).
//! - [`Trace`] is a trace in memory; [`trace`] has the JSON-lines format
//!   ([`trace::TraceHeader`], [`trace::TraceEvent`]) that this crate writes
//!   and reads, and that a recorder can capture from a live daemon.
//! - [`Policy`] says which collectors run and what triggers them (dockerd's
//!   `builder.gc`, cron prunes, the kubelet's GC, a free-space watermark);
//!   [`SimBuilder`] replays a trace under one policy and ordering and
//!   returns a [`RunResult`] with a deterministic [`RunReport`].
//! - [`run_cells`] runs many replays on threads (comparisons, sweeps over
//!   disk sizes); [`plot`] draws them.
//!
//! # Determinism
//!
//! The same workload parameters (seed included) give a byte-identical
//! trace, and the same trace, policy, ordering and options give a
//! byte-identical report, on one platform. Randomness is one seeded ChaCha8
//! stream; no output depends on hash order. Log-normal and exponential
//! draws use the platform's `ln`, `exp` and `cos`, whose last bit may
//! differ between C libraries.
//!
//! # Example
//!
//! ```
//! use reclaim_sim::{KubeletGc, Policy, SimBuilder, Workload};
//!
//! // Three days of the built-in CI node on a 40 GiB disk.
//! let trace = Workload::new().days(3.0).disk_total(40 << 30).seed(7).generate()?;
//! let policy = Policy::dockerd_default(trace.header().disk_total)
//!     .with_kubelet(Some(KubeletGc::default()));
//! let result = SimBuilder::new(policy).build(&trace).run();
//! let report = &result.report;
//! assert!(report.steps.hit_ratio > 0.5);
//! assert_eq!(report.disk.over_capacity_ms, 0, "GC keeps the disk below its size");
//! println!(
//!     "peak {} bytes, {} rebuilds caused by GC, {} bytes freed",
//!     report.disk.peak_used, report.rebuilds.count, report.bytes_freed
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod grid;
mod metrics;
pub mod plot;
mod policy;
mod rng;
mod sim;
pub mod trace;
pub mod workload;

pub use grid::{Cell, CellResult, run_cells};
pub use metrics::{
    BuildMetrics, CostMetrics, DiskMetrics, GcMetrics, GcTiming, PullMetrics, RUN_REPORT_SCHEMA,
    RunReport, Series, StepMetrics, Timing,
};
pub use policy::{
    Cron, CronAction, KubeletGc, Policy, PolicyError, PolicySpec, Watermark, ordering_name,
    parse_ordering,
};
pub use sim::{RunResult, Sim, SimBuilder, SimStep};
pub use trace::{Trace, TraceError};
pub use workload::{Workload, WorkloadError};
