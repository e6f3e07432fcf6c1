//! Leaf summaries: count, wrapping 128-bit sum of row digests and of key digests. Sums, not XOR,
//! so a duplicated row changes the summary; order-independent, so batches may arrive in any order
//! and partial sets (parallel workers, shards on other machines) merge by addition.

use crate::digest::LeafFilter;
use crate::error::{CoreError, Result};
use crate::fasthash::FastMap;

/// Packed to 8-byte alignment: 40 bytes instead of the 48 a 16-byte-aligned u128 pair rounds up to,
/// so a (leaf id, leaf) slot of an accumulator or leaf set is 48 bytes, not 64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(8))]
pub struct Leaf {
    pub count: u64,
    pub row_sum: u128,
    pub key_sum: u128,
}

impl Leaf {
    #[inline]
    pub fn add(&mut self, key_digest: u128, row_digest: u128) {
        self.count += 1;
        self.row_sum = self.row_sum.wrapping_add(row_digest);
        self.key_sum = self.key_sum.wrapping_add(key_digest);
    }

    pub fn merge(&mut self, other: &Leaf) {
        self.count += other.count;
        self.row_sum = self.row_sum.wrapping_add(other.row_sum);
        self.key_sum = self.key_sum.wrapping_add(other.key_sum);
    }

    /// The digest a merkle tree is built from.
    pub fn digest(&self) -> u128 {
        if self.count == 0 {
            return 0;
        }
        let mut buf = [0u8; 40];
        buf[..8].copy_from_slice(&self.count.to_le_bytes());
        buf[8..24].copy_from_slice(&self.row_sum.to_le_bytes());
        buf[24..].copy_from_slice(&self.key_sum.to_le_bytes());
        xxhash_rust::xxh3::xxh3_128(&buf)
    }
}

/// Accumulates leaves while scanning: dense for a full pass, dense over the admitted leaves for a
/// pass filtered to a few parents (a refinement, a shard's slice), sparse when even those are too
/// many to allocate densely.
#[derive(Debug)]
pub enum LeafAccumulator<'f> {
    /// Slot i is leaf i. Slots are (id, leaf) pairs, ids filled in at the end, so the finished
    /// accumulator compacts in place into the leaf set's sorted pairs (no second copy of it).
    Dense(Vec<(u64, Leaf)>),
    /// Slot `filter.slot(leaf)` is an admitted leaf: memory O(admitted leaves), however large the
    /// leaf space they sit in, without a hash map's per-row probe and slack.
    Ranked(&'f LeafFilter, Vec<(u64, Leaf)>),
    Sparse(FastMap<u64, Leaf>),
}

/// Above this many leaves, accumulate sparsely.
const DENSE_LIMIT: u64 = 1 << 22;

impl<'f> LeafAccumulator<'f> {
    pub fn new(num_leaves: u64, filter: Option<&'f LeafFilter>) -> Self {
        match filter {
            None if num_leaves <= DENSE_LIMIT => {
                LeafAccumulator::Dense(vec![(0, Leaf::default()); num_leaves as usize])
            }
            Some(f) if f.shift < 32 && f.num_parents() << f.shift <= DENSE_LIMIT => {
                LeafAccumulator::Ranked(f, vec![(0, Leaf::default()); (f.num_parents() << f.shift) as usize])
            }
            _ => LeafAccumulator::Sparse(FastMap::default()),
        }
    }

    /// Add a row of `leaf`, which the accumulator's filter (if any) admits.
    #[inline]
    pub fn add(&mut self, leaf: u64, key_digest: u128, row_digest: u128) {
        match self {
            LeafAccumulator::Dense(v) => v[leaf as usize].1.add(key_digest, row_digest),
            LeafAccumulator::Ranked(f, v) => v[f.slot(leaf) as usize].1.add(key_digest, row_digest),
            LeafAccumulator::Sparse(m) => m.entry(leaf).or_default().add(key_digest, row_digest),
        }
    }

