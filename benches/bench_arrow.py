"""Seamline vs. polars on two in-memory Arrow tables: reconcile time and peak memory.

What it measures
    Two tables of N rows (default 5,000,000) x 7 columns -- id int64 (key), name string, email
    string, amount decimal128(12,2), active bool, created_at timestamp[us, UTC], deleted_at nullable
    timestamp[us, UTC] -- where the target carries 0.2% drift scattered over the key space:
    changed values (one column each, cycling through all six value columns, including
    NULL <-> value on deleted_at), deleted rows (missing), inserted rows (extra, new keys between
    existing ones) and a few duplicated keys (exact copies of a row). Three methods:

    seamline          sl.reconcile(source, target, key="id") on the two pyarrow Tables; asserts
                      that the counts and the differing keys are exactly the injected drift.
    polars_join       a plain polars diff: full outer join on id, keep rows where one side is
                      absent or any column differs (null-aware), plus is_duplicated() on each
                      side's id for duplicates; asserts the same differing keys.
    polars_hash_rows  DataFrame.hash_rows() over all 7 columns of both tables: a floor for how
                      fast the rows can merely be hashed.

How
    The data is generated once, deterministically, with polars expressions (hash-based
    pseudo-randomness, no numpy) and cached as uncompressed Arrow IPC under benches/out/. Every
    run of every method is a fresh subprocess (`--method`) that reads both tables into ordinary
    (anonymous) memory -- not memory-mapped, because file-backed pages would only become resident,
    and be charged to the method, when it first touches them. The polars methods convert the
    tables to polars DataFrames (string -> string view copies) before measuring, i.e. polars gets
    its data in its native layout for free. Then the child records VmRSS as the baseline, resets
    the high-water mark (`5` > /proc/self/clear_refs; if that is refused the VmHWM before the
    method is reported and used instead), runs the method timed with perf_counter, and reports
    the peak above the data = VmHWM after - baseline, plus the raw numbers.
    Each method runs --repeat times (default 7: these VMs are noisy), interleaved; the table shows
    the median time and the largest peak. Results go to stdout (markdown) and benches/out/bench_arrow.json.

Goals (from the issue): seamline within 2x of the hash_rows floor, faster than the polars join
diff, and a peak under a third of the join diff's.

Run (from the repository root):

    .venv/bin/python benches/bench_arrow.py                  # 5M rows, 7 runs each
    .venv/bin/python benches/bench_arrow.py --rows 200000    # quick check
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa

OUT = Path(__file__).resolve().parent / "out"
DATA_VERSION = 1  # bump when the generator changes: cached files are named after it
DRIFT = 0.002
METHODS = ("seamline", "polars_join", "polars_hash_rows")
VALUE_COLUMNS = ("name", "email", "amount", "active", "created_at", "deleted_at")

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("amount", pa.decimal128(12, 2)),
        pa.field("active", pa.bool_()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("deleted_at", pa.timestamp("us", tz="UTC")),
    ]
)

EPOCH_2020_US = 1_577_836_800_000_000
FIVE_YEARS_US = 5 * 365 * 86_400 * 1_000_000
NINETY_DAYS_US = 90 * 86_400 * 1_000_000


# ---------------------------------------------------------------------------------------------
# data


def _rows(idx: pl.Expr, id_expr: pl.Expr, seed: int) -> list[pl.Expr]:
    """The seven columns of the rows with the given indexes, pseudo-random from hashes of them."""
    h1, h2, h3 = idx.hash(seed=seed), idx.hash(seed=seed + 1), idx.hash(seed=seed + 2)
    created = pl.lit(EPOCH_2020_US, pl.Int64) + (h2 % FIVE_YEARS_US).cast(pl.Int64)
    return [
        id_expr.alias("id"),
        pl.format("customer {} {}", (h1 % 1_000_003), (h1 // 7 % 97)).alias("name"),
        pl.format("user{}@example{}.com", (h2 % 10_000_019), (h2 // 3 % 100)).alias("email"),
        ((h3 % 10_000_000_000).cast(pl.Int64).cast(pl.Decimal(14, 2)) / pl.lit(100).cast(pl.Decimal(14, 2)))
        .cast(pl.Decimal(12, 2))
        .alias("amount"),
        (h1 % 3 == 0).alias("active"),
        created.cast(pl.Datetime("us", "UTC")).alias("created_at"),
        pl.when(h3 // 11 % 5 == 0)
        .then((created + (h3 // 13 % NINETY_DAYS_US).cast(pl.Int64)).cast(pl.Datetime("us", "UTC")))
        .alias("deleted_at"),
    ]


def generate(rows: int) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Source of `rows` rows (ids 0, 2, 4, ...) and a target with 0.2% scattered drift."""
    base = pl.select(i=pl.int_range(rows, dtype=pl.Int64))
    src = base.select(_rows(pl.col.i, pl.col.i * 2, seed=11))

    drift = max(4, round(rows * DRIFT))
    n_dup = max(1, drift // 100)
    n_missing = n_extra = drift * 2 // 10
    n_changed = drift - n_dup - n_missing - n_extra
    # the drifted row indexes: the `drift` smallest hashes of the index -> uniformly scattered
    picked = base.select(pl.col.i.sort_by(pl.col.i.hash(seed=99)).head(drift)).to_series().to_list()
    changed = picked[:n_changed]
    missing = picked[n_changed : n_changed + n_missing]
    extra_at = picked[n_changed + n_missing : n_changed + n_missing + n_extra]
    dup = picked[n_changed + n_missing + n_extra :]

    kinds = pl.DataFrame(
        {"i": changed, "col": [k % len(VALUE_COLUMNS) for k in range(len(changed))]},
        schema={"i": pl.Int64, "col": pl.Int64},
    )
    dst = src.with_row_index("i").with_columns(pl.col.i.cast(pl.Int64)).join(kinds, on="i", how="left")
    hit = [pl.col.col == k for k in range(len(VALUE_COLUMNS))]
    dst = dst.with_columns(
        pl.when(hit[0]).then(pl.col.name + " (renamed)").otherwise(pl.col.name).alias("name"),
        pl.when(hit[1]).then(pl.lit("x") + pl.col.email).otherwise(pl.col.email).alias("email"),
        pl.when(hit[2])
        .then((pl.col.amount + pl.lit(1).cast(pl.Decimal(12, 2)) / 100).cast(pl.Decimal(12, 2)))
        .otherwise(pl.col.amount)
        .alias("amount"),
        pl.when(hit[3]).then(~pl.col.active).otherwise(pl.col.active).alias("active"),
        pl.when(hit[4])
        .then(pl.col.created_at + pl.duration(seconds=1))
        .otherwise(pl.col.created_at)
        .alias("created_at"),
        pl.when(hit[5] & pl.col.deleted_at.is_null())
        .then(pl.col.created_at + pl.duration(days=1))
        .when(hit[5])
        .then(None)
        .otherwise(pl.col.deleted_at)
        .alias("deleted_at"),
    )
    dst = dst.filter(~pl.col.i.is_in(missing))
    extras = pl.DataFrame({"i": extra_at}, schema={"i": pl.Int64}).select(
        _rows(pl.col.i, pl.col.i * 2 + 1, seed=500)  # odd ids: new keys between existing ones
    )
    dups = dst.filter(pl.col.i.is_in(dup))
    dst = pl.concat([dst.select(src.columns), extras, dups.select(src.columns)])
    dst = dst.sort("id", maintain_order=True)

    expected = {
        "source_rows": rows,
        "target_rows": rows - n_missing + n_extra + n_dup,
        "missing": n_missing,
        "extra": n_extra,
        "changed": n_changed,
        "duplicate": n_dup,
    }
    keys = {
        "missing": sorted(2 * i for i in missing),
        "extra": sorted(2 * i + 1 for i in extra_at),
        "changed": sorted(2 * i for i in changed),
        "duplicate": sorted(2 * i for i in dup),
    }
    return src, dst, {"expected": expected, "keys": keys}


def _paths(rows: int) -> tuple[Path, Path, Path]:
    stem = OUT / f"arrow_v{DATA_VERSION}_{rows}"
    return Path(f"{stem}.source.arrow"), Path(f"{stem}.target.arrow"), Path(f"{stem}.meta.json")


def _to_arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(SCHEMA)


def ensure_data(rows: int) -> dict:
    src_path, dst_path, meta_path = _paths(rows)
    if not (src_path.exists() and dst_path.exists() and meta_path.exists()):
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        src, dst, meta = generate(rows)
        for df, path in ((src, src_path), (dst, dst_path)):
            table = _to_arrow(df)
            tmp = path.with_suffix(".tmp")
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table, max_chunksize=1 << 20)
            tmp.replace(path)
        meta_path.write_text(json.dumps(meta))
        took = time.perf_counter() - started
        print(f"generated {rows} rows in {took:.1f}s -> {src_path.parent}", file=sys.stderr)
    return json.loads(meta_path.read_text())


