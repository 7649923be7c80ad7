//! Loom model tests of the thread driver's real code.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p reclaim-throttle --release
//! --lib loom`. The preemption bound defaults to 3 and can be changed with
//! `LOOM_MAX_PREEMPTIONS`.

use std::time::Duration;

use loom::sync::atomic::AtomicU32;

use super::*;
use crate::time::ManualClock;

/// A clock that never moves: with `d = 0` every deadline is "now", so the
/// models explore the locking without any time passing.
struct FrozenClock;

impl Clock for FrozenClock {
    fn now(&self) -> Instant {
        Instant::ZERO
    }

    fn wait_limit(&self, _deadline: Instant) -> Option<Duration> {
        None
    }
}

fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(model);
}

fn spawn_frozen(mode: Mode, f: impl FnMut() + Send + 'static) -> std::sync::Arc<Throttled> {
    let throttled = Builder::new(mode, Duration::ZERO)
        .clock(FrozenClock)
        .spawn(f)
        .expect("loom spawns threads");
    std::sync::Arc::new(throttled)
}

/// Two threads publish data under a lock and trigger while the worker runs:
/// no trigger is lost (the last run sees both writes, through the lock `f`
/// takes) and runs of `f` never overlap.
#[test]
fn loom_no_lost_trigger_and_no_overlap() {
    for mode in [Mode::After, Mode::Throttle] {
        check(move || {
            let data = Arc::new(Mutex::new(0u32));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let in_f = Arc::new(AtomicBool::new(false));
            let throttled = {
                let (data, seen, in_f) = (data.clone(), seen.clone(), in_f.clone());
                spawn_frozen(mode, move || {
                    assert!(!in_f.swap(true, Ordering::SeqCst), "runs of f overlapped");
                    let value = *data.lock();
                    seen.lock().push(value);
                    in_f.store(false, Ordering::SeqCst);
                })
            };
            let triggers: Vec<_> = (0..2)
                .map(|i| {
                    let (throttled, data) = (throttled.clone(), data.clone());
                    thread::spawn(move || {
                        *data.lock() |= 1 << i;
                        throttled.trigger();
                    })
                })
                .collect();
            for t in triggers {
                t.join().unwrap();
            }
            throttled.wait_idle();
            let seen = seen.lock().clone();
            assert!(!seen.is_empty() && seen.len() <= 2, "runs: {seen:?}");
            assert_eq!(seen.last(), Some(&0b11), "a trigger was lost: {seen:?}");
            drop(throttled);
        });
    }
}

/// Any number of triggers during a run cause exactly one more run.
#[test]
fn loom_triggers_during_a_run_cause_exactly_one_more() {
    check(|| {
        let runs = Arc::new(AtomicU32::new(0));
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let throttled = {
            let (runs, release) = (runs.clone(), release.clone());
            spawn_frozen(Mode::After, move || {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    let (released, cv) = &*release;
                    let mut released = released.lock();
                    while !*released {
                        released = cv.wait(released);
                    }
                }
            })
        };
        throttled.trigger();
        throttled.wait_until(|stats| stats.runs_started == 1);
        let during: Vec<_> = (0..2)
            .map(|_| {
                let throttled = throttled.clone();
                thread::spawn(move || throttled.trigger())
            })
            .collect();
        throttled.trigger();
        for t in during {
            t.join().unwrap();
        }
        *release.0.lock() = true;
        release.1.notify_one();
        throttled.wait_idle();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let stats = throttled.stats();
        assert_eq!((stats.runs_started, stats.runs_finished), (2, 2));
    });
}

/// A trigger racing the handle's drop on another thread neither deadlocks
/// nor runs `f` after the worker stopped.
#[test]
fn loom_shutdown_races_a_trigger() {
    check(|| {
        let runs = Arc::new(AtomicU32::new(0));
        let throttled = {
            let runs = runs.clone();
            spawn_frozen(Mode::After, move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })
        };
        let other = {
            let throttled = throttled.clone();
            thread::spawn(move || {
                throttled.trigger();
                drop(throttled);
            })
        };
        throttled.trigger();
        drop(throttled);
        other.join().unwrap();
        // Both handles are gone, so the worker has been joined.
        let after_shutdown = runs.load(Ordering::SeqCst);
        assert!(after_shutdown <= 2, "{after_shutdown} runs for 2 triggers");
    });
}

/// The cooldown ends when a virtual clock moves: the worker, blocked until
/// the deadline, is woken by the clock and runs the pending trigger.
#[test]
fn loom_clock_wakes_the_worker_after_the_cooldown() {
    check(|| {
        let clock = ManualClock::new();
        let throttled = Builder::new(Mode::After, Duration::from_nanos(1))
            .clock(clock.clone())
            .spawn(|| {})
            .expect("loom spawns threads");
        throttled.trigger();
        throttled.wait_until(|stats| stats.runs_finished == 1);
        throttled.trigger();
        let mover = thread::spawn(move || clock.advance(Duration::from_nanos(1)));
        throttled.wait_until(|stats| stats.runs_finished == 2);
        mover.join().unwrap();
        let shutdown = throttled.shutdown();
        assert!(!shutdown.discarded_trigger);
    });
}