    fn into_pairs(self) -> Vec<(u64, Leaf)> {
        match self {
            // enumerated in id order: already sorted
            LeafAccumulator::Dense(mut v) => {
                v.iter_mut().enumerate().for_each(|(i, (id, _))| *id = i as u64);
                v.retain(|(_, l)| l.count > 0);
                v
            }
            // parents in increasing order, children in order within each: sorted too
            LeafAccumulator::Ranked(f, mut v) => {
                let (parents, shift) = (f.parents(), f.shift);
                let low = (1u64 << shift) - 1;
                v.iter_mut().enumerate().for_each(|(i, (id, _))| {
                    *id = (parents[i >> shift] << shift) | (i as u64 & low);
                });
                v.retain(|(_, l)| l.count > 0);
                v
            }
            LeafAccumulator::Sparse(m) => {
                let mut pairs: Vec<(u64, Leaf)> = m.into_iter().collect();
                pairs.sort_unstable_by_key(|(id, _)| *id);
                pairs
            }
        }
    }
}

/// The non-empty leaves of one side, sorted by leaf id, with the shape of the leaf space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSet {
    pub num_ranges: u64,
    pub fanout_bits: u32,
    pub leaves: Vec<(u64, Leaf)>,
}

const MAGIC: &[u8; 8] = b"SMLLEAF1";

impl LeafSet {
    pub fn empty(num_ranges: u64, fanout_bits: u32) -> Self {
        Self { num_ranges, fanout_bits, leaves: Vec::new() }
    }

    pub fn from_accumulators(num_ranges: u64, fanout_bits: u32, accs: Vec<LeafAccumulator<'_>>) -> Self {
        // Dense partials (one per worker of a full or filtered pass) add up element by element
        // first: one sequential sweep instead of a sorted pair list per worker and a merge of those.
        let mut dense: Option<LeafAccumulator> = None;
        let mut sparse = Vec::new();
        for acc in accs {
            match (acc, dense.as_mut()) {
                (acc @ (LeafAccumulator::Dense(_) | LeafAccumulator::Ranked(..)), None) => dense = Some(acc),
                (LeafAccumulator::Dense(v), Some(LeafAccumulator::Dense(total)))
                | (LeafAccumulator::Ranked(_, v), Some(LeafAccumulator::Ranked(_, total))) => {
                    total.iter_mut().zip(&v).for_each(|(t, l)| t.1.merge(&l.1));
                }
                (other, _) => sparse.push(other),
            }
        }
        let mut set = Self::empty(num_ranges, fanout_bits);
        if let Some(total) = dense {
            set.merge_pairs(total.into_pairs());
        }
        for acc in sparse {
            set.merge_pairs(acc.into_pairs());
        }
        set
    }

    pub fn num_leaves(&self) -> u64 {
        self.num_ranges << self.fanout_bits
    }

    pub fn total_rows(&self) -> u64 {
        self.leaves.iter().map(|(_, l)| l.count).sum()
    }

    pub fn get(&self, id: u64) -> Leaf {
        self.leaves.binary_search_by_key(&id, |(i, _)| *i).map(|p| self.leaves[p].1).unwrap_or_default()
    }

