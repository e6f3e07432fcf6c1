"""The conformance suite's fixture: one harness per registered store type (`harnesses.HARNESSES`),
over a real Postgres system of record (and the real OpenSearch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harnesses import HARNESSES, Harness, OpenSearchHarness
from repair_helpers import Pg

from seamline.stores import registry


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Pg]:
    db = Pg(pg_dsn)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(params=registry.names(contract_only=True))
def store(request: pytest.FixtureRequest, pg: Pg, tmp_path: Path) -> Iterator[Harness]:
    kind = request.param
    assert kind in HARNESSES, f"store type {kind!r} is registered but has no conformance harness"
    harness: Harness
    if kind == "kafka":
        request.getfixturevalue("kafka_bootstrap")  # skipped (failed under CI) without the broker
    if HARNESSES[kind] is OpenSearchHarness:
        harness = OpenSearchHarness(pg, tmp_path, request.getfixturevalue("opensearch_url"))
    else:
        harness = HARNESSES[kind](pg, tmp_path)
    try:
        yield harness
    finally:
        harness.close()
