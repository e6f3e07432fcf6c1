//! `fold="latest"` in Rust: the messages of a topic folded as they are polled into the state a
//! correct consumer holds, per key the winning message (kept whole: partition, offset, timestamp,
//! key, headers, value) and the highest version seen, plus the stream's health. No value is decoded
//! in full: serde_json picks only the key field, the version field and the delete marker out of
//! each value (borrowed, the rest skipped).
//!
//! `fold_topic` runs three stages on three threads, a few batches apart: librdkafka polled into
//! message batches (`Prefetch`), the values of a batch picked (`Reader`, stateless), and the picks
//! folded in arrival order (`Fold`, the only one holding state). Picking and folding each took
//! about a third of the CPU; on one thread they were the read's bottleneck.
//!
//! The rules are those of the DuckDB fold in `python/seamline/stores/kafka/read.py` (`_Pipeline`):
//! - per key the event with the highest version wins, a NULL version ranking lowest; ties go to the
//!   later message by (partition, offset);
//! - a delete (a null value, a JSON `__deleted`/`op` marker, a Debezium `op: "d"`) without a version
//!   of its own ranks at the highest version seen for its key before it, so it wins a tie by coming
//!   later; it stays in the state as a marker (an older event arriving later cannot resurrect the
//!   key) and is left for the caller to drop;
//! - health, per event against the key's highest earlier version: equal is `replayed`, lower is
//!   `out_of_order`, above it + 1 is a `gap` (integer versions only, never a Debezium `_lsn`).
//!
//! "Earlier" is arrival order, which within a partition is offset order (a key lives in one
//! partition when the message key is the key).

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc;
use std::time::Duration;

use arrow_array::{
    Array, BinaryArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use rdkafka::message::{Headers, Message};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::{message_schema, Builders, FetchRequest, FetchStream, KafkaError};

/// At most this many sample keys (or positions) per health count, as the DuckDB path keeps.
pub const SAMPLES: usize = 5;

/// How values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMode {
    /// A JSON object per value; deletes marked by `__deleted: true|"true"` or `op`/`__op: "d"`.
    Json,
    /// A Debezium change event (with or without the schema/payload wrapper).
    Debezium,
}

/// Where a message's version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// No version: the last message by (partition, offset) wins.
    None,
    /// A value field (for Debezium a field of `after`, or `before` for a delete).
    Field(String),
    /// Debezium's `source.lsn` (never dense: no gaps counted).
    Lsn,
    /// Debezium's `ts_ms`.
    TsMs,
}

/// What to fold: the value mode, the key (`None`: the message key) and the version.
#[derive(Debug, Clone)]
pub struct FoldSpec {
    pub value: ValueMode,
    pub key_field: Option<String>,
    pub version: VersionSource,
}

/// A version value. Numbers compare numerically (integers exactly), strings by their bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// A borrowed version of the message at hand.
#[derive(Debug, Clone, PartialEq)]
enum VersionRef<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
}

impl VersionRef<'_> {
    fn to_owned(&self) -> Version {
        match self {
            VersionRef::Int(i) => Version::Int(*i),
            VersionRef::Float(f) => Version::Float(*f),
            VersionRef::Str(s) => Version::Str(s.to_string()),
            VersionRef::Bool(b) => Version::Bool(*b),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            VersionRef::Int(_) | VersionRef::Float(_) => "number",
            VersionRef::Str(_) => "string",
            VersionRef::Bool(_) => "boolean",
        }
    }
}

fn num_cmp(a: (Option<i64>, f64), b: (Option<i64>, f64)) -> Ordering {
    match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal),
    }
}

/// `a` against `b`; both of one kind (a mix is refused before any comparison).
fn cmp_version(a: &VersionRef<'_>, b: &Version) -> Ordering {
    match (a, b) {
        (VersionRef::Str(x), Version::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (VersionRef::Bool(x), Version::Bool(y)) => x.cmp(y),
        (VersionRef::Int(x), Version::Int(y)) => x.cmp(y),
        (VersionRef::Int(x), Version::Float(y)) => num_cmp((Some(*x), *x as f64), (None, *y)),
        (VersionRef::Float(x), Version::Int(y)) => num_cmp((None, *x), (Some(*y), *y as f64)),
        (VersionRef::Float(x), Version::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

/// NULL lowest.
fn cmp_opt_version(a: Option<&VersionRef<'_>>, b: Option<&Version>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_version(x, y),
    }
}

fn borrow_version(v: &Version) -> VersionRef<'_> {
    match v {
        Version::Int(i) => VersionRef::Int(*i),
        Version::Float(f) => VersionRef::Float(*f),
        Version::Str(s) => VersionRef::Str(Cow::Borrowed(s)),
        Version::Bool(b) => VersionRef::Bool(*b),
    }
}

/// A sample key as the caller shows it (the key column's value).
#[derive(Debug, Clone, PartialEq)]
pub enum SampleKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// an object or array key, as its JSON text
    Json(String),
    /// the message key's bytes
    Bytes(Vec<u8>),
}

/// The stream's health, counted while folding.
#[derive(Debug, Default, Clone)]
pub struct FoldHealth {
    pub events: u64,
    pub tombstones: u64,
    pub undecodable: u64,
    pub undecodable_sample: Vec<String>,
    pub replayed: u64,
    pub replayed_sample: Vec<SampleKey>,
    pub out_of_order: u64,
    pub out_of_order_sample: Vec<SampleKey>,
    /// `None` unless the versions are integers (and not Debezium's `_lsn`).
    pub gaps: Option<u64>,
    pub gaps_sample: Vec<SampleKey>,
    /// the newest message timestamp (ms since the epoch)
    pub newest_ms: Option<i64>,
    /// whether any event carried the key field / the version field (else the caller names it)
    pub key_seen: bool,
    pub version_seen: bool,
}

fn add_sample(sample: &mut Vec<SampleKey>, key: impl FnOnce() -> SampleKey) {
    if sample.len() < SAMPLES {
        let key = key();
        if !sample.contains(&key) {
            sample.push(key);
        }
    }
}

/// What the key at hand was, to show a sample of it as the key column does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Text,
    Int,
    Float,
    Bool,
    Other,
}

