//! The tokio driver (feature `tokio`): a [`Schedule`] run by a tokio task,
//! with an async `f`.
//!
//! It behaves like the thread driver ([`crate::Throttled`]): the same
//! lock-free fast path, the same shutdown and panic rules. Time comes from
//! tokio's clock (`tokio::time::Instant`), so tests can pause and advance it
//! with tokio's `test-util` feature (`#[tokio::test(start_paused = true)]`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::sync::Notify;
use ::tokio::task::JoinHandle;
use parking_lot::Mutex;

use crate::schedule::{Mode, Schedule};
use crate::thread::{Shutdown, Stats};
use crate::time::Instant;

/// An async function wrapped in BuildKit's `throttle.After` or
/// `throttle.Throttle`, run by a tokio task.
///
/// [`Throttled::trigger`] is a plain (non-async) method that never waits:
/// one atomic load when a run is already pending, otherwise a short lock
/// and a wake-up of the task.
///
/// Dropping the handle stops the task after the run in progress and
/// discards a pending trigger, without waiting; [`Throttled::shutdown`]
/// does the same and waits for the task to end. A panic in `f` (or in the
/// future it returns) is caught, passed to the [`Builder::on_panic`] hook,
/// counted in [`Stats::panics`], and does not stop the trigger.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use reclaim_throttle::tokio::Throttled;
///
/// let gc = Throttled::after(Duration::from_secs(60), || async {
///     // Collect garbage here.
/// });
/// gc.trigger();
/// gc.wait_until(|stats| stats.runs_finished == 1).await;
/// assert_eq!(gc.shutdown().await.stats.runs_started, 1);
/// # }
/// ```
pub struct Throttled {
    inner: Arc<Inner>,
    task: Option<JoinHandle<()>>,
}

/// Configures and spawns a tokio [`Throttled`].
///
/// Setters take and return `&mut Self`.
#[derive(Clone)]
pub struct Builder {
    mode: Mode,
    period: Duration,
    on_panic: Option<Arc<PanicHook>>,
}

type PanicHook = dyn Fn(&str) + Send + Sync;

