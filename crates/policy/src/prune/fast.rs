//! The fast planner: BuildKit's exact deletion order without rescanning.
//!
//! Upstream re-ranks every candidate after each deletion. The observations
//! that make that cheap without changing a single decision (design.md
//! section 5):
//!
//! 1. Candidates with the same usage count share their usage rank, so within
//!    such a group the score only grows with the last-used rank: only the
//!    group's head (oldest last-used, never-used first, then lowest id) can
//!    win, and between groups an equal score goes to the lower usage count,
//!    which is the documented tie-break. Records are laid out once in
//!    (usage count, last-used, id) order, so that a group is a range of
//!    positions, and a bit set over the positions finds a group's head.
//! 2. Dense ranks and their maxima only depend on which distinct last-used
//!    times and usage counts are still present among the candidates: a rank
//!    set (bits plus two levels of counts) and a Fenwick tree of presence
//!    bits give them; usage ranks rarely change and are cached per group.
//! 3. Scores move little from one deletion to the next, and by an amount
//!    that can be bounded ([`fall`]): over one pass, a term `rank / max`
//!    whose values saw `r` disappear and `i` appear falls by at most
//!    `max(L / m0 - max(1, L - r) / m1)` over the possible ranks `L`, about
//!    `1 / max` for a pass that deletes one candidate and frees its parent.
//!    A global drift adds these bounds up; each head keeps its last exact
//!    score plus the drift at that moment, which minus the drift now is a
//!    lower bound of its current score. The heads sit in buckets by that
//!    key, and a pass computes exact scores only for the heads that changed
//!    and for the buckets whose bound can still reach the best exact score
//!    found so far: about ten heads per deletion on realistic data.
//!
//! Scores are always computed in binary64 exactly as upstream computes them
//! (two divisions, then the sum); bounds only decide what to evaluate.
//! Deleting a record can make its parents candidates; they are inserted
//! into the same structures. The staircase of design.md (only heads older
//! than every head with a smaller usage count can win) also holds, but on
//! realistic data it grows to dozens of heads late in a run, so the bounds
//! replaced it.
//!
//! Memory: the state the deletion loop touches is indexed by layout
//! position, not by the record's index in the snapshot, so that the members
//! of a usage group (deleted one after the other, oldest first) sit side by
//! side, and what a deletion reads of a record is one 24-byte [`Slot`]. The
//! records themselves are read in snapshot order (memory order) in a few
//! sweeps: to sort them, to fill the slots, to build the kept list and to
//! clone the deleted ids. Working memory is freed as soon as it is done
//! with (the classes once the slots hold them; the slots, parent links and
//! layout before the kept list is sorted and the deletions are built), so
//! that the peak is not the working state plus the whole plan. Per rule, the fixed candidate checks read the
//! slots; a filter reads a record only when its result is not known from an
//! earlier record with the same type, mutable and shared flags
//! ([`FilterMemo`]). Sorting is by radix sort wherever keys are integers.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use reclaim_model::{DiskStats, Timestamp};

use super::core::{
    CandidateFields, Facts, GO_ZERO_TIME, RuleContext, Verdict, cut_off, has_limits, keep_bytes,
};
use super::ordering::Ordering;
use super::plan::{
    Deletion, DeletionReason, KeepReason, Kept, Mode, Protection, PrunePlan, RuleOutcome, Score,
    Stop,
};
use super::record::{CacheRecord, RecordType, Snapshot};
use super::structures::{BitSet, Fenwick, RankSet, radix_sort};
use crate::Rule;
use crate::filter::Fields;

/// "No position", "no group", "no bucket".
const NONE: u32 = u32::MAX;

/// Plans a GC run with the given gc-mode ordering. Same output as the
/// reference planner for [`Ordering::BuildKit`].
pub(crate) fn plan_fast(
    snapshot: &Snapshot,
    rules: &[Rule],
    disk: DiskStats,
    now: Timestamp,
    ordering: Ordering,
) -> PrunePlan {
    let records = snapshot.records();
    assert!(
        u32::try_from(records.len()).is_ok_and(|n| n < NONE),
        "a snapshot holds fewer than 2^32 - 1 records"
    );
    // A rule without any size limit always runs in batch mode, which needs
    // no order; the layout is only sorted when some rule may rank.
    let ranked = rules.iter().any(has_limits);
    // Each rule's keep-duration cut-off, as `RuleContext` computes it.
    let cut_offs: Vec<Option<Timestamp>> = rules
        .iter()
        .map(|rule| (!rule.keep_duration.is_zero()).then(|| cut_off(now, rule.keep_duration)))
        .collect();
    let mut layout = Layout::build(records, ranked.then_some(ordering), &cut_offs);
    // The classes are only needed to fill the slots.
    let class = std::mem::take(&mut layout.class);
    let mut state = State::new(records, &layout, &class);
    drop(class);
    let mut plan = PrunePlan::default();
    let mut last_rule: Option<RuleContext<'_>> = None;

    for (index, rule) in rules.iter().enumerate() {
        let ctx = match RuleContext::new(index, rule, now) {
            Ok(ctx) => ctx,
            Err(err) => {
                plan.error = Some(err);
                break;
            }
        };
        let keep = keep_bytes(rule, state.unshared_total, disk);
        state.judge(&ctx);
        let first = state.pending.len();
        let mut run = Run {
            rule: index as u32,
            total: keep.total,
            bytes_freed: 0,
        };
        let (mode, stop) = if keep.keep_bytes == 0 {
            (Mode::Batch, run_batch(&mut state, &mut run))
        } else {
            let stop = match &layout.ranks {
                Some(ranks) => run_buildkit(&mut state, &mut run, ranks, keep.keep_bytes),
                None => run_static(&mut state, &mut run, ordering, keep.keep_bytes),
            };
            (Mode::Ranked, stop)
        };
        plan.rules.push(RuleOutcome {
            rule: index,
            mode,
            keep,
            cut_off: ctx.cut_off,
            deletions: first..state.pending.len(),
            bytes_freed: run.bytes_freed,
            end_total: run.total,
            stop,
        });
        last_rule = Some(ctx);
    }

    let (kept, keys) = state.kept(last_rule.as_ref());
    // Only sorting the kept records and building the deletions are left:
    // free the rest first (a partial move out of `state` would keep its
    // other fields alive to the end).
    let pending = std::mem::take(&mut state.pending);
    drop(state);
    let position = std::mem::take(&mut layout.position);
    drop(layout);
    plan.kept = sort_kept(kept, keys);
    plan.deletions = deletions(records, &position, pending);
    plan
}

/// The order of the records for the whole run. Per-record state is indexed
/// by position in this order.
struct Layout {
    /// Position to record.
    order: Vec<u32>,
    /// Record to position.
    position: Vec<u32>,
    /// Record to last-used class (see [`Ranks`]), with [`SHARED_CLASS`]
    /// set when other records have the same class; empty unless the
    /// ordering is BuildKit's. Taken out and freed once the slots hold it.
    class: Vec<u32>,
    /// BuildKit's groups, when the ordering is BuildKit's.
    ranks: Option<Ranks>,
}

/// Set in a record's class when the class (a last-used time) is shared by
/// several records, which then need a count to know when it disappears.
const SHARED_CLASS: u32 = 1 << 31;

/// BuildKit's layout: positions in (usage count, last-used, id) order,
/// never used first, so that each usage group is a range of positions.
///
/// A record's last-used class is 0 for never used (or used at or before
/// Go's zero time, which upstream ranks alike), else the rank of its time
/// among the distinct times after Go's zero time (1 for the earliest).
struct Ranks {
    /// Number of non-zero classes.
    classes: usize,
    /// The distinct usage counts, ascending; group `g` has count `usage[g]`.
    usage: Vec<u64>,
    /// First position of each group, plus the end.
    group_start: Vec<u32>,
    /// Per rule, the number of classes at or before its keep-duration
    /// cut-off (`u32::MAX` without one): a record with a non-zero class is
    /// recent for the rule if its class is above this.
    recent_above: Vec<u32>,
}

