//! Replay of a trace through a policy on a virtual clock.
//!
//! A [`Sim`] applies a trace's events to a [`MemoryRuntime`] in time order
//! and runs the policy's collectors (reclaim-runtime's, over the same
//! planners a live agent uses) whenever their triggers fire, on a
//! [`ManualClock`] moved to each event's or deadline's time. GC runs take no
//! simulated time. Nothing reads the real clock except the wall-time
//! measurements of [`Timing`], which are kept out of the report.
//!
//! # Order of things at one instant
//!
//! Triggers due at or before an event's time fire before the event. When
//! several fire at once they run in a fixed order: kubelet container GC,
//! kubelet image GC, cron jobs (in policy order), `builder.gc` by
//! BuildKit's trigger, `builder.gc` by the watermark.
//!
//! # Engine state the replay keeps
//!
//! Records a build touched are held in use until the build ends (a
//! reference count per record, since concurrent builds share records), so
//! no collector can take them mid-build. Pods are registered when their
//! first container starts and forgotten when deleted; the engine answers
//! "deleted" for forgotten pods, as the kubelet's pod workers do, so their
//! containers become collectable.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use reclaim_kubelet::{ContainerGcPolicy, ContainerState, ImagePolicy, PodState};
use reclaim_model::{Duration, Id};
use reclaim_policy::Rule;
use reclaim_policy::prune::{CacheRecord, Ordering};
use reclaim_runtime::memory::{Fault, FaultRates};
use reclaim_runtime::{
    BuildCacheCollector, BuildKitTrigger, Clock, ContainerGcCollector, ContainerInfo,
    ImageGcCollector, ImageGcMode, ImageInfo, Instant, ManualClock, MemoryRuntime, MemoryState,
    NoopObserver, PeriodicTrigger, Report, SystemClock, Trigger, WatermarkTrigger, block_on,
};

use crate::metrics::{
    BuildMetrics, CostMetrics, DiskMetrics, GcMetrics, GcTiming, PullMetrics, RUN_REPORT_SCHEMA,
    RunReport, Series, StepMetrics, Timing,
};
use crate::policy::{Cron, CronAction, Policy, ordering_name};
use crate::trace::{
    Annotation, Annotations, DiskEvent, Ev, GcEvent, NONE, Timed, Trace, TraceEvent,
};

/// Options of a replay; [`SimBuilder::build`] starts one over a trace.
///
/// ```
/// use reclaim_sim::{Policy, SimBuilder, Workload};
///
/// let trace = Workload::new().days(2.0).generate()?;
/// let policy = Policy::dockerd_default(trace.header().disk_total);
/// let result = SimBuilder::new(policy).build(&trace).run();
/// assert!(result.report.steps.hits > 0);
/// assert_eq!(result.report.events, trace.len() as u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SimBuilder {
    policy: Policy,
    ordering: Ordering,
    capacity: Option<u64>,
    sample_interval: StdDuration,
    fault_rates: Option<FaultRates>,
    faults: Vec<Fault>,
    check_invariants: bool,
    annotate: bool,
}

impl SimBuilder {
    /// A replay under `policy`, with BuildKit's ordering, the trace's disk,
    /// 10-minute samples, no faults.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ordering: Ordering::BuildKit,
            capacity: None,
            sample_interval: StdDuration::from_secs(600),
            fault_rates: None,
            faults: Vec::new(),
            check_invariants: false,
            annotate: false,
        }
    }

    /// Replaces the policy.
    pub fn policy(&mut self, policy: Policy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// The order in which gc-mode `builder.gc` rules delete. Default
    /// [`Ordering::BuildKit`].
    pub fn ordering(&mut self, ordering: Ordering) -> &mut Self {
        self.ordering = ordering;
        self
    }

    /// The disk's size in bytes; `None` (the default) takes the trace's
    /// `disk_total`.
    pub fn capacity(&mut self, capacity: Option<u64>) -> &mut Self {
        self.capacity = capacity;
        self
    }

    /// Time between samples of the series. Default 10 minutes; at least
    /// 1 ms.
    pub fn sample_interval(&mut self, interval: StdDuration) -> &mut Self {
        self.sample_interval = interval.max(StdDuration::from_millis(1));
        self
    }

    /// Random engine faults on removals and stops (see [`FaultRates`]).
    /// Default none.
    pub fn fault_rates(&mut self, rates: Option<FaultRates>) -> &mut Self {
        self.fault_rates = rates;
        self
    }

    /// Adds a scripted engine fault (an outage until some time, a stuck
    /// container…).
    pub fn inject(&mut self, fault: Fault) -> &mut Self {
        self.faults.push(fault);
        self
    }

    /// Checks the engine's invariants during the replay and lists any
    /// violation in [`RunResult::violations`]: a record held by a running
    /// build never disappears, and a present record's parents are present.
    /// Costs about one lookup per step. Default off.
    pub fn check_invariants(&mut self, check: bool) -> &mut Self {
        self.check_invariants = check;
        self
    }

    /// Keeps what [`RunResult::write_trace`] needs to write the trace back
    /// with outcomes, GC runs and disk samples. Default off.
    pub fn annotate(&mut self, annotate: bool) -> &mut Self {
        self.annotate = annotate;
        self
    }

    /// A replay of `trace`, ready to step.
    pub fn build<'t>(&self, trace: &'t Trace) -> Sim<'t> {
        Sim::new(trace, self)
    }
}

