"""The Postgres store: a DSN, its connections, its catalog look-ups and its error mapping, shared by
the reader (`read.py`) and the repair writer (`write.py`).

Connections go through ADBC (adbc-driver-postgresql), or, for a reader on the Rust client
(``native``), catalog queries go through `seamline._core.PgSession`: a reconcile then never loads the
ADBC driver (0.4 CPU-seconds to import, with the polars it imports, and 60 ms of CPU a connection,
which loads the server's type catalog). Every driver error that leaves this package is
a `SeamlineError` with one line: ``postgres at HOST:PORT: <the server's reason>`` for a lost or
refused connection, the object for a missing table, the column for a missing column. Messages never
carry the DSN's password.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from seamline._core import PgSession
from seamline.exceptions import (
    InvalidInputError,
    NotFoundError,
    SchemaError,
    SeamlineError,
    StoreUnavailableError,
)
from seamline.stores._common import dsn_secrets
from seamline.stores.postgres import dsn as libpq_dsn

# SQLSTATE classes: connection exceptions, operator intervention (a terminated backend), resources,
# and a rolled-back transaction (a serialization failure, a deadlock, a hot standby's recovery
# conflict: run again, it may pass), as the Rust reader classes them (seamline-pg's from_server)
_UNAVAILABLE = ("08", "57", "53", "40")
# what lets a long read on a hot standby finish (the Rust reader says the same)
_RECOVERY_CONFLICT_HINT = (
    " (a long read on a hot standby needs hot_standby_feedback=on there, or a"
    " max_standby_streaming_delay longer than the read)"
)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def driver_errors() -> tuple[type[Exception], ...]:
    """The ADBC driver's error class, for an ``except``: none while the driver is not loaded (it
    cannot have raised then), so a reader on the Rust client never imports the driver manager."""
    adbc = sys.modules.get("adbc_driver_manager")
    return (adbc.Error,) if adbc is not None else ()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, if the server sent one."""
    if isinstance(exc, driver_errors()):
        state: str | None = getattr(exc, "sqlstate", None)
        return state
    return None


