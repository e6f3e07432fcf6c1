//! Row-by-row classification of the collected rows of two sides, joined by key digest.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

use crate::error::{CoreError, Result};
use crate::fasthash::FastMap;
use crate::passes::Collected;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target only.
    Extra,
    /// In both, with different values.
    Changed,
    /// The key occurs more than once on one side.
    Duplicate,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Changed => "changed",
            DiffKind::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: DiffKind,
    /// Row of the source's collected rows (the first, for duplicates).
    pub source_row: Option<usize>,
    pub target_row: Option<usize>,
    /// For `Changed`: indexes of the compared value columns that differ.
    pub columns: Vec<usize>,
    /// For `Duplicate`: the side holding the duplicates and how many times the key occurs there.
    pub duplicate_side: Option<Side>,
    pub occurrences: usize,
}

/// Where one key occurs on one side: its first row (NONE: absent) and how many rows carry it.
/// 32-bit fields keep a map entry at 32 bytes: the map is as large as the collected rows and its
/// cache misses are most of what classifying costs.
#[derive(Clone, Copy)]
struct Occurrence {
    first: u32,
    count: u32,
}

impl Default for Occurrence {
    fn default() -> Self {
        Occurrence { first: NONE, count: 0 }
    }
}

const NONE: u32 = u32::MAX;

impl Occurrence {
    #[inline]
    fn add(&mut self, row: usize) {
        if self.first == NONE {
            self.first = row as u32;
        }
        self.count += 1;
    }

    fn first(&self) -> Option<usize> {
        (self.first != NONE).then_some(self.first as usize)
    }
}

/// Below this many collected rows, classify on one thread.
const PARALLEL_ROWS: usize = 65_536;

