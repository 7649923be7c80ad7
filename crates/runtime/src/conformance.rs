//! Runtime-conformance tests, written once and run against every engine.
//!
//! Each test is an async function generic over a [`Fixture`]: the engine
//! under test plus a way to create items in it. The tests check what every
//! engine must do for the collectors to be safe: list what exists, answer
//! removals with the right outcome, and never remove what is running, in
//! use or pinned, whoever asks. They panic with a message on failure and
//! return [`Verdict::Skipped`] when the engine cannot create what a test
//! needs (a Docker daemon cannot make arbitrary cache records).
//!
//! [`conformance_tests!`](crate::conformance_tests) turns them into
//! `#[test]` functions; `tests/conformance.rs` runs them against
//! [`MemoryFixture`], and the Docker adapter runs them against a live
//! daemon:
//!
//! ```text
//! reclaim_runtime::conformance_tests!(DockerFixture::connect(), tokio_block_on);
//! ```
//!
//! Tests only assert about the items they create, and scope their
//! collectors with [`Fixture::selector`], so they can run on an engine that
//! holds other things.

use std::collections::BTreeMap;
use std::future::Future;

use reclaim_kubelet::{
    ContainerGcPolicy, ContainerKeepReason, ContainerState, ImageKeepReason, ImagePolicy,
};
use reclaim_model::{Duration, Id};
use reclaim_policy::Rule;

use crate::clock::{Clock, ManualClock};
use crate::collect::{
    BuildCacheCollector, ContainerGcCollector, ImageGcCollector, ImageGcMode, LabelSelector,
};
use crate::memory::MemoryRuntime;
use crate::observer::NoopObserver;
use crate::report::{Outcome, Report, RunStatus, SkipReason};
use crate::store::{
    BuildCacheStore, ContainerInfo, ContainerStore, ImageInfo, ImageStore, RemoveOutcome,
    StopOutcome,
};

/// The names of every conformance test, in the order
/// [`conformance_tests!`](crate::conformance_tests) defines them.
pub const TESTS: [&str; 13] = [
    "lists_created_images",
    "lists_created_containers",
    "lists_created_cache_records",
    "disk_stats_are_consistent",
    "image_removal_outcomes",
    "pinned_images_are_never_removed",
    "running_containers_are_never_removed",
    "cache_record_removal_outcomes",
    "image_collector_keeps_in_use_and_pinned_images",
    "container_collector_keeps_running_containers",
    "build_cache_collector_reports",
    "dry_runs_delete_nothing",
    "reports_account_for_every_item",
];

/// An engine under test and the means to create items in it.
///
/// Created items must carry the fixture's [`Fixture::selector`] label (if
/// it has one) so that collectors can be scoped to them.
pub trait Fixture {
    /// The engine.
    type Runtime: BuildCacheStore + ImageStore + ContainerStore;
    /// The clock collectors run on.
    type Clock: Clock;

    /// The engine under test.
    fn runtime(&self) -> &Self::Runtime;

    /// The clock for collector runs.
    fn clock(&self) -> &Self::Clock;

    /// The label every created item carries, to scope collectors to them.
    fn selector(&self) -> Option<LabelSelector> {
        None
    }

    /// Creates an image (unique per `name`), tagged, and pinned if asked
    /// (the engine must then list it as pinned). Returns its id.
    fn create_image(&mut self, spec: ImageSpec) -> impl Future<Output = Result<Id, FixtureError>>;

    /// Creates a container from an image, running or exited. Returns its id.
    fn create_container(
        &mut self,
        spec: ContainerSpec,
    ) -> impl Future<Output = Result<Id, FixtureError>>;

    /// Creates a cache record that is not in use. Returns its id.
    fn create_cache_record(
        &mut self,
        spec: CacheSpec,
    ) -> impl Future<Output = Result<Id, FixtureError>>;

    /// Makes a cache record in use (held by a build). Default: unsupported.
    fn hold_cache_record(&mut self, id: &Id) -> impl Future<Output = Result<(), FixtureError>> {
        let _ = id;
        async { Err(FixtureError::Unsupported("holding cache records".into())) }
    }
}

/// An image to create.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// A name unique within the test run (part of the tag).
    pub name: String,
    /// Whether the engine must pin it.
    pub pinned: bool,
}

/// A container to create.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// A name unique within the test run.
    pub name: String,
    /// The image id.
    pub image: Id,
    /// Running (else created, started and exited).
    pub running: bool,
}

