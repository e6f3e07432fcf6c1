//! The Kafka reader: every partition of one topic, from given start offsets up to pinned end offsets
//! (exclusive), as Arrow record batches of the raw messages (key, partition, offset, timestamp,
//! headers, value). Values stay bytes: decoding them is the caller's (in batches, never per message).
//!
//! The client is librdkafka (the `rdkafka` crate, built from its bundled source), so a topic is read
//! exactly as confluent-kafka reads it: every partition fetched in parallel by librdkafka's broker
//! threads, `read_committed` (aborted transactions and control records never delivered), an
//! assign-only consumer with a throwaway group id that never joins a group and never commits.
//!
//! A partition is done once a message at or past `end - 1` arrives, or once librdkafka reports the
//! partition's end (`enable.partition.eof`): that covers a last offset held by a transaction's commit
//! marker, which is never delivered. Messages at or past `end` (written after the pin) are dropped.
//!
//! Messages are taken from librdkafka's consumer queue in batches (`rd_kafka_consume_batch_queue`,
//! as confluent-kafka's `consume()` does), not one `poll` per message: a poll costs a clock read, an
//! event and an allocation per message, a tenth of the read's CPU.

pub mod fold;
mod scan;

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Why a read failed. `Unavailable`: the broker (down, unreachable, an error while fetching);
/// `Config`: a client setting librdkafka refuses (bad input); `Schema`: the events do not fit the
/// fold (e.g. versions of mixed types); `Cancelled`: the caller stopped the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaError {
    Unavailable(String),
    Config(String),
    Schema(String),
    Cancelled,
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KafkaError::Unavailable(m) | KafkaError::Config(m) | KafkaError::Schema(m) => f.write_str(m),
            KafkaError::Cancelled => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for KafkaError {}

/// One partition's range to read: offsets `start .. end - 1`.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// What to read and how.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub bootstrap: String,
    pub topic: String,
    /// librdkafka client settings (security and the like), applied after Seamline's own.
    pub config: Vec<(String, String)>,
    pub partitions: Vec<PartitionRange>,
    /// A batch is handed over at this many messages or `batch_bytes` of values, whichever is first.
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// No message for this long while partitions are still short of their end: the broker is gone.
    pub idle_timeout: Duration,
    /// At least this often a batch (possibly empty) is handed over, so that the caller can react to
    /// Ctrl-C between batches even while nothing arrives.
    pub heartbeat: Duration,
}

/// The schema of every batch: the message columns as Seamline's Kafka source names them.
pub fn message_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("_key", DataType::Binary, true),
        Field::new("_partition", DataType::Int32, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("_timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("_headers", DataType::List(Arc::new(header_item())), true),
        Field::new("_value", DataType::Binary, true),
    ]))
}

pub(crate) fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::Utf8, true), Field::new("value", DataType::Binary, true)])
}

pub(crate) fn header_item() -> Field {
    Field::new("item", DataType::Struct(header_fields()), true)
}

/// The columns of `message_schema()`, built row by row: the reader's batches, the fold's winners.
pub(crate) struct Builders {
    key: BinaryBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    headers: ListBuilder<StructBuilder>,
    value: BinaryBuilder,
    rows: usize,
    bytes: usize,
}

impl Builders {
    pub(crate) fn new(rows: usize) -> Self {
        let header = StructBuilder::new(
            header_fields(),
            vec![Box::new(StringBuilder::new()), Box::new(BinaryBuilder::new())],
        );
        Self {
            key: BinaryBuilder::with_capacity(rows, rows * 8),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            timestamp: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            headers: ListBuilder::new(header).with_field(Arc::new(header_item())),
            value: BinaryBuilder::with_capacity(rows, rows * 128),
            rows: 0,
            bytes: 0,
        }
    }

    fn append(&mut self, msg: &RawMessage) {
        self.append_row(msg.key(), msg.partition(), msg.offset(), msg.timestamp(), msg.payload(), |header| {
            msg.headers(header)
        });
    }

