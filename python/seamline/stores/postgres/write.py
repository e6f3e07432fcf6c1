"""Applies a repair plan to a Postgres table: version-guarded upserts and deletes, in batches, each
batch one transaction.

- Upserts: ``UPDATE ... WHERE key = v.key AND (t.version IS NULL OR t.version <= v.version)`` for
  the rows the target holds, then ``INSERT ... WHERE NOT EXISTS ... ON CONFLICT (key) DO UPDATE SET
  ... WHERE t.version IS NULL OR t.version <= EXCLUDED.version`` for the others (Postgres checks NOT
  NULL on a proposed insert row before it sees the conflict: ON CONFLICT alone could not repair a
  copy that has a required column outside the seam). ON CONFLICT needs a primary key or unique index
  on exactly the key columns (checked before anything is written). Under READ COMMITTED both
  statements lock the row and re-evaluate the guard on its newest committed version, so a row the
  live pipeline wrote with a newer version, before or during the repair, is never overwritten. An
  equal version is rewritten (the DESIGN's ``<`` would leave a row whose content differs at the same
  version unrepaired forever; rewriting the same version is harmless, so a second apply of the same
  plan is idempotent).
- Deletes: ``DELETE ... WHERE key = v.key AND (t.version IS NULL OR t.version <= v.version)`` with the
  version the plan read from the target: a row rewritten since is kept. A row already gone counts as
  applied (idempotent).
- Dedupes (only possible in a table without a unique key): the rows of the key are locked, and unless
  one of them is newer than the source row they are all deleted and the one row inserted, in one
  transaction.

Counting, per batch, in the same transaction after the write (the rows written are locked by it):
the plan's keys whose target row is now newer than the plan's version are ``skipped_newer``, the
others ``applied``. A batch that fails is rolled back and tried again row by row, so only the rows
that cannot be written are counted ``failed``, each with the server's reason.

Values travel as one bound JSON parameter per batch, unpacked with ``jsonb_to_recordset`` typed with
the target's own column types (exact: decimals and timestamps go as text and are parsed by Postgres;
never formatted into the SQL). Generated columns are never written; identity columns are written
with the source's values (OVERRIDING SYSTEM VALUE). A ``query=`` source cannot be a
repair target.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from seamline.exceptions import InvalidInputError, RepairRefusedError, SchemaError
from seamline.stores._common import chunks
from seamline.stores.postgres.store import (
    PostgresStore,
    Relation,
    close_quietly,
    driver_errors,
    ident,
    sqlstate,
)
from seamline.stores.protocols import PlanData, WriteCounts

BATCH = 1000  # rows per transaction
MAX_ERRORS = 50  # one-line messages kept; the counts are always exact
_RETRIES = 3  # a batch that deadlocks with a concurrent writer is tried again


@dataclass(frozen=True)
class _Col:
    name: str
    sql_type: str  # format_type(): what the recordset declares, e.g. numeric(12,2)
    typname: str  # base type name: how a value is turned into JSON
    generated: bool


class PostgresRepairWriter:
    """Writes repair plans to one Postgres table (see the module docstring for the guarantees)."""

    def __init__(self, store: PostgresStore, table: str | None, batch: int = BATCH) -> None:
        if table is None:
            raise InvalidInputError(
                f"{store.describe()} cannot be repaired: a query has no table to write to (use table=)"
            )
        self._store = store
        self._table = table
        self._batch = batch

    # ---------------------------------------------------------------- the writer contract

    def apply(self, plan: PlanData) -> WriteCounts:
        if plan.version is None:
            raise RepairRefusedError(f"repair of {plan.seam} refused: no version column")
        relation = self._store.resolve(self._table)
        columns, unique = self._catalog(relation.oid)
        for name in [*plan.key, *plan.columns]:
            if name not in columns:
                raise SchemaError(f"the plan's column '{name}' is not in postgres table {relation}")
        # Without a unique key on exactly the key columns, ON CONFLICT cannot guard an insert racing
        # a live writer's; such a table may hold duplicates, so upserts are applied like dedupes:
        # under row locks, every copy of the key replaced by the one row, unless a newer one is there.
        keyed = set(plan.key) in unique
        run = _Run(self._store, relation, columns, plan.key, plan.version)
        write = [c for c in dict.fromkeys([*plan.key, *plan.columns]) if not columns[c].generated]
        conn = self._store.connect(autocommit=False)
        try:
            if plan.upserts.num_rows:
                run.batches(
                    conn, "upsert", plan.upserts, write, self._batch, run.upsert if keyed else run.dedupe
                )
            if plan.deletes.num_rows:
                guard = [*plan.key, plan.version]
                run.batches(conn, "delete", plan.deletes, guard, self._batch, run.delete)
            if plan.dedupes.num_rows:
                run.batches(conn, "dedupe", plan.dedupes, write, self._batch, run.dedupe)
        finally:
            close_quietly(conn)
            self._store.close()  # the catalog connection, reopened on the next use
        errors = list(run.errors)
        if run.error_count > len(errors):
            errors.append(f"... and {run.error_count - len(errors)} more error(s)")
        return WriteCounts(
            applied=run.counts["applied"],
            skipped_newer=run.counts["skipped_newer"],
            failed=run.counts["failed"],
            errors=errors,
        )

    # ---------------------------------------------------------------- catalog

    def _catalog(self, oid: int) -> tuple[dict[str, _Col], list[set[str]]]:
        cols = self._store.query(
            """
            SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS sql_type,
                   bt.typname AS typname, a.attgenerated <> '' AS generated
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            """,
            (oid,),
        ).to_pylist()
        columns = {
            r["name"]: _Col(r["name"], r["sql_type"], r["typname"], bool(r["generated"])) for r in cols
        }
        # unique, valid, non-partial indexes on plain columns: what ON CONFLICT (cols) can infer
        idx = self._store.query(
            """
            SELECT array_to_string(array_agg(a.attname ORDER BY a.attname), chr(31)) AS cols
            FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
                  AND i.indexprs IS NULL
            GROUP BY i.indexrelid
            """,
            (oid,),
        ).to_pylist()
        unique = [set(r["cols"].split(chr(31))) for r in idx]
        return columns, unique


class _Run:
    """One apply: the SQL of the table and the counts."""

    def __init__(
        self, store: PostgresStore, relation: Relation, columns: dict[str, _Col], key: list[str], version: str
    ) -> None:
        self.store = store
        self.rel = relation.sql
        self.columns = columns
        self.key = key
        self.version = version
        self.counts = {"applied": 0, "skipped_newer": 0, "failed": 0}
        self.errors: list[str] = []
        self.error_count = 0

    def fail(self, n: int, message: str) -> None:
        self.counts["failed"] += n
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    # ---------------------------------------------------------------- SQL pieces

    def recordset(self, names: list[str]) -> str:
        defs = ", ".join(f"{ident(n)} {self.columns[n].sql_type}" for n in names)
        return f"jsonb_to_recordset($1::jsonb) AS v({defs})"

    def match(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{ident(k)} = {b}.{ident(k)}" for k in self.key)

    def newer(self, t: str, v: str) -> str:
        """The target row is newer than the plan's version (a NULL version read: any version now)."""
        ver = ident(self.version)
        return f"({t}.{ver} > {v}.{ver} OR ({v}.{ver} IS NULL AND {t}.{ver} IS NOT NULL))"

    def count_newer(self, cur: Any, payload: str) -> int:
        """After the write, in its transaction: the batch's keys a newer row holds."""
        names = list(dict.fromkeys([*self.key, self.version]))
        cur.execute(
            f"SELECT count(*) FROM {self.recordset(names)} WHERE EXISTS "
            f"(SELECT 1 FROM {self.rel} t WHERE {self.match('t', 'v')} AND {self.newer('t', 'v')})",
            (payload,),
        )
        return int(cur.fetchone()[0])

    # ---------------------------------------------------------------- operations

    def upsert(self, cur: Any, payload: str, names: list[str]) -> None:
        cols = ", ".join(ident(n) for n in names)
        ver = ident(self.version)
        guard = f"(t.{ver} IS NULL OR t.{ver} <= {{new}}.{ver})"
        # The rows the target holds: a guarded UPDATE first. Postgres checks NOT NULL on the row an
        # INSERT proposes before it finds the conflict, so with ON CONFLICT alone a copy with a
        # required column outside the seam could never be repaired.
        sets = ", ".join(f"{ident(n)} = v.{ident(n)}" for n in names if n not in self.key)
        cur.execute(
            f"UPDATE {self.rel} AS t SET {sets} FROM {self.recordset(names)} "
            f"WHERE {self.match('t', 'v')} AND {guard.format(new='v')}",
            (payload,),
        )
        # The rows it does not hold; ON CONFLICT for a row the live pipeline inserts meanwhile.
        excluded = ", ".join(f"{ident(n)} = EXCLUDED.{ident(n)}" for n in names if n not in self.key)
        cur.execute(
            f"INSERT INTO {self.rel} AS t ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {self.recordset(names)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.rel} t WHERE {self.match('t', 'v')}) "
            f"ON CONFLICT ({', '.join(ident(k) for k in self.key)}) DO UPDATE SET {excluded} "
            f"WHERE {guard.format(new='EXCLUDED')}",
            (payload,),
        )

    def delete(self, cur: Any, payload: str, names: list[str]) -> None:
        cur.execute(
            f"DELETE FROM {self.rel} AS t USING {self.recordset(names)} "
            f"WHERE {self.match('t', 'v')} AND NOT {self.newer('t', 'v')}",
            (payload,),
        )

    def dedupe(self, cur: Any, payload: str, names: list[str]) -> None:
        cols = ", ".join(ident(n) for n in names)
        cur.execute(
            f"SELECT 1 FROM {self.rel} AS t, {self.recordset(names)} WHERE {self.match('t', 'v')} "
            "FOR UPDATE OF t",
            (payload,),
        )
        cur.fetchall()
        # every copy goes, unless one of them is newer than the source row: then the key is left alone
        cur.execute(
            f"DELETE FROM {self.rel} AS t USING {self.recordset(names)} WHERE {self.match('t', 'v')} "
            f"AND NOT EXISTS (SELECT 1 FROM {self.rel} t2 WHERE {self.match('t2', 'v')} "
            f"AND {self.newer('t2', 'v')})",
            (payload,),
        )
        cur.execute(
            f"INSERT INTO {self.rel} ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {self.recordset(names)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.rel} t WHERE {self.match('t', 'v')})",
            (payload,),
        )

    def batches(
        self,
        conn: Any,
        op: str,
        table: pa.Table,
        names: list[str],
        size: int,
        write: Callable[[Any, str, list[str]], None],
    ) -> None:
        convert = {n: _converter(self.columns[n].typname) for n in names}
        for start, rows in chunks(table.select(names), size):
            if op == "upsert":
                # a source row without a version could overwrite anything: never written
                unversioned = [r for r in rows if r[self.version] is None]
                if unversioned:
                    self.fail(len(unversioned), f"{len(unversioned)} upsert(s) without a version not applied")
                    rows = [r for r in rows if r[self.version] is not None]
                if not rows:
                    continue
            payloads = [{n: convert[n](r[n]) for n in names} for r in rows]
            newer, error = self.transaction(conn, json.dumps(payloads), names, write)
            if error is not None and len(rows) > 1:
                # one bad row fails its whole batch: find it (and write the others) row by row
                for row, payload in zip(rows, payloads, strict=True):
                    one, error = self.transaction(conn, json.dumps([payload]), names, write)
                    key = ", ".join(f"{k}={row[k]!r}" for k in self.key)
                    self.tally(1, one, f"{op} of {key}: {error}")
                continue
            self.tally(len(rows), newer, f"{op} batch of {len(rows)} row(s) from #{start}: {error}")

    def tally(self, n: int, newer: int | None, error: str) -> None:
        if newer is None:
            self.fail(n, error)
        else:
            self.counts["skipped_newer"] += newer
            self.counts["applied"] += n - newer

    def transaction(
        self,
        conn: Any,
        payload: str,
        names: list[str],
        write: Callable[[Any, str, list[str]], None],
    ) -> tuple[int | None, str | None]:
        """One batch in one transaction: the write, then the count of keys a newer row holds; or
        (None, the error) when it failed and was rolled back. A deadlock or serialization failure
        against a concurrent writer is retried; a lost connection raises StoreUnavailableError."""
        for attempt in range(_RETRIES + 1):
            cur = conn.cursor()
            try:
                write(cur, payload, names)
                newer = self.count_newer(cur, payload)
                conn.commit()
                return newer, None
            except driver_errors() as exc:
                _rollback(conn)
                state = sqlstate(exc)
                if state is None or state[:2] in ("08", "57"):
                    raise self.store.unavailable(exc) from None
                if state in ("40001", "40P01") and attempt < _RETRIES:
                    continue
                return None, f"rolled back: {self.store.cause(exc, state=True)}"
            finally:
                cur.close()
        return None, "rolled back"


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except driver_errors():
        pass


def _converter(typname: str) -> Callable[[Any], Any]:
    """Python value of the plan (source logical type) -> JSON value Postgres parses as `typname`."""

    def convert(value: Any) -> Any:
        return _to_json(value, typname)

    return convert


def _to_json(value: Any, typname: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        if typname in ("json", "jsonb"):
            try:
                return json.loads(value)  # a JSON column arrives as its text
            except ValueError:
                return value
        return value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, dt.datetime):
        if typname == "timestamptz" and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # a naive timestamp is UTC, as everywhere in Seamline
        elif typname == "timestamp" and value.tzinfo is not None:
            # Postgres ignores an offset in a `timestamp` literal: convert to UTC wall time first
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        if typname == "uuid" and len(value) == 16:
            return str(uuid.UUID(bytes=value))
        if typname == "bytea":
            return "\\x" + value.hex()
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, list | tuple):
        inner = typname[1:] if typname.startswith("_") else typname
        return [_to_json(v, inner) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v, "") for k, v in value.items()}
    return str(value)
