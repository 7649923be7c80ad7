//! A daemon that wires BuildKit's GC trigger to its own GC function.
//!
//! BuildKit wraps its collector in `throttle.After(1 minute, gc)` and calls
//! the result one second after the daemon starts and one second after every
//! build. This example does the same with [`reclaim_throttle::Throttled`],
//! with time scaled down 100 times (the minute becomes 600 ms and the second
//! 10 ms) so that it finishes quickly:
//!
//! ```text
//! cargo run -p reclaim-examples --example throttle_daemon
//! ```
//!
//! It prints every build and every GC run with its time since start. Expect
//! one GC shortly after start, one at the end of the cooldown that follows
//! it (the builds during the cooldown collapse into it), one right after the
//! lone build that comes when the daemon is idle again, and nothing more.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use reclaim_throttle::{
    BUILDKIT_GC_DELAY, BUILDKIT_GC_PERIOD, Builder, Clock, Instant, Mode, SystemClock, Throttled,
};

/// Real BuildKit durations are divided by this.
const SCALE: u32 = 100;

/// The daemon's garbage collector. A real one would plan with
/// `reclaim_policy` and delete through a runtime; this one just takes time.
fn collect_garbage(clock: SystemClock, runs: &mut u32) {
    *runs += 1;
    println!("{:>5} ms  gc run #{runs} starts", clock.now().as_millis());
    thread::sleep(Duration::from_millis(50));
    println!("{:>5} ms  gc run #{runs} ends", clock.now().as_millis());
}

/// BuildKit's `time.AfterFunc(time.Second, throttledGC)`: trigger once,
/// after `delay`, without blocking the caller.
fn trigger_after(gc: &Arc<Throttled>, delay: Duration) -> thread::JoinHandle<()> {
    let gc = gc.clone();
    thread::spawn(move || {
        thread::sleep(delay);
        gc.trigger();
    })
}

/// Sleeps until `at` after the clock's origin.
fn sleep_until(clock: SystemClock, at: Duration) {
    let now = clock.now().saturating_duration_since(Instant::ZERO);
    thread::sleep(at.saturating_sub(now));
}

fn main() -> anyhow::Result<()> {
    let clock = SystemClock::new();
    let period = BUILDKIT_GC_PERIOD / SCALE;
    let delay = BUILDKIT_GC_DELAY / SCALE;

    let mut runs = 0;
    let gc = Arc::new(
        Builder::new(Mode::After, period)
            .clock(clock)
            .thread_name("gc")
            .on_panic(|message| eprintln!("gc panicked: {message}"))
            .spawn(move || collect_garbage(clock, &mut runs))
            .context("starting the GC worker")?,
    );

    // The controller is created: GC one (scaled) second later.
    let mut timers = vec![trigger_after(&gc, delay)];

    // Builds end at these (scaled) times; each asks for GC a second later.
    // The first three fall into the cooldown after the first GC run; the
    // last comes long after, when the trigger is idle again.
    for at in [100, 200, 400, 1500] {
        sleep_until(clock, Duration::from_millis(at));
        println!("{:>5} ms  build finished", clock.now().as_millis());
        timers.push(trigger_after(&gc, delay));
    }

    // Let the last requested run happen, then stop the worker. Dropping the
    // handle instead would discard a run still waiting for its cooldown.
    for timer in timers {
        timer
            .join()
            .map_err(|_| anyhow::anyhow!("a timer thread panicked"))?;
    }
    gc.wait_idle();
    let gc = Arc::try_unwrap(gc).map_err(|_| anyhow::anyhow!("the GC trigger is still shared"))?;
    let shutdown = gc.shutdown();
    // Expect 3 runs: at about 10 ms, 660 ms and 1510 ms.
    println!(
        "{:>5} ms  daemon stops after {} gc runs ({} panicked)",
        clock.now().as_millis(),
        shutdown.stats.runs_finished,
        shutdown.stats.panics
    );
    Ok(())
}
