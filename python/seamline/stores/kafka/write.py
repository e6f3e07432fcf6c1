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
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from seamline.exceptions import InvalidInputError, StoreUnavailableError
from seamline.jsonsafe import json_safe

if TYPE_CHECKING:
    from seamline.repair.plan import RepairPlan
    from seamline.stores.kafka.read import KafkaSource

REPAIR_HEADER = "seamline-repair"


class KafkaOutboxWriter:
    """Publishes a repair plan's missing events to the source's topic."""

    def __init__(self, source: KafkaSource) -> None:
        if source.fold or source.sql:
            raise InvalidInputError(
                f"{source.describe()}: only a topic read as events (no fold=, no sql=) can be repaired by "
                "re-publishing; a folded state or an aggregate is repaired upstream"
            )
        self.source = source

    def apply(self, plan: RepairPlan) -> dict[str, Any]:
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
            return {"applied": 0, "skipped_newer": 0, "failed": failed, "errors": errors}

        present = self._published_ids(plan.key)
        changed = self._changed_keys(plan)
        rows = plan.upserts.to_pylist()
        to_publish, applied, not_fixable = [], 0, []
        for row in rows:
            ident = tuple(row[k] for k in plan.key)
            if ident in changed:
                not_fixable.append(ident)
            elif ident in present:
                applied += 1  # already in the topic: published by an earlier apply of this plan
            else:
                to_publish.append(row)
        if not_fixable:
            failed += len(not_fixable)
            errors.append(
                f"{len(not_fixable)} event(s) in the topic differ from the outbox (e.g. "
                f"{_fmt(not_fixable[0])}): a published event cannot be changed; consumers keep the first"
            )
        applied += self._publish(to_publish, errors)
        return {"applied": applied, "skipped_newer": 0, "failed": failed, "errors": errors}

    def _publish(self, rows: list[dict[str, Any]], errors: list[str]) -> int:
        if not rows:
            return 0
        source = self.source
        producer = source.store.producer()
        delivered: list[str] = []
        failures: list[str] = []

        def report(err: Any, msg: Any) -> None:
            (failures if err is not None else delivered).append(err.str() if err is not None else "")

        key_field = source.key_field
        for row in rows:
            key = row.get(key_field) if key_field else None
            producer.produce(
                source.topic,
                key=None if key is None else str(key).encode(),
                value=json.dumps(json_safe(row), separators=(",", ":")).encode(),
                headers=[(REPAIR_HEADER, b"1")],
                on_delivery=report,
            )
            producer.poll(0)
        left = producer.flush(source.store.timeout * 3)
        if left:
            raise StoreUnavailableError(
                f"kafka {source.store.bootstrap}: {left} re-published event(s) not acknowledged in time"
            )
        if failures:
            errors.append(f"{len(failures)} event(s) not published: {failures[0]}")
        return len(delivered)

    def _published_ids(self, key: list[str]) -> set[tuple[Any, ...]]:
        """The event ids in the topic now (read again from the start: idempotent re-application)."""
        from seamline.stores.kafka.read import KafkaSource

        s = self.source
        fresh = KafkaSource(s.store.bootstrap, s.topic, value=s.value, key_field=s.key_field, store=s.store)
        table = fresh._load()
        missing = [k for k in key if k not in table.schema.names]
        if missing:
            return set()
        columns = [table.column(k).to_pylist() for k in key]
        return set(zip(*columns, strict=True))

    @staticmethod
    def _changed_keys(plan: RepairPlan) -> set[tuple[Any, ...]]:
        """Keys the reconcile found in both, with different values (only known with its result)."""
        if plan.result is None:
            return set()
        diffs = plan.result.settled
        names = [s for s, _ in plan.result.seam.key]
        changed = diffs.filter(diffs["kind"] == "changed").select(names)
        return {tuple(r) for r in changed.iter_rows()}


def _sample(table: pa.Table, key: list[str]) -> str:
    row = table.slice(0, 1).select(key).to_pylist()[0]
    return _fmt(tuple(row.values()))


def _fmt(ident: tuple[Any, ...]) -> str:
    return str(ident[0]) if len(ident) == 1 else str(ident)