/// A cache record to create.
#[derive(Clone, Debug)]
pub struct CacheSpec {
    /// A name unique within the test run.
    pub name: String,
    /// Its size in bytes, where the engine can choose.
    pub size: u64,
}

/// Why a fixture could not create something.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The engine cannot do this; tests that need it are skipped.
    #[error("unsupported by this engine: {0}")]
    Unsupported(String),
    /// The engine failed; the test fails.
    #[error("fixture failed: {0}")]
    Failed(String),
}

/// The result of a test that did not panic.
#[derive(Clone, Debug, Eq, PartialEq)]
#[must_use]
pub enum Verdict {
    /// Every check passed.
    Passed,
    /// The engine cannot create what the test needs.
    Skipped(String),
}

impl Verdict {
    /// Prints a skipped test's reason (tests that pass print nothing).
    pub fn print(&self, test: &str) {
        if let Self::Skipped(reason) = self {
            eprintln!("conformance test {test} skipped: {reason}");
        }
    }
}

/// Unwraps a fixture result, turning "unsupported" into a skip and other
/// failures into a panic.
macro_rules! need {
    ($e:expr) => {
        match $e.await {
            Ok(v) => v,
            Err(FixtureError::Unsupported(what)) => return Verdict::Skipped(what),
            Err(e) => panic!("{e}"),
        }
    };
}

fn image(name: &str, pinned: bool) -> ImageSpec {
    ImageSpec {
        name: name.to_owned(),
        pinned,
    }
}

fn container(name: &str, image: &Id, running: bool) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: image.clone(),
        running,
    }
}

async fn images_of<F: Fixture>(f: &F) -> BTreeMap<Id, ImageInfo> {
    let images = f.runtime().images().await.expect("listing images");
    images.into_iter().map(|i| (i.id.clone(), i)).collect()
}

async fn containers_of<F: Fixture>(f: &F) -> BTreeMap<Id, ContainerInfo> {
    let containers = f.runtime().containers().await.expect("listing containers");
    containers.into_iter().map(|c| (c.id.clone(), c)).collect()
}

async fn record_ids<F: Fixture>(f: &F) -> Vec<Id> {
    let records = f.runtime().cache_records().await.expect("listing records");
    records.into_iter().map(|r| r.id).collect()
}

/// Images the fixture creates are listed with their tags and pin.
pub async fn lists_created_images<F: Fixture>(f: &mut F) -> Verdict {
    let a = need!(f.create_image(image("list-a", false)));
    let p = need!(f.create_image(image("list-p", true)));
    let listed = images_of(f).await;
    let a = listed
        .get(&a)
        .unwrap_or_else(|| panic!("image {a} not listed"));
    assert!(!a.repo_tags.is_empty(), "image {} lists no tags", a.id);
    assert!(!a.pinned, "image {} is listed as pinned", a.id);
    let p = listed
        .get(&p)
        .unwrap_or_else(|| panic!("image {p} not listed"));
    assert!(p.pinned, "pinned image {} is not listed as pinned", p.id);
    Verdict::Passed
}

/// Containers the fixture creates are listed with their image and state.
pub async fn lists_created_containers<F: Fixture>(f: &mut F) -> Verdict {
    let img = need!(f.create_image(image("ctr-img", false)));
    let run = need!(f.create_container(container("ctr-run", &img, true)));
    let exited = need!(f.create_container(container("ctr-exited", &img, false)));
    let listed = containers_of(f).await;
    for (id, state) in [
        (&run, ContainerState::Running),
        (&exited, ContainerState::Exited),
    ] {
        let c = listed
            .get(id)
            .unwrap_or_else(|| panic!("container {id} not listed"));
        assert_eq!(c.state, state, "state of container {id}");
        assert_eq!(c.image_id, img, "image of container {id}");
    }
    Verdict::Passed
}

/// Cache records the fixture creates are listed, not in use.
pub async fn lists_created_cache_records<F: Fixture>(f: &mut F) -> Verdict {
    let r = need!(f.create_cache_record(CacheSpec {
        name: "list-r".into(),
        size: 4096,
    }));
    let records = f.runtime().cache_records().await.expect("listing records");
    let listed = records
        .iter()
        .find(|x| x.id == r)
        .unwrap_or_else(|| panic!("cache record {r} not listed"));
    assert!(!listed.in_use, "fresh record {r} is listed as in use");
    Verdict::Passed
}

