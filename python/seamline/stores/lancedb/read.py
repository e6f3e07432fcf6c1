"""LanceDB reader: reads one version of a LanceDB table (embedded or object store) as Arrow streams.

``pin`` records the table version; every later ``open`` checks that version out on a fresh table handle,
so writers appending meanwhile never change what a reconcile sees. Key ranges are pushed down as a
filter built with LanceDB's type-safe expression builder (no SQL string formatting of key values).
Without ranges the table is read as one stream: LanceDB's embedded API does not expose fragments to
split a plain scan on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from lancedb.expr import Expr, col, lit

from seamline.exceptions import SchemaError
from seamline.stores._common import Predicates, ScannedVersions, cover, range_predicate, redact_url
from seamline.stores.lancedb.store import LanceDBStore
from seamline.stores.protocols import AsOf, KeyRange, ScanRequest


class LanceDBReader(ScannedVersions):
    """One LanceDB table, optionally restricted by a SQL ``where`` filter."""

    def __init__(self, uri: str | LanceDBStore, table: str, *, where: str | None = None) -> None:
        self.store = uri if isinstance(uri, LanceDBStore) else LanceDBStore(uri)
        self.table = table
        self._name = table
        self._where = where
        self._version: int | None = None
        self._version_time: str | None = None

    # -- Source protocol -------------------------------------------------------------------------

    def can_push_down(self, key: Sequence[str]) -> bool:
        """Key ranges become a Lance filter."""
        return True

    def describe(self) -> str:
        text = f"{self.store.describe()} table {self._name}"
        if self._where:
            text += f" where {self._where}"
        if self._version is not None:
            text += f" @v{self._version}"
        return text

    def schema(self) -> pa.Schema:
        schema: pa.Schema = self._table().schema
        return schema

    def open(self, request: ScanRequest) -> list[Any]:
        if self._version is None:
            self.pin()
        columns = list(request.columns) if request.columns else None
        if request.ranges is None:
            return [self._scan(columns, None)]
        ranges = list(request.ranges)
        if not ranges:
            # An empty union of ranges selects nothing.
            return [self._scan(columns, "false")]
        # Consecutive ranges go to one stream each so every stream scans a contiguous part of the keys.
        n = max(1, min(request.parallelism, len(ranges)))
        size = -(-len(ranges) // n)
        groups = [ranges[i : i + size] for i in range(0, len(ranges), size)]
        # a few covering ranges per stream keep the filter small (the core filters the rest)
        return [self._scan(columns, _ranges_expr(request.key, cover(group, 32))) for group in groups]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        # No statistics are exposed cheaply; the engine falls back to key-digest leaves.
        return None

    def estimated_rows(self) -> int | None:
        if self._where:
            return None
        return int(self._table().count_rows())

    def pin(self) -> AsOf:
        if self._version is None:
            table = self._table()
            self._version = int(table.version)
            for v in table.list_versions():
                if int(v["version"]) == self._version:
                    ts = v["timestamp"]
                    # Lance reports naive UTC times.
                    if isinstance(ts, datetime):
                        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
                        self._version_time = ts.isoformat()
        detail = {
            "uri": redact_url(self.store.uri),
            "table": self._name,
            "version": self._version,
            "version_time": self._version_time,
        }
        return AsOf(store="lancedb", detail=detail)

    def close(self) -> None:
        self.store.close()
        self._version = None
        self._version_time = None

    # -- internals -------------------------------------------------------------------------------

    def _table(self) -> Any:
        table = self.store.open_table(self._name)
        if self._version is not None:
            # A fresh handle per stream, checked out at the pinned version: checkout is in-place.
            table.checkout(self._version)
        return table

    def _scan(self, columns: list[str] | None, ranges: Expr | str | None) -> pa.RecordBatchReader:
        query = self._table().search()
        if columns is not None:
            query = query.select(columns)
        if self._where:
            query = query.where(self._where)
        if ranges is not None:
            query = query.where(ranges)
        reader: pa.RecordBatchReader = query.to_batches()
        return reader

    # -- freshness: the newest value of a column, and how many rows are newer, at the pinned version --

    def version_column(self, column: str) -> pa.ChunkedArray:
        if self._version is None:
            self.pin()
        if column not in self.schema().names:
            raise SchemaError(f"{self.describe()}: no column {column!r}")
        return self._scan([column], None).read_all().column(column)


def _ranges_expr(key: Sequence[str], ranges: Sequence[KeyRange]) -> Expr | None:
    exprs = [e for e in (_range_expr(key, r) for r in ranges)]
    if any(e is None for e in exprs):
        return None  # one range is unbounded on both sides: everything
    out: Expr | None = None
    for e in exprs:
        assert e is not None
        out = e if out is None else out | e
    return out


def _compare(op: str, name: str, value: Any) -> Expr:
    c, v = col(name), lit(value)
    if op == ">":
        return c > v
    if op == ">=":
        return c >= v
    return c < v if op == "<" else c == v


_PREDICATES = Predicates[Expr](compare=_compare, both=lambda a, b: a & b, either=lambda a, b: a | b)


def _range_expr(key: Sequence[str], r: KeyRange) -> Expr | None:
    return range_predicate(key, r, _PREDICATES)
