//! The thread driver: a [`Schedule`] run by a dedicated worker thread.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use crate::schedule::{Mode, Schedule};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, MutexGuard, Ordering, thread};
use crate::time::{Clock, Instant, SystemClock, Waker};

/// A function wrapped in BuildKit's `throttle.After` or `throttle.Throttle`,
/// run by a dedicated worker thread.
///
/// [`Throttled::trigger`] asks for a run and returns at once; it never runs
/// `f` on the caller's thread and never blocks on `f`. When a run is already
/// pending, `trigger` is a single atomic load: no lock, no write to shared
/// memory. The worker follows the [`Schedule`] exactly, so runs of `f` never
/// overlap and are spaced as upstream spaces them.
///
/// # Shutdown
///
/// Dropping the handle (or calling [`Throttled::shutdown`]) stops the worker
/// and waits for it: a run in progress completes, and a pending trigger whose
/// run has not started is **discarded**, so `f` never runs after the drop
/// returns. This mirrors a daemon exiting while its GC cools down; BuildKit
/// runs GC again shortly after the next start. To let the pending run happen
/// first, call [`Throttled::wait_idle`] before dropping.
///
/// # Panics in `f`
///
/// A panic in `f` is caught. The standard panic hook reports it as usual,
/// the hook set with [`Builder::on_panic`] (if any) receives its message,
/// [`Stats::panics`] counts it, and the run counts as ended at the moment of
/// the panic: the trigger keeps working and the cooldown applies as after
/// any other run.
///
/// # Memory ordering
///
/// The fast path does not synchronize with the worker, so a run is only
/// guaranteed to see what the triggering thread wrote before `trigger` if
/// that data is shared through a lock (or other read-modify-write
/// synchronization) that `f` also takes. GC state is always shared this way
/// (BuildKit's cache manager holds its own lock); the loom tests check this
/// guarantee.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use reclaim_throttle::Throttled;
///
/// let runs = Arc::new(AtomicU32::new(0));
/// let counter = runs.clone();
/// let gc = Throttled::after(Duration::from_secs(60), move || {
///     counter.fetch_add(1, Ordering::SeqCst);
/// })?;
/// gc.trigger(); // Runs at once, on the worker thread.
/// gc.wait_until(|stats| stats.runs_finished == 1);
/// gc.trigger(); // Due a minute after the first run ended.
/// gc.trigger(); // Coalesced into that same run.
/// assert_eq!(runs.load(Ordering::SeqCst), 1);
/// let shutdown = gc.shutdown(); // Discards the run still cooling down.
/// assert!(shutdown.discarded_trigger);
/// assert_eq!(shutdown.stats.runs_finished, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Throttled {
    inner: Arc<Inner>,
    clock: std::sync::Arc<dyn Clock>,
    worker: Option<thread::JoinHandle<()>>,
}

/// Configures and spawns a [`Throttled`].
///
/// Setters take and return `&mut Self`; [`Builder::spawn`] can be called
/// more than once.
#[derive(Clone)]
pub struct Builder {
    mode: Mode,
    period: Duration,
    clock: std::sync::Arc<dyn Clock>,
    thread_name: String,
    on_panic: Option<std::sync::Arc<PanicHook>>,
}

/// Counters of a [`Throttled`]'s worker.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Runs of `f` started.
    pub runs_started: u64,
    /// Runs of `f` that returned or panicked.
    pub runs_finished: u64,
    /// Runs of `f` that panicked.
    pub panics: u64,
}

/// What [`Throttled::shutdown`] found when the worker stopped.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub struct Shutdown {
    /// The worker's final counters.
    pub stats: Stats,
    /// True if a trigger was pending and its run was discarded.
    pub discarded_trigger: bool,
}

type PanicHook = dyn Fn(&str) + Send + Sync;

impl Throttled {
    /// Wraps `f` in BuildKit's `throttle.After(period, f)`, on the real
    /// clock, and starts the worker thread.
    ///
    /// # Errors
    ///
    /// The [`io::Error`] from the operating system if the thread cannot be
    /// spawned.
    pub fn after(period: Duration, f: impl FnMut() + Send + 'static) -> io::Result<Self> {
        Builder::new(Mode::After, period).spawn(f)
    }

