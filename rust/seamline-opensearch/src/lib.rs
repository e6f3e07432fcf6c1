//! seamline-opensearch: reads an OpenSearch point in time (PIT) as Arrow record batches, paging with
//! `search_after` over one or more (query, slice) pairs, the hits' JSON decoded here into Arrow
//! builders typed by the index mapping.
//!
//! The Python adapter plans the scan (the PIT, the queries with their pushed-down key ranges, the
//! sort, the slices and which columns map to which `_source` paths with which type); this crate runs
//! the page loop. Each `SearchStream` owns one worker thread that fetches, parses and converts pages
//! and hands finished batches to the consumer through a bounded channel, so the next page is on the
//! wire while the core hashes the previous one. Dropping the stream stops the worker after its
//! current request.

mod convert;
mod http;
mod page;

use std::sync::Arc;
use std::thread;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::{bounded, Receiver};
use serde_json::{Map, Value};

pub use convert::{Column, Kind};
pub use http::{Client, ClientOptions};

/// What went wrong, classified the way the adapter maps errors to its exceptions.
#[derive(Debug, Clone, PartialEq)]
pub enum OsError {
    /// The cluster is down, unreachable, overloaded past the retries, or answered 5xx.
    Unavailable(String),
    /// The index does not exist or the point in time expired.
    NotFound(String),
    /// The cluster refused the request (4xx other than 404/429): its reason.
    Request(String),
    /// A value of a document does not convert to its column's mapped type.
    Value(String),
    /// A malformed option (certificate file, URL).
    Config(String),
}

impl std::fmt::Display for OsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OsError::Unavailable(m)
            | OsError::NotFound(m)
            | OsError::Request(m)
            | OsError::Value(m)
            | OsError::Config(m) => f.write_str(m),
        }
    }
}

/// What one stream reads: `bodies` are search requests (query, sort, size, `_source`, slice) run one
/// after another, each paged to its end in the PIT `pit_id`.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub pit_id: String,
    pub keep_alive: String,
    pub page_size: usize,
    pub bodies: Vec<Map<String, Value>>,
    pub schema: SchemaRef,
    pub columns: Vec<Column>,
    /// `filter_path` of every page request (empty: none, the whole response).
    pub filter_path: String,
    /// How many bodies are paged at once (each by its own worker, batches merged into the one
    /// stream): the node answers several searches at once while one consumer hashes.
    pub concurrency: usize,
}

/// Batches of one stream, produced by its worker thread.
pub struct SearchStream {
    schema: SchemaRef,
    receiver: Receiver<Result<RecordBatch, OsError>>,
}

