"""The engine's Python-side layout helpers, made faster for issue 13's CPU goal, against their plain
definitions: the interpolated range boundaries (computed by numpy) equal the points of the per-gap
`range`s, and the key ranges of mismatched leaves equal a lookup of each run's boundaries."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline import _core
from seamline.engine import BoundRows, _interpolated, key_ranges
from seamline.stores.protocols import KeyRange

INT_TYPES = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "uint64": pa.uint64()}
LIMITS = {"int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
LIMITS["uint64"] = (0, 2**64 - 1)


def interpolated_by_definition(values: list[int], want: int) -> list[int]:
    """Every gap between neighbouring sampled keys cut into about `want / gaps` steps."""
    per_gap = max(1, -(-want // (len(values) - 1)))
    points: set[int] = set()
    for a, b in zip(values, values[1:], strict=False):
        points.update(range(a, b, max(1, (b - a) // per_gap)))
    return sorted(points | {values[-1]})


@st.composite
def sampled_keys(draw: Any) -> tuple[str, list[int]]:
    kind = draw(st.sampled_from(sorted(INT_TYPES)))
    lo, hi = LIMITS[kind]
    # spans from a few keys to the whole type (where the int64 arithmetic would overflow)
    span = min(hi - lo, draw(st.sampled_from([40, 10**6, 2**40, hi - lo])))
    start = draw(st.integers(lo, hi - span))
    values = draw(st.lists(st.integers(start, start + span), min_size=2, max_size=200, unique=True))
    return kind, sorted(values)


@settings(max_examples=300, deadline=None)
@given(keys=sampled_keys(), want=st.sampled_from([2, 50, 1000, 100_000]))
def test_interpolated_bounds_are_the_points_of_each_gap(keys: tuple[str, list[int]], want: int) -> None:
    kind, values = keys
    table = pa.table({"id": pa.array(values, INT_TYPES[kind])})
    got = _interpolated(table, want)
    assert got.schema == table.schema
    assert got.column("id").to_pylist() == interpolated_by_definition(values, want)


def key_ranges_by_definition(leaves: list[int], bits: int, bounds: list[tuple[Any, ...]]) -> list[KeyRange]:
    """Each run of consecutive mismatched ranges, from the boundary below its first range to the
    boundary above its last (none below the first range, none above the last)."""
    out = []
    for first, last in _core.coalesce_ranges(sorted(leaves), bits):
        lo = bounds[first - 1] if first > 0 else None
        hi = bounds[last] if last < len(bounds) else None
        out.append(KeyRange(lo, hi))
    return out


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.integers(-1000, 1000), max_size=60, unique=True),
    bits=st.integers(0, 3),
    data=st.data(),
)
def test_key_ranges_are_the_runs_between_their_boundaries(keys: list[int], bits: int, data: Any) -> None:
    keys.sort()
    table = pa.table({"a": pa.array(keys, pa.int64()), "b": pa.array([f"k{k}" for k in keys])})
    rows = BoundRows(table)
    as_tuples = list(rows)
    assert as_tuples == [(k, f"k{k}") for k in keys]
    leaves = data.draw(st.sets(st.integers(0, ((len(keys) + 1) << bits) - 1)))
    expected = key_ranges_by_definition(list(leaves), bits, as_tuples)
    assert key_ranges(list(leaves), bits, rows) == expected
    assert key_ranges(list(leaves), bits, as_tuples) == expected
