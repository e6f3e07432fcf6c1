//! Digests of record batches, computed column at a time: each key column is canonicalised once per
//! batch, each value column hashed once per batch, then rows are folded from those columns.
//!
//! key digest  = xxh3-128(framed canonical key columns)
//! value hash  = 64-bit hash of the canonical value (two multiplies up to 16 bytes, xxh3-64 above;
//!               a distinct constant for NULL)
//! row digest  = 128 bits folded from the key digest and the value hashes in column order

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64_with_seed};

use crate::canonical::{encode_column, push_ordering};
use crate::error::{CoreError, Result};
use crate::logical::{ColumnSpec, LogicalType, SideSpec};
use crate::partition::Partitioner;

const VALUE_SEED: u64 = 0x5EA4_11AE;
/// The hash of NULL: a constant no value is expected to hash to (chance 2^-64).
const NULL_HASH: u64 = 0x4E55_4C4C_9D3C_A1E7;
const MIX: [u64; 3] = [0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db, 0x8ebc_6af0_9c88_c6e3];

/// 64x64 -> 128-bit multiply, folded (the wyhash mixing step).
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128) * (b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64
}

#[inline(always)]
fn value_hash(bytes: Option<&[u8]>) -> u64 {
    match bytes {
        // Most canonical values are short (integers, decimals, instants, flags, short text): two
        // multiplies instead of a general-purpose hash. The words are read as overlapping loads (as
        // wyhash does), which with the length mixed in determine every byte, so "a" and "a\0"
        // differ; no copy into a padded buffer (a variable-length memcpy per value).
        Some(b) if b.len() <= 16 => {
            let n = b.len();
            let (lo, hi) = if n >= 8 {
                (read_u64(b, 0), read_u64(b, n - 8))
            } else if n >= 4 {
                (read_u32(b, 0), read_u32(b, n - 4))
            } else if n > 0 {
                ((b[0] as u64) << 16 | (b[n / 2] as u64) << 8 | b[n - 1] as u64, 0)
            } else {
                (0, 0)
            };
            // one multiply: the row digest's fold (below) multiplies again
            mum(lo ^ MIX[0], hi ^ MIX[1]) ^ n as u64
        }
        // Short text (names, emails, codes): the first and the last 16 bytes, three multiplies.
        Some(b) if b.len() <= 32 => {
            let n = b.len();
            let head = mum(read_u64(b, 0) ^ MIX[0], read_u64(b, 8) ^ MIX[1]);
            let tail = mum(read_u64(b, n - 16) ^ MIX[2], read_u64(b, n - 8) ^ MIX[0]);
            mum(head ^ n as u64, tail ^ MIX[1])
        }
        Some(b) => xxh3_64_with_seed(b, VALUE_SEED),
        None => NULL_HASH,
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
        let mut col =
            CanonColumn { data: Vec::new(), offsets: Vec::with_capacity(arr.len() + 1), first_null: None };
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

/// The canonical key columns of a batch. A NULL in any key column is an error naming the side, the
/// column and the row: a NULL key has no canonical bytes (and no place in the key order).
fn key_columns(batch: &RecordBatch, spec: &SideSpec) -> Result<Vec<CanonColumn>> {
    spec.key
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
        .collect()
}

/// Keys of a batch: digest, ordering key (optional) and leaf of every row.
#[derive(Default)]
pub struct KeyDigests {
    pub key_digest: Vec<u128>,
    pub leaf: Vec<u64>,
}

impl KeyDigests {
    /// Empty, with room for `rows` rows.
    fn clear(&mut self, rows: usize) {
        self.key_digest.clear();
        self.leaf.clear();
        self.key_digest.reserve(rows);
        self.leaf.reserve(rows);
    }
}

/// The common case, a single integer key column of a native integer type: digest and leaf straight
/// from the values, with the same bytes the general path would produce.
fn integer_key_digests(arr: &ArrayRef, partitioner: &Partitioner, out: &mut KeyDigests) -> bool {
    if arr.null_count() > 0 {
        return false; // the general path reports the NULL key
    }
    out.clear(arr.len());
    // keys mostly arrive in key order: remember the last range's span and search again only when a
    // key leaves it (an empty span at first), forward from it when the key is above it (the next
    // range, mostly: with ranges of a few rows, a binary search over every bound each few rows cost
    // more than the hashing)
    let (mut range, mut lo, mut hi) = (0u64, 1u128, Some(0u128));
    let mut searched = false;
    let bits = partitioner.fanout_bits();
    for_each_integer(arr, |v| {
        // fixed width: no length prefix (see key_digests)
        let kd = xxh3_128(&v.to_le_bytes());
        out.key_digest.push(kd);
        let ord = integer_ordering(v);
        if ord < lo || hi.is_some_and(|h| ord >= h) {
            (range, lo, hi) = if searched && ord >= lo {
                partitioner.wide_range_after(ord, range)
            } else {
                partitioner.wide_range(ord)
            };
            searched = true;
        }
        out.leaf.push((range << bits) | partitioner.prefix_of(kd));
    })
}

/// The ordering key of an integer as a big-endian u128: its 16 bytes with the sign bit flipped, as
/// push_ordering makes them from the canonical little-endian i128.
#[inline(always)]
fn integer_ordering(v: i128) -> u128 {
    (v as u128) ^ (1 << 127)
}

/// `f` for every value of an integer array (NULL slots included, as their placeholder values),
/// widened to i128; false, and `f` never called, for an array of another type.
#[inline(always)]
fn for_each_integer(arr: &ArrayRef, mut f: impl FnMut(i128)) -> bool {
    macro_rules! each {
        ($t:ty) => {{
            arr.as_primitive::<$t>().values().iter().for_each(|&v| f(v as i128));
            true
        }};
    }
    match arr.data_type() {
        DataType::Int8 => each!(Int8Type),
        DataType::Int16 => each!(Int16Type),
        DataType::Int32 => each!(Int32Type),
        DataType::Int64 => each!(Int64Type),
        DataType::UInt8 => each!(UInt8Type),
        DataType::UInt16 => each!(UInt16Type),
        DataType::UInt32 => each!(UInt32Type),
        DataType::UInt64 => each!(UInt64Type),
        _ => false,
    }
}

/// Canonical key bytes for each row, framed, plus the order-preserving form.
pub fn key_digests(batch: &RecordBatch, spec: &SideSpec, partitioner: &Partitioner) -> Result<KeyDigests> {
    let mut out = KeyDigests::default();
    key_digests_into(batch, spec, partitioner, &mut out)?;
    Ok(out)
}

/// `key_digests` written into `out` (its buffers reused: a pass digests block after block, and a
/// fresh pair of vectors per block was mapped and faulted in anew each time).
pub fn key_digests_into(
    batch: &RecordBatch,
    spec: &SideSpec,
    partitioner: &Partitioner,
    out: &mut KeyDigests,
) -> Result<()> {
    if let [only] = spec.key.as_slice() {
        if only.logical == LogicalType::Integer
            && integer_key_digests(column(batch, &only.name, &spec.side)?, partitioner, out)
        {
            return Ok(());
        }
    }
    let n = batch.num_rows();
    let composite = spec.key.len() > 1;
    let cols = key_columns(batch, spec)?;
    out.clear(n);
    let mut framed = Vec::with_capacity(64);
    let mut ordering = Vec::with_capacity(64);
    for row in 0..n {
        framed.clear();
        ordering.clear();
        for (c, spec_col) in cols.iter().zip(&spec.key) {
            let v = c.get(row);
            // Variable-width values are length-prefixed so column boundaries cannot shift; a
            // fixed-width logical type (integer, decimal, instant, uuid...) has one width per type.
            if !spec_col.logical.fixed_width() {
                framed.extend_from_slice(&(v.len() as u32).to_le_bytes());
            }
            framed.extend_from_slice(v);
            push_ordering(&spec_col.logical, v, composite, &mut ordering);
        }
        let kd = xxh3_128(&framed);
        out.key_digest.push(kd);
        out.leaf.push(partitioner.leaf_of(&ordering, kd));
    }
    Ok(())
}

/// Ordering keys of every row (used to turn sampled key values into range boundaries).
pub fn ordering_keys(batch: &RecordBatch, spec: &SideSpec) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    for_each_ordering_key(batch, spec, |key| out.push(key.to_vec()))?;
    Ok(out)
}

/// Each row's ordering key as a big-endian u128 when the key is one integer column without NULLs
/// (16 bytes each: the partitioner's bounds built without bytes in between, ~10x faster for 2^20
/// sampled bounds); false, and `f` never called, otherwise (use `for_each_ordering_key`).
pub fn for_each_wide_ordering_key(
    batch: &RecordBatch,
    spec: &SideSpec,
    mut f: impl FnMut(u128),
) -> Result<bool> {
    let [only] = spec.key.as_slice() else { return Ok(false) };
    if only.logical != LogicalType::Integer {
        return Ok(false);
    }
    let arr = column(batch, &only.name, &spec.side)?;
    Ok(arr.null_count() == 0 && for_each_integer(arr, |v| f(integer_ordering(v))))
}

/// Each row's ordering key in turn, built in one reused buffer (no allocation per row).
pub fn for_each_ordering_key(batch: &RecordBatch, spec: &SideSpec, mut f: impl FnMut(&[u8])) -> Result<()> {
    let composite = spec.key.len() > 1;
    let cols = key_columns(batch, spec)?;
    let mut ordering = Vec::new();
    for row in 0..batch.num_rows() {
        ordering.clear();
        for (c, spec_col) in cols.iter().zip(&spec.key) {
            push_ordering(&spec_col.logical, c.get(row), composite, &mut ordering);
        }
        f(&ordering);
    }
    Ok(())
}

/// Value hashes (row-major: row * n_values + column) and row digests of every row of a batch.
#[derive(Default)]
pub struct RowDigests {
    pub row_digest: Vec<u128>,
    /// Empty unless asked for (the collect pass needs them to name changed columns).
    pub value_hashes: Vec<u64>,
    /// The two 64-bit lanes each row's digest is folded in, column by column.
    lanes: Vec<(u64, u64)>,
}

pub fn row_digests(batch: &RecordBatch, spec: &SideSpec, key_digest: &[u128]) -> Result<RowDigests> {
    let mut out = RowDigests::default();
    row_digests_into(batch, spec, key_digest, &mut out, true)?;
    Ok(out)
}

/// The keys of value column j in the two lanes: a different pair per position, so the same values
/// in other columns make another digest (the second is odd: it multiplies).
#[inline]
fn lane_keys(j: usize) -> (u64, u64) {
    let j = j as u64 + 1;
    (MIX[0] ^ j.wrapping_mul(0x9E37_79B9_7F4A_7C15), (MIX[1] ^ j.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)) | 1)
}