impl SearchStream {
    /// Starts the workers (bodies dealt round-robin); the first requests are sent at once (errors
    /// arrive with the first batch).
    pub fn open(client: Arc<Client>, request: ScanRequest) -> SearchStream {
        let schema = request.schema.clone();
        let workers = request.concurrency.clamp(1, request.bodies.len().max(1));
        let (sender, receiver) = bounded(2 * workers);
        for worker in 0..workers {
            let part = ScanRequest {
                bodies: request.bodies.iter().skip(worker).step_by(workers).cloned().collect(),
                ..request.clone()
            };
            let (client, sender) = (client.clone(), sender.clone());
            thread::Builder::new()
                .name("seamline-os-scan".into())
                .spawn(move || {
                    let mut emit = |item: Result<RecordBatch, OsError>| sender.send(item).is_ok();
                    if let Err(e) = run(&client, &part, &mut emit) {
                        emit(Err(e));
                    }
                })
                .expect("spawn a reader thread");
        }
        SearchStream { schema, receiver }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for SearchStream {
    type Item = Result<RecordBatch, OsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

/// Raw pages a stream's fetcher may hold ahead of its parser. While the Postgres side is read too,
/// the parser falls behind and catches up later; with one page of slack the node then idled.
/// Postgres -> OpenSearch, 1M documents, 1 against 4, interleaved (9 pairs, the node on shared
/// cores and on a core of its own): 4 was faster in 8 of the 9 pairs, by 0.12 s on average, at
/// ~2.5 MB (a page of 10,000 hits) more a page held, only while the parser lags.
const PAGES_AHEAD: usize = 4;

/// The page loop of one stream. `emit` returns false once the consumer is gone.
///
/// Two threads: a fetcher that runs up to PAGES_AHEAD pages ahead (it cuts the last hit's sort
/// values out of the raw page, enough for the next `search_after`) and this one, which parses the
/// pages the fetcher handed over straight into the column builders. The node answers the next
/// pages while this thread converts the current one, instead of the two waiting on each other.
fn run(
    client: &Client,
    request: &ScanRequest,
    emit: &mut dyn FnMut(Result<RecordBatch, OsError>) -> bool,
) -> Result<(), OsError> {
    let plan = page::SourcePlan::new(&request.columns);
    let mut builders = convert::Builders::new(&request.schema, &request.columns, request.page_size)?;
    let mut parser = page::Parser::default();
    let (pages, fetched) = bounded::<Result<Fetched, OsError>>(PAGES_AHEAD);
    // spent page buffers go back to the fetcher: a page is ~1 MB, and a fresh one per page costs
    // page faults and copies as it grows
    let (spent, spare) = bounded::<Vec<u8>>(PAGES_AHEAD + 1);
    thread::scope(|scope| {
        scope.spawn(move || {
            if let Err(e) = fetch(client, request, &pages, &spare) {
                let _ = pages.send(Err(e));
            }
        });
        for item in fetched.iter() {
            let Fetched { bytes, after } = item?;
            let page = page::parse(&bytes, &mut parser, &plan, &mut builders).map_err(|e| match e {
                page::PageError::Value(why) => OsError::Value(why),
                page::PageError::Json(e) => {
                    OsError::Unavailable(format!("an unreadable search response ({e})"))
                }
            })?;
            let _ = spent.try_send(bytes);
            if page.rows == 0 {
                continue;
            }
            if after != page.last_sort {
                // the cut-out sort values were not the last hit's: a response laid out unexpectedly
                return Err(OsError::Unavailable(
                    "an unreadable search response (the last hit's sort values)".into(),
                ));
            }
            if !emit(Ok(builders.finish()?)) {
                break; // dropping `fetched` stops the fetcher after its current request
            }
        }
        Ok(())
    })
}

/// One raw page and the sort values of its last hit (None: no hits).
struct Fetched {
    bytes: Vec<u8>,
    after: Option<Vec<Value>>,
}

/// Requests every page of every body, in order, until the parser is gone.
fn fetch(
    client: &Client,
    request: &ScanRequest,
    pages: &crossbeam_channel::Sender<Result<Fetched, OsError>>,
    spare: &Receiver<Vec<u8>>,
) -> Result<(), OsError> {
    for template in &request.bodies {
        let mut body = template.clone();
        body.insert("size".into(), Value::from(request.page_size));
        let mut pit = Map::new();
        pit.insert("id".into(), Value::String(request.pit_id.clone()));
        pit.insert("keep_alive".into(), Value::String(request.keep_alive.clone()));
        body.insert("pit".into(), Value::Object(pit));
        loop {
            let buffer = spare.try_recv().unwrap_or_default();
            let bytes = client.search(&body, &request.filter_path, buffer)?;
            let after = page::last_sort(&bytes);
            // A page too short to hold a full page of hits ends the body. A longer one is taken as
            // full without counting its hits (that count was ~2.5% of a reconcile's CPU): the
            // next page is asked, an empty one at worst, once per body.
            let full = bytes.len() >= request.page_size.saturating_mul(page::MIN_HIT_BYTES);
            let next = after.clone().filter(|_| full);
            if pages.send(Ok(Fetched { bytes, after })).is_err() {
                return Ok(());
            }
            match next {
                Some(after) => body.insert("search_after".into(), Value::Array(after)),
                None => break,
            };
        }
    }
    Ok(())
}
