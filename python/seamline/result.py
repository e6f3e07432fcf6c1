"""The outcome of a reconcile: counts, the differences (Polars), the mismatched key ranges, what
each side read "as of", and a machine-readable report.

The differences are built and counted in Arrow; the Polars frame is made when first asked for, so a
reconcile whose caller reads only the counts never imports polars (0.25 CPU-seconds)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from seamline.compare import Binary, Compare, LogicalType, Uuid
from seamline.engine import EngineOutput, Options
from seamline.exceptions import InvalidInputError
from seamline.jsonsafe import json_safe
from seamline.progress import throughput
from seamline.seam import SeamColumns
from seamline.stores.protocols import AsOf, KeyRange, Source

if TYPE_CHECKING:
    import polars as pl

    from seamline.repair.plan import RepairPlan

KINDS = ("missing", "extra", "changed", "duplicate")


def _take(table: pa.Table | None, column: str, rows: pa.Array, like: pa.DataType | None) -> pa.Array:
    if table is None:
        return pa.nulls(len(rows), like or pa.null())
    values = table.column(column).combine_chunks()
    if isinstance(values.type, pa.BaseExtensionType):
        values = values.storage  # e.g. Postgres numeric streamed as an opaque extension over text
    if pa.types.is_run_end_encoded(values.type):
        values = pc.run_end_decode(values)  # take has no kernel for run-end encoded arrays
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


def _uuid_text(value: Any) -> str | None:
    """A uuid, given as 16 bytes or as text in any case and layout, in its canonical text form."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            return str(uuid.UUID(bytes=bytes(value)))
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        return str(value)  # not a uuid: the core has already refused it; never crash the report


def _as_text(values: pa.Array) -> pa.Array:
    """Any array as text: a cast where Arrow has one, else each value's repr (bytes that are not
    UTF-8 must not fail the report)."""
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())


def _canonical_key(values: pa.Array, logical: LogicalType) -> pa.Array:
    """Key values in the form the core compares them in, when the sides hold them in different
    Arrow types (a uuid as 16 bytes on one side and as text on the other)."""
    if isinstance(logical, Uuid):
        return pa.array([_uuid_text(v) for v in values.to_pylist()], pa.string())
    if isinstance(logical, Binary):
        return values.cast(pa.large_binary())  # text keys compare as their UTF-8 bytes
    return _as_text(values)


def _key_column(
    from_src: pa.Array | None,
    from_dst: pa.Array,
    logical: LogicalType,
    types: tuple[pa.DataType, pa.DataType],
) -> pa.Array:
    """One key column of the differences: the source's value, else the target's, in the source's
    type. When the two sides declare the key in different Arrow types, a value the source's type
    cannot hold exactly (a uuid as 16 bytes against text) comes out in its canonical form, from
    either side, so the column has one form in every group of differences."""
    if pa.types.is_null(from_dst.type):  # the target kept no row in this group
        from_dst = pa.nulls(len(from_dst), from_src.type if from_src is not None else types[0])
    if types[0] != types[1] and isinstance(logical, Uuid | Binary):
        parts = [_canonical_key(a, logical) for a in (from_src, from_dst) if a is not None]
        return pc.coalesce(*parts) if len(parts) > 1 else parts[0]
    if from_dst.type != types[0]:
        try:
            cast = from_dst.cast(types[0])
            if pc.all(pc.equal(cast.cast(from_dst.type), from_dst)).as_py() is not False:
                from_dst = cast  # lossless: int32 as int64, text that is the number
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    if from_src is None:
        return from_dst if from_dst.type == types[0] else _as_text(from_dst)
    if from_src.type == from_dst.type:
        return pc.coalesce(from_src, from_dst)
    return pc.coalesce(_as_text(from_src), _as_text(from_dst))


