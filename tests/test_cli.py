"""The `seamline` command line, run as a real subprocess against the real services (Postgres and
OpenSearch from scripts/services.sh; Iceberg on a SQLite catalog next to the contract).

One small shop is built once for the module: products in Postgres and three OpenSearch copies (exact,
drifted, drifted-to-repair), orders in Postgres and a bronze -> silver -> gold chain in Iceberg where
gold was later corrupted and where a new Postgres order never reached bronze (a stalled load).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SEAMLINE = str(Path(sys.executable).parent / "seamline")
SECRET = "TopS3cret-pw"
UTC = dt.UTC
N_PRODUCTS = 40
N_ORDERS = 50


@dataclass
class Shop:
    dir: Path
    contract: Path
    env: dict[str, str]
    as_of_clean: str  # between the consistent lake and gold's corruption
    gold_snapshots: list[int]
    bronze_snapshot: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _with_password(dsn: str, password: str) -> str:
    # the test cluster trusts local connections, so a password in the DSN is accepted and unused
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


PRODUCTS_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("sku", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
ORDERS_SCHEMA = pa.schema(
    [("order_id", pa.int64()), ("amount", pa.decimal128(12, 2)), ("updated_at", pa.timestamp("us", tz="UTC"))]
)


def _products(now: dt.datetime) -> list[dict[str, Any]]:
    base = now - dt.timedelta(days=2)
    return [
        {
            "id": i,
            "sku": f"SKU-{i:03d}",
            "price": decimal.Decimal(100 + i) / 10,
            "updated_at": base + dt.timedelta(minutes=i),
        }
        for i in range(1, N_PRODUCTS + 1)
    ]


def _orders(now: dt.datetime, n: int) -> list[dict[str, Any]]:
    base = now - dt.timedelta(days=1)
    return [
        {"order_id": i, "amount": decimal.Decimal(i * 3) / 4, "updated_at": base + dt.timedelta(minutes=i)}
        for i in range(1, n + 1)
    ]


def _index(client: Any, name: str, rows: list[dict[str, Any]]) -> None:
    from opensearchpy import helpers

    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    client.indices.create(
        index=name,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "product_id": {"type": "long"},
                    "sku": {"type": "keyword"},
                    "price": {"type": "double"},
                    "updated_at": {"type": "date"},
                }
            },
        },
    )
    actions = [
        {
            "_index": name,
            "_id": str(r["id"]),
            "_source": {
                "product_id": r["id"],
                "sku": r["sku"],
                "price": float(r["price"]),
                "updated_at": r["updated_at"].isoformat(),
            },
        }
        for r in rows
    ]
    helpers.bulk(client, actions, refresh=True)


def _contract(p: str) -> str:
    products = f"""
    source: {{store: oltp, table: public.{p}_products}}
    key: {{id: product_id}}
    columns: [sku, price, updated_at]
    version: updated_at
    compare: {{timestamp_precision: ms}}"""
    orders = """
    key: order_id
    columns: [amount, updated_at]
    version: updated_at
    freshness: {warn_after: 10m, error_after: 1h}"""
    return f"""\
version: 1
stores:
  oltp:   {{type: postgres, dsn: "${{CLI_PG_DSN}}"}}
  search: {{type: opensearch, hosts: ["${{CLI_OS_URL}}"]}}
  lake:
    type: iceberg
    catalog: {{name: cli, type: sql, uri: "sqlite:///lake/catalog.db", warehouse: "lake/wh"}}
seams:
  - name: products_ok{products}
    target: {{store: search, index: {p}_products_ok}}
    freshness: {{warn_after: 10m, error_after: 1h}}
  - name: products_drift{products}
    target: {{store: search, index: {p}_products_drift}}
    freshness: {{warn_after: 10m, error_after: 1h}}
  - name: products_warn{products}
    target: {{store: search, index: {p}_products_drift}}
    freshness: {{warn_after: 1m, error_after: 30d}}
  - name: products_repair{products}
    target: {{store: search, index: {p}_products_repair}}
    repair: {{max_fraction: 0.2}}
  - name: orders_bronze
    source: {{store: oltp, table: public.{p}_orders}}
    target: {{store: lake, table: {p}.bronze}}{orders}
  - name: bronze_silver
    source: {{store: lake, table: {p}.bronze}}
    target: {{store: lake, table: {p}.silver}}{orders}
  - name: silver_gold
    source: {{store: lake, table: {p}.silver}}
    target: {{store: lake, table: {p}.gold}}{orders}
