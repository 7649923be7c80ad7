//! Where collectors and triggers read the time.
//!
//! Time has two faces here: the wall clock ([`Timestamp`]), which planners
//! compare with creation and last-use times, and a monotonic clock
//! ([`Instant`]), which triggers and run durations use so that a wall-clock
//! step (NTP, a suspended VM) never makes a timer fire early or never.
//! [`SystemClock`] is the only code in reclaim's libraries that reads the
//! system's clocks; [`ManualClock`] is moved by hand, for tests and the
//! simulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reclaim_model::{Duration, Timestamp};
pub use reclaim_throttle::Instant;

/// A source of wall-clock and monotonic time.
///
/// Contract: [`Clock::instant`] never goes backwards. [`Clock::now`] may
/// (a wall clock can be stepped); collectors read it once per run.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// The current monotonic time, counted from an origin of the clock's
    /// choosing. Instants of different clocks are not comparable.
    fn instant(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn instant(&self) -> Instant {
        (**self).instant()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn instant(&self) -> Instant {
        (**self).instant()
    }
}

/// The system's clocks: `SystemTime` for the wall clock, `std::time::Instant`
/// (counted from the moment the clock was created) for monotonic time.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is the moment of this call.
    #[expect(
        clippy::disallowed_methods,
        reason = "the system clock is the one place that reads the real time"
    )]
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the system clock is the one place that reads the real time"
    )]
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        match since {
            Ok(d) => Timestamp::from_unix_nanos(d.as_nanos() as i128),
            // A system clock set before 1970.
            Err(e) => Timestamp::from_unix_nanos(-(e.duration().as_nanos() as i128)),
        }
    }

    fn instant(&self) -> Instant {
        let nanos = self.origin.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: the wall clock starts at a given
/// [`Timestamp`] and both faces advance together.
///
/// Clones share the same time, so a test or simulator can hold one and
/// hand another to the code under test.
///
/// ```
/// use reclaim_model::Timestamp;
/// use reclaim_runtime::{Clock, Instant, ManualClock};
///
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
/// clock.advance(std::time::Duration::from_secs(90));
/// assert_eq!(clock.now(), Timestamp::from_unix_secs(1_090));
/// assert_eq!(clock.instant(), Instant::from_secs(90));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: Timestamp,
    /// Nanoseconds since `start` (the monotonic time).
    elapsed: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start`, with monotonic time zero.
    pub fn new(start: Timestamp) -> Self {
        Self {
            start,
            elapsed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves both faces forward by `d` (saturating after about 584 years).
    pub fn advance(&self, d: std::time::Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.elapsed.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(nanos);
            match self.elapsed.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Moves the clock forward to the wall-clock time `t`. A time at or
    /// before the current one leaves the clock unchanged (it never goes
    /// backwards).
    pub fn advance_to(&self, t: Timestamp) {
        let target = t.saturating_duration_since(self.start);
        if target.is_negative() {
            return;
        }
        let target = target.as_nanos() as u64;
        self.elapsed.fetch_max(target, Ordering::Relaxed);
    }

    /// Monotonic time as a [`Duration`] since the clock's start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed.load(Ordering::Relaxed) as i64)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.start.add(self.elapsed())
    }

    fn instant(&self) -> Instant {
        Instant::from_nanos(self.elapsed.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_faces_and_never_back() {
        let clock = ManualClock::new(Timestamp::from_unix_secs(100));
        let shared = clock.clone();
        shared.advance(std::time::Duration::from_millis(1500));
        assert_eq!(clock.now(), Timestamp::from_unix(101, 500_000_000));
        assert_eq!(clock.instant(), Instant::from_millis(1500));
        clock.advance_to(Timestamp::from_unix_secs(50));
        assert_eq!(clock.instant(), Instant::from_millis(1500));
        clock.advance_to(Timestamp::from_unix_secs(200));
        assert_eq!(shared.now(), Timestamp::from_unix_secs(200));
        assert_eq!(shared.instant(), Instant::from_secs(100));
    }

    #[test]
    fn system_clock_is_monotonic_and_recent() {
        let clock = SystemClock::new();
        let a = clock.instant();
        let b = clock.instant();
        assert!(b >= a);
        // Any machine running this test is past 2020-01-01.
        assert!(clock.now() > Timestamp::from_unix_secs(1_577_836_800));
    }
}