def _polars_type(t: pa.DataType) -> pa.DataType:
    """`t`, or the nearest type polars can hold: a fixed-offset zone ("+05:30", which polars cannot
    parse) as UTC (the same instants), a decimal256 as a decimal128 when its precision fits, else
    as text (polars has no 256-bit integers)."""
    if pa.types.is_timestamp(t) and t.tz and t.tz[:1] in "+-" and t.tz not in ("+00:00", "-00:00"):
        return pa.timestamp(t.unit, tz="UTC")
    if pa.types.is_decimal256(t):
        return pa.decimal128(t.precision, t.scale) if t.precision <= 38 else pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_polars_type(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _polars_type(t.value_type)
        return pa.list_(inner) if pa.types.is_list(t) else pa.large_list(inner)
    return t


def _for_polars(table: pa.Table) -> pa.Table:
    """The differences with every column in a type polars can hold (see `_polars_type`)."""
    wanted = pa.schema([f.with_type(_polars_type(f.type)) for f in table.schema])
    return table if wanted == table.schema else table.cast(wanted)


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
    # each group's rows go as soon as its differences are built (the output keeps no row tables)
    groups, out.diffs = out.diffs, []
    groups.reverse()
    while groups:
        src, dst, found = groups.pop()
        src_rows = found.column("source_row").combine_chunks()
        dst_rows = found.column("target_row").combine_chunks()
        cols: dict[str, pa.Array] = {}
        for s, t in seam.key:
            from_src = _take(src, s, src_rows, None) if src is not None else None
            from_dst = _take(dst, t, dst_rows, None)
            types = (schemas["source"].field(s).type, schemas["target"].field(t).type)
            cols[s] = _key_column(from_src, from_dst, seam.logical[s], types)
        cols["kind"] = found.column("kind").combine_chunks()
        indexes = found.column("columns").combine_chunks()
        offsets = pc.subtract(indexes.offsets, indexes.offsets[0])  # from the first list on
        cols["columns"] = pa.ListArray.from_arrays(
            offsets, pa.array(value_names, pa.string()).take(indexes.flatten())
        )
        cols["side"] = found.column("duplicate_side").combine_chunks()
        cols["occurrences"] = found.column("occurrences").combine_chunks()
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
    return _for_polars(pa.concat_tables(parts, promote_options="permissive"))


def _sorted(table: pa.Table, by: list[str]) -> pa.Table:
    """The differences in key order, sorted by Arrow before they become a polars frame: one copy of
    the rows taken in order, where sorting the frame held the unsorted frame, the sorted one and
    polars' sort buffers at once (3x the frame at the peak: +36 MB for 100k differences)."""
    if table.num_rows < 2:
        return table
    try:
        return table.take(
            pc.sort_indices(table, options=pc.SortOptions([(name, "ascending") for name in by]))
        )
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        # a type Arrow cannot sort or take (the view layouts polars exports): polars sorts it
        import polars as pl

        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.sort(by).to_arrow()


@dataclass
class SeamContext:
    """Everything needed to run a seam again: to settle in-flight changes, to verify a repair."""

    source: Source
    target: Source
    key: Any
    columns: Any
    compare: Compare
    version: str | None
    grace_seconds: float | None
    options: Options


def _newer_than(values: pa.Array, cutoff_us: int) -> pa.Array | None:
    """Per value: a timestamp after `cutoff_us` (microseconds since the epoch, UTC; a naive timestamp
    counts as UTC); None when `values` are not timestamps."""
    if not pa.types.is_timestamp(values.type):
        return None
    per_us = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}[values.type.unit]
    ticks = values.cast(pa.int64())
    # v * k > c  <=>  v > floor(c / k) for integers
    cutoff = cutoff_us * 1_000 if per_us is None else cutoff_us // per_us
    return pc.greater(ticks, pa.scalar(cutoff, pa.int64()))


