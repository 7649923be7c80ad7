//! The in-memory engine: every runtime trait over plain data, with
//! deterministic fault injection.
//!
//! [`MemoryRuntime`] is what tests, examples and the simulator run the
//! collectors against, and the embedded default for programs whose
//! "engine" is their own data. Its state, [`MemoryState`], holds build-cache
//! records (with parent links), images (sizes, tags, pins), containers,
//! sandboxes, pods and pod log directories, and one disk whose used bytes
//! follow what is stored. It behaves like a careful engine: it refuses to
//! remove what is in use, pinned, running or depended upon, and answers
//! `AlreadyGone` for what does not exist.
//!
//! # Speed
//!
//! The simulator replays millions of events per second through the
//! mutation methods, so they are index lookups with no allocation (beyond
//! storing new items). Mutate through [`MemoryRuntime::state_mut`] when you
//! own the runtime (no locking at all), or through [`MemoryRuntime::lock`]
//! when it is shared.
//!
//! # Time
//!
//! The engine never reads a clock. Mutations that record a time take it as
//! an argument, and the engine's own notion of "now" (used only for
//! [`Fault::Outage`]) is the latest of those times and
//! [`MemoryState::set_now`].
//!
//! # What it does not model
//!
//! Layer sharing: every record and every image occupies its own size on
//! the disk, shared or not. Tags are unique (tagging moves a tag, as
//! Docker does); removing an image removes all its tags.

mod faults;
mod table;

use std::collections::{BTreeSet, HashMap};
use std::ops::DerefMut;

use parking_lot::Mutex;
use reclaim_kubelet::{ContainerState, Pod, PodState, SandboxState};
use reclaim_model::{DiskStats, Id, Timestamp};
use reclaim_policy::prune::CacheRecord;
use serde::Serialize;

pub use self::faults::{Failure, Fault, FaultRates, Target};
use self::faults::{Faults, Injected, Rng};
use self::table::{IdMap, Table};
use crate::report::ItemKind;
use crate::store::{
    BuildCacheStore, ContainerInfo, ContainerStore, ImageInfo, ImageStore, PodList, RemoveOutcome,
    RuntimeError, SandboxInfo, StopOutcome,
};

/// An engine held in memory. Implements [`BuildCacheStore`],
/// [`ImageStore`] and [`ContainerStore`]; every future it returns is ready
/// at once, so [`crate::block_on`] runs collectors over it.
///
/// ```
/// use reclaim_model::Timestamp;
/// use reclaim_policy::prune::CacheRecord;
/// use reclaim_runtime::{BuildCacheStore, MemoryRuntime, RemoveOutcome, block_on};
///
/// let mut rt = MemoryRuntime::new(1 << 30);
/// rt.state_mut().add_record(CacheRecord::new("a", 100))?;
/// rt.state_mut().use_record("a", Timestamp::from_unix_secs(10));
/// assert_eq!(rt.state_mut().disk_stats().used(), 100);
/// let outcome = block_on(rt.remove_cache_record(&"a".into()));
/// assert_eq!(outcome, RemoveOutcome::Removed { reclaimed: Some(100) });
/// # Ok::<(), reclaim_runtime::MemoryError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryRuntime {
    state: Mutex<MemoryState>,
}

impl MemoryRuntime {
    /// An empty engine on a disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self::from_state(MemoryState::new(capacity))
    }

    /// An engine with this state.
    pub fn from_state(state: MemoryState) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// The state, for mutation without locking (the runtime is owned).
    pub fn state_mut(&mut self) -> &mut MemoryState {
        self.state.get_mut()
    }

    /// The state, locked, for mutation through a shared runtime. Do not
    /// hold the guard across an `.await` on this runtime's own methods:
    /// they lock it too.
    pub fn lock(&self) -> impl DerefMut<Target = MemoryState> + '_ {
        self.state.lock()
    }

    /// Unwraps the state.
    pub fn into_state(self) -> MemoryState {
        self.state.into_inner()
    }
}