/// Fold value hash `h` of column j (keys `ka`, `kb`) into a row's lanes: a multiply-fold chain
/// (order-dependent) and a weighted sum (a second, independent 64 bits over the same values).
#[inline(always)]
fn fold(lanes: &mut (u64, u64), h: u64, ka: u64, kb: u64) {
    let (a, b) = lanes;
    *a = mum(*a ^ h, ka);
    *b = b.wrapping_add(h.wrapping_mul(kb));
}

/// `row_digests` into buffers a worker reuses from batch to batch (no fresh pages per batch).
///
/// Each value column is encoded and hashed once, and its hashes folded straight into two 64-bit
/// lanes per row seeded by the key digest (see `fold`), which a last multiply entangles into 128
/// bits: the per-column work streams over contiguous memory and nothing row-major is stored unless
/// `keep_values`.
pub fn row_digests_into(
    batch: &RecordBatch,
    spec: &SideSpec,
    key_digest: &[u128],
    out: &mut RowDigests,
    keep_values: bool,
) -> Result<()> {
    let n = batch.num_rows();
    let nv = spec.values.len();
    let lanes = &mut out.lanes;
    lanes.clear();
    lanes.extend(key_digest[..n].iter().map(|kd| (*kd as u64, (*kd >> 64) as u64)));
    let value_hashes = &mut out.value_hashes;
    value_hashes.clear();
    if keep_values {
        value_hashes.resize(n * nv, 0);
    }
    for (j, c) in spec.values.iter().enumerate() {
        let (ka, kb) = lane_keys(j);
        let arr = column(batch, &c.name, &spec.side)?;
        if keep_values {
            encode_column(arr, c, &mut |row: usize, bytes: Option<&[u8]>| {
                let h = value_hash(bytes);
                fold(&mut lanes[row], h, ka, kb);
                value_hashes[row * nv + j] = h;
            })?;
        } else {
            encode_column(arr, c, &mut |row: usize, bytes: Option<&[u8]>| {
                fold(&mut lanes[row], value_hash(bytes), ka, kb);
            })?;
        }
    }
    out.row_digest.clear();
    out.row_digest.extend(lanes.iter().map(|&(a, b)| {
        // entangle the lanes so each half of the digest depends on both
        let hi = mum(a ^ MIX[2], b ^ MIX[0]);
        let lo = mum(b ^ MIX[1], a ^ nv as u64 ^ MIX[2]);
        ((hi as u128) << 64) | lo as u128
    }));
    Ok(())
}

