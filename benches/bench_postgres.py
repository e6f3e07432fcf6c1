"""Seamline Postgres -> Postgres vs. reladiff, data-diff and the raw read speed of both tables.

What it measures
    Two Postgres tables of N rows (default 5,000,000), bench_src and bench_dst, both with a primary
    key on id:  id bigint, sku text, name text, price numeric(12,2), in_stock bool,
    updated_at timestamptz, deleted_at timestamptz (NULL in 90% of rows). bench_dst is a copy of
    bench_src with 0.2% drift on keys chosen by a hash (scattered over the key space): 20% of the
    drift keys deleted (missing), 20% inserted as new keys between existing ones (extra, odd ids;
    source ids are even), 60% updated in one column each, the column chosen by a hash among all
    six (sku, name, price +0.01, in_stock negated, updated_at +1 s, deleted_at NULL <-> value).
    No duplicate keys: both tables keep their primary key, as real tables would, so this benchmark
    injects no duplicates. The injected drift is recorded in bench_drift_keys (id, kind, col).

    Methods (each run is a fresh subprocess; seconds are wall time of the measured work):
    copy_binary        the floor: psql "COPY (SELECT <7 columns> FROM t) TO STDOUT (FORMAT binary)"
                       > /dev/null, bench_src then bench_dst, sequentially (seconds = the sum).
    copy_binary_concurrent   the same two COPYs at the same time (Seamline reads both sides
                       concurrently; the machine has 2 cores), for reference.
    adbc_read          adbc_driver_postgresql: cursor.execute("SELECT * FROM t");
                       cursor.fetch_arrow_table(), bench_src then bench_dst (what Seamline reads with).
    adbc_read_concurrent     the same two reads at the same time, one thread each, for reference.
    rust_read_concurrent     the Rust reader alone (seamline._core.pg_copy_stream, the SQL
                       Seamline's Postgres reader builds), both tables at once, batches discarded.
    seamline / seamline_adbc  sl.reconcile(sl.postgres(dsn, "public.bench_src", reader=...),
                       sl.postgres(dsn, "public.bench_dst", reader=...), key="id") in the project
                       venv, with the Rust reader ("seamline") and with ADBC ("seamline_adbc");
                       asserts that the counts and the (key, kind) set of result.diffs equal the
                       injected drift; records result.passes (time per pass and side).
    reladiff, data_diff  hashdiff through their Python API (benches/peer_hashdiff.py) in their own
                       venvs, same tables, key and six columns, their default settings; their
                       differing keys are checked against the injected drift ('-' rows = missing +
                       changed, '+' rows = extra + changed, distinct keys = all three).
    Every child runs as a scheduled `seamline` run would (child_env: one OpenBLAS thread, as the
    command sets it, and the package's bytecode compiled, as an installed wheel has it).
    CPU s/M is the child's own CPU (user+sys, os.wait4) per million rows per side (psql: the
    client's, the server's is not counted), the interpreter's start and imports included; for
    Seamline also the CPU of the reconcile call alone (os.times() around it, every thread).
    Peak MB is the child's VmHWM (/proc/self/status as it ends), i.e. the whole process with its
    imports; none for psql (the server's memory is not counted for anyone).

How
    The tables are generated in SQL (generate_series, md5 and hashint8extended: deterministic),
    loaded through psql, then VACUUM (ANALYZE). A load is skipped when bench_meta says the tables
    already hold this generator version at this size (--reload forces it). The data is in the OS
    page cache and Postgres' shared buffers (hot reads) for every method alike.
    Floor and Seamline run --repeat times (default 3) interleaved and the median is reported; the
    peers --peer-repeat times (default 1: they take minutes). The 1-minute load average is recorded
    before every run (the machine has 2 cores; other work may be running).
    Results: a markdown table on stdout and benches/out/bench_postgres_<rows>.json (every run, the commands).

Goals (issue 13): Seamline (reader="rust") within 1.25x of copy_binary_concurrent, at least 15x faster
than reladiff, peak RSS under 300 MB and flat from 5M to 20M rows, its own CPU at most 0.25 s per
million rows per side; the ADBC reader reported beside it. (Issue 5's: 5x reladiff, 1.5x copy_binary.)

Run (from the repository root, services up: scripts/services.sh up):

    eval "$(scripts/services.sh env)"
    .venv/bin/python benches/bench_postgres.py --rows 200000      # quick check
    .venv/bin/python benches/bench_postgres.py                    # 5M rows
    .venv/bin/python benches/bench_postgres.py --rows 20000000 --prefix bench20m --peers none
Peers' venvs (gitignored):
    python3 -m venv benches/.venv-reladiff && benches/.venv-reladiff/bin/pip install reladiff psycopg2-binary
    python3 -m venv benches/.venv-datadiff && benches/.venv-datadiff/bin/pip install \\
        data-diff==0.11.2 "dbt-core<1.9" psycopg2-binary
"""

