//! The two kinds of pass over a side: the hash pass (leaf summaries only, memory O(leaves)) and the
//! collect pass (keep the rows of a few mismatched leaves for the row-by-row diff).
//!
//! A side held in memory is read again unchanged, slice for slice (see `SliceTag`), so its hash
//! pass can remember the leaf of every row (4 bytes a row) and its collect pass then picks the rows
//! of the mismatched leaves without hashing every key a second time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use arrow_array::RecordBatch;

use crate::digest::{
    admitted, key_digests, key_digests_into, row_digests, row_digests_into, select, selection, KeyDigests,
    LeafFilter, RowDigests,
};
use crate::error::Result;
use crate::leaves::{LeafAccumulator, LeafSet};
use crate::logical::SideSpec;
use crate::partition::Partitioner;
use crate::scan::{run_parallel, BatchStream, SliceTag};

/// Rows digested at a time within a batch.
const BLOCK_ROWS: usize = 8192;

pub struct PassConfig<'a> {
    pub spec: &'a SideSpec,
    pub partitioner: &'a Partitioner,
    /// Only rows in these leaves count (None: all rows).
    pub filter: Option<&'a LeafFilter>,
    pub workers: usize,
    pub cancel: &'a AtomicBool,
    /// Counts the rows read so far (progress for the caller, read while the pass runs).
    pub rows_read: Option<&'a AtomicU64>,
}

impl PassConfig<'_> {
    fn count(&self, rows: usize) {
        if let Some(c) = self.rows_read {
            c.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }
}

/// The leaf of every row of a side, slice by slice, as a hash pass saw them.
#[derive(Debug, Default)]
pub struct RowLeaves {
    /// The leaf space the ids belong to: (ranges, fanout bits). A collect pass over another (a
    /// refined partitioner) cannot use them.
    shape: (u64, u32),
    slices: HashMap<SliceTag, Vec<u32>>,
}

impl RowLeaves {
    /// The leaves of a slice, when it was seen with this many rows in this leaf space.
    fn of(&self, tag: SliceTag, rows: usize, p: &Partitioner) -> Option<&[u32]> {
        if self.shape != (p.num_ranges(), p.fanout_bits()) {
            return None;
        }
        self.slices.get(&tag).map(Vec::as_slice).filter(|l| l.len() == rows)
    }

    pub fn num_rows(&self) -> usize {
        self.slices.values().map(Vec::len).sum()
    }
}

/// Leaf summaries of every row of every stream.
pub fn hash_pass(streams: Vec<BatchStream>, cfg: &PassConfig) -> Result<LeafSet> {
    Ok(hash_pass_inner(streams, cfg, false)?.0)
}

/// `hash_pass` that also remembers the leaf of every row, for a collect pass over the same
/// streams (`collect_pass_known`). Leaf ids must fit 32 bits, and no filter may be set.
pub fn hash_pass_remembering(streams: Vec<BatchStream>, cfg: &PassConfig) -> Result<(LeafSet, RowLeaves)> {
    let remember = cfg.filter.is_none() && cfg.partitioner.num_leaves() <= u32::MAX as u64 + 1;
    hash_pass_inner(streams, cfg, remember)
}

fn hash_pass_inner(
    streams: Vec<BatchStream>,
    cfg: &PassConfig,
    remember: bool,
) -> Result<(LeafSet, RowLeaves)> {
    let p = cfg.partitioner;
    // One accumulator a side however many workers hash it: a dense one is 48 bytes a leaf (up to
    // 2^20 leaves), so one a worker made the pass's memory grow with the cores (8 workers a side:
    // ~800 MB at the cap). Workers add a block's rows under the lock: ~8k additions against the
    // hashing of 8k rows, a few percent of a worker's time. A single worker keeps its own.
    let shared = (cfg.workers > 1).then(|| Mutex::new(LeafAccumulator::new(p.num_leaves(), cfg.filter)));
    let states = run_parallel(
        streams,
        cfg.workers,
        cfg.cancel,
        || {
            let own = shared.is_none().then(|| LeafAccumulator::new(p.num_leaves(), cfg.filter));
            (own, KeyDigests::default(), RowDigests::default(), Vec::<(SliceTag, Vec<u32>)>::new())
        },
        |(own, block_keys, rows, seen), tag, batch| {
            cfg.count(batch.num_rows());
            let mut slice_leaves = Vec::with_capacity(if remember { batch.num_rows() } else { 0 });
            // blocks small enough that the per-column hashes of a block stay in cache
            for offset in (0..batch.num_rows()).step_by(BLOCK_ROWS) {
                let block = batch.slice(offset, BLOCK_ROWS.min(batch.num_rows() - offset));
                key_digests_into(&block, cfg.spec, p, block_keys)?;
                if remember {
                    slice_leaves.extend(block_keys.leaf.iter().map(|&l| l as u32));
                }
                let selected;
                let (block, keys) = match selection(block_keys, cfg.filter) {
                    Some(sel) => {
                        selected = select(&block, std::mem::take(block_keys), &sel)?;
                        (&selected.0, &selected.1)
                    }
                    None => (&block, &*block_keys),
                };
                row_digests_into(block, cfg.spec, &keys.key_digest, rows, false)?;
                let add = |acc: &mut LeafAccumulator| {
                    for i in 0..block.num_rows() {
                        acc.add(keys.leaf[i], keys.key_digest[i], rows.row_digest[i]);
                    }
                };
                match (own.as_mut(), &shared) {
                    (Some(acc), _) => add(acc),
                    // a worker that panicked mid-block fails the pass anyway: the lock's poison adds nothing
                    (None, Some(shared)) => add(&mut shared.lock().unwrap_or_else(PoisonError::into_inner)),
                    (None, None) => unreachable!("a worker without an accumulator of its own shares one"),
                }
            }
            if remember {
                seen.push((tag, slice_leaves));
            }
            Ok(())
        },
    )?;
    let mut accs = Vec::with_capacity(states.len());
    let mut remembered = RowLeaves { shape: (p.num_ranges(), p.fanout_bits()), ..RowLeaves::default() };
    for (own, _, _, seen) in states {
        accs.extend(own);
        remembered.slices.extend(seen);
    }
    accs.extend(shared.map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner)));
    Ok((LeafSet::from_accumulators(p.num_ranges(), p.fanout_bits(), accs), remembered))
}

