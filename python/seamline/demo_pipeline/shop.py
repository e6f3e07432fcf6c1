"""The shop's system of record in Postgres and its service paths.

- ``<cdc schema>.products``: the catalog, captured by CDC (REPLICA IDENTITY FULL, so a delete carries
  the row's last version); every change bumps ``version``, the order the index applies changes in.
- ``<shop schema>.orders`` and ``<shop schema>.outbox``: placing an order writes the order and its
  ``OrderPlaced`` event in one transaction (the transactional outbox); the relay publishes the outbox.
- The legacy "direct" path: it publishes to Kafka itself after committing (a dual write), so it marks
  its outbox row published in the same transaction; when the process dies between the commit and the
  publish, the event is lost: committed, never published.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any

from seamline.demo_pipeline.pg import connect, sql

BASE = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Order:
    order_id: int
    product_id: int
    amount: decimal.Decimal
    ordered_at: dt.datetime

    @property
    def event_id(self) -> str:
        return f"ord-{self.order_id}-placed"

    @property
    def day(self) -> dt.date:
        return self.ordered_at.date()

    def payload(self) -> str:
        """The event's payload as the service serialises it (the relay copies it verbatim)."""
        return json.dumps(
            {
                "order_id": self.order_id,
                "product_id": self.product_id,
                "amount": str(self.amount),
                "ordered_at": self.ordered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def order(n: int, products: int) -> Order:
    """Order number `n`: deterministic product, amount and time (one every 37 minutes)."""
    return Order(
        order_id=1000 + n,
        product_id=1 + (n * 13) % products,
        amount=decimal.Decimal(500 + (n * 71) % 20000) / 100,
        ordered_at=BASE + dt.timedelta(minutes=37 * n),
    )


class Shop:
    def __init__(self, dsn: str, shop_schema: str, cdc_schema: str, products: int) -> None:
        self.dsn, self.schema, self.cdc_schema, self.n_products = dsn, shop_schema, cdc_schema, products
        self.placed = 0

    @property
    def products(self) -> str:
        return f"{self.cdc_schema}.products"

    @property
    def orders(self) -> str:
        return f"{self.schema}.orders"

    @property
    def outbox(self) -> str:
        return f"{self.schema}.outbox"

    def create(self) -> None:
        sql(
            self.dsn,
            f"CREATE SCHEMA {self.schema}",
            f"CREATE SCHEMA {self.cdc_schema}",
            f"CREATE TABLE {self.products} (id bigint PRIMARY KEY, sku text NOT NULL, name text, "
            "price numeric(12,2), stock bigint, version bigint NOT NULL)",
            f"ALTER TABLE {self.products} REPLICA IDENTITY FULL",
            f"CREATE TABLE {self.orders} (order_id bigint PRIMARY KEY, product_id bigint, "
            "amount numeric(12,2), ordered_at timestamptz)",
            f"CREATE TABLE {self.outbox} (event_id text PRIMARY KEY, aggregate_id bigint NOT NULL, "
            "type text NOT NULL, payload text NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT clock_timestamp(), published_at timestamptz)",
            f"CREATE INDEX ON {self.outbox} (created_at) WHERE published_at IS NULL",
        )

    def drop(self) -> None:
        sql(
            self.dsn,
            f"DROP SCHEMA IF EXISTS {self.schema} CASCADE",
            f"DROP SCHEMA IF EXISTS {self.cdc_schema} CASCADE",
        )

    # -- the catalog -----------------------------------------------------------------------------------

    def add_products(self, ids: range) -> None:
        values = ", ".join(
            f"({i}, 'SKU-{i:04d}', 'Product {i}', {price}, {i * 3 % 50}, 1)"
            for i in ids
            for price in [decimal.Decimal(199 + i * 37 % 9000) / 100]
        )
        sql(self.dsn, f"INSERT INTO {self.products} VALUES {values}")

    def change_product(self, product_id: int, assignments: str) -> None:
        """One update (its own transaction), bumping the version."""
        sql(
            self.dsn,
            f"UPDATE {self.products} SET {assignments}, version = version + 1 WHERE id = {int(product_id)}",
        )

    def delete_product(self, product_id: int) -> None:
        sql(self.dsn, f"DELETE FROM {self.products} WHERE id = {int(product_id)}")

    # -- orders ----------------------------------------------------------------------------------------

    def _write_order(self, cur: Any, o: Order, published: bool) -> None:
        cur.execute(
            f"INSERT INTO {self.orders} VALUES ($1, $2, $3::numeric, $4::timestamptz)",
            (o.order_id, o.product_id, str(o.amount), o.ordered_at.isoformat()),
        )
        cur.execute(
            f"INSERT INTO {self.outbox} (event_id, aggregate_id, type, payload, published_at) "
            f"VALUES ($1, $2, 'OrderPlaced', $3, {'clock_timestamp()' if published else 'NULL'})",
            (o.event_id, o.order_id, o.payload()),
        )

    def place_orders(self, count: int) -> list[Order]:
        """The normal path: each order and its outbox event in one transaction."""
        placed = []
        with connect(self.dsn) as conn, conn.cursor() as cur:
            for _ in range(count):
                o = order(self.placed, self.n_products)
                self.placed += 1
                self._write_order(cur, o, published=False)
                conn.commit()
                placed.append(o)
        return placed

    def place_order_directly_and_die(self) -> Order:
        """The legacy dual-write path: commit the order (its outbox row marked published, because
        this path publishes the event itself), then the process dies before it publishes."""
        o = order(self.placed, self.n_products)
        self.placed += 1
        with connect(self.dsn) as conn, conn.cursor() as cur:
            self._write_order(cur, o, published=True)
            conn.commit()
        # the process is killed here, between the commit and `producer.produce(...)`
        return o
