//! `kafka_fetch_stream`: the Rust Kafka reader (seamline-kafka) as an Arrow C stream of raw messages.
//!
//! Opening runs with the GIL released, like `pg_copy_stream`, and raises the adapter's exceptions
//! directly. Batches are polled a batch or two ahead on a thread of their own (`Prefetch`), so the
//! next one arrives while the caller decodes the last; a batch
//! (possibly empty) comes back at least every heartbeat, so Ctrl-C is answered between batches. An
//! error mid-stream crosses the Arrow C stream interface as text carrying the exception's qualified
//! name (`seamline.exceptions.StoreUnavailableError: kafka HOST:PORT: reason`).
//!
//! `kafka_fold`: the same read folded in Rust as the messages arrive (seamline_kafka::fold), run
//! detached from the GIL with Ctrl-C answered (`handles::detached`); the winners come back as one
//! Arrow batch of raw messages (delete markers included, for the caller's decoder to tell) with the
//! stream's health as a dict.

use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_arrow::PyRecordBatchReader;
use seamline_kafka::fold::{fold_topic, FoldHealth, FoldSpec, SampleKey, ValueMode, VersionSource};
use seamline_kafka::{FetchRequest, FetchStream, KafkaError, PartitionRange, Prefetch};

/// Batches polled ahead of the caller (each up to `batch_rows` messages).
const PREFETCH_BATCHES: usize = 2;

use crate::errors::{BoundaryError, InvalidInputError, SchemaError, StoreUnavailableError};
use crate::handles::detached;

fn classify(e: &KafkaError, what: &str) -> (&'static str, String) {
    match e {
        KafkaError::Unavailable(m) => ("StoreUnavailableError", format!("{what}: {m}")),
        KafkaError::Config(m) => ("InvalidInputError", format!("{what}: config: {m}")),
        KafkaError::Schema(m) => ("SchemaError", m.clone()),
        KafkaError::Cancelled => ("KeyboardInterrupt", "interrupted".into()),
    }
}

fn to_pyerr(e: &KafkaError, what: &str) -> PyErr {
    let (class, message) = classify(e, what);
    match class {
        "StoreUnavailableError" => StoreUnavailableError::new_err(message),
        "SchemaError" => SchemaError::new_err(message),
        "KeyboardInterrupt" => PyKeyboardInterrupt::new_err(message),
        _ => InvalidInputError::new_err(message),
    }
}

struct Batches {
    stream: Prefetch,
    what: String,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.stream.next()? {
            Ok(batch) => Some(Ok(batch)),
            Err(e) => {
                let (class, message) = classify(&e, &self.what);
                let text = format!("seamline.exceptions.{class}: {message}");
                Some(Err(ArrowError::ExternalError(Box::new(std::io::Error::other(text)))))
            }
        }
    }
}

impl RecordBatchReader for Batches {
    fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

/// The request both entry points share: every partition `(partition, start, end)`, end exclusive;
/// batches of one message and a heartbeat of an hour unless the caller says otherwise.
fn fetch_request(
    bootstrap: String,
    topic: String,
    config: Vec<(String, String)>,
    partitions: Vec<(i32, i64, i64)>,
    idle_timeout: f64,
) -> FetchRequest {
    FetchRequest {
        bootstrap,
        topic,
        config,
        partitions: partitions
            .into_iter()
            .map(|(partition, start, end)| PartitionRange { partition, start, end })
            .collect(),
        batch_rows: 1,
        batch_bytes: 1,
        idle_timeout: Duration::from_secs_f64(idle_timeout.max(0.0)),
        heartbeat: Duration::from_secs(3600),
    }
}

/// Stream every message of `topic` in `partitions` (`(partition, start, end)`, end exclusive) with
/// librdkafka `config` settings; `what` (e.g. `kafka HOST:PORT`) names the store in errors.
#[pyfunction]
#[pyo3(signature = (bootstrap, topic, partitions, *, config, what, idle_timeout = 10.0,
                    batch_rows = 65536, batch_bytes = 64 << 20, heartbeat = 0.2))]