/// The winning message of a key, and the key's highest version.
struct Slot {
    max_version: Option<Version>,
    rank: Option<Version>,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    /// the message key then the value, in one buffer (one cache miss, not two, when a winner is
    /// replaced); reused, as a key's winner changes often and its size rarely
    bytes: Vec<u8>,
    key_len: Option<u32>,
    value_len: Option<u32>,
    headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

impl Slot {
    fn take(&mut self, row: &Row<'_>, rank: Option<Version>) {
        self.rank = rank;
        self.partition = row.partition;
        self.offset = row.offset;
        self.timestamp = row.timestamp;
        self.bytes.clear();
        self.bytes.extend_from_slice(row.key.unwrap_or_default());
        self.bytes.extend_from_slice(row.value.unwrap_or_default());
        self.key_len = row.key.map(|k| k.len() as u32);
        self.value_len = row.value.map(|v| v.len() as u32);
        self.headers = row.headers.to_vec();
    }

    fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.bytes[..n as usize])
    }

    fn value(&self) -> Option<&[u8]> {
        let at = self.key_len.unwrap_or(0) as usize;
        self.value_len.map(|n| &self.bytes[at..at + n as usize])
    }
}

/// One message as the fold sees it: polled from librdkafka (`Fold::add`) or a row of a batch of
/// `message_schema()` (`Fold::add_batch`).
pub(crate) struct Row<'a> {
    partition: i32,
    offset: i64,
    /// ms since the epoch (None: no timestamp, or a negative one)
    timestamp: Option<i64>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: RowHeaders<'a>,
}

/// A message's headers, copied only when the message wins its key.
enum RowHeaders<'a> {
    Absent,
    Owned(Vec<(String, Option<Vec<u8>>)>),
    /// row `.1` of a batch's `_headers` column
    Column(&'a ListArray, usize),
}

type HeaderList = Vec<(String, Option<Vec<u8>>)>;

impl RowHeaders<'_> {
    fn to_vec(&self) -> Option<HeaderList> {
        match self {
            RowHeaders::Absent => None,
            RowHeaders::Owned(h) => Some(h.clone()),
            RowHeaders::Column(list, i) => {
                if list.is_null(*i) || list.value_length(*i) == 0 {
                    return None;
                }
                let items = list.value(*i);
                let items = items.as_any().downcast_ref::<StructArray>()?;
                let keys = items.column(0).as_any().downcast_ref::<StringArray>()?;
                let values = items.column(1).as_any().downcast_ref::<BinaryArray>()?;
                Some(
                    (0..items.len())
                        .map(|j| {
                            let value = (!values.is_null(j)).then(|| values.value(j).to_vec());
                            (keys.value(j).to_string(), value)
                        })
                        .collect(),
                )
            }
        }
    }
}

/// `Fold::found` of a key not looked up (or not there) yet.
const NO_SLOT: u32 = u32::MAX;

/// How many rows ahead of the fold a slot, and the message buffer it holds, are prefetched.
const PREFETCH_SLOTS: usize = 16;
const PREFETCH_BYTES: usize = 8;

/// Ask the CPU for the cache lines of `len` bytes at `at` (a hint: never faults, whatever `at`).
#[inline(always)]
fn prefetch_lines(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..len.max(1)).step_by(64) {
        // SAFETY: a prefetch reads nothing and cannot fault
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                at.wrapping_add(line) as *const i8,
                std::arch::x86_64::_MM_HINT_T0,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// A canonical key as the index holds it: up to 22 bytes inline, so that a lookup compares
/// against the table's own memory instead of chasing a pointer to a boxed key (a cache miss per
/// message once the keys outgrow the cache); longer keys boxed.
#[derive(Clone)]
enum IndexKey {
    Inline(u8, [u8; 22]),
    Boxed(Box<[u8]>),
}

impl IndexKey {
    fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= 22 {
            let mut inline = [0u8; 22];
            inline[..bytes.len()].copy_from_slice(bytes);
            IndexKey::Inline(bytes.len() as u8, inline)
        } else {
            IndexKey::Boxed(bytes.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            IndexKey::Inline(len, b) => &b[..*len as usize],
            IndexKey::Boxed(b) => b,
        }
    }
}

// hashed and compared as its bytes, so that a `&[u8]` looks it up (`Borrow`)
impl Hash for IndexKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for IndexKey {}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// The fields picked out of one JSON object.
struct Picked<'a> {
    key: Option<&'a str>,
    version: Option<&'a str>,
    deleted: bool,
    key_seen: bool,
    version_seen: bool,
}

/// What the fold reads out of one message before it looks at its key's state: on a thread of its
/// own in `fold_topic` (parsing the values is a third of the fold's work).
#[derive(Debug, Clone, PartialEq)]
enum Pick {
    /// a null value: a delete of the message key's key
    Tombstone,
    /// not a JSON object
    Undecodable,
    Event {
        /// the version: None when absent or null; Err when an object or array (an error, raised in
        /// order by the fold)
        version: Result<Option<Version>, ()>,
        deleted: bool,
        key_seen: bool,
        version_seen: bool,
        /// the key field's kind, when the value has it
        key_kind: Option<KeyKind>,
    },
}

/// The picks of a batch, one per row, and their canonical keys (`ends[i]`: where row i's key ends
/// in `keys`).
#[derive(Default)]
struct Picks {
    picks: Vec<Pick>,
    keys: Vec<u8>,
    ends: Vec<usize>,
}

impl Picks {
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.keys[start..self.ends[i]]
    }
}

/// Reads the key, the version and the delete marker out of messages (no state: any thread).
#[derive(Debug, Clone)]
struct Reader {
    spec: FoldSpec,
    /// field names picked from a JSON value (json mode: key, version, delete markers)
    names: Vec<String>,
    /// where the key field, the version field and the delete markers sit in `names` (json mode)
    at_key: Option<usize>,
    at_version: Option<usize>,
    at_deleted: Option<usize>,
    at_dunder_op: Option<usize>,
    at_op: Option<usize>,
}

/// The fold's running state.
pub struct Fold {
    spec: FoldSpec,
    reader: Reader,
    /// per key the number of its slot in `slots`: a small entry, so that the table stays in cache
    index: HashMap<IndexKey, u32, ahash::RandomState>,
    slots: Vec<Slot>,
    /// per row of the batch at hand, its key's slot looked up ahead (`NO_SLOT`: none then)
    found: Vec<u32>,
    scratch: Vec<u8>,
    picks: Picks,
    version_kind: Option<&'static str>,
    any_float: bool,
    any_int: bool,
    key_kind: KeyKind,
    pub health: FoldHealth,
    what: String,
}