    /// Wraps `f` in BuildKit's `throttle.Throttle(period, f)`, on the real
    /// clock, and starts the worker thread.
    ///
    /// # Errors
    ///
    /// The [`io::Error`] from the operating system if the thread cannot be
    /// spawned.
    pub fn throttle(period: Duration, f: impl FnMut() + Send + 'static) -> io::Result<Self> {
        Builder::new(Mode::Throttle, period).spawn(f)
    }

    /// Asks for a run of `f`; see [`Schedule`] for when it happens.
    ///
    /// Never blocks on `f`. If a run is already pending this is one atomic
    /// load; otherwise it reads the clock, takes the lock briefly and wakes
    /// the worker.
    #[inline]
    pub fn trigger(&self) {
        // Fast path: a pending run that has not started yet will serve this
        // trigger, because the worker clears the flag before `f` starts.
        if self.inner.pending.load(Ordering::Acquire) {
            return;
        }
        self.trigger_slow();
    }

    /// The worker's counters.
    pub fn stats(&self) -> Stats {
        self.inner.state.lock().stats
    }

    /// Blocks until nothing is pending and no run is in progress.
    ///
    /// Triggers made concurrently with this call may or may not be waited
    /// for. In [`Mode::After`] a pending run waits for the cooldown, so this
    /// can take up to the period plus a run.
    pub fn wait_idle(&self) {
        let mut state = self.inner.state.lock();
        while state.schedule.is_pending() || state.schedule.is_running() {
            state = self.inner.progress.wait(state);
        }
    }

    /// Blocks until `done(stats)` holds, re-checking after every run.
    pub fn wait_until(&self, mut done: impl FnMut(&Stats) -> bool) {
        let mut state = self.inner.state.lock();
        while !done(&state.stats) {
            state = self.inner.progress.wait(state);
        }
    }

    /// Stops the worker after the run in progress, discarding a pending
    /// trigger, and reports what it found.
    pub fn shutdown(mut self) -> Shutdown {
        self.stop()
    }

    #[cold]
    #[inline(never)]
    fn trigger_slow(&self) {
        // Only the thread that flips the flag tells the schedule; the others
        // are served by the same run.
        if self.inner.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.clock.now();
        let mut state = self.inner.state.lock();
        state.schedule.trigger(now);
        state.parked_at = None;
        drop(state);
        self.inner.wake.notify_one();
    }

    fn stop(&mut self) -> Shutdown {
        let Some(worker) = self.worker.take() else {
            return self.inner.shutdown_report();
        };
        self.inner.state.lock().shutdown = true;
        self.inner.wake.notify_one();
        // If `f` itself dropped the last handle, the worker stops when `f`
        // returns; it cannot wait for itself.
        if worker.thread().id() != thread::current().id() {
            // The worker catches panics from `f`, so joining fails only if a
            // panic hook or the clock panicked; the counters are still valid.
            let _ = worker.join();
        }
        self.inner.shutdown_report()
    }
}

impl Drop for Throttled {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("Throttled")
            .field("schedule", &state.schedule)
            .field("stats", &state.stats)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder for `mode` with period `d`, on the real clock
    /// ([`SystemClock`]), with the thread name `reclaim-throttle` and no
    /// panic hook.
    pub fn new(mode: Mode, period: Duration) -> Self {
        Self {
            mode,
            period,
            clock: std::sync::Arc::new(SystemClock::new()),
            thread_name: "reclaim-throttle".to_owned(),
            on_panic: None,
        }
    }

    /// Uses `clock` instead of the real clock (default: [`SystemClock`]).
    ///
    /// With a [`crate::ManualClock`] the worker's time moves only when the
    /// test moves it.
    pub fn clock(&mut self, clock: impl Clock) -> &mut Self {
        self.clock = std::sync::Arc::new(clock);
        self
    }

