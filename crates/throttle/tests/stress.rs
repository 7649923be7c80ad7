//! Stress test of the thread driver: many threads trigger for a bounded time
//! on the real clock, and the runs must respect upstream's guarantees.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use reclaim_throttle::{Builder, Clock, Instant, Mode, SystemClock};

const THREADS: usize = 8;
const HAMMER_FOR: Duration = Duration::from_millis(300);
const PERIOD: Duration = Duration::from_millis(2);

struct Outcome {
    spans: Vec<(Instant, Instant)>,
    last_trigger: Instant,
    triggers: u64,
    runs_finished: u64,
}

fn hammer(mode: Mode) -> Outcome {
    let clock = SystemClock::new();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let in_f = Arc::new(AtomicBool::new(false));
    let throttled = {
        let (spans, in_f) = (spans.clone(), in_f.clone());
        Builder::new(mode, PERIOD)
            .clock(clock)
            .spawn(move || {
                assert!(!in_f.swap(true, Ordering::SeqCst), "runs of f overlapped");
                let start = clock.now();
                // Some runs are shorter than the period, some longer.
                let busy = Duration::from_micros(500 * (spans.lock().len() as u64 % 7));
                while clock.now().saturating_duration_since(start) < busy {
                    std::hint::spin_loop();
                }
                spans.lock().push((start, clock.now()));
                in_f.store(false, Ordering::SeqCst);
            })
            .unwrap()
    };
    let triggers = AtomicU64::new(0);
    let last_trigger = Mutex::new(Instant::ZERO);
    let begin = clock.now();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let mut count = 0;
                let mut last = Instant::ZERO;
                while clock.now().saturating_duration_since(begin) < HAMMER_FOR {
                    // The time is taken before the call, so the run serving
                    // this trigger must start at or after it.
                    last = clock.now();
                    throttled.trigger();
                    count += 1;
                    if count % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
                triggers.fetch_add(count, Ordering::Relaxed);
                let mut latest = last_trigger.lock();
                *latest = (*latest).max(last);
            });
        }
    });
    throttled.wait_idle();
    let shutdown = throttled.shutdown();
    assert!(!shutdown.discarded_trigger);
    assert_eq!(shutdown.stats.panics, 0);
    let spans = spans.lock().clone();
    Outcome {
        spans,
        last_trigger: *last_trigger.lock(),
        triggers: triggers.into_inner(),
        runs_finished: shutdown.stats.runs_finished,
    }
}

fn check(mode: Mode) {
    let outcome = hammer(mode);
    let spans = &outcome.spans;
    assert_eq!(
        outcome.runs_finished,
        spans.len() as u64,
        "{mode:?}: every run counted once"
    );
    assert!(spans.len() >= 2, "{mode:?}: only {} runs", spans.len());
    assert!(
        (spans.len() as u64) < outcome.triggers,
        "{mode:?}: {} runs for {} triggers: nothing coalesced",
        spans.len(),
        outcome.triggers
    );
    // Runs never overlap and are at least the period apart.
    for pair in spans.windows(2) {
        let gap = pair[1].0.saturating_duration_since(pair[0].1);
        assert!(
            pair[1].0 >= pair[0].1 && gap >= PERIOD,
            "{mode:?}: runs {pair:?} only {gap:?} apart"
        );
    }
    // No lost trigger: the last run started after the last trigger began.
    let last_start = spans.last().unwrap().0;
    assert!(
        last_start >= outcome.last_trigger,
        "{mode:?}: last run at {last_start} before the last trigger at {}",
        outcome.last_trigger
    );
}

#[test]
fn stress_after() {
    check(Mode::After);
}

#[test]
fn stress_throttle() {
    check(Mode::Throttle);
}
