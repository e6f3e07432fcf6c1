//! Partitioner (ranges x digest prefix), leaf sets (sums, merge, serialisation) and merkle trees.

mod common;

use std::sync::atomic::AtomicBool;

use arrow_array::*;
use common::*;
use seamline_core::digest::ordering_keys;
use seamline_core::partition::MAX_FANOUT_BITS;
use seamline_core::{
    coalesce_ranges, hash_pass, CoreError, Leaf, LeafSet, LogicalType, MerkleTree, Partitioner, PassConfig,
    SideSpec,
};

const INT: LogicalType = LogicalType::Integer;

fn int_spec() -> SideSpec {
    side("source", vec![col("id", INT)], vec![col("v", PLAIN)])
}

fn int_keys(values: Vec<i64>) -> Vec<Vec<u8>> {
    ordering_keys(
        &batch(vec![("id", arr(Int64Array::from(values)))]),
        &side("s", vec![col("id", INT)], vec![]),
    )
    .unwrap()
}

// ------------------------------------------------------------------------------------ partition

#[test]
fn ranges_are_half_open_at_boundaries() {
    let p = Partitioner::new(int_keys(vec![10, 20]), 0).unwrap();
    assert_eq!(p.num_ranges(), 3);
    assert_eq!(p.num_leaves(), 3);
    let probes = int_keys(vec![i64::MIN, -100, 9, 10, 11, 19, 20, 21, i64::MAX]);
    let ranges: Vec<u64> = probes.iter().map(|k| p.range_of(k)).collect();
    assert_eq!(ranges, vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
    // with fanout 0 a leaf is its range
    for k in &probes {
        assert_eq!(p.leaf_of(k, u128::MAX), p.range_of(k));
    }
    // text bounds too
    let p = Partitioner::new(vec![b"m".to_vec()], 0).unwrap();
    assert_eq!(p.range_of(b"l"), 0);
    assert_eq!(p.range_of(b"lzzz"), 0);
    assert_eq!(p.range_of(b"m"), 1);
    assert_eq!(p.range_of(b"m\0"), 1);
    assert_eq!(p.range_of(b""), 0);
}

#[test]
fn partitioner_rejects_bad_arguments() {
    assert!(matches!(Partitioner::new(int_keys(vec![20, 10]), 0), Err(CoreError::Invalid(_))));
    assert!(matches!(Partitioner::new(int_keys(vec![10, 10]), 0), Err(CoreError::Invalid(_))));
    assert!(matches!(Partitioner::new(vec![], MAX_FANOUT_BITS + 1), Err(CoreError::Invalid(_))));
    assert!(Partitioner::new(vec![], MAX_FANOUT_BITS).is_ok());
    let p = Partitioner::new(vec![], MAX_FANOUT_BITS - 2).unwrap();
    assert!(p.refined(2).is_ok());
    assert!(matches!(p.refined(3), Err(CoreError::Invalid(_))));
}

#[test]
fn fanout_bits_take_the_top_digest_bits() {
    let p = Partitioner::new(int_keys(vec![0]), 4).unwrap();
    assert_eq!(p.num_leaves(), 2 << 4);
    let neg = &int_keys(vec![-5])[0];
    let pos = &int_keys(vec![5])[0];
    assert_eq!(p.leaf_of(neg, 0), 0);
    assert_eq!(p.leaf_of(neg, u128::MAX), 0b1111);
    assert_eq!(p.leaf_of(neg, 0xA << 124), 0xA);
    assert_eq!(p.leaf_of(pos, 0xA << 124), 16 + 0xA);
    assert_eq!(p.leaf_of(pos, (0xA << 124) | ((1u128 << 124) - 1)), 16 + 0xA, "lower bits do not matter");
    assert_eq!(p.range_of_leaf(16 + 0xA), 1);
    let wide = Partitioner::new(vec![], MAX_FANOUT_BITS).unwrap();
    assert_eq!(wide.leaf_of(b"x", u128::MAX), (1u64 << MAX_FANOUT_BITS) - 1);
}

#[test]
fn refined_children_shift_back_to_their_parent() {
    let p = Partitioner::new(int_keys(vec![-10, 0, 10]), 3).unwrap();
    let mut rng = Rng::new(7);
    for extra in [1, 4, 8] {
        let f = p.refined(extra).unwrap();
        assert_eq!(f.fanout_bits(), 3 + extra);
        assert_eq!(f.bounds(), p.bounds());
        assert_eq!(f.num_leaves(), p.num_leaves() << extra);
        for _ in 0..500 {
            let kd = ((rng.next() as u128) << 64) | rng.next() as u128;
            let key = &int_keys(vec![rng.next() as i64 % 30])[0];
            let (parent, child) = (p.leaf_of(key, kd), f.leaf_of(key, kd));
            assert_eq!(child >> extra, parent);
            assert_eq!(f.range_of_leaf(child), p.range_of_leaf(parent));
        }
    }
}

#[test]
fn coalesce_ranges_joins_consecutive_ranges() {
    let f = 2;
    let leaf = |range: u64, sub: u64| (range << f) | sub;
    let leaves = vec![leaf(0, 1), leaf(0, 3), leaf(1, 0), leaf(3, 2), leaf(4, 0), leaf(4, 3), leaf(7, 1)];
    assert_eq!(coalesce_ranges(&leaves, f), vec![(0, 1), (3, 4), (7, 7)]);
    assert_eq!(coalesce_ranges(&[], f), vec![]);
    assert_eq!(coalesce_ranges(&[5], 0), vec![(5, 5)]);
    assert_eq!(coalesce_ranges(&[0, 2, 4], 0), vec![(0, 0), (2, 2), (4, 4)]);
}

// ------------------------------------------------------------------------------------ leaves

fn table(ids: &[i64]) -> RecordBatch {
    let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
    batch(vec![
        ("id", arr(Int64Array::from(ids.to_vec()))),
        ("v", arr(StringArray::from(names.iter().map(|s| s.as_str()).collect::<Vec<_>>()))),
    ])
}

fn leafset(batches: Vec<RecordBatch>, p: &Partitioner, workers: usize) -> LeafSet {
    let spec = int_spec();
    let cancel = AtomicBool::new(false);
    let cfg =
        PassConfig { spec: &spec, partitioner: p, filter: None, workers, cancel: &cancel, rows_read: None };
    hash_pass(vec![stream(batches)], &cfg).unwrap()
}

fn partitioner() -> Partitioner {
    Partitioner::new(int_keys(vec![25, 50, 75]), 3).unwrap()
}

#[test]
fn leaf_sums_are_order_independent() {
    let p = partitioner();
    let ids: Vec<i64> = (0..100).collect();
    let whole = leafset(vec![table(&ids)], &p, 1);
    assert_eq!(whole.total_rows(), 100);
    assert!(whole.leaves.windows(2).all(|w| w[0].0 < w[1].0), "sorted by leaf id");
    assert!(whole.leaves.iter().all(|(_, l)| l.count > 0), "only non-empty leaves");
    let mut rng = Rng::new(42);
    for _ in 0..5 {
        let mut shuffled = ids.clone();
        rng.shuffle(&mut shuffled);
        let chunks: Vec<RecordBatch> = shuffled.chunks(7).map(table).collect();
        assert_eq!(leafset(chunks, &p, 2), whole);
    }
}

#[test]
fn a_duplicated_row_changes_its_leaf() {
    let p = partitioner();
    let once = leafset(vec![table(&[1, 2, 3])], &p, 1);
    let twice = leafset(vec![table(&[1, 2, 3, 2])], &p, 1);
    let thrice = leafset(vec![table(&[1, 2, 3, 2, 2])], &p, 1);
    assert_ne!(once, twice);
    assert_ne!(once, thrice, "XOR would cancel the two extra copies; sums must not");
    let diff = once.mismatched(&thrice).unwrap();
    assert_eq!(diff.len(), 1);
    let (a, b) = (once.get(diff[0]), thrice.get(diff[0]));
    assert_eq!(b.count, a.count + 2);
    assert_ne!({ a.row_sum }, { b.row_sum });
    assert_ne!({ a.key_sum }, { b.key_sum });
    // and the merkle roots differ too
    assert_ne!(MerkleTree::build(&once).root(), MerkleTree::build(&thrice).root());
}

#[test]
fn leaf_add_is_a_wrapping_sum() {
    let mut l = Leaf::default();
    l.add(u128::MAX, u128::MAX);
    l.add(1, 2);
    assert_eq!(l, Leaf { count: 2, row_sum: 1, key_sum: 0 });
    let mut m = Leaf::default();
    m.add(1, 2);
    let mut n = Leaf::default();
    n.add(u128::MAX, u128::MAX);
    m.merge(&n);
    assert_eq!(m, l);
    assert_eq!(Leaf::default().digest(), 0);
    assert_ne!(l.digest(), 0);
}

#[test]
fn merging_two_halves_gives_the_whole() {
    let p = partitioner();
    let ids: Vec<i64> = (0..100).collect();
    let whole = leafset(vec![table(&ids)], &p, 1);
    let mut a = leafset(vec![table(&ids[..37])], &p, 1);
    let b = leafset(vec![table(&ids[37..])], &p, 1);
    a.merge(&b).unwrap();
    assert_eq!(a, whole);
    // merge is commutative
    let mut b2 = leafset(vec![table(&ids[37..])], &p, 1);
    b2.merge(&leafset(vec![table(&ids[..37])], &p, 1)).unwrap();
    assert_eq!(b2, whole);
    // merging an empty set changes nothing
    let mut w = whole.clone();
    w.merge(&LeafSet::empty(whole.num_ranges, whole.fanout_bits)).unwrap();
    assert_eq!(w, whole);
    // different shapes refuse to merge
    let other = leafset(vec![table(&ids)], &p.refined(1).unwrap(), 1);
    assert!(matches!(a.merge(&other), Err(CoreError::Invalid(_))));
    assert!(matches!(whole.mismatched(&other), Err(CoreError::Invalid(_))));
}

#[test]
fn leaf_set_bytes_round_trip() {
    let p = partitioner();
    let set = leafset(vec![table(&(0..100).collect::<Vec<_>>())], &p, 1);
    let bytes = set.to_bytes();
    assert_eq!(LeafSet::from_bytes(&bytes).unwrap(), set);
    let empty = LeafSet::empty(4, 3);
    assert_eq!(LeafSet::from_bytes(&empty.to_bytes()).unwrap(), empty);
}

fn corrupt(bytes: &[u8], what: &str, f: impl Fn(&mut Vec<u8>)) {
    let mut b = bytes.to_vec();
    f(&mut b);
    match LeafSet::from_bytes(&b) {
        Err(CoreError::Invalid(_)) => {}
        other => panic!("{what}: expected CoreError::Invalid, got {other:?}"),
    }
}

#[test]
fn corrupted_leaf_set_bytes_are_rejected() {
    let p = partitioner();
    let set = leafset(vec![table(&(0..100).collect::<Vec<_>>())], &p, 1);
    assert!(set.leaves.len() >= 3);
    let bytes = set.to_bytes();
    corrupt(&bytes, "empty", |b| b.clear());
    corrupt(&bytes, "magic", |b| b[0] ^= 1);
    corrupt(&bytes, "truncated", |b| b.truncate(b.len() - 1));
    corrupt(&bytes, "header only", |b| b.truncate(27));
    corrupt(&bytes, "trailing byte", |b| b.push(0));
    corrupt(&bytes, "count too high", |b| b[20] = b[20].wrapping_add(1));
    corrupt(&bytes, "huge count", |b| b[20..28].copy_from_slice(&u64::MAX.to_le_bytes()));
    corrupt(&bytes, "count overflowing to the length", |b| {
        // 28 + n * 48 wraps around to the real length when n = real + 2^64 / 16 (48 = 3 * 16)
        let n = set.leaves.len() as u64 + (1u64 << 60);
        b[20..28].copy_from_slice(&n.to_le_bytes());
    });
    corrupt(&bytes, "leaves out of order", |b| {
        let (first, second) = (28, 28 + 48);
        let a: Vec<u8> = b[first..first + 8].to_vec();
        let c: Vec<u8> = b[second..second + 8].to_vec();
        b[first..first + 8].copy_from_slice(&c);
        b[second..second + 8].copy_from_slice(&a);
    });
    corrupt(&bytes, "leaf id outside the leaf space", |b| {
        let last = b.len() - 48;
        b[last..last + 8].copy_from_slice(&(set.num_leaves()).to_le_bytes());
    });
    corrupt(&bytes, "fanout bits beyond the maximum", |b| b[16..20].copy_from_slice(&200u32.to_le_bytes()));
    corrupt(&bytes, "no ranges", |b| b[8..16].copy_from_slice(&0u64.to_le_bytes()));
}

// ------------------------------------------------------------------------------------ merkle

fn leaf(n: u64) -> Leaf {
    let mut l = Leaf::default();
    for i in 0..n {
        l.add(i as u128 * 7919, i as u128 * 104_729 + n as u128);
    }
    l
}

fn set_of(num_ranges: u64, fanout_bits: u32, ids: &[u64]) -> LeafSet {
    let mut leaves: Vec<(u64, Leaf)> = ids.iter().map(|&id| (id, leaf(id % 5 + 1))).collect();
    leaves.sort_by_key(|(id, _)| *id);
    LeafSet { num_ranges, fanout_bits, leaves }
}

#[test]
fn merkle_diff_finds_exactly_the_changed_leaves() {
    let ids: Vec<u64> = (0..48).filter(|i| i % 3 != 0).collect();
    let a = set_of(3, 4, &ids);
    let mut b = a.clone();
    // change two leaves, remove one, add one that a lacks
    b.leaves[2].1.row_sum ^= 1;
    b.leaves[10].1.count += 1;
    let removed = b.leaves.remove(20).0;
    b.leaves.push((0, leaf(3)));
    b.leaves.sort_by_key(|(id, _)| *id);
    let mut want = vec![a.leaves[2].0, a.leaves[10].0, removed, 0];
    want.sort();
    let (ta, tb) = (MerkleTree::build(&a), MerkleTree::build(&b));
    assert_ne!(ta.root(), tb.root());
    assert_eq!(ta.diff(&tb), want);
    assert_eq!(tb.diff(&ta), want);
    assert_eq!(a.mismatched(&b).unwrap(), want);
}

#[test]
fn merkle_of_identical_sets_is_empty_diff() {
    let a = set_of(5, 2, &[0, 3, 7, 19]);
    let (ta, tb) = (MerkleTree::build(&a), MerkleTree::build(&a.clone()));
    assert_eq!(ta.root(), tb.root());
    assert!(ta.diff(&tb).is_empty());
    assert!(a.mismatched(&a).unwrap().is_empty());
    let e = LeafSet::empty(5, 2);
    assert_eq!(MerkleTree::build(&e).root(), 0);
    assert!(MerkleTree::build(&e).diff(&MerkleTree::build(&e)).is_empty());
    assert_eq!(MerkleTree::build(&e).diff(&ta), vec![0, 3, 7, 19]);
    // a one-leaf space
    let one = set_of(1, 0, &[0]);
    assert_ne!(MerkleTree::build(&one).root(), 0);
    assert_eq!(MerkleTree::build(&one).diff(&MerkleTree::build(&LeafSet::empty(1, 0))), vec![0]);
}

#[test]
fn merkle_root_depends_on_leaf_position() {
    let a = set_of(1, 3, &[1]);
    let mut b = a.clone();
    b.leaves[0].0 = 2;
    assert_ne!(MerkleTree::build(&a).root(), MerkleTree::build(&b).root());
}

#[test]
fn merkle_trees_of_sparse_sets() {
    // A refined leaf space is huge (here 3 x 2^40 leaves) but only a few leaves are non-empty:
    // building and comparing trees must cost the non-empty leaves, not the leaf space.
    let f = MAX_FANOUT_BITS;
    let ids = [5u64, (1 << f) + 17, (2 << f) + (1 << 39), (3u64 << f) - 1];
    let a = set_of(3, f, &ids);
    let mut b = a.clone();
    b.leaves[1].1.key_sum = b.leaves[1].1.key_sum.wrapping_add(1);
    b.leaves.remove(3);
    let (ta, tb) = (MerkleTree::build(&a), MerkleTree::build(&b));
    assert_ne!(ta.root(), tb.root());
    assert_eq!(ta.diff(&tb), vec![ids[1], ids[3]]);
    assert_eq!(a.mismatched(&b).unwrap(), vec![ids[1], ids[3]]);
    assert!(ta.diff(&MerkleTree::build(&a.clone())).is_empty());
    // a sparse set through the byte form
    let back = LeafSet::from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(MerkleTree::build(&back).root(), ta.root());
}

#[test]
fn merkle_diff_agrees_with_mismatched_on_random_sets() {
    let mut rng = Rng::new(99);
    for round in 0..20 {
        let fanout = (round % 7) as u32;
        let ranges = 1 + (round % 4) as u64;
        let space = ranges << fanout;
        let ids_a: Vec<u64> = (0..space).filter(|_| rng.below(2) == 0).collect();
        let mut a = set_of(ranges, fanout, &ids_a);
        let mut b = a.clone();
        for (_, l) in b.leaves.iter_mut() {
            if rng.below(5) == 0 {
                l.row_sum = l.row_sum.wrapping_add(1);
            }
        }
        if rng.below(2) == 0 && !a.leaves.is_empty() {
            a.leaves.remove(rng.below(a.leaves.len()));
        }
        let want = a.mismatched(&b).unwrap();
        assert_eq!(MerkleTree::build(&a).diff(&MerkleTree::build(&b)), want, "round {round}");
    }
}

/// The root of the dense binary tree over the padded leaf space, computed the plain way.
fn dense_root(set: &LeafSet) -> u128 {
    let width = set.num_leaves().max(1).next_power_of_two() as usize;
    let mut level = vec![0u128; width];
    for (id, l) in &set.leaves {
        level[*id as usize] = l.digest();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| {
                if c[0] == 0 && c[1] == 0 {
                    0
                } else {
                    let mut buf = [0u8; 32];
                    buf[..16].copy_from_slice(&c[0].to_le_bytes());
                    buf[16..].copy_from_slice(&c[1].to_le_bytes());
                    xxhash_rust::xxh3::xxh3_128(&buf)
                }
            })
            .collect();
    }
    level[0]
}

