//! Key and row digests (framing, NULLs) and order-preserving keys.

mod common;

use arrow_array::*;
use common::*;
use seamline_core::digest::{for_each_wide_ordering_key, key_digests, ordering_keys, row_digests};
use seamline_core::partition::BoundsBuilder;
use seamline_core::{CoreError, LogicalType, Partitioner, SideSpec};

const INT: LogicalType = LogicalType::Integer;

fn flat() -> Partitioner {
    Partitioner::new(vec![], 0).unwrap()
}

fn keys_of(b: &RecordBatch, spec: &SideSpec) -> Vec<u128> {
    key_digests(b, spec, &flat()).unwrap().key_digest
}

fn rows_of(b: &RecordBatch, spec: &SideSpec) -> Vec<u128> {
    let k = keys_of(b, spec);
    row_digests(b, spec, &k).unwrap().row_digest
}

fn strs(v: Vec<Option<&str>>) -> ArrayRef {
    arr(StringArray::from(v))
}

// ------------------------------------------------------------------------------------ framing

#[test]
fn value_columns_are_framed() {
    let spec = side("s", vec![col("id", INT)], vec![col("a", PLAIN), col("b", PLAIN)]);
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![1, 1, 1]))),
        ("a", strs(vec![Some("ab"), Some("a"), Some("abc")])),
        ("b", strs(vec![Some("c"), Some("bc"), Some("")])),
    ]);
    let r = rows_of(&b, &spec);
    assert_ne!(r[0], r[1], "(ab, c) vs (a, bc)");
    assert_ne!(r[0], r[2], "(ab, c) vs (abc, '')");
    assert_ne!(r[1], r[2]);
}

#[test]
fn composite_keys_are_framed() {
    let spec = side("s", vec![col("k1", PLAIN), col("k2", PLAIN)], vec![]);
    let b = batch(vec![
        ("k1", strs(vec![Some("ab"), Some("a"), Some("abc"), Some("")])),
        ("k2", strs(vec![Some("c"), Some("bc"), Some(""), Some("abc")])),
    ]);
    let k = keys_of(&b, &spec);
    for i in 0..k.len() {
        for j in i + 1..k.len() {
            assert_ne!(k[i], k[j], "rows {i} and {j}");
        }
    }
    let r = rows_of(&b, &spec);
    assert_ne!(r[0], r[1]);
}

#[test]
fn null_differs_from_empty_string_unless_empty_as_null() {
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![1, 1, 1]))),
        ("v", strs(vec![None, Some(""), Some("x")])),
    ]);
    let plain = side("s", vec![col("id", INT)], vec![col("v", PLAIN)]);
    let r = rows_of(&b, &plain);
    assert_ne!(r[0], r[1], "NULL vs ''");
    assert_ne!(r[1], r[2]);
    let ean = LogicalType::String(string_opts(false, false, false, true));
    let lenient = side("s", vec![col("id", INT)], vec![col("v", ean)]);
    let r = rows_of(&b, &lenient);
    assert_eq!(r[0], r[1], "'' counts as NULL with empty_as_null");
    assert_ne!(r[1], r[2]);
}

#[test]
fn null_value_differs_from_every_value_and_per_column() {
    // A NULL in column a must not look like a NULL in column b.
    let spec = side("s", vec![col("id", INT)], vec![col("a", INT), col("b", INT)]);
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![1, 1, 1]))),
        ("a", arr(Int64Array::from(vec![None, Some(0), Some(0)]))),
        ("b", arr(Int64Array::from(vec![Some(0), None, Some(0)]))),
    ]);
    let r = rows_of(&b, &spec);
    assert_ne!(r[0], r[1]);
    assert_ne!(r[0], r[2]);
    assert_ne!(r[1], r[2]);
}

#[test]
fn row_digest_includes_the_key() {
    let spec = side("s", vec![col("id", INT)], vec![col("v", PLAIN)]);
    let b = batch(vec![("id", arr(Int64Array::from(vec![1, 2]))), ("v", strs(vec![Some("x"), Some("x")]))]);
    let r = rows_of(&b, &spec);
    assert_ne!(r[0], r[1]);
}

