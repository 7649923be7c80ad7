//! When collectors run: sans-IO schedulers driven by the caller's clock.
//!
//! Every trigger is a small state machine in the style of quinn-proto's
//! `poll_timeout` / `handle_timeout`: it never reads a clock and never
//! sleeps. A driver (the simulator on virtual time, an agent on real time)
//! loops:
//!
//! 1. feed the trigger what it watches ([`BuildKitTrigger::request`] after
//!    a build, [`WatermarkTrigger::observe`] with fresh disk statistics);
//! 2. call [`Trigger::poll`] with the current [`Instant`]; if it returns a
//!    [`Fire`], run the collector, then hand the fire back to
//!    [`Trigger::finish`] with the time the run ended;
//! 3. otherwise sleep until [`Trigger::poll_timeout`] (or until the next
//!    input, if it is `None`) and go to 2.
//!
//! Runs of one trigger never overlap: while a fire is outstanding, `poll`
//! returns `None` and `poll_timeout` is `None`.

use std::time::Duration;

use reclaim_model::DiskStats;
use reclaim_throttle::{DelayedSchedule, Run};

use crate::clock::Instant;

/// The kubelet's container GC period (`ContainerGCPeriod`).
pub const KUBELET_CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);

/// The kubelet's image GC period (`ImageGCPeriod`).
pub const KUBELET_IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);

/// A scheduler that says when its collector runs.
pub trait Trigger {
    /// When [`Trigger::poll`] next has work, if anything is scheduled and
    /// no fire is outstanding. A deadline at or before now means "due now".
    fn poll_timeout(&self) -> Option<Instant>;

    /// Starts a run if one is due at `now`.
    fn poll(&mut self, now: Instant) -> Option<Fire>;

    /// Records that the run started by `fire` ended at `now`.
    ///
    /// # Errors
    ///
    /// [`TriggerError::UnknownFire`] if `fire` is not the outstanding fire
    /// of this trigger; the trigger is then unchanged.
    fn finish(&mut self, fire: Fire, now: Instant) -> Result<(), TriggerError>;
}

/// A run a trigger started, to be handed back to [`Trigger::finish`].
#[must_use = "hand the fire back to Trigger::finish when the run ends"]
#[derive(Debug, Eq, PartialEq)]
pub struct Fire {
    seq: u64,
    due: Instant,
    started: Instant,
}

impl Fire {
    /// The run's sequence number: 1 for a trigger's first run, then 2, 3…
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// When the run became due (at or before [`Fire::started`]).
    pub const fn due(&self) -> Instant {
        self.due
    }

    /// When [`Trigger::poll`] started it.
    pub const fn started(&self) -> Instant {
        self.started
    }
}

/// A trigger misused by its driver.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A [`WatermarkTrigger`] was given a low watermark above its high one.
    #[error(
        "watermarks: low ({low} bytes free) must not be above high ({high} bytes free); \
         the trigger fires below low and re-arms above high"
    )]
    LowAboveHigh {
        /// The low watermark.
        low: u64,
        /// The high watermark.
        high: u64,
    },
    /// A percentage outside 0..=100.
    #[error("watermarks: {field} is {value}%, which is not in 0..=100")]
    PercentOutOfRange {
        /// `low_percent` or `high_percent`.
        field: &'static str,
        /// The value given.
        value: u8,
    },
    /// [`Trigger::finish`] got a fire that is not the trigger's outstanding
    /// one (it came from another trigger, or was finished already). Hand
    /// each fire back to the trigger whose `poll` returned it, once.
    #[error("finish: fire #{seq} is not the outstanding run of this trigger")]
    UnknownFire {
        /// The fire's sequence number.
        seq: u64,
    },
}

/// BuildKit's GC trigger: `throttle.After(1 minute, gc)` behind one-second
/// timers, armed once when the daemon starts and once after every build.
///
/// Exactly upstream's wiring (see `reclaim_throttle` for the throttle
/// itself): the first run comes 1 s after [`BuildKitTrigger::new`]; each
/// [`BuildKitTrigger::request`] (call it when a build returns, successful or
/// not) asks for a run 1 s later; requests during a run or the minute
/// after it collapse into one run, a minute after the previous run ended.
/// There is no periodic run: with no builds, GC runs once after start and
/// never again.
#[derive(Debug)]
pub struct BuildKitTrigger {
    schedule: DelayedSchedule,
    outstanding: Option<Run>,
}

