"""Peak memory of a Postgres -> Postgres check against the number of rows per side (issue 13).

What it measures
    For each --rows N: two tables mem_<N>_src / mem_<N>_dst made by bench_postgres.py's generator
    (id bigint key, six value columns, 0.2% drift scattered by a hash; see that file), created once
    in SQL with generate_series and reused (mem_meta-like bookkeeping in bench_meta). Each run is a
    fresh process doing sl.reconcile(sl.postgres(dsn, src, reader=R), sl.postgres(dsn, dst,
    reader=R), key="id") and checking the differences against the injected drift. Per run: wall
    seconds, the process's peak resident set (VmHWM from /proc/self/status as it ends), its CPU
    (user+sys), the 1-minute load average before it, the resident set after the imports (the
    base), and a timeline of the resident set sampled every 50 ms with the pass that was running,
    so the peak can be placed (hash pass, refinement, diff).

    The sizing `seamline k8s render --rows` uses (python/seamline/k8s.py, MEASURED_PEAK_MB) is
    these points' reconcile peaks, interpolated between them and extended past the last one.

Run (from the repository root, services up):

    eval "$(scripts/services.sh env)"
    .venv/bin/python benches/bench_memory.py --rows 5000000,20000000 --readers adbc,rust
    .venv/bin/python benches/bench_memory.py --rows 50000000 --repeat 1

Results: a markdown table on stdout and benches/out/bench_memory.json (every run, the commands).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_postgres  # noqa: E402
from bench_postgres import code_state, ensure_loaded, measured, vmhwm_mb  # noqa: E402

OUT = HERE / "out"


def prefix_for(rows: int) -> str:
    return f"mem_{rows}"


def unlogged_load_sql(prefix: str, rows: int) -> str:
    """bench_postgres.py's tables, UNLOGGED: a 50M-row pair written through the WAL is tens of GB
    that a logical replication slot on the same server (the CDC services) holds until it has
    decoded it all. The heap the readers scan is the same."""
    sql = _logged_load_sql(prefix, rows)
    return sql.replace(f"CREATE TABLE public.{prefix}_", f"CREATE UNLOGGED TABLE public.{prefix}_")


def view_target_load_sql(prefix: str, rows: int) -> str:
    """As `unlogged_load_sql`, but the target is a view applying the drift to the source (same rows,
    same types, ranges pushed into it): half the disk, for sizes whose table pair does not fit."""
    sql = unlogged_load_sql(prefix, rows)
    src, dst, drift = f"public.{prefix}_src", f"public.{prefix}_dst", f"public.{prefix}_drift_keys"
    head, _, _ = sql.partition(f"CREATE UNLOGGED TABLE {dst}")
    extra = bench_postgres.ROW_SQL.format(
        id="2 * i + 1", frm=f"(SELECT i FROM {drift} WHERE kind = 'extra') AS g"
    )

    def changed(col: str, new: str) -> str:
        return f"CASE WHEN d.col = '{col}' THEN {new} ELSE t.{col} END AS {col}"

    view = f"""
DROP VIEW IF EXISTS {dst};
CREATE VIEW {dst} AS
SELECT t.id,
       {changed("sku", "t.sku || '-b'")},
       {changed("name", "t.name || ' (v2)'")},
       {changed("price", "(t.price + 0.01)::numeric(12,2)")},
       {changed("in_stock", "NOT t.in_stock")},
       {changed("updated_at", "t.updated_at + interval '1 second'")},
       {changed("deleted_at", "CASE WHEN t.deleted_at IS NULL THEN t.updated_at + interval '1 day' END")}
FROM {src} t LEFT JOIN {drift} d ON d.id = t.id AND d.kind <> 'extra'
WHERE d.kind IS DISTINCT FROM 'missing'
UNION ALL
{extra};
CREATE INDEX ON {drift} (id);
VACUUM (ANALYZE) {src};
ANALYZE {drift};
CREATE TABLE IF NOT EXISTS public.bench_meta (name text PRIMARY KEY, rows bigint, version int);
INSERT INTO public.bench_meta VALUES ('{prefix}', {rows}, {bench_postgres.DATA_VERSION})
    ON CONFLICT (name) DO UPDATE SET rows = excluded.rows, version = excluded.version;