/// A call to the engine, as the journal records it.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Call {
    /// [`BuildCacheStore::cache_disk_stats`].
    CacheDiskStats,
    /// [`ImageStore::image_fs_stats`].
    ImageFsStats,
    /// [`BuildCacheStore::cache_records`].
    ListCacheRecords,
    /// [`ContainerStore::containers`].
    ListContainers,
    /// [`ImageStore::images`].
    ListImages,
    /// [`ContainerStore::pod_log_dirs`].
    ListPodLogDirs,
    /// [`ContainerStore::pods`].
    ListPods,
    /// [`ContainerStore::sandboxes`].
    ListSandboxes,
    /// [`BuildCacheStore::remove_cache_record`].
    RemoveCacheRecord,
    /// [`ContainerStore::remove_container`].
    RemoveContainer,
    /// [`ImageStore::remove_image`].
    RemoveImage,
    /// [`ContainerStore::remove_pod_log_dir`].
    RemovePodLogDir,
    /// [`ContainerStore::remove_sandbox`].
    RemoveSandbox,
    /// [`ContainerStore::stop_container`].
    StopContainer,
    /// [`ContainerStore::stop_sandbox`].
    StopSandbox,
}

/// One call the engine answered, with what it answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalEntry {
    /// The call.
    pub call: Call,
    /// The item, for removals and stops.
    pub target: Option<String>,
    /// The engine's time when it answered.
    pub at: Timestamp,
    /// The answer.
    pub result: JournalResult,
}

/// An answer, as the journal records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalResult {
    /// A listing or statistics call failed.
    Failed(RuntimeError),
    /// A listing or statistics call succeeded.
    Listed,
    /// A removal's outcome.
    Remove(RemoveOutcome),
    /// A stop's outcome.
    Stop(StopOutcome),
}

/// Misuse of the mutation methods of [`MemoryState`].
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// An item was added with an id already taken by an item of the same
    /// kind. Ids identify items; pick a fresh one.
    #[error("{kind:?} id {id:?} already exists")]
    DuplicateId {
        /// The kind of item.
        kind: ItemKind,
        /// The id.
        id: String,
    },
    /// An item was added with an empty id.
    #[error("{kind:?} id is empty")]
    EmptyId {
        /// The kind of item.
        kind: ItemKind,
    },
}

#[derive(Clone, Debug)]
struct RecordEntry {
    record: CacheRecord,
    holds: u32,
    children: u32,
}

#[derive(Clone, Debug)]
struct ImageEntry {
    info: ImageInfo,
    holds: u32,
}

#[derive(Clone, Debug)]
struct ContainerEntry {
    info: ContainerInfo,
    size: u64,
}

/// The contents of a [`MemoryRuntime`] and the methods that change them
/// from outside the collectors: what builds, pulls, pods and users do.
///
/// Removal-by-collector semantics live in the trait implementations; the
/// `delete_*` methods here remove unconditionally (a user's `docker rm -f`,
/// a manual prune).
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    now: Timestamp,
    capacity: u64,
    other_used: u64,
    cache_bytes: u64,
    image_bytes: u64,
    container_bytes: u64,
    records: Table<RecordEntry>,
    images: Table<ImageEntry>,
    /// Tag to image id.
    tags: HashMap<String, Id>,
    /// Containers per image id (whether or not the image exists).
    image_users: IdMap<u32>,
    containers: Table<ContainerEntry>,
    /// Containers per sandbox id.
    sandbox_members: IdMap<u32>,
    sandboxes: Table<SandboxInfo>,
    pods: Table<PodState>,
    unknown_pods: PodState,
    pod_log_dirs: BTreeSet<String>,
    faults: Faults,
    journal: Option<Vec<JournalEntry>>,
}

impl MemoryState {
    /// An empty engine on a disk of `capacity` bytes, at the Unix epoch.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Makes room for this many more cache records, images and containers
    /// without reallocating (a simulator that knows its trace calls this
    /// once; nothing else changes).
    pub fn reserve(&mut self, records: usize, images: usize, containers: usize) {
        self.records.reserve(records);
        self.images.reserve(images);
        self.containers.reserve(containers);
        self.image_users.reserve(images);
    }

    // ----- Time and disk -----

    /// Moves the engine's time forward to `now` (never back).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    /// The engine's time: the latest of [`MemoryState::set_now`] and the
    /// times given to mutations.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Sets the disk's size in bytes.
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// The disk's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sets the bytes used by things other than records, images and
    /// containers (logs, volumes, the system).
    pub fn set_other_used(&mut self, bytes: u64) {
        self.other_used = bytes;
    }

    /// Bytes in use: other data plus every record, image and container.
    pub fn used(&self) -> u64 {
        self.other_used
            .saturating_add(self.cache_bytes)
            .saturating_add(self.image_bytes)
            .saturating_add(self.container_bytes)
    }

