"""Iceberg reader: reads one snapshot of an Iceberg table through pyiceberg as Arrow streams.

The snapshot is fixed once (explicit ``snapshot_id``, the snapshot current at ``as_of``, or the current
one at ``pin``/first ``open``) so every pass of a reconcile reads the same data. Parallel streams split
the scan's planned file tasks; key ranges are pushed down as pyiceberg expressions, which prune files by
their column bounds and filter rows exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyiceberg.conversions import from_bytes
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import DataScan, FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import PrimitiveType

from seamline.exceptions import InvalidInputError, NotFoundError, SchemaError
from seamline.stores._common import Predicates, ScannedVersions, cover, range_predicate
from seamline.stores.iceberg.store import IcebergStore
from seamline.stores.protocols import AsOf, KeyRange, ScanRequest


class IcebergReader(ScannedVersions):
    """One Iceberg table (optionally at a fixed snapshot or point in time)."""

    def __init__(
        self,
        table: str,
        *,
        catalog: dict[str, Any] | IcebergStore,
        snapshot_id: int | None = None,
        as_of: datetime | str | None = None,
    ) -> None:
        if snapshot_id is not None and as_of is not None:
            raise InvalidInputError("iceberg source: give snapshot_id or as_of, not both")
        self.store = catalog if isinstance(catalog, IcebergStore) else IcebergStore(catalog)
        self.table = table
        self._name = table
        self._snapshot_id = snapshot_id
        self._as_of = _parse_as_of(as_of) if as_of is not None else None
        self._table: Table | None = None
        # The snapshot every open() reads; None with _resolved=True means "the table has no snapshot yet".
        self._snapshot: Snapshot | None = None
        self._resolved = False

    # -- Source protocol -------------------------------------------------------------------------

    def can_push_down(self, key: Sequence[str]) -> bool:
        """Key ranges become pyiceberg row filters (files pruned by their column bounds)."""
        return True

    def describe(self) -> str:
        at = ""
        if self._snapshot_id is not None:
            at = f" @snapshot {self._snapshot_id}"
        elif self._as_of is not None:
            at = f" @{self._as_of.isoformat()}"
        return f"{self.store.describe()} table {self._name}{at}"

    def schema(self) -> pa.Schema:
        table = self._load()
        snap = self._resolve()
        return _snapshot_schema(table, snap).as_arrow()

    def open(self, request: ScanRequest) -> list[Any]:
        table = self._load()
        snap = self._resolve()
        row_filter = _ranges_filter(request.key, request.ranges)
        scan = table.scan(
            row_filter=row_filter,
            selected_fields=tuple(request.columns) if request.columns else ("*",),
            snapshot_id=snap.snapshot_id if snap is not None else None,
        )
        if snap is None:
            # An empty table (no snapshot) scans nothing; keep the projected schema.
            return [_reader(scan, [])]
        tasks = list(scan.plan_files())
        groups = _split_tasks(tasks, max(1, request.parallelism))
        return [_reader(scan, group) for group in groups]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        """Key boundaries from the data files' column bounds in the manifests (no data is read)."""
        if len(key) != 1:
            return None
        table = self._load()
        snap = self._resolve()
        if snap is None:
            return None
        schema = _snapshot_schema(table, snap)
        try:
            nested = schema.find_field(key[0])
        except ValueError:
            return None
        if not isinstance(nested.field_type, PrimitiveType):
            return None
        arrow_type = schema_to_pyarrow(Schema(nested)).field(0).type
        values: list[Any] = []
        for task in table.scan(snapshot_id=snap.snapshot_id).plan_files():
            for bounds in (task.file.lower_bounds, task.file.upper_bounds):
                raw = (bounds or {}).get(nested.field_id)
                if raw is not None:
                    values.append(from_bytes(nested.field_type, raw))
        if not values:
            return None
        try:
            column = pa.array(sorted(set(values)), type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return None
        if len(column) > n > 1:
            step = (len(column) - 1) / (n - 1)
            column = column.take(pa.array(sorted({round(i * step) for i in range(n)})))
        return pa.table({key[0]: column})

    def estimated_rows(self) -> int | None:
        self._load()
        snap = self._resolve()
        if snap is None:
            return 0
        total = snap.summary.get("total-records") if snap.summary is not None else None
        return int(total) if total is not None else None

    def pin(self) -> AsOf:
        self._load()
        snap = self._resolve()
        detail: dict[str, Any] = {"table": self._name, "snapshot_id": None, "snapshot_time": None}
        if snap is not None:
            detail["snapshot_id"] = snap.snapshot_id
            detail["snapshot_time"] = datetime.fromtimestamp(snap.timestamp_ms / 1000, tz=UTC).isoformat()
            detail["sequence_number"] = snap.sequence_number
        return AsOf(store="iceberg", detail=detail)

    def close(self) -> None:
        # pyiceberg holds no server-side state; drop the cached snapshot so a reused source re-pins.
        self._table = None
        self.store.close()
        self._snapshot = None
        self._resolved = False

    # -- internals -------------------------------------------------------------------------------

    def _load(self) -> Table:
        if self._table is None:
            self._table = self.store.load(self._name)
        return self._table

    def _resolve(self) -> Snapshot | None:
        """Choose the snapshot once; later calls return the same one until close()."""
        if self._resolved:
            return self._snapshot
        table = self._load()
        if self._snapshot_id is not None:
            snap = table.snapshot_by_id(self._snapshot_id)
            if snap is None:
                raise NotFoundError(f"iceberg table {self._name} has no snapshot {self._snapshot_id}")
        elif self._as_of is not None:
            snap = table.snapshot_as_of_timestamp(int(self._as_of.timestamp() * 1000))
            if snap is None:
                raise NotFoundError(
                    f"iceberg table {self._name} has no snapshot at or before {self._as_of.isoformat()}"
                )
        else:
            snap = table.current_snapshot()
        self._snapshot = snap
        self._resolved = True
        return snap

    # -- freshness: the newest value of a column, and how many rows are newer, in the snapshot -------

    def version_column(self, column: str) -> pa.ChunkedArray:
        if column not in self.schema().names:
            raise SchemaError(f"{self.describe()}: no column {column!r}")
        snap = self._resolve()
        if snap is None:
            return pa.chunked_array([], self.schema().field(column).type)
        scan = self._load().scan(snapshot_id=snap.snapshot_id, selected_fields=(column,))
        return scan.to_arrow().column(column)


def _parse_as_of(value: datetime | str) -> datetime:
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    # A naive time is taken as UTC, like Iceberg's own snapshot timestamps.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _snapshot_schema(table: Table, snap: Snapshot | None) -> Schema:
    if snap is not None and snap.schema_id is not None:
        for schema in table.metadata.schemas:
            if schema.schema_id == snap.schema_id:
                return schema
    return table.schema()


def _split_tasks(tasks: list[FileScanTask], n: int) -> list[list[FileScanTask]]:
    """Greedy balance of file tasks by size over at most n streams (at least one, maybe empty)."""
    n = max(1, min(n, len(tasks)))
    groups: list[list[FileScanTask]] = [[] for _ in range(n)]
    sizes = [0] * n
    for task in sorted(tasks, key=lambda t: t.file.file_size_in_bytes, reverse=True):
        i = sizes.index(min(sizes))
        groups[i].append(task)
        sizes[i] += task.file.file_size_in_bytes
    return groups


def _reader(scan: DataScan, tasks: list[FileScanTask]) -> pa.RecordBatchReader:
    projected = scan.projection()
    target = _file_layout(schema_to_pyarrow(projected))
    arrow_scan = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter, scan.case_sensitive)

    def batches() -> Iterator[pa.RecordBatch]:
        # Lazy: no file is touched until the engine pulls the first batch of this stream.
        if tasks:
            for batch in arrow_scan.to_record_batches(tasks):
                yield batch if batch.schema.equals(target) else batch.cast(target)

    return pa.RecordBatchReader.from_batches(target, batches())