#[allow(clippy::too_many_arguments)]
pub fn kafka_fetch_stream(
    py: Python<'_>,
    bootstrap: String,
    topic: String,
    partitions: Vec<(i32, i64, i64)>,
    config: Vec<(String, String)>,
    what: String,
    idle_timeout: f64,
    batch_rows: usize,
    batch_bytes: usize,
    heartbeat: f64,
) -> PyResult<PyRecordBatchReader> {
    let request = FetchRequest {
        batch_rows: batch_rows.max(1),
        batch_bytes: batch_bytes.max(1),
        heartbeat: Duration::from_secs_f64(heartbeat.max(0.0)),
        ..fetch_request(bootstrap, topic, config, partitions, idle_timeout)
    };
    let stream = py.detach(|| FetchStream::open(request)).map_err(|e| to_pyerr(&e, &what))?;
    // polled a batch ahead on a thread of its own: the next batch arrives while pyarrow decodes
    let stream = stream.prefetch(PREFETCH_BATCHES);
    Ok(PyRecordBatchReader::new(Box::new(Batches { stream, what })))
}

/// Fold every message of `topic` in `partitions` to the latest per key: `value` is "json" or
/// "debezium"; `key_field` a value field (None: the message key); `version` a value field,
/// "_lsn" or "_ts_ms" (Debezium), or None. Returns (an Arrow stream of the winning messages, the
/// health as a dict).
#[pyfunction]
#[pyo3(signature = (bootstrap, topic, partitions, *, config, what, value, key_field, version,
                    idle_timeout = 10.0))]
#[allow(clippy::too_many_arguments)]
pub fn kafka_fold<'py>(
    py: Python<'py>,
    bootstrap: String,
    topic: String,
    partitions: Vec<(i32, i64, i64)>,
    config: Vec<(String, String)>,
    what: String,
    value: String,
    key_field: Option<String>,
    version: Option<String>,
    idle_timeout: f64,
) -> PyResult<(PyRecordBatchReader, Bound<'py, PyDict>)> {
    let value = match value.as_str() {
        "json" => ValueMode::Json,
        "debezium" => ValueMode::Debezium,
        other => {
            return Err(InvalidInputError::new_err(format!(
                "kafka fold: value={other:?} is not json or debezium"
            )))
        }
    };
    let version = match (value, version) {
        (_, None) => VersionSource::None,
        (ValueMode::Debezium, Some(v)) if v == "_lsn" => VersionSource::Lsn,
        (ValueMode::Debezium, Some(v)) if v == "_ts_ms" => VersionSource::TsMs,
        (_, Some(v)) => VersionSource::Field(v),
    };
    let spec = FoldSpec { value, key_field, version };
    let label = format!("{what} topic {topic}");
    // fold_topic sizes its own batches; Ctrl-C is answered through `detached`
    let request = fetch_request(bootstrap, topic, config, partitions, idle_timeout);
    let (batch, health) = detached(py, None, |cancel| {
        fold_topic(request, spec, label, cancel).map_err(|e| BoundaryError::Py(to_pyerr(&e, &what)))
    })?;
    let schema = batch.schema();
    let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
    Ok((PyRecordBatchReader::new(Box::new(reader)), health_dict(py, &health)?))
}

fn sample_list<'py>(py: Python<'py>, sample: &[SampleKey]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    sample
        .iter()
        .map(|k| {
            Ok(match k {
                SampleKey::Null => py.None().into_bound(py),
                SampleKey::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
                SampleKey::Int(i) => i.into_pyobject(py)?.into_any(),
                SampleKey::Float(f) => f.into_pyobject(py)?.into_any(),
                SampleKey::Str(s) | SampleKey::Json(s) => s.into_pyobject(py)?.into_any(),
                SampleKey::Bytes(b) => PyBytes::new(py, b).into_any(),
            })
        })
        .collect()
}

fn health_dict<'py>(py: Python<'py>, h: &FoldHealth) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("events", h.events)?;
    d.set_item("tombstones", h.tombstones)?;
    d.set_item("undecodable", h.undecodable)?;
    d.set_item("undecodable_sample", h.undecodable_sample.clone())?;
    d.set_item("replayed", h.replayed)?;
    d.set_item("replayed_sample", sample_list(py, &h.replayed_sample)?)?;
    d.set_item("out_of_order", h.out_of_order)?;
    d.set_item("out_of_order_sample", sample_list(py, &h.out_of_order_sample)?)?;
    d.set_item("gaps", h.gaps)?;
    d.set_item("gaps_sample", sample_list(py, &h.gaps_sample)?)?;
    d.set_item("newest_ms", h.newest_ms)?;
    d.set_item("key_seen", h.key_seen)?;
    d.set_item("version_seen", h.version_seen)?;
    Ok(d)
}