#[test]
fn same_logical_rows_digest_alike_across_store_types() {
    // Postgres: bigint key, numeric price, text name. OpenSearch: keyword key, double price.
    let src = side(
        "source",
        vec![col("id", INT)],
        vec![col("price", LogicalType::Decimal { scale: 2 }), col("name", PLAIN)],
    );
    let dst = side(
        "target",
        vec![col("id", INT)],
        vec![col("price", LogicalType::Decimal { scale: 2 }), col("name", PLAIN)],
    );
    let a = batch(vec![
        ("id", arr(Int64Array::from(vec![42, -7]))),
        ("price", arr(Decimal128Array::from(vec![1999, 71]).with_precision_and_scale(12, 2).unwrap())),
        ("name", strs(vec![Some("x"), None])),
    ]);
    let b = batch(vec![
        ("id", arr(LargeStringArray::from(vec!["42", "-7"]))),
        ("price", arr(Float64Array::from(vec![19.99, 0.71]))),
        ("name", arr(StringViewArray::from(vec![Some("x"), None]))),
    ]);
    let p = Partitioner::new(vec![], 6).unwrap();
    let (ka, kb) = (key_digests(&a, &src, &p).unwrap(), key_digests(&b, &dst, &p).unwrap());
    assert_eq!(ka.key_digest, kb.key_digest);
    assert_eq!(ka.leaf, kb.leaf);
    let (ra, rb) =
        (row_digests(&a, &src, &ka.key_digest).unwrap(), row_digests(&b, &dst, &kb.key_digest).unwrap());
    assert_eq!(ra.row_digest, rb.row_digest);
    assert_eq!(ra.value_hashes, rb.value_hashes);
    assert_eq!(ra.value_hashes.len(), 4, "row-major, one hash per value column");
}

#[test]
fn value_hashes_are_row_major() {
    let spec = side("s", vec![col("id", INT)], vec![col("a", INT), col("b", INT)]);
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![1, 2]))),
        ("a", arr(Int64Array::from(vec![5, 6]))),
        ("b", arr(Int64Array::from(vec![6, 5]))),
    ]);
    let k = keys_of(&b, &spec);
    let h = row_digests(&b, &spec, &k).unwrap().value_hashes;
    assert_eq!(h[1], h[2], "row 0 col b (6) == row 1 col a (6)");
    assert_eq!(h[0], h[3]);
    assert_ne!(h[0], h[1]);
}