from __future__ import annotations

import argparse
import compileall
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DATA_VERSION = 1  # bump when the generator changes: bench_meta then forces a reload
VALUE_COLUMNS = ("sku", "name", "price", "in_stock", "updated_at", "deleted_at")
ALL_COLUMNS = ("id", *VALUE_COLUMNS)
PEERS = {"reladiff": HERE / ".venv-reladiff", "data_diff": HERE / ".venv-datadiff"}

# One generated row per i (bigint); {id} is the key expression, {frm} the FROM clause giving i.
ROW_SQL = """
SELECT {id} AS id,
       'SKU-' || lpad(i::text, 9, '0') AS sku,
       'Product ' || substr(md5(i::text), 1, 8 + (i % 17)::int) AS name,
       ((i * 7919) % 100000 / 100.0)::numeric(12,2) AS price,
       i % 3 <> 0 AS in_stock,
       timestamptz '2020-01-01 00:00:00+00'
           + ((i * 2654435761) % 157680000000000) * interval '1 microsecond' AS updated_at,
       CASE WHEN i % 10 = 0 THEN timestamptz '2025-01-01 00:00:00+00'
           + ((i * 40503) % 31536000000000) * interval '1 microsecond' END AS deleted_at
FROM {frm}
"""


def load_sql(prefix: str, rows: int) -> str:
    """SQL (for psql) that creates {prefix}_src, {prefix}_dst (drifted copy) and {prefix}_drift_keys."""
    src, dst, drift = f"public.{prefix}_src", f"public.{prefix}_dst", f"public.{prefix}_drift_keys"
    cols = ", ".join(ALL_COLUMNS)
    ddl = (
        "(id bigint NOT NULL, sku text NOT NULL, name text NOT NULL, price numeric(12,2) NOT NULL,"
        " in_stock boolean NOT NULL, updated_at timestamptz NOT NULL, deleted_at timestamptz)"
    )
    gen = ROW_SQL.format(id="i", frm=f"generate_series(1::bigint, {rows}::bigint) AS g(i)")
    gen = gen.replace("SELECT i AS id", "SELECT 2 * i AS id")
    extra = ROW_SQL.format(id="2 * i + 1", frm=f"(SELECT i FROM {drift} WHERE kind = 'extra') AS g")

    def when(col: str, changed: str) -> str:
        return f"{col} = CASE WHEN d.col = '{col}' THEN {changed} ELSE t.{col} END"

    updates = ",\n    ".join(
        [
            when("sku", "t.sku || '-b'"),
            when("name", "t.name || ' (v2)'"),
            when("price", "t.price + 0.01"),
            when("in_stock", "NOT t.in_stock"),
            when("updated_at", "t.updated_at + interval '1 second'"),
            when(
                "deleted_at",
                "CASE WHEN t.deleted_at IS NULL THEN t.updated_at + interval '1 day' END",
            ),
        ]
    )
    return f"""
\\set ON_ERROR_STOP 1
DROP TABLE IF EXISTS {src}, {dst}, {drift};
CREATE TABLE {src} {ddl};
INSERT INTO {src} {gen};
ALTER TABLE {src} ADD PRIMARY KEY (id);
-- drift: 0.2% of the source rows, chosen by hash; kind and column by other hashes
CREATE TABLE {drift} AS
SELECT CASE WHEN k = 2 OR k = 3 THEN 2 * i + 1 ELSE 2 * i END AS id,
       CASE WHEN k < 2 THEN 'missing' WHEN k < 4 THEN 'extra' ELSE 'changed' END AS kind,
       CASE WHEN k >= 4 THEN (ARRAY['sku','name','price','in_stock','updated_at','deleted_at'])
           [1 + abs(hashint8extended(i, 9) % 6)] END AS col,
       i
FROM (SELECT i, abs(hashint8extended(i, 7) % 10) AS k
      FROM generate_series(1::bigint, {rows}::bigint) AS g(i)
      WHERE hashint8extended(i, 42) % 500 = 0) s;
CREATE TABLE {dst} {ddl};
INSERT INTO {dst} SELECT {cols} FROM {src};
ALTER TABLE {dst} ADD PRIMARY KEY (id);
DELETE FROM {dst} t USING {drift} d WHERE d.kind = 'missing' AND t.id = d.id;
INSERT INTO {dst} {extra};
UPDATE {dst} t SET
    {updates}
FROM {drift} d WHERE d.kind = 'changed' AND t.id = d.id;
VACUUM (ANALYZE) {src};
VACUUM (ANALYZE) {dst};
ANALYZE {drift};
CREATE TABLE IF NOT EXISTS public.bench_meta (name text PRIMARY KEY, rows bigint, version int);
INSERT INTO public.bench_meta VALUES ('{prefix}', {rows}, {DATA_VERSION})
    ON CONFLICT (name) DO UPDATE SET rows = excluded.rows, version = excluded.version;
"""


