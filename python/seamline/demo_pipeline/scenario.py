"""The pipeline built, run and broken: the five faults injected one after another, and what the
contract must find at each seam (exact keys and kinds).

1. The relay killed after publishing a batch, before marking it: re-published on restart, so
   ``outbox_topic`` has those events as ``duplicate`` (the lander dedupes them: bronze and gold right).
2. The legacy direct path commits an order and dies before publishing: ``outbox_topic`` ``missing``.
3. The CDC connector stopped while products change, its slot (lagging, reported by freshness) dropped
   and recreated, the connector restarted without a snapshot: the changes in between never reach the
   topic; ``products_cdc`` and ``products_index`` show exactly those products, ``cdc_index`` none.
4. The indexer skips a poison message (a price it cannot handle): ``cdc_index`` and ``products_index``
   show that product, ``products_cdc`` does not (the topic has the event).
5. An offset range of the orders topic replayed (copied again into it): the lander's dedupe window
   has long forgotten those ids, so bronze has them twice (``topic_bronze`` ``duplicate``) and gold
   revenue counts them twice (``topic_gold`` ``changed`` on their days); the topic's stream health
   names the replayed ids (with fault 1's), and ``outbox_topic`` shows them as ``duplicate`` too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seamline.demo_pipeline.cdc import Connector, launcher_missing
from seamline.demo_pipeline.consumers import OrderLander, ProductIndexer, published
from seamline.demo_pipeline.relay import Relay
from seamline.demo_pipeline.shop import Shop
from seamline.exceptions import StoreUnavailableError

CONTRACT = Path(__file__).with_name("contract.yaml")
PLACEHOLDER = "${SEAMLINE_SHOP:-demo}"
PRODUCTS = 60
ORDER_PARTITIONS = 3
ENV = ("SEAMLINE_PG_DSN", "SEAMLINE_OPENSEARCH_URL", "SEAMLINE_KAFKA_BOOTSTRAP")

Expected = dict[str, set[tuple[object, str]]]


def unavailable(env: Mapping[str, str] = os.environ) -> str | None:
    """Why the pipeline cannot run here (None: it can): a service variable not set, the broker not
    answering, the Debezium launcher not built."""
    for var in ENV:
        if not env.get(var):
            return f"{var} is not set"
    missing = launcher_missing()
    if missing:
        return missing
    from confluent_kafka.admin import AdminClient

    bootstrap = env["SEAMLINE_KAFKA_BOOTSTRAP"]
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except Exception:
        return f"kafka at {bootstrap} does not answer"
    return None


@dataclass
class Faults:
    """What was injected, to compare with what the seams found."""

    relay_duplicates: list[str] = field(default_factory=list)  # 1: event ids published twice
    lost_event: str = ""  # 2: committed, never published
    cdc_lost: dict[int, str] = field(default_factory=dict)  # 3: product id -> kind at products_cdc
    slot_during_outage: dict[str, Any] = field(default_factory=dict)  # 3: as freshness reported it
    poison_product: int = 0  # 4
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # 4: what the indexer skipped
    replayed: list[str] = field(default_factory=list)  # 5: event ids copied again into the topic
    replayed_revenue: dict[dt.date, decimal.Decimal] = field(default_factory=dict)  # 5: counted twice


class Pipeline:
    """The shop's pipeline under unique names derived from `tag` (lowercase letters and digits)."""

    def __init__(self, dsn: str, bootstrap: str, opensearch_url: str, workdir: Path, tag: str) -> None:
        self.dsn, self.bootstrap, self.url, self.tag = dsn, bootstrap, opensearch_url, tag
        self.workdir = workdir.resolve()
        self.shop = Shop(dsn, f"shop_{tag}", f"cdc_{tag}", PRODUCTS)
        self.orders_topic = f"shop-{tag}.orders"
        self.connector = Connector(
            dsn,
            bootstrap,
            self.workdir / "debezium",
            schema=f"cdc_{tag}",
            slot=f"shop_{tag}_cdc",
            prefix=f"shop-{tag}",
        )
        self.cdc_topic = self.connector.topic("products")
        self.index = f"shop-{tag}-products"
        self.relay = Relay(dsn, bootstrap, self.shop.outbox, self.orders_topic)
        self.indexer = ProductIndexer(
            bootstrap, self.cdc_topic, f"shop-{tag}-indexer", opensearch_url, self.index
        )
        self.lander = OrderLander(
            bootstrap, self.orders_topic, f"shop-{tag}-lander", self.workdir / "stream-lake"
        )
        self.cdc_events = 0  # change events the topic must hold once the connector caught up

    # -- the contract ------------------------------------------------------------------------------------

    def write_contract(self) -> Path:
        """The pipeline's contract with this run's names, next to its lake (relative paths)."""
        path = self.workdir / "pipeline.yaml"
        path.write_text(CONTRACT.read_text().replace(PLACEHOLDER, self.tag))
        return path

    def contract(self) -> Any:
        from seamline.contract import load

        return load(self.write_contract())

    # -- building and running ------------------------------------------------------------------------------

    def build(self) -> None:
        """A clean, running pipeline: products streamed and indexed, orders relayed and landed."""
        from confluent_kafka.admin import AdminClient, NewTopic

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.drop()
        self.shop.create()
        self.connector.create_publication()
        self.connector.create_slot()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 60
        while True:  # a topic of the same name deleted just before may still be going away
            try:
                admin.create_topics([NewTopic(self.orders_topic, ORDER_PARTITIONS, 1)])[
                    self.orders_topic
                ].result(30)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        self.indexer.create_index()
        self.lander.create_tables()
        self.connector.start()
        self.shop.add_products(range(1, PRODUCTS + 1))
        self.cdc_events += PRODUCTS
        self.shop.place_orders(120)
        self.relay.run()
        self.wait_for_cdc()
        self.drain()

    def drain(self) -> None:
        """Both consumers catch up with their topics."""
        self.indexer.drain()
        self.lander.drain()

    def wait_for_cdc(self, seconds: float = 120) -> None:
        """Until the CDC topic holds every change event the connector was up for."""
        deadline = time.monotonic() + seconds
        while (got := published(self.bootstrap, self.cdc_topic)) < self.cdc_events:
            self.connector.check_alive()
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"{self.cdc_topic}: {got} of {self.cdc_events} change events after {seconds:.0f} s"
                )
            time.sleep(0.3)

    # -- the faults ------------------------------------------------------------------------------------------

    def inject_faults(self) -> Faults:
        faults = Faults()
        self._relay_killed(faults)
        self._direct_write_dies(faults)
        self._slot_dropped(faults)
        self._poison_message(faults)
        self._offsets_replayed(faults)
        return faults

    def _relay_killed(self, faults: Faults) -> None:
        orders = self.shop.place_orders(6)
        self.relay.run_and_get_killed(batch=2)  # published the two oldest, killed before marking
        self.relay.run()  # the restarted relay publishes all six: the two again
        faults.relay_duplicates = [o.event_id for o in orders[:2]]
        self.drain()

    def _direct_write_dies(self, faults: Faults) -> None:
        faults.lost_event = self.shop.place_order_directly_and_die().event_id
        self.shop.place_orders(3)
        self.relay.run()
        self.drain()

    def _slot_dropped(self, faults: Faults) -> None:
        from seamline.freshness import measure

        self.connector.stop()
        # the shop goes on while the connector is down: products change, orders come in
        self.shop.change_product(3, "price = price + 1")
        self.shop.change_product(4, "name = 'Product 4 (renamed)'")
        self.shop.delete_product(9)
        self.shop.add_products(range(PRODUCTS + 1, PRODUCTS + 3))
        self.shop.place_orders(30)
        self.relay.run()
        self.lander.drain()
        faults.cdc_lost = {
            3: "changed",
            4: "changed",
            9: "extra",
            PRODUCTS + 1: "missing",
            PRODUCTS + 2: "missing",
        }
        # freshness sees the inactive slot holding WAL back
        contract = self.contract()
        report = measure(contract, contract.seam("products_cdc")).to_dict()
        faults.slot_during_outage = next(
            s for s in report["replication_slots"] if s["slot_name"] == self.connector.slot
        ) | {"seam_status": report["status"]}
        # the operator's quick fix: drop the slot, recreate it, restart the connector without a snapshot
        self.connector.drop_slot()
        self.connector.create_slot()
        self.connector.forget_offsets()
        self.connector.start()
        self.shop.change_product(20, "stock = stock + 5")  # after the restart: streamed again
        self.cdc_events += 1
        self.wait_for_cdc()
        self.indexer.drain()

    def _poison_message(self, faults: Faults) -> None:
        faults.poison_product = 7
        self.shop.change_product(7, "price = NULL")  # "price on request": the indexer cannot handle it
        self.shop.change_product(8, "stock = stock - 1")  # after it: applied, the indexer went on
        self.cdc_events += 2
        self.wait_for_cdc()
        before = len(self.indexer.dead_letters)
        self.indexer.drain()
        faults.dead_letters = self.indexer.dead_letters[before:]

    def _offsets_replayed(self, faults: Faults, partition: int = 0, start: int = 0, end: int = 3) -> None:
        """Copy offsets [start, end) of one partition into the topic again (a replay after a
        failover), then let the lander consume them."""
        from confluent_kafka import Consumer, Producer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"shop-{self.tag}-replay",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([TopicPartition(self.orders_topic, partition, start)])
            messages: list[Any] = []
            while len(messages) < end - start:
                messages += [
                    m for m in consumer.consume(end - start - len(messages), timeout=10) if m.error() is None
                ]
        finally:
            consumer.close()
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for msg in messages:
            producer.produce(
                self.orders_topic,
                key=msg.key(),
                value=msg.value(),
                headers=msg.headers(),
                partition=partition,
            )
            event = json.loads(msg.value())
            faults.replayed.append(event["event_id"])
            order = json.loads(event["payload"])
            day = dt.date.fromisoformat(order["ordered_at"][:10])
            faults.replayed_revenue[day] = faults.replayed_revenue.get(
                day, decimal.Decimal(0)
            ) + decimal.Decimal(order["amount"])
        if producer.flush(30):
            raise StoreUnavailableError("replay: the broker did not acknowledge the copies")
        self.lander.drain()

    # -- what the contract must find -------------------------------------------------------------------------

    @staticmethod
    def expected(faults: Faults) -> Expected:
        cdc: set[tuple[object, str]] = {(k, kind) for k, kind in faults.cdc_lost.items()}
        poison: set[tuple[object, str]] = {(faults.poison_product, "changed")}
        return {
            "orders_outbox": set(),
            "outbox_topic": {(e, "duplicate") for e in faults.relay_duplicates + faults.replayed}
            | {(faults.lost_event, "missing")},
            "topic_bronze": {(e, "duplicate") for e in faults.replayed},
            "topic_gold": {(day, "changed") for day in faults.replayed_revenue},
            "products_cdc": cdc,
            "cdc_index": poison,
            "products_index": cdc | poison,
        }

    def check(self) -> dict[str, Any]:
        """Every seam of the contract, reconciled as declared."""
        contract = self.contract()
        return {name: contract.reconcile(seam) for name, seam in contract.seams.items()}

    # -- repair --------------------------------------------------------------------------------------

    def repair(self) -> dict[str, tuple[Any, Any]]:
        """Repair what is repairable, each seam through its contract, and reconcile it again:
        the outbox hop (re-publish the missing event; its duplicates stay, reported as not
        repairable in a log), the index from the topic state (the skipped poison message), then the
        index from Postgres (the CDC hop's lost changes). Per seam: (the outcome, the result after)."""
        contract = self.contract()
        out: dict[str, tuple[Any, Any]] = {}
        for name in ("outbox_topic", "cdc_index", "products_index"):
            seam = contract.seam(name)
            plan = contract.reconcile(seam).plan_repair(max_fraction=seam.repair.max_fraction or 0.05)
            outcome = plan.apply()
            if name == "outbox_topic":
                self.lander.drain()  # the re-published event reaches bronze and gold
            out[name] = (outcome, contract.reconcile(seam))
        return out

    # -- the end -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the connector and drop its slot and publication (an idle slot would hold WAL back
        forever); the stores stay, for `seamline check` on the contract afterwards."""
        self.connector.drop()

    def drop(self) -> None:
        """Remove everything this tag's pipeline created (also what an earlier run left behind)."""
        from confluent_kafka.admin import AdminClient
        from opensearchpy import OpenSearch

        self.connector.drop()
        self.shop.drop()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        prefix = f"shop-{self.tag}."
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result(timeout=60)
        groups = [f"shop-{self.tag}-{g}" for g in ("indexer", "lander")]
        try:
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                try:
                    future.result(timeout=30)
                except Exception:  # a group that never committed does not exist
                    pass
        except Exception:
            pass
        OpenSearch(hosts=[self.url], timeout=60).indices.delete(index=self.index, ignore_unavailable=True)
        shutil.rmtree(self.workdir / "stream-lake", ignore_errors=True)
        self.connector.forget_offsets()