/// Disk statistics are self-consistent.
pub async fn disk_stats_are_consistent<F: Fixture>(f: &mut F) -> Verdict {
    for (what, stats) in [
        ("image fs", f.runtime().image_fs_stats().await),
        ("build cache disk", f.runtime().cache_disk_stats().await),
    ] {
        let d = stats.unwrap_or_else(|e| panic!("{what} stats: {e}"));
        assert!(d.total > 0, "{what}: total is 0");
        assert!(
            d.free <= d.total,
            "{what}: free {} > total {}",
            d.free,
            d.total
        );
        assert!(
            d.available <= d.free,
            "{what}: available {} > free {}",
            d.available,
            d.free
        );
    }
    Verdict::Passed
}

/// Removing an unused image removes it; again, it is already gone; an
/// image some (exited) container uses is refused and stays.
pub async fn image_removal_outcomes<F: Fixture>(f: &mut F) -> Verdict {
    let unused = need!(f.create_image(image("rm-unused", false)));
    let used = need!(f.create_image(image("rm-used", false)));
    let _user = need!(f.create_container(container("rm-user", &used, false)));
    let rt = f.runtime();
    let first = rt.remove_image(&unused).await;
    assert!(
        matches!(first, RemoveOutcome::Removed { .. }),
        "removing unused image {unused}: {first}"
    );
    let again = rt.remove_image(&unused).await;
    assert_eq!(again, RemoveOutcome::AlreadyGone, "removing {unused} twice");
    let refused = rt.remove_image(&used).await;
    assert!(
        matches!(refused, RemoveOutcome::InUse { .. }),
        "removing image {used} of an exited container: {refused}"
    );
    let listed = images_of(f).await;
    assert!(!listed.contains_key(&unused), "{unused} still listed");
    assert!(
        listed.contains_key(&used),
        "in-use image {used} was removed"
    );
    Verdict::Passed
}

/// A pinned image is refused and stays.
pub async fn pinned_images_are_never_removed<F: Fixture>(f: &mut F) -> Verdict {
    let pinned = need!(f.create_image(image("rm-pinned", true)));
    let outcome = f.runtime().remove_image(&pinned).await;
    assert!(
        matches!(outcome, RemoveOutcome::InUse { .. }),
        "removing pinned image {pinned}: {outcome}"
    );
    assert!(
        images_of(f).await.contains_key(&pinned),
        "{pinned} was removed"
    );
    Verdict::Passed
}

/// A running container is neither removed nor stopped; an exited one is
/// removed, then already gone.
pub async fn running_containers_are_never_removed<F: Fixture>(f: &mut F) -> Verdict {
    let img = need!(f.create_image(image("run-img", false)));
    let running = need!(f.create_container(container("run-live", &img, true)));
    let exited = need!(f.create_container(container("run-dead", &img, false)));
    let rt = f.runtime();
    let outcome = rt.remove_container(&running).await;
    assert!(
        matches!(outcome, RemoveOutcome::InUse { .. }),
        "removing running container {running}: {outcome}"
    );
    let stop = rt.stop_container(&running).await;
    assert!(
        matches!(stop, StopOutcome::InUse { .. }),
        "stopping running container {running}: {stop}"
    );
    let outcome = rt.remove_container(&exited).await;
    assert!(
        matches!(outcome, RemoveOutcome::Removed { .. }),
        "removing exited container {exited}: {outcome}"
    );
    let again = rt.remove_container(&exited).await;
    assert_eq!(again, RemoveOutcome::AlreadyGone, "removing {exited} twice");
    let listed = containers_of(f).await;
    let live = listed
        .get(&running)
        .unwrap_or_else(|| panic!("running container {running} was removed"));
    assert_eq!(live.state, ContainerState::Running, "{running} was stopped");
    assert!(!listed.contains_key(&exited), "{exited} still listed");
    Verdict::Passed
}

