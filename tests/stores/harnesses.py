"""One harness per registered store type, for the conformance suite (`test_conformance.py`).

A harness makes a copy of a Postgres products table (the system of record, `repair_helpers.Pg`) in its
store, with a column outside the seam (`outside`, holding 'kept'); writes rows as the live pipeline
does (the version is `updated_at`, in microseconds: OpenSearch's external document version); reads
back the current rows of some keys; makes a table of given Arrow columns; and names the source the
child processes open through the store registry (`spec`). Adding a store to Seamline: register it,
add its harness here, and the whole suite runs against it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from abc import ABC, abstractmethod
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from repair_helpers import EPOCH, Pg, Search, id_list, micros

import seamline as sl
from seamline.stores import registry

PRODUCTS = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("price", pa.decimal128(12, 2)),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("outside", pa.string()),
    ]
)


def from_micros(v: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=v)


class Harness(ABC):
    kind: str
    compare = sl.Compare()
    #: the logical types of `typed()` columns the store holds (see test_conformance.TYPED)
    types: tuple[str, ...] = ("i", "f", "s", "b", "d", "ts", "dec", "bin")
    #: a repair killed mid-apply can be caught half done (it writes in batches), a live pipeline
    #: can write while it runs (`repair_helpers.py writer`)
    batched = True
    live_pipeline = True
    #: the store takes upserts and deletes (an immutable log repairs by re-publishing only: its own
    #: tests cover that, tests/test_kafka.py)
    rewritable = True

    def __init__(self, pg: Pg, tmp: Path) -> None:
        self.pg = pg
        self.tmp = tmp
        self.prefix = f"sl_conf_{uuid.uuid4().hex[:8]}"
        self.n = 0

    def name(self) -> str:
        self.n += 1
        return f"{self.prefix}_{self.n}"

    def source_rows(self, source: str, skip: list[int] | None = None) -> pa.Table:
        where = f" WHERE id NOT IN ({id_list(skip)})" if skip else ""
        rows = self.pg.rows(f"SELECT id, name, price, updated_at, 'kept' AS outside FROM {source}{where}")
        return products(rows)

    def copy(self, source: str, skip: list[int] | None = None) -> str:
        """The source's rows (but `skip`) as the copy, with the column outside the seam."""
        name = self.name()
        self.create(name, self.source_rows(source, skip))
        return name

    def target(self, name: str) -> sl.Source:
        spec = self.spec(name)
        return registry.open_store(spec["kind"], *spec["args"], **spec["kwargs"])

    @abstractmethod
    def create(self, name: str, rows: pa.Table) -> None:
        """A new table/index `name` holding `rows` (PRODUCTS schema, or any `typed()` table)."""

    @abstractmethod
    def spec(self, name: str) -> dict[str, Any]:
        """{"kind", "args", "kwargs"}: `registry.open_store(kind, *args, **kwargs)` opens the copy."""

    @abstractmethod
    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        """The live pipeline's write of whole rows (PRODUCTS columns), with their versions."""

    @abstractmethod
    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The rows the copy holds now for `ids`: name, price (float), version (us), outside."""

    def close(self) -> None:  # noqa: B027 - most stores drop with the temporary directory
        pass


class PostgresHarness(Harness):
    kind = "postgres"

    def create(self, name: str, rows: pa.Table) -> None:
        self.pg.tables.append(name)
        cur = self.pg.conn.cursor()
        try:
            if rows.schema.names == PRODUCTS.names:
                cur.execute(
                    f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), "
                    "updated_at timestamptz NOT NULL, outside text DEFAULT 'kept')"
                )
                cur.adbc_ingest(name, rows, mode="append")
            else:
                cur.adbc_ingest(name, rows, mode="create")
            cur.execute(f"ANALYZE {name}")
        finally:
            cur.close()

    def spec(self, name: str) -> dict[str, Any]:
        return {"kind": "postgres", "args": [self.pg.dsn, name], "kwargs": {}}

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.pg.execute(
                f"INSERT INTO {name} (id, name, price, updated_at) VALUES ($1, $2, $3::numeric, "
                "$4::timestamptz) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
                "price = EXCLUDED.price, updated_at = EXCLUDED.updated_at",
                (r["id"], r["name"], str(r["price"]), r["updated_at"].isoformat()),
            )

    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = self.pg.rows(f"SELECT * FROM {name} WHERE id IN ({id_list(ids)})")
        return {
            r["id"]: {
                "name": r["name"],
                "price": float(r["price"]),
                "version": micros(r["updated_at"]),
                "outside": r["outside"],
            }
            for r in rows
        }


class OpenSearchHarness(Harness):
    kind = "opensearch"
    compare = sl.Compare(timestamp_precision="ms")  # an OpenSearch `date` keeps milliseconds
    types = ("i", "f", "s", "b", "ts")

    def __init__(self, pg: Pg, tmp: Path, url: str) -> None:
        super().__init__(pg, tmp)
        self.search = Search(url)

    def name(self) -> str:
        return f"{self.search.prefix}-{super().name().rsplit('_', 1)[1]}"

    def create(self, name: str, rows: pa.Table) -> None:
        from opensearchpy import helpers

        if rows.schema.names == PRODUCTS.names:
            mapping = {
                "id": {"type": "long"},
                "name": {"type": "keyword"},
                "price": {"type": "double"},
                "updated_at": {"type": "date"},
                "outside": {"type": "keyword"},
            }
            actions = [self._action(name, r) for r in rows.to_pylist()]
        else:
            kinds = {"i": "long", "f": "double", "s": "keyword", "b": "boolean", "ts": "date", "id": "long"}
            mapping = {c: {"type": kinds[c]} for c in rows.schema.names}
            actions = [
                {
                    "_index": name,
                    "_id": str(r["id"]),
                    "_source": {
                        k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()
                    },
                }
                for r in rows.to_pylist()
            ]
        self.search.client.indices.create(
            index=name,
            body={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": mapping},
            },
        )
        helpers.bulk(self.search.client, actions, chunk_size=5000, refresh="wait_for")

    @staticmethod
    def _action(index: str, r: dict[str, Any]) -> dict[str, Any]:
        a = Search.action(index, r, description=r.get("outside") or "kept")
        source = a["_source"]
        source["outside"] = source.pop("description")
        return a

    def spec(self, name: str) -> dict[str, Any]:
        return {"kind": "opensearch", "args": [self.search.url, name], "kwargs": {"key_field": "id"}}

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            a = self._action(name, {**r, "outside": r.get("outside") or "live"})
            self.search.client.index(
                index=name,
                id=a["_id"],
                body=a["_source"],
                params={"version": a["_version"], "version_type": "external_gte", "refresh": "true"},
            )

    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        docs = self.search.get(name, ids)
        return {
            int(k): {
                "name": d["_source"]["name"],
                "price": float(d["_source"]["price"]),
                "version": int(d["_version"]),
                "outside": d["_source"].get("outside"),
                "id": d["_source"].get("id"),
            }
            for k, d in docs.items()
        }

    def close(self) -> None:
        self.search.close()


class IcebergHarness(Harness):
    kind = "iceberg"
    batched = False  # one transaction per plan
    live_pipeline = False  # a pipeline committing every few ms conflicts with every repair commit

    def __init__(self, pg: Pg, tmp: Path) -> None:
        super().__init__(pg, tmp)
        from pyiceberg.catalog import load_catalog

        self.props = {
            "type": "sql",
            "uri": f"sqlite:///{tmp}/catalog.db",
            "warehouse": f"file://{tmp}/wh",
        }
        self.catalog = load_catalog("conformance", **self.props)
        self.catalog.create_namespace("conf")

    def create(self, name: str, rows: pa.Table) -> None:
        schema = pa.schema([f.with_nullable(f.name != "id") for f in rows.schema])
        table = self.catalog.create_table(f"conf.{name}", schema=schema)
        table.append(rows.cast(schema))

    def spec(self, name: str) -> dict[str, Any]:
        return {
            "kind": "iceberg",
            "args": [f"conf.{name}"],
            "kwargs": {"catalog": {"name": "conformance", **self.props}},
        }

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        from pyiceberg.expressions import In

        table = self.catalog.load_table(f"conf.{name}")
        data = products([{**r, "outside": r.get("outside") or "live"} for r in rows])
        tx = table.transaction()
        tx.delete(In("id", {r["id"] for r in rows}))
        tx.append(data.cast(table.schema().as_arrow()))
        tx.commit_transaction()

    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        from pyiceberg.expressions import In

        table = self.catalog.load_table(f"conf.{name}")
        rows = table.scan(row_filter=In("id", set(ids))).to_arrow().to_pylist()
        return {
            r["id"]: {
                "name": r["name"],
                "price": float(r["price"]),
                "version": micros(r["updated_at"]),
                "outside": r["outside"],
            }
            for r in rows
        }


class LanceDBHarness(Harness):
    kind = "lancedb"
    batched = False  # a delete and one merge-insert per plan
    live_pipeline = False

    def __init__(self, pg: Pg, tmp: Path) -> None:
        super().__init__(pg, tmp)
        import lancedb

        self.uri = str(tmp / "lance")
        self.db = lancedb.connect(self.uri)

    def create(self, name: str, rows: pa.Table) -> None:
        self.db.create_table(name, data=rows)

    def spec(self, name: str) -> dict[str, Any]:
        return {"kind": "lancedb", "args": [self.uri, name], "kwargs": {}}

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        table = self.db.open_table(name)
        data = products([{**r, "outside": r.get("outside") or "live"} for r in rows])
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(
            data.cast(table.schema)
        )

    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        table = self.db.open_table(name)
        rows = table.search().where(f"id IN ({id_list(ids)})").limit(None).to_arrow().to_pylist()
        return {
            r["id"]: {
                "name": r["name"],
                "price": float(r["price"]),
                "version": micros(r["updated_at"]),
                "outside": r["outside"],
            }
            for r in rows
        }


class KafkaHarness(Harness):
    """A topic of the rows as JSON events keyed by id, read folded to the latest version per id."""

    kind = "kafka"
    types = ("i", "f", "s", "b", "d", "ts", "dec")  # JSON has no bytes
    rewritable = False
    batched = False
    live_pipeline = False

    def __init__(self, pg: Pg, tmp: Path) -> None:
        super().__init__(pg, tmp)
        import os

        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        self.bootstrap = os.environ["SEAMLINE_KAFKA_BOOTSTRAP"]
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.producer = Producer({"bootstrap.servers": self.bootstrap})
        self.topics: list[str] = []

    def create(self, name: str, rows: pa.Table) -> None:
        from confluent_kafka.admin import NewTopic

        self.admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
        self.topics.append(name)
        self.write(name, rows.to_pylist())

    def spec(self, name: str) -> dict[str, Any]:
        kwargs = {"key_field": "id", "fold": "latest", "version": "updated_at"}
        return {"kind": "kafka", "args": [self.bootstrap, name], "kwargs": kwargs}

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        import json

        from seamline.jsonsafe import json_safe

        for r in rows:
            value = json_safe({**r, "updated_at": r.get("updated_at") or EPOCH})
            self.producer.produce(name, key=str(r["id"]).encode(), value=json.dumps(value).encode())
        assert self.producer.flush(30) == 0

    def target(self, name: str) -> sl.Source:
        spec = self.spec(name)
        if "updated_at" not in self._fields(name):
            spec["kwargs"] = {"key_field": "id", "fold": "latest"}  # a typed() table: no version
        return registry.open_store(spec["kind"], *spec["args"], **spec["kwargs"])

    def _fields(self, name: str) -> list[str]:
        return list(registry.open_store("kafka", self.bootstrap, name).schema().names)

    def current(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        raise NotImplementedError("a topic is not rewritten by repairs")

    def close(self) -> None:
        if self.topics:
            for f in self.admin.delete_topics(self.topics).values():
                f.result(timeout=30)


def products(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a PRODUCTS table (a price read from Postgres arrives as text)."""
    return pa.Table.from_pylist(
        [{**r, "price": None if r["price"] is None else Decimal(str(r["price"]))} for r in rows], PRODUCTS
    )


#: every registered store type that can be written: its harness (tests/stores/conftest.py)
HARNESSES: dict[str, type[Harness]] = {
    "postgres": PostgresHarness,
    "opensearch": OpenSearchHarness,
    "iceberg": IcebergHarness,
    "lancedb": LanceDBHarness,
    "kafka": KafkaHarness,
}
