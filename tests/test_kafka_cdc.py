"""CDC through the real parts: Postgres (wal_level=logical) -> Debezium's embedded engine (the launcher
in services/debezium, built by ``scripts/services.sh up``) -> the Kafka broker -> ``sl.kafka``.

Each test runs its own launcher process on its own schema, publication, replication slot and topic
prefix, so it can stop the connector and drop its slot without touching the shared CDC service:

- a products table's inserts, updates and deletes (snapshot, then streaming) reach the topic, and the
  topic folded to its latest state per key equals the table;
- a lost CDC event: the connector stopped, its slot dropped while products change, the connector
  recreated without a snapshot (a new slot at the current WAL position): the changes in between
  never reach the topic, and the table-vs-topic seam names exactly those products.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import seamline as sl
from seamline.demo_pipeline.cdc import Connector, launcher_missing
from seamline.demo_pipeline.consumers import published
from seamline.demo_pipeline.pg import sql

pytestmark = pytest.mark.services

COLUMNS = ["sku", "name", "price", "in_stock"]


@pytest.fixture
def cdc(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Connector]:
    """The demo pipeline's launcher process on a schema, slot and topic prefix of its own, taking a
    snapshot of the captured tables on its first start."""
    missing = launcher_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    tag = uuid.uuid4().hex[:10]
    c = Connector(
        pg_dsn,
        kafka_bootstrap,
        tmp_path / "debezium",
        schema=f"cdc_{tag}",
        slot=f"slot_{tag}",
        prefix=f"t{tag}",
        snapshot_mode="initial",
    )
    sql(pg_dsn, f"CREATE SCHEMA {c.schema}")
    c.create_publication()
    try:
        yield c
    finally:
        from confluent_kafka.admin import AdminClient

        c.drop()
        sql(pg_dsn, f"DROP SCHEMA IF EXISTS {c.schema} CASCADE")
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(c.prefix + ".")]
        if mine:
            for f in admin.delete_topics(mine).values():
                f.result(timeout=30)


def _wait_for(bootstrap: str, topic: str, messages: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while (got := published(bootstrap, topic)) < messages:
        assert time.monotonic() < deadline, f"{topic}: {got} of {messages} messages after {seconds} s"
        time.sleep(0.5)


def _seam(cdc: Connector, table: str) -> sl.ReconcileResult:
    return sl.reconcile(
        sl.postgres(cdc.dsn, f"{cdc.schema}.{table}"),
        sl.kafka(cdc.bootstrap, cdc.topic(table), value="debezium", key_field="id", fold="latest"),
        key="id",
        columns=COLUMNS,
    )


def _products(cdc: Connector, ids: range) -> str:
    values = ", ".join(f"({i}, 'SKU-{i}', 'product {i}', {i}.99, {str(i % 2 == 0).lower()})" for i in ids)
    return f"INSERT INTO {cdc.schema}.products VALUES {values}"


def test_table_changes_reach_the_topic_and_its_latest_state_equals_the_table(cdc: Connector) -> None:
    sql(
        cdc.dsn,
        f"CREATE TABLE {cdc.schema}.products (id bigint PRIMARY KEY, sku text, name text, "
        "price numeric(12,2), in_stock boolean)",
        _products(cdc, range(1, 101)),  # before the connector: its snapshot (op "r")
    )
    cdc.start()
    s = cdc.schema
    sql(
        cdc.dsn,
        _products(cdc, range(101, 201)),
        f"UPDATE {s}.products SET price = price + 1, name = name || ' v2' WHERE id % 7 = 0",
        f"DELETE FROM {s}.products WHERE id % 20 = 0",
        f"UPDATE {s}.products SET in_stock = NOT in_stock WHERE id % 7 = 0 AND id > 150",
    )
    # 200 rows + 28 + 7 updates + 10 deletes (each a delete event and a tombstone)
    _wait_for(cdc.bootstrap, cdc.topic("products"), 200 + 28 + 7 + 20)
    result = _seam(cdc, "products")
    assert result.clean, result.counts
    assert result.counts["source_rows"] == result.counts["target_rows"] == 190
    health = result.to_dict()["as_of"]["target"]["detail"]["health"]
    assert health["tombstones"] == 20 and health["out_of_order"]["count"] == 0


def test_a_dropped_slot_loses_events_and_the_seam_names_the_products(cdc: Connector) -> None:
    s = cdc.schema
    sql(
        cdc.dsn,
        f"CREATE TABLE {s}.products (id bigint PRIMARY KEY, sku text, name text, "
        "price numeric(12,2), in_stock boolean)",
    )
    cdc.start()
    sql(cdc.dsn, _products(cdc, range(1, 51)))
    _wait_for(cdc.bootstrap, cdc.topic("products"), 50)
    assert _seam(cdc, "products").clean

    # the connector is stopped and its slot dropped (e.g. it filled the disk and an operator dropped it)
    cdc.stop()
    cdc.drop_slot()
    sql(
        cdc.dsn,
        f"UPDATE {s}.products SET price = 0.01 WHERE id IN (3, 4)",  # lost: changed
        f"DELETE FROM {s}.products WHERE id = 9",  # lost: the deleted product stays in the topic state
        _products(cdc, range(51, 53)),  # lost: never delivered
    )
    # Debezium itself refuses to resume from an offset the server no longer has; the operator's quick
    # fix, a fresh connector that skips the snapshot, creates a new slot at the current WAL position
    cdc.forget_offsets()
    cdc.snapshot_mode = "no_data"
    cdc.start()
    sql(cdc.dsn, f"UPDATE {s}.products SET name = 'renamed after restart' WHERE id = 20")
    _wait_for(cdc.bootstrap, cdc.topic("products"), 51)

    result = _seam(cdc, "products")
    kinds = sorted((r["id"], r["kind"]) for r in result.diffs.select(["id", "kind"]).to_dicts())
    assert kinds == [(3, "changed"), (4, "changed"), (9, "extra"), (51, "missing"), (52, "missing")]


def test_freshness_reports_replication_slots_and_a_lagging_one_is_an_error(
    pg_dsn: str, tmp_path: Path
) -> None:
    from seamline.contract import parse
    from seamline.freshness import measure

    tag = uuid.uuid4().hex[:10]
    slot, table = f"slot_{tag}", f"slotlag_{tag}"
    sql(pg_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, v text)")
    sql(pg_dsn, f"SELECT slot_name FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    try:
        # WAL the slot has not consumed: ~2 MB of inserts after it was created
        sql(pg_dsn, f"INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, 10000) g")
        text = f"""