// slot key tags: the canonical key bytes start with one of these
const KEY_NULL: u8 = 0;
const KEY_SCALAR: u8 = 1;
const KEY_JSON: u8 = 2;
const KEY_BYTES: u8 = 3;

impl Reader {
    fn new(spec: FoldSpec) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        };
        match spec.value {
            ValueMode::Json => {
                if let Some(k) = &spec.key_field {
                    add(k);
                }
                if let VersionSource::Field(v) = &spec.version {
                    add(v);
                }
                for n in ["__deleted", "__op", "op"] {
                    add(n);
                }
            }
            ValueMode::Debezium => {
                for n in ["payload", "op", "after", "before", "source", "ts_ms"] {
                    add(n);
                }
            }
        }
        let at = |n: &str| names.iter().position(|x| x == n);
        let json = spec.value == ValueMode::Json;
        let at_key = spec.key_field.as_deref().filter(|_| json).and_then(at);
        let at_version = match &spec.version {
            VersionSource::Field(v) if json => at(v),
            _ => None,
        };
        let (at_deleted, at_dunder_op, at_op) =
            if json { (at("__deleted"), at("__op"), at("op")) } else { (None, None, None) };
        Self { spec, names, at_key, at_version, at_deleted, at_dunder_op, at_op }
    }

    /// Every row of a batch of `message_schema()`, into `out` (cleared first).
    fn pick_batch(&self, batch: &RecordBatch, out: &mut Picks) -> Result<(), KafkaError> {
        out.picks.clear();
        out.keys.clear();
        out.ends.clear();
        let key = column::<BinaryArray>(batch, 0)?;
        let value = column::<BinaryArray>(batch, 5)?;
        for i in 0..batch.num_rows() {
            let pick = self.pick(opt(key, i), opt(value, i), &mut out.keys);
            out.picks.push(pick);
            out.ends.push(out.keys.len());
        }
        Ok(())
    }

    /// One message: its pick, and its canonical key appended to `keys`.
    fn pick(&self, message_key: Option<&[u8]>, value: Option<&[u8]>, keys: &mut Vec<u8>) -> Pick {
        let Some(payload) = value else {
            // a tombstone: its key from the message key, no version of its own
            tombstone_key(keys, self.spec.key_field.as_deref(), message_key);
            return Pick::Tombstone;
        };
        let mut slots: [Option<&str>; 6] = [None; 6];
        let picked = match self.spec.value {
            ValueMode::Json => self.pick_json(payload, &mut slots),
            ValueMode::Debezium => self.pick_debezium(payload),
        };
        let Some(picked) = picked else {
            return Pick::Undecodable;
        };
        let version = match picked.version.map(scalar) {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Bool(b)) => Ok(Some(Version::Bool(b))),
            Some(Scalar::Int(i)) => Ok(Some(Version::Int(i))),
            Some(Scalar::Float(f)) => Ok(Some(Version::Float(f))),
            Some(Scalar::Str(s)) => Ok(Some(Version::Str(s.into_owned()))),
            Some(Scalar::Json(_)) => Err(()),
        };
        let mut key_kind = None;
        match (&self.spec.key_field, picked.key) {
            (None, _) => bytes_key(keys, message_key),
            (Some(_), None) => keys.push(KEY_NULL),
            (Some(_), Some(raw)) => {
                let s = scalar(raw);
                key_kind = Some(match s {
                    Scalar::Str(_) => KeyKind::Text,
                    Scalar::Int(_) => KeyKind::Int,
                    Scalar::Float(_) => KeyKind::Float,
                    Scalar::Bool(_) => KeyKind::Bool,
                    Scalar::Null | Scalar::Json(_) => KeyKind::Other,
                });
                match s {
                    // a JSON integer's text is its canonical form (but "-0"): not formatted again
                    Scalar::Int(_) if raw != "-0" => {
                        keys.push(KEY_SCALAR);
                        keys.extend_from_slice(raw.as_bytes());
                    }
                    s => scalar_key(keys, s),
                }
            }
        }
        Pick::Event {
            version,
            deleted: picked.deleted,
            key_seen: picked.key_seen,
            version_seen: picked.version_seen,
            key_kind,
        }
    }
    fn pick_json<'a>(&self, payload: &'a [u8], out: &mut [Option<&'a str>; 6]) -> Option<Picked<'a>> {
        let names = &self.names;
        if !pick(payload, names, &mut out[..names.len()]) {
            return None;
        }
        let at = |i: Option<usize>| i.and_then(|i| out[i]);
        let key = at(self.at_key);
        let version = at(self.at_version);
        let deleted = at(self.at_deleted).is_some_and(|r| matches!(r, "true" | "\"true\""))
            || at(self.at_dunder_op).is_some_and(|r| r == "\"d\"")
            || at(self.at_op).is_some_and(|r| r == "\"d\"");
        Some(Picked { key, version, deleted, key_seen: key.is_some(), version_seen: version.is_some() })
    }

    fn pick_debezium<'a>(&self, payload: &'a [u8]) -> Option<Picked<'a>> {
        const NAMES: [&str; 6] = ["payload", "op", "after", "before", "source", "ts_ms"];
        let mut top: [Option<&str>; 6] = [None; 6];
        if !pick(payload, &NAMES, &mut top) {
            return None;
        }
        if let Some(inner) = top[0].filter(|r| r.starts_with('{')) {
            if !pick(inner.as_bytes(), &NAMES, &mut top) {
                return None;
            }
        }
        let deleted = top[1].is_some_and(|r| r == "\"d\"");
        let side = if deleted { top[3] } else { top[2] };
        let mut fields: [Option<&str>; 2] = [None; 2];
        let key_name = self.spec.key_field.as_deref().unwrap_or("");
        let version_name = match &self.spec.version {
            VersionSource::Field(v) => v.as_str(),
            _ => "",
        };
        if let Some(side) = side.filter(|r| r.starts_with('{')) {
            pick(side.as_bytes(), &[key_name, version_name], &mut fields);
            if key_name == version_name {
                fields[1] = fields[0];
            }
        }
        let version = match &self.spec.version {
            VersionSource::None => None,
            VersionSource::Field(_) => fields[1],
            VersionSource::TsMs => top[5],
            VersionSource::Lsn => {
                let mut lsn: [Option<&str>; 1] = [None];
                if let Some(source) = top[4].filter(|r| r.starts_with('{')) {
                    pick(source.as_bytes(), &["lsn"], &mut lsn);
                }
                lsn[0]
            }
        };
        let version_seen = match &self.spec.version {
            VersionSource::Field(_) => fields[1].is_some(),
            _ => true,
        };
        Some(Picked { key: fields[0], version, deleted, key_seen: fields[0].is_some(), version_seen })
    }
}

