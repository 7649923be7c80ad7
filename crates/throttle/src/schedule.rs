//! The sans-IO core: a state machine that says when `f` runs next.

use std::time::Duration;

use crate::time::Instant;

/// Which of BuildKit's two throttles a [`Schedule`] reproduces.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Mode {
    /// `throttle.After(d, f)`, the one BuildKit's GC uses: the first trigger
    /// runs `f` at once, and after every run the schedule cools down for `d`
    /// before the next run may start.
    After,
    /// `throttle.Throttle(d, f)`: the first trigger runs `f` `d` later
    /// (trailing edge), and a trigger during a run causes another run `d`
    /// after that run ends.
    Throttle,
}

/// The state machine behind BuildKit's `throttle.After` and
/// `throttle.Throttle`: told about triggers, the time and the end of runs, it
/// says when the wrapped function `f` should run next.
///
/// It is fully deterministic and never reads a clock: every call takes the
/// time as an argument, in the style of quinn-proto's
/// `poll_timeout`/`handle_timeout` pair. A driver loops:
///
/// 1. call [`Schedule::trigger`] whenever something asks for a run;
/// 2. call [`Schedule::poll`] with the current time; if it returns a
///    [`Run`], run `f` and then hand the run back to [`Schedule::finish`]
///    with the time it ended;
/// 3. otherwise sleep until [`Schedule::poll_timeout`] (or forever if it is
///    `None`) or until the next trigger, and go to 2.
///
/// # Semantics (identical to upstream)
///
/// * Triggers coalesce: a trigger while a run is already pending changes
///   nothing.
/// * Runs never overlap: at most one [`Run`] is outstanding.
/// * [`Mode::After`]: a trigger while idle makes a run due at once. Triggers
///   during a run or during the following cooldown of `d` collapse into
///   exactly one more run, due when the cooldown ends (`d` after the previous
///   run ended). A trigger after the cooldown has passed runs at once again.
/// * [`Mode::Throttle`]: a trigger while idle makes a run due `d` later;
///   triggers before that run starts coalesce into it. A trigger during a run
///   makes exactly one more run due `d` after the run ends.
/// * Every trigger is served by a run that starts at or after the trigger.
///
/// # Time
///
/// The schedule keeps the latest instant it has been given and treats an
/// earlier `now` as that instant: drivers read the clock on several threads,
/// so their readings can reach the schedule slightly out of order.
///
/// # Equal instants
///
/// Calls take effect in the order they are made. When a trigger and a due
/// run share an instant, calling [`Schedule::trigger`] before
/// [`Schedule::poll`] coalesces the trigger into that run, while the reverse
/// order makes the trigger arrive during the run and causes one more run.
/// [`crate::replay`] and the documented timelines use the first order: a run
/// that starts at `t` serves every trigger at or before `t`.
#[derive(Clone, Debug)]
pub struct Schedule {
    mode: Mode,
    period: Duration,
    latest: Instant,
    pending: bool,
    /// When the pending run may start; `Some` only while pending and idle.
    due: Option<Instant>,
    /// The end of the last run plus the period ([`Mode::After`] only).
    cooldown_until: Instant,
    running: Option<u64>,
    started: u64,
}

/// A run of `f` that [`Schedule::poll`] has started, to be handed back to
/// [`Schedule::finish`] when `f` returns.
#[derive(Debug, Eq, PartialEq)]
#[must_use = "a started run must be handed back to Schedule::finish"]
pub struct Run {
    seq: u64,
    due: Instant,
    started: Instant,
}

/// Why [`Schedule::finish`] refused a [`Run`].
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FinishError {
    /// The run is not the one in progress: it came from another schedule.
    /// Hand each run back to the schedule whose `poll` returned it.
    #[error("run = {run} is not the run in progress (in progress: {in_progress:?})")]
    UnknownRun {
        /// The sequence number of the run that was handed back.
        run: u64,
        /// The sequence number of the run in progress, if any.
        in_progress: Option<u64>,
    },
}

