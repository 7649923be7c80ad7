//! Triggers that take effect a fixed delay after they are requested, and
//! BuildKit's GC wiring built from them.

use std::collections::VecDeque;
use std::time::Duration;

use crate::schedule::{FinishError, Run, Schedule};
use crate::time::Instant;

/// How long BuildKit's GC cools down after a run: `throttle.After(time.Minute, gc)`.
pub const BUILDKIT_GC_PERIOD: Duration = Duration::from_secs(60);

/// How long after daemon start and after every build BuildKit triggers its
/// GC: `time.AfterFunc(time.Second, throttledGC)`.
pub const BUILDKIT_GC_DELAY: Duration = Duration::from_secs(1);

/// The cooldown of BuildKit's second throttle, which releases unreferenced
/// cache keys after a GC run that freed something:
/// `throttle.After(5*time.Minute, ...)`.
pub const BUILDKIT_RELEASE_UNREFERENCED_PERIOD: Duration = Duration::from_secs(300);

/// A [`Schedule`] whose triggers take effect a fixed delay after they are
/// requested, as when upstream wraps a throttled function in
/// `time.AfterFunc(delay, throttled)`.
///
/// Each [`DelayedSchedule::request`] arms its own timer (upstream starts one
/// timer per call); when a timer expires it triggers the inner schedule at
/// the timer's instant. Drive it like a [`Schedule`]: [`poll_timeout`]
/// covers both the timers and the inner deadline, and [`poll`] fires expired
/// timers before it asks the inner schedule for a run, so a timer and a due
/// run at one instant follow the "triggers first" rule of [`crate::replay`].
///
/// [`poll_timeout`]: DelayedSchedule::poll_timeout
/// [`poll`]: DelayedSchedule::poll
///
/// # Example: BuildKit's GC
///
/// ```
/// use std::time::Duration;
/// use reclaim_throttle::{DelayedSchedule, Instant};
///
/// let s = Instant::from_secs;
/// // The daemon starts at t = 0: GC is requested for t = 1 s.
/// let mut gc = DelayedSchedule::buildkit_gc(s(0));
/// assert_eq!(gc.poll_timeout(), Some(s(1)));
/// let run = gc.poll(s(1)).expect("GC runs 1 s after start");
/// gc.finish(run, s(3))?;
/// // A build ends at t = 10 s; its GC request waits for the one-minute
/// // cooldown after the first run, which ended at t = 3 s.
/// gc.request(s(10));
/// assert_eq!(gc.poll_timeout(), Some(s(11)));
/// assert!(gc.poll(s(11)).is_none());
/// assert_eq!(gc.poll_timeout(), Some(s(63)));
/// assert!(gc.poll(s(63)).is_some());
/// # Ok::<(), reclaim_throttle::FinishError>(())
/// ```
#[derive(Clone, Debug)]
pub struct DelayedSchedule {
    schedule: Schedule,
    delay: Duration,
    /// Armed timers, earliest first.
    timers: VecDeque<Instant>,
}

impl DelayedSchedule {
    /// Wraps `schedule`, delaying every request by `delay`.
    pub const fn new(schedule: Schedule, delay: Duration) -> Self {
        Self {
            schedule,
            delay,
            timers: VecDeque::new(),
        }
    }

    /// BuildKit's GC trigger for a controller created at `start`:
    /// `throttle.After(1 minute)` behind 1-second timers, with the first
    /// timer already armed (GC runs one second after the daemon starts).
    ///
    /// Call [`DelayedSchedule::request`] when every build (Solve) returns,
    /// successful or not. Nothing else triggers BuildKit's GC: there is no
    /// periodic timer, so with no builds GC never runs again.
    pub fn buildkit_gc(start: Instant) -> Self {
        let mut gc = Self::new(Schedule::after(BUILDKIT_GC_PERIOD), BUILDKIT_GC_DELAY);
        gc.request(start);
        gc
    }

    /// The wrapped schedule.
    pub const fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The delay between a request and its trigger.
    pub const fn delay(&self) -> Duration {
        self.delay
    }

    /// How many timers are armed and not yet expired.
    pub fn armed(&self) -> usize {
        self.timers.len()
    }

    /// Arms a timer that triggers the schedule at `now + delay`.
    ///
    /// Two timers expiring at one instant act as one trigger, so they are
    /// stored once.
    pub fn request(&mut self, now: Instant) {
        let at = now + self.delay;
        let index = self.timers.partition_point(|t| *t < at);
        if self.timers.get(index) != Some(&at) {
            self.timers.insert(index, at);
        }
    }