impl Ranks {
    /// The group of position `p`.
    fn group_of(&self, p: usize) -> usize {
        self.group_start.partition_point(|&s| s as usize <= p) - 1
    }
}

impl Layout {
    /// Lays the records out for `ordering`, or in snapshot order when no
    /// rule ranks.
    fn build(
        records: &[CacheRecord],
        ordering: Option<Ordering>,
        cut_offs: &[Option<Timestamp>],
    ) -> Self {
        match ordering {
            None => {
                let order: Vec<u32> = (0..records.len() as u32).collect();
                Self {
                    position: order.clone(),
                    order,
                    class: Vec::new(),
                    ranks: None,
                }
            }
            Some(Ordering::BuildKit) => Self::buildkit(records, cut_offs),
            Some(other) => {
                let mut order: Vec<u32> = (0..records.len() as u32).collect();
                order.sort_unstable_by(|&a, &b| {
                    other.compare(&records[a as usize], &records[b as usize])
                });
                Self {
                    position: inverse(&order),
                    order,
                    class: Vec::new(),
                    ranks: None,
                }
            }
        }
    }

    fn buildkit(records: &[CacheRecord], cut_offs: &[Option<Timestamp>]) -> Self {
        let n = records.len();
        // Usage groups: the distinct counts, numbered as first seen during
        // the time order's sweep over the records, then in ascending order.
        let mut first_seen: HashMap<u64, u32, BuildHasherDefault<CountHasher>> = HashMap::default();
        let mut group: Vec<u32> = Vec::with_capacity(n);
        let (by_time, class, classes, recent_above) = time_order(records, cut_offs, |record| {
            let next = first_seen.len() as u32;
            group.push(*first_seen.entry(record.usage_count).or_insert(next));
        });
        let mut usage: Vec<u64> = first_seen.keys().copied().collect();
        usage.sort_unstable();
        let mut renumber = vec![0u32; usage.len()];
        for (g, count) in usage.iter().enumerate() {
            renumber[first_seen[count] as usize] = g as u32;
        }
        drop(first_seen);
        for g in &mut group {
            *g = renumber[*g as usize];
        }

        // Counting sort by group keeps the (last-used, id) order inside groups.
        let mut group_start = vec![0u32; usage.len() + 1];
        for &g in &group {
            group_start[g as usize + 1] += 1;
        }
        for g in 0..usage.len() {
            group_start[g + 1] += group_start[g];
        }
        let mut cursor = group_start.clone();
        let mut order = vec![0u32; n];
        for &r in &by_time {
            let g = group[r as usize] as usize;
            order[cursor[g] as usize] = r;
            cursor[g] += 1;
        }
        drop((by_time, group, cursor));

        Self {
            position: inverse(&order),
            order,
            class,
            ranks: Some(Ranks {
                classes,
                usage,
                group_start,
                recent_above,
            }),
        }
    }
}

/// The records in (last-used, id) order, never used first, with each
/// record's last-used class (by record, [`SHARED_CLASS`] set on classes
/// held by several records), the number of non-zero classes, and for each
/// cut-off the number of classes at or before it ([`Ranks::recent_above`]).
/// Calls `each` with every record, in snapshot order, during its one sweep
/// over them.
///
/// Last-used times that fit in 64-bit nanoseconds (years 1678 to 2262) are
/// radix-sorted as integers; otherwise the records are compared as
/// timestamps.
fn time_order(
    records: &[CacheRecord],
    cut_offs: &[Option<Timestamp>],
    mut each: impl FnMut(&CacheRecord),
) -> (Vec<u32>, Vec<u32>, usize, Vec<u32>) {
    let n = records.len();
    let mut never: Vec<u32> = Vec::new();
    let mut used: Vec<(u64, u32)> = Vec::with_capacity(n);
    let mut fits = true;
    for (r, record) in records.iter().enumerate() {
        each(record);
        match record.last_used_at {
            None => never.push(r as u32),
            Some(t) => {
                let key = i64::try_from(t.unix_nanos()).unwrap_or_else(|_| {
                    fits = false;
                    0
                });
                // Flipping the sign bit orders the integers as unsigned.
                used.push(((key as u64) ^ (1 << 63), r as u32));
            }
        }
    }
    let by_id = |a: &u32, b: &u32| records[*a as usize].id.cmp(&records[*b as usize].id);
    sort_by_id(records, &mut never, |r| r);

    // A used record's time: from its key when the keys hold the times,
    // else from the record.
    let time = |u: &(u64, u32)| {
        if fits {
            Timestamp::from_unix_nanos(i128::from((u.0 ^ (1 << 63)) as i64))
        } else {
            records[u.1 as usize]
                .last_used_at
                .expect("only used records are sorted by time")
        }
    };
    if fits {
        let low = used.iter().map(|u| u.0).min().unwrap_or(0);
        let span = used.iter().map(|u| u.0 - low).max().unwrap_or(0);
        radix_sort(&mut used, 64 - span.leading_zeros(), |u| u.0 - low);
    } else {
        used.sort_unstable_by(|a, b| time(a).cmp(&time(b)).then_with(|| by_id(&a.1, &b.1)));
    }

    // Walk the runs of equal times: one class each (after Go's zero time),
    // ties in id order, and the cut-offs in ascending order alongside.
    let mut cuts: Vec<(Timestamp, usize)> = cut_offs
        .iter()
        .enumerate()
        .filter_map(|(rule, c)| c.map(|c| (c, rule)))
        .collect();
    cuts.sort_unstable();
    let mut recent_above = vec![u32::MAX; cut_offs.len()];
    let mut next_cut = 0;
    let mut class = vec![0u32; n];
    let mut classes = 0u32;
    let mut i = 0;
    while i < used.len() {
        let t = time(&used[i]);
        let end = i + used[i..].iter().take_while(|u| time(u) == t).count();
        if fits && end - i > 1 {
            used[i..end].sort_unstable_by(|a, b| by_id(&a.1, &b.1));
        }
        if t > GO_ZERO_TIME {
            while next_cut < cuts.len() && cuts[next_cut].0 < t {
                recent_above[cuts[next_cut].1] = classes;
                next_cut += 1;
            }
            classes += 1;
            let shared = if end - i > 1 { SHARED_CLASS } else { 0 };
            for u in &used[i..end] {
                class[u.1 as usize] = classes | shared;
            }
        }
        i = end;
    }
    for &(_, rule) in &cuts[next_cut..] {
        recent_above[rule] = classes;
    }
    never.extend(used.iter().map(|u| u.1));
    (never, class, classes as usize, recent_above)
}

/// A hasher for usage counts (small integers, mostly): one multiply. The
/// map it serves only numbers the distinct counts, which are then sorted,
/// so its order never shows.
#[derive(Default)]
struct CountHasher(u64);

