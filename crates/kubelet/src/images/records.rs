//! Image records: the kubelet's per-image bookkeeping (spec 2.3), as a
//! value the caller keeps between runs and can save and restore.
//!
//! # Layout
//!
//! Records live in hash partitions of a few thousand each; a partition
//! holds its slots, the id bytes of those slots in one string arena, and a
//! small open-addressing index. A detection copies each listed image (id
//! bytes, size, pinned) into a fixed-size entry, splits the entries by hash
//! into the same partitions, and then joins one partition at a time, so
//! that every probe hits the caches. At node scale (a million images) this
//! is what keeps a refresh far below a second on machines where a cache and
//! TLB miss per image would cost hundreds of nanoseconds. Nothing that
//! reaches an output depends on this order: every public listing is sorted.

use std::fmt;

use reclaim_model::{Id, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::containers::{ContainerState, SnapshotError};
use crate::hash::hash_bytes;
use crate::partition::{self, Hashed, Partitioner};

/// What the GC remembers about one image.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct ImageRecord {
    /// When detection first saw the image (since it last disappeared).
    /// MinAge is measured from here.
    pub first_detected: Timestamp,
    /// The last detection that found a container using the image; `None`
    /// if never (the kubelet's zero time). Never reset when the containers
    /// go away.
    pub last_used: Option<Timestamp>,
    /// The size the runtime reported at the last detection.
    pub size_bytes: u64,
    /// Whether the runtime reported the image as pinned at the last
    /// detection; pinned images are never removed.
    pub pinned: bool,
}

/// An image as the runtime lists it (CRI `ListImages`).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ListedImage {
    /// The image id (for example `sha256:…`).
    pub id: Id,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Whether the runtime pins it (the pause image usually is).
    #[serde(default)]
    pub pinned: bool,
}

/// A container the runtime still has, reduced to the image it uses.
///
/// Any container counts, running or not; sandboxes do not.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ImageUser {
    /// The container id, if known (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// The resolved image id the container runs (not the image name).
    pub image_id: Id,
    /// The container state, if known (informational: every state counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
}

/// What one detection found.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Detection {
    /// Distinct images listed.
    pub listed: usize,
    /// Records created (images not seen before, or seen again after they
    /// had disappeared).
    pub created: usize,
    /// Records dropped because their image is no longer listed.
    pub dropped: usize,
    /// Listed images some container uses.
    pub in_use: usize,
}

/// A handle to one record, valid until the records are next modified.
///
/// Plans refer to records through handles instead of copying ids; resolve
/// one with [`ImageRecords::id_of`] and [`ImageRecords::record_of`].
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct RecordRef {
    part: u32,
    slot: u32,
}

/// Average records per partition the store aims for.
const PER_PART: usize = 65536;
/// Ids up to this many bytes are copied into detection entries; longer ones
/// are compared through the listing.
const INLINE: usize = 72;
/// The length marker of an id that did not fit inline.
const OVERFLOW: u8 = u8::MAX;
/// Lookups probed together (see [`Part::first_probe`]).
const BATCH: usize = 16;

/// The per-record fields a detection touches, kept apart from the
/// timestamps so that a partition's probes stay within the fastest caches.
#[derive(Clone, Copy, Debug)]
struct Hot {
    hash: u64,
    key_off: u32,
    key_len: u32,
    size_bytes: u64,
    /// The detection round that last listed the image.
    mark: u32,
    pinned: bool,
    /// Whether the last detection found a container using it.
    in_use: bool,
}

/// The per-record timestamps.
#[derive(Clone, Copy, Debug)]
struct Cold {
    first_detected: Timestamp,
    last_used: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
struct Part {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    /// The ids of the slots, back to back; removed slots leave dead bytes.
    keys: String,
    dead: usize,
    /// Open addressing over the slots; `u32::MAX` is empty.
    index: Vec<u32>,
}

impl Part {
    fn len(&self) -> usize {
        self.hot.len()
    }

    fn key(&self, i: usize) -> &str {
        let h = &self.hot[i];
        &self.keys[h.key_off as usize..(h.key_off + h.key_len) as usize]
    }