/// A free cache record is removed, then already gone; a held one is
/// refused.
pub async fn cache_record_removal_outcomes<F: Fixture>(f: &mut F) -> Verdict {
    let r = need!(f.create_cache_record(CacheSpec {
        name: "rm-r".into(),
        size: 4096,
    }));
    let first = f.runtime().remove_cache_record(&r).await;
    assert!(
        matches!(first, RemoveOutcome::Removed { .. }),
        "removing record {r}: {first}"
    );
    let again = f.runtime().remove_cache_record(&r).await;
    assert_eq!(again, RemoveOutcome::AlreadyGone, "removing {r} twice");
    let held = need!(f.create_cache_record(CacheSpec {
        name: "rm-held".into(),
        size: 4096,
    }));
    need!(f.hold_cache_record(&held));
    let refused = f.runtime().remove_cache_record(&held).await;
    assert!(
        matches!(refused, RemoveOutcome::InUse { .. }),
        "removing held record {held}: {refused}"
    );
    assert!(record_ids(f).await.contains(&held), "{held} was removed");
    Verdict::Passed
}

fn delete_unused_images<F: Fixture>(f: &F) -> ImageGcCollector {
    let policy =
        ImagePolicy::new(85, 80, Duration::ZERO, Duration::ZERO).expect("a valid image policy");
    let mut gc = ImageGcCollector::new(policy);
    gc.mode(ImageGcMode::DeleteUnusedImages)
        .select(f.selector());
    gc
}

fn remove_dead_containers<F: Fixture>(f: &F) -> ContainerGcCollector {
    let policy = ContainerGcPolicy::new(Duration::ZERO, 0, -1).expect("a valid container policy");
    let mut gc = ContainerGcCollector::new(policy);
    gc.select(f.selector());
    gc
}

/// The image collector (`DeleteUnusedImages`, no MinAge) removes the unused
/// image and keeps the ones containers use and the pinned one, and its
/// report says so.
pub async fn image_collector_keeps_in_use_and_pinned_images<F: Fixture>(f: &mut F) -> Verdict {
    let unused = need!(f.create_image(image("gc-unused", false)));
    let by_exited = need!(f.create_image(image("gc-exited", false)));
    let by_running = need!(f.create_image(image("gc-running", false)));
    let pinned = need!(f.create_image(image("gc-pinned", true)));
    need!(f.create_container(container("gc-exited-user", &by_exited, false)));
    need!(f.create_container(container("gc-running-user", &by_running, true)));
    let mut gc = delete_unused_images(f);
    let report = gc.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let removed: Vec<&Id> = report.removed_ids().collect();
    assert!(
        removed.contains(&&unused),
        "{unused} not removed:\n{report}"
    );
    for (id, reason) in [
        (&by_exited, ImageKeepReason::InUse),
        (&by_running, ImageKeepReason::InUse),
        (&pinned, ImageKeepReason::Pinned),
    ] {
        assert!(!removed.contains(&id), "{id} removed:\n{report}");
        let skip = report
            .skips
            .iter()
            .find(|s| &s.id == id)
            .unwrap_or_else(|| panic!("{id} not among the skips:\n{report}"));
        assert_eq!(skip.reason, SkipReason::Image(reason), "reason for {id}");
    }
    let listed = images_of(f).await;
    assert!(!listed.contains_key(&unused), "{unused} still listed");
    for id in [&by_exited, &by_running, &pinned] {
        assert!(listed.contains_key(id), "{id} gone from the engine");
    }
    Verdict::Passed
}

/// The container collector (no dead container kept) removes exited
/// containers and keeps running ones.
pub async fn container_collector_keeps_running_containers<F: Fixture>(f: &mut F) -> Verdict {
    let img = need!(f.create_image(image("cgc-img", false)));
    let live = need!(f.create_container(container("cgc-live", &img, true)));
    let dead = need!(f.create_container(container("cgc-dead", &img, false)));
    let mut gc = remove_dead_containers(f);
    let report = gc.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(
        report.removed_ids().any(|id| id == &dead),
        "{dead} not removed:\n{report}"
    );
    let skip = report
        .skips
        .iter()
        .find(|s| s.id == live)
        .unwrap_or_else(|| panic!("{live} not among the skips:\n{report}"));
    assert_eq!(
        skip.reason,
        SkipReason::Container(ContainerKeepReason::Running)
    );
    let listed = containers_of(f).await;
    assert!(listed.contains_key(&live), "running {live} was removed");
    assert!(!listed.contains_key(&dead), "{dead} still listed");
    Verdict::Passed
}