def psql(dsn: str, *args: str, stdin: str | None = None, stdout: Any = subprocess.PIPE) -> str:
    proc = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, *args],
        input=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr.strip()}")
    return proc.stdout or ""


def _has_rows(dsn: str, table: str) -> bool:
    if psql(dsn, "-Atc", f"SELECT to_regclass('{table}') IS NOT NULL").strip() != "t":
        return False
    return psql(dsn, "-Atc", f"SELECT EXISTS (SELECT 1 FROM {table})").strip() == "t"


def ensure_loaded(dsn: str, prefix: str, rows: int, reload: bool) -> dict[str, Any]:
    """Create the tables unless bench_meta says they hold this version at this size."""
    current = ""
    if psql(dsn, "-Atc", "SELECT to_regclass('public.bench_meta') IS NOT NULL").strip() == "t":
        current = psql(
            dsn, "-Atc", f"SELECT rows || ':' || version FROM public.bench_meta WHERE name = '{prefix}'"
        ).strip()
    if current and not _has_rows(dsn, f"public.{prefix}_src"):
        current = ""  # an UNLOGGED pair (benches/bench_memory.py) is emptied by a server restart
    loaded = False
    seconds = 0.0
    if reload or current != f"{rows}:{DATA_VERSION}":
        print(f"loading {prefix}_src / {prefix}_dst with {rows:,} rows ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        psql(dsn, stdin=load_sql(prefix, rows))
        seconds = time.perf_counter() - started
        loaded = True
    expected = dict(
        line.split("|")
        for line in psql(
            dsn, "-Atc", f"SELECT kind, count(*) FROM public.{prefix}_drift_keys GROUP BY kind"
        ).split()
    )
    counts = (
        psql(
            dsn,
            "-Atc",
            f"SELECT (SELECT count(*) FROM public.{prefix}_src), (SELECT count(*) FROM public.{prefix}_dst),"
            f" pg_size_pretty(pg_total_relation_size('public.{prefix}_src')),"
            f" pg_size_pretty(pg_total_relation_size('public.{prefix}_dst'))",
        )
        .strip()
        .split("|")
    )
    return {
        "loaded_now": loaded,
        "load_seconds": round(seconds, 1),
        "expected": {k: int(expected.get(k, 0)) for k in ("missing", "extra", "changed")},
        "source_rows": int(counts[0]),
        "target_rows": int(counts[1]),
        "source_size": counts[2],
        "target_size": counts[3],
    }


# -- children -----------------------------------------------------------------------------------


@functools.cache
def child_env() -> dict[str, str]:
    """The environment every measured child runs in, the one a scheduled `seamline` run has:
    - OPENBLAS_NUM_THREADS=1, which the command's main sets (seamline/cli.py): pyarrow loads numpy,
      whose OpenBLAS would start a thread per core that spins ~0.1 CPU-s at start-up, and the
      children here call the API, not the command;
    - the package's bytecode, compiled once here as installing a wheel compiles it: this tree's
      develop build has none and PYTHONDONTWRITEBYTECODE may be set, so each child would compile
      the modules it imports again (~60 ms)."""
    compileall.compile_dir(str(HERE.parent / "python" / "seamline"), quiet=1)
    return os.environ | {"OPENBLAS_NUM_THREADS": "1"}


def measured(
    cmd: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one measured subprocess (in `child_env()` unless given another): wall time, peak RSS of
    the child (os.wait4), its JSON line."""
    env = child_env() if env is None else env
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    # Drain both pipes to EOF (stderr in a thread: a child that fills one pipe while we block on the
    # other would hang), then reap the child with wait4 for its rusage.
    assert proc.stdout is not None and proc.stderr is not None
    errs: list[str] = []
    drain = threading.Thread(target=lambda: errs.append(proc.stderr.read()))  # type: ignore[union-attr]
    drain.start()
    out = proc.stdout.read()
    drain.join()
    err = errs[0] if errs else ""
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss of a child started by fork/vfork + exec also counts the parent's resident set at the
    # exec (Linux folds the old mm's high-water mark into it), so it is kept for the record only; the
    # peak reported is the VmHWM the child reads from /proc/self/status as it finishes (psql: none).
    result: dict[str, Any] = {
        "wall_seconds": round(wall, 3),
        "peak_mb": None,
        "ru_maxrss_mb": round(rusage.ru_maxrss / 1024, 1),
        "load_1m_before": round(load, 2),
        "cpu_seconds": round(rusage.ru_utime + rusage.ru_stime, 3),
    }
    if proc.returncode != 0:
        lines = err.strip().splitlines() or [f"exit {proc.returncode}"]
        result["error"] = lines[-1]
        result["stderr_tail"] = lines[-15:]
        return result
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        result.update(json.loads(lines[-1]))
    result.setdefault("seconds", result["wall_seconds"])
    return result


def vmhwm_mb() -> float:
    """This process's peak resident set (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def code_state() -> dict[str, Any]:
    """Which Seamline was measured: HEAD, files modified against it, and the native module's mtime
    (the tree is shared with ongoing development)."""
    root = HERE.parent

    def git(*a: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout
        return out.rstrip("\n")

    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--", "python", "rust").splitlines()
        if not line.startswith("??")
    ]
    so = root / "python" / "seamline" / "_core.abi3.so"
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "modified": dirty,
        "core_so_mtime": time.strftime("%H:%M:%S", time.gmtime(so.stat().st_mtime)) if so.exists() else None,
    }


def copy_cmd(dsn: str, table: str) -> str:
    select = f"SELECT {', '.join(ALL_COLUMNS)} FROM {table}"
    copy = f"COPY ({select}) TO STDOUT (FORMAT binary)"
    return f"psql -X -q {shlex.quote(dsn)} -c {shlex.quote(copy)} > /dev/null"


def injected_and_found(dsn: str, drift_table: str, result: Any) -> tuple[set[Any], set[Any]]:
    """The injected drift and the result's differences, as (id, kind) sets. Read with Seamline's
    own Rust client, in Arrow: the check loads neither ADBC nor polars."""
    from seamline.stores.postgres.store import PostgresStore

    store = PostgresStore(dsn, native=True)
    drift = store.query(f"SELECT id, kind FROM {drift_table}")
    store.close()
    expected = set(zip(drift.column("id").to_pylist(), drift.column("kind").to_pylist(), strict=True))
    diffs = result.diffs_arrow
    found = set(zip(diffs.column("id").to_pylist(), diffs.column("kind").to_pylist(), strict=True))
    return expected, found


def child_seamline(dsn: str, source: Any, target: Any, drift_table: str, **kw: Any) -> dict[str, Any]:
    """Reconcile (timed), then check counts and differing keys against the injected drift (read
    with Seamline's own Rust client, in Arrow: the check loads neither ADBC nor polars, whose
    imports would count in the process's CPU)."""
    import seamline as sl

    started, cpu = time.perf_counter(), os.times()
    result = sl.reconcile(source, target, key="id", **kw)
    seconds = time.perf_counter() - started
    done = os.times()
    reconcile_cpu = (done.user - cpu.user) + (done.system - cpu.system)
    expected, found = injected_and_found(dsn, drift_table, result)
    want = {k: sum(1 for _, kind in expected if kind == k) for k in ("missing", "extra", "changed")}
    counts = dict(result.counts)
    ok = found == expected and all(counts[k] == want[k] for k in want) and counts["duplicate"] == 0
    passes = [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in dict(p).items()} for p in result.passes
    ]
    return {
        "seconds": seconds,
        "reconcile_cpu_seconds": round(reconcile_cpu, 3),
        "counts": counts,
        "matches_drift": ok,
        "passes": passes,
    }


