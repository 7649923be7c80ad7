//! The built-in workload: a CI node running pipelines for several projects
//! on many branches.
//!
//! # The node
//!
//! A Kubernetes node where GitLab Runner starts one pod per CI job, and a
//! long-running Docker-in-Docker daemon with a persistent data root (on the
//! node's disk) builds images for the jobs. One disk holds everything: the
//! system and logs ("other" bytes), the kubelet's images and containers, and
//! BuildKit's build cache.
//!
//! # Pipelines
//!
//! Pipelines arrive at random (a Poisson process) with a weekly rhythm:
//! weekdays 08:00 to 19:00 UTC are busy, nights run at 15% of that rate and
//! weekends at 10%; [`Workload::pipelines_per_hour`] is the average over
//! the week. Each pipeline picks a project, then the main branch or one of
//! the project's live feature branches. Feature branches are born at random
//! (fork from main), live an exponentially distributed time, and are never
//! built again after that. A pipeline usually builds a new commit; some
//! re-run an existing one (retries). A new commit changes the dependencies
//! with a small probability, the Dockerfile's system packages with a
//! smaller one, and a feature branch sometimes rebases onto main.
//!
//! # Builds
//!
//! The build job runs `docker build` for the application target and, in
//! some pipelines, for the test target too. Every build walks one chain of
//! cache records, whose ids are content addresses (the same content always
//! gives the same id, as BuildKit's cache keys do):
//!
//! 1. the Dockerfile frontend (`frontend`, updated monthly);
//! 2. the build context: a `source.local` record per project (mutable,
//!    reused by every build), or a `source.git.checkout` per commit for
//!    projects built from git;
//! 3. the base image's layers (a chain; a new base digest about weekly);
//! 4. system packages (`RUN apt-get install`), on the base;
//! 5. the dependency manifest (`COPY package.json …`) and the dependency
//!    install (`RUN … install`, with an `exec.cachemount` package cache);
//! 6. the source (`COPY . .`), new for every commit;
//! 7. build steps (`RUN make build` with an `exec.cachemount` compiler
//!    cache, `RUN make package`), or the test target's `RUN make test-prep`.
//!
//! A step whose record exists is a hit; otherwise it runs, taking its cost
//! in seconds and creating its record. Because records are content
//! addressed and a record cannot outlive its parents, a rebuilt step makes
//! every later step of the chain a miss too. Cache mounts are used only
//! when the step that mounts them runs. Sizes and costs are log-normal
//! around per-project medians.
//!
//! # Pods
//!
//! Each job is a pod: a helper container and the job container (plus
//! database services for test jobs). Their images are pulled if absent
//! (CI images get new digests every couple of weeks, leaving the old ones
//! unused), the containers run, exit with a writable layer of some size, and
//! the runner deletes the pod a few seconds later.
//!
//! # Time in the trace
//!
//! Event times are the workload's, independent of any policy: a step that
//! the generator's unbounded cache would hit takes 0.3 s, a step it would
//! miss takes its cost. A replay does not stretch time when it rebuilds.

use std::collections::HashMap;

use reclaim_model::{Id, Timestamp};
use reclaim_policy::prune::RecordType;
use serde::Serialize;

use crate::rng::{Rng, mix};
use crate::trace::{
    BuildDef, ContainerDef, DiskEvent, Ev, ImageDef, NONE, RecordDef, Trace, TraceBuilder,
    TraceHeader, default_mutable,
};

const MB: f64 = 1e6;
const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: f64 = 86_400_000.0;

/// The parameters of the built-in CI-node workload, with a seeded
/// generator. Every setter documents its unit and default.
///
/// ```
/// use reclaim_sim::Workload;
///
/// let trace = Workload::new().days(1.0).seed(7).generate()?;
/// assert!(trace.build_count() > 10);
/// // The same parameters give the same trace.
/// assert_eq!(trace, Workload::new().days(1.0).seed(7).generate()?);
/// # Ok::<(), reclaim_sim::WorkloadError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    seed: u64,
    start: Timestamp,
    days: f64,
    disk_total: u64,
    other_bytes: u64,
    projects: u32,
    pipelines_per_hour: f64,
    new_branches_per_day: f64,
    branch_lifetime_days: f64,
    main_share: f64,
    retry_share: f64,
    test_build_share: f64,
    test_job_share: f64,
    dependency_change: f64,
    dockerfile_change: f64,
    rebase_share: f64,
    base_update_days: f64,
    ci_image_update_days: f64,
    pull_mb_per_sec: f64,
    size_scale: f64,
    cost_scale: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            seed: 1,
            // A Monday.
            start: Timestamp::from_unix_secs(1_736_121_600),
            days: 30.0,
            disk_total: 100 << 30,
            other_bytes: 12 << 30,
            projects: 4,
            pipelines_per_hour: 6.0,
            new_branches_per_day: 3.0,
            branch_lifetime_days: 4.0,
            main_share: 0.25,
            retry_share: 0.08,
            test_build_share: 0.6,
            test_job_share: 0.8,
            dependency_change: 0.05,
            dockerfile_change: 0.01,
            rebase_share: 0.1,
            base_update_days: 7.0,
            ci_image_update_days: 14.0,
            pull_mb_per_sec: 50.0,
            size_scale: 1.0,
            cost_scale: 1.0,
        }
    }
}

