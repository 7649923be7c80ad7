//! Tests of the thread driver on virtual and real time.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering as StdOrdering};
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::replay::replay;
use crate::time::ManualClock;

/// How long a test waits for the worker before it declares it stuck.
const STUCK: Duration = Duration::from_secs(10);

impl Throttled {
    /// Waits until the worker has finished `finished` runs and is either in
    /// a run or blocked after looking at the clock's current time.
    fn settle(&self, finished: u64) {
        let mut state = self.inner.state.lock();
        loop {
            let in_run = state.stats.runs_started > state.stats.runs_finished;
            let parked_now = state.parked_at == Some(self.clock.now());
            if state.stats.runs_finished == finished && (in_run || parked_now) {
                return;
            }
            let (next, timed_out) = self.inner.progress.wait_for(state, STUCK);
            state = next;
            assert!(!timed_out, "worker did not settle: {:?}", state.stats);
        }
    }
}

/// A timeline in milliseconds: triggers, the duration of each run (the last
/// one repeats), and the mode and period.
struct Case {
    name: &'static str,
    mode: Mode,
    period: u64,
    triggers: &'static [u64],
    runs: &'static [u64],
}

/// Plays `case` through a real worker thread on a [`ManualClock`], one
/// millisecond at a time, and returns the run start times in milliseconds.
fn drive_thread(case: &Case, until: u64) -> Vec<u64> {
    let clock = ManualClock::new();
    let (started_tx, started_rx) = mpsc::channel::<u64>();
    let (finish_tx, finish_rx) = mpsc::channel::<()>();
    let f_clock = clock.clone();
    let throttled = Builder::new(case.mode, Duration::from_millis(case.period))
        .clock(clock.clone())
        .spawn(move || {
            started_tx.send(f_clock.now().as_millis()).unwrap();
            finish_rx.recv_timeout(STUCK).unwrap();
        })
        .unwrap();
    let mut starts = Vec::new();
    let mut end: Option<u64> = None;
    let mut finished = 0;
    for t in 0..=until {
        clock.set(Instant::from_millis(t));
        for _ in case.triggers.iter().filter(|at| **at == t) {
            throttled.trigger();
        }
        if end == Some(t) {
            finish_tx.send(()).unwrap();
            finished += 1;
            end = None;
        }
        throttled.settle(finished);
        if throttled.stats().runs_started > starts.len() as u64 {
            let start = started_rx.recv_timeout(STUCK).unwrap();
            assert_eq!(start, t, "{}: runs start when the worker wakes", case.name);
            let index = starts.len().min(case.runs.len() - 1);
            starts.push(start);
            let run = case.runs[index];
            if run == 0 {
                // A zero-length run ends at once; let the worker continue.
                finish_tx.send(()).unwrap();
                finished += 1;
                throttled.settle(finished);
                assert_eq!(
                    throttled.stats().runs_started,
                    starts.len() as u64,
                    "{}: no second start at one instant",
                    case.name
                );
            } else {
                end = Some(t + run);
            }
        }
    }
    assert_eq!(
        end, None,
        "{}: a run was still in progress at the end",
        case.name
    );
    let shutdown = throttled.shutdown();
    assert_eq!(shutdown.stats.runs_finished, starts.len() as u64);
    starts
}

fn expected(case: &Case) -> Vec<u64> {
    let triggers: Vec<Instant> = case
        .triggers
        .iter()
        .map(|t| Instant::from_millis(*t))
        .collect();
    let mut index = 0;
    replay(
        Schedule::new(case.mode, Duration::from_millis(case.period)),
        &triggers,
        |_| {
            let ms = case.runs[index.min(case.runs.len() - 1)];
            index += 1;
            Duration::from_millis(ms)
        },
    )
    .iter()
    .map(|span| span.start.as_millis())
    .collect()
}

/// Timelines without a trigger at the instant a run starts: there the
/// order of the two is a race in a real driver (see `Schedule`).
const CASES: &[Case] = &[
    Case {
        name: "after: trigger during the run and during the cooldown",
        mode: Mode::After,
        period: 20,
        triggers: &[0, 3, 5, 28, 31],
        runs: &[10, 4],
    },
    Case {
        name: "after: trigger after the cooldown runs at once",
        mode: Mode::After,
        period: 20,
        triggers: &[2, 40, 90],
        runs: &[5],
    },
    Case {
        name: "after: d = 0 and zero-length runs",
        mode: Mode::After,
        period: 0,
        triggers: &[1, 4, 6, 8],
        runs: &[0, 5, 0],
    },
    Case {
        name: "throttle: trailing edge and a trigger during the run",
        mode: Mode::Throttle,
        period: 15,
        triggers: &[0, 5, 17, 20, 70],
        runs: &[4],
    },
    Case {
        name: "throttle: run longer than d",
        mode: Mode::Throttle,
        period: 5,
        triggers: &[1, 8, 9, 30],
        runs: &[20, 1],
    },
];

