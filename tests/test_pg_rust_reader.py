"""The Rust Postgres reader (`reader="rust"`: binary COPY decoded by seamline._core) against the real
server, checked against the ADBC reader on the same rows (issue 13):

- every supported type decodes to the batches the core would get from ADBC (numeric: the exact text
  `numeric_out` prints), and a reconcile of the two readers over one table is clean — a property
  test over generated rows with NULLs, NaN, -0.0, huge and tiny numerics, far-past and far-future
  timestamps and non-BMP text;
- all streams read the pinned snapshot while other sessions write;
- (a backend terminated mid-COPY: tests/stores/test_store_errors.py, for both readers);
- a refused connection, an unsupported column type and a bad `reader` are one-line errors.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from repair_helpers import Pg

import seamline as sl
from seamline.stores.protocols import ScanRequest

pytestmark = pytest.mark.services

# column -> SQL type; the table every property example is written to
COLUMNS = {
    "i2": "int2",
    "i4": "int4",
    "f4": "float4",
    "f8": "float8",
    "b": "bool",
    "t": "text",
    "tp": 'text COLLATE "POSIX"',
    "v": "varchar(40)",
    "n": "numeric",
    "n2": "numeric(38, 6)",
    "ts": "timestamp",
    "tz": "timestamptz",
    "d": "date",
    "u": "uuid",
    "j": "json",
    "jb": "jsonb",
    "by": "bytea",
    "vec": "float4[]",
    "vec8": "float8[]",
}


def lit(value: str | None, sql_type: str) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'::" + sql_type.split(" COLLATE")[0]


def float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, math.nan]))
f4 = st.floats(width=32, allow_nan=True, allow_infinity=True)
numerics = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 900),
    st.sampled_from(
        [
            Decimal("NaN"),
            Decimal("1e-300"),
            Decimal("-" + "9" * 60 + ".000001"),
            Decimal("0.0000"),
            Decimal("1E+200"),
        ]
    ),
).map(lambda d: "NaN" if d.is_nan() else format(d, "f"))
numerics_38_6 = st.decimals(min_value=Decimal("-1e31"), max_value=Decimal("1e31"), places=6).map(
    lambda d: format(d, "f")
)
micros = st.integers(min_value=-210_000_000_000_000_000, max_value=9_000_000_000_000_000_000)


def ts_text(us: int, tz: bool) -> str:
    """A timestamp literal (far past: BC years; far future: up to year 294276), UTC."""
    base = dt.datetime(2000, 1, 1)
    try:
        value = base + dt.timedelta(microseconds=us)
        body = value.isoformat(sep=" ")
    except OverflowError:
        # beyond Python's datetime: let Postgres do the arithmetic
        return (
            f"{'timestamptz' if tz else 'timestamp'} '2000-01-01 00:00:00+00' + interval '{us} microseconds'"
        )
    return body + ("+00" if tz else "")


def row_sql(r: dict[str, Any]) -> str:
    parts = [str(r["id"])]
    for name, sql_type in COLUMNS.items():
        v = r[name]
        if name in ("ts", "tz") and v is not None and v.startswith("timestamp"):
            parts.append(f"({v})")
        else:
            parts.append(lit(v, sql_type))
    return "(" + ", ".join(parts) + ")"


def vec(width: int) -> st.SearchStrategy[str | None]:
    item = st.one_of(st.none(), f4 if width == 4 else floats)
    return st.one_of(
        st.none(),
        st.lists(item, max_size=5).map(
            lambda xs: "{" + ",".join("NULL" if x is None else float_text(x) for x in xs) + "}"
        ),
    )


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


rows = st.lists(
    st.fixed_dictionaries(
        {
            "i2": opt(st.integers(-(2**15), 2**15 - 1).map(str)),
            "i4": opt(st.integers(-(2**31), 2**31 - 1).map(str)),
            "f4": opt(f4.map(float_text)),
            "f8": opt(floats.map(float_text)),
            "b": opt(st.booleans().map(str)),
            "t": opt(text),
            "tp": opt(text),
            "v": opt(text),
            "n": opt(numerics),
            "n2": opt(numerics_38_6),
            "ts": opt(micros.map(lambda us: ts_text(us, False))),
            "tz": opt(micros.map(lambda us: ts_text(us, True))),
            "d": opt(st.dates().map(lambda d: d.isoformat())),
            "u": opt(st.uuids().map(str)),
            "j": opt(st.dictionaries(text, st.integers() | text, max_size=3).map(json.dumps)),
            "jb": opt(
                st.dictionaries(
                    text,
                    st.floats(min_value=-1e12, max_value=1e12).map(lambda x: round(x, 6)) | text,
                    max_size=3,
                ).map(json.dumps)
            ),
            "by": opt(st.binary(max_size=16).map(lambda b: "\\x" + b.hex())),
            "vec": vec(4),
            "vec8": vec(8),
        }
    ),
    min_size=1,
    max_size=25,
)


def comparable(table: pa.Table) -> list[list[Any]]:
    """Column values with floats as hex (NaN and -0.0 distinct) and extension types as storage."""

    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else v.hex()
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    out = []
    for column in table.columns:
        array = column.combine_chunks()
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        # the type, then the values (temporals as integers: far years are beyond Python's datetime)
        out.append([str(array.type)])
        if pa.types.is_decimal(array.type):
            # numeric(p, s): the Rust reader's Decimal128, ADBC's numeric_out text (same digits)
            out[-1] = ["decimal as text"]
            array = array.cast(pa.string())
        elif pa.types.is_string(array.type) and table.schema.field(len(out) - 1).name == "n2":
            out[-1] = ["decimal as text"]
        if pa.types.is_timestamp(array.type) or pa.types.is_date64(array.type):
            array = array.cast(pa.int64())
        elif pa.types.is_date32(array.type):
            array = array.cast(pa.int32())
        out[-1] += [norm(v) for v in array.to_pylist()]
    return out


def read(source: sl.Source, parallelism: int = 1) -> pa.Table:
    columns = ["id", *COLUMNS]
    streams = source.open(ScanRequest(columns=columns, key=["id"], parallelism=parallelism))
    tables = [pa.RecordBatchReader.from_stream(s).read_all() for s in streams]
    return pa.concat_tables(tables).sort_by("id") if len(tables) > 1 else tables[0].sort_by("id")


@pytest.fixture(scope="module")
def db(pg_dsn: str) -> Any:
    pg = Pg(pg_dsn)
    yield pg
    pg.close()


@settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example is a table
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=rows)
def test_rust_reader_equals_adbc_reader_on_every_type(db: Pg, data: list[dict[str, Any]]) -> None:
    table = db.table("types") if not hasattr(db, "types_table") else db.types_table  # type: ignore[attr-defined]
    if not hasattr(db, "types_table"):
        cols = ", ".join(f"{name} {sql_type}" for name, sql_type in COLUMNS.items())
        db.execute(f"CREATE TABLE {table} (id int8 PRIMARY KEY, {cols})")
        db.types_table = table  # type: ignore[attr-defined]
    db.execute(f"TRUNCATE {table}")
    for i, r in enumerate(data):
        db.execute(f"INSERT INTO {table} VALUES {row_sql({'id': i, **r})}")
    rust = sl.postgres(db.dsn, table, reader="rust")
    adbc = sl.postgres(db.dsn, table, reader="adbc")
    try:
        assert comparable(read(rust)) == comparable(read(adbc))
        # "n" (numeric without a scale) needs a declared scale to be compared; its text is checked above.
        result = sl.reconcile(rust, adbc, key="id", columns=[c for c in COLUMNS if c != "n"])
        assert result.clean, result.diffs
        assert result.counts["source_rows"] == result.counts["target_rows"] == len(data)
    finally:
        rust.close()
        adbc.close()


def test_reconcile_through_the_rust_reader_finds_the_drift(db: Pg) -> None:
    a, b = db.table("drift_a"), db.table("drift_b")
    for t in (a, b):
        db.execute(
            f"CREATE TABLE {t} AS SELECT i::int8 AS id, (i * 1.25)::numeric(12, 2) AS price, "
            "md5(i::text) AS name FROM generate_series(1, 20000) i"
        )
    db.execute(f"UPDATE {b} SET price = price + 1 WHERE id IN (7, 15000)")
    db.execute(f"DELETE FROM {b} WHERE id = 42")
    result = sl.reconcile(
        sl.postgres(db.dsn, a, reader="rust"), sl.postgres(db.dsn, b, reader="rust"), key="id"
    )
    assert result.counts["source_rows"] == 20000 and result.counts["target_rows"] == 19999
    assert sorted(result.diffs["id"].to_list()) == [7, 42, 15000]


def test_every_stream_reads_the_pinned_snapshot_under_concurrent_writes(db: Pg) -> None:
    table = db.table("snap")
    db.execute(f"CREATE TABLE {table} AS SELECT i::int8 AS id, 1::int8 AS v FROM generate_series(1, 30000) i")
    db.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    db.execute(f"ANALYZE {table}")
    source = sl.postgres(db.dsn, table, reader="rust")
    try:
        source.pin()
        stop = threading.Event()

        def write() -> None:
            writer = Pg(db.dsn)
            try:
                n = 0
                while not stop.is_set():
                    n += 1
                    writer.execute(f"UPDATE {table} SET v = v + 1 WHERE id % 100 = {n % 100}")
                    writer.execute(f"INSERT INTO {table} VALUES ({30000 + n}, 5)")
            finally:
                writer.close()

        thread = threading.Thread(target=write)
        thread.start()
        try:
            time.sleep(0.3)
            for _ in range(3):
                streams = source.open(ScanRequest(columns=["id", "v"], key=["id"], parallelism=3))
                assert len(streams) > 1
                got = pa.concat_tables(pa.RecordBatchReader.from_stream(s).read_all() for s in streams)
                assert got.num_rows == 30000
                assert pa.compute.sum(got.column("v")).as_py() == 30000
        finally:
            stop.set()
            thread.join()
        assert int(db.scalar(f"SELECT count(*) FROM {table}")) > 30000
    finally:
        source.close()


def test_a_reconcile_on_the_rust_reader_loads_neither_adbc_nor_polars(db: Pg) -> None:
    """Catalog, snapshot and rows all go through the Rust client, and the differences become a
    polars frame only when asked for: the ADBC driver (which imports polars) cost 0.4 CPU-seconds
    to import and 60 ms a connection, polars 0.25 s (issue 13's CPU goal)."""
    a, b = db.table("lean_a"), db.table("lean_b")
    for t in (a, b):
        db.execute(
            f"CREATE TABLE {t} AS SELECT i::int8 AS id, md5(i::text) AS name FROM generate_series(1, 5000) i"
        )
    db.execute(f"UPDATE {b} SET name = 'x' WHERE id = 77")
    script = (
        "import sys, seamline as sl\n"
        f"r = sl.reconcile(sl.postgres({db.dsn!r}, {a!r}), sl.postgres({db.dsn!r}, {b!r}), key='id')\n"
        "loaded = sorted(m for m in ('adbc_driver_postgresql', 'polars') if m in sys.modules)\n"
        "ids = r.diffs_arrow.column('id').to_pylist()\n"
        "print(r.counts['changed'], ids, loaded)\n"
        "print(r.diffs['id'].to_list(), 'polars' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SEAMLINE_PG_READER"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.splitlines() == ["1 [77] []", "[77] True"]


def test_a_refused_connection_is_one_line(db: Pg) -> None:
    table = db.table("refused")
    db.execute(f"CREATE TABLE {table} (id int8)")
    source = sl.postgres(db.dsn, table, reader="rust")
    try:
        source.pin()  # catalog and snapshot on the Rust client, then the COPY connection is refused:
        source.store.dsn = source.store.dsn.replace(f":{source.store.port}/", ":1/")
        with pytest.raises(sl.StoreUnavailableError, match=r"^postgres at [^ ]+: .*[Cc]onnection refused"):
            source.open(ScanRequest(columns=["id"], key=["id"], parallelism=1))
    finally:
        source.close()


def test_an_unsupported_column_type_names_the_column_and_the_other_reader(db: Pg) -> None:
    table = db.table("inet")
    db.execute(f"CREATE TABLE {table} (id int8, addr inet)")
    source = sl.postgres(db.dsn, table, reader="rust")
    try:
        with pytest.raises(sl.SchemaError, match=r'column "addr" has type inet .*reader="adbc"'):
            source.open(ScanRequest(columns=["id", "addr"], key=["id"], parallelism=1))
    finally:
        source.close()


def test_an_unknown_reader_is_bad_input(pg_dsn: str) -> None:
    with pytest.raises(sl.InvalidInputError, match="postgres reader 'odbc'"):
        sl.postgres(pg_dsn, "t", reader="odbc")


def test_the_default_reader_is_rust_and_options_it_cannot_honour_name_adbc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEAMLINE_PG_READER", raising=False)
    dsn = "postgresql://u:secret@h:5432/db?sslmode=verify-full"
    assert sl.postgres(dsn, "t").reader == "rust"  # type: ignore[attr-defined]
    monkeypatch.setenv("SEAMLINE_PG_READER", "adbc")
    assert sl.postgres(dsn, "t").reader == "adbc"  # type: ignore[attr-defined]
    with pytest.raises(sl.InvalidInputError, match=r"option gssencmode=require .*reader='adbc'") as info:
        sl.postgres(dsn + "&gssencmode=require", "t", reader="rust")
    assert "secret" not in str(info.value)
    assert sl.postgres(dsn + "&gssencmode=require", "t", reader="adbc").reader == "adbc"  # type: ignore[attr-defined]


def test_a_long_copy_arrives_whole_and_an_error_mid_copy_is_the_servers(pg_dsn: str) -> None:
    """Without TLS the COPY is read straight from the socket (seamline-pg's raw.rs): a stream of
    many socket reads and batches arrives whole, and the server's error mid-stream is its one line."""
    from seamline._core import pg_copy_stream
    from seamline.stores.postgres.store import PostgresStore

    store = PostgresStore(pg_dsn)

    def read(sql: str) -> pa.Table:
        keywords = store.keywords()
        stream = pg_copy_stream(
            keywords, sql, snapshot=None, settings=[], address=store.address, what="t", batch_rows=1000
        )
        return pa.RecordBatchReader.from_stream(stream).read_all()

    table = read("SELECT i, repeat('é𝄞', i % 50) AS t FROM generate_series(1, 300000) i")
    assert table.num_rows == 300_000
    assert table["i"].to_pylist() == list(range(1, 300_001))
    assert table["t"][299_998].as_py() == "é𝄞" * (299_999 % 50)
    with pytest.raises(Exception, match="InvalidInputError: t: division by zero") as info:
        read("SELECT i, 1 / (i - 200000) AS x FROM generate_series(1, 300000) i")
    assert "\n" not in str(info.value)