/// A workload parameter out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// A parameter has a value the model cannot use; the message names it,
    /// its value and the accepted range.
    #[error("workload: `{field}` is {value}, expected {expected}")]
    Invalid {
        /// The parameter (its setter's name).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl Workload {
    /// The default workload: 30 days, 4 projects, 6 pipelines per hour on
    /// a 100 GiB disk, seed 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seed of the random generator. Default 1.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Wall-clock time at the start of the trace. Default
    /// 2025-01-06T00:00:00Z (a Monday); the weekly rhythm follows UTC.
    pub fn start(&mut self, start: Timestamp) -> &mut Self {
        self.start = start;
        self
    }

    /// Length in days, in `(0, 3660]`. Default 30.
    pub fn days(&mut self, days: f64) -> &mut Self {
        self.days = days;
        self
    }

    /// Size of the node's disk in bytes. Default 100 GiB.
    pub fn disk_total(&mut self, bytes: u64) -> &mut Self {
        self.disk_total = bytes;
        self
    }

    /// Bytes used by the system, logs and volumes, which no collector
    /// touches. Default 12 GiB.
    pub fn other_bytes(&mut self, bytes: u64) -> &mut Self {
        self.other_bytes = bytes;
        self
    }

    /// Number of projects (repositories) built on the node, in `1..=1000`.
    /// Default 4.
    pub fn projects(&mut self, projects: u32) -> &mut Self {
        self.projects = projects;
        self
    }

    /// Pipelines per hour, averaged over the week (each runs one or two
    /// builds). Default 6.
    pub fn pipelines_per_hour(&mut self, rate: f64) -> &mut Self {
        self.pipelines_per_hour = rate;
        self
    }

    /// New feature branches per project per day, averaged over the week.
    /// Default 3.
    pub fn new_branches_per_day(&mut self, rate: f64) -> &mut Self {
        self.new_branches_per_day = rate;
        self
    }

    /// Mean life of a feature branch in days (exponential). Default 4.
    pub fn branch_lifetime_days(&mut self, days: f64) -> &mut Self {
        self.branch_lifetime_days = days;
        self
    }

    /// Share of pipelines that run on the main branch. Default 0.25.
    pub fn main_share(&mut self, share: f64) -> &mut Self {
        self.main_share = share;
        self
    }

    /// Share of pipelines that re-run the branch's last commit. Default
    /// 0.08.
    pub fn retry_share(&mut self, share: f64) -> &mut Self {
        self.retry_share = share;
        self
    }

    /// Share of pipelines that also build the test target. Default 0.6.
    pub fn test_build_share(&mut self, share: f64) -> &mut Self {
        self.test_build_share = share;
        self
    }

    /// Share of pipelines with a test job (a pod with the project's CI
    /// image and database services). Default 0.8.
    pub fn test_job_share(&mut self, share: f64) -> &mut Self {
        self.test_job_share = share;
        self
    }

    /// Probability that a new commit changes the dependencies. Default
    /// 0.05.
    pub fn dependency_change(&mut self, p: f64) -> &mut Self {
        self.dependency_change = p;
        self
    }

    /// Probability that a new commit changes the Dockerfile's system
    /// packages. Default 0.01.
    pub fn dockerfile_change(&mut self, p: f64) -> &mut Self {
        self.dockerfile_change = p;
        self
    }

    /// Probability that a new commit on a feature branch rebases it onto
    /// main first. Default 0.1.
    pub fn rebase_share(&mut self, p: f64) -> &mut Self {
        self.rebase_share = p;
        self
    }

    /// Mean days between new digests of a base image. Default 7.
    pub fn base_update_days(&mut self, days: f64) -> &mut Self {
        self.base_update_days = days;
        self
    }

    /// Mean days between new digests of a CI job image. Default 14.
    pub fn ci_image_update_days(&mut self, days: f64) -> &mut Self {
        self.ci_image_update_days = days;
        self
    }

    /// Pull throughput in MB/s, which sets the cost of pulls and of base
    /// layers. Default 50.
    pub fn pull_mb_per_sec(&mut self, rate: f64) -> &mut Self {
        self.pull_mb_per_sec = rate;
        self
    }

    /// Factor applied to every layer, cache and container size. Default 1.
    pub fn size_scale(&mut self, scale: f64) -> &mut Self {
        self.size_scale = scale;
        self
    }

    /// Factor applied to every step cost and job duration. Default 1.
    pub fn cost_scale(&mut self, scale: f64) -> &mut Self {
        self.cost_scale = scale;
        self
    }

    /// The seed.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// The length in days.
    pub fn days_value(&self) -> f64 {
        self.days
    }

    /// The disk size in bytes.
    pub fn disk_total_value(&self) -> u64 {
        self.disk_total
    }

    /// Checks every parameter.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::Invalid`] for the first parameter out of range.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            Err(WorkloadError::Invalid {
                field,
                value,
                expected,
            })
        };
        if !(self.days > 0.0 && self.days <= 3660.0) {
            return invalid(
                "days",
                self.days.to_string(),
                "a number of days in (0, 3660]",
            );
        }
        if self.disk_total == 0 {
            return invalid("disk_total", "0".into(), "a positive number of bytes");
        }
        if !(1..=1000).contains(&self.projects) {
            return invalid("projects", self.projects.to_string(), "1 to 1000");
        }
        let rates = [
            ("pipelines_per_hour", self.pipelines_per_hour),
            ("new_branches_per_day", self.new_branches_per_day),
        ];
        for (field, value) in rates {
            if !(value.is_finite() && (0.0..=10_000.0).contains(&value)) {
                return invalid(field, value.to_string(), "a rate in [0, 10000]");
            }
        }
        let shares = [
            ("main_share", self.main_share),
            ("retry_share", self.retry_share),
            ("test_build_share", self.test_build_share),
            ("test_job_share", self.test_job_share),
            ("dependency_change", self.dependency_change),
            ("dockerfile_change", self.dockerfile_change),
            ("rebase_share", self.rebase_share),
        ];
        for (field, value) in shares {
            if !(0.0..=1.0).contains(&value) {
                return invalid(field, value.to_string(), "a probability in [0, 1]");
            }
        }
        let positive = [
            ("branch_lifetime_days", self.branch_lifetime_days),
            ("base_update_days", self.base_update_days),
            ("ci_image_update_days", self.ci_image_update_days),
            ("pull_mb_per_sec", self.pull_mb_per_sec),
            ("size_scale", self.size_scale),
            ("cost_scale", self.cost_scale),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0 && value <= 1e6) {
                return invalid(field, value.to_string(), "a positive number up to 1e6");
            }
        }
        Ok(())
    }

    /// Generates the trace: the same parameters always give the same trace
    /// (on one platform; see the crate documentation).
    ///
    /// # Errors
    ///
    /// [`WorkloadError`] if a parameter is out of range.
    pub fn generate(&self) -> Result<Trace, WorkloadError> {
        self.validate()?;
        Ok(Generator::new(self).run())
    }
}