def child_adbc(dsn: str, tables: list[str]) -> dict[str, Any]:
    import adbc_driver_postgresql.dbapi as pgdbapi

    per = {}
    total = 0.0
    rows = 0
    for table in tables:
        started = time.perf_counter()
        with pgdbapi.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table}")
            data = cur.fetch_arrow_table()
        s = time.perf_counter() - started
        rows += data.num_rows
        del data
        per[table] = round(s, 3)
        total += s
    return {"seconds": total, "per_table": per, "rows": rows}


def child_adbc_concurrent(dsn: str, tables: list[str]) -> dict[str, Any]:
    """The same reads, one thread per table at the same time (ADBC releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tables)) as pool:
        rows = sum(pool.map(lambda t: child_adbc(dsn, [t])["rows"], tables))
    return {"seconds": time.perf_counter() - started, "rows": rows}


def child_rust_concurrent(dsn: str, tables: list[str]) -> dict[str, Any]:
    """The Rust reader alone: every table's stream read at once (one thread each, GIL released in
    the native reads), the batches dropped. The SQL is what Seamline's Postgres reader runs."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    import seamline as sl
    from seamline.stores.protocols import ScanRequest

    sources = [sl.postgres(dsn, t, reader="rust") for t in tables]
    request = ScanRequest(columns=list(ALL_COLUMNS), key=["id"], parallelism=1)

    def read(source: Any) -> int:
        rows = 0
        for stream in source.open(request):
            for batch in pa.RecordBatchReader.from_stream(stream):
                rows += batch.num_rows
        return rows

    for source in sources:
        source.pin()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(sources)) as pool:
        rows = sum(pool.map(read, sources))
    seconds = time.perf_counter() - started
    for source in sources:
        source.close()
    return {"seconds": seconds, "rows": rows}


