"""The Kafka store: a topic read as an immutable log of events, or folded into the state a correct
consumer holds. ``store.py`` is the connection (client configuration, metadata, offsets, consumer group
lag, error mapping), ``read.py`` the source, ``write.py`` the outbox repair writer (re-publishing)."""

from seamline.stores.kafka.read import KafkaSource
from seamline.stores.kafka.store import KafkaStore

__all__ = ["KafkaSource", "KafkaStore"]
