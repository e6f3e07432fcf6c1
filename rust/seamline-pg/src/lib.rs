//! seamline-pg: reads a Postgres query as Arrow record batches with
//! `COPY (<query>) TO STDOUT (FORMAT binary)`, decoded here (no driver-side conversion, no text
//! round trip for numeric).
//!
//! Each `CopyStream` owns one connection on its own thread: it begins a REPEATABLE READ, READ ONLY
//! transaction, imports the snapshot the caller exported (so every stream of one reconcile reads the
//! same data), stores the range bounds as transaction-local settings (the query reads them back with
//! `current_setting`), then streams the COPY, decoding rows into batches that a bounded channel
//! hands to the consumer. The SQL itself is built by the Python adapter; this crate only runs it.
//! Dropping the stream closes the connection (the server ends the COPY).

mod decode;

use std::io::{self, BufRead};
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use crossbeam_channel::{bounded, Receiver};
use postgres::{Client, Config, NoTls};

pub use decode::{numeric_text, Decoder};

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

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::from_ref(&e)
    }
}

impl From<io::Error> for PgError {
    fn from(e: io::Error) -> Self {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<postgres::Error>()) {
            Some(pg) => PgError::from_ref(pg),
            None if e.kind() == io::ErrorKind::UnexpectedEof => {
                PgError::Unavailable("the COPY stream ended before its trailer".into())
            }
            None => PgError::Unavailable(e.to_string()),
        }
    }
}

impl PgError {
    fn from_ref(e: &postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let sqlstate = db.code().code().to_string();
            let message = db.message().to_string();
            if ["08", "57", "53"].iter().any(|class| sqlstate.starts_with(class)) {
                return PgError::Unavailable(message);
            }
            return PgError::Server { sqlstate, message };
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

/// Whether an I/O error under `e` says the connection was reset or closed under us.
fn lost_connection(e: &postgres::Error) -> bool {
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
fn one_line(e: &dyn std::error::Error) -> String {
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
    /// A libpq connection string: URI or key=value.
    pub dsn: String,
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
        let config = Config::from_str(&request.dsn)
            .map_err(|e| PgError::Unavailable(format!("invalid connection string: {}", one_line(&e))))?;
        let (ready_tx, ready_rx) = bounded::<Result<SchemaRef, PgError>>(1);
        let (tx, rx) = bounded::<Result<RecordBatch, PgError>>(2);
        std::thread::Builder::new()
            .name("seamline-pg-copy".into())
            .spawn(move || {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(PgError::Unavailable(one_line(&e))));
                        return;
                    }
                };
                let started = start(&mut client, &request);
                let (schema, decoders) = match started {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", request.query);
                let reader = match client.copy_out(copy.as_str()) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                if ready_tx.send(Ok(schema.clone())).is_err() {
                    return;
                }
                let mut rows = RowReader {
                    input: Input::new(reader),
                    decoders,
                    schema,
                    batch_rows: request.batch_rows.max(1),
                };
                if let Err(e) = rows.run(&tx) {
                    let _ = tx.send(Err(e));
                }
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
fn start(client: &mut Client, request: &CopyRequest) -> Result<(SchemaRef, Vec<Decoder>), PgError> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    if let Some(snapshot) = &request.snapshot {
        if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(PgError::Decode(format!("invalid snapshot id {snapshot:?}")));
        }
        client.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))?;
    }
    if !request.settings.is_empty() {
        let setters: Vec<String> = (1..=request.settings.len())
            .map(|i| format!("set_config('seamline.p{i}', ${i}, true)"))
            .collect();
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            request.settings.iter().map(|s| s as &(dyn postgres::types::ToSql + Sync)).collect();
        client.query(format!("SELECT {}", setters.join(", ")).as_str(), &params)?;
    }
    let statement = client.prepare(&request.query)?;
    let mut fields = Vec::new();
    let mut decoders = Vec::new();
    for column in statement.columns() {
        let decoder = Decoder::for_type(column.type_()).ok_or_else(|| {
            PgError::Unsupported(format!(
                "column {:?} has type {} that the rust reader does not read (use reader=\"adbc\")",
                column.name(),
                column.type_().name()
            ))
        })?;
        fields.push(Field::new(column.name(), decoder.data_type(), true));
        decoders.push(decoder);
    }
    Ok((Arc::new(Schema::new(fields)), decoders))
}

/// Buffered access to the COPY data: the server sends one message per row, we read across them.
struct Input<R: BufRead> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> Input<R> {
    fn new(src: R) -> Self {
        Input { src, buf: Vec::with_capacity(1 << 20), pos: 0 }
    }

    /// Make at least `n` unread bytes available (false: the stream ended first).
    #[inline]
    fn want(&mut self, n: usize) -> io::Result<bool> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        while self.buf.len() < n {
            let chunk = self.src.fill_buf()?;
            if chunk.is_empty() {
                return Ok(false);
            }
            let len = chunk.len();
            self.buf.extend_from_slice(chunk);
            self.src.consume(len);
        }
        Ok(true)
    }

    #[inline]
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if !self.want(n)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
}

struct RowReader<R: BufRead> {
    input: Input<R>,
    decoders: Vec<Decoder>,
    schema: SchemaRef,
    batch_rows: usize,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl<R: BufRead> RowReader<R> {
    fn run(&mut self, tx: &crossbeam_channel::Sender<Result<RecordBatch, PgError>>) -> Result<(), PgError> {
        if self.input.take(SIGNATURE.len())? != SIGNATURE {
            return Err(PgError::Decode("not a binary COPY stream".into()));
        }
        let header = self.input.take(8)?;
        let extension = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        self.input.take(extension)?;
        let mut rows = 0;
        loop {
            let count = i16::from_be_bytes(self.input.take(2)?.try_into().unwrap());
            if count == -1 {
                break;
            }
            if count as usize != self.decoders.len() {
                return Err(PgError::Decode(format!(
                    "row of {count} fields, expected {}",
                    self.decoders.len()
                )));
            }
            for decoder in self.decoders.iter_mut() {
                let len = i32::from_be_bytes(self.input.take(4)?.try_into().unwrap());
                let value = if len < 0 { None } else { Some(self.input.take(len as usize)?) };
                decoder.append(value).map_err(PgError::Decode)?;
            }
            rows += 1;
            if rows == self.batch_rows {
                if tx.send(Ok(self.batch(rows)?)).is_err() {
                    return Ok(()); // the consumer is gone
                }
                rows = 0;
            }
        }
        // Read to the end so the server's CommandComplete (or its error) is seen.
        while self.input.want(1)? {
            self.input.pos = self.input.buf.len();
        }
        if rows > 0 {
            let _ = tx.send(Ok(self.batch(rows)?));
        }
        Ok(())
    }

    fn batch(&mut self, rows: usize) -> Result<RecordBatch, PgError> {
        let columns = self.decoders.iter_mut().map(|d| d.finish()).collect();
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| PgError::Decode(e.to_string()))
    }
}
