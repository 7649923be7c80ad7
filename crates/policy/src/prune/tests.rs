//! Cases from the spec that the sample vectors do not cover, checked on both
//! planners, and one test per alternative ordering.

use reclaim_model::{DiskStats, Duration, Id, Timestamp};

use super::*;
use crate::Rule;

const DAY: i64 = 86_400;
/// 2024-06-01T00:00:00Z, the vectors' usual `now`.
const NOW: i64 = 1_717_200_000;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn now() -> Timestamp {
    t(NOW)
}

fn disk() -> DiskStats {
    DiskStats::new(2_000_000_000_000, 1_000_000_000_000)
}

/// A regular record used `days_ago` days before `NOW`, `usage` times.
fn rec(id: &str, size: u64, days_ago: i64, usage: u64) -> CacheRecord {
    let mut r = CacheRecord::new(id, size);
    r.last_used_at = Some(t(NOW - days_ago * DAY));
    r.usage_count = usage;
    r.created_at = t(NOW - 400 * DAY);
    r
}

fn rule(filter: &[&str]) -> Rule {
    Rule {
        filter: filter.iter().map(|s| (*s).to_owned()).collect(),
        ..Rule::default()
    }
}

/// Plans with both planners, checks they agree, returns the plan.
fn both(records: Vec<CacheRecord>, rules: &[Rule]) -> PrunePlan {
    both_on(records, rules, disk())
}

fn both_on(records: Vec<CacheRecord>, rules: &[Rule], disk: DiskStats) -> PrunePlan {
    let snap = Snapshot::new(records).expect("unique ids");
    let fast = plan(&snap, rules, disk, now());
    let reference = plan_reference(&snap, rules, disk, now());
    assert_eq!(fast, reference, "planners disagree");
    fast
}

fn deleted(p: &PrunePlan) -> Vec<&str> {
    p.deleted_ids().map(Id::as_str).collect()
}

fn sorted(mut ids: Vec<&str>) -> Vec<&str> {
    ids.sort_unstable();
    ids
}

/// The deleted ids, owned and sorted.
fn owned_sorted(p: &PrunePlan) -> Vec<String> {
    let mut ids: Vec<String> = p.deleted_ids().map(|id| id.as_str().to_owned()).collect();
    ids.sort_unstable();
    ids
}

fn reason<'p>(p: &'p PrunePlan, id: &str) -> &'p KeepReason {
    &p.kept
        .iter()
        .find(|k| k.id.as_str() == id)
        .expect("kept")
        .reason
}

/// Spec section 5, the worked example.
#[test]
fn worked_example() {
    let mut a = rec("a", 600, 22, 2);
    a.record_type = RecordType::ExecCachemount;
    let mut b = rec("b", 500, 2, 4);
    b.record_type = RecordType::ExecCachemount;
    let c = rec("c", 1200, 31, 1);
    let mut d = CacheRecord::new("d", 900);
    d.created_at = t(NOW - 40 * DAY);
    let mut e = rec("e", 400, 12, 3);
    e.parents = vec![Id::new("c")];
    let mut f = rec("f", 300, 61, 1);
    f.record_type = RecordType::Internal;
    let rules = [
        Rule {
            filter: vec!["type==exec.cachemount".into()],
            keep_duration: Duration::from_hours(168),
            max_used_space: 1024,
            ..Rule::default()
        },
        Rule {
            filter: vec![String::new()],
            reserved_space: 1024,
            max_used_space: 2048,
            ..Rule::default()
        },
    ];
    let p = both(vec![a, b, c, d, e, f], &rules);
    assert_eq!(deleted(&p), ["a", "d", "e"]);
    assert_eq!(p.bytes_freed(), 1900);
    assert_eq!(
        (p.rules[0].keep.total, p.rules[0].keep.keep_bytes),
        (3900, 1024)
    );
    assert_eq!(p.rules[0].stop, Stop::NoCandidates);
    assert_eq!(
        (p.rules[1].keep.total, p.rules[1].keep.keep_bytes),
        (3300, 2048)
    );
    assert_eq!(p.rules[1].stop, Stop::TargetReached);
    let DeletionReason::Ranked {
        score,
        total_before,
    } = p.deletions[1].reason
    else {
        panic!("d is ranked");
    };
    assert_eq!(total_before, 3300);
    assert_eq!(
        (
            score.last_used_rank,
            score.last_used_max,
            score.usage_rank,
            score.usage_max
        ),
        (1, 3, 1, 3)
    );
    assert_eq!(*reason(&p, "c"), KeepReason::TargetReached { rule: 1 });
    assert_eq!(
        *reason(&p, "f"),
        KeepReason::Protected {
            rule: 1,
            class: Protection::Internal
        }
    );
    assert_eq!(*reason(&p, "b"), KeepReason::TargetReached { rule: 1 });
}

