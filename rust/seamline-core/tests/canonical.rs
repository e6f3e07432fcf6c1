//! Canonical encoding: every logical type of DESIGN.md 3.1 and the traps it must absorb.

mod common;

use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::i256;
use common::*;
use seamline_core::canonical::{canonical_float, parse_decimal, parse_timestamp_nanos, parse_uuid, rescale};
use seamline_core::{CoreError, LogicalType, TimePrecision};

const INT: LogicalType = LogicalType::Integer;
const DEC2: LogicalType = LogicalType::Decimal { scale: 2 };

fn i128le(v: i128) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn dec(values: Vec<i128>, precision: u8, scale: i8) -> ArrayRef {
    arr(Decimal128Array::from(values).with_precision_and_scale(precision, scale).unwrap())
}

fn s(v: &str) -> ArrayRef {
    arr(StringArray::from(vec![v]))
}

// ------------------------------------------------------------------------------------ integer

#[test]
fn integer_all_arrow_widths_and_strings_agree() {
    let want = all_same(
        vec![
            arr(Int8Array::from(vec![42i8])),
            arr(Int16Array::from(vec![42i16])),
            arr(Int32Array::from(vec![42i32])),
            arr(Int64Array::from(vec![42i64])),
            arr(UInt8Array::from(vec![42u8])),
            arr(UInt16Array::from(vec![42u16])),
            arr(UInt32Array::from(vec![42u32])),
            arr(UInt64Array::from(vec![42u64])),
            s("42"),
            s(" 42 "),
            s("+42"),
            arr(LargeStringArray::from(vec!["42"])),
            arr(StringViewArray::from(vec!["42"])),
            dec(vec![42], 10, 0),
            dec(vec![4200], 12, 2),
            dec(vec![42], 10, 0),
            arr(Float64Array::from(vec![42.0])),
        ],
        INT,
    );
    assert_eq!(want, i128le(42));
}

#[test]
fn integer_negatives_agree() {
    let want = all_same(
        vec![
            arr(Int8Array::from(vec![-5i8])),
            arr(Int64Array::from(vec![-5i64])),
            s("-5"),
            dec(vec![-500], 12, 2),
        ],
        INT,
    );
    assert_eq!(want, i128le(-5));
}

#[test]
fn integer_u64_above_i64_max() {
    let big = u64::MAX;
    let want = all_same(
        vec![arr(UInt64Array::from(vec![big])), s("18446744073709551615"), dec(vec![big as i128], 20, 0)],
        INT,
    );
    assert_eq!(want, i128le(big as i128));
    // must not wrap into -1, nor collide with i64::MAX
    assert_ne!(want, one(arr(Int64Array::from(vec![-1i64])), INT));
    let above = one(arr(UInt64Array::from(vec![i64::MAX as u64 + 1])), INT);
    assert_ne!(above, one(arr(Int64Array::from(vec![i64::MAX])), INT));
    assert_ne!(above, one(arr(Int64Array::from(vec![i64::MIN])), INT));
}

#[test]
fn integer_distinct_values_differ() {
    assert_ne!(one(s("42"), INT), one(s("43"), INT));
    assert_ne!(one(arr(Int32Array::from(vec![0])), INT), one(arr(Int32Array::from(vec![-1])), INT));
}

#[test]
fn integer_bad_strings_name_column_and_value() {
    let e = enc_err(s("4x2"), "qty", INT);
    assert_value_error(&e, "qty", "4x2");
    let e = enc_err(arr(StringArray::from(vec![Some("1"), None, Some("abc")])), "qty", INT);
    assert_value_error(&e, "qty", "abc");
    assert!(matches!(enc_err(s("4.5"), "qty", INT), CoreError::Value(_)));
    assert!(matches!(enc_err(s(""), "qty", INT), CoreError::Value(_)));
}