impl Workload {
    /// `mb` megabytes in bytes, times the size scale.
    fn scaled(&self, mb: f64) -> f64 {
        mb * MB * self.size_scale
    }
}

// ----- The generator -----

/// A base image used by `FROM`, and the CI image test jobs of projects on
/// it run.
struct BaseImage {
    name: &'static str,
    layers: u32,
    test_image: &'static str,
    test_image_mb: f64,
}

const BASES: [BaseImage; 3] = [
    BaseImage {
        name: "node:20-bookworm",
        layers: 6,
        test_image: "node:20-bookworm",
        test_image_mb: 1100.0,
    },
    BaseImage {
        name: "golang:1.22-bookworm",
        layers: 5,
        test_image: "golang:1.22-bookworm",
        test_image_mb: 840.0,
    },
    BaseImage {
        name: "python:3.12-slim",
        layers: 4,
        test_image: "python:3.12-slim",
        test_image_mb: 155.0,
    },
];

const PROJECT_NAMES: [&str; 8] = [
    "api", "web", "worker", "cli", "billing", "search", "auth", "docs",
];

/// Content keys of cache records: equal keys are the same record.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
enum Key {
    Frontend(u32),
    Local(u32),
    Git(u32, u64),
    Base {
        base: u32,
        version: u32,
        layer: u32,
    },
    Sys {
        project: u32,
        version: u32,
        parent: u32,
    },
    Manifest {
        project: u32,
        deps: u32,
        parent: u32,
    },
    Deps {
        project: u32,
        deps: u32,
        parent: u32,
    },
    PkgCache(u32),
    Copy {
        project: u32,
        commit: u64,
        parent: u32,
    },
    Build {
        project: u32,
        commit: u64,
        parent: u32,
    },
    BuildCache(u32),
    Package {
        project: u32,
        commit: u64,
        parent: u32,
    },
    TestPrep {
        project: u32,
        commit: u64,
        parent: u32,
    },
}

/// What the generator knows of a record beyond its definition.
struct GenRecord {
    size: f64,
    cost_ms: u32,
    /// Used before (an unbounded cache would hit it).
    seen: bool,
    /// For cache mounts: growth per run (MB, median) and cap (bytes).
    growth: Option<(f64, f64)>,
}

/// A new record's definition and statistics.
struct NewRecord {
    record_type: RecordType,
    parents: Vec<u32>,
    description: String,
    size: f64,
    cost_s: f64,
    growth: Option<(f64, f64)>,
}

#[derive(Clone, Copy, Debug)]
struct BranchState {
    deps: u32,
    dockerfile: u32,
    commit: u64,
}

struct Branch {
    name: String,
    born: u64,
    dies: u64,
    state: Option<BranchState>,
}

struct Project {
    name: String,
    base: usize,
    git: bool,
    repo_mb: f64,
    deps_mb: f64,
    deps_s: f64,
    build_mb: f64,
    build_s: f64,
    test_image: usize,
    main: BranchState,
    branches: Vec<Branch>,
}

/// A CI image (kubelet side) whose tag moves to a new digest from time to
/// time.
struct CiImage {
    name: String,
    mb: f64,
    pinned: bool,
    /// Times (ms) at which the tag moves to a new digest.
    changes: Vec<u64>,
    /// The image index of each version, once pulled.
    versions: Vec<Option<(u32, u64)>>,
}

#[derive(Clone, Copy, Eq, PartialEq)]
enum Target {
    App,
    Test,
}

const HELPER: usize = 0;
const CLI: usize = 1;
const POSTGRES: usize = 2;
const REDIS: usize = 3;
const PAUSE: usize = 4;
const DIND: usize = 5;
const FIRST_TEST_IMAGE: usize = 6;

