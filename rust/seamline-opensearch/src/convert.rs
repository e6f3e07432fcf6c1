//! Hits -> one Arrow record batch, each column typed by the index mapping.
//!
//! The rules are those of the Python reader (`seamline/stores/opensearch/read.py`), value by value,
//! so that both readers give the same rows: `_source` holds what was sent ("42" in a long field, 42
//! in a keyword field, ["a"] for "a"), so numbers parse from strings, non-strings in text fields
//! become compact JSON with sorted keys (Python's `json.dumps` formatting, floats included), a
//! one-element array stands for its element, dates are ISO strings (floored to the millisecond, no
//! offset = UTC) or epoch numbers (ms, or seconds for an `epoch_second` format). A missing field is
//! NULL; a dotted path is a literal key first, then a walk through objects.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use base64::Engine;
use serde_json::{Map, Value};

use crate::{Hit, OsError};

/// How a column's values convert (its Arrow type follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Id,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt64,
    Float64,
    Text,
    Bool,
    /// ms since the epoch; `true`: bare numbers are seconds (an `epoch_second` format)
    Date(bool),
    /// An object or unmapped field: its value as compact JSON
    Json,
    VectorF32,
    Binary,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "id" => Kind::Id,
            "int8" => Kind::Int8,
            "int16" => Kind::Int16,
            "int32" => Kind::Int32,
            "int64" => Kind::Int64,
            "uint64" => Kind::UInt64,
            "float64" => Kind::Float64,
            "text" => Kind::Text,
            "bool" => Kind::Bool,
            "date" => Kind::Date(false),
            "date_seconds" => Kind::Date(true),
            "json" => Kind::Json,
            "vector_f32" => Kind::VectorF32,
            "binary" => Kind::Binary,
            _ => return None,
        })
    }
}

/// One column: where its value is in a hit and how it converts.
#[derive(Debug, Clone)]
pub struct Column {
    /// The path in `_source` (`a.b.c`), or the name under `fields` (doc values).
    pub path: String,
    pub kind: Kind,
    /// Read from the hit's `fields` (docvalue_fields) instead of `_source`.
    pub doc_values: bool,
}

pub fn batch(schema: &SchemaRef, columns: &[Column], hits: &[Hit]) -> Result<RecordBatch, OsError> {
    let arrays = columns
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            convert(column, field.data_type(), hits)
                .map_err(|why| OsError::Value(format!("field {:?}: {why}", column.path)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| OsError::Value(format!("a page does not fit the mapped schema: {e}")))
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

/// The value of `path` in one hit, or None when the document does not have it.
fn lookup<'a>(hit: &'a Hit, column: &Column) -> Option<&'a Value> {
    let map = if column.doc_values { hit.fields.as_ref() } else { hit.source.as_ref() };
    let map = map.unwrap_or_else(|| EMPTY.get_or_init(Map::new));
    if let Some(v) = map.get(&column.path) {
        return Some(v);
    }
    if column.doc_values || !column.path.contains('.') {
        return None;
    }
    let mut parts = column.path.split('.');
    let mut value = map.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

type Conv<T> = fn(&Value) -> Result<Option<T>, String>;

fn values<'a, T: 'a>(
    column: &'a Column,
    hits: &'a [Hit],
    conv: Conv<T>,
) -> impl Iterator<Item = Result<Option<T>, String>> + 'a {
    hits.iter().map(move |hit| match lookup(hit, column) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => conv(v),
    })
}

