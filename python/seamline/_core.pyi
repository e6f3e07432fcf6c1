"""Type stubs for the native module seamline._core (rust/seamline-python).

Checked against the built module by `python -m mypy.stubtest seamline._core` (`make lint`). The
native classes cannot be subclassed (`@final`)."""

from typing import Any, Self, final

__all__ = [
    "SeamlineError",
    "SchemaError",
    "ValueParseError",
    "InvalidInputError",
    "StoreUnavailableError",
    "NotFoundError",
    "ContractError",
    "RepairRefusedError",
    "SideSpec",
    "CancelToken",
    "RowCounter",
    "Partitioner",
    "LeafSet",
    "Collected",
    "RowLeaves",
    "RetainedBatches",
    "hash_pass",
    "collect_pass",
    "classify",
    "sorted_unique_rows",
    "coalesce_ranges",
    "merkle_roots",
    "available_cores",
    "pg_copy_stream",
    "PgSession",
    "os_search_stream",
    "OsHttp",
    "kafka_fetch_stream",
    "kafka_fold",
    "__version__",
]

__version__: str

class SeamlineError(Exception): ...
class SchemaError(SeamlineError): ...
class ValueParseError(SeamlineError): ...
class InvalidInputError(SeamlineError): ...
class ContractError(InvalidInputError): ...
class StoreUnavailableError(SeamlineError): ...
class NotFoundError(SeamlineError): ...
class RepairRefusedError(SeamlineError): ...

@final
class CancelToken:
    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class RowCounter:
    def __init__(self) -> None: ...
    @property
    def value(self) -> int: ...

@final
class RowLeaves:
    def __init__(self) -> None: ...
    @property
    def num_rows(self) -> int: ...

@final
class RetainedBatches:
    def __new__(cls, budget: int, expected_rows: int | None = None) -> Self: ...
    @property
    def complete(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def num_rows(self) -> int: ...
    def streams(self) -> list[Any] | None: ...

@final
class SideSpec:
    def __new__(cls, side: str, key: list[dict[str, Any]], values: list[dict[str, Any]]) -> Self: ...
    @property
    def n_values(self) -> int: ...

@final
class Partitioner:
    def __new__(cls, spec: SideSpec, bounds: Any | None, fanout_bits: int) -> Self: ...
    @property
    def num_ranges(self) -> int: ...
    @property
    def fanout_bits(self) -> int: ...
    @property
    def num_leaves(self) -> int: ...
    def refined(self, extra_bits: int) -> Partitioner: ...

@final
class LeafSet:
    @property
    def num_ranges(self) -> int: ...
    @property
    def fanout_bits(self) -> int: ...
    @property
    def total_rows(self) -> int: ...
    @property
    def num_nonempty(self) -> int: ...
    def merkle_root(self) -> str: ...
    def mismatched(self, other: LeafSet) -> list[int]: ...
    def mismatched_sizes(self, other: LeafSet) -> tuple[list[int], list[int]]: ...
    def merged(self, other: LeafSet) -> LeafSet: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> LeafSet: ...

@final
class Collected:
    @property
    def num_rows(self) -> int: ...

def hash_pass(
    streams: list[Any],
    spec: SideSpec,
    partitioner: Partitioner,
    parents: list[int] | None = None,
    shift: int = 0,
    cancel: CancelToken | None = None,
    counter: RowCounter | None = None,
    remember: RowLeaves | None = None,
    workers: int | None = None,
    retain: RetainedBatches | None = None,
) -> LeafSet: ...
def collect_pass(
    streams: list[Any],
    spec: SideSpec,
    partitioner: Partitioner,
    parents: list[int],
    shift: int = 0,
    cancel: CancelToken | None = None,
    counter: RowCounter | None = None,
    known: RowLeaves | None = None,
    workers: int | None = None,
) -> Collected: ...
def classify(source: Collected, target: Collected, n_values: int) -> tuple[Any | None, Any | None, Any]: ...
def sorted_unique_rows(sample: Any, spec: SideSpec) -> list[int]: ...
def coalesce_ranges(leaves: list[int], fanout_bits: int) -> list[tuple[int, int]]: ...
def merkle_roots(a: LeafSet, b: LeafSet) -> tuple[str, str]: ...
def available_cores() -> int: ...
def pg_copy_stream(
    params: list[tuple[str, str]],
    query: str,
    *,
    snapshot: str | None,
    settings: list[str],
    address: str,
    what: str,
    batch_rows: int = 65536,
) -> Any: ...

@final
class PgSession:
    """One Postgres connection of the Rust client, for catalog queries and the snapshot coordinator."""

    def __new__(cls, params: list[tuple[str, str]], *, address: str, what: str) -> Self: ...
    def execute(self, sql: str) -> None: ...
    def columns(self, sql: str) -> list[tuple[str, str, int]]: ...
    def query(self, sql: str, params: list[str | None] = ...) -> Any: ...
    def close(self) -> None: ...

def os_search_stream(
    http: OsHttp,
    *,
    attempts: int,
    backoff: float,
    pit_id: str,
    keep_alive: str,
    page_size: int,
    bodies: list[str],
    schema: Any,
    columns: list[tuple[str, str]],
    filter_path: str,
    what: str,
    index: str,
    concurrency: int = ...,
) -> Any: ...

@final
class OsHttp:
    """The Rust reader's HTTP client for the OpenSearch adapter's catalog requests."""

    def __new__(
        cls,
        url: str,
        *,
        username: str | None,
        password: str | None,
        verify_certs: bool,
        ca_certs: str | None,
        timeout: float,
        attempts: int,
        backoff: float,
        address: str,
        client_cert: str | None = None,
        client_key: str | None = None,
        headers: list[tuple[str, str]] = ...,
    ) -> Self: ...
    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]: ...

def kafka_fetch_stream(
    bootstrap: str,
    topic: str,
    partitions: list[tuple[int, int, int]],
    *,
    config: list[tuple[str, str]],
    what: str,
    idle_timeout: float = 10.0,
    batch_rows: int = 65536,
    batch_bytes: int = ...,
    heartbeat: float = 0.2,
) -> Any: ...
def kafka_fold(
    bootstrap: str,
    topic: str,
    partitions: list[tuple[int, int, int]],
    *,
    config: list[tuple[str, str]],
    what: str,
    value: str,
    key_field: str | None,
    version: str | None,
    idle_timeout: float = 10.0,
) -> tuple[Any, dict[str, Any]]: ...