struct Generator<'w> {
    w: &'w Workload,
    rng: Rng,
    builder: TraceBuilder,
    /// Events with their time and creation order, sorted at the end.
    events: Vec<(u64, u64, Ev)>,
    end: u64,
    keys: HashMap<Key, u32>,
    records: Vec<GenRecord>,
    next_id: u64,
    projects: Vec<Project>,
    images: Vec<CiImage>,
    base_changes: Vec<Vec<u64>>,
    frontend_changes: Vec<u64>,
    next_deps: u32,
    next_dockerfile: u32,
    next_commit: u64,
    pipelines: u64,
}

impl<'w> Generator<'w> {
    fn new(w: &'w Workload) -> Self {
        let mut header = TraceHeader::new(w.start, w.disk_total);
        header.source = format!("reclaim-sim {}", env!("CARGO_PKG_VERSION"));
        header.seed = Some(w.seed);
        header.workload = serde_json::to_value(w).ok();
        let end = (w.days * MS_PER_DAY) as u64;
        header.duration_ms = Some(end);
        Self {
            w,
            rng: Rng::new(w.seed),
            builder: TraceBuilder::new(header),
            events: Vec::new(),
            end,
            keys: HashMap::new(),
            records: Vec::new(),
            next_id: 0,
            projects: Vec::new(),
            images: Vec::new(),
            base_changes: Vec::new(),
            frontend_changes: Vec::new(),
            next_deps: 0,
            next_dockerfile: 0,
            next_commit: 0,
            pipelines: 0,
        }
    }

    fn run(mut self) -> Trace {
        self.setup();
        self.initial_state();
        let pipelines = self.arrivals(self.w.pipelines_per_hour / MS_PER_HOUR);
        for t in pipelines {
            self.pipeline(t);
        }
        self.events.sort_by_key(|&(t, seq, _)| (t, seq));
        let events = std::mem::take(&mut self.events);
        for (t, _, ev) in events {
            self.builder.push_unchecked(t, ev);
        }
        // Read the events back through the checked path: this validates the
        // generator's output and numbers records, images and containers in
        // order of first appearance, as a trace read from a file is.
        let draft = self.builder.finish();
        Trace::from_events(draft.header().clone(), draft.events())
            .expect("the generator writes valid traces")
    }

    // ----- Set-up -----

    fn setup(&mut self) {
        let w = self.w;
        // Version changes of base images and the frontend.
        for _ in BASES.iter() {
            let changes = self.changes(w.base_update_days);
            self.base_changes.push(changes);
        }
        self.frontend_changes = self.changes(30.0);
        // The kubelet's CI images.
        let ci = w.ci_image_update_days;
        let catalogue: [(&str, f64, f64, bool); 6] = [
            (
                "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.11.0",
                95.0,
                28.0,
                false,
            ),
            ("docker:27-cli", 130.0, ci, false),
            ("postgres:16", 440.0, ci * 1.5, false),
            ("redis:7", 117.0, ci * 2.0, false),
            ("registry.k8s.io/pause:3.10", 0.75, 0.0, true),
            ("docker:27-dind", 150.0, 0.0, false),
        ];
        for (name, mb, update, pinned) in catalogue {
            self.add_ci_image(name, mb, update, pinned);
        }
        for base in &BASES {
            self.add_ci_image(base.test_image, base.test_image_mb, ci, false);
        }
        // Projects and their feature branches.
        for p in 0..w.projects {
            let name = PROJECT_NAMES
                .get(p as usize)
                .map_or_else(|| format!("project-{p}"), |n| (*n).to_owned());
            let base = p as usize % BASES.len();
            let deps = self.new_deps();
            let dockerfile = self.new_dockerfile();
            let project = Project {
                name,
                base,
                git: p % 4 == 3,
                repo_mb: self.rng.lognormal(60.0, 0.7).clamp(5.0, 1000.0),
                deps_mb: self.rng.lognormal(450.0, 0.5),
                deps_s: self.rng.lognormal(150.0, 0.4),
                build_mb: self.rng.lognormal(220.0, 0.5),
                build_s: self.rng.lognormal(240.0, 0.5),
                test_image: FIRST_TEST_IMAGE + base,
                main: BranchState {
                    deps,
                    dockerfile,
                    commit: 0,
                },
                branches: Vec::new(),
            };
            self.projects.push(project);
        }
        let lifetime = w.branch_lifetime_days * MS_PER_DAY;
        for p in 0..self.projects.len() {
            // Branches alive at the start: the steady-state count.
            let alive = (w.new_branches_per_day * w.branch_lifetime_days).round() as u32;
            let mut births: Vec<u64> = vec![0; alive as usize];
            births.extend(self.arrivals(w.new_branches_per_day / MS_PER_DAY));
            for born in births {
                let dies = born + self.rng.exponential(lifetime).max(3_600_000.0) as u64;
                let n = self.projects[p].branches.len();
                let name = format!("feature-{n}");
                self.projects[p].branches.push(Branch {
                    name,
                    born,
                    dies,
                    state: None,
                });
            }
        }
    }

    fn add_ci_image(&mut self, name: &str, mb: f64, update_days: f64, pinned: bool) {
        let changes = if update_days > 0.0 {
            self.changes(update_days)
        } else {
            Vec::new()
        };
        let versions = vec![None; changes.len() + 1];
        self.images.push(CiImage {
            name: name.to_owned(),
            mb,
            pinned,
            changes,
            versions,
        });
    }

