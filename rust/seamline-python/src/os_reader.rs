//! `os_search_stream`: the Rust OpenSearch reader (seamline-opensearch) as an Arrow C stream.
//!
//! The adapter plans the scan (PIT, request bodies with their queries, sort and slice, the column
//! paths and kinds); this runs its page loop on a worker thread, without the GIL. Errors cross the
//! stream as `seamline.exceptions.<Class>: <message>` through the shared `Batches` of `pg_reader`.

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3_arrow::{PyRecordBatchReader, PySchema};
use seamline_opensearch::{Client, ClientOptions, Column, Kind, OsError, ScanRequest, SearchStream};
use serde_json::{Map, Value};

use crate::pg_reader::{exception, Batches, NativeStream};

fn classify_os(e: &OsError, what: &str) -> (&'static str, String) {
    match e {
        OsError::Unavailable(m) => ("StoreUnavailableError", m.clone()),
        OsError::NotFound(m) => ("NotFoundError", m.clone()),
        OsError::Request(m) | OsError::Config(m) => ("InvalidInputError", format!("{what}: {m}")),
        OsError::Value(m) => ("ValueParseError", format!("{what}: {m}")),
    }
}

impl NativeStream for SearchStream {
    type Error = OsError;
    fn stream_schema(&self) -> SchemaRef {
        self.schema()
    }
    fn classify(e: &OsError, _address: &str, what: &str) -> (&'static str, String) {
        classify_os(e, what)
    }
}

/// Page `bodies` (JSON search requests without `pit`/`size`/`search_after`) one after another in
/// the point in time `pit_id`, each hit converted by `columns` ((`_source` path, kind)) into
/// `schema`, on a client with `http`'s connection (URL, auth, TLS, timeout) and the reader's own
/// `attempts` and `backoff`. `what` and `index` name the store in errors; up to `concurrency`
/// bodies are paged at once.
#[pyfunction]
#[pyo3(signature = (
    http, *, attempts, backoff, pit_id, keep_alive, page_size, bodies, schema, columns, filter_path,
    what, index, concurrency=1
))]
#[allow(clippy::too_many_arguments)]
pub fn os_search_stream(
    py: Python<'_>,
    http: &OsHttp,
    attempts: u32,
    backoff: f64,
    pit_id: String,
    keep_alive: String,
    page_size: usize,
    bodies: Vec<String>,
    schema: PySchema,
    columns: Vec<(String, String)>,
    filter_path: String,
    what: String,
    index: String,
    concurrency: usize,
) -> PyResult<PyRecordBatchReader> {
    let fail = |e: OsError| {
        let (class, message) = classify_os(&e, &what);
        exception(class, message)
    };
    let columns = columns
        .into_iter()
        .map(|(path, kind)| match Kind::parse(&kind) {
            Some(kind) => Ok(Column { path, kind }),
            None => Err(fail(OsError::Config(format!("unknown column kind {kind:?}")))),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let bodies = bodies
        .iter()
        .map(|text| serde_json::from_str::<Map<String, Value>>(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(OsError::Config(format!("a search body is not a JSON object ({e})"))))?;
    // the catalog client's connection; the scan names its index and PIT in errors, and retries
    // its pages as the reader says
    let options = ClientOptions {
        attempts: attempts.max(1),
        backoff: Duration::from_secs_f64(backoff.max(0.0)),
        index,
        keep_alive: keep_alive.clone(),
        ..http.client.options().clone()
    };
    let address = options.address.clone();
    let request = ScanRequest {
        pit_id,
        keep_alive,
        page_size,
        bodies,
        schema: schema.into_inner(),
        columns,
        filter_path,
        concurrency,
    };
    let client = py.detach(|| Client::new(options)).map_err(fail)?;
    let stream = SearchStream::open(Arc::new(client), request);
    let batches = Batches { stream, address, what, done: false };
    Ok(PyRecordBatchReader::new(Box::new(batches)))
}

/// The catalog requests of the OpenSearch adapter (count, PIT, mappings, settings, aggregations,
/// freshness) on the Rust reader's HTTP client, so that a read needs no Python HTTP stack: one
/// pooled client per store, the same TLS, auth and retries as the pages.
#[pyclass(frozen, module = "seamline._core")]
pub struct OsHttp {
    client: Client,
}

#[pymethods]
impl OsHttp {
    #[new]
    #[pyo3(signature = (
        url, *, username, password, verify_certs, ca_certs, timeout, attempts, backoff, address,
        client_cert=None, client_key=None, headers=Vec::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: String,
        username: Option<String>,
        password: Option<String>,
        verify_certs: bool,
        ca_certs: Option<String>,
        timeout: f64,
        attempts: u32,
        backoff: f64,
        address: String,
        client_cert: Option<String>,
        client_key: Option<String>,
        headers: Vec<(String, String)>,
    ) -> PyResult<OsHttp> {
        let options = ClientOptions {
            url,
            username,
            password,
            verify_certs,
            ca_certs,
            client_cert,
            client_key,
            headers,
            timeout: Duration::from_secs_f64(timeout.max(0.001)),
            attempts: attempts.max(1),
            backoff: Duration::from_secs_f64(backoff.max(0.0)),
            address: address.clone(),
            index: String::new(),
            keep_alive: String::new(),
        };
        let client = Client::new(options).map_err(|e| http_error(&e, &address))?;
        Ok(OsHttp { client })
    }

    /// `method` `path` (with its query string) with an optional JSON `body`: (status, body). Only a
    /// transport failure (or busy answers past the retries) raises: StoreUnavailableError.
    #[pyo3(signature = (method, path, body=None))]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> PyResult<(u16, Py<pyo3::types::PyBytes>)> {
        let answer = py.detach(|| self.client.request(method, path, body.as_deref()));
        let (status, bytes) = answer.map_err(|e| http_error(&e, "opensearch"))?;
        Ok((status, pyo3::types::PyBytes::new(py, &bytes).unbind()))
    }
}

fn http_error(e: &OsError, what: &str) -> PyErr {
    let (class, message) = classify_os(e, what);
    exception(class, message)
}
