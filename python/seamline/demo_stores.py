"""The shop of `seamline demo`: one small shop in Postgres (system of record), OpenSearch (catalog
search), Iceberg (silver products, bronze orders, a gold revenue table) and LanceDB (vectors for
RAG), with the drifts that happen in production injected. The demo contract reconciles it.

Injected:
- product 42: a CDC update lost (price stale in search and in the vector index's metadata);
- product 13: soft-deleted in Postgres (deleted_at set) but still searchable and recommendable;
- product 77: an insert never delivered to search;
- order 1001: a replayed CDC event, twice in bronze, so gold revenue for its day is double-counted.
Not drift (type traps): OpenSearch `date` in ms vs timestamptz in us, numeric(12,2) vs `double`,
text keys with '-', '_' and mixed case under a non-C collation.
"""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

UTC = dt.UTC
N_PRODUCTS = 500
N_ORDERS = 3000
BASE = dt.datetime(2026, 11, 20, tzinfo=UTC)

Expected = dict[str, set[tuple[object, str]]]


def _products() -> list[dict[str, Any]]:
    out = []
    for i in range(1, N_PRODUCTS + 1):
        out.append(
            {
                "id": i,
                "sku": f"{'Ab'[i % 2]}-{i:04d}_{'xY'[i % 2]}",
                "name": f"Product {i}",
                "price": decimal.Decimal(199 + (i * 37) % 9000) / 100,
                "in_stock": i % 7 != 0,
                # sub-millisecond part: Postgres keeps it, OpenSearch truncates to ms
                "updated_at": BASE + dt.timedelta(minutes=i, microseconds=(i * 389) % 1000),
                "deleted_at": None,
            }
        )
    return out


def _orders() -> list[dict[str, Any]]:
    return [
        {
            "order_id": 1000 + i,
            "product_id": 1 + (i * 13) % N_PRODUCTS,
            "amount": decimal.Decimal(500 + (i * 71) % 20000) / 100,
            "ordered_at": BASE + dt.timedelta(minutes=3 * i),
        }
        for i in range(N_ORDERS)
    ]


def _postgres(dsn: str, products: list[dict[str, Any]], orders: list[dict[str, Any]]) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS demo_products, demo_orders")
        cur.execute(
            "CREATE TABLE demo_products (id bigint PRIMARY KEY, sku text UNIQUE NOT NULL, name text, "
            "price numeric(12,2), in_stock boolean, updated_at timestamptz, deleted_at timestamptz)"
        )
        cur.execute(
            "CREATE TABLE demo_orders (order_id bigint PRIMARY KEY, product_id bigint, "
            "amount numeric(12,2), ordered_at timestamptz)"
        )
        cur.adbc_ingest("demo_products", _arrow_products(products), mode="append")
        orders_tbl = pa.Table.from_pylist(
            orders,
            pa.schema(
                [
                    ("order_id", pa.int64()),
                    ("product_id", pa.int64()),
                    ("amount", pa.decimal128(12, 2)),
                    ("ordered_at", pa.timestamp("us", tz="UTC")),
                ]
            ),
        )
        cur.adbc_ingest("demo_orders", orders_tbl, mode="append")
        # the live system moves on: product 42 re-priced, product 13 soft-deleted, 77 inserted
        cur.execute("UPDATE demo_products SET price = price + 10, updated_at = now() WHERE id = 42")
        cur.execute("UPDATE demo_products SET deleted_at = now(), updated_at = now() WHERE id = 13")
        cur.execute("ANALYZE demo_products")
        cur.execute("ANALYZE demo_orders")
        conn.commit()


PRODUCT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("sku", pa.string()),
        ("name", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("in_stock", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _arrow_products(products: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(products, PRODUCT_SCHEMA)


def _opensearch(url: str, products: list[dict[str, Any]]) -> None:
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(hosts=[url], timeout=60)
    if client.indices.exists(index="demo_products"):
        client.indices.delete(index="demo_products")
    client.indices.create(
        index="demo_products",
        body={
            "mappings": {
                "properties": {
                    "id": {"type": "long"},
                    "sku": {"type": "keyword"},
                    "name": {"type": "keyword"},
                    "price": {"type": "double"},
                    "in_stock": {"type": "boolean"},
                    "updated_at": {"type": "date"},
                }
            }
        },
    )
    actions = [
        {
            "_index": "demo_products",
            "_id": str(p["id"]),
            "_source": {
                "id": p["id"],
                "sku": p["sku"],
                "name": p["name"],
                "price": float(p["price"]),
                "in_stock": p["in_stock"],
                "updated_at": p["updated_at"].isoformat(timespec="microseconds"),
            },
        }
        for p in products
        if p["id"] != 77  # the insert that never reached search
    ]
    helpers.bulk(client, actions, refresh=True)


def _iceberg(lake: Path, products: list[dict[str, Any]], orders: list[dict[str, Any]]) -> dict[str, str]:
    from pyiceberg.catalog.sql import SqlCatalog

    if lake.exists():
        shutil.rmtree(lake)
    (lake / "wh").mkdir(parents=True)
    catalog_props = {
        "name": "shop",
        "type": "sql",
        "uri": f"sqlite:///{lake}/catalog.db",
        "warehouse": f"file://{lake}/wh",
    }
    catalog = SqlCatalog("shop", uri=catalog_props["uri"], warehouse=catalog_props["warehouse"])
    catalog.create_namespace("shop")
    silver = catalog.create_table("shop.products", schema=PRODUCT_SCHEMA)
    silver.append(_arrow_products(products))
    # bronze: raw CDC of orders, with order 1001 replayed
    replayed = orders + [o for o in orders if o["order_id"] == 1001]
    orders_schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("product_id", pa.int64()),
            ("amount", pa.decimal128(12, 2)),
            ("ordered_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    bronze = catalog.create_table("shop.orders_bronze", schema=orders_schema)
    bronze.append(pa.Table.from_pylist(replayed, orders_schema))
    revenue: dict[dt.date, decimal.Decimal] = {}
    for o in replayed:
        day = o["ordered_at"].date()
        revenue[day] = revenue.get(day, decimal.Decimal(0)) + o["amount"]
    gold_schema = pa.schema([("day", pa.date32()), ("revenue", pa.decimal128(14, 2))])
    gold = catalog.create_table("shop.revenue_gold", schema=gold_schema)
    gold.append(
        pa.Table.from_pylist([{"day": d, "revenue": r} for d, r in sorted(revenue.items())], gold_schema)
    )
    return catalog_props


def _lancedb(path: Path, products: list[dict[str, Any]]) -> None:
    import lancedb

    if path.exists():
        shutil.rmtree(path)
    db = lancedb.connect(str(path))
    rows = [
        {
            "id": p["id"],
            "name": p["name"],
            "price": float(p["price"]),
            "updated_at": p["updated_at"],
            "vector": [float((p["id"] * k) % 17) / 17 for k in range(1, 9)],
        }
        for p in products
    ]
    db.create_table("products", data=rows)


def build_shop(workdir: Path, dsn: str, url: str) -> None:
    """Load the shop into the four stores: the copies from the state before the live system moved
    on, then the system of record's later changes (so the copies lag exactly as injected)."""
    products, orders = _products(), _orders()
    _opensearch(url, products)
    _iceberg(workdir / "lake", products, orders)
    _lancedb(workdir / "vectors", products)
    _postgres(dsn, products, orders)