#[test]
fn thread_driver_follows_the_schedule_on_virtual_time() {
    for case in CASES {
        let want = expected(case);
        assert!(!want.is_empty(), "{}", case.name);
        let got = drive_thread(case, 150);
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn pending_trigger_is_discarded_on_shutdown() {
    let clock = ManualClock::new();
    let runs = std::sync::Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let throttled = Builder::new(Mode::After, Duration::from_millis(100))
        .clock(clock.clone())
        .spawn(move || {
            counter.fetch_add(1, StdOrdering::SeqCst);
        })
        .unwrap();
    throttled.trigger();
    throttled.wait_until(|stats| stats.runs_finished == 1);
    throttled.trigger();
    throttled.settle(1);
    let shutdown = throttled.shutdown();
    assert!(shutdown.discarded_trigger);
    assert_eq!(shutdown.stats.runs_started, 1);
    // Time passing after the shutdown does not bring the run back.
    clock.advance(Duration::from_secs(1));
    assert_eq!(runs.load(StdOrdering::SeqCst), 1);
}

#[test]
fn wait_idle_lets_the_pending_run_happen_before_shutdown() {
    let throttled = Throttled::after(Duration::from_millis(20), || {}).unwrap();
    throttled.trigger();
    throttled.wait_until(|stats| stats.runs_finished == 1);
    throttled.trigger();
    throttled.wait_idle();
    let shutdown = throttled.shutdown();
    assert!(!shutdown.discarded_trigger);
    assert_eq!(shutdown.stats.runs_finished, 2);
}

#[test]
fn drop_waits_for_the_run_in_progress() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let f_done = std::sync::Arc::new(AtomicBool::new(false));
    let done = f_done.clone();
    let throttled = Throttled::after(Duration::ZERO, move || {
        entered_tx.send(()).unwrap();
        release_rx.recv_timeout(STUCK).unwrap();
        done.store(true, StdOrdering::SeqCst);
    })
    .unwrap();
    throttled.trigger();
    entered_rx.recv_timeout(STUCK).unwrap();
    let dropper = std::thread::spawn({
        let f_done = f_done.clone();
        move || {
            drop(throttled);
            f_done.load(StdOrdering::SeqCst)
        }
    });
    // Give a broken drop every chance to return before the run ends.
    std::thread::sleep(Duration::from_millis(50));
    assert!(!dropper.is_finished(), "drop returned while f was running");
    release_tx.send(()).unwrap();
    assert!(dropper.join().unwrap(), "drop returned before f did");
}

#[test]
fn a_panic_in_f_is_caught_reported_and_the_trigger_keeps_working() {
    let reported = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let sink = reported.clone();
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let throttled = Builder::new(Mode::After, Duration::ZERO)
        .thread_name("panicky")
        .on_panic(move |message| sink.lock().push(message.to_owned()))
        .spawn(move || {
            if counter.fetch_add(1, StdOrdering::SeqCst) == 0 {
                panic!("gc failed: disk on fire");
            }
        })
        .unwrap();
    throttled.trigger();
    throttled.wait_until(|stats| stats.runs_finished == 1);
    throttled.trigger();
    throttled.wait_until(|stats| stats.runs_finished == 2);
    let shutdown = throttled.shutdown();
    assert_eq!(shutdown.stats.panics, 1);
    assert_eq!(shutdown.stats.runs_finished, 2);
    assert_eq!(calls.load(StdOrdering::SeqCst), 2);
    assert_eq!(*reported.lock(), ["gc failed: disk on fire"]);
}

#[test]
fn real_clock_spaces_runs_by_the_period() {
    let clock = SystemClock::new();
    let spans = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = spans.clone();
    let period = Duration::from_millis(30);
    let throttled = Builder::new(Mode::After, period)
        .clock(clock)
        .spawn(move || {
            let start = clock.now();
            std::thread::sleep(Duration::from_millis(5));
            sink.lock().push((start, clock.now()));
        })
        .unwrap();
    throttled.trigger();
    throttled.wait_until(|stats| stats.runs_started == 1);
    throttled.trigger();
    throttled.trigger();
    throttled.wait_idle();
    let spans = spans.lock().clone();
    assert_eq!(
        spans.len(),
        2,
        "two triggers during the run collapse into one more run"
    );
    let gap = spans[1].0.saturating_duration_since(spans[0].1);
    assert!(gap >= period, "runs only {gap:?} apart");
}

#[test]
fn builder_reports_its_settings() {
    let mut builder = Builder::new(Mode::Throttle, Duration::from_secs(1));
    builder.thread_name("gc");
    let text = format!("{builder:?}");
    assert!(
        text.contains("Throttle") && text.contains("\"gc\""),
        "{text}"
    );
    let throttled = builder.spawn(|| {}).unwrap();
    assert!(format!("{throttled:?}").starts_with("Throttled { schedule: Schedule"));
}

#[test]
fn f_may_drop_the_last_handle() {
    let slot: std::sync::Arc<parking_lot::Mutex<Option<Throttled>>> = Default::default();
    let (done_tx, done_rx) = mpsc::channel();
    let inside = slot.clone();
    let throttled = Throttled::after(Duration::ZERO, move || {
        // Dropping the handle from inside `f` must neither deadlock nor
        // panic: the worker just stops after this run.
        drop(inside.lock().take());
        done_tx.send(()).unwrap();
    })
    .unwrap();
    slot.lock().insert(throttled).trigger();
    done_rx.recv_timeout(STUCK).unwrap();
    assert!(slot.lock().is_none());
}
