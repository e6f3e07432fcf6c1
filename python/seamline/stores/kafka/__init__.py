"""The Kafka store: a topic read as an immutable log of events, or folded into the state a correct
consumer holds. ``store.py`` is the connection (client configuration, metadata, offsets, consumer group
lag, error mapping), ``read.py`` the source, ``write.py`` the outbox repair writer (re-publishing),
``cdc.py`` the CDC hop's replication slots; ``ADAPTERS`` registers it (`seamline.stores.registry`)."""

from __future__ import annotations

from typing import Any

from seamline.exceptions import InvalidInputError
from seamline.stores.kafka.read import KafkaReader
from seamline.stores.kafka.store import KafkaStore
from seamline.stores.kafka.write import KafkaOutboxWriter
from seamline.stores.protocols import (
    Embed,
    RangePushdown,
    Repairable,
    RepairWriter,
    Replayable,
    Source,
    Versioned,
)
from seamline.stores.registry import StoreAdapter


class KafkaSource(KafkaReader):
    """A topic (`KafkaReader`) that an outbox repair can re-publish events to."""

    def repair_writer(self, embed: Embed | None = None) -> KafkaOutboxWriter:
        """The outbox writer: publishes the plan's missing events (key from ``key_field``, the row
        as the JSON value); what an immutable log cannot fix (changed, extra, duplicated events) is
        reported as failed, never written."""
        if embed is not None:
            raise InvalidInputError(f"{self.describe()}: a topic has no vector columns to embed")
        if self.fold or self.sql:
            raise InvalidInputError(
                f"{self.describe()}: only a topic read as events (no fold=, no sql=) can be repaired by "
                "re-publishing; a folded state or an aggregate is repaired upstream"
            )

        def read_events() -> Any:
            return KafkaReader(
                self.store.bootstrap,
                self.topic,
                value=self.value,
                key_field=self.key_field,
                store=self.store,
                reader=self.reader,
            )._load()

        return KafkaOutboxWriter(self.store, self.topic, self.key_field, read_events)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> KafkaSource:
    return KafkaSource(
        store.bootstrap,
        side.topic,
        config=dict(store.config),
        reader=getattr(store, "reader", None),
        **dict(side.stream),
    )


def _conforms(
    source: KafkaSource, writer: KafkaOutboxWriter
) -> tuple[Source, RangePushdown, Replayable, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, source, writer


ADAPTERS = {"kafka": StoreAdapter(open=KafkaSource, from_contract=from_contract)}

__all__ = ["ADAPTERS", "KafkaOutboxWriter", "KafkaReader", "KafkaSource", "KafkaStore"]