    /// The disk's statistics; free and available are the same (no reserved
    /// blocks), and never negative.
    pub fn disk_stats(&self) -> DiskStats {
        DiskStats::new(self.capacity, self.capacity.saturating_sub(self.used()))
    }

    // ----- Build cache -----

    /// Adds a cache record as stored (its `in_use`, `last_used_at` and
    /// `usage_count` are kept). Add parents before their children: parent
    /// links to records not present are ignored, as the planner ignores
    /// them.
    ///
    /// # Errors
    ///
    /// [`MemoryError`] if the id is empty or taken.
    pub fn add_record(&mut self, record: CacheRecord) -> Result<(), MemoryError> {
        let kind = ItemKind::CacheRecord;
        if record.id.as_str().is_empty() {
            return Err(MemoryError::EmptyId { kind });
        }
        if self.records.contains(record.id.as_str()) {
            return Err(MemoryError::DuplicateId {
                kind,
                id: record.id.to_string(),
            });
        }
        for parent in &record.parents {
            if let Some(p) = self.records.get_mut(parent.as_str()) {
                p.children += 1;
            }
        }
        if let Some(t) = record.last_used_at {
            self.set_now(t);
        }
        self.cache_bytes = self.cache_bytes.saturating_add(record.size);
        let id = record.id.clone();
        let entry = RecordEntry {
            record,
            holds: 0,
            children: 0,
        };
        // The id was checked above, so the insertion cannot fail.
        let _ = self.records.insert(id, entry);
        Ok(())
    }

    /// A build used the record at `at` (a cache hit): its usage count goes
    /// up by one and its last use becomes `at`. False if there is no such
    /// record (a cache miss).
    #[inline]
    pub fn use_record(&mut self, id: &str, at: Timestamp) -> bool {
        let Some(e) = self.records.get_mut(id) else {
            return false;
        };
        e.record.usage_count += 1;
        e.record.last_used_at = Some(at);
        self.set_now(at);
        true
    }

    /// Whether a record exists.
    #[inline]
    pub fn has_record(&self, id: &str) -> bool {
        self.records.contains(id)
    }

    /// A record as stored (without fault holds).
    pub fn record(&self, id: &str) -> Option<&CacheRecord> {
        self.records.get(id).map(|e| &e.record)
    }

