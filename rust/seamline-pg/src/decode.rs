//! Postgres binary wire values -> Arrow builders, one `Decoder` per result column.
//!
//! The Arrow types are the ones the ADBC driver streams for the same columns (so the core decodes
//! both readers' batches alike), except: numeric is the exact decimal text `numeric_out` would print
//! (decoded here from the binary base-10000 digits; the core parses it to its logical decimal), json
//! and jsonb are plain UTF-8, uuid is its 16 raw bytes, and oid is int64.

use std::panic::RefUnwindSafe;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, IntervalMonthDayNanoBuilder, StringBuilder,
};
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNano, Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{ArrayRef, BooleanArray, Decimal128Array, ListArray, PrimitiveArray, StringArray};
use arrow_buffer::{ArrowNativeType, BooleanBuffer, Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use tokio_postgres::types::{Kind, Type};

/// Microseconds from 1970-01-01 to Postgres' epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

pub enum Decoder {
    Int16(Column<i16>),
    Int32(Column<i32>),
    Int64(Column<i64>),
    Oid(Column<i64>),
    Float32(Column<f32>),
    Float64(Column<f64>),
    Bool(BoolColumn),
    Text(Utf8Column),
    Jsonb(Utf8Column),
    Numeric(StringBuilder, String),
    /// numeric(p, s) with p <= 38: the unscaled value, decoded from the base-10000 digits.
    Decimal(Column<i128>, u8, i8),
    Bytes(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Column<i32>),
    Timestamp(Column<i64>, DataType),
    Time(Column<i64>),
    Interval(IntervalMonthDayNanoBuilder),
    /// A one-dimensional array (vectors): offsets, validity and the element decoder.
    List {
        item: Box<Decoder>,
        field: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl Decoder {
    /// The decoder for a column of type `ty` with type modifier `typmod` (-1: none), or None when
    /// this reader does not read it.
    pub fn for_type(ty: &Type, typmod: i32) -> Option<Decoder> {
        if let Kind::Domain(base) = ty.kind() {
            return Decoder::for_type(base, typmod);
        }
        if let Kind::Array(elem) = ty.kind() {
            let item = Decoder::for_type(elem, -1)?;
            if matches!(item, Decoder::List { .. }) {
                return None;
            }
            let field = Arc::new(Field::new("item", item.data_type(), true));
            return Some(Decoder::List {
                item: Box::new(item),
                field,
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
            });
        }
        Some(match *ty {
            Type::INT2 => Decoder::Int16(Column::default()),
            Type::INT4 => Decoder::Int32(Column::default()),
            Type::INT8 => Decoder::Int64(Column::default()),
            Type::OID => Decoder::Oid(Column::default()),
            Type::FLOAT4 => Decoder::Float32(Column::default()),
            Type::FLOAT8 => Decoder::Float64(Column::default()),
            Type::BOOL => Decoder::Bool(BoolColumn::default()),
            Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::JSON
            | Type::UNKNOWN => Decoder::Text(Utf8Column::default()),
            Type::JSONB => Decoder::Jsonb(Utf8Column::default()),
            Type::NUMERIC => match numeric_typmod(typmod) {
                // the logical type the adapter gives numeric(p, s): no text in between
                Some((precision, scale)) if precision <= 38 => {
                    // a precision and scale Arrow accepts
                    Decimal128Array::from(Vec::<i128>::new())
                        .with_precision_and_scale(precision, scale)
                        .ok()?;
                    Decoder::Decimal(Column::default(), precision, scale)
                }
                _ => Decoder::Numeric(StringBuilder::new(), String::new()),
            },
            Type::BYTEA => Decoder::Bytes(BinaryBuilder::new()),
            Type::UUID => Decoder::Uuid(FixedSizeBinaryBuilder::new(16)),
            Type::DATE => Decoder::Date(Column::default()),
            Type::TIMESTAMP => {
                Decoder::Timestamp(Column::default(), DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            Type::TIMESTAMPTZ => Decoder::Timestamp(
                Column::default(),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            Type::TIME => Decoder::Time(Column::default()),
            Type::INTERVAL => Decoder::Interval(IntervalMonthDayNanoBuilder::new()),
            // Extension types whose binary form is their text (citext).
            _ if ty.name() == "citext" => Decoder::Text(Utf8Column::default()),
            _ => return None,
        })
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Decoder::Int16(_) => DataType::Int16,
            Decoder::Int32(_) => DataType::Int32,
            Decoder::Int64(_) | Decoder::Oid(_) => DataType::Int64,
            Decoder::Float32(_) => DataType::Float32,
            Decoder::Float64(_) => DataType::Float64,
            Decoder::Bool(_) => DataType::Boolean,
            Decoder::Text(_) | Decoder::Jsonb(_) | Decoder::Numeric(..) => DataType::Utf8,
            Decoder::Decimal(_, precision, scale) => DataType::Decimal128(*precision, *scale),
            Decoder::Bytes(_) => DataType::Binary,
            Decoder::Uuid(_) => DataType::FixedSizeBinary(16),
            Decoder::Date(_) => DataType::Date32,
            Decoder::Timestamp(_, t) => t.clone(),
            Decoder::Time(_) => DataType::Time64(TimeUnit::Microsecond),
            Decoder::Interval(_) => DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
            Decoder::List { field, .. } => DataType::List(field.clone()),
        }
    }

    /// Append one value in Postgres' binary send format (None: NULL). Inlined into the row loop,
    /// the common types without a call: a call per value (saving registers, a large return value)
    /// cost as much as the decoding itself (perf, 5M rows per side).
    #[inline(always)]
    pub fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            // the common types' NULLs inline too (a column of mostly NULLs is common: deleted_at)
            match self {
                Decoder::Int64(b) | Decoder::Timestamp(b, _) => b.push_null(),
                Decoder::Text(b) => b.append_null(),
                Decoder::Decimal(b, ..) => b.push_null(),
                _ => self.append_null(),
            }
            return Ok(());
        };
        match self {
            Decoder::Int16(b) => b.push(i16::from_be_bytes(fixed(v)?)),
            Decoder::Int32(b) => b.push(i32::from_be_bytes(fixed(v)?)),
            Decoder::Int64(b) => b.push(i64::from_be_bytes(fixed(v)?)),
            Decoder::Float64(b) => b.push(f64::from_be_bytes(fixed(v)?)),
            Decoder::Bool(b) => b.push(u8::from_be_bytes(fixed(v)?) != 0),
            Decoder::Text(b) => b.append(v)?,
            Decoder::Decimal(b, _, scale) => b.push(match numeric_unscaled_small(v, *scale as i32) {
                Some(unscaled) => unscaled,
                None => numeric_unscaled(v, *scale as i32)?,
            }),
            Decoder::Timestamp(b, _) => {
                let micros = i64::from_be_bytes(fixed(v)?);
                b.push(micros.checked_add(PG_EPOCH_MICROS).unwrap_or(micros));
            }
            _ => return self.append_other(v),
        }
        Ok(())
    }

    /// `append` of a value of the other types.
    #[inline(never)]
    fn append_other(&mut self, v: &[u8]) -> Result<(), String> {
        match self {
            Decoder::Int16(_)
            | Decoder::Int32(_)
            | Decoder::Int64(_)
            | Decoder::Float64(_)
            | Decoder::Bool(_)
            | Decoder::Text(_)
            | Decoder::Decimal(..)
            | Decoder::Timestamp(..) => unreachable!("appended by `append`"),
            Decoder::Oid(b) => b.push(u32::from_be_bytes(fixed(v)?) as i64),
            Decoder::Float32(b) => b.push(f32::from_be_bytes(fixed(v)?)),
            Decoder::Jsonb(b) => match v.split_first() {
                Some((1, text)) => b.append(text)?,
                _ => return Err("unknown jsonb binary version".into()),
            },
            Decoder::Numeric(b, scratch) => {
                scratch.clear();
                numeric_text(v, scratch)?;
                b.append_value(scratch.as_str());
            }
            Decoder::Bytes(b) => b.append_value(v),
            Decoder::Uuid(b) => b.append_value(v).map_err(|e| e.to_string())?,
            Decoder::Date(b) => {
                let days = i32::from_be_bytes(fixed(v)?);
                // +-infinity (i32::MAX/MIN) stay the sentinels they are.
                b.push(if days == i32::MAX || days == i32::MIN { days } else { days + PG_EPOCH_DAYS });
            }
            Decoder::Time(b) => b.push(i64::from_be_bytes(fixed(v)?)),
            Decoder::Interval(b) => {
                let raw: [u8; 16] = fixed(v)?;
                let micros = i64::from_be_bytes(raw[0..8].try_into().unwrap());
                let days = i32::from_be_bytes(raw[8..12].try_into().unwrap());
                let months = i32::from_be_bytes(raw[12..16].try_into().unwrap());
                b.append_value(IntervalMonthDayNano::new(months, days, micros.saturating_mul(1000)));
            }
            Decoder::List { item, offsets, nulls, .. } => {
                let count = array_elements(v, item)?;
                let last = *offsets.last().unwrap();
                offsets.push(last + count);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    #[inline]
    fn append_null(&mut self) {
        match self {
            Decoder::Int16(b) => b.push_null(),
            Decoder::Int32(b) => b.push_null(),
            Decoder::Int64(b) | Decoder::Oid(b) => b.push_null(),
            Decoder::Float32(b) => b.push_null(),
            Decoder::Float64(b) => b.push_null(),
            Decoder::Bool(b) => b.push_null(),
            Decoder::Text(b) | Decoder::Jsonb(b) => b.append_null(),
            Decoder::Numeric(b, _) => b.append_null(),
            Decoder::Decimal(b, ..) => b.push_null(),
            Decoder::Bytes(b) => b.append_null(),
            Decoder::Uuid(b) => b.append_null(),
            Decoder::Date(b) => b.push_null(),
            Decoder::Timestamp(b, _) => b.push_null(),
            Decoder::Time(b) => b.push_null(),
            Decoder::Interval(b) => b.append_null(),
            Decoder::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().unwrap());
                nulls.append_null();
            }
        }
    }

    /// Make room for `rows` more values, so that a batch is written into buffers of its final size
    /// (growing them by doubling copied every value again and faulted in twice the pages).
    /// Called on an empty decoder (new, or just finished).
    pub fn reserve(&mut self, rows: usize) {
        match self {
            Decoder::Int16(b) => b.reserve(rows),
            Decoder::Int32(b) | Decoder::Date(b) => b.reserve(rows),
            Decoder::Int64(b) | Decoder::Oid(b) | Decoder::Timestamp(b, _) | Decoder::Time(b) => {
                b.reserve(rows)
            }
            Decoder::Float32(b) => b.reserve(rows),
            Decoder::Float64(b) => b.reserve(rows),
            Decoder::Bool(b) => b.values.reserve(rows),
            Decoder::Text(b) | Decoder::Jsonb(b) => b.reserve(rows),
            Decoder::Decimal(b, ..) => b.reserve(rows),
            Decoder::Interval(b) => *b = IntervalMonthDayNanoBuilder::with_capacity(rows),
            Decoder::Numeric(..) | Decoder::Bytes(_) | Decoder::Uuid(_) | Decoder::List { .. } => {}
        }
    }

    /// The values appended since the last call, as one array; the decoder starts empty again, with
    /// room for `next_rows` values.
    pub fn finish(&mut self, next_rows: usize) -> Result<ArrayRef, String> {
        let array: ArrayRef = match self {
            Decoder::Int16(b) => b.finish::<Int16Type>(DataType::Int16),
            Decoder::Int32(b) => b.finish::<Int32Type>(DataType::Int32),
            Decoder::Int64(b) | Decoder::Oid(b) => b.finish::<Int64Type>(DataType::Int64),
            Decoder::Float32(b) => b.finish::<Float32Type>(DataType::Float32),
            Decoder::Float64(b) => b.finish::<Float64Type>(DataType::Float64),
            Decoder::Bool(b) => b.finish(),
            Decoder::Text(b) | Decoder::Jsonb(b) => b.finish()?,
            Decoder::Numeric(b, _) => Arc::new(b.finish()),
            Decoder::Decimal(b, precision, scale) => {
                b.finish::<Decimal128Type>(DataType::Decimal128(*precision, *scale))
            }
            Decoder::Bytes(b) => Arc::new(b.finish()),
            Decoder::Uuid(b) => Arc::new(b.finish()),
            Decoder::Date(b) => b.finish::<Date32Type>(DataType::Date32),
            Decoder::Timestamp(b, data_type) => b.finish::<TimestampMicrosecondType>(data_type.clone()),
            Decoder::Time(b) => b.finish::<Time64MicrosecondType>(DataType::Time64(TimeUnit::Microsecond)),
            Decoder::Interval(b) => Arc::new(b.finish()),
            Decoder::List { item, field, offsets, nulls } => {
                let values = item.finish(0)?;
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(field.clone(), offsets, values, nulls.finish()))
            }
        };
        self.reserve(next_rows);
        Ok(array)
    }
}

/// Spent value buffers of one column, handed back by the arrays that carried them once the
/// consumer drops them (see `Recycled`).
type Spares<T> = Arc<Mutex<Vec<Vec<T>>>>;

/// Spare buffers a column keeps: a batch or two is in flight at a time; the rest are freed.
const SPARES: usize = 4;

/// The owner of an array buffer built from a column's `Vec`: dropping it (the last reference to the
/// array, on the consumer's thread) hands the `Vec` back to its column. A fresh buffer per batch was
/// mapped by the allocator, faulted in page by page as the batch was written and unmapped when the
/// core was done with it: a fifth of a Postgres reconcile's CPU (perf, 5M rows per side).
struct Recycled<T: Send + 'static> {
    values: Vec<T>,
    spares: Spares<T>,
}

impl<T: Send + 'static> Drop for Recycled<T> {
    fn drop(&mut self) {
        let mut values = std::mem::take(&mut self.values);
        values.clear();
        let mut spares = self.spares.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if spares.len() < SPARES {
            spares.push(values);
        }
    }
}

/// `values` as an Arrow buffer that goes back to `spares` when the last array using it is dropped.
fn recycled_buffer<T: ArrowNativeType + RefUnwindSafe>(values: Vec<T>, spares: &Spares<T>) -> Buffer {
    let bytes = std::mem::size_of_val(values.as_slice());
    let ptr = NonNull::new(values.as_ptr() as *mut u8).expect("a Vec's pointer is never null");
    let owner = Arc::new(Recycled { values, spares: spares.clone() });
    // SAFETY: `ptr` points at the `bytes` initialised bytes of the Vec `owner` holds; the Vec is
    // neither moved in memory nor changed until `owner` is dropped, i.e. until the buffer is.
    unsafe { Buffer::from_custom_allocation(ptr, bytes, owner) }
}

/// A spare buffer of `spares` if there is one, else a new one.
fn spare<T>(spares: &Spares<T>) -> Vec<T> {
    spares.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop().unwrap_or_default()
}

/// A fixed-width column: its values and validity, written into buffers reused batch after batch.
pub struct Column<T: ArrowNativeType> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
    spares: Spares<T>,
}