"""
    return (
        head.replace(
            f"DROP TABLE IF EXISTS {src}, {dst}, {drift};",
            f"DROP VIEW IF EXISTS {dst};\nDROP TABLE IF EXISTS {src}, {drift};",
        )
        + view
    )


_logged_load_sql = bench_postgres.load_sql


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(dsn: str, rows: int, reader: str, options: dict[str, Any]) -> dict[str, Any]:
    """One reconcile in this (fresh) process, with an RSS timeline."""
    import seamline as sl
    from seamline.engine import Options

    p = prefix_for(rows)
    base = rss_mb()
    timeline: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.05):
            timeline.append((round(time.perf_counter() - started, 2), round(rss_mb(), 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = sl.reconcile(
        sl.postgres(dsn, f"public.{p}_src", reader=reader),
        sl.postgres(dsn, f"public.{p}_dst", reader=reader),
        key="id",
        options=Options(**options),
    )
    seconds = time.perf_counter() - started
    # the peak of the reconcile itself: checking the result below builds Python sets of every
    # expected and found difference (100k at 50M rows), which is the benchmark's memory, not Seamline's
    reconcile_peak = vmhwm_mb()
    stop.set()
    sampler.join()
    expected, found = bench_postgres.injected_and_found(dsn, f"public.{p}_drift_keys", result)
    peak_at = max(timeline, key=lambda s: s[1]) if timeline else (0.0, 0.0)
    return {
        "seconds": seconds,
        "reconcile_peak_mb": reconcile_peak,
        "matches_drift": found == expected,
        "counts": dict(result.counts),
        "base_mb": round(base, 1),
        "peak_at": peak_at,
        "timeline": timeline[:: max(1, len(timeline) // 200)],
        "passes": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in dict(ps).items()}
            for ps in result.passes
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="5000000,20000000", help="comma-separated rows per side")
    ap.add_argument("--readers", default="adbc,rust", help="comma-separated: adbc, rust")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--options", default="{}", help="engine Options as JSON (e.g. diff_budget_rows)")
    ap.add_argument("--load-only", action="store_true", help="create the tables and stop")
    ap.add_argument(
        "--target-view", action="store_true", help="load the target as a view over the source (half the disk)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dsn = os.environ.get("SEAMLINE_PG_DSN")
    if not dsn:
        raise SystemExit('SEAMLINE_PG_DSN is not set: eval "$(scripts/services.sh env)"')
    sizes = [int(float(r)) for r in args.rows.split(",")]
    if args.child:
        out = child(dsn, sizes[0], args.child, json.loads(args.options))
        out["peak_mb"] = vmhwm_mb()
        print(json.dumps(out))
        return

    OUT.mkdir(exist_ok=True)
    # ensure_loaded builds its SQL with bench_postgres.load_sql
    bench_postgres.load_sql = view_target_load_sql if args.target_view else unlogged_load_sql
    data = {n: ensure_loaded(dsn, prefix_for(n), n, False) for n in sizes}
    print(f"data: {json.dumps(data)}", file=sys.stderr, flush=True)
    if args.load_only:
        return
    readers = [r.strip() for r in args.readers.split(",")]
    runs: list[dict[str, Any]] = []
    commands: dict[str, str] = {}
    for i in range(args.repeat):
        for n in sizes:
            for reader in readers:
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--rows",
                    str(n),
                    "--options",
                    args.options,
                    "--child",
                    reader,
                ]
                commands[f"{n}/{reader}"] = shlex.join(cmd)
                r = measured(cmd)
                r.update(rows=n, reader=reader, run=i + 1, code=code_state())
                runs.append(r)
                brief = {
                    k: r.get(k)
                    for k in (
                        "rows",
                        "reader",
                        "seconds",
                        "reconcile_peak_mb",
                        "peak_mb",
                        "base_mb",
                        "peak_at",
                        "cpu_seconds",
                        "load_1m_before",
                        "matches_drift",
                        "error",
                    )
                }
                print(f"run: {json.dumps(brief)}", file=sys.stderr, flush=True)

    lines = [
        "| rows/side | reader | peak RSS MB, reconcile (max) | with the check | base MB | seconds (median)"
        " | CPU s | load 1m | drift ok |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for n in sizes:
        for reader in readers:
            ok = [r for r in runs if r["rows"] == n and r["reader"] == reader and "error" not in r]
            if not ok:
                lines.append(f"| {n:,} | {reader} | failed | | | | | | |")
                continue
            loads = [r["load_1m_before"] for r in ok]
            lines.append(
                f"| {n:,} | {reader} | {max(r['reconcile_peak_mb'] for r in ok):.0f} |"
                f" {max(r['peak_mb'] for r in ok):.0f} |"
                f" {statistics.median(r['base_mb'] for r in ok):.0f} |"
                f" {statistics.median(r['seconds'] for r in ok):.2f} |"
                f" {statistics.median(r['cpu_seconds'] for r in ok):.1f} |"
                f" {min(loads):.2f}-{max(loads):.2f} | {all(r['matches_drift'] for r in ok)} |"
            )
    table = "\n".join(lines)
    print(table)
    path = OUT / "bench_memory.json"
    previous = json.loads(path.read_text()) if path.exists() else []
    previous.append(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commands": commands,
            "runs": runs,
            "table": table,
        }
    )
    path.write_text(json.dumps(previous, indent=1))


if __name__ == "__main__":
    main()