    /// One row. `headers` hands each header (name, value) to the function it is given; none at
    /// all is a null list.
    pub(crate) fn append_row(
        &mut self,
        key: Option<&[u8]>,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        value: Option<&[u8]>,
        headers: impl FnOnce(&mut dyn FnMut(&str, Option<&[u8]>)),
    ) {
        self.key.append_option(key);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.timestamp.append_option(timestamp);
        let mut any = false;
        let items = self.headers.values();
        headers(&mut |name, value| {
            items.field_builder::<StringBuilder>(0).expect("key builder").append_value(name);
            items.field_builder::<BinaryBuilder>(1).expect("value builder").append_option(value);
            items.append(true);
            any = true;
        });
        if any {
            self.headers.append(true);
        } else {
            self.headers.append_null();
        }
        self.bytes += value.map_or(0, <[u8]>::len);
        self.value.append_option(value);
        self.rows += 1;
    }

    pub(crate) fn finish(&mut self, schema: &SchemaRef) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.value.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema.clone(), columns).expect("columns match the message schema")
    }
}

/// The messages of a topic up to the pinned end offsets, batch by batch (an `Iterator`).
pub struct FetchStream {
    /// the consumer's queue (declared first: released before the consumer)
    queue: ConsumerQueue,
    consumer: BaseConsumer,
    request: FetchRequest,
    schema: SchemaRef,
    /// the pinned end offset by partition number (i64::MIN: not read)
    ends: Vec<i64>,
    todo: HashSet<i32>,
    builders: Builders,
    /// when polls began to come back empty (None while messages flow: no clock read per message)
    idle_since: Option<Instant>,
    last_batch: Instant,
    failed: bool,
}

impl FetchStream {
    /// Create the consumer and assign every partition that has messages in its range. Nothing is
    /// fetched yet; an unreachable broker shows as the first batch's error (after `idle_timeout`).
    pub fn open(request: FetchRequest) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        config
            .set("bootstrap.servers", &request.bootstrap)
            // never joined, never committed to: assign() only
            .set("group.id", format!("seamline-reader-{}-{nanos:x}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            // a deep prefetch: librdkafka fetches while the caller decodes
            .set("fetch.max.bytes", (64 << 20).to_string())
            .set("max.partition.fetch.bytes", (8 << 20).to_string())
            .set("queued.min.messages", "200000")
            .set("queued.max.messages.kbytes", (128 << 10).to_string())
            // a partition over those bounds waits this long before its next fetch (librdkafka's
            // default, 1 s, idles the broker for most of a second whenever the queue is full)
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in &request.config {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().map_err(|e| KafkaError::Config(config_error(&e)))?;
        // SAFETY: the client is live; the queue holds its own reference until `ConsumerQueue` drops
        let queue =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) })
                .map(ConsumerQueue)
                .ok_or_else(|| KafkaError::Config("librdkafka has no consumer queue".into()))?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::new();
        let mut todo = HashSet::new();
        for p in &request.partitions {
            if p.end > p.start {
                assignment
                    .add_partition_offset(&request.topic, p.partition, Offset::Offset(p.start.max(0)))
                    .map_err(|e| KafkaError::Config(e.to_string()))?;
                let at = usize::try_from(p.partition)
                    .map_err(|_| KafkaError::Config(format!("partition {} is negative", p.partition)))?;
                if ends.len() <= at {
                    ends.resize(at + 1, i64::MIN);
                }
                ends[at] = p.end;
                todo.insert(p.partition);
            }
        }
        if !todo.is_empty() {
            consumer.assign(&assignment).map_err(|e| KafkaError::Unavailable(broker_error(&e)))?;
        }
        let now = Instant::now();
        let builders = Builders::new(request.batch_rows);
        Ok(Self {
            queue,
            consumer,
            request,
            schema: message_schema(),
            ends,
            todo,
            builders,
            idle_since: None,
            last_batch: now,
            failed: false,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn done(&mut self, partition: i32) {
        if self.todo.remove(&partition) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.request.topic, partition);
            let _ = self.consumer.pause(&tpl); // only saves fetching what would be dropped
        }
    }

    fn batch(&mut self) -> RecordBatch {
        self.last_batch = Instant::now();
        self.builders.finish(&self.schema)
    }