impl Fold {
    /// `what` names the topic in errors (`kafka HOST:PORT topic T`).
    pub fn new(spec: FoldSpec, what: impl Into<String>) -> Self {
        Self {
            reader: Reader::new(spec.clone()),
            spec,
            index: HashMap::default(),
            slots: Vec::new(),
            found: Vec::new(),
            scratch: Vec::with_capacity(64),
            picks: Picks::default(),
            version_kind: None,
            any_float: false,
            any_int: false,
            key_kind: KeyKind::Other,
            health: FoldHealth::default(),
            what: what.into(),
        }
    }

    /// Keys held (winners and delete markers).
    pub fn keys(&self) -> usize {
        self.slots.len()
    }

    /// Fold one message (in arrival order).
    pub fn add<M: Message>(&mut self, msg: &M) -> Result<(), KafkaError> {
        let headers = msg.headers().filter(|h| h.count() > 0).map(|headers| {
            headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()
        });
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        let pick = self.reader.pick(msg.key(), msg.payload(), &mut keys);
        let row = Row {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis().filter(|t| *t >= 0),
            key: msg.key(),
            value: msg.payload(),
            headers: headers.map_or(RowHeaders::Absent, RowHeaders::Owned),
        };
        let out = self.settle(&row, &pick, &keys, NO_SLOT);
        self.scratch = keys;
        out
    }

    /// Fold every message of a batch of `message_schema()` (in arrival order).
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), KafkaError> {
        let mut picks = std::mem::take(&mut self.picks);
        let out = self.reader.pick_batch(batch, &mut picks).and_then(|()| self.add_picked(batch, &picks));
        self.picks = picks;
        out
    }

    /// Fold a batch whose rows were picked already (`Reader::pick_batch`).
    fn add_picked(&mut self, batch: &RecordBatch, picks: &Picks) -> Result<(), KafkaError> {
        let key = column::<BinaryArray>(batch, 0)?;
        let partition = column::<Int32Array>(batch, 1)?;
        let offset = column::<Int64Array>(batch, 2)?;
        let timestamp = column::<TimestampMillisecondArray>(batch, 3)?;
        let headers = column::<ListArray>(batch, 4)?;
        let value = column::<BinaryArray>(batch, 5)?;
        let headers_present = headers.null_count() < headers.len();
        // every row's slot looked up before any is folded: the lookups do not wait on each other,
        // so their cache misses overlap, and each slot (and its message buffer) is prefetched a few
        // rows before it is used (row by row, a miss per lookup and per copy stalled the fold for
        // most of its time)
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        found
            .extend((0..picks.picks.len()).map(|i| self.index.get(picks.key(i)).copied().unwrap_or(NO_SLOT)));
        for (i, pick) in picks.picks.iter().enumerate() {
            if let Some(&at) = found.get(i + PREFETCH_SLOTS) {
                if let Some(slot) = self.slots.get(at as usize) {
                    prefetch_lines(slot as *const Slot as *const u8, std::mem::size_of::<Slot>());
                }
            }
            if let Some(&at) = found.get(i + PREFETCH_BYTES) {
                if let Some(slot) = self.slots.get(at as usize) {
                    prefetch_lines(slot.bytes.as_ptr(), slot.bytes.len());
                }
            }
            let row = Row {
                partition: partition.value(i),
                offset: offset.value(i),
                timestamp: (!timestamp.is_null(i)).then(|| timestamp.value(i)),
                key: opt(key, i),
                value: opt(value, i),
                headers: if headers_present { RowHeaders::Column(headers, i) } else { RowHeaders::Absent },
            };
            if let Err(e) = self.settle(&row, pick, picks.key(i), found[i]) {
                self.found = found;
                return Err(e);
            }
        }
        self.found = found;
        Ok(())
    }

    /// One picked message against its key's state, and the health.
    /// `found`: the key's slot if it was looked up already (else `NO_SLOT`).
    fn settle(&mut self, msg: &Row<'_>, pick: &Pick, key: &[u8], found: u32) -> Result<(), KafkaError> {
        self.health.events += 1;
        if let Some(t) = msg.timestamp {
            self.health.newest_ms = Some(self.health.newest_ms.map_or(t, |n| n.max(t)));
        }
        let (version, deleted, key_kind) = match pick {
            Pick::Tombstone => {
                self.health.tombstones += 1;
                self.health.key_seen = true;
                return self.apply(msg, key, found, None, true);
            }
            Pick::Undecodable => {
                self.health.undecodable += 1;
                if self.health.undecodable_sample.len() < SAMPLES {
                    self.health.undecodable_sample.push(format!("{}/{}", msg.partition, msg.offset));
                }
                return Ok(());
            }
            Pick::Event { version, deleted, key_seen, version_seen, key_kind } => {
                self.note_seen(*key_seen, *version_seen);
                (version, *deleted, *key_kind)
            }
        };
        if deleted {
            self.health.tombstones += 1;
        }
        let version = match version {
            Err(()) => {
                return Err(KafkaError::Schema(format!(
                    "{}: the version field is an object or array at partition {} offset {}",
                    self.what, msg.partition, msg.offset
                )))
            }
            Ok(None) => None,
            Ok(Some(v)) => Some(self.version_of(borrow_version(v), msg)?),
        };
        if let Some(kind) = key_kind {
            self.key_kind = kind;
        }
        self.apply(msg, key, found, version, deleted)
    }

    fn note_seen(&mut self, key: bool, version: bool) {
        self.health.key_seen |= key;
        self.health.version_seen |= version;
    }

    /// A version, checked against the kinds seen before (one kind per topic).
    fn version_of<'a>(&mut self, v: VersionRef<'a>, msg: &Row<'_>) -> Result<VersionRef<'a>, KafkaError> {
        match self.version_kind {
            None => self.version_kind = Some(v.kind()),
            Some(kind) if kind != v.kind() => {
                return Err(KafkaError::Schema(format!(
                    "{}: the version field mixes types: a {kind} first, a {} at partition {} offset {}",
                    self.what,
                    v.kind(),
                    msg.partition,
                    msg.offset
                )))
            }
            _ => {}
        }
        match v {
            VersionRef::Float(_) => self.any_float = true,
            VersionRef::Int(_) => self.any_int = true,
            _ => {}
        }
        Ok(v)
    }

    fn apply(
        &mut self,
        msg: &Row<'_>,
        key: &[u8],
        found: u32,
        version: Option<VersionRef<'_>>,
        deleted: bool,
    ) -> Result<(), KafkaError> {
        let dense = !matches!(self.spec.version, VersionSource::Lsn | VersionSource::None);
        let at = if found != NO_SLOT { Some(found) } else { self.index.get(key).copied() };
        let Some(slot) = at.map(|at| &mut self.slots[at as usize]) else {
            let mut slot = Slot {
                max_version: version.as_ref().map(VersionRef::to_owned),
                rank: None,
                partition: 0,
                offset: 0,
                timestamp: None,
                bytes: Vec::new(),
                key_len: None,
                value_len: None,
                headers: None,
            };
            // a first event: no earlier version, so a delete ranks at its own version (or NULL)
            slot.take(msg, version.as_ref().map(VersionRef::to_owned));
            self.index.insert(IndexKey::new(key), self.slots.len() as u32);
            self.slots.push(slot);
            return Ok(());
        };
        if let (Some(v), Some(prev)) = (&version, &slot.max_version) {
            let order = cmp_version(v, prev);
            let health = &mut self.health;
            let kind = self.key_kind;
            let sample = || sample_key(key, kind);
            match order {
                Ordering::Less => {
                    health.out_of_order += 1;
                    add_sample(&mut health.out_of_order_sample, sample);
                }
                Ordering::Equal => {
                    health.replayed += 1;
                    add_sample(&mut health.replayed_sample, sample);
                }
                Ordering::Greater => {
                    if let (true, VersionRef::Int(x), Version::Int(y)) = (dense, v, prev) {
                        if (*x as i128) > (*y as i128) + 1 {
                            *health.gaps.get_or_insert(0) += 1;
                            add_sample(&mut health.gaps_sample, sample);
                        }
                    }
                }
            }
        }
        // the rank: its own version, or for a delete without one the highest version before it
        let rank_ref: Option<VersionRef<'_>> = match (&version, deleted) {
            (Some(v), _) => Some(v.clone()),
            (None, true) => slot.max_version.as_ref().map(borrow_version),
            (None, false) => None,
        };
        let wins = match cmp_opt_version(rank_ref.as_ref(), slot.rank.as_ref()) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => (msg.partition, msg.offset) > (slot.partition, slot.offset),
        };
        if wins {
            let rank = rank_ref.as_ref().map(VersionRef::to_owned);
            slot.take(msg, rank);
        }
        if let Some(v) = &version {
            if slot.max_version.as_ref().is_none_or(|m| cmp_version(v, m) == Ordering::Greater) {
                slot.max_version = Some(v.to_owned());
            }
        }
        Ok(())
    }

    /// The winners (delete markers included: the caller decodes them to tell), in (partition,
    /// offset) order, as one batch of `message_schema()`; and the health.
    pub fn finish(mut self) -> (RecordBatch, FoldHealth) {
        let dense = !matches!(self.spec.version, VersionSource::Lsn | VersionSource::None);
        if dense && self.any_int && !self.any_float {
            self.health.gaps.get_or_insert(0);
        } else {
            self.health.gaps = None;
            self.health.gaps_sample.clear();
        }
        drop(std::mem::take(&mut self.index));
        let mut order: Vec<Slot> = std::mem::take(&mut self.slots);
        order.sort_unstable_by_key(|s| (s.partition, s.offset));
        let mut columns = Builders::new(order.len());
        for s in &order {
            columns.append_row(s.key(), s.partition, s.offset, s.timestamp, s.value(), |header| {
                for (name, value) in s.headers.iter().flatten() {
                    header(name, value.as_deref());
                }
            });
        }
        let batch = columns.finish(&message_schema());
        (batch, self.health)
    }
}