    /// Every record, in storage order.
    pub fn records(&self) -> impl Iterator<Item = &CacheRecord> {
        self.records.iter().map(|(_, e)| &e.record)
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Sum of the records' sizes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Marks a record as held by a build (or released). False if absent.
    pub fn set_record_in_use(&mut self, id: &str, in_use: bool) -> bool {
        self.records
            .get_mut(id)
            .map(|e| e.record.in_use = in_use)
            .is_some()
    }

    /// Marks a record as backing an image (or not). False if absent.
    pub fn set_record_shared(&mut self, id: &str, shared: bool) -> bool {
        self.records
            .get_mut(id)
            .map(|e| e.record.shared = shared)
            .is_some()
    }

    /// Changes a record's size (a cache mount that grew). False if absent.
    pub fn set_record_size(&mut self, id: &str, size: u64) -> bool {
        let Some(e) = self.records.get_mut(id) else {
            return false;
        };
        self.cache_bytes = self.cache_bytes - e.record.size + size;
        e.record.size = size;
        true
    }

    /// Removes a record unconditionally (a manual prune), returning it.
    pub fn delete_record(&mut self, id: &str) -> Option<CacheRecord> {
        let (_, e) = self.records.remove(id)?;
        self.cache_bytes -= e.record.size;
        for parent in &e.record.parents {
            if let Some(p) = self.records.get_mut(parent.as_str()) {
                p.children = p.children.saturating_sub(1);
            }
        }
        Some(e.record)
    }

    // ----- Images -----

    /// Adds an image (a pull, a build or a load). Its tags move to it from
    /// any image that had them.
    ///
    /// # Errors
    ///
    /// [`MemoryError`] if the id is empty or taken.
    pub fn pull_image(&mut self, image: ImageInfo) -> Result<(), MemoryError> {
        let kind = ItemKind::Image;
        if image.id.as_str().is_empty() {
            return Err(MemoryError::EmptyId { kind });
        }
        if self.images.contains(image.id.as_str()) {
            return Err(MemoryError::DuplicateId {
                kind,
                id: image.id.to_string(),
            });
        }
        let id = image.id.clone();
        let tags = image.repo_tags.clone();
        self.image_bytes = self.image_bytes.saturating_add(image.size);
        let _ = self.images.insert(
            id.clone(),
            ImageEntry {
                info: ImageInfo {
                    repo_tags: Vec::new(),
                    ..image
                },
                holds: 0,
            },
        );
        for tag in tags {
            self.tag_image(id.as_str(), &tag);
        }
        Ok(())
    }

    /// Points `tag` at the image `id`, taking it from any other image.
    /// False if there is no such image.
    pub fn tag_image(&mut self, id: &str, tag: &str) -> bool {
        let Some(image) = self.images.get_mut(id) else {
            return false;
        };
        if !image.info.repo_tags.iter().any(|t| t == tag) {
            image.info.repo_tags.push(tag.to_owned());
        }
        let new = image.info.id.clone();
        if let Some(old) = self.tags.insert(tag.to_owned(), new)
            && old.as_str() != id
            && let Some(previous) = self.images.get_mut(old.as_str())
        {
            previous.info.repo_tags.retain(|t| t != tag);
        }
        true
    }

    /// Removes a tag from whatever image has it. False if no image has it.
    pub fn untag(&mut self, tag: &str) -> bool {
        let Some(id) = self.tags.remove(tag) else {
            return false;
        };
        if let Some(image) = self.images.get_mut(id.as_str()) {
            image.info.repo_tags.retain(|t| t != tag);
        }
        true
    }

    /// Pins or unpins an image. False if absent.
    pub fn set_image_pinned(&mut self, id: &str, pinned: bool) -> bool {
        self.images
            .get_mut(id)
            .map(|e| e.info.pinned = pinned)
            .is_some()
    }

    /// An image.
    pub fn image(&self, id: &str) -> Option<&ImageInfo> {
        self.images.get(id).map(|e| &e.info)
    }

    /// Every image, in storage order.
    pub fn images(&self) -> impl Iterator<Item = &ImageInfo> {
        self.images.iter().map(|(_, e)| &e.info)
    }

    /// The image a tag points at.
    pub fn image_by_tag(&self, tag: &str) -> Option<&ImageInfo> {
        self.image(self.tags.get(tag)?.as_str())
    }

    /// Number of images.
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// Sum of the images' sizes.
    pub fn image_bytes(&self) -> u64 {
        self.image_bytes
    }

    /// Number of containers (any state) that use the image id.
    pub fn image_users(&self, id: &str) -> u32 {
        self.image_users.get(id).copied().unwrap_or(0)
    }

    /// Removes an image unconditionally, returning it.
    pub fn delete_image(&mut self, id: &str) -> Option<ImageInfo> {
        let (_, e) = self.images.remove(id)?;
        self.image_bytes -= e.info.size;
        for tag in &e.info.repo_tags {
            self.tags.remove(tag);
        }
        Some(e.info)
    }

    // ----- Containers and sandboxes -----

    /// Adds a container (in any state). Its image need not exist (kubelet
    /// nodes do have containers whose image was removed).
    ///
    /// # Errors
    ///
    /// [`MemoryError`] if the id is empty or taken.
    pub fn create_container(&mut self, container: ContainerInfo) -> Result<(), MemoryError> {
        let kind = ItemKind::Container;
        if container.id.as_str().is_empty() {
            return Err(MemoryError::EmptyId { kind });
        }
        if self.containers.contains(container.id.as_str()) {
            return Err(MemoryError::DuplicateId {
                kind,
                id: container.id.to_string(),
            });
        }
        *self
            .image_users
            .entry(container.image_id.clone())
            .or_insert(0) += 1;
        if let Some(sandbox) = &container.sandbox_id {
            *self.sandbox_members.entry(sandbox.clone()).or_insert(0) += 1;
        }
        self.set_now(container.created);
        let id = container.id.clone();
        let _ = self.containers.insert(
            id,
            ContainerEntry {
                info: container,
                size: 0,
            },
        );
        Ok(())
    }

    /// Sets a container's state. False if absent.
    #[inline]
    pub fn set_container_state(&mut self, id: &str, state: ContainerState) -> bool {
        self.containers
            .get_mut(id)
            .map(|e| e.info.state = state)
            .is_some()
    }

    /// Starts a container (state running). False if absent.
    pub fn start_container(&mut self, id: &str) -> bool {
        self.set_container_state(id, ContainerState::Running)
    }

    /// A container exits (state exited). False if absent.
    pub fn exit_container(&mut self, id: &str) -> bool {
        self.set_container_state(id, ContainerState::Exited)
    }

    /// Sets the bytes of a container's writable layer. False if absent.
    pub fn set_container_size(&mut self, id: &str, bytes: u64) -> bool {
        let Some(e) = self.containers.get_mut(id) else {
            return false;
        };
        self.container_bytes = self.container_bytes - e.size + bytes;
        e.size = bytes;
        true
    }

    /// A container.
    pub fn container(&self, id: &str) -> Option<&ContainerInfo> {
        self.containers.get(id).map(|e| &e.info)
    }

    /// Every container, in storage order.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.containers.iter().map(|(_, e)| &e.info)
    }

