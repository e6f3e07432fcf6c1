"""Service fixtures: the real Postgres, OpenSearch and Kafka started by ``scripts/services.sh``.

Start them and export their addresses with ``eval "$(scripts/services.sh env)"``. Without the variables
the tests that need a service are skipped locally and fail under CI (``CI`` set), so a CI run can never
pass by silently skipping its integration tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kafka_topics import Topics


def _service(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        message = f'{var} is not set: start the services with eval "$(scripts/services.sh env)"'
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return value


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return _service("SEAMLINE_PG_DSN")


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    return _service("SEAMLINE_OPENSEARCH_URL")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _service("SEAMLINE_KAFKA_BOOTSTRAP")


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """Test topics on the real broker (tests/kafka_topics.py), deleted after the test."""
    t = Topics(kafka_bootstrap)
    yield t
    t.close()
