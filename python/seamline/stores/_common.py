"""Helpers shared by several store packages, each written once here.

- Redaction: `redact_url` (a URL without user and password) and `dsn_secrets` (the passwords of a
  Postgres DSN or URL), the one place Seamline takes connection secrets apart.
- Key ranges: `cover` (fewer, covering ranges) and `range_predicate` (a `KeyRange` over a tuple key
  as a store's own predicate expression, expanded lexicographically).
- Freshness by scanning one column (`ScannedVersions`), for stores that cannot ask the server.
- `chunks` (a table's rows in slices, as dicts) and `version_numbers` (versions as int64).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from seamline.exceptions import InvalidInputError
from seamline.stores.protocols import KeyBound, KeyRange

# -- secrets ---------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """A URL or URI without its user and password, for anything shown or logged."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a malformed port: show the scheme and host part only
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def dsn_parts(dsn: str) -> dict[str, str]:
    """The connection parameters of a libpq DSN: a URI (``postgresql://u:p@h:5432/db?x=y``, parsed by
    urllib) or ``key=value`` words (values optionally single-quoted, backslash escapes)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        out = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        for name, value in (("user", parts.username), ("password", parts.password)):
            if value:
                out.setdefault(name, value)
        if parts.hostname:
            out.setdefault("host", parts.hostname)
        try:
            if parts.port:
                out.setdefault("port", str(parts.port))
        except ValueError:
            pass
        if parts.path.lstrip("/"):
            out.setdefault("dbname", parts.path.lstrip("/"))
        return out
    out, i, n = {}, 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        eq = dsn.find("=", i)
        if eq < 0:
            break
        name = dsn[i:eq].strip()
        i = eq + 1
        while i < n and dsn[i].isspace():
            i += 1
        chars: list[str] = []
        quoted = i < n and dsn[i] == "'"
        i += quoted
        while i < n and (quoted or not dsn[i].isspace()):
            if dsn[i] == "\\" and i + 1 < n:
                chars.append(dsn[i + 1])
                i += 2
                continue
            if quoted and dsn[i] == "'":
                i += 1
                break
            chars.append(dsn[i])
            i += 1
        out[name] = "".join(chars)
    return out


def dsn_secrets(dsn: str) -> list[str]:
    """The passwords in a DSN or URL, to scrub from any message that might echo them."""
    secret = dsn_parts(dsn).get("password")
    return [secret] if secret else []


# -- key ranges ------------------------------------------------------------------------------------


def cover(ranges: Sequence[KeyRange], at_most: int) -> list[KeyRange]:
    """At most `at_most` ranges covering `ranges` (ascending, disjoint): neighbours are merged, so a
    store is asked for a superset, which the core filters. For stores whose queries cannot carry
    thousands of predicates."""
    if len(ranges) <= at_most:
        return list(ranges)
    size = -(-len(ranges) // at_most)
    return [
        KeyRange(ranges[i].lo, ranges[min(i + size, len(ranges)) - 1].hi) for i in range(0, len(ranges), size)
    ]


E = TypeVar("E")


@dataclass(frozen=True)
class Predicates(Generic[E]):
    """How a store builds predicates: `compare(op, column, value)` with op one of ``> >= < ==``,
    and the conjunction and disjunction of two."""

    compare: Callable[[str, str, Any], E]
    both: Callable[[E, E], E]
    either: Callable[[E, E], E]


def range_predicate(key: Sequence[str], r: KeyRange, build: Predicates[E]) -> E | None:
    """``lo <= (k1, ..., kn) < hi`` in the store's expressions; None when unbounded on both sides."""
    lo = _tuple_cmp(key, r.lo, build, lower=True) if r.lo is not None else None
    hi = _tuple_cmp(key, r.hi, build, lower=False) if r.hi is not None else None
    if lo is not None and hi is not None:
        return build.both(lo, hi)
    return lo if lo is not None else hi


def _tuple_cmp(key: Sequence[str], bound: KeyBound, build: Predicates[E], *, lower: bool) -> E:
    """(k1, ..., kn) >= bound (lower) or < bound (upper), expanded lexicographically."""
    if len(bound) != len(key):
        raise InvalidInputError(f"key bound {bound!r} does not match key {list(key)}")
    n = len(key)
    expr = build.compare(">=" if lower else "<", key[n - 1], bound[n - 1])
    for i in range(n - 2, -1, -1):
        strict = build.compare(">" if lower else "<", key[i], bound[i])
        expr = build.either(strict, build.both(build.compare("==", key[i], bound[i]), expr))
    return expr


# -- freshness by scanning -------------------------------------------------------------------------


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
    try:
        mask = pc.greater_equal(column, scalar) if inclusive else pc.greater(column, scalar)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidInputError(
            f"cannot compare a {column.type} column with {value!r} ({str(exc).splitlines()[0]})"
        ) from None
    return int(pc.sum(mask).as_py() or 0)


class ScannedVersions(ABC):
    """`Versioned` by scanning one column of the pinned snapshot, for stores that cannot ask the
    server for a maximum or a count: the store gives `version_column`."""

    @abstractmethod
    def version_column(self, column: str) -> pa.ChunkedArray:
        """Every value of ``column`` in the pinned snapshot (SchemaError if there is no such column)."""

    def max_value(self, column: str) -> Any:
        """The largest value of ``column`` in the pinned snapshot (a scan of that column), or None."""
        return column_max(self.version_column(column))

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        """Rows whose ``column`` is > ``value`` (>= when inclusive; None: every non-NULL value)."""
        return count_newer(self.version_column(column), value, inclusive)


# -- writing ---------------------------------------------------------------------------------------


def chunks(table: pa.Table, size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The rows of `table` as dicts, `size` at a time, with the offset of each slice."""
    for start in range(0, table.num_rows, size):
        yield start, table.slice(start, size).to_pylist()


def version_numbers(values: pa.Array) -> pa.Array:
    """Versions as int64 for stores that need integer versions: timestamps as microseconds since
    the epoch, dates as days, integers as they are."""
    t = values.type
    if pa.types.is_null(t):
        # a plan with no rows of one kind holds null-typed columns: its versions are an empty int64
        # array, not an error
        return pa.nulls(len(values), pa.int64())
    if pa.types.is_timestamp(t):
        return pc.cast(values.cast(pa.timestamp("us", tz=t.tz)), pa.int64())
    if pa.types.is_date(t):
        return pc.cast(values.cast(pa.date32()), pa.int32()).cast(pa.int64())
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return values.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return values.cast(pa.int64())  # a numeric string (e.g. an LSN as text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(
                f"version column of type {t} holds a value that is not an integer "
                f"({str(exc).splitlines()[0]})"
            ) from None
    raise InvalidInputError(f"version column of type {t} cannot be turned into an integer version")