chains:
  orders: [orders_bronze, bronze_silver, silver_gold]
  lake: [bronze_silver, silver_gold]
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, opensearch_url: str) -> Iterator[Shop]:
    import adbc_driver_postgresql.dbapi as pg
    from opensearchpy import OpenSearch
    from pyiceberg.catalog.sql import SqlCatalog

    d = tmp_path_factory.mktemp("cli")
    p = f"cli{os.getpid()}"
    now = dt.datetime.now(UTC).replace(microsecond=0)
    before = _products(now)
    after = [dict(r) for r in before]
    after[6]["updated_at"] = now  # product 7 changed in Postgres after the copies were made
    after[6]["price"] = decimal.Decimal("99.90")
    orders = _orders(now, N_ORDERS)

    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {p}_products, {p}_orders")
        cur.execute(
            f"CREATE TABLE {p}_products (id bigint PRIMARY KEY, sku text, price numeric(12,2), "
            "updated_at timestamptz)"
        )
        cur.execute(
            f"CREATE TABLE {p}_orders (order_id bigint PRIMARY KEY, amount numeric(12,2), "
            "updated_at timestamptz)"
        )
        cur.adbc_ingest(f"{p}_products", pa.Table.from_pylist(after, PRODUCTS_SCHEMA), mode="append")
        cur.adbc_ingest(f"{p}_orders", pa.Table.from_pylist(orders, ORDERS_SCHEMA), mode="append")
        conn.commit()

    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    drifted = [dict(r) for r in before if r["id"] != 5]  # product 5 never delivered
    drifted[2]["price"] = decimal.Decimal("1.00")  # product 3: a lost update
    _index(client, f"{p}_products_ok", after)
    _index(client, f"{p}_products_drift", drifted)
    _index(client, f"{p}_products_repair", drifted)

    (d / "lake" / "wh").mkdir(parents=True)
    catalog = SqlCatalog("cli", uri=f"sqlite:///{d}/lake/catalog.db", warehouse=f"file://{d}/lake/wh")
    catalog.create_namespace(p)
    table = pa.Table.from_pylist(orders, ORDERS_SCHEMA)
    tables = {}
    for layer in ("bronze", "silver", "gold"):
        tables[layer] = catalog.create_table(f"{p}.{layer}", schema=ORDERS_SCHEMA)
        tables[layer].append(table)
    time.sleep(0.05)
    as_of_clean = dt.datetime.now(UTC).isoformat()
    time.sleep(0.05)
    # later: a bad backfill appends an order to gold that silver never had
    bad = _orders(now, 1)
    bad[0]["order_id"] = 999_999
    tables["gold"].append(pa.Table.from_pylist(bad, ORDERS_SCHEMA))
    gold_snapshots = [s.snapshot_id for s in catalog.load_table(f"{p}.gold").snapshots()]
    bronze_snapshot = catalog.load_table(f"{p}.bronze").current_snapshot().snapshot_id  # type: ignore[union-attr]

    # the stalled load: a new order in Postgres that never reached bronze
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p}_orders VALUES ({N_ORDERS + 1}, 12.50, now())")
        conn.commit()

    path = d / "contract.yaml"
    path.write_text(_contract(p))
    env = dict(os.environ)
    env |= {"CLI_PG_DSN": _with_password(pg_dsn, SECRET), "CLI_OS_URL": opensearch_url}
    env.pop("CI", None)
    yield Shop(d, path, env, as_of_clean, gold_snapshots, bronze_snapshot)

    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {p}_products, {p}_orders")
        conn.commit()
    for suffix in ("ok", "drift", "repair"):
        if client.indices.exists(index=f"{p}_products_{suffix}"):
            client.indices.delete(index=f"{p}_products_{suffix}")


