//! Traces: what a node's engine was asked to do, in time order, in a
//! versioned JSON-lines format that the simulator writes and replays and
//! that a recorder can capture from a live daemon.
//!
//! A [`Trace`] is the compact, validated, in-memory form: ids are interned
//! once, so a replay touches no strings beyond the engine's own lookups.
//! [`Trace::read`] parses the JSON-lines form ([`TraceHeader`], then one
//! [`TraceEvent`] per line) and checks it; [`Trace::write`] writes it back.
//! The format is described in docs/trace-format.md.

mod wire;

use std::collections::HashMap;
use std::io::{BufRead, Write};

use reclaim_model::{Id, Timestamp};
use reclaim_policy::prune::RecordType;

pub use self::wire::{
    BuildEndEvent, BuildStartEvent, ContainerExitEvent, ContainerRemoveEvent, ContainerStartEvent,
    DiskEvent, GcEvent, ImageRemoveEvent, Outcome, PodDeleteEvent, PullEvent, RecordEvent,
    StepEvent, TRACE_FORMAT, TRACE_VERSION, TraceEvent, TraceHeader,
};

/// Marks an absent index in the compact events.
pub(crate) const NONE: u32 = u32::MAX;

/// A trace held in memory: a header and events in time order, validated.
///
/// Invariants (checked by [`Trace::read`], kept by the generator): times
/// never decrease; every step belongs to a build that started and has not
/// ended; a record's parents were defined by earlier lines; every container
/// runs an image pulled earlier and is started once; ids of one kind are
/// unique.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    header: TraceHeader,
    pub(crate) events: Vec<Timed>,
    pub(crate) records: Vec<RecordDef>,
    pub(crate) images: Vec<ImageDef>,
    pub(crate) containers: Vec<ContainerDef>,
    pub(crate) pods: Vec<Id>,
    pub(crate) builds: Vec<BuildDef>,
    pub(crate) initial: Vec<InitialRecord>,
    pub(crate) disks: Vec<DiskEvent>,
}

/// A trace that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The text is empty: a trace starts with its header line.
    #[error(
        "the trace is empty: its first line must be a header with \"format\": \"reclaim-trace\""
    )]
    Empty,
    /// The first line is not a valid header (not JSON, a missing or unknown
    /// field, a bad timestamp); the message names the field.
    #[error("line 1: not a trace header: {message}")]
    Header {
        /// serde's message, with the field and column.
        message: String,
    },
    /// The header's `format` is not `reclaim-trace`: this is some other
    /// file.
    #[error("line 1: field `format` is {found:?}, expected \"reclaim-trace\"")]
    Format {
        /// The value found.
        found: String,
    },
    /// The header's `version` is one this reader does not know; use a
    /// reclaim that reads it, or convert the trace.
    #[error("line 1: field `version` is {found}, but this reader only reads version 1")]
    Version {
        /// The value found.
        found: u32,
    },
    /// An event line is malformed or inconsistent with the lines before it;
    /// the message names the field and its value.
    #[error("line {line}: {message}")]
    Event {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("cannot read the trace: {0}")]
    Io(#[from] std::io::Error),
}

impl Trace {
    /// Reads a trace in the JSON-lines form. Blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`TraceError`], naming the line, the field and the value at fault.
    pub fn read(reader: impl BufRead) -> Result<Self, TraceError> {
        let mut lines = reader.lines().enumerate();
        let header = loop {
            match lines.next() {
                None => return Err(TraceError::Empty),
                Some((_, line)) => {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    break parse_header(&line)?;
                }
            }
        };
        let mut builder = TraceBuilder::new(header);
        for (index, line) in lines {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let number = index + 1;
            let event: TraceEvent = serde_json::from_str(&line).map_err(|e| TraceError::Event {
                line: number,
                message: e.to_string(),
            })?;
            builder.push(event).map_err(|message| TraceError::Event {
                line: number,
                message,
            })?;
        }
        Ok(builder.finish())
    }

    /// Reads a trace from text (see [`Trace::read`]).
    ///
    /// # Errors
    ///
    /// As [`Trace::read`].
    pub fn from_json_lines(text: &str) -> Result<Self, TraceError> {
        Self::read(text.as_bytes())
    }

