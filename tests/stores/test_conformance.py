"""The store conformance suite: every guarantee a store adapter gives, written once, run against every
registered store type that can be written (the `store` fixture, `harnesses.py`), on the real servers.

- every logical type is read and canonicalised alike (a reconcile against the same values in memory
  is clean; one changed value per column is found, in that column);
- range pushdown reads exactly the rows of a full read filtered to the ranges;
- the pinned snapshot ignores writes made after `pin`;
- freshness: the newest version, and how many rows are newer than a value;
- a repair is verified and idempotent (also when the plan is loaded from a file), keeps columns
  outside the seam, and writes nothing when `max_fraction` refuses it;
- a live pipeline writing newer versions never loses to a repair;
- a repair killed mid-apply converges when the saved plan is applied again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from harnesses import Harness
from repair_helpers import HELPERS, Pg, apply_under_live_writer, drift, id_list, micros

import seamline as sl
from seamline.repair.plan import RepairPlan
from seamline.stores.protocols import KeyRange, RangePushdown, Repairable, ScanRequest, Source, Versioned

pytestmark = pytest.mark.services

COLUMNS = ["name", "price", "updated_at"]
OLD = dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)  # sub-millisecond: read at ms by some


def seam(pg: Pg, store: Harness, source: str, name: str) -> sl.ReconcileResult:
    return sl.reconcile(
        sl.postgres(pg.dsn, source),
        store.target(name),
        key="id",
        columns=COLUMNS,
        compare=store.compare,
        version="updated_at",
    )


def rewritable(store: Harness) -> None:
    """The repair guarantees are for stores that take upserts and deletes."""
    if not store.rewritable:
        pytest.skip(f"{store.kind}: an immutable log; its repair re-publishes missing events (tested apart)")


def kinds(result: sl.ReconcileResult) -> dict[str, int]:
    return {k: result.counts[k] for k in ("changed", "missing", "extra", "duplicate")}


def read(source: Source, request: ScanRequest) -> pa.Table:
    streams = source.open(request)
    return pa.concat_tables([pa.RecordBatchReader.from_stream(s).read_all() for s in streams])


# ==================================================================================== reading


def typed(n: int = 40) -> pa.Table:
    """One column per logical type, NULLs included; timestamps at ms (every store keeps ms)."""
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    rows = range(1, n + 1)
    return pa.table(
        {
            "id": pa.array(rows, pa.int64()),
            "i": pa.array([None if i % 9 == 0 else i * 1_000_003 - 2**40 for i in rows], pa.int64()),
            "f": pa.array([None if i % 8 == 0 else i / 7 for i in rows], pa.float64()),
            "s": pa.array([None if i % 7 == 0 else f"naïve {i} 日本" for i in rows], pa.string()),
            "b": pa.array([None if i % 6 == 0 else i % 2 == 0 for i in rows], pa.bool_()),
            "d": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in rows], pa.date32()),
            "ts": pa.array(
                [None if i % 5 == 0 else base + dt.timedelta(seconds=i, milliseconds=i) for i in rows],
                pa.timestamp("us", tz="UTC"),
            ),
            "dec": pa.array([Decimal(i * 101) / 100 for i in rows], pa.decimal128(12, 2)),
            "bin": pa.array([None if i % 4 == 0 else bytes([i, 0, 255]) for i in rows], pa.binary()),
        }
    )


def test_every_logical_type_is_read_and_canonicalised_alike(store: Harness) -> None:
    table = typed().select(["id", *store.types])
    name = store.name()
    store.create(name, table)
    same = sl.reconcile(sl.arrow(table), store.target(name), key="id")
    assert same.clean, same.diffs
    assert same.counts["source_rows"] == same.counts["target_rows"] == table.num_rows

    # one value changed per column, each in its own row: found, and in that column only
    changed = table
    for row, column in enumerate(store.types, start=1):
        values = changed.column(column).to_pylist()
        values[row] = values[row + 1]
        changed = changed.set_column(
            changed.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
        )
    result = sl.reconcile(sl.arrow(changed), store.target(name), key="id")
    assert kinds(result) == {"changed": len(store.types), "missing": 0, "extra": 0, "duplicate": 0}
    found = {r["id"]: r["columns"] for r in result.diffs.to_dicts()}
    assert found == {row + 1: [column] for row, column in enumerate(store.types, start=1)}


def test_range_pushdown_reads_exactly_the_ranges(store: Harness, pg: Pg) -> None:
    source = pg.products(300)
    name = store.copy(source)
    target = store.target(name)
    assert isinstance(target, RangePushdown) and target.can_push_down(["id"])
    ranges = [KeyRange(None, (3,)), KeyRange((10,), (20,)), KeyRange((50,), (51,)), KeyRange((250,), None)]
    try:
        target.pin()
        full = read(target, ScanRequest(columns=["id", "name"], key=["id"]))
        ranged = read(target, ScanRequest(columns=["id", "name"], key=["id"], ranges=ranges, parallelism=3))
        empty = read(target, ScanRequest(columns=["id", "name"], key=["id"], ranges=[]))
    finally:
        target.close()

    def inside(i: int) -> bool:
        return any((r.lo is None or i >= r.lo[0]) and (r.hi is None or i < r.hi[0]) for r in ranges)

    want = sorted((r["id"], r["name"]) for r in full.to_pylist() if inside(r["id"]))
    assert sorted((r["id"], r["name"]) for r in ranged.to_pylist()) == want
    assert len(want) == 2 + 10 + 1 + 51
    assert empty.num_rows == 0


def test_the_pinned_snapshot_ignores_later_writes(store: Harness, pg: Pg) -> None:
    source = pg.products(50)
    name = store.copy(source)
    target = store.target(name)
    request = ScanRequest(columns=["id", "name", "updated_at"], key=["id"])
    try:
        target.pin()
        before = read(target, request).sort_by("id")
        later = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        store.write(
            name, [{"id": i, "name": "later", "price": Decimal(1), "updated_at": later} for i in (1, 2, 99)]
        )
        assert read(target, request).sort_by("id").equals(before)
    finally:
        target.close()
    after = read(store.target(name), request)  # a new pin sees them
    assert after.num_rows == 51 and after.column("name").to_pylist().count("later") == 3


def test_freshness_values(store: Harness, pg: Pg) -> None:
    n = 40
    source = pg.products(n)
    name = store.copy(source)
    target = store.target(name)
    assert isinstance(target, Versioned)
    rows = {r["id"]: r["updated_at"] for r in pg.rows(f"SELECT id, updated_at FROM {source}")}
    unit = dt.timedelta(milliseconds=1) if store.compare.timestamp_precision == "ms" else dt.timedelta(0)

    def floor(t: dt.datetime) -> dt.datetime:
        return t - dt.timedelta(microseconds=t.microsecond % 1000) if unit else t

    try:
        newest = target.max_value("updated_at")
        assert newest == floor(rows[n])
        assert target.count_newer("updated_at", None) == n
        assert target.count_newer("updated_at", newest) == 0
        assert target.count_newer("updated_at", newest, inclusive=True) == 1
        k = 17
        assert target.count_newer("updated_at", floor(rows[k])) == n - k
        assert target.count_newer("updated_at", floor(rows[k]), inclusive=True) == n - k + 1
        with pytest.raises(sl.SchemaError, match="no_such"):
            target.max_value("no_such")
    finally:
        target.close()


# ===================================================================================== repair


def test_drift_repaired_verified_and_idempotent(store: Harness, pg: Pg, tmp_path: Path) -> None:
    rewritable(store)
    source = pg.products(300)
    changed, missing, extra = [10, 11, 50, 120, 299], [7, 8, 200], [1001, 1002]
    name = store.copy(source, skip=missing)
    drift(pg, source, changed)
    store.write(name, [{"id": i, "name": f"gone {i}", "price": Decimal(1), "updated_at": OLD} for i in extra])

    result = seam(pg, store, source, name)
    assert kinds(result) == {"changed": 5, "missing": 3, "extra": 2, "duplicate": 0}, result.counts
    plan = result.plan_repair()
    assert plan.counts == {"upsert": 8, "delete": 2, "dedupe": 0}
    assert isinstance(result.context.target, Repairable)

    outcome = plan.apply()
    assert outcome.counts == {"applied": 10, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified and not outcome.errors
    want = {r["id"]: r for r in pg.rows(f"SELECT * FROM {source} WHERE id IN ({id_list(changed + missing)})")}
    held = store.current(name, [*changed, *missing, *extra])
    assert set(held) == set(changed + missing)  # extras deleted
    for i, row in want.items():
        assert (held[i]["name"], held[i]["price"]) == (row["name"], float(row["price"])), i
        assert held[i]["version"] == micros(row["updated_at"]), i  # the source's version, exactly
    assert {held[i]["outside"] for i in changed} == {"kept"}  # a column outside the seam survives

    again = plan.apply()  # the same plan again: harmless, nothing rewritten to an older state
    assert again.counts == {"applied": 10, "skipped_newer": 0, "failed": 0}, again.errors
    assert again.verified
    assert store.current(name, [*changed, *missing, *extra]) == held
    assert seam(pg, store, source, name).clean

    plan.save(tmp_path / "plan")  # a loaded plan verifies against the rows and versions it carries
    loaded = RepairPlan.load(tmp_path / "plan").apply(target=store.target(name))
    assert loaded.counts == {"applied": 10, "skipped_newer": 0, "failed": 0} and loaded.verified


def test_max_fraction_refuses_and_writes_nothing(store: Harness, pg: Pg) -> None:
    rewritable(store)
    source = pg.products(100)
    name = store.copy(source)
    drift(pg, source, list(range(1, 21)))
    plan = seam(pg, store, source, name).plan_repair(max_fraction=0.1)
    before = store.current(name, list(range(1, 101)))
    with pytest.raises(sl.RepairRefusedError) as err:
        plan.apply()
    message = str(err.value)
    assert "\n" not in message and "max_fraction" in message and "20 of 100" in message, message
    assert store.current(name, list(range(1, 101))) == before
    assert seam(pg, store, source, name).counts["changed"] == 20


def _pipeline(pg: Pg, store: Harness, source: str, name: str, keys: list[int], rounds: int) -> dict[int, int]:
    """The live pipeline, in this process: newer versions of `keys` in the source AND the copy."""
    last: dict[int, int] = {}
    for r in range(rounds):
        for k in keys:
            name_, price = f"live {k} #{r}", f"{k % 97}.{r % 100:02d}"
            ts = pg.scalar(
                f"INSERT INTO {source} (id, name, price, updated_at) "
                "VALUES ($1, $2, $3::numeric, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET "
                "name = EXCLUDED.name, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at "
                "RETURNING updated_at",
                (k, name_, price),
            )
            row = {"id": k, "name": name_, "price": price, "updated_at": ts}
            store.write(name, [row])
            last[k] = micros(ts)
    return last


def test_a_live_writer_with_newer_versions_never_loses(store: Harness, pg: Pg, tmp_path: Path) -> None:
    rewritable(store)
    """While the repair runs (a separate process, where the store takes concurrent writers), or
    between the plan and its apply, the live pipeline writes some of the same keys with newer
    versions, in the source and the copy. Afterwards every key holds its newest version."""
    n = 6000 if store.live_pipeline else 600
    source = pg.products(n)
    changed = [i for i in range(1, n * 14 // 15 + 1) if i % 4 != 0]
    missing, extra = list(range(n * 29 // 30 + 1, n * 29 // 30 + n // 60 + 1)), list(range(10001, 10041))
    name = store.copy(source, skip=missing)
    drift(pg, source, changed)
    store.write(name, [{"id": i, "name": f"gone {i}", "price": Decimal(1), "updated_at": OLD} for i in extra])
    plan = seam(pg, store, source, name).plan_repair(max_fraction=1.0)
    assert plan.counts == {"upsert": len(changed) + len(missing), "delete": len(extra), "dedupe": 0}

    live = changed[::30] + missing[::5] + extra[::4]
    if store.live_pipeline:
        writer = ["--dsn", pg.dsn, "--source", source, "--target-kind", store.kind, "--target", name]
        if store.kind == "opensearch":
            writer += ["--url", store.spec(name)["args"][0]]
        outcome, last = apply_under_live_writer(plan, writer, live, tmp_path / "writer.json")
    else:
        last = _pipeline(pg, store, source, name, live, rounds=2)
        outcome = plan.apply(verify=False)

    assert outcome.counts["failed"] == 0, outcome.errors
    assert outcome.counts["skipped_newer"] > 0  # newer writes won, as they must
    assert outcome.counts["applied"] + outcome.counts["skipped_newer"] == plan.touched
    held = store.current(name, live)
    assert {k: r["version"] for k, r in held.items()} == last  # the pipeline's last write, everywhere
    assert seam(pg, store, source, name).clean


def test_a_repair_killed_mid_apply_converges_when_run_again(store: Harness, pg: Pg, tmp_path: Path) -> None:
    rewritable(store)
    n = 20_000
    source = pg.products(n)
    name = store.copy(source)
    pg.execute(f"UPDATE {source} SET name = name || ' v2', updated_at = updated_at + interval '1 hour'")
    result = seam(pg, store, source, name)
    assert result.counts["changed"] == n
    plan = result.plan_repair(max_fraction=1.0)
    plan.save(tmp_path / "plan")
    versions = plan.upsert_versions().to_pylist()
    ids = plan.upserts.column("id").to_pylist()

    child = subprocess.Popen(
        [sys.executable, str(HELPERS), "apply-plan", "--plan", str(tmp_path / "plan")]
        + ["--spec", json.dumps(store.spec(name))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "applying"
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if (
                not store.batched
                or store.current(name, [ids[0]]).get(ids[0], {}).get("version") == versions[0]
            ):
                os.kill(child.pid, signal.SIGKILL)  # a batched writer: the first batch is in the store
                break
            time.sleep(0.005)
        code = child.wait(timeout=60)
        if store.batched:
            assert code == -signal.SIGKILL, "apply() ended before it could be killed"
    finally:
        if child.poll() is None:
            child.kill()
    if store.batched:  # half done
        assert store.current(name, [ids[-1]])[ids[-1]]["version"] != versions[-1]

    outcome = RepairPlan.load(tmp_path / "plan").apply(target=store.target(name))
    assert outcome.counts == {"applied": n, "skipped_newer": 0, "failed": 0}, outcome.errors
    assert outcome.verified
    assert seam(pg, store, source, name).clean
