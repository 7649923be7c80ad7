//! Replay speed of the simulator: trace events applied per second.
//!
//! The trace is the built-in CI-node workload (30 days, seed 1, about
//! 180,000 events). Four figures:
//!
//! - `replay/none`: the events alone through the in-memory engine, no
//!   collector (the replay's own cost; the target is 10 million
//!   events per second);
//! - `replay/dockerd-default`: the same trace with dockerd's default
//!   `builder.gc` and the kubelet's GC, collectors included (dominated by
//!   the ~58,000 GC runs);
//! - `read`: parsing the JSON-lines trace into memory;
//! - `generate`: generating the workload.
//!
//! Each iteration's final engine is dropped outside the timing
//! (`iter_with_large_drop`): tearing down hundreds of thousands of items is
//! not replaying them.
//!
//! Run with `cargo bench -p reclaim-benches --bench sim`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reclaim_sim::{KubeletGc, Policy, SimBuilder, Trace, Workload};

fn bench(c: &mut Criterion) {
    let trace = Workload::new()
        .generate()
        .expect("the default workload is valid");
    let events = trace.len() as u64;
    let disk = trace.header().disk_total;

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(events));
    group.sample_size(20);
    group.bench_function("none", |b| {
        let options = SimBuilder::new(Policy::none());
        b.iter_with_large_drop(|| options.build(black_box(&trace)).run());
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("dockerd-default", |b| {
        let policy = Policy::dockerd_default(disk).with_kubelet(Some(KubeletGc::default()));
        let options = SimBuilder::new(policy);
        b.iter_with_large_drop(|| options.build(black_box(&trace)).run());
    });
    group.finish();

    let text = trace.to_json_lines();
    let mut group = c.benchmark_group("trace");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function("read", |b| {
        b.iter_with_large_drop(|| Trace::from_json_lines(black_box(&text)).expect("valid"));
    });
    group.bench_function("generate", |b| {
        b.iter_with_large_drop(|| Workload::new().generate().expect("valid"));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
