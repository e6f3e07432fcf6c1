"""The shop as a real stream pipeline, for `seamline demo` and tests/test_pipeline.py.

Orders: the service writes each order and its outbox event in one Postgres transaction; the relay
(``relay.py``) publishes the outbox to a Kafka topic; the lander (``consumers.py``) lands the events
as bronze in Iceberg and keeps gold revenue per day. Products: Debezium (``cdc.py``, the launcher of
services/debezium in a process of its own) streams the products table into a topic; the indexer
applies the change events to OpenSearch, versioned (``external_gte``). ``scenario.py`` builds it,
injects the five faults and says what the contract (``contract.yaml``) must find at each seam.

Demo and test code, not part of the library: it sits outside the layered packages.
"""

from __future__ import annotations

from seamline.demo_pipeline.scenario import CONTRACT, Faults, Pipeline, unavailable

__all__ = ["CONTRACT", "Faults", "Pipeline", "unavailable"]
