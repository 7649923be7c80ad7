//! The kubelet's image GC against an engine.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use reclaim_kubelet::{
    CallError, CallStatus, ImageCollector, ImageFsStats, ImagePass, ImagePlan, ImagePolicy,
    ImageRecords, ImageStep, ImageUser, ListedImage,
};
use reclaim_model::{Id, Timestamp};
use serde::{Deserialize, Serialize};

use super::{LabelSelector, RunState};
use crate::clock::Clock;
use crate::observer::Observer;
use crate::report::{
    CollectorKind, ItemKind, Outcome, PassReport, Reason, Report, ReportDeletion, Skip, SkipReason,
};
use crate::store::{ContainerStore, ImageInfo, ImageStore, RemoveOutcome};

/// Which kubelet entry point an [`ImageGcCollector`] runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageGcMode {
    /// `DeleteUnusedImages`, the eviction manager's reclaim: every unused
    /// image old enough goes, whatever the disk usage.
    DeleteUnusedImages,
    /// `GarbageCollect`, the periodic loop: the MaxAge pass, then, if disk
    /// usage reached the high threshold, least recently used images down
    /// to the low threshold.
    #[default]
    GarbageCollect,
}

/// What the image GC remembers between runs: the kubelet's image records
/// (first detected, last used) and when the periodic GC began (for the
/// MaxAge pass).
///
/// Save it (it serializes to JSON) and restore it with
/// [`ImageGcCollector::restore`] so that MinAge and LRU order survive a
/// restart, which the kubelet itself cannot do.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ImageGcState {
    /// The image records.
    pub records: ImageRecords,
    /// When the periodic GC began: set at the first run. The MaxAge pass
    /// runs only once the GC has run longer than MaxAge.
    pub began_gc: Option<Timestamp>,
}

/// A predicate marking images that must never be removed.
type Keep = Arc<dyn Fn(&ImageInfo) -> bool + Send + Sync>;

/// The kubelet's image GC over an engine, with the image records kept by
/// the collector between runs.
///
/// Every run detects first, as the kubelet does at the start of each entry
/// point: it lists images and containers, creates records for new images
/// (first detected now), stamps images some container uses (any state)
/// with last used now, and drops records of images that are gone. Then it
/// runs the entry point ([`ImageGcMode`]) through `reclaim_kubelet`'s
/// collector, removing one image at a time. A failed or refused removal
/// keeps the image's record, counts nothing toward the bytes freed, and is
/// reported in the kubelet's aggregated error; a fatal one ends the run.
/// Records of removed images are dropped, as the kubelet drops them.
///
/// Deletions reach the observer when the run ends, in call order.
#[derive(Clone)]
pub struct ImageGcCollector {
    policy: ImagePolicy,
    mode: ImageGcMode,
    state: ImageGcState,
    dry_run: bool,
    itemize_skips: bool,
    selector: Option<LabelSelector>,
    keep: Option<Keep>,
}

impl fmt::Debug for ImageGcCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageGcCollector")
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .field("records", &self.state.records.len())
            .field("began_gc", &self.state.began_gc)
            .field("dry_run", &self.dry_run)
            .field("selector", &self.selector)
            .field("keep", &self.keep.is_some())
            .finish()
    }
}

