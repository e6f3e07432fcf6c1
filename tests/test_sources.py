"""Store adapters against the real stores: Postgres and OpenSearch from scripts/services.sh, Iceberg
(SQL catalog on SQLite + local warehouse) and LanceDB embedded in a temporary directory.

Streams are drained through the Arrow C stream protocol, concurrently, like the Rust core does.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from seamline.exceptions import InvalidInputError, NotFoundError, StoreUnavailableError
from seamline.stores.protocols import KeyRange, ScanRequest, Source

# Keys whose byte order differs from any linguistic collation: '-' (0x2d) < '_' (0x5f),
# upper case before lower case, non-ASCII last.
TEXT_KEYS = [
    "a",
    "B",
    "b",
    "a-b",
    "a_b",
    "ab",
    "A-1",
    "A_1",
    "Z",
    "z",
    "c-1",
    "c_2",
    "é",
    "ÉA",
    "0",
    "_x",
    "-x",
]


def _byte_sorted(keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


def _in_range(key: str, lo: str | None, hi: str | None) -> bool:
    b = key.encode()
    return (lo is None or b >= lo.encode()) and (hi is None or b < hi.encode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def drain(streams: list[Any]) -> list[pa.Table]:
    """Read every stream through __arrow_c_stream__, all at once in threads."""

    def read(stream: Any) -> pa.Table:
        return pa.RecordBatchReader.from_stream(stream).read_all()

    with ThreadPoolExecutor(max_workers=max(1, len(streams))) as pool:
        return list(pool.map(read, streams))


def read_column(source: Source, request: ScanRequest, column: str) -> list[Any]:
    values: list[Any] = []
    for table in drain(source.open(request)):
        values.extend(table.column(column).to_pylist())
    return values


def assert_once(values: list[Any], expected: Sequence[Any]) -> None:
    counts = Counter(values)
    dupes = {k: c for k, c in counts.items() if c > 1}
    assert not dupes, f"read more than once: {dupes}"
    assert set(values) == set(expected)


# ======================================================================================= Postgres


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Any]:
    """An autocommit ADBC connection and a unique table-name prefix; drops its tables afterwards."""
    import adbc_driver_postgresql.dbapi as pgdbapi

    conn = pgdbapi.connect(pg_dsn, autocommit=True)
    prefix = f"sl_src_{uuid.uuid4().hex[:8]}"
    try:
        yield conn, prefix
    finally:
        cur = conn.cursor()
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE $1",
            (prefix + "%",),
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP TABLE IF EXISTS "public"."{name}"')
        cur.close()
        conn.close()


def _pg_exec(conn: Any, *statements: str) -> None:
    cur = conn.cursor()
    for sql in statements:
        cur.execute(sql)
    cur.close()


@pytest.mark.services
def test_postgres_schema_mapping(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(
        conn,
        f"""CREATE TABLE {prefix}_t (
            id text PRIMARY KEY, price numeric(12,2), ratio numeric, updated_at timestamptz,
            local_ts timestamp, name varchar(40), i2 smallint, i4 integer, i8 bigint, flag boolean,
            day date, u uuid, doc jsonb, j json, f4 real, f8 double precision, raw bytea)""",
        f"INSERT INTO {prefix}_t (id, price, ratio) VALUES ('k', 19.99, 0.3333333333333333333333)",
    )
    src = PostgresSource(pg_dsn, f"public.{prefix}_t")
    try:
        schema = src.schema()
        expect = {
            "id": pa.string(),
            "price": pa.decimal128(12, 2),
            "ratio": pa.string(),
            "updated_at": pa.timestamp("us", tz="UTC"),
            "local_ts": pa.timestamp("us"),
            "name": pa.string(),
            "i2": pa.int16(),
            "i4": pa.int32(),
            "i8": pa.int64(),
            "flag": pa.bool_(),
            "day": pa.date32(),
            "u": pa.binary(16),
            "doc": pa.string(),
            "j": pa.string(),
            "f4": pa.float32(),
            "f8": pa.float64(),
            "raw": pa.binary(),
        }
        assert {f.name: f.type for f in schema} == expect
        assert not schema.field("id").nullable
        assert schema.field("ratio").metadata == {b"seamline.logical": b"decimal"}
        assert schema.field("doc").metadata == {b"seamline.logical": b"json"}
        # numeric is never a float on the way: the stream carries the exact text.
        (table,) = drain(src.open(ScanRequest(columns=["id", "price", "ratio"], key=["id"], parallelism=1)))
        assert table.column("price").to_pylist() in (["19.99"], [Decimal("19.99")])
        assert str(table.column("ratio")[0].as_py()) == "0.3333333333333333333333"
    finally:
        src.close()


@pytest.mark.services
def test_postgres_parallel_streams_read_each_row_once(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(
        conn,
        f"CREATE TABLE {prefix}_n (id bigint PRIMARY KEY, v text)",
        f"INSERT INTO {prefix}_n SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
        f"ANALYZE {prefix}_n",
    )
    src = PostgresSource(pg_dsn, f"{prefix}_n")
    try:
        assert src.estimated_rows() == 20000
        streams = src.open(ScanRequest(columns=["id", "v"], key=["id"], parallelism=4))
        assert len(streams) > 1
        ids = [i for t in drain(streams) for i in t.column("id").to_pylist()]
        assert_once(ids, range(1, 20001))
        assert len(ids) == 20000
        # Ranges, split over readers, read exactly their rows.
        ranges = [KeyRange(None, (10,)), KeyRange((500,), (1000,)), KeyRange((19990,), None)]
        got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=ranges, parallelism=2), "id")
        assert sorted(got) == [*range(1, 10), *range(500, 1000), *range(19990, 20001)]
        assert read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=[]), "id") == []
    finally:
        src.close()


@pytest.mark.services
def test_postgres_text_ranges_follow_byte_order(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(conn, f"CREATE TABLE {prefix}_s (id text PRIMARY KEY, n int)")
    cur = conn.cursor()
    for i, key in enumerate(TEXT_KEYS):
        cur.execute(f"INSERT INTO {prefix}_s VALUES ($1, $2)", (key, i))
    # The point of COLLATE "C": the database's own order of these keys is not byte order.
    cur.execute(f"SELECT array_agg(id ORDER BY id) FROM {prefix}_s")
    db_order = cur.fetchone()[0]
    cur.close()
    assert db_order != _byte_sorted(TEXT_KEYS), "the test database must not sort text bytewise (C collation)"
    src = PostgresSource(pg_dsn, f"{prefix}_s")
    try:
        ordered = _byte_sorted(TEXT_KEYS)
        cases = [("A-1", "a_b"), ("B", "a"), ("a-b", "ab"), (None, "_x"), ("c-1", None), ("a", "é")]
        for lo, hi in cases:
            r = KeyRange((lo,) if lo is not None else None, (hi,) if hi is not None else None)
            got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=[r], parallelism=1), "id")
            assert sorted(got) == sorted(k for k in ordered if _in_range(k, lo, hi)), (lo, hi)
        # All keys, split by histogram bounds over parallel readers: each once.
        src2 = PostgresSource(pg_dsn, f"{prefix}_s")
        try:
            ids = read_column(src2, ScanRequest(columns=["id"], key=["id"], parallelism=3), "id")
            assert_once(ids, TEXT_KEYS)
            assert len(ids) == len(TEXT_KEYS)
        finally:
            src2.close()
        # A range union spread over readers.
        ranges = [KeyRange(None, ("A_1",)), KeyRange(("Z",), ("a_b",)), KeyRange(("c_2",), None)]
        got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=ranges, parallelism=2), "id")
        want = [k for k in ordered if any(_in_range(k, r.lo and r.lo[0], r.hi and r.hi[0]) for r in ranges)]
        assert sorted(got) == sorted(want)
    finally:
        src.close()


@pytest.mark.services
def test_postgres_composite_and_typed_keys(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(
        conn,
        f"CREATE TABLE {prefix}_c (tenant text, seq int, at timestamptz, u uuid, PRIMARY KEY (tenant, seq))",
        f"""INSERT INTO {prefix}_c SELECT t, s, timestamptz '2024-01-01 00:00:00+00' + s * interval '1 hour',
            md5(t || s)::uuid FROM unnest(array['a', 'B', 'a-b', 'a_b']) t, generate_series(1, 5) s""",
        f"ANALYZE {prefix}_c",
    )
    src = PostgresSource(pg_dsn, f"{prefix}_c")
    try:
        sample = src.sample_keys(["tenant", "seq"], 50)
        assert sample is not None and sample.column_names == ["tenant", "seq"]
        # Composite key, whole table over parallel readers (cut from a TABLESAMPLE): each row once.
        streams = src.open(ScanRequest(columns=["tenant", "seq"], key=["tenant", "seq"], parallelism=3))
        keys = [(r["tenant"], r["seq"]) for t in drain(streams) for r in t.to_pylist()]
        assert len(streams) > 1 and len(keys) == 20 and len(set(keys)) == 20
        rows = lambda rs: sorted(  # noqa: E731
            (t["tenant"], t["seq"])
            for tbl in drain(
                src.open(ScanRequest(columns=["tenant", "seq"], key=["tenant", "seq"], ranges=rs))
            )
            for t in tbl.to_pylist()
        )
        got = rows([KeyRange(("B", 3), ("a-b", 2))])
        want = [("B", 3), ("B", 4), ("B", 5), *[("a", s) for s in range(1, 6)], ("a-b", 1)]
        assert got == want
        # A timestamptz key: bounds as the core gives them (aware datetimes) select by instant.
        lo = datetime(2024, 1, 1, 2, tzinfo=UTC)
        hi = datetime(2024, 1, 1, 4, tzinfo=UTC)
        table = drain(src.open(ScanRequest(columns=["at"], key=["at"], ranges=[KeyRange((lo,), (hi,))])))[0]
        assert sorted(set(table.column("at").to_pylist())) == [lo, lo + timedelta(hours=1)]
        # A uuid key given as 16 raw bytes.
        (first,) = drain(src.open(ScanRequest(columns=["u"], key=["u"], parallelism=1)))
        raw = sorted(first.column("u").to_pylist())
        raw_bytes = [u.bytes if isinstance(u, uuid.UUID) else bytes(u) for u in raw]
        (part,) = drain(
            src.open(
                ScanRequest(columns=["u"], key=["u"], ranges=[KeyRange((raw_bytes[3],), (raw_bytes[7],))])
            )
        )
        assert part.num_rows == 4
    finally:
        src.close()


@pytest.mark.services
def test_postgres_pin_hides_later_commits(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(
        conn,
        f"CREATE TABLE {prefix}_p (id int PRIMARY KEY)",
        f"INSERT INTO {prefix}_p SELECT generate_series(1, 100)",
    )
    src = PostgresSource(pg_dsn, f"{prefix}_p")
    try:
        as_of = src.pin()
        assert as_of.store == "postgres"
        assert (
            as_of.detail["snapshot_id"] and as_of.detail["snapshot_time"] and as_of.detail["server_version"]
        )
        _pg_exec(conn, f"INSERT INTO {prefix}_p VALUES (1000)", f"DELETE FROM {prefix}_p WHERE id = 1")
        request = ScanRequest(columns=["id"], key=["id"], parallelism=3)
        for _ in range(2):  # every later open reads the same snapshot
            ids = read_column(src, request, "id")
            assert sorted(ids) == list(range(1, 101))
        assert src.pin() == as_of
    finally:
        src.close()
    fresh = PostgresSource(pg_dsn, f"{prefix}_p")
    try:
        assert sorted(read_column(fresh, ScanRequest(columns=["id"], key=["id"]), "id")) == [
            *range(2, 101),
            1000,
        ]
    finally:
        fresh.close()
        fresh.close()  # idempotent


@pytest.mark.services
def test_postgres_query_source_and_samples(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    conn, prefix = pg
    _pg_exec(
        conn,
        f"CREATE TABLE {prefix}_q (id text PRIMARY KEY, amount numeric(10,3), note text)",
        f"INSERT INTO {prefix}_q SELECT 'k' || lpad(g::text, 5, '0'), g / 7.0, 'x'"
        " FROM generate_series(1, 3000) g",
    )
    q = PostgresSource(
        pg_dsn, query=f"SELECT id, amount, amount * 2 AS twice FROM {prefix}_q WHERE id > 'k00010';"
    )
    table_src = PostgresSource(pg_dsn, f"{prefix}_q", where="note = 'x'")
    try:
        schema = q.schema()
        assert schema.field("amount").type == pa.decimal128(10, 3)
        assert schema.field("twice").type == pa.string()
        assert schema.field("twice").metadata == {b"seamline.logical": b"decimal"}
        assert q.estimated_rows() is None
        assert q.sample_keys(["id"], 10) is None
        r = KeyRange(("k00100",), ("k00200",))
        got = read_column(q, ScanRequest(columns=["id"], key=["id"], ranges=[r]), "id")
        assert sorted(got) == [f"k{i:05d}" for i in range(100, 200)]
        assert "SELECT id" in q.describe()
        sample = table_src.sample_keys(["id"], 20)
        assert sample is not None and sample.column_names == ["id"] and 2 <= sample.num_rows <= 20
        assert all(v.startswith("k") for v in sample.column("id").to_pylist())
        ids = read_column(table_src, ScanRequest(columns=["id"], key=["id"], parallelism=4), "id")
        assert_once(ids, [f"k{i:05d}" for i in range(1, 3001)])
    finally:
        q.close()
        table_src.close()


@pytest.mark.services
def test_postgres_errors(pg: Any, pg_dsn: str) -> None:
    from seamline.stores.postgres import PostgresSource

    port = _free_port()
    down = PostgresSource(f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/db", "public.t")
    assert "s3cret" not in down.describe()
    with pytest.raises(StoreUnavailableError) as err:
        down.pin()
    message = str(err.value)
    assert message.startswith(f"postgres at 127.0.0.1:{port}: ")
    assert "\n" not in message and "s3cret" not in message
    _, prefix = pg
    missing = PostgresSource(pg_dsn, f"public.{prefix}_missing")
    with pytest.raises(NotFoundError, match=f"postgres table public.{prefix}_missing does not exist"):
        missing.schema()
    missing.close()
    with pytest.raises(InvalidInputError, match="exactly one of table= or query="):  # issue 10 item 15
        PostgresSource(pg_dsn, "t", query="select 1")


# ======================================================================================== Iceberg


@pytest.fixture
def iceberg_catalog(tmp_path: Path) -> dict[str, str]:
    from pyiceberg.catalog import load_catalog

    props = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    load_catalog("seamline", **props).create_namespace("shop")
    return {"name": "seamline", **props}


ICEBERG_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("price", pa.decimal128(12, 2)),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _iceberg_rows(keys: Sequence[str]) -> pa.Table:
    return pa.table(
        {
            "id": list(keys),
            "price": [Decimal(i) / 100 for i in range(len(keys))],
            "updated_at": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(len(keys))],
        },
        schema=ICEBERG_SCHEMA,
    )


def test_iceberg_schema_streams_and_ranges(iceberg_catalog: dict[str, str]) -> None:
    from pyiceberg.catalog import load_catalog

    from seamline.stores.iceberg import IcebergSource

    table = load_catalog(
        "seamline", **{k: v for k, v in iceberg_catalog.items() if k != "name"}
    ).create_table("shop.items", schema=ICEBERG_SCHEMA)
    keys = [f"{k}{i}" for i in range(40) for k in TEXT_KEYS]
    for chunk in range(5):  # five appends -> five data files to spread over streams
        table.append(_iceberg_rows(keys[chunk::5]))
    src = IcebergSource("shop.items", catalog=iceberg_catalog)
    try:
        schema = src.schema()
        assert schema.field("price").type == pa.decimal128(12, 2)
        assert schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
        assert pa.types.is_string(schema.field("id").type) or pa.types.is_large_string(
            schema.field("id").type
        )
        assert src.estimated_rows() == len(keys)
        streams = src.open(ScanRequest(columns=["id", "price"], key=["id"], parallelism=3))
        assert len(streams) == 3
        # the batches come as the files hold them (pyarrow wrote 32-bit string offsets), not cast
        # (copied) to the large layout pyiceberg declares
        assert [pa.RecordBatchReader.from_stream(s).schema.field("id").type for s in streams] == [
            pa.string()
        ] * 3
        streams = src.open(ScanRequest(columns=["id", "price"], key=["id"], parallelism=3))
        ids = [v for t in drain(streams) for v in t.column("id").to_pylist()]
        assert_once(ids, keys)
        assert len(ids) == len(keys)
        ranges = [KeyRange(("A-1",), ("a_b",)), KeyRange(("c-1",), ("c_25",))]
        got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=ranges, parallelism=2), "id")
        want = [k for k in keys if any(_in_range(k, r.lo[0], r.hi[0]) for r in ranges if r.lo and r.hi)]
        assert sorted(got) == sorted(want)
        sample = src.sample_keys(["id"], 8)
        assert sample is not None and 2 <= sample.num_rows <= 8
        assert set(sample.column("id").to_pylist()) <= set(keys)
    finally:
        src.close()


def test_iceberg_snapshot_pinning(iceberg_catalog: dict[str, str]) -> None:
    from pyiceberg.catalog import load_catalog

    from seamline.stores.iceberg import IcebergSource

    table = load_catalog(
        "seamline", **{k: v for k, v in iceberg_catalog.items() if k != "name"}
    ).create_table("shop.pins", schema=ICEBERG_SCHEMA)
    table.append(_iceberg_rows(["a", "b"]))
    first = table.current_snapshot()
    assert first is not None
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    request = ScanRequest(columns=["id"], key=["id"])

    pinned = IcebergSource("shop.pins", catalog=iceberg_catalog)
    as_of = pinned.pin()
    assert as_of.detail["snapshot_id"] == first.snapshot_id
    assert as_of.detail["snapshot_time"]
    table.append(_iceberg_rows(["c"]))
    try:
        assert sorted(read_column(pinned, request, "id")) == ["a", "b"]  # pinned before the append
    finally:
        pinned.close()
    for src in (
        IcebergSource("shop.pins", catalog=iceberg_catalog, snapshot_id=first.snapshot_id),
        IcebergSource("shop.pins", catalog=iceberg_catalog, as_of=between),
        IcebergSource("shop.pins", catalog=iceberg_catalog, as_of=between.isoformat()),
    ):
        assert sorted(read_column(src, request, "id")) == ["a", "b"]
        src.close()
    latest = IcebergSource("shop.pins", catalog=iceberg_catalog)
    assert sorted(read_column(latest, request, "id")) == ["a", "b", "c"]
    latest.close()


def test_iceberg_errors(iceberg_catalog: dict[str, str]) -> None:
    from seamline.stores.iceberg import IcebergSource

    with pytest.raises(NotFoundError, match="shop.nope"):
        IcebergSource("shop.nope", catalog=iceberg_catalog).schema()
    with pytest.raises(NotFoundError, match="other.nope"):
        IcebergSource("other.nope", catalog=iceberg_catalog).pin()


# ======================================================================================== LanceDB


def test_lancedb_schema_ranges_and_version_pin(tmp_path: Path) -> None:
    import lancedb

    from seamline.stores.lancedb import LanceDBSource

    keys = [f"{k}{i}" for i in range(20) for k in TEXT_KEYS]
    data = pa.table(
        {
            "id": keys,
            "price": pa.array([Decimal(i) / 100 for i in range(len(keys))], pa.decimal128(12, 2)),
            "vec": pa.array([[float(i), 1.0] for i in range(len(keys))], pa.list_(pa.float32(), 2)),
        }
    )
    db = lancedb.connect(str(tmp_path / "lance"))
    tbl = db.create_table("docs", data)
    src = LanceDBSource(str(tmp_path / "lance"), "docs")
    try:
        schema = src.schema()
        assert schema.field("id").type == pa.string()
        assert schema.field("price").type == pa.decimal128(12, 2)
        as_of = src.pin()
        assert as_of.detail["version"] == tbl.version
        tbl.add(
            pa.table(
                {
                    "id": ["late"],
                    "price": pa.array([Decimal(1)], pa.decimal128(12, 2)),
                    "vec": pa.array([[0.0, 0.0]], pa.list_(pa.float32(), 2)),
                }
            )
        )
        ids = read_column(src, ScanRequest(columns=["id", "price"], key=["id"], parallelism=2), "id")
        assert_once(ids, keys)  # "late" came after the pin
        assert len(ids) == len(keys)
        ranges = [KeyRange(None, ("A_1",)), KeyRange(("a-b",), ("ab",)), KeyRange(("é",), None)]
        got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=ranges, parallelism=3), "id")
        want = [k for k in keys if any(_in_range(k, r.lo and r.lo[0], r.hi and r.hi[0]) for r in ranges)]
        assert sorted(got) == sorted(want)
    finally:
        src.close()
    fresh = LanceDBSource(str(tmp_path / "lance"), "docs", where="id <> 'a0'")
    try:
        ids = read_column(fresh, ScanRequest(columns=["id"], key=["id"]), "id")
        assert "late" in ids and "a0" not in ids
    finally:
        fresh.close()
        fresh.close()
    with pytest.raises(NotFoundError, match="nope"):
        LanceDBSource(str(tmp_path / "lance"), "nope").schema()


# ===================================================================================== OpenSearch


@pytest.fixture
def os_client(opensearch_url: str) -> Iterator[tuple[Any, str]]:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[opensearch_url], timeout=120)
    prefix = f"sl-src-{uuid.uuid4().hex[:8]}"
    try:
        yield client, prefix
    finally:
        client.indices.delete(index=f"{prefix}*", ignore=[404])
        client.close()


def _bulk(client: Any, index: str, docs: list[dict[str, Any]], ids: list[str] | None = None) -> None:
    from opensearchpy import helpers

    actions = (
        {"_index": index, "_id": ids[i] if ids else str(i), "_source": doc} for i, doc in enumerate(docs)
    )
    helpers.bulk(client, actions, chunk_size=5000)
    client.indices.refresh(index=index)


@pytest.mark.services
def test_opensearch_reads_past_10000_with_pit(os_client: tuple[Any, str], opensearch_url: str) -> None:
    from seamline.stores.opensearch import OpenSearchSource

    client, prefix = os_client
    index = f"{prefix}-big"
    client.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 3, "number_of_replicas": 0},
            "mappings": {"properties": {"sku": {"type": "keyword"}, "qty": {"type": "integer"}}},
        },
    )
    n = 12_000
    _bulk(client, index, [{"sku": f"s{i:05d}", "qty": i} for i in range(n)])
    src = OpenSearchSource(opensearch_url, index)
    try:
        assert src.estimated_rows() == n
        as_of = src.pin()
        assert as_of.store == "opensearch" and as_of.detail["index"] == index
        # A document added after the pin is not seen.
        _bulk(client, index, [{"sku": "late", "qty": -1}], ids=["late"])
        for parallelism in (1, 2, 4):
            streams = src.open(
                ScanRequest(columns=["_id", "sku", "qty"], key=["_id"], parallelism=parallelism)
            )
            tables = drain(streams)
            ids = [v for t in tables for v in t.column("_id").to_pylist()]
            assert len(ids) == n
            assert_once(ids, [str(i) for i in range(n)])
            assert tables[0].schema.field("qty").type == pa.int32()
    finally:
        src.close()
        src.close()


@pytest.mark.services
def test_opensearch_types_nulls_dates_and_ranges(os_client: tuple[Any, str], opensearch_url: str) -> None:
    from seamline.stores.opensearch import OpenSearchSource

    client, prefix = os_client
    index = f"{prefix}-types"
    client.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 2, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "sku": {"type": "keyword"},
                    "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                    "price": {"type": "scaled_float", "scaling_factor": 100},
                    "stock": {"type": "long"},
                    "active": {"type": "boolean"},
                    "updated": {"type": "date"},
                    "attrs": {"properties": {"color": {"type": "keyword"}}},
                }
            },
        },
    )
    skus = _byte_sorted(TEXT_KEYS)
    docs: list[dict[str, Any]] = [{"sku": k, "title": f"t {k}", "stock": i} for i, k in enumerate(skus)]
    docs[0].update(price=19.99, active=True, updated="2024-01-02T03:04:05.123456Z", attrs={"color": "red"})
    docs[1].update(updated=1704164645123)  # epoch millis
    docs[2].update(updated="2024-01-02")
    docs[3].update(updated="2024-01-02T03:04:05.999999999+01:00")
    _bulk(client, index, docs, ids=[f"id-{k}" for k in skus])
    src = OpenSearchSource(opensearch_url, index, key_field="sku")
    try:
        schema = src.schema()
        assert schema.field("_id").type == pa.string()
        assert schema.field("sku").type == pa.string()
        assert schema.field("stock").type == pa.int64()
        assert schema.field("price").type == pa.float64()
        assert schema.field("active").type == pa.bool_()
        assert schema.field("updated").type == pa.timestamp("ms", tz="UTC")
        assert schema.field("attrs").type == pa.string()
        cols = ["sku", "price", "active", "updated", "attrs", "title.raw"]
        rows = {
            r["sku"]: r
            for t in drain(src.open(ScanRequest(columns=cols, key=["sku"], parallelism=2)))
            for r in t.to_pylist()
        }
        assert set(rows) == set(skus)
        first = rows[skus[0]]
        assert first["price"] == 19.99 and first["active"] is True and first["attrs"] == '{"color":"red"}'
        assert first["title.raw"] == f"t {skus[0]}"
        utc = UTC
        assert first["updated"] == datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=utc)
        assert rows[skus[1]]["updated"] == datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=utc)
        assert rows[skus[2]]["updated"] == datetime(2024, 1, 2, tzinfo=utc)
        assert rows[skus[3]]["updated"] == datetime(2024, 1, 2, 2, 4, 5, 999000, tzinfo=utc)
        last = rows[skus[-1]]  # fields missing from the document are null
        assert last["price"] is None and last["active"] is None and last["updated"] is None
        assert last["attrs"] is None
        # Range pushdown on the keyword key follows byte order.
        ranges = [KeyRange(("A-1",), ("a_b",)), KeyRange(("c_2",), None)]
        got = read_column(src, ScanRequest(columns=["sku"], key=["sku"], ranges=ranges, parallelism=2), "sku")
        want = [k for k in skus if any(_in_range(k, r.lo and r.lo[0], r.hi and r.hi[0]) for r in ranges)]
        assert sorted(got) == sorted(want)
    finally:
        src.close()


@pytest.mark.services
def test_opensearch_errors(os_client: tuple[Any, str], opensearch_url: str) -> None:
    from seamline.stores.opensearch import OpenSearchSource

    port = _free_port()
    down = OpenSearchSource(f"http://admin:s3cret@127.0.0.1:{port}", "x", max_retries=0)
    assert "s3cret" not in down.describe()
    with pytest.raises(StoreUnavailableError) as err:
        down.pin()
    message = str(err.value)
    assert message.startswith(f"opensearch at http://127.0.0.1:{port}: ")
    assert "\n" not in message and "s3cret" not in message
    _, prefix = os_client
    with pytest.raises(NotFoundError, match=f"{prefix}-missing"):
        OpenSearchSource(opensearch_url, f"{prefix}-missing").schema()
    with pytest.raises(NotFoundError, match=f"{prefix}-missing"):
        OpenSearchSource(opensearch_url, f"{prefix}-missing").pin()


# ==================================================================== thousands of ranges (regressions)

# Scattered drift over a big table marks thousands of ranges; every store must take them (as a
# covering superset where its query language cannot hold them all) and return every row in them.
MANY = [KeyRange((f"k{i:05d}",), (f"k{i:05d}~",)) for i in range(0, 2400, 2)]  # 1200 > 1024 clauses


def _many_keys() -> list[str]:
    return [f"k{i:05d}" for i in range(3000)]


def test_iceberg_takes_thousands_of_ranges(iceberg_catalog: dict[str, str]) -> None:
    from pyiceberg.catalog import load_catalog

    from seamline.stores.iceberg import IcebergSource

    props = {k: v for k, v in iceberg_catalog.items() if k != "name"}
    load_catalog("seamline", **props).create_table("shop.many", schema=ICEBERG_SCHEMA).append(
        _iceberg_rows(_many_keys())
    )
    src = IcebergSource("shop.many", catalog=iceberg_catalog)
    try:
        got = read_column(src, ScanRequest(columns=["id"], key=["id"], ranges=MANY, parallelism=2), "id")
        assert set(got) >= {r.lo[0] for r in MANY if r.lo}  # a superset is fine: the core filters
    finally:
        src.close()


@pytest.mark.services
def test_opensearch_takes_thousands_of_ranges(os_client: tuple[Any, str], opensearch_url: str) -> None:
    from seamline.stores.opensearch import OpenSearchSource

    client, prefix = os_client
    index = f"{prefix}-many"
    client.indices.create(index=index, body={"mappings": {"properties": {"code": {"type": "keyword"}}}})
    _bulk(client, index, [{"code": k} for k in _many_keys()])
    src = OpenSearchSource(opensearch_url, index)
    try:
        assert src.can_push_down(["code"]) and not src.can_push_down(["_id"])
        got = read_column(
            src, ScanRequest(columns=["code"], key=["code"], ranges=MANY, parallelism=2), "code"
        )
        assert set(got) >= {r.lo[0] for r in MANY if r.lo}
        assert len(got) <= 2400  # the ranges were pushed down, not ignored
    finally:
        src.close()
