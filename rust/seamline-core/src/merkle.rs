//! A binary merkle tree over the leaf digests of one side. Two trees compare top-down: equal
//! subtrees are skipped whole, so a tree that ships over the network (a shard's result) is compared
//! in time proportional to the differences, not to the leaves.

use crate::leaves::LeafSet;

#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// levels[0] are the leaf digests (padded to a power of two), levels.last() is the root.
    levels: Vec<Vec<u128>>,
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

impl MerkleTree {
    pub fn build(set: &LeafSet) -> Self {
        let width = set.num_leaves().max(1).next_power_of_two() as usize;
        let mut level = vec![0u128; width];
        for (id, leaf) in &set.leaves {
            level[*id as usize] = leaf.digest();
        }
        let mut levels = vec![level];
        while levels.last().unwrap().len() > 1 {
            let prev = levels.last().unwrap();
            levels.push(prev.chunks(2).map(|c| parent(c[0], c[1])).collect());
        }
        Self { levels }
    }

    pub fn root(&self) -> u128 {
        self.levels.last().unwrap()[0]
    }

    /// Leaf ids that differ, walking down only into differing subtrees. Both trees must come from
    /// leaf sets of the same shape.
    pub fn diff(&self, other: &MerkleTree) -> Vec<u64> {
        let mut out = Vec::new();
        if self.levels.len() != other.levels.len() {
            return out;
        }
        let top = self.levels.len() - 1;
        let mut frontier = vec![0usize];
        for depth in (0..=top).rev() {
            let (a, b) = (&self.levels[depth], &other.levels[depth]);
            let differing: Vec<usize> = frontier.into_iter().filter(|&i| a[i] != b[i]).collect();
            if depth == 0 {
                out.extend(differing.into_iter().map(|i| i as u64));
                break;
            }
            frontier = differing.into_iter().flat_map(|i| [2 * i, 2 * i + 1]).collect();
        }
        out
    }
}
