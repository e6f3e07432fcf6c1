"""The Kafka store against the real broker started by ``scripts/services.sh`` (no mock anywhere).

Every mode of ``sl.kafka`` (json, raw, debezium envelopes; events and ``fold="latest"``; ``dedupe=``,
``order_by=``, ``sql=``), the fold and the stream health checked against a plain Python oracle that
applies the same events one by one, the as-of (writes after ``pin`` are not read), the errors a user
can cause, and two seams through the topic: the transactional outbox (Postgres outbox table against
the topic, by event id: missing / duplicate / extra) and topic state against an OpenSearch index (a
consumer that lost a delete leaves a product searchable).

Each test uses its own uniquely named topic (and table / index) and deletes it afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from typing import Any

import pytest
from kafka_topics import Event, Topics

import seamline as sl
from seamline.stores.kafka import read as kafka_read

pytestmark = pytest.mark.services

# -- the oracle: a correct consumer, one event at a time ---------------------------------------------


def oracle_fold(events: list[Event], key_field: str, version: str) -> dict[Any, dict[str, Any]]:
    """Per key the event with the highest version (a later one wins a tie); a delete or tombstone
    counts at the highest version seen before it; keys whose winner is a delete are gone. Events of
    one key are in one partition, so their list order is their offset order."""
    best: dict[Any, tuple[Any, bool, dict[str, Any] | None]] = {}
    for key, value in events:
        k = value[key_field] if value is not None else key
        prev = best.get(k)
        if value is None:
            if prev is not None:
                best[k] = (prev[0], True, None)
            continue
        v, deleted = value[version], bool(value.get("__deleted"))
        if prev is None or v >= prev[0]:
            best[k] = (v, deleted, value)
    return {k: row for k, (_, deleted, row) in best.items() if not deleted and row is not None}


def oracle_health(events: list[Event], key_field: str, version: str) -> dict[str, int]:
    maxv: dict[Any, int] = {}
    out = {"out_of_order": 0, "replayed": 0, "gaps": 0, "tombstones": 0}
    for _, value in events:
        if value is None or value.get("__deleted"):
            out["tombstones"] += 1
        if value is None:
            continue
        k, v = value[key_field], value[version]
        if k in maxv:
            prev = maxv[k]
            out["out_of_order"] += v < prev
            out["replayed"] += v == prev
            out["gaps"] += v > prev + 1
        maxv[k] = max(v, maxv.get(k, v))
    return out


def product_events(rng: random.Random, n_keys: int, n_events: int) -> list[Event]:
    """Product changes with versions per key mostly rising by one, some skipping (gaps), some going
    back (out of order), some repeated (replays), deletes and tombstones."""
    events: list[Event] = []
    version = dict.fromkeys(range(n_keys), 0)
    for _ in range(n_events):
        k = rng.randrange(n_keys)
        roll = rng.random()
        if roll < 0.04:
            events.append((k, None))  # tombstone
            continue
        if roll < 0.10 and version[k] > 1:
            v = version[k] - rng.randint(1, version[k] - 1)  # an older version arriving late
        elif roll < 0.14 and version[k] > 0:
            v = version[k]  # replayed
        else:
            v = version[k] + (2 if roll > 0.95 else 1)
            version[k] = v
        value: dict[str, Any] = {
            "id": k,
            "version": v,
            "name": f"p{k}-v{v}",
            "price": round(rng.random() * 100, 2),
        }
        if rng.random() < 0.03:
            value["__deleted"] = True
        events.append((k, value))
    return events


# -- modes ------------------------------------------------------------------------------------------


def test_events_carry_message_columns_and_stop_at_pinned_offsets(topics: Topics) -> None:
    topic = topics.create(partitions=2)
    events: list[Event] = [(i % 5, {"id": i % 5, "seq": i, "note": f"n{i}"}) for i in range(40)]
    topics.produce(topic, events, headers=lambda v: [("event_id", f"e{v['seq']}".encode())])
    src = sl.kafka(topics.bootstrap, topic)
    as_of = src.pin()
    topics.produce(topic, [(1, {"id": 1, "seq": 999, "note": "after pin"})])  # never read: after pin
    seqs = sorted(src._load().column("seq").to_pylist())  # what every open() of this reconcile reads
    assert seqs == list(range(40))
    assert as_of.detail["messages"] == 40 and sum(as_of.detail["end_offsets"].values()) == 40
    assert as_of.detail["newest_message_time"] is not None
    schema = src.schema()
    assert schema.names[:5] == ["_key", "_partition", "_offset", "_timestamp", "_headers"]
    assert {"id", "seq", "note"} <= set(schema.names)
    rows = src._load().to_pylist()
    first = next(r for r in rows if r["seq"] == 7)
    assert first["_key"] == "2" and first["_headers"] == [{"key": "event_id", "value": b"e7"}]
    # per partition, offsets are dense from 0 and follow production order
    for p in (0, 1):
        offs = sorted(r["_offset"] for r in rows if r["_partition"] == p)
        assert offs == list(range(len(offs)))


def test_raw_values_are_kept_as_bytes(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    topics.producer.produce(topic, key=b"k", value=b"\x00not json")
    topics.producer.produce(topic, key=b"k2", value=None)
    topics.producer.flush(30)
    rows = sl.kafka(topics.bootstrap, topic, value="raw")._load().to_pylist()
    assert [(r["_key"], r["_value"]) for r in rows] == [("k", b"\x00not json"), ("k2", None)]


@pytest.mark.parametrize("chunk_rows", [1_000_000, 97])  # 97: the fold's state crosses many chunks
def test_fold_latest_and_health_match_the_oracle(
    topics: Topics, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(kafka_read, "_CHUNK_ROWS", chunk_rows)
    topic = topics.create(partitions=3)
    events = product_events(random.Random(7), n_keys=60, n_events=1500)
    topics.produce(topic, events)
    src = sl.kafka(topics.bootstrap, topic, key_field="id", fold="latest", version="version")
    got = {r["id"]: r for r in src._load().to_pylist()}
    expected = oracle_fold(events, "id", "version")
    assert set(got) == set(expected)
    for k, row in expected.items():
        assert (got[k]["version"], got[k]["name"]) == (row["version"], row["name"]), k
    health = src.pin().detail["health"]
    want = oracle_health(events, "id", "version")
    assert health["out_of_order"]["count"] == want["out_of_order"] > 0
    assert health["replayed"]["count"] == want["replayed"] > 0
    assert health["gaps"]["count"] == want["gaps"] > 0
    assert health["tombstones"] == want["tombstones"] > 0
    assert health["events"] == len(events)
    assert 0 < len(health["out_of_order"]["sample"]) <= 5


def test_fold_by_version_not_by_arrival(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    topics.produce(
        topic,
        [
            (1, {"id": 1, "version": 2, "name": "new"}),
            (1, {"id": 1, "version": 1, "name": "old, arrived late"}),
            (2, {"id": 2, "version": 1, "name": "gone"}),
            (2, None),  # tombstone removes 2
            (3, {"id": 3, "version": 5, "name": "deleted", "__deleted": True}),
            (3, {"id": 3, "version": 4, "name": "older than the delete"}),  # cannot resurrect 3
            (4, None),
            (4, {"id": 4, "version": 1, "name": "recreated after a tombstone"}),
        ],
    )
    rows = sl.kafka(topics.bootstrap, topic, key_field="id", fold="latest", version="version")._load()
    assert sorted((r["id"], r["name"]) for r in rows.to_pylist()) == [
        (1, "new"),
        (4, "recreated after a tombstone"),
    ]
    # without a version the last to arrive wins
    rows = sl.kafka(topics.bootstrap, topic, key_field="id", fold="latest")._load()
    assert sorted((r["id"], r["name"]) for r in rows.to_pylist()) == [
        (1, "old, arrived late"),
        (3, "older than the delete"),
        (4, "recreated after a tombstone"),
    ]


def test_dedupe_then_sql_counts_revenue_once(topics: Topics) -> None:
    topic = topics.create(partitions=3)
    rng = random.Random(3)
    orders = [
        {"event_id": f"o{i}", "day": f"2026-11-{20 + i % 3}", "amount": rng.randint(1, 500), "seq": i}
        for i in range(300)
    ]
    replayed = orders[100:130]  # a replayed offset range
    topics.produce(topic, [(o["event_id"], o) for o in orders + replayed])
    sql = "SELECT day, sum(amount) AS revenue, count(*) AS orders FROM events GROUP BY day ORDER BY day"
    truth: dict[str, int] = {}
    for o in orders:
        truth[o["day"]] = truth.get(o["day"], 0) + o["amount"]

    src = sl.kafka(topics.bootstrap, topic, dedupe="event_id", order_by="seq", sql=sql)
    got = {r["day"]: int(r["revenue"]) for r in src._load().to_pylist()}
    assert got == truth
    health = src.pin().detail["health"]
    assert health["replayed"]["count"] == 30 and health["replayed"]["by"] == "event_id"
    assert set(health["replayed"]["sample"]) <= {o["event_id"] for o in replayed}

    doubled = sl.kafka(topics.bootstrap, topic, sql=sql)._load().to_pylist()
    assert sum(int(r["revenue"]) for r in doubled) == sum(truth.values()) + sum(o["amount"] for o in replayed)

    # order_by: rows in sequence order, not arrival order
    seqs = sl.kafka(topics.bootstrap, topic, dedupe="event_id", order_by="seq")._load().column("seq")
    assert seqs.to_pylist() == list(range(300))


def test_dedupe_on_a_header(topics: Topics) -> None:
    topic = topics.create(partitions=2)
    events: list[Event] = [(i, {"n": i}) for i in range(20)] + [(3, {"n": 3}), (4, {"n": 4})]
    topics.produce(topic, events, headers=lambda v: [("event-id", f"id-{v['n']}".encode())])
    src = sl.kafka(topics.bootstrap, topic, dedupe="event-id")
    assert sorted(src._load().column("n").to_pylist()) == list(range(20))
    assert src.pin().detail["health"]["replayed"]["count"] == 2


def test_debezium_envelopes_unwrap_and_fold(topics: Topics) -> None:
    topic = topics.create(partitions=1)

    def envelope(op: str, before: Any, after: Any, lsn: int) -> dict[str, Any]:
        source = {"connector": "postgresql", "lsn": lsn, "table": "products"}
        return {
            "before": before,
            "after": after,
            "source": source,
            "op": op,
            "ts_ms": 1_700_000_000_000 + lsn,
        }

    p1 = {"id": 1, "name": "a", "price": "1.50"}
    p2 = {"id": 2, "name": "b", "price": "2.00"}
    events: list[Event] = [
        ('{"id": 1}', envelope("r", None, p1, 10)),
        ('{"id": 2}', envelope("c", None, p2, 20)),
        ('{"id": 1}', envelope("u", p1, {**p1, "price": "1.75"}, 30)),
        ('{"id": 2}', envelope("d", {"id": 2, "name": None, "price": None}, None, 40)),
        ('{"id": 2}', None),  # Debezium's tombstone after the delete
    ]
    topics.produce(topic, events)
    rows = sl.kafka(topics.bootstrap, topic, value="debezium")._load().to_pylist()
    assert [(r["id"], r["_op"], r["_lsn"]) for r in rows] == [
        (1, "r", 10),
        (2, "c", 20),
        (1, "u", 30),
        (2, "d", 40),
        (None, None, None),
    ]
    folded = sl.kafka(topics.bootstrap, topic, value="debezium", key_field="id", fold="latest")
    assert [(r["id"], r["price"]) for r in folded._load().to_pylist()] == [(1, "1.75")]
    assert "by _lsn" in folded.describe()


def test_undecodable_values_are_counted_not_fatal(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    for i in range(50):
        value = b"{poison" if i in (7, 31) else json.dumps({"i": i}).encode()
        topics.producer.produce(topic, value=value)
    topics.producer.flush(30)
    src = sl.kafka(topics.bootstrap, topic)
    assert len(src._load().column("i")) == 48
    health = src.pin().detail["health"]["undecodable"]
    assert health == {"count": 2, "sample": ["0/7", "0/31"]}


def test_multiline_json_values(topics: Topics) -> None:
    topic = topics.create(partitions=1)
    topics.producer.produce(topic, value=json.dumps({"a": 1, "t": "x"}, indent=2).encode())
    topics.producer.produce(topic, value=b'{"a": 2, "t": "line\\nbreak"}')
    topics.producer.flush(30)
    rows = sl.kafka(topics.bootstrap, topic)._load().to_pylist()
    assert [(r["a"], r["t"]) for r in rows] == [(1, "x"), (2, "line\nbreak")]


# -- errors -----------------------------------------------------------------------------------------


def test_errors_are_one_line_seamline_errors(topics: Topics) -> None:
    with pytest.raises(sl.NotFoundError, match="topic 'no-such-topic' does not exist"):
        sl.kafka(topics.bootstrap, "no-such-topic").pin()
    with pytest.raises(sl.InvalidInputError, match="value='avro'"):
        sl.kafka(topics.bootstrap, "t", value="avro")
    with pytest.raises(sl.InvalidInputError, match="fold='earliest'"):
        sl.kafka(topics.bootstrap, "t", fold="earliest")
    with pytest.raises(sl.InvalidInputError, match="group.id"):
        sl.kafka(topics.bootstrap, "t", config={"group.id": "payments"})
    topic = topics.create(partitions=1)
    topics.produce(topic, [(1, {"id": 1, "v": 1})])
    with pytest.raises(sl.SchemaError, match="no field 'version'"):
        sl.kafka(topics.bootstrap, topic, key_field="id", fold="latest", version="version").pin()
    with pytest.raises(sl.InvalidInputError, match="sql:"):
        sl.kafka(topics.bootstrap, topic, sql="SELECT nope FROM events").pin()


def test_a_broker_that_is_down_is_store_unavailable() -> None:
    src = sl.kafka("127.0.0.1:1", "t")
    src.store.timeout = 2.0
    with pytest.raises(sl.StoreUnavailableError, match=r"kafka 127\.0\.0\.1:1: "):
        src.pin()


# -- seams through the topic --------------------------------------------------------------------------


def test_outbox_seam_finds_missing_duplicate_and_extra_events(topics: Topics, pg_dsn: str) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    table = f"outbox_{uuid.uuid4().hex[:10]}"
    base = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = [
        {
            "event_id": f"evt-{i:04d}",
            "aggregate_id": i % 17,
            "type": "OrderPlaced",
            "payload": json.dumps({"order": i, "amount": i * 3}),
            "created_at": base + dt.timedelta(seconds=i),
        }
        for i in range(200)
    ]
    with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} (event_id text PRIMARY KEY, aggregate_id bigint, type text, "
            "payload text, created_at timestamptz)"
        )
        cur.executemany(
            f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)",
            [tuple(r.values()) for r in rows],
        )
        conn.commit()
    try:
        topic = topics.create(partitions=3)
        lost = {"evt-0042", "evt-0137"}  # committed, never published (a relay that died)
        twice = "evt-0099"  # published twice (relay killed after publishing, before marking)
        bypass = {"event_id": "evt-9999", "aggregate_id": 5, "type": "OrderPlaced", "payload": "{}"}
        published = [
            {k: v for k, v in r.items() if k != "created_at"} for r in rows if r["event_id"] not in lost
        ]
        published += [p for p in published if p["event_id"] == twice] + [bypass]
        topics.produce(topic, [(p["aggregate_id"], p) for p in published])

        result = sl.reconcile(
            sl.postgres(pg_dsn, f"public.{table}"),
            sl.kafka(topics.bootstrap, topic),
            key="event_id",
            columns=["aggregate_id", "type", "payload"],
        )
        counts = result.counts
        assert (counts["missing"], counts["extra"], counts["duplicate"], counts["changed"]) == (2, 1, 1, 0)
        kinds = {(r["event_id"], r["kind"]) for r in result.diffs.select(["event_id", "kind"]).to_dicts()}
        assert kinds == {
            ("evt-0042", "missing"),
            ("evt-0137", "missing"),
            ("evt-9999", "extra"),
            (twice, "duplicate"),
        }
        assert result.to_dict()["as_of"]["target"]["store"] == "kafka"
    finally:
        with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


def test_topic_state_against_the_index_finds_the_lost_delete(topics: Topics, opensearch_url: str) -> None:
    from opensearchpy import OpenSearch, helpers

    topic = topics.create(partitions=3)
    events: list[Event] = []
    for i in range(100):
        events.append((i, {"id": i, "version": 1, "name": f"product {i}", "in_stock": True}))
    for i in range(0, 100, 10):
        events.append((i, {"id": i, "version": 2, "name": f"product {i} v2", "in_stock": i % 20 == 0}))
    events.append((55, {"id": 55, "version": 3, "name": "product 55", "in_stock": False, "__deleted": True}))
    events.append((55, None))
    topics.produce(topic, events)

    # the consumer applied every event but lost the delete of 55 (a skipped message)
    state = oracle_fold(events, "id", "version")
    state[55] = {"id": 55, "version": 1, "name": "product 55", "in_stock": True}
    index = f"kafka-state-{uuid.uuid4().hex[:10]}"
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    client.indices.create(
        index=index,
        body={"mappings": {"properties": {"id": {"type": "long"}, "name": {"type": "keyword"}}}},
    )
    try:
        helpers.bulk(
            client, ({"_index": index, "_id": str(k), "_source": v} for k, v in state.items()), refresh=True
        )
        result = sl.reconcile(
            sl.kafka(topics.bootstrap, topic, key_field="id", fold="latest", version="version"),
            sl.opensearch(opensearch_url, index, key_field="id"),
            key="id",
            columns=["name", "in_stock", "version"],
        )
        assert result.counts["extra"] == 1 and result.counts["missing"] == 0 and result.counts["changed"] == 0
        assert result.diffs["id"].to_list() == [55]
        assert result.to_dict()["as_of"]["source"]["detail"]["health"]["tombstones"] == 2
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)


# -- the contract ---------------------------------------------------------------------------------------

CONTRACT = """
version: 1
stores:
  oltp: {type: postgres, dsn: "${PG}"}
  bus:
    type: kafka
    bootstrap: "${BUS}"
    config: {client.id: seamline-check, sasl.password: "${BUS_PASSWORD:-}"}