/// prune-043: near-ties are not ties; 2/6 + 4/4 < 5/6 + 2/4 in binary64.
#[test]
fn near_ties_follow_binary64() {
    let records = vec![
        rec("A", 10, 50, 9), // oldest time, top usage: 2/6 + 4/4
        rec("B", 10, 20, 1), // 4th time, lowest usage: 5/6 + 2/4
        rec("C", 10, 10, 9), // 6/6 + 4/4
        rec("D", 10, 40, 9), // 3/6 + 4/4
        rec("E", 10, 30, 5), // 4/6 + 3/4
    ];
    let r = Rule {
        reserved_space: 41,
        ..Rule::default()
    };
    let p = both(records, &[r]);
    assert_eq!(deleted(&p), ["A"]);
    let DeletionReason::Ranked { score, .. } = p.deletions[0].reason else {
        panic!("ranked");
    };
    assert_eq!(score.score, 2.0 / 6.0 + 4.0 / 4.0);
    assert!(score.score < 5.0 / 6.0 + 2.0 / 4.0);
}

/// Spec 2.5 item 4 (prune-036): on an exact score tie the lower usage
/// count goes first, as upstream's stable sort decides for small lists.
#[test]
fn exact_score_ties_go_to_the_lower_usage_count() {
    // X: 3/3 + 2/3, Y: 2/3 + 3/3, both 1.6666666666666665.
    let records = vec![rec("X", 10, 1, 1), rec("Y", 10, 2, 2)];
    let r = Rule {
        reserved_space: 15,
        ..Rule::default()
    };
    let p = both(records, &[r]);
    assert_eq!(deleted(&p), ["X"]);
}

/// Timestamps at or before Go's zero time rank like never-used records.
#[test]
fn times_before_go_zero_rank_first() {
    let mut ancient = rec("ancient", 10, 0, 3);
    ancient.last_used_at = Some(t(-62_135_596_800 - 5));
    let mut zero = rec("zero", 10, 0, 3);
    zero.last_used_at = Some(t(-62_135_596_800));
    let records = vec![ancient, zero, rec("old", 10, 300, 3), rec("new", 10, 1, 3)];
    let r = Rule {
        reserved_space: 1,
        ..Rule::default()
    };
    let p = both(records, &[r]);
    let DeletionReason::Ranked { score, .. } = p.deletions[0].reason else {
        panic!("ranked");
    };
    assert_eq!((score.last_used_rank, score.last_used_max), (1, 3));
    assert_eq!(deleted(&p), ["ancient", "zero", "old", "new"]);
}

