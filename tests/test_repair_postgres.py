"""Repair of a Postgres copy of a Postgres table, against the real server: what only Postgres does
(newer target rows skipped, in-flight differences settled after the grace period, duplicates and
upserts in a table without a unique key, a row the copy refuses). The guarantees every store gives
(repaired, verified, idempotent; max_fraction; a live pipeline; a repair killed mid-way) are in
tests/stores/test_conformance.py.

Every test uses uniquely named tables and removes them afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from repair_helpers import Pg, drift

import seamline as sl

pytestmark = pytest.mark.services


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Pg]:
    db = Pg(pg_dsn)
    try:
        yield db
    finally:
        db.close()


def seam(pg: Pg, source: str, target: str, grace: str | None = None) -> sl.ReconcileResult:
    return sl.reconcile(
        sl.postgres(pg.dsn, source), sl.postgres(pg.dsn, target), key="id", version="updated_at", grace=grace
    )


def kinds(result: sl.ReconcileResult) -> dict[str, int]:
    return {k: result.counts[k] for k in ("changed", "missing", "extra", "duplicate", "in_flight")}


def test_newer_target_rows_are_skipped(pg: Pg) -> None:
    """A plan applied after the live pipeline moved on: its rows are newer than the plan's."""
    source = pg.products(100)
    target = pg.copy(source)
    drift(pg, source, [5, 6])
    pg.execute(
        f"INSERT INTO {target} (id, name, price, updated_at) "
        "VALUES (500, 'gone', 1, now() - interval '1 day')"
    )
    plan = seam(pg, source, target).plan_repair()
    assert plan.counts == {"upsert": 2, "delete": 1, "dedupe": 0}
    # the pipeline delivers newer writes of 5 and of the extra row before the repair runs
    pg.execute(f"UPDATE {source} SET name = 'newest', updated_at = now() - interval '1 hour' WHERE id = 5")
    pg.execute(f"UPDATE {target} SET name = 'newest', updated_at = now() - interval '1 hour' WHERE id = 5")
    pg.execute(f"UPDATE {target} SET updated_at = now() - interval '1 hour' WHERE id = 500")
    outcome = plan.apply()
    assert outcome.counts == {"applied": 1, "skipped_newer": 2, "failed": 0}, outcome.errors
    assert pg.scalar(f"SELECT name FROM {target} WHERE id = 5") == "newest"
    assert pg.scalar(f"SELECT count(*) FROM {target} WHERE id = 500") == 1


def test_in_flight_is_reported_apart_then_settled(pg: Pg) -> None:
    """Rows updated "now" are in flight; reconcile(grace=) looks again once the grace period is over.
    A row updated again during that wait is still in flight after it (reported apart, not in the
    plan); the next reconcile settles it."""
    source = pg.products(100)
    target = pg.copy(source)
    pg.execute(f"UPDATE {source} SET name = 'now', updated_at = clock_timestamp() WHERE id IN (3, 4)")

    def update_again() -> None:
        time.sleep(0.7)  # after the first pass pinned its snapshot, before the re-check
        pg2 = Pg(pg.dsn)
        try:
            pg2.execute(f"UPDATE {source} SET name = 'again', updated_at = clock_timestamp() WHERE id = 4")
        finally:
            pg2.conn.close()

    thread = threading.Thread(target=update_again)
    started = time.monotonic()
    thread.start()
    result = seam(pg, source, target, grace="2s")
    thread.join()
    assert time.monotonic() - started >= 2  # it waited for the grace period, then looked again
    assert result.rechecked
    flags = {r["id"]: r["in_flight"] for r in result.diffs.iter_rows(named=True)}
    assert flags == {3: False, 4: True}
    assert kinds(result) == {"changed": 1, "missing": 0, "extra": 0, "duplicate": 0, "in_flight": 1}
    plan = result.plan_repair()
    assert plan.upserts.column("id").to_pylist() == [3]  # in flight: not in the plan
    assert plan.apply().verified

    settled = seam(pg, source, target, grace="2s")
    assert kinds(settled) == {"changed": 1, "missing": 0, "extra": 0, "duplicate": 0, "in_flight": 0}
    plan = settled.plan_repair()
    assert plan.upserts.column("id").to_pylist() == [4]
    assert plan.apply().verified
    assert seam(pg, source, target).clean


def test_dedupe_without_unique_key_and_refusals(pg: Pg) -> None:
    source = pg.products(50)
    target = pg.table("nokey")
    pg.execute(f"CREATE TABLE {target} (id bigint, name text, price numeric(12,2), updated_at timestamptz)")
    pg.execute(f"INSERT INTO {target} SELECT * FROM {source}")
    pg.execute(f"INSERT INTO {target} SELECT * FROM {source} WHERE id IN (7, 8)")  # a replayed event
    result = seam(pg, source, target)
    assert kinds(result) == {"changed": 0, "missing": 0, "extra": 0, "duplicate": 2, "in_flight": 0}
    plan = result.plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 0, "delete": 0, "dedupe": 2}
    outcome = plan.apply()
    assert outcome.counts == {"applied": 2, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified
    assert pg.scalar(f"SELECT count(*) FROM {target} WHERE id IN (7, 8)") == 2
    assert plan.apply().counts == {"applied": 2, "skipped_newer": 0, "failed": 0}  # idempotent

    # upserts into a table without a unique key (issue 10 item 6): applied like dedupes, every copy of
    # the key replaced by the one row under the version guard; duplicates and upserts in one plan
    drift(pg, source, [9, 10])
    pg.execute(f"INSERT INTO {target} SELECT * FROM {target} WHERE id = 10")  # stale, and twice
    pg.execute(f"DELETE FROM {target} WHERE id = 11")
    plan = seam(pg, source, target).plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 2, "delete": 0, "dedupe": 1}
    outcome = plan.apply()
    assert outcome.counts == {"applied": 3, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified
    assert pg.scalar(f"SELECT count(*) FROM {target} WHERE id IN (9, 10, 11)") == 3
    assert pg.scalar(f"SELECT name FROM {target} WHERE id = 9") != "item 9"
    assert seam(pg, source, target).clean

    # a query has no table to write to
    query = sl.postgres(pg.dsn, query=f"SELECT * FROM {target}")
    with pytest.raises(sl.InvalidInputError, match="a query has no table"):
        sl.reconcile(sl.postgres(pg.dsn, source), query, key="id", version="updated_at").plan_repair(
            max_fraction=0.1
        ).apply()


def test_a_row_that_cannot_be_written_is_counted_and_reported(pg: Pg) -> None:
    """The copy requires a column the source does not have: a missing row cannot be inserted. Its
    batch is rolled back and retried row by row, so only that row fails, with the server's reason."""
    source = pg.products(50)
    target = pg.table("strict")
    pg.execute(
        f"CREATE TABLE {target} (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), "
        "updated_at timestamptz NOT NULL, sku text NOT NULL)"
    )
    pg.execute(f"INSERT INTO {target} SELECT *, 'sku-' || id FROM {source} WHERE id <> 7")
    drift(pg, source, [5])
    plan = seam(pg, source, target).plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 2, "delete": 0, "dedupe": 0}
    outcome = plan.apply()
    assert outcome.counts == {"applied": 1, "skipped_newer": 0, "failed": 1}
    assert not outcome.verified
    assert len(outcome.errors) == 1 and "\n" not in outcome.errors[0]
    assert "upsert of id=7" in outcome.errors[0] and 'null value in column "sku"' in outcome.errors[0]
    assert pg.scalar(f"SELECT name FROM {target} WHERE id = 5") == "item 5 v2"
