"""Apply a repair plan to an Iceberg table: one transaction per plan.

The writer reads the table's current rows for the plan's keys, drops what a newer write already
superseded (an upsert whose row the table holds with a newer version, a delete of a row rewritten
since the plan read it) and what is already in place, then commits ONE pyiceberg transaction: delete
every key it rewrites or removes, append the rows to write. Both snapshots of the transaction carry
summary properties (`seamline.repair=true`, the seam, the counts), so the repair shows in time travel
(`table.snapshots()`, `history()`) and the state before it stays readable by snapshot id.

Never over a newer write: the transaction is based on the snapshot the current rows were read from.
If another writer committed meanwhile, pyiceberg rebases the transaction only when no data file
matching the delete filter (the keys rewritten or removed) was added since; a conflicting write fails
the commit, and the writer then reads again and re-decides (up to `retries` times), so the newer row
stays. (A key missing at read time that another writer inserts concurrently is not in the delete
filter: both rows are kept, and the next reconcile reports the duplicate; no write is lost.)
Idempotent: re-applying a plan that is already applied finds nothing to do and writes no snapshot
(its operations count as applied, and as `unchanged` in the writer's counts).
"""

from __future__ import annotations

import warnings
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysFalse, And, BooleanExpression, EqualTo, In, Or
from pyiceberg.table import Table

from seamline.stores._rows import Changes, Key, decide, drop_incomplete, key_tuples, plan_keys
from seamline.stores.iceberg.store import IcebergStore
from seamline.stores.protocols import PlanData, WriteCounts

#: keys per predicate of the scan that reads the current rows
_CHUNK = 1000


class IcebergWriter:
    """Applies repair plans to one Iceberg table (a `RepairWriter`)."""

    def __init__(self, store: IcebergStore, table: str, *, retries: int = 3) -> None:
        self._store = store
        self._name = table
        self._retries = max(1, retries)

    def apply(self, plan: PlanData) -> WriteCounts:
        """Counts: applied (operations whose effect the table now holds: written, or `unchanged`,
        already in place and not written again), skipped_newer, failed, errors (one line each) and
        detail["snapshot_id"] (of the repair's last snapshot, None if nothing was written)."""
        plan.check_guard()
        out = WriteCounts(detail={"snapshot_id": None})
        if plan.empty:
            return out
        for attempt in range(1, self._retries + 1):
            table = self._load()
            changes = self._changes(plan, table)
            rows, failed, errors = drop_incomplete(changes.write, table.schema().as_arrow(), plan.key)
            out.skipped_newer, out.unchanged, out.applied = (
                changes.skipped_newer,
                changes.unchanged,
                changes.unchanged,
            )
            out.failed, out.errors = failed, errors
            written = set(key_tuples(rows, plan.key)) if failed else None
            gone = _rewritten(changes, rows, plan.key, written)
            if not gone and not rows.num_rows:
                return out  # nothing to do: no snapshot
            props = {
                "seamline.repair": "true",
                "seamline.seam": plan.seam,
                "seamline.upserts": str(plan.upserts.num_rows),
                "seamline.deletes": str(plan.deletes.num_rows),
                "seamline.dedupes": str(plan.dedupes.num_rows),
                "seamline.written": str(rows.num_rows),
                "seamline.deleted-keys": str(len(changes.delete)),
                "seamline.skipped-newer": str(changes.skipped_newer),
            }
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "Delete operation did not match any records"
                    tx = table.transaction()
                    if gone:
                        tx.delete(_keys_filter(plan.key, gone), snapshot_properties=props)
                    if rows.num_rows:
                        tx.append(rows, snapshot_properties=props)
                    tx.commit_transaction()
            except (CommitFailedException, ValidationException) as exc:
                if attempt < self._retries:
                    continue  # another writer committed first: read again, decide again
                out.failed += rows.num_rows + len(changes.delete)
                out.errors.append(
                    f"iceberg table {self._name}: the repair commit failed {attempt} times "
                    f"({str(exc).splitlines()[0]})"
                )
                return out
            out.applied = changes.unchanged + rows.num_rows + len(changes.delete)
            snap = table.current_snapshot()
            out.detail["snapshot_id"] = snap.snapshot_id if snap is not None else None
            return out
        return out  # pragma: no cover - the loop always returns

    # -- internals -------------------------------------------------------------------------------

    def _load(self) -> Table:
        return self._store.load(self._name)  # a fresh handle on the current metadata

    def _changes(self, plan: PlanData, table: Table) -> Changes:
        schema = table.schema().as_arrow()
        keys = plan_keys(plan, schema)
        parts = []
        snap = table.current_snapshot()
        if snap is not None:
            for i in range(0, len(keys), _CHUNK):
                scan = table.scan(
                    row_filter=_keys_filter(plan.key, keys[i : i + _CHUNK]), snapshot_id=snap.snapshot_id
                )
                parts.append(scan.to_arrow())
        current = pa.concat_tables(parts, promote_options="permissive") if parts else schema.empty_table()
        return decide(plan, schema, current)


def _rewritten(changes: Changes, rows: pa.Table, key: list[str], written: set[Key] | None) -> list[Key]:
    """Keys whose current rows the transaction deletes: the tombstones, and every key written that
    the table already holds (a row that failed is left alone)."""
    held = [
        k
        for k, at in zip(changes.write_keys, changes.write_current, strict=True)
        if at is not None and (written is None or k in written)
    ]
    return list(dict.fromkeys([*changes.delete, *held]))


def _keys_filter(key: list[str], keys: list[Key]) -> BooleanExpression:
    """`key IN (...)` for one column; a balanced OR of `k1 = a AND k2 = b` for a composite key."""
    if not keys:
        return AlwaysFalse()
    if len(key) == 1:
        return _pred(In, key[0], {k[0] for k in keys})
    terms: list[BooleanExpression] = []
    for k in keys:
        term = _pred(EqualTo, key[0], k[0])
        for name, value in zip(key[1:], k[1:], strict=True):
            term = And(term, _pred(EqualTo, name, value))
        terms.append(term)
    while len(terms) > 1:  # balanced, so deep plans do not hit the recursion limit of visitors
        terms = [
            Or(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)
        ]
    return terms[0]


def _pred(cls: Any, name: str, value: Any) -> BooleanExpression:
    # pyiceberg predicates take (term, literal) positionally; their pydantic-generated signature
    # confuses type checkers, hence the Any (as in read.py)
    out: BooleanExpression = cls(name, value)
    return out
