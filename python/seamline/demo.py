"""`seamline demo`: a small shop with the classic drifts injected, reconciled end to end.

Arrow part (no services): the products table as Parquet, against a nightly export that lost an
update, missed an insert, kept a deleted product and replayed a row. Stores part (needs the test
services, see scripts/services.sh): the same shop in Postgres, OpenSearch, Iceberg and LanceDB.
Stream part (needs Kafka and the Debezium launcher too): the shop as a running pipeline (outbox
relay, CDC, indexer, lake lander; `seamline.demo_pipeline`) broken five ways, each fault named at
its hop, then repaired where a write can repair it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import time
from pathlib import Path
from typing import Any

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


def pipeline_demo(workdir: Path) -> tuple[dict[str, sl.ReconcileResult], Expected, list[str]] | None:
    """The stream pipeline built, broken and reconciled through its contract (written into
    `workdir` as pipeline.yaml); None (after one line saying why) when Kafka or Debezium is not
    there. Also the lines that tell, per fault, the seam and what it found, and the repair."""
    from seamline import demo_pipeline
    from seamline.progress import Progress

    reason = demo_pipeline.unavailable()
    if reason:
        print(f"stream pipeline: skipped ({reason}; scripts/services.sh up kafka debezium starts it)")
        return None
    pipe = _pipeline(workdir)
    progress = Progress()
    try:
        with progress.step("stream pipeline: building (relay, Debezium, indexer, lake lander)"):
            pipe.build()
        with progress.step("stream pipeline: injecting five faults"):
            faults = pipe.inject_faults()
        contract = pipe.contract()
        results = {}
        for seam in contract.seams.values():
            with progress.step(f"{seam.name}: reconciling"):
                results[seam.name] = contract.reconcile(seam, options=sl.Options(on_progress=progress.rows))
            progress.seam_done(seam.name, results[seam.name])
        lines = fault_lines(pipe, faults, results)
        with progress.step("stream pipeline: repairing"):
            repaired = pipe.repair()
        lines += repair_lines(repaired)
    finally:
        pipe.stop()  # the connector's process and its replication slot: never left behind
    return results, pipe.expected(faults), lines


def _pipeline(workdir: Path) -> Any:
    """The demo's pipeline in `workdir`: its names derive from the directory, so a second run in
    the same directory replaces the first, and runs in two directories never meet."""
    import hashlib

    from seamline import demo_pipeline

    workdir = workdir.resolve()
    return demo_pipeline.Pipeline(
        os.environ["SEAMLINE_PG_DSN"],
        os.environ["SEAMLINE_KAFKA_BOOTSTRAP"],
        os.environ["SEAMLINE_OPENSEARCH_URL"],
        workdir,
        hashlib.sha256(str(workdir).encode()).hexdigest()[:8],
    )


def drop_pipeline(workdir: Path) -> None:
    """Remove what the demo's stream pipeline left in the services (tables, topics, index) for
    `workdir`; nothing when the pipeline cannot run here."""
    from seamline import demo_pipeline

    if demo_pipeline.unavailable() is None:
        _pipeline(workdir).drop()


def _keys(result: sl.ReconcileResult, among: set[object] | None = None) -> str:
    by_kind: dict[str, list[str]] = {}
    for key, kind in sorted(found(result), key=str):
        if among is None or key in among:
            by_kind.setdefault(kind, []).append(str(key))
    return "; ".join(f"{kind} {', '.join(keys)}" for kind, keys in by_kind.items()) or "nothing"


def fault_lines(pipe: Any, faults: Any, results: dict[str, sl.ReconcileResult]) -> list[str]:
    """Per fault: what was done, the seam that names it and what that seam found."""
    slot = faults.slot_during_outage
    cdc_keys = set(faults.cdc_lost)
    replays = results["topic_gold"].to_dict()["as_of"]["source"]["detail"]["health"]["replayed"]
    twice = ", ".join(f"{day} +{amount}" for day, amount in sorted(faults.replayed_revenue.items()))
    out = [
        f"stream pipeline ({pipe.workdir / 'pipeline.yaml'}): five faults, each named at its hop",
        "  1. relay killed after publishing a batch, before marking it (re-published on restart)",
        f"     outbox_topic: {_keys(results['outbox_topic'], set(faults.relay_duplicates))}"
        f"   (the lander deduped them: topic_bronze and topic_gold clean for them)",
        "  2. the direct write path committed an order and died before publishing it",
        f"     outbox_topic: {_keys(results['outbox_topic'], {faults.lost_event})}"
        f"   (orders_outbox clean: the order and its outbox row are one transaction)",
        "  3. CDC connector stopped, products changed, its slot dropped and recreated, no snapshot",
        f"     freshness (products_cdc, while it was down): slot {slot['slot_name']}"
        f" {'active' if slot['active'] else 'inactive'}: {slot['status']}, {slot['reason']}",
        f"     products_cdc: {_keys(results['products_cdc'])}",
        f"     products_index: {_keys(results['products_index'], cdc_keys)}   (cdc_index: none of them)",
        f"  4. the indexer skipped a poison message (product {faults.poison_product}:"
        f" {faults.dead_letters[0]['error']})",
        f"     cdc_index: {_keys(results['cdc_index'])}   (products_cdc: the topic has the event)",
        "  5. an offset range of the orders topic replayed (copied into it again)",
        f"     topic_gold: {_keys(results['topic_gold'])}   (counted twice: {twice})",
        f"     topic_bronze: {_keys(results['topic_bronze'])}",
        f"     stream health of the topic: {replays['count']} replayed event(s) by {replays['by']}:"
        f" {', '.join(sorted(replays['sample']))}",
    ]
    return out


def repair_lines(repaired: dict[str, Any]) -> list[str]:
    out = ["  repair, where a write can fix it:"]
    how = {
        "outbox_topic": "the missing event re-published",
        "cdc_index": "the index from the topic state",
        "products_index": "the index from Postgres",
    }
    for name, (outcome, after) in repaired.items():
        c = outcome.counts
        state = "clean" if after.clean else f"still {_keys(after)}"
        out.append(
            f"     {name}: {how.get(name, name)}: applied {c['applied']}, failed {c['failed']} -> {state}"
        )
        out += [f"       ({e})" for e in outcome.errors]
    return out


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
    stream_lines: list[str] = []
    if stores and os.environ.get("SEAMLINE_PG_DSN"):
        store_results, store_expected = contract_demo(Path(workdir))
        results |= store_results
        expected |= store_expected
        stream = pipeline_demo(Path(workdir))
        if stream is not None:
            results |= stream[0]
            expected |= stream[1]
            stream_lines = stream[2]
    print(summary(results))
    ok = True
    for name, result in results.items():
        if not result.clean:
            print(f"\n{name}:")
            print(differences(result))
        if found(result) != expected[name]:
            ok = False
            print(f"  !! expected {sorted(expected[name], key=str)}, found {sorted(found(result), key=str)}")
    if stream_lines:
        print("\n" + "\n".join(stream_lines))
    print("\ndemo: every injected drift was found, and nothing else" if ok else "\ndemo: UNEXPECTED RESULT")
    page = html_report(results, started, Path(workdir) / "report.html")
    print(f"\nHTML report: {page.resolve()}")
    if stores and os.environ.get("SEAMLINE_PG_DSN"):
        contract = Path(workdir) / "contract.yaml"
        print(f"\nThe stores were reconciled through {contract}; try also:")
        print(f"  seamline freshness {contract}")
        print(f"  seamline lineage {contract} --chain revenue")
        print(f"  seamline check {contract} --seam products_search --json report.json")
        if stream_lines:
            print(f"  seamline lineage {Path(workdir) / 'pipeline.yaml'} --chain orders")
    return 0 if ok else 1