impl Throttled {
    /// Wraps `f` in `throttle.After(period, f)` and spawns its task on the
    /// current tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn after<F, Fut>(period: Duration, f: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Builder::new(Mode::After, period).spawn(f)
    }

    /// Wraps `f` in `throttle.Throttle(period, f)` and spawns its task on
    /// the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn throttle<F, Fut>(period: Duration, f: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Builder::new(Mode::Throttle, period).spawn(f)
    }

    /// Asks for a run of `f`; see [`Schedule`] for when it happens.
    #[inline]
    pub fn trigger(&self) {
        if self.inner.pending.load(Ordering::Acquire) {
            return;
        }
        self.trigger_slow();
    }

    /// The task's counters.
    pub fn stats(&self) -> Stats {
        self.inner.state.lock().stats
    }

    /// Waits until nothing is pending and no run is in progress.
    pub async fn wait_idle(&self) {
        self.wait_for(|state| !state.schedule.is_pending() && !state.schedule.is_running())
            .await;
    }

    /// Waits until `done(stats)` holds, re-checking after every run.
    pub async fn wait_until(&self, mut done: impl FnMut(&Stats) -> bool) {
        self.wait_for(|state| done(&state.stats)).await;
    }

    /// Stops the task after the run in progress, discarding a pending
    /// trigger, waits for it to end, and reports what it found.
    pub async fn shutdown(mut self) -> Shutdown {
        self.inner.stop();
        if let Some(task) = self.task.take() {
            // The task catches panics from `f`; it fails only if the panic
            // hook panicked or the runtime is shutting down.
            let _ = task.await;
        }
        self.inner.report()
    }

    #[cold]
    #[inline(never)]
    fn trigger_slow(&self) {
        if self.inner.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.inner.now();
        self.inner.state.lock().schedule.trigger(now);
        self.inner.wake.notify_one();
    }

    async fn wait_for(&self, mut done: impl FnMut(&State) -> bool) {
        loop {
            let notified = self.inner.progress.notified();
            let mut notified = std::pin::pin!(notified);
            // Register for the next notification before looking, so that a
            // run ending in between is not missed.
            notified.as_mut().enable();
            if done(&self.inner.state.lock()) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Throttled {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.inner.stop();
        }
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
    /// A builder for `mode` with period `d` and no panic hook.
    pub fn new(mode: Mode, period: Duration) -> Self {
        Self {
            mode,
            period,
            on_panic: None,
        }
    }

    /// Calls `hook` with the message of every panic caught from `f`
    /// (default: none; the standard panic hook still reports the panic).
    pub fn on_panic(&mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> &mut Self {
        self.on_panic = Some(Arc::new(hook));
        self
    }

    /// Spawns the task that runs `f` on this schedule, on the current tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn spawn<F, Fut>(&self, f: F) -> Throttled
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let inner = Arc::new(Inner {
            pending: AtomicBool::new(false),
            state: Mutex::new(State {
                schedule: Schedule::new(self.mode, self.period),
                shutdown: false,
                stats: Stats::default(),
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            origin: ::tokio::time::Instant::now(),
        });
        let task = ::tokio::spawn(work(inner.clone(), f, self.on_panic.clone()));
        Throttled {
            inner,
            task: Some(task),
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("mode", &self.mode)
            .field("period", &self.period)
            .field("on_panic", &self.on_panic.is_some())
            .finish()
    }
}

/// The state shared by the handle and the task; the same invariant as the
/// thread driver's: the flag is set whenever the schedule is pending.
struct Inner {
    pending: AtomicBool,
    state: Mutex<State>,
    /// Wakes the task: a trigger or shutdown.
    wake: Notify,
    /// Wakes waiters: a run started or ended.
    progress: Notify,
    /// The tokio instant that is [`Instant::ZERO`] for the schedule.
    origin: ::tokio::time::Instant,
}

struct State {
    schedule: Schedule,
    shutdown: bool,
    stats: Stats,
}

impl Inner {
    fn now(&self) -> Instant {
        Instant::ZERO + ::tokio::time::Instant::now().saturating_duration_since(self.origin)
    }

    fn stop(&self) {
        self.state.lock().shutdown = true;
        self.wake.notify_one();
    }

    fn report(&self) -> Shutdown {
        let state = self.state.lock();
        Shutdown {
            stats: state.stats,
            discarded_trigger: state.schedule.is_pending(),
        }
    }
}

async fn work<F, Fut>(inner: Arc<Inner>, mut f: F, on_panic: Option<Arc<PanicHook>>)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (run, deadline) = {
            let mut state = inner.state.lock();
            if state.shutdown {
                return;
            }
            let run = state.schedule.poll(inner.now());
            if run.is_some() {
                // Cleared before `f` starts: see the thread driver.
                inner.pending.store(false, Ordering::Release);
                state.stats.runs_started += 1;
            }
            (run, state.schedule.poll_timeout())
        };
        let Some(run) = run else {
            // A trigger between the check above and this wait leaves a
            // permit in `wake`, so it is not lost.
            match deadline {
                Some(deadline) => {
                    let at = inner.origin + deadline.saturating_duration_since(Instant::ZERO);
                    ::tokio::select! {
                        () = inner.wake.notified() => {}
                        () = ::tokio::time::sleep_until(at) => {}
                    }
                }
                None => inner.wake.notified().await,
            }
            continue;
        };
        inner.progress.notify_waiters();

        let outcome = match panic::catch_unwind(AssertUnwindSafe(&mut f)) {
            Ok(future) => CatchUnwind(Box::pin(future)).await,
            Err(payload) => Err(payload),
        };
        if let Err(payload) = &outcome
            && let Some(hook) = &on_panic
        {
            hook(panic_message(payload.as_ref()));
        }

        let end = inner.now();
        let mut state = inner.state.lock();
        state
            .schedule
            .finish(run, end)
            .expect("the task hands back the run it started");
        state.stats.runs_finished += 1;
        state.stats.panics += u64::from(outcome.is_err());
        drop(state);
        inner.progress.notify_waiters();
    }
}

/// Polls a future, turning a panic into an error.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.0.as_mut();
        match panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    crate::thread::panic_message(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::replay;

    /// Plays triggers (ms) with runs of `run` ms on tokio's paused clock and
    /// returns the run start times in ms.
    async fn drive(mode: Mode, period: u64, triggers: &[u64], run: u64) -> Vec<u64> {
        let origin = ::tokio::time::Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let throttled = {
            let starts = starts.clone();
            Builder::new(mode, Duration::from_millis(period)).spawn(move || {
                let starts = starts.clone();
                async move {
                    let at = ::tokio::time::Instant::now().saturating_duration_since(origin);
                    starts.lock().push(u64::try_from(at.as_millis()).unwrap());
                    ::tokio::time::sleep(Duration::from_millis(run)).await;
                }
            })
        };
        for t in triggers {
            ::tokio::time::sleep_until(origin + Duration::from_millis(*t)).await;
            throttled.trigger();
        }
        throttled.wait_idle().await;
        let shutdown = throttled.shutdown().await;
        assert!(!shutdown.discarded_trigger);
        let starts = starts.lock().clone();
        assert_eq!(shutdown.stats.runs_finished, starts.len() as u64);
        starts
    }

    fn expected(mode: Mode, period: u64, triggers: &[u64], run: u64) -> Vec<u64> {
        let triggers: Vec<Instant> = triggers.iter().map(|t| Instant::from_millis(*t)).collect();
        replay(
            Schedule::new(mode, Duration::from_millis(period)),
            &triggers,
            |_| Duration::from_millis(run),
        )
        .iter()
        .map(|span| span.start.as_millis())
        .collect()
    }

    #[::tokio::test(start_paused = true)]
    async fn tokio_driver_follows_the_schedule_on_paused_time() {
        // No trigger shares an instant with a due run: there the order is
        // a race in any real driver.
        let cases: &[(Mode, u64, &[u64], u64)] = &[
            (Mode::After, 100, &[0, 10, 20, 250, 301], 30),
            (Mode::After, 0, &[0, 5, 7, 40], 10),
            (Mode::Throttle, 50, &[0, 10, 52, 200], 5),
            (Mode::Throttle, 10, &[3, 20, 30], 40),
        ];
        for (mode, period, triggers, run) in cases {
            let want = expected(*mode, *period, triggers, *run);
            assert!(want.len() >= 2);
            assert_eq!(
                drive(*mode, *period, triggers, *run).await,
                want,
                "{mode:?} d={period} {triggers:?}"
            );
        }
    }

    #[::tokio::test(start_paused = true)]
    async fn tokio_driver_catches_panics_and_keeps_going() {
        let reported = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = reported.clone();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = calls.clone();
        let throttled = Builder::new(Mode::After, Duration::from_millis(10))
            .on_panic(move |message| sink.lock().push(message.to_owned()))
            .spawn(move || {
                let call = counter.fetch_add(1, Ordering::SeqCst);
                if call == 1 {
                    panic!("building the future failed");
                }
                async move {
                    ::tokio::time::sleep(Duration::from_millis(1)).await;
                    if call == 0 {
                        panic!("gc failed on call {call}");
                    }
                }
            });
        for expected in 1..=3 {
            throttled.trigger();
            throttled
                .wait_until(|stats| stats.runs_finished == expected)
                .await;
        }
        let shutdown = throttled.shutdown().await;
        assert_eq!(shutdown.stats.panics, 2);
        assert_eq!(shutdown.stats.runs_finished, 3);
        assert_eq!(
            *reported.lock(),
            ["gc failed on call 0", "building the future failed"]
        );
    }

    #[::tokio::test(start_paused = true)]
    async fn tokio_shutdown_finishes_the_run_and_discards_the_pending_trigger() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let throttled = Throttled::after(Duration::from_secs(60), move || {
            let flag = flag.clone();
            async move {
                ::tokio::time::sleep(Duration::from_secs(5)).await;
                flag.store(true, Ordering::SeqCst);
            }
        });
        throttled.trigger();
        throttled.wait_until(|stats| stats.runs_started == 1).await;
        throttled.trigger();
        assert!(format!("{throttled:?}").contains("runs_started: 1"));
        let shutdown = throttled.shutdown().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "shutdown returned before the run ended"
        );
        assert!(shutdown.discarded_trigger);
        assert_eq!(shutdown.stats.runs_finished, 1);
    }

    #[::tokio::test(start_paused = true)]
    async fn tokio_drop_stops_the_task() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = runs.clone();
        let throttled = Throttled::after(Duration::from_secs(1), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        throttled.trigger();
        throttled.wait_until(|stats| stats.runs_finished == 1).await;
        throttled.trigger();
        drop(throttled);
        ::tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "a run happened after the drop"
        );

        // The trailing-edge variant runs d after the trigger.
        let start = ::tokio::time::Instant::now();
        let trailing = Throttled::throttle(Duration::from_secs(3), || async {});
        trailing.trigger();
        trailing.wait_until(|stats| stats.runs_finished == 1).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