    /// Builds a trace from a header and events (as a recorder produces
    /// them), with the checks of [`Trace::read`]; errors name the 0-based
    /// index of the event as `line` + 2 (its line in a written trace).
    ///
    /// # Errors
    ///
    /// As [`Trace::read`].
    pub fn from_events(
        header: TraceHeader,
        events: impl IntoIterator<Item = TraceEvent>,
    ) -> Result<Self, TraceError> {
        check_header(&header)?;
        let mut builder = TraceBuilder::new(header);
        for (index, event) in events.into_iter().enumerate() {
            builder.push(event).map_err(|message| TraceError::Event {
                line: index + 2,
                message,
            })?;
        }
        Ok(builder.finish())
    }

    /// Writes the JSON-lines form: the header, then one line per event. A
    /// record's or image's definition (type, parents, tags…) is written on
    /// its first line only. Reading the output gives an equal trace.
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn write(&self, w: impl Write) -> std::io::Result<()> {
        self.write_with(w, None)
    }

    /// The JSON-lines form as a string.
    pub fn to_json_lines(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out).expect("writing to memory cannot fail");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True if the trace has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Length in milliseconds: the header's `duration_ms`, or the time of
    /// the last event.
    pub fn duration_ms(&self) -> u64 {
        let last = self.events.last().map_or(0, |e| e.t);
        self.header.duration_ms.unwrap_or(last).max(last)
    }

    /// Wall-clock time of `t` milliseconds into the trace.
    pub fn time_at(&self, t: u64) -> Timestamp {
        self.header.start.add(reclaim_model::Duration::from_nanos(
            (t as i64).saturating_mul(1_000_000),
        ))
    }

    /// Number of distinct cache records the trace mentions.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Number of builds.
    pub fn build_count(&self) -> usize {
        self.builds.len()
    }

    /// The events in their JSON-lines form, in order (allocates; for
    /// inspection and tests).
    pub fn events(&self) -> Vec<TraceEvent> {
        let mut writer = EventWriter::new(self);
        self.events
            .iter()
            .map(|e| writer.event(e, Annotation::None))
            .collect()
    }

    /// A copy of this trace with another header (the events unchanged).
    ///
    /// # Errors
    ///
    /// [`TraceError::Format`] or [`TraceError::Version`] for a header this
    /// crate cannot write.
    pub fn with_header(&self, header: TraceHeader) -> Result<Self, TraceError> {
        check_header(&header)?;
        Ok(Self {
            header,
            ..self.clone()
        })
    }

    /// Writes the trace with a replay's annotations: outcomes on steps and
    /// pulls, and the extra `gc` and `disk` lines, each after the event at
    /// whose index it was recorded.
    pub(crate) fn write_with(
        &self,
        mut w: impl Write,
        annotations: Option<&Annotations>,
    ) -> std::io::Result<()> {
        let mut header = self.header.clone();
        if let Some(a) = annotations {
            header.outcomes = Some(a.policy.clone());
            header.duration_ms = Some(self.duration_ms());
        }
        serde_json::to_writer(&mut w, &header)?;
        w.write_all(b"\n")?;
        let mut writer = EventWriter::new(self);
        let no_extras: &[(usize, TraceEvent)] = &[];
        let extras = annotations.map_or(no_extras, |a| a.extras.as_slice());
        let mut next_extra = 0;
        for (index, timed) in self.events.iter().enumerate() {
            while let Some((at, extra)) = extras.get(next_extra)
                && *at <= index
            {
                serde_json::to_writer(&mut w, extra)?;
                w.write_all(b"\n")?;
                next_extra += 1;
            }
            let note = annotations
                .and_then(|a| a.outcomes.get(index).copied())
                .unwrap_or(Annotation::None);
            let event = writer.event(timed, note);
            serde_json::to_writer(&mut w, &event)?;
            w.write_all(b"\n")?;
        }
        for (_, extra) in &extras[next_extra..] {
            serde_json::to_writer(&mut w, extra)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    }
}

/// What a replay adds when it writes a trace back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Annotations {
    /// The policy's label, for the header's `outcomes`.
    pub policy: String,
    /// One entry per event.
    pub outcomes: Vec<Annotation>,
    /// Extra lines, each written before the event at its index (or at the
    /// end), in order.
    pub extras: Vec<(usize, TraceEvent)>,
}

/// The outcome of one event in a replay.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Annotation {
    None,
    /// A build during which the disk was over capacity.
    Failed,
    Hit,
    Miss,
    Skipped,
}