def _file_layout(schema: pa.Schema) -> pa.Schema:
    """`schema` with the 32-bit offset layouts Parquet files written by pyarrow decode to.

    pyiceberg declares strings, binaries and lists as their large (64-bit offset) layouts, while its
    scan yields what the file holds; casting every batch to the declared layout would copy every text
    column once more on its way to the core, which reads either layout (the values are the same)."""
    small = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}

    def layout(t: pa.DataType) -> pa.DataType:
        if t in small:
            return small[t]
        if pa.types.is_large_list(t) or pa.types.is_list(t):
            return pa.list_(t.value_field.with_type(layout(t.value_type)))
        if pa.types.is_struct(t):
            return pa.struct([f.with_type(layout(f.type)) for f in t])
        if pa.types.is_map(t):
            key, item = t.key_field, t.item_field
            return pa.map_(key.with_type(layout(key.type)), item.with_type(layout(item.type)))
        return t

    return pa.schema([f.with_type(layout(f.type)) for f in schema], metadata=schema.metadata)


_MAX_RANGES = 32


def _ranges_filter(key: Sequence[str], ranges: Sequence[KeyRange] | None) -> BooleanExpression:
    if ranges is None:
        return AlwaysTrue()
    # A few covering ranges: pyiceberg evaluates the filter per file and row group, and its
    # visitors recurse through the expression (hundreds of ranges overflowed the stack).
    exprs = [_range_expr(key, r) for r in cover(ranges, _MAX_RANGES)]
    if not exprs:
        # An empty union of ranges selects nothing.
        return AlwaysFalse()
    return _balanced_or(exprs)


def _balanced_or(exprs: list[BooleanExpression]) -> BooleanExpression:
    if len(exprs) == 1:
        return exprs[0]
    mid = len(exprs) // 2
    return Or(_balanced_or(exprs[:mid]), _balanced_or(exprs[mid:]))


_OPS: dict[str, Any] = {">": GreaterThan, ">=": GreaterThanOrEqual, "<": LessThan, "==": EqualTo}
_PREDICATES = Predicates[BooleanExpression](
    compare=lambda op, name, value: _pred(_OPS[op], name, value), both=And, either=Or
)


def _range_expr(key: Sequence[str], r: KeyRange) -> BooleanExpression:
    expr = range_predicate(key, r, _PREDICATES)
    return AlwaysTrue() if expr is None else expr


def _pred(cls: Any, name: str, value: Any) -> BooleanExpression:
    # pyiceberg predicates take (term, literal) positionally; their pydantic-generated signature
    # confuses type checkers, hence the Any.
    out: BooleanExpression = cls(name, value)
    return out