    /// Number of containers.
    pub fn container_count(&self) -> usize {
        self.containers.len()
    }

    /// Removes a container unconditionally (`docker rm -f`), returning it.
    pub fn delete_container(&mut self, id: &str) -> Option<ContainerInfo> {
        let (_, e) = self.containers.remove(id)?;
        self.container_bytes -= e.size;
        decrement(&mut self.image_users, e.info.image_id.as_str());
        if let Some(sandbox) = &e.info.sandbox_id {
            decrement(&mut self.sandbox_members, sandbox.as_str());
        }
        Some(e.info)
    }

    /// Adds a pod sandbox.
    ///
    /// # Errors
    ///
    /// [`MemoryError`] if the id is empty or taken.
    pub fn add_sandbox(&mut self, sandbox: SandboxInfo) -> Result<(), MemoryError> {
        let kind = ItemKind::Sandbox;
        if sandbox.id.as_str().is_empty() {
            return Err(MemoryError::EmptyId { kind });
        }
        let id = sandbox.id.clone();
        self.set_now(sandbox.created);
        self.sandboxes
            .insert(id, sandbox)
            .map_err(|s| MemoryError::DuplicateId {
                kind,
                id: s.id.to_string(),
            })
    }

    /// Sets a sandbox's state. False if absent.
    pub fn set_sandbox_state(&mut self, id: &str, state: SandboxState) -> bool {
        self.sandboxes
            .get_mut(id)
            .map(|s| s.state = state)
            .is_some()
    }

    /// A sandbox.
    pub fn sandbox(&self, id: &str) -> Option<&SandboxInfo> {
        self.sandboxes.get(id)
    }

    /// Every sandbox, in storage order.
    pub fn sandboxes(&self) -> impl Iterator<Item = &SandboxInfo> {
        self.sandboxes.iter().map(|(_, s)| s)
    }

    /// Removes a sandbox unconditionally, returning it.
    pub fn delete_sandbox(&mut self, id: &str) -> Option<SandboxInfo> {
        self.sandboxes.remove(id).map(|(_, s)| s)
    }

    // ----- Pods and pod logs -----

    /// Sets what the pod workers know about a pod.
    pub fn set_pod_state(&mut self, uid: &str, state: PodState) {
        match self.pods.get_mut(uid) {
            Some(s) => *s = state,
            None => {
                let _ = self.pods.insert(Id::new(uid), state);
            }
        }
    }

    /// The pod was deleted from the API: its content becomes removable.
    pub fn delete_pod(&mut self, uid: &str) {
        self.set_pod_state(uid, PodState::Deleted);
    }

    /// The pod workers forget the pod: its state becomes the unknown-pod
    /// state.
    pub fn forget_pod(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// The state of a pod.
    pub fn pod_state(&self, uid: &str) -> PodState {
        self.pods.get(uid).copied().unwrap_or(self.unknown_pods)
    }

    /// Sets the state assumed for pods the workers do not know (default
    /// active).
    pub fn set_unknown_pod_state(&mut self, state: PodState) {
        self.unknown_pods = state;
    }

    /// Adds a pod log directory entry (`<namespace>_<name>_<uid>`).
    pub fn add_pod_log_dir(&mut self, name: impl Into<String>) {
        self.pod_log_dirs.insert(name.into());
    }

    /// Whether a pod log directory exists.
    pub fn has_pod_log_dir(&self, name: &str) -> bool {
        self.pod_log_dirs.contains(name)
    }

    // ----- Faults and journal -----

    /// Adds a scripted fault. A [`Fault::StuckRemoving`] takes effect at
    /// once; the others when a matching call comes.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.scripted.push(fault);
    }