impl Hasher for CountHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (value ^ (value >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The inverse of a permutation.
fn inverse(order: &[u32]) -> Vec<u32> {
    let mut position = vec![0u32; order.len()];
    for (p, &r) in order.iter().enumerate() {
        position[r as usize] = p as u32;
    }
    position
}

/// Everything the deletion loop needs to know about one position, in one
/// place so that a deletion touches one cache line per record.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The record's size.
    size: u64,
    /// Start of the record's parents in [`State::parent_list`]; they end
    /// where the next position's start.
    parents: u32,
    /// Number of parent links to this record from records not yet deleted.
    children: u32,
    /// Last-used class (see [`Ranks`]) with the [`SHARED_CLASS`] flag.
    class: u32,
    /// [`SHARED`], [`DELETED`], [`ELIGIBLE`], [`COUNTS_ZERO`], [`IN_USE`],
    /// [`MUTABLE`], [`ANCIENT`], and the type from [`TYPE_SHIFT`] on.
    flags: u32,
}

/// The record or one of its descendants is shared.
const SHARED: u32 = 1;
/// Deleted by an earlier pass.
const DELETED: u32 = 1 << 1;
/// Passes the current rule's fixed checks (and is not deleted).
const ELIGIBLE: u32 = 1 << 2;
/// In use and mutable: counts 0 toward a rule's total.
const COUNTS_ZERO: u32 = 1 << 3;
/// In use.
const IN_USE: u32 = 1 << 4;
/// Mutable.
const MUTABLE: u32 = 1 << 5;
/// Used at or before Go's zero time: last-used class 0 although used, so
/// that the class does not tell whether it is recent.
const ANCIENT: u32 = 1 << 6;
/// The record's type as a small number ([`type_index`]), from this bit on.
const TYPE_SHIFT: u32 = 8;
/// [`type_index`] of a type that is none of BuildKit's.
const OTHER_TYPE: u32 = 6;

/// A small number for each of BuildKit's record types; [`OTHER_TYPE`] for
/// the rest.
fn type_index(record_type: &RecordType) -> u32 {
    match record_type {
        RecordType::ExecCachemount => 0,
        RecordType::Frontend => 1,
        RecordType::Internal => 2,
        RecordType::Regular => 3,
        RecordType::SourceGitCheckout => 4,
        RecordType::SourceLocal => 5,
        _ => OTHER_TYPE,
    }
}

impl Slot {
    fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// True if the record is a candidate of the current rule right now.
    fn is_candidate(&self) -> bool {
        self.is(ELIGIBLE) && self.children == 0
    }

    fn type_index(&self) -> u32 {
        self.flags >> TYPE_SHIFT
    }

    /// The record's contribution to a rule's total.
    fn counted_size(&self) -> i64 {
        if self.is(COUNTS_ZERO) {
            0
        } else {
            self.size as i64
        }
    }
}

/// A deletion made during the run, by position; turned into a
/// [`Deletion`] at the end.
struct Pending {
    position: u32,
    rule: u32,
    bytes: u64,
    reason: DeletionReason,
}

/// Per-record state that lives through the whole run, indexed by position.
struct State<'a> {
    records: &'a [CacheRecord],
    order: &'a [u32],
    position: &'a [u32],
    /// One slot per position, plus a sentinel whose `parents` ends the last
    /// position's list.
    slots: Vec<Slot>,
    /// The parents of every position, as positions, in the order listed.
    parent_list: Vec<u32>,
    /// [`Ranks::recent_above`], when the layout is BuildKit's.
    recent_above: Option<&'a [u32]>,
    /// Sum of the counted sizes of the unshared records not yet deleted.
    unshared_total: i64,
    pending: Vec<Pending>,
}

/// The running numbers of the current rule.
struct Run {
    rule: u32,
    total: i64,
    bytes_freed: u64,
}

impl<'a> State<'a> {
    /// `class` is [`Layout::class`], taken out of the layout so that it
    /// can be freed once the slots hold it.
    fn new(records: &'a [CacheRecord], layout: &'a Layout, class: &[u32]) -> Self {
        let n = records.len();
        let (by_record_start, by_record_list) = resolve_parents(records);
        let position = &layout.position;

        // Records are read in snapshot order (memory order) and their slots
        // written at their positions. `parents` first holds the number of
        // parents, then (after the prefix sum) where they start.
        let mut slots = vec![Slot::default(); n + 1];
        let mut shared_seeds = Vec::new();
        for (r, record) in records.iter().enumerate() {
            let p = position[r] as usize;
            if record.shared {
                shared_seeds.push(p as u32);
            }
            let mut flags = type_index(&record.record_type) << TYPE_SHIFT;
            if record.in_use {
                flags |= IN_USE;
            }
            if record.mutable {
                flags |= MUTABLE;
            }
            if record.in_use && record.mutable {
                flags |= COUNTS_ZERO;
            }
            let class = class.get(r).copied().unwrap_or(0);
            if record.last_used_at.is_some() && class & !SHARED_CLASS == 0 {
                flags |= ANCIENT;
            }
            slots[p] = Slot {
                size: record.size,
                parents: by_record_start[r + 1] - by_record_start[r],
                children: 0,
                class,
                flags,
            };
        }
        let mut offset = 0u32;
        for slot in &mut slots {
            let count = slot.parents;
            slot.parents = offset;
            offset += count;
        }
        let mut parent_list = vec![0u32; by_record_list.len()];
        for r in 0..n {
            let start = slots[position[r] as usize].parents as usize;
            let links = by_record_start[r] as usize..by_record_start[r + 1] as usize;
            for (k, &q) in by_record_list[links].iter().enumerate() {
                let q = position[q as usize];
                parent_list[start + k] = q;
                slots[q as usize].children += 1;
            }
        }
        drop((by_record_start, by_record_list));

        // Shared spreads to every ancestor; a record already marked has had
        // its ancestors marked, so each is visited once.
        let mut stack = Vec::new();
        for p in shared_seeds {
            let p = p as usize;
            if !slots[p].is(SHARED) {
                slots[p].flags |= SHARED;
                stack.push(p as u32);
                while let Some(c) = stack.pop() {
                    let c = c as usize;
                    let links = slots[c].parents as usize..slots[c + 1].parents as usize;
                    for &q in &parent_list[links] {
                        let slot = &mut slots[q as usize];
                        if !slot.is(SHARED) {
                            slot.flags |= SHARED;
                            stack.push(q);
                        }
                    }
                }
            }
        }

        let unshared_total = slots[..n]
            .iter()
            .filter(|s| !s.is(SHARED))
            .fold(0i64, |sum, s| sum.wrapping_add(s.counted_size()));

        Self {
            records,
            order: &layout.order,
            position,
            slots,
            parent_list,
            recent_above: layout.ranks.as_ref().map(|r| r.recent_above.as_slice()),
            unshared_total,
            pending: Vec::new(),
        }
    }

    /// What the fixed checks read of position `p`, with `recent` computed
    /// by the caller.
    fn facts(&self, p: usize, recent: bool) -> Facts {
        let slot = &self.slots[p];
        Facts {
            in_use: slot.is(IN_USE),
            protection: match slot.type_index() {
                1 => Some(Protection::Frontend),
                2 => Some(Protection::Internal),
                _ => None,
            },
            shared: slot.is(SHARED),
            recent,
        }
    }

    /// `ctx`'s filter on position `p`. Most filters only read a record's
    /// type, mutable and shared flags; their result for each combination is
    /// remembered in `memo` (see [`FilterMemo`]), so that the record itself
    /// is read only for the first of each.
    fn filter_matches(&self, ctx: &RuleContext<'_>, p: usize, memo: &mut FilterMemo) -> bool {
        let slot = &self.slots[p];
        let key = (slot.type_index() != OTHER_TYPE).then(|| {
            (slot.type_index() * 4 + u32::from(slot.is(MUTABLE)) * 2 + u32::from(slot.is(SHARED)))
                as usize
        });
        if let Some(known) = key.and_then(|k| memo.known(k)) {
            return known;
        }
        let fields = KeyedFields {
            inner: CandidateFields {
                record: &self.records[self.order[p] as usize],
                shared: slot.is(SHARED),
            },
            keyed_only: Cell::new(true),
        };
        let matches = ctx.filter.matches(&fields);
        if let Some(k) = key {
            memo.learn(k, matches, fields.keyed_only.get());
        }
        matches
    }

    /// Marks the records that pass `ctx`'s fixed checks. With BuildKit's
    /// layout, reads the per-position facts in order (the keep-duration
    /// from the last-used class), and a record itself only when its filter
    /// result is not known yet; otherwise reads the records in snapshot
    /// order.
    fn judge(&mut self, ctx: &RuleContext<'_>) {
        let Some(recent_above) = self.recent_above else {
            for (r, record) in self.records.iter().enumerate() {
                let slot = &mut self.slots[self.position[r] as usize];
                let eligible =
                    !slot.is(DELETED) && ctx.verdict(record, slot.is(SHARED)) == Verdict::Eligible;
                slot.flags = if eligible {
                    slot.flags | ELIGIBLE
                } else {
                    slot.flags & !ELIGIBLE
                };
            }
            return;
        };
        let above = recent_above[ctx.index];
        let always = ctx.filter.is_always();
        let mut memo = FilterMemo::default();
        for p in 0..self.records.len() {
            let slot = self.slots[p];
            let eligible = !slot.is(DELETED) && {
                let recent = if slot.is(ANCIENT) {
                    ctx.is_recent(self.records[self.order[p] as usize].last_used_at)
                } else {
                    slot.class & !SHARED_CLASS > above
                };
                ctx.verdict_with(&self.facts(p, recent), || {
                    always || self.filter_matches(ctx, p, &mut memo)
                }) == Verdict::Eligible
            };
            let slot = &mut self.slots[p];
            if eligible {
                slot.flags |= ELIGIBLE;
            } else {
                slot.flags &= !ELIGIBLE;
            }
        }
    }

