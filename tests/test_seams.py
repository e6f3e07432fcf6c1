"""The issue's seams end to end, against the real stores (no store is mocked anywhere here).

Postgres is the system of record; the copies are OpenSearch (catalog search), Iceberg (SQL catalog on
SQLite + local warehouse: bronze orders, gold revenue), LanceDB (embedded vector index) and another
Postgres table. Each copy is built from the original state, then the live system moves on:

- a CDC event lost: a product updated in Postgres, stale in the copy  -> `changed` with its columns;
- a product soft-deleted in Postgres (deleted_at set), still in the copy -> `extra` against a source
  filtered on ``deleted_at IS NULL``;
- an insert never delivered -> `missing`;
- an order event replayed into bronze -> revenue double-counted in gold (`changed` day) and the order
  `duplicate` on the target side of Postgres -> bronze;
- type traps that must NOT be drift: OpenSearch `date` (ms) vs timestamptz (us); numeric(12,2) vs an
  OpenSearch `double` and an Iceberg decimal(12,2); text keys with '-', '_' and mixed case under a
  non-C collation, cut into several key ranges so range pushdown (COLLATE "C") is exercised.

Every test uses uniquely named tables/indexes (uuid suffix) and removes them afterwards.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import seamline as sl

pytestmark = pytest.mark.services

UTC = dt.UTC
BASE = dt.datetime(2026, 11, 20, tzinfo=UTC)
N_PRODUCTS = 300
LOST_CDC, SOFT_DELETED, NEVER_DELIVERED = 42, 13, N_PRODUCTS + 1
LIVE = "deleted_at IS NULL"

PRODUCT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("sku", pa.string()),
        ("name", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("in_stock", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
    ]
)
PRODUCT_DDL = (
    "(id bigint PRIMARY KEY, sku text NOT NULL, name text, price numeric(12,2), in_stock boolean, "
    "updated_at timestamptz, deleted_at timestamptz)"
)
ORDER_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        ("product_id", pa.int64()),
        ("amount", pa.decimal128(12, 2)),
        ("ordered_at", pa.timestamp("us", tz="UTC")),
    ]
)
GOLD_SCHEMA = pa.schema([pa.field("day", pa.date32(), nullable=False), ("revenue", pa.decimal128(14, 2))])


def _micros(i: int) -> int:
    """Sub-millisecond part of product i's updated_at: every third product sits on a whole ms."""
    return 0 if i % 3 == 0 else 1 + (i * 389) % 999


def products(n: int = N_PRODUCTS) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "sku": f"{'Ab'[i % 2]}-{i:04d}_{'xY'[i % 2]}",
            "name": f"Product {i}",
            "price": Decimal(199 + (i * 37) % 900_000) / 100,
            "in_stock": i % 7 != 0,
            "updated_at": BASE + dt.timedelta(minutes=i, milliseconds=i % 1000, microseconds=_micros(i)),
            "deleted_at": None,
        }
        for i in range(1, n + 1)
    ]


SUB_MS_IDS = {p["id"] for p in products() if p["updated_at"].microsecond % 1000}


# ======================================================================================= fixtures


class Pg:
    """An autocommit ADBC connection; `table()` hands out unique names, all dropped afterwards."""

    def __init__(self, dsn: str) -> None:
        import adbc_driver_postgresql.dbapi as pgdbapi

        self.dsn = dsn
        self.conn = pgdbapi.connect(dsn, autocommit=True)
        self.prefix = f"sl_seam_{uuid.uuid4().hex[:8]}"
        self.tables: list[str] = []

    def table(self, name: str) -> str:
        full = f"{self.prefix}_{name}"
        self.tables.append(full)
        return full

    def execute(self, *statements: str) -> None:
        cur = self.conn.cursor()
        try:
            for sql in statements:
                cur.execute(sql)
        finally:
            cur.close()

    def scalar(self, sql: str) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetchone()[0]
        finally:
            cur.close()

    def create(self, name: str, ddl: str, rows: pa.Table) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(f"CREATE TABLE {name} {ddl}")
            if rows.num_rows:
                cur.adbc_ingest(name, rows, mode="append")
            cur.execute(f"ANALYZE {name}")
        finally:
            cur.close()

    def close(self) -> None:
        try:
            for name in self.tables:
                self.execute(f"DROP TABLE IF EXISTS {name}")
        finally:
            self.conn.close()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Pg]:
    db = Pg(pg_dsn)
    try:
        yield db
    finally:
        db.close()


