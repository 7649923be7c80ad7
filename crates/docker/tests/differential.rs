//! reclaim-policy's prune planner against the daemon's own BuildKit.
//!
//! The test builds a cache of a few dozen records on the real daemon
//! (COPY layers of varied sizes, `RUN --mount=type=cache` directories, a
//! parent/child chain, records reused by rebuilds one and two more times,
//! records kept shared by a tagged image, and the build contexts every
//! build leaves), then, for each scenario: snapshots the cache with
//! `GET /system/df`, asks the planner what a rule deletes, runs the same
//! rule through `POST /build/prune`, and compares the planner's deletions
//! with `CachesDeleted` (the daemon reports them in deletion order) and the
//! bytes with `SpaceReclaimed`.
//!
//! Scenarios, run one after the other on what is left:
//!
//! 1. gc mode (a byte target, `keep-storage`), candidates restricted by an
//!    `id` filter to the COPY records: the exact deletion sequence.
//! 2. batch mode with a `type` filter and an `until` age: the cache mounts
//!    of the first builds go, the later one stays (set, and children
//!    before parents).
//! 3. batch mode over everything the test made (the shared records of the
//!    tagged image must stay).
//!
//! Why scenario 1 is designed as it is: dockerd 20.10 embeds BuildKit
//! v0.8, whose ranking predates buildkit f6c142e (v0.22, Docker 28.2): its
//! dense ranks start at 0 instead of 1, so it scores `(r-1)/(M-1) +
//! (u-1)/(U-1)` where reclaim (and BuildKit today) score `r/M + u/U`. The
//! two orders differ in general. They agree whenever, at every pass, one
//! candidate is both the least recently used and among the least used: it
//! then has the lowest score under both formulas. The records are built so
//! (records reused later are also reused more), and the test checks that
//! premise from the planner itself: the deletion sequences under the LRU
//! and the LFU orderings must be identical, which holds only if every pass
//! has such a candidate. With at most 12 candidates Go's sort is an
//! insertion sort, so even v0.8's 0/0 scores (every candidate with the same
//! usage count) keep that candidate first. On a daemon with BuildKit 0.22+
//! the same comparison holds with no premise at all.
//!
//! Timestamps: the API reports them with nanoseconds, so nothing is
//! rounded; the `until` cut-off is placed in the middle of a gap of more
//! than a second between two groups of builds, so the few milliseconds
//! between the planner's clock and the daemon's do not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reclaim_docker::PruneRequest;
use reclaim_docker::fixture::{DockerFixture, block_on, busybox};
use reclaim_model::{DiskStats, Duration as ModelDuration, Id, Timestamp};
use reclaim_policy::Rule;
use reclaim_policy::prune::{
    CacheRecord, DeletionReason, Ordering, PrunePlan, RecordType, Snapshot, plan_with,
};
use reclaim_runtime::{BuildCacheStore, Clock, SystemClock};

