//! One search response parsed straight into the columns' Arrow builders: simd-json indexes the page
//! (its SIMD pass finds every string, number and bracket at once, the page's strings unescaped in
//! place), then a serde visitor walks `hits.hits[]` on that tape and hands each `_source` value a
//! column reads to that column's builder (a string borrowed from the page, a number, a boolean),
//! without building a `serde_json::Value` tree; every other key is skipped without allocating. A
//! column missing from a document is NULL. (serde_json's byte-at-a-time scan of the same visitor
//! cost ~1.4x the CPU: 1M documents of bench_products, ~1.2 against ~0.85 us per hit.)
//!
//! A dotted column path `a.b.c` is the literal key `a.b.c` first, else a walk through the object
//! under `a`. The keys such columns walk through (and a key more than one column reads) are the
//! exception: they are kept as parsed values for the hit and converted when the hit ends.

use std::fmt;

use memchr::memmem;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use simd_json::{Buffers, Tape};

use crate::convert::{Builder, Builders, Column, Datum, Kind};

/// Where the value of a kept `_source` key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Straight into this column's builder.
    Direct(usize),
    /// Kept whole for the hit (slot index), for the columns that read or walk through it.
    Kept(usize),
}

/// How a column that got no direct value in a hit is filled when the hit ends.
#[derive(Debug, Clone, Default)]
struct Fallback {
    /// The slot of its literal key, when that key is kept whole.
    literal: Option<usize>,
    /// For a dotted path: the slot of its first segment and the segments below it.
    walk: Option<(usize, Vec<String>)>,
}

/// Which `_source` keys are read, and where each column finds its value.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    keys: Vec<(String, Target)>,
    kept: usize,
    /// Per column (`None`: the hit's `_id`).
    fallbacks: Vec<Option<Fallback>>,
    /// The columns of the hit's `_id`.
    ids: Vec<usize>,
    paths: Vec<String>,
}

impl SourcePlan {
    pub fn new(columns: &[Column]) -> SourcePlan {
        fn literal(c: &Column) -> Option<&str> {
            (c.kind != Kind::Id).then_some(c.path.as_str())
        }
        fn first(c: &Column) -> Option<&str> {
            literal(c).and_then(|p| p.split_once('.')).map(|(first, _)| first)
        }
        let mut keys: Vec<(String, Target)> = Vec::new();
        let mut kept = 0;
        let mut target = |key: &str| -> Target {
            if let Some((_, t)) = keys.iter().find(|(k, _)| k == key) {
                return *t;
            }
            let readers = columns.iter().filter(|c| literal(c) == Some(key)).count();
            let walkers = columns.iter().filter(|c| first(c) == Some(key)).count();
            let t = match columns.iter().position(|c| literal(c) == Some(key)) {
                Some(column) if readers == 1 && walkers == 0 => Target::Direct(column),
                _ => {
                    kept += 1;
                    Target::Kept(kept - 1)
                }
            };
            keys.push((key.to_string(), t));
            t
        };
        let mut fallbacks = Vec::new();
        for column in columns {
            let Some(path) = literal(column) else {
                fallbacks.push(None);
                continue;
            };
            let mut fallback = Fallback::default();
            if let Target::Kept(slot) = target(path) {
                fallback.literal = Some(slot);
            }
            if let Some((head, rest)) = path.split_once('.') {
                if let Target::Kept(slot) = target(head) {
                    fallback.walk = Some((slot, rest.split('.').map(str::to_string).collect()));
                }
            }
            fallbacks.push(Some(fallback));
        }
        SourcePlan {
            keys,
            kept,
            fallbacks,
            ids: (0..columns.len()).filter(|&c| columns[c].kind == Kind::Id).collect(),
            paths: columns.iter().map(|c| c.path.clone()).collect(),
        }
    }