    fn merge_pairs(&mut self, other: Vec<(u64, Leaf)>) {
        if self.leaves.is_empty() {
            self.leaves = other;
            return;
        }
        let mine = std::mem::take(&mut self.leaves);
        let mut out = Vec::with_capacity(mine.len().max(other.len()));
        let (mut a, mut b) = (mine.into_iter().peekable(), other.into_iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    let (id, mut l) = a.next().unwrap();
                    l.merge(&b.next().unwrap().1);
                    out.push((id, l));
                }
                (Some(x), Some(y)) if x.0 < y.0 => out.push(a.next().unwrap()),
                (Some(_), Some(_)) | (None, Some(_)) => out.push(b.next().unwrap()),
                (Some(_), None) => out.push(a.next().unwrap()),
                (None, None) => break,
            }
        }
        self.leaves = out;
    }

    /// Add another partial set of the same leaf space (another worker, another shard).
    pub fn merge(&mut self, other: &LeafSet) -> Result<()> {
        self.check_same_shape(other)?;
        self.merge_pairs(other.leaves.clone());
        Ok(())
    }

    fn check_same_shape(&self, other: &LeafSet) -> Result<()> {
        if (self.num_ranges, self.fanout_bits) != (other.num_ranges, other.fanout_bits) {
            return Err(CoreError::Invalid(format!(
                "leaf sets have different shapes: {} ranges x 2^{} vs {} ranges x 2^{}",
                self.num_ranges, self.fanout_bits, other.num_ranges, other.fanout_bits
            )));
        }
        Ok(())
    }

    /// Leaf ids whose summaries differ (present on one side only counts as differing).
    pub fn mismatched(&self, other: &LeafSet) -> Result<Vec<u64>> {
        Ok(self.mismatched_sizes(other)?.into_iter().map(|(id, _)| id).collect())
    }

    /// `mismatched`, each leaf with the larger of its two row counts (what diffing it holds).
    pub fn mismatched_sizes(&self, other: &LeafSet) -> Result<Vec<(u64, u64)>> {
        self.check_same_shape(other)?;
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.leaves, &other.leaves);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    if x.1 != y.1 {
                        out.push((x.0, x.1.count.max(y.1.count)));
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    out.push((x.0, x.1.count));
                    i += 1;
                }
                (Some(_), Some(y)) | (None, Some(y)) => {
                    out.push((y.0, y.1.count));
                    j += 1;
                }
                (Some(x), None) => {
                    out.push((x.0, x.1.count));
                    i += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        Ok(out)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.leaves.len() * 48);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.num_ranges.to_le_bytes());
        out.extend_from_slice(&self.fanout_bits.to_le_bytes());
        out.extend_from_slice(&(self.leaves.len() as u64).to_le_bytes());
        for (id, l) in &self.leaves {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&l.count.to_le_bytes());
            out.extend_from_slice(&l.row_sum.to_le_bytes());
            out.extend_from_slice(&l.key_sum.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| CoreError::Invalid(format!("not a Seamline leaf set: {why}"));
        if bytes.len() < 28 || &bytes[..8] != MAGIC {
            return Err(bad("wrong header"));
        }
        let u64_at = |p: usize| u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap());
        let u128_at = |p: usize| u128::from_le_bytes(bytes[p..p + 16].try_into().unwrap());
        let num_ranges = u64_at(8);
        let fanout_bits = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
        // FIX(tests): corrupted headers used to overflow `28 + n * 48` (a panic in debug builds,
        // a wrong length check in release) and were otherwise trusted: a fanout beyond the
        // partitioner's maximum made `num_leaves` overflow, and leaf ids outside the leaf space
        // made `MerkleTree::build` index out of bounds. Check them all here.
        if fanout_bits > crate::partition::MAX_FANOUT_BITS {
            return Err(bad("fanout bits out of range"));
        }
        if num_ranges == 0 || num_ranges.leading_zeros() < fanout_bits {
            return Err(bad("leaf space out of range"));
        }
        let n = u64_at(20);
        if n.checked_mul(48).and_then(|b| b.checked_add(28)) != Some(bytes.len() as u64) {
            return Err(bad("truncated"));
        }
        let n = n as usize;
        let mut leaves = Vec::with_capacity(n);
        for k in 0..n {
            let p = 28 + k * 48;
            leaves.push((
                u64_at(p),
                Leaf { count: u64_at(p + 8), row_sum: u128_at(p + 16), key_sum: u128_at(p + 32) },
            ));
        }
        if leaves.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(bad("leaves out of order"));
        }
        let num_leaves = num_ranges << fanout_bits;
        if leaves.last().is_some_and(|(id, _)| *id >= num_leaves) {
            return Err(bad("leaf id outside the leaf space"));
        }
        Ok(Self { num_ranges, fanout_bits, leaves })
    }
}