    /// Times of a Poisson process of the given mean interval (days) over
    /// the trace.
    fn changes(&mut self, mean_days: f64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = 0.0;
        loop {
            t += self.rng.exponential(mean_days * MS_PER_DAY);
            if t >= self.end as f64 {
                return out;
            }
            out.push(t as u64);
        }
    }

    /// Arrival times of a Poisson process with the weekly rhythm, whose
    /// average rate is `rate_per_ms`.
    fn arrivals(&mut self, rate_per_ms: f64) -> Vec<u64> {
        let mut out = Vec::new();
        if rate_per_ms <= 0.0 {
            return out;
        }
        let peak = rate_per_ms / MEAN_ACTIVITY;
        let mut t = 0.0;
        loop {
            t += self.rng.exponential(1.0 / peak);
            if t >= self.end as f64 {
                return out;
            }
            let at = t as u64;
            if self.rng.uniform() < activity(self.w.start, at) {
                out.push(at);
            }
        }
    }

    fn initial_state(&mut self) {
        let other = self.w.other_bytes;
        let sample = self.builder.add_disk(DiskEvent {
            t: 0,
            total: Some(self.w.disk_total),
            used: Some(other),
            other: Some(other),
        });
        self.emit(0, Ev::Disk { sample });
        self.pull(0, PAUSE);
        let dind = self.pull(0, DIND);
        let pod = self.builder.pod(Id::new("dind"));
        self.container(1000, dind, pod, "dind", 10.0 * MB, None);
    }

    // ----- Ids, versions, events -----