def load(rows: int) -> tuple[pa.Table, pa.Table]:
    """Both tables read into anonymous memory (see the module docstring for why not mmap)."""
    src_path, dst_path, _ = _paths(rows)
    out = []
    for path in (src_path, dst_path):
        with pa.OSFile(str(path), "rb") as f:
            out.append(pa.ipc.open_file(f).read_all())
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# methods (each returns the set of differing keys by kind, checked after timing)


def run_seamline(src: pa.Table, dst: pa.Table) -> tuple[dict, dict]:
    import seamline as sl

    result = sl.reconcile(src, dst, key="id")
    info = {"counts": result.counts, "passes": result.passes, "engine_seconds": result.seconds}
    return info, {"result": result}


def check_seamline(extra: dict, meta: dict) -> None:
    result = extra["result"]
    settled = {k: v for k, v in result.counts.items() if k != "in_flight"}
    assert settled == meta["expected"] and result.counts["in_flight"] == 0, (result.counts, meta["expected"])
    d = result.diffs
    for kind, keys in meta["keys"].items():
        got = sorted(d.filter(pl.col.kind == kind)["id"].cast(pl.Int64).to_list())
        assert got == keys, f"seamline {kind}: {len(got)} keys, expected {len(keys)}"


def run_polars_join(src: pl.DataFrame, dst: pl.DataFrame) -> tuple[dict, dict]:
    joined = src.join(dst, on="id", how="full", suffix="_t", coalesce=False)
    differs = pl.col.id.is_null() | pl.col.id_t.is_null()
    for c in VALUE_COLUMNS:
        differs = differs | pl.col(c).ne_missing(pl.col(f"{c}_t"))
    diff = joined.filter(differs)
    dup_src = src.filter(pl.col.id.is_duplicated())
    dup_dst = dst.filter(pl.col.id.is_duplicated())
    keys = pl.concat(
        [diff.select(pl.coalesce("id", "id_t").alias("id")), dup_src.select("id"), dup_dst.select("id")]
    )["id"].unique()
    info = {"diff_rows": diff.height, "differing_keys": keys.len()}
    return info, {"diff": diff, "dups": (dup_src, dup_dst)}


