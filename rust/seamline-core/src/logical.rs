//! Logical types: what a column *means*, independent of how each store happens to store it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StringOptions {
    pub nfc: bool,
    pub trim: bool,
    pub casefold: bool,
    pub empty_as_null: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePrecision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimePrecision {
    /// Units of this precision in one second.
    pub fn per_second(self) -> i64 {
        match self {
            TimePrecision::Seconds => 1,
            TimePrecision::Millis => 1_000,
            TimePrecision::Micros => 1_000_000,
            TimePrecision::Nanos => 1_000_000_000,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "s" => Some(Self::Seconds),
            "ms" => Some(Self::Millis),
            "us" => Some(Self::Micros),
            "ns" => Some(Self::Nanos),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalType {
    Integer,
    /// Fixed-point at `scale` digits after the point; rounding half-even.
    Decimal {
        scale: i8,
    },
    /// Rounded to `digits` significant digits.
    Float {
        digits: u8,
    },
    Boolean,
    String(StringOptions),
    /// UTC instant at `precision`, truncated (floor).
    Timestamp {
        precision: TimePrecision,
    },
    Date,
    Json,
    Binary,
    Uuid,
    /// A list of floats, each rounded to `digits` significant digits.
    Vector {
        digits: u8,
    },
}

impl LogicalType {
    /// Fixed-width canonical forms need no escaping inside a composite ordering key.
    pub fn fixed_width(&self) -> bool {
        matches!(
            self,
            LogicalType::Integer
                | LogicalType::Decimal { .. }
                | LogicalType::Boolean
                | LogicalType::Timestamp { .. }
                | LogicalType::Date
                | LogicalType::Uuid
        )
    }
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogicalType::Integer => write!(f, "integer"),
            LogicalType::Decimal { scale } => write!(f, "decimal({scale})"),
            LogicalType::Float { digits } => write!(f, "float({digits})"),
            LogicalType::Boolean => write!(f, "boolean"),
            LogicalType::String(_) => write!(f, "string"),
            LogicalType::Timestamp { precision } => write!(f, "timestamp({precision:?})"),
            LogicalType::Date => write!(f, "date"),
            LogicalType::Json => write!(f, "json"),
            LogicalType::Binary => write!(f, "binary"),
            LogicalType::Uuid => write!(f, "uuid"),
            LogicalType::Vector { digits } => write!(f, "vector({digits})"),
        }
    }
}

/// One compared column on one side of a seam: its store-side name and its logical type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub logical: LogicalType,
}

/// The columns of one side: key columns (in key order) and compared value columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideSpec {
    /// Shown in errors ("source", "target", or a store description).
    pub side: String,
    pub key: Vec<ColumnSpec>,
    pub values: Vec<ColumnSpec>,
}
