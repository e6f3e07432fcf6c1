"""In-memory Arrow and Parquet sources.

`sl.arrow(obj)` takes anything exporting `__arrow_c_stream__` (pyarrow, polars, DuckDB, ADBC...)
and imports it once through the PyCapsule interface into an Arrow table, because a reconcile reads
a side more than once (hash pass, then range passes) and a stream can be read only once. Parallel
streams are zero-copy slices of that table.

`sl.parquet(path_or_glob)` reads files with pyarrow.dataset, fragments split among streams.
"""

from __future__ import annotations

import bisect
import glob as globlib
import random
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from seamline.exceptions import InvalidInputError, NotFoundError
from seamline.stores.protocols import AsOf, ScanRequest


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything exporting an Arrow C stream through the PyCapsule interface."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


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


def _sample_rows(num_rows: int, n: int) -> pa.Array:
    rows = range(num_rows) if num_rows <= n else sorted(random.Random(0).sample(range(num_rows), n))
    return pa.array(rows, pa.int64())


class ArrowSource:
    """A side held in memory as an Arrow table."""

    def __init__(self, obj: Any, name: str = "arrow") -> None:
        if not isinstance(obj, ArrowStreamExportable):
            raise InvalidInputError(
                f"{type(obj).__name__} does not export __arrow_c_stream__ (pass a pyarrow, polars, "
                "DuckDB or ADBC object)"
            )
        self._table = pa.table(obj)
        self._name = name

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
        rows = _sample_rows(table.num_rows, n).to_pylist()
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

    def pin(self) -> AsOf:
        return AsOf(store="arrow", detail={"rows": self._table.num_rows})

    def close(self) -> None:
        pass


class ParquetSource:
    """Parquet files (a path, a directory or a glob) read through pyarrow.dataset."""

    def __init__(self, path: str) -> None:
        files = sorted(globlib.glob(path)) if any(c in path for c in "*?[") else [path]
        if not files:
            raise NotFoundError(f"parquet: no file matches {path!r}")
        try:
            self._dataset = ds.dataset(files if len(files) > 1 else files[0], format="parquet")
        except FileNotFoundError as e:
            raise NotFoundError(f"parquet: {path!r} does not exist") from e
        except pa.ArrowInvalid as e:
            raise InvalidInputError(f"parquet: {path!r}: {str(e).splitlines()[0]}") from e
        self._path = path

    def describe(self) -> str:
        return f"parquet {self._path}"

    def schema(self) -> pa.Schema:
        return self._dataset.schema

    def open(self, request: ScanRequest) -> list[Any]:
        fragments = list(self._dataset.get_fragments())
        parts = max(1, min(request.parallelism, len(fragments)))
        groups = [fragments[i::parts] for i in range(parts)]
        schema = self._dataset.schema
        return [
            ds.FileSystemDataset(group, schema, self._dataset.format, self._dataset.filesystem)
            .scanner(columns=list(request.columns))
            .to_reader()
            for group in groups
            if group
        ]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        return self._dataset.take(_sample_rows(self._dataset.count_rows(), n), columns=list(key))

    def estimated_rows(self) -> int | None:
        return self._dataset.count_rows()

    def pin(self) -> AsOf:
        return AsOf(store="parquet", detail={"path": self._path, "files": len(self._dataset.files)})

    def close(self) -> None:
        pass
