//! Leaves: where a row's key falls. A leaf is (key range, key-digest prefix): ranges come from the
//! source's boundaries so stores can push a range predicate down; the digest prefix splits each
//! range further without needing finer boundaries (and is all there is for keys with no order).

use std::sync::Arc;

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioner {
    /// Strictly increasing ordering keys; range i is [bounds[i-1], bounds[i]). Shared with the
    /// partitioners refined from this one.
    bounds: Arc<Bounds>,
    /// Each range is split into 2^fanout_bits leaves by the top bits of the key digest.
    fanout_bits: u32,
}

/// Range boundaries held compactly: up to 2^20 of them (engine.MAX_PUSHED_RANGES), so one heap
/// allocation per boundary (a `Vec<u8>` each, ~56 bytes with its header) cost ~60 MB at 1M.
#[derive(Debug, PartialEq, Eq)]
enum Bounds {
    /// Every bound is 16 bytes (integer and decimal keys): big-endian u128, the same order,
    /// compared without touching memory per byte.
    Wide(Vec<u128>),
    /// All bounds concatenated; bound i is bytes[ends[i-1]..ends[i]].
    Bytes { bytes: Vec<u8>, ends: Vec<usize> },
}

impl Bounds {
    fn len(&self) -> usize {
        match self {
            Bounds::Wide(w) => w.len(),
            Bounds::Bytes { ends, .. } => ends.len(),
        }
    }

    fn get(&self, i: usize) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Bounds::Wide(w) => std::borrow::Cow::Owned(w[i].to_be_bytes().to_vec()),
            Bounds::Bytes { bytes, ends } => {
                std::borrow::Cow::Borrowed(&bytes[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
            }
        }
    }

