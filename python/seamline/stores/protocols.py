"""The contract between a store adapter and the reconcile engine.

An adapter turns one table/index/query of one store into Arrow record batch streams. It never hashes:
the Rust core does. It may push key ranges down to the store; the core filters rows by range anyway,
so pushdown is an optimisation, never a correctness requirement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

# A key bound is a tuple of key values (one per key column, in key order); None on a side of a
# range means unbounded on that side.
KeyBound = tuple[Any, ...]


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


def redact_url(url: str) -> str:
    """A URL or URI without its user and password, for anything shown or logged."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def cover(ranges: Sequence[KeyRange], at_most: int) -> list[KeyRange]:
    """At most `at_most` ranges covering `ranges` (ascending, disjoint): neighbours are merged, so a
    store is asked for a superset, which the core filters. For stores whose queries cannot carry
    thousands of predicates."""
    if len(ranges) <= at_most:
        return list(ranges)
    size = -(-len(ranges) // at_most)
    return [
        KeyRange(ranges[i].lo, ranges[min(i + size, len(ranges)) - 1].hi) for i in range(0, len(ranges), size)
    ]


def pushes_down(source: object, key: Sequence[str]) -> bool:
    """Whether `source` reads just the requested key ranges (its optional `can_push_down(key)`);
    sources without it are read whole and the core filters the rows."""
    check = getattr(source, "can_push_down", None)
    return bool(check(key)) if check is not None else False


def replays_identically(source: object) -> bool:
    """Whether every `open` of `source` with the same request yields the same batches in the same
    order (its optional `replays_identically` attribute: data held in memory). The engine then
    remembers the leaf of each row during the hash pass instead of hashing keys again later."""
    return bool(getattr(source, "replays_identically", False))
