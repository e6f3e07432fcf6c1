"""Repair of an OpenSearch copy of a Postgres table, against the real stores: drift repaired and
re-verified, idempotent re-apply, the max_fraction guard, the _id == key convention, a live pipeline
writing newer versions during the repair, and a repair killed mid-way then applied again.

Every test uses uniquely named tables/indexes and removes them afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from repair_helpers import HELPERS, Pg, Search, apply_under_live_writer, drift, id_list, micros

import seamline as sl
from seamline.repair.plan import RepairPlan

pytestmark = pytest.mark.services

MS = sl.Compare(timestamp_precision="ms")  # an OpenSearch `date` keeps milliseconds


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Pg]:
    db = Pg(pg_dsn)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def search(opensearch_url: str) -> Iterator[Search]:
    s = Search(opensearch_url)
    try:
        yield s
    finally:
        s.close()


def seam(pg: Pg, search: Search, source: str, index: str, key: str = "field") -> sl.ReconcileResult:
    target = sl.opensearch(search.url, index, key_field="id" if key == "field" else None)
    return sl.reconcile(
        sl.postgres(pg.dsn, source),
        target,
        key="id" if key == "field" else {"id": "_id"},
        compare=MS,
        version="updated_at",
    )


def leak(search: Search, index: str, extra: list[int]) -> None:
    """Deletes never delivered: documents the source no longer has."""
    # a sub-millisecond version: the plan reads it at ms (a `date`), the document version is exact
    old = dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    for i in extra:
        a = Search.action(index, {"id": i, "name": f"gone {i}", "price": 1, "updated_at": old})
        search.client.index(
            index=index,
            id=a["_id"],
            body=a["_source"],
            params={"version": a["_version"], "version_type": "external_gte"},
        )
    search.client.indices.refresh(index=index)


@pytest.mark.parametrize("key", ["field", "_id"])
def test_drift_repaired_verified_and_idempotent(pg: Pg, search: Search, key: str) -> None:
    source = pg.products(300)
    changed, missing, extra = [10, 11, 50, 120, 299], [7, 8, 200], [1001, 1002]
    index = search.copy(pg, source, skip=missing)
    drift(pg, source, changed)
    leak(search, index, extra)

    result = seam(pg, search, source, index, key)
    assert {k: result.counts[k] for k in ("changed", "missing", "extra", "duplicate")} == {
        "changed": 5,
        "missing": 3,
        "extra": 2,
        "duplicate": 0,
    }, result.counts
    plan = result.plan_repair()
    assert plan.counts == {"upsert": 8, "delete": 2, "dedupe": 0}
    assert plan.version == "updated_at"

    outcome = plan.apply()
    assert outcome.counts == {"applied": 10, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified and not outcome.errors

    rows = {r["id"]: r for r in pg.rows(f"SELECT * FROM {source} WHERE id IN ({id_list(changed + missing)})")}
    docs = search.get(index, [*changed, *missing, *extra])
    assert set(docs) == {str(i) for i in changed + missing}  # extras deleted
    for i in changed + missing:
        doc = docs[str(i)]
        # the document version is the source version (us), the contract of external versioning
        assert doc["_version"] == micros(rows[i]["updated_at"])
        assert doc["_source"]["name"] == rows[i]["name"]
        assert doc["_source"]["price"] == float(rows[i]["price"])
        if key == "field" or i in changed:  # a new document of the _id seam has no id field
            assert doc["_source"]["id"] == i
    for i in changed:  # fields outside the seam survive the repair
        assert docs[str(i)]["_source"]["description"] == "kept"

    again = plan.apply()  # the same plan again: harmless, nothing newer overwritten
    assert again.counts == {"applied": 10, "skipped_newer": 0, "failed": 0}, again.errors
    assert again.verified
    assert {k: d["_version"] for k, d in search.get(index, changed).items()} == {
        k: d["_version"] for k, d in docs.items() if int(k) in changed
    }
    assert seam(pg, search, source, index, key).clean


def test_max_fraction_refuses_and_writes_nothing(pg: Pg, search: Search) -> None:
    source = pg.products(100)
    index = search.copy(pg, source)
    drift(pg, source, list(range(1, 21)))
    result = seam(pg, search, source, index)
    plan = result.plan_repair(max_fraction=0.1)
    with pytest.raises(sl.RepairRefusedError) as err:
        plan.apply()
    message = str(err.value)
    assert "\n" not in message and "max_fraction" in message and "20 of 100" in message, message
    docs = search.get(index, [1, 20])
    assert not any(d["_source"]["name"].endswith(" v2") for d in docs.values())
    assert seam(pg, search, source, index).counts["changed"] == 20


def test_id_must_be_the_key(pg: Pg, search: Search) -> None:
    """With key_field="id" the writer writes each document under _id = id: an index whose documents
    use other ids is refused before anything is written."""
    source = pg.products(50)
    index = search.copy(pg, source)
    doc = search.get(index, [5])["5"]
    search.client.delete(index=index, id="5", refresh="wait_for")
    search.client.index(index=index, id="five", body=doc["_source"], refresh="wait_for")
    drift(pg, source, [6])
    result = seam(pg, search, source, index)
    assert result.counts["changed"] == 1
    with pytest.raises(sl.RepairRefusedError, match="_id 'five' holds id=5"):
        result.plan_repair().apply()
    assert not search.get(index, [6])["6"]["_source"]["name"].endswith(" v2")


def test_dedupes_cannot_be_applied_to_opensearch(pg: Pg, search: Search) -> None:
    """_id is unique: a plan with dedupes (not possible from a reconcile of an index that keeps the
    _id == key convention) counts them failed, with the reason."""
    source = pg.products(10)
    index = search.copy(pg, source)
    row = {"id": 3, "name": "x", "price": 1, "updated_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("price", pa.int64()),
            ("updated_at", pa.timestamp("us", "UTC")),
        ]
    )
    plan = RepairPlan(
        seam="hand-made",
        key=["id"],
        columns=["name", "price", "updated_at"],
        version="updated_at",
        upserts=schema.empty_table(),
        deletes=schema.empty_table().select(["id", "updated_at"]),
        dedupes=pa.Table.from_pylist([row], schema),
        target_rows=10,
        max_fraction=1.0,
    )
    outcome = plan.apply(target=sl.opensearch(search.url, index, key_field="id"))
    assert outcome.counts == {"applied": 0, "skipped_newer": 0, "failed": 1}
    assert len(outcome.errors) == 1 and "unique _id" in outcome.errors[0]
    assert search.get(index, [3])["3"]["_source"]["name"] == "item 3"


def test_live_writer_never_loses_to_the_repair(pg: Pg, search: Search, tmp_path: Path) -> None:
    """While the repair runs, the live pipeline keeps writing some of the same keys (source and
    copy, newer versions). Afterwards every key holds its newest version."""
    n = 6000
    source = pg.products(n)
    changed = [i for i in range(1, 5601) if i % 4 != 0]  # 4200 stale documents
    missing, extra = list(range(5801, 5901)), list(range(10001, 10041))
    index = search.copy(pg, source, skip=missing)
    drift(pg, source, changed)
    leak(search, index, extra)
    result = seam(pg, search, source, index)
    plan = result.plan_repair(max_fraction=1.0)
    assert plan.counts == {"upsert": len(changed) + len(missing), "delete": len(extra), "dedupe": 0}

    live = changed[::30] + missing[::5] + extra[::4]
    log = tmp_path / "writer.json"
    writer_args = [
        "--dsn",
        pg.dsn,
        "--source",
        source,
        "--target-kind",
        "opensearch",
        "--target",
        index,
        "--url",
        search.url,
    ]
    outcome, last = apply_under_live_writer(plan, writer_args, live, log)

    assert outcome.counts["failed"] == 0, outcome.errors
    assert outcome.counts["skipped_newer"] > 0  # newer writes won, as they must
    assert outcome.counts["applied"] + outcome.counts["skipped_newer"] == plan.touched
    docs = search.get(index, live)
    rows = {r["id"]: r for r in pg.rows(f"SELECT * FROM {source} WHERE id IN ({id_list(live)})")}
    for k in live:  # the live pipeline's last write is what every touched key holds
        doc = docs[str(k)]
        assert doc["_version"] == last[k] == micros(rows[k]["updated_at"]), k
        assert doc["_source"]["name"] == rows[k]["name"] and doc["_source"]["description"] == "live"
    search.client.indices.refresh(index=index)  # the pipeline's last writes, visible to a search
    assert seam(pg, search, source, index).clean


def test_killed_mid_apply_then_applied_again_converges(pg: Pg, search: Search, tmp_path: Path) -> None:
    n = 20_000
    source = pg.products(n)
    index = search.copy(pg, source)
    pg.execute(f"UPDATE {source} SET name = name || ' v2', updated_at = updated_at + interval '1 hour'")
    result = seam(pg, search, source, index)
    assert result.counts["changed"] == n
    plan = result.plan_repair(max_fraction=1.0)
    plan.save(tmp_path / "plan")
    versions = plan.upsert_versions().to_pylist()
    first, final = plan.upserts.column("id")[0].as_py(), plan.upserts.column("id")[-1].as_py()

    child = subprocess.Popen(
        [sys.executable, str(HELPERS), "apply-plan", "--plan", str(tmp_path / "plan")]
        + ["--target-kind", "opensearch", "--target", index, "--url", search.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            doc = search.client.get(index=index, id=str(first))  # realtime: no refresh needed
            if doc["_version"] == versions[0]:  # the first chunk is in the store
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        assert child.wait(timeout=30) == -signal.SIGKILL, "apply() ended before it could be killed"
    finally:
        if child.poll() is None:
            child.kill()
    assert search.client.get(index=index, id=str(final))["_version"] != versions[-1]  # half done

    outcome = RepairPlan.load(tmp_path / "plan").apply(
        target=sl.opensearch(search.url, index, key_field="id")
    )
    assert outcome.counts == {"applied": n, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert seam(pg, search, source, index).clean