    /// Sets (or, with `None`, removes) random faults.
    pub fn set_fault_rates(&mut self, rates: Option<FaultRates>) {
        self.faults.rates = rates.map(|r| (r, Rng::new(r.seed)));
    }

    /// Removes every scripted fault (stuck containers become removable, an
    /// outage ends) and the random rates.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }

    /// Releases the holds faults put on records and images.
    pub fn release_holds(&mut self) {
        for (_, e) in self.records.iter_mut() {
            e.holds = 0;
        }
        for (_, e) in self.images.iter_mut() {
            e.holds = 0;
        }
    }

    /// Starts (or, with `false`, stops and discards) the journal of calls.
    pub fn record_journal(&mut self, on: bool) {
        self.journal = on.then(Vec::new);
    }

    /// The calls answered since the journal started.
    pub fn journal(&self) -> &[JournalEntry] {
        self.journal.as_deref().unwrap_or_default()
    }

    /// Takes the journal, leaving it empty (and still recording).
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    // ----- The engine's answers to the runtime traits -----

    fn log(&mut self, call: Call, target: Option<&str>, result: impl FnOnce() -> JournalResult) {
        if let Some(journal) = &mut self.journal {
            journal.push(JournalEntry {
                call,
                target: target.map(str::to_owned),
                at: self.now,
                result: result(),
            });
        }
    }

    fn check_outage(&self) -> Result<(), RuntimeError> {
        match self.faults.outage(self.now) {
            Some(until) => Err(RuntimeError::transient(format!(
                "Cannot connect to the engine: unavailable until {until}"
            ))),
            None => Ok(()),
        }
    }

    fn listing<T>(&mut self, call: Call, list: impl FnOnce(&Self) -> T) -> Result<T, RuntimeError> {
        let result = self.check_outage().map(|()| list(self));
        self.log(call, None, || match &result {
            Ok(_) => JournalResult::Listed,
            Err(e) => JournalResult::Failed(e.clone()),
        });
        result
    }

    fn list_cache_records(&mut self) -> Result<Vec<CacheRecord>, RuntimeError> {
        self.listing(Call::ListCacheRecords, |s| {
            s.records
                .iter()
                .map(|(_, e)| {
                    let mut r = e.record.clone();
                    r.in_use |= e.holds > 0;
                    r
                })
                .collect()
        })
    }

    fn list_images(&mut self) -> Result<Vec<ImageInfo>, RuntimeError> {
        self.listing(Call::ListImages, |s| {
            s.images.iter().map(|(_, e)| e.info.clone()).collect()
        })
    }

    fn list_containers(&mut self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.listing(Call::ListContainers, |s| {
            s.containers.iter().map(|(_, e)| e.info.clone()).collect()
        })
    }

    fn list_sandboxes(&mut self) -> Result<Vec<SandboxInfo>, RuntimeError> {
        self.listing(Call::ListSandboxes, |s| {
            s.sandboxes.iter().map(|(_, e)| e.clone()).collect()
        })
    }

    fn list_pods(&mut self) -> Result<PodList, RuntimeError> {
        self.listing(Call::ListPods, |s| PodList {
            pods: s
                .pods
                .iter()
                .map(|(uid, state)| Pod {
                    uid: uid.clone(),
                    state: *state,
                })
                .collect(),
            unknown: s.unknown_pods,
        })
    }

    fn list_pod_log_dirs(&mut self) -> Result<Vec<String>, RuntimeError> {
        self.listing(Call::ListPodLogDirs, |s| {
            s.pod_log_dirs.iter().cloned().collect()
        })
    }

    fn stats(&mut self, call: Call) -> Result<DiskStats, RuntimeError> {
        self.listing(call, Self::disk_stats)
    }

    /// Runs the fault machinery for a removal or stop of `id`: `Err` is the
    /// injected answer, `Ok` lets the engine decide (after making the item
    /// in use if the fault says so).
    fn faults_for(&mut self, kind: ItemKind, id: &str, stop: bool) -> Result<(), RuntimeError> {
        self.check_outage()?;
        match self.faults.draw(kind, id, stop) {
            Injected::Nothing => Ok(()),
            Injected::Fail(Failure::Fatal) => Err(RuntimeError::fatal(format!(
                "injected fatal failure on {kind:?} {id}"
            ))),
            Injected::Fail(Failure::Transient) => Err(RuntimeError::transient(format!(
                "injected transient failure on {kind:?} {id}"
            ))),
            Injected::UseFirst => {
                self.use_now(kind, id);
                Ok(())
            }
        }
    }