def check_polars_join(extra: dict, meta: dict) -> None:
    diff = extra["diff"]
    exp = meta["keys"]
    got = {
        "missing": diff.filter(pl.col.id_t.is_null())["id"],
        "extra": diff.filter(pl.col.id.is_null())["id_t"],
        "changed": diff.filter(pl.col.id.is_not_null() & pl.col.id_t.is_not_null())["id"],
        "duplicate": pl.concat([extra["dups"][0]["id"], extra["dups"][1]["id"]]).unique(),
    }
    for kind, keys in exp.items():
        found = sorted(got[kind].to_list())
        assert found == keys, f"polars_join {kind}: {len(found)} keys, expected {len(keys)}"


def run_polars_hash_rows(src: pl.DataFrame, dst: pl.DataFrame) -> tuple[dict, dict]:
    a, b = src.hash_rows(), dst.hash_rows()
    return {"hashed_rows": a.len() + b.len()}, {}


# ---------------------------------------------------------------------------------------------
# child: one measured run


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    found = {k: re.search(rf"^{k}:\s+(\d+) kB", text, re.M) for k in ("VmRSS", "VmHWM")}
    return {k: int(m.group(1)) * 1024 if m else 0 for k, m in found.items()}


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(method: str, rows: int) -> dict:
    meta = ensure_data(rows)
    t0 = time.perf_counter()
    src, dst = load(rows)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    check: Callable[[dict, dict], None] | None
    if method == "seamline":
        import seamline  # noqa: F401  (import cost outside the timing)

        args, fn, check = (src, dst), run_seamline, check_seamline
    else:
        args = (pl.from_arrow(src), pl.from_arrow(dst))
        del src, dst
        fn = run_polars_join if method == "polars_join" else run_polars_hash_rows
        check = check_polars_join if method == "polars_join" else None
    prep_s = time.perf_counter() - t0
    gc.collect()
    before = _status()
    reset = _reset_hwm()
    hwm_before = _status()["VmHWM"]
    started = time.perf_counter()
    info, extra = fn(*args)
    seconds = time.perf_counter() - started
    after = _status()
    if check is not None:
        check(extra, meta)
    peak = after["VmHWM"] - (before["VmRSS"] if reset else hwm_before)
    return {
        "method": method,
        "rows": rows,
        "seconds": seconds,
        "peak_bytes": max(0, peak),
        "rss_baseline": before["VmRSS"],
        "hwm_before": hwm_before,
        "hwm_after": after["VmHWM"],
        "rss_after": after["VmRSS"],
        "hwm_reset": reset,
        "load_seconds": load_s,
        "prep_seconds": prep_s,
        **{k: v for k, v in info.items()},
    }