    fn hex_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:016x}",
            mix(self.w.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.next_id)
        )
    }

    fn new_deps(&mut self) -> u32 {
        self.next_deps += 1;
        self.next_deps
    }

    fn new_dockerfile(&mut self) -> u32 {
        self.next_dockerfile += 1;
        self.next_dockerfile
    }

    fn emit(&mut self, t: u64, ev: Ev) {
        let seq = self.events.len() as u64;
        self.events.push((t, seq, ev));
    }

    fn cost_ms(&self, seconds: f64) -> u32 {
        (seconds * self.w.cost_scale * 1000.0)
            .round()
            .clamp(0.0, f64::from(u32::MAX - 1)) as u32
    }

    fn pull_seconds(&self, bytes: f64) -> f64 {
        1.0 + bytes / (self.w.pull_mb_per_sec * MB)
    }

    /// The record for `key`, created with `make` if new.
    fn record(&mut self, key: Key, make: impl FnOnce(&mut Self) -> NewRecord) -> u32 {
        if let Some(&index) = self.keys.get(&key) {
            return index;
        }
        let new = make(self);
        let id = Id::new(self.hex_id());
        let parents = new
            .parents
            .iter()
            .map(|&p| self.record_id(p))
            .collect::<Vec<_>>();
        let mutable = default_mutable(&new.record_type);
        let index = self.builder.add_record(RecordDef {
            id,
            parents,
            record_type: new.record_type,
            mutable,
            description: new.description,
        });
        let cost_ms = self.cost_ms(new.cost_s);
        self.records.push(GenRecord {
            size: new.size,
            cost_ms,
            seen: false,
            growth: new.growth,
        });
        self.keys.insert(key, index);
        index
    }

    /// The id of record `index` (the builder owns the definitions; ids
    /// are cheap to clone).
    fn record_id(&self, index: u32) -> Id {
        self.builder.records()[index as usize].id.clone()
    }

    /// The image index of CI image `which` at time `t`, defined on first
    /// use, and its size.
    fn image_at(&mut self, which: usize, t: u64) -> (u32, u64) {
        let version = self.images[which].changes.partition_point(|&c| c <= t);
        if let Some(v) = self.images[which].versions[version] {
            return v;
        }
        let id = format!("sha256:{}", self.hex_id());
        let size = self
            .w
            .scaled(self.images[which].mb * self.rng.lognormal(1.0, 0.05));
        let image = &self.images[which];
        let def = ImageDef {
            id: Id::new(id),
            tags: vec![image.name.clone()],
            pinned: image.pinned,
        };
        let index = self.builder.add_image(def);
        let entry = (index, size as u64);
        self.images[which].versions[version] = Some(entry);
        entry
    }

    fn pull(&mut self, t: u64, which: usize) -> u32 {
        let (image, size) = self.image_at(which, t);
        let cost_ms = self.cost_ms(self.pull_seconds(size as f64) / self.w.cost_scale);
        self.emit(
            t,
            Ev::Pull {
                image,
                cost_ms,
                size,
            },
        );
        image
    }

    /// Starts a container; with `exit`, also its exit (at `exit.0` with a
    /// writable layer of `exit.1` bytes).
    fn container(
        &mut self,
        t: u64,
        image: u32,
        pod: u32,
        name: &str,
        size: f64,
        exit: Option<u64>,
    ) {
        let id = Id::new(self.hex_id());
        let container = self.builder.add_container(ContainerDef {
            id,
            name: Id::new(name),
            image,
            pod,
        });
        self.emit(t, Ev::ContainerStart { container, size: 0 });
        if let Some(at) = exit {
            self.emit(
                at,
                Ev::ContainerExit {
                    container,
                    size: size as u64,
                },
            );
        }
    }

    // ----- Pipelines -----

    fn pipeline(&mut self, t0: u64) {
        self.pipelines += 1;
        let n = self.pipelines;
        let p = self.rng.below(self.projects.len());
        let main_share = self.w.main_share;
        let live: Vec<usize> = self.projects[p]
            .branches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.born <= t0 && t0 < b.dies)
            .map(|(i, _)| i)
            .collect();
        let on_main = live.is_empty() || self.rng.chance(main_share);
        let branch = if on_main {
            None
        } else {
            Some(live[self.rng.below(live.len())])
        };
        let mut state = match branch {
            None => self.projects[p].main,
            Some(b) => match self.projects[p].branches[b].state {
                Some(s) => s,
                // A branch forks from main at its first pipeline.
                None => BranchState {
                    commit: 0,
                    ..self.projects[p].main
                },
            },
        };
        let retry = state.commit != 0 && self.rng.chance(self.w.retry_share);
        if !retry {
            if branch.is_some() && self.rng.chance(self.w.rebase_share) {
                let main = self.projects[p].main;
                state.deps = main.deps;
                state.dockerfile = main.dockerfile;
            }
            if self.rng.chance(self.w.dependency_change) {
                state.deps = self.new_deps();
            }
            if self.rng.chance(self.w.dockerfile_change) {
                state.dockerfile = self.new_dockerfile();
            }
            self.next_commit += 1;
            state.commit = self.next_commit;
        }
        let branch_name = match branch {
            None => {
                self.projects[p].main = state;
                "main".to_owned()
            }
            Some(b) => {
                let br = &mut self.projects[p].branches[b];
                br.state = Some(state);
                br.name.clone()
            }
        };

        // The build job.
        let project = self.projects[p].name.clone();
        let pod = self
            .builder
            .pod(Id::new(format!("ci-{project}-{n:06}-build")));
        let helper = self.pull(t0, HELPER);
        let cli = self.pull(t0, CLI);
        let mut end = self.build(t0 + 3000, p, state, &branch_name, Target::App);
        if self.rng.chance(self.w.test_build_share) {
            end = self.build(end + 1000, p, state, &branch_name, Target::Test);
        }
        let helper_size = self.w.scaled(self.rng.lognormal(2.0, 0.3));
        let cli_size = self.w.scaled(self.rng.lognormal(5.0, 0.3));
        self.container(
            t0 + 1000,
            helper,
            pod,
            "helper",
            helper_size,
            Some(end + 1500),
        );
        self.container(t0 + 1000, cli, pod, "build", cli_size, Some(end + 1000));
        self.emit(end + 5000, Ev::PodDelete { pod });

        // The test job.
        if self.rng.chance(self.w.test_job_share) {
            let queued = self.rng.uniform() * 30_000.0;
            let t1 = end + 5000 + queued as u64;
            let pod = self
                .builder
                .pod(Id::new(format!("ci-{project}-{n:06}-test")));
            let seconds = self.rng.lognormal(300.0, 0.6) * self.w.cost_scale;
            let stop = t1 + 2000 + (seconds * 1000.0) as u64;
            let helper = self.pull(t1, HELPER);
            let test_image = self.projects[p].test_image;
            let test = self.pull(t1, test_image);
            let helper_size = self.w.scaled(self.rng.lognormal(2.0, 0.3));
            let test_size = self.w.scaled(self.rng.lognormal(80.0, 1.0));
            self.container(
                t1 + 2000,
                helper,
                pod,
                "helper",
                helper_size,
                Some(stop + 500),
            );
            self.container(t1 + 2000, test, pod, "test", test_size, Some(stop));
            if self.rng.chance(0.5) {
                let image = self.pull(t1, POSTGRES);
                let size = self.w.scaled(self.rng.lognormal(60.0, 0.5));
                self.container(t1 + 1500, image, pod, "postgres", size, Some(stop + 300));
            }
            if self.rng.chance(0.3) {
                let image = self.pull(t1, REDIS);
                let size = self.w.scaled(self.rng.lognormal(5.0, 0.5));
                self.container(t1 + 1500, image, pod, "redis", size, Some(stop + 300));
            }
            self.emit(stop + 5000, Ev::PodDelete { pod });
        }
    }

    /// One `docker build` starting at `t0`; returns its end time.
    fn build(
        &mut self,
        t0: u64,
        p: usize,
        state: BranchState,
        branch: &str,
        target: Target,
    ) -> u64 {
        let number = self.builder.build_count();
        let build = self.builder.add_build(BuildDef {
            id: format!("b{number}"),
            project: Some(self.projects[p].name.clone()),
            branch: Some(branch.to_owned()),
        });
        self.emit(t0, Ev::BuildStart { build });
        let mut t = t0 + 200;
        let pi = p as u32;
        let (base, git, repo_mb, name) = {
            let pr = &self.projects[p];
            (pr.base, pr.git, pr.repo_mb, pr.name.clone())
        };

        // The frontend.
        let version = self.frontend_changes.partition_point(|&c| c <= t0) as u32;
        let frontend = self.record(Key::Frontend(version), |g| {
            let size = g.w.scaled(g.rng.lognormal(25.0, 0.1));
            NewRecord {
                record_type: RecordType::Frontend,
                parents: Vec::new(),
                description: "docker.io/docker/dockerfile:1".to_owned(),
                size,
                cost_s: g.pull_seconds(size),
                growth: None,
            }
        });
        self.step(&mut t, build, frontend, NONE);

        // The build context.
        let context = if git {
            self.record(Key::Git(pi, state.commit), |g| {
                let size = g.w.scaled(repo_mb);
                NewRecord {
                    record_type: RecordType::SourceGitCheckout,
                    parents: Vec::new(),
                    description: format!("git checkout {name}@{:x}", state.commit),
                    size,
                    cost_s: 2.0 + size / (30.0 * MB),
                    growth: None,
                }
            })
        } else {
            self.record(Key::Local(pi), |g| {
                let size = g.w.scaled(repo_mb);
                NewRecord {
                    record_type: RecordType::SourceLocal,
                    parents: Vec::new(),
                    description: format!("local source for context of {name}"),
                    size,
                    cost_s: 1.0 + size / (100.0 * MB),
                    growth: None,
                }
            })
        };
        self.step(&mut t, build, context, NONE);

        // The base image's layers.
        let version = self.base_changes[base].partition_point(|&c| c <= t0) as u32;
        let mut parent = NONE;
        for layer in 0..BASES[base].layers {
            let key = Key::Base {
                base: base as u32,
                version,
                layer,
            };
            let under = parent;
            parent = self.record(key, |g| {
                let mb = if layer == 0 {
                    g.rng.lognormal(45.0, 0.3)
                } else {
                    g.rng.lognormal(70.0, 0.9)
                };
                let size = g.w.scaled(mb);
                NewRecord {
                    record_type: RecordType::Regular,
                    parents: if under == NONE {
                        Vec::new()
                    } else {
                        vec![under]
                    },
                    description: format!(
                        "pulled layer {} of docker.io/library/{}",
                        layer + 1,
                        BASES[base].name
                    ),
                    size,
                    cost_s: 0.5 + size / (g.w.pull_mb_per_sec * MB),
                    growth: None,
                }
            });
            self.step(&mut t, build, parent, NONE);
        }

        // System packages, dependencies.
        let under = parent;
        let sys = self.record(
            Key::Sys {
                project: pi,
                version: state.dockerfile,
                parent: under,
            },
            |g| NewRecord {
                record_type: RecordType::Regular,
                parents: vec![under],
                description: "RUN apt-get update && apt-get install -y build-essential".to_owned(),
                size: g.w.scaled(g.rng.lognormal(180.0, 0.5)),
                cost_s: g.rng.lognormal(50.0, 0.4),
                growth: None,
            },
        );
        self.step(&mut t, build, sys, NONE);
        let manifest = self.record(
            Key::Manifest {
                project: pi,
                deps: state.deps,
                parent: sys,
            },
            |g| NewRecord {
                record_type: RecordType::Regular,
                parents: vec![sys],
                description: "COPY package.json package-lock.json ./".to_owned(),
                size: g.w.scaled(g.rng.lognormal(0.2, 0.5)),
                cost_s: 0.5,
                growth: None,
            },
        );
        self.step(&mut t, build, manifest, NONE);
        let (deps_mb, deps_s) = (self.projects[p].deps_mb, self.projects[p].deps_s);
        let deps = self.record(
            Key::Deps {
                project: pi,
                deps: state.deps,
                parent: manifest,
            },
            |g| NewRecord {
                record_type: RecordType::Regular,
                parents: vec![manifest],
                description: "RUN --mount=type=cache,target=/root/.cache/pkg make deps".to_owned(),
                size: g.w.scaled(deps_mb * g.rng.lognormal(1.0, 0.2)),
                cost_s: deps_s * g.rng.lognormal(1.0, 0.25),
                growth: None,
            },
        );
        let deps_ran = self.step(&mut t, build, deps, NONE);
        let pkg = self.record(Key::PkgCache(pi), |g| NewRecord {
            record_type: RecordType::ExecCachemount,
            parents: Vec::new(),
            description: format!("cached mount /root/.cache/pkg from exec for {name}"),
            size: g.w.scaled(g.rng.lognormal(250.0, 0.3)),
            cost_s: 0.0,
            growth: Some((12.0, 2500.0)),
        });
        self.mount(t, build, pkg, deps, deps_ran);

        // The source and what is built from it.
        let copy = self.record(
            Key::Copy {
                project: pi,
                commit: state.commit,
                parent: deps,
            },
            |g| {
                let size = g.w.scaled(repo_mb * 0.8 * g.rng.lognormal(1.0, 0.1));
                NewRecord {
                    record_type: RecordType::Regular,
                    parents: vec![deps],
                    description: "COPY . .".to_owned(),
                    size,
                    cost_s: 2.0 + size / (200.0 * MB),
                    growth: None,
                }
            },
        );
        self.step(&mut t, build, copy, NONE);
        match target {
            Target::App => {
                let (build_mb, build_s) = (self.projects[p].build_mb, self.projects[p].build_s);
                let compiled = self.record(
                    Key::Build {
                        project: pi,
                        commit: state.commit,
                        parent: copy,
                    },
                    |g| NewRecord {
                        record_type: RecordType::Regular,
                        parents: vec![copy],
                        description: "RUN --mount=type=cache,target=/root/.cache/build make build"
                            .to_owned(),
                        size: g.w.scaled(build_mb * g.rng.lognormal(1.0, 0.3)),
                        cost_s: build_s * g.rng.lognormal(1.0, 0.2),
                        growth: None,
                    },
                );
                let ran = self.step(&mut t, build, compiled, NONE);
                let cache = self.record(Key::BuildCache(pi), |g| NewRecord {
                    record_type: RecordType::ExecCachemount,
                    parents: Vec::new(),
                    description: format!("cached mount /root/.cache/build from exec for {name}"),
                    size: g.w.scaled(g.rng.lognormal(400.0, 0.3)),
                    cost_s: 0.0,
                    growth: Some((35.0, 4000.0)),
                });
                self.mount(t, build, cache, compiled, ran);
                let package = self.record(
                    Key::Package {
                        project: pi,
                        commit: state.commit,
                        parent: compiled,
                    },
                    |g| NewRecord {
                        record_type: RecordType::Regular,
                        parents: vec![compiled],
                        description: "RUN make package".to_owned(),
                        size: g.w.scaled(g.rng.lognormal(60.0, 0.5)),
                        cost_s: g.rng.lognormal(20.0, 0.4),
                        growth: None,
                    },
                );
                self.step(&mut t, build, package, NONE);
            }
            Target::Test => {
                let prep = self.record(
                    Key::TestPrep {
                        project: pi,
                        commit: state.commit,
                        parent: copy,
                    },
                    |g| NewRecord {
                        record_type: RecordType::Regular,
                        parents: vec![copy],
                        description: "RUN make test-prep".to_owned(),
                        size: g.w.scaled(g.rng.lognormal(150.0, 0.5)),
                        cost_s: g.rng.lognormal(70.0, 0.4),
                        growth: None,
                    },
                );
                self.step(&mut t, build, prep, NONE);
            }
        }
        let end = t + 1000;
        self.emit(end, Ev::BuildEnd { build });
        end
    }

    /// Emits a step at `*t` and moves `*t` past it: the step's cost if an
    /// unbounded cache would miss it (its first use), else 0.3 s. Returns
    /// whether it was a first use.
    fn step(&mut self, t: &mut u64, build: u32, record: u32, used_by: u32) -> bool {
        let r = &mut self.records[record as usize];
        let first = !r.seen;
        r.seen = true;
        let (size, cost_ms) = (r.size as u64, r.cost_ms);
        self.emit(
            *t,
            Ev::Step {
                build,
                record,
                used_by,
                cost_ms,
                size,
            },
        );
        *t += if first {
            u64::from(cost_ms).max(300)
        } else {
            300
        };
        first
    }

    /// Emits the conditional use of cache mount `record` by the step that
    /// needs `user`; the mount grows when that step ran in the generator's
    /// unbounded cache. Its rebuild cost is half the user's: a cold cache
    /// slows the step down.
    fn mount(&mut self, t: u64, build: u32, record: u32, user: u32, user_ran: bool) {
        let user_cost = self.records[user as usize].cost_ms;
        if user_ran && let Some((growth_mb, cap_mb)) = self.records[record as usize].growth {
            let grown = self.w.scaled(self.rng.lognormal(growth_mb, 0.6));
            let cap = self.w.scaled(cap_mb);
            let r = &mut self.records[record as usize];
            if r.seen {
                r.size = (r.size + grown).min(cap);
            }
        }
        let r = &mut self.records[record as usize];
        r.seen = true;
        let size = r.size as u64;
        self.emit(
            t,
            Ev::Step {
                build,
                record,
                used_by: user,
                cost_ms: user_cost / 2,
                size,
            },
        );
    }
}