impl Schedule {
    /// An idle schedule in `mode` with period `d`.
    ///
    /// `d` may be zero: runs are then never delayed, but they still never
    /// overlap and triggers during a run still collapse into one more run.
    pub const fn new(mode: Mode, period: Duration) -> Self {
        Self {
            mode,
            period,
            latest: Instant::ZERO,
            pending: false,
            due: None,
            cooldown_until: Instant::ZERO,
            running: None,
            started: 0,
        }
    }

    /// An idle schedule with BuildKit's `throttle.After(d, f)` semantics.
    pub const fn after(period: Duration) -> Self {
        Self::new(Mode::After, period)
    }

    /// An idle schedule with BuildKit's `throttle.Throttle(d, f)` semantics.
    pub const fn throttle(period: Duration) -> Self {
        Self::new(Mode::Throttle, period)
    }

    /// The mode this schedule was created with.
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    /// The period `d` this schedule was created with.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// True while a trigger is waiting for a run that has not started yet.
    pub const fn is_pending(&self) -> bool {
        self.pending
    }

    /// True between [`Schedule::poll`] returning a run and
    /// [`Schedule::finish`] taking it back.
    pub const fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// How many runs [`Schedule::poll`] has started.
    pub const fn runs_started(&self) -> u64 {
        self.started
    }

    /// Records a request to run `f` at `now`.
    ///
    /// Changes the deadline ([`Schedule::poll_timeout`]) only when nothing
    /// was pending before: it becomes `now` ([`Mode::After`], or the end of
    /// the cooldown if that is later) or `now + d` ([`Mode::Throttle`]), or,
    /// if a run is in progress, it is set when that run finishes.
    pub fn trigger(&mut self, now: Instant) {
        let now = self.observe(now);
        if self.pending {
            return;
        }
        self.pending = true;
        if self.running.is_none() {
            self.due = Some(match self.mode {
                Mode::After => self.cooldown_until.max(now),
                Mode::Throttle => now + self.period,
            });
        }
    }

    /// When the next run is due, if one is pending and none is in progress.
    ///
    /// The deadline changes only through [`Schedule::trigger`] (when nothing
    /// was pending), [`Schedule::poll`] (when it starts a run) and
    /// [`Schedule::finish`] (when triggers arrived during the run). A
    /// deadline at or before the current time means "due now".
    pub const fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// Starts the pending run if it is due at `now`.
    ///
    /// Returns `None` when nothing is pending, a run is in progress, or the
    /// pending run is due later (see [`Schedule::poll_timeout`]). Starting a
    /// run clears the pending trigger: triggers from now on ask for the next
    /// run.
    pub fn poll(&mut self, now: Instant) -> Option<Run> {
        let now = self.observe(now);
        let due = self.due.filter(|due| *due <= now)?;
        self.due = None;
        self.pending = false;
        self.started += 1;
        self.running = Some(self.started);
        Some(Run {
            seq: self.started,
            due,
            started: now,
        })
    }

    /// Records that `run` ended at `now`.
    ///
    /// If triggers arrived during the run, the next run becomes due `d`
    /// after `now`. In [`Mode::After`] the cooldown also applies to triggers
    /// that arrive later, until `now + d`.
    ///
    /// # Errors
    ///
    /// [`FinishError::UnknownRun`] if `run` is not the run in progress; the
    /// schedule is then unchanged.
    pub fn finish(&mut self, run: Run, now: Instant) -> Result<(), FinishError> {
        if self.running != Some(run.seq) {
            return Err(FinishError::UnknownRun {
                run: run.seq,
                in_progress: self.running,
            });
        }
        let now = self.observe(now);
        self.running = None;
        let next = now + self.period;
        if self.mode == Mode::After {
            self.cooldown_until = next;
        }
        if self.pending {
            self.due = Some(next);
        }
        Ok(())
    }

    /// Advances the schedule's idea of the present and returns it.
    fn observe(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }
}

