"""Repair into LanceDB: Postgres (the real server from scripts/services.sh, soft deletes) -> a vector
table embedded in a temporary directory. Tombstones deleted, stale rows merge-inserted, vectors
re-embedded through `embed=` or reported stale without it, refused above max_fraction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest

import seamline as sl

BASE = datetime(2026, 11, 20, tzinfo=UTC)
N = 100
DIM = 8


def fake_embed(texts: list[str]) -> list[list[float]]:
    """Deterministic: 8 floats from the text's hash (exact in float32)."""
    return [[b / 256 for b in hashlib.sha256(t.encode()).digest()[:DIM]] for t in texts]


def _products() -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"Product {i}",
            "price": Decimal(100 + i) / 100,
            "updated_at": BASE + timedelta(minutes=i, microseconds=i * 7),
        }
        for i in range(1, N + 1)
    ]


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[tuple[Any, str]]:
    """The products in Postgres, after the copy was taken: 13 soft-deleted, 42 re-priced, 7 renamed."""
    import adbc_driver_postgresql.dbapi as pgdbapi

    conn = pgdbapi.connect(pg_dsn, autocommit=True)
    name = f"sl_rep_lance_{uuid.uuid4().hex[:8]}"
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("price", pa.decimal128(12, 2)),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text, price numeric(12,2), "
                "updated_at timestamptz, deleted_at timestamptz)"
            )
            cur.adbc_ingest(name, pa.Table.from_pylist(_products(), schema), mode="append")
            cur.execute(
                f"UPDATE {name} SET deleted_at = now(), updated_at = '2026-11-21T00:00:00Z' WHERE id = 13"
            )
            cur.execute(
                f"UPDATE {name} SET price = price + 10, updated_at = '2026-11-21T00:00:00Z' WHERE id = 42"
            )
            cur.execute(
                f"UPDATE {name} SET name = 'Renamed 7', updated_at = '2026-11-21T00:00:00Z' WHERE id = 7"
            )
        yield conn, name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS public.{name}")
        conn.close()


def _vectors_table(path: Path, name: str, *, nullable_vector: bool = True) -> Any:
    """The vector copy, built before Postgres moved on, with 77 never delivered."""
    schema = pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("name", pa.string()),
            pa.field("price", pa.float64()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
            pa.field("vector", pa.list_(pa.float32(), DIM), nullable=nullable_vector),
        ]
    )
    rows = [
        {**p, "price": float(p["price"]), "vector": fake_embed([p["name"]])[0]}
        for p in _products()
        if p["id"] != 77
    ]
    return lancedb.connect(str(path)).create_table(name, data=pa.Table.from_pylist(rows, schema))


def _reconcile(pg_dsn: str, pg_table: str, path: Path, name: str) -> sl.ReconcileResult:
    return sl.reconcile(
        sl.postgres(pg_dsn, f"public.{pg_table}", where="deleted_at IS NULL"),
        sl.lancedb(str(path), name),
        key="id",
        columns=["name", "price", "updated_at"],
        version="updated_at",
    )


def _rows(tbl: Any) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in tbl.to_arrow().to_pylist()}


