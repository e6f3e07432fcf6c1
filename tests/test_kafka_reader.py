"""The Kafka source's two readers against the real broker: ``rust`` (``seamline._core``'s
``kafka_fetch_stream``, the default) and ``confluent`` (confluent-kafka's Python client).

Which reader a source gets (and why it falls back), that both read the same rows from compressed
batches, headers, tombstones, an empty partition, aborted transactions and commit markers, that the
pinned end offsets hold while a producer keeps writing, and the failures: a broker gone after the
pin (StoreUnavailableError, one line). Ctrl-C mid-read: tests/test_kafka_interrupt.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pyarrow as pa
import pytest
from kafka_topics import Topics

import seamline as sl
from seamline.exceptions import InvalidInputError, StoreUnavailableError
from seamline.stores.kafka import read as kafka_read
from seamline.stores.kafka.read import KafkaReader
from seamline.stores.kafka.store import PartitionOffsets

pytestmark = pytest.mark.services


def _rows(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: (r["_partition"], r["_offset"]))


# -- the choice of reader -------------------------------------------------------------------------------


def test_the_rust_reader_is_the_default_and_security_settings_fall_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(kafka_read.READER_ENV, raising=False)
    assert KafkaReader("127.0.0.1:1", "t").reader == "rust"
    assert KafkaReader("127.0.0.1:1", "t", config={"client.id": "x"}).reader == "rust"
    sasl = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.password": "s3cret"}
    assert KafkaReader("127.0.0.1:1", "t", config=sasl).reader == "confluent"
    assert KafkaReader("127.0.0.1:1", "t", config={"ssl.ca.location": "/ca.pem"}).reader == "confluent"
    assert KafkaReader("127.0.0.1:1", "t", config={"error_cb": print}).reader == "confluent"
    with pytest.raises(InvalidInputError, match="reader 'rust' cannot serve security.protocol=sasl_ssl") as e:
        KafkaReader("127.0.0.1:1", "t", config=sasl, reader="rust")
    assert "s3cret" not in str(e.value)
    with pytest.raises(InvalidInputError, match="kafka reader 'java'"):
        KafkaReader("127.0.0.1:1", "t", reader="java")
    monkeypatch.setenv(kafka_read.READER_ENV, "confluent")
    assert KafkaReader("127.0.0.1:1", "t").reader == "confluent"
    assert sl.kafka("127.0.0.1:1", "t", reader="rust").reader == "rust"  # type: ignore[attr-defined]


def test_the_contract_names_the_reader(tmp_path: pytest.TempPathFactory) -> None:
    from seamline.contract.schema import KafkaStore

    assert KafkaStore.model_validate({"type": "kafka", "bootstrap": "b:1", "reader": "confluent"}).reader == (
        "confluent"
    )


# -- both readers, the same rows --------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "zstd", "snappy", "gzip", "none"])
def test_both_readers_read_the_same_rows_from_compressed_batches(topics: Topics, compression: str) -> None:
    topic = topics.create(partitions=3)
    p = topics.new_producer(**{"compression.type": compression, "batch.size": 1 << 16})
    for i in range(3000):
        headers = [("event_id", f"e{i}".encode()), ("empty", None)] if i % 7 == 0 else None
        value = None if i % 11 == 0 else json.dumps({"id": i % 50, "n": i, "name": f"x{i}"}).encode()
        # partition 2 stays empty
        p.produce(topic, key=str(i % 50).encode(), value=value, headers=headers, partition=i % 2)  # type: ignore[attr-defined]
    assert p.flush(30) == 0  # type: ignore[attr-defined]
    rust = KafkaReader(topics.bootstrap, topic, reader="rust")
    confluent = KafkaReader(topics.bootstrap, topic, reader="confluent")
    a, b = rust._load(), confluent._load()
    assert a.num_rows == 3000 and a.schema == b.schema
    assert _rows(a) == _rows(b)
    assert rust.pin().detail["health"] == confluent.pin().detail["health"]
    # by event id, not by position: a producer retry on a just-created topic may reorder its batches
    # (both readers then agree on the reordered log, as checked above)
    with_headers = {r["_headers"][0]["value"]: r["_headers"] for r in _rows(a) if r["_headers"]}
    assert len(with_headers) == len(range(0, 3000, 7))
    assert with_headers[b"e0"] == [
        {"key": "event_id", "value": b"e0"},
        {"key": "empty", "value": None},
    ]
    assert rust.pin().detail["end_offsets"]["2"] == 0
    folded = KafkaReader(topics.bootstrap, topic, key_field="id", fold="latest", version="n", reader="rust")
    oracle = KafkaReader(
        topics.bootstrap, topic, key_field="id", fold="latest", version="n", reader="confluent"
    )
    assert sorted(folded._load().to_pylist(), key=lambda r: r["id"]) == sorted(
        oracle._load().to_pylist(), key=lambda r: r["id"]
    )


def test_aborted_transactions_are_skipped_and_a_commit_marker_ends_the_read(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    p = topics.new_producer(**{"transactional.id": f"tx-{uuid.uuid4().hex}"})
    p.init_transactions(30)  # type: ignore[attr-defined]
    for committed in (True, False, True):
        p.begin_transaction()  # type: ignore[attr-defined]
        for i in range(3):
            p.produce(topic, value=json.dumps({"i": i, "committed": committed}).encode())  # type: ignore[attr-defined]
        assert p.flush(30) == 0  # type: ignore[attr-defined]  # on the log before the abort
        if committed:
            p.commit_transaction(30)  # type: ignore[attr-defined]
        else:
            p.abort_transaction(30)  # type: ignore[attr-defined]
    for reader in ("rust", "confluent"):
        src = KafkaReader(topics.bootstrap, topic, reader=reader)
        started = time.monotonic()
        table = src._load()
        assert table.column("committed").to_pylist() == [True] * 6, reader
        assert src.pin().detail["end_offsets"]["0"] == 12  # 9 records and 3 markers
        if reader == "rust":
            assert time.monotonic() - started < 3  # the partition's end is known, not waited for


def test_pinned_end_offsets_hold_while_a_producer_keeps_writing(topics: Topics) -> None:
    topic = topics.create(partitions=2)
    p = topics.new_producer()
    for i in range(2000):
        p.produce(topic, value=json.dumps({"i": i}).encode(), partition=i % 2)  # type: ignore[attr-defined]
    assert p.flush(30) == 0  # type: ignore[attr-defined]
    src = KafkaReader(topics.bootstrap, topic, reader="rust")
    consumer = src.store.consumer()
    src.offsets = src.store.end_offsets(consumer, topic)  # the pin
    consumer.close()
    stop = threading.Event()

    def keep_writing() -> None:
        i = 2000
        while not stop.is_set():
            p.produce(topic, value=json.dumps({"i": i}).encode(), partition=i % 2)  # type: ignore[attr-defined]
            p.poll(0)  # type: ignore[attr-defined]
            i += 1
        p.flush(30)  # type: ignore[attr-defined]

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.5)
        table = src._load()
    finally:
        stop.set()
        writer.join()
    assert sorted(table.column("i").to_pylist()) == list(range(2000))


# -- failures ------------------------------------------------------------------------------------------


def test_a_broker_gone_after_the_pin_is_store_unavailable() -> None:
    src = KafkaReader("127.0.0.1:1", "gone", reader="rust")
    src.store.timeout = 2.0
    src.offsets = [PartitionOffsets(0, 0, 10), PartitionOffsets(1, 0, 5)]  # pinned, then the broker went
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as e:
        src._load()
    assert time.monotonic() - started < 8
    text = str(e.value)
    assert text.startswith("kafka 127.0.0.1:1: ") and "\n" not in text


def test_an_error_that_crossed_the_stream_keeps_its_class() -> None:
    err = kafka_read._stream_error(
        OSError("External error: seamline.exceptions.InvalidInputError: kafka b:1: config: bad\nmore"),
        "kafka b:1",
    )
    assert isinstance(err, InvalidInputError) and str(err) == "kafka b:1: config: bad"
    other = kafka_read._stream_error(OSError("socket closed"), "kafka b:1")
    assert isinstance(other, StoreUnavailableError) and str(other) == "kafka b:1: socket closed"