    fn record(&self, i: usize) -> ImageRecord {
        let (h, c) = (&self.hot[i], &self.cold[i]);
        ImageRecord {
            first_detected: c.first_detected,
            last_used: c.last_used,
            size_bytes: h.size_bytes,
            pinned: h.pinned,
        }
    }

    fn set_record(&mut self, i: usize, r: ImageRecord) {
        let h = &mut self.hot[i];
        h.size_bytes = r.size_bytes;
        h.pinned = r.pinned;
        self.cold[i] = Cold {
            first_detected: r.first_detected,
            last_used: r.last_used,
        };
    }

    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut j = hash as usize & mask;
        loop {
            let i = self.index[j];
            if i == u32::MAX {
                return None;
            }
            let h = &self.hot[i as usize];
            if h.hash == hash
                && h.key_len as usize == key.len()
                && &self.keys.as_bytes()[h.key_off as usize..(h.key_off + h.key_len) as usize]
                    == key
            {
                return Some(i as usize);
            }
            j = (j + 1) & mask;
        }
    }

    /// Whether slot `i` holds `key` (with hash `hash`).
    #[inline]
    fn holds(&self, i: usize, hash: u64, key: &[u8]) -> bool {
        let h = &self.hot[i];
        h.hash == hash
            && h.key_len as usize == key.len()
            && &self.keys.as_bytes()[h.key_off as usize..(h.key_off + h.key_len) as usize] == key
    }

    /// Looks up a batch of staged entries (at most [`BATCH`]) at once.
    ///
    /// The loads of the first probe step of all entries are independent, so
    /// the processor overlaps their cache misses instead of waiting for each
    /// in turn. `out[k]` is the slot of `batch[k]` if its first probe step
    /// already finds it, else `None` (the caller then uses [`Part::find`],
    /// which also covers entries inserted since).
    #[inline]
    fn first_probe(&self, batch: &[Staged], out: &mut [Option<u32>; BATCH]) {
        *out = [None; BATCH];
        if self.index.is_empty() {
            return;
        }
        let mask = self.index.len() - 1;
        let mut slot = [u32::MAX; BATCH];
        for (k, e) in batch.iter().enumerate() {
            slot[k] = self.index[e.hash as usize & mask];
        }
        let mut tag = [false; BATCH];
        for (k, e) in batch.iter().enumerate() {
            let s = slot[k];
            tag[k] = s != u32::MAX && self.hot[s as usize].hash == e.hash;
        }
        for (k, e) in batch.iter().enumerate() {
            if tag[k] && e.len != OVERFLOW {
                let s = slot[k] as usize;
                if self.holds(s, e.hash, &e.key[..e.len as usize]) {
                    out[k] = Some(s as u32);
                }
            }
        }
    }

    fn push(&mut self, hash: u64, key: &str, record: ImageRecord, mark: u32) -> usize {
        self.hot.push(Hot {
            hash,
            key_off: self.keys.len() as u32,
            key_len: key.len() as u32,
            size_bytes: record.size_bytes,
            mark,
            pinned: record.pinned,
            in_use: false,
        });
        self.cold.push(Cold {
            first_detected: record.first_detected,
            last_used: record.last_used,
        });
        self.keys.push_str(key);
        let i = self.hot.len() - 1;
        if self.hot.len() * 2 > self.index.len() {
            self.rebuild_index();
        } else {
            self.index_insert(i);
        }
        i
    }

    fn index_insert(&mut self, i: usize) {
        let mask = self.index.len() - 1;
        let mut j = self.hot[i].hash as usize & mask;
        while self.index[j] != u32::MAX {
            j = (j + 1) & mask;
        }
        self.index[j] = i as u32;
    }

    fn rebuild_index(&mut self) {
        let cap = (self.hot.len() * 2).next_power_of_two().max(8);
        self.index.clear();
        self.index.resize(cap, u32::MAX);
        for i in 0..self.hot.len() {
            self.index_insert(i);
        }
    }