impl BuildKitTrigger {
    /// The trigger of a daemon that started at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            schedule: DelayedSchedule::buildkit_gc(start),
            outstanding: None,
        }
    }

    /// A trigger with another cooldown and delay (the same state machine).
    pub fn with_timing(start: Instant, period: Duration, delay: Duration) -> Self {
        let mut schedule = DelayedSchedule::new(reclaim_throttle::Schedule::after(period), delay);
        schedule.request(start);
        Self {
            schedule,
            outstanding: None,
        }
    }

    /// A build returned at `now`: ask for a run one delay later.
    pub fn request(&mut self, now: Instant) {
        self.schedule.request(now);
    }

    /// How many runs have started.
    pub fn runs_started(&self) -> u64 {
        self.schedule.schedule().runs_started()
    }
}

impl Trigger for BuildKitTrigger {
    fn poll_timeout(&self) -> Option<Instant> {
        if self.outstanding.is_some() {
            // Timers may still be armed; they are fired by the next poll
            // after the run ends, at their own instants.
            return None;
        }
        self.schedule.poll_timeout()
    }

    fn poll(&mut self, now: Instant) -> Option<Fire> {
        if self.outstanding.is_some() {
            return None;
        }
        let run = self.schedule.poll(now)?;
        let fire = Fire {
            seq: run.seq(),
            due: run.due(),
            started: run.started(),
        };
        self.outstanding = Some(run);
        Some(fire)
    }

    fn finish(&mut self, fire: Fire, now: Instant) -> Result<(), TriggerError> {
        match self.outstanding.take_if(|run| run.seq() == fire.seq) {
            Some(run) => self
                .schedule
                .finish(run, now)
                .map_err(|_| TriggerError::UnknownFire { seq: fire.seq }),
            None => Err(TriggerError::UnknownFire { seq: fire.seq }),
        }
    }
}

/// A fixed period measured from the end of the previous run, the first run
/// at once: the kubelet's `wait.Until` loops (containers every minute,
/// images every five minutes).
#[derive(Clone, Debug)]
pub struct PeriodicTrigger {
    period: Duration,
    next: Option<Instant>,
    running: bool,
    seq: u64,
}

impl PeriodicTrigger {
    /// A trigger whose first run is due at `start`, and each later run
    /// `period` after the previous one ended.
    pub const fn new(start: Instant, period: Duration) -> Self {
        Self {
            period,
            next: Some(start),
            running: false,
            seq: 0,
        }
    }

    /// The kubelet's container GC loop started at `start` (every minute).
    pub const fn kubelet_containers(start: Instant) -> Self {
        Self::new(start, KUBELET_CONTAINER_GC_PERIOD)
    }

    /// The kubelet's image GC loop started at `start` (every five minutes).
    pub const fn kubelet_images(start: Instant) -> Self {
        Self::new(start, KUBELET_IMAGE_GC_PERIOD)
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }
}

impl Trigger for PeriodicTrigger {
    fn poll_timeout(&self) -> Option<Instant> {
        if self.running { None } else { self.next }
    }

    fn poll(&mut self, now: Instant) -> Option<Fire> {
        let due = self.next.filter(|due| !self.running && *due <= now)?;
        self.running = true;
        self.next = None;
        self.seq += 1;
        Some(Fire {
            seq: self.seq,
            due,
            started: now,
        })
    }

    fn finish(&mut self, fire: Fire, now: Instant) -> Result<(), TriggerError> {
        if !self.running || fire.seq != self.seq {
            return Err(TriggerError::UnknownFire { seq: fire.seq });
        }
        self.running = false;
        self.next = Some(now + self.period);
        Ok(())
    }
}

/// Fires when free space drops below a low watermark, with hysteresis: after
/// a fire it stays quiet until free space has climbed above the high
/// watermark, and two runs are always at least a minimum interval apart
/// (measured from the end of one run to the start of the next).
///
/// No upstream collector has this; it lets an agent react to a filling
/// disk between BuildKit's build-driven runs and the kubelet's periods.
/// Free space is [`DiskStats::available`] (what unprivileged writers, such
/// as builds, can still use).
///
/// ```
/// use std::time::Duration;
/// use reclaim_model::DiskStats;
/// use reclaim_runtime::{Instant, Trigger, WatermarkTrigger};
///
/// let s = Instant::from_secs;
/// let mut t = WatermarkTrigger::new(10, 20, Duration::from_secs(60))?;
/// t.observe(DiskStats::new(100, 5), s(0)); // below low: fire
/// let fire = t.poll(s(0)).expect("due at once");
/// t.finish(fire, s(1))?;
/// t.observe(DiskStats::new(100, 8), s(2)); // still low, but not re-armed
/// assert!(t.poll_timeout().is_none());
/// t.observe(DiskStats::new(100, 25), s(3)); // above high: re-armed
/// t.observe(DiskStats::new(100, 9), s(4)); // low again: due after the interval
/// assert_eq!(t.poll_timeout(), Some(s(61)));
/// # Ok::<(), reclaim_runtime::TriggerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct WatermarkTrigger {
    low: u64,
    high: u64,
    min_interval: Duration,
    armed: bool,
    /// When the pending run became due (the observation below low).
    pending: Option<Instant>,
    running: bool,
    /// The earliest start of the next run.
    not_before: Instant,
    seq: u64,
}