/// The weekly rhythm: the relative pipeline rate at `t` ms after `start`
/// (1 on weekdays 08:00-19:00 UTC, 0.15 other weekday hours, 0.1 at
/// weekends).
fn activity(start: Timestamp, t: u64) -> f64 {
    let secs = start.unix_secs() + (t / 1000) as i64;
    let day = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday: day 0 is weekday 3 (Monday is 0).
    let weekday = (day + 3).rem_euclid(7);
    if weekday >= 5 {
        0.1
    } else if (8..19).contains(&hour) {
        1.0
    } else {
        0.15
    }
}

/// The mean of [`activity`] over a week.
const MEAN_ACTIVITY: f64 = (55.0 * 1.0 + 65.0 * 0.15 + 48.0 * 0.1) / 168.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_follows_the_week() {
        let monday = Timestamp::from_unix_secs(1_736_121_600);
        let hour = 3_600_000;
        assert_eq!(activity(monday, 9 * hour), 1.0);
        assert_eq!(activity(monday, 3 * hour), 0.15);
        assert_eq!(activity(monday, (5 * 24 + 10) * hour), 0.1, "Saturday");
        let week: f64 = (0..168).map(|h| activity(monday, h * hour)).sum::<f64>() / 168.0;
        assert!((week - MEAN_ACTIVITY).abs() < 1e-12);
    }

    #[test]
    fn parameters_are_checked() {
        let err = Workload::new().days(0.0).generate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload: `days` is 0, expected a number of days in (0, 3660]"
        );
        let err = Workload::new().main_share(1.5).generate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload: `main_share` is 1.5, expected a probability in [0, 1]"
        );
        let err = Workload::new().projects(0).validate().unwrap_err();
        assert!(err.to_string().contains("`projects` is 0"));
        let err = Workload::new().size_scale(f64::NAN).validate().unwrap_err();
        assert!(err.to_string().contains("`size_scale` is NaN"));
    }
}