    /// Keeps the slots for which `keep` is true, then compacts the key
    /// arena if more than half of it is dead, and rebuilds the index.
    fn retain(&mut self, mut keep: impl FnMut(usize, &Hot) -> bool) -> usize {
        let before = self.hot.len();
        let mut w = 0;
        for r in 0..before {
            let h = self.hot[r];
            if keep(r, &h) {
                self.hot[w] = h;
                self.cold[w] = self.cold[r];
                w += 1;
            } else {
                self.dead += h.key_len as usize;
            }
        }
        self.hot.truncate(w);
        self.cold.truncate(w);
        if self.dead * 2 > self.keys.len() {
            let mut keys = String::with_capacity(self.keys.len() - self.dead);
            for h in &mut self.hot {
                let start = keys.len();
                keys.push_str(&self.keys[h.key_off as usize..(h.key_off + h.key_len) as usize]);
                h.key_off = start as u32;
            }
            self.keys = keys;
            self.dead = 0;
        }
        self.rebuild_index();
        before - w
    }
}

/// One id copied for a partitioned join.
#[derive(Clone, Copy)]
struct Staged {
    hash: u64,
    size: u64,
    /// Position in the listing (or user list).
    idx: u32,
    len: u8,
    pinned: bool,
    key: [u8; INLINE],
}

impl Staged {
    #[inline]
    fn new(id: &str, idx: usize, size: u64, pinned: bool) -> Self {
        let bytes = id.as_bytes();
        let mut key = [0u8; INLINE];
        let len = if bytes.len() <= INLINE {
            key[..bytes.len()].copy_from_slice(bytes);
            bytes.len() as u8
        } else {
            OVERFLOW
        };
        Self {
            hash: hash_bytes(bytes),
            size,
            idx: idx as u32,
            len,
            pinned,
            key,
        }
    }

    #[inline]
    fn bytes<'a>(&'a self, original: impl FnOnce(usize) -> &'a str) -> &'a [u8] {
        if self.len == OVERFLOW {
            original(self.idx as usize).as_bytes()
        } else {
            &self.key[..self.len as usize]
        }
    }
}

impl Hashed for Staged {
    fn partition_key(&self) -> u64 {
        self.hash
    }
}

/// Detection buffers, kept between runs so that a refresh does not fault in
/// fresh memory every time.
#[derive(Debug, Default)]
struct Scratch {
    staged: Partitioner<Staged>,
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged").field("idx", &self.idx).finish()
    }
}

/// The kubelet's image records: one [`ImageRecord`] per image id, plus
/// whether the last detection found the image in use.
///
/// Keep this value between GC runs and save it (it serialises to a list
/// sorted by id) so that MinAge and LRU order survive a restart, which the
/// kubelet itself cannot do. [`ImageRecords::detect`] refreshes it from a
/// runtime listing. In-use flags are not saved: they belong to one
/// detection.
#[derive(Debug)]
pub struct ImageRecords {
    bits: u32,
    parts: Vec<Part>,
    len: usize,
    round: u32,
    /// Average records per partition aimed for (`PER_PART` unless a test
    /// asks for small partitions).
    per_part: usize,
    scratch: Scratch,
}

impl Default for ImageRecords {
    fn default() -> Self {
        Self {
            bits: 0,
            parts: Vec::new(),
            len: 0,
            round: 0,
            per_part: PER_PART,
            scratch: Scratch::default(),
        }
    }
}

impl Clone for ImageRecords {
    /// Clones the records (not the detection buffers).
    fn clone(&self) -> Self {
        Self {
            bits: self.bits,
            parts: self.parts.clone(),
            len: self.len,
            round: self.round,
            per_part: self.per_part,
            scratch: Scratch::default(),
        }
    }
}

impl PartialEq for ImageRecords {
    /// Equal when both hold the same ids with the same records (in-use
    /// flags are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .parts
                .iter()
                .all(|p| (0..p.len()).all(|i| other.get(p.key(i)) == Some(p.record(i))))
    }
}

impl Eq for ImageRecords {}