fn column<T: 'static>(batch: &RecordBatch, i: usize) -> Result<&T, KafkaError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| KafkaError::Schema(format!("message batch column {i} has another type")))
}

fn opt(a: &BinaryArray, i: usize) -> Option<&[u8]> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Message batches handed from the polling thread to the fold: small, so that the fold starts at
/// once and the batches in flight (`FOLD_QUEUE` of them) weigh little beside the keys' state.
const FOLD_BATCH_ROWS: usize = 8192;
const FOLD_BATCH_BYTES: usize = 4 << 20;
const FOLD_QUEUE: usize = 4;

/// Read every message of `request` and fold it: librdkafka is polled into message batches on a
/// thread of its own while this thread folds the batches already polled, so that the polling (and
/// the waits on the network) overlap the fold. `cancel` is looked at between batches, which come
/// at least every 100 ms.
pub fn fold_topic(
    request: FetchRequest,
    spec: FoldSpec,
    what: impl Into<String>,
    cancel: &AtomicBool,
) -> Result<(RecordBatch, FoldHealth), KafkaError> {
    let request = FetchRequest {
        batch_rows: FOLD_BATCH_ROWS,
        batch_bytes: FOLD_BATCH_BYTES,
        heartbeat: Duration::from_millis(100),
        ..request
    };
    let mut fold = Fold::new(spec, what);
    let reader = fold.reader.clone();
    let batches = FetchStream::open(request)?.prefetch(FOLD_QUEUE);
    let (send, picked) = mpsc::sync_channel::<Result<(RecordBatch, Picks), KafkaError>>(FOLD_QUEUE);
    std::thread::scope(|scope| {
        // the values parsed on a thread of their own, a batch ahead of the fold
        scope.spawn(move || {
            for batch in batches {
                let item = batch.and_then(|batch| {
                    let mut picks = Picks::default();
                    reader.pick_batch(&batch, &mut picks).map(|()| (batch, picks))
                });
                let failed = item.is_err();
                if send.send(item).is_err() || failed {
                    return; // the fold is gone (or this is the last word): the prefetch stops too
                }
            }
        });
        let folded = (|| {
            for item in picked.iter() {
                if cancel.load(AtomicOrdering::Relaxed) {
                    return Err(KafkaError::Cancelled);
                }
                let (batch, picks) = item?;
                fold.add_picked(&batch, &picks)?;
            }
            Ok(())
        })();
        drop(picked); // the picking thread's next send fails: it ends (and the scope with it)
        folded
    })?;
    Ok(fold.finish())
}

/// A JSON scalar as read from its raw text.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Json(&'a str),
}

