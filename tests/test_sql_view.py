"""`sql=` on the stores that are not SQL stores (Iceberg, OpenSearch, LanceDB, Arrow, Parquet): the side
is a DuckDB query over the store's rows (the table ``source``), read from the store's pinned snapshot.

The seam that needs it: bronze events against a gold aggregate (revenue per day), each side in the
store it lives in. Every store here is the real one: pyiceberg with a SQL catalog on local files, LanceDB
embedded, the OpenSearch node and Postgres server started by ``scripts/services.sh``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seamline as sl

REVENUE = "SELECT day, sum(amount) AS revenue, count(*) AS orders FROM source GROUP BY day"
DAYS = [dt.date(2026, 11, d) for d in range(1, 8)]


def _events() -> pa.Table:
    """Order events: 7 days, 10 orders a day, amounts in cents as decimals."""
    rows = [
        (f"e{d.day}-{i}", d, decimal.Decimal(f"{d.day * 10 + i}.{i:02d}")) for d in DAYS for i in range(10)
    ]
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "day": pa.array([r[1] for r in rows], pa.date32()),
            "amount": pa.array([r[2] for r in rows], pa.decimal128(12, 2)),
        }
    )


def _gold(events: pa.Table) -> dict[dt.date, tuple[decimal.Decimal, int]]:
    out: dict[dt.date, tuple[decimal.Decimal, int]] = {}
    for day, amount in zip(events["day"].to_pylist(), events["amount"].to_pylist(), strict=True):
        revenue, orders = out.get(day, (decimal.Decimal(0), 0))
        out[day] = (revenue + amount, orders + 1)
    return out


def _gold_table(gold: dict[dt.date, tuple[decimal.Decimal, int]]) -> pa.Table:
    days = sorted(gold)
    return pa.table(
        {
            "day": pa.array(days, pa.date32()),
            "revenue": pa.array([gold[d][0] for d in days], pa.decimal128(38, 2)),
            "orders": pa.array([gold[d][1] for d in days], pa.int64()),
        }
    )


def _drifted_gold(events: pa.Table) -> pa.Table:
    """The gold table a buggy job wrote: day 3 counted one order twice, day 6 never landed."""
    gold = _gold(events)
    revenue, orders = gold[DAYS[2]]
    gold[DAYS[2]] = (revenue + decimal.Decimal("32.02"), orders + 1)
    del gold[DAYS[5]]
    return _gold_table(gold)


def _kinds(result: sl.ReconcileResult) -> list[tuple[Any, str]]:
    return sorted((r["day"], r["kind"]) for r in result.diffs.select(["day", "kind"]).to_dicts())


EXPECTED = [(DAYS[2], "changed"), (DAYS[5], "missing")]  # missing: in the events, not in gold


def test_arrow_and_parquet_sides_aggregate_with_sql(tmp_path: Path) -> None:
    events = _events()
    gold = _drifted_gold(events)
    clean = sl.reconcile(sl.arrow(events, sql=REVENUE), sl.arrow(_gold_table(_gold(events))), key="day")
    assert clean.clean, clean.counts
    assert clean.counts["source_rows"] == 7

    result = sl.reconcile(sl.arrow(events, sql=REVENUE), sl.arrow(gold), key="day")
    assert _kinds(result) == EXPECTED
    changed = result.diffs.filter(result.diffs["kind"] == "changed").to_dicts()[0]
    assert changed["source"]["orders"] == 10 and changed["target"]["orders"] == 11

    pq.write_table(events, tmp_path / "events.parquet")
    from_files = sl.reconcile(
        sl.parquet(str(tmp_path / "events.parquet"), sql=REVENUE), sl.arrow(gold), key="day"
    )
    assert _kinds(from_files) == EXPECTED


def test_a_bad_query_is_one_line_naming_the_side() -> None:
    with pytest.raises(sl.InvalidInputError, match=r"^arrow .*sql: .*no_such_column") as err:
        sl.reconcile(
            sl.arrow(_events(), sql="SELECT no_such_column FROM source"), sl.arrow(_events()), key="day"
        )
    assert "\n" not in str(err.value)
    with pytest.raises(sl.InvalidInputError, match="sql= is empty"):
        sl.arrow(_events(), sql="  ")


@pytest.fixture
def catalog(tmp_path: Path) -> dict[str, str]:
    from pyiceberg.catalog import load_catalog

    props = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    load_catalog("seamline", **props).create_namespace("shop")
    return {"name": "seamline", **props}


def _iceberg_table(catalog: dict[str, str], name: str, rows: pa.Table) -> Any:
    from pyiceberg.catalog import load_catalog

    cat = load_catalog("seamline", **{k: v for k, v in catalog.items() if k != "name"})
    table = cat.create_table(name, schema=rows.schema)
    table.append(rows)
    return table


def test_iceberg_bronze_against_gold_by_sql_reads_the_pinned_snapshot(catalog: dict[str, str]) -> None:
    events = _events()
    bronze = _iceberg_table(catalog, "shop.orders_bronze", events)
    _iceberg_table(catalog, "shop.revenue_gold", _drifted_gold(events))
    first = bronze.current_snapshot().snapshot_id

    view = sl.iceberg("shop.orders_bronze", catalog=catalog, sql=REVENUE)
    result = sl.reconcile(view, sl.iceberg("shop.revenue_gold", catalog=catalog), key="day")
    assert _kinds(result) == EXPECTED
    as_of = result.to_dict()["as_of"]["source"]
    assert as_of["detail"]["sql"] == REVENUE and as_of["detail"]["rows"] == 7
    assert as_of["detail"]["snapshot_id"] == first

    # an append after the first snapshot: the view at that snapshot still reads 70 events
    bronze.append(events.slice(0, 1))
    pinned = sl.iceberg("shop.orders_bronze", catalog=catalog, snapshot_id=first, sql=REVENUE)
    latest = sl.iceberg("shop.orders_bronze", catalog=catalog, sql=REVENUE)
    again = sl.reconcile(pinned, latest, key="day")
    assert _kinds(again) == [(DAYS[0], "changed")]
    # freshness and lineage ask a view for its newest value, like any versioned side
    assert latest.max_value("day") == DAYS[-1]
    assert latest.count_newer("day", DAYS[4]) == 2


def test_lancedb_side_filtered_and_projected_by_sql(tmp_path: Path) -> None:
    import lancedb

    db = lancedb.connect(str(tmp_path / "lance"))
    items = pa.table(
        {
            "id": pa.array(range(1, 101), pa.int64()),
            "in_stock": [i % 3 != 0 for i in range(1, 101)],
            "vector": pa.array([[float(i), 0.5] for i in range(1, 101)], pa.list_(pa.float32(), 2)),
        }
    )
    db.create_table("items", items)
    stocked = pa.table({"id": pa.array([i for i in range(1, 101) if i % 3 != 0 and i != 50], pa.int64())})
    result = sl.reconcile(
        sl.lancedb(str(tmp_path / "lance"), "items", sql="SELECT id FROM source WHERE in_stock"),
        sl.arrow(stocked),
        key="id",
    )
    assert sorted((r["id"], r["kind"]) for r in result.diffs.select(["id", "kind"]).to_dicts()) == [
        (50, "missing")
    ]


@pytest.fixture
def search_index(opensearch_url: str) -> Iterator[str]:
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(hosts=[opensearch_url], timeout=120)
    index = f"sl-sqlview-{uuid.uuid4().hex[:8]}"
    docs = [{"sku": f"s{i}", "category": f"c{i % 4}", "price": i + 0.5} for i in range(400)]
    docs = [d for d in docs if d["sku"] != "s7"]  # one product never indexed: category c3 is short
    helpers.bulk(client, ({"_index": index, "_id": d["sku"], "_source": d} for d in docs))
    client.indices.refresh(index=index)
    try:
        yield index
    finally:
        client.indices.delete(index=index, ignore=[404])
        client.close()


@pytest.mark.services
def test_opensearch_counts_per_category_against_postgres(
    opensearch_url: str, pg_dsn: str, search_index: str
) -> None:
    per_category = "SELECT category, count(*) AS products FROM source GROUP BY category"
    result = sl.reconcile(
        sl.postgres(
            pg_dsn,
            query="SELECT 'c' || (i % 4) AS category, count(*) AS products FROM generate_series(0, 399) i "
            "GROUP BY 1",
        ),
        sl.opensearch(opensearch_url, search_index, sql=per_category),
        key="category",
    )
    rows = result.diffs.to_dicts()
    assert [(r["category"], r["kind"], r["source"]["products"], r["target"]["products"]) for r in rows] == [
        ("c3", "changed", 100, 99)
    ]


def test_contract_sides_take_sql_and_check_reports_the_drifted_day(
    tmp_path: Path, catalog: dict[str, str]
) -> None:
    events = _events()
    _iceberg_table(catalog, "shop.orders_bronze", events)
    _iceberg_table(catalog, "shop.revenue_gold", _drifted_gold(events))
    lake = json.dumps(catalog)  # "name" picks the SQL catalog the tables were created in
    contract = tmp_path / "contract.yaml"
    contract.write_text(
        "version: 1\n"
        "stores:\n"
        f"  lake: {{type: iceberg, catalog: {lake}}}\n"
        "seams:\n"
        "  - name: revenue_gold\n"
        "    key: day\n"
        f"    source: {{store: lake, table: shop.orders_bronze, sql: {json.dumps(REVENUE)}}}\n"
        "    target: {store: lake, table: shop.revenue_gold}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "seamline.cli", "check", str(contract), "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    seam = report["seams"]["revenue_gold"]
    assert seam["counts"]["changed"] == 1 and seam["counts"]["missing"] == 1, seam["counts"]

    contract.write_text(contract.read_text().replace("sum(amount)", "sum(amount_typo)"))
    bad = subprocess.run(
        [sys.executable, "-m", "seamline.cli", "check", str(contract)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "amount_typo" in bad.stderr and "Traceback" not in bad.stderr