    fn step(&mut self) -> Option<Result<RecordBatch, KafkaError>> {
        loop {
            if self.todo.is_empty() {
                return (self.builders.rows > 0).then(|| Ok(self.batch()));
            }
            let room = (self.request.batch_rows - self.builders.rows).clamp(1, CONSUME_BATCH);
            let messages = self.queue.consume(room);
            if !messages.is_empty() {
                self.idle_since = None;
            }
            for msg in &messages {
                let partition = msg.partition();
                match msg.error() {
                    None => {
                        let offset = msg.offset();
                        let end = usize::try_from(partition)
                            .ok()
                            .and_then(|p| self.ends.get(p).copied())
                            .unwrap_or(i64::MIN);
                        if offset < end {
                            self.builders.append(msg);
                        }
                        if offset >= end - 1 {
                            self.done(partition);
                        }
                    }
                    // everything up to the partition's current end was delivered (what lies between
                    // the last message and the pinned end is transaction markers or aborted records)
                    Some(RDKafkaErrorCode::PartitionEOF) => self.done(partition),
                    Some(code) => return Some(Err(KafkaError::Unavailable(error_line(&code.to_string())))),
                }
            }
            if messages.is_empty() {
                let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
                if idle_since.elapsed() > self.request.idle_timeout {
                    return Some(Err(self.idle_error()));
                }
                if self.last_batch.elapsed() >= self.request.heartbeat {
                    return Some(Ok(self.batch())); // possibly empty: the caller gets a turn
                }
            }
            drop(messages); // back to librdkafka, and their fetch buffers with them
            if self.builders.rows >= self.request.batch_rows
                || self.builders.bytes >= self.request.batch_bytes
            {
                return Some(Ok(self.batch()));
            }
        }
    }
}

/// Messages taken from the consumer queue at once (at most; fewer when a batch is nearly full).
const CONSUME_BATCH: usize = 1024;

