//! The two kinds of pass over a side: the hash pass (leaf summaries only, memory O(leaves)) and the
//! collect pass (keep the rows of a few mismatched leaves for the row-by-row diff).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow_array::RecordBatch;

use crate::digest::{key_digests, row_digests, row_digests_into, select, selection, LeafFilter, RowDigests};
use crate::error::Result;
use crate::leaves::{LeafAccumulator, LeafSet};
use crate::logical::SideSpec;
use crate::partition::Partitioner;
use crate::scan::{run_parallel, BatchStream};

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

/// Leaf summaries of every row of every stream.
pub fn hash_pass(streams: Vec<BatchStream>, cfg: &PassConfig) -> Result<LeafSet> {
    let p = cfg.partitioner;
    let accs = run_parallel(
        streams,
        cfg.workers,
        cfg.cancel,
        || {
            let digests = RowDigests::default();
            (LeafAccumulator::new(p.num_leaves(), cfg.filter.is_some()), digests)
        },
        |(acc, rows), batch| {
            cfg.count(batch.num_rows());
            // blocks small enough that the per-column hashes of a block stay in cache
            for offset in (0..batch.num_rows()).step_by(BLOCK_ROWS) {
                let block = batch.slice(offset, BLOCK_ROWS.min(batch.num_rows() - offset));
                let keys = key_digests(&block, cfg.spec, p)?;
                let (block, keys) = match selection(&keys, cfg.filter) {
                    Some(sel) => select(&block, keys, &sel)?,
                    None => (block, keys),
                };
                row_digests_into(&block, cfg.spec, &keys.key_digest, rows, false)?;
                for i in 0..block.num_rows() {
                    acc.add(keys.leaf[i], keys.key_digest[i], rows.row_digest[i]);
                }
            }
            Ok(())
        },
    )?;
    let accs = accs.into_iter().map(|(acc, _)| acc).collect();
    Ok(LeafSet::from_accumulators(p.num_ranges(), p.fanout_bits(), accs))
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

    fn append(&mut self, mut other: Collected) {
        self.batches.append(&mut other.batches);
        self.key_digest.append(&mut other.key_digest);
        self.row_digest.append(&mut other.row_digest);
        self.value_hashes.append(&mut other.value_hashes);
        self.leaf.append(&mut other.leaf);
    }
}

pub fn collect_pass(streams: Vec<BatchStream>, cfg: &PassConfig) -> Result<Collected> {
    let p = cfg.partitioner;
    let parts = run_parallel(streams, cfg.workers, cfg.cancel, Collected::default, |out, batch| {
        cfg.count(batch.num_rows());
        let keys = key_digests(&batch, cfg.spec, p)?;
        let (batch, keys) = match selection(&keys, cfg.filter) {
            Some(sel) => select(&batch, keys, &sel)?,
            None => (batch, keys),
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = row_digests(&batch, cfg.spec, &keys.key_digest)?;
        out.batches.push(batch);
        out.key_digest.extend(keys.key_digest);
        out.leaf.extend(keys.leaf);
        out.row_digest.extend(rows.row_digest);
        out.value_hashes.extend(rows.value_hashes);
        Ok(())
    })?;
    let mut all = Collected::default();
    for part in parts {
        all.append(part);
    }
    Ok(all)
}
