//! seamline-pg: reads a Postgres query as Arrow record batches with
//! `COPY (<query>) TO STDOUT (FORMAT binary)`, decoded here (no driver-side conversion, no text
//! round trip for numeric).
//!
//! Each `CopyStream` owns one connection on its own thread (a single-threaded tokio runtime that
//! polls the connection and the COPY together): it begins a REPEATABLE READ, READ ONLY
//! transaction, imports the snapshot the caller exported (so every stream of one reconcile reads the
//! same data), stores the range bounds as transaction-local settings (the query reads them back with
//! `current_setting`), then streams the COPY, decoding each row in place in its CopyData message
//! into batches that a
//! bounded channel hands to the consumer. The SQL itself is built by the Python adapter; this crate only runs it.
//! Dropping the stream closes the connection (the server ends the COPY).

mod connect;
mod decode;
mod raw;
mod session;

use std::io;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use crossbeam_channel::{bounded, Receiver};
use futures_util::StreamExt;
use tokio_postgres::Client;

pub use connect::{connect, Connected};
pub use decode::{numeric_text, Decoder};
pub use session::Session;

/// What went wrong, classified the way the adapter maps errors to its exceptions.
#[derive(Debug, Clone)]
pub enum PgError {
    /// The server is down, refused us, or the session ended (lost connection, terminated backend).
    Unavailable(String),
    /// The server answered with an error: its SQLSTATE and its message.
    Server { sqlstate: String, message: String },
    /// A column of a type this reader does not decode.
    Unsupported(String),
    /// A value the decoder could not read (a malformed stream).
    Decode(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Unavailable(m) | PgError::Unsupported(m) | PgError::Decode(m) => f.write_str(m),
            PgError::Server { message, .. } => f.write_str(message),
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::from_ref(&e)
    }
}

impl From<io::Error> for PgError {
    fn from(e: io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<tokio_postgres::Error>()) {
            Some(pg) => PgError::from_ref(pg),
            None if e.kind() == io::ErrorKind::UnexpectedEof => {
                PgError::Unavailable("the COPY stream ended before its trailer".into())
            }
            None => PgError::Unavailable(e.to_string()),
        }
    }
}

impl PgError {
    fn from_ref(e: &tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            return PgError::from_server(db.code().code().to_string(), db.message().to_string());
        }
        if e.is_closed() || lost_connection(e) {
            // The server's FATAL (e.g. a terminated backend) may be lost with the reset; say what
            // libpq says, then what the socket said.
            return PgError::Unavailable(format!(
                "server closed the connection unexpectedly ({})",
                one_line(e)
            ));
        }
        PgError::Unavailable(one_line(e))
    }
}

impl PgError {
    /// The server's error: connection exceptions, operator intervention (a terminated backend),
    /// insufficient resources and a rolled-back transaction (a serialization failure, a deadlock, a
    /// hot standby's recovery conflict: the read may succeed when run again) say the server is
    /// unavailable; the rest are the query's own errors.
    pub(crate) fn from_server(sqlstate: String, message: String) -> Self {
        if message.contains("conflict with recovery") {
            return PgError::Unavailable(format!(
                "{message} (a long read on a hot standby needs hot_standby_feedback=on there, or a \
                 max_standby_streaming_delay longer than the read)"
            ));
        }
        if ["08", "57", "53", "40"].iter().any(|class| sqlstate.starts_with(class)) {
            return PgError::Unavailable(message);
        }
        PgError::Server { sqlstate, message }
    }
}

/// Whether an I/O error under `e` says the connection was reset or closed under us.
fn lost_connection(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof);
        }
        source = s.source();
    }
    false
}

/// A driver error and its causes on one line ("error connecting to server: Connection refused").
pub(crate) fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What one stream reads.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// libpq connection keywords, resolved by the adapter (see `connect`).
    pub params: Vec<(String, String)>,
    /// The exported snapshot every stream imports (None: the transaction's own).
    pub snapshot: Option<String>,
    /// Values of the transaction-local settings `seamline.p1`, `seamline.p2`, ... the query reads.
    pub settings: Vec<String>,
    /// The SELECT to stream.
    pub query: String,
    /// Rows per record batch.
    pub batch_rows: usize,
}