    /// Makes an item in use, for [`Fault::UseBeforeRemoval`].
    fn use_now(&mut self, kind: ItemKind, id: &str) {
        match kind {
            ItemKind::CacheRecord => {
                if let Some(e) = self.records.get_mut(id) {
                    e.holds += 1;
                }
            }
            ItemKind::Image => {
                if let Some(e) = self.images.get_mut(id) {
                    e.holds += 1;
                }
            }
            ItemKind::Container => {
                self.set_container_state(id, ContainerState::Running);
            }
            ItemKind::Sandbox => {
                self.set_sandbox_state(id, SandboxState::Ready);
            }
            // A log directory has nothing to hold.
            _ => {}
        }
    }

    fn remove(
        &mut self,
        call: Call,
        kind: ItemKind,
        id: &str,
        decide: impl FnOnce(&mut Self) -> RemoveOutcome,
    ) -> RemoveOutcome {
        let outcome = match self.faults_for(kind, id, false) {
            Ok(()) => decide(self),
            Err(e) => RemoveOutcome::failed(e),
        };
        self.log(call, Some(id), || JournalResult::Remove(outcome.clone()));
        outcome
    }

    fn stop(
        &mut self,
        call: Call,
        kind: ItemKind,
        id: &str,
        decide: impl FnOnce(&mut Self) -> StopOutcome,
    ) -> StopOutcome {
        let outcome = match self.faults_for(kind, id, true) {
            Ok(()) => decide(self),
            Err(e) => StopOutcome::failed(e),
        };
        self.log(call, Some(id), || JournalResult::Stop(outcome.clone()));
        outcome
    }

    fn remove_record_call(&mut self, id: &str) -> RemoveOutcome {
        self.remove(Call::RemoveCacheRecord, ItemKind::CacheRecord, id, |s| {
            let Some(e) = s.records.get(id) else {
                return RemoveOutcome::AlreadyGone;
            };
            if e.record.in_use || e.holds > 0 {
                return in_use(format!("cache record {id} is in use"));
            }
            if e.children > 0 {
                return in_use(format!(
                    "cache record {id} has {} child records",
                    e.children
                ));
            }
            let size = s.delete_record(id).map(|r| r.size);
            RemoveOutcome::Removed { reclaimed: size }
        })
    }

    fn remove_image_call(&mut self, id: &str) -> RemoveOutcome {
        self.remove(Call::RemoveImage, ItemKind::Image, id, |s| {
            let Some(e) = s.images.get(id) else {
                return RemoveOutcome::AlreadyGone;
            };
            if e.info.pinned {
                return in_use(format!("image {id} is pinned"));
            }
            let users = s.image_users(id);
            if users > 0 {
                return in_use(format!(
                    "conflict: unable to delete {id} (must be forced) - image is being used by {users} container(s)"
                ));
            }
            if e.holds > 0 {
                return in_use(format!("conflict: image {id} is being used"));
            }
            let size = s.delete_image(id).map(|i| i.size);
            RemoveOutcome::Removed { reclaimed: size }
        })
    }

    fn stop_container_call(&mut self, id: &str) -> StopOutcome {
        self.stop(Call::StopContainer, ItemKind::Container, id, |s| {
            let Some(e) = s.containers.get_mut(id) else {
                return StopOutcome::AlreadyGone;
            };
            match e.info.state {
                ContainerState::Running => StopOutcome::InUse {
                    message: format!("container {id} is running"),
                },
                ContainerState::Unknown => {
                    e.info.state = ContainerState::Exited;
                    StopOutcome::Stopped
                }
                ContainerState::Created | ContainerState::Exited => StopOutcome::Stopped,
            }
        })
    }

