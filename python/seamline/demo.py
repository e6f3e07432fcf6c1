"""`seamline demo`: a small shop with the classic drifts injected, reconciled end to end.

Arrow part (no services): the products table as Parquet, against a nightly export that lost an
update, missed an insert, kept a deleted product and replayed a row. Stores part (needs the test
services, see scripts/services.sh): the same shop in Postgres, OpenSearch, Iceberg and LanceDB.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import seamline as sl
from seamline.report import differences, summary

UTC = dt.UTC
PRODUCTS = 2_000


def shop_products(n: int = PRODUCTS) -> pa.Table:
    """Products with awkward text keys, money as numeric(12,2) and microsecond timestamps."""
    base = dt.datetime(2026, 11, 1, tzinfo=UTC)
    return pa.table(
        {
            "id": pa.array(range(1, n + 1), pa.int64()),
            "sku": pa.array([f"{'AB'[i % 2]}-{i:05d}_{'xY'[i % 2]}" for i in range(1, n + 1)]),
            "name": pa.array([f"Product {i}" for i in range(1, n + 1)]),
            "price": pa.array(
                [decimal.Decimal(1000 + i * 7 % 9000) / 100 for i in range(1, n + 1)], pa.decimal128(12, 2)
            ),
            "in_stock": pa.array([i % 5 != 0 for i in range(1, n + 1)]),
            "updated_at": pa.array(
                [base + dt.timedelta(minutes=i, microseconds=i * 37 % 1000) for i in range(1, n + 1)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def nightly_export(products: pa.Table) -> pa.Table:
    """The copy: id 42's price update lost, id 77 never delivered, id 9999 deleted upstream but
    still here, id 100 replayed twice."""
    df = pl.from_arrow(products)
    assert isinstance(df, pl.DataFrame)
    stale = df.with_columns(
        pl.when(pl.col("id") == 42)
        .then(pl.lit(decimal.Decimal("5.00")))
        .otherwise(pl.col("price"))
        .alias("price")
    ).filter(pl.col("id") != 77)
    ghost = stale.filter(pl.col("id") == 1).with_columns(pl.lit(9999, pl.Int64).alias("id"))
    return pl.concat([stale, ghost, stale.filter(pl.col("id") == 100)]).to_arrow()


# What each seam of the demo must find: (key, kind) pairs.
Expected = dict[str, set[tuple[object, str]]]
ARROW_EXPECTED: set[tuple[object, str]] = {
    (42, "changed"),
    (77, "missing"),
    (9999, "extra"),
    (100, "duplicate"),
}


def found(result: sl.ReconcileResult) -> set[tuple[object, str]]:
    key = [s for s, _ in result.seam.key]
    rows = result.diffs.select([*key, "kind"]).rows()
    return {(r[0] if len(key) == 1 else tuple(r[:-1]), r[-1]) for r in rows}


def arrow_demo(workdir: Path) -> tuple[dict[str, sl.ReconcileResult], Expected]:
    workdir.mkdir(parents=True, exist_ok=True)
    products = shop_products()
    pq.write_table(products, workdir / "products.parquet")
    pq.write_table(nightly_export(products), workdir / "products_export.parquet")
    result = sl.reconcile(
        sl.parquet(str(workdir / "products.parquet")),
        sl.parquet(str(workdir / "products_export.parquet")),
        key="id",
    )
    name = "parquet: products -> nightly export"
    return {name: result}, {name: ARROW_EXPECTED}


CONTRACT = Path(__file__).with_name("demo_contract.yaml")


def contract_demo(workdir: Path) -> tuple[dict[str, sl.ReconcileResult], Expected]:
    """The shop in the four stores, reconciled through the contract that ships with the demo
    (copied into `workdir`, next to the lake and the vectors, so its relative paths resolve there)."""
    import shutil

    from seamline import demo_stores as shop
    from seamline.contract import load
    from seamline.progress import Progress

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    dsn, url = os.environ["SEAMLINE_PG_DSN"], os.environ["SEAMLINE_OPENSEARCH_URL"]
    shop.build_shop(workdir, dsn, url)

    path = workdir / "contract.yaml"
    shutil.copyfile(CONTRACT, path)
    contract = load(path)
    progress = Progress()
    results = {}
    for seam in contract.seams.values():
        with progress.step(f"{seam.name}: reconciling"):
            results[seam.name] = contract.reconcile(seam, options=sl.Options(on_progress=progress.rows))
        progress.seam_done(seam.name, results[seam.name])
    replay_day = (shop.BASE + dt.timedelta(minutes=3)).date()
    expected: Expected = {
        "products_search": {(42, "changed"), (13, "extra"), (77, "missing")},
        "products_silver": {(42, "changed"), (13, "extra")},
        "products_vectors": {(42, "changed"), (13, "extra")},
        "orders_bronze": {(1001, "duplicate")},
        "revenue_gold": {(replay_day, "changed")},
    }
    return results, expected


def html_report(results: dict[str, sl.ReconcileResult], started: float, path: Path) -> Path:
    """The demo's reconciles as one `check` report, written as HTML (the page `--html` writes)."""
    from seamline import __version__, html_report

    seams = {
        name: {"status": "clean" if r.clean else "drift", "exit_code": 0 if r.clean else 1, "error": None}
        | r.to_dict()
        for name, r in results.items()
    }
    clean = all(r.clean for r in results.values())
    report = {
        "seamline": __version__,
        "command": "check",
        "contract": "seamline demo",
        "started_at": dt.datetime.fromtimestamp(started, UTC).isoformat(),
        "finished_at": dt.datetime.now(UTC).isoformat(),
        "exit_code": 0 if clean else 1,
        "clean": clean,
        "seams": seams,
    }
    return html_report.write(path, report)


def run(workdir: str = "demo-out", stores: bool = True) -> int:
    """Run the demo; exit 0 when every seam found exactly the drift that was injected."""
    started = time.time()
    results, expected = arrow_demo(Path(workdir))
    if stores and os.environ.get("SEAMLINE_PG_DSN"):
        store_results, store_expected = contract_demo(Path(workdir))
        results |= store_results
        expected |= store_expected
    print(summary(results))
    ok = True
    for name, result in results.items():
        if not result.clean:
            print(f"\n{name}:")
            print(differences(result))
        if found(result) != expected[name]:
            ok = False
            print(f"  !! expected {sorted(expected[name], key=str)}, found {sorted(found(result), key=str)}")
    print("\ndemo: every injected drift was found, and nothing else" if ok else "\ndemo: UNEXPECTED RESULT")
    page = html_report(results, started, Path(workdir) / "report.html")
    print(f"\nHTML report: {page.resolve()}")
    if stores and os.environ.get("SEAMLINE_PG_DSN"):
        contract = Path(workdir) / "contract.yaml"
        print(f"\nThe stores were reconciled through {contract}; try also:")
        print(f"  seamline freshness {contract}")
        print(f"  seamline lineage {contract} --chain revenue")
        print(f"  seamline check {contract} --seam products_search --json report.json")
    return 0 if ok else 1
