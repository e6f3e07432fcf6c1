"""`sql=` on the stores that do not speak SQL themselves (Iceberg, OpenSearch, LanceDB, Arrow, Parquet):
a side that is a DuckDB query over another source's rows, e.g. revenue per day over an Iceberg bronze
table, to reconcile against a gold table.

The inner source is pinned and read whole once (its as-of is the view's), the query runs over it as the
table ``source``, and the result is served from memory like ``sl.arrow`` (every ``open`` replays the
same slices; key ranges are filtered by the core). Kafka has its own ``sql=`` (over the table
``events``, after dedupe and fold); Postgres sides take a ``query=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from seamline.exceptions import InvalidInputError, SchemaError
from seamline.stores._common import column_max, count_newer
from seamline.stores._memory import InMemoryTable
from seamline.stores.protocols import AsOf, ScanRequest, Source

#: the name the query reads the inner source's rows by
TABLE = "source"


class SqlView:
    """The rows of a DuckDB query over `inner`'s rows (all of them, read once from its pinned snapshot)."""

    def __init__(self, inner: Source, sql: str) -> None:
        if not sql.strip():
            raise InvalidInputError(f"{inner.describe()}: sql= is empty")
        self.inner, self.sql = inner, sql
        self._rows: InMemoryTable | None = None
        self._as_of: AsOf | None = None

    def replays_identically(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.inner.describe()} (sql over {TABLE})"

    def schema(self) -> pa.Schema:
        return self._result().schema()

    def open(self, request: ScanRequest) -> list[Any]:
        return self._result().open(request)

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        return self._result().sample_keys(key, n)

    def estimated_rows(self) -> int | None:
        return self._result().estimated_rows()

    def pin(self) -> AsOf:
        rows = self._result()
        assert self._as_of is not None
        detail = {**self._as_of.detail, "sql": self.sql, "rows": rows.estimated_rows()}
        return AsOf(store=self._as_of.store, detail=detail)

    def close(self) -> None:
        self.inner.close()

    def max_value(self, column: str) -> Any:
        return column_max(self._column(column))

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        return count_newer(self._column(column), value, inclusive)

    def _column(self, column: str) -> pa.ChunkedArray:
        table = self._result().table
        if column not in table.schema.names:
            raise SchemaError(f"{self.describe()}: no column {column!r} in the query's result")
        return table.column(column)

    def _result(self) -> InMemoryTable:
        if self._rows is None:
            self._as_of = self.inner.pin()
            self._rows = InMemoryTable(_run(self.inner, self.sql), self.describe())
        return self._rows


def _read_all(source: Source) -> pa.Table:
    """Every row and column of a pinned source (its streams read one after the other)."""
    schema = source.schema()
    names = schema.names
    streams = source.open(ScanRequest(columns=names, key=names[:1], parallelism=1))
    parts = [pa.table(s) for s in streams]
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts, promote_options="permissive")


def _run(source: Source, sql: str) -> pa.Table:
    return run_sql(_read_all(source), sql, TABLE, source.describe())


def run_sql(rows: pa.Table, sql: str, table: str, what: str) -> pa.Table:
    """`sql` run by DuckDB over `rows` as the table `table`; a query DuckDB rejects is one line
    naming `what` (also Kafka's `sql=`, over its events)."""
    try:
        import duckdb
    except ModuleNotFoundError:
        raise InvalidInputError(
            "sql= needs the Python package 'duckdb', which is not installed: pip install 'seamline[sql]'"
        ) from None
    con = duckdb.connect()
    try:
        con.register(table, rows)
        result = con.sql(sql)
        if result is None:
            raise InvalidInputError(f"{what}: sql= must be a query (a SELECT over the table {table})")
        out: pa.Table = result.to_arrow_table()
        return out
    except duckdb.Error as exc:
        raise InvalidInputError(f"{what}: sql: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
