"""The shop as a real stream pipeline (``seamline.demo_pipeline``), broken five ways, and the contract
naming each fault at its hop: real Postgres, Kafka, Debezium (its launcher in a process of its own),
OpenSearch and an Iceberg SQL catalog on local files; nothing mocked.

The pipeline is built once for the module (unique names per run) and the five faults are injected
one after another (see ``seamline/demo_pipeline/scenario.py``); each test then checks one fault at
the seams it must show at, exactly, and its absence where it must not. The repair test runs last: it
writes (re-publishes the lost event, repairs the index) and checks the seams converge.
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import seamline as sl
from seamline.demo import found
from seamline.demo_pipeline import Faults, Pipeline, unavailable

pytestmark = pytest.mark.services

PRODUCTS = 60  # ids 1..60 before the faults


@dataclass
class Run:
    pipeline: Pipeline
    faults: Faults
    results: dict[str, sl.ReconcileResult]


@pytest.fixture(scope="module")
def run(
    pg_dsn: str, kafka_bootstrap: str, opensearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    import os

    reason = unavailable({**os.environ, "SEAMLINE_PG_DSN": pg_dsn, "SEAMLINE_OPENSEARCH_URL": opensearch_url})
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    pipeline = Pipeline(pg_dsn, kafka_bootstrap, opensearch_url, tmp_path_factory.mktemp("pipeline"), tag)
    try:
        pipeline.build()
        assert {name: found(r) for name, r in pipeline.check().items() if not r.clean} == {}  # clean first
        faults = pipeline.inject_faults()
        yield Run(pipeline, faults, pipeline.check())
    finally:
        pipeline.drop()


def kinds(run: Run, seam: str) -> set[tuple[Any, str]]:
    return found(run.results[seam])


def health(result: sl.ReconcileResult, side: str) -> dict[str, Any]:
    detail: dict[str, Any] = result.to_dict()["as_of"][side]["detail"]
    return detail["health"]


def test_a_relay_killed_after_publishing_shows_as_duplicates_at_the_outbox_seam(run: Run) -> None:
    # orders 120 and 121: the batch of two the killed relay published and never marked
    assert run.faults.relay_duplicates == ["ord-1120-placed", "ord-1121-placed"]
    dups = {(e, "duplicate") for e in run.faults.relay_duplicates}
    assert dups <= kinds(run, "outbox_topic")
    # the lander deduped them: bronze and gold are right for them, the outbox holds each event once
    for seam in ("topic_bronze", "orders_outbox"):
        assert not {k for k, _ in kinds(run, seam)} & set(run.faults.relay_duplicates), seam
    assert set(run.faults.relay_duplicates) <= set(run.pipeline.lander.deduped)


def test_a_direct_write_that_died_is_missing_at_the_outbox_seam(run: Run) -> None:
    assert run.faults.lost_event == "ord-1126-placed"
    # the outbox seam, exactly: the lost event, the relay's duplicates and the replayed range
    replayed = {(e, "duplicate") for e in run.faults.replayed}
    assert kinds(run, "outbox_topic") == {("ord-1126-placed", "missing")} | replayed | {
        ("ord-1120-placed", "duplicate"),
        ("ord-1121-placed", "duplicate"),
    }
    # committed with its order in one transaction: the hop before the outbox is clean
    assert run.results["orders_outbox"].clean
    assert run.results["orders_outbox"].counts["source_rows"] == 160
    # downstream of the topic the event never existed: bronze and gold agree with the topic about it
    assert "ord-1126-placed" not in {k for k, _ in kinds(run, "topic_bronze")}


def test_a_dropped_slot_is_reported_and_the_lost_changes_are_named_at_the_cdc_and_index_seams(
    run: Run,
) -> None:
    slot = run.faults.slot_during_outage
    # freshness saw the stopped connector's slot holding WAL back, past the contract's 16kB
    assert slot["slot_name"] == run.pipeline.connector.slot and slot["active"] is False
    assert slot["lag_bytes"] > 16 * 1024 and slot["status"] == "error" and slot["seam_status"] == "error"
    lost = {(3, "changed"), (4, "changed"), (9, "extra"), (61, "missing"), (62, "missing")}
    assert kinds(run, "products_cdc") == lost
    # the end-to-end reconcile shows them too (and the poison message's product), the indexer's
    # own hop none of them: it applied everything the topic had
    assert kinds(run, "products_index") == lost | {(7, "changed")}
    assert not {k for k, _ in kinds(run, "cdc_index")} & {k for k, _ in lost}
    # product 20 changed after the restart: streamed and indexed
    assert 20 not in {k for k, _ in kinds(run, "products_index")}


def test_a_skipped_poison_message_is_index_drift_with_the_topic_clean(run: Run) -> None:
    assert [d["key"] for d in run.faults.dead_letters] == [{"id": 7}]
    assert kinds(run, "cdc_index") == {(7, "changed")}
    assert 7 not in {k for k, _ in kinds(run, "products_cdc")}  # the topic has the event
    # the index kept the version before the skipped event; product 8, changed after it, is current
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[run.pipeline.url])
    doc = client.get(index=run.pipeline.index, id="7")
    assert doc["_version"] == 1 and doc["_source"]["price"] is not None
    assert client.get(index=run.pipeline.index, id="8")["_version"] == 2


def test_a_replayed_offset_range_double_counts_gold_and_is_named_in_the_stream_health(run: Run) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    from seamline.demo_pipeline.consumers import lake_catalog

    replayed = run.faults.replayed
    assert len(replayed) == 3 and not set(replayed) & set(run.faults.relay_duplicates)
    assert kinds(run, "topic_bronze") == {(e, "duplicate") for e in replayed}
    # the lander consumed everything, the copies included: its group has no lag
    group = run.results["topic_bronze"].to_dict()["as_of"]["source"]["detail"]["group"]
    assert group["lag"] == 0 and sum(p["end"] for p in group["partitions"].values()) == 164
    assert kinds(run, "topic_gold") == {(day, "changed") for day in run.faults.replayed_revenue}
    # the stream health of the events read for gold names every copied event id (the relay's too)
    replays = health(run.results["topic_gold"], "source")["replayed"]
    assert replays["by"] == "event_id" and replays["count"] == 5
    assert set(replays["sample"]) == set(replayed) | set(run.faults.relay_duplicates)

    # gold against the orders themselves: the replayed amounts twice, every other day exact
    p = run.pipeline
    with pgdb.connect(p.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT (ordered_at AT TIME ZONE 'UTC')::date, sum(amount) FROM {p.shop.orders} "
            f"WHERE order_id <> {int(run.faults.lost_event.split('-')[1])} GROUP BY 1"
        )
        truth = {day: decimal.Decimal(total) for day, total in cur.fetchall()}
    gold = {
        r["day"]: r["revenue"]
        for r in lake_catalog(p.lander.lake).load_table("shop.revenue_gold").scan().to_arrow().to_pylist()
    }
    assert set(gold) == set(truth) and len(gold) >= 4
    for day, total in truth.items():
        assert gold[day] == total + run.faults.replayed_revenue.get(day, decimal.Decimal(0)), day


def test_lineage_names_the_first_hop_that_drifted(run: Run) -> None:
    from seamline.lineage import walk

    contract = run.pipeline.contract()
    orders = walk(contract, "orders").to_dict()
    assert orders["diverged_at"] == "outbox_topic"
    assert [layer["verdict"] for layer in orders["layers"][:2]] == ["clean", "drift"]
    topic_read = orders["layers"][1]["as_of"]["target"]["detail"]
    assert sum(topic_read["end_offsets"].values()) == 164  # 160 orders - 1 lost + 2 + 3 copies
    products = walk(contract, "products").to_dict()
    assert products["diverged_at"] == "products_cdc"


def test_repair_converges_where_a_write_can_fix_it(run: Run) -> None:
    """Runs last: it writes. The outbox hop gets its lost event back (its duplicates are the log's),
    the index is repaired from the topic state, then from Postgres."""
    p = run.pipeline
    repaired = p.repair()

    outcome, after = repaired["outbox_topic"]
    assert outcome.counts["applied"] == 1 and outcome.counts["failed"] == 5
    assert any("consumers must dedupe" in e for e in outcome.errors)
    dups = {(e, "duplicate") for e in run.faults.relay_duplicates + run.faults.replayed}
    assert found(after) == dups  # not repairable in the log, reported as such
    events = sl.kafka(p.bootstrap, p.orders_topic)._load().to_pylist()
    again = [e for e in events if e["event_id"] == run.faults.lost_event]
    assert len(again) == 1 and again[0]["_headers"][0]["key"] == "seamline-repair"
    assert again[0]["_key"] == str(int(run.faults.lost_event.split("-")[1]))
    # the lander took the re-published event: bronze and gold still differ only by the replay
    results = p.check()
    assert found(results["topic_bronze"]) == {(e, "duplicate") for e in run.faults.replayed}
    assert found(results["topic_gold"]) == {(d, "changed") for d in run.faults.replayed_revenue}

    outcome, after = repaired["cdc_index"]  # from the topic state: the skipped event applied
    assert outcome.verified and outcome.counts == {"applied": 1, "skipped_newer": 0, "failed": 0}
    outcome, after = repaired["products_index"]  # from Postgres: what the CDC hop lost
    assert outcome.verified and outcome.counts == {"applied": 5, "skipped_newer": 0, "failed": 0}
    assert after.clean
    # the index is now ahead of the topic by exactly the changes the CDC hop lost: the topic, an
    # immutable log, is the CDC hop's to fix (a new snapshot), not the index's
    assert found(results["products_cdc"]) == {
        (3, "changed"),
        (4, "changed"),
        (9, "extra"),
        (61, "missing"),
        (62, "missing"),
    }
    assert found(p.check()["cdc_index"]) == {
        (3, "changed"),
        (4, "changed"),
        (9, "missing"),
        (61, "extra"),
        (62, "extra"),
    }


def test_the_pipeline_says_why_it_cannot_run() -> None:
    from seamline.demo_pipeline.cdc import launcher_missing

    env = {"SEAMLINE_PG_DSN": "postgresql://u@h/db", "SEAMLINE_OPENSEARCH_URL": "http://h:9200"}
    assert unavailable(env) == "SEAMLINE_KAFKA_BOOTSTRAP is not set"
    down = unavailable({**env, "SEAMLINE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert down == (launcher_missing() or "kafka at 127.0.0.1:1 does not answer")


def test_the_pipeline_contract_ships_and_is_valid() -> None:
    from seamline.contract import load
    from seamline.demo_pipeline import CONTRACT

    env = {
        "SEAMLINE_PG_DSN": "postgresql://x@h/db",
        "SEAMLINE_OPENSEARCH_URL": "http://h:9200",
        "SEAMLINE_KAFKA_BOOTSTRAP": "h:9092",
    }
    c = load(CONTRACT, env=env)
    assert list(c.seams) == [
        "orders_outbox",
        "outbox_topic",
        "topic_bronze",
        "topic_gold",
        "products_cdc",
        "cdc_index",
        "products_index",
    ]
    assert c.chains == {
        "orders": ["orders_outbox", "outbox_topic", "topic_bronze", "topic_gold"],
        "products": ["products_cdc", "cdc_index"],
    }
    assert c.seams["outbox_topic"].target.topic == "shop-demo.orders"  # ${SEAMLINE_SHOP:-demo}


def test_the_demo_says_in_one_line_when_the_stream_part_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from seamline import demo

    monkeypatch.delenv("SEAMLINE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("SEAMLINE_PG_DSN", "postgresql://u@h/db")
    monkeypatch.setenv("SEAMLINE_OPENSEARCH_URL", "http://h:9200")
    assert demo.pipeline_demo(tmp_path) is None
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "stream pipeline: skipped (SEAMLINE_KAFKA_BOOTSTRAP is not set; "
        "scripts/services.sh up kafka debezium starts it)"
    ]
