//! End to end through the core: hash passes over parallel streams, mismatched leaves, refinement,
//! collect passes and classification; plus the errors a pass can end with.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;

use arrow_array::*;
use arrow_schema::ArrowError;
use common::*;
use seamline_core::digest::ordering_keys;
use seamline_core::passes::Collected;
use seamline_core::{
    classify, collect_pass, collect_pass_known, hash_pass, hash_pass_remembering, BatchStream, CoreError,
    DiffKind, Difference, Leaf, LeafFilter, LeafSet, LogicalType, Partitioner, PassConfig, Side, SideSpec,
};

const INT: LogicalType = LogicalType::Integer;
const DEC2: LogicalType = LogicalType::Decimal { scale: 2 };

fn spec(side_name: &str) -> SideSpec {
    side(side_name, vec![col("id", INT)], vec![col("name", PLAIN), col("price", DEC2)])
}

fn partitioner(fanout: u32) -> Partitioner {
    let b = batch(vec![("id", arr(Int64Array::from(vec![15, 30, 45])))]);
    Partitioner::new(ordering_keys(&b, &spec("source")).unwrap(), fanout).unwrap()
}

/// Source (Postgres-like): bigint id, text name, numeric(10,2) price; id 15 occurs twice.
fn source_table() -> RecordBatch {
    let mut ids: Vec<i64> = (1..=60).collect();
    ids.insert(30, 15);
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|&i| match i {
            20 | 21 => None,
            _ => Some(format!("item {i}")),
        })
        .collect();
    let prices: Vec<i128> = ids.iter().map(|&i| i as i128 * 100 + 99).collect();
    batch(vec![
        ("id", arr(Int64Array::from(ids))),
        ("name", arr(StringArray::from(names))),
        ("price", arr(Decimal128Array::from(prices).with_precision_and_scale(10, 2).unwrap())),
    ])
}

/// Target (OpenSearch-like): keyword id, text name, double price. Against the source: 5 missing,
/// 100 extra, 7 price changed, 9 name changed, 21 NULL -> "", 33 both changed, 12 twice.
fn target_table() -> RecordBatch {
    let mut ids: Vec<i64> = (1..=60).filter(|&i| i != 5).collect();
    ids.push(100);
    ids.insert(3, 12);
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|&i| match i {
            20 => None,
            21 => Some(String::new()),
            9 | 33 => Some(format!("item {i} (renamed)")),
            _ => Some(format!("item {i}")),
        })
        .collect();
    let prices: Vec<f64> = ids
        .iter()
        .map(|&i| match i {
            7 | 33 => i as f64 + 1.99,
            _ => i as f64 + 0.99,
        })
        .collect();
    let id_text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    batch(vec![
        ("id", arr(StringArray::from(id_text))),
        ("name", arr(LargeStringArray::from(names))),
        ("price", arr(Float64Array::from(prices))),
    ])
}

fn source_streams() -> Vec<BatchStream> {
    streams_of(&source_table(), 7, 3)
}

fn target_streams() -> Vec<BatchStream> {
    streams_of(&target_table(), 5, 2)
}

fn hash(streams: Vec<BatchStream>, spec: &SideSpec, p: &Partitioner, filter: Option<&LeafFilter>) -> LeafSet {
    let cancel = AtomicBool::new(false);
    hash_pass(
        streams,
        &PassConfig { spec, partitioner: p, filter, workers: 2, cancel: &cancel, rows_read: None },
    )
    .unwrap()
}

fn collect(streams: Vec<BatchStream>, spec: &SideSpec, p: &Partitioner, filter: &LeafFilter) -> Collected {
    let cancel = AtomicBool::new(false);
    collect_pass(
        streams,
        &PassConfig {
            spec,
            partitioner: p,
            filter: Some(filter),
            workers: 2,
            cancel: &cancel,
            rows_read: None,
        },
    )
    .unwrap()
}

/// The key (as text) of collected row `r`.
fn key_at(c: &Collected, mut r: usize) -> String {
    for b in &c.batches {
        if r < b.num_rows() {
            return arrow_cast::display::array_value_to_string(b.column_by_name("id").unwrap(), r).unwrap();
        }
        r -= b.num_rows();
    }
    panic!("row {r} beyond the collected rows");
}