class Search:
    """An OpenSearch client; `index()` hands out unique names, all deleted afterwards."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch

        self.url = url
        self.client = OpenSearch(hosts=[url], timeout=120)
        self.prefix = f"sl-seam-{uuid.uuid4().hex[:8]}"

    def index(self, name: str, properties: dict[str, Any], docs: dict[str, dict[str, Any]]) -> str:
        from opensearchpy import helpers

        full = f"{self.prefix}-{name}"
        self.client.indices.create(
            index=full,
            body={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": properties},
            },
        )
        actions = ({"_index": full, "_id": _id, "_source": doc} for _id, doc in docs.items())
        helpers.bulk(self.client, actions, chunk_size=5000)
        self.client.indices.refresh(index=full)
        return full

    def close(self) -> None:
        try:
            self.client.indices.delete(index=f"{self.prefix}-*", ignore=[404])
        finally:
            self.client.close()


@pytest.fixture
def search(opensearch_url: str) -> Iterator[Search]:
    s = Search(opensearch_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def lake(tmp_path: Path) -> dict[str, str]:
    """Catalog properties of a fresh Iceberg SQL catalog (SQLite + local warehouse), namespace `shop`."""
    from pyiceberg.catalog import load_catalog

    (tmp_path / "wh").mkdir()
    props = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    load_catalog("seams", **props).create_namespace("shop")
    return {"name": "seams", **props}


def _iceberg_table(catalog: dict[str, str], name: str, schema: pa.Schema, *appends: pa.Table) -> str:
    from pyiceberg.catalog import load_catalog

    props = dict(catalog)
    table = load_catalog(props.pop("name"), **props).create_table(f"shop.{name}", schema=schema)
    for rows in appends:
        table.append(rows)
    return f"shop.{name}"


# ======================================================================================= helpers


def found(result: sl.ReconcileResult, key: str = "id", cast: Callable[[Any], Any] = lambda k: k) -> set:
    return {(cast(row[key]), row["kind"]) for row in result.diffs.iter_rows(named=True)}


def changed_columns(result: sl.ReconcileResult, key: str = "id", cast: Callable[[Any], Any] = lambda k: k):
    return {
        cast(row[key]): row["columns"]
        for row in result.diffs.iter_rows(named=True)
        if row["kind"] == "changed"
    }


def assert_counts(result: sl.ReconcileResult, **expected: int) -> None:
    """These counts exactly, and every other kind of difference zero."""
    assert {k: result.counts.get(k) for k in expected} == expected, result.counts
    others = {k: v for k, v in result.counts.items() if k not in expected and not k.endswith("_rows")}
    assert not any(others.values()), result.counts


def _os_product(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "sku": p["sku"],
        "name": p["name"],
        "price": float(p["price"]),
        "in_stock": p["in_stock"],
        # as a CDC consumer sends it: ISO with microseconds; the `date` field keeps milliseconds
        "updated_at": p["updated_at"].isoformat(timespec="microseconds"),
    }


OS_PRODUCT_MAPPING = {
    "id": {"type": "long"},
    "sku": {"type": "keyword"},
    "name": {"type": "keyword"},
    "price": {"type": "double"},
    "in_stock": {"type": "boolean"},
    "updated_at": {"type": "date"},
}


def build_copy(target: str, rows: list[dict[str, Any]], pg: Pg, search: Search, lake: dict, tmp: Path) -> Any:
    """The copy of `rows` in the target store, as a Seamline source."""
    if target.startswith("opensearch"):
        index = search.index("products", OS_PRODUCT_MAPPING, {str(p["id"]): _os_product(p) for p in rows})
        key_field = "id" if target == "opensearch-field" else None
        return sl.opensearch(search.url, index, key_field=key_field)
    if target == "iceberg":
        name = _iceberg_table(lake, "products", PRODUCT_SCHEMA, pa.Table.from_pylist(rows, PRODUCT_SCHEMA))
        return sl.iceberg(name, catalog=lake)
    if target == "lancedb":
        import lancedb

        db = lancedb.connect(str(tmp / "vectors"))
        docs = [
            {k: v for k, v in p.items() if k != "deleted_at"}
            | {"price": float(p["price"]), "vector": [float((p["id"] * k) % 17) / 17 for k in range(1, 9)]}
            for p in rows
        ]
        db.create_table("products", data=docs)
        return sl.lancedb(str(tmp / "vectors"), "products")
    assert target == "postgres"
    name = pg.table("products_copy")
    pg.create(name, PRODUCT_DDL, pa.Table.from_pylist(rows, PRODUCT_SCHEMA))
    return sl.postgres(pg.dsn, name)


def live_system_moves_on(pg: Pg, table: str) -> None:
    """The writes the copies never received."""
    pg.execute(
        f"UPDATE {table} SET name = 'Product 42 (v2)', price = price + 10, "
        f"updated_at = '2026-12-01 10:00:00.123456+00' WHERE id = {LOST_CDC}",
        f"UPDATE {table} SET deleted_at = '2026-12-01 11:00:00.654321+00' WHERE id = {SOFT_DELETED}",
        f"INSERT INTO {table} VALUES ({NEVER_DELIVERED}, 'A-0301_y', 'Product 301', 12.34, true, "
        "'2026-12-01 12:00:00.000777+00', NULL)",
        f"ANALYZE {table}",
    )


EXPECTED_PRODUCTS = {(LOST_CDC, "changed"), (SOFT_DELETED, "extra"), (NEVER_DELIVERED, "missing")}


@pytest.fixture
def products_seam(request: pytest.FixtureRequest, pg: Pg, search: Search, lake: dict, tmp_path: Path):
    """(source, target-factory-input) for a products seam: Postgres source moved on after the copy."""
    target = request.param
    rows = products()
    table = pg.table("products")
    pg.create(table, PRODUCT_DDL, pa.Table.from_pylist(rows, PRODUCT_SCHEMA))
    copy = build_copy(target, rows, pg, search, lake, tmp_path)
    live_system_moves_on(pg, table)
    return target, table, copy


# ============================================================== 1. products: lost, deleted, undelivered

TARGETS = ["opensearch-id", "opensearch-field", "iceberg", "lancedb", "postgres"]


@pytest.mark.parametrize("products_seam", TARGETS, indirect=True)
def test_products_drift_found_exactly(products_seam: tuple[str, str, Any], pg: Pg) -> None:
    target, table, copy = products_seam
    key: Any = {"id": "_id"} if target == "opensearch-id" else "id"
    compare = sl.Compare(timestamp_precision="ms") if target.startswith("opensearch") else None
    result = sl.reconcile(sl.postgres(pg.dsn, table, where=LIVE), copy, key=key, compare=compare)

    cast = int  # normalise: an `_id` key is a keyword on the target side
    assert found(result, cast=cast) == EXPECTED_PRODUCTS, result.diffs
    assert changed_columns(result, cast=cast) == {LOST_CDC: ["name", "price", "updated_at"]}
    # 300 + 1 inserted - 1 soft-deleted on the source
    assert_counts(
        result, source_rows=N_PRODUCTS, target_rows=N_PRODUCTS, missing=1, extra=1, changed=1, duplicate=0
    )
    assert not result.clean
    compared = [c["source"] for c in result.seam.describe()["columns"]]
    assert compared[:5] == ["sku", "name", "price", "in_stock", "updated_at"]
    # both sides' values of the stale product are reported
    row = result.diffs.filter(result.diffs["kind"] == "changed").row(0, named=True)
    assert Decimal(str(row["source"]["price"])) - Decimal(str(row["target"]["price"])) == 10
    assert (row["source"]["name"], row["target"]["name"]) == ("Product 42 (v2)", "Product 42")


@pytest.mark.parametrize("products_seam", ["opensearch-id", "opensearch-field"], indirect=True)
def test_opensearch_ms_dates_are_not_drift_unless_compared_at_us(
    products_seam: tuple[str, str, Any], pg: Pg, search: Search
) -> None:
    """OpenSearch `date` keeps ms; timestamptz keeps us. The default (coarser side) and "ms" absorb it;
    forcing "us" reports every product whose updated_at has a sub-ms part -- the trap is real."""
    target, table, copy = products_seam
    key: Any = {"id": "_id"} if target == "opensearch-id" else "id"
    index = f"{search.prefix}-products"
    key_field = "id" if target == "opensearch-field" else None

    def seam(compare: sl.Compare) -> sl.ReconcileResult:
        return sl.reconcile(
            sl.postgres(pg.dsn, table, where=LIVE),
            sl.opensearch(search.url, index, key_field=key_field),
            key=key,
            compare=compare,
        )

    default = seam(sl.Compare())
    assert found(default, cast=int) == EXPECTED_PRODUCTS
    assert default.seam.describe()["columns"][4]["type"] == "Timestamp(precision='ms')"

    us = seam(sl.Compare(timestamp_precision="us"))
    trapped = SUB_MS_IDS - {LOST_CDC, SOFT_DELETED}
    assert len(trapped) > 100
    assert found(us, cast=int) == EXPECTED_PRODUCTS | {(i, "changed") for i in trapped}
    cols = changed_columns(us, cast=int)
    assert {cols[i] == ["updated_at"] for i in trapped} == {True}
    assert cols[LOST_CDC] == ["name", "price", "updated_at"]


# ======================================================================= 2. type traps: no drift


PRICES = [
    Decimal(s) for s in ("19.99", "0.1", "0.10", "1234567.89", "0.01", "-0.01", "0", "2.67", "9999999999.99")
]


def _price_rows(n: int = 600) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        if i < len(PRICES):
            price: Decimal | None = PRICES[i]
        elif i % 50 == 0:
            price = None
        else:
            price = Decimal(rng.randrange(-(10**12) + 1, 10**12)) / 100
        out.append({"id": i + 1, "price": price})
    return out


PRICE_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("price", pa.decimal128(12, 2))])


@pytest.mark.parametrize("target", ["opensearch-double", "iceberg-decimal"])
def test_numeric_12_2_against_double_and_decimal_is_clean(
    target: str, pg: Pg, search: Search, lake: dict[str, str]
) -> None:
    rows = _price_rows()
    table = pg.table("prices")
    pg.create(table, "(id bigint PRIMARY KEY, price numeric(12,2))", pa.Table.from_pylist(rows, PRICE_SCHEMA))
    if target == "opensearch-double":
        docs = {
            str(r["id"]): {"id": r["id"], "price": None if r["price"] is None else float(r["price"])}
            for r in rows
        }
        index = search.index("prices", {"id": {"type": "long"}, "price": {"type": "double"}}, docs)
        copy = sl.opensearch(search.url, index, key_field="id")
    else:
        name = _iceberg_table(lake, "prices", PRICE_SCHEMA, pa.Table.from_pylist(rows, PRICE_SCHEMA))
        copy = sl.iceberg(name, catalog=lake)
    result = sl.reconcile(sl.postgres(pg.dsn, table), copy, key="id")
    assert result.clean, result.diffs
    assert result.counts["source_rows"] == result.counts["target_rows"] == len(rows)
    assert result.seam.describe()["columns"][0]["type"] == "Decimal(scale=2)"

    # and the logical type is what makes it clean: a one-cent difference is still found
    pg.execute(f"UPDATE {table} SET price = price + 0.01 WHERE id = 4")  # 1234567.89 -> 1234567.90
    again = sl.reconcile(sl.postgres(pg.dsn, table), copy, key="id")
    assert found(again) == {(4, "changed")}


SPECIAL_KEYS = [
    "a-1",
    "A_1",
    "b",
    "B",
    "a_1",
    "A-1",
    "_x",
    "-x",
    "Z",
    "z",
    "é",
    "É",
    "e",
    "a",
    "A",
    "ab",
    "a-b",
]


def _text_keys(n: int = 3000) -> list[str]:
    keys = dict.fromkeys(SPECIAL_KEYS)
    heads = ["a", "A", "b", "B", "z", "Z", "é", "É", "_", "-", "ab", "Ab", "aB", "x-Y"]
    i = 0
    while len(keys) < n:
        head, sep = heads[i % len(heads)], ["-", "_", ""][(i // len(heads)) % 3]
        keys[f"{head}{sep}{i // 42}"] = None
        i += 1
    return list(keys)


@pytest.mark.parametrize("target", ["postgres", "opensearch-id", "opensearch-keyword"])
def test_text_keys_under_non_c_collation(target: str, pg: Pg, search: Search) -> None:
    collation = pg.scalar("SELECT datcollate FROM pg_database WHERE datname = current_database()")
    assert collation not in ("C", "POSIX", "C.UTF-8", "C.utf8"), "the test needs a non-C collation"
    # the trap is real: the database orders these keys differently from their bytes
    ordered = pg.scalar(
        "SELECT string_agg(k, ' ' ORDER BY k) FROM (VALUES ('a-1'), ('A_1'), ('B'), ('a')) v(k)"
    )
    assert ordered.split() != sorted(["a-1", "A_1", "B", "a"], key=str.encode)

    keys = _text_keys()
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), ("v", pa.int64())])
    rows = pa.table({"k": keys, "v": list(range(len(keys)))}, schema=schema)
    table = pg.table("text_keys")
    pg.create(table, "(k text PRIMARY KEY, v bigint)", rows)
    if target == "postgres":
        copy_name = pg.table("text_keys_copy")
        pg.create(copy_name, "(k text PRIMARY KEY, v bigint)", rows)

        def copy() -> Any:
            return sl.postgres(pg.dsn, copy_name)

        key: Any = "k"

        def drop(k: str) -> None:
            pg.execute(f"DELETE FROM {copy_name} WHERE k = '{k}'")

        def bump(ks: list[str]) -> None:
            quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in ks)
            pg.execute(f"UPDATE {copy_name} SET v = v + 1 WHERE k IN ({quoted})")
    else:
        # the document id is the key (`_id`, no range pushdown), or a `keyword` field "k" (ranges pushed
        # down as OpenSearch range queries, which compare keywords by bytes)
        by_field = target == "opensearch-keyword"
        mapping = {"k": {"type": "keyword"}, "v": {"type": "long"}} if by_field else {"v": {"type": "long"}}

        def doc(k: str, v: int) -> dict[str, Any]:
            return {"k": k, "v": v} if by_field else {"v": v}

        index = search.index("text-keys", mapping, {k: doc(k, v) for v, k in enumerate(keys)})

        def copy() -> Any:
            return sl.opensearch(search.url, index, key_field="k" if by_field else None)

        key = "k" if by_field else {"k": "_id"}

        def drop(k: str) -> None:
            search.client.delete(index=index, id=k, refresh=True)

        def bump(ks: list[str]) -> None:
            from opensearchpy import helpers

            position = {k: v for v, k in enumerate(keys)}
            helpers.bulk(
                search.client, ({"_index": index, "_id": k, "_source": doc(k, position[k] + 1)} for k in ks)
            )
            search.client.indices.refresh(index=index)

    clean = sl.reconcile(sl.postgres(pg.dsn, table), copy(), key=key)
    assert clean.clean, clean.diffs
    assert clean.counts["source_rows"] == clean.counts["target_rows"] == len(keys)
    assert clean.to_dict()["leaves"]["ranges"] > 1

    drop("a-1")
    one = sl.reconcile(sl.postgres(pg.dsn, table), copy(), key=key)
    assert found(one, key="k") == {("a-1", "missing")}, one.diffs
    assert one.to_dict()["leaves"]["ranges"] > 1
    # the mismatched range is in byte order, and only it was re-read (pushed down with COLLATE "C")
    assert any(
        (r.lo is None or r.lo[0].encode() <= b"a-1") and (r.hi is None or b"a-1" < r.hi[0].encode())
        for r in one.ranges
    ), one.ranges
    diff_rows = [p["rows"] for p in one.passes if p["kind"] == "diff" and p["side"] == "source"]
    assert diff_rows and sum(diff_rows) < len(keys)

    # keys scattered over the whole key space, where byte order and the collation disagree most
    scattered = [k for k in SPECIAL_KEYS if k != "a-1"] + keys[len(SPECIAL_KEYS) :: 97]
    bump(scattered)
    many = sl.reconcile(sl.postgres(pg.dsn, table), copy(), key=key)
    assert found(many, key="k") == {("a-1", "missing")} | {(k, "changed") for k in scattered}
    assert many.to_dict()["leaves"]["ranges"] > 1


# ============================================================================ 3. replayed event


def _orders(n: int = 600) -> list[dict[str, Any]]:
    return [
        {
            "order_id": 1000 + i,
            "product_id": 1 + (i * 13) % N_PRODUCTS,
            "amount": Decimal(500 + (i * 71) % 20000) / 100,
            "ordered_at": BASE + dt.timedelta(minutes=67 * i, microseconds=i),
        }
        for i in range(n)
    ]


def test_replayed_order_double_counts_gold_revenue(pg: Pg, lake: dict[str, str]) -> None:
    import pyarrow.compute as pc
    from pyiceberg.catalog import load_catalog

    orders = _orders()
    replayed = next(o for o in orders if o["order_id"] == 1234)
    table = pg.table("orders")
    pg.create(
        table,
        "(order_id bigint PRIMARY KEY, product_id bigint, amount numeric(12,2), ordered_at timestamptz)",
        pa.Table.from_pylist(orders, ORDER_SCHEMA),
    )
    # bronze: the CDC stream, with one event delivered twice (a second append)
    bronze = _iceberg_table(
        lake,
        "orders_bronze",
        ORDER_SCHEMA,
        pa.Table.from_pylist(orders, ORDER_SCHEMA),
        pa.Table.from_pylist([replayed], ORDER_SCHEMA),
    )
    # gold: revenue per day, computed from bronze
    props = dict(lake)
    raw = load_catalog(props.pop("name"), **props).load_table(bronze).scan().to_arrow()
    per_day = (
        pa.table({"day": pc.cast(raw["ordered_at"], pa.date32()), "amount": raw["amount"]})
        .group_by("day")
        .aggregate([("amount", "sum")])
    )
    gold_rows = pa.table(
        {"day": per_day["day"], "revenue": per_day["amount_sum"].cast(pa.decimal128(14, 2))},
        schema=GOLD_SCHEMA,
    )
    assert gold_rows.num_rows > 20
    gold = _iceberg_table(lake, "revenue_gold", GOLD_SCHEMA, gold_rows)

    revenue = sl.reconcile(
        sl.postgres(
            pg.dsn,
            query="SELECT (ordered_at AT TIME ZONE 'UTC')::date AS day, "
            f"sum(amount)::numeric(14,2) AS revenue FROM {table} GROUP BY 1",
        ),
        sl.iceberg(gold, catalog=lake),
        key="day",
    )
    day = replayed["ordered_at"].date()
    assert found(revenue, key="day") == {(day, "changed")}, revenue.diffs
    assert changed_columns(revenue, key="day") == {day: ["revenue"]}
    row = revenue.diffs.row(0, named=True)
    assert (
        Decimal(str(row["target"]["revenue"])) - Decimal(str(row["source"]["revenue"])) == replayed["amount"]
    )

    raw_seam = sl.reconcile(sl.postgres(pg.dsn, table), sl.iceberg(bronze, catalog=lake), key="order_id")
    assert found(raw_seam, key="order_id") == {(1234, "duplicate")}, raw_seam.diffs
    dup = raw_seam.diffs.row(0, named=True)
    assert (dup["side"], dup["occurrences"]) == ("target", 2)
    assert raw_seam.counts["source_rows"] == len(orders)
    assert raw_seam.counts["target_rows"] == len(orders) + 1


# ============================================================ 4. large-ish Postgres -> Postgres


def test_large_postgres_to_postgres_scattered_drift(pg: Pg) -> None:
    import pyarrow.compute as pc

    n = 200_000
    rng = random.Random(20261120)
    drifted = rng.sample(range(1, n + 1), n // 200)  # 0.5%
    changed, missing, extra, dupes = drifted[:400], drifted[400:700], drifted[700:950], drifted[950:]
    ids = pa.array(range(1, n + 1), pa.int64())
    base = pa.table(
        {
            "id": ids,
            "name": pc.binary_join_element_wise("item-", pc.cast(ids, pa.string()), ""),
            "qty": pc.multiply(pc.bit_wise_and(ids, 1023), 3),
            "seen_at": pc.cast(
                pc.add(pc.multiply(ids, 1_000_003), 1_790_000_000_000_000), pa.timestamp("us", tz="UTC")
            ),
        }
    )
    ddl = "(id bigint, name text, qty bigint, seen_at timestamptz)"
    in_source = pc.invert(pc.is_in(ids, pa.array(extra, pa.int64())))
    source = pg.table("big_src")
    pg.create(source, ddl, base.filter(in_source))
    target_rows = base.filter(pc.invert(pc.is_in(ids, pa.array(missing, pa.int64()))))
    target_rows = pa.concat_tables([target_rows, base.filter(pc.is_in(ids, pa.array(dupes, pa.int64())))])
    target = pg.table("big_dst")
    pg.create(target, ddl, target_rows)
    pg.execute(
        f"ALTER TABLE {source} ADD PRIMARY KEY (id)",
        f"CREATE INDEX ON {target} (id)",
        f"UPDATE {target} SET qty = qty + 1 WHERE id IN ({','.join(map(str, changed))})",
        f"ANALYZE {target}",
    )

    result = sl.reconcile(
        sl.postgres(pg.dsn, source),
        sl.postgres(pg.dsn, target),
        key="id",
        options=sl.Options(diff_budget_rows=500),
    )
    expected = (
        {(k, "changed") for k in changed}
        | {(k, "missing") for k in missing}
        | {(k, "extra") for k in extra}
        | {(k, "duplicate") for k in dupes}
    )
    assert found(result) == expected
    assert_counts(
        result,
        source_rows=n - len(extra),
        target_rows=n - len(missing) + len(dupes),
        missing=300,
        extra=250,
        changed=400,
        duplicate=50,
    )
    assert set(map(tuple, changed_columns(result).values())) == {("qty",)}
    report = result.to_dict()
    assert report["leaves"]["ranges"] > 100
    kinds = [p["kind"] for p in result.passes]
    assert "refine" in kinds  # the budget forced finer leaves
    assert kinds.count("diff") >= 4  # and the diff ran in budget-sized groups
    # only the mismatched ranges were re-read: far fewer rows than the table
    diff_rows = sum(p["rows"] for p in result.passes if p["kind"] == "diff" and p["side"] == "source")
    assert diff_rows < n // 4


# ============================================================================== 5. snapshot / as-of


@pytest.mark.parametrize("products_seam", ["opensearch-id", "iceberg", "lancedb", "postgres"], indirect=True)
def test_as_of_names_each_side(products_seam: tuple[str, str, Any], pg: Pg, lake: dict[str, str]) -> None:
    target, table, copy = products_seam
    key: Any = {"id": "_id"} if target == "opensearch-id" else "id"
    result = sl.reconcile(sl.postgres(pg.dsn, table, where=LIVE), copy, key=key)
    as_of = result.to_dict()["as_of"]

    src = as_of["source"]
    assert src["store"] == "postgres"
    for field in ("snapshot_id", "snapshot_time"):
        assert src["detail"].get(field), src
    assert dt.datetime.fromisoformat(src["detail"]["snapshot_time"]).tzinfo is not None

    dst = as_of["target"]
    assert dst["store"] == target.split("-")[0], dst
    fields = {
        "opensearch": ("pit_created_at", "pit_id"),
        "iceberg": ("snapshot_id", "snapshot_time"),
        "lancedb": ("version",),
        "postgres": ("snapshot_id", "snapshot_time"),
    }[dst["store"]]
    for field in fields:
        assert dst["detail"].get(field) not in (None, ""), dst
    if dst["store"] == "iceberg":
        from pyiceberg.catalog import load_catalog

        props = dict(lake)
        current = load_catalog(props.pop("name"), **props).load_table("shop.products").current_snapshot()
        assert dst["detail"]["snapshot_id"] == current.snapshot_id
    if dst["store"] == "lancedb":
        assert dst["detail"]["version"] >= 1
    assert '"as_of"' in result.to_json()


# ==================================================================================== 6. errors


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


def test_stopped_store_is_unavailable(pg: Pg, opensearch_url: str) -> None:
    table = pg.table("products")
    pg.create(table, PRODUCT_DDL, pa.Table.from_pylist(products(5), PRODUCT_SCHEMA))
    good = sl.postgres(pg.dsn, table)

    with pytest.raises(sl.StoreUnavailableError) as exc:
        sl.reconcile(sl.postgres("postgresql://seamline@127.0.0.1:1/x", "products"), good, key="id")
    assert "127.0.0.1:1" in _one_line(exc)
    assert isinstance(exc.value, sl.SeamlineError)

    with pytest.raises(sl.StoreUnavailableError) as exc:
        sl.reconcile(sl.postgres(pg.dsn, table), sl.opensearch("http://127.0.0.1:1", "products"), key="id")
    assert "127.0.0.1:1" in _one_line(exc)


def test_missing_table_or_index_is_not_found(
    pg: Pg, search: Search, lake: dict[str, str], tmp_path: Path
) -> None:
    import lancedb

    table = pg.table("products")
    pg.create(table, PRODUCT_DDL, pa.Table.from_pylist(products(5), PRODUCT_SCHEMA))
    lancedb.connect(str(tmp_path / "vectors")).create_table("present", data=[{"id": 1, "name": "x"}])
    missing = f"sl_nope_{uuid.uuid4().hex[:8]}"
    cases = [
        (sl.postgres(pg.dsn, missing), missing),
        (sl.postgres(pg.dsn, f"public.{missing}"), missing),
        (sl.opensearch(search.url, missing.replace("_", "-")), missing.replace("_", "-")),
        (sl.iceberg(f"shop.{missing}", catalog=lake), missing),
        (sl.lancedb(str(tmp_path / "vectors"), missing), missing),
    ]
    for target, name in cases:
        with pytest.raises(sl.NotFoundError) as exc:
            sl.reconcile(sl.postgres(pg.dsn, table), target, key="id")
        assert name in _one_line(exc), target
    # and as the source
    with pytest.raises(sl.NotFoundError) as exc:
        sl.reconcile(sl.postgres(pg.dsn, missing), sl.postgres(pg.dsn, table), key="id")
    assert missing in _one_line(exc)