/// A batch rule scoped to created records removes them all, and the report
/// adds up.
pub async fn build_cache_collector_reports<F: Fixture>(f: &mut F) -> Verdict {
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(need!(f.create_cache_record(CacheSpec {
            name: format!("bgc-{i}"),
            size: 4096 * (i + 1),
        })));
    }
    let rule = Rule {
        filter: ids.iter().map(|id| format!("id=={id}")).collect(),
        ..Rule::default()
    };
    let gc = BuildCacheCollector::new(vec![rule]);
    let report = gc.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let mut removed: Vec<Id> = report.removed_ids().cloned().collect();
    removed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(removed, want, "{report}");
    let sum: u64 = report.deletions.iter().map(|d| d.bytes_freed()).sum();
    assert_eq!(report.bytes_freed, sum);
    assert_eq!(report.passes[0].bytes_freed, sum);
    let listed = record_ids(f).await;
    for id in &ids {
        assert!(!listed.contains(id), "{id} still listed");
    }
    Verdict::Passed
}

/// Dry runs of all three collectors plan removals and make none.
pub async fn dry_runs_delete_nothing<F: Fixture>(f: &mut F) -> Verdict {
    let img = need!(f.create_image(image("dry-img", false)));
    let used = need!(f.create_image(image("dry-used", false)));
    let dead = need!(f.create_container(container("dry-dead", &used, false)));
    let images_before = images_of(f).await;
    let containers_before = containers_of(f).await;

    let mut images = delete_unused_images(f);
    images.dry_run(true);
    let report = images.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert!(report.dry_run);
    assert!(
        report.planned_ids().any(|id| id == &img),
        "dry run does not plan {img}:\n{report}"
    );
    let mut containers = remove_dead_containers(f);
    containers.dry_run(true);
    let report = containers.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert!(
        report.planned_ids().any(|id| id == &dead),
        "dry run does not plan {dead}:\n{report}"
    );
    assert_eq!(report.bytes_freed, 0);
    assert_eq!(
        images_of(f).await,
        images_before,
        "a dry run removed images"
    );
    assert_eq!(
        containers_of(f).await,
        containers_before,
        "a dry run removed containers"
    );

    let r = need!(f.create_cache_record(CacheSpec {
        name: "dry-r".into(),
        size: 4096,
    }));
    let mut gc = BuildCacheCollector::new(vec![Rule {
        filter: vec![format!("id=={r}")],
        ..Rule::default()
    }]);
    gc.dry_run(true);
    let report = gc.run(f.runtime(), f.clock(), &NoopObserver).await;
    assert_eq!(report.planned_ids().collect::<Vec<_>>(), [&r], "{report}");
    assert!(record_ids(f).await.contains(&r), "a dry run removed {r}");
    Verdict::Passed
}

/// Every item a collector looked at is in its report exactly once, and the
/// byte totals add up.
pub async fn reports_account_for_every_item<F: Fixture>(f: &mut F) -> Verdict {
    let a = need!(f.create_image(image("acct-a", false)));
    let b = need!(f.create_image(image("acct-b", false)));
    need!(f.create_container(container("acct-user", &b, false)));
    let mut gc = delete_unused_images(f);
    let report = gc.run(f.runtime(), f.clock(), &NoopObserver).await;
    check_accounting(&report);
    for id in [&a, &b] {
        let seen = report.deletions.iter().filter(|d| &d.id == id).count()
            + report.skips.iter().filter(|s| &s.id == id).count();
        assert_eq!(seen, 1, "{id} appears {seen} times:\n{report}");
    }
    Verdict::Passed
}

/// Checks the invariants every report keeps.
///
/// # Panics
///
/// If an invariant does not hold.
pub fn check_accounting(report: &Report) {
    let sum: u64 = report.deletions.iter().map(|d| d.bytes_freed()).sum();
    assert_eq!(report.bytes_freed, sum, "bytes_freed:\n{report}");
    let per_pass: u64 = report.passes.iter().map(|p| p.bytes_freed).sum();
    assert_eq!(per_pass, sum, "per-pass bytes:\n{report}");
    let planned: u64 = report.passes.iter().map(|p| p.planned).sum();
    assert_eq!(planned as usize, report.deletions.len(), "per-pass counts");
    if !report.skips.is_empty() {
        assert_eq!(report.skips.len() as u64, report.skipped);
    }
    let mut seen = std::collections::HashSet::new();
    for d in &report.deletions {
        assert!(seen.insert((d.item, &d.id)), "{} twice:\n{report}", d.id);
        if report.dry_run {
            assert_eq!(d.outcome, Outcome::Planned);
        }
    }
    for s in &report.skips {
        assert!(seen.insert((s.item, &s.id)), "{} twice:\n{report}", s.id);
    }
    let aborted = report.errors.iter().any(|e| e.fatal);
    assert_eq!(aborted, report.status == RunStatus::Aborted, "status");
}

