//! Property tests of the prune planners.
//!
//! Random snapshots are small and dense in collisions on purpose: few
//! distinct last-used times and usage counts (so scores tie often), deep
//! parent chains, shared ancestors, in-use children, never-used records,
//! times at or before Go's zero time, parents missing from the snapshot,
//! and rule lists mixing filters (a few that do not parse), keep-durations
//! (negative too) and all three limits (negative too).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use reclaim_model::{DiskStats, Duration, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{
    CacheRecord, DeletionReason, KeepReason, Mode, Ordering, PrunePlan, RecordType, Snapshot, Stop,
    plan, plan_reference, plan_with,
};

const BASE: i64 = 1_717_200_000;

fn now() -> Timestamp {
    Timestamp::from_unix_secs(BASE + 6 * 3600)
}

/// One record's random fields; parents are indices resolved later.
#[derive(Clone, Debug)]
struct Raw {
    size: u64,
    kind: u8,
    in_use: bool,
    shared: bool,
    mutable: bool,
    last_used: Option<i64>,
    usage: u64,
    created: i64,
    description: u8,
    parents: Vec<usize>,
    chain: bool,
    ghost_parent: bool,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        prop_oneof![4 => 0u64..60, 1 => 0u64..5_000],
        0u8..20,
        prop::bool::weighted(0.12),
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.2),
        prop_oneof![
            2 => Just(None),
            8 => (0i64..7).prop_map(|h| Some(BASE + h * 3600)),
            1 => (0i64..4).prop_map(|k| Some(-62_135_596_800 - k)),
            1 => (0i64..30_000).prop_map(|s| Some(BASE + s)),
        ],
        prop_oneof![6 => 0u64..4, 1 => 0u64..1000],
        0i64..5,
        0u8..4,
        prop::collection::vec(0usize..64, 0..3),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(
                size,
                kind,
                in_use,
                shared,
                mutable,
                last_used,
                usage,
                created,
                description,
                parents,
                chain,
                ghost_parent,
            )| Raw {
                size,
                kind,
                in_use,
                shared,
                mutable,
                last_used,
                usage,
                created,
                description,
                parents,
                chain,
                ghost_parent,
            },
        )
}

fn build(raws: &[Raw]) -> Vec<CacheRecord> {
    let n = raws.len();
    raws.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rec = CacheRecord::new(format!("r{i}"), r.size);
            rec.record_type = match r.kind {
                0..=9 => RecordType::Regular,
                10 => RecordType::Internal,
                11 => RecordType::Frontend,
                12 | 13 => RecordType::SourceLocal,
                14 | 15 => RecordType::ExecCachemount,
                16 => RecordType::SourceGitCheckout,
                17 => RecordType::parse(""),
                _ => RecordType::parse("custom.kind"),
            };
            rec.in_use = r.in_use;
            rec.shared = r.shared;
            rec.mutable = r.mutable;
            rec.last_used_at = r.last_used.map(Timestamp::from_unix_secs);
            rec.usage_count = if r.last_used.is_none() { 0 } else { r.usage };
            rec.created_at = Timestamp::from_unix_secs(BASE - 86_400 + r.created * 60);
            rec.description = ["", "a", "build step", "x y"][r.description as usize].to_owned();
            // Mostly a DAG (parents earlier in the list), with a long chain
            // when `chain` is set, and the odd cycle or self-link.
            let mut parents: Vec<Id> = Vec::new();
            if r.chain && i > 0 {
                parents.push(Id::new(format!("r{}", i - 1)));
            }
            for &p in &r.parents {
                if n > 0 {
                    let target = if p < 60 && i > 0 { p % i } else { p % n };
                    parents.push(Id::new(format!("r{target}")));
                }
            }
            if r.ghost_parent {
                parents.push(Id::new("ghost"));
            }
            rec.parents = parents;
            rec
        })
        .collect()
}