/// Classify every key whose rows differ between the two sides, on up to `threads` threads.
///
/// A key agrees when both sides hold it the same number of times with the same values (the same
/// multiset of row digests): the test a leaf applies to all its rows at once, so what is reported
/// for a key never depends on the other rows that happen to share its leaf. A key that disagrees
/// and is held more than once on a side is a `duplicate` on that side; it is also `missing`,
/// `extra`, or `changed` when the other side lacks it or holds none of its versions.
pub fn classify(
    source: &Collected,
    target: &Collected,
    n_values: usize,
    threads: usize,
) -> Result<Vec<Difference>> {
    if source.len() >= NONE as usize || target.len() >= NONE as usize {
        return Err(CoreError::Invalid(
            "a diff group holds 2^32 rows or more: lower diff_budget_rows".to_string(),
        ));
    }
    let parts = if source.len() + target.len() < PARALLEL_ROWS { 1 } else { threads.max(1) };
    let mut out = if parts == 1 {
        classify_part(source, target, n_values, 0, 1)
    } else {
        // each thread takes the keys whose digest falls in its part: smaller maps, in parallel
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..parts)
                .map(|part| scope.spawn(move || classify_part(source, target, n_values, part, parts)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    out.sort_by_key(|d| (d.source_row.or(d.target_row), d.kind));
    Ok(out)
}

/// `classify` of the keys whose digest is `part` modulo `parts`.
fn classify_part(
    source: &Collected,
    target: &Collected,
    n_values: usize,
    part: usize,
    parts: usize,
) -> Vec<Difference> {
    let mine = |kd: &u128| ((*kd >> 64) as u64 % parts as u64) as usize == part;
    let mut by_key: FastMap<u128, [Occurrence; 2]> = FastMap::default();
    by_key.reserve(source.len().max(target.len()) / parts);
    for (i, kd) in source.key_digest.iter().enumerate().filter(|(_, kd)| mine(kd)) {
        by_key.entry(*kd).or_default()[0].add(i);
    }
    for (i, kd) in target.key_digest.iter().enumerate().filter(|(_, kd)| mine(kd)) {
        by_key.entry(*kd).or_default()[1].add(i);
    }
    // Keys held more than once on a side are rare: gather all their rows in a second look.
    let mut repeated: FastMap<u128, [Vec<usize>; 2]> = by_key
        .iter()
        .filter(|(_, [s, t])| s.count > 1 || t.count > 1)
        .map(|(kd, _)| (*kd, Default::default()))
        .collect();
    if !repeated.is_empty() {
        for (side, collected) in [source, target].into_iter().enumerate() {
            for (i, kd) in collected.key_digest.iter().enumerate() {
                if let Some(rows) = repeated.get_mut(kd) {
                    rows[side].push(i);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (kd, [s, t]) in by_key.iter() {
        if let Some([src_rows, dst_rows]) = repeated.get(kd) {
            classify_repeated(source, target, n_values, src_rows, dst_rows, &mut out);
            continue;
        }
        let (s0, t0) = (s.first(), t.first());
        pair_difference(source, target, n_values, s0, t0, true, &mut out);
    }
    out
}

/// The difference between one row (or none) of each side for a key: missing, extra, or (when
/// `compare` and the rows differ) changed, with the columns that differ.
fn pair_difference(
    source: &Collected,
    target: &Collected,
    n_values: usize,
    s0: Option<usize>,
    t0: Option<usize>,
    compare: bool,
    out: &mut Vec<Difference>,
) {
    let base = Difference {
        kind: DiffKind::Missing,
        source_row: s0,
        target_row: t0,
        columns: vec![],
        duplicate_side: None,
        occurrences: 1,
    };
    match (s0, t0) {
        (Some(_), None) => out.push(base),
        (None, Some(_)) => out.push(Difference { kind: DiffKind::Extra, ..base }),
        (Some(a), Some(b)) if compare && source.row_digest[a] != target.row_digest[b] => {
            let (va, vb) = (
                &source.value_hashes[a * n_values..(a + 1) * n_values],
                &target.value_hashes[b * n_values..(b + 1) * n_values],
            );
            let columns = (0..n_values).filter(|&j| va[j] != vb[j]).collect();
            out.push(Difference { kind: DiffKind::Changed, columns, ..base });
        }
        _ => {}
    }
}

/// A key held more than once on at least one side (`src_rows`, `dst_rows`: all its rows).
fn classify_repeated(
    source: &Collected,
    target: &Collected,
    n_values: usize,
    src_rows: &[usize],
    dst_rows: &[usize],
    out: &mut Vec<Difference>,
) {
    // (row digest, row), sorted: the digests are the key's multiset of versions on a side
    let versions = |c: &Collected, rows: &[usize]| {
        let mut v: Vec<(u128, usize)> = rows.iter().map(|&r| (c.row_digest[r], r)).collect();
        v.sort_unstable();
        v
    };
    let (a, b) = (versions(source, src_rows), versions(target, dst_rows));
    if a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0) {
        return; // the same rows, as many times: the key agrees
    }
    // The rows shown for the key, chosen whatever order the rows arrived in: a version both sides
    // hold (the smallest), else each side's smallest.
    let shared = a.iter().find(|(d, _)| b.binary_search_by(|(e, _)| e.cmp(d)).is_ok()).map(|x| x.0);
    let (s0, t0) = match shared {
        Some(d) => (a.iter().find(|x| x.0 == d).map(|x| x.1), b.iter().find(|x| x.0 == d).map(|x| x.1)),
        None => (a.first().map(|x| x.1), b.first().map(|x| x.1)),
    };
    for (versions, side) in [(&a, Side::Source), (&b, Side::Target)] {
        if versions.len() > 1 {
            out.push(Difference {
                kind: DiffKind::Duplicate,
                source_row: s0,
                target_row: t0,
                columns: vec![],
                duplicate_side: Some(side),
                occurrences: versions.len(),
            });
        }
    }
    // changed only when the sides share no version of the row at all
    pair_difference(source, target, n_values, s0, t0, shared.is_none(), out);
}

/// Only the rows the differences point at, from each side, and the differences re-pointed into
/// them: most kept rows belong to equal rows that merely share a leaf with a difference, and need
/// not travel further (to Python, into the report).
pub fn compact(
    source: &Collected,
    target: &Collected,
    diffs: &mut [Difference],
) -> Result<(Option<RecordBatch>, Option<RecordBatch>)> {
    fn side(
        collected: &Collected,
        diffs: &mut [Difference],
        row: fn(&mut Difference) -> &mut Option<usize>,
    ) -> Result<Option<RecordBatch>> {
        let mut new_index = vec![usize::MAX; collected.len()];
        let mut kept = Vec::new();
        for d in diffs.iter_mut() {
            if let Some(r) = row(d) {
                if new_index[*r] == usize::MAX {
                    new_index[*r] = kept.len();
                    kept.push(*r);
                }
                *r = new_index[*r];
            }
        }
        collected.take_rows(&kept)
    }
    Ok((side(source, diffs, |d| &mut d.source_row)?, side(target, diffs, |d| &mut d.target_row)?))
}

/// The differences as one Arrow batch (one row each): kind, source_row, target_row (indexes into
/// the compacted rows), columns (value column indexes), duplicate_side, occurrences.
pub fn differences_batch(diffs: &[Difference]) -> Result<RecordBatch> {
    let rows = |f: fn(&Difference) -> Option<usize>| -> ArrayRef {
        Arc::new(diffs.iter().map(|d| f(d).map(|r| r as i64)).collect::<Int64Array>())
    };
    let mut columns = ListBuilder::with_capacity(UInt32Builder::new(), diffs.len());
    for d in diffs {
        columns.values().append_slice(&d.columns.iter().map(|&j| j as u32).collect::<Vec<_>>());
        columns.append(true);
    }
    let side = |d: &Difference| {
        d.duplicate_side.map(|s| match s {
            Side::Source => "source",
            Side::Target => "target",
        })
    };
    let fields: Vec<(&str, ArrayRef)> = vec![
        ("kind", Arc::new(diffs.iter().map(|d| Some(d.kind.as_str())).collect::<StringArray>())),
        ("source_row", rows(|d| d.source_row)),
        ("target_row", rows(|d| d.target_row)),
        ("columns", Arc::new(columns.finish())),
        ("duplicate_side", Arc::new(diffs.iter().map(side).collect::<StringArray>())),
        ("occurrences", Arc::new(diffs.iter().map(|d| Some(d.occurrences as i64)).collect::<Int64Array>())),
    ];
    Ok(RecordBatch::try_from_iter(fields)?)
}