/// What one [`Sim::step`] did.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SimStep {
    /// Applied the trace's event with this index.
    Event(usize),
    /// Fired the triggers due at this time (ms since the start).
    Gc(u64),
}

/// The outcome of a replay.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunResult {
    /// Deterministic measurements.
    pub report: RunReport,
    /// Wall times (not deterministic).
    pub timing: Timing,
    /// Invariant violations found (only with
    /// [`SimBuilder::check_invariants`]).
    pub violations: Vec<String>,
    annotations: Option<Annotations>,
    engine: MemoryRuntime,
}

impl RunResult {
    /// The engine's state at the end of the replay.
    pub fn engine(&mut self) -> &mut MemoryState {
        self.engine.state_mut()
    }

    /// Writes `trace` (the trace this result comes from) in JSON lines,
    /// with this run's outcomes on steps, pulls and builds, and its `gc`
    /// and `disk` lines, if the replay kept them ([`SimBuilder::annotate`]);
    /// otherwise the trace as it is.
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn write_trace(&self, trace: &Trace, w: impl std::io::Write) -> std::io::Result<()> {
        trace.write_with(w, self.annotations.as_ref())
    }
}

/// A replay in progress. Step it with [`Sim::step`] or run it to the end
/// with [`Sim::run`].
pub struct Sim<'t> {
    trace: &'t Trace,
    policy_name: String,
    ordering: Ordering,
    capacity: u64,
    engine: MemoryRuntime,
    clock: ManualClock,
    wall: SystemClock,
    next: usize,
    end_ms: u64,
    builder_gc: Option<BuildCacheCollector>,
    buildkit: Option<BuildKitTrigger>,
    watermark: Option<WatermarkTrigger>,
    containers: Option<(ContainerGcCollector, PeriodicTrigger)>,
    images: Option<(ImageGcCollector, PeriodicTrigger)>,
    crons: Vec<(Cron, PeriodicTrigger)>,
    /// The earliest trigger deadline, when known (`None`: recompute).
    due: Option<Option<u64>>,
    /// A deadline that fired nothing is not retried before this time.
    floor: u64,
    empty_id: Id,
    /// Bytes of untracked data (set by `disk` events).
    other: u64,
    /// Builds started and not ended, whose records are in use.
    running: Vec<u32>,
    pod_seen: Vec<bool>,
    ever_built: Vec<bool>,
    ever_pulled: Vec<bool>,
    /// Per record: 1 + the build in which it last missed.
    missed_in: Vec<u32>,
    /// Per mutable record: its size on its first line, on its latest line,
    /// and in the engine.
    first_size: Vec<Option<u64>>,
    trace_size: Vec<u64>,
    size_now: Vec<u64>,
    held: Vec<Vec<u32>>,
    pool: Vec<Vec<u32>>,
    build_failed: Vec<bool>,
    check: bool,
    /// Whether records carry their descriptions into the engine: only
    /// needed when some rule filters on them.
    descriptions: bool,
    violations: Vec<String>,
    // Measurements.
    disk: DiskMetrics,
    over: bool,
    over_since: u64,
    builds: BuildMetrics,
    steps: StepMetrics,
    rebuilds: CostMetrics,
    cold: CostMetrics,
    pulls: PullMetrics,
    gc: BTreeMap<String, (GcMetrics, GcTiming)>,
    series: Series,
    next_sample: u64,
    annotations: Option<Annotations>,
}