    /// How many bounds are <= `key` (the range `key` falls in).
    fn count_at_or_below(&self, key: &[u8]) -> usize {
        match self {
            Bounds::Wide(w) => match <[u8; 16]>::try_from(key) {
                Ok(k) => {
                    let k = u128::from_be_bytes(k);
                    w.partition_point(|&x| x <= k)
                }
                Err(_) => w.partition_point(|&x| x.to_be_bytes().as_slice() <= key),
            },
            Bounds::Bytes { bytes, ends } => {
                let (mut lo, mut hi) = (0, ends.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    let start = if mid == 0 { 0 } else { ends[mid - 1] };
                    if &bytes[start..ends[mid]] <= key {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        }
    }
}

pub const MAX_FANOUT_BITS: u32 = 40;

impl Partitioner {
    pub fn new(bounds: Vec<Vec<u8>>, fanout_bits: u32) -> Result<Self> {
        let mut builder = BoundsBuilder::default();
        for b in &bounds {
            builder.push(b);
        }
        drop(bounds);
        builder.finish(fanout_bits)
    }

    /// The bounds, each as its own vector (tests and diagnostics; the partitioner keeps them compact).
    pub fn bounds(&self) -> Vec<Vec<u8>> {
        (0..self.bounds.len()).map(|i| self.bounds.get(i).into_owned()).collect()
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
        self.bounds.count_at_or_below(ordering_key) as u64
    }

    #[inline]
    pub fn leaf_of(&self, ordering_key: &[u8], key_digest: u128) -> u64 {
        let prefix = if self.fanout_bits == 0 { 0 } else { (key_digest >> (128 - self.fanout_bits)) as u64 };
        (self.range_of(ordering_key) << self.fanout_bits) | prefix
    }

    /// `leaf_of` for a 16-byte ordering key given as a big-endian u128 (integer and decimal keys).
    #[inline]
    pub fn leaf_of_wide(&self, ordering_key: u128, key_digest: u128) -> u64 {
        let range = match &*self.bounds {
            Bounds::Wide(b) => b.partition_point(|&x| x <= ordering_key) as u64,
            Bounds::Bytes { .. } => self.range_of(&ordering_key.to_be_bytes()),
        };
        let prefix = if self.fanout_bits == 0 { 0 } else { (key_digest >> (128 - self.fanout_bits)) as u64 };
        (range << self.fanout_bits) | prefix
    }

    /// The range of a 16-byte ordering key and that range's span [lo, hi) (hi None: unbounded),
    /// so a caller walking keys in order can skip the search while keys stay inside the span.
    #[inline]
    pub fn wide_range(&self, ordering_key: u128) -> (u64, u128, Option<u128>) {
        match &*self.bounds {
            Bounds::Wide(b) => {
                let r = b.partition_point(|&x| x <= ordering_key);
                let lo = if r == 0 { 0 } else { b[r - 1] };
                (r as u64, lo, b.get(r).copied())
            }
            Bounds::Bytes { .. } => {
                (self.range_of(&ordering_key.to_be_bytes()), ordering_key, Some(ordering_key))
            }
        }
    }

    /// `wide_range` for a key at or above the upper bound of range `from` (keys walked in ascending
    /// order, as a table read in key order gives them): the search gallops forward from `from`, so
    /// a key in one of the next ranges costs a comparison or two near the last one instead of a
    /// binary search over every bound (2^20 bounds are 16 MB: ~20 cache misses a search). Any
    /// other key is searched for from scratch.
    #[inline]
    pub fn wide_range_after(&self, ordering_key: u128, from: u64) -> (u64, u128, Option<u128>) {
        let Bounds::Wide(b) = &*self.bounds else { return self.wide_range(ordering_key) };
        let from = from as usize;
        if b.get(from).is_none_or(|&x| x > ordering_key) {
            return self.wide_range(ordering_key);
        }
        // b[..=from] are <= the key; probe from+1, from+3, from+7, ... until one is above it
        let (mut known, mut step) = (from + 1, 1);
        let r = loop {
            let probe = known + step - 1;
            match b.get(probe) {
                Some(&x) if x <= ordering_key => {
                    known = probe + 1;
                    step *= 2;
                }
                Some(_) => break known + b[known..probe].partition_point(|&x| x <= ordering_key),
                None => break known + b[known..].partition_point(|&x| x <= ordering_key),
            }
        };
        (r as u64, b[r - 1], b.get(r).copied())
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
        let fanout_bits = self.fanout_bits + extra_bits;
        check_fanout(fanout_bits)?;
        Ok(Self { bounds: Arc::clone(&self.bounds), fanout_bits })
    }
}

fn check_fanout(fanout_bits: u32) -> Result<()> {
    if fanout_bits > MAX_FANOUT_BITS {
        return Err(CoreError::Invalid(format!("fanout_bits {fanout_bits} > {MAX_FANOUT_BITS}")));
    }
    Ok(())
}

/// Builds a partitioner's bounds one ordering key at a time, straight into the compact form.
#[derive(Default)]
pub struct BoundsBuilder {
    /// Every bound so far, while each is 16 bytes.
    wide: Vec<u128>,
    /// Every bound so far, concatenated, with where each ends: once one is not 16 bytes.
    bytes: Option<(Vec<u8>, Vec<usize>)>,
    /// The first bound that is not above the one before it (1-based), if any.
    unordered: Option<usize>,
}

impl BoundsBuilder {
    pub fn push(&mut self, bound: &[u8]) {
        if self.bytes.is_none() {
            if let Ok(b) = <[u8; 16]>::try_from(bound) {
                return self.push_wide(u128::from_be_bytes(b));
            }
        }
        // from the first bound of another width on, every bound as bytes (those before it too)
        let wide = std::mem::take(&mut self.wide);
        let (bytes, ends) = self.bytes.get_or_insert_with(|| {
            let (mut bytes, mut ends) = (Vec::with_capacity(wide.len() * 16), Vec::with_capacity(wide.len()));
            for w in wide {
                bytes.extend_from_slice(&w.to_be_bytes());
                ends.push(bytes.len());
            }
            (bytes, ends)
        });
        let n = ends.len();
        if self.unordered.is_none() && n > 0 {
            let start = if n == 1 { 0 } else { ends[n - 2] };
            if &bytes[start..ends[n - 1]] >= bound {
                self.unordered = Some(n);
            }
        }
        bytes.extend_from_slice(bound);
        ends.push(bytes.len());
    }

    /// `push` of a 16-byte bound given as a big-endian u128 (integer keys: no bytes in between).
    pub fn push_wide(&mut self, bound: u128) {
        if self.bytes.is_some() {
            return self.push(&bound.to_be_bytes());
        }
        if self.unordered.is_none() && self.wide.last().is_some_and(|&last| last >= bound) {
            self.unordered = Some(self.wide.len());
        }
        self.wide.push(bound);
    }

    pub fn finish(self, fanout_bits: u32) -> Result<Partitioner> {
        check_fanout(fanout_bits)?;
        if let Some(i) = self.unordered {
            return Err(CoreError::Invalid(format!(
                "range boundaries must be strictly increasing (boundary {i} is not)"
            )));
        }
        let bounds = match self.bytes {
            None => Bounds::Wide(self.wide),
            Some((bytes, ends)) => Bounds::Bytes { bytes, ends },
        };
        Ok(Partitioner { bounds: Arc::new(bounds), fanout_bits })
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
