"""Column statistics for freshness, computed with Arrow over one scanned column: the newest value,
and how many values are newer than a given one. Used by adapters that cannot ask the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    t = column.type
    if isinstance(t, pa.BaseExtensionType):
        column = column.cast(t.storage_type) if isinstance(column, pa.ChunkedArray) else column.storage
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def column_max(column: pa.ChunkedArray | pa.Array) -> Any:
    """The largest non-null value (None when there is none), as a Python value."""
    column = _plain(column)
    if len(column) == 0 or column.null_count == len(column):
        return None
    value = pc.max(column).as_py()
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive timestamps are UTC, as everywhere in Seamline
    return value


def _scalar(value: Any, typ: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(typ) and isinstance(value, dt.datetime):
        if typ.tz is None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        elif typ.tz is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
    try:
        return pa.scalar(value, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.scalar(value)


def count_newer(column: pa.ChunkedArray | pa.Array, value: Any, inclusive: bool = False) -> int:
    """How many values are > `value` (>= when inclusive); None counts every non-null value."""
    column = _plain(column)
    if value is None:
        return len(column) - column.null_count
    if len(column) == 0:
        return 0
    scalar = _scalar(value, column.type)
    mask = pc.greater_equal(column, scalar) if inclusive else pc.greater(column, scalar)
    return int(pc.sum(mask).as_py() or 0)