impl ImageRecords {
    /// No records: what the kubelet has after a restart.
    pub fn new() -> Self {
        Self::default()
    }

    /// No records, with hash partitions of about `per_part` records instead
    /// of the default (several tens of thousands). Results do not depend on
    /// it; tests use small partitions to exercise the partitioned paths on
    /// small inputs.
    #[doc(hidden)]
    pub fn with_partition_size(per_part: usize) -> Self {
        Self {
            per_part: per_part.max(1),
            ..Self::default()
        }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn locate(&self, id: &str) -> Option<RecordRef> {
        if self.parts.is_empty() {
            return None;
        }
        let h = hash_bytes(id.as_bytes());
        let p = partition::part_of(h, self.bits);
        self.parts[p].find(h, id.as_bytes()).map(|s| RecordRef {
            part: p as u32,
            slot: s as u32,
        })
    }

    /// The record of one image.
    pub fn get(&self, id: &str) -> Option<ImageRecord> {
        self.locate(id).map(|r| self.record_of(r))
    }

    /// Whether the last detection (or [`ImageRecords::set_in_use`]) found a
    /// container using the image.
    pub fn is_in_use(&self, id: &str) -> bool {
        self.locate(id)
            .is_some_and(|r| self.parts[r.part as usize].hot[r.slot as usize].in_use)
    }

    /// Marks an image as used by a container (or not) without a detection,
    /// for callers that track usage themselves. Returns false if there is no
    /// record of the image.
    pub fn set_in_use(&mut self, id: &str, in_use: bool) -> bool {
        match self.locate(id) {
            Some(r) => {
                self.parts[r.part as usize].hot[r.slot as usize].in_use = in_use;
                true
            }
            None => false,
        }
    }

    /// Sets the record of one image (for restoring saved state), returning
    /// the previous one. The image is not marked in use.
    pub fn insert(&mut self, id: impl AsRef<str>, record: ImageRecord) -> Option<ImageRecord> {
        let id = id.as_ref();
        if let Some(r) = self.locate(id) {
            let part = &mut self.parts[r.part as usize];
            let previous = part.record(r.slot as usize);
            part.set_record(r.slot as usize, record);
            return Some(previous);
        }
        self.ensure_bits(self.len + 1);
        let h = hash_bytes(id.as_bytes());
        let p = partition::part_of(h, self.bits);
        self.parts[p].push(h, id, record, 0);
        self.len += 1;
        None
    }

    /// Drops the record of one image, returning it.
    pub fn remove(&mut self, id: &str) -> Option<ImageRecord> {
        let r = self.locate(id)?;
        let part = &mut self.parts[r.part as usize];
        let record = part.record(r.slot as usize);
        let target = r.slot as usize;
        part.retain(|i, _| i != target);
        self.len -= 1;
        Some(record)
    }

    /// Drops the records of these images (those without a record are
    /// ignored). Use it after a GC run with the ids its plan removed, as the
    /// kubelet drops a record right after each successful removal.
    pub fn forget<I, S>(&mut self, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut doomed: Vec<RecordRef> = ids
            .into_iter()
            .filter_map(|id| self.locate(id.as_ref()))
            .collect();
        doomed.sort_unstable();
        doomed.dedup();
        let mut start = 0;
        while start < doomed.len() {
            let part_no = doomed[start].part;
            let end = start
                + doomed[start..]
                    .iter()
                    .take_while(|r| r.part == part_no)
                    .count();
            let part = &mut self.parts[part_no as usize];
            let mut drop = vec![false; part.len()];
            for r in &doomed[start..end] {
                drop[r.slot as usize] = true;
            }
            self.len -= part.retain(|i, _| !drop[i]);
            start = end;
        }
    }

    /// All records, sorted by id.
    pub fn sorted(&self) -> Vec<(&str, ImageRecord)> {
        let mut all: Vec<(&str, ImageRecord)> = self
            .parts
            .iter()
            .flat_map(|p| (0..p.len()).map(move |i| (p.key(i), p.record(i))))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// The id of a record handle.
    ///
    /// # Panics
    ///
    /// If the handle is not from these records in their current state.
    pub fn id_of(&self, r: RecordRef) -> &str {
        self.parts[r.part as usize].key(r.slot as usize)
    }

    /// The record of a record handle.
    ///
    /// # Panics
    ///
    /// If the handle is not from these records in their current state.
    pub fn record_of(&self, r: RecordRef) -> ImageRecord {
        self.parts[r.part as usize].record(r.slot as usize)
    }

    /// Calls `f` on every record in partition order (not sorted; for
    /// planners that sort themselves).
    pub(crate) fn for_each_slot(&self, mut f: impl FnMut(RecordRef, ImageRecord, bool)) {
        for (p, part) in self.parts.iter().enumerate() {
            for s in 0..part.len() {
                f(
                    RecordRef {
                        part: p as u32,
                        slot: s as u32,
                    },
                    part.record(s),
                    part.hot[s].in_use,
                );
            }
        }
    }

    /// Compares the ids of two handles.
    pub(crate) fn cmp_ids(&self, a: RecordRef, b: RecordRef) -> std::cmp::Ordering {
        self.id_of(a).cmp(self.id_of(b))
    }

    /// Frees the buffers detection keeps between runs (about 100 bytes per
    /// listed image). The next detection allocates them again.
    pub fn release_buffers(&mut self) {
        self.scratch.staged.release();
    }

    /// Re-partitions when `n` records would make partitions far too large
    /// or small.
    fn ensure_bits(&mut self, n: usize) {
        let target = partition::bits_for(n, self.per_part);
        if self.parts.is_empty() || target > self.bits || target + 2 < self.bits {
            self.repartition(target);
        }
    }

    fn repartition(&mut self, bits: u32) {
        let old = std::mem::take(&mut self.parts);
        self.bits = bits;
        self.parts = vec![Part::default(); 1usize << bits];
        for part in &old {
            for i in 0..part.len() {
                let h = part.hot[i];
                let p = partition::part_of(h.hash, bits);
                let target = &mut self.parts[p];
                let start = target.keys.len() as u32;
                target.keys.push_str(part.key(i));
                target.hot.push(Hot {
                    key_off: start,
                    ..h
                });
                target.cold.push(part.cold[i]);
            }
        }
        for p in &mut self.parts {
            p.rebuild_index();
        }
    }

    fn next_round(&mut self) -> u32 {
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            // After 2^32 rounds, clear the marks so that none is mistaken
            // for the current round.
            for p in &mut self.parts {
                for h in &mut p.hot {
                    h.mark = 0;
                }
            }
            self.round = 1;
        }
        self.round
    }

    /// One detection (spec 2.3) at `detect_time`, stamping uses with `now`.
    ///
    /// For each listed image: create a record with `first_detected =
    /// detect_time` if there is none; set `last_used = now` if some user
    /// runs it; overwrite size and pinned (a later duplicate listing wins).
    /// Then drop every record whose image is no longer listed, and set each
    /// remaining record's in-use flag from `users`.
    ///
    /// The kubelet passes the GC's `freeTime` as `detect_time` and reads the
    /// clock again for `now`; the periodic detection passes the current time
    /// for both.
    pub fn detect(
        &mut self,
        images: &[ListedImage],
        users: &[ImageUser],
        detect_time: Timestamp,
        now: Timestamp,
    ) -> Detection {
        let round = self.next_round();
        self.ensure_bits(self.len.max(images.len()));
        let bits = self.bits;
        let mut found = Detection::default();

        // Join the listing with the records, one partition at a time.
        let staged = &mut self.scratch.staged;
        staged.begin(bits, images.len());
        for (i, image) in images.iter().enumerate() {
            staged.push(Staged::new(
                image.id.as_str(),
                i,
                image.size_bytes,
                image.pinned,
            ));
        }
        staged.finish();
        let mut first = [None; BATCH];
        for (p, part) in self.parts.iter_mut().enumerate() {
            let mut listed = 0;
            for batch in staged.part(p).chunks(BATCH) {
                part.first_probe(batch, &mut first);
                for (e, &quick) in batch.iter().zip(&first) {
                    let key = e.bytes(|i| images[i].id.as_str());
                    let slot = match quick {
                        Some(i) => Some(i as usize),
                        None => part.find(e.hash, key),
                    };
                    match slot {
                        Some(i) => {
                            let h = &mut part.hot[i];
                            if h.mark != round {
                                h.mark = round;
                                listed += 1;
                            }
                            h.size_bytes = e.size;
                            h.pinned = e.pinned;
                            h.in_use = false;
                        }
                        None => {
                            let record = ImageRecord {
                                first_detected: detect_time,
                                last_used: None,
                                size_bytes: e.size,
                                pinned: e.pinned,
                            };
                            part.push(e.hash, images[e.idx as usize].id.as_str(), record, round);
                            listed += 1;
                            found.created += 1;
                        }
                    }
                }
            }
            found.listed += listed;
            if listed < part.len() {
                found.dropped += part.retain(|_, h| h.mark == round);
            }
        }
        self.len = self.len + found.created - found.dropped;

        // Mark the images containers use.
        staged.begin(bits, users.len());
        for (i, user) in users.iter().enumerate() {
            staged.push(Staged::new(user.image_id.as_str(), i, 0, false));
        }
        staged.finish();
        for (p, part) in self.parts.iter_mut().enumerate() {
            for batch in staged.part(p).chunks(BATCH) {
                part.first_probe(batch, &mut first);
                for (e, &quick) in batch.iter().zip(&first) {
                    let key = e.bytes(|i| users[i].image_id.as_str());
                    let slot = match quick {
                        Some(i) => Some(i as usize),
                        None => part.find(e.hash, key),
                    };
                    if let Some(i) = slot {
                        let h = &mut part.hot[i];
                        if !h.in_use {
                            h.in_use = true;
                            found.in_use += 1;
                        }
                        part.cold[i].last_used = Some(now);
                    }
                }
            }
        }
        self.ensure_bits(self.len);
        found
    }
}

/// One record in the saved form: the id and its fields.
#[derive(Deserialize, Serialize)]
struct SavedRecord<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(with = "crate::serde_time::instant")]
    first_detected: Timestamp,
    #[serde(default, with = "crate::serde_time::opt_instant")]
    last_used: Option<Timestamp>,
    size_bytes: u64,
    #[serde(default)]
    pinned: bool,
}