#[test]
fn merkle_root_is_the_dense_tree_root() {
    let mut rng = Rng::new(5);
    for (ranges, fanout) in [(1, 0), (1, 1), (3, 0), (3, 2), (5, 3), (4, 6), (7, 5)] {
        let space = ranges << fanout;
        let ids: Vec<u64> = (0..space).filter(|_| rng.below(3) == 0).collect();
        let set = set_of(ranges, fanout, &ids);
        assert_eq!(MerkleTree::build(&set).root(), dense_root(&set), "{ranges} x 2^{fanout}");
    }
}

#[test]
fn root_of_equals_the_built_trees_root() {
    // every shape a leaf set takes: empty, one leaf, sparse over a huge refined space, dense
    let huge: Vec<u64> = vec![0, 1, 5, (1 << 40) - 1, (3 << 40) - 2];
    let dense: Vec<u64> = (0..4096).filter(|i| i % 7 != 3).collect();
    for set in [
        LeafSet::empty(3, 0),
        set_of(1, 0, &[0]),
        set_of(5, 2, &[0, 3, 7, 19]),
        set_of(3, 40, &huge),
        set_of(1000, 2, &dense),
    ] {
        assert_eq!(MerkleTree::root_of(&set), MerkleTree::build(&set).root());
    }
}

