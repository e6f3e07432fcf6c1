"""Repair of the outbox hop: re-publishing, never rewriting. A topic is an immutable log, so the only
repair it takes is the event that was committed to the outbox and never published (a relay that
stalled, a dual write that died). Such events are published again with their original key (the
``key_field`` of the source, as the relay keys them), event id and payload; consumers dedupe on the
id, so publishing twice is harmless and re-applying a plan is idempotent (ids already in the topic
are not published again).

What writing more cannot fix is counted as failed with its reason, never "fixed": an event in the
topic whose payload differs from the outbox row (changed), events with no outbox row (extra) and
events published twice (duplicate): consumers must dedupe and ignore them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from seamline.exceptions import StoreUnavailableError
from seamline.jsonsafe import json_safe
from seamline.stores.kafka.store import KafkaStore
from seamline.stores.protocols import PlanData, WriteCounts

REPAIR_HEADER = "seamline-repair"


class KafkaOutboxWriter:
    """Publishes a repair plan's missing events to ``topic``, keyed by their ``key_field``;
    ``read_events`` reads the topic's events as they are now (from the start)."""

    def __init__(
        self, store: KafkaStore, topic: str, key_field: str | None, read_events: Callable[[], pa.Table]
    ) -> None:
        self.store, self.topic, self.key_field, self.read_events = store, topic, key_field, read_events

    def apply(self, plan: PlanData) -> WriteCounts:
        errors: list[str] = []
        failed = 0
        if plan.deletes.num_rows:
            failed += plan.deletes.num_rows
            errors.append(
                f"{plan.deletes.num_rows} extra event(s) (no outbox row, e.g. "
                f"{_sample(plan.deletes, plan.key)}): a topic cannot unpublish; consumers must ignore them"
            )
        if plan.dedupes.num_rows:
            failed += plan.dedupes.num_rows
            errors.append(
                f"{plan.dedupes.num_rows} event(s) published more than once (e.g. "
                f"{_sample(plan.dedupes, plan.key)}): not repairable in the log; consumers must dedupe "
                "on the id"
            )
        if not plan.upserts.num_rows:
            return WriteCounts(failed=failed, errors=errors)

        present = self._published(plan.key)
        to_publish, unchanged, not_fixable = [], 0, []
        for row in plan.upserts.to_pylist():
            ident = tuple(row[k] for k in plan.key)
            if ident not in present:
                to_publish.append(row)
            elif all(_plain(present[ident].get(c)) == _plain(v) for c, v in row.items()):
                unchanged += 1  # already in the topic as planned: published by an earlier apply
            else:
                not_fixable.append(ident)  # the topic holds this event with another payload
        if not_fixable:
            failed += len(not_fixable)
            errors.append(
                f"{len(not_fixable)} event(s) in the topic differ from the outbox (e.g. "
                f"{_fmt(not_fixable[0])}): a published event cannot be changed; consumers keep the first"
            )
        published = self._publish(to_publish, errors)
        return WriteCounts(
            applied=published + unchanged,
            unchanged=unchanged,
            failed=failed + len(to_publish) - published,
            errors=errors,
        )

    def _publish(self, rows: list[dict[str, Any]], errors: list[str]) -> int:
        if not rows:
            return 0
        producer = self.store.producer()
        delivered: list[str] = []
        failures: list[str] = []

        def report(err: Any, msg: Any) -> None:
            (failures if err is not None else delivered).append(err.str() if err is not None else "")

        key_field = self.key_field
        for row in rows:
            key = row.get(key_field) if key_field else None
            producer.produce(
                self.topic,
                key=None if key is None else str(key).encode(),
                value=json.dumps(json_safe(row), separators=(",", ":")).encode(),
                headers=[(REPAIR_HEADER, b"1")],
                on_delivery=report,
            )
            producer.poll(0)
        left = producer.flush(self.store.timeout * 3)
        if left:
            raise StoreUnavailableError(
                f"kafka {self.store.bootstrap}: {left} re-published event(s) not acknowledged in time"
            )
        if failures:
            errors.append(f"{len(failures)} event(s) not published: {failures[0]}")
        return len(delivered)

    def _published(self, key: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The events in the topic now, by event id (read again from the start, so re-applying a
        plan publishes nothing twice)."""
        table = self.read_events()
        if any(k not in table.schema.names for k in key):
            return {}
        return {tuple(r[k] for k in key): r for r in table.to_pylist()}


def _plain(value: Any) -> Any:
    """A value as it reads in a JSON event (times in ISO form, decimals as text)."""
    return json_safe(value)


def _sample(table: pa.Table, key: list[str]) -> str:
    row = table.slice(0, 1).select(key).to_pylist()[0]
    return _fmt(tuple(row.values()))


def _fmt(ident: tuple[Any, ...]) -> str:
    return str(ident[0]) if len(ident) == 1 else str(ident)