fn rule() -> impl Strategy<Value = Rule> {
    let filters = prop_oneof![
        6 => Just(vec![]),
        6 => Just(vec![String::new()]),
        2 => Just(vec!["type==regular".to_owned()]),
        2 => Just(vec!["type==exec.cachemount".to_owned(), "type==source.local".to_owned()]),
        1 => Just(vec!["id~=r1".to_owned()]),
        1 => Just(vec!["id~=^r[0-9]$".to_owned()]),
        1 => Just(vec!["description==a".to_owned()]),
        1 => Just(vec!["description~=\"x y\"".to_owned()]),
        1 => Just(vec!["mutable".to_owned()]),
        1 => Just(vec!["private".to_owned()]),
        1 => Just(vec!["shared".to_owned()]),
        1 => Just(vec!["inuse".to_owned()]),
        1 => Just(vec!["parent==r1".to_owned()]),
        1 => Just(vec!["type!=regular,immutable".to_owned()]),
        1 => Just(vec!["type=regular".to_owned()]),
        1 => Just(vec!["inuse==".to_owned()]),
    ];
    let limit = prop_oneof![
        4 => Just(0i64),
        4 => 1i64..400,
        1 => 400i64..5_000,
        1 => -50i64..0,
    ];
    let keep = prop_oneof![
        4 => Just(0i64),
        2 => (1i64..8).prop_map(|h| h * 3600),
        1 => Just(-3600i64),
        1 => 1i64..30_000,
    ];
    (
        prop::bool::weighted(0.3),
        filters,
        keep,
        limit.clone(),
        limit.clone(),
        limit,
    )
        .prop_map(|(all, filter, keep, reserved, max_used, min_free)| Rule {
            all,
            filter,
            keep_duration: Duration::from_secs(keep),
            reserved_space: reserved,
            max_used_space: max_used,
            min_free_space: min_free,
        })
}

#[derive(Clone, Debug)]
struct Case {
    records: Vec<CacheRecord>,
    rules: Vec<Rule>,
    disk: DiskStats,
    shuffle: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(raw(), 0..48),
        prop::collection::vec(rule(), 0..5),
        0u64..3_000,
        any::<u64>(),
    )
        .prop_map(|(raws, rules, free, shuffle)| Case {
            records: build(&raws),
            rules,
            disk: DiskStats::new(10_000, free),
            shuffle,
        })
}

fn snapshot(records: Vec<CacheRecord>) -> Snapshot {
    Snapshot::new(records).expect("generated ids are unique")
}

/// Records whose own flag or a descendant's makes them shared.
fn shared_set(records: &[CacheRecord]) -> BTreeSet<Id> {
    let mut shared: BTreeSet<Id> = records
        .iter()
        .filter(|r| r.shared)
        .map(|r| r.id.clone())
        .collect();
    loop {
        let before = shared.len();
        for r in records {
            if shared.contains(&r.id) {
                shared.extend(r.parents.iter().cloned());
            }
        }
        if shared.len() == before {
            return shared;
        }
    }
}