type Summary = BTreeSet<(String, String, Vec<usize>, Option<&'static str>, usize)>;

fn summarise(diffs: &[Difference], src: &Collected, dst: &Collected) -> Summary {
    diffs
        .iter()
        .map(|d| {
            let key = match (d.source_row, d.target_row) {
                (Some(r), _) => key_at(src, r),
                (None, Some(r)) => key_at(dst, r),
                (None, None) => panic!("a difference with no row: {d:?}"),
            };
            if let (Some(a), Some(b)) = (d.source_row, d.target_row) {
                assert_eq!(key_at(src, a), key_at(dst, b), "both rows of a difference have one key");
            }
            let side = d.duplicate_side.map(|s| match s {
                Side::Source => "source",
                Side::Target => "target",
            });
            (d.kind.as_str().to_string(), key, d.columns.clone(), side, d.occurrences)
        })
        .collect()
}

fn expected() -> Summary {
    let e = |kind: &str, key: &str, cols: Vec<usize>, side: Option<&'static str>, n: usize| {
        (kind.to_string(), key.to_string(), cols, side, n)
    };
    [
        e("missing", "5", vec![], None, 1),
        e("extra", "100", vec![], None, 1),
        e("changed", "7", vec![1], None, 1),
        e("changed", "9", vec![0], None, 1),
        e("changed", "21", vec![0], None, 1),
        e("changed", "33", vec![0, 1], None, 1),
        e("duplicate", "12", vec![], Some("target"), 2),
        e("duplicate", "15", vec![], Some("source"), 2),
    ]
    .into_iter()
    .collect()
}