version: 1
stores: {{oltp: {{type: postgres, dsn: "{pg_dsn}"}}}}
seams:
  - name: same
    source: {{store: oltp, table: public.{table}}}
    target: {{store: oltp, table: public.{table}}}
    key: id
    freshness: {{slot_lag_bytes: LIMIT}}
"""
        contract = parse(text.replace("LIMIT", "1MB"), tmp_path / "c.yaml")
        tight = measure(contract, contract.seams["same"])
        slots = {s["slot_name"]: s for s in tight.to_dict()["replication_slots"]}
        mine = slots[slot]
        assert mine["active"] is False and mine["lag_bytes"] > 1 << 20 and mine["plugin"] == "pgoutput"
        assert mine["status"] == "error" and tight.status == "error" and f"slot {slot}" in (tight.note or "")
        contract = parse(text.replace("LIMIT", "64GB"), tmp_path / "c.yaml")
        loose = measure(contract, contract.seams["same"])
        assert {s["slot_name"]: s for s in loose.to_dict()["replication_slots"]}[slot]["status"] == "pass"
        with pytest.raises(sl.ContractError, match="slot_lag_bytes.*not a size"):
            parse(text.replace("LIMIT", "lots"), tmp_path / "c.yaml")
    finally:
        sql(pg_dsn, f"SELECT pg_drop_replication_slot('{slot}')", f"DROP TABLE IF EXISTS {table}")
