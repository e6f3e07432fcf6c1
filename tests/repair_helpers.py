"""Shared by tests/test_repair_opensearch.py and tests/test_repair_postgres.py: the real stores,
a products table as the system of record, its copies, and two child processes:

    python tests/repair_helpers.py writer ...      the live pipeline: keeps updating some keys in the
                                                   source AND the copy with strictly newer versions
    python tests/repair_helpers.py apply-plan ...  RepairPlan.load(dir).apply(target=...), to be killed

The live pipeline writes OpenSearch with external versions (version = updated_at in microseconds),
the contract that makes `version_type=external_gte` repairs safe (seamline.stores.opensearch.write).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
BASE = "2026-01-01 00:00:00+00"
HELPERS = Path(__file__)  # run as a script for the child processes

SOURCE_DDL = (
    "(id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), updated_at timestamptz NOT NULL)"
)
# the copy has a column outside the seam: a repair must keep it
TARGET_DDL = (
    "(id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), updated_at timestamptz NOT NULL, "
    "note text DEFAULT 'kept')"
)
OS_MAPPING = {
    "id": {"type": "long"},
    "name": {"type": "keyword"},
    "price": {"type": "double"},
    "updated_at": {"type": "date"},
    "description": {"type": "text"},  # outside the seam: a repair must keep it
}


def micros(ts: dt.datetime) -> int:
    """A timestamp as the integer version: microseconds since the epoch."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Pg:
    """An autocommit ADBC connection; `table()` hands out unique names, all dropped afterwards."""

    def __init__(self, dsn: str) -> None:
        import adbc_driver_postgresql.dbapi as pgdbapi

        self.dsn = dsn
        self.conn = pgdbapi.connect(dsn, autocommit=True)
        self.prefix = f"sl_repair_{uuid.uuid4().hex[:8]}"
        self.tables: list[str] = []

    def table(self, name: str) -> str:
        full = f"{self.prefix}_{name}"
        self.tables.append(full)
        return full

    def execute(self, sql: str, params: tuple[Any, ...] | None = None) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
        finally:
            cur.close()

    def rows(self, sql: str, params: tuple[Any, ...] | None = None) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            result: list[dict[str, Any]] = cur.fetch_arrow_table().to_pylist()
            return result
        finally:
            cur.close()

    def scalar(self, sql: str, params: tuple[Any, ...] | None = None) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchone()[0]
        finally:
            cur.close()

    def products(self, n: int) -> str:
        """The system of record: n products, updated_at with sub-millisecond parts."""
        table = self.table("src")
        self.execute(f"CREATE TABLE {table} {SOURCE_DDL}")
        self.execute(
            f"INSERT INTO {table} SELECT i, 'item ' || i, (i % 1000) * 1.25 + 0.99, "
            f"'{BASE}'::timestamptz + i * interval '1.000123 s' FROM generate_series(1, {n}) i"
        )
        self.execute(f"ANALYZE {table}")
        return table

    def copy(self, source: str) -> str:
        table = self.table("dst")
        self.execute(f"CREATE TABLE {table} {TARGET_DDL}")
        self.execute(f"INSERT INTO {table} (id, name, price, updated_at) SELECT * FROM {source}")
        self.execute(f"ANALYZE {table}")
        return table

    def close(self) -> None:
        try:
            for name in self.tables:
                self.execute(f"DROP TABLE IF EXISTS {name}")
        finally:
            self.conn.close()


