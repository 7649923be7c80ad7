//! Monotonic time as a value, and the clocks the drivers read it from.
//!
//! The schedule never reads a clock: every method takes the time as an
//! [`Instant`] argument. Only the drivers read a [`Clock`], and only
//! [`SystemClock`] reads the real one.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// A point on a monotonic time line, in nanoseconds since the origin of the
/// clock that produced it.
///
/// Instants from different clocks are not comparable. Adding a
/// [`Duration`] saturates at [`Instant::MAX`] (about 584 years after the
/// origin) instead of overflowing.
#[derive(Clone, Copy, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the time line.
    pub const ZERO: Self = Self(0);
    /// The latest representable instant.
    pub const MAX: Self = Self(u64::MAX);

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// The instant `millis` milliseconds after the origin, saturating at
    /// [`Instant::MAX`].
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// The instant `secs` seconds after the origin, saturating at
    /// [`Instant::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the origin, truncated.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at [`Instant::MAX`].
    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Instant {
    /// Prints the offset from the origin, such as `t+1.5ms` or `t+0ns`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", Duration::from_nanos(self.0))
    }
}

/// Where a driver reads the time, and how it waits for a deadline.
///
/// A driver calls [`Clock::now`] when a trigger moves the schedule from idle
/// to pending, before it starts a run and after a run ends. When the schedule
/// says the next run is due at a later instant, the driver blocks on its own
/// condition variable for at most [`Clock::wait_limit`] of real time and then
/// reads the clock again. A clock whose time does not pass by itself (a
/// virtual clock in a test) returns `None` from `wait_limit` and instead
/// calls the [`Waker`] the driver gave to [`Clock::subscribe`] whenever its
/// time moves.
///
/// Contract: [`Clock::now`] never goes backwards for one clock, and must not
/// call back into a driver (drivers read it while holding their lock).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// How long, in real time, a driver may block before it reads the clock
    /// again while it waits for `deadline`, or `None` to block until woken.
    fn wait_limit(&self, deadline: Instant) -> Option<Duration>;

    /// Registers `waker` to be called whenever this clock's time moves.
    ///
    /// Clocks whose [`Clock::wait_limit`] always returns `Some` may ignore
    /// it, which is what the default implementation does.
    fn subscribe(&self, waker: Waker) {
        drop(waker);
    }
}

/// A callback a driver registers with a [`Clock`] so that a virtual clock
/// can wake it when time moves.
pub struct Waker(Box<dyn Fn() -> bool + Send + Sync>);

impl Waker {
    /// Wraps `wake`, which returns `false` once its driver is gone (the clock
    /// then forgets it).
    pub fn new(wake: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Box::new(wake))
    }

    /// Wakes the driver; `false` means the driver is gone and the waker can
    /// be dropped.
    pub fn wake(&self) -> bool {
        (self.0)()
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waker(..)")
    }
}

/// The real monotonic clock: nanoseconds since the clock was created.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is the moment of this call.
    #[expect(
        clippy::disallowed_methods,
        reason = "the real clock is the one place that reads the system time"
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
        reason = "the real clock is the one place that reads the system time"
    )]
    fn now(&self) -> Instant {
        let elapsed = std::time::Instant::now().saturating_duration_since(self.origin);
        Instant::ZERO + elapsed
    }

    fn wait_limit(&self, deadline: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(self.now()))
    }
}

/// A virtual clock that only moves when told to, for tests and simulations.
///
/// Cloning gives another handle to the same time line. Moving the time wakes
/// every driver subscribed to the clock.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    nanos: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl ManualClock {
    /// A clock standing at [`Instant::ZERO`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the time forward by `by` and wakes subscribed drivers.
    pub fn advance(&self, by: Duration) {
        let now = self.now() + by;
        self.set(now);
    }

    /// Moves the time to `to` and wakes subscribed drivers.
    ///
    /// # Panics
    ///
    /// Panics if `to` is earlier than the current time, because a [`Clock`]
    /// must never go backwards.
    pub fn set(&self, to: Instant) {
        let previous = self.inner.nanos.fetch_max(to.as_nanos(), Ordering::AcqRel);
        assert!(
            previous <= to.as_nanos(),
            "ManualClock::set: to = {to} is earlier than the current time {}",
            Instant::from_nanos(previous)
        );
        // Lock order: this list, then a driver's lock (inside the waker). A
        // driver never takes this list while holding its own lock, because
        // `now` reads an atomic.
        self.inner.wakers.lock().retain(Waker::wake);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.inner.nanos.load(Ordering::Acquire))
    }

    fn wait_limit(&self, _deadline: Instant) -> Option<Duration> {
        None
    }

    fn subscribe(&self, waker: Waker) {
        self.inner.wakers.lock().push(waker);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        assert_eq!(
            Instant::from_millis(2) + Duration::from_micros(500),
            Instant::from_nanos(2_500_000)
        );
        assert_eq!(Instant::MAX + Duration::from_nanos(1), Instant::MAX);
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::MAX);
        assert_eq!(
            Instant::from_secs(1).saturating_duration_since(Instant::from_secs(3)),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_secs(3).saturating_duration_since(Instant::from_secs(1)),
            Duration::from_secs(2)
        );
        assert_eq!(Instant::from_millis(1500).to_string(), "t+1.5s");
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_wakes_subscribers() {
        let clock = ManualClock::new();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = hits.clone();
        clock.subscribe(Waker::new(move || {
            // The waker unsubscribes itself after its second call.
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 1
        }));
        assert_eq!(clock.now(), Instant::ZERO);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), Instant::from_millis(5));
        clock.set(Instant::from_millis(7));
        clock.set(Instant::from_millis(9));
        assert_eq!(clock.now(), Instant::from_millis(9));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(clock.wait_limit(Instant::MAX), None);
    }

    #[test]
    fn manual_clock_refuses_to_go_backwards() {
        let clock = ManualClock::new();
        clock.set(Instant::from_millis(2));
        let back = clock.clone();
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            back.set(Instant::from_millis(1))
        }))
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert_eq!(
            msg,
            "ManualClock::set: to = t+1ms is earlier than the current time t+2ms"
        );
    }

    #[test]
    fn system_clock_is_monotonic_and_bounds_waits() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert_eq!(clock.wait_limit(Instant::ZERO), Some(Duration::ZERO));
        let limit = clock.wait_limit(b + Duration::from_secs(10)).unwrap();
        assert!(limit <= Duration::from_secs(10), "{limit:?}");
    }
}
