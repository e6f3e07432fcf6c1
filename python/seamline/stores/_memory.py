"""An Arrow table held in memory, served as a side: parallel streams are zero-copy slices of it, every
`open` replays the same slices, and key samples are taken batch by batch. `sl.arrow` (stores/arrow)
and `sql=` views (stores/sql_view.py) both serve their rows this way."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from seamline.stores.protocols import ScanRequest


def _takeable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its view columns (string_view, binary_view: what polars exports) as the large
    layouts and run-end encoded columns decoded, which pyarrow's take has kernels for. The values
    are the same."""
    views = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}

    def takeable(column: pa.Array) -> pa.Array:
        if pa.types.is_run_end_encoded(column.type):
            column = pc.run_end_decode(column)
        return column.cast(views[column.type]) if column.type in views else column

    if not any(t in views or pa.types.is_run_end_encoded(t) for t in batch.schema.types):
        return batch
    return pa.RecordBatch.from_arrays([takeable(c) for c in batch.columns], names=batch.schema.names)


def sample_rows(num_rows: int, n: int) -> pa.Array:
    rows = range(num_rows) if num_rows <= n else sorted(random.Random(0).sample(range(num_rows), n))
    return pa.array(rows, pa.int64())


class InMemoryTable:
    """Serves `table` (named `name` in descriptions) to the engine."""

    def __init__(self, table: pa.Table, name: str) -> None:
        self._table = table
        self._name = name

    @property
    def table(self) -> pa.Table:
        return self._table

    def replays_identically(self) -> bool:
        """The table is immutable: every open() with one request yields the same slices."""
        return True

    def describe(self) -> str:
        return f"{self._name} ({self._table.num_rows} rows in memory)"

    def schema(self) -> pa.Schema:
        return self._table.schema

    def open(self, request: ScanRequest) -> list[Any]:
        table = self._table.select(list(request.columns))
        parts = max(1, request.parallelism)
        step = max(1, -(-table.num_rows // parts))
        return [table.slice(offset, step) for offset in range(0, max(table.num_rows, 1), step)]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        # batch by batch: a take over the whole (chunked) table would first concatenate each key
        # column into one fresh array
        table = self._table.select(list(key))
        rows = sample_rows(table.num_rows, n).to_pylist()
        parts, start = [], 0
        for batch in table.to_batches():
            end = start + batch.num_rows
            lo, hi = bisect.bisect_left(rows, start), bisect.bisect_left(rows, end)
            if hi > lo:
                taken = _takeable(batch).take(pa.array([r - start for r in rows[lo:hi]], pa.int64()))
                parts.append(taken)
            start = end
        if not parts:
            return None
        return pa.Table.from_batches(parts)

    def estimated_rows(self) -> int | None:
        return self._table.num_rows