macro_rules! build {
    ($builder:expr, $column:expr, $hits:expr, $conv:expr) => {{
        let mut b = $builder;
        for v in values($column, $hits, $conv) {
            b.append_option(v?);
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn convert(column: &Column, data_type: &DataType, hits: &[Hit]) -> Result<ArrayRef, String> {
    let n = hits.len();
    Ok(match column.kind {
        Kind::Id => {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for hit in hits {
                b.append_option(hit.id.as_deref());
            }
            Arc::new(b.finish())
        }
        Kind::Int8 => build!(Int8Builder::with_capacity(n), column, hits, |v| narrow(v, i8::try_from)),
        Kind::Int16 => build!(Int16Builder::with_capacity(n), column, hits, |v| narrow(v, i16::try_from)),
        Kind::Int32 => build!(Int32Builder::with_capacity(n), column, hits, |v| narrow(v, i32::try_from)),
        Kind::Int64 => build!(Int64Builder::with_capacity(n), column, hits, |v| narrow(v, i64::try_from)),
        Kind::UInt64 => build!(UInt64Builder::with_capacity(n), column, hits, |v| narrow(v, u64::try_from)),
        Kind::Float64 => build!(Float64Builder::with_capacity(n), column, hits, to_f64),
        Kind::Bool => build!(BooleanBuilder::with_capacity(n), column, hits, to_bool),
        Kind::Text | Kind::Json => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            let mut text = String::new();
            for hit in hits {
                match lookup(hit, column) {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::String(s)) if column.kind == Kind::Text => b.append_value(s),
                    Some(v) => {
                        text.clear();
                        let written =
                            if column.kind == Kind::Text { text_of(v, &mut text) } else { json(v, &mut text) };
                        if written {
                            b.append_value(&text)
                        } else {
                            b.append_null()
                        }
                    }
                }
            }
            Arc::new(b.finish())
        }
        Kind::Date(seconds) => {
            let mut b = TimestampMillisecondBuilder::with_capacity(n);
            for hit in hits {
                let v = match lookup(hit, column) {
                    None => None,
                    Some(v) => to_ms(v, seconds)?,
                };
                b.append_option(v);
            }
            Arc::new(b.finish().with_data_type(data_type.clone()))
        }
        Kind::Binary => build!(BinaryBuilder::with_capacity(n, n * 16), column, hits, |v| match v {
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Some)
                .map_err(|e| format!("not base64 ({e})")),
            other => Err(format!("not base64: {}", short(other))),
        }),
        Kind::VectorF32 => {
            let item = match data_type {
                DataType::List(f) => f.clone(),
                other => return Err(format!("a vector column typed {other}")),
            };
            let mut b = ListBuilder::with_capacity(Float32Builder::new(), n).with_field(item);
            for hit in hits {
                match lookup(hit, column) {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::Array(items)) => {
                        for item in items {
                            match item {
                                Value::Null => b.values().append_null(),
                                other => match to_f64(other)? {
                                    Some(x) => b.values().append_value(x as f32),
                                    None => b.values().append_null(),
                                },
                            }
                        }
                        b.append(true)
                    }
                    Some(other) => return Err(format!("not a vector: {}", short(other))),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// A single value in place of a one-element array; an error for several.
fn single(v: &Value) -> Result<&Value, String> {
    match v {
        Value::Array(items) if items.len() == 1 => Ok(&items[0]),
        Value::Array(_) => Err(format!("multi-valued field {}", short(v))),
        other => Ok(other),
    }
}

/// An integer of the column's width: numbers truncated toward zero, strings parsed as decimals.
fn narrow<T, E>(v: &Value, cast: fn(i128) -> Result<T, E>) -> Result<Option<T>, String> {
    let whole: i128 = match single(v)? {
        Value::Null => return Err("null in a one-element array".into()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i as i128
            } else if let Some(u) = n.as_u64() {
                u as i128
            } else {
                truncate(n.as_f64().unwrap_or(f64::NAN))?
            }
        }
        Value::String(s) => parse_integer(s)?,
        other => return Err(format!("not an integer: {}", short(other))),
    };
    cast(whole).map(Some).map_err(|_| format!("{whole} is out of range for the mapped type"))
}

fn truncate(x: f64) -> Result<i128, String> {
    if x.is_finite() && x.abs() < 1.7e38 {
        Ok(x.trunc() as i128)
    } else {
        Err(format!("{x} is not an integer"))
    }
}

/// `int(Decimal(text))`: an integer, or a decimal (exponent allowed) truncated toward zero.
fn parse_integer(text: &str) -> Result<i128, String> {
    let t = text.trim();
    let digits = t.replace('_', "");
    if let Ok(i) = digits.parse::<i128>() {
        return Ok(i);
    }
    let looks_decimal = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
    match digits.parse::<f64>() {
        Ok(x) if looks_decimal => truncate(x),
        _ => Err(format!("not an integer: {t:?}")),
    }
}

fn to_f64(v: &Value) -> Result<Option<f64>, String> {
    match single(v)? {
        Value::Null => Err("null in a one-element array".into()),
        Value::Number(n) => Ok(n.as_f64()),
        Value::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            t.parse::<f64>().map(Some).map_err(|_| format!("not a number: {s:?}"))
        }
        other => Err(format!("not a number: {}", short(other))),
    }
}

/// Booleans as they are; anything else is true only as the text "true" (any case).
fn to_bool(v: &Value) -> Result<Option<bool>, String> {
    Ok(Some(match single(v)? {
        Value::Bool(b) => *b,
        Value::String(s) => s.to_lowercase() == "true",
        _ => false,
    }))
}

/// A non-string value of a text field: one-element arrays unwrap, the rest is compact JSON.
fn text_of(v: &Value, out: &mut String) -> bool {
    match v {
        Value::Array(items) if items.len() == 1 => match &items[0] {
            Value::String(s) => {
                out.push_str(s);
                true
            }
            other => json(other, out),
        },
        other => json(other, out),
    }
}

/// `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`; false for null.
fn json(v: &Value, out: &mut String) -> bool {
    if v.is_null() {
        return false;
    }
    write_json(v, out);
    true
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string())
            } else {
                python_float(n.as_f64().unwrap_or(f64::NAN), out)
            }
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).expect("a string serialises"));
                out.push(':');
                write_json(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for 1e-4 <= |x| < 1e16,
/// else scientific with a signed exponent of at least two digits (`1e+16`, `1.5e-05`).
pub fn python_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("LowerExp has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if x.is_sign_negative() {
        out.push('-');
    }
    let point = exponent + 1; // digits d1 d2 ... with the decimal point after `point` of them
    if x == 0.0 {
        out.push_str("0.0");
    } else if (-3..=16).contains(&point) {
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    }
}

/// A date value -> ms since the epoch (floored), as `_to_ms` of the Python reader.
fn to_ms(v: &Value, seconds: bool) -> Result<Option<i64>, String> {
    let v = match v {
        Value::Array(items) => match items.first() {
            None => return Ok(None),
            Some(first) => first,
        },
        other => other,
    };
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let ms = if let Some(i) = n.as_i64() {
                if seconds {
                    i.checked_mul(1000)
                } else {
                    Some(i)
                }
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let x = if seconds { x * 1000.0 } else { x };
                (x.is_finite() && x.abs() < 9.2e18).then(|| x.trunc() as i64)
            };
            ms.map(Some).ok_or_else(|| format!("date {n} is out of range"))
        }
        Value::String(s) => {
            let body = s.trim_start_matches('-');
            if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) && s.len() - body.len() <= 1 {
                let i: i64 = s.parse().map_err(|_| format!("date {s:?} is out of range"))?;
                return Ok(Some(if seconds { i.saturating_mul(1000) } else { i }));
            }
            iso_ms(s).map(Some).ok_or_else(|| format!("not a date: {s:?}"))
        }
        other => Err(format!("not a date: {}", short(other))),
    }
}

