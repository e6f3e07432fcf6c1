//! `pg_copy_stream`: the Rust Postgres reader (seamline-pg) as an Arrow C stream for the core.
//!
//! Opening (connect, snapshot import, COPY start) runs with the GIL released and raises the
//! adapter's exceptions directly. An error mid-stream crosses the Arrow C stream interface as text;
//! it carries the exception's qualified name (`seamline.exceptions.StoreUnavailableError: postgres
//! at HOST:PORT: reason`) so that the engine raises that one line again.

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use pyo3::prelude::*;
use pyo3_arrow::PyRecordBatchReader;
use seamline_pg::{CopyRequest, CopyStream, PgError, Session};

use crate::errors::{InvalidInputError, NotFoundError, SchemaError, StoreUnavailableError, ValueParseError};

/// The exception class name and its one-line message for `e`.
fn classify(e: &PgError, address: &str, what: &str) -> (&'static str, String) {
    match e {
        PgError::Unavailable(m) => ("StoreUnavailableError", format!("postgres at {address}: {m}")),
        PgError::Server { sqlstate, message } => match sqlstate.as_str() {
            "42P01" => ("NotFoundError", format!("{what}: {message}")),
            "42703" => ("SchemaError", format!("{what}: {message}")),
            _ => ("InvalidInputError", format!("{what}: {message}")),
        },
        PgError::Unsupported(m) => ("SchemaError", format!("{what}: {m}")),
        PgError::Decode(m) => ("InvalidInputError", format!("{what}: {m}")),
    }
}

fn to_pyerr(e: &PgError, address: &str, what: &str) -> PyErr {
    let (class, message) = classify(e, address, what);
    exception(class, message)
}

/// The exception named by a native reader's `classify`.
pub(crate) fn exception(class: &str, message: String) -> PyErr {
    match class {
        "StoreUnavailableError" => StoreUnavailableError::new_err(message),
        "NotFoundError" => NotFoundError::new_err(message),
        "SchemaError" => SchemaError::new_err(message),
        "ValueParseError" => ValueParseError::new_err(message),
        _ => InvalidInputError::new_err(message),
    }
}

/// A native reader's record batches and how its errors become exceptions: shared by every Rust
/// reader (`pg_copy_stream`, `os_search_stream`) through `Batches`.
pub(crate) trait NativeStream: Iterator<Item = Result<RecordBatch, Self::Error>> + Send {
    type Error;
    fn stream_schema(&self) -> SchemaRef;
    /// The exception class name and its one-line message for `e`.
    fn classify(e: &Self::Error, address: &str, what: &str) -> (&'static str, String);
}

impl NativeStream for CopyStream {
    type Error = PgError;
    fn stream_schema(&self) -> SchemaRef {
        self.schema()
    }
    fn classify(e: &PgError, address: &str, what: &str) -> (&'static str, String) {
        classify(e, address, what)
    }
}

/// A native stream as an Arrow C stream: an error ends it and crosses the interface as
/// `seamline.exceptions.<Class>: <message>`, which the engine raises again as that one line.
pub(crate) struct Batches<S> {
    pub(crate) stream: S,
    pub(crate) address: String,
    pub(crate) what: String,
    pub(crate) done: bool,
}

impl<S: NativeStream> Iterator for Batches<S> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.stream.next() {
            Some(Ok(batch)) => Some(Ok(batch)),
            Some(Err(e)) => {
                self.done = true;
                let (class, message) = S::classify(&e, &self.address, &self.what);
                let text = format!("seamline.exceptions.{class}: {message}");
                Some(Err(ArrowError::ExternalError(Box::new(std::io::Error::other(text)))))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl<S: NativeStream> RecordBatchReader for Batches<S> {
    fn schema(&self) -> SchemaRef {
        self.stream.stream_schema()
    }
}

/// Stream `query` with binary COPY on a new connection (`params`: libpq keywords, resolved by
/// `seamline.stores.postgres.dsn`) in the exported `snapshot`, after setting
/// `seamline.p1..n` to `settings`. `address` (HOST:PORT) and `what` name the store in errors.
#[pyfunction]
#[pyo3(signature = (params, query, *, snapshot, settings, address, what, batch_rows = 65536))]
#[allow(clippy::too_many_arguments)]
pub fn pg_copy_stream(
    py: Python<'_>,
    params: Vec<(String, String)>,
    query: String,
    snapshot: Option<String>,
    settings: Vec<String>,
    address: String,
    what: String,
    batch_rows: usize,
) -> PyResult<PyRecordBatchReader> {
    let request = CopyRequest { params, snapshot, settings, query, batch_rows };
    let stream = py.detach(|| CopyStream::open(request)).map_err(|e| to_pyerr(&e, &address, &what))?;
    let batches = Batches { stream, address, what, done: false };
    Ok(PyRecordBatchReader::new(Box::new(batches)))
}

/// One Postgres connection for the adapter's catalog queries and its snapshot coordinator
/// (`seamline.stores.postgres`), so that the Rust reader's reconcile loads no other driver. Every
/// call runs with the GIL released; calls are serialised.
#[pyclass(name = "PgSession", module = "seamline._core")]
pub struct PyPgSession {
    session: std::sync::Mutex<Option<Session>>,
    address: String,
    what: String,
}

impl PyPgSession {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&Session) -> Result<T, PgError> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| {
            let guard = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match guard.as_ref() {
                Some(session) => call(session),
                None => Err(PgError::Unavailable("the connection is closed".into())),
            }
        });
        result.map_err(|e| to_pyerr(&e, &self.address, &self.what))
    }
}

#[pymethods]
impl PyPgSession {
    /// Connect with the libpq keywords `params` (`address` and `what` name the store in errors).
    #[new]
    #[pyo3(signature = (params, *, address, what))]
    fn new(py: Python<'_>, params: Vec<(String, String)>, address: String, what: String) -> PyResult<Self> {
        let session = py.detach(|| Session::connect(&params)).map_err(|e| to_pyerr(&e, &address, &what))?;
        Ok(PyPgSession { session: std::sync::Mutex::new(Some(session)), address, what })
    }

    /// Run statements that return no rows.
    fn execute(&self, py: Python<'_>, sql: String) -> PyResult<()> {
        self.with(py, |s| s.execute(&sql))
    }

    /// (name, type name, type modifier) of each column `sql` returns, without running it.
    fn columns(&self, py: Python<'_>, sql: String) -> PyResult<Vec<(String, String, i32)>> {
        self.with(py, |s| s.columns(&sql))
    }

    /// The rows of `sql`, `$1..n` bound to `params` as text, as an Arrow stream of one batch.
    #[pyo3(signature = (sql, params = Vec::new()))]
    fn query(
        &self,
        py: Python<'_>,
        sql: String,
        params: Vec<Option<String>>,
    ) -> PyResult<PyRecordBatchReader> {
        let batch = self.with(py, |s| s.query(&sql, &params))?;
        let schema = batch.schema();
        let reader = arrow_array::RecordBatchIterator::new(vec![Ok(batch)], schema);
        Ok(PyRecordBatchReader::new(Box::new(reader)))
    }

    /// Close the connection (idempotent; a transaction still open is rolled back by the server).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            drop(session);
        });
    }
}
