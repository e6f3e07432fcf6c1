//! A binary merkle tree over the leaf digests of one side. Two trees compare top-down: equal
//! subtrees are skipped whole, so a tree that ships over the network (a shard's result) is compared
//! in time proportional to the differences, not to the leaves.

use crate::leaves::LeafSet;

#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// levels[0] are the leaf digests (the leaf space padded to a power of two), levels.last() is
    /// the root. Each level holds only its non-zero nodes as sorted (index, digest) pairs.
    ///
    /// FIX(tests): the levels used to be dense vectors of the whole leaf space, so a tree of a
    /// refined (sparse) leaf set, e.g. 3 ranges x 2^40 leaves with a handful non-empty, tried to
    /// allocate terabytes. An all-empty subtree hashes to 0 (see `parent`), so leaving zero nodes
    /// out changes no digest: roots are the same as those of the dense tree, and building costs
    /// O(non-empty leaves x depth).
    levels: Vec<Vec<(u64, u128)>>,
}

fn parent(a: u128, b: u128) -> u128 {
    if a == 0 && b == 0 {
        return 0;
    }
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(&a.to_le_bytes());
    buf[16..].copy_from_slice(&b.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&buf)
}

/// The digest of node `i` of a sparse level (0 when absent).
fn node(level: &[(u64, u128)], i: u64) -> u128 {
    level.binary_search_by_key(&i, |(id, _)| *id).map(|p| level[p].1).unwrap_or(0)
}

impl MerkleTree {
    pub fn build(set: &LeafSet) -> Self {
        // log2 of the leaf space rounded up to a power of two (without overflowing).
        let n = set.num_leaves().max(1);
        let depth = u64::BITS - (n - 1).leading_zeros();
        let mut level: Vec<(u64, u128)> =
            set.leaves.iter().map(|(id, leaf)| (*id, leaf.digest())).filter(|(_, d)| *d != 0).collect();
        level.sort_unstable_by_key(|(id, _)| *id);
        let mut levels = Vec::with_capacity(depth as usize + 1);
        for _ in 0..depth {
            let mut up = Vec::with_capacity(level.len().div_ceil(2));
            let mut k = 0;
            while k < level.len() {
                let (id, d) = level[k];
                let (left, right) = if id & 1 == 1 {
                    (0, d)
                } else if level.get(k + 1).is_some_and(|(next, _)| *next == id | 1) {
                    k += 1;
                    (d, level[k].1)
                } else {
                    (d, 0)
                };
                up.push((id >> 1, parent(left, right)));
                k += 1;
            }
            levels.push(std::mem::replace(&mut level, up));
        }
        levels.push(level);
        Self { levels }
    }

    pub fn root(&self) -> u128 {
        node(self.levels.last().unwrap(), 0)
    }

    /// The root `build(set).root()` gives, computed level by level in one vector reused in place:
    /// a report asks for both sides' roots, and a full tree of a million leaves is tens of MB.
    pub fn root_of(set: &LeafSet) -> u128 {
        let n = set.num_leaves().max(1);
        let depth = u64::BITS - (n - 1).leading_zeros();
        let mut level: Vec<(u64, u128)> =
            set.leaves.iter().map(|(id, leaf)| (*id, leaf.digest())).filter(|(_, d)| *d != 0).collect();
        level.sort_unstable_by_key(|(id, _)| *id);
        for _ in 0..depth {
            // the write position never passes the read position: pairs fold into one node
            let (mut read, mut write) = (0, 0);
            while read < level.len() {
                let (id, d) = level[read];
                let (left, right) = if id & 1 == 1 {
                    (0, d)
                } else if level.get(read + 1).is_some_and(|(next, _)| *next == id | 1) {
                    read += 1;
                    (d, level[read].1)
                } else {
                    (d, 0)
                };
                level[write] = (id >> 1, parent(left, right));
                write += 1;
                read += 1;
            }
            level.truncate(write);
        }
        node(&level, 0)
    }

    /// Leaf ids that differ, walking down only into differing subtrees. Both trees must come from
    /// leaf sets of the same shape (trees of different depths yield no ids).
    pub fn diff(&self, other: &MerkleTree) -> Vec<u64> {
        let mut out = Vec::new();
        if self.levels.len() != other.levels.len() {
            return out;
        }
        let top = self.levels.len() - 1;
        let mut frontier = vec![0u64];
        for depth in (0..=top).rev() {
            let (a, b) = (&self.levels[depth], &other.levels[depth]);
            let differing: Vec<u64> = frontier.into_iter().filter(|&i| node(a, i) != node(b, i)).collect();
            if depth == 0 {
                out = differing;
                break;
            }
            frontier = differing.into_iter().flat_map(|i| [2 * i, 2 * i + 1]).collect();
        }
        out
    }
}
