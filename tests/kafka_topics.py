"""Test topics on the real Kafka broker, shared by the Kafka tests (the ``topics`` fixture of
conftest.py): uniquely named topics created on demand and deleted at the end, and producers to
fill them (JSON events by message key, or raw messages to a chosen partition).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

Event = tuple[Any, dict[str, Any] | None]  # (message key, value; None = tombstone)
RawMessage = tuple[int, bytes | None, bytes | None]  # (partition, key, value; None = tombstone)


class Topics:
    """Creates topics on the real broker, produces to them, deletes them at `close()`."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        # idempotent: a retried batch never lands out of order (the oracles assume production order)
        self.producer = self.new_producer(**{"enable.idempotence": True})
        self.created: list[str] = []

    def new_producer(self, **conf: object) -> Producer:
        """A producer of its own (compression, transactions...)."""
        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, **conf})

    def create(self, partitions: int = 3) -> str:
        name = f"seamline-test-{uuid.uuid4().hex[:10]}"
        self.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        self.created.append(name)
        return name

    def produce(
        self,
        topic: str,
        events: list[Event],
        headers: Callable[[dict[str, Any]], list[tuple[str, bytes]]] | None = None,
    ) -> None:
        """JSON values, the message key the event's key as text (partitioned by it)."""
        for key, value in events:
            self.producer.produce(
                topic,
                key=None if key is None else str(key).encode(),
                value=None if value is None else json.dumps(value).encode(),
                headers=headers(value) if headers and value is not None else None,
            )
        assert self.producer.flush(30) == 0

    def produce_raw(self, topic: str, messages: list[RawMessage]) -> None:
        """Messages as given, each to its partition."""
        for partition, key, value in messages:
            self.producer.produce(topic, key=key, value=value, partition=partition)
        assert self.producer.flush(30) == 0

    def close(self) -> None:
        if self.created:
            for f in self.admin.delete_topics(self.created).values():
                f.result(timeout=30)