def _in_flight(diffs: pa.Table, seam: SeamColumns, grace: float | None, pinned_at: float) -> pa.Array:
    """True for differences whose version is newer than `pinned_at - grace`: the source's version,
    or the target's for a row only the target has. Only timestamp versions can be in flight."""
    none = pa.array([False] * diffs.num_rows, pa.bool_())
    if grace is None or seam.version is None or not diffs.num_rows:
        return none
    name = seam.version[0]
    structs = {side: diffs.column(side).combine_chunks() for side in ("source", "target")}
    cutoff = dt.datetime.fromtimestamp(pinned_at - grace, tz=dt.UTC)
    cutoff_us = (cutoff - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    flags: dict[str, tuple[pa.Array, pa.Array]] = {}
    for side, struct in structs.items():
        if not any(f.name == name for f in struct.type):
            continue
        values = pc.struct_field(struct, name)
        newer = _newer_than(values, cutoff_us)
        if newer is not None:
            present = pc.and_(struct.is_valid(), values.is_valid())
            flags[side] = (present, newer)
    if "source" not in flags:
        return none
    present, newer = flags["source"]
    if "target" in flags:  # a row only the target has: the target's version
        newer = pc.if_else(present, newer, flags["target"][1])
    return pc.fill_null(newer, False)


class ReconcileResult:
    """What a reconcile found. `diffs` is a Polars DataFrame; `to_json()` the whole report."""

    def __init__(
        self,
        *,
        context: SeamContext,
        seam: SeamColumns,
        as_of: dict[str, AsOf],
        output: EngineOutput,
        schemas: dict[str, pa.Schema],
        pinned_at: float,
        rechecked: bool,
        seconds: float,
        recheck: Callable[[ReconcileResult], ReconcileResult] | None = None,
    ) -> None:
        self.context = context
        self._recheck = recheck
        self.source = context.source.describe()
        self.target = context.target.describe()
        self.seam = seam
        self.compare = context.compare.describe()
        self.as_of = {side: asdict(a) for side, a in as_of.items()}
        self.output = output
        self.schemas = schemas
        self.pinned_at = pinned_at
        self.rechecked = rechecked
        self.seconds = seconds
        table = _sorted(build_diffs(output, seam, schemas), [s for s, _ in seam.key] + ["kind"])
        in_flight = _in_flight(table, seam, context.grace_seconds, pinned_at)
        self._diffs_arrow = table.append_column("in_flight", in_flight)
        self._diffs: pl.DataFrame | None = None
        kinds = pc.value_counts(table.column("kind").filter(pc.invert(in_flight))) if table.num_rows else []
        settled = {c["values"].as_py(): c["counts"].as_py() for c in kinds}
        self.counts: dict[str, int] = (
            {"source_rows": output.source_rows, "target_rows": output.target_rows}
            | {k: int(settled.get(k, 0)) for k in KINDS}
            | {"in_flight": table.num_rows - sum(settled.values())}
        )

    @property
    def diffs(self) -> pl.DataFrame:
        """The differences as a Polars frame (made on first use)."""
        if self._diffs is None:
            import polars as pl

            frame = pl.from_arrow(self._diffs_arrow)
            assert isinstance(frame, pl.DataFrame)
            self._diffs = frame
        return self._diffs

    @diffs.setter
    def diffs(self, frame: pl.DataFrame) -> None:
        self._diffs = frame
        self._diffs_arrow = frame.to_arrow()

    @property
    def diffs_arrow(self) -> pa.Table:
        """The differences as an Arrow table (the columns of `diffs`), without polars."""
        return self._diffs_arrow

    @property
    def settled(self) -> pl.DataFrame:
        """The differences that count as drift (not in flight)."""
        import polars as pl

        return self.diffs.filter(~pl.col("in_flight")) if self.diffs.height else self.diffs

    @property
    def recheck_at(self) -> float:
        """When the newest in-flight difference leaves the grace window (epoch seconds)."""
        return self.pinned_at + (self.context.grace_seconds or 0)

    def recheck(self) -> ReconcileResult:
        """The seam again, from fresh snapshots of both stores, over just the leaves this result
        found differing (the row totals stay this result's): to settle in-flight changes or to
        verify a repair."""
        if self._recheck is None:
            raise InvalidInputError("this result cannot be checked again (it was not made by a reconcile)")
        return self._recheck(self)

    def plan_repair(self, max_fraction: float = 0.05) -> RepairPlan:
        """The repair of the settled differences, as data (see `seamline.repair.RepairPlan`)."""
        from seamline.repair.plan import RepairPlan

        return RepairPlan.from_result(self, max_fraction=max_fraction)

    @property
    def clean(self) -> bool:
        return all(self.counts[k] == 0 for k in KINDS)

    @property
    def ranges(self) -> list[KeyRange]:
        """The mismatched key ranges, [lo, hi) in canonical key order (None: unbounded)."""
        return self.output.ranges

    @property
    def passes(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.output.passes]

    def to_dict(self) -> dict[str, Any]:
        from seamline.keyspace import key_space  # polars: only for the report

        key_names = [s for s, _ in self.seam.key]
        return json_safe(
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
                    "source": self.output.merkle_roots[0],
                    "target": self.output.merkle_roots[1],
                },
                "leaves": {
                    "ranges": self.output.partitioner.num_ranges,
                    "fanout_bits": self.output.partitioner.fanout_bits,
                    "mismatched": len(self.output.mismatched_leaves),
                },
                "passes": self.passes,
                "throughput": throughput(self.passes),
                "key_space": key_space(
                    bounds=self.output.bounds,
                    fanout_bits=self.output.partitioner.fanout_bits,
                    mismatched_leaves=self.output.mismatched_leaves,
                    diffs=self.diffs,
                    key_names=key_names,
                    source_rows=self.counts["source_rows"],
                ),
                "rechecked_in_flight": self.rechecked,
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
