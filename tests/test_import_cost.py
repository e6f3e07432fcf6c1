"""What a process imports for the work at hand (issue 13's CPU goal counts the whole process, its
interpreter start and imports included): `import seamline` loads no Arrow, and a Postgres -> Postgres
reconcile loads no other store's client, no file-system layer of pyarrow (pyarrow.dataset: S3, GCS,
TLS), no ADBC, no polars and nothing of the contract, report or metrics layers; a Postgres ->
OpenSearch reconcile on the Rust reader loads no opensearch-py (nor requests, urllib3, aiohttp: ~0.5
CPU-s). Each check runs in a fresh interpreter and asserts on its `sys.modules`, so an eager import
anywhere on the path fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from repair_helpers import Pg, Search

# Modules a Postgres reconcile on the Rust reader must not load, and why they are heavy.
NOT_FOR_A_POSTGRES_RECONCILE = (
    "pyiceberg",  # Iceberg store
    "lancedb",  # LanceDB store
    "opensearchpy",  # OpenSearch store
    "confluent_kafka",  # Kafka store's librdkafka client
    "duckdb",  # sql= views
    "polars",  # made from the differences only when asked for (0.25 CPU-s)
    "pyarrow.dataset",  # Parquet sources only: file systems, S3, TLS
    "adbc_driver_manager",  # the ADBC reader and repair writes only
    "adbc_driver_postgresql",
    "pydantic",  # the contract layer
    "yaml",
    "prometheus_client",  # --metrics
    "jinja2",  # the HTML report
    "kubernetes",
    "seamline.stores.postgres.write",  # the repair writer: made when a plan is written
    "seamline.keyspace",  # the report's key-space picture
    "seamline.repair",
)
# The Python HTTP stack opensearch-py brings: only its reader ("python") and repair writes need it.
PYTHON_HTTP_STACK = ("opensearchpy", "requests", "urllib3", "aiohttp")


def _loaded(script: str, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded after `script` (printed last)."""
    probe = (
        script
        + f"\nimport sys, json\nprint(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SEAMLINE_PG_READER"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_seamline_loads_no_arrow_and_no_store() -> None:
    watched = ("pyarrow", "numpy", "polars", "seamline._core", *NOT_FOR_A_POSTGRES_RECONCILE)
    assert _loaded("import seamline", watched) == []


def test_a_postgres_source_is_made_without_other_stores_or_the_adbc_driver() -> None:
    script = "import seamline as sl\nsl.postgres('postgresql://u@127.0.0.1:1/db', 'public.t')"
    assert _loaded(script, NOT_FOR_A_POSTGRES_RECONCILE) == []


@pytest.fixture(scope="module")
def seam(pg_dsn: str) -> Iterator[tuple[str, str, str]]:
    """Two 3000-row tables that differ in one row: (dsn, source, target)."""
    db = Pg(pg_dsn)
    try:
        a, b = db.table("lean_a"), db.table("lean_b")
        for t in (a, b):
            db.execute(
                f"CREATE TABLE {t} AS SELECT i::int8 AS id, md5(i::text) AS name,"
                " (i * 0.5)::numeric(12, 2) AS price, timestamptz '2024-01-01' + i * interval '1 s' AS at"
                " FROM generate_series(1, 3000) i"
            )
            db.execute(f"ALTER TABLE {t} ADD PRIMARY KEY (id)")
        db.execute(f"UPDATE {b} SET name = 'x' WHERE id = 77")
        yield pg_dsn, a, b
    finally:
        db.close()


@pytest.mark.services
def test_a_postgres_reconcile_loads_only_what_it_uses(seam: tuple[str, str, str]) -> None:
    dsn, a, b = seam
    script = (
        "import seamline as sl\n"
        f"r = sl.reconcile(sl.postgres({dsn!r}, {a!r}), sl.postgres({dsn!r}, {b!r}), key='id')\n"
        "assert dict(r.counts)['changed'] == 1, r.counts\n"
        "assert r.diffs_arrow.column('id').to_pylist() == [77]\n"
        "r.passes, r.ranges, r.clean, repr(r)\n"
    )
    assert _loaded(script, NOT_FOR_A_POSTGRES_RECONCILE) == []


@pytest.mark.services
def test_seamline_check_of_a_postgres_seam_loads_no_polars_and_no_metrics_client(
    seam: tuple[str, str, str], tmp_path: Path
) -> None:
    """The contract layer (pydantic, yaml) is the command's own; the differences it prints come from
    the Arrow table, and prometheus_client is loaded only to write --metrics."""
    dsn, a, b = seam
    contract = tmp_path / "contract.yaml"
    contract.write_text(
        "version: 1\n"
        f"stores:\n  pg: {{type: postgres, dsn: {json.dumps(dsn)}}}\n"
        f"seams:\n  - name: lean\n    source: {{store: pg, table: {a}}}\n"
        f"    target: {{store: pg, table: {b}}}\n    key: id\n"
    )
    script = (
        "import contextlib, io\n"
        "from seamline.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['check', {str(contract)!r}])\n"
        "assert code == 1 and 'changed   id=77  name:' in out.getvalue(), (code, out.getvalue())\n"
    )
    heavy = tuple(m for m in NOT_FOR_A_POSTGRES_RECONCILE if m not in ("pydantic", "yaml"))
    assert _loaded(script, heavy) == []


@pytest.mark.services
def test_a_postgres_to_opensearch_reconcile_on_the_rust_reader_loads_no_python_http_stack(
    pg_dsn: str, opensearch_url: str
) -> None:
    """Every request of the reconcile (mappings, count, PIT, key splits, pages, the diff pass's range
    fetches, freshness, PIT deletion) goes through the Rust client; the "python" reader loads it."""
    pg, search = Pg(pg_dsn), Search(opensearch_url)
    try:
        table = pg.products(3000)
        index = search.copy(pg, table, skip=[77])
        script = (
            "import seamline as sl\n"
            f"src = sl.postgres({pg_dsn!r}, {table!r})\n"
            "def target(reader):\n"
            f"    return sl.opensearch({opensearch_url!r}, {index!r}, key_field='id', reader=reader)\n"
            "dst = target('rust')\n"
            "r = sl.reconcile(src, dst, key='id', compare=sl.Compare(timestamp_precision='ms'))\n"
            "assert dict(r.counts)['missing'] == 1 and r.diffs_arrow.column('id').to_pylist() == [77], r\n"
            "dst.pin()\n"
            "assert dst.max_value('updated_at') is not None and dst.count_newer('updated_at', None) == 2999\n"
            "dst.close()\n"
        )
        assert _loaded(script, PYTHON_HTTP_STACK) == []
        python_reader = (
            "import seamline as sl\n"
            f"dst = sl.opensearch({opensearch_url!r}, {index!r}, key_field='id', reader='python')\n"
            "dst.pin()\ndst.close()\n"
        )
        assert _loaded(python_reader, ("opensearchpy",)) == ["opensearchpy"]
    finally:
        search.close()
        pg.close()


def _threads_once_pyarrow_is_loaded(prelude: str) -> int:
    """The threads of a fresh interpreter (OPENBLAS_NUM_THREADS unset) after `prelude`, then
    `import pyarrow` (which loads numpy and its OpenBLAS)."""
    script = prelude + "\nimport os, pyarrow\nprint(len(os.listdir('/proc/self/task')))\n"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_the_seamline_command_runs_numpy_with_one_openblas_thread() -> None:
    """OpenBLAS starts a thread per core that spins ~0.1 CPU-s at start-up; the command, which does
    no linear algebra, asks for one (an explicit setting in the environment would win)."""
    default = _threads_once_pyarrow_is_loaded("")
    one = _threads_once_pyarrow_is_loaded("import os\nos.environ['OPENBLAS_NUM_THREADS'] = '1'")
    command = _threads_once_pyarrow_is_loaded(
        "from seamline.cli import main\nassert main(['check', '/nonexistent/contract.yaml']) == 2"
    )
    assert command == one
    if (os.cpu_count() or 1) > 1:
        assert default > one  # the check can fail: without the setting OpenBLAS starts more
