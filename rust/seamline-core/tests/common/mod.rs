//! Helpers shared by the integration tests: column specs, one-call encoding, error checks,
//! record batches and batch streams.
#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use seamline_core::canonical::encode_column;
use seamline_core::{BatchStream, ColumnSpec, CoreError, LogicalType, SideSpec, StringOptions};

pub fn col(name: &str, logical: LogicalType) -> ColumnSpec {
    ColumnSpec { name: name.to_string(), logical }
}

pub fn side(name: &str, key: Vec<ColumnSpec>, values: Vec<ColumnSpec>) -> SideSpec {
    SideSpec { side: name.to_string(), key, values }
}

pub fn string_opts(nfc: bool, trim: bool, casefold: bool, empty_as_null: bool) -> StringOptions {
    StringOptions { nfc, trim, casefold, empty_as_null }
}

pub const PLAIN: LogicalType =
    LogicalType::String(StringOptions { nfc: false, trim: false, casefold: false, empty_as_null: false });

/// Canonical bytes (None for NULL) of every row of `arr` read as `logical`, in a column named
/// `name`. Also checks that the encoder visits every row exactly once, in order.
pub fn enc_named(arr: ArrayRef, name: &str, logical: LogicalType) -> Result<Vec<Option<Vec<u8>>>, CoreError> {
    let spec = col(name, logical);
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(arr.len());
    let mut next = 0usize;
    encode_column(&arr, &spec, &mut |row: usize, b: Option<&[u8]>| {
        assert_eq!(row, next, "rows must be visited in order");
        next += 1;
        out.push(b.map(|b| b.to_vec()));
    })?;
    assert_eq!(out.len(), arr.len(), "every row must be visited");
    Ok(out)
}

pub fn enc(arr: ArrayRef, logical: LogicalType) -> Result<Vec<Option<Vec<u8>>>, CoreError> {
    enc_named(arr, "c", logical)
}

/// The canonical bytes of the single (non-NULL) value of a one-row array.
pub fn one(arr: ArrayRef, logical: LogicalType) -> Vec<u8> {
    let dt = arr.data_type().clone();
    let mut v = enc(arr, logical).unwrap_or_else(|e| panic!("{dt} as {logical}: {e}"));
    assert_eq!(v.len(), 1);
    v.pop().unwrap().unwrap_or_else(|| panic!("{dt} as {logical}: unexpected NULL"))
}

/// All arrays encode (row 0) to the same bytes; returns those bytes.
pub fn all_same(arrays: Vec<ArrayRef>, logical: LogicalType) -> Vec<u8> {
    let mut it = arrays.into_iter();
    let first = it.next().unwrap();
    let first_dt = first.data_type().clone();
    let want = one(first, logical);
    for a in it {
        let dt = a.data_type().clone();
        assert_eq!(one(a, logical), want, "{dt} vs {first_dt} as {logical}");
    }
    want
}

/// The error of encoding `arr` as `logical` in a column named `name`.
pub fn enc_err(arr: ArrayRef, name: &str, logical: LogicalType) -> CoreError {
    match enc_named(arr, name, logical) {
        Ok(v) => panic!("expected an error for {logical}, got {v:?}"),
        Err(e) => e,
    }
}

/// A `CoreError::Value` whose message names the column and the offending value.
pub fn assert_value_error(e: &CoreError, column: &str, value: &str) {
    match e {
        CoreError::Value(msg) => {
            assert!(msg.contains(&format!("'{column}'")), "message {msg:?} does not name column {column}");
            assert!(msg.contains(value), "message {msg:?} does not show value {value:?}");
        }
        other => panic!("expected CoreError::Value, got {other:?}"),
    }
}

pub fn arr<A: arrow_array::Array + 'static>(a: A) -> ArrayRef {
    Arc::new(a)
}

pub fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(cols.into_iter().map(|(n, a)| (n.to_string(), a))).unwrap()
}

/// One stream yielding the given batches.
pub fn stream(batches: Vec<RecordBatch>) -> BatchStream {
    Box::new(batches.into_iter().map(Ok))
}

/// Cut a batch into `n_streams` streams of slices of at most `rows` rows (round robin).
pub fn streams_of(b: &RecordBatch, rows: usize, n_streams: usize) -> Vec<BatchStream> {
    let mut per: Vec<Vec<RecordBatch>> = vec![Vec::new(); n_streams];
    let mut offset = 0;
    let mut k = 0;
    while offset < b.num_rows() {
        let len = rows.min(b.num_rows() - offset);
        per[k % n_streams].push(b.slice(offset, len));
        offset += len;
        k += 1;
    }
    per.into_iter().map(stream).collect()
}

/// A small deterministic PRNG (xorshift64*), so tests need no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