    /// Deletes position `p`; calls `freed` with every parent that becomes a
    /// candidate, and its class.
    fn delete(
        &mut self,
        run: &mut Run,
        p: usize,
        reason: DeletionReason,
        mut freed: impl FnMut(usize, u32),
    ) {
        let slot = &mut self.slots[p];
        slot.flags = (slot.flags | DELETED) & !ELIGIBLE;
        let size = slot.size;
        if !slot.is(SHARED) {
            self.unshared_total = self.unshared_total.wrapping_sub(slot.counted_size());
        }
        run.total = run.total.wrapping_sub(size as i64);
        run.bytes_freed = run.bytes_freed.saturating_add(size);
        self.pending.push(Pending {
            position: p as u32,
            rule: run.rule,
            bytes: size,
            reason,
        });
        let links = self.slots[p].parents as usize..self.slots[p + 1].parents as usize;
        for &q in &self.parent_list[links] {
            let parent = &mut self.slots[q as usize];
            parent.children -= 1;
            if parent.is_candidate() {
                freed(q as usize, parent.class);
            }
        }
    }

    /// The records that stay, with their reasons judged against
    /// `last_rule`, in snapshot order, and their sort keys for
    /// [`sort_kept`]. Reasons and ids are taken in snapshot order (memory
    /// order); sorting is left to the caller, so that the per-record state
    /// can be freed first.
    fn kept(&self, last_rule: Option<&RuleContext<'_>>) -> (Vec<Option<Kept>>, Vec<(u64, u32)>) {
        let records = self.records;
        let always = last_rule.is_none_or(|ctx| ctx.filter.is_always());
        let mut memo = FilterMemo::default();
        let count = records.len() - self.pending.len();
        let mut kept: Vec<Option<Kept>> = Vec::with_capacity(count);
        let mut keys: Vec<(u64, u32)> = Vec::with_capacity(count);
        for (r, record) in records.iter().enumerate() {
            let p = self.position[r] as usize;
            let slot = &self.slots[p];
            if slot.is(DELETED) {
                continue;
            }
            let reason = match last_rule {
                None => KeepReason::NoRuleRan,
                Some(ctx) => ctx.keep_reason_with(slot.is(IN_USE), slot.children, || {
                    let recent = ctx.is_recent(record.last_used_at);
                    ctx.verdict_with(&self.facts(p, recent), || {
                        always || self.filter_matches(ctx, p, &mut memo)
                    })
                }),
            };
            keys.push((id_prefix(record), kept.len() as u32));
            kept.push(Some(Kept {
                id: record.id.clone(),
                reason,
            }));
        }
        (kept, keys)
    }
}

/// The kept records of [`State::kept`], sorted by id.
fn sort_kept(mut kept: Vec<Option<Kept>>, mut keys: Vec<(u64, u32)>) -> Vec<Kept> {
    let id = |k: u32| &kept[k as usize].as_ref().expect("not taken yet").id;
    sort_by_prefix(&mut keys, |a, b| id(a).cmp(id(b)));
    keys.into_iter()
        .map(|(_, k)| kept[k as usize].take().expect("each record once"))
        .collect()
}

/// Filter results by (type, mutable, shared), for filters that read
/// nothing else of a record.
///
/// Sound because a filter is a deterministic function of the field values
/// it reads: if evaluating it on one record read only the type, mutable and
/// shared fields, any record with the same three values reads the same
/// values in the same order and gets the same result. A combination whose
/// evaluation read anything else (an id, a description) is never
/// remembered.
#[derive(Default)]
struct FilterMemo {
    /// 0: unknown, 1: false, 2: true, 3: evaluate every record.
    state: [u8; 32],
}

impl FilterMemo {
    fn known(&self, key: usize) -> Option<bool> {
        match self.state[key] {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    fn learn(&mut self, key: usize, matches: bool, keyed_only: bool) {
        if self.state[key] == 0 {
            self.state[key] = match (keyed_only, matches) {
                (false, _) => 3,
                (true, false) => 1,
                (true, true) => 2,
            };
        }
    }
}

/// [`CandidateFields`] that notes whether a filter read any field other
/// than those [`FilterMemo`] keys on.
struct KeyedFields<'a> {
    inner: CandidateFields<'a>,
    keyed_only: Cell<bool>,
}

impl Fields for KeyedFields<'_> {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        let keyed = matches!(
            path.first().map(String::as_str),
            Some("type" | "mutable" | "immutable" | "shared" | "private")
        );
        if !keyed {
            self.keyed_only.set(false);
        }
        self.inner.field(path)
    }
}

/// The deletions, with the records' ids. The ids are cloned in snapshot
/// order, which touches them in memory order.
fn deletions(records: &[CacheRecord], position: &[u32], pending: Vec<Pending>) -> Vec<Deletion> {
    let mut index_of = vec![NONE; records.len()];
    for (i, d) in pending.iter().enumerate() {
        index_of[d.position as usize] = i as u32;
    }
    let mut ids = vec![None; pending.len()];
    for (r, record) in records.iter().enumerate() {
        let i = index_of[position[r] as usize];
        if i != NONE {
            ids[i as usize] = Some(record.id.clone());
        }
    }
    drop(index_of);
    pending
        .into_iter()
        .zip(ids)
        .map(|(d, id)| Deletion {
            id: id.expect("every deleted record has an id"),
            rule: d.rule as usize,
            bytes: d.bytes,
            reason: d.reason,
        })
        .collect()
}

/// Batch mode: waves of every current candidate, each wave in id order.
fn run_batch(state: &mut State<'_>, run: &mut Run) -> Stop {
    let n = state.records.len();
    let mut wave_list: Vec<u32> = (0..n as u32)
        .filter(|&p| state.slots[p as usize].is_candidate())
        .collect();
    let mut wave = 0u32;
    while !wave_list.is_empty() {
        let (records, order) = (state.records, state.order);
        sort_by_id(records, &mut wave_list, |p| order[p as usize]);
        let mut next = Vec::new();
        for &p in &wave_list {
            state.delete(run, p as usize, DeletionReason::Batch { wave }, |q, _| {
                next.push(q as u32);
            });
        }
        wave_list = next;
        wave += 1;
    }
    Stop::NoCandidates
}

/// gc mode with BuildKit's ranking: one deletion per pass.
fn run_buildkit(state: &mut State<'_>, run: &mut Run, ranks: &Ranks, keep_bytes: i64) -> Stop {
    let mut ranking = Ranking::new(ranks, state);
    loop {
        if run.total < keep_bytes {
            return Stop::TargetReached;
        }
        let Some((g, score)) = ranking.best() else {
            return Stop::NoCandidates;
        };
        let p = ranking.remove_head(g, &state.slots);
        let reason = DeletionReason::Ranked {
            total_before: run.total,
            score,
        };
        state.delete(run, p, reason, |q, class| ranking.insert(q, class));
    }
}

/// gc mode with a static ordering: the first candidate in the order, one per
/// pass.
fn run_static(state: &mut State<'_>, run: &mut Run, ordering: Ordering, keep_bytes: i64) -> Stop {
    let n = state.records.len();
    let mut active = BitSet::new(n);
    for p in 0..n {
        if state.slots[p].is_candidate() {
            active.insert(p);
        }
    }
    loop {
        if run.total < keep_bytes {
            return Stop::TargetReached;
        }
        let Some(p) = active.next(0) else {
            return Stop::NoCandidates;
        };
        active.remove(p);
        let record = &state.records[state.order[p] as usize];
        let reason = DeletionReason::Ordered {
            total_before: run.total,
            ordering,
            key: ordering.key(record),
        };
        state.delete(run, p, reason, |q, _| active.insert(q));
    }
}