impl<T: ArrowNativeType> Default for Column<T> {
    fn default() -> Self {
        Column { values: Vec::new(), nulls: NullBufferBuilder::new(0), spares: Spares::default() }
    }
}

impl<T: ArrowNativeType + RefUnwindSafe> Column<T> {
    // always inlined: as calls (perf: their own symbols) they cost more than the pushes
    #[inline(always)]
    fn push(&mut self, value: T) {
        self.values.push(value);
        self.nulls.append_non_null();
    }

    #[inline(always)]
    fn push_null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    fn reserve(&mut self, rows: usize) {
        if self.values.capacity() == 0 {
            self.values = spare(&self.spares);
        }
        self.values.reserve(rows);
    }

    /// The values so far as an array of `data_type` (the values' own type, with its parameters).
    fn finish<A: ArrowPrimitiveType<Native = T>>(&mut self, data_type: DataType) -> ArrayRef {
        let values = std::mem::take(&mut self.values);
        let rows = values.len();
        let buffer = recycled_buffer(values, &self.spares);
        let array = PrimitiveArray::<A>::new(ScalarBuffer::new(buffer, 0, rows), self.nulls.finish());
        Arc::new(array.with_data_type(data_type))
    }
}

/// A boolean column gathered a byte a value and packed into Arrow's bitmap once per batch (64
/// values a word): setting one bit a value through `BooleanBuilder` cost 15 ns a value (perf).
pub struct BoolColumn {
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Default for BoolColumn {
    fn default() -> Self {
        BoolColumn { values: Vec::new(), nulls: NullBufferBuilder::new(0) }
    }
}

impl BoolColumn {
    #[inline(always)]
    fn push(&mut self, value: bool) {
        self.values.push(value as u8);
        self.nulls.append_non_null();
    }

