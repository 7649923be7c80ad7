//! An embedder's build service: an in-memory engine, BuildKit's GC with a
//! daemon.json policy, and BuildKit's trigger, on virtual time.
//!
//! ```text
//! cargo run -p reclaim-examples --example embed_memory
//! ```
//!
//! The service runs a build every five minutes for two hours. Each build
//! reuses a base layer and a dependency cache mount, and adds three fresh
//! layers. As in BuildKit, GC runs one second after the service starts and
//! one second after every build, at most once a minute; every run applies
//! the whole policy and returns a report. The program prints one line per
//! GC run and the last report in full. Time is a `ManualClock` moved by
//! the loop, so the output is the same on every machine; swapping in
//! `SystemClock` and sleeping until `poll_timeout` gives the real thing.

use std::time::Duration;

use anyhow::Context as _;
use reclaim_model::{ByteSize, Id, Timestamp};
use reclaim_policy::config;
use reclaim_policy::prune::{CacheRecord, RecordType};
use reclaim_runtime::{
    BuildCacheCollector, BuildKitTrigger, Clock, CollectorKind, ManualClock, MemoryRuntime,
    Observer, Report, Trigger, block_on,
};

const MB: u64 = 1_000_000;

/// Keep cache mounts unused for 30 minutes at most, and the whole cache
/// under 4 GB.
const DAEMON_JSON: &str = r#"{"builder": {"gc": {"policy": [
    {"filter": ["type=exec.cachemount", "unused-for=30m"], "maxUsedSpace": "512MB"},
    {"maxUsedSpace": "4GB"}
]}}}"#;

/// Prints BuildKit's log line, as `TracingObserver` would log it.
struct PrintObserver;

impl Observer for PrintObserver {
    fn run_finished(&self, report: &Report) {
        if report.collector == CollectorKind::BuildCache && report.bytes_freed > 0 {
            println!("          gc cleaned up {} bytes", report.bytes_freed);
        }
    }
}

/// One build at the clock's time: a cache hit on the base layer and the
/// dependency mount, then three new layers on top of the base.
fn build(engine: &mut MemoryRuntime, clock: &ManualClock, n: u32) -> anyhow::Result<()> {
    let now = clock.now();
    let state = engine.state_mut();
    for shared in ["base", "deps-cache"] {
        if !state.use_record(shared, now) {
            let (size, kind) = match shared {
                "base" => (800 * MB, RecordType::Regular),
                _ => (300 * MB, RecordType::ExecCachemount),
            };
            let mut record = CacheRecord::new(shared, size);
            record.record_type = kind;
            record.created_at = now;
            record.last_used_at = Some(now);
            record.usage_count = 1;
            state.add_record(record)?;
        }
    }
    let mut parent = Id::new("base");
    for step in 0u64..3 {
        let id = Id::new(format!("build{n:02}-step{step}"));
        let mut layer = CacheRecord::new(id.clone(), 150 * MB + step * 50 * MB);
        layer.created_at = now;
        layer.last_used_at = Some(now);
        layer.usage_count = 1;
        layer.parents = vec![parent];
        state.add_record(layer)?;
        parent = id;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let start = Timestamp::parse_rfc3339("2024-06-01T09:00:00Z")?;
    let clock = ManualClock::new(start);
    let mut engine = MemoryRuntime::new(50_000 * MB);

    let (gc_config, diagnostics) = config::parse(DAEMON_JSON).context("reading daemon.json")?;
    for d in &diagnostics {
        println!("daemon.json: {}", d.message);
    }
    let effective = config::effective_rules(&gc_config, Some(50_000 * MB), start)
        .context("converting the policy")?;
    let collector = BuildCacheCollector::new(effective.rules);

    let mut trigger = BuildKitTrigger::new(clock.instant());
    let builds: Vec<Duration> = (1..=24).map(|i| Duration::from_secs(i * 300)).collect();
    let mut next_build = builds.iter().peekable();
    let mut last: Option<Report> = None;
    let mut n = 0;
    loop {
        // Sleep until the next build or the next GC deadline, whichever is
        // first (here: move the virtual clock there).
        let build_at = next_build
            .peek()
            .map(|d| reclaim_runtime::Instant::ZERO + **d);
        let Some(wake) = [build_at, trigger.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        clock.advance(wake.saturating_duration_since(clock.instant()));
        let now = clock.instant();

        if build_at == Some(now) {
            next_build.next();
            n += 1;
            build(&mut engine, &clock, n)?;
            trigger.request(now);
        }
        if let Some(fire) = trigger.poll(now) {
            let report = block_on(collector.run(&engine, &clock, &PrintObserver));
            println!(
                "{}  gc run #{}: {} records deleted, {} freed; cache now {}",
                clock.now(),
                fire.seq(),
                report.removed_ids().count(),
                ByteSize(report.bytes_freed),
                ByteSize(engine.state_mut().cache_bytes()),
            );
            // The run took no virtual time; a real one would end later.
            trigger.finish(fire, clock.instant())?;
            last = Some(report);
        }
    }
    if let Some(report) = last {
        println!("\nThe last report:\n{report}");
    }
    Ok(())
}