    /// The target of a `_source` key; `guess` is where the previous key matched (documents of one
    /// index mostly list their keys in the same order), advanced past a match.
    fn target(&self, key: &str, guess: &mut usize) -> Option<Target> {
        if let Some((k, t)) = self.keys.get(*guess) {
            if k == key {
                *guess += 1;
                return Some(*t);
            }
        }
        let at = self.keys.iter().position(|(k, _)| k == key)?;
        *guess = at + 1;
        Some(self.keys[at].1)
    }
}

/// Why a page did not parse.
#[derive(Debug)]
pub enum PageError {
    /// Not the JSON of a search response: the parser's message.
    Json(String),
    /// A value does not convert to its column's type: the message names the field.
    Value(String),
}

/// What a parsed page added to the builders.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub rows: usize,
    /// The last hit's sort values (empty when it has none; None: no hits).
    pub last_sort: Option<Vec<Value>>,
}

/// Parses `{"hits": {"hits": [...]}}` (anything else ignored), appending one row per hit to
/// `builders`. On an error the builders hold a partial page: the stream ends there. `bytes` is
/// scratch afterwards (strings are unescaped in place, padding appended).
pub fn parse(
    bytes: &mut Vec<u8>,
    parser: &mut Parser,
    plan: &SourcePlan,
    builders: &mut Builders,
) -> Result<Page, PageError> {
    // the padding lets simd-json index the page where it is, not in a padded copy
    let len = bytes.len();
    bytes.resize(len + simd_json::INPUT_PADDING, b' ');
    let mut tape = std::mem::replace(&mut parser.tape, Tape(Vec::new())).reset();
    if let Err(e) = simd_json::fill_tape_padded(bytes, len, &mut parser.buffers, &mut tape) {
        parser.tape = tape.reset();
        return Err(PageError::Json(e.to_string()));
    }
    let mut de = simd_json::Deserializer::from_tape(tape);
    let page = walk(&mut de, plan, builders);
    parser.tape = de.into_tape().reset();
    page
}

/// The parser's buffers, kept from page to page: a fresh tape per page (~20 bytes per JSON token,
/// megabytes a page) costs more in page faults than the parse saves.
pub struct Parser {
    buffers: Buffers,
    tape: Tape<'static>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser { buffers: Buffers::default(), tape: Tape(Vec::new()) }
    }
}

fn walk<'de>(
    de: &mut simd_json::Deserializer<'de>,
    plan: &SourcePlan,
    builders: &mut Builders,
) -> Result<Page, PageError> {
    let mut state = State {
        plan,
        columns: &mut builders.columns,
        kept: vec![None; plan.kept],
        rows: 0,
        scratch: String::new(),
        failure: None,
        sort: Vec::new(),
        last_sort: Vec::new(),
    };
    let parsed = Outer { state: &mut state, depth: 0 }.deserialize(de);
    if let Some(why) = state.failure.take() {
        return Err(PageError::Value(why));
    }
    parsed.map_err(|e| PageError::Json(e.to_string()))?;
    // only now, and only the last hit's: the values become owned `Value`s (a string key's copy)
    let last_sort =
        (state.rows > 0).then(|| state.last_sort.into_iter().map(SortValue::into_value).collect());
    Ok(Page { rows: state.rows, last_sort })
}

/// The parse of one page: the builders, the current hit's kept keys and sort values.
struct State<'p, 'de> {
    plan: &'p SourcePlan,
    columns: &'p mut [Builder],
    kept: Vec<Option<Value>>,
    /// Hits completed so far (the row the current hit appends).
    rows: usize,
    scratch: String,
    /// The first value that did not convert (the parse stops there).
    failure: Option<String>,
    /// The current hit's sort values, and the previous hit's (buffers swapped per hit; empty: none),
    /// as borrowed from the page: a string key costs no copy per hit.
    sort: Vec<SortValue<'de>>,
    last_sort: Vec<SortValue<'de>>,
}