impl Serialize for ImageRecords {
    /// A list of `{id, first_detected, last_used, size_bytes, pinned}`
    /// sorted by id; `last_used` is `null` for never-used images.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for (id, r) in self.sorted() {
            seq.serialize_element(&SavedRecord {
                id: std::borrow::Cow::Borrowed(id),
                first_detected: r.first_detected,
                last_used: r.last_used,
                size_bytes: r.size_bytes,
                pinned: r.pinned,
            })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ImageRecords {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let saved = Vec::<SavedRecord<'_>>::deserialize(deserializer)?;
        let mut records = ImageRecords::new();
        records.ensure_bits(saved.len());
        for s in saved {
            let previous = records.insert(
                &*s.id,
                ImageRecord {
                    first_detected: s.first_detected,
                    last_used: s.last_used,
                    size_bytes: s.size_bytes,
                    pinned: s.pinned,
                },
            );
            if previous.is_some() {
                return Err(serde::de::Error::custom(SnapshotError::DuplicateId {
                    field: "records",
                    id: s.id.into_owned(),
                }));
            }
        }
        Ok(records)
    }
}

/// Capacity and available bytes of the image filesystem, as the kubelet's
/// stats provider reports them. A missing value counts as 0.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct ImageFsStats {
    /// Size of the filesystem in bytes.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// Bytes available to unprivileged users (statfs `f_bavail`).
    #[serde(default)]
    pub available_bytes: Option<u64>,
}