fn scalar(text: &str) -> Scalar<'_> {
    match text.as_bytes().first() {
        None | Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'"') => {
            if text.contains('\\') {
                Scalar::Str(Cow::Owned(serde_json::from_str::<String>(text).unwrap_or_default()))
            } else {
                Scalar::Str(Cow::Borrowed(&text[1..text.len() - 1]))
            }
        }
        Some(b'{' | b'[') => Scalar::Json(text),
        _ => match text.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Float(text.parse::<f64>().unwrap_or(f64::NAN)),
        },
    }
}

/// A key field's value as canonical bytes. Strings and numbers share one text form: a key column
/// has one type, and a tombstone's key (from the message key) is cast to it (`5` matches "5").
fn scalar_key(out: &mut Vec<u8>, s: Scalar<'_>) {
    use std::io::Write;
    match s {
        Scalar::Null => out.push(KEY_NULL),
        Scalar::Bool(b) => {
            out.push(KEY_SCALAR);
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        Scalar::Int(i) => {
            out.push(KEY_SCALAR);
            let _ = write!(out, "{i}");
        }
        Scalar::Float(f) => {
            out.push(KEY_SCALAR);
            if f.fract() == 0.0 && f.abs() < 9.0e18 {
                let _ = write!(out, "{}", f as i64);
            } else {
                let _ = write!(out, "{f}");
            }
        }
        Scalar::Str(s) => {
            out.push(KEY_SCALAR);
            out.extend_from_slice(s.as_bytes());
        }
        Scalar::Json(t) => {
            out.push(KEY_JSON);
            out.extend_from_slice(t.as_bytes());
        }
    }
}

fn bytes_key(out: &mut Vec<u8>, key: Option<&[u8]>) {
    match key {
        None => out.push(KEY_NULL),
        Some(k) => {
            out.push(KEY_BYTES);
            out.extend_from_slice(k);
        }
    }
}

/// A tombstone's key: the message key itself (no key field), else the key field of a JSON-object
/// message key (inside Debezium's `payload` when there is one), a JSON scalar key's value, or the
/// key's text (as `_key_from_message_key` in read.py). Appended to `out`.
fn tombstone_key(out: &mut Vec<u8>, key_field: Option<&str>, key: Option<&[u8]>) {
    let Some(field) = key_field else {
        return bytes_key(out, key);
    };
    let Some(key) = key else {
        return out.push(KEY_NULL);
    };
    match serde_json::from_slice::<&RawValue>(key) {
        Err(_) => {
            out.push(KEY_SCALAR);
            out.extend_from_slice(String::from_utf8_lossy(key).as_bytes());
        }
        Ok(raw) if raw.get().starts_with('{') => {
            let mut top: [Option<&str>; 2] = [None; 2];
            pick(raw.get().as_bytes(), &["payload", field], &mut top);
            if let Some(payload) = top[0].filter(|r| r.starts_with('{')) {
                let mut inner: [Option<&str>; 1] = [None];
                pick(payload.as_bytes(), &[field], &mut inner);
                top[1] = inner[0];
            }
            match top[1] {
                None => out.push(KEY_NULL),
                Some(v) => scalar_key(out, scalar(v)),
            }
        }
        Ok(raw) => scalar_key(out, scalar(raw.get())),
    }
}

/// The caller's view of a canonical key (for the health samples).
fn sample_key(key: &[u8], kind: KeyKind) -> SampleKey {
    let (tag, body) = (key[0], &key[1..]);
    let text = || String::from_utf8_lossy(body).into_owned();
    match (tag, kind) {
        (KEY_NULL, _) => SampleKey::Null,
        (KEY_BYTES, _) => SampleKey::Bytes(body.to_vec()),
        (KEY_JSON, _) => SampleKey::Json(text()),
        (_, KeyKind::Int) => text().parse().map_or_else(|_| SampleKey::Str(text()), SampleKey::Int),
        (_, KeyKind::Float) => text().parse().map_or_else(|_| SampleKey::Str(text()), SampleKey::Float),
        (_, KeyKind::Bool) => SampleKey::Bool(body == b"true"),
        _ => SampleKey::Str(text()),
    }
}

/// Pick the values of `names` out of the JSON object `text` (the rest is skipped unparsed beyond
/// validation). False when `text` is not one JSON object.
fn pick<'de, S: AsRef<str>>(text: &'de [u8], names: &[S], out: &mut [Option<&'de str>]) -> bool {
    out.iter_mut().for_each(|o| *o = None);
    if let Some(answer) = crate::scan::pick_fields(text, names, out) {
        return answer;
    }
    pick_serde(text, names, out)
}

/// `pick` by serde_json (every form the fast path leaves undecided).
fn pick_serde<'de, S: AsRef<str>>(text: &'de [u8], names: &[S], out: &mut [Option<&'de str>]) -> bool {
    out.iter_mut().for_each(|o| *o = None);
    let mut de = serde_json::Deserializer::from_slice(text);
    Picker { names, out }.deserialize(&mut de).is_ok() && de.end().is_ok()
}

struct Picker<'n, 'o, 'de, S> {
    names: &'n [S],
    out: &'o mut [Option<&'de str>],
}