/// Subtracted from every lower bound: far above the rounding errors of the
/// scores and of the drift sum, and small enough not to cause needless
/// re-evaluations. Bounds only decide what to evaluate, never what wins.
const MARGIN: f64 = 1e-9;

/// The drift at which keys are renormalised (rebased to a drift of 0).
const DRIFT_LIMIT: f64 = 1.0;

/// How keys map to buckets: `scale` buckets per unit of key, a power of two
/// so that `key * scale` is exact and a bucket's lower edge is exactly
/// `bucket / scale`. Keys are at most 2 (a score) plus the drift, which
/// stays below `DRIFT_LIMIT` plus one pass's bound (at most 1); larger keys
/// share the last bucket.
#[derive(Clone, Copy, Debug)]
struct Buckets {
    scale: f64,
    count: usize,
}

impl Buckets {
    /// Finer buckets for more records (more heads near the front, and a
    /// drift that grows more slowly), from 1,024 to 65,536 per unit: a
    /// bucket should hold few heads, and the array stay small next to the
    /// records.
    fn for_records(n: usize) -> Self {
        let scale = (n / 4).next_power_of_two().clamp(1 << 10, 1 << 16);
        Self {
            scale: scale as f64,
            count: 4 * scale + 1,
        }
    }

    /// The bucket for `key`: bucket 0 takes every key below `1 / scale`
    /// (negative ones included), the last bucket every key above the range.
    fn of(&self, key: f64) -> usize {
        // `as` saturates: negative keys give 0.
        ((key * self.scale) as usize).min(self.count - 1)
    }

    /// The smallest key bucket `b` can hold.
    fn lower_edge(&self, b: usize) -> f64 {
        if b == 0 {
            f64::NEG_INFINITY
        } else {
            b as f64 / self.scale
        }
    }
}

/// `Group::bucket` of a group whose head waits for its first evaluation.
const FRESH: u32 = NONE - 1;

/// One usage group with candidates. 48 bytes, so that what a pass needs of
/// a group is in one or two cache lines.
#[derive(Clone, Copy, Debug)]
struct Group {
    /// Exact score of the head when last evaluated plus the drift then.
    key: f64,
    /// Position of the head, or `NONE`.
    head: u32,
    /// The head's class, with the [`SHARED_CLASS`] flag.
    class: u32,
    /// Number of candidates.
    count: u32,
    /// The bucket holding the group, [`FRESH`], or `NONE` (no candidates).
    bucket: u32,
    /// Neighbours in the bucket's list.
    next: u32,
    prev: u32,
    /// The pass that last evaluated the head.
    stamp: u32,
    /// The group's usage rank, valid while `usage_epoch` equals
    /// [`Ranking::usage_epoch`].
    usage_rank: u32,
    usage_epoch: u32,
}

/// The candidates of one gc-mode rule, organised for BuildKit's ranking.
///
/// Every usage group with candidates has a head (its oldest member, never
/// used first, then lowest id), and only heads can win (module docs). A head
/// evaluated at some pass keeps `key = score + drift_then`; since then its
/// score can have fallen by at most `drift_now - drift_then`, where the
/// drift adds up, for every event that can lower scores (a distinct
/// last-used time or usage count appearing or disappearing), the most any
/// score can fall through it ([`fall`]). So `key - drift_now` bounds the
/// current score from below. Heads sit in buckets by key; a pass evaluates
/// the heads that changed since the last pass, then walks the buckets
/// upwards, evaluating every head in them, and stops at the first bucket
/// whose lower edge bounds its heads above the best exact score: no head
/// there or further can reach it.
struct Ranking<'l> {
    ranks: &'l Ranks,
    /// Positions of the candidates.
    active: BitSet,
    /// Candidates per shared last-used class (unused for other classes,
    /// whose presence is the presence of their single record).
    class_count: Vec<u32>,
    /// The non-zero classes present among the candidates.
    classes_present: RankSet,
    classes_distinct: u32,
    /// Presence of each non-empty group with a non-zero count (slot =
    /// group + 1).
    counts_present: Fenwick,
    counts_distinct: u32,
    groups: Vec<Group>,
    buckets: Buckets,
    /// First group of each bucket's list, or `NONE`.
    bucket_head: Vec<u32>,
    /// The buckets with groups.
    nonempty: BitSet,
    /// Groups whose head changed since it was last evaluated (some entries
    /// may be outdated: only groups whose bucket is [`FRESH`] count).
    fresh: Vec<u32>,
    /// Sum of the most scores can have fallen since the last rebase.
    drift: f64,
    /// The events since the last pass: the maxima then, and the number of
    /// classes and of usage counts that disappeared and appeared.
    events: Events,
    /// The current pass, for [`Group::stamp`].
    stamp: u32,
    /// Bumped whenever a usage count appears or disappears, which changes
    /// usage ranks.
    usage_epoch: u32,
}

/// What changed among the candidates since the last pass: the maxima
/// `1 + distinct` at that pass, and how many distinct last-used times and
/// usage counts disappeared and appeared since.
#[derive(Clone, Copy, Debug)]
struct Events {
    last_used_max: u32,
    classes_removed: u32,
    classes_added: u32,
    usage_max: u32,
    counts_removed: u32,
    counts_added: u32,
}

/// The most a term `L / M` can fall over a pass in which `removed` of the
/// distinct values it ranks among disappeared and `added` appeared, `M`
/// going from `m0` to `m1 = m0 - removed + added`, rounded up a little for
/// the floating-point sums. (The term of a head that changed is
/// re-evaluated, so only unchanged heads need the bound.)
///
/// `L` is a dense rank among those values: `1 <= L <= m0` before the pass,
/// and afterwards `L1 >= max(1, L - removed)` (only values below `L` that
/// disappeared lower it, each by one). So the fall is at most
/// `f(L) = L / m0 - max(1, L - removed) / m1`, which is linear in `L` on
/// both sides of `removed + 1`: its maximum over `1..=m0` is at `1`,
/// `removed + 1` or `m0`. A pass that deletes one candidate and frees one
/// parent gives about `1 / m0`, where bounding the two events separately
/// would give twice that.
fn fall(m0: u32, removed: u32, added: u32) -> f64 {
    if removed == 0 && added == 0 {
        return 0.0;
    }
    let m1 = (m0 + added) - removed;
    let f = |l: u32| {
        f64::from(l) / f64::from(m0) - f64::from(l.saturating_sub(removed).max(1)) / f64::from(m1)
    };
    let worst = f(1).max(f((removed + 1).min(m0))).max(f(m0)).max(0.0);
    worst * (1.0 + 1e-12) + 1e-15
}

/// BuildKit's score `l / x_max + u / y_max`, computed as upstream does: two
/// divisions in binary64, then the sum.
fn float_score(l: u32, u: u32, x_max: u32, y_max: u32) -> f64 {
    f64::from(l) / f64::from(x_max) + f64::from(u) / f64::from(y_max)
}

/// The maxima of one pass, and how its heads compare.
///
/// The exact score of a head with ranks `(l, u)` is the rational
/// `k / (x_max y_max)` with `k = l y_max + u x_max`. Upstream's binary64
/// score is within `2^-51` of it (three roundings of values up to 2), so
/// when `x_max y_max < 2^50` two different `k` (rationals at least
/// `1 / (x_max y_max) > 2^-50` apart) order the binary64 scores the same
/// way, and only equal `k` need the divisions (`2/6 + 4/4` and `5/6 + 2/4`
/// are equal rationals but not equal binary64 sums). A pass therefore
/// compares heads by `k` and divides only for ties and for the winner;
/// larger maxima compare binary64 scores throughout.
#[derive(Clone, Copy, Debug)]
struct Pass {
    x_max: u32,
    y_max: u32,
    /// `x_max y_max < 2^50`.
    by_k: bool,
    /// `1 / (x_max y_max)`, for approximate scores.
    inverse: f64,
}

/// A head evaluated during a pass.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    group: usize,
    l: u32,
    u: u32,
    /// `l y_max + u x_max` when the pass compares by it, else 0.
    k: u64,
    /// The score: approximate (within `2^-50`) when the pass compares by
    /// `k`, else exact.
    value: f64,
}