    #[inline(always)]
    fn push_null(&mut self) {
        self.values.push(0);
        self.nulls.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        let values = BooleanBuffer::collect_bool(self.values.len(), |i| self.values[i] != 0);
        // the bytes are packed: the same Vec serves the next batch
        self.values.clear();
        Arc::new(BooleanArray::new(values, self.nulls.finish()))
    }
}

/// A text column gathered as bytes and validated once per batch: one SIMD pass over the batch's
/// whole buffer, where checking each value on its own (std's check below 64 bytes) was 5-7% of a
/// read's CPU. Its buffers are reused like a `Column`'s.
pub struct Utf8Column {
    values: Vec<u8>,
    /// Arrow offsets: 0, then the end of each value in `values`.
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    /// bytes of the last batch: the next one is likely alike
    last_bytes: usize,
    spare_values: Spares<u8>,
    spare_offsets: Spares<i32>,
}

impl Default for Utf8Column {
    fn default() -> Self {
        Utf8Column {
            values: Vec::new(),
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
            last_bytes: 0,
            spare_values: Spares::default(),
            spare_offsets: Spares::default(),
        }
    }
}

impl Utf8Column {
    #[inline(always)]
    fn append(&mut self, v: &[u8]) -> Result<(), String> {
        self.values.extend_from_slice(v);
        let end = i32::try_from(self.values.len())
            .map_err(|_| "the text values of one batch exceed 2 GiB (use reader=\"adbc\")".to_string())?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn append_null(&mut self) {
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_null();
    }

    fn reserve(&mut self, rows: usize) {
        if self.values.capacity() == 0 {
            self.values = spare(&self.spare_values);
        }
        self.offsets.reserve(rows);
        self.values.reserve(self.last_bytes + self.last_bytes / 8);
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        let values = std::mem::take(&mut self.values);
        let mut offsets = spare(&self.spare_offsets);
        offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, offsets);
        self.last_bytes = values.len();
        simdutf8::basic::from_utf8(&values).map_err(|_| "text value is not valid UTF-8".to_string())?;
        // Valid as a whole, each value must also end on a character boundary (not before a
        // continuation byte 0b10xxxxxx), or a character split between two values would pass.
        if !values.is_ascii()
            && offsets[1..].iter().any(|&end| values.get(end as usize).is_some_and(|b| (*b as i8) < -0x40))
        {
            return Err("text value is not valid UTF-8".to_string());
        }
        let rows = offsets.len() - 1;
        let offsets = ScalarBuffer::new(recycled_buffer(offsets, &self.spare_offsets), 0, rows + 1);
        let values = recycled_buffer(values, &self.spare_values);
        // SAFETY: the offsets start at 0 and never decrease (each is the buffer's length after a
        // value), and the buffer is UTF-8 with every offset on a character boundary (checked above).
        let array = unsafe {
            StringArray::new_unchecked(OffsetBuffer::new_unchecked(offsets), values, self.nulls.finish())
        };
        Ok(Arc::new(array))
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into().map_err(|_| format!("expected a {N}-byte value, got {} bytes", v.len()))
}

fn be_i32(v: &[u8], at: usize) -> Result<i32, String> {
    v.get(at..at + 4)
        .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
        .ok_or_else(|| "truncated array value".to_string())
}

/// Append the elements of a one-dimensional binary array to `item`; returns how many there were.
fn array_elements(v: &[u8], item: &mut Decoder) -> Result<i32, String> {
    let ndim = be_i32(v, 0)?;
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(format!("{ndim}-dimensional arrays are not read (only one dimension)"));
    }
    let count = be_i32(v, 12)?;
    let mut at = 20; // ndim, has-nulls flag, element oid, then (size, lower bound) of the dimension
    for _ in 0..count {
        let len = be_i32(v, at)?;
        at += 4;
        if len < 0 {
            item.append(None)?;
        } else {
            let end = at + len as usize;
            let value = v.get(at..end).ok_or_else(|| "truncated array value".to_string())?;
            item.append(Some(value))?;
            at = end;
        }
    }
    Ok(count)
}

/// (precision, scale) of a numeric type modifier, when it has one with 0 <= scale <= precision.
fn numeric_typmod(typmod: i32) -> Option<(u8, i8)> {
    if typmod < 4 {
        return None;
    }
    let precision = ((typmod - 4) >> 16) & 0xFFFF;
    let scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024;
    (0 <= scale && scale <= precision && precision <= 76).then_some((precision as u8, scale as i8))
}

/// A binary numeric as an integer scaled by 10^`scale`: sum(digit_i * 10000^(weight - i)) * 10^scale,
/// by Horner's rule over the base-10000 digits. NaN, infinities, more fraction digits than `scale`
/// and values beyond i128 are errors (a numeric(p, s) column holds none but NaN).
pub fn numeric_unscaled(v: &[u8], scale: i32) -> Result<i128, String> {
    if v.len() < 8 {
        return Err("truncated numeric value".into());
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]) as i32;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let negative = match u16::from_be_bytes([v[4], v[5]]) {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err(format!("NaN is not a decimal of scale {scale}")),
        0xD000 | 0xF000 => return Err(format!("infinity is not a decimal of scale {scale}")),
        sign => return Err(format!("invalid numeric sign 0x{sign:04x}")),
    };
    if ndigits < 0 || v.len() < 8 + 2 * ndigits as usize {
        return Err("truncated numeric value".into());
    }
    if ndigits == 0 {
        return Ok(0);
    }
    if let Some(small) = numeric_unscaled_u64(v, ndigits, weight, scale) {
        return Ok(if negative { -(small as i128) } else { small as i128 });
    }
    let overflow = || format!("numeric value does not fit a decimal of scale {scale}");
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let at = 8 + 2 * i as usize;
        let digit = i16::from_be_bytes([v[at], v[at + 1]]) as i128;
        // the power of ten this group's last decimal digit stands for, in units of 10^-scale
        let exp = 4 * (weight - i) + scale;
        if i + 1 < ndigits || exp >= 0 {
            acc = acc.checked_mul(10_000).and_then(|a| a.checked_add(digit)).ok_or_else(overflow)?;
            if i + 1 == ndigits {
                acc = acc
                    .checked_mul(10i128.checked_pow(exp as u32).ok_or_else(overflow)?)
                    .ok_or_else(overflow)?;
            }
        } else {
            // the last group reaches past the scale: its low digits must be zeros (i32 arithmetic:
            // 128-bit division is a library call)
            let cut = -exp;
            let digit = digit as i32;
            if cut >= 4 || digit % 10i32.pow(cut as u32) != 0 {
                return Err(format!("numeric value has more than {scale} fraction digits"));
            }
            acc = acc
                .checked_mul(10i128.pow((4 - cut) as u32))
                .and_then(|a| a.checked_add((digit / 10i32.pow(cut as u32)) as i128))
                .ok_or_else(overflow)?;
        }
    }
    Ok(if negative { -acc } else { acc })
}