impl WatermarkTrigger {
    /// A trigger firing below `low` free bytes and re-arming above `high`
    /// free bytes, at most one run per `min_interval`.
    ///
    /// # Errors
    ///
    /// [`TriggerError::LowAboveHigh`] if `low > high`.
    pub fn new(low: u64, high: u64, min_interval: Duration) -> Result<Self, TriggerError> {
        if low > high {
            return Err(TriggerError::LowAboveHigh { low, high });
        }
        Ok(Self {
            low,
            high,
            min_interval,
            armed: true,
            pending: None,
            running: false,
            not_before: Instant::ZERO,
            seq: 0,
        })
    }

    /// A trigger with watermarks given as percentages of free space on a
    /// disk of `total` bytes (rounded down to whole bytes).
    ///
    /// # Errors
    ///
    /// [`TriggerError::PercentOutOfRange`] for a percentage above 100,
    /// [`TriggerError::LowAboveHigh`] if low is above high.
    pub fn from_percent(
        total: u64,
        low_percent: u8,
        high_percent: u8,
        min_interval: Duration,
    ) -> Result<Self, TriggerError> {
        for (field, value) in [("low_percent", low_percent), ("high_percent", high_percent)] {
            if value > 100 {
                return Err(TriggerError::PercentOutOfRange { field, value });
            }
        }
        let of = |p: u8| (u128::from(total) * u128::from(p) / 100) as u64;
        Self::new(of(low_percent), of(high_percent), min_interval)
    }

    /// The low watermark in free bytes.
    pub const fn low(&self) -> u64 {
        self.low
    }

    /// The high watermark in free bytes.
    pub const fn high(&self) -> u64 {
        self.high
    }

    /// Whether a drop below the low watermark would fire.
    pub const fn is_armed(&self) -> bool {
        self.armed
    }

    /// Feeds fresh disk statistics read at `now`.
    ///
    /// Free space above the high watermark re-arms the trigger; free space
    /// below the low watermark, while armed, makes a run due at `now` (or
    /// when the minimum interval after the previous run has passed) and
    /// disarms it.
    pub fn observe(&mut self, disk: DiskStats, now: Instant) {
        let free = disk.available;
        if free > self.high {
            self.armed = true;
        }
        if self.armed && free < self.low && self.pending.is_none() {
            self.armed = false;
            self.pending = Some(now);
        }
    }
}

impl Trigger for WatermarkTrigger {
    fn poll_timeout(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        self.pending.map(|at| at.max(self.not_before))
    }

    fn poll(&mut self, now: Instant) -> Option<Fire> {
        let due = self.poll_timeout().filter(|due| *due <= now)?;
        self.pending = None;
        self.running = true;
        self.seq += 1;
        Some(Fire {
            seq: self.seq,
            due,
            started: now,
        })
    }

