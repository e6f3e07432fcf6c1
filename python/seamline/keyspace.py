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
import decimal
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
    if isinstance(value, bool | int | float | decimal.Decimal):
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


def _range_indexes(
    diffs: pl.DataFrame, key_names: Sequence[str], bounds: Sequence[tuple[Any, ...]]
) -> pl.Series:
    """The range of each difference's key: i for [bounds[i-1], bounds[i]). A single key column is
    searched in the bounds by polars (the core's order: numbers numerically, text by UTF-8 bytes);
    a composite key, or bounds that do not cast to the key's type, one key at a time in Python."""
    if not bounds:
        return pl.repeat(0, diffs.height, dtype=pl.Int64, eager=True)
    column = diffs[key_names[0]]
    if len(key_names) == 1:
        try:
            sorted_bounds = pl.Series([b[0] for b in bounds]).cast(column.dtype, strict=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            sorted_bounds = None
        if sorted_bounds is not None and not sorted_bounds.null_count() and sorted_bounds.is_sorted():
            return sorted_bounds.search_sorted(column, side="right").cast(pl.Int64)
    keyed = [_key(b) for b in bounds]
    as_text = [tuple(map(str, b)) for b in bounds]
    out = []
    for row_key in diffs.select(key_names).iter_rows():
        try:
            out.append(bisect.bisect_right(keyed, _key(row_key)))
        except TypeError:  # e.g. timestamps with and without a zone: place it by its text
            out.append(bisect.bisect_right(as_text, tuple(map(str, row_key))))
    return pl.Series(out, dtype=pl.Int64)


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
        late = (
            diffs["in_flight"].fill_null(False)
            if "in_flight" in diffs.columns
            else pl.repeat(False, diffs.height, eager=True)
        )
        kinds = diffs["kind"].zip_with(~late, pl.repeat("in_flight", diffs.height, eager=True))
        buckets_of = (_range_indexes(diffs, key_names, bounds_list) // per_bucket).clip(
            upper_bound=num_buckets - 1
        )
        counted = pl.DataFrame({"bucket": buckets_of, "what": kinds}).group_by("bucket", "what").len()
        for bucket, what, count in counted.iter_rows():
            buckets[bucket][what] += count
    return json_safe(
        {
            "key": list(key_names),
            "ranges": num_ranges,
            "ranges_per_bucket": per_bucket,
            "rows_per_range": source_rows / num_ranges if num_ranges else 0,
            "buckets": buckets,
        }
    )
