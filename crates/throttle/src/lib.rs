//! BuildKit's debounced GC trigger (`throttle.After` and
//! `throttle.Throttle`), as a deterministic state machine with drivers that
//! run it on a thread or a tokio task.
//!
//! BuildKit wraps its garbage collector in `throttle.After(1 minute, gc)`:
//! calls coalesce, the collector never runs concurrently with itself, the
//! first call runs it at once, and calls during a run or the minute after it
//! collapse into exactly one more run. This crate reproduces that behaviour
//! (and the trailing-edge `Throttle` variant) exactly, for Rust daemons.
//!
//! The core never reads a clock, never sleeps and never spawns anything: it
//! is told the time and says when to run next. It does not decide *what* a
//! run does (that is the caller's `f`) nor *when* to trigger (BuildKit's
//! wiring is provided as a helper, not imposed).
//!
//! # Overview
//!
//! - [`Schedule`] is the sans-IO core: [`Schedule::trigger`],
//!   [`Schedule::poll_timeout`], [`Schedule::poll`] and
//!   [`Schedule::finish`], with the time passed in as an [`Instant`].
//!   [`DelayedSchedule`] adds BuildKit's "trigger one second later" timers
//!   ([`DelayedSchedule::buildkit_gc`]), and [`replay`] plays a timeline of
//!   triggers on virtual time.
//! - [`Throttled`] runs a schedule on a dedicated thread. Its
//!   [`Throttled::trigger`] costs one atomic load when a run is already
//!   pending. Time comes from a [`Clock`]: [`SystemClock`] in production,
//!   [`ManualClock`] in tests.
//! - `tokio::Throttled` (feature `tokio`) does the same on a tokio task,
//!   with an async `f`.
//!
//! See `docs/throttle.md` in the repository for timing diagrams.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reclaim_throttle::{Instant, Schedule};
//!
//! let ms = Instant::from_millis;
//! let mut gc = Schedule::after(Duration::from_millis(100));
//!
//! gc.trigger(ms(0));
//! let run = gc.poll(ms(0)).expect("the first trigger runs at once");
//! gc.trigger(ms(10)); // During the run: one more run, 100 ms after it ends.
//! gc.trigger(ms(20)); // Coalesced with the previous trigger.
//! gc.finish(run, ms(30))?;
//! assert_eq!(gc.poll_timeout(), Some(ms(130)));
//! assert!(gc.poll(ms(129)).is_none());
//! assert_eq!(gc.poll(ms(130)).map(|run| run.seq()), Some(2));
//! # Ok::<(), reclaim_throttle::FinishError>(())
//! ```

mod delayed;
mod replay;
mod schedule;
mod sync;
mod thread;
mod time;
#[cfg(all(feature = "tokio", not(loom)))]
pub mod tokio;

pub use delayed::{
    BUILDKIT_GC_DELAY, BUILDKIT_GC_PERIOD, BUILDKIT_RELEASE_UNREFERENCED_PERIOD, DelayedSchedule,
};
pub use replay::{Span, replay};
pub use schedule::{FinishError, Mode, Run, Schedule};
pub use thread::{Builder, Shutdown, Stats, Throttled};
pub use time::{Clock, Instant, ManualClock, SystemClock, Waker};