impl ImageGcCollector {
    /// A collector applying `policy` through `GarbageCollect`, with no
    /// records yet (as after a kubelet restart).
    pub fn new(policy: ImagePolicy) -> Self {
        Self {
            policy,
            mode: ImageGcMode::GarbageCollect,
            state: ImageGcState::default(),
            dry_run: false,
            itemize_skips: true,
            selector: None,
            keep: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ImagePolicy {
        &self.policy
    }

    /// Replaces the policy (a reloaded configuration); records stay.
    pub fn set_policy(&mut self, policy: ImagePolicy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// Sets the entry point. Default [`ImageGcMode::GarbageCollect`].
    pub fn mode(&mut self, mode: ImageGcMode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Plans without removing anything. Records are still refreshed (the
    /// detection is an observation, not a removal). Default `false`.
    pub fn dry_run(&mut self, dry_run: bool) -> &mut Self {
        self.dry_run = dry_run;
        self
    }

    /// Whether the report lists every kept image (default `true`).
    pub fn itemize_skips(&mut self, itemize: bool) -> &mut Self {
        self.itemize_skips = itemize;
        self
    }

    /// Looks only at images whose labels match, as if the engine had no
    /// other images (their containers still count as users). Default:
    /// every image.
    pub fn select(&mut self, selector: Option<LabelSelector>) -> &mut Self {
        self.selector = selector;
        self
    }

    /// Marks images for which `keep` returns true as pinned: they are never
    /// removed (an agent's keep patterns by tag or label). Default: none.
    pub fn keep_images(
        &mut self,
        keep: Option<impl Fn(&ImageInfo) -> bool + Send + Sync + 'static>,
    ) -> &mut Self {
        self.keep = keep.map(|k| Arc::new(k) as Keep);
        self
    }

    /// The state kept between runs.
    pub fn state(&self) -> &ImageGcState {
        &self.state
    }

    /// The state kept between runs, for changes between runs: an engine
    /// adapter that learns of image use from events can stamp
    /// `records` itself (see `reclaim_kubelet::ImageRecords`).
    pub fn state_mut(&mut self) -> &mut ImageGcState {
        &mut self.state
    }

    /// Replaces the state kept between runs (a saved one, at start).
    pub fn restore(&mut self, state: ImageGcState) -> &mut Self {
        self.state = state;
        self
    }

    /// Takes the state out, leaving a fresh one.
    pub fn take_state(&mut self) -> ImageGcState {
        std::mem::take(&mut self.state)
    }

    /// One run of the entry point against `store` at `clock`'s time.
    pub async fn run<S, C, O>(&mut self, store: &S, clock: &C, observer: &O) -> Report
    where
        S: ImageStore + ContainerStore + ?Sized,
        C: Clock + ?Sized,
        O: Observer + ?Sized,
    {
        let mut run = RunState::start(
            CollectorKind::Images,
            self.dry_run,
            self.itemize_skips,
            clock,
            observer,
        );
        run.report.passes = vec![PassReport::named("age"), PassReport::named("space")];
        let now = run.now();
        let began = *self.state.began_gc.get_or_insert(now);

        let images = match store.images().await {
            Ok(images) => images,
            Err(e) => {
                run.error("ListImages", None, e.to_string(), true);
                return run.finish(clock);
            }
        };
        let containers = match store.containers().await {
            Ok(c) => c,
            Err(e) => {
                run.error("ListContainers", None, e.to_string(), true);
                return run.finish(clock);
            }
        };
        let listed: Vec<ListedImage> = images
            .iter()
            .filter(|i| self.selector.as_ref().is_none_or(|s| s.matches(&i.labels)))
            .map(|i| ListedImage {
                id: i.id.clone(),
                size_bytes: i.size,
                pinned: i.pinned || self.keep.as_ref().is_some_and(|keep| keep(i)),
            })
            .collect();
        let users: Vec<ImageUser> = containers
            .into_iter()
            .map(|c| ImageUser {
                id: Some(c.id),
                image_id: c.image_id,
                state: Some(c.state),
            })
            .collect();
        drop(images);
        self.state.records.detect(&listed, &users, now, now);

        let records = &self.state.records;
        let mut collector = match self.mode {
            ImageGcMode::GarbageCollect => {
                ImageCollector::garbage_collect(records, &self.policy, now, began)
            }
            ImageGcMode::DeleteUnusedImages => {
                ImageCollector::delete_unused_images(records, &self.policy, now)
            }
        };
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        let mut fatal = false;
        loop {
            match collector.poll() {
                ImageStep::Done => break,
                ImageStep::ReadFsStats => {
                    let stats = store
                        .image_fs_stats()
                        .await
                        .map(ImageFsStats::from)
                        .map_err(|e| CallError::new(e.to_string()));
                    collector.record_fs_stats(stats);
                }
                ImageStep::RemoveImage { .. } if self.dry_run => {
                    collector.record_removal(Ok(()));
                }
                ImageStep::RemoveImage { id, .. } => {
                    let outcome = store.remove_image(&Id::new(id)).await;
                    fatal = matches!(outcome, RemoveOutcome::Fatal { .. });
                    let result = match outcome.message() {
                        None => Ok(()),
                        Some(m) => Err(CallError::new(m)),
                    };
                    outcomes.insert(id.to_owned(), outcome.into());
                    collector.record_removal(result);
                    if fatal {
                        break;
                    }
                }
                other => {
                    run.error("ImageGC", None, format!("unsupported step {other:?}"), true);
                    break;
                }
            }
        }
        let plan = collector.finish();
        let removed = report_plan(&mut run, &plan, &outcomes, self.dry_run);
        if fatal {
            // The fatal removal is the plan's last failure; it ended the run.
            run.last_error_fatal(&["RemoveImage"]);
        }
        drop(plan);
        self.state.records.forget(removed);
        run.finish(clock)
    }
}

/// Reports the plan; returns the ids whose records must go (removed, or
/// already gone).
fn report_plan<O: Observer + ?Sized>(
    run: &mut RunState<'_, O>,
    plan: &ImagePlan<'_>,
    outcomes: &HashMap<String, Outcome>,
    dry_run: bool,
) -> Vec<String> {
    let mut removed = Vec::new();
    for r in &plan.removals {
        let id = plan.id(r.record);
        let outcome = if dry_run {
            Outcome::Planned
        } else {
            match r.status {
                CallStatus::NotAttempted => Outcome::NotAttempted,
                _ => outcomes.get(id).cloned().unwrap_or(Outcome::NotAttempted),
            }
        };
        if outcome.is_gone() {
            removed.push(id.to_owned());
        }
        let pass = match r.pass {
            ImagePass::Age => 0,
            ImagePass::Space => 1,
        };
        run.deletion(ReportDeletion {
            item: ItemKind::Image,
            id: Id::new(id),
            pass,
            bytes: Some(r.size_bytes),
            reason: Reason::Image {
                pass: r.pass,
                rank: r.rank,
            },
            outcome,
        });
    }
    run.report.passes[1].target = plan.bytes_to_free;
    for k in &plan.kept {
        run.skip(Skip {
            item: ItemKind::Image,
            id: Id::new(plan.id(k.record)),
            bytes: Some(k.size_bytes),
            reason: SkipReason::Image(k.reason),
        });
    }
    for f in &plan.failures {
        run.error(f.call, Some(f.target.clone()), f.message.clone(), false);
    }
    if let Some(e) = &plan.error {
        run.error("GarbageCollect", None, e.to_string(), false);
    }
    removed
}
