"""In-memory Arrow and Parquet sources.

`sl.arrow(obj)` takes anything exporting `__arrow_c_stream__` (pyarrow, polars, DuckDB, ADBC...)
and imports it once through the PyCapsule interface into an Arrow table, because a reconcile reads
a side more than once (hash pass, then range passes) and a stream can be read only once. Parallel
streams are zero-copy slices of that table.

`sl.parquet(path_or_glob)` reads files with pyarrow.dataset, fragments split among streams
(imported by the Parquet source only: pyarrow.dataset brings the file systems, S3 and TLS, ~50 ms of
CPU that a reconcile of two databases does not need).
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from seamline.exceptions import InvalidInputError, NotFoundError
from seamline.stores._memory import InMemoryTable, sample_rows
from seamline.stores.protocols import AsOf, ScanRequest


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything exporting an Arrow C stream through the PyCapsule interface."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


class ArrowSource(InMemoryTable):
    """A side held in memory as an Arrow table."""

    def __init__(self, obj: Any, name: str = "arrow") -> None:
        if not isinstance(obj, ArrowStreamExportable):
            raise InvalidInputError(
                f"{type(obj).__name__} does not export __arrow_c_stream__ (pass a pyarrow, polars, "
                "DuckDB or ADBC object)"
            )
        super().__init__(pa.table(obj), name)

    def pin(self) -> AsOf:
        return AsOf(store="arrow", detail={"rows": self._table.num_rows})

    def close(self) -> None:
        pass


class ParquetSource:
    """Parquet files (a path, a directory or a glob) read through pyarrow.dataset."""

    def __init__(self, path: str) -> None:
        import pyarrow.dataset as ds

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
        import pyarrow.dataset as ds

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
        return self._dataset.take(sample_rows(self._dataset.count_rows(), n), columns=list(key))

    def estimated_rows(self) -> int | None:
        return self._dataset.count_rows()

    def pin(self) -> AsOf:
        return AsOf(store="parquet", detail={"path": self._path, "files": len(self._dataset.files)})

    def close(self) -> None:
        pass
