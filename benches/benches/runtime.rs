//! The in-memory engine and the collectors' overhead over the planners.
//!
//! - `memory_events`: a replay-like stream of engine mutations (cache hits,
//!   new records, container create / exit / remove) through
//!   `MemoryRuntime::state_mut`, as the simulator drives it. The figure is
//!   per event.
//! - `build_cache_collector`: one BuildKit GC run over a synthetic cache
//!   (list, plan, remove one record at a time, report) against planning
//!   alone, for 10,000 and 100,000 records.
//!
//! Run with `cargo bench -p reclaim-benches --bench runtime`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use reclaim_kubelet::ContainerState;
use reclaim_model::{DiskStats, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{self, CacheRecord, Snapshot};
use reclaim_runtime::{
    BuildCacheCollector, ContainerInfo, ManualClock, MemoryRuntime, NoopObserver, block_on,
};

/// Events per iteration of `memory_events`.
const EVENTS: u64 = 100_000;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000 + secs)
}

/// An engine with `records` cache records in chains of ten, each used once.
fn engine(records: usize) -> MemoryRuntime {
    let mut rt = MemoryRuntime::new(u64::MAX / 2);
    let s = rt.state_mut();
    for i in 0..records {
        let mut r = CacheRecord::new(format!("r{i:07}"), 1_000 + (i as u64 * 7919) % 50_000);
        r.last_used_at = Some(t((i as i64 * 37) % 100_000));
        r.usage_count = 1 + (i as u64 * 13) % 7;
        if i % 10 != 0 {
            r.parents = vec![Id::new(format!("r{:07}", i - 1))];
        }
        s.add_record(r).unwrap();
    }
    rt
}

fn memory_events(c: &mut Criterion) {
    let ids: Vec<Id> = (0..10_000).map(|i| Id::new(format!("r{i:07}"))).collect();
    let containers: Vec<Id> = (0..1_000).map(|i| Id::new(format!("c{i:05}"))).collect();
    let image = Id::new("sha256:ci-image");
    let mut group = c.benchmark_group("memory_events");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("mixed", |b| {
        b.iter_batched_ref(
            || engine(10_000),
            |rt| {
                let s = rt.state_mut();
                for e in 0..EVENTS {
                    let at = t(200_000 + e as i64);
                    match e % 10 {
                        // Cache hits and misses dominate a build trace.
                        0..=6 => {
                            black_box(
                                s.use_record(ids[(e * 7_919 % 10_000) as usize].as_str(), at),
                            );
                        }
                        7 => {
                            let c = &containers[(e / 10 % 1_000) as usize];
                            if s.container(c.as_str()).is_none() {
                                let info = ContainerInfo::new(
                                    c.clone(),
                                    c.clone(),
                                    image.clone(),
                                    ContainerState::Running,
                                    at,
                                );
                                s.create_container(info).unwrap();
                            }
                        }
                        8 => {
                            s.exit_container(containers[(e / 10 % 1_000) as usize].as_str());
                        }
                        _ => {
                            s.delete_container(containers[(e / 10 % 1_000) as usize].as_str());
                        }
                    }
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn build_cache_collector(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_cache_collector");
    group.sample_size(10);
    for records in [10_000usize, 100_000] {
        let base = engine(records);
        let total = base.lock().cache_bytes() as i64;
        // Keep half of the cache: about half of the records go, one ranked
        // deletion at a time.
        let rules = vec![Rule {
            max_used_space: total / 2,
            ..Rule::default()
        }];
        let snapshot: Vec<CacheRecord> = base.lock().records().cloned().collect();
        let plan = prune::plan(
            &Snapshot::new(snapshot.clone()).unwrap(),
            &rules,
            DiskStats::default(),
            t(200_000),
        );
        eprintln!(
            "build_cache_collector/{records}: {} deletions, {} bytes of {total}",
            plan.deletions.len(),
            plan.bytes_freed()
        );
        group.bench_function(format!("plan_only/{records}"), |b| {
            b.iter_batched(
                || Snapshot::new(snapshot.clone()).unwrap(),
                |snap| black_box(prune::plan(&snap, &rules, DiskStats::default(), t(200_000))),
                BatchSize::LargeInput,
            );
        });
        let collector = BuildCacheCollector::new(rules.clone());
        let state = base.into_state();
        group.bench_function(format!("collector_run/{records}"), |b| {
            b.iter_batched(
                || MemoryRuntime::from_state(state.clone()),
                |rt| {
                    let clock = ManualClock::new(t(200_000));
                    black_box(block_on(collector.run(&rt, &clock, &NoopObserver)))
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, memory_events, build_cache_collector);
criterion_main!(benches);