def child_main(args: argparse.Namespace) -> None:
    dsn = os.environ["SEAMLINE_PG_DSN"]
    p = args.prefix
    if args.child in ("seamline", "seamline_adbc"):
        import seamline as sl

        reader = "adbc" if args.child == "seamline_adbc" else "rust"
        out = child_seamline(
            dsn,
            sl.postgres(dsn, f"public.{p}_src", reader=reader),
            sl.postgres(dsn, f"public.{p}_dst", reader=reader),
            f"public.{p}_drift_keys",
        )
    elif args.child == "rust_read_concurrent":
        out = child_rust_concurrent(dsn, [f"public.{p}_src", f"public.{p}_dst"])
    elif args.child == "adbc_read":
        out = child_adbc(dsn, [f"public.{p}_src", f"public.{p}_dst"])
    elif args.child == "adbc_read_concurrent":
        out = child_adbc_concurrent(dsn, [f"public.{p}_src", f"public.{p}_dst"])
    else:
        raise SystemExit(f"unknown child {args.child}")
    out["peak_mb"] = vmhwm_mb()
    print(json.dumps(out))


# -- parent -------------------------------------------------------------------------------------


def summarise(name: str, runs: list[dict[str, Any]], floor: float | None, rows: int) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {
            "method": name,
            "seconds": None,
            "ratio": None,
            "peak_mb": None,
            "cpu_per_m": None,
            "runs": len(runs),
            "error": runs[0].get("error") if runs else "not run",
        }
    secs = [r["seconds"] for r in ok]
    med = statistics.median(secs)
    return {
        "method": name,
        "seconds": round(med, 2),
        "min_max": (round(min(secs), 2), round(max(secs), 2)),
        "ratio": round(med / floor, 2) if floor else None,
        "peak_mb": max((r["peak_mb"] for r in ok if r.get("peak_mb") is not None), default=None),
        # CPU seconds of the process per million rows per side (two sides of `rows` rows each)
        "cpu_per_m": round(statistics.median(r["cpu_seconds"] for r in ok) / (2 * rows / 1e6), 3)
        if all("cpu_seconds" in r for r in ok)
        else None,
        "reconcile_cpu_per_m": round(
            statistics.median(r["reconcile_cpu_seconds"] for r in ok) / (2 * rows / 1e6), 3
        )
        if all("reconcile_cpu_seconds" in r for r in ok)
        else None,
        "runs": len(ok),
        "load": (min(r["load_1m_before"] for r in ok), max(r["load_1m_before"] for r in ok)),
    }