/// `numeric_unscaled` of the common value (1 to 4 base-10000 digits, exact at the scale, below
/// 2^64), inlined into the row loop; None for anything else, which `numeric_unscaled` then decodes
/// or rejects with its reason. As a call returning a `Result<i128, String>` it cost 14 ns a value.
#[inline(always)]
fn numeric_unscaled_small(v: &[u8], scale: i32) -> Option<i128> {
    let header: [u8; 8] = v.get(..8)?.try_into().ok()?;
    let ndigits = i16::from_be_bytes([header[0], header[1]]) as i32;
    if !(1..=4).contains(&ndigits) || v.len() != 8 + 2 * ndigits as usize {
        return None;
    }
    let weight = i16::from_be_bytes([header[2], header[3]]) as i32;
    let negative = match u16::from_be_bytes([header[4], header[5]]) {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    let small = numeric_unscaled_u64(v, ndigits, weight, scale)? as i128;
    Some(if negative { -small } else { small })
}

/// The common case in 64-bit arithmetic (at most 4 base-10000 digits, at most 3 cut off, the
/// result below 2^64): None to take the 128-bit path.
#[inline]
fn numeric_unscaled_u64(v: &[u8], ndigits: i32, weight: i32, scale: i32) -> Option<u64> {
    if ndigits > 4 {
        return None;
    }
    let mut acc: u64 = 0;
    for i in 0..ndigits as usize {
        acc = acc * 10_000 + u16::from_be_bytes([v[8 + 2 * i], v[9 + 2 * i]]) as u64;
    }
    let exp = 4 * (weight - (ndigits - 1)) + scale;
    // one arm per cut so every division is by a constant (a multiply), not a runtime divisor
    match exp {
        -3 => acc.is_multiple_of(1000).then_some(acc / 1000),
        -2 => acc.is_multiple_of(100).then_some(acc / 100),
        -1 => acc.is_multiple_of(10).then_some(acc / 10),
        0 => Some(acc),
        1..=19 => acc.checked_mul(POW10_U64[exp as usize]),
        _ => None,
    }
}

/// 10^0 ..= 10^19, every power of ten a u64 holds.
const POW10_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The text `numeric_out` prints for a binary numeric (PostgreSQL's get_str_from_var): sign, the
/// integer part without leading zeros, then exactly `dscale` fraction digits.
pub fn numeric_text(v: &[u8], out: &mut String) -> Result<(), String> {
    if v.len() < 8 {
        return Err("truncated numeric value".into());
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]) as i32;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = i16::from_be_bytes([v[6], v[7]]) as i32;
    match sign {
        0xC000 => {
            out.push_str("NaN");
            return Ok(());
        }
        0xD000 => {
            out.push_str("Infinity");
            return Ok(());
        }
        0xF000 => {
            out.push_str("-Infinity");
            return Ok(());
        }
        0x0000 => {}
        0x4000 => out.push('-'),
        _ => return Err(format!("invalid numeric sign 0x{sign:04x}")),
    }
    if ndigits < 0 || v.len() < 8 + 2 * ndigits as usize {
        return Err("truncated numeric value".into());
    }
    let digit = |d: i32| -> i32 {
        if d >= 0 && d < ndigits {
            let at = 8 + 2 * d as usize;
            i16::from_be_bytes([v[at], v[at + 1]]) as i32
        } else {
            0
        }
    };
    let mut d;
    if weight < 0 {
        d = weight + 1;
        out.push('0');
    } else {
        d = 0;
        while d <= weight {
            let dig = digit(d);
            if d == 0 {
                out.push_str(&dig.to_string());
            } else {
                push4(out, dig);
            }
            d += 1;
        }
    }
    if dscale > 0 {
        out.push('.');
        let end = out.len() + dscale as usize;
        let mut i = 0;
        while i < dscale {
            push4(out, digit(d));
            d += 1;
            i += 4;
        }
        out.truncate(end);
    }
    Ok(())
}

fn push4(out: &mut String, dig: i32) {
    let dig = dig.clamp(0, 9999) as u32;
    for div in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + ((dig / div) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_text;

    fn numeric(ndigits: &[i16], weight: i16, sign: u16, dscale: i16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((ndigits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in ndigits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    fn text(v: &[u8]) -> String {
        let mut s = String::new();
        numeric_text(v, &mut s).unwrap();
        s
    }

    #[test]
    fn numeric_unscaled_is_exact() {
        use super::numeric_unscaled;
        assert_eq!(numeric_unscaled(&numeric(&[12, 3400], 0, 0x4000, 2), 2), Ok(-1234));
        assert_eq!(numeric_unscaled(&numeric(&[12, 3400], 0, 0x4000, 2), 6), Ok(-12_340_000));
        assert_eq!(numeric_unscaled(&numeric(&[1, 0, 5], 2, 0, 0), 2), Ok(10_000_000_500));
        assert_eq!(numeric_unscaled(&numeric(&[5], -2, 0, 8), 8), Ok(5));
        assert_eq!(numeric_unscaled(&numeric(&[], 0, 0, 2), 2), Ok(0));
        let max38 = numeric(&[99, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999], 9, 0, 0);
        assert_eq!(numeric_unscaled(&max38, 0), Ok(10i128.pow(38) - 1));
        assert!(numeric_unscaled(&max38, 2).is_err()); // beyond i128 at scale 2
        assert!(numeric_unscaled(&numeric(&[5], -2, 0, 8), 2).is_err()); // 0.00000005 at scale 2
        assert!(numeric_unscaled(&numeric(&[], 0, 0xC000, 0), 2).is_err());
    }

    #[test]
    fn numeric_unscaled_equals_the_exact_value_on_every_path() {
        // the 64-bit path (a constant divisor per cut) and the 128-bit one against the exact value
        // of sum(d_i * 10000^(weight - i)), computed here at 10^-20 and cut to the scale
        use super::{numeric_unscaled, numeric_unscaled_small};
        const K: i32 = 20;
        let digits = [0i16, 1, 7, 10, 99, 100, 1234, 5000, 9999];
        let mut groups: Vec<Vec<i16>> = digits.iter().map(|d| vec![*d]).collect();
        for _ in 1..4 {
            let longer: Vec<Vec<i16>> = groups
                .iter()
                .filter(|g| g.len() == groups.last().unwrap().len())
                .flat_map(|g| digits.iter().map(move |d| [g.as_slice(), &[*d]].concat()))
                .collect();
            groups.extend(longer);
        }
        // the common values take the inlined path: 123.45 and -0.07 at scale 2
        assert_eq!(numeric_unscaled_small(&numeric(&[123, 4500], 0, 0, 2), 2), Some(12345));
        assert_eq!(numeric_unscaled_small(&numeric(&[700], -1, 0x4000, 2), 2), Some(-7));
        // Postgres sends its normal form: no leading or trailing zero groups
        for group in groups.iter().filter(|g| g[0] != 0 && g[g.len() - 1] != 0) {
            for weight in -2i16..=3 {
                let at_k: i128 = group
                    .iter()
                    .enumerate()
                    .map(|(i, d)| *d as i128 * 10i128.pow((4 * (weight as i32 - i as i32) + K) as u32))
                    .sum();
                for scale in 0..=6 {
                    let unit = 10i128.pow((K - scale) as u32);
                    let want = (at_k % unit == 0).then_some(at_k / unit);
                    for (sign, negate) in [(0x0000u16, 1i128), (0x4000, -1)] {
                        let value = numeric(group, weight, sign, scale as i16);
                        let got = numeric_unscaled(&value, scale).ok();
                        assert_eq!(got, want.map(|w| w * negate), "{group:?} weight {weight} scale {scale}");
                        // the row loop's inlined path: the same value, or None to take the one above
                        if let Some(small) = numeric_unscaled_small(&value, scale) {
                            assert_eq!(Some(small), got, "{group:?} weight {weight} scale {scale}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn booleans_are_packed_per_batch_with_their_nulls() {
        use super::BoolColumn;
        use arrow_array::{Array, BooleanArray};
        let mut column = BoolColumn::default();
        for round in 0..2 {
            for i in 0..130 {
                match i % 3 {
                    0 => column.push_null(),
                    _ => column.push((i + round) % 2 == 0),
                }
            }
            let array = column.finish();
            let bools = array.as_any().downcast_ref::<BooleanArray>().unwrap();
            assert_eq!((bools.len(), bools.null_count()), (130, 44));
            for i in 0..130 {
                match i % 3 {
                    0 => assert!(bools.is_null(i)),
                    _ => assert_eq!(bools.value(i), (i + round) % 2 == 0, "row {i} of batch {round}"),
                }
            }
        }
    }

    #[test]
    fn text_is_validated_per_batch_and_per_value() {
        use super::Utf8Column;
        use arrow_array::{Array, StringArray};
        let mut column = Utf8Column::default();
        column.append("é𝄞".as_bytes()).unwrap();
        column.append_null();
        column.append(b"").unwrap();
        let array = column.finish().unwrap();
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.value(0), "é𝄞");
        assert!(strings.is_null(1) && strings.is_valid(2) && strings.value(2).is_empty());
        // reused after a batch
        column.append(b"next").unwrap();
        assert_eq!(column.finish().unwrap().len(), 1);
        // each value alone invalid, the two together valid UTF-8: still an error
        let e_acute = "é".as_bytes();
        column.append(&e_acute[..1]).unwrap();
        column.append(&e_acute[1..]).unwrap();
        assert!(column.finish().is_err());
        column.append(b"\xff").unwrap();
        assert!(column.finish().is_err());
    }

    #[test]
    fn columns_reuse_their_buffers_once_the_batch_is_dropped() {
        use super::{Column, Decimal128Type, TimestampMicrosecondType, Utf8Column};
        use arrow_array::{Array, Decimal128Array, StringArray, TimestampMicrosecondArray};
        use arrow_schema::{DataType, TimeUnit};

        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut times = Column::<i64>::default();
        times.reserve(4);
        times.push(7);
        times.push_null();
        let array = times.finish::<TimestampMicrosecondType>(utc.clone());
        assert_eq!(array.data_type(), &utc);
        let first = array.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().values().as_ptr();
        assert!(array.is_null(1) && array.len() == 2);
        // still held by the consumer: the next batch gets a buffer of its own
        times.reserve(4);
        times.push(8);
        let held = times.finish::<TimestampMicrosecondType>(utc.clone());
        let second = held.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().values().as_ptr();
        assert_ne!(first, second);
        drop(array);
        times.reserve(4);
        times.push(9);
        let again = times.finish::<TimestampMicrosecondType>(utc);
        let values = again.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!(values.values().as_ptr(), first);
        assert_eq!((values.len(), values.value(0), values.null_count()), (1, 9, 0));
        assert_eq!(held.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().value(0), 8);

        let mut prices = Column::<i128>::default();
        prices.reserve(1);
        prices.push(-1234);
        let array = prices.finish::<Decimal128Type>(DataType::Decimal128(12, 2));
        let decimals = array.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(decimals.value_as_string(0), "-12.34");

        let mut text = Utf8Column::default();
        text.reserve(2);
        text.append(b"abc").unwrap();
        let array = text.finish().unwrap();
        let first = array.as_any().downcast_ref::<StringArray>().unwrap().values().as_ptr();
        drop(array);
        text.reserve(2);
        text.append(b"de").unwrap();
        text.append_null();
        let array = text.finish().unwrap();
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(strings.values().as_ptr(), first);
        assert_eq!((strings.value(0), strings.is_null(1), strings.len()), ("de", true, 2));
    }

    #[test]
    fn numeric_text_matches_numeric_out() {
        assert_eq!(text(&numeric(&[], 0, 0, 0)), "0");
        assert_eq!(text(&numeric(&[], 0, 0, 2)), "0.00");
        assert_eq!(text(&numeric(&[12, 3400], 0, 0x4000, 2)), "-12.34");
        assert_eq!(text(&numeric(&[1, 0, 5], 2, 0, 0)), "100000005");
        assert_eq!(text(&numeric(&[5], -2, 0, 8)), "0.00000005");
        assert_eq!(text(&numeric(&[1], 3, 0, 1)), "1000000000000.0");
        assert_eq!(text(&numeric(&[], 0, 0xC000, 0)), "NaN");
        assert_eq!(text(&numeric(&[], 0, 0xF000, 0)), "-Infinity");
    }
}
