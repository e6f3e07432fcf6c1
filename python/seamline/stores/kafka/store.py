"""The Kafka store object: client configuration, topic metadata, pinned offsets, consumer group lag and
the mapping of librdkafka errors to Seamline's (through confluent-kafka, whose wheels bundle librdkafka).

Seamline reads a topic without ever being a member of a consumer group: its consumers are assigned
partitions explicitly (``assign``, no ``subscribe``), never commit, and carry a fresh ``group.id`` of
their own that no broker-side group is ever created for. A real consumer's group is only *described*
(its committed offsets, for lag).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seamline.exceptions import InvalidInputError, NotFoundError, StoreUnavailableError

_LOG = logging.getLogger("seamline.kafka")
# client settings whose value is a secret: never shown
_SECRET_SETTING = ("password", "secret", "token", "key.pem", "keystore", "credentials")


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition's retained range: messages ``low .. high - 1`` (``high`` is the end offset)."""

    partition: int
    low: int
    high: int

    @property
    def messages(self) -> int:
        return max(0, self.high - self.low)


class KafkaStore:
    """A Kafka cluster reached through ``bootstrap`` (``host:port[,host:port]``) with optional
    librdkafka ``config`` (security settings and the like)."""

    def __init__(
        self, bootstrap: str, config: Mapping[str, Any] | None = None, timeout: float = 10.0
    ) -> None:
        if not isinstance(bootstrap, str) or not bootstrap.strip():
            raise InvalidInputError("kafka: bootstrap must be 'host:port' (one or more, comma separated)")
        self.bootstrap = bootstrap.strip()
        self.config = dict(config or {})
        for reserved in ("bootstrap.servers", "group.id", "enable.auto.commit"):
            if reserved in self.config:
                raise InvalidInputError(
                    f"kafka: config {reserved!r} is set by Seamline (reads never join a group)"
                )
        self.timeout = timeout

    # -- what it shows of itself -------------------------------------------------------------------

    def describe(self) -> str:
        return f"kafka {self.bootstrap}"

    def public_config(self) -> dict[str, Any]:
        """The client settings without secrets, for reports."""
        return {
            k: ("***" if any(s in k.lower() for s in _SECRET_SETTING) else v) for k, v in self.config.items()
        }

    # -- clients -----------------------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, "logger": _LOG, **self.config}

    def consumer(self, **extra: Any) -> Any:
        """An assign-only consumer: a throwaway group id that never joins, commits or is created."""
        from confluent_kafka import Consumer

        conf = {
            **self._base(),
            "group.id": f"seamline-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **extra,
        }
        return Consumer(conf)

    def producer(self, **extra: Any) -> Any:
        from confluent_kafka import Producer

        return Producer({**self._base(), "enable.idempotence": True, "acks": "all", **extra})

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self._base())

    # -- metadata ------------------------------------------------------------------------------------

    def partitions(self, consumer: Any, topic: str) -> list[int]:
        """The topic's partition ids (NotFoundError when it does not exist)."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            meta = consumer.list_topics(topic, timeout=self.timeout)
        except KafkaException as exc:
            raise self.unavailable(exc) from None
        info = meta.topics.get(topic)
        if info is None or (
            info.error is not None
            and info.error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
        ):
            raise NotFoundError(f"kafka topic {topic!r} does not exist on {self.bootstrap}")
        if info.error is not None:
            raise StoreUnavailableError(f"kafka {self.bootstrap}: topic {topic!r}: {info.error.str()}")
        return sorted(info.partitions)

    def end_offsets(self, consumer: Any, topic: str) -> list[PartitionOffsets]:
        """Every partition's low and high watermark, asked of the broker now (not cached)."""
        from confluent_kafka import KafkaException, TopicPartition

        out = []
        for p in self.partitions(consumer, topic):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self.timeout, cached=False
                )
            except KafkaException as exc:
                raise self.unavailable(exc) from None
            out.append(PartitionOffsets(p, int(low), int(high)))
        return out

    def group_offsets(self, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
        """The committed offset of consumer group ``group`` per partition (None: nothing committed)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])]
        try:
            admin = self.admin()  # held until the future resolves: a collected client never answers
            futures = admin.list_consumer_group_offsets(request, request_timeout=self.timeout)
            result = futures[group].result(timeout=self.timeout)
        except KafkaException as exc:
            raise self.unavailable(exc) from None
        out: dict[int, int | None] = {p: None for p in partitions}
        for tp in result.topic_partitions:
            out[tp.partition] = int(tp.offset) if tp.offset >= 0 else None
        return out

    def message_time(self, consumer: Any, topic: str, partition: int, offset: int) -> float | None:
        """The timestamp (seconds since the epoch) of the message at ``offset``, or None."""
        from confluent_kafka import TopicPartition

        consumer.assign([TopicPartition(topic, partition, offset)])
        try:
            for _ in range(3):
                msg = consumer.poll(self.timeout / 3)
                if msg is None or msg.error() is not None:
                    continue
                kind, ms = msg.timestamp()
                return ms / 1000.0 if kind != 0 and ms >= 0 else None
            return None
        finally:
            consumer.unassign()

    # -- errors --------------------------------------------------------------------------------------

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """A one-line StoreUnavailableError naming the bootstrap servers and librdkafka's reason."""
        err = exc.args[0] if exc.args else exc
        text = err.str() if hasattr(err, "str") else str(err)
        return StoreUnavailableError(
            f"kafka {self.bootstrap}: {text.splitlines()[0] if text else type(exc).__name__}"
        )
