"""Errors from store adapters, against the real servers: every one a one-line `SeamlineError`.

- a missing optional driver names the extra to install (issue 10 item 13);
- a Postgres connection killed mid-scan is `postgres at HOST:PORT: <the server's reason>`, whatever
  surfaces it while streaming (issue 10 item 14);
- no bare ValueError/TypeError/RuntimeError from an adapter; a missing column is a SchemaError on
  every path (issue 10 item 15).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
from repair_helpers import Pg

import seamline as sl
from seamline.stores import registry
from seamline.stores._common import dsn_parts, dsn_secrets, redact_url
from seamline.stores.protocols import ScanRequest


@pytest.mark.parametrize(
    ("store", "module", "call"),
    [
        ("postgres", "adbc_driver_manager", "sl.postgres('postgresql://u:p@h/db', 't')"),
        ("iceberg", "pyiceberg", "sl.iceberg('a.b', catalog={})"),
        ("opensearch", "opensearchpy", "sl.opensearch('http://h:9200', 'i')"),
        ("lancedb", "lancedb", "sl.lancedb('/tmp/x', 't')"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(store: str, module: str, call: str) -> None:
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "import seamline as sl\n"
        f"try:\n    {call}\n"
        "except sl.InvalidInputError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr, out.stderr
    line = out.stdout.strip()
    assert "\n" not in line and f"pip install 'seamline[{store}]'" in line and module in line, line
    assert "seamline[stores]" in line


def test_the_registry_knows_every_store() -> None:
    assert registry.names(contract_only=True) == ["postgres", "opensearch", "iceberg", "lancedb", "kafka"]
    with pytest.raises(sl.InvalidInputError, match="'nosuch' is not a store type"):
        registry.adapter("nosuch")


def test_dsn_secrets_and_redaction() -> None:
    assert dsn_parts("host=h port=5433 dbname=shop password='a b\\'c' user=u") == {
        "host": "h",
        "port": "5433",
        "dbname": "shop",
        "password": "a b'c",
        "user": "u",
    }
    assert dsn_secrets("postgresql://u:s3cret@h:5432/db?sslmode=require") == ["s3cret"]
    assert dsn_secrets("postgresql://u@h/db?password=qp") == ["qp"]
    assert redact_url("http://admin:pw@h:9200/x") == "http://h:9200/x"
    assert redact_url("s3://bucket/path") == "s3://bucket/path"


@pytest.mark.services
def test_a_missing_column_is_a_schema_error(pg_dsn: str) -> None:
    db = Pg(pg_dsn)
    try:
        table = db.products(10)
        source = registry.open_store("postgres", pg_dsn, table)
        try:
            with pytest.raises(sl.SchemaError, match="no column 'nope'"):
                source.open(ScanRequest(columns=["id", "nope"], key=["id"]))
            with pytest.raises(sl.SchemaError, match="no key column 'nope'"):
                source.open(ScanRequest(columns=["id"], key=["nope"]))
        finally:
            source.close()
        query = sl.postgres(pg_dsn, query=f"SELECT nope FROM {table}")
        with pytest.raises(sl.SchemaError, match="nope"):
            query.schema()
    finally:
        db.close()


@pytest.mark.services
@pytest.mark.parametrize("reader", ["rust", "adbc"])
def test_a_connection_killed_mid_scan_is_one_line(pg_dsn: str, reader: str) -> None:
    db = Pg(pg_dsn)
    try:
        table = db.table("big")
        db.execute(
            f"CREATE TABLE {table} AS SELECT i AS id, repeat('x', 200) AS pad "
            "FROM generate_series(1, 2000000) i"
        )
        other = pa.table({"id": pa.array([1], pa.int64()), "pad": ["x"]})
        failure: list[BaseException] = []

        def run() -> None:
            try:
                sl.reconcile(sl.postgres(pg_dsn, table, reader=reader), sl.arrow(other), key="id")
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                failure.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        killed = 0
        deadline = time.monotonic() + 60
        while not killed and thread.is_alive() and time.monotonic() < deadline:
            killed = int(
                db.scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE pid <> pg_backend_pid() AND query LIKE '%COPY%{table}%'"
                )
            )
            time.sleep(0.05)
        thread.join(timeout=120)
        assert killed, "the scan ended before it could be killed"
        assert failure and isinstance(failure[0], sl.StoreUnavailableError), failure
        message = str(failure[0])
        host, port = dsn_parts(pg_dsn)["host"], dsn_parts(pg_dsn)["port"]
        assert message.startswith(f"postgres at {host}:{port}: "), message
        assert "\n" not in message and "Traceback" not in message and "Python exception" not in message, (
            message
        )
        # the server's reason, or what the client saw of it
        assert "terminating connection" in message or "closed the connection" in message, message
    finally:
        db.close()