def markdown(rows: list[dict[str, Any]], floor_name: str) -> str:
    lines = [
        f"| method | seconds (median) | ratio to {floor_name} | peak MB | CPU s/M rows/side"
        " (process; reconcile only) | runs | min-max s | load 1m |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if r["seconds"] is None:
            lines.append(f"| {r['method']} | failed: {r.get('error')} | | | | {r['runs']} | | |")
            continue
        rc = r.get("reconcile_cpu_per_m")
        reconcile_cpu = "" if rc is None else f"; {rc:.3f}"
        lines.append(
            f"| {r['method']} | {r['seconds']:.2f} | {r['ratio']:.2f}x |"
            f" {'-' if r['peak_mb'] is None else format(r['peak_mb'], '.0f')} |"
            f" {'-' if r['cpu_per_m'] is None else format(r['cpu_per_m'], '.3f')}"
            f"{reconcile_cpu}"
            f" | {r['runs']} |"
            f" {r['min_max'][0]:.2f}-{r['min_max'][1]:.2f} | {r['load'][0]:.2f}-{r['load'][1]:.2f} |"
        )
    return "\n".join(lines)


def passes_table(passes: list[dict[str, Any]]) -> str:
    lines = ["| pass | side | rows | seconds |", "|---|---|---:|---:|"]
    for p in passes:
        lines.append(f"| {p['kind']} | {p['side']} | {p['rows']:,} | {p['seconds']:.2f} |")
    return "\n".join(lines)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["seconds"])
    return ok[len(ok) // 2] if ok else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the floor and Seamline (median)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="runs of each peer")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peers", default="reladiff", help="comma-separated peers (reladiff, data_diff) or none")
    ap.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    ap.add_argument("--reload", action="store_true", help="regenerate the tables even if present")
    ap.add_argument("--prefix", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return

    dsn = os.environ.get("SEAMLINE_PG_DSN")
    if not dsn:
        raise SystemExit('SEAMLINE_PG_DSN is not set: eval "$(scripts/services.sh env)"')
    OUT.mkdir(exist_ok=True)
    data = ensure_loaded(dsn, args.prefix, args.rows, args.reload)
    print(f"data: {json.dumps(data)}", file=sys.stderr, flush=True)
    src, dst = f"public.{args.prefix}_src", f"public.{args.prefix}_dst"
    me = [sys.executable, str(Path(__file__).resolve()), "--rows", str(args.rows), "--prefix", args.prefix]
    commands = {
        "copy_binary": f"{copy_cmd(dsn, src)}; {copy_cmd(dsn, dst)}",
        "copy_binary_concurrent": f"{copy_cmd(dsn, src)} & {copy_cmd(dsn, dst)} & wait",
        "adbc_read": shlex.join([*me, "--child", "adbc_read"]),
        "adbc_read_concurrent": shlex.join([*me, "--child", "adbc_read_concurrent"]),
        "rust_read_concurrent": shlex.join([*me, "--child", "rust_read_concurrent"]),
        "seamline": shlex.join([*me, "--child", "seamline"]),
        "seamline_adbc": shlex.join([*me, "--child", "seamline_adbc"]),
    }
    if args.methods:
        wanted = {m.strip() for m in args.methods.split(",")} | {"copy_binary", "seamline"}
        commands = {m: c for m, c in commands.items() if m in wanted}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in commands}
    for i in range(args.repeat):
        for method, cmd in commands.items():
            if method.startswith("copy"):
                r = measured(["bash", "-c", cmd])
                r["seconds"] = r["wall_seconds"]
            else:
                state = code_state() if method.startswith("seamline") else None
                r = measured(shlex.split(cmd))
                if state:
                    r["code"] = state
            runs[method].append(r)
            print(
                f"run {i + 1} {method}: {json.dumps({k: v for k, v in r.items() if k != 'passes'})}",
                file=sys.stderr,
                flush=True,
            )
            if method.startswith("seamline") and "error" not in r and not r.get("matches_drift"):
                print("  !! seamline's differences do not match the injected drift", file=sys.stderr)

    cols = ",".join(VALUE_COLUMNS)
    peers = [] if args.no_peers or args.peers == "none" else [p.strip() for p in args.peers.split(",")]
    if peers:
        for peer, venv in PEERS.items():
            if peer not in peers:
                continue
            py = venv / "bin" / "python"
            peer_cmd = [
                str(py),
                str(HERE / "peer_hashdiff.py"),
                peer,
                dsn,
                src,
                dst,
                cols,
                f"public.{args.prefix}_drift_keys",
            ]
            commands[peer] = shlex.join(peer_cmd)
            runs[peer] = []
            for i in range(args.peer_repeat):
                if not py.exists():
                    runs[peer].append({"error": f"{venv} missing", "load_1m_before": os.getloadavg()[0]})
                    break
                r = measured(peer_cmd)
                runs[peer].append(r)
                print(f"run {i + 1} {peer}: {json.dumps(r)}", file=sys.stderr, flush=True)

    floor = statistics.median(r["seconds"] for r in runs["copy_binary"] if "error" not in r)
    rows = [summarise(m, rs, floor, args.rows) for m, rs in runs.items()]
    best = median_run(runs["seamline"])
    by = {r["method"]: r for r in rows}
    goals: dict[str, Any] = {}
    if by["seamline"]["seconds"]:
        s = by["seamline"]
        goals["seamline_within_1.5x_of_copy_binary"] = s["ratio"] <= 1.5
        goals["seamline_peak_under_1GB"] = s["peak_mb"] < 1024
        goals["seamline_matches_drift_every_run"] = all(r.get("matches_drift") for r in runs["seamline"])
        # issue 13: against the two COPYs at once, CPU per million rows per side, flat memory
        if by.get("copy_binary_concurrent", {}).get("seconds"):
            conc = round(s["seconds"] / by["copy_binary_concurrent"]["seconds"], 2)
            goals["seamline_over_copy_binary_concurrent"] = conc
            goals["seamline_within_1.25x_of_copy_binary_concurrent"] = conc <= 1.25
        if s.get("cpu_per_m") is not None:
            goals["seamline_cpu_at_most_0.25s_per_M_rows_per_side"] = s["cpu_per_m"] <= 0.25
        if s.get("reconcile_cpu_per_m") is not None:
            goals["seamline_reconcile_cpu_at_most_0.25s_per_M_rows_per_side"] = (
                s["reconcile_cpu_per_m"] <= 0.25
            )
        goals["seamline_peak_under_300MB"] = s["peak_mb"] < 300
        if by.get("seamline_adbc", {}).get("seconds"):
            goals["seamline_adbc_over_seamline"] = round(by["seamline_adbc"]["seconds"] / s["seconds"], 2)
        if by.get("reladiff", {}).get("seconds"):
            goals["reladiff_over_seamline"] = round(by["reladiff"]["seconds"] / s["seconds"], 2)
            goals["seamline_5x_faster_than_reladiff"] = goals["reladiff_over_seamline"] >= 5
            goals["seamline_15x_faster_than_reladiff"] = goals["reladiff_over_seamline"] >= 15
        if by.get("data_diff", {}).get("seconds"):
            goals["data_diff_over_seamline"] = round(by["data_diff"]["seconds"] / s["seconds"], 2)
        for peer in PEERS:
            if runs.get(peer) and "error" not in runs[peer][0]:
                goals[f"{peer}_matches_drift"] = all(r.get("matches_drift") for r in runs[peer])

    print(f"\n## Postgres -> Postgres, {args.rows:,} rows, drift {json.dumps(data['expected'])}\n")
    print(markdown(rows, "copy_binary"))
    print(f"\nSeamline passes (median run, {best.get('seconds', 0):.2f} s):\n")
    print(passes_table(best.get("passes", [])))
    for peer in PEERS:
        for r in runs.get(peer, []):
            if "error" not in r:
                print(
                    f"\n{peer}: '-' rows {r['minus_rows']:,}, '+' rows {r['plus_rows']:,}, distinct keys"
                    f" {r['distinct_keys']:,} (missing {r['missing']:,}, extra {r['extra']:,}, changed"
                    f" {r['changed']:,}); matches drift: {r['matches_drift']}"
                )
    print(f"\nseamline counts: {json.dumps(best.get('counts'))}; goals: {json.dumps(goals)}")

    report = {
        "benchmark": "postgres->postgres",
        "rows": args.rows,
        "data_version": DATA_VERSION,
        "data": data,
        "code": code_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "commands": {k: v.replace(dsn, "$SEAMLINE_PG_DSN") for k, v in commands.items()},
        "summary": rows,
        "goals": goals,
        "runs": runs,
        "load_sql": load_sql(args.prefix, args.rows),
    }
    path = OUT / f"bench_postgres_{args.rows}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