    /// The earliest instant at which [`DelayedSchedule::poll`] has work: a
    /// timer expiring or the inner schedule's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.front(), self.schedule.poll_timeout()) {
            (Some(timer), Some(due)) => Some((*timer).min(due)),
            (timer, due) => timer.copied().or(due),
        }
    }

    /// Fires the timers that have expired by `now` (each at its own instant)
    /// and then starts the pending run if it is due.
    pub fn poll(&mut self, now: Instant) -> Option<Run> {
        while let Some(at) = self.timers.front().copied() {
            if at > now {
                break;
            }
            // A run that became due before this timer expired starts first,
            // so that a late poll sees the same history as a punctual one.
            if self.schedule.poll_timeout().is_some_and(|due| due < at) {
                return self.schedule.poll(now);
            }
            self.timers.pop_front();
            self.schedule.trigger(at);
        }
        self.schedule.poll(now)
    }

    /// Records that `run` ended at `now`; see [`Schedule::finish`].
    ///
    /// # Errors
    ///
    /// [`FinishError::UnknownRun`] if `run` is not the run in progress.
    pub fn finish(&mut self, run: Run, now: Instant) -> Result<(), FinishError> {
        self.schedule.finish(run, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Instant {
        Instant::from_secs(n)
    }

    /// Drives `gc` punctually: builds end at `builds`, each GC run takes
    /// `run` and the timeline ends at `until`. Returns the GC start times.
    fn drive(
        mut gc: DelayedSchedule,
        builds: &[Instant],
        run: Duration,
        until: Instant,
    ) -> Vec<Instant> {
        let mut starts = Vec::new();
        let mut builds = builds.iter().copied().peekable();
        let mut running: Option<(Run, Instant)> = None;
        loop {
            let next = [
                builds.peek().copied(),
                running.as_ref().map(|(_, end)| *end),
                if running.is_none() {
                    gc.poll_timeout()
                } else {
                    None
                },
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(now) = next.filter(|t| *t <= until) else {
                return starts;
            };
            while builds.next_if(|b| *b <= now).is_some() {
                gc.request(now);
            }
            if let Some((r, end)) = running.take_if(|(_, end)| *end <= now) {
                gc.finish(r, end).unwrap();
            }
            if running.is_none()
                && let Some(r) = gc.poll(now)
            {
                starts.push(r.started());
                running = Some((r, now + run));
            }
        }
    }

    #[test]
    fn buildkit_gc_runs_once_after_start_and_never_while_idle() {
        let starts = drive(
            DelayedSchedule::buildkit_gc(s(0)),
            &[],
            Duration::from_secs(2),
            s(3600),
        );
        assert_eq!(starts, [s(1)]);
    }

    #[test]
    fn buildkit_gc_after_builds_is_spaced_a_minute_after_the_previous_run() {
        // Builds at 5 s and 30 s fall in the cooldown of the first run
        // (1 s to 3 s): one run at 63 s. A build at 200 s (idle again) runs
        // GC at 201 s. Builds at 202 s and 210 s (during and after that run)
        // give one run when the cooldown after it ends, at 203 + 60 = 263 s.
        let builds = [s(5), s(30), s(200), s(202), s(210)];
        let starts = drive(
            DelayedSchedule::buildkit_gc(s(0)),
            &builds,
            Duration::from_secs(2),
            s(3600),
        );
        assert_eq!(starts, [s(1), s(63), s(201), s(263)]);
    }

    #[test]
    fn timers_at_one_instant_are_stored_once_and_sorted() {
        let mut gc = DelayedSchedule::new(Schedule::after(Duration::ZERO), Duration::from_secs(1));
        gc.request(s(5));
        gc.request(s(2));
        gc.request(s(5));
        assert_eq!(gc.armed(), 2);
        assert_eq!(gc.poll_timeout(), Some(s(3)));
        assert_eq!(gc.delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_late_poll_starts_the_due_run_before_firing_later_timers() {
        // Run 1 at 1 s ends at 2 s. A request at 1.5 s arms a timer for
        // 2.5 s, inside the cooldown (until 62 s), so a run is due at 62 s.
        // A request at 69 s arms a timer for 70 s. Polling late at 100 s
        // starts the run that was due at 62 s first; the timer at 70 s then
        // fires during that run and asks for one more.
        let mut gc = DelayedSchedule::buildkit_gc(s(0));
        let run = gc.poll(s(1)).unwrap();
        gc.request(Instant::from_millis(1500));
        gc.finish(run, s(2)).unwrap();
        assert_eq!(gc.poll_timeout(), Some(Instant::from_millis(2500)));
        assert!(gc.poll(Instant::from_millis(2500)).is_none());
        assert_eq!(gc.poll_timeout(), Some(s(62)));
        gc.request(s(69));
        let run = gc.poll(s(100)).unwrap();
        assert_eq!((run.due(), run.started()), (s(62), s(100)));
        assert_eq!(gc.armed(), 1, "the later timer is still armed");
        assert!(gc.poll(s(100)).is_none());
        assert_eq!(gc.armed(), 0);
        assert!(gc.schedule().is_pending());
        gc.finish(run, s(101)).unwrap();
        assert_eq!(gc.poll_timeout(), Some(s(161)));
        assert_eq!(gc.schedule().runs_started(), 2);
    }
}