impl ImageFsStats {
    /// Stats with both values present.
    pub const fn new(capacity_bytes: u64, available_bytes: u64) -> Self {
        Self {
            capacity_bytes: Some(capacity_bytes),
            available_bytes: Some(available_bytes),
        }
    }
}

impl From<reclaim_model::DiskStats> for ImageFsStats {
    /// The kubelet reads `available` (not `free`).
    fn from(d: reclaim_model::DiskStats) -> Self {
        Self::new(d.total, d.available)
    }
}

/// Everything the image GC looks at on one node at one moment.
///
/// The file format is described in `docs/kubelet-snapshot-format.md`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSnapshot {
    /// When the snapshot was taken; a caller may use it as the GC's `now`.
    #[serde(default, with = "crate::serde_time::opt_instant")]
    pub taken_at: Option<Timestamp>,
    /// When the periodic image GC started (the kubelet's `beganGC`); the
    /// MaxAge pass waits until it has run longer than MaxAge. Missing means
    /// "now" (a fresh start: no MaxAge pass yet).
    #[serde(default, with = "crate::serde_time::opt_instant")]
    pub gc_started_at: Option<Timestamp>,
    /// Every image the runtime lists.
    #[serde(default)]
    pub images: Vec<ListedImage>,
    /// Every container the runtime still has, with the image it uses.
    #[serde(default)]
    pub containers: Vec<ImageUser>,
    /// The image filesystem stats (read after the MaxAge pass by the
    /// kubelet; a dry run uses them as given).
    #[serde(default)]
    pub fs: Option<ImageFsStats>,
    /// Records saved by an earlier run; missing means none (as after a
    /// kubelet restart: every image is first detected now).
    #[serde(default)]
    pub records: Option<ImageRecords>,
}

