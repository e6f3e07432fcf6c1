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
