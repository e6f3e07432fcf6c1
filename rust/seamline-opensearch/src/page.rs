//! One search response parsed straight into rows of slots: only the `_source` keys that some column
//! reads are kept (as JSON values), everything else is skipped by the parser without allocating. A
//! column `a.b.c` keeps both the literal key `a.b.c` and the object under `a` (walked afterwards).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A dotted path's walk: the slot of its first segment and the segments below it.
type NestedWalk = (usize, Vec<String>);

/// Which `_source` keys are kept, and where each column finds its value.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    keys: Vec<String>,
    /// Per column: the slot of its literal key, and (for a dotted path) the slot of its first
    /// segment with the segments below it.
    lookups: Vec<(usize, Option<NestedWalk>)>,
}

impl SourcePlan {
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> SourcePlan {
        let mut plan = SourcePlan { keys: Vec::new(), lookups: Vec::new() };
        for path in paths {
            let literal = plan.slot(path);
            let walk = path
                .split_once('.')
                .map(|(first, rest)| (plan.slot(first), rest.split('.').map(str::to_string).collect()));
            plan.lookups.push((literal, walk));
        }
        plan
    }

    fn slot(&mut self, key: &str) -> usize {
        match self.keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key.to_string());
                self.keys.len() - 1
            }
        }
    }

    /// Column `column`'s value in `row`: None when the document does not have it.
    pub fn lookup<'r>(&self, row: &'r Row, column: usize) -> Option<&'r Value> {
        let (literal, walk) = &self.lookups[column];
        if let Some(v) = &row.slots[*literal] {
            return Some(v);
        }
        let (first, rest) = walk.as_ref()?;
        let mut value = row.slots[*first].as_ref()?;
        for part in rest {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }
}

/// One hit: `_id`, the kept `_source` values and the sort values (for `search_after`).
#[derive(Debug, Default)]
pub struct Row {
    pub id: Option<String>,
    pub slots: Vec<Option<Value>>,
    pub sort: Vec<Value>,
}

const SORT_KEY: &[u8] = b"\"sort\":[";

/// Without parsing the page: how many hits it has at most (occurrences of `"sort":[`, every hit has
/// one; a `_source` key named "sort" counts too) and the last hit's sort values (the last
/// occurrence: a hit's `sort` follows its `_source`, and a quote inside a JSON string is escaped).
/// The parse checks the values against the last row's.
pub fn last_sort(bytes: &[u8]) -> (usize, Option<Vec<Value>>) {
    let mut count = 0;
    let mut last = None;
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], SORT_KEY) {
        count += 1;
        last = Some(at + i + SORT_KEY.len() - 1);
        at += i + SORT_KEY.len();
    }
    let after = last.and_then(|start| {
        let mut de = serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<Vec<Value>>();
        de.next().and_then(Result::ok)
    });
    (count, after)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses `{"hits": {"hits": [...]}}` (anything else ignored) into rows.
pub fn parse(bytes: &[u8], plan: &SourcePlan) -> Result<Vec<Row>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let rows = Outer { plan, depth: 0 }.deserialize(&mut de)?;
    de.end()?;
    Ok(rows)
}

/// The response object (depth 0) and `hits` object (depth 1): both are maps whose `hits` we want.
struct Outer<'p> {
    plan: &'p SourcePlan,
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for Outer<'_> {
    type Value = Vec<Row>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Row>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Outer<'_> {
    type Value = Vec<Row>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a search response")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Row>, A::Error> {
        let mut rows = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "hits" {
                rows = if self.depth == 0 {
                    map.next_value_seed(Outer { plan: self.plan, depth: 1 })?
                } else {
                    map.next_value_seed(HitList(self.plan))?
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(rows)
    }
}

struct HitList<'p>(&'p SourcePlan);

impl<'de> DeserializeSeed<'de> for HitList<'_> {
    type Value = Vec<Row>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Row>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for HitList<'_> {
    type Value = Vec<Row>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of hits")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Row>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(1024));
        while let Some(row) = seq.next_element_seed(HitSeed(self.0))? {
            rows.push(row);
        }
        Ok(rows)
    }
}

struct HitSeed<'p>(&'p SourcePlan);

impl<'de> DeserializeSeed<'de> for HitSeed<'_> {
    type Value = Row;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HitSeed<'_> {
    type Value = Row;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hit")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut row = Row { slots: vec![None; self.0.keys.len()], ..Row::default() };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "_id" => row.id = map.next_value()?,
                "sort" => row.sort = map.next_value::<Option<Vec<Value>>>()?.unwrap_or_default(),
                "_source" => map.next_value_seed(SourceSeed { plan: self.0, row: &mut row })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(row)
    }
}

struct SourceSeed<'p, 'r> {
    plan: &'p SourcePlan,
    row: &'r mut Row,
}

impl<'de> DeserializeSeed<'de> for SourceSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SourceSeed<'_, '_> {
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
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.plan.keys.iter().position(|k| k.as_str() == key.as_ref()) {
                Some(slot) => self.row.slots[slot] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_planned_keys_and_walks_dotted_paths() {
        let plan = SourcePlan::new(["a", "o.x.y", "missing"]);
        let body = br#"{"hits":{"hits":[
            {"_id":"1","_source":{"a":1,"skip":{"deep":[1,2]},"o":{"x":{"y":"walked"}}},"sort":[7]},
            {"_id":"2","_source":{"o.x.y":null,"o":{"x":{"y":"not this"}}},"sort":[8]},
            {"_id":"3","sort":[9]}
        ]}}"#;
        let rows = parse(body, &plan).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].id.as_deref(), Some("1"));
        assert_eq!(plan.lookup(&rows[0], 0), Some(&Value::from(1)));
        assert_eq!(plan.lookup(&rows[0], 1), Some(&Value::from("walked")));
        assert_eq!(plan.lookup(&rows[1], 1), Some(&Value::Null)); // the literal key wins, even null
        assert_eq!(plan.lookup(&rows[2], 0), None);
        assert_eq!(plan.lookup(&rows[0], 2), None);
        assert_eq!(rows[2].sort, vec![Value::from(9)]);
        assert!(parse(b"{}", &plan).unwrap().is_empty());
        assert_eq!(last_sort(body), (3, Some(vec![Value::from(9)])));
        assert_eq!(last_sort(br#"{"hits":{"hits":[]}}"#), (0, None));
        let tricky = br#"{"hits":{"hits":[{"_source":{"t":"\"sort\":[1]","sort":[5]},"sort":[6,"x"]}]}}"#;
        assert_eq!(last_sort(tricky), (2, Some(vec![Value::from(6), Value::from("x")])));
    }
}