seams:
  - name: outbox_published
    source: {store: oltp, table: "public.TABLE"}
    target: {store: bus, topic: "TOPIC", dedupe: event_id}
    key: event_id
    columns: [aggregate_id]
"""


def test_contract_declares_kafka_sides_and_rejects_misplaced_fields(tmp_path: Any) -> None:
    from seamline.contract import parse

    env = {"PG": "postgresql://u@h/db", "BUS": "127.0.0.1:9092", "BUS_PASSWORD": "hunter2"}
    c = parse(CONTRACT, tmp_path / "c.yaml", env)
    store = c.stores["bus"]
    assert (store.type, store.bootstrap, store.config["client.id"]) == (
        "kafka",
        "127.0.0.1:9092",
        "seamline-check",
    )
    side = c.seams["outbox_published"].target
    assert (side.topic, dict(side.stream), side.object) == ("TOPIC", {"dedupe": "event_id"}, "TOPIC")
    assert "hunter2" not in c.redact("sasl.password=hunter2 and hunter2")
    for old, new, message in [
        ('topic: "TOPIC"', 'table: "x"', "field 'target.table': not for a kafka store"),
        ('topic: "TOPIC", ', "", "field 'target.topic': missing"),
        ("dedupe: event_id", "fold: earliest", "field 'target.fold': 'earliest' is not one of latest"),
        ('table: "public.TABLE"', 'table: "t", fold: latest', "field 'source.fold': only for a kafka store"),
        ("bootstrap:", "brokers:", "field 'brokers': unknown key"),
    ]:
        with pytest.raises(sl.ContractError, match=message):
            parse(CONTRACT.replace(old, new, 1), "c.yaml", env)


def test_check_through_the_contract_reports_the_outbox_seam_and_the_stream_health(
    topics: Topics, pg_dsn: str, tmp_path: Any
) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    from seamline.cli import main

    table = f"outbox_{uuid.uuid4().hex[:10]}"
    with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY, aggregate_id bigint)")
        cur.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(f"e{i}", i) for i in range(50)])
        conn.commit()
    try:
        topic = topics.create(partitions=2)
        published = [{"event_id": f"e{i}", "aggregate_id": i} for i in range(50) if i != 17]
        topics.produce(topic, [(p["aggregate_id"], p) for p in published + published[:3]])
        path = tmp_path / "contract.yaml"
        path.write_text(CONTRACT.replace("TABLE", table).replace("TOPIC", topic))
        env = {"PG": pg_dsn, "BUS": topics.bootstrap}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            code = main(["check", str(path), "--json", str(tmp_path / "report.json")])
        assert code == 1
        report = json.loads((tmp_path / "report.json").read_text())
        seam = (
            report["seams"][0] if isinstance(report["seams"], list) else report["seams"]["outbox_published"]
        )
        assert seam["counts"]["missing"] == 1 and seam["counts"]["duplicate"] == 0  # dedupe= on
        health = seam["as_of"]["target"]["detail"]["health"]
        assert health["replayed"]["count"] == 3 and health["replayed"]["by"] == "event_id"
    finally:
        with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


# -- repair of the outbox hop: re-publishing ------------------------------------------------------------


def test_outbox_repair_republishes_missing_events_and_reports_what_a_log_cannot_fix(
    topics: Topics, pg_dsn: str
) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    table = f"outbox_{uuid.uuid4().hex[:10]}"
    base = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = [
        {
            "event_id": f"evt-{i:03d}",
            "aggregate_id": i % 11,
            "payload": json.dumps({"order": i}),
            "created_at": base + dt.timedelta(seconds=i),
        }
        for i in range(100)
    ]
    with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} (event_id text PRIMARY KEY, aggregate_id bigint, payload text, "
            "created_at timestamptz)"
        )
        cur.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4)", [tuple(r.values()) for r in rows])
        conn.commit()
    try:
        topic = topics.create(partitions=3)
        lost = {"evt-010", "evt-077"}
        published = [
            {**r, "created_at": r["created_at"].isoformat()} for r in rows if r["event_id"] not in lost
        ]
        changed = next(p for p in published if p["event_id"] == "evt-020")
        changed["payload"] = json.dumps({"order": 20, "tampered": True})
        published += [published[5]]  # a duplicate (evt-005)
        published += [
            {"event_id": "evt-999", "aggregate_id": 1, "payload": "{}", "created_at": base.isoformat()}
        ]
        topics.produce(topic, [(p["aggregate_id"], p) for p in published])

        def check() -> sl.ReconcileResult:
            return sl.reconcile(
                sl.postgres(pg_dsn, f"public.{table}"),
                sl.kafka(topics.bootstrap, topic, key_field="aggregate_id"),
                key="event_id",
                version="created_at",
            )

        result = check()
        assert (result.counts["missing"], result.counts["changed"], result.counts["extra"]) == (2, 1, 1)
        assert result.counts["duplicate"] == 1

        with pytest.raises(sl.RepairRefusedError, match="max_fraction"):
            result.plan_repair(max_fraction=0.01).apply()
        assert len(sl.kafka(topics.bootstrap, topic)._load()) == len(published)  # nothing written

        plan = result.plan_repair(max_fraction=0.2)
        assert plan.counts == {"upsert": 3, "delete": 1, "dedupe": 1}
        outcome = plan.apply()
        assert outcome.counts == {"applied": 2, "skipped_newer": 0, "failed": 3}
        assert any("cannot unpublish" in e for e in outcome.errors)
        assert any("consumers must dedupe" in e for e in outcome.errors)
        assert any("cannot be changed" in e and "evt-020" in e for e in outcome.errors)
        assert not outcome.verified  # the changed, extra and duplicated events remain, as reported
        assert set(outcome.remaining["kind"].to_list()) == {"changed", "extra", "duplicate"}

        events = sl.kafka(topics.bootstrap, topic)._load().to_pylist()
        republished = [e for e in events if e["event_id"] in lost]
        assert len(republished) == 2
        for e in republished:
            original = next(r for r in rows if r["event_id"] == e["event_id"])
            assert e["_key"] == str(original["aggregate_id"]) and e["payload"] == original["payload"]
            assert e["_headers"] == [{"key": "seamline-repair", "value": b"1"}]
        again = check()
        assert again.counts["missing"] == 0 and again.counts["changed"] == 1

        # idempotent: applying the same plan again publishes nothing new
        before = len(events)
        assert plan.apply().counts["applied"] == 2
        assert len(sl.kafka(topics.bootstrap, topic)._load()) == before
    finally:
        with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


# -- freshness ------------------------------------------------------------------------------------------


def test_group_lag_per_partition_and_the_age_of_the_oldest_unconsumed_message(topics: Topics) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topic = topics.create(partitions=2)
    topics.produce(topic, [(i, {"i": i}) for i in range(40)])
    group = f"shop-indexer-{uuid.uuid4().hex[:6]}"
    src = sl.kafka(topics.bootstrap, topic, group=group)
    lag = src.pin().detail["group"]
    assert lag["lag"] == 40 and lag["oldest_unconsumed_age_seconds"] is not None  # nothing committed

    ends = {int(p): e for p, e in src.pin().detail["end_offsets"].items()}
    consumer = Consumer(
        {"bootstrap.servers": topics.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:  # the real consumer committed all of partition 0 and 3 messages of partition 1
        consumer.commit(
            offsets=[TopicPartition(topic, 0, ends[0]), TopicPartition(topic, 1, 3)], asynchronous=False
        )
    finally:
        consumer.close()
    src.close()
    lag = src.pin().detail["group"]
    assert lag["partitions"]["0"] == {"committed": ends[0], "end": ends[0], "lag": 0}
    assert lag["partitions"]["1"] == {"committed": 3, "end": ends[1], "lag": ends[1] - 3}
    assert lag["lag"] == ends[1] - 3 and 0 <= lag["oldest_unconsumed_age_seconds"] < 600
    # Seamline itself never joined or committed for the group: the committed offsets are the consumer's
    assert src.store.group_offsets(group, topic, [0, 1]) == {0: ends[0], 1: 3}


def test_lineage_walks_through_the_topic_and_names_the_first_drifted_hop(
    topics: Topics, pg_dsn: str, tmp_path: Any
) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    from seamline.contract import parse
    from seamline.lineage import walk

    tag = uuid.uuid4().hex[:8]
    outbox, bronze = f"outbox_{tag}", f"bronze_{tag}"
    with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
        for t in (outbox, bronze):
            cur.execute(f"CREATE TABLE {t} (event_id text PRIMARY KEY, amount bigint)")
        cur.executemany(f"INSERT INTO {outbox} VALUES ($1, $2)", [(f"e{i}", i) for i in range(60)])
        # the consumer landing bronze skipped e33 (a poison message)
        cur.executemany(f"INSERT INTO {bronze} VALUES ($1, $2)", [(f"e{i}", i) for i in range(60) if i != 33])
        conn.commit()
    try:
        topic = topics.create(partitions=2)
        topics.produce(topic, [(i, {"event_id": f"e{i}", "amount": i}) for i in range(60)])
        text = f"""