def run(shop: Shop | None, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = env if env is not None else shop.env if shop is not None else dict(os.environ)
    cwd = shop.dir if shop is not None else None
    out = subprocess.run(
        [SEAMLINE, *args], env=e, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    for text in (out.stdout, out.stderr):
        assert SECRET not in text
    return out


def no_secret(*paths: Path) -> None:
    for path in paths:
        assert SECRET not in path.read_text(errors="replace"), path


def prometheus(path: Path) -> dict[tuple[str, str], float]:
    """The samples of a metrics file, parsed by prometheus_client: (name, "label=value,...") -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())))] = s.value
    return out


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("seamline: error: ")
    return lines[0]


# -- check -----------------------------------------------------------------------------------------


def test_check_clean_seam_exits_0_with_json_diffs_and_metrics(shop: Shop) -> None:
    out = run(
        shop, "check", str(shop.contract), "--seam", "products_ok", "--json", "r.json",
        "--diffs", "d.parquet", "--metrics", "m.prom",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "products_ok" in out.stdout and "clean" in out.stdout
    # progress, not on a terminal: one line per seam with rows/s per side
    assert "products_ok: source 40 rows (" in out.stderr and "rows/s" in out.stderr
    report = json.loads((shop.dir / "r.json").read_text())
    assert report["command"] == "check" and report["exit_code"] == 0 and report["clean"] is True
    assert report["contract"] == str(shop.contract)
    assert report["summary"] == {"seams": 1, "clean": 1, "drift": 0, "error": 0}
    seam = report["seams"]["products_ok"]
    assert seam["status"] == "clean" and seam["error"] is None
    kinds = ("source_rows", "target_rows", "missing", "extra", "changed", "duplicate")
    assert [seam["counts"][k] for k in kinds] == [40, 40, 0, 0, 0, 0]
    assert seam["as_of"]["source"]["store"] == "postgres" and seam["as_of"]["target"]["store"] == "opensearch"
    assert seam["as_of"]["source"]["detail"]["snapshot_id"]
    assert seam["source"].startswith("postgres ") and seam["target"].startswith("opensearch ")
    assert seam["differences"] == []
    assert {"passes", "ranges", "merkle_roots", "compare", "seam"} <= set(seam)
    assert pq.read_table(shop.dir / "d.parquet").num_rows == 0
    metrics = prometheus(shop.dir / "m.prom")
    assert metrics[("seamline_drift_rows", "kind=missing,seam=products_ok")] == 0
    assert metrics[("seamline_seam_clean", "seam=products_ok")] == 1
    assert metrics[("seamline_last_run_exit_code", "command=check")] == 0
    no_secret(shop.dir / "r.json", shop.dir / "m.prom")


def test_check_drift_exits_1_and_reports_every_difference(shop: Shop) -> None:
    out = run(
        shop, "check", str(shop.contract), "--seam", "products_drift", "--json", "drift.json",
        "--diffs", "drift.parquet", "--metrics", "drift.prom",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "DRIFT" in out.stdout and "missing   id=5" in out.stdout
    report = json.loads((shop.dir / "drift.json").read_text())
    assert report["exit_code"] == 1 and report["clean"] is False
    seam = report["seams"]["products_drift"]
    assert seam["status"] == "drift"
    found = {(d["id"], d["kind"]) for d in seam["differences"]}
    assert found == {(3, "changed"), (5, "missing"), (7, "changed")}
    changed = next(d for d in seam["differences"] if d["id"] == 3)
    assert changed["columns"] == ["price"]
    assert changed["source"]["price"] == "10.30" and float(changed["target"]["price"]) == 1.0
    diffs = pq.read_table(shop.dir / "drift.parquet")
    assert sorted(diffs.column("id").to_pylist()) == [3, 5, 7]
    assert "# TYPE seamline_drift_rows gauge" in (shop.dir / "drift.prom").read_text()
    metrics = prometheus(shop.dir / "drift.prom")
    assert metrics[("seamline_drift_rows", "kind=missing,seam=products_drift")] == 1
    assert metrics[("seamline_drift_rows", "kind=changed,seam=products_drift")] == 2
    assert metrics[("seamline_rows_read", "seam=products_drift,side=source")] >= 40  # all passes
    assert metrics[("seamline_duration_seconds", "seam=products_drift")] > 0
    assert metrics[("seamline_last_run_timestamp_seconds", "command=check")] > time.time() - 600
    no_secret(shop.dir / "drift.json", shop.dir / "drift.prom")


def test_check_every_seam_writes_one_diffs_file_per_seam(shop: Shop) -> None:
    out = run(shop, "check", str(shop.contract), "--json", "all.json", "--diffs", "all/diffs.parquet")
    assert out.returncode == 1, out.stderr
    report = json.loads((shop.dir / "all.json").read_text())
    status = {name: s["status"] for name, s in report["seams"].items()}
    assert status == {
        "products_ok": "clean",
        "products_drift": "drift",
        "products_warn": "drift",
        "products_repair": status["products_repair"],  # another test may have repaired it
        "orders_bronze": "drift",
        "bronze_silver": "clean",
        "silver_gold": "drift",
    }
    assert (shop.dir / "all" / "diffs.silver_gold.parquet").exists()
    assert pq.read_table(shop.dir / "all" / "diffs.orders_bronze.parquet").column("order_id").to_pylist() == [
        N_ORDERS + 1
    ]


# -- bad input, unavailable stores -------------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (
            "warn_after: 10m, error_after: 1h}}\n  - name: products_drift",
            "warn_after: 10 minutes, error_after: 1h}}\n  - name: products_drift",
            "seam 'products_ok': field 'freshness.warn_after': '10 minutes' is not a duration",
        ),
        ("index: {p}_products_drift}}", "index: {p}_products_drift, tabel: x}}", "field 'target.tabel'"),
        ("store: lake, table: {p}.bronze}}", "store: laek, table: {p}.bronze}}", "no store 'laek'"),
        (
            '"${{CLI_PG_DSN}}"',
            '"${{CLI_PG_NOPE}}"',
            "store 'oltp': field 'dsn': environment variable CLI_PG_NOPE",
        ),
        ("    key: order_id\n", "", "seam 'orders_bronze': field 'key': missing"),
    ],
)
def test_a_bad_contract_exits_2_with_one_line(shop: Shop, old: str, new: str, expected: str) -> None:
    text = _contract("P")
    old, new = old.replace("{p}", "P").format(), new.replace("{p}", "P").format()
    assert old in text
    bad = shop.dir / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    out = run(shop, "check", str(bad))
    assert out.returncode == 2
    line = one_line_error(out.stderr)
    assert line.startswith(f"seamline: error: {bad}: ") and expected in line, line


def test_usage_errors_and_unknown_names_exit_2(shop: Shop) -> None:
    out = run(shop, "check")
    assert out.returncode == 2 and "the following arguments are required: contract" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = run(shop, "check", str(shop.contract), "--seam", "nope")
    assert out.returncode == 2
    assert "no seam 'nope' (seams: products_ok" in one_line_error(out.stderr)
    out = run(shop, "lineage", str(shop.contract), "--chain", "nope")
    assert out.returncode == 2 and "no chain 'nope'" in one_line_error(out.stderr)
    out = run(shop, "lineage", str(shop.contract), "--chain", "lake", "--as-of", "last tuesday")
    assert out.returncode == 2 and "is not a time" in one_line_error(out.stderr)
    out = run(shop, "check", str(shop.dir / "missing.yaml"))
    assert out.returncode == 2 and "no such contract file" in one_line_error(out.stderr)


def test_debug_shows_the_traceback(shop: Shop) -> None:
    out = run(shop, "--debug", "check", str(shop.dir / "missing.yaml"))
    assert out.returncode == 2 and "Traceback" in out.stderr


def test_a_store_unavailable_exits_3_without_leaking_the_password(shop: Shop) -> None:
    env = shop.env | {"CLI_PG_DSN": f"postgresql://seamline:{SECRET}@127.0.0.1:{_free_port()}/seamline"}
    out = run(shop, "check", str(shop.contract), "--seam", "products_ok", "--json", "down.json", env=env)
    assert out.returncode == 3, out.stderr
    assert "seam 'products_ok': postgres at 127.0.0.1:" in out.stderr
    report = json.loads((shop.dir / "down.json").read_text())
    assert report["exit_code"] == 3 and report["seams"]["products_ok"]["status"] == "error"
    no_secret(shop.dir / "down.json")
    out = run(shop, "freshness", str(shop.contract), "--seam", "products_ok", env=env)
    assert out.returncode == 3
    out = run(shop, "lineage", str(shop.contract), "--chain", "orders", env=env)
    assert out.returncode == 3 and "postgres at 127.0.0.1" in one_line_error(out.stderr)


def test_a_drifted_seam_and_an_unavailable_one_exit_3(shop: Shop) -> None:
    text = shop.contract.read_text().replace(
        "stores:\n", f'stores:\n  down: {{type: opensearch, hosts: ["http://127.0.0.1:{_free_port()}"]}}\n'
    )
    text = text.replace("target: {store: search, index: cli", "target: {store: down, index: cli", 1)
    mixed = shop.dir / "mixed.yaml"
    mixed.write_text(text)
    out = run(shop, "check", str(mixed), "--seam", "products_ok", "--seam", "products_drift")
    assert out.returncode == 3, out.stderr
    assert "products_ok: store unavailable: opensearch at http://127.0.0.1:" in out.stdout
    assert "products_drift" in out.stdout and "DRIFT" in out.stdout


# -- freshness --------------------------------------------------------------------------------------


def test_freshness_breach_at_error_exits_1(shop: Shop) -> None:
    out = run(
        shop, "freshness", str(shop.contract), "--seam", "products_ok", "--seam", "products_drift",
        "--json", "fresh.json", "--metrics", "fresh.prom",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "ERROR" in out.stdout
    report = json.loads((shop.dir / "fresh.json").read_text())
    ok, drift = report["seams"]["products_ok"], report["seams"]["products_drift"]
    assert ok["status"] == "pass" and ok["lag_seconds"] == 0 and ok["backlog"] == 0
    # product 7 changed "now" in Postgres; the copy's newest version is product 40's, ~2 days old
    assert drift["status"] == "error" and drift["basis"] == "version"
    assert 2 * 86400 - 41 * 60 - 5 < drift["lag_seconds"] < 2 * 86400
    assert drift["backlog"] == 1
    assert drift["warn_after_seconds"] == 600 and drift["error_after_seconds"] == 3600
    assert drift["as_of"]["source"]["store"] == "postgres"
    assert drift["as_of"]["target"]["detail"]["pit_created_at"]
    metrics = prometheus(shop.dir / "fresh.prom")
    assert metrics[("seamline_freshness_status", "seam=products_drift")] == 2
    assert metrics[("seamline_freshness_backlog_rows", "seam=products_drift")] == 1
    assert metrics[("seamline_freshness_lag_seconds", "seam=products_ok")] == 0


def test_freshness_at_warn_exits_0(shop: Shop) -> None:
    out = run(shop, "freshness", str(shop.contract), "--seam", "products_warn", "--json", "warn.json")
    assert out.returncode == 0, out.stderr
    assert json.loads((shop.dir / "warn.json").read_text())["seams"]["products_warn"]["status"] == "warn"


# -- lineage -----------------------------------------------------------------------------------------


def test_lineage_finds_the_stalled_bronze_load(shop: Shop) -> None:
    out = run(shop, "lineage", str(shop.contract), "--chain", "orders", "--json", "walk.json")
    assert out.returncode == 1, out.stderr
    assert "first divergence at seam 'orders_bronze'" in out.stdout
    assert f"target read snapshot {shop.bronze_snapshot}" in out.stdout
    walk = json.loads((shop.dir / "walk.json").read_text())
    assert walk["diverged_at"] == "orders_bronze" and walk["clean"] is False
    first, *rest = walk["layers"]
    assert first["verdict"] == "stale, drift"
    assert first["freshness"]["status"] == "error" and first["freshness"]["backlog"] == 1
    assert first["counts"]["missing"] == 1 and first["counts"]["source_rows"] == N_ORDERS + 1
    assert first["as_of"]["target"]["detail"]["snapshot_id"] == shop.bronze_snapshot
    assert first["as_of"]["source"]["detail"]["snapshot_id"]
    assert [layer["verdict"] for layer in rest] == ["not checked", "not checked"]


def test_lineage_as_of_reads_the_snapshots_the_dashboard_read(shop: Shop) -> None:
    out = run(shop, "lineage", str(shop.contract), "--chain", "lake", "--json", "now.json")
    assert out.returncode == 1, out.stderr
    now = json.loads((shop.dir / "now.json").read_text())
    assert now["diverged_at"] == "silver_gold"
    assert now["layers"][1]["counts"]["extra"] == 1
    assert now["layers"][1]["as_of"]["target"]["detail"]["snapshot_id"] == shop.gold_snapshots[-1]

    out = run(
        shop, "lineage", str(shop.contract), "--chain", "lake", "--as-of", shop.as_of_clean,
        "--json", "then.json",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every layer agrees" in out.stdout
    then = json.loads((shop.dir / "then.json").read_text())
    assert then["clean"] is True and then["diverged_at"] is None
    assert then["layers"][1]["as_of"]["target"]["detail"]["snapshot_id"] == shop.gold_snapshots[0]


# -- repair ------------------------------------------------------------------------------------------


def test_repair_dry_run_then_apply(shop: Shop) -> None:
    refused = run(shop, "repair", str(shop.contract), "--seam", "products_repair", "--max-fraction", "0.01")
    assert refused.returncode == 1
    assert "repair refused" in refused.stderr and "drift not repaired" in refused.stderr

    dry = run(shop, "repair", str(shop.contract), "--seam", "products_repair", "--json", "plan.json")
    assert dry.returncode == 1, dry.stderr
    assert "upsert 3" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert json.loads((shop.dir / "plan.json").read_text())["plan"]["upsert"] == 3
    still = run(shop, "check", str(shop.contract), "--seam", "products_repair")
    assert still.returncode == 1  # a dry run writes nothing

    applied = run(shop, "repair", str(shop.contract), "--seam", "products_repair", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "verified" in applied.stdout
    after = run(shop, "check", str(shop.contract), "--seam", "products_repair")
    assert after.returncode == 0, after.stdout


# -- demo --------------------------------------------------------------------------------------------


def test_demo_runs_through_its_contract(shop: Shop) -> None:
    from seamline.demo import drop_pipeline

    try:
        out = run(shop, "demo", "--workdir", str(shop.dir / "demo"))
    finally:
        drop_pipeline(shop.dir / "demo")  # the stream pipeline's topics, tables and index
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every injected drift was found, and nothing else" in out.stdout
    assert (shop.dir / "demo" / "contract.yaml").exists()
    for seam in ("products_search", "products_silver", "products_vectors", "orders_bronze", "revenue_gold"):
        assert seam in out.stdout


# -- metrics and progress (no services) ------------------------------------------------------------


def test_metrics_are_prometheus_text_written_atomically(tmp_path: Path) -> None:
    from seamline.metrics import Metrics, escape_label

    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    m = Metrics("check")
    m.add("seamline_drift_rows", 3, seam='we"ird', kind="missing")
    m.add("seamline_freshness_lag_seconds", 1.5, seam="s")
    path = tmp_path / "out" / "seamline.prom"
    m.write(path, 1)
    text = path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:3] == [
        "# HELP seamline_drift_rows Rows that differ between the source and the target, by kind.",
        "# TYPE seamline_drift_rows gauge",
        'seamline_drift_rows{kind="missing",seam="we\\"ird"} 3.0',
    ]
    assert 'seamline_freshness_lag_seconds{seam="s"} 1.5' in lines
    assert 'seamline_last_run_exit_code{command="check"} 1.0' in lines
    assert prometheus(path)[("seamline_drift_rows", 'kind=missing,seam=we"ird')] == 3
    assert [p.name for p in path.parent.iterdir()] == ["seamline.prom"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_progress_lines_and_rates() -> None:
    import io

    from seamline.progress import Progress, rate

    assert rate(1500, 1.0) == "1.5k" and rate(10, 0) == "-" and rate(3_000_000, 1) == "3.0M"
    stream = io.StringIO()
    progress = Progress(stream)
    assert progress.live is False  # not a terminal: no spinner, only the finished lines
    with progress.step("s: reconciling"):
        pass

    class Result:
        passes = [
            {"kind": "hash", "side": "source", "rows": 1000, "seconds": 0.5},
            {"kind": "hash", "side": "target", "rows": 999, "seconds": 0.25},
            {"kind": "diff", "side": "target", "rows": 10, "seconds": 0.01},
        ]
        counts = {"missing": 1, "extra": 0, "changed": 0, "duplicate": 0}
        clean = False
        seconds = 0.8

    progress.seam_done("s", Result())
    assert stream.getvalue() == (
        "s: source 1,000 rows (2.0k rows/s), target 999 rows (4.0k rows/s); 1 difference; 0.80s\n"
    )


# -- hardening (issue 10): what a new user ran into ---------------------------------------------------


def _down_env(shop: Shop) -> dict[str, str]:
    """The shop's environment with Postgres pointing at a closed port."""
    return shop.env | {"CLI_PG_DSN": f"postgresql://seamline:{SECRET}@127.0.0.1:{_free_port()}/seamline"}


def test_ctrl_c_during_start_up_is_one_line_and_130(tmp_path: Path) -> None:
    """SIGINT while pyarrow and polars import ends the same way as later: one line and exit code 130,
    never a KeyboardInterrupt traceback. Python reports each import as it finishes
    (PYTHONPROFILEIMPORTTIME), so the signal is sent exactly while the heavy imports run."""
    import signal

    env = dict(os.environ) | {"PYTHONPROFILEIMPORTTIME": "1"}
    args = [SEAMLINE, "merge", "--output-uri", str(tmp_path), "--run-id", "r", "--shards", "2"]
    args += ["--wait", "1h"]  # waits for shards that never come: the process lives until the signal
    for during in ("pyarrow.lib", "pyarrow", "polars", "seamline.shard"):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.split("|")[-1].strip() == during:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        said = [x for x in (err.splitlines()) if not x.startswith("import time:")]
        assert proc.returncode == 130, (during, said)
        assert said == ["seamline: interrupted"], (during, said)


@pytest.mark.parametrize(
    "args,expected",
    [
        (("repair", "--seam", "products_ok", "--max-fraction", "-1"), "--max-fraction: -1 is not a fraction"),
        (("repair", "--seam", "products_ok", "--max-fraction", "2"), "--max-fraction: 2 is not a fraction"),
        (("repair", "--seam", "products_ok", "--max-fraction", "x"), "--max-fraction: 'x' is not a number"),
        (("check", "--seam", "products_ok", "--shard", "4/4", "--output-uri", "o"), "--shard: '4/4'"),
        (("check", "--seam", "products_ok", "--shards", "0", "--output-uri", "o"), "--shards: 0 is not"),
        (("check", "--json", "contract.yaml/r.json"), "--json contract.yaml/r.json: cannot write there"),
        (("freshness", "--metrics", "contract.yaml/m.prom"), "--metrics contract.yaml/m.prom: cannot write"),
    ],
)
def test_arguments_are_checked_before_any_store_is_read(
    shop: Shop, args: tuple[str, ...], expected: str
) -> None:
    # the store is down: an argument checked only after reading it would exit 3
    command, *rest = args
    out = run(shop, command, str(shop.contract), *rest, env=_down_env(shop))
    assert out.returncode == 2, out.stderr
    assert expected in one_line_error(out.stderr)
    assert "postgres" not in out.stderr


def _bad_sql_contract(shop: Shop) -> Path:
    text = shop.contract.read_text()
    products = text.split("  - name: products_ok\n", 1)[1].split("  - name: products_drift", 1)[0]
    bad = products.replace("table: public.", "where: 'no_such_column > 1', table: public.", 1)
    path = shop.dir / "bad_sql.yaml"
    path.write_text(text.replace("seams:\n", f"seams:\n  - name: bad_sql\n{bad}", 1))
    return path


def test_bad_sql_is_one_line_naming_the_seam_and_the_servers_message(shop: Shop) -> None:
    contract = _bad_sql_contract(shop)
    out = run(shop, "check", str(contract), "--seam", "bad_sql", "--seam", "products_ok")
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("seamline: error")]
    assert len(errors) == 1, out.stderr
    assert errors[0].startswith("seamline: error: seam 'bad_sql': postgres")
    assert errors[0].endswith(': column "no_such_column" does not exist'), errors[0]
    for raw in ("ProgrammingError", "NOT_FOUND", "Query was", "Traceback", "SQLSTATE"):
        assert raw not in out.stderr + out.stdout
    out = run(shop, "repair", str(contract), "--seam", "bad_sql")
    assert out.returncode == 2
    line = one_line_error(out.stderr)
    assert line.startswith("seamline: error: seam 'bad_sql': postgres")
    assert line.endswith(': column "no_such_column" does not exist'), line


def test_a_contract_that_fails_validation_still_writes_json_and_metrics(shop: Shop) -> None:
    bad = shop.dir / "invalid.yaml"
    bad.write_text(shop.contract.read_text().replace("    key: order_id\n", "", 1))
    for command in ("check", "freshness", "repair"):
        extra = ["--seam", "orders_bronze"] if command == "repair" else []
        report, prom = shop.dir / f"invalid-{command}.json", shop.dir / f"invalid-{command}.prom"
        out = run(shop, command, str(bad), *extra, "--json", str(report), "--metrics", str(prom))
        assert out.returncode == 2
        assert "field 'key': missing" in one_line_error(out.stderr)
        written = json.loads(report.read_text())
        assert written["command"] == command and written["exit_code"] == 2
        assert "field 'key': missing" in written["error"]
        assert prometheus(prom)[("seamline_last_run_exit_code", f"command={command}")] == 2
    no_secret(*shop.dir.glob("invalid-*"))


def test_repair_prints_its_plan_one_line_per_operation(shop: Shop) -> None:
    out = run(shop, "repair", str(shop.contract), "--seam", "products_drift", "--max-fraction", "0.5")
    assert out.returncode == 1, out.stderr  # a dry run with something to repair
    assert "shape:" not in out.stdout and "┌" not in out.stdout
    lines = out.stdout.splitlines()
    assert "repair plan for seam 'products_drift': upsert 3, delete 0, dedupe 0" in lines
    upserts = [line.split() for line in lines if line.strip().startswith("upsert ")]
    assert [u[1] for u in upserts] == ["id=3", "id=5", "id=7"]
    changed = next(line for line in lines if "id=3" in line)
    assert "price: 1.0 -> 10.30" in changed  # the target's value -> the value written
    assert "new: sku='SKU-005', price=10.50" in next(line for line in lines if "id=5" in line)


def test_repair_refusals_say_the_numbers_and_the_contract_fix(shop: Shop) -> None:
    from seamline.commands.common import percent, refusal_text
    from seamline.exceptions import RepairRefusedError

    assert percent(3 / 39) == "7.7%" and percent(1 / 2_000_000) == "0.000050%" and percent(1) == "100%"
    raised = RepairRefusedError(
        "repair of a -> b refused: no version column, ...; pass version= to reconcile"
    )
    assert refusal_text(raised) == "no version column, ...; add `version:` to the seam in the contract"
    out = run(shop, "repair", str(shop.contract), "--seam", "products_drift", "--max-fraction", "0.01")
    assert out.returncode == 1
    line = next(x for x in out.stderr.splitlines() if "refused" in x)
    assert line.count("refused") == 1 and "repair of" not in line
    assert "would touch 3 of 39 target rows (7.7%), above max_fraction 1.0%" in line
    assert line.endswith("drift not repaired")

    text = shop.contract.read_text()
    seam = text.split("  - name: products_drift\n", 1)[1].split("  - name: products_warn", 1)[0]
    unversioned = seam.replace("    version: updated_at\n", "")
    path = shop.dir / "unversioned.yaml"
    path.write_text(text.replace("seams:\n", f"seams:\n  - name: unversioned\n{unversioned}", 1))
    out = run(shop, "repair", str(path), "--seam", "unversioned", "--max-fraction", "0.5")
    assert out.returncode == 1
    line = next(x for x in out.stderr.splitlines() if "refused" in x)
    assert "add `version:`" in line and "pass version=" not in line and line.count("refused") == 1


def test_differences_only_unicode_explains_show_escapes_and_the_option() -> None:
    import seamline as sl
    from seamline.report import differences

    source = pa.table({"id": [1, 2, 3], "name": ["caf\u00e9", "a\u00a0b", "x "]})
    target = pa.table({"id": [1, 2, 3], "name": ["cafe\u0301", "a b", "x"]})
    text = differences(sl.reconcile(sl.arrow(source), sl.arrow(target), key="id"))
    lines = text.splitlines()
    assert "name: 'café' -> 'cafe\\u0301' (equal under unicode: nfc)" in lines[0]
    assert "name: 'a\\u00a0b' -> 'a b'" in lines[1]
    assert "name: 'x\\u0020' -> 'x' (equal under trim: true)" in lines[2]
    ordinary = sl.reconcile(
        sl.arrow(pa.table({"id": [1], "name": ["a"]})),
        sl.arrow(pa.table({"id": [1], "name": ["b"]})),
        key="id",
    )
    assert "name: 'a' -> 'b'" in differences(ordinary)


def test_the_summary_has_a_row_for_every_seam(shop: Shop) -> None:
    text = shop.contract.read_text().replace(
        "stores:\n", f'stores:\n  down: {{type: opensearch, hosts: ["http://127.0.0.1:{_free_port()}"]}}\n'
    )
    text = text.replace("target: {store: search, index: cli", "target: {store: down, index: cli", 1)
    mixed = shop.dir / "summary.yaml"
    mixed.write_text(text)
    out = run(shop, "check", str(mixed), "--seam", "products_ok", "--seam", "products_drift")
    assert out.returncode == 3
    header, _, *rows = out.stdout.split("\n\n")[0].splitlines()
    assert header.split()[-1] == "seconds" and header.split()[1] == "status"
    status = {row.split()[0]: row.split()[1] for row in rows}
    assert status == {"products_ok": "UNAVAILABLE", "products_drift": "DRIFT"}
    # the table's seconds are the ones the progress line showed
    finished = next(x for x in out.stderr.splitlines() if x.startswith("products_drift: source"))
    drift_row = next(row for row in rows if row.startswith("products_drift"))
    assert finished.rsplit("; ", 1)[1] == drift_row.split()[-1] + "s"


def test_summary_counts_have_thousands_separators() -> None:
    from seamline.report import summary

    class Big:
        counts = {"source_rows": 2_000_000, "target_rows": 1_999_000, "missing": 1000}
        counts |= {"extra": 0, "changed": 12_345, "duplicate": 0}
        clean = False
        seconds = 3.25

    table = summary({"big": Big(), "down": None}, failed={"down": "UNAVAILABLE"})
    assert "2,000,000" in table and "1,999,000" in table and "12,345" in table and "1,000" in table
    assert table.splitlines()[3].split()[:2] == ["down", "UNAVAILABLE"]


SLOW_SIDE = """
import time, pyarrow as pa, seamline as sl

class Slow:
    # a stream that trickles (40 batches of 50 rows, 20 ms apart) and is read whole by every pass
    def __init__(self, shift): self.shift = shift
    def describe(self): return "slow"
    def schema(self): return pa.schema([("id", pa.int64()), ("v", pa.int64())])
    def pin(self): return sl.stores.protocols.AsOf("slow")
    def sample_keys(self, key, n): return None
    def estimated_rows(self): return 2000
    def close(self): pass
    def open(self, request):
        def batches():
            for b in range(40):
                time.sleep(0.02)
                ids = list(range(b * 50, b * 50 + 50))
                yield pa.record_batch([pa.array(ids), pa.array([i + (i == 7) * self.shift for i in ids])],
                                      schema=self.schema())
        return [pa.RecordBatchReader.from_batches(self.schema(), batches())]
"""


def test_the_live_counter_never_passes_the_total() -> None:
    import seamline as sl

    namespace: dict[str, Any] = {}
    exec(SLOW_SIDE, namespace)  # noqa: S102 - the test's own source, as text to share with a subprocess
    seen: list[dict[str, int]] = []
    slow = namespace["Slow"]
    result = sl.reconcile(slow(0), slow(1), key="id", options=sl.Options(on_progress=seen.append))
    assert result.counts["changed"] == 1 and len(result.passes) > 2  # a diff pass read the sides again
    assert seen, "no progress was reported"
    assert max(max(s.values()) for s in seen) <= 2000


def test_the_finished_line_shows_the_time_the_spinner_showed() -> None:
    import io

    from seamline.commands.common import run_seams
    from seamline.commands.session import Session

    class Result:
        passes: list[dict[str, Any]] = []
        counts = {"missing": 0, "extra": 0, "changed": 0, "duplicate": 0}
        clean = True
        seconds = 0.01  # the reconcile's own time, without connecting and pinning

    class Seam:
        name = "s"

    err = io.StringIO()
    session = Session(io.StringIO(), err)
    session.progress.live = True

    def slow(_: Any) -> Result:
        time.sleep(0.35)
        return Result()

    (done,) = run_seams([Seam()], slow, session, doing="reconciling")  # type: ignore[list-item]
    session.progress.seam_done("s", done.value, done.seconds)
    frames = [f for f in err.getvalue().split("\r") if f.startswith(("|", "/", "-", "\\"))]
    last_spinner = float(frames[-1].split("\x1b")[0].split()[-1].rstrip("s"))
    finished = float(err.getvalue().rsplit("; ", 1)[1].strip().rstrip("s"))
    assert 0.3 <= finished and last_spinner <= finished < last_spinner + 0.2


def test_help_describes_every_command_and_option() -> None:
    import argparse

    from seamline.cli import parser

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        assert p.description, f"{name}: no description"
        assert "130" in (p.epilog or ""), f"{name}: the exit codes omit 130"
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name}: {action.option_strings or action.dest} has no help"

    walk(parser(), "seamline")
    out = run(None, "--help")
    assert out.returncode == 0 and "130  interrupted" in out.stdout
    from seamline._core import __version__

    out = run(None, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"seamline {__version__}"


def test_help_imports_neither_arrow_nor_polars_nor_a_store_client() -> None:
    probe = (
        "import sys\n"
        "from seamline.cli import main\n"
        "try:\n    main(['check', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('pyarrow', 'polars', 'adbc_driver_manager', 'opensearchpy', 'pyiceberg', 'lancedb')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _two_shards(shop: Shop, out: Path, run_id: str) -> None:
    """products_drift checked as two shards of one pinned layout, written under `out`."""
    layout = out / f"{run_id}.layout"
    pinned = run(shop, "layout", str(shop.contract), "--seam", "products_drift", "--output", str(layout))
    assert pinned.returncode == 0, pinned.stderr
    for i in range(2):
        shard = run(
            shop, "check", str(shop.contract), "--seam", "products_drift", "--shard", f"{i}/2",
            "--output-uri", str(out), "--run-id", run_id, "--layout", str(layout),
        )  # fmt: skip
        assert shard.returncode == 0, shard.stderr


def test_merged_shards_print_the_changed_values_like_check(shop: Shop, tmp_path: Path) -> None:
    _two_shards(shop, tmp_path, "values")
    merged = run(shop, "merge", "--output-uri", str(tmp_path), "--run-id", "values", "--shards", "2")
    assert merged.returncode == 1, merged.stderr
    check = run(shop, "check", str(shop.contract), "--seam", "products_drift")
    changed = sorted(x.strip() for x in check.stdout.splitlines() if x.strip().startswith("changed "))
    assert changed and "price: 10.30 -> 1.0" in changed[0]
    assert (
        sorted(x.strip() for x in merged.stdout.splitlines() if x.strip().startswith("changed ")) == changed
    )


def test_merge_writes_json_and_metrics_through_the_renderer(shop: Shop, tmp_path: Path) -> None:
    _two_shards(shop, tmp_path, "outputs")
    merged = run(
        shop, "merge", "--output-uri", str(tmp_path), "--run-id", "outputs", "--shards", "2",
        "--json", str(tmp_path / "m.json"), "--metrics", str(tmp_path / "m.prom"),
    )  # fmt: skip
    assert merged.returncode == 1, merged.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["command"] == "merge" and report["exit_code"] == 1 and report["counts"]["changed"] == 2
    metrics = prometheus(tmp_path / "m.prom")
    assert metrics[("seamline_drift_rows", "kind=changed,seam=products_drift")] == 2
    assert metrics[("seamline_last_run_exit_code", "command=merge")] == 1