#[test]
fn integer_from_fractional_decimal_or_float_is_an_error() {
    assert_value_error(&enc_err(dec(vec![4250], 12, 2), "qty", INT), "qty", "42.5");
    assert!(matches!(enc_err(arr(Float64Array::from(vec![0.5])), "qty", INT), CoreError::Value(_)));
    assert!(matches!(enc_err(arr(Float64Array::from(vec![f64::NAN])), "qty", INT), CoreError::Value(_)));
}

#[test]
fn integer_of_unsupported_type_is_a_schema_error() {
    let e = enc_err(arr(BooleanArray::from(vec![true])), "qty", INT);
    match e {
        CoreError::Schema(m) => assert!(m.contains("'qty'"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nulls_stay_null() {
    let v = enc(arr(Int64Array::from(vec![Some(1), None, Some(3)])), INT).unwrap();
    assert_eq!(v, vec![Some(i128le(1)), None, Some(i128le(3))]);
    let v = enc(arr(StringArray::from(vec![None, Some("7")])), INT).unwrap();
    assert_eq!(v, vec![None, Some(i128le(7))]);
}

// ------------------------------------------------------------------------------------ decimal

#[test]
fn decimal_numeric_double_and_strings_agree() {
    let want = all_same(
        vec![
            dec(vec![1999], 12, 2),
            arr(Float64Array::from(vec![19.99])),
            s("19.990"),
            s("19.99"),
            s(" 19.99 "),
            s("1.999e1"),
            s("1999E-2"),
            dec(vec![19990], 12, 3),
            arr(LargeStringArray::from(vec!["19.99"])),
            arr(Decimal256Array::from(vec![i256::from_i128(1999)]).with_precision_and_scale(40, 2).unwrap()),
        ],
        DEC2,
    );
    assert_eq!(want, i128le(1999));
    assert_ne!(want, one(s("19.98"), DEC2));
}

#[test]
fn decimal_leading_dot() {
    let want = all_same(vec![s(".71"), s("0.71"), s("+.71"), dec(vec![71], 5, 2)], DEC2);
    assert_eq!(want, i128le(71));
    let neg = all_same(vec![s("-.71"), s("-0.71"), dec(vec![-71], 5, 2)], DEC2);
    assert_eq!(neg, i128le(-71));
}

#[test]
fn decimal_rounds_half_even() {
    for (text, want) in [
        ("0.125", 12),
        ("0.135", 14),
        ("0.145", 14),
        ("0.155", 16),
        ("-0.125", -12),
        ("-0.135", -14),
        ("0.1251", 13),
        ("-0.1251", -13),
        ("0.1249999", 12),
        ("2.675", 268),
        ("0.005", 0),
        ("0.015", 2),
    ] {
        assert_eq!(parse_decimal(text, 2), Some(want), "{text}");
        assert_eq!(one(s(text), DEC2), i128le(want), "{text}");
    }
    // the same rounding from a decimal of a finer scale
    for (unscaled, want) in [(125, 12), (135, 14), (-125, -12), (-135, -14), (126, 13), (-126, -13)] {
        assert_eq!(one(dec(vec![unscaled], 10, 3), DEC2), i128le(want), "{unscaled}e-3");
        assert_eq!(rescale(unscaled, 3, 2), Some(want));
    }
    // and from a double: the shortest rendering is what the writer meant
    assert_eq!(one(arr(Float64Array::from(vec![0.125])), DEC2), i128le(12));
    assert_eq!(one(arr(Float64Array::from(vec![2.675])), DEC2), i128le(268));
}

#[test]
fn decimal_rescales_between_scales() {
    let want =
        all_same(vec![dec(vec![199], 10, 1), dec(vec![199_000], 10, 4), dec(vec![19_900], 10, 3)], DEC2);
    assert_eq!(want, i128le(1990));
    // negative scale: unscaled 42 at scale -2 is 4200
    assert_eq!(one(dec(vec![42], 10, -2), DEC2), i128le(420_000));
    assert_eq!(rescale(12, 2, 4), Some(1200));
    assert_eq!(rescale(1, 0, -1), Some(0));
    assert_eq!(rescale(5, 0, -1), Some(0));
    assert_eq!(rescale(15, 0, -1), Some(2));
    assert_eq!(rescale(i128::MAX / 10, 0, 2), None);
}

#[test]
fn decimal_from_integers() {
    let want =
        all_same(vec![arr(Int32Array::from(vec![19])), arr(UInt64Array::from(vec![19u64])), s("19")], DEC2);
    assert_eq!(want, i128le(1900));
    assert_eq!(one(arr(Int64Array::from(vec![i64::MAX])), DEC2), i128le(i64::MAX as i128 * 100));
}

#[test]
fn decimal_bad_strings_name_column_and_value() {
    assert_value_error(&enc_err(s("abc"), "price", DEC2), "price", "abc");
    for bad in ["", "-", "+", ".", "1.2.3", "1e", "e5", "1,5", "--1", "0x10", "1 000"] {
        assert!(parse_decimal(bad, 2).is_none(), "{bad:?} parsed");
        assert!(matches!(enc_err(s(bad), "price", DEC2), CoreError::Value(_)), "{bad:?}");
    }
}

#[test]
fn decimal_overflow_is_an_error() {
    assert_eq!(parse_decimal("1e40", 2), None);
    assert_value_error(&enc_err(s("1e40"), "price", DEC2), "price", "1e40");
    let big = 10i128.pow(37);
    assert!(matches!(enc_err(dec(vec![big], 38, 0), "price", DEC2), CoreError::Value(_)));
    assert!(matches!(enc_err(arr(Float64Array::from(vec![1e300])), "price", DEC2), CoreError::Value(_)));
    assert!(matches!(
        enc_err(arr(Float64Array::from(vec![f64::INFINITY])), "price", DEC2),
        CoreError::Value(_)
    ));
    assert!(matches!(enc_err(arr(Float64Array::from(vec![f64::NAN])), "price", DEC2), CoreError::Value(_)));
}

#[test]
fn decimal_extreme_exponents_do_not_panic() {
    // Tiny magnitudes round to zero; huge ones overflow; neither may panic.
    assert_eq!(parse_decimal("1e-2147483648", 2), Some(0));
    assert_eq!(parse_decimal("1e-100", 2), Some(0));
    assert_eq!(parse_decimal("-1e-100", 2), Some(0));
    assert_eq!(parse_decimal("1e2147483647", 2), None);
    assert_eq!(parse_decimal("0e2147483647", 2), Some(0));
    assert_eq!(parse_decimal("0.0", 2), Some(0));
    assert_eq!(parse_decimal("-0", 2), Some(0));
    // a double far below the scale is a valid value that rounds to 0.00
    assert_eq!(one(arr(Float64Array::from(vec![1e-100])), DEC2), i128le(0));
}

#[test]
fn decimal_many_digits_round_instead_of_failing() {
    // Decimal256 at a high scale renders with many trailing zeros; long fractions must round.
    let long_zeros = format!("19.99{}", "0".repeat(60));
    assert_eq!(parse_decimal(&long_zeros, 2), Some(1999));
    let thirds = format!("12.{}", "3".repeat(60));
    assert_eq!(parse_decimal(&thirds, 2), Some(1233));
    let near_half = format!("0.125{}1", "0".repeat(60));
    assert_eq!(parse_decimal(&near_half, 2), Some(13));
    let leading = format!("{}19.99", "0".repeat(60));
    assert_eq!(parse_decimal(&leading, 2), Some(1999));
    let hi_scale = i256::from_i128(1999) * i256::from_i128(10i128.pow(36));
    let a = Decimal256Array::from(vec![hi_scale]).with_precision_and_scale(76, 38).unwrap();
    assert_eq!(one(arr(a), DEC2), i128le(1999));
}

#[test]
fn decimal_from_float32_uses_the_float32_rendering() {
    // 0.165f32 is 0.16500000655651093...; the writer meant 0.165, which rounds half-even to 0.16,
    // exactly as the float64 and the text forms of the same value do.
    let want = all_same(
        vec![arr(Float32Array::from(vec![0.165f32])), arr(Float64Array::from(vec![0.165])), s("0.165")],
        DEC2,
    );
    assert_eq!(want, i128le(16));
    assert_eq!(one(arr(Float32Array::from(vec![19.99f32])), DEC2), i128le(1999));
    let d10 = LogicalType::Decimal { scale: 10 };
    assert_eq!(one(arr(Float32Array::from(vec![0.1f32])), d10), one(s("0.1"), d10));
}

// ------------------------------------------------------------------------------------ float

#[test]
fn float32_and_float64_agree_at_six_digits() {
    let f6 = LogicalType::Float { digits: 6 };
    all_same(
        vec![
            arr(Float32Array::from(vec![0.1f32])),
            arr(Float64Array::from(vec![0.1])),
            s("0.1"),
            s(" 1e-1 "),
        ],
        f6,
    );
    // at 10 digits the float32 noise shows
    let f10 = LogicalType::Float { digits: 10 };
    assert_ne!(one(arr(Float32Array::from(vec![0.1f32])), f10), one(arr(Float64Array::from(vec![0.1])), f10));
    // integers and decimals compare as floats too
    all_same(vec![arr(Int64Array::from(vec![42])), arr(Float64Array::from(vec![42.0])), s("42")], f6);
    all_same(vec![dec(vec![1999], 12, 2), arr(Float64Array::from(vec![19.99])), s("19.99")], f6);
}

#[test]
fn float_rounds_to_significant_digits() {
    let f6 = LogicalType::Float { digits: 6 };
    let f7 = LogicalType::Float { digits: 7 };
    let a = || arr(Float64Array::from(vec![1.0]));
    let b = || arr(Float64Array::from(vec![1.000_000_1]));
    assert_eq!(one(a(), f6), one(b(), f6));
    assert_eq!(one(a(), f7), one(b(), f7));
    let c = || arr(Float64Array::from(vec![1.000_001]));
    assert_eq!(one(a(), f6), one(c(), f6));
    assert_ne!(one(a(), f7), one(c(), f7));
    assert_eq!(
        one(arr(Float64Array::from(vec![123_456.7])), f6),
        one(arr(Float64Array::from(vec![123_457.0])), f6)
    );
    assert_ne!(one(arr(Float64Array::from(vec![1.0])), f6), one(arr(Float64Array::from(vec![-1.0])), f6));
    assert_ne!(one(arr(Float64Array::from(vec![1e10])), f6), one(arr(Float64Array::from(vec![1e-10])), f6));
}

#[test]
fn float_nan_and_negative_zero_are_canonical() {
    let f6 = LogicalType::Float { digits: 6 };
    let nans = vec![
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(0xfff8_dead_beef_0000),
    ];
    let mut arrays: Vec<ArrayRef> = nans.into_iter().map(|f| arr(Float64Array::from(vec![f]))).collect();
    arrays.push(arr(Float32Array::from(vec![f32::NAN])));
    arrays.push(arr(Float32Array::from(vec![f32::from_bits(0x7fc0_0001)])));
    arrays.push(s("NaN"));
    all_same(arrays, f6);
    let zero = all_same(
        vec![
            arr(Float64Array::from(vec![0.0])),
            arr(Float64Array::from(vec![-0.0])),
            arr(Float32Array::from(vec![-0.0f32])),
            s("-0.0"),
            arr(Int32Array::from(vec![0])),
        ],
        f6,
    );
    assert_ne!(zero, one(arr(Float64Array::from(vec![f64::NAN])), f6));
    assert_ne!(
        one(arr(Float64Array::from(vec![f64::INFINITY])), f6),
        one(arr(Float64Array::from(vec![f64::NEG_INFINITY])), f6)
    );
    let mut out = String::new();
    canonical_float(-0.0, 6, &mut out);
    let mut out2 = String::new();
    canonical_float(0.0, 6, &mut out2);
    assert_eq!(out, out2);
}

#[test]
fn float_bad_string_is_a_value_error() {
    assert_value_error(&enc_err(s("1.2.3"), "score", LogicalType::Float { digits: 6 }), "score", "1.2.3");
}

// ------------------------------------------------------------------------------------ boolean

#[test]
fn boolean_forms_agree() {
    let t = all_same(
        vec![
            arr(BooleanArray::from(vec![true])),
            arr(Int8Array::from(vec![1i8])),
            arr(UInt64Array::from(vec![1u64])),
            s("true"),
            s("t"),
            s("1"),
            s("TRUE"),
            s(" yes "),
        ],
        LogicalType::Boolean,
    );
    let f = all_same(
        vec![
            arr(BooleanArray::from(vec![false])),
            arr(Int32Array::from(vec![0])),
            s("false"),
            s("f"),
            s("0"),
            s("False"),
        ],
        LogicalType::Boolean,
    );
    assert_eq!(t, vec![1]);
    assert_eq!(f, vec![0]);
}

#[test]
fn boolean_invalid_values_are_errors() {
    assert_value_error(&enc_err(s("maybe"), "active", LogicalType::Boolean), "active", "maybe");
    assert_value_error(
        &enc_err(arr(Int32Array::from(vec![2])), "active", LogicalType::Boolean),
        "active",
        "2",
    );
    assert!(matches!(
        enc_err(arr(Float64Array::from(vec![1.0])), "active", LogicalType::Boolean),
        CoreError::Schema(_)
    ));
}

// ------------------------------------------------------------------------------------ string

#[test]
fn string_nfc_only_with_option() {
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    assert_ne!(one(s(nfc), PLAIN), one(s(nfd), PLAIN));
    let opt = LogicalType::String(string_opts(true, false, false, false));
    assert_eq!(one(s(nfc), opt), one(s(nfd), opt));
    assert_eq!(one(s(nfd), opt), nfc.as_bytes());
}

#[test]
fn string_trim_and_casefold() {
    assert_ne!(one(s(" a "), PLAIN), one(s("a"), PLAIN));
    let trim = LogicalType::String(string_opts(false, true, false, false));
    assert_eq!(one(s(" a\t"), trim), one(s("a"), trim));
    assert_ne!(one(s("ABC"), PLAIN), one(s("abc"), PLAIN));
    let fold = LogicalType::String(string_opts(false, false, true, false));
    assert_eq!(one(s("ABC"), fold), one(s("abc"), fold));
    assert_eq!(one(s("\u{c9}T\u{c9}"), fold), one(s("\u{e9}t\u{e9}"), fold));
    let all = LogicalType::String(string_opts(true, true, true, false));
    assert_eq!(one(s("  CAFE\u{301} "), all), one(s("caf\u{e9}"), all));
}

#[test]
fn string_empty_as_null() {
    let v = enc(arr(StringArray::from(vec![Some(""), None, Some("x")])), PLAIN).unwrap();
    assert_eq!(v, vec![Some(vec![]), None, Some(b"x".to_vec())]);
    let ean = LogicalType::String(string_opts(false, false, false, true));
    let v = enc(arr(StringArray::from(vec![Some(""), None, Some("x")])), ean).unwrap();
    assert_eq!(v, vec![None, None, Some(b"x".to_vec())]);
    let trim_ean = LogicalType::String(string_opts(false, true, false, true));
    assert_eq!(enc(s("   "), trim_ean).unwrap(), vec![None]);
}

#[test]
fn string_layouts_and_dictionary_agree() {
    let want = all_same(
        vec![
            s("hello"),
            arr(LargeStringArray::from(vec!["hello"])),
            arr(StringViewArray::from(vec!["hello"])),
            arr(vec!["hello"].into_iter().collect::<DictionaryArray<Int32Type>>()),
        ],
        PLAIN,
    );
    assert_eq!(want, b"hello");
    let dict: DictionaryArray<Int32Type> = vec![Some("b"), None, Some("a"), Some("b")].into_iter().collect();
    let plain = StringArray::from(vec![Some("b"), None, Some("a"), Some("b")]);
    assert_eq!(enc(arr(dict), PLAIN).unwrap(), enc(arr(plain), PLAIN).unwrap());
}

#[test]
fn string_from_integers_is_the_decimal_rendering() {
    assert_eq!(one(arr(Int64Array::from(vec![-42])), PLAIN), one(s("-42"), PLAIN));
}

// ------------------------------------------------------------------------------------ timestamp

fn ts(p: TimePrecision) -> LogicalType {
    LogicalType::Timestamp { precision: p }
}

fn i64le(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

#[test]
fn timestamp_opensearch_ms_vs_postgres_us() {
    let os = || arr(TimestampMillisecondArray::from(vec![T0 * 1000 + 123]));
    let pg = || arr(TimestampMicrosecondArray::from(vec![T0 * 1_000_000 + 123_456]).with_timezone("UTC"));
    assert_eq!(one(os(), ts(TimePrecision::Millis)), one(pg(), ts(TimePrecision::Millis)));
    assert_eq!(one(os(), ts(TimePrecision::Millis)), i64le(T0 * 1000 + 123));
    assert_ne!(one(os(), ts(TimePrecision::Micros)), one(pg(), ts(TimePrecision::Micros)));
    assert_eq!(one(os(), ts(TimePrecision::Seconds)), one(pg(), ts(TimePrecision::Seconds)));
}

#[test]
fn timestamp_tz_aware_and_naive_arrays_of_one_instant_agree() {
    for p in [TimePrecision::Seconds, TimePrecision::Millis, TimePrecision::Micros, TimePrecision::Nanos] {
        all_same(
            vec![
                arr(TimestampMicrosecondArray::from(vec![T0 * 1_000_000 + 5]).with_timezone("UTC")),
                arr(TimestampNanosecondArray::from(vec![(T0 * 1_000_000 + 5) * 1000])),
                arr(TimestampNanosecondArray::from(vec![(T0 * 1_000_000 + 5) * 1000]).with_timezone("+05:00")),
            ],
            ts(p),
        );
    }
}

#[test]
fn timestamp_every_unit_and_string_form_agree() {
    for p in [TimePrecision::Seconds, TimePrecision::Millis, TimePrecision::Micros, TimePrecision::Nanos] {
        let want = all_same(
            vec![
                arr(TimestampSecondArray::from(vec![T0])),
                arr(TimestampMillisecondArray::from(vec![T0 * 1_000])),
                arr(TimestampMicrosecondArray::from(vec![T0 * 1_000_000])),
                arr(TimestampNanosecondArray::from(vec![T0 * 1_000_000_000])),
                s("2024-01-01T00:00:00Z"),
                s("2024-01-01T01:00:00+01:00"),
                s("2023-12-31T19:00:00-05:00"),
                s("2024-01-01T00:00:00.000+00:00"),
                s("2024-01-01 00:00:00"),
                s("2024-01-01T00:00:00"),
                s("2024-01-01 01:00:00+0100"),
                s("2024-01-01"),
                arr(Date32Array::from(vec![(T0 / 86_400) as i32])),
                arr(Date64Array::from(vec![T0 * 1000])),
            ],
            ts(p),
        );
        assert_eq!(want, i64le(T0 * p.per_second()), "{p:?}");
    }
    assert_eq!(parse_timestamp_nanos("2024-01-01T01:00:00+01:00"), Some(T0 as i128 * 1_000_000_000));
    assert_eq!(
        parse_timestamp_nanos("2024-01-01T00:00:00.123456789Z"),
        Some(T0 as i128 * 1_000_000_000 + 123_456_789)
    );
}

#[test]
fn timestamp_truncates_pre_epoch_values_by_floor() {
    let ms = ts(TimePrecision::Millis);
    let secs = ts(TimePrecision::Seconds);
    // -1 us is 1969-12-31T23:59:59.999999: floor to ms is -1, to s is -1
    assert_eq!(one(arr(TimestampMicrosecondArray::from(vec![-1])), ms), i64le(-1));
    assert_eq!(one(arr(TimestampMicrosecondArray::from(vec![-1])), secs), i64le(-1));
    assert_eq!(one(s("1969-12-31T23:59:59.999999Z"), ms), i64le(-1));
    assert_eq!(one(s("1969-12-31T23:59:59.999999Z"), secs), i64le(-1));
    assert_eq!(one(arr(TimestampNanosecondArray::from(vec![-1_000_000_001])), secs), i64le(-2));
    assert_eq!(one(arr(TimestampMillisecondArray::from(vec![-1000])), secs), i64le(-1));
    // the same pre-epoch instant in different units agrees once truncated
    all_same(
        vec![
            arr(TimestampMillisecondArray::from(vec![-1_500])),
            arr(TimestampMicrosecondArray::from(vec![-1_499_001])),
            arr(TimestampNanosecondArray::from(vec![-1_499_999_999])),
            s("1969-12-31T23:59:58.500Z"),
            s("1969-12-31T23:59:58.5009Z"),
        ],
        ms,
    );
    assert_eq!(one(arr(TimestampMillisecondArray::from(vec![-1_500])), ms), i64le(-1_500));
    // positive values truncate too
    assert_eq!(one(arr(TimestampMicrosecondArray::from(vec![1_999])), ms), i64le(1));
}

#[test]
fn timestamp_far_dates_saturate_consistently_at_nanos() {
    // 9999-12-31 (a common "open end" sentinel) does not fit i64 nanoseconds: every form of it
    // must land on the same saturated value rather than wrapping differently.
    let ns = ts(TimePrecision::Nanos);
    let days = 2_932_896; // 9999-12-31
    all_same(
        vec![
            arr(Date32Array::from(vec![days])),
            arr(TimestampSecondArray::from(vec![days as i64 * 86_400])),
            s("9999-12-31"),
            s("9999-12-31T00:00:00Z"),
        ],
        ns,
    );
}

#[test]
fn timestamp_bad_string_is_a_value_error() {
    assert_value_error(
        &enc_err(s("yesterday"), "updated_at", ts(TimePrecision::Micros)),
        "updated_at",
        "yesterday",
    );
    assert!(matches!(
        enc_err(arr(Int64Array::from(vec![1])), "updated_at", ts(TimePrecision::Micros)),
        CoreError::Schema(_)
    ));
}

// ------------------------------------------------------------------------------------ date

#[test]
fn date_forms_agree() {
    let leap = 19_782; // 2024-02-29
    let want = all_same(
        vec![
            arr(Date32Array::from(vec![leap])),
            arr(Date64Array::from(vec![leap as i64 * 86_400_000])),
            s("2024-02-29"),
            s("2024-02-29T00:00:00Z"),
            arr(TimestampSecondArray::from(vec![leap as i64 * 86_400])),
            arr(TimestampNanosecondArray::from(vec![leap as i64 * 86_400 * 1_000_000_000])
                .with_timezone("UTC")),
            arr(TimestampMicrosecondArray::from(vec![leap as i64 * 86_400_000_000])),
        ],
        LogicalType::Date,
    );
    assert_eq!(want, leap.to_le_bytes().to_vec());
    assert_ne!(want, one(s("2024-03-01"), LogicalType::Date));
    // pre-epoch: 1969-12-31 is day -1, also from a timestamp one second before the epoch
    all_same(
        vec![arr(Date32Array::from(vec![-1])), s("1969-12-31"), arr(TimestampSecondArray::from(vec![-1]))],
        LogicalType::Date,
    );
    assert_eq!(one(s("1969-12-31"), LogicalType::Date), (-1i32).to_le_bytes().to_vec());
    assert!(matches!(enc_err(s("2023-02-29"), "d", LogicalType::Date), CoreError::Value(_)));
}

// ------------------------------------------------------------------------------------ json

#[test]
fn json_key_order_and_whitespace_do_not_matter() {
    let j = LogicalType::Json;
    let want = all_same(
        vec![
            s(r#"{"b":1,"a":[1,2],"c":{"y":null,"x":true}}"#),
            s(" {\n \"a\" : [1, 2],\t\"c\": {\"x\": true, \"y\": null}, \"b\": 1 } "),
            arr(LargeStringArray::from(vec![r#"{"c":{"x":true,"y":null},"b":1,"a":[1,2]}"#])),
        ],
        j,
    );
    assert_eq!(want, br#"{"a":[1,2],"b":1,"c":{"x":true,"y":null}}"#.to_vec());
    assert_ne!(one(s(r#"{"a":1}"#), j), one(s(r#"{"a":2}"#), j));
    assert_ne!(one(s("[1,2]"), j), one(s("[2,1]"), j));
    assert_ne!(one(s(r#"{"a":"1"}"#), j), one(s(r#"{"a":1}"#), j));
}

#[test]
fn json_invalid_is_a_value_error() {
    assert_value_error(&enc_err(s(r#"{"a":"#), "doc", LogicalType::Json), "doc", r#"{\"a\":"#);
}

// ------------------------------------------------------------------------------------ uuid, binary

const UUID_TEXT: &str = "550e8400-e29b-41d4-a716-446655440000";
const UUID_BYTES: [u8; 16] =
    [0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00];

#[test]
fn uuid_text_and_binary_forms_agree() {
    let want = all_same(
        vec![
            s(UUID_TEXT),
            s(&UUID_TEXT.to_uppercase()),
            s(&UUID_TEXT.replace('-', "")),
            s(&UUID_TEXT.to_uppercase().replace('-', "")),
            s(&format!("{{{UUID_TEXT}}}")),
            arr(FixedSizeBinaryArray::try_from_iter(vec![UUID_BYTES.to_vec()].into_iter()).unwrap()),
            arr(BinaryArray::from(vec![&UUID_BYTES[..]])),
        ],
        LogicalType::Uuid,
    );
    assert_eq!(want, UUID_BYTES.to_vec());
    assert_eq!(parse_uuid(UUID_TEXT), Some(UUID_BYTES));
}

#[test]
fn uuid_bad_values_are_errors() {
    for bad in [
        "550e8400-e29b-41d4-a716-44665544000",
        "550e8400-e29b-41d4-a716-4466554400000",
        "550e8400-e29b-41d4-a716-44665544000g",
        "",
        "not-a-uuid",
    ] {
        assert!(parse_uuid(bad).is_none(), "{bad}");
    }
    assert_value_error(&enc_err(s("not-a-uuid"), "id", LogicalType::Uuid), "id", "not-a-uuid");
    let short = FixedSizeBinaryArray::try_from_iter(vec![vec![1u8; 15]].into_iter()).unwrap();
    assert!(matches!(enc_err(arr(short), "id", LogicalType::Uuid), CoreError::Value(_)));
}

#[test]
fn binary_layouts_agree() {
    let raw: &[u8] = &[0, 1, 255];
    let want = all_same(
        vec![
            arr(BinaryArray::from(vec![raw])),
            arr(LargeBinaryArray::from(vec![raw])),
            arr(BinaryViewArray::from(vec![raw])),
            arr(FixedSizeBinaryArray::try_from_iter(vec![raw.to_vec()].into_iter()).unwrap()),
        ],
        LogicalType::Binary,
    );
    assert_eq!(want, raw.to_vec());
}

/// A decimal256 is accepted wherever a decimal128 is: as an integer (when integral) and a float.
#[test]
fn decimal256_reads_as_integer_and_float_like_decimal128() {
    let d256 = |v: i64, scale: i8| {
        arr(Decimal256Array::from(vec![i256::from_i128(v as i128)])
            .with_precision_and_scale(40, scale)
            .unwrap())
    };
    assert_eq!(one(d256(4200, 2), INT), one(arr(Int64Array::from(vec![42])), INT));
    assert_value_error(&enc_err(d256(4250, 2), "c", INT), "c", "42.50");
    let float = LogicalType::Float { digits: 6 };
    assert_eq!(one(d256(1999, 2), float), one(dec(vec![1999], 12, 2), float));
}