impl<'de> State<'_, 'de> {
    /// Appends `value` to `column` for the current hit; a failure is recorded and stops the parse.
    fn append<E: de::Error>(&mut self, column: usize, value: Datum<'_>) -> Result<(), E> {
        let builder = &mut self.columns[column];
        let outcome = if builder.len() != self.rows {
            Err("a key given twice in one document".to_string())
        } else {
            builder.append(value, &mut self.scratch)
        };
        outcome.map_err(|why| {
            let message = format!("field {:?}: {why}", self.plan.paths[column]);
            self.failure = Some(message.clone());
            E::custom(message)
        })
    }

    /// The current hit is complete: columns that got no value take their fallback, or NULL.
    fn end_hit<E: de::Error>(&mut self) -> Result<(), E> {
        // moved out while the columns are appended to, and put back emptied for the next hit
        let mut kept = std::mem::take(&mut self.kept);
        for column in 0..self.columns.len() {
            if self.columns[column].len() != self.rows {
                continue;
            }
            match self.plan.fallbacks[column].as_ref().and_then(|f| lookup(f, &kept)) {
                Some(value) => self.append(column, Datum::of(value))?,
                None => self.columns[column].append_null(),
            }
        }
        kept.iter_mut().for_each(|slot| *slot = None);
        self.kept = kept;
        std::mem::swap(&mut self.sort, &mut self.last_sort);
        self.sort.clear();
        self.rows += 1;
        Ok(())
    }
}

/// A column's value in the kept keys of a hit: the literal key, else the walk.
fn lookup<'k>(fallback: &Fallback, kept: &'k [Option<Value>]) -> Option<&'k Value> {
    if let Some(v) = fallback.literal.and_then(|slot| kept[slot].as_ref()) {
        return Some(v);
    }
    let (first, rest) = fallback.walk.as_ref()?;
    let mut value = kept[*first].as_ref()?;
    for part in rest {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// The response object (depth 0) and `hits` object (depth 1): both are maps whose `hits` we want.
struct Outer<'s, 'p, 'de> {
    state: &'s mut State<'p, 'de>,
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for Outer<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Outer<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a search response")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(hits) = map.next_key_seed(Key(|key: &str| key == "hits"))? {
            if hits {
                if self.depth == 0 {
                    map.next_value_seed(Outer { state: self.state, depth: 1 })?
                } else {
                    map.next_value_seed(HitList(self.state))?
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct HitList<'s, 'p, 'de>(&'s mut State<'p, 'de>);

impl<'de> DeserializeSeed<'de> for HitList<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for HitList<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of hits")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Hit(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct Hit<'s, 'p, 'de>(&'s mut State<'p, 'de>);

impl<'de> DeserializeSeed<'de> for Hit<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Hit<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hit")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        state.sort.clear();
        while let Some(key) = map.next_key_seed(Key(HitKey::of))? {
            match key {
                HitKey::Id => map.next_value_seed(Id(&mut *state))?,
                HitKey::Sort => map.next_value_seed(Sort(&mut state.sort))?,
                HitKey::Source => map.next_value_seed(Source(&mut *state))?,
                HitKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        state.end_hit()
    }
}

/// The keys of a hit that are read.
enum HitKey {
    Id,
    Sort,
    Source,
    Other,
}

impl HitKey {
    fn of(key: &str) -> HitKey {
        match key {
            "_id" => HitKey::Id,
            "sort" => HitKey::Sort,
            "_source" => HitKey::Source,
            _ => HitKey::Other,
        }
    }
}

/// A map key, borrowed from the page (or unescaped by the parser) and classified by the closure
/// without allocating (serde's own `Cow<str>` always copies into a `String`).
struct Key<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for Key<F> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for Key<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

/// A hit's sort values (null: none), into a buffer reused from hit to hit.
struct Sort<'s, 'de>(&'s mut Vec<SortValue<'de>>);

impl<'de> DeserializeSeed<'de> for Sort<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Sort<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of sort values")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.clear();
        while let Some(value) = seq.next_element::<SortValue<'de>>()? {
            self.0.push(value);
        }
        Ok(())
    }
}

/// One sort value as the parser handed it over, a string borrowed from the page: every hit's are
/// read, only the page's last hit's become a `Value` (`into_value`, as `serde_json::Value` would
/// have built it from the same calls).
#[derive(Debug)]
enum SortValue<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'de str),
    /// Anything else (an array, an object, a string the parser did not lend): parsed whole.
    Whole(Value),
}

