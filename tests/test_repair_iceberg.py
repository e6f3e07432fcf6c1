"""Repair into Iceberg: Postgres (the real server from scripts/services.sh) -> an Iceberg table in a
SQL catalog on local files. One transaction per plan, snapshots tagged for time travel, never over a
newer write, idempotent, refused above max_fraction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.expressions import EqualTo

import seamline as sl
from seamline.repair.plan import RepairPlan

BASE = datetime(2026, 11, 20, tzinfo=UTC)
N = 100

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("price", pa.decimal128(12, 2)),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("note", pa.string()),  # outside the seam: carried over by a repair
    ]
)


def _row(i: int, *, price: Decimal | None = None, at: datetime | None = None) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Product {i}",
        "price": price if price is not None else Decimal(100 + i) / 100,
        "updated_at": at or BASE + timedelta(minutes=i, microseconds=i * 7),
        "note": f"note {i}",
    }


@pytest.fixture
def catalog(tmp_path: Path) -> tuple[Catalog, dict[str, str]]:
    props = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    cat = load_catalog("repair", **props)
    cat.create_namespace("shop")
    return cat, {"name": "repair", **props}


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[tuple[Any, str]]:
    import adbc_driver_postgresql.dbapi as pgdbapi

    conn = pgdbapi.connect(pg_dsn, autocommit=True)
    name = f"sl_rep_ice_{uuid.uuid4().hex[:8]}"
    try:
        yield conn, name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS public.{name}")
        conn.close()


def _exec(conn: Any, *sql: str) -> None:
    with conn.cursor() as cur:
        for s in sql:
            cur.execute(s)


def _snapshots(cat: Catalog, name: str) -> list[Any]:
    return list(cat.load_table(name).snapshots())


@pytest.mark.services
def test_postgres_to_iceberg_repair(
    pg: tuple[Any, str], pg_dsn: str, catalog: tuple[Catalog, dict[str, str]], tmp_path: Path
) -> None:
    conn, pg_table = pg
    cat, props = catalog
    ice_name = "shop.products"
    rows = [_row(i) for i in range(1, N + 1)]
    # the source of record (id 5 re-priced, id 20 too, after the copy was taken)
    _exec(
        conn,
        f"CREATE TABLE {pg_table} (id bigint PRIMARY KEY, name text, price numeric(12,2), "
        "updated_at timestamptz)",
    )
    with conn.cursor() as cur:
        cur.adbc_ingest(pg_table, pa.Table.from_pylist(rows, SCHEMA).drop(["note"]), mode="append")
    _exec(
        conn,
        f"UPDATE {pg_table} SET price = price + 10, updated_at = '2026-11-21T00:00:00Z' WHERE id IN (5, 20)",
    )
    # the copy: 9 never delivered, 200 deleted upstream long ago, 12 replayed (twice)
    copy = [r for r in rows if r["id"] != 9] + [_row(200), _row(12)]
    table = cat.create_table(ice_name, schema=SCHEMA)
    table.append(pa.Table.from_pylist(copy, SCHEMA))

    def check() -> sl.ReconcileResult:
        return sl.reconcile(
            sl.postgres(pg_dsn, f"public.{pg_table}"),
            sl.iceberg(ice_name, catalog=props),
            key="id",
            version="updated_at",
        )

    result = check()
    assert {k: result.counts[k] for k in ("missing", "extra", "changed", "duplicate")} == {
        "missing": 1,
        "extra": 1,
        "changed": 2,
        "duplicate": 1,
    }
    before = result.as_of["target"]["detail"]["snapshot_id"]

    # above max_fraction: refused, nothing written
    n_snapshots = len(_snapshots(cat, ice_name))
    with pytest.raises(sl.RepairRefusedError, match="max_fraction"):
        result.plan_repair(max_fraction=0.01).apply()
    assert len(_snapshots(cat, ice_name)) == n_snapshots

    plan = result.plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 3, "delete": 1, "dedupe": 1}
    plan.save(tmp_path / "plan")

    # meanwhile CDC delivers a newer write of id 20 to both sides: the repair must not undo it
    newer = _row(20, price=Decimal("99.99"), at=datetime(2026, 11, 22, tzinfo=UTC))
    _exec(conn, f"UPDATE {pg_table} SET price = 99.99, updated_at = '2026-11-22T00:00:00Z' WHERE id = 20")
    cat.load_table(ice_name).overwrite(
        pa.Table.from_pylist([newer], SCHEMA), overwrite_filter=EqualTo("id", 20)
    )

    outcome = plan.apply()
    assert outcome.counts == {"applied": 4, "skipped_newer": 1, "failed": 0}, outcome.errors
    assert outcome.verified, outcome.remaining

    table = cat.load_table(ice_name)
    data = {r["id"]: r for r in table.scan().to_arrow().to_pylist()}
    assert len(data) == table.scan().to_arrow().num_rows == N  # 12 once, 9 in, 200 out
    assert data[5]["price"] == Decimal("11.05") and data[5]["note"] == "note 5"  # note carried over
    assert data[9]["name"] == "Product 9" and data[9]["note"] is None
    assert data[20]["price"] == Decimal("99.99")  # the newer write won
    assert 200 not in data

    # time travel: the repair is tagged; the snapshot before it still shows the drift
    repairs = [s for s in table.snapshots() if s.summary is not None and s.summary.get("seamline.repair")]
    assert repairs and repairs[-1].snapshot_id == table.current_snapshot().snapshot_id
    summary = repairs[-1].summary
    assert summary is not None
    assert summary.get("seamline.seam") == plan.seam and summary.get("seamline.upserts") == "3"
    assert any(h.snapshot_id == repairs[-1].snapshot_id for h in table.history())
    old = sl.reconcile(
        sl.postgres(pg_dsn, f"public.{pg_table}"),
        sl.iceberg(ice_name, catalog=props, snapshot_id=before),
        key="id",
        version="updated_at",
    )
    assert (old.counts["missing"], old.counts["extra"], old.counts["duplicate"]) == (1, 1, 1)

    # re-applying is harmless: already in place (counted applied), no snapshot written; also from
    # the saved plan, which needs neither the source nor the reconcile
    n_snapshots = len(_snapshots(cat, ice_name))
    again = plan.apply()
    assert again.counts == {"applied": 4, "skipped_newer": 1, "failed": 0} and again.verified
    loaded = RepairPlan.load(tmp_path / "plan").apply(target=sl.iceberg(ice_name, catalog=props))
    assert loaded.counts == {"applied": 4, "skipped_newer": 1, "failed": 0}
    raw = sl.iceberg(ice_name, catalog=props).repair_writer().apply(plan)
    assert (raw.unchanged, raw.detail["snapshot_id"], raw.errors) == (4, None, [])
    assert len(_snapshots(cat, ice_name)) == n_snapshots
    assert check().clean


def test_iceberg_composite_key_repair(catalog: tuple[Catalog, dict[str, str]]) -> None:
    """A composite key (a string and an int) from an Arrow source; deletes matched on both parts."""
    cat, props = catalog
    schema = pa.schema(
        [
            pa.field("tenant", pa.string(), nullable=False),
            pa.field("line", pa.int32(), nullable=False),
            pa.field("qty", pa.int64()),
            pa.field("seq", pa.int64()),
        ]
    )
    lines = [{"tenant": t, "line": i, "qty": i, "seq": 1} for t in ("a", "b", "a-b") for i in range(1, 30)]
    cat.create_table("shop.lines", schema=schema).append(pa.Table.from_pylist(lines, schema))
    source = [dict(r) for r in lines if (r["tenant"], r["line"]) != ("b", 3)]  # (b, 3) deleted upstream
    for r in source:
        if (r["tenant"], r["line"]) == ("a", 3):
            r.update(qty=333, seq=2)  # (a, 3) changed: ("b", 3) shares the line number, not the key
    source.append({"tenant": "a-b", "line": 99, "qty": 1, "seq": 1})  # missing
    src = pa.Table.from_pylist(source, schema)

    def check() -> sl.ReconcileResult:
        return sl.reconcile(
            src, sl.iceberg("shop.lines", catalog=props), key=["tenant", "line"], version="seq"
        )

    plan = check().plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 2, "delete": 1, "dedupe": 0}
    outcome = plan.apply()
    assert outcome.counts == {"applied": 3, "skipped_newer": 0, "failed": 0} and outcome.verified
    got = {(r["tenant"], r["line"]): r for r in cat.load_table("shop.lines").scan().to_arrow().to_pylist()}
    assert got[("a", 3)]["qty"] == 333 and ("b", 3) not in got and ("a-b", 99) in got
    assert len(got) == len(source)
    assert check().clean


def test_iceberg_concurrent_newer_write_wins(
    catalog: tuple[Catalog, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer commits a newer row between the repair's read and its commit: the catalog refuses
    the repair's transaction, the writer reads again and leaves the newer row alone."""
    from seamline.stores.iceberg import IcebergWriter

    cat, props = catalog
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.int64())])
    table = cat.create_table("shop.race", schema=schema)
    table.append(pa.Table.from_pylist([{"id": i, "v": 1} for i in range(1, 41)], schema))
    src = pa.Table.from_pylist([{"id": i, "v": 2 if i == 7 else 1} for i in range(1, 41)], schema)
    plan = sl.reconcile(src, sl.iceberg("shop.race", catalog=props), key="id", version="v").plan_repair(0.1)
    assert plan.counts == {"upsert": 1, "delete": 0, "dedupe": 0}

    reads = []
    decide_ = IcebergWriter._changes

    def changes_then_race(self: IcebergWriter, plan: RepairPlan, tbl: Any) -> Any:
        out = decide_(self, plan, tbl)
        if not reads:  # right after the first read, a CDC write of a newer id 7 commits
            cat.load_table("shop.race").overwrite(
                pa.Table.from_pylist([{"id": 7, "v": 3}], schema), overwrite_filter=EqualTo("id", 7)
            )
        reads.append(out)
        return out

    monkeypatch.setattr(IcebergWriter, "_changes", changes_then_race)
    raw = sl.iceberg("shop.race", catalog=props).repair_writer().apply(plan)
    assert len(reads) == 2 and reads[0].write.num_rows == 1  # the first decision was to write
    assert (raw.applied, raw.skipped_newer, raw.failed, raw.detail["snapshot_id"]) == (0, 1, 0, None)
    got = {r["id"]: r["v"] for r in cat.load_table("shop.race").scan().to_arrow().to_pylist()}
    assert got[7] == 3 and len(got) == 40