#[test]
fn compact_bounds_place_keys_as_a_search_over_the_bounds_would() {
    // variable-length bounds (text keys) and 16-byte ones (integer keys) are held in two compact
    // forms; both must answer as a binary search over the bounds themselves
    let mut rng = Rng::new(11);
    let mut text: Vec<Vec<u8>> =
        (0..300).map(|_| (0..(rng.next() % 6)).map(|_| b'a' + (rng.next() % 4) as u8).collect()).collect();
    text.sort();
    text.dedup();
    let ints = int_keys((0..300).map(|i| i * 7 - 1000).collect());
    for bounds in [text, ints] {
        let p = Partitioner::new(bounds.clone(), 2).unwrap();
        assert_eq!(p.bounds(), bounds);
        for _ in 0..2000 {
            let key: Vec<u8> = if bounds[0].len() == 16 {
                int_keys(vec![(rng.next() % 2400) as i64 - 1200]).remove(0)
            } else {
                (0..(rng.next() % 7)).map(|_| b'a' + (rng.next() % 4) as u8).collect()
            };
            let want = bounds.partition_point(|b| b.as_slice() <= key.as_slice()) as u64;
            assert_eq!(p.range_of(&key), want);
        }
    }
    let err = Partitioner::new(vec![b"b".to_vec(), b"a".to_vec()], 0).unwrap_err();
    assert!(err.to_string().contains("boundary 1 is not"), "{err}");
}