# ---------------------------------------------------------------------------------------------
# parent


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--method", choices=METHODS, help="internal: one measured run, JSON on stdout")
    args = ap.parse_args()

    if args.method:
        print(json.dumps(child(args.method, args.rows)))
        return

    meta = ensure_data(args.rows)
    load_before = _loadavg()
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for rep in range(args.repeat):
        for m in METHODS:
            proc = subprocess.run(
                [sys.executable, __file__, "--method", m, "--rows", str(args.rows)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                sys.exit(f"{m} run {rep + 1} failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[m].append(r)
            peak = r["peak_bytes"] / 2**20
            print(f"  {m} #{rep + 1}: {r['seconds']:.3f}s, peak {peak:.0f} MB", file=sys.stderr)

    summary = {
        m: {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "peak_mb": max(r["peak_bytes"] for r in rs) / 2**20,
            "data_rss_mb": statistics.median(r["rss_baseline"] for r in rs) / 2**20,
        }
        for m, rs in runs.items()
    }
    floor = summary["polars_hash_rows"]["median_seconds"]
    join_peak = summary["polars_join"]["peak_mb"]
    s = summary["seamline"]
    goals = {
        "within_2x_hash_rows": s["median_seconds"] <= 2 * floor,
        "faster_than_polars_join": s["median_seconds"] < summary["polars_join"]["median_seconds"],
        "peak_under_third_of_join": s["peak_mb"] < join_peak / 3,
    }

    print(
        f"\n{args.rows:,} rows x 7 columns, {DRIFT:.1%} drift {meta['expected']}; {os.cpu_count()} CPUs, "
        f"load avg {load_before} -> {_loadavg()}; median of {args.repeat} fresh processes\n"
    )
    print("| method | median s | x hash_rows | peak MB above data | x join peak |")
    print("|---|---:|---:|---:|---:|")
    for m in METHODS:
        v = summary[m]
        peak_ratio = f"{v['peak_mb'] / join_peak:.2f}" if join_peak else "-"
        ratio = v["median_seconds"] / floor
        print(f"| {m} | {v['median_seconds']:.3f} | {ratio:.2f} | {v['peak_mb']:.0f} | {peak_ratio} |")
    print("\ngoals: " + ", ".join(f"{k} {'MET' if ok else 'MISSED'}" for k, ok in goals.items()))

    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "rows": args.rows,
        "drift": meta["expected"],
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "pyarrow": pa.__version__,
        "summary": summary,
        "goals": goals,
        "runs": runs,
    }
    (OUT / "bench_arrow.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {OUT / 'bench_arrow.json'}")


if __name__ == "__main__":
    main()
