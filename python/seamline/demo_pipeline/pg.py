"""Postgres access for the pipeline's components (the shop, the relay): short statements through the
ADBC driver Seamline already depends on."""

from __future__ import annotations

from typing import Any


def connect(dsn: str) -> Any:
    import adbc_driver_postgresql.dbapi as pgdb

    return pgdb.connect(dsn)


def sql(dsn: str, *statements: str) -> list[Any]:
    """Run `statements` in one transaction; the rows of the last one that returns rows."""
    rows: list[Any] = []
    with connect(dsn) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            if cur.description is not None:
                rows = cur.fetchall()
        conn.commit()
    return rows
