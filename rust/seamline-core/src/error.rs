//! The one error type of the core. Every variant renders as one line that names what is wrong.

use arrow_schema::ArrowError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A column is missing, renamed or of a type that cannot carry its logical type.
    #[error("{0}")]
    Schema(String),
    /// A value does not parse as its declared logical type (names the column and the value).
    #[error("{0}")]
    Value(String),
    /// A serialised tree or an argument is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The caller interrupted the run (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
    /// An Arrow error on local data: a cast, a take, a malformed array. Bad input, not a store.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A stream failed while it was being read: usually the store behind it went away mid-scan.
    #[error("arrow: {0}")]
    Stream(ArrowError),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// What an error means to the caller: which exception it becomes, and so which exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A column or type problem (bad input).
    Schema,
    /// A value that does not fit its type, or data Arrow cannot compute on (bad input).
    Value,
    /// A malformed argument or serialised input (bad input).
    Invalid,
    /// A stream failed while being read: the store behind it.
    StoreUnavailable,
    Cancelled,
}

impl CoreError {
    /// The cause, decided here once: only a failing stream is the store's fault. Every other
    /// Arrow error is about the data in hand (a cast, a malformed array), i.e. bad input.
    pub fn cause(&self) -> Cause {
        match self {
            CoreError::Schema(_) => Cause::Schema,
            CoreError::Value(_) => Cause::Value,
            CoreError::Invalid(_) => Cause::Invalid,
            CoreError::Cancelled => Cause::Cancelled,
            CoreError::Stream(_) => Cause::StoreUnavailable,
            CoreError::Arrow(e) => match e {
                ArrowError::SchemaError(_) | ArrowError::NotYetImplemented(_) => Cause::Schema,
                ArrowError::CastError(_)
                | ArrowError::ParseError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::DivideByZero
                | ArrowError::ComputeError(_)
                | ArrowError::DictionaryKeyOverflowError
                | ArrowError::RunEndIndexOverflowError => Cause::Value,
                _ => Cause::Invalid,
            },
        }
    }
}
