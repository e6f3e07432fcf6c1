//! Row-by-row classification of the collected rows of two sides, joined by key digest.

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

/// Where one key occurs on one side: its first row and how many rows carry it.
#[derive(Clone, Copy, Default)]
struct Occurrence {
    first: Option<usize>,
    count: usize,
}

impl Occurrence {
    fn add(&mut self, row: usize) {
        self.first.get_or_insert(row);
        self.count += 1;
    }
}

/// Classify every key whose rows differ between the two sides.
pub fn classify(source: &Collected, target: &Collected, n_values: usize) -> Vec<Difference> {
    let mut by_key: FastMap<u128, [Occurrence; 2]> = FastMap::default();
    by_key.reserve(source.len().max(target.len()));
    for (i, kd) in source.key_digest.iter().enumerate() {
        by_key.entry(*kd).or_default()[0].add(i);
    }
    for (i, kd) in target.key_digest.iter().enumerate() {
        by_key.entry(*kd).or_default()[1].add(i);
    }
    let mut out = Vec::new();
    for [s, t] in by_key.values() {
        let (s0, t0) = (s.first, t.first);
        for (occ, side) in [(s, Side::Source), (t, Side::Target)] {
            if occ.count > 1 {
                out.push(Difference {
                    kind: DiffKind::Duplicate,
                    source_row: s0,
                    target_row: t0,
                    columns: vec![],
                    duplicate_side: Some(side),
                    occurrences: occ.count,
                });
            }
        }
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
            (Some(a), Some(b)) if source.row_digest[a] != target.row_digest[b] => {
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
    out.sort_by_key(|d| (d.source_row.or(d.target_row), d.kind));
    out
}