fn parse_header(line: &str) -> Result<TraceHeader, TraceError> {
    let header: TraceHeader = serde_json::from_str(line).map_err(|e| TraceError::Header {
        message: e.to_string(),
    })?;
    check_header(&header)?;
    Ok(header)
}

fn check_header(header: &TraceHeader) -> Result<(), TraceError> {
    if header.format != TRACE_FORMAT {
        return Err(TraceError::Format {
            found: header.format.clone(),
        });
    }
    if header.version != TRACE_VERSION {
        return Err(TraceError::Version {
            found: header.version,
        });
    }
    Ok(())
}

// ----- The compact form -----

/// One event at a time `t` (milliseconds since the start).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Timed {
    pub t: u64,
    pub ev: Ev,
}

/// A compact event: indices into the trace's tables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ev {
    BuildStart {
        build: u32,
    },
    Step {
        build: u32,
        record: u32,
        /// The record whose miss makes this step run, or [`NONE`].
        used_by: u32,
        cost_ms: u32,
        size: u64,
    },
    BuildEnd {
        build: u32,
    },
    Record {
        initial: u32,
    },
    Pull {
        image: u32,
        cost_ms: u32,
        size: u64,
    },
    ImageRemove {
        image: u32,
    },
    ContainerStart {
        container: u32,
        size: u64,
    },
    ContainerExit {
        container: u32,
        /// `u64::MAX`: unchanged.
        size: u64,
    },
    ContainerRemove {
        container: u32,
    },
    PodDelete {
        pod: u32,
    },
    Disk {
        sample: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RecordDef {
    pub id: Id,
    pub parents: Vec<Id>,
    pub record_type: RecordType,
    pub mutable: bool,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ImageDef {
    pub id: Id,
    pub tags: Vec<String>,
    pub pinned: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContainerDef {
    pub id: Id,
    pub name: Id,
    pub image: u32,
    pub pod: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BuildDef {
    pub id: String,
    pub project: Option<String>,
    pub branch: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InitialRecord {
    pub record: u32,
    pub size: u64,
    pub cost_ms: u32,
    pub created_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub usage_count: u64,
}

/// Seconds (as written) to whole milliseconds, saturating; negative and
/// non-finite costs are errors reported by the caller.
pub(crate) fn cost_to_ms(seconds: f64) -> u32 {
    (seconds * 1000.0)
        .round()
        .clamp(0.0, f64::from(u32::MAX - 1)) as u32
}

/// Whole milliseconds to seconds, as written.
pub(crate) fn ms_to_cost(ms: u32) -> f64 {
    f64::from(ms) / 1000.0
}

/// Whether a record type is mutable unless a trace says otherwise.
pub(crate) fn default_mutable(t: &RecordType) -> bool {
    matches!(t, RecordType::ExecCachemount | RecordType::SourceLocal)
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    Running,
    Ended,
}

/// Builds a [`Trace`], checking the invariants as events arrive.
#[derive(Debug)]
pub(crate) struct TraceBuilder {
    trace: Trace,
    last_t: u64,
    record_ix: HashMap<Id, u32>,
    image_ix: HashMap<Id, u32>,
    container_ix: HashMap<Id, u32>,
    pod_ix: HashMap<Id, u32>,
    build_ix: HashMap<String, u32>,
    build_phase: Vec<Phase>,
    names: HashMap<String, Id>,
}

impl TraceBuilder {
    pub fn new(header: TraceHeader) -> Self {
        Self {
            trace: Trace {
                header,
                events: Vec::new(),
                records: Vec::new(),
                images: Vec::new(),
                containers: Vec::new(),
                pods: Vec::new(),
                builds: Vec::new(),
                initial: Vec::new(),
                disks: Vec::new(),
            },
            last_t: 0,
            record_ix: HashMap::new(),
            image_ix: HashMap::new(),
            container_ix: HashMap::new(),
            pod_ix: HashMap::new(),
            build_ix: HashMap::new(),
            build_phase: Vec::new(),
            names: HashMap::new(),
        }
    }

    pub fn finish(self) -> Trace {
        self.trace
    }

    fn time(&mut self, kind: &str, t: u64) -> Result<(), String> {
        if t < self.last_t {
            return Err(format!(
                "{kind}: field `t` is {t}, before the previous event's {} (events must be in time order)",
                self.last_t
            ));
        }
        self.last_t = t;
        Ok(())
    }

    fn emit(&mut self, t: u64, ev: Ev) {
        self.trace.events.push(Timed { t, ev });
    }

    /// Validates and appends one wire event.
    pub fn push(&mut self, event: TraceEvent) -> Result<(), String> {
        let kind = event.kind();
        self.time(kind, event.t())?;
        match event {
            TraceEvent::BuildStart(e) => {
                if self.build_ix.contains_key(&e.build) {
                    return Err(format!(
                        "build_start: field `build` is {:?}, a build that already started",
                        e.build
                    ));
                }
                let build = self.add_build(BuildDef {
                    id: e.build,
                    project: e.project,
                    branch: e.branch,
                });
                self.emit(e.t, Ev::BuildStart { build });
            }
            TraceEvent::Step(e) => {
                let build = self.running_build("step", &e.build)?;
                check_size_cost("step", e.cost)?;
                let record = self.define_or_check(
                    "step",
                    &e.record,
                    e.record_type.as_deref(),
                    e.parents.as_deref(),
                    e.mutable,
                    e.description.as_deref(),
                )?;
                let used_by = match &e.used_by {
                    None => NONE,
                    Some(u) => *self.record_ix.get(u.as_str()).ok_or_else(|| {
                        format!("step: field `used_by` is {u:?}, a record no earlier step defines")
                    })?,
                };
                self.emit(
                    e.t,
                    Ev::Step {
                        build,
                        record,
                        used_by,
                        cost_ms: cost_to_ms(e.cost),
                        size: e.size,
                    },
                );
            }
            TraceEvent::BuildEnd(e) => {
                let build = self.running_build("build_end", &e.build)?;
                self.build_phase[build as usize] = Phase::Ended;
                self.emit(e.t, Ev::BuildEnd { build });
            }
            TraceEvent::Record(e) => {
                check_size_cost("record", e.cost)?;
                let record = self.define_or_check(
                    "record",
                    &e.record,
                    e.record_type.as_deref(),
                    e.parents.as_deref(),
                    e.mutable,
                    e.description.as_deref(),
                )?;
                let initial = self.trace.initial.len() as u32;
                self.trace.initial.push(InitialRecord {
                    record,
                    size: e.size,
                    cost_ms: cost_to_ms(e.cost),
                    created_at: e.created_at,
                    last_used_at: e.last_used_at,
                    usage_count: e.usage_count,
                });
                self.emit(e.t, Ev::Record { initial });
            }
            TraceEvent::Pull(e) => {
                check_size_cost("pull", e.cost)?;
                let id = Id::new(&e.image);
                if id.as_str().is_empty() {
                    return Err("pull: field `image` is empty".to_owned());
                }
                let image = match self.image_ix.get(&id) {
                    Some(&i) => {
                        let def = &self.trace.images[i as usize];
                        if !e.tags.is_empty() && e.tags != def.tags {
                            return Err(format!(
                                "pull: field `tags` is {:?}, but image {:?} was first pulled with {:?}",
                                e.tags, e.image, def.tags
                            ));
                        }
                        i
                    }
                    None => self.add_image(ImageDef {
                        id,
                        tags: e.tags,
                        pinned: e.pinned,
                    }),
                };
                self.emit(
                    e.t,
                    Ev::Pull {
                        image,
                        cost_ms: cost_to_ms(e.cost),
                        size: e.size,
                    },
                );
            }
            TraceEvent::ImageRemove(e) => {
                let image = *self.image_ix.get(e.image.as_str()).ok_or_else(|| {
                    format!(
                        "image_remove: field `image` is {:?}, an image no earlier line pulls",
                        e.image
                    )
                })?;
                self.emit(e.t, Ev::ImageRemove { image });
            }
            TraceEvent::ContainerStart(e) => {
                let id = Id::new(&e.container);
                if id.as_str().is_empty() {
                    return Err("container_start: field `container` is empty".to_owned());
                }
                if self.container_ix.contains_key(&id) {
                    return Err(format!(
                        "container_start: field `container` is {:?}, a container that already started",
                        e.container
                    ));
                }
                let image = *self.image_ix.get(e.image.as_str()).ok_or_else(|| {
                    format!(
                        "container_start: field `image` is {:?}, an image no earlier line pulls",
                        e.image
                    )
                })?;
                let pod = match e.pod {
                    Some(p) => self.pod(Id::new(p)),
                    None => NONE,
                };
                // Names repeat across pods ("build", "helper"): one shared
                // id per name keeps them in cache when the replay clones
                // them.
                let name = match e.name {
                    None => id.clone(),
                    Some(n) => self
                        .names
                        .entry(n)
                        .or_insert_with_key(|n| Id::new(n))
                        .clone(),
                };
                let container = self.add_container(ContainerDef {
                    id,
                    name,
                    image,
                    pod,
                });
                self.emit(
                    e.t,
                    Ev::ContainerStart {
                        container,
                        size: e.size,
                    },
                );
            }
            TraceEvent::ContainerExit(e) => {
                let container = self.container("container_exit", &e.container)?;
                let size = e.size.unwrap_or(u64::MAX);
                if size == u64::MAX && e.size.is_some() {
                    return Err(format!("container_exit: field `size` is {size}, too large"));
                }
                self.emit(e.t, Ev::ContainerExit { container, size });
            }
            TraceEvent::ContainerRemove(e) => {
                let container = self.container("container_remove", &e.container)?;
                self.emit(e.t, Ev::ContainerRemove { container });
            }
            TraceEvent::PodDelete(e) => {
                let pod = self.pod(Id::new(&e.pod));
                self.emit(e.t, Ev::PodDelete { pod });
            }
            TraceEvent::Disk(e) if e.other.is_some() => {
                let sample = self.add_disk(e);
                self.emit(e.t, Ev::Disk { sample });
            }
            // Observations of a past run (disk samples without `other`, GC
            // runs): a replay makes its own, so they are not kept.
            TraceEvent::Disk(_) | TraceEvent::Gc(_) => {}
        }
        Ok(())
    }

    fn running_build(&self, kind: &str, build: &str) -> Result<u32, String> {
        match self.build_ix.get(build) {
            Some(&b) if self.build_phase[b as usize] == Phase::Running => Ok(b),
            Some(_) => Err(format!(
                "{kind}: field `build` is {build:?}, a build that already ended"
            )),
            None => Err(format!(
                "{kind}: field `build` is {build:?}, a build that has not started (no build_start before this line)"
            )),
        }
    }

    fn container(&self, kind: &str, container: &str) -> Result<u32, String> {
        self.container_ix.get(container).copied().ok_or_else(|| {
            format!(
                "{kind}: field `container` is {container:?}, a container no earlier line starts"
            )
        })
    }

    /// The record `id`, defined now if new, else checked against its first
    /// definition.
    fn define_or_check(
        &mut self,
        kind: &str,
        id: &str,
        record_type: Option<&str>,
        parents: Option<&[String]>,
        mutable: Option<bool>,
        description: Option<&str>,
    ) -> Result<u32, String> {
        if id.is_empty() {
            return Err(format!("{kind}: field `record` is empty"));
        }
        if let Some(&index) = self.record_ix.get(id) {
            let def = &self.trace.records[index as usize];
            if let Some(t) = record_type
                && RecordType::parse(t) != def.record_type
            {
                return Err(format!(
                    "{kind}: field `type` is {t:?}, but record {id:?} was first defined as {:?}",
                    def.record_type.as_str()
                ));
            }
            if let Some(p) = parents
                && !p
                    .iter()
                    .map(String::as_str)
                    .eq(def.parents.iter().map(Id::as_str))
            {
                return Err(format!(
                    "{kind}: field `parents` is {p:?}, but record {id:?} was first defined with {:?}",
                    def.parents.iter().map(Id::as_str).collect::<Vec<_>>()
                ));
            }
            if let Some(m) = mutable
                && m != def.mutable
            {
                return Err(format!(
                    "{kind}: field `mutable` is {m}, but record {id:?} was first defined with {}",
                    def.mutable
                ));
            }
            if let Some(d) = description
                && d != def.description
            {
                return Err(format!(
                    "{kind}: field `description` is {d:?}, but record {id:?} was first defined with {:?}",
                    def.description
                ));
            }
            return Ok(index);
        }
        let record_type = RecordType::parse(record_type.unwrap_or("regular"));
        let mut parent_ids = Vec::new();
        for p in parents.unwrap_or_default() {
            match self.record_ix.get_key_value(p.as_str()) {
                Some((key, _)) => parent_ids.push(key.clone()),
                None if p == id => {
                    return Err(format!("{kind}: record {id:?} lists itself as a parent"));
                }
                None => {
                    return Err(format!(
                        "{kind}: field `parents` names {p:?}, a record no earlier line defines"
                    ));
                }
            }
        }
        let mutable = mutable.unwrap_or_else(|| default_mutable(&record_type));
        Ok(self.add_record(RecordDef {
            id: Id::new(id),
            parents: parent_ids,
            record_type,
            mutable,
            description: description.unwrap_or_default().to_owned(),
        }))
    }

    // ----- Unchecked additions, for the generator -----

    pub fn add_record(&mut self, def: RecordDef) -> u32 {
        let index = self.trace.records.len() as u32;
        self.record_ix.insert(def.id.clone(), index);
        self.trace.records.push(def);
        index
    }

    pub fn add_image(&mut self, def: ImageDef) -> u32 {
        let index = self.trace.images.len() as u32;
        self.image_ix.insert(def.id.clone(), index);
        self.trace.images.push(def);
        index
    }

    pub fn add_container(&mut self, def: ContainerDef) -> u32 {
        let index = self.trace.containers.len() as u32;
        self.container_ix.insert(def.id.clone(), index);
        self.trace.containers.push(def);
        index
    }

    pub fn pod(&mut self, id: Id) -> u32 {
        if let Some(&p) = self.pod_ix.get(&id) {
            return p;
        }
        let index = self.trace.pods.len() as u32;
        self.pod_ix.insert(id.clone(), index);
        self.trace.pods.push(id);
        index
    }

    pub fn add_build(&mut self, def: BuildDef) -> u32 {
        let index = self.trace.builds.len() as u32;
        self.build_ix.insert(def.id.clone(), index);
        self.trace.builds.push(def);
        self.build_phase.push(Phase::Running);
        index
    }

    pub fn add_disk(&mut self, sample: DiskEvent) -> u32 {
        let index = self.trace.disks.len() as u32;
        self.trace.disks.push(sample);
        index
    }

    /// Appends an event the caller knows to be valid and in time order.
    pub fn push_unchecked(&mut self, t: u64, ev: Ev) {
        debug_assert!(t >= self.last_t, "events out of order");
        self.last_t = t;
        if let Ev::BuildEnd { build } = ev {
            self.build_phase[build as usize] = Phase::Ended;
        }
        self.emit(t, ev);
    }

    /// The records defined so far.
    pub fn records(&self) -> &[RecordDef] {
        &self.trace.records
    }

    /// The number of builds so far.
    pub fn build_count(&self) -> usize {
        self.trace.builds.len()
    }
}

fn check_size_cost(kind: &str, cost: f64) -> Result<(), String> {
    if !cost.is_finite() || cost < 0.0 {
        return Err(format!(
            "{kind}: field `cost` is {cost}, expected a non-negative number of seconds"
        ));
    }
    Ok(())
}

/// Turns compact events back into wire events, writing each record's and
/// image's definition on its first appearance only.
struct EventWriter<'t> {
    trace: &'t Trace,
    record_written: Vec<bool>,
    image_written: Vec<bool>,
}

impl<'t> EventWriter<'t> {
    fn new(trace: &'t Trace) -> Self {
        Self {
            trace,
            record_written: vec![false; trace.records.len()],
            image_written: vec![false; trace.images.len()],
        }
    }

    fn record_id(&self, index: u32) -> String {
        self.trace.records[index as usize].id.to_string()
    }

    /// The definition fields of a record, the first time only.
    fn definition(
        &mut self,
        index: u32,
    ) -> (
        Option<String>,
        Option<Vec<String>>,
        Option<bool>,
        Option<String>,
    ) {
        let slot = &mut self.record_written[index as usize];
        if *slot {
            return (None, None, None, None);
        }
        *slot = true;
        let def = &self.trace.records[index as usize];
        let record_type =
            (def.record_type != RecordType::Regular).then(|| def.record_type.as_str().to_owned());
        let parents = (!def.parents.is_empty())
            .then(|| def.parents.iter().map(ToString::to_string).collect());
        let mutable = (def.mutable != default_mutable(&def.record_type)).then_some(def.mutable);
        let description = (!def.description.is_empty()).then(|| def.description.clone());
        (record_type, parents, mutable, description)
    }

    fn event(&mut self, timed: &Timed, note: Annotation) -> TraceEvent {
        let t = timed.t;
        let outcome = match note {
            Annotation::None | Annotation::Failed => None,
            Annotation::Hit => Some(Outcome::Hit),
            Annotation::Miss => Some(Outcome::Miss),
            Annotation::Skipped => Some(Outcome::Skipped),
        };
        let trace = self.trace;
        let build_id = |b: u32| trace.builds[b as usize].id.clone();
        let container_id = |c: u32| trace.containers[c as usize].id.to_string();
        match timed.ev {
            Ev::BuildStart { build } => {
                let def = &trace.builds[build as usize];
                TraceEvent::BuildStart(BuildStartEvent {
                    t,
                    build: def.id.clone(),
                    project: def.project.clone(),
                    branch: def.branch.clone(),
                })
            }
            Ev::Step {
                build,
                record,
                used_by,
                cost_ms,
                size,
            } => {
                let (record_type, parents, mutable, description) = self.definition(record);
                TraceEvent::Step(StepEvent {
                    t,
                    build: build_id(build),
                    record: self.record_id(record),
                    size,
                    cost: ms_to_cost(cost_ms),
                    record_type,
                    parents,
                    mutable,
                    description,
                    used_by: (used_by != NONE).then(|| self.record_id(used_by)),
                    outcome,
                })
            }
            Ev::BuildEnd { build } => TraceEvent::BuildEnd(BuildEndEvent {
                t,
                build: build_id(build),
                failed: (note == Annotation::Failed).then_some(true),
            }),
            Ev::Record { initial } => {
                let init = &trace.initial[initial as usize];
                let (record_type, parents, mutable, description) = self.definition(init.record);
                TraceEvent::Record(RecordEvent {
                    t,
                    record: self.record_id(init.record),
                    size: init.size,
                    cost: ms_to_cost(init.cost_ms),
                    record_type,
                    parents,
                    mutable,
                    description,
                    created_at: init.created_at,
                    last_used_at: init.last_used_at,
                    usage_count: init.usage_count,
                })
            }
            Ev::Pull {
                image,
                cost_ms,
                size,
            } => {
                let def = &trace.images[image as usize];
                let first = !std::mem::replace(&mut self.image_written[image as usize], true);
                TraceEvent::Pull(PullEvent {
                    t,
                    image: def.id.to_string(),
                    size,
                    cost: ms_to_cost(cost_ms),
                    tags: if first { def.tags.clone() } else { Vec::new() },
                    pinned: first && def.pinned,
                    outcome,
                })
            }
            Ev::ImageRemove { image } => TraceEvent::ImageRemove(ImageRemoveEvent {
                t,
                image: trace.images[image as usize].id.to_string(),
            }),
            Ev::ContainerStart { container, size } => {
                let def = &trace.containers[container as usize];
                TraceEvent::ContainerStart(ContainerStartEvent {
                    t,
                    container: def.id.to_string(),
                    image: trace.images[def.image as usize].id.to_string(),
                    pod: (def.pod != NONE).then(|| trace.pods[def.pod as usize].to_string()),
                    name: (def.name != def.id).then(|| def.name.to_string()),
                    size,
                })
            }
            Ev::ContainerExit { container, size } => {
                TraceEvent::ContainerExit(ContainerExitEvent {
                    t,
                    container: container_id(container),
                    size: (size != u64::MAX).then_some(size),
                })
            }
            Ev::ContainerRemove { container } => {
                TraceEvent::ContainerRemove(ContainerRemoveEvent {
                    t,
                    container: container_id(container),
                })
            }
            Ev::PodDelete { pod } => TraceEvent::PodDelete(PodDeleteEvent {
                t,
                pod: trace.pods[pod as usize].to_string(),
            }),
            Ev::Disk { sample } => TraceEvent::Disk(trace.disks[sample as usize]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{"format":"reclaim-trace","version":1,"start":"2025-01-06T00:00:00Z","disk_total":1000}
{"ev":"disk","t":0,"total":1000,"other":100}
{"ev":"build_start","t":0,"build":"b1","project":"api"}
{"ev":"step","t":1,"build":"b1","record":"base","size":50,"cost":2.5}
{"ev":"step","t":2,"build":"b1","record":"deps","size":60,"cost":10,"parents":["base"],"description":"RUN npm ci"}
{"ev":"step","t":3,"build":"b1","record":"npm","size":30,"cost":4,"type":"exec.cachemount","used_by":"deps"}
{"ev":"build_end","t":4,"build":"b1"}
{"ev":"pull","t":5,"image":"sha256:a","size":70,"tags":["node:20"]}
{"ev":"container_start","t":6,"container":"c1","image":"sha256:a","pod":"p1","name":"test","size":5}
{"ev":"container_exit","t":7,"container":"c1","size":9}
{"ev":"pod_delete","t":8,"pod":"p1"}
{"ev":"gc","t":9,"collector":"build-cache","trigger":"builder-gc","removed":0,"bytes_freed":0}
"#;

    #[test]
    fn reads_and_writes_back_the_same_trace() {
        let trace = Trace::from_json_lines(SMALL).unwrap();
        assert_eq!(
            trace.len(),
            10,
            "the gc line is an observation and is dropped"
        );
        assert_eq!(trace.record_count(), 3);
        assert_eq!(trace.build_count(), 1);
        assert!(trace.records[2].mutable, "cache mounts default to mutable");
        let text = trace.to_json_lines();
        let again = Trace::from_json_lines(&text).unwrap();
        assert_eq!(again, trace);
        assert_eq!(again.to_json_lines(), text);
        // Definitions are written once: the second line mentioning a record
        // carries no type or parents.
        assert!(
            text.contains(r#""record":"deps","size":60,"cost":10.0,"parents":["base"]"#),
            "{text}"
        );
    }

    #[test]
    fn bad_lines_name_the_line_field_and_value() {
        let header = SMALL.lines().next().unwrap();
        let cases = [
            (
                r#"{"ev":"step","t":1,"build":"nope","record":"r","size":1}"#,
                "line 2: step: field `build` is \"nope\", a build that has not started",
            ),
            (
                r#"{"ev":"build_start","t":5,"build":"b"}
{"ev":"build_start","t":4,"build":"c"}"#,
                "line 3: build_start: field `t` is 4, before the previous event's 5",
            ),
            (
                r#"{"ev":"build_start","t":0,"build":"b"}
{"ev":"step","t":1,"build":"b","record":"r","size":1,"parents":["x"]}"#,
                "line 3: step: field `parents` names \"x\", a record no earlier line defines",
            ),
            (
                r#"{"ev":"build_start","t":0,"build":"b"}
{"ev":"step","t":1,"build":"b","record":"r","size":1,"cost":-1}"#,
                "line 3: step: field `cost` is -1, expected a non-negative number of seconds",
            ),
            (
                r#"{"ev":"build_start","t":0,"build":"b"}
{"ev":"step","t":1,"build":"b","record":"r","size":1}
{"ev":"step","t":1,"build":"b","record":"r","size":1,"type":"source.local"}"#,
                "line 4: step: field `type` is \"source.local\", but record \"r\" was first defined as \"regular\"",
            ),
            (
                r#"{"ev":"container_start","t":0,"container":"c","image":"sha256:x"}"#,
                "line 2: container_start: field `image` is \"sha256:x\", an image no earlier line pulls",
            ),
            (
                r#"{"ev":"step","t":1,"build":"b","record":"r"}"#,
                "line 2: missing field `size`",
            ),
            (
                r#"{"ev":"launch","t":1}"#,
                "line 2: unknown variant `launch`",
            ),
            (
                r#"{"ev":"pod_delete","t":1,"pod":"p","force":true}"#,
                "line 2: unknown field `force`",
            ),
        ];
        for (body, want) in cases {
            let text = format!("{header}\n{body}\n");
            let err = Trace::from_json_lines(&text).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "got {err:?}, want a message starting {want:?}"
            );
        }
        let err = Trace::from_json_lines(
            r#"{"format":"other","version":1,"start":"2025-01-06T00:00:00Z","disk_total":1}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: field `format` is \"other\", expected \"reclaim-trace\""
        );
        let err = Trace::from_json_lines(r#"{"format":"reclaim-trace","version":2,"start":"2025-01-06T00:00:00Z","disk_total":1}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: field `version` is 2, but this reader only reads version 1"
        );
        let err = Trace::from_json_lines("\n\n").unwrap_err();
        assert!(matches!(err, TraceError::Empty));
        let err = Trace::from_json_lines(
            r#"{"format":"reclaim-trace","version":1,"start":"yesterday","disk_total":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }

    #[test]
    fn costs_round_trip_through_milliseconds() {
        for seconds in [0.0, 0.001, 2.5, 12.345, 3600.0] {
            assert_eq!(ms_to_cost(cost_to_ms(seconds)), seconds);
        }
    }
}