/// The consumer's queue of messages and events, as librdkafka hands it out (a reference of its own).
struct ConsumerQueue(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka's queues are thread-safe; the stream uses this one from one thread at a time
unsafe impl Send for ConsumerQueue {}

impl ConsumerQueue {
    /// Up to `max` messages: those already queued, else the first to arrive within 20 ms (none
    /// when nothing does). Events other than messages are served inside librdkafka.
    fn consume(&self, max: usize) -> Vec<RawMessage> {
        let mut out: Vec<*mut rdsys::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: `out` has room for `max` pointers; librdkafka fills the first `n` of them
        let mut n = unsafe { rdsys::rd_kafka_consume_batch_queue(self.0.as_ptr(), 0, out.as_mut_ptr(), max) };
        if n == 0 {
            // nothing queued: wait for one message (a larger array would wait until it is full)
            n = unsafe { rdsys::rd_kafka_consume_batch_queue(self.0.as_ptr(), 20, out.as_mut_ptr(), 1) };
        }
        // SAFETY: n (>= 0, <= the size asked for) pointers were written; a negative n is an error
        // of the queue itself (none for a consumer queue), read as no message
        unsafe { out.set_len(n.max(0) as usize) };
        out.into_iter().filter_map(NonNull::new).map(RawMessage).collect()
    }
}

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        // SAFETY: the reference taken by rd_kafka_queue_get_consumer, released once
        unsafe { rdsys::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// One message (or a per-partition event such as the partition's end) taken from the queue; given
/// back to librdkafka when dropped.
struct RawMessage(NonNull<rdsys::rd_kafka_message_t>);

impl RawMessage {
    fn raw(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: valid until rd_kafka_message_destroy (in Drop)
        unsafe { self.0.as_ref() }
    }

    fn error(&self) -> Option<RDKafkaErrorCode> {
        let err = self.raw().err;
        (err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| err.into())
    }

    fn partition(&self) -> i32 {
        self.raw().partition
    }

    fn offset(&self) -> i64 {
        self.raw().offset
    }

    fn bytes(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'static [u8]> {
        // SAFETY: librdkafka's (pointer, length) pair; only ever borrowed for `self`'s lifetime
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }

    fn key(&self) -> Option<&[u8]> {
        Self::bytes(self.raw().key, self.raw().key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        Self::bytes(self.raw().payload, self.raw().len)
    }

    /// ms since the epoch; None when the message has none (or a negative one)
    fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message and a place for the type
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.0.as_ptr(), &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0).then_some(ms)
    }

    /// Each header in order: its name (lossy UTF-8) and value (None: a null value).
    fn headers(&self, each: &mut dyn FnMut(&str, Option<&[u8]>)) {
        let mut headers: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: a live message; the headers belong to it
        let err = unsafe { rdsys::rd_kafka_message_headers(self.0.as_ptr(), &mut headers) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        let count = unsafe { rdsys::rd_kafka_header_cnt(headers) };
        for i in 0..count {
            let mut name: *const std::ffi::c_char = std::ptr::null();
            let mut value: *const std::ffi::c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: i < count; the pointers stay valid while the message lives
            let err = unsafe { rdsys::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size) };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy();
            each(&name, Self::bytes(value as *mut _, size));
        }
    }
}

impl Drop for RawMessage {
    fn drop(&mut self) {
        // SAFETY: taken from rd_kafka_consume_batch_queue, destroyed once
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl FetchStream {
    fn idle_error(&self) -> KafkaError {
        let mut left: Vec<i32> = self.todo.iter().copied().collect();
        left.sort_unstable();
        let left: Vec<String> = left.iter().map(i32::to_string).collect();
        KafkaError::Unavailable(format!(
            "topic {}: no message for {:.0}s before the pinned end offsets (partitions {})",
            self.request.topic,
            self.request.idle_timeout.as_secs_f64(),
            left.join(", ")
        ))
    }
}

/// A `FetchStream` polled on a thread of its own, up to `depth` batches ahead of its consumer, so
/// that the polling (and the waits on the network) overlap whatever the consumer does with a batch
/// (decoding, folding). Dropping it stops the thread at its next batch (a heartbeat away at most).
pub struct Prefetch {
    schema: SchemaRef,
    batches: Option<mpsc::Receiver<Result<RecordBatch, KafkaError>>>,
    poller: Option<JoinHandle<()>>,
}

impl FetchStream {
    pub fn prefetch(self, depth: usize) -> Prefetch {
        let schema = self.schema();
        let (send, batches) = mpsc::sync_channel(depth);
        let poller = std::thread::spawn(move || {
            for batch in self {
                if send.send(batch).is_err() {
                    return; // the consumer is gone
                }
            }
        });
        Prefetch { schema, batches: Some(batches), poller: Some(poller) }
    }
}

impl Prefetch {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for Prefetch {
    type Item = Result<RecordBatch, KafkaError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.as_ref()?.recv().ok() // Err: the stream ended and the thread with it
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        drop(self.batches.take()); // the poller's next send fails: it ends
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

impl Iterator for FetchStream {
    type Item = Result<RecordBatch, KafkaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let out = self.step();
        if matches!(out, Some(Err(_))) {
            self.failed = true;
        }
        out
    }
}

/// librdkafka's reason, one line, without the wrapper's prefixes.
fn broker_error(e: &RdError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => error_line(&code.to_string()),
        None => error_line(&e.to_string()),
    }
}

fn error_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// A refused client setting, without the value (it may be a secret).
fn config_error(e: &RdError) -> String {
    let text = match e {
        RdError::ClientCreation(m) | RdError::ClientConfig(_, m, _, _) => m.clone(),
        other => other.to_string(),
    };
    match text.find(" for configuration property") {
        Some(at) if text.starts_with("Invalid value") => format!("invalid value{}", &text[at..]),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_setting_is_a_config_error_without_its_value() {
        let request = FetchRequest {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            config: vec![("fetch.wait.max.ms".into(), "s3cret".into())],
            partitions: vec![],
            batch_rows: 10,
            batch_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_millis(100),
        };
        match FetchStream::open(request) {
            Err(KafkaError::Config(m)) => {
                assert!(!m.contains("s3cret") && m.contains("fetch.wait.max.ms"), "{m}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a bad setting was accepted"),
        }
    }

    #[test]
    fn nothing_to_read_ends_at_once() {
        let request = FetchRequest {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            config: vec![],
            partitions: vec![PartitionRange { partition: 0, start: 5, end: 5 }],
            batch_rows: 10,
            batch_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_millis(100),
        };
        let mut stream = FetchStream::open(request).expect("opens");
        assert!(stream.next().is_none());
    }
}
