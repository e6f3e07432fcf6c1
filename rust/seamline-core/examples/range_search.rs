//! How a row's range is found when keys arrive in key order (a table read in key order): a binary
//! search over every bound each time a key leaves the last range's span (`wide_range`), against a
//! search forward from that range (`wide_range_after`, what the hash pass does). The two run
//! interleaved in one process over the same keys, and must agree on every range.
//!
//!     cargo run --release -p seamline-core --example range_search -- [rows] [bounds] [rounds]
//!
//! Defaults: 5M keys 0..rows, 2^20 evenly spaced bounds (ranges of ~5 rows), 5 rounds.

use std::time::Instant;

use seamline_core::Partitioner;

/// The ordering key of an integer key, as the core forms it: big-endian with the sign bit flipped.
fn ordering(v: i64) -> u128 {
    (v as i128 as u128) ^ (1 << 127)
}

/// The range of every key, searching from scratch or forward when a key leaves the last span.
fn ranges(p: &Partitioner, rows: i64, forward: bool) -> (f64, u64) {
    let started = Instant::now();
    let (mut range, mut lo, mut hi, mut searched) = (0u64, 1u128, Some(0u128), false);
    let mut checksum = 0u64;
    for v in 0..rows {
        let ord = ordering(v);
        if ord < lo || hi.is_some_and(|h| ord >= h) {
            (range, lo, hi) = if forward && searched && ord >= lo {
                p.wide_range_after(ord, range)
            } else {
                p.wide_range(ord)
            };
            searched = true;
        }
        checksum = checksum.wrapping_add(range);
    }
    (started.elapsed().as_secs_f64(), checksum)
}

fn main() {
    let arg =
        |i: usize, default: i64| std::env::args().nth(i).map_or(default, |a| a.parse().expect("a number"));
    let (rows, bounds, rounds) = (arg(1, 5_000_000), arg(2, 1 << 20), arg(3, 5));
    let step = (rows / (bounds + 1)).max(1);
    let keys: Vec<Vec<u8>> = (1..=bounds).map(|i| ordering(i * step).to_be_bytes().to_vec()).collect();
    let p = Partitioner::new(keys, 0).expect("increasing bounds");
    println!("{rows} keys in order, {bounds} bounds (ranges of ~{step} rows), {rounds} rounds");
    let (mut full, mut forward) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a, sum_a) = ranges(&p, rows, false);
        let (b, sum_b) = ranges(&p, rows, true);
        assert_eq!(sum_a, sum_b, "the two searches disagree");
        full.push(a);
        forward.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut full), median(&mut forward));
    println!(
        "binary search on every range change: {a:.3} s; forward from the last range: {b:.3} s ({:.1}x)",
        a / b
    );
}