impl<'t> Sim<'t> {
    fn new(trace: &'t Trace, options: &SimBuilder) -> Self {
        let capacity = options.capacity.unwrap_or(trace.header().disk_total);
        let start = trace.header().start;
        let mut engine = MemoryRuntime::new(capacity);
        {
            let state = engine.state_mut();
            state.set_now(start);
            state.set_unknown_pod_state(PodState::Deleted);
            state.reserve(
                trace.records.len(),
                trace.images.len(),
                trace.containers.len(),
            );
            state.set_fault_rates(options.fault_rates);
            for fault in &options.faults {
                state.inject(fault.clone());
            }
        }
        let policy = &options.policy;
        let zero = Instant::ZERO;
        let builder_gc = policy.builder_gc.as_ref().map(|rules| {
            let mut c = BuildCacheCollector::new(rules.clone());
            c.ordering(options.ordering).itemize_skips(false);
            c
        });
        let buildkit = builder_gc.as_ref().map(|_| BuildKitTrigger::new(zero));
        let watermark = match (&builder_gc, policy.watermark) {
            (Some(_), Some(w)) => WatermarkTrigger::from_percent(
                capacity,
                w.low_percent,
                w.high_percent,
                StdDuration::from_secs(60),
            )
            .ok(),
            _ => None,
        };
        let containers = policy.kubelet.and_then(|k| k.containers).map(|p| {
            let mut c = ContainerGcCollector::new(p);
            c.itemize_skips(false);
            (c, PeriodicTrigger::kubelet_containers(zero))
        });
        let images = policy.kubelet.and_then(|k| k.images).map(|p| {
            let mut c = ImageGcCollector::new(p);
            c.itemize_skips(false);
            (c, PeriodicTrigger::kubelet_images(zero))
        });
        let crons = policy
            .crons
            .iter()
            .map(|c| {
                let first = Instant::ZERO + c.first;
                (c.clone(), PeriodicTrigger::new(first, c.period))
            })
            .collect();
        let annotations = options.annotate.then(|| Annotations {
            policy: format!("{} ({})", policy.name, ordering_name(options.ordering)),
            outcomes: vec![Annotation::None; trace.len()],
            extras: Vec::new(),
        });
        let interval = u64::try_from(options.sample_interval.as_millis()).unwrap_or(u64::MAX);
        Self {
            trace,
            policy_name: policy.name.clone(),
            ordering: options.ordering,
            capacity,
            engine,
            clock: ManualClock::new(start),
            wall: SystemClock::new(),
            next: 0,
            end_ms: trace.duration_ms(),
            builder_gc,
            buildkit,
            watermark,
            containers,
            images,
            crons,
            due: None,
            floor: 0,
            empty_id: Id::new(""),
            other: 0,
            running: Vec::new(),
            pod_seen: vec![false; trace.pods.len()],
            ever_built: vec![false; trace.records.len()],
            ever_pulled: vec![false; trace.images.len()],
            missed_in: vec![0; trace.records.len()],
            first_size: vec![None; trace.records.len()],
            trace_size: vec![0; trace.records.len()],
            size_now: vec![0; trace.records.len()],
            held: vec![Vec::new(); trace.builds.len()],
            pool: Vec::new(),
            build_failed: vec![false; trace.builds.len()],
            check: options.check_invariants,
            descriptions: policy_reads_descriptions(policy),
            violations: Vec::new(),
            disk: DiskMetrics::default(),
            over: false,
            over_since: 0,
            builds: BuildMetrics::default(),
            steps: StepMetrics::default(),
            rebuilds: CostMetrics::default(),
            cold: CostMetrics::default(),
            pulls: PullMetrics::default(),
            gc: BTreeMap::new(),
            series: Series {
                interval_ms: interval,
                ..Series::default()
            },
            next_sample: 0,
            annotations,
        }
    }

    /// Applies the next event, or fires the triggers due before it; `None`
    /// once the trace and its duration are over.
    pub fn step(&mut self) -> Option<SimStep> {
        let due = self.next_due();
        let event = self.trace.events.get(self.next).copied();
        match (due, event) {
            (Some(d), Some(e)) if d <= e.t => {
                self.fire(d);
                Some(SimStep::Gc(d))
            }
            (_, Some(e)) => {
                let index = self.next;
                self.apply(e);
                Some(SimStep::Event(index))
            }
            (Some(d), None) if d <= self.end_ms => {
                self.fire(d);
                Some(SimStep::Gc(d))
            }
            _ => None,
        }
    }

