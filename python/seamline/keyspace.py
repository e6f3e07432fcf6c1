"""Where in the key space a seam drifted: the run's key ranges on one axis, grouped into at most
MAX_BUCKETS buckets of consecutive ranges, with the differences of each kind counted per bucket.

Range boundaries are quantiles of the source's keys, so every range holds about the same number of
rows and a count per bucket reads as a drift density: one bad batch shows as one dense bucket,
scattered drift as a thin even layer. The report (`ReconcileResult.to_dict()["key_space"]`) carries
this summary, computed from every difference, so a page that shows only a sample of the differences
still draws the whole picture.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from seamline.engine import _bound_tuples
from seamline.jsonsafe import json_safe

KINDS = ("missing", "extra", "changed", "duplicate")
MAX_BUCKETS = 64


def _sortable(value: Any) -> tuple[int, Any]:
    """A key value that compares with any other: by type first (None, numbers, then text), so
    bounds and keys whose Python types differ (e.g. a key read as text on one side) never fail."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (3, value)
    try:
        value < value  # noqa: B015 - does this type order at all?
    except TypeError:
        return (3, str(value))
    return (2, value) if not isinstance(value, bytes) else (4, value)


def _key(values: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple(_sortable(v) for v in values)


def key_space(
    *,
    bounds: pa.Table | None,
    fanout_bits: int,
    mismatched_leaves: Sequence[int],
    diffs: pl.DataFrame,
    key_names: Sequence[str],
    source_rows: int,
) -> dict[str, Any]:
    """The key-space strip of one seam: buckets of consecutive ranges, each with its key bounds
    [lo, hi), the share of the ranges it covers, its mismatched leaves and its differences by kind."""
    bounds_list = _bound_tuples(bounds)
    num_ranges = len(bounds_list) + 1
    per_bucket = -(-num_ranges // MAX_BUCKETS)  # ceil: at most MAX_BUCKETS buckets
    num_buckets = -(-num_ranges // per_bucket)
    buckets: list[dict[str, Any]] = []
    for b in range(num_buckets):
        first, last = b * per_bucket, min(num_ranges, (b + 1) * per_bucket)  # ranges [first, last)
        lo = bounds_list[first - 1] if first > 0 else None
        hi = bounds_list[last - 1] if last < num_ranges else None
        buckets.append(
            {
                "lo": dict(zip(key_names, lo, strict=True)) if lo is not None else None,
                "hi": dict(zip(key_names, hi, strict=True)) if hi is not None else None,
                "ranges": last - first,
                "mismatched_leaves": 0,
                **{k: 0 for k in KINDS},
                "in_flight": 0,
            }
        )
    for leaf in mismatched_leaves:
        buckets[min(num_buckets - 1, (leaf >> fanout_bits) // per_bucket)]["mismatched_leaves"] += 1
    if diffs.height and all(k in diffs.columns for k in key_names):
        sorted_bounds = [_key(b) for b in bounds_list]
        in_flight = diffs["in_flight"].to_list() if "in_flight" in diffs.columns else [False] * diffs.height
        keys = diffs.select(key_names).rows()
        for row_key, kind, late in zip(keys, diffs["kind"].to_list(), in_flight, strict=True):
            try:  # range i: [bounds[i-1], bounds[i])
                index = bisect.bisect_right(sorted_bounds, _key(row_key))
            except TypeError:  # e.g. timestamps with and without a zone: place it by its text
                index = bisect.bisect_right(
                    [tuple(map(str, b)) for b in bounds_list], tuple(map(str, row_key))
                )
            bucket = buckets[min(num_buckets - 1, index // per_bucket)]
            bucket["in_flight" if late else kind] += 1
    return json_safe(
        {
            "key": list(key_names),
            "ranges": num_ranges,
            "ranges_per_bucket": per_bucket,
            "rows_per_range": source_rows / num_ranges if num_ranges else 0,
            "buckets": buckets,
        }
    )