/// Generates one `#[test]` per conformance test.
///
/// `$fixture` is an expression evaluated afresh for every test (a fresh
/// fixture); `$block_on` is a function that runs a future to completion
/// ([`crate::block_on`] for engines that never wait, a tokio runtime's
/// `block_on` for real ones).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr, $block_on:path) => {
        $crate::conformance_tests!(@each $fixture, $block_on;
            lists_created_images,
            lists_created_containers,
            lists_created_cache_records,
            disk_stats_are_consistent,
            image_removal_outcomes,
            pinned_images_are_never_removed,
            running_containers_are_never_removed,
            cache_record_removal_outcomes,
            image_collector_keeps_in_use_and_pinned_images,
            container_collector_keeps_running_containers,
            build_cache_collector_reports,
            dry_runs_delete_nothing,
            reports_account_for_every_item,
        );
    };
    (@each $fixture:expr, $block_on:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let mut fixture = $fixture;
                let verdict = $block_on($crate::conformance::$name(&mut fixture));
                verdict.print(stringify!($name));
            }
        )*
    };
}

/// The reference fixture: a [`MemoryRuntime`] on a [`ManualClock`].
#[derive(Debug)]
pub struct MemoryFixture {
    runtime: MemoryRuntime,
    clock: ManualClock,
}

/// The label [`MemoryFixture`] puts on what it creates.
pub const FIXTURE_LABEL: &str = "io.reclaim.conformance";

impl MemoryFixture {
    /// An empty engine on a 1 GiB disk, at 2024-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self {
            runtime: MemoryRuntime::new(1 << 30),
            clock: ManualClock::new(reclaim_model::Timestamp::from_unix_secs(1_704_067_200)),
        }
    }

    fn labels() -> BTreeMap<String, String> {
        [(FIXTURE_LABEL.to_owned(), "1".to_owned())]
            .into_iter()
            .collect()
    }
}

impl Default for MemoryFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for MemoryFixture {
    type Runtime = MemoryRuntime;
    type Clock = ManualClock;

    fn runtime(&self) -> &MemoryRuntime {
        &self.runtime
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn selector(&self) -> Option<LabelSelector> {
        Some(LabelSelector::new(FIXTURE_LABEL, Some("1".into())))
    }

    async fn create_image(&mut self, spec: ImageSpec) -> Result<Id, FixtureError> {
        let mut info = ImageInfo::new(format!("sha256:{}", spec.name), 1000, self.clock.now());
        info.pinned = spec.pinned;
        info.repo_tags = vec![format!("conformance/{}:latest", spec.name)];
        info.labels = Self::labels();
        let id = info.id.clone();
        self.runtime
            .state_mut()
            .pull_image(info)
            .map_err(|e| FixtureError::Failed(e.to_string()))?;
        Ok(id)
    }

    async fn create_container(&mut self, spec: ContainerSpec) -> Result<Id, FixtureError> {
        let state = if spec.running {
            ContainerState::Running
        } else {
            ContainerState::Exited
        };
        let mut info = ContainerInfo::new(
            format!("c-{}", spec.name),
            spec.name.as_str(),
            spec.image,
            state,
            self.clock.now(),
        );
        info.labels = Self::labels();
        let id = info.id.clone();
        self.runtime
            .state_mut()
            .create_container(info)
            .map_err(|e| FixtureError::Failed(e.to_string()))?;
        Ok(id)
    }

    async fn create_cache_record(&mut self, spec: CacheSpec) -> Result<Id, FixtureError> {
        let mut record = reclaim_policy::prune::CacheRecord::new(spec.name.as_str(), spec.size);
        record.created_at = self.clock.now();
        let id = record.id.clone();
        self.runtime
            .state_mut()
            .add_record(record)
            .map_err(|e| FixtureError::Failed(e.to_string()))?;
        Ok(id)
    }

    async fn hold_cache_record(&mut self, id: &Id) -> Result<(), FixtureError> {
        if self
            .runtime
            .state_mut()
            .set_record_in_use(id.as_str(), true)
        {
            Ok(())
        } else {
            Err(FixtureError::Failed(format!("no record {id}")))
        }
    }
}
