//! Leaves: where a row's key falls. A leaf is (key range, key-digest prefix): ranges come from the
//! source's boundaries so stores can push a range predicate down; the digest prefix splits each
//! range further without needing finer boundaries (and is all there is for keys with no order).

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioner {
    /// Strictly increasing ordering keys; range i is [bounds[i-1], bounds[i]).
    bounds: Vec<Vec<u8>>,
    /// Each range is split into 2^fanout_bits leaves by the top bits of the key digest.
    fanout_bits: u32,
    /// The bounds as big-endian u128 when every bound is 16 bytes (integer and decimal keys):
    /// the same order, compared without touching memory per byte.
    wide_bounds: Option<Vec<u128>>,
}

pub const MAX_FANOUT_BITS: u32 = 40;

impl Partitioner {
    pub fn new(bounds: Vec<Vec<u8>>, fanout_bits: u32) -> Result<Self> {
        if fanout_bits > MAX_FANOUT_BITS {
            return Err(CoreError::Invalid(format!("fanout_bits {fanout_bits} > {MAX_FANOUT_BITS}")));
        }
        if let Some(i) = bounds.windows(2).position(|w| w[0] >= w[1]) {
            return Err(CoreError::Invalid(format!(
                "range boundaries must be strictly increasing (boundary {} is not)",
                i + 1
            )));
        }
        let wide_bounds = bounds
            .iter()
            .map(|b| <[u8; 16]>::try_from(b.as_slice()).ok().map(u128::from_be_bytes))
            .collect::<Option<Vec<u128>>>();
        Ok(Self { bounds, fanout_bits, wide_bounds })
    }

    pub fn bounds(&self) -> &[Vec<u8>] {
        &self.bounds
    }

    pub fn fanout_bits(&self) -> u32 {
        self.fanout_bits
    }

    pub fn num_ranges(&self) -> u64 {
        self.bounds.len() as u64 + 1
    }

    pub fn num_leaves(&self) -> u64 {
        self.num_ranges() << self.fanout_bits
    }

    #[inline]
    pub fn range_of(&self, ordering_key: &[u8]) -> u64 {
        self.bounds.partition_point(|b| b.as_slice() <= ordering_key) as u64
    }

    #[inline]
    pub fn leaf_of(&self, ordering_key: &[u8], key_digest: u128) -> u64 {
        let prefix = if self.fanout_bits == 0 { 0 } else { (key_digest >> (128 - self.fanout_bits)) as u64 };
        (self.range_of(ordering_key) << self.fanout_bits) | prefix
    }

    /// `leaf_of` for a 16-byte ordering key given as a big-endian u128 (integer and decimal keys).
    #[inline]
    pub fn leaf_of_wide(&self, ordering_key: u128, key_digest: u128) -> u64 {
        let range = match &self.wide_bounds {
            Some(b) => b.partition_point(|&x| x <= ordering_key) as u64,
            None => self.range_of(&ordering_key.to_be_bytes()),
        };
        let prefix = if self.fanout_bits == 0 { 0 } else { (key_digest >> (128 - self.fanout_bits)) as u64 };
        (range << self.fanout_bits) | prefix
    }

    /// The range of a 16-byte ordering key and that range's span [lo, hi) (hi None: unbounded),
    /// so a caller walking keys in order can skip the search while keys stay inside the span.
    #[inline]
    pub fn wide_range(&self, ordering_key: u128) -> (u64, u128, Option<u128>) {
        match &self.wide_bounds {
            Some(b) => {
                let r = b.partition_point(|&x| x <= ordering_key);
                let lo = if r == 0 { 0 } else { b[r - 1] };
                (r as u64, lo, b.get(r).copied())
            }
            None => (self.range_of(&ordering_key.to_be_bytes()), ordering_key, Some(ordering_key)),
        }
    }

    #[inline]
    pub fn prefix_of(&self, key_digest: u128) -> u64 {
        if self.fanout_bits == 0 {
            0
        } else {
            (key_digest >> (128 - self.fanout_bits)) as u64
        }
    }

    pub fn range_of_leaf(&self, leaf: u64) -> u64 {
        leaf >> self.fanout_bits
    }

    /// The same ranges, each leaf split into 2^extra_bits children (child >> extra_bits == parent).
    pub fn refined(&self, extra_bits: u32) -> Result<Self> {
        Self::new(self.bounds.clone(), self.fanout_bits + extra_bits)
    }
}

/// Coalesce sorted mismatched leaves into runs of consecutive ranges: (first_range, last_range).
pub fn coalesce_ranges(leaves: &[u64], fanout_bits: u32) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &leaf in leaves {
        let r = leaf >> fanout_bits;
        match out.last_mut() {
            Some((_, last)) if *last == r || *last + 1 == r => *last = r,
            _ => out.push((r, r)),
        }
    }
    out
}
