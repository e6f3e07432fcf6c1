"""The pipeline's consumers: a real consumer group each, reading from its committed offsets to the end
of the topic and committing after it has written.

- ``ProductIndexer``: product change events (Debezium) into the search index, idempotently: each
  document is written with ``version_type=external_gte`` and the row's version, so a replayed or late
  older event never overwrites a newer document. A message it cannot handle is skipped (logged as a
  dead letter) so one bad event does not stop the catalog: the poison-message fault.
- ``OrderLander``: order events into the lake: bronze (the raw events, appended) and gold (revenue per
  day, a running total). It dedupes on the event id over a bounded window of recent ids (a state
  store with a retention): the relay's quick re-publish is caught, an offset range replayed from long
  ago is not, and is counted again.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from seamline.exceptions import StoreUnavailableError

Message = Any  # confluent_kafka.Message


def published(bootstrap: str, topic: str) -> int:
    """How many messages `topic` has ever had written (the sum of its partitions' end offsets; 0 while
    the topic does not exist yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "seamline-demo-probe"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in meta.partitions
        )
    finally:
        consumer.close()


def drain(bootstrap: str, topic: str, group: str, handle: Callable[[list[Message]], None]) -> int:
    """Hand every message of `topic` past group `group`'s committed offsets, up to the end offsets
    now, to `handle` (in offset order per partition), then commit the end offsets. The group is
    assigned its partitions (no rebalance to wait for) and commits like any consumer."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in partitions
        }
        starts = {p: committed[p] if committed.get(p, -1) >= 0 else OFFSET_BEGINNING for p in partitions}
        todo = {p for p in partitions if ends[p] > max(0, starts[p])}
        messages: list[Message] = []
        if todo:
            consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
            deadline = time.monotonic() + 120
            while todo:
                if time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"{group}: {topic} partitions {sorted(todo)} not read to their end in 120 s"
                    )
                # consume() waits for all 500 or the timeout: a short one, so a small backlog is quick
                for msg in consumer.consume(500, timeout=0.2):
                    partition, offset = msg.partition(), msg.offset()
                    if msg.error() is not None or partition is None or offset is None:
                        continue
                    if offset < ends[partition]:
                        messages.append(msg)
                    if offset >= ends[partition] - 1:
                        todo.discard(partition)
        messages.sort(key=lambda m: (m.partition(), m.offset()))
        handle(messages)
        consumer.commit(offsets=[TopicPartition(topic, p, ends[p]) for p in partitions], asynchronous=False)
        return len(messages)
    finally:
        consumer.close()


class ProductIndexer:
    def __init__(self, bootstrap: str, topic: str, group: str, url: str, index: str) -> None:
        self.bootstrap, self.topic, self.group, self.index = bootstrap, topic, group, index
        from opensearchpy import OpenSearch

        self.client = OpenSearch(hosts=[url], timeout=60)
        self.dead_letters: list[dict[str, Any]] = []

    MAPPING = {
        "properties": {
            "id": {"type": "long"},
            "sku": {"type": "keyword"},
            "name": {"type": "keyword"},
            "price": {"type": "double"},
            "stock": {"type": "long"},
            "version": {"type": "long"},
        }
    }

    def create_index(self) -> None:
        self.client.indices.create(
            index=self.index, body={"settings": {"number_of_replicas": 0}, "mappings": self.MAPPING}
        )

    @staticmethod
    def document(row: dict[str, Any]) -> dict[str, Any]:
        # the consumer's bug: a price is always expected (NULL, "price on request", raises here)
        return {
            "id": row["id"],
            "sku": row["sku"],
            "name": row["name"],
            "price": float(row["price"]),
            "stock": row["stock"],
            "version": row["version"],
        }

    def _apply(self, messages: list[Message]) -> None:
        from opensearchpy import helpers

        actions = []
        for msg in messages:
            if msg.value() is None:
                continue  # the tombstone after a delete: the delete event itself removed the document
            try:
                event = json.loads(msg.value())
                if event["op"] == "d":
                    before = event["before"]
                    actions.append(
                        {
                            "_op_type": "delete",
                            "_index": self.index,
                            "_id": str(before["id"]),
                            "version": before["version"],
                            "version_type": "external_gte",
                        }
                    )
                else:
                    doc = self.document(event["after"])
                    actions.append(
                        {
                            "_index": self.index,
                            "_id": str(doc["id"]),
                            "_source": doc,
                            "version": doc["version"],
                            "version_type": "external_gte",
                        }
                    )
            except Exception as exc:  # a poison message: logged as a dead letter, skipped
                key = json.loads(msg.key()) if msg.key() else None
                self.dead_letters.append(
                    {"partition": msg.partition(), "offset": msg.offset(), "key": key, "error": repr(exc)}
                )
        if actions:
            _, errors = helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for")
            for item in errors:  # 409: an older event than the document holds (idempotence at work)
                status = next(iter(item.values())).get("status")
                if status not in (404, 409):
                    raise StoreUnavailableError(f"indexer: {item}")

    def drain(self) -> int:
        return drain(self.bootstrap, self.topic, self.group, self._apply)


BRONZE = pa.schema(
    [
        ("event_id", pa.string()),
        ("aggregate_id", pa.int64()),
        ("type", pa.string()),
        ("payload", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
    ]
)
GOLD = pa.schema([("day", pa.date32()), ("revenue", pa.decimal128(14, 2))])


def lake_catalog(lake: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("shop", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}/wh")


class OrderLander:
    WINDOW = 32  # event ids remembered for dedupe

    def __init__(self, bootstrap: str, topic: str, group: str, lake: Path) -> None:
        self.bootstrap, self.topic, self.group, self.lake = bootstrap, topic, group, lake
        self.recent: deque[str] = deque()
        self.seen: set[str] = set()
        self.deduped: list[str] = []

    def create_tables(self) -> None:
        (self.lake / "wh").mkdir(parents=True, exist_ok=True)
        catalog = lake_catalog(self.lake)
        catalog.create_namespace("shop")
        catalog.create_table("shop.orders_bronze", schema=BRONZE)
        catalog.create_table("shop.revenue_gold", schema=GOLD)

    def _first_time(self, event_id: str) -> bool:
        if event_id in self.seen:
            return False
        self.recent.append(event_id)
        self.seen.add(event_id)
        if len(self.recent) > self.WINDOW:
            self.seen.discard(self.recent.popleft())
        return True

    def _apply(self, messages: list[Message]) -> None:
        rows = []
        revenue: dict[dt.date, decimal.Decimal] = {}
        for msg in messages:
            event = json.loads(msg.value())
            if not self._first_time(event["event_id"]):
                self.deduped.append(event["event_id"])
                continue
            order = json.loads(event["payload"])
            day = dt.date.fromisoformat(order["ordered_at"][:10])
            revenue[day] = revenue.get(day, decimal.Decimal(0)) + decimal.Decimal(order["amount"])
            rows.append(
                {
                    "event_id": event["event_id"],
                    "aggregate_id": event["aggregate_id"],
                    "type": event["type"],
                    "payload": event["payload"],
                    "created_at": dt.datetime.fromisoformat(event["created_at"]),
                    "kafka_partition": msg.partition(),
                    "kafka_offset": msg.offset(),
                }
            )
        if not rows:
            return
        catalog = lake_catalog(self.lake)
        catalog.load_table("shop.orders_bronze").append(pa.Table.from_pylist(rows, BRONZE))
        gold = catalog.load_table("shop.revenue_gold")
        totals = {r["day"]: r["revenue"] for r in gold.scan().to_arrow().to_pylist()}
        first = not totals
        for day, amount in revenue.items():
            totals[day] = totals.get(day, decimal.Decimal(0)) + amount
        table = pa.Table.from_pylist([{"day": d, "revenue": v} for d, v in sorted(totals.items())], GOLD)
        if first:
            gold.append(table)  # nothing to replace yet (an overwrite would warn it deleted nothing)
        else:
            gold.overwrite(table)

    def drain(self) -> int:
        return drain(self.bootstrap, self.topic, self.group, self._apply)