/// Which leaves a pass looks at: a leaf passes when `leaf >> shift` is one of the parents.
#[derive(Debug, Clone)]
pub struct LeafFilter {
    pub shift: u32,
    parents: ParentSet,
}

#[derive(Debug, Clone)]
enum ParentSet {
    /// One bit per parent id: the per-row lookup is a shift and a mask. `ranks[w]`: parents in
    /// the words before word w (the rank of a parent is then one popcount away).
    Bits { bits: Vec<u64>, ranks: Vec<u32> },
    /// Sorted ids, for id spaces too large for a bitset (deep refinements).
    Sorted(Vec<u64>),
}

/// Largest parent id space kept as a bitset (16 MiB).
const MAX_BITSET_IDS: u64 = 1 << 27;

impl LeafFilter {
    pub fn new(parents: impl IntoIterator<Item = u64>, shift: u32) -> Self {
        let mut ids: Vec<u64> = parents.into_iter().collect();
        let end = ids.iter().copied().max().map_or(0, |m| m + 1);
        let parents = if end <= MAX_BITSET_IDS {
            let mut bits = vec![0u64; end.div_ceil(64) as usize];
            for p in ids {
                bits[(p / 64) as usize] |= 1 << (p % 64);
            }
            let mut ranks = Vec::with_capacity(bits.len());
            let mut total = 0u32;
            for w in &bits {
                ranks.push(total);
                total += w.count_ones();
            }
            ParentSet::Bits { bits, ranks }
        } else {
            ids.sort_unstable();
            ids.dedup();
            ParentSet::Sorted(ids)
        };
        Self { shift, parents }
    }

