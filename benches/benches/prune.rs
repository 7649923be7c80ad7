//! BuildKit prune planning over realistic synthetic snapshots.
//!
//! The policy is moby's default for a 100 GiB disk (spec 1.5): the temporary
//! rule (three type filters, 48h keep-duration, max-used 1519933825) and
//! rules 2-4 with reserved 11e9, max-used 81e9, min-free 21e9 (rule 2 with a
//! 60-day keep-duration, rule 4 with `all`). The snapshot holds 60e9 bytes
//! of cache and the disk has 9e9 bytes free, so the run frees about half of
//! the bytes, nearly all of it in gc mode (one ranked deletion per pass).
//!
//! Before timing, each size is planned once under the counting allocator and
//! the bench prints the deletions, the freed share, and the peak extra
//! allocation per record (everything `plan` allocates, its result
//! included, beyond the snapshot it reads).
//!
//! `synth` builds parent ids as clones of the records' ids, as any snapshot
//! built in memory does, and the planner resolves those by address.
//! `fast-fresh-parents` plans the 1M snapshot with every parent id a
//! separate allocation, as after parsing a snapshot file, which takes the
//! planner's join by hash instead.
//!
//! Run: `cargo bench -p reclaim-benches --bench prune`.

use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reclaim_benches::CountingAlloc;
use reclaim_model::{DiskStats, Duration, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{Snapshot, plan, plan_reference};
use reclaim_policy::synth::SynthConfig;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// 100 GiB.
const DISK_TOTAL: u64 = 100 << 30;
/// Free bytes on the disk during the run.
const DISK_FREE: u64 = 9_000_000_000;
/// Bytes of cache in the snapshot.
const CACHE_BYTES: u64 = 60_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_717_200_000)
}

/// moby's default policy for a 100 GiB disk.
fn default_policy() -> Vec<Rule> {
    let limits = |all: bool, keep_hours: i64| Rule {
        all,
        filter: Vec::new(),
        keep_duration: Duration::from_hours(keep_hours),
        reserved_space: 11_000_000_000,
        max_used_space: 81_000_000_000,
        min_free_space: 21_000_000_000,
    };
    vec![
        Rule {
            all: false,
            filter: vec![
                "type==source.local".to_owned(),
                "type==exec.cachemount".to_owned(),
                "type==source.git.checkout".to_owned(),
            ],
            keep_duration: Duration::from_hours(48),
            reserved_space: 0,
            max_used_space: 1_519_933_825,
            min_free_space: 0,
        },
        limits(false, 24 * 60),
        limits(false, 0),
        limits(true, 0),
    ]
}

fn snapshot(records: usize) -> Snapshot {
    SynthConfig {
        records,
        total_bytes: CACHE_BYTES,
        ..SynthConfig::new(now())
    }
    .generate(1)
}

/// The same snapshot with every parent id in its own allocation.
fn fresh_parents(snap: &Snapshot) -> Snapshot {
    let mut records = snap.records().to_vec();
    for record in &mut records {
        record.parents = record.parents.iter().map(|p| Id::new(p.as_str())).collect();
    }
    Snapshot::new(records).expect("same ids as a valid snapshot")
}

/// Plans once under the counting allocator and prints what the run does and
/// what it costs in memory.
fn report(name: &str, snap: &Snapshot, rules: &[Rule], disk: DiskStats) {
    let planner = if name.starts_with("fast") {
        plan
    } else {
        plan_reference
    };
    let (p, peak) = ALLOC.measure(|| planner(snap, rules, disk, now()));
    let total: u64 = snap.records().iter().map(|r| r.size).sum();
    println!(
        "prune/{name}/{}: {} deletions, freed {:.1}% of {} bytes, peak extra allocation {} bytes = {:.1} bytes/record",
        snap.len(),
        p.deletions.len(),
        100.0 * p.bytes_freed() as f64 / total as f64,
        total,
        peak,
        peak as f64 / snap.len() as f64
    );
}

fn bench(c: &mut Criterion) {
    let rules = default_policy();
    let disk = DiskStats::new(DISK_TOTAL, DISK_FREE);
    let mut group = c.benchmark_group("prune");
    group.sample_size(10);
    group.warm_up_time(StdDuration::from_secs(1));
    group.measurement_time(StdDuration::from_secs(10));
    for records in [10_000usize, 100_000, 1_000_000] {
        let snap = snapshot(records);
        report("fast", &snap, &rules, disk);
        group.throughput(Throughput::Elements(records as u64));
        group.bench_with_input(BenchmarkId::new("fast", records), &snap, |b, snap| {
            b.iter(|| plan(black_box(snap), &rules, disk, now()));
        });
        if records <= 10_000 {
            report("reference", &snap, &rules, disk);
            group.bench_with_input(BenchmarkId::new("reference", records), &snap, |b, snap| {
                b.iter(|| plan_reference(black_box(snap), &rules, disk, now()));
            });
        }
    }
    let fresh = fresh_parents(&snapshot(1_000_000));
    report("fast-fresh-parents", &fresh, &rules, disk);
    group.throughput(Throughput::Elements(fresh.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("fast-fresh-parents", fresh.len()),
        &fresh,
        |b, snap| {
            b.iter(|| plan(black_box(snap), &rules, disk, now()));
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
