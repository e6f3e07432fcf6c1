"""The outcome of a reconcile: counts, the differences (Polars), the mismatched key ranges, what
each side read "as of", and a machine-readable report."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from dataclasses import asdict
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from seamline.engine import EngineOutput
from seamline.seam import SeamColumns
from seamline.sources.base import AsOf, KeyRange

KINDS = ("missing", "extra", "changed", "duplicate")


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal | uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, float) and v != v:
        return "NaN"
    return v


def _take(table: pa.Table | None, column: str, rows: pa.Array, like: pa.DataType | None) -> pa.Array:
    if table is None:
        return pa.nulls(len(rows), like or pa.null())
    values = table.column(column).combine_chunks()
    if isinstance(values.type, pa.BaseExtensionType):
        values = values.storage  # e.g. Postgres numeric streamed as an opaque extension over text
    if pa.types.is_string_view(values.type) or pa.types.is_binary_view(values.type):
        # pyarrow's take has no kernel for the view layouts polars exports
        values = values.cast(pa.large_string() if pa.types.is_string_view(values.type) else pa.large_binary())
    values = values.take(rows)
    if like is not None and values.type != like:
        try:
            return values.cast(like)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return values.cast(pa.string()) if like == pa.string() else values
    return values


def _struct(
    table: pa.Table | None, names: list[tuple[str, str]], rows: pa.Array, schema: pa.Schema
) -> pa.Array:
    """The compared values of the given rows, under source names, in the side's declared types
    (a numeric streamed as text shows as a decimal); NULL where the row is absent."""
    if not names:
        return pa.nulls(len(rows), pa.struct([]))
    arrays = [_take(table, side_name, rows, schema.field(side_name).type) for _, side_name in names]
    mask = pc.is_null(rows)
    return pa.StructArray.from_arrays(arrays, names=[s for s, _ in names], mask=mask)


def build_diffs(out: EngineOutput, seam: SeamColumns, schemas: dict[str, pa.Schema]) -> pa.Table:
    """One row per difference: key columns (source names), kind, columns, side, occurrences, and the
    compared values of each side as structs."""
    parts = []
    value_names = [s for s, _ in seam.values]
    for src, dst, c in out.diffs:
        src_rows = pa.array(c["source_row"], pa.int64())
        dst_rows = pa.array(c["target_row"], pa.int64())
        cols: dict[str, pa.Array] = {}
        for s, t in seam.key:
            from_src = _take(src, s, src_rows, None) if src is not None else None
            like = from_src.type if from_src is not None else None
            from_dst = _take(dst, t, dst_rows, like)
            if from_src is None:
                cols[s] = from_dst
            elif from_dst.type == from_src.type:
                cols[s] = pc.coalesce(from_src, from_dst)
            else:
                cols[s] = pc.coalesce(from_src.cast(pa.string()), from_dst.cast(pa.string()))
        cols["kind"] = pa.array(c["kind"], pa.string())
        cols["columns"] = pa.array(
            [[value_names[j] for j in js] for js in c["columns"]], pa.list_(pa.string())
        )
        cols["side"] = pa.array(c["duplicate_side"], pa.string())
        cols["occurrences"] = pa.array(c["occurrences"], pa.int64())
        cols["source"] = _struct(src, [(s, s) for s, _ in seam.values], src_rows, schemas["source"])
        cols["target"] = _struct(dst, seam.values, dst_rows, schemas["target"])
        parts.append(pa.table(cols))
    if not parts:
        return pa.table(
            {s: pa.array([], pa.string()) for s, _ in seam.key}
            | {
                "kind": pa.array([], pa.string()),
                "columns": pa.array([], pa.list_(pa.string())),
                "side": pa.array([], pa.string()),
                "occurrences": pa.array([], pa.int64()),
            }
        )
    return pa.concat_tables(parts, promote_options="permissive")


class ReconcileResult:
    """What a reconcile found. `diffs` is a Polars DataFrame; `to_json()` the whole report."""

    def __init__(
        self,
        *,
        source: str,
        target: str,
        seam: SeamColumns,
        compare: dict[str, Any],
        as_of: dict[str, AsOf],
        output: EngineOutput,
        schemas: dict[str, pa.Schema],
        seconds: float,
    ) -> None:
        self.source = source
        self.target = target
        self.seam = seam
        self.compare = compare
        self.as_of = {side: asdict(a) for side, a in as_of.items()}
        self._output = output
        self.seconds = seconds
        self.diffs_arrow = build_diffs(output, seam, schemas)
        self.diffs: pl.DataFrame = pl.from_arrow(self.diffs_arrow)  # type: ignore[assignment]
        if self.diffs.height:
            self.diffs = self.diffs.sort([s for s, _ in seam.key] + ["kind"])
        kinds = self.diffs["kind"].to_list() if self.diffs.height else []
        self.counts: dict[str, int] = {
            "source_rows": output.source_rows,
            "target_rows": output.target_rows,
        } | {k: kinds.count(k) for k in KINDS}

    @property
    def clean(self) -> bool:
        return all(self.counts[k] == 0 for k in KINDS)

    @property
    def ranges(self) -> list[KeyRange]:
        """The mismatched key ranges, [lo, hi) in canonical key order (None: unbounded)."""
        return self._output.ranges

    @property
    def passes(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self._output.passes]

    def to_dict(self) -> dict[str, Any]:
        key_names = [s for s, _ in self.seam.key]
        return _json_safe(
            {
                "clean": self.clean,
                "source": self.source,
                "target": self.target,
                "as_of": self.as_of,
                "seam": self.seam.describe(),
                "compare": self.compare,
                "counts": self.counts,
                "ranges": [
                    {
                        "lo": dict(zip(key_names, r.lo, strict=True)) if r.lo else None,
                        "hi": dict(zip(key_names, r.hi, strict=True)) if r.hi else None,
                    }
                    for r in self.ranges
                ],
                "merkle_roots": {
                    "source": self._output.merkle_roots[0],
                    "target": self._output.merkle_roots[1],
                },
                "leaves": {
                    "ranges": self._output.partitioner.num_ranges,
                    "fanout_bits": self._output.partitioner.fanout_bits,
                    "mismatched": len(self._output.mismatched_leaves),
                },
                "passes": self.passes,
                "seconds": round(self.seconds, 3),
                "differences": self.diffs.to_dicts(),
            }
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def write_diffs(self, path: str) -> None:
        """The differences as Parquet."""
        import pyarrow.parquet as pq

        pq.write_table(self.diffs_arrow, path)

    def __repr__(self) -> str:
        state = "clean" if self.clean else "drift"
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"<ReconcileResult {state}: {counts}>"