@dataclass(frozen=True)
class Relation:
    """A table as the catalog resolves it."""

    schema: str
    name: str
    oid: int
    reltuples: float  # -1: never analysed (Postgres 14+)

    @property
    def sql(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class PostgresStore:
    """One Postgres database, reached with a libpq DSN (URI or key=value)."""

    def __init__(self, dsn: str, *, native: bool = False) -> None:
        self.dsn = dsn
        #: catalog queries through the Rust client (`PgSession`), not ADBC
        self.native = native
        # the first host of the DSN names the store in messages
        self.host, self.port, self.database = libpq_dsn.first_address(dsn)
        self._secrets = dsn_secrets(dsn)
        self._keywords: tuple[str, list[tuple[str, str]]] | None = None  # (for dsn, keywords)
        self._lock = threading.Lock()
        self._meta: Any = None  # autocommit connection for catalog look-ups (ADBC or PgSession)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """Where the database is, without user or password."""
        return f"postgres {self.address}/{self.database}"

    # -- connections -----------------------------------------------------------------------------

    def keywords(self) -> list[tuple[str, str]]:
        """The libpq keywords the Rust reader connects with: the DSN, the PG* environment, libpq's
        defaults and the password file applied (`dsn.resolve`), resolved once."""
        if self._keywords is None or self._keywords[0] != self.dsn:
            resolved = libpq_dsn.resolve(self.dsn)
            self._secrets = [
                *self._secrets,
                *(resolved[k] for k in ("password", "sslpassword") if resolved.get(k)),
            ]
            self._keywords = (self.dsn, list(resolved.items()))
        return self._keywords[1]

    def connect(self, *, autocommit: bool = True) -> Any:
        """A new ADBC connection (StoreUnavailableError when the server refuses or is down)."""
        import adbc_driver_postgresql.dbapi as pgdbapi

        try:
            return pgdbapi.connect(libpq_dsn.pinned(self.dsn), autocommit=autocommit)
        except driver_errors() as exc:
            # from None: the driver's message may echo connection parameters.
            raise self.unavailable(exc) from None

    def session(self, what: str = "") -> PgSession:
        """A new connection of the Rust client (errors are already the adapter's exceptions)."""
        return PgSession(self.keywords(), address=self.address, what=what or self.describe())

    def _catalog(self, what: str) -> Any:
        """The shared autocommit connection for catalog look-ups."""
        with self._lock:
            if self._meta is None:
                self._meta = self.session(what) if self.native else self.connect()
            return self._meta

    def columns(self, sql: str, *, what: str = "") -> list[tuple[str, str, int]]:
        """(name, type name, typmod) of the columns `sql` returns (a domain as its base type),
        without running it (Rust client only)."""
        columns: list[tuple[str, str, int]] = self._catalog(what).columns(sql)
        return columns

    def query(self, sql: str, params: tuple[Any, ...] | None = None, *, what: str = "") -> pa.Table:
        """A catalog or metadata query on the shared autocommit connection."""
        conn = self._catalog(what)
        if self.native:
            text = [None if p is None else _param_text(p) for p in params or ()]
            return pa.table(conn.query(sql, text))
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            table: pa.Table = cur.fetch_arrow_table()
            return table
        except driver_errors() as exc:
            raise self.error(exc, what or self.describe()) from None
        finally:
            close_quietly(cur)

    def close(self) -> None:
        with self._lock:
            meta, self._meta = self._meta, None
        close_quietly(meta)

    # -- catalog ---------------------------------------------------------------------------------

    def resolve(self, table: str) -> Relation:
        """The table's schema, name, oid and row estimate (NotFoundError if there is none)."""
        t = self.query(
            "SELECT n.nspname, c.relname, c.oid::int8 AS oid, c.reltuples::float8 AS reltuples"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            (table,),
        )
        if t.num_rows == 0:
            name = table
            if "." not in name:
                current = self.query("SELECT current_schema()").column(0)[0].as_py()
                name = f"{current}.{name}"
            raise NotFoundError(f"postgres table {name} does not exist")
        row = t.to_pylist()[0]
        return Relation(row["nspname"], row["relname"], int(row["oid"]), float(row["reltuples"]))

    # -- errors ----------------------------------------------------------------------------------

    def cause(self, exc: BaseException, *, state: bool = False) -> str:
        """The server's reason on one line: without the driver's prefixes, the SQL it echoes, a
        Python traceback or a secret; with the SQLSTATE when asked."""
        lines = [line for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = re.sub(r"^.*?C Data interface error: ", "", text)
        text = re.sub(r"^(IOError|IO|[A-Z_]+): ", "", text)
        text = re.sub(r"^\[libpq\] ", "", text)
        text = re.sub(r"^Failed to connect: ", "", text)
        text = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "", text)
        text = re.sub(r"^Failed to (prepare|execute|fetch)( query)?: ", "", text)
        text = re.sub(r"^Execution error \[[A-Z_]+\]: ", "", text)
        text = re.sub(r"^PQ\w+\(\) failed: ", "", text)
        text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
        if "ERROR:" in text:
            text = text.rsplit("ERROR:", 1)[1]
        text = re.sub(r"\s*Detail: Python exception:.*$", "", text)
        text = " ".join(text.split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        code = sqlstate(exc)
        return f"{text} (SQLSTATE {code})" if state and code else text

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """``postgres at HOST:PORT: <reason>``: the server is down, refused, or ended the session."""
        text = self.cause(exc)
        if "conflict with recovery" in text:
            text += _RECOVERY_CONFLICT_HINT
        return StoreUnavailableError(f"postgres at {self.address}: {text}")

    def error(self, exc: BaseException, what: str) -> SeamlineError:
        """A driver error as the SeamlineError it is, naming `what` was being read."""
        code = sqlstate(exc)
        if code is None or code[:2] in _UNAVAILABLE:
            return self.unavailable(exc)
        if code == "42P01":
            return NotFoundError(f"{what}: {self.cause(exc)}")
        if code == "42703":
            return SchemaError(f"{what}: {self.cause(exc)}")
        return InvalidInputError(f"{what}: {self.cause(exc)}")


def _param_text(value: Any) -> str:
    """A catalog query's parameter as the text the server parses (as libpq sends it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def close_quietly(conn: Any) -> None:
    """Close a connection or cursor that may already be gone (closing is best effort)."""
    if conn is None:
        return
    try:
        conn.close()  # a PgSession's close never raises
    except driver_errors():
        pass
