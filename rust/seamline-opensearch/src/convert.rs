//! Values of hits -> typed Arrow builders, one per column, typed by the index mapping.
//!
//! The rules are those of the Python reader (`seamline/stores/opensearch/read.py`), value by value,
//! so that both readers give the same rows: `_source` holds what was sent ("42" in a long field, 42
//! in a keyword field, ["a"] for "a"), so numbers parse from strings, non-strings in text fields
//! become compact JSON with sorted keys (Python's `json.dumps` formatting, floats included), a
//! one-element array stands for its element, dates are ISO strings (floored to the millisecond, no
//! offset = UTC) or epoch numbers (ms, or seconds for an `epoch_second` format). A missing field is
//! NULL.
//!
//! A value arrives as a `Datum`: scalars straight from the parser (a string borrowed from the page,
//! no `serde_json::Value` built), arrays and objects as parsed values (rare: multi-valued fields,
//! objects read as JSON). One conversion per kind serves both.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    Int8Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use base64::Engine;
use serde_json::{Map, Value};

use crate::OsError;

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
    /// The path in `_source` (`a.b.c`); `_id` for the hit's id.
    pub path: String,
    pub kind: Kind,
}

/// One JSON value of a document as the converters see it.
#[derive(Debug, Clone, Copy)]
pub enum Datum<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
}