#[test]
fn hash_collect_classify_finds_every_kind_and_nothing_else() {
    let p = partitioner(2);
    let (ss, ts) = (spec("source"), spec("target"));
    let src = hash(source_streams(), &ss, &p, None);
    let dst = hash(target_streams(), &ts, &p, None);
    assert_eq!(src.total_rows(), 61);
    assert_eq!(dst.total_rows(), 61);
    let mismatched = src.mismatched(&dst).unwrap();
    assert!(!mismatched.is_empty());
    assert!(mismatched.len() <= 8, "at most one leaf per differing key");
    let filter = LeafFilter::new(mismatched.iter().copied(), 0);
    let a = collect(source_streams(), &ss, &p, &filter);
    let b = collect(target_streams(), &ts, &p, &filter);
    // the collect pass keeps exactly the rows of the mismatched leaves
    assert_eq!(a.len() as u64, mismatched.iter().map(|&l| src.get(l).count).sum::<u64>());
    assert_eq!(b.len() as u64, mismatched.iter().map(|&l| dst.get(l).count).sum::<u64>());
    assert!(a.leaf.iter().all(|l| mismatched.contains(l)));
    assert_eq!(a.value_hashes.len(), a.len() * 2);
    let diffs = classify(&a, &b, 2, 2).unwrap();
    assert_eq!(summarise(&diffs, &a, &b), expected());
    assert_eq!(diffs.len(), expected().len());
    // sorted by row, then kind
    let order: Vec<_> = diffs.iter().map(|d| (d.source_row.or(d.target_row), d.kind)).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn refinement_narrows_to_the_same_differences() {
    let p = partitioner(2);
    let (ss, ts) = (spec("source"), spec("target"));
    let src = hash(source_streams(), &ss, &p, None);
    let dst = hash(target_streams(), &ts, &p, None);
    let mismatched = src.mismatched(&dst).unwrap();
    let extra = 3;
    let finer = p.refined(extra).unwrap();
    let parents = LeafFilter::new(mismatched.iter().copied(), extra);
    let src2 = hash(source_streams(), &ss, &finer, Some(&parents));
    let dst2 = hash(target_streams(), &ts, &finer, Some(&parents));
    assert_eq!(src2.fanout_bits, 2 + extra);
    assert_eq!(src2.total_rows(), mismatched.iter().map(|&l| src.get(l).count).sum::<u64>());
    let refined = src2.mismatched(&dst2).unwrap();
    assert!(refined.iter().all(|l| mismatched.contains(&(l >> extra))));
    assert!(refined.len() <= 8);
    let filter = LeafFilter::new(refined.iter().copied(), 0);
    let a = collect(source_streams(), &ss, &finer, &filter);
    let b = collect(target_streams(), &ts, &finer, &filter);
    assert!(a.len() <= src2.total_rows() as usize);
    assert_eq!(summarise(&classify(&a, &b, 2, 2).unwrap(), &a, &b), expected());
}

#[test]
fn equal_sides_have_no_mismatched_leaves() {
    let p = partitioner(2);
    let ss = spec("source");
    let a = hash(source_streams(), &ss, &p, None);
    let b = hash(vec![stream(vec![source_table()])], &ss, &p, None);
    assert_eq!(a, b);
    assert!(a.mismatched(&b).unwrap().is_empty());
    // collecting every leaf of two equal sides classifies nothing
    let all = LeafFilter::new(0..p.num_leaves(), 0);
    let x = collect(source_streams(), &ss, &p, &all);
    let y = collect(vec![stream(vec![source_table()])], &ss, &p, &all);
    assert_eq!(x.len(), 61);
    let diffs = classify(&x, &y, 2, 1).unwrap();
    // the source's own duplicate (id 15) is held the same on both sides: it agrees
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn workers_streams_and_batch_sizes_do_not_change_the_leaves() {
    let p = partitioner(4);
    let ss = spec("source");
    let cancel = AtomicBool::new(false);
    let reference = hash_pass(
        vec![stream(vec![source_table()])],
        &PassConfig {
            spec: &ss,
            partitioner: &p,
            filter: None,
            workers: 1,
            cancel: &cancel,
            rows_read: None,
        },
    )
    .unwrap();
    for (rows, n_streams, workers) in [(1, 1, 2), (3, 4, 2), (13, 2, 3), (61, 1, 2), (7, 5, 1)] {
        let got = hash_pass(
            streams_of(&source_table(), rows, n_streams),
            &PassConfig {
                spec: &ss,
                partitioner: &p,
                filter: None,
                workers,
                cancel: &cancel,
                rows_read: None,
            },
        )
        .unwrap();
        assert_eq!(got, reference, "{rows} rows x {n_streams} streams, {workers} workers");
    }
    // no streams at all: an empty set of the right shape
    let none = hash_pass(
        vec![],
        &PassConfig {
            spec: &ss,
            partitioner: &p,
            filter: None,
            workers: 2,
            cancel: &cancel,
            rows_read: None,
        },
    )
    .unwrap();
    assert_eq!(none, LeafSet::empty(p.num_ranges(), p.fanout_bits()));
}

#[test]
fn a_batch_larger_than_a_slice_is_split_across_workers() {
    let n = 70_000i64;
    let ids: Vec<i64> = (0..n).map(|i| i * 7 - 100_000).collect();
    let vals: Vec<i64> = (0..n).map(|i| i % 1000).collect();
    let b = batch(vec![("id", arr(Int64Array::from(ids))), ("v", arr(Int64Array::from(vals)))]);
    let s = side("source", vec![col("id", INT)], vec![col("v", INT)]);
    let p = Partitioner::new(vec![], 10).unwrap();
    let cancel = AtomicBool::new(false);
    let one_batch = hash_pass(
        vec![stream(vec![b.clone()])],
        &PassConfig { spec: &s, partitioner: &p, filter: None, workers: 2, cancel: &cancel, rows_read: None },
    )
    .unwrap();
    let many = hash_pass(
        streams_of(&b, 999, 3),
        &PassConfig { spec: &s, partitioner: &p, filter: None, workers: 2, cancel: &cancel, rows_read: None },
    )
    .unwrap();
    assert_eq!(one_batch.total_rows(), n as u64);
    assert_eq!(one_batch, many);
}

// ------------------------------------------------------------------------------------ errors

fn run_hash(streams: Vec<BatchStream>, spec: &SideSpec, cancel: bool) -> Result<LeafSet, CoreError> {
    let cancel = AtomicBool::new(cancel);
    let p = partitioner(2);
    hash_pass(
        streams,
        &PassConfig { spec, partitioner: &p, filter: None, workers: 2, cancel: &cancel, rows_read: None },
    )
}

#[test]
fn a_null_key_is_a_value_error_naming_side_and_column() {
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![Some(1), None, Some(3)]))),
        ("name", arr(StringArray::from(vec!["a", "b", "c"]))),
        ("price", arr(Float64Array::from(vec![1.0, 2.0, 3.0]))),
    ]);
    let streams = vec![stream(vec![source_table()]), stream(vec![b])];
    match run_hash(streams, &spec("source"), false) {
        Err(CoreError::Value(m)) => assert!(m.contains("source") && m.contains("'id'"), "{m}"),
        other => panic!("expected a Value error, got {other:?}"),
    }
}