    /// Runs to the end and returns the measurements.
    pub fn run(self) -> RunResult {
        self.run_with_progress(|_| {})
    }

    /// Runs to the end, calling `progress` with the number of events
    /// applied so far every 65,536 events and once at the end.
    pub fn run_with_progress(mut self, mut progress: impl FnMut(usize)) -> RunResult {
        let started = self.wall.instant();
        let mut last = 0;
        while self.step().is_some() {
            if self.next - last >= 1 << 16 {
                last = self.next;
                progress(last);
            }
        }
        progress(self.next);
        let elapsed = self.wall.instant().saturating_duration_since(started);
        self.finish(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Events applied so far.
    pub fn events_applied(&self) -> usize {
        self.next
    }

    /// The engine's state (for inspection between steps).
    pub fn engine(&mut self) -> &mut MemoryState {
        self.engine.state_mut()
    }

    // ----- Triggers -----

    fn next_due(&mut self) -> Option<u64> {
        if let Some(due) = self.due {
            return due;
        }
        let mut deadlines = Vec::with_capacity(8);
        if let Some((_, t)) = &self.containers {
            deadlines.push(t.poll_timeout());
        }
        if let Some((_, t)) = &self.images {
            deadlines.push(t.poll_timeout());
        }
        for (_, t) in &self.crons {
            deadlines.push(t.poll_timeout());
        }
        if let Some(t) = &self.buildkit {
            deadlines.push(t.poll_timeout());
        }
        if let Some(t) = &self.watermark {
            deadlines.push(t.poll_timeout());
        }
        let due = deadlines
            .into_iter()
            .flatten()
            .map(|i| i.as_nanos().div_ceil(1_000_000).max(self.floor))
            .min();
        self.due = Some(due);
        due
    }

    /// Fires every trigger due at `at`.
    fn fire(&mut self, at: u64) {
        self.advance_to(at);
        let now = Instant::from_millis(at);
        let time = self.trace.time_at(at);
        self.clock.advance_to(time);
        self.engine.state_mut().set_now(time);
        let mut runs: Vec<(String, Report, u64)> = Vec::new();
        let observer = &NoopObserver;
        self.hold_running();

        if let Some((c, t)) = self.containers.as_mut()
            && let Some(fire) = t.poll(now)
        {
            let w = self.wall.instant();
            let report = block_on(c.run(&self.engine, &self.clock, observer));
            let ns = elapsed_ns(&self.wall, w);
            let _ = t.finish(fire, now);
            runs.push(("kubelet".to_owned(), report, ns));
        }
        if let Some((c, t)) = self.images.as_mut()
            && let Some(fire) = t.poll(now)
        {
            let w = self.wall.instant();
            let report = block_on(c.run(&self.engine, &self.clock, observer));
            let ns = elapsed_ns(&self.wall, w);
            let _ = t.finish(fire, now);
            runs.push(("kubelet".to_owned(), report, ns));
        }
        for (cron, t) in &mut self.crons {
            if let Some(fire) = t.poll(now) {
                let trigger = format!("cron:{}", cron.name);
                for (report, ns) in run_cron(&cron.action, &self.engine, &self.clock, &self.wall) {
                    runs.push((trigger.clone(), report, ns));
                }
                let _ = t.finish(fire, now);
            }
        }
        if let (Some(c), Some(t)) = (self.builder_gc.as_ref(), self.buildkit.as_mut())
            && let Some(fire) = t.poll(now)
        {
            let w = self.wall.instant();
            let report = block_on(c.run(&self.engine, &self.clock, observer));
            let ns = elapsed_ns(&self.wall, w);
            let _ = t.finish(fire, now);
            runs.push(("builder-gc".to_owned(), report, ns));
        }
        if let (Some(c), Some(t)) = (self.builder_gc.as_ref(), self.watermark.as_mut())
            && let Some(fire) = t.poll(now)
        {
            let w = self.wall.instant();
            let report = block_on(c.run(&self.engine, &self.clock, observer));
            let ns = elapsed_ns(&self.wall, w);
            let _ = t.finish(fire, now);
            runs.push(("watermark".to_owned(), report, ns));
        }

        self.release_running();
        if runs.is_empty() {
            // A timer fired without starting a run (BuildKit's cooldown);
            // its trigger now has a later deadline. Never retry this one.
            self.floor = at + 1;
        }
        // Holds put by faults last until the run ends.
        self.engine.state_mut().release_holds();
        for (trigger, report, ns) in runs {
            self.account(at, &trigger, &report, ns);
        }
        self.note_usage(at);
        self.due = None;
    }

    /// Marks every record a running build has used as in use, as
    /// BuildKit's references do, for the collectors about to run. Between
    /// runs nothing reads the flag, so it is set only here.
    fn hold_running(&mut self) {
        let state = self.engine.state_mut();
        for &build in &self.running {
            for &record in &self.held[build as usize] {
                state.set_record_in_use(self.trace.records[record as usize].id.as_str(), true);
            }
        }
    }

    /// Clears what [`Sim::hold_running`] set.
    fn release_running(&mut self) {
        let state = self.engine.state_mut();
        for &build in &self.running {
            for &record in &self.held[build as usize] {
                state.set_record_in_use(self.trace.records[record as usize].id.as_str(), false);
            }
        }
    }

    fn account(&mut self, at: u64, trigger: &str, report: &Report, ns: u64) {
        let name = format!("{trigger}/{}", report.collector.as_str());
        let removed = report
            .deletions
            .iter()
            .filter(|d| d.outcome.is_gone())
            .count() as u64;
        let errors = report.errors.len() as u64;
        let (m, t) = self.gc.entry(name.clone()).or_insert_with(|| {
            (
                GcMetrics {
                    name: name.clone(),
                    ..GcMetrics::default()
                },
                GcTiming {
                    name: name.clone(),
                    ..GcTiming::default()
                },
            )
        });
        m.runs += 1;
        m.runs_with_removals += u64::from(removed > 0);
        m.removed += removed;
        m.bytes_freed += report.bytes_freed;
        m.errors += errors;
        m.aborted += u64::from(report.status == reclaim_runtime::RunStatus::Aborted);
        t.runs += 1;
        t.total_ns += ns;
        t.max_ns = t.max_ns.max(ns);
        if let Some(a) = &mut self.annotations
            && (removed > 0 || errors > 0)
        {
            a.extras.push((
                self.next,
                TraceEvent::Gc(GcEvent {
                    t: at,
                    collector: report.collector.as_str().to_owned(),
                    trigger: trigger.to_owned(),
                    removed,
                    bytes_freed: report.bytes_freed,
                    errors,
                }),
            ));
        }
    }

    // ----- Time, samples, usage -----

    /// Takes the samples due up to `t` (the state has not changed since the
    /// last event or run).
    fn advance_to(&mut self, t: u64) {
        while self.next_sample <= t {
            self.sample(self.next_sample);
            self.next_sample = self.next_sample.saturating_add(self.series.interval_ms);
        }
    }

    fn sample(&mut self, at: u64) {
        let state = self.engine.state_mut();
        let used = state.used();
        let s = &mut self.series;
        s.used.push(used);
        s.cache.push(state.cache_bytes());
        s.images.push(state.image_bytes());
        s.containers
            .push(used.saturating_sub(state.cache_bytes() + state.image_bytes() + self.other));
        s.misses.push(self.steps.misses);
        s.rebuilds.push(self.rebuilds.count);
        s.rebuild_seconds.push(self.rebuilds.seconds);
        if let Some(a) = &mut self.annotations {
            a.extras.push((
                self.next,
                TraceEvent::Disk(DiskEvent {
                    t: at,
                    total: Some(self.capacity),
                    used: Some(used),
                    other: None,
                }),
            ));
        }
    }

    /// Updates the peak and the time over capacity after a change at `t`.
    #[inline]
    fn note_usage(&mut self, t: u64) {
        let used = self.engine.state_mut().used();
        if used > self.disk.peak_used {
            self.disk.peak_used = used;
            self.disk.peak_at_ms = t;
        }
        let over = used > self.capacity;
        if over != self.over {
            if over {
                self.over_since = t;
                self.disk.over_capacity_periods += 1;
            } else {
                self.disk.over_capacity_ms += t - self.over_since;
            }
            self.over = over;
        }
    }

    // ----- Events -----

    fn annotate(&mut self, index: usize, note: Annotation) {
        if let Some(a) = &mut self.annotations {
            a.outcomes[index] = note;
        }
    }

    fn apply(&mut self, timed: Timed) {
        let index = self.next;
        self.next += 1;
        let t = timed.t;
        if t >= self.next_sample {
            self.advance_to(t);
        }
        let trace = self.trace;
        let at = trace.time_at(t);
        match timed.ev {
            Ev::BuildStart { build } => {
                self.builds.total += 1;
                self.held[build as usize] = self.pool.pop().unwrap_or_default();
                self.running.push(build);
            }
            Ev::Step {
                build,
                record,
                used_by,
                cost_ms,
                size,
            } => {
                if used_by != NONE && self.missed_in[used_by as usize] != build + 1 {
                    let r = record as usize;
                    if trace.records[r].mutable {
                        self.first_size[r].get_or_insert(size);
                        self.trace_size[r] = size;
                    }
                    self.steps.skipped_mounts += 1;
                    self.annotate(index, Annotation::Skipped);
                    return;
                }
                let def = &trace.records[record as usize];
                let r = record as usize;
                let state = self.engine.state_mut();
                self.steps.total += 1;
                let cost = f64::from(cost_ms) / 1000.0;
                // A mutable record (a cache mount) grows by what the trace
                // says it grew since its previous line; recreated, it starts
                // again from its first size.
                let (size, grown) = if def.mutable {
                    let first = *self.first_size[r].get_or_insert(size);
                    let growth = size.saturating_sub(self.trace_size[r]);
                    self.trace_size[r] = size;
                    (first, self.size_now[r].saturating_add(growth))
                } else {
                    (size, size)
                };
                let note = if state.use_record(def.id.as_str(), at) {
                    if def.mutable && grown != self.size_now[r] {
                        state.set_record_size(def.id.as_str(), grown);
                        self.size_now[r] = grown;
                    }
                    self.steps.hits += 1;
                    self.steps.hit_bytes += grown;
                    Annotation::Hit
                } else {
                    self.size_now[r] = size;
                    let record_value = CacheRecord {
                        id: def.id.clone(),
                        size,
                        record_type: def.record_type.clone(),
                        in_use: false,
                        shared: false,
                        mutable: def.mutable,
                        created_at: at,
                        last_used_at: Some(at),
                        usage_count: 1,
                        description: if self.descriptions {
                            def.description.clone()
                        } else {
                            String::new()
                        },
                        parents: def.parents.clone(),
                        rebuild_seconds: Some(cost),
                    };
                    if let Err(e) = state.add_record(record_value) {
                        self.violations.push(format!("step at {t} ms: {e}"));
                    }
                    self.steps.misses += 1;
                    self.steps.miss_bytes += size;
                    let kind = if self.ever_built[r] {
                        &mut self.rebuilds
                    } else {
                        &mut self.cold
                    };
                    kind.count += 1;
                    kind.seconds += cost;
                    kind.bytes += size;
                    self.ever_built[r] = true;
                    self.missed_in[r] = build + 1;
                    Annotation::Miss
                };
                if self.check {
                    self.check_parents(record, t);
                }
                self.held[build as usize].push(record);
                self.annotate(index, note);
                self.note_usage(t);
                if self.over {
                    self.build_failed[build as usize] = true;
                }
            }
            Ev::BuildEnd { build } => {
                let mut held = std::mem::take(&mut self.held[build as usize]);
                if self.check {
                    let state = self.engine.state_mut();
                    for &record in &held {
                        let id = trace.records[record as usize].id.as_str();
                        if !state.has_record(id) {
                            self.violations.push(format!(
                                "build_end at {t} ms: record {id} held by build {} is gone",
                                trace.builds[build as usize].id
                            ));
                        }
                    }
                }
                held.clear();
                if let Some(i) = self.running.iter().position(|&b| b == build) {
                    self.running.swap_remove(i);
                }
                self.pool.push(held);
                if self.build_failed[build as usize] {
                    self.builds.would_fail += 1;
                    self.annotate(index, Annotation::Failed);
                }
                if let Some(trigger) = &mut self.buildkit {
                    trigger.request(Instant::from_millis(t));
                    self.due = None;
                }
            }
            Ev::Record { initial } => {
                let init = &trace.initial[initial as usize];
                let def = &trace.records[init.record as usize];
                let state = self.engine.state_mut();
                if !state.has_record(def.id.as_str()) {
                    let record_value = CacheRecord {
                        id: def.id.clone(),
                        size: init.size,
                        record_type: def.record_type.clone(),
                        in_use: false,
                        shared: false,
                        mutable: def.mutable,
                        created_at: init.created_at.unwrap_or(at),
                        last_used_at: init.last_used_at,
                        usage_count: init.usage_count,
                        description: def.description.clone(),
                        parents: def.parents.clone(),
                        rebuild_seconds: Some(f64::from(init.cost_ms) / 1000.0),
                    };
                    if let Err(e) = state.add_record(record_value) {
                        self.violations.push(format!("record at {t} ms: {e}"));
                    }
                }
                let r = init.record as usize;
                if def.mutable {
                    self.first_size[r].get_or_insert(init.size);
                    self.trace_size[r] = init.size;
                    self.size_now[r] = init.size;
                }
                self.ever_built[r] = true;
                self.note_usage(t);
            }
            Ev::Pull {
                image,
                cost_ms,
                size,
            } => {
                let def = &trace.images[image as usize];
                let state = self.engine.state_mut();
                self.pulls.total += 1;
                if state.image(def.id.as_str()).is_some() {
                    self.pulls.hits += 1;
                    self.annotate(index, Annotation::Hit);
                } else {
                    let mut info = ImageInfo::new(def.id.clone(), size, at);
                    info.pinned = def.pinned;
                    info.repo_tags.clone_from(&def.tags);
                    if let Err(e) = state.pull_image(info) {
                        self.violations.push(format!("pull at {t} ms: {e}"));
                    }
                    self.pulls.misses += 1;
                    let i = image as usize;
                    if self.ever_pulled[i] {
                        self.pulls.repulls += 1;
                        self.pulls.repull_bytes += size;
                        self.pulls.repull_seconds += f64::from(cost_ms) / 1000.0;
                    }
                    self.ever_pulled[i] = true;
                    self.annotate(index, Annotation::Miss);
                    self.note_usage(t);
                }
            }
            Ev::ImageRemove { image } => {
                let id = trace.images[image as usize].id.as_str();
                let state = self.engine.state_mut();
                let removable = state
                    .image(id)
                    .is_some_and(|i| !i.pinned && state.image_users(id) == 0);
                if removable {
                    state.delete_image(id);
                    self.note_usage(t);
                }
            }
            Ev::ContainerStart { container, size } => {
                let def = &trace.containers[container as usize];
                let pod = if def.pod == NONE {
                    self.empty_id.clone()
                } else {
                    trace.pods[def.pod as usize].clone()
                };
                let info = ContainerInfo {
                    id: def.id.clone(),
                    pod_uid: pod,
                    name: def.name.clone(),
                    state: ContainerState::Running,
                    created: at,
                    sandbox_id: None,
                    image_id: trace.images[def.image as usize].id.clone(),
                    labels: BTreeMap::new(),
                };
                let state = self.engine.state_mut();
                if def.pod != NONE && !self.pod_seen[def.pod as usize] {
                    self.pod_seen[def.pod as usize] = true;
                    state.set_pod_state(info.pod_uid.as_str(), PodState::Active);
                }
                if let Err(e) = state.create_container(info) {
                    self.violations
                        .push(format!("container_start at {t} ms: {e}"));
                }
                if size > 0 {
                    state.set_container_size(def.id.as_str(), size);
                    self.note_usage(t);
                }
            }
            Ev::ContainerExit { container, size } => {
                let id = trace.containers[container as usize].id.as_str();
                let state = self.engine.state_mut();
                state.exit_container(id);
                if size != u64::MAX {
                    state.set_container_size(id, size);
                    self.note_usage(t);
                }
            }
            Ev::ContainerRemove { container } => {
                let id = trace.containers[container as usize].id.as_str();
                self.engine.state_mut().delete_container(id);
                self.note_usage(t);
            }
            Ev::PodDelete { pod } => {
                self.engine
                    .state_mut()
                    .forget_pod(trace.pods[pod as usize].as_str());
            }
            Ev::Disk { sample } => {
                if let Some(other) = trace.disks[sample as usize].other {
                    self.other = other;
                    self.engine.state_mut().set_other_used(other);
                    self.note_usage(t);
                }
            }
        }
        if let Some(w) = &mut self.watermark {
            w.observe(
                self.engine.state_mut().disk_stats(),
                Instant::from_millis(t),
            );
            self.due = None;
        }
    }

    fn check_parents(&mut self, record: u32, t: u64) {
        let def = &self.trace.records[record as usize];
        let state = self.engine.state_mut();
        for parent in &def.parents {
            if !state.has_record(parent.as_str()) {
                self.violations.push(format!(
                    "step at {t} ms: record {} is present but its parent {parent} is not",
                    def.id
                ));
            }
        }
    }

    fn finish(mut self, replay_ns: u64) -> RunResult {
        let end = self.end_ms;
        self.advance_to(end);
        if self.over {
            self.disk.over_capacity_ms += end.saturating_sub(self.over_since);
        }
        self.disk.final_used = self.engine.state_mut().used();
        let steps = &mut self.steps;
        if steps.total > 0 {
            steps.hit_ratio = steps.hits as f64 / steps.total as f64;
        }
        let bytes = steps.hit_bytes + steps.miss_bytes;
        if bytes > 0 {
            steps.byte_hit_ratio = steps.hit_bytes as f64 / bytes as f64;
        }
        let (gc, gc_timing): (Vec<GcMetrics>, Vec<GcTiming>) = self.gc.into_values().unzip();
        let bytes_freed = gc.iter().map(|g| g.bytes_freed).sum();
        let report = RunReport {
            schema: RUN_REPORT_SCHEMA,
            policy: self.policy_name,
            ordering: ordering_name(self.ordering).to_owned(),
            disk_total: self.capacity,
            start: self.trace.header().start,
            duration_ms: end,
            events: self.next as u64,
            disk: self.disk,
            builds: self.builds,
            steps: self.steps,
            rebuilds: self.rebuilds,
            cold: self.cold,
            pulls: self.pulls,
            gc,
            bytes_freed,
            series: self.series,
        };
        RunResult {
            report,
            timing: Timing {
                replay_ns,
                gc: gc_timing,
            },
            violations: self.violations,
            annotations: self.annotations,
            engine: self.engine,
        }
    }
}

/// Whether any rule of the policy filters on record descriptions (the
/// only way a collector could observe them).
fn policy_reads_descriptions(policy: &Policy) -> bool {
    let mut rules: Vec<&Rule> = policy.builder_gc.iter().flatten().collect();
    for cron in &policy.crons {
        if let CronAction::BuildPrune(rule) = &cron.action {
            rules.push(rule);
        }
    }
    rules
        .iter()
        .any(|r| r.filter.iter().any(|f| f.contains("description")))
}

fn elapsed_ns(wall: &SystemClock, since: Instant) -> u64 {
    u64::try_from(wall.instant().saturating_duration_since(since).as_nanos()).unwrap_or(u64::MAX)
}

/// The collectors of one cron run, with their reports and wall times.
fn run_cron(
    action: &CronAction,
    engine: &MemoryRuntime,
    clock: &ManualClock,
    wall: &SystemClock,
) -> Vec<(Report, u64)> {
    let observer = &NoopObserver;
    let mut out = Vec::new();
    match action {
        CronAction::BuildPrune(rule) => {
            let mut c = BuildCacheCollector::new(vec![rule.clone()]);
            c.itemize_skips(false);
            let w = wall.instant();
            let report = block_on(c.run(engine, clock, observer));
            out.push((report, elapsed_ns(wall, w)));
        }
        CronAction::SystemPruneAll => {
            // `docker container prune`: every container not running.
            let policy =
                ContainerGcPolicy::new(Duration::ZERO, 0, 0).expect("a zero minimum age is valid");
            let mut containers = ContainerGcCollector::new(policy);
            containers.evict_non_deleted_pods(true).itemize_skips(false);
            let w = wall.instant();
            let report = block_on(containers.run(engine, clock, observer));
            out.push((report, elapsed_ns(wall, w)));
            // `docker image prune -a`: every image no container uses.
            let policy = ImagePolicy::new(100, 0, Duration::ZERO, Duration::ZERO)
                .expect("thresholds in range");
            let mut images = ImageGcCollector::new(policy);
            images
                .mode(ImageGcMode::DeleteUnusedImages)
                .itemize_skips(false);
            let w = wall.instant();
            let report = block_on(images.run(engine, clock, observer));
            out.push((report, elapsed_ns(wall, w)));
            // `docker builder prune -af`.
            let mut cache = BuildCacheCollector::new(vec![Rule {
                all: true,
                ..Rule::default()
            }]);
            cache.itemize_skips(false);
            let w = wall.instant();
            let report = block_on(cache.run(engine, clock, observer));
            out.push((report, elapsed_ns(wall, w)));
        }
    }
    out
}
