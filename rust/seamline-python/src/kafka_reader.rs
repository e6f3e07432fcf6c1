//! `kafka_fetch_stream`: the Rust Kafka reader (seamline-kafka) as an Arrow C stream of raw messages.
//!
//! Opening runs with the GIL released, like `pg_copy_stream`, and raises the adapter's exceptions
//! directly. Batches are fetched while the consumer of the stream (pyarrow) holds no GIL; a batch
//! (possibly empty) comes back at least every heartbeat, so Ctrl-C is answered between batches. An
//! error mid-stream crosses the Arrow C stream interface as text carrying the exception's qualified
//! name (`seamline.exceptions.StoreUnavailableError: kafka HOST:PORT: reason`).

use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use pyo3::prelude::*;
use pyo3_arrow::PyRecordBatchReader;
use seamline_kafka::{FetchRequest, FetchStream, KafkaError, PartitionRange};

use crate::errors::{InvalidInputError, StoreUnavailableError};

fn classify(e: &KafkaError, what: &str) -> (&'static str, String) {
    match e {
        KafkaError::Unavailable(m) => ("StoreUnavailableError", format!("{what}: {m}")),
        KafkaError::Config(m) => ("InvalidInputError", format!("{what}: config: {m}")),
    }
}

struct Batches {
    stream: FetchStream,
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
        bootstrap,
        topic,
        config,
        partitions: partitions
            .into_iter()
            .map(|(partition, start, end)| PartitionRange { partition, start, end })
            .collect(),
        batch_rows: batch_rows.max(1),
        batch_bytes: batch_bytes.max(1),
        idle_timeout: Duration::from_secs_f64(idle_timeout.max(0.0)),
        heartbeat: Duration::from_secs_f64(heartbeat.max(0.0)),
    };
    let stream = py.detach(|| FetchStream::open(request)).map_err(|e| {
        let (class, message) = classify(&e, &what);
        match class {
            "StoreUnavailableError" => StoreUnavailableError::new_err(message),
            _ => InvalidInputError::new_err(message),
        }
    })?;
    Ok(PyRecordBatchReader::new(Box::new(Batches { stream, what })))
}