#[test]
fn a_missing_column_is_a_schema_error_naming_side_and_column() {
    let t = target_table();
    let without_price = t.project(&[0, 1]).unwrap();
    match run_hash(vec![stream(vec![without_price])], &spec("target"), false) {
        Err(CoreError::Schema(m)) => assert!(m.contains("target") && m.contains("'price'"), "{m}"),
        other => panic!("expected a Schema error, got {other:?}"),
    }
    let without_id = t.project(&[1, 2]).unwrap();
    match run_hash(vec![stream(vec![without_id])], &spec("target"), false) {
        Err(CoreError::Schema(m)) => assert!(m.contains("target") && m.contains("'id'"), "{m}"),
        other => panic!("expected a Schema error, got {other:?}"),
    }
    // the collect pass reports it the same way
    let cancel = AtomicBool::new(false);
    let p = partitioner(2);
    let all = LeafFilter::new(0..p.num_leaves(), 0);
    let ts = spec("target");
    let r = collect_pass(
        vec![stream(vec![t.project(&[0, 1]).unwrap()])],
        &PassConfig {
            spec: &ts,
            partitioner: &p,
            filter: Some(&all),
            workers: 2,
            cancel: &cancel,
            rows_read: None,
        },
    );
    assert!(matches!(r, Err(CoreError::Schema(m)) if m.contains("target") && m.contains("'price'")));
}

