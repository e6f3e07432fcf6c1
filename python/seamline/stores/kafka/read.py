"""The Kafka source: a topic read from the earliest retained offset up to the end offsets pinned at
``pin`` (its as-of), as events (one row per message) or folded into the state a correct consumer holds.

Reading: one assign-only consumer over every partition (no group membership, no commits, see
``store.py``); messages beyond the pinned end offsets are dropped, so writes after ``pin`` never show.
Two readers: ``rust`` (the default: ``seamline._core.kafka_fetch_stream``, librdkafka driven from
Rust, the messages arriving as Arrow batches with no Python object per message) and ``confluent``
(confluent-kafka's Python client), used for client settings the Rust build cannot serve (SSL, SASL,
Python callbacks).
Values are decoded in batches in native code: the values of a batch are joined into one buffer and
parsed by ``pyarrow.json`` (``json``, ``debezium``), never one message at a time in Python. Each row
carries the message's ``_key``, ``_partition``, ``_offset``, ``_timestamp`` and ``_headers`` (the
leading underscore keeps them apart from value fields such as ``key`` or ``timestamp``), then the
value's fields; ``debezium`` unwraps the change envelope (``after``, or ``before`` for a delete) and
adds ``_op``, ``_lsn`` and ``_ts_ms``; ``raw`` keeps the bytes as ``_value``.

Events then pass, chunk by chunk, through DuckDB: ``dedupe=`` (an event id field or header; the first
copy in offset order is kept), the stream's health (replayed ids, versions going backwards within a
key in offset order, gaps in an integer per-key sequence), and ``fold="latest"``: per key the message
with the highest ``version`` (not the last to arrive), deletes and tombstones removing the key. The
fold keeps only its state between chunks, so its memory follows the number of keys, not of events.
With the Rust reader and no ``dedupe=``, ``fold="latest"`` runs in Rust instead
(``seamline._core.kafka_fold``, same rules and health): each value is parsed there only for its key,
version and delete marker as it is fetched, per key only the winning message is kept, and only the
winners are decoded here (so a field or a wider type seen only in superseded events does not show).
Last ``order_by=`` sorts the rows and ``sql=`` runs an aggregate over them as the table ``events``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from seamline import exceptions
from seamline.exceptions import InvalidInputError, SchemaError, StoreUnavailableError
from seamline.malloc_policy import set_malloc_policy
from seamline.stores.kafka.store import KafkaStore, PartitionOffsets
from seamline.stores.protocols import AsOf, ScanRequest
from seamline.stores.sql_view import run_sql

VALUE_MODES = ("json", "debezium", "raw")
FOLDS = ("latest",)
META = ("_key", "_partition", "_offset", "_timestamp", "_headers")
DEBEZIUM_META = ("_op", "_lsn", "_ts_ms")
HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
_TOMB = "__deleted_marker"  # internal: a tombstone or a delete event
_CONSUME_BATCH = 20_000  # messages per consume() call
_MARKER_WAIT = 3.0  # seconds without a message before a position one short of the end counts as done
_CHUNK_ROWS = 250_000  # decoded events handed to DuckDB at once (bounds the fold's working set)
_DECODERS = 2  # threads parsing values (pyarrow.json releases the GIL)
_SAMPLES = 5
#: the readers: "rust" (seamline._core.kafka_fetch_stream) and "confluent" (confluent-kafka's client)
READERS = ("rust", "confluent")
DEFAULT_READER = "rust"
#: overrides DEFAULT_READER for sources that name no reader (e.g. to run a test suite on each)
READER_ENV = "SEAMLINE_KAFKA_READER"
_RUST_BATCH_ROWS = 65_536
# librdkafka's prefetch, bounded: the queue fills while batches are decoded, and an unbounded one would
# make the fold's peak memory follow the events, not the keys. Measured on the 5M-event bench topic
# (fold, 100k keys): 16 MiB fetches and queue 17.7-20.0 s, peak 313-322 MB; 32 MiB 10.4-10.6 s, 485-497
# MB (431 MB on the 1M topic); 64 MiB 6.5-11.7 s, 740-775 MB. The broker then waits on the queue less.
_RUST_PREFETCH = {
    "fetch.max.bytes": 32 << 20,
    "max.partition.fetch.bytes": 8 << 20,
    "queued.min.messages": 20_000,
    "queued.max.messages.kbytes": 32 << 10,
    # a partition whose queue is over those bounds is not fetched for this long: librdkafka's default
    # (1 s) idles the broker for most of a second each time the bounded queue fills
    "fetch.queue.backoff.ms": 10,
}
# an error that crossed the Arrow C stream: "seamline.exceptions.StoreUnavailableError: text"
_STREAM_ERROR = re.compile(r"seamline\.exceptions\.(\w+): (.*)")
_LOG = logging.getLogger("seamline.kafka")


@dataclass
class StreamHealth:
    """What the stream itself did wrong, counted while reading."""

    events: int = 0
    replayed: int = 0  # copies of an event id seen before (dedupe=), or of a key's version (no dedupe=)
    replayed_sample: list[Any] = field(default_factory=list)
    out_of_order: int = 0  # a version lower than one seen before for the key, in offset order
    out_of_order_sample: list[Any] = field(default_factory=list)
    gaps: int | None = None  # an integer version skipping past the key's previous one + 1
    gaps_sample: list[Any] = field(default_factory=list)
    tombstones: int = 0  # null values and delete events
    undecodable: int = 0  # values that are not a JSON object
    undecodable_sample: list[str] = field(default_factory=list)  # "partition/offset"
    replayed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "replayed": {"count": self.replayed, "by": self.replayed_by, "sample": self.replayed_sample},
            "out_of_order": {"count": self.out_of_order, "sample": self.out_of_order_sample},
            "gaps": None if self.gaps is None else {"count": self.gaps, "sample": self.gaps_sample},
            "tombstones": self.tombstones,
            "undecodable": {"count": self.undecodable, "sample": self.undecodable_sample},
        }
        return out

    @property
    def clean(self) -> bool:
        return not (self.replayed or self.out_of_order or self.gaps or self.undecodable)


class KafkaReader:
    """One topic of a Kafka cluster, read up to the end offsets pinned at ``pin``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        value: str = "json",
        key_field: str | None = None,
        fold: str | None = None,
        version: str | None = None,
        dedupe: str | None = None,
        order_by: str | None = None,
        sql: str | None = None,
        group: str | None = None,
        config: dict[str, Any] | None = None,
        store: KafkaStore | None = None,
        reader: str | None = None,
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise InvalidInputError("kafka: topic must be a non-empty string")
        if value not in VALUE_MODES:
            raise InvalidInputError(f"kafka: value={value!r} is not one of {', '.join(VALUE_MODES)}")
        if fold is not None and fold not in FOLDS:
            raise InvalidInputError(f"kafka: fold={fold!r} is not supported (use fold='latest' or None)")
        if value == "raw" and (key_field or version or dedupe or order_by) and fold is None:
            pass  # raw values have no fields: these may only name the message columns
        self.store = store or KafkaStore(bootstrap, config)
        self.reader = _choose_reader(reader, self.store.config)
        self.topic = topic
        self.value = value
        self.key_field = key_field
        self.fold = fold
        self.version = version or ("_lsn" if value == "debezium" and fold else None)
        self.dedupe = dedupe
        self.order_by = order_by
        self.sql = sql
        self.group = group
        self.offsets: list[PartitionOffsets] | None = None
        self.health: StreamHealth | None = None
        self._table: pa.Table | None = None
        self._newest: dt.datetime | None = None

    # -- Source protocol -------------------------------------------------------------------------

    def replays_identically(self) -> bool:
        """Read once into memory at pin: every open() with one request yields the same slices."""
        return True

    def describe(self) -> str:
        text = f"kafka {self.store.bootstrap} topic {self.topic} ({self.value}"
        if self.fold:
            text += f", fold={self.fold}"
            if self.version:
                text += f" by {self.version}"
        if self.dedupe:
            text += f", dedupe on {self.dedupe}"
        text += ")"
        if self.sql:
            text += " | sql"
        if self.offsets is not None:
            text += " @ " + ",".join(f"{o.partition}:{o.high}" for o in self.offsets)
        return text

    def schema(self) -> pa.Schema:
        return self._load().schema

    def can_push_down(self, key: Sequence[str]) -> bool:
        """Key ranges filter the rows held in memory (Arrow compute), before the core sees them."""
        return True

    def open(self, request: ScanRequest) -> list[Any]:
        table = self._load()
        if request.ranges is not None:
            table = table.filter(_in_ranges(table, list(request.key), list(request.ranges)))
        table = table.select(list(request.columns))
        parts = max(1, request.parallelism)
        step = max(1, -(-table.num_rows // parts))
        return [table.slice(offset, step) for offset in range(0, max(table.num_rows, 1), step)]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        table = self._load().select(list(key))
        if table.num_rows <= n:
            return table
        rows = sorted(random.Random(0).sample(range(table.num_rows), n))
        return table.take(pa.array(rows, pa.int64()))

    def estimated_rows(self) -> int | None:
        return self._load().num_rows

    def pin(self) -> AsOf:
        table = self._load()
        assert self.offsets is not None and self.health is not None
        detail: dict[str, Any] = {
            "bootstrap": self.store.bootstrap,
            "topic": self.topic,
            "end_offsets": {str(o.partition): o.high for o in self.offsets},
            "start_offsets": {str(o.partition): o.low for o in self.offsets},
            "messages": sum(o.messages for o in self.offsets),
            "newest_message_time": self._newest.isoformat() if self._newest else None,
            "rows": table.num_rows,
            "value": self.value,
            "fold": self.fold,
            "health": self.health.to_dict(),
        }
        if self.group:
            detail["group"] = self.group_lag()
        return AsOf(store="kafka", detail=detail)

    def group_lag(self) -> dict[str, Any]:
        """Consumer group ``group``'s lag against the pinned end offsets: per partition the committed
        offset and the messages behind, and the age of its oldest unconsumed message (seconds)."""
        assert self.group is not None
        if self.offsets is None:
            self._load()
        assert self.offsets is not None
        committed = self.store.group_offsets(self.group, self.topic, [o.partition for o in self.offsets])
        partitions: dict[str, Any] = {}
        oldest: float | None = None
        consumer = self.store.consumer()
        try:
            for o in self.offsets:
                at = committed.get(o.partition)
                # nothing committed: the group has consumed nothing it kept, from the earliest on
                position = max(at if at is not None else o.low, o.low)
                lag = max(0, o.high - position)
                partitions[str(o.partition)] = {"committed": at, "end": o.high, "lag": lag}
                if lag:
                    t = self.store.message_time(consumer, self.topic, o.partition, position)
                    if t is not None and (oldest is None or t < oldest):
                        oldest = t
        finally:
            consumer.close()
        now = dt.datetime.now(dt.UTC).timestamp()
        return {
            "name": self.group,
            "lag": sum(p["lag"] for p in partitions.values()),
            "partitions": partitions,
            "oldest_unconsumed_age_seconds": None if oldest is None else round(max(0.0, now - oldest), 3),
        }

    def close(self) -> None:
        # the next pin reads the topic again, up to its end offsets then (health stays readable)
        self._table = None
        self.offsets = None

    # -- freshness: the newest value of a column, and how many rows are newer ----------------------

    def max_value(self, column: str) -> Any:
        values = self._column(column)
        if len(values) == 0 or values.null_count == len(values):
            return None
        value = pc.max(values).as_py()
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        values = self._column(column)
        if value is None:
            return len(values) - values.null_count
        scalar = pa.scalar(value)
        mask = pc.greater_equal(values, scalar) if inclusive else pc.greater(values, scalar)
        return int(pc.sum(mask).as_py() or 0)

    def _column(self, column: str) -> pa.ChunkedArray:
        table = self._load()
        if column not in table.schema.names:
            raise SchemaError(f"{self.describe()}: no column {column!r}")
        values = table.column(column)
        if pa.types.is_string(values.type):
            # JSON carries times as ISO 8601 text: ordered (and compared) as the instants they are
            try:
                return values.cast(pa.timestamp("us", "UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return values
        return values

    # -- reading -----------------------------------------------------------------------------------

    def _load(self) -> pa.Table:
        if self._table is None:
            self._table = self._read()
        return self._table

    def _read(self) -> pa.Table:
        if self.reader == "rust":
            # freed fetch and batch buffers kept by the process (seamline.malloc_policy)
            set_malloc_policy("stream")
            return self._read_rust_fold() if self._folds_in_rust() else self._read_rust()
        return self._read_confluent()

    def _folds_in_rust(self) -> bool:
        """Whether ``seamline._core.kafka_fold`` serves this fold: the Rust reader, a JSON or
        Debezium value, no ``dedupe=``, the key a value field or the message key, the version a
        value field (or Debezium's ``_lsn``/``_ts_ms``). Other folds run through DuckDB."""
        meta = (*META, *DEBEZIUM_META)
        return (
            self.reader == "rust"
            and self.fold == "latest"
            and not self.dedupe
            and self.value in ("json", "debezium")
            and (self.key_field in (None, "_key") or self.key_field not in meta)
            and (
                self.version is None
                or self.version not in meta
                or (self.value == "debezium" and self.version in ("_lsn", "_ts_ms"))
            )
        )

    def _pinned_offsets(self) -> list[PartitionOffsets]:
        if self.offsets is None:
            consumer = self.store.consumer()
            try:
                self.offsets = self.store.end_offsets(consumer, self.topic)
            finally:
                consumer.close()
        return self.offsets

    def _read_rust_fold(self) -> pa.Table:
        """The fold in Rust (``kafka_fold``: per key only the winning message is kept while the
        topic is read, its memory following the keys); only the winners are decoded here, by the
        same decoder as every event on the DuckDB path, and the delete markers among them dropped."""
        from seamline._core import kafka_fold

        offsets = self._pinned_offsets()
        where = f"kafka {self.store.bootstrap}"
        stream, counts = kafka_fold(
            self.store.bootstrap,
            self.topic,
            [(o.partition, o.low, o.high) for o in offsets],
            config=_rust_config({**_RUST_PREFETCH, **self.store.config}),
            what=where,
            value=self.value,
            key_field=None if self.key_field in (None, "_key") else self.key_field,
            version=self.version,
            idle_timeout=self.store.timeout,
        )
        winners = pa.RecordBatchReader.from_stream(stream).read_all()
        health = StreamHealth(replayed_by=f"key and {self.version}" if self.version else None)
        for name in ("events", "tombstones", "undecodable", "replayed", "out_of_order", "gaps"):
            setattr(health, name, counts[name])
        for name in ("undecodable_sample", "replayed_sample", "out_of_order_sample", "gaps_sample"):
            setattr(health, name, [_plain(v) for v in counts[name]])
        newest = counts["newest_ms"]
        self._newest = (
            None
            if newest is None
            else dt.datetime.fromtimestamp(newest // 1000, dt.UTC) + dt.timedelta(milliseconds=newest % 1000)
        )
        self.health = health
        events = _decode_raw(self, winners, StreamHealth()) if winners.num_rows else pa.table({})
        fields = ", ".join(n for n in events.schema.names if n != _TOMB)
        for wanted, seen in ((self.key_field, counts["key_seen"]), (self.version, counts["version_seen"])):
            if wanted and wanted not in META and not seen and counts["events"] > counts["undecodable"]:
                raise SchemaError(f"{self.describe()}: no field {wanted!r} in the events (fields: {fields})")
        if _TOMB in events.schema.names:
            events = events.filter(pc.invert(events.column(_TOMB))).drop_columns([_TOMB])
        return _finish(self, events)

    def _read_rust(self) -> pa.Table:
        """The Rust reader: raw message batches from seamline._core, decoded here batch by batch."""
        from seamline._core import kafka_fetch_stream

        self._pinned_offsets()
        assert self.offsets is not None
        pipeline = _Pipeline(self)
        try:
            stream = kafka_fetch_stream(
                self.store.bootstrap,
                self.topic,
                [(o.partition, o.low, o.high) for o in self.offsets],
                config=_rust_config({**_RUST_PREFETCH, **self.store.config}),
                what=f"kafka {self.store.bootstrap}",
                idle_timeout=self.store.timeout,
                batch_rows=_RUST_BATCH_ROWS,
            )
            batches = pa.RecordBatchReader.from_stream(stream)
            try:
                for batch in batches:  # the GIL is free while a batch is fetched
                    if batch.num_rows:
                        pipeline.add(pa.Table.from_batches([batch]))
            except (pa.ArrowException, OSError) as exc:
                raise _stream_error(exc, f"kafka {self.store.bootstrap}") from None
            finally:
                batches.close()
            table = pipeline.finish()
        except BaseException:
            pipeline.abort()
            raise
        self._newest = pipeline.newest
        self.health = pipeline.health
        return table

    def _read_confluent(self) -> pa.Table:
        from confluent_kafka import KafkaException, TopicPartition

        # a bounded prefetch queue: librdkafka's defaults queue 100k messages per partition
        consumer = self.store.consumer(
            **{
                "fetch.max.bytes": 16 << 20,
                "max.partition.fetch.bytes": 4 << 20,
                "queued.min.messages": 20_000,
                "queued.max.messages.kbytes": 16 << 10,
            }
        )
        try:
            if self.offsets is None:
                self.offsets = self.store.end_offsets(consumer, self.topic)
            highs = {o.partition: o.high for o in self.offsets}
            todo = {o.partition for o in self.offsets if o.high > o.low}
            pipeline = _Pipeline(self)
            if todo:
                consumer.assign(
                    [
                        TopicPartition(self.topic, o.partition, o.low)
                        for o in self.offsets
                        if o.partition in todo
                    ]
                )
            idle = 0.0
            while todo:
                try:
                    msgs = consumer.consume(num_messages=_CONSUME_BATCH, timeout=0.5)
                except KafkaException as exc:
                    raise self.store.unavailable(exc) from None
                if msgs:
                    idle = 0.0
                    pipeline.add(_raw_batch(msgs, highs, self.store))
                else:
                    idle += 0.5
                    if idle > self.store.timeout:
                        left = ", ".join(f"{p}" for p in sorted(todo))
                        raise StoreUnavailableError(
                            f"kafka {self.store.bootstrap}: topic {self.topic}: no message for "
                            f"{self.store.timeout:g}s before the pinned end offsets (partitions {left})"
                        )
                # a partition is done once the consumer's position reaches the pinned end offset; a
                # transaction's commit marker may hold the last offset, which is never delivered: one
                # short of the end counts as done only once nothing has arrived for a while (a slow
                # fetch of a real last message must not be taken for a marker)
                positions = consumer.position([TopicPartition(self.topic, p) for p in todo])
                for tp in positions:
                    if tp.offset >= highs[tp.partition] or (
                        idle >= _MARKER_WAIT and tp.offset >= highs[tp.partition] - 1
                    ):
                        todo.discard(tp.partition)
                        consumer.pause([TopicPartition(self.topic, tp.partition)])
            table = pipeline.finish()
        finally:
            consumer.close()
        self._newest = pipeline.newest
        self.health = pipeline.health
        return table


def _choose_reader(reader: str | None, config: dict[str, Any]) -> str:
    """The reader asked for, else the default one if it can serve ``config``, else confluent."""
    why = _rust_cannot(config)
    if reader is None:
        reader = os.environ.get(READER_ENV) or DEFAULT_READER
        if reader == "rust" and why:
            _LOG.info("kafka: reading with confluent-kafka: the Rust reader cannot serve %s", why)
            return "confluent"
    if reader not in READERS:
        raise InvalidInputError(f"kafka reader {reader!r}: expected one of {', '.join(READERS)}")
    if reader == "rust" and why:
        raise InvalidInputError(f"kafka reader 'rust' cannot serve {why}: use reader='confluent'")
    return reader


def _rust_cannot(config: dict[str, Any]) -> str | None:
    """Why the Rust reader (librdkafka built without SSL and SASL) cannot serve these client
    settings, or None when it can."""
    protocol = str(config.get("security.protocol", "plaintext")).lower()
    if protocol != "plaintext":
        return f"security.protocol={protocol} (built without SSL and SASL)"
    for name, value in config.items():
        if name.startswith(("ssl.", "sasl.")):
            return f"the setting {name!r} (built without SSL and SASL)"
        if callable(value):
            return f"the setting {name!r} (a Python callback)"
    return None


def _rust_config(config: dict[str, Any]) -> list[tuple[str, str]]:
    """librdkafka settings as text, as confluent-kafka would pass them."""
    return [(k, ("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in config.items()]


def _stream_error(exc: BaseException, where: str) -> Exception:
    """The Seamline exception an error of the Rust stream names (one line), else StoreUnavailable."""
    text = str(exc)
    found = _STREAM_ERROR.search(text)
    if found:
        cls = getattr(exceptions, found.group(1), None)
        if isinstance(cls, type) and issubclass(cls, exceptions.SeamlineError):
            return cls(found.group(2).splitlines()[0])
    return StoreUnavailableError(f"{where}: {text.splitlines()[0] if text else type(exc).__name__}")


def _raw_batch(msgs: list[Any], highs: dict[int, int], store: KafkaStore) -> pa.Table:
    """The messages of one consume() as Arrow columns, the value still bytes; messages past the
    pinned end offsets dropped. One list comprehension per field: no per-message decoding."""
    bad = [m for m in msgs if m.error() is not None]
    if bad:
        errors = [m.error() for m in bad if not m.error().code() == -191]  # -191: partition EOF
        if errors:
            raise StoreUnavailableError(f"kafka {store.bootstrap}: {errors[0].str()}")
        msgs = [m for m in msgs if m.error() is None]
    partitions = pa.array([m.partition() for m in msgs], pa.int32())
    offsets = pa.array([m.offset() for m in msgs], pa.int64())
    timestamps = pa.array([m.timestamp()[1] for m in msgs], pa.int64())
    headers_py = [m.headers() for m in msgs]
    headers = (
        pa.array(headers_py, HEADERS_TYPE)
        if headers_py.count(None) != len(headers_py)
        else pa.nulls(len(msgs), HEADERS_TYPE)
    )
    table = pa.table(
        {
            "_key": pa.array([m.key() for m in msgs], pa.binary()),
            "_partition": partitions,
            "_offset": offsets,
            "_timestamp": pc.if_else(pc.less(timestamps, 0), None, timestamps).cast(
                pa.timestamp("ms", "UTC")
            ),
            "_headers": headers,
            "_value": pa.array([m.value() for m in msgs], pa.binary()),
        }
    )
    limit = pc.take(pa.array([highs.get(p, 0) for p in range(max(highs) + 1)], pa.int64()), partitions)
    keep = pc.less(offsets, limit)
    if not pc.all(keep).as_py():
        table = table.filter(keep)
    return table


# -- decoding ------------------------------------------------------------------------------------------


def _decode_pool() -> pa.MemoryPool | None:
    """Arrow's jemalloc pool where the build has one: it keeps freed pages a while, where the
    default pool (mimalloc) gives them back at once and every batch's buffers are faulted in and
    zeroed afresh (a quarter of an events read's CPU, measured on the 5M-event bench). Only the
    decoder's own buffers come from it; the process's default pool is left alone."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return None


_DECODE_POOL = _decode_pool()


def _decode_json(values: pa.Array) -> tuple[pa.Table, pa.Array]:
    """JSON objects, one per value, parsed by pyarrow in one pass; values that are not a JSON object
    are located by bisection and returned as a mask of rows kept."""
    if len(values) == 0:
        return pa.table({}), pa.array([], pa.bool_())
    try:
        return _parse_json(values), pa.nulls(0, pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        pass
    keep = [True] * len(values)
    _bisect_bad(values, 0, len(values), keep)
    mask = pa.array(keep, pa.bool_())
    good = values.filter(mask)
    table = _parse_json(good) if len(good) else pa.table({})
    return table, mask


def _parse_json(values: pa.Array) -> pa.Table:
    joined = _join_lines(values)
    # one block holding every value: no block boundary is searched for, so a value spanning lines
    # parses as it is (newlines_in_values would only slow the chunker down); the row count checks it
    multiline = False
    read = pajson.ReadOptions(block_size=max(joined.size + 1, 1 << 20), use_threads=False)
    table = pajson.read_json(
        pa.BufferReader(joined),
        read_options=read,
        parse_options=pajson.ParseOptions(newlines_in_values=multiline),
        memory_pool=_DECODE_POOL,
    )
    if table.num_rows != len(values):
        raise pa.ArrowInvalid(f"{table.num_rows} objects parsed from {len(values)} values")
    schema = _strings_stay_strings(table.schema)
    if schema != table.schema:
        parse = pajson.ParseOptions(
            explicit_schema=schema, newlines_in_values=multiline, unexpected_field_behavior="infer"
        )
        table = pajson.read_json(
            pa.BufferReader(joined), read_options=read, parse_options=parse, memory_pool=_DECODE_POOL
        )
    return table


def _strings_stay_strings(schema: pa.Schema) -> pa.Schema:
    """JSON has no timestamps: pyarrow infers one from a string like "2026-11-20" but not from one
    with fractional seconds, so a field could change type from batch to batch and a date would come
    back as a midnight. Such fields are read again as the text they are; the core parses text as a
    timestamp or date where one is compared."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.string()
        if pa.types.is_struct(t):
            return pa.struct([f.with_type(plain(f.type)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(t.value_field.with_type(plain(t.value_type)))
        return t

    return pa.schema([f.with_type(plain(f.type)) for f in schema])


def _join_lines(values: pa.Array) -> pa.Buffer:
    """The values, each followed by a newline, as one buffer: Arrow appends the newlines and the
    data buffer of the result is already the concatenation (no Python object per value)."""
    lines = pc.binary_join_element_wise(
        values, pa.scalar(b"\n", pa.binary()), pa.scalar(b"", pa.binary()), memory_pool=_DECODE_POOL
    )
    offsets = memoryview(lines.buffers()[1]).cast("i")  # int32 offsets, one more than values
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return lines.buffers()[2].slice(start, end - start)


def _bisect_bad(values: pa.Array, lo: int, hi: int, keep: list[bool]) -> None:
    try:
        _parse_json(values.slice(lo, hi - lo))
        return
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        if hi - lo == 1:
            keep[lo] = False
            return
    mid = (lo + hi) // 2
    _bisect_bad(values, lo, mid, keep)
    _bisect_bad(values, mid, hi, keep)


def _unwrap_debezium(table: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Debezium change events (with or without the schema/payload wrapper) as the row's fields
    (``after``, or ``before`` for a delete) plus ``_op``, ``_lsn``, ``_ts_ms``; and the delete mask."""
    if "payload" in table.schema.names and pa.types.is_struct(table.schema.field("payload").type):
        payload = table.column("payload").combine_chunks()
        table = pa.Table.from_arrays(payload.flatten(), names=[f.name for f in payload.type])
    n = table.num_rows
    names = table.schema.names
    op = table.column("op").combine_chunks() if "op" in names else pa.nulls(n, pa.string())
    deleted = pc.fill_null(pc.equal(op, "d"), False)
    before = table.column("before").combine_chunks() if "before" in names else None
    after = table.column("after").combine_chunks() if "after" in names else None
    fields: dict[str, pa.Array] = {}
    for side in (after, before):
        if side is None or not pa.types.is_struct(side.type):
            continue
        for i, f in enumerate(side.type):
            if f.name in fields:
                continue
            a = (
                after.field(f.name)
                if after is not None
                and pa.types.is_struct(after.type)
                and after.type.get_field_index(f.name) >= 0
                else None
            )
            b = (
                before.field(f.name)
                if before is not None
                and pa.types.is_struct(before.type)
                and before.type.get_field_index(f.name) >= 0
                else None
            )
            if a is not None and b is not None and a.type == b.type:
                fields[f.name] = pc.if_else(deleted, b, a)
            elif a is not None:
                fields[f.name] = pc.if_else(deleted, pa.nulls(n, a.type), a) if b is None else a
            else:
                fields[f.name] = side.field(i)
    if "source" in names and pa.types.is_struct(table.schema.field("source").type):
        source = table.column("source").combine_chunks()
        lsn = source.field("lsn") if source.type.get_field_index("lsn") >= 0 else pa.nulls(n, pa.int64())
    else:
        lsn = pa.nulls(n, pa.int64())
    fields["_op"] = op.cast(pa.string())
    fields["_lsn"] = lsn
    fields["_ts_ms"] = table.column("ts_ms").combine_chunks() if "ts_ms" in names else pa.nulls(n, pa.int64())
    return pa.table(fields), deleted


def _decode_raw(source: KafkaReader, raw: pa.Table, health: StreamHealth) -> pa.Table:
    """Raw messages as events: message columns, the value's fields and the delete flag (``_TOMB``);
    the counts of events, tombstones and undecodable values go to ``health``."""
    meta = raw.select(list(META))
    values = raw.column("_value").combine_chunks()
    health.events += raw.num_rows
    if source.value == "raw":
        tomb = pc.is_null(values)
        return meta.append_column("_value", values).append_column(_TOMB, tomb)
    is_tomb = pc.is_null(values)
    n_tomb = int(pc.sum(is_tomb).as_py() or 0)
    present = values.filter(pc.invert(is_tomb)) if n_tomb else values
    decoded, kept = _decode_json(present)
    body_meta = meta.filter(pc.invert(is_tomb)) if n_tomb else meta
    if len(kept):
        bad = body_meta.filter(pc.invert(kept))
        health.undecodable += bad.num_rows
        for p, o in zip(bad.column("_partition").to_pylist(), bad.column("_offset").to_pylist(), strict=True):
            if len(health.undecodable_sample) < _SAMPLES:
                health.undecodable_sample.append(f"{p}/{o}")
        body_meta = body_meta.filter(kept)
    if source.value == "debezium" and decoded.num_columns:
        decoded, deleted = _unwrap_debezium(decoded)
    else:
        deleted = _json_deletes(decoded)
    body = _with_columns(body_meta, decoded).append_column(_TOMB, deleted)
    health.tombstones += int(pc.sum(deleted).as_py() or 0) + n_tomb
    if not n_tomb:
        return body
    tombs = meta.filter(is_tomb)
    tombs = tombs.append_column(_TOMB, pa.array([True] * tombs.num_rows))
    if source.key_field and source.key_field not in META:
        keys = [_key_from_message_key(k, source.key_field) for k in tombs.column("_key").to_pylist()]
        typ = body.schema.field(source.key_field).type if source.key_field in body.schema.names else None
        tombs = tombs.append_column(source.key_field, _typed(keys, typ))
    return pa.concat_tables([body, tombs], promote_options="permissive")


class _Pipeline:
    """Decodes raw batches (in two worker threads: Arrow releases the GIL while it parses, and
    parsing is most of an events read's CPU; the decoded batches are collected in arrival order),
    then hands chunks of events to DuckDB for dedupe, health and the fold (in a third worker thread,
    so that decoding the next chunk overlaps folding this one; one chunk at a time, in order)."""

    def __init__(self, source: KafkaReader) -> None:
        self.source = source
        self.health = StreamHealth(
            replayed_by=source.dedupe or (f"key and {source.version}" if source.version else None)
        )
        self.newest: dt.datetime | None = None
        self._pool = ThreadPoolExecutor(_DECODERS, thread_name_prefix="seamline-kafka-decode")
        self._futures: deque[Future[tuple[pa.Table, StreamHealth, Any]]] = deque()
        self._fold_pool = ThreadPoolExecutor(1, thread_name_prefix="seamline-kafka-fold")
        self._folding: Future[None] | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._parts: list[pa.Table] = []
        self._con: Any = None
        self._state = False  # DuckDB holds the fold state / seen ids / seen versions
        self._key: str | None = None

    def add(self, raw: pa.Table) -> None:
        if raw.num_rows == 0:
            return
        self._futures.append(self._pool.submit(self._decode, raw))
        # collected in arrival order (so offset order within a partition holds), each once decoded
        while self._futures and self._futures[0].done():
            self._collect(*self._futures.popleft().result())
        if len(self._futures) > 4:  # backpressure: at most a few raw batches waiting
            self._collect(*self._futures.popleft().result())

    def abort(self) -> None:
        """Stop decoding (the read failed or was interrupted): queued batches are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._fold_pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> pa.Table:
        try:
            while self._futures:
                self._collect(*self._futures.popleft().result())
            self._flush()
        finally:
            self._pool.shutdown(wait=True)
            self._fold_pool.shutdown(wait=True)
        return self._result()

    # -- per batch ---------------------------------------------------------------------------------

    def _decode(self, raw: pa.Table) -> tuple[pa.Table, StreamHealth, Any]:
        """One batch decoded (in a worker: nothing shared is touched), with its own counts."""
        health = StreamHealth()
        events = _decode_raw(self.source, raw, health)
        return events, health, pc.max(raw.column("_timestamp")).as_py()

    def _collect(self, events: pa.Table, health: StreamHealth, newest: Any) -> None:
        """A decoded batch, in arrival order: its counts added, its events to the next chunk."""
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        h = self.health
        h.events += health.events
        h.tombstones += health.tombstones
        h.undecodable += health.undecodable
        h.undecodable_sample.extend(health.undecodable_sample[: _SAMPLES - len(h.undecodable_sample)])
        self._pending.append(events)
        self._pending_rows += events.num_rows
        if self._pending_rows >= _CHUNK_ROWS:
            self._flush(background=True)

    # -- per chunk (DuckDB) ----------------------------------------------------------------------

    def _flush(self, background: bool = False) -> None:
        """Hand the pending events to DuckDB as one chunk, after the chunk before it is done."""
        chunk = pa.concat_tables(self._pending, promote_options="permissive") if self._pending else None
        self._pending, self._pending_rows = [], 0
        if self._folding is not None:
            self._folding.result()
            self._folding = None
        if chunk is None:
            return
        if background:
            self._folding = self._fold_pool.submit(self._fold_chunk, chunk)
        else:
            self._fold_chunk(chunk)

    def _fold_chunk(self, chunk: pa.Table) -> None:
        source = self.source
        if not (source.dedupe or source.version or source.fold):
            self._parts.append(chunk)
            return
        import duckdb

        if self._con is None:
            self._con = duckdb.connect()
            self._con.sql("SET preserve_insertion_order = false")
        con = self._con
        key = source.key_field or "_key"
        if source.dedupe and source.dedupe not in chunk.schema.names:
            ids = self._header_id(chunk)
            if ids is not None:
                chunk = chunk.append_column(source.dedupe, ids)
        for name in (key, source.version, source.dedupe):
            if name and name not in chunk.schema.names:
                fields = ", ".join(n for n in chunk.schema.names if n != _TOMB)
                raise SchemaError(f"{source.describe()}: no field {name!r} in the events (fields: {fields})")
        con.register("chunk", chunk)
        try:
            if source.dedupe:
                self._dedupe(con, _q(source.dedupe))
            else:
                con.sql("CREATE OR REPLACE TEMP VIEW c0 AS SELECT * FROM chunk")
            if source.version:
                self._versions(con, _q(key), _q(source.version), chunk.schema.field(source.version).type)
            else:
                con.sql("CREATE OR REPLACE TEMP TABLE c AS SELECT *, NULL AS __prev FROM c0")
            if source.fold:
                self._fold(con, _q(key), _q(source.version) if source.version else None)
            else:
                self._parts.append(con.sql("SELECT * EXCLUDE (__prev) FROM c").to_arrow_table())
        except duckdb.Error as exc:
            raise SchemaError(f"{source.describe()}: {str(exc).splitlines()[0]}") from None
        finally:
            # the chunk's working tables go now: only the state (and seen ids/versions) stays
            for drop in ("DROP TABLE IF EXISTS c", "DROP VIEW IF EXISTS c0", "DROP TABLE IF EXISTS c0"):
                try:
                    con.sql(drop)
                except duckdb.Error:
                    pass  # c0 is a view or a table, depending on dedupe=
            con.unregister("chunk")

    def _header_id(self, chunk: pa.Table) -> pa.Array | None:
        """The event id from a header named like ``dedupe=`` (UTF-8), when no value field has it."""
        name = self.source.dedupe
        out = []
        found = False
        for headers in chunk.column("_headers").to_pylist():
            value = None
            for h in headers or ():
                if h["key"] == name:
                    value = h["value"].decode("utf-8", "replace") if h["value"] is not None else None
                    found = True
                    break
            out.append(value)
        return pa.array(out, pa.string()) if found else None

    def _dedupe(self, con: Any, ident: str) -> None:
        first = not self._state_has("seen_ids")
        seen = "" if first else f"AND {ident} NOT IN (SELECT id FROM seen_ids)"
        con.sql(
            f"CREATE OR REPLACE TEMP TABLE c0 AS SELECT * FROM chunk WHERE {ident} IS NULL OR "
            f"(TRUE {seen}) QUALIFY {ident} IS NULL OR "
            f"row_number() OVER (PARTITION BY {ident} ORDER BY _partition, _offset) = 1"
        )
        dropped = con.sql("SELECT (SELECT count(*) FROM chunk) - (SELECT count(*) FROM c0)").fetchall()[0][0]
        if dropped:
            self.health.replayed += int(dropped)
            if len(self.health.replayed_sample) < _SAMPLES:
                cond = "" if first else f"OR {ident} IN (SELECT id FROM seen_ids)"
                rows = con.sql(
                    f"SELECT {ident} FROM chunk WHERE {ident} IS NOT NULL GROUP BY {ident} "
                    f"HAVING count(*) > 1 {cond} LIMIT {_SAMPLES}"
                ).fetchall()
                self._sample(self.health.replayed_sample, [r[0] for r in rows])
        if first:
            con.sql(
                f"CREATE TEMP TABLE seen_ids AS SELECT DISTINCT {ident} AS id FROM chunk "
                f"WHERE {ident} IS NOT NULL"
            )
        else:
            con.sql(f"INSERT INTO seen_ids SELECT DISTINCT {ident} FROM c0 WHERE {ident} IS NOT NULL")

    def _versions(self, con: Any, key: str, version: str, vtype: pa.DataType) -> None:
        """Each event's previous highest version for its key (across chunks), then the health counts."""
        first = not self._state_has("seen_v")
        window = (
            f"max({version}) OVER (PARTITION BY {key} ORDER BY _partition, _offset "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
        )
        if first:
            con.sql(f"CREATE OR REPLACE TEMP TABLE c AS SELECT *, {window} AS __prev FROM c0")
        else:
            con.sql(
                "CREATE OR REPLACE TEMP TABLE c AS SELECT c1.* EXCLUDE (__w), "
                f"greatest(c1.__w, s.__maxv) AS __prev FROM (SELECT *, {window} AS __w FROM c0) c1 "
                f"LEFT JOIN seen_v s ON c1.{key} IS NOT DISTINCT FROM s.k"
            )
        dense = pa.types.is_integer(vtype) and self.source.version != "_lsn"
        gap = f"count(*) FILTER (WHERE {version} > __prev + 1)" if dense else "0"
        ooo, rep, gaps = con.sql(
            f"SELECT count(*) FILTER (WHERE {version} < __prev), "
            f"count(*) FILTER (WHERE {version} = __prev), {gap} FROM c"
        ).fetchall()[0]
        h = self.health
        h.out_of_order += int(ooo)
        if not self.source.dedupe:
            h.replayed += int(rep)
        if dense:
            h.gaps = (h.gaps or 0) + int(gaps)
        for count, cond, sample in (
            (ooo, f"{version} < __prev", h.out_of_order_sample),
            (rep if not self.source.dedupe else 0, f"{version} = __prev", h.replayed_sample),
            (gaps if dense else 0, f"{version} > __prev + 1", h.gaps_sample),
        ):
            if count and len(sample) < _SAMPLES:
                rows = con.sql(f"SELECT DISTINCT {key} FROM c WHERE {cond} LIMIT {_SAMPLES}").fetchall()
                self._sample(sample, [_plain(r[0]) for r in rows])
        if first:
            con.sql(
                f"CREATE TEMP TABLE seen_v AS SELECT {key} AS k, max({version}) AS __maxv "
                f"FROM c0 GROUP BY {key}"
            )
        else:
            con.sql(
                "CREATE OR REPLACE TEMP TABLE seen_v AS SELECT k, max(__maxv) AS __maxv FROM "
                f"(SELECT k, __maxv FROM seen_v UNION ALL SELECT {key}, max({version}) FROM c0 "
                f"GROUP BY {key}) GROUP BY k"
            )

    def _fold(self, con: Any, key: str, version: str | None) -> None:
        """Per key the row with the highest version (a tombstone ranks at the highest version seen
        before it, and wins ties by coming later), ties broken by offset order; deletes stay in the
        state as markers until the end, so an older event arriving later cannot resurrect the key."""
        veff = (
            f"CASE WHEN {_TOMB} AND {version} IS NULL THEN __prev ELSE {version} END" if version else "NULL"
        )
        rows = f"SELECT * EXCLUDE (__prev), {veff} AS __veff FROM c"
        if self._state_has("state"):
            rows = f"SELECT * FROM state UNION ALL BY NAME {rows}"
        con.sql(
            f"CREATE OR REPLACE TEMP TABLE state AS SELECT * FROM ({rows}) QUALIFY row_number() OVER "
            f"(PARTITION BY {key} ORDER BY __veff DESC NULLS LAST, _partition DESC, _offset DESC) = 1"
        )

    def _state_has(self, name: str) -> bool:
        return bool(
            self._con.sql(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{name}'").fetchall()[0][
                0
            ]
        )

    @staticmethod
    def _sample(sample: list[Any], values: list[Any]) -> None:
        for v in values:
            if len(sample) < _SAMPLES and v not in sample:
                sample.append(_plain(v))

    # -- the result --------------------------------------------------------------------------------

    def _result(self) -> pa.Table:
        source = self.source
        if source.fold:
            if self._con is None or not self._state_has("state"):
                table = pa.table({})
            else:
                table = self._con.sql(
                    f"SELECT * EXCLUDE (__veff, {_TOMB}) FROM state WHERE NOT {_TOMB}"
                ).to_arrow_table()
        else:
            table = (
                pa.concat_tables(self._parts, promote_options="permissive") if self._parts else pa.table({})
            )
            if _TOMB in table.schema.names:
                table = table.drop_columns([_TOMB])
        return _finish(source, table)


def _finish(source: KafkaReader, table: pa.Table) -> pa.Table:
    """The rows as the source returns them: message keys as text, then ``order_by=`` and ``sql=``."""
    if table.num_columns == 0:
        table = _empty(source)
    table = _text_keys(table)
    if source.order_by:
        if source.order_by not in table.schema.names:
            raise SchemaError(f"{source.describe()}: order_by: no field {source.order_by!r}")
        table = table.sort_by(
            [(source.order_by, "ascending"), ("_partition", "ascending"), ("_offset", "ascending")]
        )
    if source.sql:
        table = _run_sql(source, table)
    return table


def _in_ranges(table: pa.Table, key: list[str], ranges: list[Any]) -> pa.Array:
    """Rows whose key lies in one of the half-open ranges [lo, hi) (tuples in key order)."""
    mask = pa.array([False] * table.num_rows, pa.bool_())
    for r in ranges:
        inside = pa.array([True] * table.num_rows, pa.bool_())
        if r.lo is not None:
            inside = pc.and_(inside, _tuple_cmp(table, key, r.lo, lower=True))
        if r.hi is not None:
            inside = pc.and_(inside, _tuple_cmp(table, key, r.hi, lower=False))
        mask = pc.or_(mask, pc.fill_null(inside, False))
    return mask


def _tuple_cmp(table: pa.Table, key: list[str], bound: Sequence[Any], *, lower: bool) -> pa.ChunkedArray:
    """(k1, ..., kn) >= bound (lower) or < bound (upper), lexicographically."""
    last = table.column(key[-1])
    out = pc.greater_equal(last, bound[-1]) if lower else pc.less(last, bound[-1])
    for i in range(len(key) - 2, -1, -1):
        column, value = table.column(key[i]), bound[i]
        strict = pc.greater(column, value) if lower else pc.less(column, value)
        out = pc.or_(strict, pc.and_(pc.equal(column, value), out))
    return out


def _run_sql(source: KafkaReader, events: pa.Table) -> pa.Table:
    return run_sql(events, source.sql or "", "events", source.describe())


def _json_deletes(decoded: pa.Table) -> pa.Array:
    """Delete events inside JSON values: Debezium's flattened form (``__deleted``: true/"true") or
    an ``op``/``__op`` of "d"."""
    n = decoded.num_rows
    mask = pa.array([False] * n, pa.bool_())
    for name in ("__deleted",):
        if name in decoded.schema.names:
            col = decoded.column(name).combine_chunks()
            hit = pc.equal(col.cast(pa.string()), "true")
            mask = pc.or_(mask, pc.fill_null(hit, False))
    for name in ("__op", "op"):
        if name in decoded.schema.names and pa.types.is_string(decoded.schema.field(name).type):
            mask = pc.or_(mask, pc.fill_null(pc.equal(decoded.column(name).combine_chunks(), "d"), False))
    return mask


def _with_columns(meta: pa.Table, decoded: pa.Table) -> pa.Table:
    out = meta
    for name, column in zip(decoded.schema.names, decoded.columns, strict=True):
        if name in out.schema.names:
            raise SchemaError(f"kafka: value field {name!r} clashes with the message column of that name")
        out = out.append_column(name, column)
    return out


def _key_from_message_key(key: bytes | None, field_name: str) -> Any:
    """A tombstone's key value: the field of a JSON-object message key, else the key's text."""
    if key is None:
        return None
    try:
        parsed = json.loads(key)
    except (ValueError, UnicodeDecodeError):
        return key.decode("utf-8", "replace")
    if isinstance(parsed, dict):
        if "payload" in parsed and isinstance(parsed["payload"], dict):
            parsed = parsed["payload"]
        return parsed.get(field_name)
    return parsed


def _typed(values: list[Any], typ: pa.DataType | None) -> pa.Array:
    try:
        return pa.array(values, typ) if typ is not None else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return (
            pa.array([None if v is None else str(v) for v in values], pa.string()).cast(typ)
            if typ
            else pa.array(values)
        )


def _text_keys(table: pa.Table) -> pa.Table:
    """Message keys as text when every key is UTF-8 (the usual case), else left as bytes."""
    if "_key" not in table.schema.names or not pa.types.is_binary(table.schema.field("_key").type):
        return table
    try:
        keys = table.column("_key").cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return table
    return table.set_column(table.schema.get_field_index("_key"), "_key", keys)


def _empty(source: KafkaReader) -> pa.Table:
    fields = [
        pa.field("_key", pa.binary()),
        pa.field("_partition", pa.int32()),
        pa.field("_offset", pa.int64()),
        pa.field("_timestamp", pa.timestamp("ms", "UTC")),
        pa.field("_headers", HEADERS_TYPE),
    ]
    if source.value == "raw":
        fields.append(pa.field("_value", pa.binary()))
    return pa.schema(fields).empty_table()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value
