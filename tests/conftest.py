"""Service fixtures: the real Postgres, OpenSearch and Kafka started by ``scripts/services.sh``.

Start them and export their addresses with ``eval "$(scripts/services.sh env)"``. Without the variables
the tests that need a service are skipped locally and fail under CI (``CI`` set), so a CI run can never
pass by silently skipping its integration tests.
"""

from __future__ import annotations

import os

import pytest


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