/// prune-018..022, prune-040: moby's filters on boolean fields and parent.
#[test]
fn filters_on_flags_and_parent() {
    let mut m = rec("m", 10, 5, 1);
    m.mutable = true;
    let mut child = rec("child", 10, 5, 1);
    child.parents = vec![Id::new("p")];
    let records = || {
        vec![
            m.clone(),
            rec("p", 10, 5, 1),
            child.clone(),
            rec("x", 10, 5, 1),
        ]
    };
    let run = |f: &[&str]| owned_sorted(&both(records(), &[rule(f)]));
    // `inuse==true`, `shared==true`, `mutable==true` compare "" and never match.
    assert!(run(&["inuse==true"]).is_empty());
    assert!(run(&["shared==true"]).is_empty());
    assert!(run(&["mutable==true"]).is_empty());
    // `!=` on a boolean field always matches.
    assert_eq!(run(&["mutable!=true"]), ["child", "m", "p", "x"]);
    // Presence selectors work.
    assert_eq!(run(&["mutable"]), ["m"]);
    assert_eq!(run(&["immutable"]), ["child", "p", "x"]);
    assert_eq!(run(&["private"]), ["child", "m", "p", "x"]);
    assert!(run(&["inuse"]).is_empty());
    // moby's `parent` key never matches; the adaptor's `parents` is never
    // populated for candidates.
    assert!(run(&["parent==p"]).is_empty());
    assert!(run(&["parents"]).is_empty());
    assert_eq!(run(&["parent!=p"]), ["child", "m", "p", "x"]);
}

/// `shared` and `private` see the propagated flag; shared records go only
/// with `all`, and their bytes count as released but never in the total
/// (prune-012, prune-033).
#[test]
fn shared_spreads_to_ancestors_and_needs_all() {
    let base = rec("base", 100, 30, 1);
    let mut mid = rec("mid", 100, 20, 1);
    mid.parents = vec![Id::new("base")];
    let mut tip = rec("tip", 100, 10, 1);
    tip.parents = vec![Id::new("mid")];
    tip.shared = true;
    let other = rec("other", 50, 5, 1);
    let records = vec![base, mid, tip, other];

    let p = both(records.clone(), &[rule(&["shared"])]);
    assert!(deleted(&p).is_empty());
    assert_eq!(
        *reason(&p, "tip"),
        KeepReason::Protected {
            rule: 0,
            class: Protection::Shared
        }
    );
    // Remaining children are reported before protection, as upstream
    // checks references first.
    assert_eq!(
        *reason(&p, "base"),
        KeepReason::ChildrenRemain {
            rule: 0,
            children: 1
        }
    );

    let all_shared = Rule {
        all: true,
        ..rule(&["shared"])
    };
    let p = both(records.clone(), &[all_shared]);
    assert_eq!(deleted(&p), ["tip", "mid", "base"]);

    // Total counts only "other"; deleting shared records under `all` still
    // lowers the running total.
    let capped = Rule {
        all: true,
        reserved_space: 10,
        ..Rule::default()
    };
    let p = both(records, &[capped]);
    assert_eq!(p.rules[0].keep.total, 50);
    assert_eq!(p.rules[0].end_total, 50 - p.bytes_freed() as i64);
    assert!(p.bytes_freed() >= 100);
}

/// An in-use mutable record counts 0 toward the total; an in-use immutable
/// one counts its size.
#[test]
fn in_use_mutable_counts_zero() {
    let mut busy_mut = rec("busy_mut", 1000, 1, 1);
    busy_mut.in_use = true;
    busy_mut.mutable = true;
    let mut busy = rec("busy", 300, 1, 1);
    busy.in_use = true;
    let r = Rule {
        reserved_space: 5,
        ..Rule::default()
    };
    let p = both(vec![busy_mut, busy, rec("x", 10, 1, 1)], &[r]);
    assert_eq!(p.rules[0].keep.total, 310);
    assert_eq!(deleted(&p), ["x"]);
    assert_eq!(*reason(&p, "busy"), KeepReason::InUse { rule: 0 });
}