#[test]
fn a_bad_value_is_a_value_error_naming_column_and_value() {
    let b = batch(vec![
        ("id", arr(StringArray::from(vec!["1", "2"]))),
        ("name", arr(StringArray::from(vec!["a", "b"]))),
        ("price", arr(StringArray::from(vec!["1.00", "abc"]))),
    ]);
    match run_hash(vec![stream(vec![b])], &spec("target"), false) {
        Err(e) => assert_value_error(&e, "price", "abc"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn a_failing_stream_is_a_stream_error() {
    let bad: BatchStream =
        Box::new(vec![Ok(source_table()), Err(ArrowError::ComputeError("boom".into()))].into_iter());
    match run_hash(vec![source_streams().remove(0), bad], &spec("source"), false) {
        Err(CoreError::Stream(e)) => assert!(e.to_string().contains("boom")),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn a_cancelled_run_returns_cancelled() {
    assert!(matches!(run_hash(source_streams(), &spec("source"), true), Err(CoreError::Cancelled)));
    let cancel = AtomicBool::new(true);
    let p = partitioner(2);
    let all = LeafFilter::new(0..p.num_leaves(), 0);
    let ss = spec("source");
    let r = collect_pass(
        source_streams(),
        &PassConfig {
            spec: &ss,
            partitioner: &p,
            filter: Some(&all),
            workers: 2,
            cancel: &cancel,
            rows_read: None,
        },
    );
    assert!(matches!(r, Err(CoreError::Cancelled)));
}

// ------------------------------------------------------------------------------------ classify

fn collected(keys: &[u128], rows: &[u128], hashes: &[u64]) -> Collected {
    Collected {
        batches: vec![],
        key_digest: keys.to_vec(),
        row_digest: rows.to_vec(),
        value_hashes: hashes.to_vec(),
        leaf: vec![0; keys.len()],
    }
}

#[test]
fn classify_by_hand() {
    // key 1 equal, key 2 changed in column 1, key 3 source only, key 4 target only,
    // key 5 twice in the source and twice in the target with different first rows
    let src = collected(&[1, 2, 3, 5, 5], &[10, 20, 30, 50, 51], &[1, 1, 2, 2, 3, 3, 5, 5, 5, 6]);
    let dst = collected(&[4, 5, 2, 1, 5], &[40, 52, 21, 10, 53], &[4, 4, 5, 7, 2, 9, 1, 1, 5, 8]);
    let diffs = classify(&src, &dst, 2, 2).unwrap();
    type Row = (DiffKind, Option<usize>, Option<usize>, Vec<usize>, Option<Side>, usize);
    let mut got: Vec<Row> = diffs
        .iter()
        .map(|d| (d.kind, d.source_row, d.target_row, d.columns.clone(), d.duplicate_side, d.occurrences))
        .collect();
    got.sort_by_key(|g| (g.0, g.1, g.2));
    assert_eq!(
        got,
        vec![
            (DiffKind::Missing, Some(2), None, vec![], None, 1),
            (DiffKind::Extra, None, Some(0), vec![], None, 1),
            (DiffKind::Changed, Some(1), Some(2), vec![1], None, 1),
            (DiffKind::Changed, Some(3), Some(1), vec![1], None, 1),
            (DiffKind::Duplicate, Some(3), Some(1), vec![], Some(Side::Source), 2),
            (DiffKind::Duplicate, Some(3), Some(1), vec![], Some(Side::Target), 2),
        ]
    );
    assert!(classify(&Collected::default(), &Collected::default(), 3, 2).unwrap().is_empty());
    // a key held twice, the same on both sides, agrees
    assert!(classify(&src, &src, 2, 2).unwrap().is_empty());
}

/// (kind, side, occurrences, changed columns) of every difference, sorted.
fn kinds(diffs: &[Difference]) -> Vec<(DiffKind, Option<Side>, usize, Vec<usize>)> {
    let mut out: Vec<_> =
        diffs.iter().map(|d| (d.kind, d.duplicate_side, d.occurrences, d.columns.clone())).collect();
    out.sort_by_key(|d| (d.0, d.1.map(|s| s == Side::Target)));
    out
}

#[test]
fn duplicates_are_reported_only_when_occurrences_or_values_differ() {
    use DiffKind::*;
    // key 7 with versions A (row digest 70, hashes [1, 1]) and B (71, [1, 2])
    let rows = |versions: &[u128]| {
        let hashes: Vec<u64> = versions.iter().flat_map(|&v| [1, if v == 70 { 1 } else { 2 }]).collect();
        collected(&vec![7; versions.len()], versions, &hashes)
    };
    let case = |s: &[u128], t: &[u128]| kinds(&classify(&rows(s), &rows(t), 2, 1).unwrap());
    let dup = |side, n| (Duplicate, Some(side), n, vec![]);
    // the same number of times with the same values, in any order: agrees
    assert_eq!(case(&[70, 70], &[70, 70]), vec![]);
    assert_eq!(case(&[70, 71], &[71, 70]), vec![]);
    // a replayed row: a duplicate on the side holding it more often, nothing else
    assert_eq!(case(&[70], &[70, 70]), vec![dup(Side::Target, 2)]);
    assert_eq!(case(&[70, 70], &[70]), vec![dup(Side::Source, 2)]);
    assert_eq!(case(&[70, 70], &[70, 70, 70]), vec![dup(Side::Source, 2), dup(Side::Target, 3)]);
    // as many times, different values: duplicates on both sides (they share version A)
    assert_eq!(case(&[70, 70], &[70, 71]), vec![dup(Side::Source, 2), dup(Side::Target, 2)]);
    // no version in common: also changed, between the smallest versions of each side
    assert_eq!(case(&[70], &[71, 71]), vec![(Changed, None, 1, vec![1]), dup(Side::Target, 2)]);
    // a key only one side holds, twice
    assert_eq!(case(&[70, 70], &[]), vec![(Missing, None, 1, vec![]), dup(Side::Source, 2)]);
    assert_eq!(case(&[], &[71, 71]), vec![(Extra, None, 1, vec![]), dup(Side::Target, 2)]);
}

// ------------------------------------------------------------------ remembered leaves (in memory)

/// 200,000 rows in batches larger than a slice, over three streams: many slices, any worker.
fn big_table() -> RecordBatch {
    let ids: Vec<i64> = (0..200_000).map(|i| i * 3).collect();
    let names: Vec<Option<String>> =
        ids.iter().map(|i| if i % 11 == 0 { None } else { Some(format!("n{i}")) }).collect();
    let prices: Vec<i128> = ids.iter().map(|&i| i as i128 * 7).collect();
    batch(vec![
        ("id", arr(Int64Array::from(ids))),
        ("name", arr(StringArray::from(names))),
        ("price", arr(Decimal128Array::from(prices).with_precision_and_scale(10, 2).unwrap())),
    ])
}

fn big_partitioner(fanout: u32) -> Partitioner {
    let b = batch(vec![("id", arr(Int64Array::from(vec![100_000, 250_000, 400_000])))]);
    Partitioner::new(ordering_keys(&b, &spec("source")).unwrap(), fanout).unwrap()
}

fn config<'a>(
    s: &'a SideSpec,
    p: &'a Partitioner,
    filter: Option<&'a LeafFilter>,
    cancel: &'a AtomicBool,
) -> PassConfig<'a> {
    PassConfig { spec: s, partitioner: p, filter, workers: 2, cancel, rows_read: None }
}

/// Every collected row as (key digest, row digest, value hashes, leaf), sorted: order-free.
fn rows_of(c: &Collected, n_values: usize) -> Vec<(u128, u128, Vec<u64>, u64)> {
    let mut out: Vec<_> = (0..c.len())
        .map(|i| {
            let v = c.value_hashes[i * n_values..(i + 1) * n_values].to_vec();
            (c.key_digest[i], c.row_digest[i], v, c.leaf[i])
        })
        .collect();
    out.sort();
    out
}

#[test]
fn remembered_leaves_pick_exactly_the_rows_rehashing_picks() {
    let (s, table, cancel) = (spec("source"), big_table(), AtomicBool::new(false));
    let p = big_partitioner(8);
    let (leaves, known) =
        hash_pass_remembering(streams_of(&table, 90_000, 3), &config(&s, &p, None, &cancel)).unwrap();
    assert_eq!(known.num_rows(), table.num_rows(), "one leaf per row");
    assert_eq!(leaves, hash(streams_of(&table, 90_000, 3), &s, &p, None), "same summaries as a plain pass");
    // every 5th non-empty leaf, as if it mismatched
    let picked: Vec<u64> = leaves.leaves.iter().map(|(id, _)| *id).step_by(5).collect();
    let filter = LeafFilter::new(picked.iter().copied(), 0);
    let via_known =
        collect_pass_known(streams_of(&table, 90_000, 3), &config(&s, &p, Some(&filter), &cancel), &known)
            .unwrap();
    let rehashed = collect(streams_of(&table, 90_000, 3), &s, &p, &filter);
    assert!(!rehashed.is_empty() && rehashed.len() < table.num_rows() / 3);
    assert_eq!(rows_of(&via_known, 2), rows_of(&rehashed, 2));
    assert!(via_known.leaf.iter().all(|l| picked.contains(l)));
}

#[test]
fn remembered_leaves_are_not_used_where_they_do_not_fit() {
    let (s, table, cancel) = (spec("source"), big_table(), AtomicBool::new(false));
    let p = big_partitioner(6);
    let (_, known) =
        hash_pass_remembering(streams_of(&table, 90_000, 3), &config(&s, &p, None, &cancel)).unwrap();
    // a refined leaf space: the remembered (coarser) ids would select the wrong rows
    let finer = p.refined(4).unwrap();
    let children: Vec<u64> = (0..finer.num_leaves()).step_by(7).collect();
    let filter = LeafFilter::new(children.iter().copied(), 0);
    let cfg = config(&s, &finer, Some(&filter), &cancel);
    let via_known = collect_pass_known(streams_of(&table, 90_000, 3), &cfg, &known).unwrap();
    assert_eq!(
        rows_of(&via_known, 2),
        rows_of(&collect(streams_of(&table, 90_000, 3), &s, &finer, &filter), 2)
    );
    // other slicing (another batch size): slices whose lengths differ are hashed again
    let filter = LeafFilter::new((0..p.num_leaves()).step_by(3), 0);
    let cfg = config(&s, &p, Some(&filter), &cancel);
    let via_known = collect_pass_known(streams_of(&table, 50_000, 3), &cfg, &known).unwrap();
    assert_eq!(rows_of(&via_known, 2), rows_of(&collect(streams_of(&table, 50_000, 3), &s, &p, &filter), 2));
}

#[test]
fn classifying_on_threads_finds_what_one_thread_finds() {
    let (s, cancel) = (spec("source"), AtomicBool::new(false));
    let p = big_partitioner(4);
    let every = LeafFilter::new(0..p.num_leaves(), 0);
    let source = big_table();
    // the target: every 1000th row renamed, every 1500th dropped, every 2000th doubled
    let keep: Vec<u32> = (0..source.num_rows() as u32).filter(|i| i % 1500 != 7).collect();
    let doubled: Vec<u32> = (0..source.num_rows() as u32).filter(|i| i % 2000 == 3).collect();
    let idx = UInt32Array::from([keep, doubled].concat());
    let target = arrow_select::take::take_record_batch(&source, &idx).unwrap();
    let names: Vec<Option<String>> = (0..target.num_rows())
        .map(|i| {
            let v = target.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            (!v.is_null(i)).then(|| {
                if i % 1000 == 0 {
                    format!("{} (renamed)", v.value(i))
                } else {
                    v.value(i).into()
                }
            })
        })
        .collect();
    let target = batch(vec![
        ("id", target.column(0).clone()),
        ("name", arr(StringArray::from(names))),
        ("price", target.column(2).clone()),
    ]);
    let cfg = config(&s, &p, Some(&every), &cancel);
    let a = collect_pass(streams_of(&source, 70_000, 2), &cfg).unwrap();
    let b = collect_pass(streams_of(&target, 70_000, 2), &cfg).unwrap();
    let one = classify(&a, &b, 2, 1).unwrap();
    assert!(one.len() > 300, "{} differences", one.len());
    for threads in [2, 3] {
        assert_eq!(classify(&a, &b, 2, threads).unwrap(), one, "{threads} threads");
    }
}

/// Only a stream failing while it is read is the store's fault (exit 3); an Arrow error on the
/// data in hand (a local cast, a malformed array) is bad input (exit 2).
#[test]
fn errors_map_to_their_cause() {
    use seamline_core::error::Cause;
    let io = || ArrowError::IoError("connection reset".into(), std::io::Error::other("reset"));
    assert_eq!(CoreError::Stream(io()).cause(), Cause::StoreUnavailable);
    assert_eq!(
        CoreError::Stream(ArrowError::CDataInterface("libpq".into())).cause(),
        Cause::StoreUnavailable
    );
    assert_eq!(CoreError::Arrow(ArrowError::CastError("bad".into())).cause(), Cause::Value);
    assert_eq!(CoreError::Arrow(ArrowError::ComputeError("bad".into())).cause(), Cause::Value);
    assert_eq!(CoreError::Arrow(ArrowError::SchemaError("bad".into())).cause(), Cause::Schema);
    assert_eq!(CoreError::Arrow(io()).cause(), Cause::Invalid);
    assert_eq!(CoreError::Value("v".into()).cause(), Cause::Value);
    assert_eq!(CoreError::Cancelled.cause(), Cause::Cancelled);
}

#[test]
fn filtered_pass_accumulates_densely_by_parent_rank_with_the_same_leaves() {
    // A refinement (few parents, children by rank) and a shard's slice (a run of ranges, every
    // leaf of each): the ranked dense accumulator gives the leaves a sparse map would.
    let p = partitioner(2);
    let ss = spec("source");
    let full = hash(source_streams(), &ss, &p, None);
    let finer = p.refined(3).unwrap();
    let ids: Vec<u64> = full.leaves.iter().map(|(id, _)| *id).step_by(2).collect();
    let parents = LeafFilter::new(ids.iter().copied(), 3);
    assert_eq!(parents.num_parents(), ids.len() as u64);
    assert_eq!(parents.parents(), ids);
    let refined = hash(source_streams(), &ss, &finer, Some(&parents));
    assert!(refined.leaves.windows(2).all(|w| w[0].0 < w[1].0));
    for &parent in &ids {
        let children: Vec<&(u64, Leaf)> = refined.leaves.iter().filter(|(id, _)| id >> 3 == parent).collect();
        let mut sum = Leaf::default();
        children.iter().for_each(|(_, l)| sum.merge(l));
        assert_eq!(sum, full.get(parent), "children of {parent} add up to it");
    }
    let shard = LeafFilter::new(1..3, p.fanout_bits());
    let slice = hash(source_streams(), &ss, &p, Some(&shard));
    let want: Vec<(u64, Leaf)> =
        full.leaves.iter().filter(|(id, _)| (1..3).contains(&(id >> p.fanout_bits()))).copied().collect();
    assert_eq!(slice.leaves, want);
}