/// A running COPY: its schema (known before the first row) and its batches.
pub struct CopyStream {
    schema: SchemaRef,
    batches: Receiver<Result<RecordBatch, PgError>>,
}

impl CopyStream {
    /// Connect, import the snapshot, start the COPY; errors before the first row are returned here.
    pub fn open(request: CopyRequest) -> Result<CopyStream, PgError> {
        let (ready_tx, ready_rx) = bounded::<Result<SchemaRef, PgError>>(1);
        let (tx, rx) = bounded::<Result<RecordBatch, PgError>>(2);
        std::thread::Builder::new()
            .name("seamline-pg-copy".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(PgError::Unavailable(format!("cannot start a runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(read(request, ready_tx, tx));
            })
            .map_err(|e| PgError::Unavailable(format!("cannot start a reader thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(schema)) => Ok(CopyStream { schema, batches: rx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PgError::Unavailable("the reader thread ended before the COPY started".into())),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for CopyStream {
    type Item = Result<RecordBatch, PgError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.recv().ok()
    }
}

/// Begin, import the snapshot, set the bound settings and describe the query's columns.
async fn start(client: &Client, request: &CopyRequest) -> Result<(SchemaRef, Vec<Decoder>), PgError> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    if let Some(snapshot) = &request.snapshot {
        if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(PgError::Decode(format!("invalid snapshot id {snapshot:?}")));
        }
        client.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'")).await?;
    }
    if !request.settings.is_empty() {
        // Settings carry range bounds: the read is index lookups, which the planner prices as a scan
        // of millions of rows (its estimate for a join with arrays of bounds), so it JIT-compiles
        // the query: 1.2 s of compiling for a 0.1 s read of 5000 ranges (EXPLAIN ANALYZE, 5M rows).
        let setters: Vec<String> = std::iter::once("set_config('jit', 'off', true)".to_string())
            .chain((1..=request.settings.len()).map(|i| format!("set_config('seamline.p{i}', ${i}, true)")))
            .collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            request.settings.iter().map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        client.query(format!("SELECT {}", setters.join(", ")).as_str(), &params).await?;
    }
    let statement = client.prepare(&request.query).await?;
    let (schema, decoders) = decoders_for(&statement)?;
    Ok((Arc::new(schema), decoders))
}

/// The Arrow schema of a prepared statement's rows and a decoder per column; a column type the
/// reader cannot decode is an error naming it.
pub(crate) fn decoders_for(statement: &tokio_postgres::Statement) -> Result<(Schema, Vec<Decoder>), PgError> {
    let mut fields = Vec::new();
    let mut decoders = Vec::new();
    for column in statement.columns() {
        let decoder = Decoder::for_type(column.type_(), column.type_modifier()).ok_or_else(|| {
            PgError::Unsupported(format!(
                "column {:?} has type {} that the rust reader does not read (use reader=\"adbc\")",
                column.name(),
                column.type_().name()
            ))
        })?;
        fields.push(Field::new(column.name(), decoder.data_type(), true));
        decoders.push(decoder);
    }
    Ok((Schema::new(fields), decoders))
}

/// Connect, start the COPY, then decode its chunks into batches until the end (or the consumer
/// is gone); the first error before the COPY starts goes to `ready`, later ones to `batches`.
async fn read(
    request: CopyRequest,
    ready: crossbeam_channel::Sender<Result<SchemaRef, PgError>>,
    batches: crossbeam_channel::Sender<Result<RecordBatch, PgError>>,
) {
    let Connected { client, raw } = match connect(&request.params).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", request.query);
    let started = async {
        let (schema, decoders) = start(&client, &request).await?;
        // Without TLS the COPY loop reads the socket itself (see `raw`), once the schema is sent.
        let stream = match raw {
            Some(_) => None,
            None => Some(client.copy_out(copy.as_str()).await?),
        };
        Ok::<_, PgError>((schema, decoders, stream))
    };
    let (schema, mut decoders, stream) = match started.await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(schema.clone())).is_err() {
        return;
    }
    for decoder in decoders.iter_mut() {
        decoder.reserve(request.batch_rows.max(1));
    }
    let mut rows = RowReader {
        decoders,
        schema,
        batch_rows: request.batch_rows.max(1),
        rows: 0,
        header_done: false,
        finished: false,
    };
    let result = async {
        match (&raw, stream) {
            (Some(socket), _) => socket.copy(&copy, |chunk| rows.feed(chunk, &batches)).await?,
            (None, Some(stream)) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(chunk) = stream.next().await {
                    rows.feed(&chunk?, &batches)?;
                }
            }
            (None, None) => unreachable!("a COPY stream is opened when the socket is not read raw"),
        }
        if !rows.finished {
            return Err(PgError::Unavailable("the COPY stream ended before its trailer".into()));
        }
        if rows.rows > 0 {
            let batch = rows.batch()?;
            let _ = batches.send(Ok(batch));
        }
        Ok(())
    };
    if let Err(e) = result.await {
        if !matches!(e, PgError::Decode(ref m) if m == CONSUMER_GONE) {
            let _ = batches.send(Err(e));
        }
    }
}

const CONSUMER_GONE: &str = "the consumer is gone";

struct RowReader {
    decoders: Vec<Decoder>,
    schema: SchemaRef,
    batch_rows: usize,
    /// rows in the batch being built
    rows: usize,
    header_done: bool,
    /// the trailer (-1) was read
    finished: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[inline]
fn be_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().unwrap())
}

