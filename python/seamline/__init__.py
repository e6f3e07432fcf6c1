"""Seamline: prove that the copies of one fact agree with their system of record, find where they
don't, and repair them safely.

    import seamline as sl
    result = sl.reconcile(sl.postgres(dsn, "public.products"), sl.opensearch(url, "products"), key="id")
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from seamline._core import __version__
from seamline.compare import (
    Binary,
    Boolean,
    Compare,
    Date,
    Decimal,
    Float,
    Integer,
    Json,
    LogicalType,
    String,
    Timestamp,
    Uuid,
    Vector,
)
from seamline.engine import Engine, Options
from seamline.exceptions import (
    ContractError,
    InvalidInputError,
    NotFoundError,
    RepairRefusedError,
    SchemaError,
    SeamlineError,
    StoreUnavailableError,
    ValueParseError,
)
from seamline.result import ReconcileResult
from seamline.seam import ColumnsArg, KeyArg, SeamColumns, resolve
from seamline.sources.arrow import ArrowSource, ParquetSource
from seamline.sources.base import KeyRange, Source

__all__ = [
    "Binary",
    "Boolean",
    "Compare",
    "ContractError",
    "Date",
    "Decimal",
    "Float",
    "Integer",
    "InvalidInputError",
    "Json",
    "KeyRange",
    "LogicalType",
    "NotFoundError",
    "Options",
    "ReconcileResult",
    "RepairRefusedError",
    "SchemaError",
    "SeamlineError",
    "Source",
    "StoreUnavailableError",
    "String",
    "Timestamp",
    "Uuid",
    "ValueParseError",
    "Vector",
    "__version__",
    "arrow",
    "parquet",
    "reconcile",
]


def arrow(obj: Any, name: str = "arrow") -> ArrowSource:
    """Any object exporting ``__arrow_c_stream__``: pyarrow Table/RecordBatchReader, polars, DuckDB."""
    return ArrowSource(obj, name)


def parquet(path: str) -> ParquetSource:
    """A Parquet file, directory or glob."""
    return ParquetSource(path)


def postgres(
    dsn: str, table: str | None = None, *, where: str | None = None, query: str | None = None
) -> Source:
    """A Postgres table (optionally filtered) or any SELECT, read through ADBC from one snapshot."""
    from seamline.sources.postgres import PostgresSource

    return PostgresSource(dsn, table, where=where, query=query)


def iceberg(
    table: str,
    *,
    catalog: dict[str, Any],
    snapshot_id: int | None = None,
    as_of: Any = None,
) -> Source:
    """An Iceberg table through pyiceberg, at the current snapshot, `snapshot_id`, or `as_of` a time."""
    from seamline.sources.iceberg import IcebergSource

    return IcebergSource(table, catalog=catalog, snapshot_id=snapshot_id, as_of=as_of)


def opensearch(
    url: str, index: str, *, query: dict[str, Any] | None = None, key_field: str | None = None, **client: Any
) -> Source:
    """An OpenSearch index, read with point-in-time + search_after, sliced for parallelism."""
    from seamline.sources.opensearch import OpenSearchSource

    return OpenSearchSource(url, index, query=query, key_field=key_field, **client)


def lancedb(uri: str, table: str, *, where: str | None = None) -> Source:
    """A LanceDB table (embedded), pinned to the version current when the reconcile starts."""
    from seamline.sources.lancedb import LanceDBSource

    return LanceDBSource(uri, table, where=where)


def _as_source(obj: Any, name: str) -> Source:
    if all(hasattr(obj, m) for m in ("open", "schema", "pin", "sample_keys")):
        return obj
    return ArrowSource(obj, name)


def _orders_like(logical: LogicalType, t: pa.DataType) -> bool:
    """Whether a store orders this key type as the core does, so a range can be pushed down."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    if isinstance(logical, Integer):
        return pa.types.is_integer(t)
    if isinstance(logical, Decimal):
        return pa.types.is_decimal(t) or pa.types.is_integer(t)
    if isinstance(logical, String):
        plain = not (logical.nfc or logical.trim or logical.casefold or logical.empty_as_null)
        return plain and (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))
    if isinstance(logical, Timestamp | Date):
        return pa.types.is_timestamp(t) or pa.types.is_date(t)
    if isinstance(logical, Uuid | Binary):
        return pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t)
    return False


def _pushdown(seam: SeamColumns, schema: pa.Schema, side: str) -> bool:
    i = 0 if side == "source" else 1
    return all(_orders_like(seam.logical[p[0]], schema.field(p[i]).type) for p in seam.key)


def reconcile(
    source: Any,
    target: Any,
    key: KeyArg = "id",
    columns: ColumnsArg = None,
    compare: Compare | None = None,
    *,
    options: Options | None = None,
) -> ReconcileResult:
    """Reconcile `target` against `source` (the system of record).

    key: "id" | ["order_id", "line_no"] | {"id": "product_id"} (source name -> target name)
    columns: None (all common non-key columns) | ["a", "b"] | {"name": "title"}
    compare: normalisation and per-column logical types (`Compare`)
    """
    started = time.perf_counter()
    compare = compare or Compare()
    options = options or Options()
    src, dst = _as_source(source, "source"), _as_source(target, "target")
    try:
        as_of = {"source": src.pin(), "target": dst.pin()}
        src_schema, dst_schema = src.schema(), dst.schema()
        seam = resolve(src_schema, dst_schema, key, columns, compare)
        pushdown = {
            "source": _pushdown(seam, src_schema, "source"),
            "target": _pushdown(seam, dst_schema, "target"),
        }
        output = Engine(src, dst, seam, options, pushdown).run()
    finally:
        src.close()
        dst.close()
    return ReconcileResult(
        source=src.describe(),
        target=dst.describe(),
        seam=seam,
        compare=compare.describe(),
        as_of=as_of,
        output=output,
        schemas={"source": src_schema, "target": dst_schema},
        seconds=time.perf_counter() - started,
    )
