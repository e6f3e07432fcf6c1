"""``fold="latest"`` in Rust (``seamline._core.kafka_fold``) against the DuckDB fold
(``reader="confluent"``), on the real broker: seeded random streams of JSON and Debezium events
over several partitions, with out-of-order versions, replays, gaps, null versions, delete markers,
tombstones and undecodable values; the folded table and the stream health must be the same. Then
the failures: versions of mixed types (SchemaError, one line), a missing key field, a broker gone.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pyarrow as pa
import pytest
from kafka_topics import Topics

from seamline.exceptions import SchemaError, StoreUnavailableError
from seamline.stores.kafka.read import HEADERS_TYPE, KafkaReader
from seamline.stores.kafka.store import PartitionOffsets

pytestmark = pytest.mark.services

PARTITIONS = 3


def _json_stream(seed: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """Keys confined to a partition (the message key is the key); seed 1 uses text keys, seed 2
    text versions (no gaps then)."""
    rng = random.Random(seed)
    out: list[tuple[int, bytes | None, bytes | None]] = []
    latest: dict[int, int] = {}
    for i in range(900):
        k = rng.randrange(40)
        key: Any = f"sku-{k}" if seed == 1 else k
        key_bytes = str(key).encode()
        partition = k % PARTITIONS
        roll = rng.random()
        cur = latest.get(k, 0)
        if roll < 0.55:
            version: int | None = cur + 1
        elif roll < 0.65:
            version = cur  # a replay
        elif roll < 0.75:
            version = max(0, cur - rng.randrange(1, 4))  # out of order
        elif roll < 0.82:
            version = cur + rng.randrange(2, 5)  # a gap
        elif roll < 0.85:
            version = None
        elif roll < 0.91:
            # a delete marker, with or without a version of its own
            v = cur + 1 if rng.random() < 0.5 else None
            value = {"id": key, "v": _v(v, seed), "name": f"gone {k}", "price": 0.5, "__deleted": "true"}
            out.append((partition, key_bytes, json.dumps(value).encode()))
            continue
        elif roll < 0.97:
            out.append((partition, key_bytes, None))  # a tombstone
            continue
        else:
            out.append((partition, key_bytes, b"not json {" if i % 2 else b"[1, 2]"))
            continue
        if version is not None:
            latest[k] = max(cur, version)
        value = {
            "id": key,
            "v": _v(version, seed),
            "name": f"p{k} #{i}",
            "price": k + 0.25,
            "__deleted": "false",
        }
        out.append((partition, key_bytes, json.dumps(value).encode()))
    return out


def _v(version: int | None, seed: int) -> Any:
    if version is None or seed != 2:
        return version
    return f"v{version:05d}"


def _debezium_stream(seed: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """Change events of rows keyed by id (the message key {"id": k}), deletes followed by a
    tombstone; the LSN mostly rising, sometimes repeated or going back (a replayed range)."""
    rng = random.Random(seed)
    out: list[tuple[int, bytes | None, bytes | None]] = []
    lsn = 1000
    for i in range(700):
        k = rng.randrange(30)
        partition = k % PARTITIONS
        key = json.dumps({"id": k}).encode()
        roll = rng.random()
        lsn += rng.randrange(1, 50)
        at = lsn if roll < 0.8 else lsn - rng.randrange(0, 400)
        row = {"id": k, "name": f"p{k} #{i}", "qty": i}
        if rng.random() < 0.12:
            event = {
                "before": row,
                "after": None,
                "op": "d",
                "source": {"lsn": at},
                "ts_ms": 1_700_000_000_000 + i,
            }
            out.append((partition, key, json.dumps(_wrap(event, seed)).encode()))
            out.append((partition, key if i % 3 else json.dumps({"payload": {"id": k}}).encode(), None))
            continue
        op = "c" if rng.random() < 0.3 else "u"
        event = {
            "before": None,
            "after": row,
            "op": op,
            "source": {"lsn": at},
            "ts_ms": 1_700_000_000_000 + i,
        }
        out.append((partition, key, json.dumps(_wrap(event, seed)).encode()))
    return out


def _wrap(event: dict[str, Any], seed: int) -> dict[str, Any]:
    """Seed 1: every event in the schema/payload wrapper (a topic has one converter setting)."""
    return {"schema": {}, "payload": event} if seed == 1 else event


def _fold_both(topics: Topics, topic: str, **kwargs: Any) -> tuple[KafkaReader, KafkaReader]:
    rust = KafkaReader(topics.bootstrap, topic, fold="latest", reader="rust", **kwargs)
    duck = KafkaReader(topics.bootstrap, topic, fold="latest", reader="confluent", **kwargs)
    assert rust._folds_in_rust() and not duck._folds_in_rust()
    rust.pin()
    duck.pin()
    return rust, duck


def _message_types(table: pa.Table) -> pa.Table:
    """The DuckDB fold's message columns as the raw message schema types: its round trip through
    DuckDB turns ``_timestamp`` into microseconds at "Etc/UTC" and names the header list's item "l"
    (the Rust fold keeps the types every other Kafka read has)."""
    for name, typ in (("_timestamp", pa.timestamp("ms", "UTC")), ("_headers", HEADERS_TYPE)):
        if name in table.schema.names:
            table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(typ))
    return table


def _same(rust: KafkaReader, duck: KafkaReader) -> None:
    a, b = rust._load(), _message_types(duck._load())
    assert a.schema == b.schema
    order = [("_partition", "ascending"), ("_offset", "ascending")]
    assert a.sort_by(order).to_pylist() == b.sort_by(order).to_pylist()
    ha, hb = rust.health, duck.health
    assert ha is not None and hb is not None
    da, db = ha.to_dict(), hb.to_dict()
    for name in ("replayed", "out_of_order", "gaps", "undecodable"):
        sa, sb = (da[name] or {}).pop("sample", []), (db[name] or {}).pop("sample", [])
        # DuckDB picks up to 5 sample keys in no set order: the same set when it found fewer
        if len(sb) < 5:
            assert sorted(map(str, sa)) == sorted(map(str, sb)), name
        else:
            assert len(sa) == 5, name
    assert da == db
    assert rust.pin().detail["newest_message_time"] == duck.pin().detail["newest_message_time"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rust_fold_of_json_events_equals_the_duckdb_fold(topics: Topics, seed: int) -> None:
    topic = topics.create()
    topics.produce_raw(topic, _json_stream(seed))
    rust, duck = _fold_both(topics, topic, key_field="id", version="v")
    _same(rust, duck)
    h = rust.health
    assert h is not None and h.out_of_order and h.replayed and h.tombstones and h.undecodable
    assert (h.gaps is None) == (seed == 2)
    assert 0 < rust._load().num_rows < 40


def test_the_rust_fold_by_message_key_without_a_version_equals_the_duckdb_fold(topics: Topics) -> None:
    topic = topics.create()
    topics.produce_raw(topic, _json_stream(3))
    rust, duck = _fold_both(topics, topic)
    _same(rust, duck)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_rust_fold_of_debezium_events_equals_the_duckdb_fold(topics: Topics, seed: int) -> None:
    topic = topics.create()
    topics.produce_raw(topic, _debezium_stream(seed))
    rust, duck = _fold_both(topics, topic, value="debezium", key_field="id")
    _same(rust, duck)
    assert rust.health is not None and rust.health.out_of_order and rust.health.gaps is None
    rust, duck = _fold_both(topics, topic, value="debezium", key_field="id", version="_ts_ms")
    _same(rust, duck)


def test_dedupe_stays_on_the_duckdb_path(kafka_bootstrap: str) -> None:
    src = KafkaReader(kafka_bootstrap, "t", key_field="id", fold="latest", version="v", dedupe="event_id")
    assert src.reader == "rust" and not src._folds_in_rust()


def test_versions_of_mixed_types_are_a_schema_error(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    topics.produce_raw(topic, [(0, b"1", b'{"id": 1, "v": 1}'), (0, b"1", b'{"id": 1, "v": "2"}')])
    src = KafkaReader(topics.bootstrap, topic, key_field="id", fold="latest", version="v", reader="rust")
    with pytest.raises(SchemaError) as e:
        src.pin()
    text = str(e.value)
    assert "mixes types" in text and "offset 1" in text and "\n" not in text


def test_a_key_field_in_no_event_is_a_schema_error(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    topics.produce_raw(topic, [(0, b"1", b'{"id": 1, "v": 1}')])
    src = KafkaReader(topics.bootstrap, topic, key_field="sku", fold="latest", version="v", reader="rust")
    with pytest.raises(SchemaError, match="no field 'sku' in the events"):
        src.pin()


def test_a_broker_gone_during_the_fold_is_store_unavailable() -> None:
    src = KafkaReader("127.0.0.1:1", "gone", key_field="id", fold="latest", version="v", reader="rust")
    src.store.timeout = 2.0
    src.offsets = [PartitionOffsets(0, 0, 10)]
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as e:
        src._load()
    assert time.monotonic() - started < 8
    assert str(e.value).startswith("kafka 127.0.0.1:1: ") and "\n" not in str(e.value)


def test_an_empty_topic_folds_to_no_rows(topics: Topics) -> None:
    topic = topics.create(partitions=2)
    src = KafkaReader(topics.bootstrap, topic, key_field="id", fold="latest", version="v", reader="rust")
    assert src._load().num_rows == 0
    assert isinstance(src._load(), pa.Table)