    fn finish(&mut self, fire: Fire, now: Instant) -> Result<(), TriggerError> {
        if !self.running || fire.seq != self.seq {
            return Err(TriggerError::UnknownFire { seq: fire.seq });
        }
        self.running = false;
        self.not_before = now + self.min_interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Instant {
        Instant::from_secs(n)
    }

    /// Drives `trigger` punctually until `until`, each run taking `run`;
    /// `input` is called at every step with the current time. Returns the
    /// start times of the runs.
    fn drive<T: Trigger>(
        trigger: &mut T,
        mut input: impl FnMut(&mut T, Instant),
        events: &[Instant],
        run: Duration,
        until: Instant,
    ) -> Vec<Instant> {
        let mut starts = Vec::new();
        let mut events = events.iter().copied().peekable();
        let mut now = Instant::ZERO;
        loop {
            while events.next_if(|e| *e <= now).is_some() {
                input(trigger, now);
            }
            if let Some(fire) = trigger.poll(now) {
                starts.push(fire.started());
                let end = now + run;
                // Inputs during the run arrive while the fire is outstanding.
                while let Some(e) = events.next_if(|e| *e < end) {
                    input(trigger, e);
                }
                trigger.finish(fire, end).unwrap();
                now = end;
                continue;
            }
            let next = [trigger.poll_timeout(), events.peek().copied()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => now = t.max(now),
                _ => return starts,
            }
        }
    }

    #[test]
    fn buildkit_runs_after_start_and_builds_never_periodically() {
        let mut t = BuildKitTrigger::new(s(0));
        let builds = [s(5), s(30), s(200), s(202), s(210)];
        let starts = drive(
            &mut t,
            |t, now| t.request(now),
            &builds,
            Duration::from_secs(2),
            s(10_000),
        );
        // 1 s after start; the builds at 5 s and 30 s wait for the cooldown
        // after the first run (ended 3 s): 63 s. The build at 200 s comes when
        // idle: 201 s. The one at 202 s (during that run) and at 210 s give
        // one run a minute after it ended: 263 s. Then nothing, ever.
        assert_eq!(starts, [s(1), s(63), s(201), s(263)]);
        assert_eq!(t.runs_started(), 4);
    }

    #[test]
    fn buildkit_without_builds_runs_once() {
        let mut t = BuildKitTrigger::new(s(0));
        let starts = drive(&mut t, |_, _| {}, &[], Duration::from_secs(1), s(86_400));
        assert_eq!(starts, [s(1)]);
    }

    #[test]
    fn kubelet_periods_count_from_the_end_of_each_run() {
        let mut t = PeriodicTrigger::kubelet_containers(s(0));
        let starts = drive(&mut t, |_, _| {}, &[], Duration::from_secs(10), s(200));
        assert_eq!(starts, [s(0), s(70), s(140)]);
        let mut t = PeriodicTrigger::kubelet_images(s(0));
        let starts = drive(&mut t, |_, _| {}, &[], Duration::ZERO, s(1000));
        assert_eq!(starts, [s(0), s(300), s(600), s(900)]);
    }

    #[test]
    fn fires_are_checked() {
        let mut a = PeriodicTrigger::new(s(0), Duration::from_secs(1));
        let mut b = PeriodicTrigger::new(s(0), Duration::from_secs(1));
        let fa = a.poll(s(0)).unwrap();
        assert!(a.poll(s(5)).is_none(), "runs never overlap");
        assert_eq!(a.poll_timeout(), None);
        let fb = b.poll(s(0)).unwrap();
        b.finish(fb, s(1)).unwrap();
        let again = b.poll(s(2)).unwrap();
        assert_eq!(again.seq(), 2);
        assert_eq!(
            b.finish(fa, s(3)),
            Err(TriggerError::UnknownFire { seq: 1 })
        );
        b.finish(again, s(3)).unwrap();
        let mut k = BuildKitTrigger::new(s(0));
        let fk = k.poll(s(1)).unwrap();
        assert_eq!((fk.seq(), fk.due(), fk.started()), (1, s(1), s(1)));
        let bogus = Fire {
            seq: 9,
            due: s(0),
            started: s(0),
        };
        assert!(k.finish(bogus, s(2)).is_err());
        k.finish(fk, s(2)).unwrap();
    }

    #[test]
    fn watermark_has_hysteresis_and_a_minimum_interval() {
        let mut t = WatermarkTrigger::new(100, 200, Duration::from_secs(60)).unwrap();
        // Free space, sampled every 10 s.
        let free = [500, 150, 90, 80, 120, 210, 50, 40, 250, 30];
        let samples: Vec<Instant> = (0..free.len() as u64).map(|i| s(i * 10)).collect();
        let mut i = 0;
        let starts = drive(
            &mut t,
            |t, now| {
                t.observe(DiskStats::new(1000, free[i]), now);
                i += 1;
            },
            &samples,
            Duration::from_secs(1),
            s(1000),
        );
        // 90 at 20 s fires; 80 and 120 do not (not re-armed); 210 at 50 s
        // re-arms; 50 at 60 s fires, but not before 21 + 60 = 81 s; 250 at
        // 80 s re-arms (the pending run is unaffected); 30 at 90 s fires
        // after the run at 81 s ended (82 s) plus the interval: 142 s.
        assert_eq!(starts, [s(20), s(81), s(142)]);
    }

    #[test]
    fn watermark_input_is_checked() {
        assert_eq!(
            WatermarkTrigger::new(5, 4, Duration::ZERO)
                .unwrap_err()
                .to_string(),
            "watermarks: low (5 bytes free) must not be above high (4 bytes free); \
             the trigger fires below low and re-arms above high"
        );
        let err = WatermarkTrigger::from_percent(1000, 10, 101, Duration::ZERO).unwrap_err();
        assert_eq!(
            err,
            TriggerError::PercentOutOfRange {
                field: "high_percent",
                value: 101
            }
        );
        let t = WatermarkTrigger::from_percent(1000, 10, 20, Duration::ZERO).unwrap();
        assert_eq!((t.low(), t.high(), t.is_armed()), (100, 200, true));
    }
}
