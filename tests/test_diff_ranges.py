"""The diff pass's pushed-down ranges against the real Postgres and OpenSearch (issue 13).

A single integer key is cut into ranges by interpolating the Postgres statistics; where a side is
OpenSearch (which fetches every document of a re-read range), the ranges are cut finer (about
ROWS_PER_REFETCHED_RANGE rows each, one leaf each), so the diff pass fetches only the few documents
of mismatched leaves. Postgres -> Postgres, where both sides read only a re-read range's rows
(RowSeekPushdown: the key index walked once per range), is cut at ~4 rows a range
(FINE_ROWS_PER_PUSHED_RANGE), one leaf each, where other keys and stores keep ~32 rows in two
leaves. (The key sample is shaped like the statistics of a large table, see StatsLikeALargeTable.)
The result must not depend on the cut:

- a Postgres -> OpenSearch seam (key field `id`) has one leaf per range and finds exactly the drift
  injected at the range edges (the key equal to a boundary, the last key below it, a key added in
  the gap before it) and in the first and last (open) ranges;
- its OpenSearch diff pass fetches only the documents under mismatched leaves (one leaf per range);
- with the index's batches kept from the hash pass (Options.retain_bytes, the default) the index is
  read once and the differences are the same; past the budget the diff fetches its ranges again;
- a document without the key is still one line ValueParseError (the full read keeps it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pytest

import seamline as sl
from seamline import engine
from seamline.engine import ROWS_PER_REFETCHED_RANGE, Options
from seamline.exceptions import ValueParseError
from seamline.stores.opensearch import OpenSearchReader
from seamline.stores.postgres import PostgresSource
from seamline.stores.protocols import ScanRequest

pytestmark = pytest.mark.services

N = 40_000
STEP = 3  # keys 7, 10, 13, ...: gaps between keys, so a key can be added anywhere
FIRST = 7
MAPPING = {"id": {"type": "long"}, "name": {"type": "keyword"}, "qty": {"type": "long"}}


def _doc(key: int) -> dict[str, Any]:
    return {"id": key, "name": f"item-{key}", "qty": key % 1000}


class StatsLikeALargeTable(PostgresSource):
    """The real Postgres source, its key sample shaped like the statistics of a table larger than
    ANALYZE's sample (as bench_stores_src's 1M rows: histogram bounds, the true min and max just
    outside the first and last; here 11 bounds for 40k rows): the ranges interpolated between them
    come out fewer than rows/32 (the gaps at the ends hold fewer points than asked), so 2 leaves
    each unless they are cut finer. Reads, counts and pushed-down ranges are the real table's."""

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        keys = [FIRST + STEP * i for i in range(N)]
        histogram = [keys[1 + i * (N - 3) // 10] for i in range(11)]
        return pa.table({"id": pa.array([keys[0], *histogram, keys[-1]], pa.int64())})


class CountingOpens(OpenSearchReader):
    """The real OpenSearch reader, counting the scans it opens (one per pass that reads it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[ScanRequest] = []

    def open(self, request: ScanRequest) -> list[Any]:
        self.opened.append(request)
        return super().open(request)


class Seam:
    """A Postgres table and an OpenSearch index holding the same N rows; both dropped afterwards."""

    def __init__(self, dsn: str, url: str) -> None:
        import adbc_driver_postgresql.dbapi as pgdbapi
        from opensearchpy import OpenSearch, helpers

        tag = uuid.uuid4().hex[:8]
        self.dsn, self.url = dsn, url
        self.table, self.index = f"sl_ranges_{tag}", f"sl-ranges-{tag}"
        self.keys = [FIRST + STEP * i for i in range(N)]
        self.pg = pgdbapi.connect(dsn, autocommit=True)
        rows = pa.table({k: [_doc(key)[k] for key in self.keys] for k in MAPPING})
        with self.pg.cursor() as cur:
            cur.execute(f"CREATE TABLE {self.table} (id bigint PRIMARY KEY, name text, qty bigint)")
            cur.adbc_ingest(self.table, rows, mode="append")
            cur.execute(f"ANALYZE {self.table}")
        self.os = OpenSearch(hosts=[url], timeout=120)
        self.os.indices.create(
            index=self.index,
            body={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": MAPPING},
            },
        )
        helpers.bulk(
            self.os,
            ({"_index": self.index, "_id": str(k), "_source": _doc(k)} for k in self.keys),
            chunk_size=5000,
            refresh="wait_for",
        )

    def reconcile(self, retain_bytes: int = 0) -> sl.ReconcileResult:
        """Without `retain_bytes` the diff re-reads the index by pushed-down ranges (what these
        tests check); with it the OpenSearch side's batches are kept from the hash pass."""
        self.target = CountingOpens(self.url, self.index, key_field="id")
        return sl.reconcile(
            StatsLikeALargeTable(self.dsn, self.table),
            self.target,
            key="id",
            options=Options(retain_bytes=retain_bytes),
        )

    def close(self) -> None:
        try:
            self.os.indices.delete(index=self.index, ignore=[404])
            self.os.close()
        finally:
            with self.pg.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.table}")
            self.pg.close()


@pytest.fixture
def seam(pg_dsn: str, opensearch_url: str) -> Iterator[Seam]:
    s = Seam(pg_dsn, opensearch_url)
    try:
        yield s
    finally:
        s.close()


def test_ranges_are_one_leaf_each_and_the_drift_at_their_edges_is_found_exactly(seam: Seam) -> None:
    from opensearchpy import helpers

    clean = seam.reconcile()
    assert clean.clean
    out = clean.output
    # interpolated from the statistics: ~N/32 ranges would get 2 leaves each; cut as fine as leaves
    # of about 4 rows
    assert out.partitioner.fanout_bits == 0
    assert out.bounds is not None and out.bounds.num_rows > N // 8
    bounds = sorted(out.bounds.column(0).to_pylist())
    # Postgres -> Postgres: both sides read only a range's rows (an integer key's index walked per
    # range), so ranges of ~4 rows, one leaf each; a text key's ranges are merged into covering
    # spans, so it keeps the coarser cut
    source = StatsLikeALargeTable(seam.dsn, seam.table)
    assert source.seeks_range_rows(["id"]) and not source.seeks_range_rows(["name"])
    alone = sl.reconcile(source, sl.postgres(seam.dsn, seam.table), key="id")
    assert alone.clean and alone.output.partitioner.fanout_bits == 0
    assert alone.output.bounds is not None and N // 8 < alone.output.bounds.num_rows < N // 2
    # and never more than MAX_PUSHED_RANGES of them (each is a leaf a pass holds, 48 bytes a side)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "MAX_PUSHED_RANGES", N // 64)
        capped = sl.reconcile(source, sl.postgres(seam.dsn, seam.table), key="id")
    assert capped.clean and capped.output.bounds is not None
    assert N // 128 < capped.output.bounds.num_rows <= N // 64

    present = set(seam.keys)
    changed: set[int] = set()
    missing: set[int] = set()
    extra: set[int] = set()
    for i, b in enumerate(bounds[10:-10:97]):
        below = max(k for k in (b - 1, b - 2, b - 3) if k in present)  # the last key below the boundary
        at = b if b in present else None  # the first key of the range, when it is one
        gap = next(k for k in (b, b + 1, b + 2) if k not in present)  # a key the source lacks
        if at is not None:
            (changed if i % 2 else missing).add(at)
        (missing if i % 2 else changed).add(below)
        extra.add(gap)
    # and in the open first and last ranges
    changed |= {seam.keys[0], seam.keys[-1]}
    extra |= {FIRST - 5, seam.keys[-1] + 1}
    actions: list[dict[str, Any]] = [
        {"_op_type": "update", "_index": seam.index, "_id": str(k), "doc": {"qty": -1}} for k in changed
    ]
    actions += [{"_op_type": "delete", "_index": seam.index, "_id": str(k)} for k in missing]
    actions += [{"_index": seam.index, "_id": str(k), "_source": _doc(k)} for k in extra]
    helpers.bulk(seam.os, actions, refresh="wait_for")

    result = seam.reconcile()
    found = {(row["id"], row["kind"]) for row in result.diffs.iter_rows(named=True)}
    expected = (
        {(k, "changed") for k in changed} | {(k, "missing") for k in missing} | {(k, "extra") for k in extra}
    )
    assert found == expected
    assert result.counts["changed"] == len(changed)
    # one leaf per range of ~ROWS_PER_REFETCHED_RANGE rows: the OpenSearch diff pass fetches the
    # documents of the mismatched leaves only (ranges of 32 rows, 2 leaves each, fetched ~16 each)
    diff_rows = sum(p["rows"] for p in result.passes if p["kind"] == "diff" and p["side"] == "target")
    assert ROWS_PER_REFETCHED_RANGE <= 4 and diff_rows <= len(expected) * 8
    assert [r.ranges is None for r in seam.target.opened] == [True, False]

    # Kept from the hash pass (the default budget): the same differences, and the index is read
    # once, the diff taking the mismatched leaves' rows from memory
    kept = seam.reconcile(retain_bytes=Options().retain_bytes)
    assert {(row["id"], row["kind"]) for row in kept.diffs.iter_rows(named=True)} == expected
    assert kept.counts == result.counts
    assert [r.ranges for r in seam.target.opened] == [None]
    # a budget the index does not fit in keeps nothing: the diff fetches its ranges again
    over = seam.reconcile(retain_bytes=100_000)
    assert over.counts == result.counts
    assert [r.ranges is None for r in seam.target.opened] == [True, False]


def test_a_document_without_the_key_is_still_a_value_error(seam: Seam) -> None:
    seam.os.index(index=seam.index, id="no-key", body={"name": "orphan", "qty": 1}, refresh="wait_for")
    with pytest.raises(ValueParseError) as exc:
        seam.reconcile(retain_bytes=Options().retain_bytes)
    assert "NULL" in str(exc.value) and "\n" not in str(exc.value)
