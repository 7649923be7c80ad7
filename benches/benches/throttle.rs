//! Cost of `trigger()` on the thread driver, against a naive port of
//! upstream's algorithm that keeps all state under one mutex.
//!
//! Three situations:
//! - `pending`: a run is already pending (the GC is cooling down), the hot
//!   path of a busy daemon;
//! - `idle_to_pending`: the worker is parked and the trigger wakes it;
//! - `two_threads`: two threads call `trigger()` in a loop, either while a
//!   run is pending (`pending`) or while the worker runs a no-op `f`
//!   back to back with `d = 0` (`churn`). The figure is the wall time for
//!   both threads to make one call each (they run in parallel).
//!
//! Run with `cargo bench -p reclaim-benches --bench throttle`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::{Condvar, Mutex};
use reclaim_throttle::{Clock, SystemClock, Throttled};

/// Long enough that a pending run stays pending for the whole bench.
const COOLDOWN: Duration = Duration::from_secs(3600);

/// Upstream's `throttle.After` as a naive Rust port: the `next` and
/// `running` flags under one mutex, taken by every call. Instead of
/// spawning a goroutine per busy period (an OS thread here, which would
/// make the baseline look far worse), one worker thread waits on a
/// condition variable for `running` to be set.
struct MutexBaseline {
    shared: Arc<BaselineShared>,
    worker: Option<thread::JoinHandle<()>>,
}

struct BaselineShared {
    state: Mutex<BaselineState>,
    wake: Condvar,
}

#[derive(Default)]
struct BaselineState {
    next: bool,
    running: bool,
    shutdown: bool,
    runs: u64,
}

impl MutexBaseline {
    fn after(period: Duration, mut f: impl FnMut() + Send + 'static) -> Self {
        let shared = Arc::new(BaselineShared {
            state: Mutex::new(BaselineState::default()),
            wake: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let worker = thread::spawn(move || {
            let shared = worker_shared;
            let mut state = shared.state.lock();
            loop {
                while !state.running && !state.shutdown {
                    shared.wake.wait(&mut state);
                }
                if state.shutdown {
                    return;
                }
                // The goroutine's loop: run while `next` is set, sleeping
                // `period` after every run.
                if !state.next {
                    state.running = false;
                    continue;
                }
                state.next = false;
                drop(state);
                f();
                state = shared.state.lock();
                state.runs += 1;
                if !period.is_zero() {
                    // An interruptible `time.Sleep(period)`.
                    let _ = shared.wake.wait_for(&mut state, period);
                }
            }
        });
        Self {
            shared,
            worker: Some(worker),
        }
    }

    fn trigger(&self) {
        let mut state = self.shared.state.lock();
        state.next = true;
        if !state.running {
            state.running = true;
            self.shared.wake.notify_one();
        }
    }

    fn runs(&self) -> u64 {
        self.shared.state.lock().runs
    }

    fn wait_idle(&self) {
        while {
            let state = self.shared.state.lock();
            state.running || state.next
        } {
            thread::yield_now();
        }
    }
}

impl Drop for MutexBaseline {
    fn drop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            worker.join().expect("the baseline worker does not panic");
        }
    }
}

/// The two implementations behind one interface. The benches are generic
/// over it, so calls are statically dispatched and inlined, as a daemon
/// calling `Throttled::trigger` directly would have them.
trait Trigger: Send + Sync {
    fn trigger(&self);
    fn wait_idle(&self);
    fn runs(&self) -> u64;
}

impl Trigger for Throttled {
    #[inline]
    fn trigger(&self) {
        Throttled::trigger(self);
    }

    fn wait_idle(&self) {
        Throttled::wait_idle(self);
    }

    fn runs(&self) -> u64 {
        self.stats().runs_finished
    }
}

impl Trigger for MutexBaseline {
    #[inline]
    fn trigger(&self) {
        MutexBaseline::trigger(self);
    }

    fn wait_idle(&self) {
        MutexBaseline::wait_idle(self);
    }

    fn runs(&self) -> u64 {
        MutexBaseline::runs(self)
    }
}

/// Brings `t` into the "pending during the cooldown" state.
fn make_pending(t: &impl Trigger) {
    t.trigger();
    while t.runs() == 0 {
        thread::yield_now();
    }
    t.trigger();
}

fn reclaim(period: Duration) -> Arc<Throttled> {
    Arc::new(Throttled::after(period, || {}).expect("spawn"))
}

fn baseline(period: Duration) -> Arc<MutexBaseline> {
    Arc::new(MutexBaseline::after(period, || {}))
}

fn bench_pending<T: Trigger>(c: &mut Criterion, name: &str, t: &T) {
    make_pending(t);
    c.bench_function(&format!("throttle/pending/{name}"), |b| {
        b.iter(|| black_box(t).trigger());
    });
    assert_eq!(
        t.runs(),
        1,
        "{name}: the pending run must not start during the bench"
    );
}

fn pending(c: &mut Criterion) {
    bench_pending(c, "reclaim", &*reclaim(COOLDOWN));
    bench_pending(c, "mutex_baseline", &*baseline(COOLDOWN));
}

fn bench_idle_to_pending<T: Trigger>(c: &mut Criterion, name: &str, t: &T) {
    let clock = SystemClock::new();
    c.bench_function(&format!("throttle/idle_to_pending/{name}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                t.wait_idle();
                let start = clock.now();
                black_box(t).trigger();
                total += clock.now().saturating_duration_since(start);
            }
            t.wait_idle();
            total
        });
    });
}

fn idle_to_pending(c: &mut Criterion) {
    bench_idle_to_pending(c, "reclaim", &*reclaim(Duration::ZERO));
    bench_idle_to_pending(c, "mutex_baseline", &*baseline(Duration::ZERO));
}

/// Two threads each call `trigger()` `iters` times; returns the wall time.
fn hammer<T: Trigger + 'static>(t: &Arc<T>, iters: u64) -> Duration {
    let clock = SystemClock::new();
    let barrier = Arc::new(Barrier::new(2));
    let other = {
        let (t, barrier) = (t.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            for _ in 0..iters {
                black_box(&*t).trigger();
            }
        })
    };
    barrier.wait();
    let start = clock.now();
    for _ in 0..iters {
        black_box(&**t).trigger();
    }
    other.join().expect("the hammering thread does not panic");
    clock.now().saturating_duration_since(start)
}

fn bench_two_threads<T: Trigger + 'static>(
    c: &mut Criterion,
    name: &str,
    pending: Arc<T>,
    churn: Arc<T>,
) {
    make_pending(&*pending);
    c.bench_function(&format!("throttle/two_threads/pending/{name}"), |b| {
        b.iter_custom(|iters| hammer(&pending, iters));
    });
    c.bench_function(&format!("throttle/two_threads/churn/{name}"), |b| {
        b.iter_custom(|iters| hammer(&churn, iters));
    });
    churn.wait_idle();
    assert!(churn.runs() > 0, "{name}: the worker never ran");
}

fn two_threads(c: &mut Criterion) {
    bench_two_threads(c, "reclaim", reclaim(COOLDOWN), reclaim(Duration::ZERO));
    bench_two_threads(
        c,
        "mutex_baseline",
        baseline(COOLDOWN),
        baseline(Duration::ZERO),
    );
}

criterion_group!(benches, pending, idle_to_pending, two_threads);
criterion_main!(benches);