impl Pass {
    fn new(x_max: u32, y_max: u32) -> Self {
        let product = u64::from(x_max) * u64::from(y_max);
        Self {
            x_max,
            y_max,
            by_k: product < 1 << 50,
            inverse: 1.0 / product as f64,
        }
    }

    fn candidate(&self, group: usize, l: u32, u: u32) -> Candidate {
        if self.by_k {
            let k = u64::from(l) * u64::from(self.y_max) + u64::from(u) * u64::from(self.x_max);
            Candidate {
                group,
                l,
                u,
                k,
                value: k as f64 * self.inverse,
            }
        } else {
            Candidate {
                group,
                l,
                u,
                k: 0,
                value: float_score(l, u, self.x_max, self.y_max),
            }
        }
    }

    fn float(&self, c: &Candidate) -> f64 {
        float_score(c.l, c.u, self.x_max, self.y_max)
    }

    /// Keeps `c` in `best` if it ranks first: a lower binary64 score, or an
    /// equal score and a lower group (a lower usage count).
    fn consider(&self, best: &mut Option<Candidate>, c: Candidate) {
        let better = match best {
            None => true,
            Some(b) if self.by_k => {
                c.k < b.k
                    || (c.k == b.k && {
                        let (cs, bs) = (self.float(&c), self.float(b));
                        cs < bs || (cs == bs && c.group < b.group)
                    })
            }
            Some(b) => c.value < b.value || (c.value == b.value && c.group < b.group),
        };
        if better {
            *best = Some(c);
        }
    }

    /// The ranking upstream reports for `c`.
    fn score(&self, c: &Candidate) -> Score {
        Score {
            score: self.float(c),
            last_used_rank: c.l,
            last_used_max: self.x_max,
            usage_rank: c.u,
            usage_max: self.y_max,
        }
    }
}

impl<'l> Ranking<'l> {
    fn new(ranks: &'l Ranks, state: &State<'_>) -> Self {
        let n = state.records.len();
        let group_count = ranks.usage.len();
        let mut active = BitSet::new(n);
        let mut class_count = vec![0u32; ranks.classes + 1];
        let mut present = vec![0u64; (ranks.classes + 1).div_ceil(64)];
        let mut groups = vec![
            Group {
                key: 0.0,
                head: NONE,
                class: 0,
                count: 0,
                bucket: NONE,
                next: NONE,
                prev: NONE,
                stamp: 0,
                usage_rank: 0,
                usage_epoch: NONE,
            };
            group_count
        ];
        let mut fresh = Vec::new();
        for (g, group) in groups.iter_mut().enumerate() {
            let range = ranks.group_start[g] as usize..ranks.group_start[g + 1] as usize;
            for p in range {
                let slot = &state.slots[p];
                if !slot.is_candidate() {
                    continue;
                }
                active.insert(p);
                let class = (slot.class & !SHARED_CLASS) as usize;
                class_count[class] += 1;
                present[class / 64] |= 1 << (class % 64);
                if group.count == 0 {
                    group.head = p as u32;
                    group.class = slot.class;
                    group.bucket = FRESH;
                    fresh.push(g as u32);
                }
                group.count += 1;
            }
        }
        let classes_present = RankSet::new(ranks.classes, |c| present[c / 64] >> (c % 64) & 1 != 0);
        let classes_distinct = class_count[1..].iter().filter(|&&c| c > 0).count() as u32;
        let buckets = Buckets::for_records(n);
        let nonzero = |g: usize| groups[g].count > 0 && ranks.usage[g] != 0;
        let counts_present = Fenwick::from_counts((0..group_count).map(|g| u32::from(nonzero(g))));
        let counts_distinct = (0..group_count).filter(|&g| nonzero(g)).count() as u32;
        Self {
            ranks,
            active,
            class_count,
            classes_present,
            classes_distinct,
            counts_present,
            counts_distinct,
            groups,
            buckets,
            bucket_head: vec![NONE; buckets.count],
            nonempty: BitSet::new(buckets.count),
            fresh,
            drift: 0.0,
            events: Events {
                last_used_max: 1 + classes_distinct,
                classes_removed: 0,
                classes_added: 0,
                usage_max: 1 + counts_distinct,
                counts_removed: 0,
                counts_added: 0,
            },
            stamp: 0,
            usage_epoch: 0,
        }
    }

    /// The dense ranks of group `g`'s head: last-used, then usage.
    fn head_ranks(&mut self, g: usize) -> (u32, u32) {
        let group = &self.groups[g];
        let class = group.class & !SHARED_CLASS;
        let last_used_rank = if class == 0 {
            1
        } else {
            1 + self.classes_present.rank(class as usize)
        };
        let usage_rank = if group.usage_epoch == self.usage_epoch {
            group.usage_rank
        } else {
            let rank = if self.ranks.usage[g] == 0 {
                1
            } else {
                1 + self.counts_present.prefix(g + 1)
            };
            let group = &mut self.groups[g];
            group.usage_rank = rank;
            group.usage_epoch = self.usage_epoch;
            rank
        };
        (last_used_rank, usage_rank)
    }

    /// Evaluates group `g`'s head for `pass`: keys the group by the score
    /// and stamps it.
    fn evaluate(&mut self, g: usize, pass: &Pass) -> Candidate {
        let (l, u) = self.head_ranks(g);
        let c = pass.candidate(g, l, u);
        let group = &mut self.groups[g];
        group.key = c.value + self.drift;
        group.stamp = self.stamp;
        c
    }

    /// The group whose head upstream deletes next, with its ranking; `None`
    /// when there are no candidates. Ties go to the lower usage count (the
    /// lower group), which is the documented tie-break.
    fn best(&mut self) -> Option<(usize, Score)> {
        let last_used_max = 1 + self.classes_distinct;
        let usage_max = 1 + self.counts_distinct;
        let e = self.events;
        self.add_drift(
            fall(e.last_used_max, e.classes_removed, e.classes_added)
                + fall(e.usage_max, e.counts_removed, e.counts_added),
        );
        self.events = Events {
            last_used_max,
            classes_removed: 0,
            classes_added: 0,
            usage_max,
            counts_removed: 0,
            counts_added: 0,
        };
        self.stamp += 1;
        let stamp = self.stamp;
        let pass = Pass::new(last_used_max, usage_max);
        let mut best: Option<Candidate> = None;

        // Heads that changed: always evaluated.
        while let Some(g) = self.fresh.pop() {
            let g = g as usize;
            if self.groups[g].bucket != FRESH {
                continue;
            }
            let c = self.evaluate(g, &pass);
            self.link(g);
            pass.consider(&mut best, c);
        }

        // The buckets in key order, while their bound can reach the best.
        // A re-evaluated head moves to the bucket of its new key (later
        // ones, where the stamp tells that it was seen). Values are within
        // 2^-50 of the scores, far inside the margin.
        let mut from = 0;
        while let Some(b) = self.nonempty.next(from) {
            if let Some(c) = &best
                && self.buckets.lower_edge(b) - self.drift - MARGIN > c.value
            {
                break;
            }
            let mut g = self.bucket_head[b];
            while g != NONE {
                let gi = g as usize;
                g = self.groups[gi].next;
                if self.groups[gi].stamp == stamp {
                    continue;
                }
                let c = self.evaluate(gi, &pass);
                if self.buckets.of(self.groups[gi].key) != b {
                    self.unlink(gi);
                    self.link(gi);
                }
                pass.consider(&mut best, c);
            }
            from = b + 1;
        }
        best.map(|c| (c.group, pass.score(&c)))
    }

    /// Puts group `g` at the front of the bucket of its key.
    fn link(&mut self, g: usize) {
        let b = self.buckets.of(self.groups[g].key);
        let first = self.bucket_head[b];
        if first != NONE {
            self.groups[first as usize].prev = g as u32;
        } else {
            self.nonempty.insert(b);
        }
        let group = &mut self.groups[g];
        group.bucket = b as u32;
        group.next = first;
        group.prev = NONE;
        self.bucket_head[b] = g as u32;
    }

