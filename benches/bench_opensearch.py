"""Postgres -> OpenSearch, 1M documents: Seamline with the Rust reader vs. the opensearch-py reader vs.
the server's own limit (a sliced PIT scan that discards the bodies), side by side.

What it measures
    The tables and the index of bench_stores.py (bench_stores_src in Postgres, its drifted copy
    indexed as bench_products: 1 shard, 0 replicas, mapping id long, sku/name keyword, price
    scaled_float, in_stock boolean, updated_at/deleted_at date; 0.2% drift), loaded by it if absent.

    Methods (each run a fresh subprocess, interleaved; seconds are the wall time of the measured work):
    os_raw_scan         the floor: one PIT, 2 streams read by 2 threads as Seamline's Rust reader pages
                        a full read on a 1-shard index with an integer key (one stream per side on 2
                        cores, its 2 key ranges fetched at once; 2 streams for parallelism 2): the key's
                        [min, max] (one min/max aggregation) cut into 2 range queries, the first thread
                        also reading the documents without a key (no hash slices: see
                        OpenSearchReader._key_splits), search_after pages of the reader's PAGE_SIZE
                        (10,000 hits) sorted by _doc,
                        the whole _source (the 7 compared fields are every mapped field) and no
                        filter_path, as Seamline's Rust reader asks; the response bytes are discarded
                        (only the last hit's sort values are cut out, for search_after). urllib3, no
                        JSON parsing.
    os_raw_docvalues    the same scan with `_source: false` and docvalue_fields for the 7 fields (dates
                        as epoch_millis), for the docvalue_fields question of issue 13.
    seamline_rust       sl.reconcile(sl.postgres(dsn, "public.bench_stores_src"),
                        sl.opensearch(url, "bench_products", key_field="id"), key="id",
                        compare=sl.Compare(timestamp_precision="ms")): the Rust reader (the default),
                        the index's batches kept for the diff (Options.retain_bytes, the default).
    seamline_python     the same with reader="python": opensearch-py, JSON parsed in Python (the path
                        before issue 13).
    Every child runs in the environment a scheduled `seamline` run has (bench_postgres.child_env):
    OPENBLAS_NUM_THREADS=1, as the command sets it, so numpy's OpenBLAS, which pyarrow loads, does
    not spin a thread per core at start-up (~0.15 CPU-s of a Seamline child otherwise).
    Both Seamline methods assert that counts and the (key, kind) set of the diffs equal the injected
    drift. Ratios are to os_raw_scan.

    CPU seconds per part, for each run: the method's process (user+sys, from wait4), the OpenSearch
    node (utime+stime of its JVM from /proc when it runs on this machine, else its process stats,
    which refresh once a second) and the Postgres server (the postmaster, its reaped backends and the
    live ones, from /proc; "-" when the server is not local). The server columns count every client's
    work, so they mean something on a quiet machine only.

    --node-cores N gives the node cores of its own, as a search cluster has in production: every
    thread of the node's JVM is pinned to the first N cores, and the Postgres server (postmaster,
    live backends, and the ones forked later, which inherit it) with every method's process to the
    others; both the floor and Seamline then run against a node that nothing else competes with.
    Affinities are restored when the run ends. Linux, the node and the server local.

Run (from the repository root, services up):

    eval "$(scripts/services.sh env)"
    .venv/bin/python benches/bench_opensearch.py              # 1M documents, 3 rounds
    .venv/bin/python benches/bench_opensearch.py --node-cores 1   # the node on a core of its own
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_postgres import OUT, child_env, child_seamline, code_state, measured, vmhwm_mb  # noqa: E402
from bench_stores import (  # noqa: E402
    DRIFT,
    INDEX,
    OS_MAPPING,
    PAGE_SIZE,
    PREFIX,
    SRC,
    ensure_loaded,
    ensure_opensearch,
)

SLICES = 2
FIELDS = list(OS_MAPPING["properties"])
METHODS = ("os_raw_scan", "os_raw_docvalues", "seamline_rust", "seamline_python")


def child_raw_scan(url: str, docvalues: bool) -> dict[str, Any]:
    """A sliced PIT scan that keeps no body: the server's own limit for these pages."""
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    http = urllib3.PoolManager(maxsize=SLICES * 2)
    headers = {"Content-Type": "application/json"}
    started = time.perf_counter()
    created = http.request("POST", f"{url}/{INDEX}/_search/point_in_time?keep_alive=5m")
    pit = json.loads(created.data)["pit_id"]

    # The streams Seamline's reader plans for an integer key (OpenSearchReader._key_splits): the key's
    # [min, max] cut into SLICES ranges of equal width, plus the documents without a key.
    bounds = json.loads(
        http.request(
            "POST",
            f"{url}/_search?filter_path=aggregations",
            headers=headers,
            body=json.dumps(
                {
                    "size": 0,
                    "aggs": {"lo": {"min": {"field": "id"}}, "hi": {"max": {"field": "id"}}},
                    "pit": {"id": pit, "keep_alive": "5m"},
                }
            ),
        ).data
    )["aggregations"]
    lo, hi = bounds["lo"]["value"], bounds["hi"]["value"]
    cuts: list[int | None] = [None, *(int(lo + (hi - lo) * i / SLICES) for i in range(1, SLICES)), None]
    queries: list[dict[str, Any]] = [
        {"range": {"id": {k: v for k, v in (("gte", a), ("lt", b)) if v is not None}}}
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    queries.append({"bool": {"must_not": [{"exists": {"field": "id"}}]}})

    def scan(slice_id: int) -> tuple[int, int]:
        hits = size = 0
        for query in queries[slice_id::SLICES]:
            h, s = scan_query(query)
            hits, size = hits + h, size + s
        return hits, size

    def scan_query(query: dict[str, Any]) -> tuple[int, int]:
        body: dict[str, Any] = {
            "size": PAGE_SIZE,
            "query": query,
            "sort": [{"_doc": "asc"}],
            "track_total_hits": False,
        }
        if docvalues:
            body["_source"] = False
            body["docvalue_fields"] = [
                {"field": f, "format": "epoch_millis"} if OS_MAPPING["properties"][f]["type"] == "date" else f
                for f in FIELDS
            ]
        else:
            body["_source"] = True
        hits = size = 0
        while True:
            body["pit"] = {"id": pit, "keep_alive": "5m"}
            raw = http.request("POST", f"{url}/_search", body=json.dumps(body), headers=headers).data
            size += len(raw)
            page = raw.count(b'"_id":')
            hits += page
            if page < PAGE_SIZE:
                return hits, size
            start = raw.rindex(b'"sort":[') + len(b'"sort":')
            body["search_after"] = json.loads(raw[start : raw.index(b"]", start) + 1])

    with ThreadPoolExecutor(SLICES) as pool:
        results = list(pool.map(scan, range(SLICES)))
    seconds = time.perf_counter() - started
    http.request(
        "DELETE", f"{url}/_search/point_in_time", body=json.dumps({"pit_id": [pit]}), headers=headers
    )
    return {"seconds": seconds, "rows": sum(r[0] for r in results), "bytes": sum(r[1] for r in results)}


def node_cpu_seconds(url: str) -> float:
    """CPU seconds the OpenSearch node's process has used so far (its side of a scan, undisturbed by
    the load of other processes on the machine): from /proc when the node runs on this machine (the
    node's own stats refresh only once a second), else from the node's process stats."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/_nodes/_local/stats/process?filter_path=**.process") as resp:
        (node,) = json.load(resp)["nodes"].values()
    local = proc_cpu_seconds(int(node["process"].get("id", 0)), children=False)
    return local if local is not None else float(node["process"]["cpu"]["total_in_millis"]) / 1000


def proc_cpu_seconds(pid: int, children: bool) -> float | None:
    """utime + stime of a local process (+ its reaped children's), None when it is not local."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = sum(int(f) for f in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pid(dsn: str) -> int | None:
    """The postmaster's pid when the server runs on this machine (its data directory is readable)."""
    import adbc_driver_postgresql.dbapi as pgdbapi

    with pgdbapi.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        (datadir,) = cur.fetchone() or (None,)
    try:
        return int(Path(str(datadir), "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (from /proc)."""
    found = []
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                if int(Path(child, "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(child.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def postgres_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of the local Postgres server so far: the postmaster, its exited backends (reaped
    by it) and the live ones. Counts every client's work, so only meaningful on a quiet server."""
    if pid is None:
        return None
    total = proc_cpu_seconds(pid, children=True)
    if total is None:
        return None
    return total + sum(proc_cpu_seconds(child, children=True) or 0.0 for child in children_of(pid))


def node_pid(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_nodes/_local/process?filter_path=**.process.id") as resp:
        (node,) = json.load(resp)["nodes"].values()
    return int(node["process"]["id"])


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (sched_setaffinity applies to one thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, FileNotFoundError):
            continue  # a thread that ended meanwhile


def split_cores(url: str, pg: int | None, node_cores: int) -> Callable[[], None]:
    """The node on the first `node_cores` cores, the Postgres server and this process (so every
    method's child) on the rest; returns what undoes it."""
    every = os.sched_getaffinity(0)
    ordered = sorted(every)
    if pg is None or not 0 < node_cores < len(ordered):
        raise SystemExit(
            f"--node-cores {node_cores}: needs a local node and server and 1..{len(ordered) - 1} cores"
        )
    node_set, rest = set(ordered[:node_cores]), set(ordered[node_cores:])
    node = node_pid(url)
    servers = [pg, *children_of(pg)]
    pin(node, node_set)
    for pid in servers:
        pin(pid, rest)
    os.sched_setaffinity(0, rest)
    print(
        f"node pid {node} on cores {sorted(node_set)}; Postgres and the methods on {sorted(rest)}",
        file=sys.stderr,
    )

    def undo() -> None:
        for pid in [node, pg, *children_of(pg)]:
            pin(pid, every)
        os.sched_setaffinity(0, every)

    return undo


def child_main(child: str) -> None:
    dsn = os.environ["SEAMLINE_PG_DSN"]
    url = os.environ["SEAMLINE_OPENSEARCH_URL"]
    if child in ("os_raw_scan", "os_raw_docvalues"):
        out = child_raw_scan(url, docvalues=child == "os_raw_docvalues")
    else:
        import seamline as sl

        reader = "rust" if child == "seamline_rust" else "python"
        out = child_seamline(
            dsn,
            sl.postgres(dsn, SRC),
            sl.opensearch(url, INDEX, key_field="id", reader=reader),
            DRIFT,
            compare=sl.Compare(timestamp_precision="ms"),
        )
    out["peak_mb"] = vmhwm_mb()
    print(json.dumps(out, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--node-cores", type=int, default=0, help="cores of the node's own (0: shared)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child)
        return
    dsn, url = os.environ.get("SEAMLINE_PG_DSN"), os.environ.get("SEAMLINE_OPENSEARCH_URL")
    if not dsn or not url:
        raise SystemExit(
            'SEAMLINE_PG_DSN / SEAMLINE_OPENSEARCH_URL not set: eval "$(scripts/services.sh env)"'
        )
    # the floor pages as the reader does (its child imports no seamline: its CPU and peak are its own)
    from seamline.stores.opensearch.read import PAGE_SIZE as READER_PAGE_SIZE

    if READER_PAGE_SIZE != PAGE_SIZE:
        raise SystemExit(f"bench_stores.PAGE_SIZE {PAGE_SIZE} != the reader's {READER_PAGE_SIZE}")
    OUT.mkdir(exist_ok=True)
    loaded = ensure_loaded(dsn, PREFIX, args.rows, False)
    index = ensure_opensearch(dsn, url, args.rows, False)
    methods = [m for m in args.methods.split(",") if m]
    me = [sys.executable, str(Path(__file__).resolve())]
    commands = {m: shlex.join([*me, "--child", m]) for m in methods}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    pg_pid = postgres_pid(dsn)
    undo = split_cores(url, pg_pid, args.node_cores) if args.node_cores else None
    try:
        for i in range(args.repeat):
            for m in methods:
                node_cpu, pg_cpu = node_cpu_seconds(url), postgres_cpu_seconds(pg_pid)
                # every child in the environment a scheduled `seamline` run has (one OpenBLAS thread)
                r = measured(shlex.split(commands[m]), env=child_env())
                r["node_cpu_seconds"] = round(node_cpu_seconds(url) - node_cpu, 2)
                pg_after = postgres_cpu_seconds(pg_pid)
                if pg_cpu is not None and pg_after is not None:
                    r["postgres_cpu_seconds"] = round(pg_after - pg_cpu, 2)
                if m.startswith("seamline"):
                    r["code"] = code_state()
                runs[m].append(r)
                shown = {k: v for k, v in r.items() if k not in ("passes", "code", "stderr_tail")}
                print(f"run {i + 1} {m}: {json.dumps(shown, default=str)}", file=sys.stderr, flush=True)
    finally:
        if undo is not None:
            undo()

    def med(m: str) -> float | None:
        ok = [r["seconds"] for r in runs.get(m, []) if "error" not in r]
        return statistics.median(ok) if ok else None

    floor = med("os_raw_scan")
    lines = [
        f"## Postgres -> OpenSearch, {index['docs']:,} documents, drift {json.dumps(loaded['expected'])}"
        + (f", the node on {args.node_cores} core(s) of its own" if args.node_cores else ""),
        "",
        "| method | median s | x os_raw_scan | min-max s | peak MB | process CPU s | node CPU s"
        " | Postgres CPU s | load 1m | drift found |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    summary = {}
    for m in methods:
        ok = [r for r in runs[m] if "error" not in r]
        if not ok:
            lines.append(f"| {m} | failed: {runs[m][0].get('error')} | | | | | | | | |")
            continue
        secs = [r["seconds"] for r in ok]
        s = statistics.median(secs)
        ratio = f"{s / floor:.2f}" if floor else "-"
        found = (
            "yes"
            if all(r.get("matches_drift") for r in ok)
            else ("-" if "matches_drift" not in ok[0] else "NO")
        )
        cpu = statistics.median(r["cpu_seconds"] for r in ok)
        node = statistics.median(r["node_cpu_seconds"] for r in ok)
        pgs = [r["postgres_cpu_seconds"] for r in ok if "postgres_cpu_seconds" in r]
        pg = f"{statistics.median(pgs):.1f}" if pgs else "-"
        loads = [r["load_1m_before"] for r in ok]
        peak = max(r["peak_mb"] or 0 for r in ok)
        lines.append(
            f"| {m} | {s:.2f} | {ratio} | {min(secs):.2f}-{max(secs):.2f} | {peak:.0f}"
            f" | {cpu:.1f} | {node:.1f} | {pg} | {min(loads):.1f}-{max(loads):.1f} | {found} |"
        )
        summary[m] = {"median": s, "ratio": s / floor if floor else None, "runs": len(ok)}
    rust, python = med("seamline_rust"), med("seamline_python")
    if rust and python:
        lines.append(f"\nseamline_python / seamline_rust: {python / rust:.2f}x")
    print("\n".join(lines))
    out = OUT / f"bench_opensearch_{args.rows}{f'_node{args.node_cores}' if args.node_cores else ''}.json"
    out.write_text(
        json.dumps({"commands": commands, "runs": runs, "summary": summary}, indent=1, default=str)
    )
    print(f"\n(every run: {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
