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
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import seamline as sl

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parent.parent
DEBEZIUM = REPO / "services" / "debezium" / "target"
COLUMNS = ["sku", "name", "price", "in_stock"]


def _sql(dsn: str, *statements: str) -> list[Any]:
    import adbc_driver_postgresql.dbapi as pgdb

    rows: list[Any] = []
    with pgdb.connect(dsn) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            if cur.description is not None:
                rows = cur.fetchall()
        conn.commit()
    return rows


class Connector:
    """One Debezium launcher process capturing one schema into topics ``<prefix>.<schema>.<table>``."""

    def __init__(self, dsn: str, bootstrap: str, workdir: Path) -> None:
        from urllib.parse import urlsplit

        tag = uuid.uuid4().hex[:10]
        self.dsn, self.bootstrap, self.workdir = dsn, bootstrap, workdir
        self.schema, self.slot, self.prefix = f"cdc_{tag}", f"slot_{tag}", f"t{tag}"
        url = urlsplit(dsn)
        _sql(
            dsn,
            f"CREATE SCHEMA {self.schema}",
            f"CREATE PUBLICATION {self.slot} FOR TABLES IN SCHEMA {self.schema}",
        )
        (workdir / "engine.properties").write_text(
            "\n".join(
                [
                    f"seamline.kafka.bootstrap={bootstrap}",
                    "name=seamline-test-cdc",
                    "connector.class=io.debezium.connector.postgresql.PostgresConnector",
                    "offset.storage=org.apache.kafka.connect.storage.FileOffsetBackingStore",
                    f"offset.storage.file.filename={workdir / 'offsets.dat'}",
                    "offset.flush.interval.ms=200",
                    f"database.hostname={url.hostname}",
                    f"database.port={url.port or 5432}",
                    f"database.user={url.username}",
                    f"database.password={url.password or ''}",
                    f"database.dbname={url.path.lstrip('/')}",
                    f"topic.prefix={self.prefix}",
                    "plugin.name=pgoutput",
                    f"slot.name={self.slot}",
                    f"publication.name={self.slot}",
                    "publication.autocreate.mode=disabled",
                    f"schema.include.list={self.schema}",
                    "decimal.handling.mode=string",
                    "key.converter.schemas.enable=false",
                    "value.converter.schemas.enable=false",
                ]
            )
        )
        (workdir / "log4j2.properties").write_text(
            "status = error\nappender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {workdir / 'debezium.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n\nrootLogger.level = info\n"
            "rootLogger.appenderRef.file.ref = file\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    def start(self, snapshot_mode: str | None = None) -> None:
        """Start the launcher; `snapshot_mode` given: as a new connector (offsets forgotten)."""
        props = self.workdir / "engine.properties"
        if snapshot_mode is not None:
            (self.workdir / "offsets.dat").unlink(missing_ok=True)
            lines = [ln for ln in props.read_text().splitlines() if not ln.startswith("snapshot.mode=")]
            props.write_text("\n".join([*lines, f"snapshot.mode={snapshot_mode}"]))
        jar = DEBEZIUM / "seamline-debezium-0.1.0.jar"
        if not jar.exists():
            message = f"{jar} is not built: run scripts/services.sh up (it builds services/debezium)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        cmd = [
            os.environ.get("SEAMLINE_JAVA", "java"),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{jar}:{DEBEZIUM / 'lib'}/*",
            "dev.seamline.services.SeamlineDebezium",
            str(self.workdir / "engine.properties"),
        ]
        with open(self.workdir / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the Debezium launcher exited: {(self.workdir / 'stdout.log').read_text()[-2000:]}"
                )
            if _sql(self.dsn, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{self.slot}'") == [
                (True,)
            ]:
                return
            time.sleep(0.5)
        raise AssertionError(f"slot {self.slot} not active within 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        from confluent_kafka.admin import AdminClient

        self.stop()
        _sql(
            self.dsn,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{self.slot}'",
            f"DROP PUBLICATION IF EXISTS {self.slot}",
            f"DROP SCHEMA IF EXISTS {self.schema} CASCADE",
        )
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix + ".")]
        if mine:
            for f in admin.delete_topics(mine).values():
                f.result(timeout=30)


@pytest.fixture
def cdc(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Connector]:
    c = Connector(pg_dsn, kafka_bootstrap, tmp_path)
    try:
        yield c
    finally:
        c.close()


def _messages(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "seamline-test-offsets"})
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


def _wait_for(bootstrap: str, topic: str, messages: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while (got := _messages(bootstrap, topic)) < messages:
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
    _sql(
        cdc.dsn,
        f"CREATE TABLE {cdc.schema}.products (id bigint PRIMARY KEY, sku text, name text, "
        "price numeric(12,2), in_stock boolean)",
        _products(cdc, range(1, 101)),  # before the connector: its snapshot (op "r")
    )
    cdc.start()
    s = cdc.schema
    _sql(
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
    _sql(
        cdc.dsn,
        f"CREATE TABLE {s}.products (id bigint PRIMARY KEY, sku text, name text, "
        "price numeric(12,2), in_stock boolean)",
    )
    cdc.start()
    _sql(cdc.dsn, _products(cdc, range(1, 51)))
    _wait_for(cdc.bootstrap, cdc.topic("products"), 50)
    assert _seam(cdc, "products").clean

    # the connector is stopped and its slot dropped (e.g. it filled the disk and an operator dropped it)
    cdc.stop()
    _sql(cdc.dsn, f"SELECT pg_drop_replication_slot('{cdc.slot}')")
    _sql(
        cdc.dsn,
        f"UPDATE {s}.products SET price = 0.01 WHERE id IN (3, 4)",  # lost: changed
        f"DELETE FROM {s}.products WHERE id = 9",  # lost: the deleted product stays in the topic state
        _products(cdc, range(51, 53)),  # lost: never delivered
    )
    # Debezium itself refuses to resume from an offset the server no longer has; the operator's quick
    # fix, a fresh connector that skips the snapshot, creates a new slot at the current WAL position
    cdc.start(snapshot_mode="no_data")
    _sql(cdc.dsn, f"UPDATE {s}.products SET name = 'renamed after restart' WHERE id = 20")
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
    _sql(pg_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, v text)")
    _sql(pg_dsn, f"SELECT slot_name FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    try:
        # WAL the slot has not consumed: ~2 MB of inserts after it was created
        _sql(pg_dsn, f"INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, 10000) g")
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
        _sql(pg_dsn, f"SELECT pg_drop_replication_slot('{slot}')", f"DROP TABLE IF EXISTS {table}")
