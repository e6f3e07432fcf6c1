"""What a store adapter is to the rest of Seamline: the required `Source` protocol and the optional
capabilities, each a `runtime_checkable` protocol that callers test with `isinstance` (never by
probing attributes), and that mypy checks every adapter against (`stores/registry.py`).

An adapter turns one table/index/query of one store into Arrow record batch streams. It never hashes:
the Rust core does. It may push key ranges down to the store; the core filters rows by range anyway,
so pushdown is an optimisation, never a correctness requirement.

Capabilities:
- `RangePushdown`: reads just the requested key ranges.
- `RowFetchPushdown`: a re-read fetches every row of its ranges one by one (OpenSearch).
- `RowSeekPushdown`: a re-read reads only the rows its ranges hold, by an index walk (Postgres).
- `Replayable`: every `open` with one request yields the same batches in the same order (in memory).
- `Versioned`: the newest value of a column and how many rows are newer than a value (freshness).
- `Repairable`: returns a `RepairWriter`, whose `apply(plan)` returns `WriteCounts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

# A key bound is a tuple of key values (one per key column, in key order); None on a side of a
# range means unbounded on that side.
KeyBound = tuple[Any, ...]

#: computes vectors from texts (vector stores fill vector columns outside the seam with it)
Embed = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass(frozen=True)
class KeyRange:
    """Half-open key range [lo, hi) in the byte order of the canonical key (text keys: COLLATE "C")."""

    lo: KeyBound | None
    hi: KeyBound | None


@dataclass(frozen=True)
class ScanRequest:
    """What the engine asks a source to read.

    columns: the store-side column names to read (key columns first, then compared columns).
    key: the store-side key column names, in key order.
    ranges: None for everything, else the union of these ranges (ascending, disjoint).
    parallelism: how many streams the engine would like (the adapter may return fewer).
    """

    columns: Sequence[str]
    key: Sequence[str]
    ranges: Sequence[KeyRange] | None = None
    parallelism: int = 2


@dataclass
class AsOf:
    """What a source read, "as of": shown in reports and used by freshness."""

    store: str
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """A readable side of a seam."""

    def describe(self) -> str:
        """One line naming the store and the table (never a secret)."""
        ...

    def schema(self) -> pa.Schema:
        """The logical schema. May differ from the physical stream types: e.g. Postgres numeric(12,2)
        is declared decimal128(12, 2) here even though ADBC streams it as text; the core decodes it."""
        ...

    def open(self, request: ScanRequest) -> list[Any]:
        """Start a scan and return one or more objects exporting ``__arrow_c_stream__``.

        All streams of one call must read one consistent snapshot. They are read in parallel, with
        the GIL released. Each call may be made more than once per reconcile (first the hash pass,
        then range passes), and must read the same snapshot every time (see ``pin``)."""
        ...

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        """Up to about n key values (columns named as ``key``) spread over the key space, cheaply
        (statistics, histogram bounds, min/max), used to cut the key space into ranges. None: the
        engine falls back to key-digest-prefix leaves."""
        ...

    def estimated_rows(self) -> int | None:
        """A cheap row-count estimate, or None."""
        ...

    def pin(self) -> AsOf:
        """Fix the snapshot every later ``open`` reads, and say what it is."""
        ...

    def close(self) -> None:
        """Release connections and snapshots."""
        ...


@runtime_checkable
class RangePushdown(Protocol):
    """A source that reads just the requested key ranges; others are read whole and the core filters."""

    def can_push_down(self, key: Sequence[str]) -> bool:
        """Whether ranges over this key (store-side names) can be pushed down."""
        ...


@runtime_checkable
class RowFetchPushdown(Protocol):
    """A range pushdown that fetches every row of a re-read range one by one, at a cost per row far
    above a full read's (OpenSearch: scattered documents): the engine then cuts pushed-down ranges as
    fine as the leaves, so the diff pass re-reads only the mismatched leaves' rows."""

    def refetches_each_row(self) -> bool: ...


@runtime_checkable
class RowSeekPushdown(Protocol):
    """A range pushdown that, for ranges over `key`, reads only the rows inside them (Postgres: the
    key index walked once per range), so a re-read costs by the rows its ranges hold: where both
    sides do, the engine cuts finer ranges, and the diff re-reads fewer rows."""

    def seeks_range_rows(self, key: Sequence[str]) -> bool: ...


@runtime_checkable
class Replayable(Protocol):
    """A source whose every `open` with one request yields the same batches in the same order (data
    held in memory): the engine then remembers the leaf of each row during the hash pass instead of
    hashing keys again later."""

    def replays_identically(self) -> bool: ...


@runtime_checkable
class Versioned(Protocol):
    """A source that reports, in its pinned snapshot, the newest value of a column and how many rows
    are newer than a value (freshness and lineage)."""

    def max_value(self, column: str) -> Any:
        """The largest value of ``column`` (NULLs ignored), or None. A naive timestamp is UTC."""
        ...

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        """Rows whose ``column`` is > ``value`` (>= when inclusive; None: every non-NULL value)."""
        ...


class PlanData(Protocol):
    """What a writer reads of a repair plan (`seamline.repair.RepairPlan` is one): tables in the
    target's column names, carrying the versions that guard every write."""

    seam: str
    key: list[str]
    columns: list[str]
    version: str | None
    upserts: pa.Table
    deletes: pa.Table
    dedupes: pa.Table
    source_key: list[str] | None

    @property
    def empty(self) -> bool: ...

    def check_guard(self) -> None: ...

    def upsert_versions(self) -> pa.Array: ...

    def delete_versions(self) -> pa.Array: ...

    def dedupe_versions(self) -> pa.Array: ...


@dataclass
class WriteCounts:
    """What a writer did with a plan's operations: `applied` (the store now holds their effect,
    including `unchanged` ones already in place and not written again), `skipped_newer` (a newer
    write won), `failed`; one-line `errors`; store-specific `detail` (a snapshot id, a version)."""

    applied: int = 0
    skipped_newer: int = 0
    failed: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RepairWriter(Protocol):
    """Writes repair plans to one store, never over a newer write, idempotently."""

    def apply(self, plan: PlanData) -> WriteCounts: ...


@runtime_checkable
class Repairable(Protocol):
    """A source whose table/index a repair plan can be written to."""

    def repair_writer(self, embed: Embed | None = None) -> RepairWriter:
        """The writer for this table/index. `embed` fills vector columns where the store has them."""
        ...