impl SortValue<'_> {
    fn into_value(self) -> Value {
        match self {
            SortValue::Null => Value::Null,
            SortValue::Bool(b) => Value::Bool(b),
            SortValue::I64(n) => Value::from(n),
            SortValue::U64(n) => Value::from(n),
            // a non-finite float is null, as in serde_json's own visitor
            SortValue::F64(x) => Value::from(x),
            SortValue::Str(s) => Value::String(s.to_string()),
            SortValue::Whole(value) => value,
        }
    }
}

impl<'de> Deserialize<'de> for SortValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SortValueVisitor)
    }
}

struct SortValueVisitor;

impl<'de> Visitor<'de> for SortValueVisitor {
    type Value = SortValue<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sort value")
    }
    fn visit_unit<E>(self) -> Result<SortValue<'de>, E> {
        Ok(SortValue::Null)
    }
    fn visit_none<E>(self) -> Result<SortValue<'de>, E> {
        Ok(SortValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<SortValue<'de>, D::Error> {
        Value::deserialize(d).map(SortValue::Whole)
    }
    fn visit_bool<E>(self, v: bool) -> Result<SortValue<'de>, E> {
        Ok(SortValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<SortValue<'de>, E> {
        Ok(SortValue::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<SortValue<'de>, E> {
        Ok(SortValue::U64(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<SortValue<'de>, E> {
        Value::deserialize(de::value::I128Deserializer::new(v)).map(SortValue::Whole)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<SortValue<'de>, E> {
        Value::deserialize(de::value::U128Deserializer::new(v)).map(SortValue::Whole)
    }
    fn visit_f64<E>(self, v: f64) -> Result<SortValue<'de>, E> {
        Ok(SortValue::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<SortValue<'de>, E> {
        Ok(SortValue::Str(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<SortValue<'de>, E> {
        Ok(SortValue::Whole(Value::String(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SortValue<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(SortValue::Whole)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SortValue<'de>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(SortValue::Whole)
    }
}

/// The hit's `_id`, appended to the `_id` columns.
struct Id<'s, 'p, 'de>(&'s mut State<'p, 'de>);

impl<'de> DeserializeSeed<'de> for Id<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Id<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a document id")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        for &column in &self.0.plan.ids {
            self.0.append(column, Datum::Null)?;
        }
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        for &column in &self.0.plan.ids {
            self.0.append(column, Datum::Str(v))?;
        }
        Ok(())
    }
}

struct Source<'s, 'p, 'de>(&'s mut State<'p, 'de>);

impl<'de> DeserializeSeed<'de> for Source<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Source<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a _source object")
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let plan = state.plan;
        let mut guess = 0;
        while let Some(target) = map.next_key_seed(Key(|key: &str| plan.target(key, &mut guess)))? {
            match target {
                Some(Target::Direct(column)) => map.next_value_seed(Field { state: &mut *state, column })?,
                Some(Target::Kept(slot)) => state.kept[slot] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One `_source` value appended to its column as it is parsed.
struct Field<'s, 'p, 'de> {
    state: &'s mut State<'p, 'de>,
    column: usize,
}

impl<'de> DeserializeSeed<'de> for Field<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.state.append(self.column, Datum::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.state.append(self.column, Datum::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.state.append(self.column, Datum::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        // as `serde_json::Value` holds it: signed when it fits
        let datum = i64::try_from(v).map_or(Datum::U64(v), Datum::I64);
        self.state.append(self.column, datum)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.state.append(self.column, Datum::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.state.append(self.column, Datum::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
        self.state.append(self.column, Datum::of(&value))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        self.state.append(self.column, Datum::of(&value))
    }
}

const SORT_KEY: &[u8] = b"\"sort\":[";

/// Without parsing the page: how many hits it has at most (occurrences of `"sort":[`, every hit has
/// one; a `_source` key named "sort" counts too) and the last hit's sort values (the last
/// occurrence: a hit's `sort` follows its `_source`, and a quote inside a JSON string is escaped).
/// The parse checks the values against the last row's.
pub fn last_sort(bytes: &[u8]) -> (usize, Option<Vec<Value>>) {
    let count = memmem::find_iter(bytes, SORT_KEY).count();
    let after = memmem::rfind(bytes, SORT_KEY).and_then(|at| {
        let start = at + SORT_KEY.len() - 1;
        let mut de = serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<Vec<Value>>();
        de.next().and_then(Result::ok)
    });
    (count, after)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::{DataType, Field as ArrowField, Schema, TimeUnit};

    use super::*;
    use crate::OsError;

    fn columns(spec: &[(&str, Kind, DataType)]) -> (Vec<Column>, Arc<Schema>) {
        let columns = spec.iter().map(|(p, k, _)| Column { path: p.to_string(), kind: *k }).collect();
        let fields: Vec<_> = spec.iter().map(|(p, _, t)| ArrowField::new(*p, t.clone(), true)).collect();
        (columns, Arc::new(Schema::new(fields)))
    }

    fn read(body: &[u8], spec: &[(&str, Kind, DataType)]) -> Result<(Page, RecordBatch), String> {
        let (columns, schema) = columns(spec);
        let plan = SourcePlan::new(&columns);
        let mut builders = Builders::new(&schema, &columns, 4).unwrap();
        let mut bytes = body.to_vec();
        let page = parse(&mut bytes, &mut Parser::default(), &plan, &mut builders).map_err(|e| match e {
            PageError::Json(e) => format!("json: {e}"),
            PageError::Value(why) => format!("value: {why}"),
        })?;
        let batch = builders.finish().map_err(|e: OsError| e.to_string())?;
        Ok((page, batch))
    }

    fn texts(batch: &RecordBatch, column: usize) -> Vec<Option<String>> {
        let array = batch.column(column).as_string::<i32>();
        (0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i).to_string())).collect()
    }

    #[test]
    fn writes_each_field_into_its_typed_builder() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let spec = [
            ("_id", Kind::Id, DataType::Utf8),
            ("n", Kind::Int64, DataType::Int64),
            ("x", Kind::Float64, DataType::Float64),
            ("k", Kind::Text, DataType::Utf8),
            ("flag", Kind::Bool, DataType::Boolean),
            ("at", Kind::Date(false), ts),
            ("o.x.y", Kind::Text, DataType::Utf8),
            ("raw", Kind::Json, DataType::Utf8),
        ];
        let body = br#"{"took":3,"hits":{"total":{"value":4},"hits":[
            {"_index":"i","_id":"1","_score":null,"_source":{"n":1,"x":1.5,"k":"plain","flag":true,
             "at":"2024-01-01T00:00:00.123Z","skip":{"deep":[1,2,{"k":"no"}]},"o":{"x":{"y":"walked"}},
             "raw":{"b":[1,2.5],"a":"\u00e9"}},"sort":[7]},
            {"_id":"2","_source":{"o.x.y":null,"o":{"x":{"y":"not this"}},"n":"42","x":"2.5",
             "k":"a \"quoted\" \\ line\nbreak \ud83d\ude00","flag":"TRUE","at":86400000},"sort":[8]},
            {"_id":"3","_source":{"k":["one"],"n":[9],"x":[3],"flag":["false"],"at":[],"o.x.y":"literal",
             "raw":"s"},"sort":[9]},
            {"_id":"4","_source":{"k":12,"n":null,"x":null,"o":{"x":{}},"raw":null},"sort":[10,"t"]}
        ]}}"#;
        let (page, batch) = read(body, &spec).unwrap();
        assert_eq!(page, Page { rows: 4, last_sort: Some(vec![Value::from(10), Value::from("t")]) });
        assert_eq!(texts(&batch, 0), ["1", "2", "3", "4"].map(|s| Some(s.to_string())));
        let n = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(n.iter().collect::<Vec<_>>(), [Some(1), Some(42), Some(9), None]);
        let x = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!(x.iter().collect::<Vec<_>>(), [Some(1.5), Some(2.5), Some(3.0), None]);
        assert_eq!(
            texts(&batch, 3),
            [
                Some("plain".to_string()),
                Some("a \"quoted\" \\ line\nbreak \u{1F600}".to_string()),
                Some("one".to_string()),
                Some("12".to_string())
            ]
        );
        let flag = batch.column(4).as_boolean();
        assert_eq!(flag.iter().collect::<Vec<_>>(), [Some(true), Some(true), Some(false), None]);
        let at = batch.column(5).as_primitive::<TimestampMillisecondType>();
        assert_eq!(at.iter().collect::<Vec<_>>(), [Some(1_704_067_200_123), Some(86_400_000), None, None]);
        assert_eq!(batch.column(5).data_type(), &spec[5].2);
        // the literal key wins, even null; else the walk; a walk that ends early is NULL
        assert_eq!(texts(&batch, 6), [Some("walked".to_string()), None, Some("literal".to_string()), None]);
        assert_eq!(
            texts(&batch, 7),
            [Some(r#"{"a":"é","b":[1,2.5]}"#.to_string()), None, Some(r#""s""#.to_string()), None]
        );
    }

    #[test]
    fn a_column_read_whole_and_walked_through_is_kept_for_both() {
        let spec = [("o", Kind::Json, DataType::Utf8), ("o.a", Kind::Int64, DataType::Int64)];
        let body = br#"{"hits":{"hits":[{"_source":{"o":{"a":"5"}},"sort":[1]},{"_source":{"o.a":6}}]}}"#;
        let (page, batch) = read(body, &spec).unwrap();
        assert_eq!(page, Page { rows: 2, last_sort: Some(vec![]) });
        assert_eq!(texts(&batch, 0), [Some(r#"{"a":"5"}"#.to_string()), None]);
        let a = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(a.iter().collect::<Vec<_>>(), [Some(5), Some(6)]);
    }

    #[test]
    fn values_that_do_not_convert_name_their_field() {
        let spec = [("n", Kind::Int64, DataType::Int64)];
        let err = |body: &[u8]| read(body, &spec).unwrap_err();
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":[1,2]}}]}}"#)
            .contains(r#"value: field "n": multi-valued"#));
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":"x1"}}]}}"#).contains("not an integer"));
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":true}}]}}"#).contains("not an integer: true"));
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":1e300}}]}}"#).contains("is not an integer"));
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":1,"n":2}}]}}"#).contains("twice"));
        assert!(err(br#"{"hits":{"hits":[{"_source":{"n":1}}"#).starts_with("json:"));
        assert!(err(b"{\"hits\":{\"hits\":[{\"_source\":{\"n\":\"\xff\"}}]}}").starts_with("json:"));
        // an escaped key is the same key
        let (_, batch) = read(br#"{"hits":{"hits":[{"_source":{"\u006e":3}}]}}"#, &spec).unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 3);
        let (page, batch) = read(b"{}", &spec).unwrap();
        assert_eq!((page.rows, page.last_sort, batch.num_rows()), (0, None, 0));
    }

    #[test]
    fn the_last_sort_values_are_cut_out_unparsed() {
        let body = br#"{"hits":{"hits":[{"_id":"1","sort":[7]},{"_id":"3","sort":[9]}]}}"#;
        assert_eq!(last_sort(body), (2, Some(vec![Value::from(9)])));
        assert_eq!(last_sort(br#"{"hits":{"hits":[]}}"#), (0, None));
        let tricky = br#"{"hits":{"hits":[{"_source":{"t":"\"sort\":[1]","sort":[5]},"sort":[6,"x"]}]}}"#;
        assert_eq!(last_sort(tricky), (2, Some(vec![Value::from(6), Value::from("x")])));
    }

    #[test]
    fn only_the_last_hits_sort_values_come_out_as_serde_json_parses_them() {
        let spec = [("_id", Kind::Id, DataType::Utf8)];
        // a string key then numeric keys: past i64::MAX, i64::MIN, floats (exact text), null
        let last = r#"["k\u00e9y \"9\"",18446744073709551615,-9223372036854775808,0.30000000000000004,46.1,1e-7,7,null,true]"#;
        let earlier = r#"["a",9223372036854775808,-1,2.5,0.1,1,8,null,false]"#;
        let body = format!(
            r#"{{"hits":{{"hits":[{{"_id":"1","sort":{earlier}}},{{"_id":"2","sort":["b",1,2,3,4,5,6,7,8]}},{{"_id":"3","sort":{last}}}]}}}}"#
        );
        let want: Vec<Value> = serde_json::from_str(last).unwrap();
        let (page, _) = read(body.as_bytes(), &spec).unwrap();
        let got = page.last_sort.unwrap();
        assert_eq!(got, want);
        // the same numbers of the same kinds (Value's equality tells 7 from 7.0), and the same text
        assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap());
        assert!(got[1].is_u64() && got[2].is_i64() && got[3].is_f64() && got[6].is_u64());
        assert_eq!(got[3].as_f64().unwrap().to_bits(), 0.30000000000000004f64.to_bits());
        // the fetcher's cut, checked against the parse in `run`, agrees
        assert_eq!(last_sort(body.as_bytes()), (3, Some(want)));
        assert_ne!(got, serde_json::from_str::<Vec<Value>>(earlier).unwrap());
        // the last hit without sort values: none, whatever the earlier hits had
        let body = format!(r#"{{"hits":{{"hits":[{{"_id":"1","sort":{last}}},{{"_id":"2"}}]}}}}"#);
        assert_eq!(read(body.as_bytes(), &spec).unwrap().0.last_sort, Some(vec![]));
        // values no search returns still come out as serde_json builds them
        let odd = r#"[[1,"x"],{"a":{"b":null}},-0.0,""]"#;
        let body = format!(r#"{{"hits":{{"hits":[{{"_id":"1","sort":{odd}}}]}}}}"#);
        let got = read(body.as_bytes(), &spec).unwrap().0.last_sort.unwrap();
        assert_eq!(got, serde_json::from_str::<Vec<Value>>(odd).unwrap());
    }

    #[test]
    fn numbers_parse_as_serde_json_parses_them() {
        // floats correctly rounded (serde_json's float_roundtrip), integers past u64 as floats
        let mut texts: Vec<String> = [
            "0.1",
            "46.1",
            "125.99",
            "-0.0",
            "1e308",
            "5e-324",
            "2.2250738585072014e-308",
            "9007199254740993",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "123456789.123456789",
            "4.35",
            "100000000000000000000",
            "18446744073709551615",
            "-9223372036854775808",
            "2.5e-3",
            "7E2",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        // pseudo-random decimals of 1 to 17 significant digits and wide exponents
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits = 1 + (seed % 17) as u32;
            let mantissa = (seed >> 8) % 10u64.pow(digits);
            let exponent = (seed >> 40) as i32 % 60 - 30;
            texts.push(format!("{mantissa}e{exponent}"));
            texts.push(format!("{}.{:02}", mantissa % 100_000, (seed >> 20) % 100));
        }
        let spec = [("x", Kind::Float64, DataType::Float64)];
        let hits: Vec<String> = texts.iter().map(|t| format!(r#"{{"_source":{{"x":{t}}}}}"#)).collect();
        let body = format!(r#"{{"hits":{{"hits":[{}]}}}}"#, hits.join(","));
        let (_, batch) = read(body.as_bytes(), &spec).unwrap();
        let x = batch.column(0).as_primitive::<Float64Type>();
        for (i, text) in texts.iter().enumerate() {
            let want: f64 = serde_json::from_str::<Value>(text).unwrap().as_f64().unwrap();
            assert_eq!(x.value(i).to_bits(), want.to_bits(), "{text}");
        }
    }

    #[test]
    fn the_parser_is_reused_from_page_to_page_and_after_an_unreadable_one() {
        let spec = [("_id", Kind::Id, DataType::Utf8), ("k", Kind::Text, DataType::Utf8)];
        let (columns, schema) = columns(&spec);
        let plan = SourcePlan::new(&columns);
        let mut builders = Builders::new(&schema, &columns, 4).unwrap();
        let mut parser = Parser::default();
        let mut page = |body: &[u8]| {
            let mut bytes = body.to_vec();
            let page = parse(&mut bytes, &mut parser, &plan, &mut builders);
            let batch = builders.finish().unwrap();
            page.map(|p| (p.rows, p.last_sort, texts(&batch, 1)))
        };
        let big: Vec<String> =
            (0..50).map(|i| format!(r#"{{"_id":"{i}","_source":{{"k":"v\n{i}"}},"sort":[{i}]}}"#)).collect();
        let (rows, last, values) =
            page(format!(r#"{{"hits":{{"hits":[{}]}}}}"#, big.join(",")).as_bytes()).unwrap();
        assert_eq!((rows, last, values[49].as_deref()), (50, Some(vec![Value::from(49)]), Some("v\n49")));
        assert!(matches!(page(br#"{"hits":{"hits":[{"_id":"x","#), Err(PageError::Json(_))));
        let small = br#"{"hits":{"hits":[{"_id":"a","_source":{"k":"\u00e9"},"sort":["z"]}]}}"#;
        assert_eq!(page(small).unwrap(), (1, Some(vec![Value::from("z")]), vec![Some("é".to_string())]));
        assert_eq!(page(br#"{"error":{"reason":"x"},"status":500}"#).unwrap(), (0, None, vec![]));
    }

    #[test]
    fn a_page_with_trailing_bytes_is_not_json() {
        let spec = [("n", Kind::Int64, DataType::Int64)];
        let err = read(br#"{"hits":{"hits":[]}} {"#, &spec).unwrap_err();
        assert!(err.starts_with("json:"), "{err}");
    }
}

#[cfg(test)]
mod speed {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field as ArrowField, Schema, TimeUnit};

    use super::*;

    /// Time to parse a saved page (`SEAMLINE_OS_PAGE`: a search response of benches' bench_products)
    /// 100 times: `SEAMLINE_OS_PAGE=page.json cargo test --release -p seamline-opensearch
    /// page_parse_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn page_parse_speed() {
        let Ok(path) = std::env::var("SEAMLINE_OS_PAGE") else { return };
        let page = std::fs::read(path).unwrap();
        let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let spec = [
            ("_id", Kind::Id, DataType::Utf8),
            ("deleted_at", Kind::Date(false), timestamp.clone()),
            ("id", Kind::Int64, DataType::Int64),
            ("in_stock", Kind::Bool, DataType::Boolean),
            ("name", Kind::Text, DataType::Utf8),
            ("price", Kind::Float64, DataType::Float64),
            ("sku", Kind::Text, DataType::Utf8),
            ("updated_at", Kind::Date(false), timestamp),
        ];
        let columns: Vec<Column> =
            spec.iter().map(|(p, k, _)| Column { path: p.to_string(), kind: *k }).collect();
        let fields: Vec<_> = spec.iter().map(|(p, _, t)| ArrowField::new(*p, t.clone(), true)).collect();
        let schema = Arc::new(Schema::new(fields));
        let plan = SourcePlan::new(&columns);
        let mut builders = Builders::new(&schema, &columns, 10_000).unwrap();
        let mut parser = Parser::default();
        let mut bytes = Vec::new();
        let (mut rows, mut spent) = (0, std::time::Duration::ZERO);
        for _ in 0..100 {
            bytes.clear();
            bytes.extend_from_slice(&page);
            let started = std::time::Instant::now();
            rows += parse(&mut bytes, &mut parser, &plan, &mut builders).unwrap().rows;
            builders.finish().unwrap();
            spent += started.elapsed();
        }
        eprintln!("{rows} hits, {:.0} ns per hit", spent.as_secs_f64() / rows as f64 * 1e9);
    }
}
