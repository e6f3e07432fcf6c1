"""Postgres reader: reads a table or a query as Arrow streams, from one snapshot, with one of two
readers: "rust" (`seamline._core.pg_copy_stream`: binary COPY decoded in Rust, no Python or driver in
the row path) or "adbc" (the ADBC driver's COPY). Both run the SQL built here; catalog queries, the
snapshot coordinator and freshness always go through ADBC.

Consistency: ``pin`` opens a coordinator transaction (REPEATABLE READ) and exports its snapshot; every
reader connection of every ``open`` imports that snapshot before its query, so all parallel streams and
all passes of one reconcile see exactly the same data. The coordinator stays open until ``close``.

Key ranges are pushed down as row comparisons; text key columns are compared ``COLLATE "C"`` so that
Postgres orders them by UTF-8 bytes, like the Rust core, whatever the database collation is.

Range bounds are bound as parameters, never formatted into SQL. ADBC materialises the whole result of a
parameterised query in memory (only parameterless queries are streamed with COPY), so the bounds are
first stored as transaction-local settings with a parameterised ``set_config`` and the streaming query
reads them back with ``current_setting`` in init-plan subqueries (evaluated once, usable by indexes).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc

from seamline._core import pg_copy_stream
from seamline.exceptions import InvalidInputError, SchemaError, SeamlineError, StoreUnavailableError
from seamline.stores._common import cover
from seamline.stores.postgres.store import PostgresStore, Relation, close_quietly, driver_errors, ident
from seamline.stores.protocols import AsOf, KeyBound, KeyRange, ScanRequest

# Above this many ranges per reader, neighbouring ranges are merged into one covering range: a few
# extra rows are read (the core filters them) instead of sending a huge OR predicate.
_MAX_RANGES_PER_READER = 64
#: the row readers: "rust" (binary COPY decoded by seamline._core) and "adbc" (the ADBC driver)
READERS = ("rust", "adbc")
# The Rust reader is the default; reader="adbc" (or SEAMLINE_PG_READER=adbc) is for a server or an
# option the Rust client cannot speak (GSSAPI, a legacy-encrypted client key, require_auth).
DEFAULT_READER = "rust"
#: overrides DEFAULT_READER for sources that name no reader (e.g. to run a test suite on each)
READER_ENV = "SEAMLINE_PG_READER"
# Rows per record batch of the Rust reader.
_RUST_BATCH_ROWS = 65536
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")
_COLLATABLE = {"text", "varchar", "bpchar", "name", "citext", "character varying", "character"}
_JSON = {"seamline.logical": "json"}
_DECIMAL = {"seamline.logical": "decimal"}
_SIMPLE: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "citext": pa.string(),
    "char": pa.string(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "interval": pa.month_day_nano_interval(),
    "bytea": pa.binary(),
    # uuid: 16 raw bytes, the storage of the arrow.uuid extension ADBC streams.
    "uuid": pa.binary(16),
}


@dataclass(frozen=True)
class _Column:
    name: str
    cast_type: str  # type name for CAST(... AS <type>) of a bound, without typmod
    collatable: bool  # text-like: compared COLLATE "C"


class PostgresReader:
    """A Postgres table (optionally filtered by ``where``) or an arbitrary ``query``."""

    def __init__(
        self,
        dsn: str | PostgresStore,
        table: str | None = None,
        *,
        where: str | None = None,
        query: str | None = None,
        reader: str | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise InvalidInputError("postgres source: give exactly one of table= or query=")
        self.store = dsn if isinstance(dsn, PostgresStore) else PostgresStore(dsn)
        if reader is None:
            reader = os.environ.get(READER_ENV) or DEFAULT_READER
        if reader not in READERS:
            raise InvalidInputError(f"postgres reader {reader!r}: expected one of {', '.join(READERS)}")
        if reader == "rust":
            self.store.keywords()  # a DSN the Rust client cannot follow fails here, naming the option
            self.store.native = True  # catalog queries on the Rust client too: ADBC is never loaded
        self.reader = reader
        self.table = table
        self._table = table
        self._where = where
        # The query is wrapped as a subquery (and in COPY by ADBC): a trailing ";" would break it.
        self._query = query.strip().rstrip(";").strip() if query is not None else None
        self._lock = threading.Lock()
        self._coordinator: Any = None  # holds the exported snapshot open
        self._snapshot_id: str | None = None
        self._as_of: AsOf | None = None
        self._relation: Relation | None = None
        self._schema: pa.Schema | None = None
        self._columns: dict[str, _Column] = {}
        self._readers: set[Any] = set()
        # Cut points per (key, parallelism): every pass of one reconcile splits the key space the same way.
        self._cuts: dict[tuple[tuple[str, ...], int], list[KeyBound]] = {}

    # -- Source protocol -------------------------------------------------------------------------

    def can_push_down(self, key: Sequence[str]) -> bool:
        """Key ranges become predicates (text keys COLLATE "C"), or a join against bound arrays."""
        return True

    def seeks_range_rows(self, key: Sequence[str]) -> bool:
        """Many ranges of a single integer key are read by a join against bound arrays, the key
        index walked once per range: only their rows are read. Other keys' ranges are merged into
        a bounded number of covering spans."""
        self.schema()
        columns = [self._columns[k] for k in key if k in self._columns]
        return len(columns) == len(key) and _joinable(columns)

    def describe(self) -> str:
        where = self.store.describe()
        if self._table is not None:
            text = f"{where} table {self._table}"
            if self._where:
                text += f" where {' '.join(self._where.split())}"
            return text
        query = " ".join((self._query or "").split())
        return f"{where} query {query[:80]}{'...' if len(query) > 80 else ''}"

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._load_schema()
        assert self._schema is not None
        return self._schema

    def open(self, request: ScanRequest) -> list[Any]:
        if self._snapshot_id is None:
            self.pin()
        self.schema()
        try:
            key = [self._columns[k] for k in request.key]
        except KeyError as exc:
            raise SchemaError(f"{self.describe()}: no key column {exc.args[0]!r}") from None
        columns = list(request.columns) if request.columns else list(self.schema().names)
        for name in columns:
            if name not in self._columns:
                raise SchemaError(f"{self.describe()}: no column {name!r}")
        streams: list[Any] = []
        try:
            for group in self._plan(request):
                sql, params = self._select_sql(columns, key, group)
                streams.append(self._reader(sql, params))
        except BaseException:
            for stream in streams:
                stream.close()
            raise
        return streams

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        if self._table is None or n <= 0:
            return None
        schema = self.schema()
        relation = self._resolve()
        nspname, relname, reltuples, rel = relation.schema, relation.name, relation.reltuples, relation.sql
        if len(key) == 1:
            col = self._columns.get(key[0])
            if col is None:
                return None
            k = ident(col.name)
            sql = (
                f"SELECT s.k AS {k} FROM (SELECT unnest(histogram_bounds::text::{col.cast_type}[]) AS k"
                " FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3) s"
                f" UNION SELECT min({k}) FROM {rel} UNION SELECT max({k}) FROM {rel}"
            )
            params: tuple[Any, ...] = (nspname, relname, col.name)
            if not self._has_stats(nspname, relname, col.name):
                self._analyze(rel)
        else:
            if reltuples <= 0:
                return None
            pct = min(100.0, max(0.001, 100.0 * 4 * n / reltuples))
            cols = ", ".join(ident(k) for k in key)
            sql = f"SELECT {cols} FROM {rel} TABLESAMPLE SYSTEM ($1) LIMIT $2"
            params = (pct, n)
        table = self._meta_query(sql, params)
        for name in table.column_names:  # NULL keys are no boundaries
            table = table.filter(pc.is_valid(table.column(name)))
        if table.num_rows == 0:
            return None
        table = _to_logical(table, schema, list(key))
        if table.num_rows > n > 1:
            # Thin out evenly along the key order (Arrow sorts strings and binary bytewise).
            try:
                table = table.sort_by([(k, "ascending") for k in key])
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                pass
            step = (table.num_rows - 1) / (n - 1)
            table = table.take(pa.array(sorted({round(i * step) for i in range(n)})))
        return table

    def estimated_rows(self) -> int | None:
        if self._table is None:
            return None
        reltuples = self._resolve().reltuples
        # -1: never vacuumed/analyzed (Postgres 14+): unknown.
        return int(reltuples) if reltuples >= 0 else None

    def pin(self) -> AsOf:
        with self._lock:
            if self._as_of is not None:
                return self._as_of
            export = (
                "SELECT pg_export_snapshot() AS snapshot, now() AS now, clock_timestamp() AS pinned_at,"
                " current_setting('server_version') AS version"
            )
            if self.reader == "rust":
                conn = self.store.session(self.describe())
                try:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    row = pa.table(conn.query(export)).to_pylist()[0]
                except BaseException:
                    conn.close()
                    raise
                snapshot_id, snapshot_time, pinned_at, version = row.values()
            else:
                conn, (snapshot_id, snapshot_time, pinned_at, version) = self._adbc_export(export)
            if not _SNAPSHOT_ID.match(str(snapshot_id)):
                conn.close()
                raise StoreUnavailableError(
                    f"postgres at {self.store.address}: unexpected snapshot id {snapshot_id!r}"
                )
            self._coordinator = conn
            self._snapshot_id = str(snapshot_id)
            detail: dict[str, Any] = {
                "host": self.store.address,
                "database": self.store.database,
                "snapshot_id": self._snapshot_id,
                "snapshot_time": _iso(snapshot_time),
                "pinned_at": _iso(pinned_at),
                "server_version": str(version),
            }
            if self._table is not None:
                detail["table"] = self._table
            self._as_of = AsOf(store="postgres", detail=detail)
            return self._as_of

    def _adbc_export(self, export: str) -> tuple[Any, tuple[Any, ...]]:
        """An ADBC connection in a REPEATABLE READ transaction, and the row of `export` run in it."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(export)
            row = cur.fetchone()
            cur.close()
        except driver_errors() as exc:
            close_quietly(conn)
            raise self.store.error(exc, self.describe()) from None
        except BaseException:
            close_quietly(conn)
            raise
        return conn, tuple(row)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = list(self._readers), set()
            conns = [*readers, self._coordinator]
            self._coordinator = None
            self._snapshot_id = None
            self._as_of = None
            self._relation = None
            self._cuts = {}
        for conn in conns:
            close_quietly(conn)
        self.store.close()

    # -- connections -----------------------------------------------------------------------------

    def _connect(self) -> Any:
        return self.store.connect()

    def _meta_query(self, sql: str, params: tuple[Any, ...] | None = None) -> pa.Table:
        return self.store.query(sql, params, what=self.describe())

    def _reader(self, sql: str, params: list[str]) -> Any:
        """One connection in the pinned snapshot, streaming ``sql`` with COPY."""
        if self.reader == "rust":
            # Connects, imports the snapshot and starts the COPY with the GIL released; the stream
            # closes its connection when it is drained or dropped.
            return pg_copy_stream(
                self.store.keywords(),
                sql,
                snapshot=self._snapshot_id,
                settings=params,
                address=self.store.address,
                what=self.describe(),
                batch_rows=_RUST_BATCH_ROWS,
            )
        conn = self._connect()
        with self._lock:
            self._readers.add(conn)
        try:
            cur = conn.cursor()
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The id was validated against _SNAPSHOT_ID when it was exported.
            cur.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot_id}'")
            if params:
                # ranged: no JIT for index lookups priced as a scan (see seamline-pg's `start`)
                setters = ", ".join(
                    ["set_config('jit', 'off', true)"]
                    + [f"set_config('seamline.p{i}', ${i}, true)" for i in range(1, len(params) + 1)]
                )
                cur.execute(f"SELECT {setters}", tuple(params))
                cur.fetchall()
            cur.execute(sql)
            adbc_reader = cur.fetch_record_batch()
        except driver_errors() as exc:
            self._drop_reader(conn)
            raise self.store.error(exc, self.describe()) from None
        except BaseException:
            self._drop_reader(conn)
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            # Close the connection as soon as the stream is drained (or dropped), not at close().
            try:
                yield from adbc_reader
            except (*driver_errors(), OSError, pa.ArrowException) as exc:
                # e.g. the backend terminated mid-scan: one line naming the server, no traceback
                raise self.store.error(exc, self.describe()) from None
            finally:
                try:
                    adbc_reader.close()
                    cur.close()
                finally:
                    self._drop_reader(conn)

        return pa.RecordBatchReader.from_batches(adbc_reader.schema, batches())

    def _drop_reader(self, conn: Any) -> None:
        with self._lock:
            self._readers.discard(conn)
        close_quietly(conn)

    # -- catalog -----------------------------------------------------------------------------------

    def _resolve(self) -> Relation:
        if self._relation is None:
            assert self._table is not None
            self._relation = self.store.resolve(self._table)
        return self._relation

    def _load_schema(self) -> None:
        fields: list[pa.Field] = []
        columns: dict[str, _Column] = {}
        if self._table is not None:
            oid = self._resolve().oid
            t = self._meta_query(
                """
                SELECT a.attname AS name,
                       bt.typname AS typname,
                       CASE bt.typname WHEN 'bpchar' THEN 'bpchar' WHEN 'bit' THEN 'varbit'
                            ELSE format_type(bt.oid, NULL) END AS cast_type,
                       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
                       a.attnotnull AS notnull,
                       a.attcollation <> 0 AS collatable,
                       et.typname AS elem
                FROM pg_attribute a
                JOIN pg_type t ON t.oid = a.atttypid
                JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
                WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
                """,
                (oid,),
            )
            for row in t.to_pylist():
                field = _pg_field(row["name"], row["typname"], int(row["typmod"]), row["elem"], None)
                fields.append(field.with_nullable(not row["notnull"]))
                columns[row["name"]] = _Column(row["name"], row["cast_type"], bool(row["collatable"]))
        elif self.reader == "rust":
            for name, typname, typmod in self.store.columns(
                f"SELECT * FROM ({self._query}) AS q LIMIT 0", what=self.describe()
            ):
                fields.append(_pg_field(name, typname, typmod, None, None))
                cast_type = typname if re.fullmatch(r"[a-z_][a-z0-9_]*", typname) else ""
                columns[name] = _Column(name, cast_type, typname in _COLLATABLE)
        else:
            t = self._meta_query(f"SELECT * FROM ({self._query}) AS q LIMIT 0")
            for f in t.schema:
                meta = f.metadata or {}
                typname = meta.get(b"POSTGRESQL:type", b"").decode()
                typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1").decode())
                fields.append(_pg_field(f.name, typname, typmod, None, f.type))
                cast_type = typname if re.fullmatch(r"[a-z_][a-z0-9_]*", typname) else ""
                columns[f.name] = _Column(f.name, cast_type, typname in _COLLATABLE)
        self._schema = pa.schema(fields)
        self._columns = columns

    def _has_stats(self, nspname: str, relname: str, attname: str) -> bool:
        t = self._meta_query(
            "SELECT 1 AS x FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3",
            (nspname, relname, attname),
        )
        return bool(t.num_rows)

    def _analyze(self, rel: str) -> None:
        try:
            self._meta_query(f"ANALYZE {rel}")
        except SeamlineError:
            pass  # no privilege: fall back to min/max only

    # -- query building ----------------------------------------------------------------------------

    def _plan(self, request: ScanRequest) -> list[list[KeyRange] | None]:
        """Which ranges each reader reads (None: no range predicate)."""
        n = max(1, request.parallelism)
        if request.ranges is None:
            if n == 1 or self._table is None:
                return [None]
            cache_key = (tuple(request.key), n)
            if cache_key not in self._cuts:
                self._cuts[cache_key] = self._cut_points(request.key, n)
            cuts = self._cuts[cache_key]
            if not cuts:
                return [None]
            bounds: list[KeyBound | None] = [None, *cuts, None]
            return [[KeyRange(bounds[i], bounds[i + 1])] for i in range(len(bounds) - 1)]
        ranges = list(request.ranges)
        if not ranges:
            return [[]]
        n = min(n, len(ranges))
        size = -(-len(ranges) // n)
        return [ranges[i : i + size] for i in range(0, len(ranges), size)]

    def _cut_points(self, key: Sequence[str], n: int) -> list[KeyBound]:
        sample = self.sample_keys(key, max(4 * n, 32))
        if sample is None or sample.num_rows < 2:
            return []
        # Python orders str by code point, i.e. by UTF-8 bytes like the core; bytes compare bytewise.
        rows = sorted(set(zip(*(sample.column(k).to_pylist() for k in key), strict=True)))
        points = [rows[(i * len(rows)) // n] for i in range(1, n)]
        out: list[KeyBound] = []
        for p in points:
            if not out or out[-1] != p:
                out.append(p)
        return out

    def _select_sql(
        self, columns: list[str], key: list[_Column], ranges: list[KeyRange] | None
    ) -> tuple[str, list[str]]:
        source = self._resolve().sql if self._table is not None else f"({self._query}) AS q"
        sql = f"SELECT {self._select_list(columns, '')} FROM {source}"
        conds: list[str] = []
        if self._where:
            conds.append(f"({self._where})")
        params: list[str] = []
        if ranges is not None and len(ranges) > _MAX_OR_RANGES and _joinable(key):
            return self._ranges_join_sql(source, columns, key[0], ranges, conds)
        if ranges is not None:
            alts = [_range_sql(key, r, params) for r in cover(ranges, _MAX_RANGES_PER_READER)]
            if not alts:
                conds.append("false")
            elif "true" not in alts:
                conds.append("(" + " OR ".join(alts) + ")")
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return sql, params

    def _select_list(self, columns: list[str], prefix: str) -> str:
        """The SELECT list. For ADBC numeric goes out as text, which the core parses exactly: the
        driver's own numeric decoding (to text, on the client) took half the read time. The Rust
        reader decodes binary numeric itself."""
        out = []
        for c in columns:
            col = self._columns.get(c)
            if col is not None and col.cast_type == "numeric" and self.reader == "adbc":
                out.append(f"{prefix}{ident(c)}::text AS {ident(c)}")
            else:
                out.append(f"{prefix}{ident(c)}")
        return ", ".join(out)

    def _ranges_join_sql(
        self, source: str, columns: list[str], key: _Column, ranges: list[KeyRange], conds: list[str]
    ) -> tuple[str, list[str]]:
        """Many ranges of an integer key: join the table with the bounds as two arrays, so Postgres
        walks the key index once per range (a nested loop) and reads only the rows in them, instead
        of an OR of thousands of predicates or a covering range that reads everything again. The
        open-ended first/last ranges, if any, go in a second UNION ALL arm with plain predicates."""
        closed = [r for r in ranges if r.lo is not None and r.hi is not None]
        edges = [r for r in ranges if r.lo is None or r.hi is None]
        params: list[str] = []
        cols = self._select_list(columns, "s.")
        where = (" AND " + " AND ".join(conds)) if conds else ""
        arms = []
        if closed:
            params += ["{" + ",".join(str(int(r.lo[0])) for r in closed) + "}"]  # type: ignore[index]
            params += ["{" + ",".join(str(int(r.hi[0])) for r in closed) + "}"]  # type: ignore[index]
            lo, hi = (f"(SELECT CAST(current_setting('seamline.p{i}') AS {key.cast_type}[]))" for i in (1, 2))
            k = f"s.{ident(key.name)}"
            arms.append(
                f"SELECT {cols} FROM {source} AS s JOIN unnest({lo}, {hi}) AS r(seamline_lo, seamline_hi) "
                f"ON {k} >= r.seamline_lo AND {k} < r.seamline_hi{where}"
            )
        if edges:
            alts = " OR ".join(_range_sql([key], r, params) for r in edges)
            arms.append(f"SELECT {cols} FROM {source} AS s WHERE ({alts}){where}")
        return " UNION ALL ".join(arms), params

    # -- freshness: the newest value of a column, and how many rows are newer, in the pinned snapshot --

    def max_value(self, column: str) -> Any:
        """The largest value of ``column`` (NULLs ignored) in the pinned snapshot, or None."""
        col = self._freshness_column(column)
        table = self._in_snapshot(f"SELECT max({ident(col.name)}) AS {ident(col.name)}", [], [])
        table = _to_logical(table, self.schema(), [col.name])
        value = table.column(0)[0].as_py() if table.num_rows else None
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        """Rows whose ``column`` is > ``value`` (>= when inclusive; None: every non-NULL value)."""
        col = self._freshness_column(column)
        if value is None:
            conds, params = [f"{ident(col.name)} IS NOT NULL"], []
        else:
            cast = f"CAST(current_setting('seamline.p1') AS {col.cast_type})" if col.cast_type else "$1"
            op = ">=" if inclusive else ">"
            conds, params = [f"{ident(col.name)} {op} (SELECT {cast})"], [_param_text(value, col.cast_type)]
        table = self._in_snapshot("SELECT count(*) AS n", conds, params)
        return int(table.column(0)[0].as_py())

    def _freshness_column(self, column: str) -> _Column:
        self.schema()
        if column not in self._columns:
            raise SchemaError(f"{self.describe()}: no column {column!r}")
        return self._columns[column]

    def _in_snapshot(self, select: str, conds: list[str], params: list[str]) -> pa.Table:
        """``select`` over the table/query (with ``where``), on a connection in the pinned snapshot."""
        if self._snapshot_id is None:
            self.pin()
        source = self._resolve().sql if self._table is not None else f"({self._query}) AS q"
        if self._where:
            conds = [f"({self._where})", *conds]
        sql = f"{select} FROM {source}" + (" WHERE " + " AND ".join(conds) if conds else "")
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot_id}'")
            if params:  # bound as settings, like the range bounds of a scan
                cur.execute("SELECT set_config('seamline.p1', $1, true)", tuple(params))
                cur.fetchall()
            cur.execute(sql)
            table: pa.Table = cur.fetch_arrow_table()
            cur.close()
            return table
        except driver_errors() as exc:
            raise self.store.error(exc, self.describe()) from None
        finally:
            close_quietly(conn)


def _range_sql(key: list[_Column], r: KeyRange, params: list[str]) -> str:
    parts = []
    for bound, op in ((r.lo, ">="), (r.hi, "<")):
        if bound is None:
            continue
        if len(bound) != len(key):
            raise InvalidInputError(f"key bound {bound!r} does not match key {[c.name for c in key]}")
        lhs, rhs = [], []
        for col, value in zip(key, bound, strict=True):
            params.append(_param_text(value, col.cast_type))
            setting = f"current_setting('seamline.p{len(params)}')"
            # A scalar subquery is an init-plan: evaluated once, and an index can use it.
            rhs.append(
                f"(SELECT CAST({setting} AS {col.cast_type}))" if col.cast_type else f"(SELECT {setting})"
            )
            lhs.append(f'{ident(col.name)} COLLATE "C"' if col.collatable else ident(col.name))
        if len(key) == 1:
            parts.append(f"{lhs[0]} {op} {rhs[0]}")
        else:
            parts.append(f"({', '.join(lhs)}) {op} ({', '.join(rhs)})")
    return "(" + " AND ".join(parts) + ")" if parts else "true"


_INTEGER_TYPES = {"bigint", "integer", "smallint", "int8", "int4", "int2"}
# Up to this many ranges a reader ORs predicates; above it an integer key joins an array of bounds.
_MAX_OR_RANGES = 16


def _joinable(key: list[_Column]) -> bool:
    return len(key) == 1 and key[0].cast_type in _INTEGER_TYPES


def _param_text(value: Any, cast_type: str) -> str:
    """A key value as the text Postgres parses back to the same value of the column's type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal, str)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        if cast_type in ("timestamp with time zone", "timestamptz"):
            # A naive bound for a timestamptz column is UTC (what the core hands out).
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if cast_type == "uuid" and len(raw) == 16:
            return str(UUID(bytes=raw))
        return "\\x" + raw.hex()
    raise InvalidInputError(f"unsupported key value {value!r} ({type(value).__name__})")


def _pg_field(
    name: str, typname: str, typmod: int, elem: str | None, fallback: pa.DataType | None
) -> pa.Field:
    """Postgres type -> logical Arrow field."""
    if typname == "numeric":
        if typmod >= 4:
            precision = ((typmod - 4) >> 16) & 0xFFFF
            scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024
            if 0 <= scale <= precision <= 38:
                return pa.field(name, pa.decimal128(precision, scale))
            if 0 <= scale <= precision <= 76:
                return pa.field(name, pa.decimal256(precision, scale))
        return pa.field(name, pa.string(), metadata=_DECIMAL)
    if typname in ("json", "jsonb"):
        return pa.field(name, pa.string(), metadata=_JSON)
    if typname in _SIMPLE:
        return pa.field(name, _SIMPLE[typname])
    if elem is not None or typname.startswith("_"):
        inner = _pg_field("item", elem or typname[1:], -1, None, None)
        return pa.field(name, pa.list_(inner))
    if fallback is not None:
        storage = fallback.storage_type if isinstance(fallback, pa.BaseExtensionType) else fallback
        return pa.field(name, storage)
    return pa.field(name, pa.string())


def _to_logical(table: pa.Table, schema: pa.Schema, key: list[str]) -> pa.Table:
    arrays = []
    for name in key:
        column = table.column(name).combine_chunks()
        if isinstance(column.type, pa.BaseExtensionType):
            column = column.storage
        target = schema.field(name).type
        if column.type != target:
            try:
                column = column.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # keep the stream type; the core decodes it like the stream's
        arrays.append(column)
    return pa.table(arrays, names=key)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (datetime, date)) else None if value is None else str(value)