impl ImageSnapshot {
    /// Parses a snapshot from JSON text.
    pub fn from_json(text: &str) -> Result<Self, SnapshotError> {
        serde_json::from_str(text).map_err(|e| SnapshotError::Json(e.to_string()))
    }
}

impl fmt::Display for ImageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "first detected {}, last used {}, {} bytes{}",
            self.first_detected,
            self.last_used
                .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            self.size_bytes,
            if self.pinned { ", pinned" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    fn listed(id: &str, size: u64) -> ListedImage {
        ListedImage {
            id: Id::new(id),
            size_bytes: size,
            pinned: false,
        }
    }

    fn user(image: &str) -> ImageUser {
        ImageUser {
            id: None,
            image_id: Id::new(image),
            state: Some(ContainerState::Exited),
        }
    }

    #[test]
    fn detection_creates_stamps_and_drops() {
        let mut r = ImageRecords::new();
        let d = r.detect(&[listed("a", 1), listed("b", 2)], &[user("b")], t(0), t(5));
        assert_eq!(
            d,
            Detection {
                listed: 2,
                created: 2,
                dropped: 0,
                in_use: 1
            }
        );
        assert!(r.is_in_use("b"));
        assert!(!r.is_in_use("a"));
        assert_eq!(r.get("a").unwrap().last_used, None);
        assert_eq!(r.get("b").unwrap().last_used, Some(t(5)));
        assert_eq!(r.get("b").unwrap().first_detected, t(0));

        // b keeps first_detected and last_used after its container is gone;
        // a vanishes and loses its record.
        let d = r.detect(&[listed("b", 3)], &[], t(10), t(10));
        assert_eq!((d.dropped, d.created, d.in_use), (1, 0, 0));
        assert_eq!(r.len(), 1);
        assert!(!r.is_in_use("b"));
        let b = r.get("b").unwrap();
        assert_eq!(
            (b.first_detected, b.last_used, b.size_bytes),
            (t(0), Some(t(5)), 3)
        );

        // a comes back with a new first_detected.
        r.detect(&[listed("a", 1), listed("b", 3)], &[], t(20), t(20));
        assert_eq!(r.get("a").unwrap().first_detected, t(20));
    }

    #[test]
    fn later_duplicate_listing_wins() {
        let mut r = ImageRecords::new();
        let mut second = listed("a", 9);
        second.pinned = true;
        let d = r.detect(&[listed("a", 1), second], &[], t(0), t(0));
        assert_eq!(r.get("a").unwrap().size_bytes, 9);
        assert!(r.get("a").unwrap().pinned);
        assert_eq!((r.len(), d.listed), (1, 1));
    }

    #[test]
    fn users_of_unlisted_images_change_nothing() {
        let mut r = ImageRecords::new();
        let d = r.detect(&[listed("a", 1)], &[user("ghost")], t(0), t(1));
        assert_eq!(d.in_use, 0);
        assert!(r.get("ghost").is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn long_ids_and_many_records_survive_repartitioning() {
        let mut r = ImageRecords::new();
        let long = "x".repeat(300);
        let n = 2 * PER_PART + 10;
        let mut images: Vec<ListedImage> = (0..n as u64)
            .map(|i| listed(&format!("sha256:{i:064x}"), i))
            .collect();
        images.push(listed(&long, 7));
        let d = r.detect(
            &images,
            &[
                user(&long),
                user("sha256:0000000000000000000000000000000000000000000000000000000000000005"),
            ],
            t(1),
            t(2),
        );
        assert_eq!(d.created, n + 1);
        assert_eq!(d.in_use, 2);
        assert_eq!(r.len(), n + 1);
        assert!(r.bits > 0, "large tables are partitioned");
        assert!(r.is_in_use(&long));
        assert_eq!(r.get(&long).unwrap().size_bytes, 7);
        // Dropping almost everything keeps the survivors reachable.
        let d = r.detect(&images[..3], &[], t(3), t(3));
        assert_eq!((d.dropped, r.len()), (n - 2, 3));
        let id2 = format!("sha256:{:064x}", 2);
        assert_eq!(r.get(&id2).unwrap().size_bytes, 2);
        assert!(r.get(&long).is_none());
        // Repartitioning explicitly keeps every record.
        r.repartition(3);
        assert_eq!(r.get(&id2).unwrap().first_detected, t(1));
        r.repartition(0);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&id2).unwrap().size_bytes, 2);
    }

    #[test]
    fn insert_remove_and_forget() {
        let mut r = ImageRecords::new();
        let rec = ImageRecord {
            first_detected: t(1),
            last_used: None,
            size_bytes: 1,
            pinned: false,
        };
        assert_eq!(r.insert("a", rec), None);
        assert_eq!(r.insert("b", rec), None);
        assert_eq!(r.insert("a", rec), Some(rec));
        assert_eq!(r.len(), 2);
        assert!(r.set_in_use("a", true));
        assert!(!r.set_in_use("zzz", true));
        r.forget(["a", "zzz"]);
        assert_eq!(r.len(), 1);
        assert!(r.get("a").is_none());
        assert_eq!(r.remove("b"), Some(rec));
        assert!(r.is_empty());
    }

    #[test]
    fn records_round_trip_sorted_by_id() {
        let mut r = ImageRecords::new();
        r.detect(&[listed("b", 2), listed("a", 1)], &[user("a")], t(3), t(4));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"[{"id":"a","first_detected":"1970-01-01T00:00:03Z","last_used":"1970-01-01T00:00:04Z","size_bytes":1,"pinned":false},{"id":"b","first_detected":"1970-01-01T00:00:03Z","last_used":null,"size_bytes":2,"pinned":false}]"#
        );
        let back: ImageRecords = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn duplicate_saved_records_are_rejected() {
        let json = r#"[{"id":"a","first_detected":1,"size_bytes":1},{"id":"a","first_detected":2,"size_bytes":1}]"#;
        let err = serde_json::from_str::<ImageRecords>(json)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("records lists id \"a\" more than once"),
            "{err}"
        );
    }

    #[test]
    fn restored_records_survive_detection() {
        // A restart with saved records keeps first_detected and last_used.
        let mut r = ImageRecords::new();
        r.insert(
            "a",
            ImageRecord {
                first_detected: t(1),
                last_used: Some(t(2)),
                size_bytes: 1,
                pinned: false,
            },
        );
        r.detect(&[listed("a", 1)], &[], t(100), t(100));
        assert_eq!(r.get("a").unwrap().first_detected, t(1));
        assert_eq!(r.get("a").unwrap().last_used, Some(t(2)));
    }
}