impl Run {
    /// The run's sequence number: 1 for the first run of a schedule, then
    /// 2, 3, and so on.
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// When the run became due (at or before [`Run::started`]).
    pub const fn due(&self) -> Instant {
        self.due
    }

    /// When [`Schedule::poll`] started the run.
    pub const fn started(&self) -> Instant {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn after_runs_at_once_then_cools_down() {
        let mut s = Schedule::after(D);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll(ms(4)).is_none(), "nothing runs without a trigger");
        s.trigger(ms(5));
        assert_eq!(s.poll_timeout(), Some(ms(5)));
        let run = s.poll(ms(5)).unwrap();
        assert_eq!((run.seq(), run.due(), run.started()), (1, ms(5), ms(5)));
        assert!(!s.is_pending() && s.is_running());
        s.trigger(ms(10));
        s.trigger(ms(11));
        assert_eq!(s.poll_timeout(), None, "no deadline while running");
        assert!(s.poll(ms(12)).is_none(), "runs never overlap");
        s.finish(run, ms(30)).unwrap();
        assert_eq!(s.poll_timeout(), Some(ms(130)));
        assert!(s.poll(ms(129)).is_none());
        let run = s.poll(ms(131)).unwrap();
        assert_eq!((run.seq(), run.due(), run.started()), (2, ms(130), ms(131)));
        s.finish(run, ms(131)).unwrap();
        assert_eq!(s.poll_timeout(), None, "nothing pending after the run");
        s.trigger(ms(200));
        assert_eq!(
            s.poll_timeout(),
            Some(ms(231)),
            "a trigger in the cooldown waits for its end"
        );
        let run = s.poll(ms(231)).unwrap();
        s.finish(run, ms(231)).unwrap();
        s.trigger(ms(400));
        assert_eq!(
            s.poll_timeout(),
            Some(ms(400)),
            "after the cooldown, at once again"
        );
        assert_eq!(s.runs_started(), 3);
    }

    #[test]
    fn throttle_runs_on_the_trailing_edge() {
        let mut s = Schedule::throttle(D);
        s.trigger(ms(0));
        assert_eq!(s.poll_timeout(), Some(ms(100)));
        s.trigger(ms(50));
        assert_eq!(
            s.poll_timeout(),
            Some(ms(100)),
            "coalesced into the due run"
        );
        let run = s.poll(ms(100)).unwrap();
        s.finish(run, ms(120)).unwrap();
        assert_eq!(s.poll_timeout(), None, "no cooldown without a trigger");
        s.trigger(ms(125));
        assert_eq!(s.poll_timeout(), Some(ms(225)));
        let run = s.poll(ms(225)).unwrap();
        s.trigger(ms(230));
        s.finish(run, ms(240)).unwrap();
        assert_eq!(s.poll_timeout(), Some(ms(340)));
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut s = Schedule::throttle(D);
        s.trigger(ms(50));
        let run = s.poll(ms(150)).unwrap();
        // A late reading from another thread counts as the latest time seen.
        s.trigger(ms(10));
        s.finish(run, ms(20)).unwrap();
        assert_eq!(s.poll_timeout(), Some(ms(250)));
    }

    #[test]
    fn finish_refuses_a_foreign_run() {
        let mut a = Schedule::after(D);
        let mut b = Schedule::after(D);
        a.trigger(ms(0));
        b.trigger(ms(0));
        let ra = a.poll(ms(0)).unwrap();
        let rb = b.poll(ms(0)).unwrap();
        a.finish(ra, ms(1)).unwrap();
        let foreign = Run {
            seq: 7,
            due: ms(0),
            started: ms(0),
        };
        let err = b.finish(foreign, ms(1)).unwrap_err();
        assert_eq!(
            err,
            FinishError::UnknownRun {
                run: 7,
                in_progress: Some(1)
            }
        );
        assert_eq!(
            err.to_string(),
            "run = 7 is not the run in progress (in progress: Some(1))"
        );
        assert!(b.is_running(), "a refused finish leaves the schedule alone");
        b.finish(rb, ms(1)).unwrap();
    }
}