    fn remove_container_call(&mut self, id: &str) -> RemoveOutcome {
        self.remove(Call::RemoveContainer, ItemKind::Container, id, |s| {
            let Some(e) = s.containers.get(id) else {
                return RemoveOutcome::AlreadyGone;
            };
            if s.faults.stuck(id) {
                return in_use(format!(
                    "Error response from daemon: removal of container {id} is already in progress"
                ));
            }
            if matches!(
                e.info.state,
                ContainerState::Running | ContainerState::Unknown
            ) {
                return in_use(format!(
                    "Error response from daemon: cannot remove container {id}: container is {}",
                    e.info.state
                ));
            }
            let size = e.size;
            s.delete_container(id);
            RemoveOutcome::Removed {
                reclaimed: Some(size),
            }
        })
    }

    fn stop_sandbox_call(&mut self, id: &str) -> StopOutcome {
        self.stop(Call::StopSandbox, ItemKind::Sandbox, id, |s| {
            match s.sandboxes.get(id).map(|x| x.state) {
                None => StopOutcome::AlreadyGone,
                Some(SandboxState::Ready) => StopOutcome::InUse {
                    message: format!("sandbox {id} is ready"),
                },
                Some(SandboxState::NotReady) => StopOutcome::Stopped,
            }
        })
    }

    fn remove_sandbox_call(&mut self, id: &str) -> RemoveOutcome {
        self.remove(Call::RemoveSandbox, ItemKind::Sandbox, id, |s| {
            match s.sandboxes.get(id).map(|x| x.state) {
                None => RemoveOutcome::AlreadyGone,
                Some(SandboxState::Ready) => in_use(format!("sandbox {id} is ready")),
                Some(SandboxState::NotReady) => {
                    let members = s.sandbox_members.get(id).copied().unwrap_or(0);
                    if members > 0 {
                        return in_use(format!("sandbox {id} still has {members} containers"));
                    }
                    s.delete_sandbox(id);
                    RemoveOutcome::Removed { reclaimed: None }
                }
            }
        })
    }

    fn remove_pod_log_dir_call(&mut self, dir: &str) -> RemoveOutcome {
        self.remove(Call::RemovePodLogDir, ItemKind::PodLogDir, dir, |s| {
            if s.pod_log_dirs.remove(dir) {
                RemoveOutcome::Removed { reclaimed: None }
            } else {
                RemoveOutcome::AlreadyGone
            }
        })
    }
}

fn in_use(message: String) -> RemoveOutcome {
    RemoveOutcome::InUse { message }
}

fn decrement(counts: &mut IdMap<u32>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl BuildCacheStore for MemoryRuntime {
    async fn cache_records(&self) -> Result<Vec<CacheRecord>, RuntimeError> {
        self.state.lock().list_cache_records()
    }

    async fn cache_disk_stats(&self) -> Result<DiskStats, RuntimeError> {
        self.state.lock().stats(Call::CacheDiskStats)
    }

    async fn remove_cache_record(&self, id: &Id) -> RemoveOutcome {
        self.state.lock().remove_record_call(id.as_str())
    }
}

impl ImageStore for MemoryRuntime {
    async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        self.state.lock().list_images()
    }

    async fn image_fs_stats(&self) -> Result<DiskStats, RuntimeError> {
        self.state.lock().stats(Call::ImageFsStats)
    }

    async fn remove_image(&self, id: &Id) -> RemoveOutcome {
        self.state.lock().remove_image_call(id.as_str())
    }
}

impl ContainerStore for MemoryRuntime {
    async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.state.lock().list_containers()
    }

    async fn sandboxes(&self) -> Result<Vec<SandboxInfo>, RuntimeError> {
        self.state.lock().list_sandboxes()
    }

    async fn pods(&self) -> Result<PodList, RuntimeError> {
        self.state.lock().list_pods()
    }

    async fn pod_log_dirs(&self) -> Result<Vec<String>, RuntimeError> {
        self.state.lock().list_pod_log_dirs()
    }

    async fn stop_container(&self, id: &Id) -> StopOutcome {
        self.state.lock().stop_container_call(id.as_str())
    }

    async fn remove_container(&self, id: &Id) -> RemoveOutcome {
        self.state.lock().remove_container_call(id.as_str())
    }

    async fn stop_sandbox(&self, id: &Id) -> StopOutcome {
        self.state.lock().stop_sandbox_call(id.as_str())
    }

    async fn remove_sandbox(&self, id: &Id) -> RemoveOutcome {
        self.state.lock().remove_sandbox_call(id.as_str())
    }

    async fn remove_pod_log_dir(&self, dir: &str) -> RemoveOutcome {
        self.state.lock().remove_pod_log_dir_call(dir)
    }
}

#[cfg(test)]
mod tests;
