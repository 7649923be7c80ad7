//! Property tests: the schedule against a reference model that follows
//! upstream's goroutine step by step, on random operation sequences and on
//! random timelines.

use std::time::Duration;

use proptest::prelude::*;
use reclaim_throttle::{Instant, Mode, Run, Schedule, replay};

/// Upstream's throttle, modelled the way the Go code is written: two flags
/// that the returned function and the worker goroutine share under a mutex,
/// and the goroutine's position in its loop. Time is in milliseconds.
#[derive(Debug)]
struct Upstream {
    /// `Throttle` sleeps before `f`; `After` sleeps after it.
    wait: bool,
    d: u64,
    next: bool,
    running: bool,
    at: Goroutine,
    now: u64,
    starts: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Goroutine {
    /// No goroutine exists.
    Gone,
    /// About to lock the mutex at the top of the loop.
    LoopTop,
    /// In `time.Sleep(d)` until the given instant.
    Sleeping(u64),
    /// Inside `f`.
    InF,
}

impl Upstream {
    fn new(mode: Mode, d: u64) -> Self {
        Self {
            wait: mode == Mode::Throttle,
            d,
            next: false,
            running: false,
            at: Goroutine::Gone,
            now: 0,
            starts: Vec::new(),
        }
    }

    /// The function `throttle` returns: set `next`, and start the goroutine
    /// if none is running. Like `go func()`, this does not run the goroutine;
    /// [`Upstream::step`] does.
    fn call(&mut self) {
        self.next = true;
        if !self.running {
            self.running = true;
            self.at = Goroutine::LoopTop;
        }
    }

    /// Runs the goroutine until it blocks (sleeping, in `f`) or exits.
    fn step(&mut self) {
        loop {
            match self.at {
                Goroutine::LoopTop => {
                    if !self.next {
                        self.running = false;
                        self.at = Goroutine::Gone;
                    } else if self.wait {
                        self.at = Goroutine::Sleeping(self.now + self.d);
                    } else {
                        self.next = false;
                        self.enter_f();
                    }
                }
                Goroutine::Sleeping(until) if until <= self.now => {
                    if self.wait {
                        // After the sleep: clear `next` under the mutex, run f.
                        self.next = false;
                        self.enter_f();
                    } else {
                        self.at = Goroutine::LoopTop;
                    }
                }
                _ => return,
            }
        }
    }

    fn enter_f(&mut self) {
        self.starts.push(self.now);
        self.at = Goroutine::InF;
    }

    /// `f` returns.
    fn f_returns(&mut self) {
        assert_eq!(self.at, Goroutine::InF);
        self.at = if self.wait {
            Goroutine::LoopTop
        } else {
            Goroutine::Sleeping(self.now + self.d)
        };
        self.step();
    }

    /// Moves time to `to`, waking the goroutine at each sleep's end on the
    /// way; with `inclusive` false, a sleep that ends exactly at `to` is left
    /// for later.
    fn advance(&mut self, to: u64, inclusive: bool) {
        while let Goroutine::Sleeping(until) = self.at {
            if until > to || (!inclusive && until == to) {
                break;
            }
            self.now = self.now.max(until);
            self.step();
        }
        self.now = self.now.max(to);
    }
}

/// The schedule driven by a punctual driver, step by step.
#[derive(Debug)]
struct Driven {
    schedule: Schedule,
    now: u64,
    run: Option<Run>,
    starts: Vec<u64>,
}

impl Driven {
    fn new(mode: Mode, d: u64) -> Self {
        Self {
            schedule: Schedule::new(mode, Duration::from_millis(d)),
            now: 0,
            run: None,
            starts: Vec::new(),
        }
    }

    fn poll(&mut self, at: u64) {
        if self.run.is_none()
            && let Some(run) = self.schedule.poll(Instant::from_millis(at))
        {
            assert_eq!(run.started(), Instant::from_millis(at));
            self.starts.push(at);
            self.run = Some(run);
        }
    }

    fn trigger(&mut self) {
        self.schedule.trigger(Instant::from_millis(self.now));
        self.poll(self.now);
    }

    fn finish(&mut self) {
        let run = self.run.take().expect("a run is in progress");
        self.schedule
            .finish(run, Instant::from_millis(self.now))
            .unwrap();
        self.poll(self.now);
    }