version: 1
stores:
  oltp: {{type: postgres, dsn: "{pg_dsn}"}}
  bus: {{type: kafka, bootstrap: "{topics.bootstrap}"}}
seams:
  - {{name: outbox, source: {{store: oltp, table: public.{outbox}}}, target: {{store: bus, topic: {topic}}},
     key: event_id}}
  - {{name: bronze, source: {{store: bus, topic: {topic}, dedupe: event_id}},
     target: {{store: oltp, table: public.{bronze}}}, key: event_id, columns: [amount]}}
chains:
  orders: [outbox, bronze]
"""
        result = walk(parse(text, tmp_path / "c.yaml"), "orders")
        report = result.to_dict()
        assert report["diverged_at"] == "bronze"
        assert [layer["verdict"] for layer in report["layers"]] == ["clean", "drift"]
        assert report["layers"][1]["counts"]["missing"] == 1
        topic_read = report["layers"][1]["as_of"]["source"]["detail"]
        assert sum(topic_read["end_offsets"].values()) == 60
        assert "offsets 60 msgs" in result.render()
    finally:
        with pgdb.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {outbox}, {bronze}")
            conn.commit()


def test_a_transactional_topic_ends_at_its_commit_marker(topics: Topics) -> None:
    from confluent_kafka import Producer

    topic = topics.create(partitions=1)
    producer = Producer({"bootstrap.servers": topics.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=str(i).encode(), value=json.dumps({"i": i}).encode())
    producer.commit_transaction(30)
    # the commit markers are written after commit_transaction returns: the stable end offset (what a
    # read_committed pin sees) can trail it for a moment
    deadline = time.monotonic() + 30
    while True:
        src = sl.kafka(topics.bootstrap, topic)
        as_of = src.pin()  # the last offset is the commit marker, never delivered: the read still ends
        if as_of.detail["end_offsets"]["0"] > 5 or time.monotonic() > deadline:
            break
        src.close()
        time.sleep(0.2)
    assert as_of.detail["end_offsets"]["0"] > 5 and sorted(src._load().column("i").to_pylist()) == [
        0,
        1,
        2,
        3,
        4,
    ]