impl<'de, S: AsRef<str>> DeserializeSeed<'de> for Picker<'_, '_, 'de, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: AsRef<str>> Visitor<'de> for Picker<'_, '_, 'de, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<FieldName<'de>>()? {
            match self.names.iter().position(|n| n.as_ref() == name.0.as_ref()) {
                Some(i) => self.out[i] = Some(map.next_value::<&'de RawValue>()?.get()),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object's field name, borrowed unless it holds escapes.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

    fn msg(partition: i32, offset: i64, key: Option<&str>, value: Option<&str>) -> OwnedMessage {
        OwnedMessage::new(
            value.map(|v| v.as_bytes().to_vec()),
            key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::CreateTime(1000 + offset),
            partition,
            offset,
            None::<OwnedHeaders>,
        )
    }

    fn json_spec() -> FoldSpec {
        FoldSpec {
            value: ValueMode::Json,
            key_field: Some("id".into()),
            version: VersionSource::Field("v".into()),
        }
    }

    /// The winners as (partition, offset), in (partition, offset) order.
    fn winners(fold: Fold) -> (Vec<(i32, i64)>, FoldHealth) {
        let (batch, health) = fold.finish();
        let p = batch.column(1).as_any().downcast_ref::<arrow_array::Int32Array>().unwrap();
        let o = batch.column(2).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
        ((0..batch.num_rows()).map(|i| (p.value(i), o.value(i))).collect(), health)
    }

    fn fold_all(spec: FoldSpec, msgs: &[OwnedMessage]) -> (Vec<(i32, i64)>, FoldHealth) {
        let mut fold = Fold::new(spec, "t");
        for m in msgs {
            fold.add(m).unwrap();
        }
        winners(fold)
    }

    #[test]
    fn the_highest_version_wins_not_the_last_to_arrive() {
        let msgs = [
            msg(0, 0, Some("1"), Some(r#"{"id":1,"v":2}"#)),
            msg(0, 1, Some("1"), Some(r#"{"id":1,"v":5}"#)),
            msg(0, 2, Some("1"), Some(r#"{"id":1,"v":3}"#)),
            msg(0, 3, Some("1"), Some(r#"{"id":1,"v":5}"#)),
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!(w, vec![(0, 3)], "a tie goes to the later offset");
        assert_eq!((h.out_of_order, h.replayed, h.gaps), (1, 1, Some(1)));
        assert_eq!(h.out_of_order_sample, vec![SampleKey::Int(1)]);
    }

    #[test]
    fn null_versions_rank_lowest_and_ties_go_to_the_higher_partition() {
        let msgs = [
            msg(1, 0, Some("1"), Some(r#"{"id":1,"v":1}"#)),
            msg(0, 9, Some("1"), Some(r#"{"id":1,"v":null}"#)),
            msg(0, 10, Some("1"), Some(r#"{"id":1,"v":1}"#)),
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!(w, vec![(1, 0)]);
        assert_eq!(h.replayed, 1);
    }

    #[test]
    fn a_delete_ranks_at_the_highest_version_before_it_and_stays_as_a_marker() {
        let msgs = [
            msg(0, 0, Some("1"), Some(r#"{"id":1,"v":4}"#)),
            msg(0, 1, Some("1"), None), // tombstone: ranks at 4, later
            msg(0, 2, Some("1"), Some(r#"{"id":1,"v":3}"#)), // older: no resurrection
            msg(0, 3, Some("2"), Some(r#"{"id":2,"v":1}"#)),
            msg(0, 4, Some("2"), Some(r#"{"id":2,"__deleted":"true"}"#)),
            msg(0, 5, Some("2"), Some(r#"{"id":2,"v":2}"#)), // newer: the key is back
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!(w, vec![(0, 1), (0, 5)], "the marker of key 1 and key 2's newer event");
        assert_eq!((h.tombstones, h.out_of_order), (2, 1));
    }

    /// The messages as one batch of `message_schema()` (no headers).
    fn batch_of(msgs: &[OwnedMessage]) -> RecordBatch {
        let mut columns = Builders::new(msgs.len());
        for m in msgs {
            let timestamp = m.timestamp().to_millis();
            columns.append_row(m.key(), m.partition(), m.offset(), timestamp, m.payload(), |_| {});
        }
        columns.finish(&message_schema())
    }

    #[test]
    fn a_batch_picked_ahead_folds_as_its_messages_one_by_one() {
        // tombstones between events: each row's key is its own in the batch's shared key buffer
        let msgs = [
            msg(0, 0, Some("1"), Some(r#"{"id":1,"v":4}"#)),
            msg(0, 1, Some("22"), Some(r#"{"id":22,"v":1}"#)),
            msg(0, 2, Some("1"), None),
            msg(0, 3, Some("333"), Some(r#"{"id":"333","v":7}"#)),
            msg(0, 4, Some("22"), None),
            msg(0, 5, Some("22"), Some(r#"{"id":22,"v":1}"#)),
            msg(0, 6, Some("333"), Some("not json")),
            msg(0, 7, Some("333"), Some(r#"{"id":"333","v":9}"#)),
        ];
        let (one_by_one, h1) = fold_all(json_spec(), &msgs);
        let mut fold = Fold::new(json_spec(), "t");
        fold.add_batch(&batch_of(&msgs[..3])).unwrap();
        fold.add_batch(&batch_of(&msgs[3..])).unwrap();
        let (batched, h2) = winners(fold);
        assert_eq!(batched, one_by_one);
        assert_eq!(batched, vec![(0, 2), (0, 5), (0, 7)]);
        assert_eq!(
            (h2.tombstones, h2.undecodable, h2.replayed, h2.gaps),
            (h1.tombstones, h1.undecodable, h1.replayed, h1.gaps)
        );
        assert_eq!((h2.tombstones, h2.undecodable, h2.replayed, h2.gaps), (2, 1, 1, Some(1)));
    }

    #[test]
    fn versions_compare_numerically_and_strings_bytewise() {
        let msgs = [
            msg(0, 0, None, Some(r#"{"id":"a","v":10}"#)),
            msg(0, 1, None, Some(r#"{"id":"a","v":9.5}"#)),
            msg(0, 2, None, Some(r#"{"id":"b","v":2}"#)),
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!(w, vec![(0, 0), (0, 2)]);
        assert_eq!(h.gaps, None, "a float among the versions: no dense sequence");
        let msgs = [
            msg(0, 0, None, Some(r#"{"id":"a","v":"2026-01-10"}"#)),
            msg(0, 1, None, Some(r#"{"id":"a","v":"2026-01-09"}"#)),
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!((w, h.out_of_order, h.gaps), (vec![(0, 0)], 1, None));
    }

    #[test]
    fn a_mix_of_numbers_and_strings_is_a_schema_error() {
        let mut fold = Fold::new(json_spec(), "t");
        fold.add(&msg(0, 0, None, Some(r#"{"id":1,"v":1}"#))).unwrap();
        match fold.add(&msg(0, 1, None, Some(r#"{"id":1,"v":"2"}"#))) {
            Err(KafkaError::Schema(m)) => assert!(m.contains("mixes") && m.contains("offset 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undecodable_values_are_counted_and_skipped() {
        let msgs = [
            msg(0, 0, None, Some("not json")),
            msg(0, 1, None, Some("[1]")),
            msg(0, 2, None, Some(r#"{"id":1}"#)),
        ];
        let (w, h) = fold_all(json_spec(), &msgs);
        assert_eq!(w, vec![(0, 2)]);
        assert_eq!(
            (h.events, h.undecodable, h.undecodable_sample.clone()),
            (3, 2, vec!["0/0".into(), "0/1".into()])
        );
    }

    #[test]
    fn debezium_deletes_take_before_and_tombstones_the_message_key() {
        let spec = FoldSpec {
            value: ValueMode::Debezium,
            key_field: Some("id".into()),
            version: VersionSource::Lsn,
        };
        let msgs = [
            msg(
                0,
                0,
                Some(r#"{"id":7}"#),
                Some(r#"{"payload":{"op":"c","after":{"id":7},"source":{"lsn":10}}}"#),
            ),
            msg(
                0,
                1,
                Some(r#"{"id":7}"#),
                Some(r#"{"op":"d","before":{"id":7},"after":null,"source":{"lsn":20}}"#),
            ),
            msg(0, 2, Some(r#"{"payload":{"id":7}}"#), None),
            msg(0, 3, Some(r#"{"id":8}"#), Some(r#"{"op":"u","after":{"id":8},"source":{"lsn":15}}"#)),
        ];
        let (w, h) = fold_all(spec, &msgs);
        assert_eq!(w, vec![(0, 2), (0, 3)], "the tombstone ranks at lsn 20 and comes later");
        assert_eq!((h.tombstones, h.gaps), (2, None));
    }

    /// The fast picker and serde_json agree on every value the fast one decides: crafted edge
    /// cases, then thousands of random byte edits of valid objects (a fixed seed).
    #[test]
    fn the_fast_picker_decides_as_serde_json_does() {
        let names = ["id", "v", "op", "__deleted"];
        let decided = std::cell::Cell::new([0usize; 2]);
        let check = |text: &[u8]| {
            let mut fast: [Option<&str>; 4] = [None; 4];
            let mut slow: [Option<&str>; 4] = [None; 4];
            let ok = pick_serde(text, &names, &mut slow);
            if let Some(answer) = crate::scan::pick_fields(text, &names, &mut fast) {
                let shown = String::from_utf8_lossy(text);
                assert_eq!(answer, ok, "{shown}");
                let mut d = decided.get();
                d[usize::from(answer)] += 1;
                decided.set(d);
                if ok {
                    assert_eq!(fast, slow, "{shown}");
                }
            }
        };
        let cases: &[&str] = &[
            r#"{"id":1,"v":2}"#,
            r#" { "id" : "a\"b" , "v" : -0.5e+3 , "x" : [1, {"y": [true, false, null]}], "op": "d" } "#,
            r#"{"id":1,"id":2}"#,
            r#"{}"#,
            r#"{"id":01}"#,
            r#"{"id":1.}"#,
            r#"{"id":1e}"#,
            r#"{"id":-}"#,
            r#"{"id":1,}"#,
            r#"{"id":[1,]}"#,
            r#"{"id":tru}"#,
            r#"{"id":nulll}"#,
            r#"{"id":1} x"#,
            r#"{"id":1}{"#,
            r#"{"i\u0064":1}"#,
            r#"{"id":"\u00e9"}"#,
            r#"{"id":"\q"}"#,
            "{\"id\":\"a\tb\"}",
            r#"{"id":"é","v":"ü"}"#,
            r#"{"id" 1}"#,
            r#"{id:1}"#,
            r#"[1]"#,
            r#""s""#,
            "",
            "not json",
            r#"{"id":1"#,
            r#"{"id":{"a":{"b":{"c":[[[[]]]]}}}}"#,
        ];
        for c in cases {
            check(c.as_bytes());
        }
        check(&[b'{', b'"', b'i', b'd', b'"', b':', b'"', 0xff, b'"', b'}']);
        let alphabet = b"{}[]\":,.-+eE0129tfnul \\/x\t\n";
        let seeds = [
            r#"{"event_id":"e1","id":17,"v":3,"name":"product 17","price":16.99,"in_stock":true}"#,
            r#"{"id":"sku-1","v":null,"tags":["a","b\"c"],"nested":{"x":[1,2.5e3,{"y":null}]},"op":"d"}"#,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..20_000 {
            let mut text = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(text.len());
                match next(3) {
                    0 => text[at] = alphabet[next(alphabet.len())],
                    1 => text.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        text.remove(at);
                    }
                }
            }
            check(&text);
        }
        // the fast path decides most edits both ways (not a test of serde_json alone)
        let [rejected, accepted] = decided.get();
        assert!(rejected > 100 && accepted > 1000, "{rejected} rejected, {accepted} accepted");
    }

    #[test]
    fn tombstone_keys_match_number_and_text_keys() {
        let mut out = Vec::new();
        tombstone_key(&mut out, Some("id"), Some(b"5"));
        let mut body = Vec::new();
        scalar_key(&mut body, Scalar::Int(5));
        assert_eq!(out, body);
        out.clear();
        tombstone_key(&mut out, Some("id"), Some(b"sku-1"));
        body.clear();
        scalar_key(&mut body, Scalar::Str(Cow::Borrowed("sku-1")));
        assert_eq!(out, body);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// This thread's CPU time (ns): wall time on a shared machine counts the others' turns.
    fn cpu_ns() -> u128 {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec to fill
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
    }

    /// `cargo test --release -p seamline-kafka -- --ignored --nocapture pick_timing`
    #[test]
    #[ignore]
    fn pick_timing() {
        let values: Vec<String> = (0..200_000)
            .map(|i| {
                let k = (i * 7919) % 100_000;
                format!(
                    r#"{{"event_id":"e{i}","id":{k},"version":{},"name":"product {k}","price":{}.99,"in_stock":true}}"#,
                    i / 7,
                    k % 997
                )
            })
            .collect();
        let names = ["id", "version", "__deleted", "__op", "op"];
        for (label, fast) in [("fast", true), ("serde", false), ("fast", true), ("serde", false)] {
            let t = cpu_ns();
            let mut n = 0usize;
            for v in &values {
                let mut out: [Option<&str>; 5] = [None; 5];
                let ok = if fast {
                    pick(v.as_bytes(), &names, &mut out)
                } else {
                    pick_serde(v.as_bytes(), &names, &mut out)
                };
                n += usize::from(ok) + out[0].map_or(0, str::len);
            }
            let ns = (cpu_ns() - t) as f64 / values.len() as f64;
            println!("{label}: {ns:.0} ns per value ({n})");
        }
        let reader = Reader::new(FoldSpec {
            value: ValueMode::Json,
            key_field: Some("id".into()),
            version: VersionSource::Field("version".into()),
        });
        let mut keys = Vec::new();
        let t = cpu_ns();
        for v in &values {
            keys.clear();
            std::hint::black_box(reader.pick(Some(b"1"), Some(v.as_bytes()), &mut keys));
        }
        println!("Reader::pick: {:.0} ns per value", (cpu_ns() - t) as f64 / values.len() as f64);
    }
}