    /// Takes group `g` out of its bucket, if it is in one.
    fn unlink(&mut self, g: usize) {
        let Group {
            bucket, next, prev, ..
        } = self.groups[g];
        if bucket == NONE || bucket == FRESH {
            return;
        }
        if prev == NONE {
            self.bucket_head[bucket as usize] = next;
            if next == NONE {
                self.nonempty.remove(bucket as usize);
            }
        } else {
            self.groups[prev as usize].next = next;
        }
        if next != NONE {
            self.groups[next as usize].prev = prev;
        }
        self.groups[g].bucket = NONE;
    }

    /// Queues group `g`, whose head changed, for evaluation.
    fn refresh(&mut self, g: usize) {
        self.unlink(g);
        if self.groups[g].bucket != FRESH {
            self.groups[g].bucket = FRESH;
            self.fresh.push(g as u32);
        }
    }

    /// Adds `amount` to the drift; rebases the keys when the drift grows
    /// large, so that it stays exact to well within the margin.
    fn add_drift(&mut self, amount: f64) {
        self.drift += amount;
        if self.drift > DRIFT_LIMIT {
            let drift = self.drift;
            let mut queued = Vec::new();
            let mut from = 0;
            while let Some(b) = self.nonempty.next(from) {
                let mut g = self.bucket_head[b];
                while g != NONE {
                    queued.push(g);
                    g = self.groups[g as usize].next;
                }
                self.bucket_head[b] = NONE;
                self.nonempty.remove(b);
                from = b + 1;
            }
            for g in queued {
                self.groups[g as usize].key -= drift;
                self.link(g as usize);
            }
            self.drift = 0.0;
        }
    }

    /// A candidate with class `class` appeared.
    fn add_class(&mut self, class: u32) {
        let c = (class & !SHARED_CLASS) as usize;
        if c == 0 {
            return;
        }
        if class & SHARED_CLASS != 0 {
            self.class_count[c] += 1;
            if self.class_count[c] > 1 {
                return;
            }
        }
        self.classes_present.insert(c);
        self.classes_distinct += 1;
        self.events.classes_added += 1;
    }

    /// A candidate with class `class` went.
    fn remove_class(&mut self, class: u32) {
        let c = (class & !SHARED_CLASS) as usize;
        if c == 0 {
            return;
        }
        if class & SHARED_CLASS != 0 {
            self.class_count[c] -= 1;
            if self.class_count[c] > 0 {
                return;
            }
        }
        self.classes_present.remove(c);
        self.classes_distinct -= 1;
        self.events.classes_removed += 1;
    }

    /// Removes the head of group `g` from the candidates and returns its
    /// position. `slots` gives the next head's class.
    fn remove_head(&mut self, g: usize, slots: &[Slot]) -> usize {
        let Group { head, class, .. } = self.groups[g];
        let p = head as usize;
        self.active.remove(p);
        self.remove_class(class);
        self.groups[g].count -= 1;
        if self.groups[g].count == 0 {
            self.unlink(g);
            let group = &mut self.groups[g];
            group.head = NONE;
            group.bucket = NONE;
            if self.ranks.usage[g] != 0 {
                self.counts_present.decrement(g + 1);
                self.counts_distinct -= 1;
                self.events.counts_removed += 1;
                self.usage_epoch += 1;
            }
        } else {
            let next = self
                .active
                .next(p + 1)
                .expect("the group has another member");
            debug_assert!(next < self.ranks.group_start[g + 1] as usize);
            let group = &mut self.groups[g];
            group.head = next as u32;
            group.class = slots[next].class;
            self.refresh(g);
        }
        p
    }

    /// Adds the new candidate at position `p`, whose class is `class`.
    fn insert(&mut self, p: usize, class: u32) {
        let g = self.ranks.group_of(p);
        self.active.insert(p);
        self.add_class(class);
        self.groups[g].count += 1;
        if self.groups[g].count == 1 && self.ranks.usage[g] != 0 {
            self.counts_present.increment(g + 1);
            self.counts_distinct += 1;
            self.events.counts_added += 1;
            self.usage_epoch += 1;
        }
        let group = &mut self.groups[g];
        if group.head == NONE || (p as u32) < group.head {
            group.head = p as u32;
            group.class = class;
            self.refresh(g);
        }
    }
}

/// A record id's first eight bytes as a big-endian integer (zero-padded):
/// comparing these compares ids, except that equal prefixes need the full
/// comparison.
fn id_prefix(record: &CacheRecord) -> u64 {
    let bytes = record.id.as_str().as_bytes();
    let mut word = [0u8; 8];
    let len = bytes.len().min(8);
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_be_bytes(word)
}

/// Sorts `(id prefix, item)` pairs by id: a radix sort on the prefixes,
/// then `compare` (the full comparison of two items' ids) inside runs of
/// equal prefixes, so the order is exactly that of [`reclaim_model::Id`].
fn sort_by_prefix(keyed: &mut Vec<(u64, u32)>, compare: impl Fn(u32, u32) -> std::cmp::Ordering) {
    radix_sort(keyed, 64, |k| k.0);
    let mut i = 0;
    while i < keyed.len() {
        let end = i + keyed[i..].iter().take_while(|k| k.0 == keyed[i].0).count();
        if end - i > 1 {
            keyed[i..end].sort_unstable_by(|a, b| compare(a.1, b.1));
        }
        i = end;
    }
}

/// Sorts items by the id of the record `record(item)`.
fn sort_by_id(records: &[CacheRecord], items: &mut Vec<u32>, record: impl Fn(u32) -> u32) {
    let mut keyed: Vec<(u64, u32)> = items
        .iter()
        .map(|&i| (id_prefix(&records[record(i) as usize]), i))
        .collect();
    sort_by_prefix(&mut keyed, |a, b| {
        records[record(a) as usize]
            .id
            .cmp(&records[record(b) as usize].id)
    });
    items.clear();
    items.extend(keyed.into_iter().map(|(_, i)| i));
}

/// Resolves every record's parent ids to record indices, dropping ids that
/// are not in the snapshot. Returns the parents in compressed rows: the
/// parents of `r` are `list[start[r]..start[r + 1]]`, in the order listed.
///
/// Works as joins rather than with a hash table, since sorting and merging
/// touch memory in order, which is much cheaper than a million random
/// probes:
///
/// 1. by address: a parent id that is a clone of a record's id (as in
///    snapshots built in memory) shares its text; equal addresses and
///    lengths are equal strings, found without reading a byte of them;
/// 2. by hash, for the links left: ids and links are radix-sorted by a
///    32-bit hash of the text and merged, and every pair of equal hashes is
///    confirmed by comparing the strings, so collisions cannot cause a
///    wrong link.
fn resolve_parents(records: &[CacheRecord]) -> (Vec<u32>, Vec<u32>) {
    // One sweep over the records: their ids' addresses, their links, and
    // where each record's links start.
    let address = |text: &str| text.as_ptr() as u64;
    let mut ids: Vec<(u64, u32)> = Vec::with_capacity(records.len());
    let mut link_ids: Vec<&str> = Vec::new();
    let mut start = Vec::with_capacity(records.len() + 1);
    start.push(0u32);
    let mut low = u64::MAX;
    for (r, record) in records.iter().enumerate() {
        let at = address(record.id.as_str());
        low = low.min(at);
        ids.push((at, r as u32));
        for parent in &record.parents {
            low = low.min(address(parent.as_str()));
            link_ids.push(parent.as_str());
        }
        start.push(link_ids.len() as u32);
    }
    let mut target = vec![NONE; link_ids.len()];

    let by_address = |keyed: &mut Vec<(u64, u32)>| {
        for k in keyed.iter_mut() {
            k.0 -= low;
        }
        let span = keyed.iter().map(|k| k.0).max().unwrap_or(0);
        radix_sort(keyed, 64 - span.leading_zeros(), |k| k.0);
    };
    by_address(&mut ids);
    let mut links: Vec<(u64, u32)> = link_ids
        .iter()
        .enumerate()
        .map(|(l, &text)| (address(text), l as u32))
        .collect();
    by_address(&mut links);
    let mut i = 0;
    for &(at, link) in &links {
        while i < ids.len() && ids[i].0 < at {
            i += 1;
        }
        if i < ids.len() && ids[i].0 == at {
            let r = ids[i].1;
            if records[r as usize].id.as_str().len() == link_ids[link as usize].len() {
                target[link as usize] = r;
            }
        }
    }
    drop((ids, links));

    let left: Vec<u32> = (0..link_ids.len() as u32)
        .filter(|&l| target[l as usize] == NONE)
        .collect();
    if !left.is_empty() {
        join_by_hash(records, &link_ids, &left, &mut target);
    }
    drop(link_ids);

    // Drop the links to ids that are not in the snapshot.
    let mut list = Vec::with_capacity(target.len());
    for r in 0..records.len() {
        let links = start[r] as usize..start[r + 1] as usize;
        start[r] = list.len() as u32;
        list.extend(target[links].iter().copied().filter(|&t| t != NONE));
    }
    start[records.len()] = list.len() as u32;
    (start, list)
}