    fn advance(&mut self, to: u64) {
        while self.run.is_none()
            && let Some(due) = self.schedule.poll_timeout()
            && due <= Instant::from_millis(to)
        {
            let at = due.as_millis().max(self.now);
            self.now = at;
            self.poll(at);
        }
        self.now = self.now.max(to);
    }
}

#[derive(Clone, Debug)]
enum Operation {
    Trigger,
    Advance(u64),
    FinishRun,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => Just(Operation::Trigger),
        3 => (0u64..80).prop_map(Operation::Advance),
        2 => Just(Operation::FinishRun),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::After), Just(Mode::Throttle)]
}

/// Plays a timeline through the upstream model with the same rule for
/// equal instants as `replay`: triggers, then run ends, then sleeps ending.
fn upstream_timeline(mode: Mode, d: u64, triggers: &[u64], runs: &[u64]) -> Vec<(u64, u64)> {
    let mut model = Upstream::new(mode, d);
    let mut triggers = triggers.to_vec();
    triggers.sort_unstable();
    let mut next_trigger = 0;
    let mut end: Option<u64> = None;
    let mut spans = Vec::new();
    loop {
        let sleep = match model.at {
            Goroutine::Sleeping(until) => Some(until),
            _ => None,
        };
        let Some(t) = [triggers.get(next_trigger).copied(), end, sleep]
            .into_iter()
            .flatten()
            .min()
        else {
            return spans;
        };
        model.advance(t, false);
        while triggers.get(next_trigger) == Some(&t) {
            model.call();
            next_trigger += 1;
        }
        // Settle the instant: a zero-length run ends when it starts, and with
        // d = 0 the next run can start at the same instant.
        loop {
            model.step();
            model.advance(t, true);
            for start in &model.starts[spans.len()..] {
                let index = spans.len().min(runs.len() - 1);
                end = Some(start + runs[index]);
                spans.push((*start, start + runs[index]));
            }
            if end != Some(t) {
                break;
            }
            end = None;
            model.f_returns();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random operation sequences: the schedule and the upstream model start
    /// the same runs at the same instants and agree on their flags after
    /// every operation.
    #[test]
    fn operations_match_upstream(mode in mode(), d in 0u64..60, ops in prop::collection::vec(operation(), 0..80)) {
        let mut model = Upstream::new(mode, d);
        let mut driven = Driven::new(mode, d);
        for op in &ops {
            match op {
                Operation::Trigger => {
                    model.call();
                    model.step();
                    driven.trigger();
                }
                Operation::Advance(by) => {
                    let to = driven.now + by;
                    model.advance(to, true);
                    driven.advance(to);
                }
                Operation::FinishRun => {
                    if driven.run.is_some() {
                        model.f_returns();
                        driven.finish();
                    }
                }
            }
            prop_assert_eq!(&driven.starts, &model.starts, "after {:?}", op);
            prop_assert_eq!(driven.schedule.is_pending(), model.next, "pending after {:?}", op);
            prop_assert_eq!(driven.schedule.is_running(), model.at == Goroutine::InF, "running after {:?}", op);
        }
    }

    /// Random timelines: `replay` matches the upstream model, and the runs
    /// keep upstream's guarantees.
    #[test]
    fn timelines_match_upstream(
        mode in mode(),
        d in 0u64..60,
        triggers in prop::collection::vec(0u64..400, 0..25),
        runs in prop::collection::vec(0u64..70, 1..6),
    ) {
        let want = upstream_timeline(mode, d, &triggers, &runs);
        let instants: Vec<Instant> = triggers.iter().map(|t| Instant::from_millis(*t)).collect();
        let got: Vec<(u64, u64)> = replay(Schedule::new(mode, Duration::from_millis(d)), &instants, |run| {
            let index = usize::try_from(run.seq() - 1).unwrap().min(runs.len() - 1);
            Duration::from_millis(runs[index])
        })
        .iter()
        .map(|span| (span.start.as_millis(), span.end.as_millis()))
        .collect();
        prop_assert_eq!(&got, &want);

        // Runs never overlap and are at least d apart.
        for pair in got.windows(2) {
            prop_assert!(pair[1].0 >= pair[0].1 + d, "{:?}", pair);
        }
        // Coalescing: never more runs than distinct trigger instants.
        let mut distinct = triggers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert!(got.len() <= distinct.len());
        // No lost trigger: every trigger is followed by a run that starts at
        // or after it.
        for t in &triggers {
            prop_assert!(got.iter().any(|(start, _)| start >= t), "trigger at {} lost", t);
        }
        // The first trigger's run starts at once (After) or d later (Throttle).
        if let Some(first) = distinct.first() {
            let expected = if mode == Mode::After { *first } else { first + d };
            prop_assert_eq!(got[0].0, expected);
        }
    }
}
