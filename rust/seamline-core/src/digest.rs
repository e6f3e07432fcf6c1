//! Digests of record batches, computed column at a time: each key column is canonicalised once per
//! batch, each value column hashed once per batch, then rows are folded from those columns.
//!
//! key digest  = xxh3-128(framed canonical key columns)
//! value hash  = xxh3-64(canonical value) (a distinct constant for NULL)
//! row digest  = xxh3-128(key digest || value hashes)

use std::collections::HashSet;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64_with_seed};

use crate::canonical::{encode_column, push_ordering};
use crate::error::{CoreError, Result};
use crate::logical::{ColumnSpec, SideSpec};
use crate::partition::Partitioner;

const VALUE_SEED: u64 = 0x5EA4_11AE;
const NULL_SEED: u64 = 0x4E55_4C4C;

#[inline]
fn value_hash(bytes: Option<&[u8]>) -> u64 {
    match bytes {
        Some(b) => xxh3_64_with_seed(b, VALUE_SEED),
        None => xxh3_64_with_seed(&[], NULL_SEED),
    }
}

/// Canonical bytes of one column for every row of a batch (keys only: values are hashed directly).
struct CanonColumn {
    data: Vec<u8>,
    /// offsets[i]..offsets[i+1] is row i; NULL rows are recorded in `nulls`.
    offsets: Vec<usize>,
    first_null: Option<usize>,
}

impl CanonColumn {
    fn encode(arr: &ArrayRef, spec: &ColumnSpec) -> Result<Self> {
        let mut col = CanonColumn { data: Vec::new(), offsets: Vec::with_capacity(arr.len() + 1), first_null: None };
        col.offsets.push(0);
        encode_column(arr, spec, &mut |row: usize, bytes: Option<&[u8]>| {
            match bytes {
                Some(b) => col.data.extend_from_slice(b),
                None => {
                    col.first_null.get_or_insert(row);
                }
            }
            col.offsets.push(col.data.len());
        })?;
        Ok(col)
    }

    #[inline]
    fn get(&self, row: usize) -> &[u8] {
        &self.data[self.offsets[row]..self.offsets[row + 1]]
    }
}

/// Look a column up by name, with an error that says which side lacks it.
pub fn column<'a>(batch: &'a RecordBatch, name: &str, side: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let have: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        CoreError::Schema(format!("{side}: column '{name}' is missing (the stream has: {})", have.join(", ")))
    })
}

/// Keys of a batch: digest, ordering key (optional) and leaf of every row.
pub struct KeyDigests {
    pub key_digest: Vec<u128>,
    pub leaf: Vec<u64>,
}

/// Canonical key bytes for each row, framed, plus the order-preserving form.
pub fn key_digests(batch: &RecordBatch, spec: &SideSpec, partitioner: &Partitioner) -> Result<KeyDigests> {
    let n = batch.num_rows();
    let composite = spec.key.len() > 1;
    let cols = spec
        .key
        .iter()
        .map(|c| {
            let canon = CanonColumn::encode(column(batch, &c.name, &spec.side)?, c)?;
            if let Some(row) = canon.first_null {
                return Err(CoreError::Value(format!(
                    "{}: key column '{}' is NULL at row {row} of a batch (keys must not be NULL)",
                    spec.side, c.name
                )));
            }
            Ok(canon)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = KeyDigests { key_digest: Vec::with_capacity(n), leaf: Vec::with_capacity(n) };
    let mut framed = Vec::with_capacity(64);
    let mut ordering = Vec::with_capacity(64);
    for row in 0..n {
        framed.clear();
        ordering.clear();
        for (c, spec_col) in cols.iter().zip(&spec.key) {
            let v = c.get(row);
            framed.extend_from_slice(&(v.len() as u32).to_le_bytes());
            framed.extend_from_slice(v);
            push_ordering(&spec_col.logical, v, composite, &mut ordering);
        }
        let kd = xxh3_128(&framed);
        out.key_digest.push(kd);
        out.leaf.push(partitioner.leaf_of(&ordering, kd));
    }
    Ok(out)
}

/// Ordering keys of every row (used to turn sampled key values into range boundaries).
pub fn ordering_keys(batch: &RecordBatch, spec: &SideSpec) -> Result<Vec<Vec<u8>>> {
    let composite = spec.key.len() > 1;
    let cols = spec
        .key
        .iter()
        .map(|c| CanonColumn::encode(column(batch, &c.name, &spec.side)?, c))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let mut ordering = Vec::new();
            for (c, spec_col) in cols.iter().zip(&spec.key) {
                push_ordering(&spec_col.logical, c.get(row), composite, &mut ordering);
            }
            ordering
        })
        .collect())
}

/// Value hashes (row-major: row * n_values + column) and row digests of every row of a batch.
pub struct RowDigests {
    pub row_digest: Vec<u128>,
    pub value_hashes: Vec<u64>,
}

pub fn row_digests(batch: &RecordBatch, spec: &SideSpec, key_digest: &[u128]) -> Result<RowDigests> {
    let n = batch.num_rows();
    let nv = spec.values.len();
    let mut value_hashes = vec![0u64; n * nv];
    for (j, c) in spec.values.iter().enumerate() {
        encode_column(column(batch, &c.name, &spec.side)?, c, &mut |row: usize, bytes: Option<&[u8]>| {
            value_hashes[row * nv + j] = value_hash(bytes);
        })?;
    }
    let mut buf = Vec::with_capacity(16 + 8 * nv);
    let row_digest = (0..n)
        .map(|row| {
            buf.clear();
            buf.extend_from_slice(&key_digest[row].to_le_bytes());
            for h in &value_hashes[row * nv..(row + 1) * nv] {
                buf.extend_from_slice(&h.to_le_bytes());
            }
            xxh3_128(&buf)
        })
        .collect();
    Ok(RowDigests { row_digest, value_hashes })
}

/// Which leaves a pass looks at: a leaf passes when `leaf >> shift` is in `parents`.
#[derive(Debug, Clone)]
pub struct LeafFilter {
    pub shift: u32,
    pub parents: HashSet<u64>,
}

impl LeafFilter {
    #[inline]
    pub fn admits(&self, leaf: u64) -> bool {
        self.parents.contains(&(leaf >> self.shift))
    }
}

/// Rows of `keys` admitted by `filter`, as take-indices (None: every row).
pub fn selection(keys: &KeyDigests, filter: Option<&LeafFilter>) -> Option<UInt32Array> {
    let f = filter?;
    Some(keys.leaf.iter().enumerate().filter(|(_, l)| f.admits(**l)).map(|(i, _)| i as u32).collect())
}

/// Keep only the selected rows of a batch and of its key digests.
pub fn select(batch: &RecordBatch, keys: KeyDigests, sel: &UInt32Array) -> Result<(RecordBatch, KeyDigests)> {
    let idx: Vec<usize> = sel.values().iter().map(|&i| i as usize).collect();
    let batch = arrow_select::take::take_record_batch(batch, sel)?;
    let keys = KeyDigests {
        key_digest: idx.iter().map(|&i| keys.key_digest[i]).collect(),
        leaf: idx.iter().map(|&i| keys.leaf[i]).collect(),
    };
    debug_assert_eq!(batch.num_rows(), sel.len());
    Ok((batch, keys))
}