/// The rows of one side that fall in the filtered leaves, with their digests.
#[derive(Default)]
pub struct Collected {
    /// The kept rows, batch by batch; row r of the whole is found through `locate`.
    pub batches: Vec<RecordBatch>,
    pub key_digest: Vec<u128>,
    pub row_digest: Vec<u128>,
    /// Row-major value hashes: row * n_values + column.
    pub value_hashes: Vec<u64>,
    pub leaf: Vec<u64>,
}

impl Collected {
    pub fn len(&self) -> usize {
        self.key_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_digest.is_empty()
    }

    /// The given rows (indexes into all kept rows, in any order) as one batch, in that order;
    /// None when nothing was kept.
    pub fn take_rows(&self, rows: &[usize]) -> Result<Option<RecordBatch>> {
        let Some(first) = self.batches.first() else { return Ok(None) };
        let mut starts = Vec::with_capacity(self.batches.len());
        let mut total = 0;
        for b in &self.batches {
            starts.push(total);
            total += b.num_rows();
        }
        let at: Vec<(usize, usize)> = rows
            .iter()
            .map(|&r| {
                let batch = starts.partition_point(|&s| s <= r) - 1;
                (batch, r - starts[batch])
            })
            .collect();
        if at.is_empty() {
            return Ok(Some(first.slice(0, 0)));
        }
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok(Some(arrow_select::interleave::interleave_record_batch(&batches, &at)?))
    }

    /// All parts as one, each vector allocated once at its final size, and each part freed as
    /// soon as it is copied (joining from borrowed parts held every collected digest twice).
    fn concat(parts: Vec<Collected>) -> Collected {
        let rows: usize = parts.iter().map(Collected::len).sum();
        let values: usize = parts.iter().map(|p| p.value_hashes.len()).sum();
        let mut out = Collected {
            batches: Vec::with_capacity(parts.len()),
            key_digest: Vec::with_capacity(rows),
            row_digest: Vec::with_capacity(rows),
            value_hashes: Vec::with_capacity(values),
            leaf: Vec::with_capacity(rows),
        };
        for part in parts {
            out.key_digest.extend_from_slice(&part.key_digest);
            out.row_digest.extend_from_slice(&part.row_digest);
            out.value_hashes.extend_from_slice(&part.value_hashes);
            out.leaf.extend_from_slice(&part.leaf);
            out.batches.extend(part.batches);
        }
        out
    }
}

pub fn collect_pass(streams: Vec<BatchStream>, cfg: &PassConfig) -> Result<Collected> {
    collect_pass_known(streams, cfg, &RowLeaves::default())
}

/// `collect_pass` over the streams a `hash_pass_remembering` read: a slice whose leaves are known
/// is filtered by them, and only its kept rows are hashed (any other slice is read as usual).
pub fn collect_pass_known(
    streams: Vec<BatchStream>,
    cfg: &PassConfig,
    known: &RowLeaves,
) -> Result<Collected> {
    let p = cfg.partitioner;
    // each worker keeps one part per slice and they are joined once at the end, at their final
    // size: appending slice by slice would regrow (and copy) every vector many times
    let parts =
        run_parallel(streams, cfg.workers, cfg.cancel, Vec::<Collected>::new, |parts, tag, batch| {
            cfg.count(batch.num_rows());
            let (batch, keys) = match (known.of(tag, batch.num_rows(), p), cfg.filter) {
                (Some(leaves), Some(filter)) => {
                    let sel = admitted(leaves.iter().map(|&l| l as u64), filter);
                    if sel.is_empty() {
                        return Ok(());
                    }
                    let batch = arrow_select::take::take_record_batch(&batch, &sel)?;
                    let keys = key_digests(&batch, cfg.spec, p)?;
                    (batch, keys)
                }
                _ => {
                    let keys = key_digests(&batch, cfg.spec, p)?;
                    match selection(&keys, cfg.filter) {
                        Some(sel) => select(&batch, keys, &sel)?,
                        None => (batch, keys),
                    }
                }
            };
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let rows = row_digests(&batch, cfg.spec, &keys.key_digest)?;
            parts.push(Collected {
                batches: vec![batch],
                key_digest: keys.key_digest,
                row_digest: rows.row_digest,
                value_hashes: rows.value_hashes,
                leaf: keys.leaf,
            });
            Ok(())
        })?;
    Ok(Collected::concat(parts.into_iter().flatten().collect()))
}
