"""Repair of an OpenSearch copy of a Postgres table, against the real stores: what only OpenSearch
does (the _id == key convention, the key field written in an `_id` seam, no dedupes). The guarantees
every store gives are in tests/stores/test_conformance.py.

Every test uses uniquely named tables/indexes and removes them afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest
from repair_helpers import Pg, Search, drift, id_list, micros

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


def test_repair_keyed_on_id_writes_the_key_field_too(pg: Pg, search: Search) -> None:
    """Keyed `{id: _id}` over documents that also hold `id` (issue 10 item 3): the documents a repair
    inserts carry `id` like the pipeline's, so a seam keyed on the field reads them. (The guarantees
    every store gives, with the key in a field, are in tests/stores/test_conformance.py.)"""
    key = "_id"
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
        assert doc["_source"]["id"] == i  # inserted documents too
    for i in changed:  # fields outside the seam survive the repair
        assert docs[str(i)]["_source"]["description"] == "kept"

    again = plan.apply()  # the same plan again: harmless, nothing newer overwritten
    assert again.counts == {"applied": 10, "skipped_newer": 0, "failed": 0}, again.errors
    assert again.verified
    assert {k: d["_version"] for k, d in search.get(index, changed).items()} == {
        k: d["_version"] for k, d in docs.items() if int(k) in changed
    }
    assert seam(pg, search, source, index, key).clean
    assert seam(pg, search, source, index, "field").clean  # keyed on the field: no NULL key


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