impl<'a> Datum<'a> {
    pub fn of(v: &'a Value) -> Datum<'a> {
        match v {
            Value::Null => Datum::Null,
            Value::Bool(b) => Datum::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Datum::I64(i)
                } else if let Some(u) = n.as_u64() {
                    Datum::U64(u)
                } else {
                    Datum::F64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Datum::Str(s),
            Value::Array(items) => Datum::Array(items),
            Value::Object(map) => Datum::Object(map),
        }
    }
}

/// The Arrow builder of one column.
pub enum Builder {
    Id(StringBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Json(StringBuilder),
    /// `true`: bare numbers are seconds
    Date(TimestampMillisecondBuilder, bool),
    Binary(BinaryBuilder),
    VectorF32(ListBuilder<Float32Builder>),
}

impl Builder {
    pub fn new(kind: Kind, data_type: &DataType, capacity: usize) -> Result<Builder, String> {
        let n = capacity;
        Ok(match kind {
            Kind::Id => Builder::Id(StringBuilder::with_capacity(n, n * 8)),
            Kind::Int8 => Builder::Int8(Int8Builder::with_capacity(n)),
            Kind::Int16 => Builder::Int16(Int16Builder::with_capacity(n)),
            Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(n)),
            Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(n)),
            Kind::UInt64 => Builder::UInt64(UInt64Builder::with_capacity(n)),
            Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(n)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(n)),
            Kind::Text => Builder::Text(StringBuilder::with_capacity(n, n * 16)),
            Kind::Json => Builder::Json(StringBuilder::with_capacity(n, n * 16)),
            Kind::Date(seconds) => Builder::Date(
                TimestampMillisecondBuilder::with_capacity(n).with_data_type(data_type.clone()),
                seconds,
            ),
            Kind::Binary => Builder::Binary(BinaryBuilder::with_capacity(n, n * 16)),
            Kind::VectorF32 => {
                let item = match data_type {
                    DataType::List(f) => f.clone(),
                    other => return Err(format!("a vector column typed {other}")),
                };
                Builder::VectorF32(ListBuilder::with_capacity(Float32Builder::new(), n).with_field(item))
            }
        })
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        use arrow_array::builder::ArrayBuilder;
        match self {
            Builder::Id(b) | Builder::Text(b) | Builder::Json(b) => b.len(),
            Builder::Int8(b) => b.len(),
            Builder::Int16(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::UInt64(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Date(b, _) => b.len(),
            Builder::Binary(b) => b.len(),
            Builder::VectorF32(b) => b.len(),
        }
    }

    pub fn append_null(&mut self) {
        match self {
            Builder::Id(b) | Builder::Text(b) | Builder::Json(b) => b.append_null(),
            Builder::Int8(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::UInt64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Date(b, _) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::VectorF32(b) => b.append_null(),
        }
    }

    /// Appends one document's value (`Null`: NULL); `scratch` is a reusable text buffer. The error
    /// says what the value is and why it does not convert.
    pub fn append(&mut self, v: Datum<'_>, scratch: &mut String) -> Result<(), String> {
        if let Datum::Null = v {
            self.append_null();
            return Ok(());
        }
        match self {
            Builder::Id(b) => match v {
                Datum::Str(s) => b.append_value(s),
                other => return Err(format!("not an id: {}", short(other))),
            },
            Builder::Int8(b) => b.append_value(narrow(v, i8::try_from)?),
            Builder::Int16(b) => b.append_value(narrow(v, i16::try_from)?),
            Builder::Int32(b) => b.append_value(narrow(v, i32::try_from)?),
            Builder::Int64(b) => b.append_value(narrow(v, i64::try_from)?),
            Builder::UInt64(b) => b.append_value(narrow(v, u64::try_from)?),
            Builder::Float64(b) => b.append_option(to_f64(v)?),
            Builder::Bool(b) => b.append_value(to_bool(v)?),
            Builder::Text(b) => match v {
                Datum::Str(s) => b.append_value(s),
                other => {
                    scratch.clear();
                    if text_of(other, scratch) {
                        b.append_value(scratch.as_str())
                    } else {
                        b.append_null()
                    }
                }
            },
            Builder::Json(b) => {
                scratch.clear();
                write_json(v, scratch);
                b.append_value(scratch.as_str())
            }
            Builder::Date(b, seconds) => b.append_option(to_ms(v, *seconds)?),
            Builder::Binary(b) => match v {
                Datum::Str(s) => b.append_value(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| format!("not base64 ({e})"))?,
                ),
                other => return Err(format!("not base64: {}", short(other))),
            },
            Builder::VectorF32(b) => match v {
                Datum::Array(items) => {
                    for item in items {
                        match Datum::of(item) {
                            Datum::Null => b.values().append_null(),
                            other => match to_f64(other)? {
                                Some(x) => b.values().append_value(x as f32),
                                None => b.values().append_null(),
                            },
                        }
                    }
                    b.append(true)
                }
                other => return Err(format!("not a vector: {}", short(other))),
            },
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Id(b) | Builder::Text(b) | Builder::Json(b) => Arc::new(b.finish()),
            Builder::Int8(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::UInt64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b, _) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::VectorF32(b) => Arc::new(b.finish()),
        }
    }
}

/// One builder per column of a stream, reused from page to page.
pub struct Builders {
    pub columns: Vec<Builder>,
    schema: SchemaRef,
}

impl Builders {
    pub fn new(schema: &SchemaRef, columns: &[Column], capacity: usize) -> Result<Builders, OsError> {
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                Builder::new(column.kind, field.data_type(), capacity)
                    .map_err(|why| OsError::Config(format!("field {:?}: {why}", column.path)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Builders { columns, schema: schema.clone() })
    }

    /// The rows appended since the last batch, as one record batch (the builders start over).
    pub fn finish(&mut self) -> Result<RecordBatch, OsError> {
        let arrays = self.columns.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| OsError::Value(format!("a page does not fit the mapped schema: {e}")))
    }
}

/// A single value in place of a one-element array; an error for several.
fn single(v: Datum<'_>) -> Result<Datum<'_>, String> {
    match v {
        Datum::Array([only]) => Ok(Datum::of(only)),
        Datum::Array(_) => Err(format!("multi-valued field {}", short(v))),
        other => Ok(other),
    }
}

/// An integer of the column's width: numbers truncated toward zero, strings parsed as decimals.
fn narrow<T, E>(v: Datum<'_>, cast: fn(i128) -> Result<T, E>) -> Result<T, String> {
    let whole: i128 = match single(v)? {
        Datum::Null => return Err("null in a one-element array".into()),
        Datum::I64(i) => i as i128,
        Datum::U64(u) => u as i128,
        Datum::F64(x) => truncate(x)?,
        Datum::Str(s) => parse_integer(s)?,
        other => return Err(format!("not an integer: {}", short(other))),
    };
    cast(whole).map_err(|_| format!("{whole} is out of range for the mapped type"))
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
    if let Ok(i) = t.parse::<i128>() {
        return Ok(i);
    }
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

fn to_f64(v: Datum<'_>) -> Result<Option<f64>, String> {
    match single(v)? {
        Datum::Null => Err("null in a one-element array".into()),
        Datum::I64(i) => Ok(Some(i as f64)),
        Datum::U64(u) => Ok(Some(u as f64)),
        Datum::F64(x) => Ok(Some(x)),
        Datum::Bool(b) => Ok(Some(if b { 1.0 } else { 0.0 })),
        Datum::Str(s) => {
            let t = s.trim();
            let parsed = match t.parse::<f64>() {
                Ok(x) if !t.contains('_') => Ok(x),
                _ => t.replace('_', "").parse::<f64>(),
            };
            parsed.map(Some).map_err(|_| format!("not a number: {s:?}"))
        }
        other => Err(format!("not a number: {}", short(other))),
    }
}

/// Booleans as they are; anything else is true only as the text "true" (any case).
fn to_bool(v: Datum<'_>) -> Result<bool, String> {
    Ok(match single(v)? {
        Datum::Bool(b) => b,
        Datum::Str(s) => s.eq_ignore_ascii_case("true") || (!s.is_ascii() && s.to_lowercase() == "true"),
        _ => false,
    })
}

/// A non-string value of a text field: one-element arrays unwrap, the rest is compact JSON; false
/// for null (no text).
fn text_of(v: Datum<'_>, out: &mut String) -> bool {
    let v = match v {
        Datum::Array([only]) => match Datum::of(only) {
            Datum::Str(s) => {
                out.push_str(s);
                return true;
            }
            other => other,
        },
        other => other,
    };
    if let Datum::Null = v {
        return false;
    }
    write_json(v, out);
    true
}

/// `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
fn write_json(v: Datum<'_>, out: &mut String) {
    match v {
        Datum::Null => out.push_str("null"),
        Datum::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Datum::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Datum::U64(u) => {
            let _ = write!(out, "{u}");
        }
        Datum::F64(x) => python_float(x, out),
        Datum::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
        Datum::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(Datum::of(item), out);
            }
            out.push(']');
        }
        Datum::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).expect("a string serialises"));
                out.push(':');
                write_json(Datum::of(&map[key]), out);
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
fn to_ms(v: Datum<'_>, seconds: bool) -> Result<Option<i64>, String> {
    let v = match v {
        Datum::Array(items) => match items.first() {
            None => return Ok(None),
            Some(first) => Datum::of(first),
        },
        other => other,
    };
    let out_of_range = |v: Datum<'_>| format!("date {} is out of range", short(v));
    match v {
        Datum::Null => Ok(None),
        Datum::I64(i) => {
            let ms = if seconds { i.checked_mul(1000) } else { Some(i) };
            ms.map(Some).ok_or_else(|| out_of_range(v))
        }
        Datum::U64(_) | Datum::F64(_) => {
            let x = match v {
                Datum::U64(u) => u as f64,
                Datum::F64(x) => x,
                _ => unreachable!(),
            };
            let x = if seconds { x * 1000.0 } else { x };
            let ms = (x.is_finite() && x.abs() < 9.2e18).then(|| x.trunc() as i64);
            ms.map(Some).ok_or_else(|| out_of_range(v))
        }
        Datum::Str(s) => {
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
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0, |n, d| n * 10 + (d - b'0') as i64))
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
            if (extended && b.get(i) == Some(&b':'))
                || (!extended && b.get(i).is_some_and(u8::is_ascii_digit))
            {
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
                        frac = frac * 10
                            + b.get(start + k).filter(|_| start + k < i).map_or(0, |d| (d - b'0') as i64);
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

/// A value as JSON text for a message, cut at 60 characters.
fn short(v: Datum<'_>) -> String {
    let text = match v {
        Datum::Null => "null".to_string(),
        Datum::Bool(b) => b.to_string(),
        Datum::I64(i) => i.to_string(),
        Datum::U64(u) => u.to_string(),
        Datum::F64(x) => Value::from(x).to_string(),
        Datum::Str(s) => Value::from(s).to_string(),
        Datum::Array(items) => serde_json::to_string(items).unwrap_or_default(),
        Datum::Object(map) => serde_json::to_string(map).unwrap_or_default(),
    };
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