    /// Names the worker thread (default: `reclaim-throttle`).
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = name.into();
        self
    }

    /// Calls `hook` with the message of every panic caught from `f`, on the
    /// worker thread (default: none; the standard panic hook still reports
    /// the panic).
    pub fn on_panic(&mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> &mut Self {
        self.on_panic = Some(std::sync::Arc::new(hook));
        self
    }

    /// Starts a worker thread that runs `f` on this schedule.
    ///
    /// # Errors
    ///
    /// The [`io::Error`] from the operating system if the thread cannot be
    /// spawned.
    pub fn spawn(&self, f: impl FnMut() + Send + 'static) -> io::Result<Throttled> {
        let inner = Arc::new(Inner {
            pending: AtomicBool::new(false),
            state: Mutex::new(State {
                schedule: Schedule::new(self.mode, self.period),
                shutdown: false,
                parked_at: None,
                stats: Stats::default(),
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
        });
        let waker_inner = inner.clone();
        self.clock
            .subscribe(Waker::new(move || waker_inner.wake_by_clock()));
        let worker = Worker {
            inner: inner.clone(),
            clock: self.clock.clone(),
            on_panic: self.on_panic.clone(),
        };
        let handle = thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || worker.run(f))?;
        Ok(Throttled {
            inner,
            clock: self.clock.clone(),
            worker: Some(handle),
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("mode", &self.mode)
            .field("period", &self.period)
            .field("thread_name", &self.thread_name)
            .field("on_panic", &self.on_panic.is_some())
            .finish_non_exhaustive()
    }
}

/// The state shared by the handle, the worker and the clock's waker.
///
/// Invariant: if the schedule is pending, `pending` is set. `pending` is
/// set before the schedule hears of a trigger (by the one thread that flips
/// it), and both are cleared together, under the lock, when a run starts
/// and before `f` is called.
struct Inner {
    pending: AtomicBool,
    state: Mutex<State>,
    /// Wakes the worker: a trigger, the clock moving, or shutdown.
    wake: Condvar,
    /// Wakes observers: a run ended or the worker parked.
    progress: Condvar,
}

struct State {
    schedule: Schedule,
    shutdown: bool,
    /// The time the worker last looked at before it blocked; `None` while it
    /// is awake or once something has woken it.
    parked_at: Option<Instant>,
    stats: Stats,
}

impl Inner {
    /// Called by a virtual clock when its time moves; `false` once the
    /// driver is shut down, so that the clock forgets it.
    fn wake_by_clock(&self) -> bool {
        let mut state = self.state.lock();
        state.parked_at = None;
        let alive = !state.shutdown;
        drop(state);
        self.wake.notify_one();
        alive
    }

    fn shutdown_report(&self) -> Shutdown {
        let state = self.state.lock();
        Shutdown {
            stats: state.stats,
            discarded_trigger: state.schedule.is_pending(),
        }
    }
}

/// What the worker thread owns.
struct Worker {
    inner: Arc<Inner>,
    clock: std::sync::Arc<dyn Clock>,
    on_panic: Option<std::sync::Arc<PanicHook>>,
}

impl Worker {
    fn run(self, mut f: impl FnMut()) {
        let inner = &*self.inner;
        let mut state = inner.state.lock();
        while !state.shutdown {
            let now = self.clock.now();
            let Some(run) = state.schedule.poll(now) else {
                state = self.park(state, now);
                continue;
            };
            // Clear the fast-path flag while the lock is held and before `f`
            // starts: a trigger that still sees it set is served by this run.
            inner.pending.store(false, Ordering::Release);
            state.stats.runs_started += 1;
            inner.progress.notify_all();
            drop(state);

            let outcome = panic::catch_unwind(AssertUnwindSafe(&mut f));
            let end = self.clock.now();
            if let Err(payload) = &outcome
                && let Some(hook) = &self.on_panic
            {
                hook(panic_message(payload.as_ref()));
            }

            state = inner.state.lock();
            state
                .schedule
                .finish(run, end)
                .expect("the worker hands back the run it started");
            state.stats.runs_finished += 1;
            state.stats.panics += u64::from(outcome.is_err());
            inner.progress.notify_all();
        }
    }

    /// Blocks until a trigger, the clock moving, shutdown, or (on a real
    /// clock) the schedule's deadline.
    fn park<'a>(&self, mut state: MutexGuard<'a, State>, now: Instant) -> MutexGuard<'a, State> {
        state.parked_at = Some(now);
        self.inner.progress.notify_all();
        let limit = state
            .schedule
            .poll_timeout()
            .and_then(|deadline| self.clock.wait_limit(deadline));
        let mut state = match limit {
            Some(limit) => self.inner.wake.wait_for(state, limit).0,
            None => self.inner.wake.wait(state),
        };
        state.parked_at = None;
        state
    }
}

/// The message of a panic payload, as the standard panic hook prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "Box<dyn Any>"
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