impl RowReader {
    /// Decode the rows of one CopyData message. The server sends each row in a message of its own
    /// (the protocol's CopyData: "messages sent from the backend will always correspond to single
    /// data rows"; the first also carries the header), so every field is read in one pass, checked
    /// against the message's end, and a row that runs past it is a malformed stream.
    fn feed(
        &mut self,
        data: &[u8],
        batches: &crossbeam_channel::Sender<Result<RecordBatch, PgError>>,
    ) -> Result<(), PgError> {
        let mut at = 0;
        if !self.header_done {
            let fixed = SIGNATURE.len() + 8;
            if data.len() < fixed || &data[..SIGNATURE.len()] != SIGNATURE {
                return Err(PgError::Decode("not a binary COPY stream".into()));
            }
            at = fixed + be_u32(data, SIGNATURE.len() + 4) as usize;
            if data.len() < at {
                return Err(PgError::Decode("the binary COPY header is cut short".into()));
            }
            self.header_done = true;
        }
        let split = || PgError::Decode("a COPY row runs past its CopyData message".into());
        let width = self.decoders.len();
        while at < data.len() {
            if self.finished {
                return Err(PgError::Decode("data after the binary COPY trailer".into()));
            }
            let count = i16::from_be_bytes(data.get(at..at + 2).ok_or_else(split)?.try_into().unwrap());
            at += 2;
            if count == -1 {
                self.finished = true;
                continue;
            }
            if count as usize != width {
                return Err(PgError::Decode(format!("row of {count} fields, expected {width}")));
            }
            for decoder in self.decoders.iter_mut() {
                let len = i32::from_be_bytes(data.get(at..at + 4).ok_or_else(split)?.try_into().unwrap());
                at += 4;
                if len < 0 {
                    decoder.append(None)
                } else {
                    let end = at + len as usize;
                    let value = data.get(at..end).ok_or_else(split)?;
                    at = end;
                    decoder.append(Some(value))
                }
                .map_err(PgError::Decode)?;
            }
            self.rows += 1;
            if self.rows == self.batch_rows {
                let batch = self.batch()?;
                if batches.send(Ok(batch)).is_err() {
                    return Err(PgError::Decode(CONSUMER_GONE.into()));
                }
            }
        }
        Ok(())
    }