/// Sets `target[l]` to the record whose id is `link_ids[l]`, for every link
/// `l` in `left` whose id is in the snapshot (see [`resolve_parents`]).
fn join_by_hash(records: &[CacheRecord], link_ids: &[&str], left: &[u32], target: &mut [u32]) {
    // (hash << 32 | record) for the ids, (hash << 32 | link) for the links.
    let mut ids: Vec<u64> = records
        .iter()
        .enumerate()
        .map(|(r, rec)| hash32(rec.id.as_str()) << 32 | r as u64)
        .collect();
    radix_sort(&mut ids, 32, |v| v >> 32);
    let mut links: Vec<u64> = left
        .iter()
        .map(|&l| hash32(link_ids[l as usize]) << 32 | u64::from(l))
        .collect();
    radix_sort(&mut links, 32, |v| v >> 32);

    // Merge: each link gets the start of the run of ids with its hash.
    let mut run_start = vec![NONE; link_ids.len()];
    let mut i = 0;
    for &link in &links {
        let h = link >> 32;
        while i < ids.len() && ids[i] >> 32 < h {
            i += 1;
        }
        if i < ids.len() && ids[i] >> 32 == h {
            run_start[(link & u64::from(NONE)) as usize] = i as u32;
        }
    }
    drop(links);
    // Confirm in link order, which walks the strings in memory order.
    for &l in left {
        let first = run_start[l as usize];
        if first == NONE {
            continue;
        }
        let h = ids[first as usize] >> 32;
        let parent = link_ids[l as usize];
        target[l as usize] = ids[first as usize..]
            .iter()
            .take_while(|&&v| v >> 32 == h)
            .map(|&v| (v & u64::from(NONE)) as u32)
            .find(|&r| records[r as usize].id.as_str() == parent)
            .unwrap_or(NONE);
    }
}

/// The high half of [`hash`].
fn hash32(text: &str) -> u64 {
    hash(text) >> 32
}

/// A fast, well-mixed hash of a string (word-at-a-time multiply-xor, then a
/// 64-bit finaliser). Only the parent join uses it, and every match it finds
/// is confirmed on the strings; it never affects output order.
fn hash(text: &str) -> u64 {
    let mut h = text.len() as u64;
    for chunk in text.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`fall`] bounds the fall of `L / M` for every rank the term can have
    /// before and after a pass with the given events.
    #[test]
    fn fall_bounds_every_outcome() {
        for m0 in 1u32..=24 {
            for removed in 0..m0 {
                for added in 0..4 {
                    let m1 = m0 + added - removed;
                    let bound = fall(m0, removed, added);
                    for l in 1..=m0 {
                        let lowest = l.saturating_sub(removed).max(1);
                        for l1 in lowest..=(l + added).min(m1) {
                            let actual =
                                f64::from(l) / f64::from(m0) - f64::from(l1) / f64::from(m1);
                            assert!(
                                actual <= bound,
                                "m0 {m0} removed {removed} added {added}: {l}/{m0} -> {l1}/{m1} falls {actual} > {bound}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(fall(10, 0, 0), 0.0);
        // One deletion and one freed parent: about 1 / M, not 2 / M.
        assert!(fall(1_000, 1, 1) < 1.01e-3);
    }

    #[test]
    fn buckets_hold_their_keys() {
        for n in [0, 10_000, 1 << 30] {
            let buckets = Buckets::for_records(n);
            let width = 1.0 / buckets.scale;
            for key in [
                -1.0,
                0.0,
                1e-9,
                0.5,
                width,
                3.0 * width,
                1.999_999,
                3.5,
                9.0,
            ] {
                let b = buckets.of(key);
                assert!(buckets.lower_edge(b) <= key, "key {key} bucket {b}");
                assert!(b < buckets.count);
                if b + 1 < buckets.count {
                    assert!(key < buckets.lower_edge(b + 1), "key {key} bucket {b}");
                }
            }
            assert_eq!(buckets.of(-1.0), 0);
            assert_eq!(buckets.lower_edge(0), f64::NEG_INFINITY);
        }
    }

    /// Bench-sized snapshots (moby's default policy over a synthetic cache
    /// that loses about half its bytes, nearly all in gc mode): the fast
    /// planner equals the reference, with parent ids shared with the
    /// records' ids (the join by address) or fresh (the join by hash), and
    /// with last-used times coarsened so that ranks tie.
    #[cfg(feature = "synth")]
    mod synth {
        use reclaim_model::{Duration, Id};

        use crate::prune::{plan_reference, plan_with};
        use crate::synth::SynthConfig;

        use super::*;

        fn now() -> Timestamp {
            Timestamp::from_unix_secs(1_717_200_000)
        }

        fn policy() -> Vec<Rule> {
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

        fn snapshot(records: usize, seed: u64) -> Snapshot {
            SynthConfig {
                records,
                total_bytes: 60_000_000_000,
                ..SynthConfig::new(now())
            }
            .generate(seed)
        }

        fn check(snapshot: &Snapshot) -> PrunePlan {
            let disk = DiskStats::new(100 << 30, 9_000_000_000);
            let fast = plan_fast(snapshot, &policy(), disk, now(), Ordering::BuildKit);
            let reference = plan_reference(snapshot, &policy(), disk, now());
            assert_eq!(fast, reference);
            assert_eq!(
                plan_with(snapshot, &policy(), disk, now(), Ordering::BuildKit),
                fast
            );
            fast
        }

        #[test]
        fn bench_sized_snapshot() {
            let snap = snapshot(6_000, 1);
            let p = check(&snap);
            // The run is the bench's: about half the records go, nearly
            // all of them ranked one by one.
            let ranked = p
                .deletions
                .iter()
                .filter(|d| matches!(d.reason, DeletionReason::Ranked { .. }))
                .count();
            assert!(p.deletions.len() > 2_000, "{}", p.deletions.len());
            assert!(ranked * 10 > p.deletions.len() * 9, "{ranked}");
        }

        #[test]
        fn parent_ids_not_shared_with_record_ids() {
            let mut records = snapshot(3_000, 2).into_records();
            for record in &mut records {
                record.parents = record.parents.iter().map(|p| Id::new(p.as_str())).collect();
            }
            // A parent missing from the snapshot is ignored on both paths.
            records[7].parents.push(Id::new("not-a-record"));
            let snap = Snapshot::new(records).expect("unique ids");
            let p = check(&snap);
            assert!(!p.deletions.is_empty());
        }

        #[test]
        fn coarse_times_tie() {
            let mut records = snapshot(3_000, 3).into_records();
            for (i, record) in records.iter_mut().enumerate() {
                if let Some(t) = record.last_used_at {
                    let hours = t.unix_nanos().div_euclid(6 * 3_600_000_000_000);
                    record.last_used_at =
                        Some(Timestamp::from_unix_nanos(hours * 6 * 3_600_000_000_000));
                }
                if i % 7 == 0 {
                    record.usage_count %= 5;
                }
            }
            let p = check(&Snapshot::new(records).expect("unique ids"));
            assert!(!p.deletions.is_empty());
        }
    }
}