/// `id` filters are unanchored regular expressions; `description==` is
/// exact; a value with a space cannot be written unquoted (prune-041/042).
#[test]
fn id_regex_and_description() {
    let mut a = rec("abc1", 10, 5, 1);
    a.description = "[stage 1/2] RUN make".into();
    let mut b = rec("xabcx", 10, 5, 1);
    b.description = "make".into();
    let records = || vec![a.clone(), b.clone(), rec("zzz", 10, 5, 1)];
    let run = |f: &[&str]| owned_sorted(&both(records(), &[rule(f)]));
    assert_eq!(run(&["id~=abc"]), ["abc1", "xabcx"]);
    assert_eq!(run(&["id~=^abc"]), ["abc1"]);
    assert_eq!(run(&["description==make"]), ["xabcx"]);
    assert_eq!(run(&["description~=make"]), ["abc1", "xabcx"]);
    assert_eq!(run(&[r#"description=="[stage 1/2] RUN make""#]), ["abc1"]);
    let p = both(records(), &[rule(&["description==[stage 1/2] RUN make"])]);
    assert!(p.error.is_some());
    assert!(deleted(&p).is_empty());
}

/// A filter that does not parse stops the run; earlier deletions stand
/// (prune-017), and the message is upstream's.
#[test]
fn filter_error_stops_later_rules() {
    let rules = [rule(&["id~=^a"]), rule(&["inuse=="]), rule(&[""])];
    let p = both(vec![rec("a", 10, 5, 1), rec("b", 10, 5, 1)], &rules);
    assert_eq!(deleted(&p), ["a"]);
    assert_eq!(p.rules.len(), 1);
    let err = p.error.as_ref().expect("rule 1 fails");
    assert_eq!(err.rule(), 1);
    assert_eq!(
        err.to_string(),
        "failed to parse prune filters [inuse==]: filters: parse error: [inuse==]: expected value or quoted: invalid argument"
    );
    assert_eq!(*reason(&p, "b"), KeepReason::Filtered { rule: 0 });
    // A failing first rule: nothing ran.
    let p = both(vec![rec("a", 10, 5, 1)], &[rule(&["x", "type=y"])]);
    assert_eq!(
        p.error.as_ref().map(ToString::to_string).as_deref(),
        Some(
            "failed to parse prune filters [x type=y]: filters: parse error: [type >|=|< y]: unsupported operator \"=\": invalid argument"
        )
    );
    assert_eq!(*reason(&p, "a"), KeepReason::NoRuleRan);
}

/// Batch mode deletes children before parents, in waves, each in id order.
#[test]
fn batch_mode_children_first() {
    let mut c1 = rec("c1", 10, 5, 1);
    c1.parents = vec![Id::new("p")];
    let mut c2 = rec("c2", 10, 5, 1);
    c2.parents = vec![Id::new("p"), Id::new("ghost")];
    let mut g = rec("g", 10, 5, 1);
    g.parents = vec![Id::new("c2")];
    let records = vec![g, c2, rec("p", 10, 5, 1), c1, rec("a", 10, 5, 1)];
    let p = both(records, &[rule(&[])]);
    assert_eq!(deleted(&p), ["a", "c1", "g", "c2", "p"]);
    let waves: Vec<u32> = p
        .deletions
        .iter()
        .map(|d| match d.reason {
            DeletionReason::Batch { wave } => wave,
            _ => panic!("batch"),
        })
        .collect();
    assert_eq!(waves, [0, 0, 0, 1, 2]);
    assert_eq!(p.rules[0].mode, Mode::Batch);
}

/// A parent stays while an in-use child exists; a record that lists itself
/// as parent is never deleted; a duplicated link counts twice.
#[test]
fn remaining_children_hold_parents() {
    let mut busy = rec("busy", 10, 5, 1);
    busy.in_use = true;
    busy.parents = vec![Id::new("p")];
    let mut selfish = rec("selfish", 10, 5, 1);
    selfish.parents = vec![Id::new("selfish")];
    let mut twice = rec("twice", 10, 5, 1);
    twice.parents = vec![Id::new("q"), Id::new("q")];
    twice.in_use = true;
    let records = vec![busy, rec("p", 10, 5, 1), selfish, twice, rec("q", 10, 5, 1)];
    let p = both(records, &[rule(&[])]);
    assert!(deleted(&p).is_empty());
    assert_eq!(
        *reason(&p, "p"),
        KeepReason::ChildrenRemain {
            rule: 0,
            children: 1
        }
    );
    assert_eq!(
        *reason(&p, "q"),
        KeepReason::ChildrenRemain {
            rule: 0,
            children: 2
        }
    );
    assert_eq!(
        *reason(&p, "selfish"),
        KeepReason::ChildrenRemain {
            rule: 0,
            children: 1
        }
    );
}

/// `until=0` gives a keep-duration of about 54 years: only never-used
/// records stay eligible (prune-039); a negative keep-duration puts the
/// cut-off in the future, so recent records are eligible too (prune-038);
/// exactly at the cut-off is eligible (prune-013).
#[test]
fn keep_duration_edges() {
    let records = || {
        vec![
            CacheRecord::new("never", 10),
            rec("old", 10, 3000, 1),
            rec("new", 10, 0, 1),
        ]
    };
    let since_epoch = now().saturating_duration_since(Timestamp::UNIX_EPOCH);
    let until_zero = Rule {
        keep_duration: since_epoch,
        ..rule(&[""])
    };
    let p = both(records(), &[until_zero]);
    assert_eq!(deleted(&p), ["never"]);
    assert_eq!(p.rules[0].cut_off, Some(Timestamp::UNIX_EPOCH));
    assert_eq!(*reason(&p, "old"), KeepReason::Recent { rule: 0 });

    let negative = Rule {
        keep_duration: Duration::from_hours(-1),
        ..rule(&[""])
    };
    let p = both(records(), &[negative]);
    assert_eq!(sorted(deleted(&p)), ["never", "new", "old"]);

    let exact = Rule {
        keep_duration: Duration::from_secs(3000 * DAY),
        ..rule(&[""])
    };
    let p = both(records(), &[exact]);
    assert_eq!(sorted(deleted(&p)), ["never", "old"]);
}

/// Every rule runs with a fresh total and its own disk reading; free is only
/// read when min-free-space is set (prune-030, prune-031).
#[test]
fn multiple_rules_and_disk() {
    let records = vec![
        rec("a", 100, 30, 1),
        rec("b", 100, 20, 1),
        rec("c", 100, 10, 1),
    ];
    let rules = [
        Rule {
            max_used_space: 250,
            ..Rule::default()
        },
        Rule {
            min_free_space: 1000,
            ..Rule::default()
        },
    ];
    let p = both_on(records, &rules, DiskStats::new(10_000, 900));
    // Rule 0: 300 >= 250 -> a; 200 < 250. Rule 1: excess 100, keep 200 - 100
    // = 100: b, then 100 is not < 100: c.
    assert_eq!(deleted(&p), ["a", "b", "c"]);
    assert_eq!(p.rules[0].keep.free, 0);
    assert_eq!(p.rules[1].keep.free, 900);
    assert_eq!(p.rules[1].keep.total, 200);
    assert_eq!(p.rules[1].keep.keep_bytes, 100);
}

/// Internal and frontend records need `all`.
#[test]
fn internal_and_frontend_need_all() {
    let mut i = rec("i", 10, 5, 1);
    i.record_type = RecordType::Internal;
    let mut f = rec("f", 10, 5, 1);
    f.record_type = RecordType::Frontend;
    let mut o = rec("o", 10, 5, 1);
    o.record_type = RecordType::parse("custom");
    let p = both(vec![i.clone(), f.clone(), o.clone()], &[rule(&[])]);
    assert_eq!(deleted(&p), ["o"]);
    let all = Rule {
        all: true,
        ..rule(&[])
    };
    let p = both(vec![i, f, o], &[all]);
    assert_eq!(sorted(deleted(&p)), ["f", "i", "o"]);
}

/// The readable report names the rule arithmetic, the deletions and the
/// kept records.
#[test]
fn display_explains() {
    let mut a = rec("a", 600, 22, 2);
    a.record_type = RecordType::ExecCachemount;
    let r = Rule {
        max_used_space: 700,
        ..Rule::default()
    };
    let p = both(vec![a, rec("b", 500, 2, 4)], &[r]);
    let text = p.to_string();
    assert!(
        text.contains("rule 0: ranked; keep 700 = f(total 1100"),
        "{text}"
    );
    assert!(
        text.contains("delete a (600 bytes): total 1100, score"),
        "{text}"
    );
    assert!(
        text.contains("keep b: a candidate, but the target was reached first"),
        "{text}"
    );
    let json = serde_json::to_value(&p).expect("serializes");
    assert_eq!(json["deletions"][0]["id"], "a");
}

mod orderings {
    use super::*;

    /// Four unrelated records and a parent with one child, with a target
    /// that keeps the last record.
    fn records() -> Vec<CacheRecord> {
        let mut a = rec("a", 400, 30, 50);
        a.created_at = t(NOW - 10 * DAY);
        let mut b = rec("b", 100, 2, 1);
        b.created_at = t(NOW - 90 * DAY);
        b.rebuild_seconds = Some(1000.0);
        let mut c = rec("c", 300, 10, 5);
        c.created_at = t(NOW - 50 * DAY);
        let mut parent = rec("parent", 200, 60, 2);
        parent.created_at = t(NOW - 95 * DAY);
        let mut child = rec("child", 50, 1, 3);
        child.created_at = t(NOW - 5 * DAY);
        child.parents = vec![Id::new("parent")];
        vec![a, b, c, parent, child]
    }

    fn order(ordering: Ordering) -> Vec<String> {
        let snap = Snapshot::new(records()).expect("unique");
        let r = Rule {
            reserved_space: 1,
            ..Rule::default()
        };
        let p = plan_with(&snap, &[r], disk(), now(), ordering);
        for d in &p.deletions {
            assert!(matches!(
                d.reason,
                DeletionReason::Ordered { ordering: o, .. } if o == ordering
            ));
        }
        p.deleted_ids().map(|id| id.as_str().to_owned()).collect()
    }

    #[test]
    fn buildkit_is_the_default() {
        let snap = Snapshot::new(records()).expect("unique");
        let r = [Rule {
            reserved_space: 1,
            ..Rule::default()
        }];
        assert_eq!(
            plan_with(&snap, &r, disk(), now(), Ordering::default()),
            plan(&snap, &r, disk(), now())
        );
    }

    #[test]
    fn fifo_oldest_created_first() {
        // parent is oldest but must wait for child.
        assert_eq!(order(Ordering::Fifo), ["b", "c", "a", "child", "parent"]);
    }

    #[test]
    fn lru_oldest_use_first() {
        assert_eq!(order(Ordering::Lru), ["a", "c", "b", "child", "parent"]);
    }

    #[test]
    fn lfu_least_used_first() {
        assert_eq!(order(Ordering::Lfu), ["b", "child", "parent", "c", "a"]);
    }

    #[test]
    fn largest_first() {
        assert_eq!(
            order(Ordering::LargestFirst),
            ["a", "c", "b", "child", "parent"]
        );
    }

    #[test]
    fn gdsf_cheapest_per_byte_first() {
        // Priorities (usage + 1) * cost / size, cost = size / GiB unless set:
        // parent 3/2^30 (but it waits for its child), child 4/2^30, c 6/2^30,
        // a 51/2^30, and b 2 * 1000 / 100 = 20 (expensive to rebuild).
        assert_eq!(order(Ordering::Gdsf), ["child", "parent", "c", "a", "b"]);
        let mut r = CacheRecord::new("z", 0);
        r.rebuild_seconds = Some(5.0);
        assert_eq!(gdsf_priority(&r), 5.0);
    }

    #[test]
    fn targets_and_candidates_still_apply() {
        // Stops at the target: with reserved 700 of 1050, only deletions
        // until the total drops below 700.
        let snap = Snapshot::new(records()).expect("unique");
        let r = Rule {
            reserved_space: 700,
            ..Rule::default()
        };
        for ordering in Ordering::ALL {
            let p = plan_with(&snap, std::slice::from_ref(&r), disk(), now(), ordering);
            assert!(p.rules[0].end_total < 700, "{ordering:?}");
            let before_last =
                p.rules[0].end_total + p.deletions.last().map_or(0, |d| d.bytes as i64);
            assert!(before_last >= 700, "{ordering:?}");
        }
    }
}