class Search:
    """An OpenSearch client; `index()` hands out unique names, all deleted afterwards."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch

        self.url = url
        self.client = OpenSearch(hosts=[url], timeout=120)
        self.prefix = f"sl-repair-{uuid.uuid4().hex[:8]}"

    def copy(self, pg: Pg, source: str, skip: list[int] | None = None, name: str = "dst") -> str:
        """The source's rows as documents (_id = id), written with external versions; the `skip` ids
        never delivered."""
        from opensearchpy import helpers

        index = f"{self.prefix}-{name}"
        self.client.indices.create(
            index=index,
            body={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": OS_MAPPING},
            },
        )
        where = f" WHERE id NOT IN ({id_list(skip)})" if skip else ""
        rows = pg.rows(f"SELECT id, name, price, updated_at FROM {source}{where}")
        helpers.bulk(self.client, (self.action(index, r) for r in rows), chunk_size=5000, refresh="wait_for")
        return index

    @staticmethod
    def action(index: str, row: dict[str, Any], description: str = "kept") -> dict[str, Any]:
        return {
            "_index": index,
            "_id": str(row["id"]),
            "_version": micros(row["updated_at"]),
            "_version_type": "external_gte",
            "_source": {
                "id": row["id"],
                "name": row["name"],
                "price": float(row["price"]),
                "updated_at": iso(row["updated_at"]),
                "description": description,
            },
        }

    def get(self, index: str, ids: list[Any]) -> dict[str, dict[str, Any]]:
        resp = self.client.mget(index=index, body={"ids": [str(i) for i in ids]})
        return {d["_id"]: d for d in resp["docs"] if d.get("found")}

    def close(self) -> None:
        try:
            self.client.indices.delete(index=f"{self.prefix}-*", ignore=[404])
        finally:
            self.client.close()


def id_list(ids: list[int]) -> str:
    """Integer ids as an SQL list (test data only: ints, never text)."""
    return ",".join(str(int(i)) for i in ids)


def drift(pg: Pg, source: str, changed: list[int]) -> None:
    """Updates of the source never delivered to the copy (an hour after the old version: settled)."""
    pg.execute(
        f"UPDATE {source} SET name = name || ' v2', price = price + 1, "
        f"updated_at = updated_at + interval '1 hour' WHERE id IN ({id_list(changed)})"
    )


# ======================================================================================= children


def apply_under_live_writer(
    plan: Any, writer_args: list[str], keys: list[int], log: Path
) -> tuple[Any, dict[int, Any]]:
    """Apply `plan` while a separate process (the live pipeline) keeps writing newer versions of
    `keys` (at least ~3 s, and until the repair has ended); returns the outcome and the last version
    the pipeline wrote per key."""
    import subprocess

    stop = log.with_suffix(".stop")  # the writer runs until the repair has ended, however long it takes
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "writer", *writer_args]
        + ["--keys", id_list(keys), "--seconds", "3", "--until", str(stop), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
        outcome = plan.apply(verify=False)  # verified by the caller, once the pipeline has stopped
        assert writer.poll() is None, "the live pipeline stopped before the repair ended"
        stop.touch()
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    last = {int(k): v for k, v in json.loads(log.read_text())["last"].items()}
    return outcome, last


def _writer(args: argparse.Namespace) -> None:
    """The live pipeline: for `seconds`, update `keys` (in random order, round after round) in the
    source with updated_at = clock_timestamp(), then write the same row to the copy with that version.
    Prints "started" after the first 10 writes (so some keys are newer before the repair starts,
    and the others get their first newer write while it runs); writes {key: last version (us)} to
    `log`. With `until`, it also keeps writing until that file exists (at most 10 minutes)."""
    import adbc_driver_postgresql.dbapi as pgdbapi

    keys = [int(k) for k in args.keys.split(",")]
    conn = pgdbapi.connect(args.dsn, autocommit=True)
    cur = conn.cursor()
    client = None
    if args.target_kind == "opensearch":
        from opensearchpy import OpenSearch

        client = OpenSearch(hosts=[args.url], timeout=60)
    last: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds
    rounds = writes = 0
    until = Path(args.until) if args.until else None
    cap = time.monotonic() + 600

    def going() -> bool:
        if rounds == 0 or time.monotonic() < deadline:
            return True
        return until is not None and not until.exists() and time.monotonic() < cap

    while going():
        random.shuffle(keys)
        for k in keys:
            writes += 1
            if writes == 10:
                print("started", flush=True)
            name, price = f"live {k} #{rounds}", f"{k % 97}.{rounds % 100:02d}"
            cur.execute(
                f"INSERT INTO {args.source} (id, name, price, updated_at) "
                "VALUES ($1, $2, $3::numeric, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET "
                "name = EXCLUDED.name, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at "
                "RETURNING updated_at",
                (k, name, price),
            )
            ts = cur.fetchone()[0]
            row = {"id": k, "name": name, "price": price, "updated_at": ts}
            if client is not None:
                a = Search.action(args.target, row, description="live")
                client.index(
                    index=args.target,
                    id=a["_id"],
                    body=a["_source"],
                    params={"version": a["_version"], "version_type": "external_gte"},
                )
            else:
                cur.execute(
                    f"INSERT INTO {args.target} (id, name, price, updated_at) "
                    "VALUES ($1, $2, $3::numeric, $4::timestamptz) ON CONFLICT (id) DO UPDATE SET "
                    "name = EXCLUDED.name, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at",
                    (k, name, price, ts.isoformat()),
                )
            last[k] = micros(ts)
        rounds += 1
    Path(args.log).write_text(json.dumps({"rounds": rounds, "last": last}))
    conn.close()


def _apply_plan(args: argparse.Namespace) -> None:
    import seamline as sl
    from seamline.repair.plan import RepairPlan
    from seamline.stores import registry

    if args.spec:  # any registered store: {"kind", "args", "kwargs"} for registry.open_store
        spec = json.loads(args.spec)
        target = registry.open_store(spec["kind"], *spec["args"], **spec["kwargs"])
    elif args.target_kind == "opensearch":
        target = sl.opensearch(args.url, args.target, key_field="id")
    else:
        target = sl.postgres(args.dsn, args.target)
    print("applying", flush=True)
    outcome = RepairPlan.load(args.plan).apply(target=target, verify=False)
    print(json.dumps(outcome.counts), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--dsn", required=True)
    w.add_argument("--source", required=True)
    w.add_argument("--target-kind", choices=["opensearch", "postgres"], required=True)
    w.add_argument("--target", required=True)
    w.add_argument("--url", default="")
    w.add_argument("--keys", required=True)
    w.add_argument("--seconds", type=float, default=3.0)
    w.add_argument("--until", default="")
    w.add_argument("--log", required=True)
    a = sub.add_parser("apply-plan")
    a.add_argument("--plan", required=True)
    a.add_argument("--target-kind", choices=["opensearch", "postgres"], default="postgres")
    a.add_argument("--target", default="")
    a.add_argument("--spec", default="")
    a.add_argument("--dsn", default="")
    a.add_argument("--url", default="")
    args = parser.parse_args(argv)
    if args.cmd == "writer":
        _writer(args)
    else:
        _apply_plan(args)


if __name__ == "__main__":
    main(sys.argv[1:])