    fn batch(&mut self) -> Result<RecordBatch, PgError> {
        let rows = std::mem::take(&mut self.rows);
        let next_rows = self.batch_rows;
        let columns = self
            .decoders
            .iter_mut()
            .map(|d| d.finish(next_rows))
            .collect::<Result<_, _>>()
            .map_err(PgError::Decode)?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| PgError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use tokio_postgres::types::Type;

    fn reader(batch_rows: usize) -> RowReader {
        let decoders: Vec<Decoder> =
            [Type::INT8, Type::TEXT].iter().map(|t| Decoder::for_type(t, -1).unwrap()).collect();
        let fields: Vec<Field> =
            ["id", "name"].iter().zip(&decoders).map(|(n, d)| Field::new(*n, d.data_type(), true)).collect();
        RowReader {
            decoders,
            schema: Arc::new(Schema::new(fields)),
            batch_rows,
            rows: 0,
            header_done: false,
            finished: false,
        }
    }

    #[test]
    fn rolled_back_transactions_and_recovery_conflicts_are_the_server_unavailable() {
        let unavailable = |code: &str, message: &str| match PgError::from_server(code.into(), message.into())
        {
            PgError::Unavailable(text) => Some(text),
            _ => None,
        };
        let text = unavailable("40001", "canceling statement due to conflict with recovery").unwrap();
        assert!(text.contains("hot_standby_feedback=on") && text.starts_with("canceling statement"));
        let text = unavailable("57P04", "terminating connection due to conflict with recovery").unwrap();
        assert!(text.contains("max_standby_streaming_delay"));
        assert!(unavailable("40P01", "deadlock detected").is_some());
        assert!(unavailable("57P01", "terminating connection due to administrator command").is_some());
        // the query's own errors stay the server's, with their SQLSTATE
        assert!(unavailable("42P01", "relation \"x\" does not exist").is_none());
        assert!(unavailable("22P02", "invalid input syntax for type integer").is_none());
    }

    fn header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend(0u32.to_be_bytes()); // flags
        h.extend(0u32.to_be_bytes()); // header extension length
        h
    }

    fn row(id: i64, name: Option<&str>) -> Vec<u8> {
        let mut r = 2i16.to_be_bytes().to_vec();
        r.extend(8i32.to_be_bytes());
        r.extend(id.to_be_bytes());
        match name {
            Some(n) => {
                r.extend((n.len() as i32).to_be_bytes());
                r.extend(n.as_bytes());
            }
            None => r.extend((-1i32).to_be_bytes()),
        }
        r
    }

    const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

    #[test]
    fn rows_are_read_one_message_at_a_time() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let mut rows = reader(2);
        let first = [header(), row(1, Some("a"))].concat();
        rows.feed(&first, &tx).unwrap();
        rows.feed(&row(2, None), &tx).unwrap();
        // several rows in one message are read too (the server sends one each; others may not)
        rows.feed(&[row(3, Some("𝄞")), TRAILER.to_vec()].concat(), &tx).unwrap();
        assert!(rows.finished);
        assert_eq!(rows.rows, 1);
        let batch = rx.try_recv().unwrap().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 2]);
        assert!(batch.column(1).is_null(1));
        let last = rows.batch().unwrap();
        assert_eq!(last.column(1).as_string::<i32>().value(0), "𝄞");
    }

    #[test]
    fn a_malformed_stream_is_an_error() {
        let (tx, _rx) = crossbeam_channel::bounded(8);
        let message = |r: Result<(), PgError>| match r {
            Err(PgError::Decode(m)) => m,
            other => panic!("expected a decode error, got {other:?}"),
        };
        let full = [header(), row(1, Some("abc"))].concat();
        for cut in [full.len() - 1, header().len() + 5, header().len() + 1] {
            let e = message(reader(8).feed(&full[..cut], &tx));
            assert!(e.contains("runs past its CopyData message"), "{e}");
        }
        assert!(message(reader(8).feed(b"1\t2\n", &tx)).contains("not a binary COPY stream"));
        assert!(message(reader(8).feed(&header()[..12], &tx)).contains("not a binary COPY stream"));
        let mut rows = reader(8);
        rows.feed(&[header(), TRAILER.to_vec()].concat(), &tx).unwrap();
        assert!(message(rows.feed(&row(1, None), &tx)).contains("after the binary COPY trailer"));
        let mut three = row(1, None);
        three[1] = 3;
        assert!(message(reader(8).feed(&[header(), three].concat(), &tx)).contains("row of 3 fields"));
    }
}