#[test]
fn key_errors_name_side_and_column() {
    let spec = side("source", vec![col("id", INT)], vec![]);
    let b = batch(vec![("id", arr(Int64Array::from(vec![Some(1), None])))]);
    match key_digests(&b, &spec, &flat()) {
        Err(CoreError::Value(m)) => assert!(m.contains("source") && m.contains("'id'"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    let spec = side("target", vec![col("sku", INT)], vec![]);
    match key_digests(&b, &spec, &flat()) {
        Err(CoreError::Schema(m)) => {
            assert!(m.contains("target") && m.contains("'sku'") && m.contains("id"), "{m}")
        }
        other => panic!("{:?}", other.err()),
    }
    let spec = side("target", vec![col("id", INT)], vec![col("price", INT)]);
    let k = keys_of(
        &batch(vec![("id", arr(Int64Array::from(vec![1])))]),
        &side("target", vec![col("id", INT)], vec![]),
    );
    match row_digests(&batch(vec![("id", arr(Int64Array::from(vec![1])))]), &spec, &k) {
        Err(CoreError::Schema(m)) => assert!(m.contains("target") && m.contains("'price'"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
}

// ------------------------------------------------------------------------------------ ordering

fn ord_int(values: ArrayRef) -> Vec<Vec<u8>> {
    ordering_keys(&batch(vec![("k", values)]), &side("s", vec![col("k", INT)], vec![])).unwrap()
}

fn ord_str(values: Vec<&str>) -> Vec<Vec<u8>> {
    ordering_keys(
        &batch(vec![("k", arr(StringArray::from(values)))]),
        &side("s", vec![col("k", PLAIN)], vec![]),
    )
    .unwrap()
}

fn ord_pairs(pairs: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let spec = side("s", vec![col("a", PLAIN), col("b", PLAIN)], vec![]);
    let b = batch(vec![
        ("a", arr(StringArray::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>()))),
        ("b", arr(StringArray::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
    ]);
    ordering_keys(&b, &spec).unwrap()
}

fn assert_strictly_increasing(keys: &[Vec<u8>], what: &str) {
    for (i, w) in keys.windows(2).enumerate() {
        assert!(w[0] < w[1], "{what}: element {i} !< element {}", i + 1);
    }
}

#[test]
fn integer_keys_order_numerically() {
    let values = vec![i64::MIN, -1000, -2, -1, 0, 1, 2, 255, 256, 1000, i64::MAX];
    let keys = ord_int(arr(Int64Array::from(values)));
    assert_strictly_increasing(&keys, "i64");
    // across Arrow types: u64 above i64::MAX sorts after i64::MAX, u8 255 equals i64 255
    let big = ord_int(arr(UInt64Array::from(vec![i64::MAX as u64 + 1, u64::MAX])));
    assert!(keys.last().unwrap() < &big[0]);
    assert!(big[0] < big[1]);
    assert_eq!(ord_int(arr(UInt8Array::from(vec![255u8])))[0], keys[7]);
    assert_eq!(ord_int(arr(StringArray::from(vec!["-1"])))[0], keys[3]);
    let neg = ord_int(arr(Int8Array::from(vec![-1i8, 0, 1])));
    assert_eq!(neg, keys[3..6].to_vec());
}

#[test]
fn decimal_date_and_timestamp_keys_order_numerically() {
    let b = batch(vec![(
        "k",
        arr(Decimal128Array::from(vec![-1999, -1, 0, 1, 1999]).with_precision_and_scale(12, 2).unwrap()),
    )]);
    let keys =
        ordering_keys(&b, &side("s", vec![col("k", LogicalType::Decimal { scale: 2 })], vec![])).unwrap();
    assert_strictly_increasing(&keys, "decimal");
    let b = batch(vec![("k", arr(Date32Array::from(vec![-400, -1, 0, 1, 19_782])))]);
    let keys = ordering_keys(&b, &side("s", vec![col("k", LogicalType::Date)], vec![])).unwrap();
    assert_strictly_increasing(&keys, "date");
    let b = batch(vec![("k", arr(TimestampMicrosecondArray::from(vec![-5_000_000, -1, 0, 1, 1 << 40])))]);
    let ts = LogicalType::Timestamp { precision: seamline_core::TimePrecision::Micros };
    let keys = ordering_keys(&b, &side("s", vec![col("k", ts)], vec![])).unwrap();
    assert_strictly_increasing(&keys, "timestamp");
}

#[test]
fn text_keys_order_by_bytes() {
    // COLLATE "C": '-' (0x2d) < 'A' (0x41) < '_' (0x5f) < 'a' (0x61) < 'é' (0xc3 0xa9)
    let keys = ord_str(vec!["", "-", "A", "Z", "_", "a", "a-b", "a_b", "ab", "b", "z", "\u{e9}"]);
    assert_strictly_increasing(&keys, "text");
    assert_eq!(ord_str(vec!["abc"])[0], b"abc".to_vec());
}

#[test]
fn composite_keys_order_as_tuples() {
    let keys = ord_pairs(&[("a", "b"), ("ab", "")]);
    assert!(keys[0] < keys[1], "(a, b) < (ab, '')");
    let keys = ord_pairs(&[("a", "zz"), ("a\0", "")]);
    assert!(keys[0] < keys[1], "(a, zz) < (a\\0, '')");
    let keys = ord_pairs(&[("a", ""), ("a", "\0"), ("a", "\0\0"), ("a", "a")]);
    assert_strictly_increasing(&keys, "second component with NULs");

    // exhaustive over a small alphabet with NUL bytes, prefixes and 0xff-adjacent bytes
    let atoms = ["", "\0", "\0a", "a", "a\0", "a\0b", "ab", "b", "\u{ff}", "\u{ff}\0"];
    let mut pairs = Vec::new();
    for x in atoms {
        for y in atoms {
            pairs.push((x, y));
        }
    }
    let keys = ord_pairs(&pairs);
    for i in 0..pairs.len() {
        for j in 0..pairs.len() {
            let (a, b) = (pairs[i], pairs[j]);
            let want = (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes()));
            assert_eq!(keys[i].cmp(&keys[j]), want, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn mixed_composite_keys_order_as_tuples() {
    let spec = side("s", vec![col("n", INT), col("t", PLAIN)], vec![]);
    let b = batch(vec![
        ("n", arr(Int64Array::from(vec![-1, -1, 0, 0, 1]))),
        ("t", arr(StringArray::from(vec!["b", "c", "", "a", "a"]))),
    ]);
    let keys = ordering_keys(&b, &spec).unwrap();
    assert_strictly_increasing(&keys, "(int, text)");
}

#[test]
fn native_integer_keys_find_their_range_in_any_order_among_many_bounds() {
    // The native path searches forward from the last key's range when keys ascend (galloping over
    // the bounds), from scratch otherwise: ascending runs, steps of every size, jumps back and
    // keys below the first and above the last bound must all land where the general path puts them.
    let bounds: Vec<i64> = (0..2000).map(|i| i * 10 - 5000).collect();
    let mut values: Vec<i64> = (-6000..16_000).step_by(7).collect(); // ascending, ranges of 1-2 keys
    let (mut x, mut at): (u64, i64) = (42, 0);
    for _ in 0..5000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // forward by 0..2^14 (crossing up to ~1600 ranges), or back, or a key past either end
        // (which leaves the walk where it was)
        match x >> 60 {
            0 => values.push(i64::MIN),
            1 => values.push(i64::MAX),
            2 | 3 => at -= ((x >> 20) % 20_000) as i64,
            _ => at += ((x >> 20) % (1 << ((x >> 40) % 15))) as i64,
        }
        at = at.clamp(-6000, 16_000);
        values.push(at);
    }
    let text: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let spec = side("s", vec![col("id", INT)], vec![]);
    let p = Partitioner::new(ord_int(arr(Int64Array::from(bounds.clone()))), 0).unwrap();
    let native = key_digests(&batch(vec![("id", arr(Int64Array::from(values.clone())))]), &spec, &p).unwrap();
    let general = key_digests(
        &batch(vec![("id", arr(StringArray::from(text.iter().map(|s| s.as_str()).collect::<Vec<_>>())))]),
        &spec,
        &p,
    )
    .unwrap();
    assert_eq!(native.leaf, general.leaf);
    // and where the bounds say: the number of bounds at or below the key
    let want: Vec<u64> = values.iter().map(|v| bounds.partition_point(|b| b <= v) as u64).collect();
    assert_eq!(native.leaf, want);
}

#[test]
fn native_integer_keys_digest_like_every_other_form_of_the_key() {
    // Native integer key columns may take a faster path: it must give the same digests and
    // leaves as the general one (here: the keys as text, and as a decimal at scale 0).
    let values: Vec<i64> = vec![i64::MIN, -1_000_000, -16, -15, -1, 0, 1, 14, 15, 16, 999, i64::MAX];
    let text: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let bounds = ord_int(arr(Int64Array::from(vec![-15, 0, 15, 1000])));
    let spec = side("s", vec![col("id", INT)], vec![]);
    for fanout in [0, 5] {
        let p = Partitioner::new(bounds.clone(), fanout).unwrap();
        let native =
            key_digests(&batch(vec![("id", arr(Int64Array::from(values.clone())))]), &spec, &p).unwrap();
        let general = key_digests(
            &batch(vec![("id", arr(StringArray::from(text.iter().map(|s| s.as_str()).collect::<Vec<_>>())))]),
            &spec,
            &p,
        )
        .unwrap();
        let decimal = key_digests(
            &batch(vec![(
                "id",
                arr(Decimal128Array::from(values.iter().map(|&v| v as i128).collect::<Vec<_>>())
                    .with_precision_and_scale(38, 0)
                    .unwrap()),
            )]),
            &spec,
            &p,
        )
        .unwrap();
        assert_eq!(native.key_digest, general.key_digest);
        assert_eq!(native.leaf, general.leaf, "fanout {fanout}");
        assert_eq!(decimal.key_digest, general.key_digest);
        assert_eq!(decimal.leaf, general.leaf);
        let ranges: Vec<u64> = native.leaf.iter().map(|l| p.range_of_leaf(*l)).collect();
        assert_eq!(ranges, vec![0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
    }
    // narrower and unsigned native types, and a sliced array
    let p = Partitioner::new(bounds, 3).unwrap();
    let small =
        key_digests(&batch(vec![("id", arr(Int8Array::from(vec![-16i8, 15, 127])))]), &spec, &p).unwrap();
    let wide =
        key_digests(&batch(vec![("id", arr(Int64Array::from(vec![-16i64, 15, 127])))]), &spec, &p).unwrap();
    assert_eq!(small.key_digest, wide.key_digest);
    assert_eq!(small.leaf, wide.leaf);
    let big =
        key_digests(&batch(vec![("id", arr(UInt64Array::from(vec![u64::MAX, 15])))]), &spec, &p).unwrap();
    let big_text = key_digests(
        &batch(vec![("id", arr(StringArray::from(vec!["18446744073709551615", "15"])))]),
        &spec,
        &p,
    )
    .unwrap();
    assert_eq!(big.key_digest, big_text.key_digest);
    assert_eq!(big.leaf, big_text.leaf);
    let full = batch(vec![("id", arr(Int64Array::from(vec![1, 2, 3, 4])))]);
    let sliced = key_digests(&full.slice(1, 2), &spec, &p).unwrap();
    let whole = key_digests(&full, &spec, &p).unwrap();
    assert_eq!(sliced.key_digest, whole.key_digest[1..3].to_vec());
}

#[test]
fn native_integer_bounds_build_the_partitioner_the_byte_path_builds() {
    // Bounds of one native integer key column go to the partitioner as u128s, without the ordering
    // bytes: the same keys in the same order as ordering_keys gives, for every native width.
    let spec = side("s", vec![col("id", INT)], vec![]);
    let wide = |b: &RecordBatch| {
        let mut keys = Vec::new();
        let native = for_each_wide_ordering_key(b, &spec, |k| keys.push(k.to_be_bytes().to_vec())).unwrap();
        (native, keys)
    };
    let values = vec![i64::MIN, -1_000_000, -1, 0, 1, 999, i64::MAX];
    for b in [
        batch(vec![("id", arr(Int64Array::from(values.clone())))]),
        batch(vec![("id", arr(Int8Array::from(vec![-128i8, -1, 0, 127])))]),
        batch(vec![("id", arr(UInt64Array::from(vec![0u64, 15, u64::MAX])))]),
        batch(vec![("id", arr(Int32Array::from(vec![i32::MIN, 7, i32::MAX])))]),
    ] {
        let (native, keys) = wide(&b);
        assert!(native);
        assert_eq!(keys, ordering_keys(&b, &spec).unwrap());
    }
    // not this path: a NULL key, a key of text, another logical type, a composite key
    assert!(!wide(&batch(vec![("id", arr(Int64Array::from(vec![Some(1), None])))])).0);
    assert!(!wide(&batch(vec![("id", strs(vec![Some("1")]))])).0);
    let date = side("s", vec![col("id", LogicalType::Date)], vec![]);
    let b = batch(vec![("id", arr(Int32Array::from(vec![1, 2])))]);
    assert!(!for_each_wide_ordering_key(&b, &date, |_| panic!("called")).unwrap());
    let pair = side("s", vec![col("a", INT), col("b", INT)], vec![]);
    let b = batch(vec![("a", arr(Int64Array::from(vec![1]))), ("b", arr(Int64Array::from(vec![2])))]);
    assert!(!for_each_wide_ordering_key(&b, &pair, |_| panic!("called")).unwrap());

    // the builder: u128 bounds, byte bounds of 16 bytes and of other widths, mixed in any order,
    // give the partitioner Partitioner::new gives, and an unordered bound is refused either way
    let k = |v: i64| ((v as i128 as u128) ^ (1 << 127)).to_be_bytes().to_vec();
    let mixed: Vec<Vec<u8>> =
        vec![k(-5), k(3), vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1], k(9)];
    let mut built = BoundsBuilder::default();
    built.push_wide(u128::from_be_bytes(mixed[0].clone().try_into().unwrap()));
    built.push(&mixed[1]);
    built.push(&mixed[2]);
    built.push_wide(u128::from_be_bytes(mixed[3].clone().try_into().unwrap()));
    let built = built.finish(2).unwrap();
    assert_eq!(built, Partitioner::new(mixed.clone(), 2).unwrap());
    assert_eq!(built.bounds(), mixed);
    for key in [k(-6), k(-5), k(4), mixed[2].clone(), k(10)] {
        assert_eq!(built.range_of(&key), mixed.iter().filter(|b| **b <= key).count() as u64);
    }
    let mut unordered = BoundsBuilder::default();
    unordered.push_wide(5);
    unordered.push_wide(5);
    let err = unordered.finish(0).expect_err("unordered").to_string();
    assert!(err.contains("boundary 1 is not"), "{err}");
    let mut unordered = BoundsBuilder::default();
    unordered.push(&[1, 2]);
    unordered.push_wide(u128::MAX);
    unordered.push_wide(3);
    let err = unordered.finish(0).expect_err("unordered").to_string();
    assert!(err.contains("boundary 2 is not"), "{err}");
}

// ------------------------------------------------------------------------ short value hashing

#[test]
fn short_values_differing_in_any_byte_or_length_digest_apart() {
    // The short-value hashes read overlapping words: every byte of every length up to 32 (and just
    // above, where xxh3 takes over) must still count, and so must the length.
    let spec = side("s", vec![col("id", INT)], vec![col("v", PLAIN)]);
    let mut values: Vec<String> = Vec::new();
    for len in 0..=34usize {
        let base: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        values.push(base.clone());
        for pos in 0..len {
            let mut bytes = base.clone().into_bytes();
            bytes[pos] = b'Z';
            values.push(String::from_utf8(bytes.clone()).unwrap());
            bytes[pos] = b'a' + ((pos as u8 + 1) % 26); // the byte of the next position
            values.push(String::from_utf8(bytes).unwrap());
        }
        values.push(format!("{base}\0"));
    }
    values.sort();
    values.dedup();
    let b = batch(vec![
        ("id", arr(Int64Array::from(vec![7; values.len()]))),
        ("v", strs(values.iter().map(|s| Some(s.as_str())).collect())),
    ]);
    let mut r = rows_of(&b, &spec);
    r.sort_unstable();
    r.dedup();
    assert_eq!(r.len(), values.len(), "two distinct short values digested alike");
}

#[test]
fn ascii_and_non_ascii_batches_encode_text_alike() {
    // An all-ASCII column takes a fast path; the same value next to a non-ASCII one does not.
    let nfc = LogicalType::String(string_opts(true, false, false, false));
    let spec = side("s", vec![col("id", INT)], vec![col("v", nfc)]);
    let ascii = batch(vec![("id", arr(Int64Array::from(vec![1, 2]))), ("v", strs(vec![Some("cafe"), None]))]);
    let mixed =
        batch(vec![("id", arr(Int64Array::from(vec![1, 2]))), ("v", strs(vec![Some("cafe"), Some("café")]))]);
    assert_eq!(rows_of(&ascii, &spec)[0], rows_of(&mixed, &spec)[0]);
    // and NFC still applies where it must: decomposed e + combining acute == precomposed é
    let decomposed =
        batch(vec![("id", arr(Int64Array::from(vec![2]))), ("v", strs(vec![Some("cafe\u{301}")]))]);
    assert_eq!(rows_of(&mixed, &spec)[1], rows_of(&decomposed, &spec)[0]);
}

// ------------------------------------------------------------------------------------ NULL keys

/// A NULL key of any logical type, alone or in a composite key, is one `Value` error naming the
/// side and the column, from key digests and from ordering keys (range boundaries) alike: never a
/// panic (ordering keys used to index the empty bytes of the NULL).
#[test]
fn a_null_key_is_a_value_error_never_a_panic() {
    let dec = arr(Decimal128Array::from(vec![Some(1), None]).with_precision_and_scale(10, 2).unwrap());
    let ts = arr(TimestampMicrosecondArray::from(vec![Some(1), None]).with_timezone("UTC"));
    let cases: Vec<(ArrayRef, LogicalType)> = vec![
        (arr(Int64Array::from(vec![Some(1), None])), INT),
        (arr(Int32Array::from(vec![Some(1), None])), INT),
        (strs(vec![Some("1"), None]), INT),
        (strs(vec![Some("a"), None]), PLAIN),
        (dec, LogicalType::Decimal { scale: 2 }),
        (ts, LogicalType::Timestamp { precision: seamline_core::TimePrecision::Micros }),
        (arr(Date32Array::from(vec![Some(1), None])), LogicalType::Date),
        (arr(NullArray::new(2)), INT),
        (arr(BinaryArray::from(vec![Some(&b"x"[..]), None])), LogicalType::Binary),
        (arr(Float64Array::from(vec![Some(1.0), None])), LogicalType::Float { digits: 6 }),
    ];
    for (values, logical) in cases {
        let dt = values.data_type().clone();
        for composite in [false, true] {
            let (cols, key) = if composite {
                let other = arr(Int64Array::from(vec![1, 2]));
                (vec![("a", other), ("k", values.clone())], vec![col("a", INT), col("k", logical)])
            } else {
                (vec![("k", values.clone())], vec![col("k", logical)])
            };
            let spec = side("source", key, vec![]);
            let b = batch(cols);
            for e in [
                ordering_keys(&b, &spec).expect_err("ordering keys"),
                key_digests(&b, &spec, &flat()).map(|_| ()).expect_err("key digests"),
            ] {
                match e {
                    CoreError::Value(m) => {
                        let row = if dt == arrow_schema::DataType::Null { 0 } else { 1 };
                        let want = format!("source: key column 'k' is NULL at row {row} of a batch");
                        assert_eq!(m, format!("{want} (keys must not be NULL)"))
                    }
                    other => panic!("{dt} as {logical} (composite {composite}): {other:?}"),
                }
            }
        }
    }
}