fn shuffled(records: &[CacheRecord], seed: u64) -> Vec<CacheRecord> {
    let mut out = records.to_vec();
    let mut x = seed | 1;
    for i in (1..out.len()).rev() {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.swap(i, (x >> 33) as usize % (i + 1));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The fast planner returns exactly the reference planner's plan.
    #[test]
    fn fast_equals_reference(c in case()) {
        let snap = snapshot(c.records);
        let fast = plan(&snap, &c.rules, c.disk, now());
        let reference = plan_reference(&snap, &c.rules, c.disk, now());
        prop_assert_eq!(fast, reference);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// Invariants every plan keeps, for BuildKit's ordering and the others.
    #[test]
    fn invariants(c in case(), which in 0usize..Ordering::ALL.len()) {
        let ordering = Ordering::ALL[which];
        let snap = snapshot(c.records.clone());
        let p = plan_with(&snap, &c.rules, c.disk, now(), ordering);
        check_invariants(&c, &p)?;
    }

    /// Permuting the input changes nothing.
    #[test]
    fn permutation_invariant(c in case()) {
        let a = plan(&snapshot(c.records.clone()), &c.rules, c.disk, now());
        let b = plan(&snapshot(shuffled(&c.records, c.shuffle)), &c.rules, c.disk, now());
        prop_assert_eq!(a, b);
    }
}

fn check_invariants(c: &Case, p: &PrunePlan) -> Result<(), TestCaseError> {
    let by_id: BTreeMap<&Id, &CacheRecord> = c.records.iter().map(|r| (&r.id, r)).collect();
    let shared = shared_set(&c.records);

    // Every record exactly once in deleted or kept.
    let mut seen: BTreeMap<&Id, usize> = BTreeMap::new();
    for id in p.deleted_ids().chain(p.kept.iter().map(|k| &k.id)) {
        *seen.entry(id).or_default() += 1;
    }
    prop_assert_eq!(seen.len(), c.records.len());
    prop_assert!(seen.values().all(|&n| n == 1));
    prop_assert!(
        p.kept.windows(2).all(|w| w[0].id < w[1].id),
        "kept is sorted by id"
    );

    // The rule outcomes tile the deletions, in rule order.
    let mut next = 0;
    for (i, o) in p.rules.iter().enumerate() {
        prop_assert_eq!(o.rule, i);
        prop_assert_eq!(o.deletions.start, next);
        next = o.deletions.end;
    }
    prop_assert_eq!(next, p.deletions.len());
    match &p.error {
        Some(e) => prop_assert_eq!(e.rule(), p.rules.len()),
        None => prop_assert_eq!(p.rules.len(), c.rules.len()),
    }

    let position: BTreeMap<&Id, usize> =
        p.deleted_ids().enumerate().map(|(i, id)| (id, i)).collect();
    for (k, d) in p.deletions.iter().enumerate() {
        let rec = by_id[&d.id];
        let rule = &c.rules[d.rule];
        prop_assert!(!rec.in_use, "deleted an in-use record {}", d.id);
        prop_assert_eq!(d.bytes, rec.size);
        if !rule.all {
            prop_assert!(!matches!(
                rec.record_type,
                RecordType::Internal | RecordType::Frontend
            ));
            prop_assert!(
                !shared.contains(&d.id),
                "deleted shared {} without all",
                d.id
            );
        }
        if !rule.keep_duration.is_zero() {
            let cut_off = now().add(Duration::from_nanos(
                rule.keep_duration.as_nanos().wrapping_neg(),
            ));
            prop_assert!(
                rec.last_used_at.is_none_or(|t| t <= cut_off),
                "deleted recent {}",
                d.id
            );
        }
        // Children (records listing it as parent) went first or stay.
        for child in &c.records {
            if child.parents.contains(&d.id) && child.id != d.id {
                let gone_before = position.get(&child.id).is_some_and(|&i| i < k);
                prop_assert!(
                    gone_before,
                    "deleted {} before its child {}",
                    d.id,
                    child.id
                );
            }
            if child.id == d.id {
                prop_assert!(
                    !child.parents.contains(&d.id),
                    "deleted a self-parented record"
                );
            }
        }
    }

    // Targets: gc-mode deletions happen only at or above keep-bytes, the
    // running total steps down by each size, and a rule stops at the first
    // total below its target.
    for o in &p.rules {
        let ds = p.deletions_of(o);
        let mut total = o.keep.total;
        for d in ds {
            match d.reason {
                DeletionReason::Ranked { total_before, .. }
                | DeletionReason::Ordered { total_before, .. } => {
                    prop_assert_eq!(o.mode, Mode::Ranked);
                    prop_assert_eq!(total_before, total);
                    prop_assert!(total_before >= o.keep.keep_bytes);
                }
                DeletionReason::Batch { .. } => prop_assert_eq!(o.mode, Mode::Batch),
                _ => prop_assert!(false, "unknown reason"),
            }
            total = total.wrapping_sub(d.bytes as i64);
        }
        prop_assert_eq!(o.end_total, total);
        prop_assert_eq!(o.mode == Mode::Batch, o.keep.keep_bytes == 0);
        match o.stop {
            Stop::TargetReached => {
                prop_assert!(o.mode == Mode::Ranked && total < o.keep.keep_bytes)
            }
            Stop::NoCandidates => prop_assert!(o.mode == Mode::Batch || total >= o.keep.keep_bytes),
        }
    }

    // Kept reasons agree with the plan.
    for k in &p.kept {
        let rec = by_id[&k.id];
        match k.reason {
            KeepReason::NoRuleRan => prop_assert!(p.rules.is_empty()),
            KeepReason::InUse { .. } => prop_assert!(rec.in_use),
            KeepReason::TargetReached { rule } => {
                prop_assert_eq!(p.rules[rule].stop, Stop::TargetReached);
            }
            KeepReason::ChildrenRemain { children, .. } => {
                let live = c
                    .records
                    .iter()
                    .filter(|r| !position.contains_key(&r.id))
                    .map(|r| r.parents.iter().filter(|p| **p == k.id).count())
                    .sum::<usize>();
                prop_assert_eq!(children as usize, live);
                prop_assert!(live > 0);
            }
            KeepReason::Recent { rule } => {
                let cut_off = p.rules[rule].cut_off;
                prop_assert!(cut_off.is_some_and(|t| rec.last_used_at.is_some_and(|l| l > t)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Many candidates tied on (usage count, last-used): the tie goes to the
/// lowest id, and the plan does not depend on input order.
#[test]
fn exact_ties_go_to_the_lowest_id() {
    let mut records = Vec::new();
    for i in 0..30 {
        let mut r = CacheRecord::new(format!("t{i:02}"), 10);
        r.last_used_at = Some(Timestamp::from_unix_secs(BASE));
        r.usage_count = 2;
        records.push(r);
    }
    let rule = Rule {
        reserved_space: 250,
        ..Rule::default()
    };
    let disk = DiskStats::new(10_000, 5_000);
    let p = plan(
        &snapshot(shuffled(&records, 9)),
        std::slice::from_ref(&rule),
        disk,
        now(),
    );
    let ids: Vec<&str> = p.deleted_ids().map(Id::as_str).collect();
    assert_eq!(ids, ["t00", "t01", "t02", "t03", "t04", "t05"]);
    assert_eq!(p, plan_reference(&snapshot(records), &[rule], disk, now()));
}