/// One COPY-only project: a Dockerfile and its files.
struct Project {
    dockerfile: String,
    files: Vec<(&'static str, Vec<u8>)>,
}

/// The record a COPY of `size` bytes made in a build.
fn copy_record(new: &[CacheRecord], size: u64) -> Id {
    new.iter()
        .find(|r| r.size == size && r.description == "fileop target")
        .unwrap_or_else(|| panic!("no {size}-byte COPY record among {new:?}"))
        .id
        .clone()
}

fn anchored(ids: &BTreeSet<Id>) -> String {
    let ids: Vec<&str> = ids.iter().map(Id::as_str).collect();
    format!("^({})$", ids.join("|"))
}

async fn snapshot(f: &DockerFixture) -> Vec<CacheRecord> {
    f.docker().cache_records().await.expect("listing the cache")
}

/// Plans `rule` over the daemon's records now, runs the same prune on the
/// daemon, and returns both (the daemon's answer as ids in order, bytes).
async fn plan_and_prune(
    f: &DockerFixture,
    rule: &Rule,
    request: &PruneRequest,
    ordering: Ordering,
) -> (PrunePlan, Vec<String>, u64, Vec<CacheRecord>) {
    let records = snapshot(f).await;
    let snap = Snapshot::new(records.clone()).expect("a valid snapshot");
    let now = SystemClock::new().now();
    let plan = plan_with(
        &snap,
        std::slice::from_ref(rule),
        DiskStats::new(1 << 40, 1 << 39),
        now,
        ordering,
    );
    assert!(plan.error.is_none(), "{plan}");
    let response = f
        .docker()
        .prune_build_cache(request)
        .await
        .expect("the daemon's prune");
    (
        plan,
        response.caches_deleted,
        response.space_reclaimed,
        records,
    )
}

fn ids(plan: &PrunePlan) -> Vec<String> {
    plan.deleted_ids().map(|i| i.as_str().to_owned()).collect()
}

/// Checks that the daemon deleted the planned set, every wave before the
/// next (BuildKit deletes a batch pass's candidates in map order, so only
/// the passes are ordered).
fn assert_same_waves(plan: &PrunePlan, daemon: &[String]) {
    let planned: BTreeSet<String> = ids(plan).into_iter().collect();
    let got: BTreeSet<String> = daemon.iter().cloned().collect();
    assert_eq!(got, planned, "deleted sets differ\nplan:\n{plan}");
    let wave_of: BTreeMap<&str, u32> = plan
        .deletions
        .iter()
        .map(|d| match d.reason {
            DeletionReason::Batch { wave } => (d.id.as_str(), wave),
            other => panic!("not a batch deletion: {other:?}"),
        })
        .collect();
    let waves: Vec<u32> = daemon.iter().map(|id| wave_of[id.as_str()]).collect();
    assert!(
        waves.windows(2).all(|w| w[0] <= w[1]),
        "the daemon deleted a later wave first: {waves:?}\nplan:\n{plan}"
    );
}

#[test]
fn the_planner_agrees_with_the_daemons_buildkit() {
    let Some(mut f) =
        DockerFixture::connect_or_skip("the_planner_agrees_with_the_daemons_buildkit")
    else {
        return;
    };
    if let Err(why) = busybox() {
        assert!(
            !reclaim_docker::fixture::docker_required(),
            "RECLAIM_REQUIRE_DOCKER=1: {why}"
        );
        eprintln!("the_planner_agrees_with_the_daemons_buildkit skipped: {why}");
        return;
    }
    block_on(async move {
        let bb = std::fs::read(busybox().unwrap()).unwrap();
        let mut mine: BTreeSet<Id> = BTreeSet::new();

        // Group A. Seven COPY projects of varied sizes; P7 has a parent and
        // a child layer.
        let sizes = [3_000u64, 7_000, 1_500, 12_000, 5_000, 9_000];
        let mut projects = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let name = format!("p{i}");
            projects.push(Project {
                dockerfile: "FROM scratch\nCOPY f /f\n".into(),
                files: vec![("f", f.unique_bytes(&name, *size as usize))],
            });
        }
        let mut copies: Vec<Id> = Vec::new();
        for (p, size) in projects.iter().zip(sizes) {
            let build = f.build(&p.dockerfile, &p.files, None).await.unwrap();
            if let Some(image) = &build.image {
                f.remove_image_forced(image).await.unwrap();
            }
            copies.push(copy_record(&build.new_records, size));
            mine.extend(build.new_records.iter().map(|r| r.id.clone()));
        }
        let chain = Project {
            dockerfile: "FROM scratch\nCOPY a /a\nCOPY b /b\n".into(),
            files: vec![
                ("a", f.unique_bytes("chain-a", 4_000)),
                ("b", f.unique_bytes("chain-b", 2_500)),
            ],
        };
        let build = f
            .build(&chain.dockerfile, &chain.files, None)
            .await
            .unwrap();
        if let Some(image) = &build.image {
            f.remove_image_forced(image).await.unwrap();
        }
        let chain_parent = copy_record(&build.new_records, 4_000);
        let chain_child = copy_record(&build.new_records, 2_500);
        mine.extend(build.new_records.iter().map(|r| r.id.clone()));

        // Two cache mounts of group A, and a tagged image whose records
        // stay shared.
        let mut mounts_a = Vec::new();
        for (i, n) in [6_000usize, 8_000].into_iter().enumerate() {
            let data = f.unique_bytes(&format!("mount-a{i}"), n);
            let dockerfile = format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data /data\n\
                 RUN --mount=type=cache,target=/cache,id={}-a{i} [\"/bin/busybox\", \"cp\", \"/data\", \"/cache/data\"]\n",
                f.run_id()
            );
            let build = f
                .build(
                    &dockerfile,
                    &[("busybox", bb.clone()), ("data", data)],
                    None,
                )
                .await
                .unwrap();
            if let Some(image) = &build.image {
                f.remove_image_forced(image).await.unwrap();
            }
            let mount = build
                .new_records
                .iter()
                .find(|r| r.record_type == RecordType::ExecCachemount)
                .unwrap_or_else(|| panic!("no cache mount record in {:?}", build.new_records))
                .id
                .clone();
            mounts_a.push(mount);
            mine.extend(build.new_records.iter().map(|r| r.id.clone()));
        }
        let kept_image = f
            .build(
                "FROM scratch\nCOPY k /k\n",
                &[("k", f.unique_bytes("kept", 2_222))],
                Some(&f.name("kept:1")),
            )
            .await
            .unwrap();
        let shared = copy_record(&kept_image.new_records, 2_222);
        mine.extend(kept_image.new_records.iter().map(|r| r.id.clone()));
        let group_a_end = SystemClock::new().now();

        // Group B, more than a second later: rebuild P1, P3, P5 (their
        // COPY records are reused: usage 2), one more cache mount.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let group_b_start = SystemClock::new().now();
        for i in [1usize, 3, 5] {
            let p = &projects[i];
            let build = f.build(&p.dockerfile, &p.files, None).await.unwrap();
            if let Some(image) = &build.image {
                f.remove_image_forced(image).await.unwrap();
            }
            mine.extend(build.new_records.iter().map(|r| r.id.clone()));
        }
        let data = f.unique_bytes("mount-b", 7_000);
        let dockerfile = format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data /data\n\
             RUN --mount=type=cache,target=/cache,id={}-b [\"/bin/busybox\", \"cp\", \"/data\", \"/cache/data\"]\n",
            f.run_id()
        );
        let build = f
            .build(
                &dockerfile,
                &[("busybox", bb.clone()), ("data", data)],
                None,
            )
            .await
            .unwrap();
        if let Some(image) = &build.image {
            f.remove_image_forced(image).await.unwrap();
        }
        let mount_b = build
            .new_records
            .iter()
            .find(|r| r.record_type == RecordType::ExecCachemount)
            .expect("a cache mount record")
            .id
            .clone();
        mine.extend(build.new_records.iter().map(|r| r.id.clone()));

        // Group C: P5 once more (usage 3).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p = &projects[5];
        let build = f.build(&p.dockerfile, &p.files, None).await.unwrap();
        if let Some(image) = &build.image {
            f.remove_image_forced(image).await.unwrap();
        }
        mine.extend(build.new_records.iter().map(|r| r.id.clone()));

        // The cache is as designed.
        let records: BTreeMap<Id, CacheRecord> = snapshot(&f)
            .await
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let usage: Vec<u64> = copies.iter().map(|id| records[id].usage_count).collect();
        assert_eq!(usage, [1, 2, 1, 2, 1, 3], "COPY records reused by rebuilds");
        assert_eq!(records[&chain_child].parents, vec![chain_parent.clone()]);
        assert!(
            records[&shared].shared,
            "the tagged image's record is shared"
        );
        assert!(mine.len() >= 24, "{} records made", mine.len());
        eprintln!(
            "built {} records; the cache holds {} in all",
            mine.len(),
            records.len()
        );

        // 1. gc mode: keep-storage, candidates limited to the COPY records.
        let mut candidates: BTreeSet<Id> = copies.iter().cloned().collect();
        candidates.insert(chain_parent.clone());
        candidates.insert(chain_child.clone());
        candidates.insert(shared.clone());
        let unshared_total: u64 = records.values().filter(|r| !r.shared).map(|r| r.size).sum();
        let candidate_bytes: u64 = candidates.iter().map(|id| records[id].size).sum();
        let keep = i64::try_from(unshared_total - candidate_bytes / 2).unwrap();
        let rule = Rule {
            filter: vec![format!("id~={}", anchored(&candidates))],
            reserved_space: keep,
            ..Rule::default()
        };
        let request = PruneRequest {
            filters: [("id".to_owned(), vec![anchored(&candidates)])]
                .into_iter()
                .collect(),
            reserved_space: keep,
            ..PruneRequest::default()
        };
        // The premise (see the module docs), checked before the prune.
        let snap = Snapshot::new(snapshot(&f).await).unwrap();
        let now = SystemClock::new().now();
        let disk = DiskStats::new(1 << 40, 1 << 39);
        let lru = plan_with(&snap, std::slice::from_ref(&rule), disk, now, Ordering::Lru);
        let lfu = plan_with(&snap, std::slice::from_ref(&rule), disk, now, Ordering::Lfu);
        assert_eq!(
            ids(&lru),
            ids(&lfu),
            "the records do not dominate pass by pass"
        );
        let (plan, deleted, reclaimed, _) =
            plan_and_prune(&f, &rule, &request, Ordering::BuildKit).await;
        assert_eq!(ids(&plan), ids(&lru));
        assert!(
            plan.deletions.len() >= 3 && plan.deletions.len() < candidates.len() - 1,
            "the target should delete some records, not all:\n{plan}"
        );
        assert!(
            !ids(&plan).contains(&shared.to_string()),
            "shared records are not candidates"
        );
        assert_eq!(deleted, ids(&plan), "deletion sequence\nplan:\n{plan}");
        assert_eq!(reclaimed, plan.bytes_freed());
        eprintln!("gc mode: {} deletions agree: {deleted:?}", deleted.len());

        // 2. batch mode, type filter and age: the cache mounts last used
        // before the gap go.
        let cut =
            Timestamp::from_unix_nanos((group_a_end.unix_nanos() + group_b_start.unix_nanos()) / 2);
        let now = SystemClock::new().now();
        let age_ms = i64::try_from((now.unix_nanos() - cut.unix_nanos()) / 1_000_000).unwrap();
        let scope: BTreeSet<Id> = mounts_a.iter().chain([&mount_b]).cloned().collect();
        let rule = Rule {
            filter: vec![format!("id~={},type==exec.cachemount", anchored(&scope))],
            keep_duration: ModelDuration::from_nanos(age_ms * 1_000_000),
            ..Rule::default()
        };
        let request = PruneRequest {
            filters: [
                ("id".to_owned(), vec![anchored(&scope)]),
                ("type".to_owned(), vec!["exec.cachemount".to_owned()]),
                ("until".to_owned(), vec![format!("{age_ms}ms")]),
            ]
            .into_iter()
            .collect(),
            ..PruneRequest::default()
        };
        let (plan, deleted, reclaimed, _) =
            plan_and_prune(&f, &rule, &request, Ordering::BuildKit).await;
        let expected: BTreeSet<String> = mounts_a.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ids(&plan).into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{plan}"
        );
        assert_same_waves(&plan, &deleted);
        assert_eq!(reclaimed, plan.bytes_freed());
        eprintln!("batch with type and until: {deleted:?}");

        // 3. batch mode over everything the test made: the shared record
        // stays, children go before their parents.
        let rule = Rule {
            filter: vec![format!("id~={}", anchored(&mine))],
            ..Rule::default()
        };
        let request = PruneRequest {
            filters: [("id".to_owned(), vec![anchored(&mine)])]
                .into_iter()
                .collect(),
            ..PruneRequest::default()
        };
        let (plan, deleted, reclaimed, before) =
            plan_and_prune(&f, &rule, &request, Ordering::BuildKit).await;
        assert!(!deleted.contains(&shared.to_string()));
        assert!(plan.deletions.len() > 10, "{plan}");
        assert!(
            plan.deletions
                .iter()
                .filter_map(|d| match d.reason {
                    DeletionReason::Batch { wave } => Some(wave),
                    _ => None,
                })
                .max()
                >= Some(1),
            "the scenario should have parents freed by their children:\n{plan}"
        );
        assert_same_waves(&plan, &deleted);
        assert_eq!(reclaimed, plan.bytes_freed());
        let left: BTreeSet<Id> = snapshot(&f).await.into_iter().map(|r| r.id).collect();
        for r in &before {
            if deleted.contains(&r.id.to_string()) {
                assert!(
                    !left.contains(&r.id),
                    "{} reported deleted but listed",
                    r.id
                );
            }
        }
        eprintln!("batch over everything: {} deletions agree", deleted.len());
    });
}