    #[inline]
    pub fn admits(&self, leaf: u64) -> bool {
        let p = leaf >> self.shift;
        match &self.parents {
            ParentSet::Bits { bits, .. } => {
                bits.get((p / 64) as usize).is_some_and(|w| w & (1 << (p % 64)) != 0)
            }
            ParentSet::Sorted(ids) => ids.binary_search(&p).is_ok(),
        }
    }

    /// How many distinct parents there are.
    pub fn num_parents(&self) -> u64 {
        match &self.parents {
            ParentSet::Bits { ranks, bits } => {
                ranks.last().map_or(0, |&r| r as u64 + bits.last().map_or(0, |w| w.count_ones() as u64))
            }
            ParentSet::Sorted(ids) => ids.len() as u64,
        }
    }

    /// The position of an admitted leaf in the admitted leaf space: its parent's rank among the
    /// parents, then its low `shift` bits. Dense slots for the children of a few parents.
    #[inline]
    pub fn slot(&self, leaf: u64) -> u64 {
        let p = leaf >> self.shift;
        let rank = match &self.parents {
            ParentSet::Bits { bits, ranks } => {
                let w = (p / 64) as usize;
                ranks[w] as u64 + (bits[w] & ((1u64 << (p % 64)) - 1)).count_ones() as u64
            }
            ParentSet::Sorted(ids) => ids.partition_point(|&x| x < p) as u64,
        };
        (rank << self.shift) | (leaf & ((1u64 << self.shift) - 1))
    }

    /// The parents in increasing order.
    pub fn parents(&self) -> Vec<u64> {
        match &self.parents {
            ParentSet::Bits { bits, .. } => bits
                .iter()
                .enumerate()
                .flat_map(|(w, &word)| {
                    (0..64u64).filter(move |b| word & (1 << b) != 0).map(move |b| w as u64 * 64 + b)
                })
                .collect(),
            ParentSet::Sorted(ids) => ids.clone(),
        }
    }
}

/// Rows of `keys` admitted by `filter`, as take-indices (None: every row).
pub fn selection(keys: &KeyDigests, filter: Option<&LeafFilter>) -> Option<UInt32Array> {
    Some(admitted(keys.leaf.iter().copied(), filter?))
}

/// Positions of the leaves `filter` admits, as take-indices.
pub fn admitted(leaves: impl Iterator<Item = u64>, filter: &LeafFilter) -> UInt32Array {
    // into a Vec first: collecting straight into an Arrow array goes through a builder, value by value
    let rows: Vec<u32> =
        leaves.enumerate().filter(|(_, l)| filter.admits(*l)).map(|(i, _)| i as u32).collect();
    UInt32Array::from(rows)
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