@pytest.mark.services
def test_postgres_to_lancedb_repair_with_embed(pg: tuple[Any, str], pg_dsn: str, tmp_path: Path) -> None:
    _, pg_table = pg
    tbl = _vectors_table(tmp_path / "vec", "products")
    result = _reconcile(pg_dsn, pg_table, tmp_path / "vec", "products")
    assert {k: result.counts[k] for k in ("missing", "extra", "changed", "duplicate")} == {
        "missing": 1,
        "extra": 1,
        "changed": 2,
        "duplicate": 0,
    }

    # above max_fraction: refused, no new table version
    version = tbl.version
    with pytest.raises(sl.RepairRefusedError, match="max_fraction"):
        result.plan_repair(max_fraction=0.01).apply(embed=fake_embed)
    tbl.checkout_latest()
    assert tbl.version == version

    plan = result.plan_repair(max_fraction=0.1)
    assert plan.counts == {"upsert": 3, "delete": 1, "dedupe": 0}
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return fake_embed(texts)

    outcome = plan.apply(embed=embed)
    assert outcome.counts == {"applied": 4, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified and outcome.errors == []
    assert sorted(t for c in calls for t in c) == ["Product 77", "Renamed 7"]  # 42's text did not change

    tbl.checkout_latest()
    rows = _rows(tbl)
    assert 13 not in rows and len(rows) == N - 1
    assert rows[77]["vector"] == fake_embed(["Product 77"])[0] and rows[77]["price"] == 1.77
    assert rows[7]["name"] == "Renamed 7" and rows[7]["vector"] == fake_embed(["Renamed 7"])[0]
    assert rows[42]["price"] == 11.42 and rows[42]["vector"] == fake_embed(["Product 42"])[0]

    # re-applying is harmless: already in place (counted applied), no new version
    version = tbl.version
    again = plan.apply(embed=embed)
    assert again.counts == {"applied": 4, "skipped_newer": 0, "failed": 0} and again.verified
    tbl.checkout_latest()
    assert tbl.version == version
    assert _reconcile(pg_dsn, pg_table, tmp_path / "vec", "products").clean


@pytest.mark.services
def test_postgres_to_lancedb_repair_without_embed(pg: tuple[Any, str], pg_dsn: str, tmp_path: Path) -> None:
    """Without embed=: the stale vector is reported and not written; the rest is applied."""
    _, pg_table = pg
    tbl = _vectors_table(tmp_path / "vec", "products")
    plan = _reconcile(pg_dsn, pg_table, tmp_path / "vec", "products").plan_repair(max_fraction=0.1)
    raw = sl.lancedb(str(tmp_path / "vec"), "products").repair_writer().apply(plan)
    assert (raw.applied, raw.skipped_newer, raw.failed, raw.detail["stale_vectors"]) == (4, 0, 0, 2)
    assert any("'vector' is stale or NULL for 2 row(s)" in e and "7, 77" in e for e in raw.errors), raw
    tbl.checkout_latest()
    rows = _rows(tbl)
    assert rows[7]["name"] == "Renamed 7" and rows[7]["vector"] == fake_embed(["Product 7"])[0]  # kept
    assert rows[77]["price"] == 1.77 and rows[77]["vector"] is None  # nullable: inserted, no vector
    assert rows[42]["price"] == 11.42 and 13 not in rows
    assert _reconcile(pg_dsn, pg_table, tmp_path / "vec", "products").clean

    # a NOT NULL vector column: the missing row cannot be inserted without embed=
    strict = _vectors_table(tmp_path / "strict", "products", nullable_vector=False)
    result = _reconcile(pg_dsn, pg_table, tmp_path / "strict", "products")
    outcome = result.plan_repair(max_fraction=0.1).apply()
    assert outcome.counts == {"applied": 3, "skipped_newer": 0, "failed": 1}
    assert not outcome.verified and outcome.remaining["id"].to_list() == [77]
    assert any("vector column 'vector' needs embed=" in e for e in outcome.errors), outcome.errors
    strict.checkout_latest()
    assert 77 not in _rows(strict) and _rows(strict)[7]["name"] == "Renamed 7"


def test_lancedb_guards_against_newer_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows rewritten between the writer's read and its write: the delete and the merge-insert carry
    their own version guards, so the newer rows stay."""
    from seamline.stores.lancedb import LanceDBWriter

    schema = pa.schema(
        [pa.field("id", pa.int64()), pa.field("name", pa.string()), pa.field("seq", pa.int64())]
    )
    rows = [{"id": i, "name": f"n{i}", "seq": 1} for i in range(1, 41)]
    tbl = lancedb.connect(str(tmp_path / "vec")).create_table("t", data=pa.Table.from_pylist(rows, schema))
    src = pa.Table.from_pylist(
        [{**r, "seq": 2, "name": "new"} if r["id"] == 10 else r for r in rows[:-1]], schema
    )
    plan = sl.reconcile(src, sl.lancedb(str(tmp_path / "vec"), "t"), key="id", version="seq").plan_repair(0.1)
    assert plan.counts == {"upsert": 1, "delete": 1, "dedupe": 0}

    read = LanceDBWriter._current

    def read_then_race(self: LanceDBWriter, t: Any, p: Any, s: pa.Schema) -> pa.Table:
        current = read(self, t, p, s)  # what the writer decides on...
        tbl.update(where="id IN (10, 40)", values={"seq": 5, "name": "newer"})  # ...is stale at once
        return current

    monkeypatch.setattr(LanceDBWriter, "_current", read_then_race)
    raw = sl.lancedb(str(tmp_path / "vec"), "t").repair_writer().apply(plan)
    assert (raw.applied, raw.skipped_newer, raw.failed) == (0, 2, 0), raw
    tbl.checkout_latest()
    got = _rows(tbl)
    assert got[10]["name"] == got[40]["name"] == "newer" and len(got) == 40