/// An ISO 8601 date or date-time (`YYYY-MM-DD`, optional `T`/space time `HH[:MM[:SS[.f...]]]`,
/// optional `Z` or `±HH[:MM]`; no offset is UTC) -> ms since the epoch, the fraction floored.
fn iso_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let (year, month, day, mut i) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?, 10)
    } else if b.len() >= 8 && b[..8].iter().all(u8::is_ascii_digit) {
        (num(&b[0..4])?, num(&b[4..6])?, num(&b[6..8])?, 8)
    } else {
        return None;
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || year < 1 {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if i < b.len() && matches!(b[i], b'T' | b't' | b' ') {
        i += 1;
        let field = |i: usize| -> Option<i64> { num(b.get(i..i + 2)?) };
        let hour = field(i)?;
        i += 2;
        let mut minute = 0;
        let mut second = 0;
        let extended = b.get(i) == Some(&b':');
        if extended || b.get(i).is_some_and(u8::is_ascii_digit) {
            i += extended as usize;
            minute = field(i)?;
            i += 2;
            if (extended && b.get(i) == Some(&b':')) || (!extended && b.get(i).is_some_and(u8::is_ascii_digit)) {
                i += extended as usize;
                second = field(i)?;
                i += 2;
                if matches!(b.get(i), Some(b'.') | Some(b',')) {
                    i += 1;
                    let start = i;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                    if i == start {
                        return None;
                    }
                    let mut frac = 0;
                    for k in 0..3 {
                        frac = frac * 10 + b.get(start + k).filter(|_| start + k < i).map_or(0, |d| (d - b'0') as i64);
                    }
                    ms += frac;
                }
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        ms += hour * 3_600_000 + minute * 60_000 + second * 1000;
        match b.get(i) {
            None => {}
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) => {
                let sign = if *sign == b'-' { -1 } else { 1 };
                let rest = &b[i + 1..];
                let (h, m) = match rest.len() {
                    2 => (num(rest)?, 0),
                    4 => (num(&rest[..2])?, num(&rest[2..])?),
                    5 if rest[2] == b':' => (num(&rest[..2])?, num(&rest[3..])?),
                    _ => return None,
                };
                if h > 23 || m > 59 {
                    return None;
                }
                ms -= sign * (h * 3_600_000 + m * 60_000);
            }
            _ => return None,
        }
    } else if i != b.len() {
        return None;
    }
    Some(ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(x: f64) -> String {
        let mut s = String::new();
        python_float(x, &mut s);
        s
    }

    #[test]
    fn floats_print_as_python_does() {
        assert_eq!(py(1.5), "1.5");
        assert_eq!(py(1.0), "1.0");
        assert_eq!(py(1e16), "1e+16");
        assert_eq!(py(1e15), "1000000000000000.0");
        assert_eq!(py(1.5e-5), "1.5e-05");
        assert_eq!(py(0.0001), "0.0001");
        assert_eq!(py(-0.0), "-0.0");
        assert_eq!(py(123.456), "123.456");
        assert_eq!(py(1.2345e300), "1.2345e+300");
        assert_eq!(py(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn iso_dates_floor_to_ms() {
        assert_eq!(iso_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(iso_ms("1970-01-01"), Some(0));
        assert_eq!(iso_ms("1969-12-31T23:59:59.9999Z"), Some(-1));
        assert_eq!(iso_ms("2024-01-01T00:00:00.123456789+05:30"), Some(1_704_047_400_123));
        assert_eq!(iso_ms("2024-01-01T00:00:00+0530"), iso_ms("2024-01-01T00:00:00+05:30"));
        assert_eq!(iso_ms("0001-01-01T00:00:00Z"), Some(-62_135_596_800_000));
        assert_eq!(iso_ms("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
        assert_eq!(iso_ms("2024-02-30"), None);
        assert_eq!(iso_ms("2024-01-01T24:00:00"), None);
        assert_eq!(iso_ms("yesterday"), None);
    }
}
