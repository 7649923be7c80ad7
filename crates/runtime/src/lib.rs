//! The seam between reclaim's pure planners and container engines: runtime
//! traits, a clock, collectors that join a planner to an engine, triggers
//! that decide when they run, reports, an observer hook, and an in-memory
//! engine with fault injection.
//!
//! This crate does no I/O of its own and knows no real engine: an engine
//! adapter (such as the Docker one) implements the traits, and this crate
//! never reads the system clock except in [`SystemClock`]. It does not
//! decide policy either: the planners of `reclaim_policy` (BuildKit) and
//! `reclaim_kubelet` (kubelet) do.
//!
//! # Overview
//!
//! - The seam: [`BuildCacheStore`], [`ImageStore`] and [`ContainerStore`],
//!   split by capability, with `async` methods and typed outcomes
//!   ([`RemoveOutcome`]: removed, already gone, in use, transient, fatal).
//! - Collectors: [`BuildCacheCollector`] (BuildKit's GC, re-planning when
//!   the engine refuses a record), [`ContainerGcCollector`] and
//!   [`ImageGcCollector`] (the kubelet's, with image records kept between
//!   runs). Each run returns a [`Report`]: deletions with reasons and
//!   outcomes, skips with reasons, bytes freed per rule or pass, errors and
//!   timing. An [`Observer`] sees the run as it happens;
//!   [`TracingObserver`] logs upstream's lines (`gc cleaned up N bytes`).
//! - Time: [`Clock`], with [`SystemClock`] and [`ManualClock`].
//! - Triggers: [`BuildKitTrigger`], [`PeriodicTrigger`] and
//!   [`WatermarkTrigger`], sans-IO schedulers driven by `poll_timeout` and
//!   `poll` on virtual or real time.
//! - [`MemoryRuntime`]: every trait over in-memory state, with scripted and
//!   random faults; [`block_on`] runs collectors over it without an async
//!   runtime.
//! - `conformance` (feature `conformance`): test bodies any engine adapter
//!   runs against itself.
//!
//! The async design (and the alternatives it beat) is described in
//! `docs/runtime.md`.
//!
//! # Example
//!
//! ```
//! use reclaim_model::Timestamp;
//! use reclaim_policy::Rule;
//! use reclaim_policy::prune::CacheRecord;
//! use reclaim_runtime::{
//!     BuildCacheCollector, BuildKitTrigger, Clock, ManualClock, MemoryRuntime, NoopObserver,
//!     Trigger, block_on,
//! };
//!
//! // An engine with 3 GB of build cache on a 10 GB disk.
//! let mut engine = MemoryRuntime::new(10_000_000_000);
//! let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
//! for (id, size) in [("a", 1_000_000_000), ("b", 1_000_000_000), ("c", 1_000_000_000)] {
//!     engine.state_mut().add_record(CacheRecord::new(id, size))?;
//!     engine.state_mut().use_record(id, clock.now());
//!     clock.advance(std::time::Duration::from_secs(60));
//! }
//!
//! // Keep the cache under 2.5 GB, checked when BuildKit checks: 1 s after
//! // the daemon starts.
//! let gc = BuildCacheCollector::new(vec![Rule { max_used_space: 2_500_000_000, ..Rule::default() }]);
//! let mut trigger = BuildKitTrigger::new(clock.instant());
//! clock.advance(std::time::Duration::from_secs(1));
//! let fire = trigger.poll(clock.instant()).expect("GC runs 1 s after start");
//! let report = block_on(gc.run(&engine, &clock, &NoopObserver));
//! trigger.finish(fire, clock.instant())?;
//!
//! // The least recently used record went; the total is below 2.5 GB.
//! assert_eq!(report.removed_ids().map(|id| id.as_str()).collect::<Vec<_>>(), ["a"]);
//! assert_eq!(engine.state_mut().cache_bytes(), 2_000_000_000);
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clock;
mod collect;
#[cfg(feature = "conformance")]
pub mod conformance;
mod executor;
pub mod memory;
mod observer;
mod report;
mod store;
mod trigger;

pub use clock::{Clock, Instant, ManualClock, SystemClock};
pub use collect::{
    BuildCacheCollector, Collectors, ContainerGcCollector, ImageGcCollector, ImageGcMode,
    ImageGcState, LabelSelector, SelectorError,
};
pub use executor::block_on;
pub use memory::{MemoryError, MemoryRuntime, MemoryState};
pub use observer::{NoopObserver, Observer, TracingObserver};
pub use report::{
    CollectorKind, ItemKind, Outcome, PassReport, REPORT_SCHEMA, Reason, Report, ReportDeletion,
    ReportError, RunStatus, Skip, SkipReason,
};
pub use store::{
    BuildCacheStore, ContainerInfo, ContainerStore, ImageInfo, ImageStore, PodList, RemoveOutcome,
    RuntimeError, SandboxInfo, StopOutcome,
};
pub use trigger::{
    BuildKitTrigger, Fire, KUBELET_CONTAINER_GC_PERIOD, KUBELET_IMAGE_GC_PERIOD, PeriodicTrigger,
    Trigger, TriggerError, WatermarkTrigger,
};
