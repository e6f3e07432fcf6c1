"""Seamline: prove that the copies of one fact agree with their system of record, find where they
don't, and repair them safely.

    import seamline as sl
    result = sl.reconcile(sl.postgres(dsn, "public.products"), sl.opensearch(url, "products"), key="id")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from seamline.engine import Options
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
    from seamline.reconcile import reconcile
    from seamline.repair.plan import RepairOutcome, RepairPlan
    from seamline.result import ReconcileResult
    from seamline.stores.arrow.read import ArrowSource, ParquetSource
    from seamline.stores.protocols import KeyRange, Source

# Imported on first use (PEP 562), so that `import seamline` (and `seamline --help`) does not pay for
# pyarrow, polars and the native core until something needs them.
_LAZY = {
    "__version__": "seamline._core",
    **dict.fromkeys(
        (
            "Binary Boolean Compare Date Decimal Float Integer Json LogicalType String Timestamp Uuid Vector"
        ).split(),
        "seamline.compare",
    ),
    "Options": "seamline.engine",
    **dict.fromkeys(
        (
            "ContractError InvalidInputError NotFoundError RepairRefusedError SchemaError SeamlineError "
            "StoreUnavailableError ValueParseError"
        ).split(),
        "seamline.exceptions",
    ),
    "reconcile": "seamline.reconcile",
    "RepairOutcome": "seamline.repair.plan",
    "RepairPlan": "seamline.repair.plan",
    "ReconcileResult": "seamline.result",
    "ArrowSource": "seamline.stores.arrow.read",
    "ParquetSource": "seamline.stores.arrow.read",
    "KeyRange": "seamline.stores.protocols",
    "Source": "seamline.stores.protocols",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seamline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ArrowSource",
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
    "ParquetSource",
    "ReconcileResult",
    "RepairOutcome",
    "RepairPlan",
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
    "kafka",
    "parquet",
    "reconcile",
]


def _open(name: str, *args: Any, **kwargs: Any) -> Source:
    """`sl.<store>(...)` through the store registry (which imports the store's package on use)."""
    from seamline.stores import registry

    return registry.open_store(name, *args, **kwargs)


def arrow(obj: Any, name: str = "arrow", *, sql: str | None = None) -> Source:
    """Any object exporting ``__arrow_c_stream__``: pyarrow Table/RecordBatchReader, polars, DuckDB.
    ``sql``: the side is that DuckDB query over the rows, as the table ``source``."""
    return _open("arrow", obj, name, sql=sql)


def parquet(path: str, *, sql: str | None = None) -> Source:
    """A Parquet file, directory or glob (``sql``: a DuckDB query over its rows, as ``source``)."""
    return _open("parquet", path, sql=sql)


def postgres(
    dsn: str,
    table: str | None = None,
    *,
    where: str | None = None,
    query: str | None = None,
    reader: str | None = None,
) -> Source:
    """A Postgres table (optionally filtered) or any SELECT, read from one snapshot by the `reader`
    "rust" (binary COPY decoded in Rust) or "adbc" (the ADBC driver); None: "rust", or SEAMLINE_PG_READER."""
    return _open("postgres", dsn, table, where=where, query=query, reader=reader)


def iceberg(
    table: str,
    *,
    catalog: dict[str, Any],
    snapshot_id: int | None = None,
    as_of: Any = None,
    sql: str | None = None,
) -> Source:
    """An Iceberg table through pyiceberg, at the current snapshot, `snapshot_id`, or `as_of` a time.
    ``sql``: the side is that DuckDB query over the snapshot's rows, as the table ``source`` (e.g.
    revenue per day over a bronze table, against a gold one)."""
    return _open("iceberg", table, catalog=catalog, snapshot_id=snapshot_id, as_of=as_of, sql=sql)


def opensearch(
    url: str,
    index: str,
    *,
    query: dict[str, Any] | None = None,
    key_field: str | None = None,
    sql: str | None = None,
    **client: Any,
) -> Source:
    """An OpenSearch index, read with point-in-time + search_after, sliced for parallelism
    (``sql``: a DuckDB query over the documents read, as the table ``source``)."""
    return _open("opensearch", url, index, query=query, key_field=key_field, sql=sql, **client)


def lancedb(uri: str, table: str, *, where: str | None = None, sql: str | None = None) -> Source:
    """A LanceDB table (embedded), pinned to the version current when the reconcile starts
    (``sql``: a DuckDB query over its rows, as the table ``source``)."""
    return _open("lancedb", uri, table, where=where, sql=sql)


def kafka(
    bootstrap: str,
    topic: str,
    *,
    value: str = "json",
    key_field: str | None = None,
    fold: str | None = None,
    version: str | None = None,
    dedupe: str | None = None,
    order_by: str | None = None,
    sql: str | None = None,
    group: str | None = None,
    config: dict[str, Any] | None = None,
    reader: str | None = None,
) -> Source:
    """A Kafka topic read up to the end offsets pinned at the start: one row per message, or with
    ``fold="latest"`` per key the message with the highest ``version`` (deletes and tombstones remove
    the key); ``dedupe=``/``order_by=`` then ``sql=`` (DuckDB over the table ``events``). ``reader``:
    "rust" (the default where it can serve ``config``) or "confluent" (confluent-kafka)."""
    return _open(
        "kafka",
        bootstrap,
        topic,
        value=value,
        key_field=key_field,
        fold=fold,
        version=version,
        dedupe=dedupe,
        order_by=order_by,
        sql=sql,
        group=group,
        config=config,
        reader=reader,
    )
