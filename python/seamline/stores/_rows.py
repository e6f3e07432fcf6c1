"""What a repair plan still has to change in a target, decided against the target's current rows.

Shared by the writers of stores that can read the current rows of a set of keys before writing
(Iceberg, LanceDB). A plan's tables are in the target's names but the source's logical types; here
they are cast to the target's Arrow schema, matched by key against the rows the target holds now,
and sorted into: rows to write (full rows: the plan's columns over the current row's other columns,
so a column outside the seam, a vector say, is carried over), keys to delete, and what needs nothing
(already applied: a second apply of the same plan) or must not be touched (a newer write won).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from seamline.exceptions import InvalidInputError
from seamline.stores._common import version_numbers
from seamline.stores.protocols import PlanData

Key = tuple[Any, ...]


def cast_column(values: pa.Array | pa.ChunkedArray, to: pa.DataType, name: str) -> pa.Array:
    """`values` as `to`: exact where possible; a finer timestamp is truncated to the target's unit."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if isinstance(arr.type, pa.BaseExtensionType):
        arr = arr.storage  # e.g. a Postgres numeric streamed as an opaque extension over text
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    elif pa.types.is_binary_view(arr.type):
        arr = arr.cast(pa.large_binary())
    if arr.type == to:
        return arr
    try:
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        if pa.types.is_timestamp(arr.type) and pa.types.is_timestamp(to):
            return pc.cast(arr, to, safe=False)
        cause = str(exc).splitlines()[0]
        raise InvalidInputError(
            f"column '{name}': cannot write {arr.type} as the target's {to} ({cause})"
        ) from None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns cast to the types `schema` gives them (every column must be in it)."""
    arrays, fields = [], []
    for name in table.column_names:
        i = schema.get_field_index(name)
        if i < 0:
            raise InvalidInputError(
                f"the plan's column '{name}' is not in the target (it has: {', '.join(schema.names)})"
            )
        arrays.append(cast_column(table.column(name), schema.field(i).type, name))
        fields.append(schema.field(i))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def key_tuples(table: pa.Table, key: list[str]) -> list[Key]:
    columns = [table.column(k).to_pylist() for k in key]
    return list(zip(*columns, strict=True)) if columns else []


def _versions(values: pa.Array | pa.ChunkedArray) -> list[int | None]:
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_null(arr.type):
        return [None] * len(arr)
    out: list[int | None] = version_numbers(arr).to_pylist()
    return out


def _newest(versions: list[int | None], rows: list[int]) -> int | None:
    present = [v for v in (versions[i] for i in rows) if v is not None]
    return max(present) if present else None


@dataclass
class Changes:
    """The part of a plan that still has to be written.

    write: full rows in the target schema, one per key (upserts and dedupes to (re)write);
    write_current: for each row of `write`, the index in `current` of the key's current row (its
        first copy), None when the target does not hold the key;
    replace: keys of `write` the target holds more than once (every copy goes before the write);
    delete: keys to delete, with the version the plan recorded for each (the target's, when read);
    current: the target's current rows of every key of the plan (target schema).
    """

    write: pa.Table
    write_current: list[int | None]
    replace: list[Key]
    delete: list[Key]
    delete_recorded: list[Any]
    current: pa.Table
    key: list[str]
    skipped_newer: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def write_keys(self) -> list[Key]:
        return key_tuples(self.write, self.key)

    @property
    def empty(self) -> bool:
        return self.write.num_rows == 0 and not self.delete


def plan_keys(plan: PlanData, schema: pa.Schema) -> list[Key]:
    """Every key the plan touches, in the target's types, once each."""
    seen: dict[Key, None] = {}
    for table in (plan.upserts, plan.deletes, plan.dedupes):
        if table.num_rows:
            for k in key_tuples(conform(table.select(plan.key), schema), plan.key):
                seen.setdefault(k, None)
    return list(seen)


def decide(plan: PlanData, schema: pa.Schema, current: pa.Table) -> Changes:
    """Sort the plan's operations against the target's `current` rows for the plan's keys.

    An upsert or dedupe whose key the target holds with a newer version than the source row's is
    skipped (never over a newer write); one whose key the target holds exactly once with the plan's
    values is already applied. A delete of a key the target no longer holds is already applied; one
    whose row now has a newer version than the plan recorded is skipped.
    """
    if plan.version is None:
        raise InvalidInputError(f"repair of {plan.seam}: the plan has no version column")
    key, version = plan.key, plan.version
    current = conform(current.select([n for n in schema.names if n in current.column_names]), schema)
    by_key: dict[Key, list[int]] = {}
    for i, k in enumerate(key_tuples(current, key)):
        by_key.setdefault(k, []).append(i)
    current_versions: list[int | None] = [None] * current.num_rows
    if version in current.column_names:
        current_versions = _versions(current.column(version))
    compared = [c for c in [*key, *plan.columns] if c in current.column_names]
    current_values = current.select(compared).to_pylist()

    # upserts and dedupes: the source row, written unless a newer one is there or it already is
    parts = [conform(t, schema) for t in (plan.upserts, plan.dedupes) if t.num_rows]
    rows = pa.concat_tables(parts) if parts else conform(plan.upserts.slice(0, 0), schema)
    source_versions: list[int | None] = []
    if plan.upserts.num_rows:
        source_versions += plan.upsert_versions().to_pylist()
    if plan.dedupes.num_rows:
        source_versions += plan.dedupe_versions().to_pylist()
    plan_values = rows.select([c for c in compared if c in rows.column_names]).to_pylist()
    keep: list[int] = []
    write_current: list[int | None] = []
    replace: list[Key] = []
    skipped = unchanged = 0
    seen: set[Key] = set()
    for i, k in enumerate(key_tuples(rows, key)):
        if k in seen:
            continue  # a plan never holds a key twice; if one does, its first row wins
        seen.add(k)
        held = by_key.get(k, [])
        newest, theirs = _newest(current_versions, held), source_versions[i]
        if newest is not None and theirs is not None and newest > theirs:
            skipped += 1
            continue
        if len(held) == 1 and all(current_values[held[0]].get(c) == v for c, v in plan_values[i].items()):
            unchanged += 1
            continue
        keep.append(i)
        write_current.append(held[0] if held else None)
        if len(held) > 1:
            replace.append(k)
    write = _full_rows(rows.take(pa.array(keep, pa.int64())), current, write_current, schema)

    # deletes: the key goes unless its row was rewritten since the plan read it
    delete: list[Key] = []
    recorded: list[Any] = []
    if plan.deletes.num_rows:
        deletes = conform(plan.deletes, schema)
        recorded_values = (
            deletes.column(version).to_pylist() if version in deletes.column_names else [None] * len(deletes)
        )
        recorded_versions: list[int | None] = [None] * len(deletes)
        if version in deletes.column_names:
            recorded_versions = _versions(deletes.column(version))
        for i, k in enumerate(key_tuples(deletes, key)):
            if k in seen:
                continue
            seen.add(k)
            held = by_key.get(k, [])
            if not held:
                unchanged += 1
                continue
            newest, read = _newest(current_versions, held), recorded_versions[i]
            if newest is not None and (read is None or newest > read):
                skipped += 1
                continue
            delete.append(k)
            recorded.append(recorded_values[i])
    return Changes(
        write=write,
        write_current=write_current,
        replace=replace,
        delete=delete,
        delete_recorded=recorded,
        current=current,
        key=key,
        skipped_newer=skipped,
        unchanged=unchanged,
    )


def _full_rows(rows: pa.Table, current: pa.Table, at: list[int | None], schema: pa.Schema) -> pa.Table:
    """Rows in `schema`: the plan's columns from `rows`, every other column from the current row
    (NULL for a key the target does not hold)."""
    index = pa.array(at, pa.int64())
    arrays = []
    for f in schema:
        if f.name in rows.column_names:
            arrays.append(rows.column(f.name).combine_chunks())
        elif f.name in current.column_names:
            arrays.append(current.column(f.name).combine_chunks().take(index))
        else:
            arrays.append(pa.nulls(rows.num_rows, f.type))
    # built unchecked: a required column without a value is reported by `drop_incomplete`
    return pa.Table.from_arrays(arrays, schema=pa.schema([f.with_nullable(True) for f in schema]))


def drop_incomplete(rows: pa.Table, schema: pa.Schema, key: list[str]) -> tuple[pa.Table, int, list[str]]:
    """Rows that have a value for every required column of `schema`, cast to it exactly; the
    others are counted as failed, with one error line per column."""
    bad = pa.array([False] * rows.num_rows, pa.bool_())
    errors = []
    for f in schema:
        if f.nullable or f.name not in rows.column_names:
            continue
        nulls = pc.is_null(rows.column(f.name))
        n = pc.sum(nulls.cast(pa.int64())).as_py() or 0
        if n:
            sample = key_tuples(rows.filter(nulls).slice(0, 3), key)
            errors.append(
                f"column '{f.name}' is required in the target but has no value for {n} row(s) "
                f"(keys {', '.join(str(k[0] if len(k) == 1 else k) for k in sample)}{'...' if n > 3 else ''})"
            )
            bad = pc.or_(bad, nulls)
    failed = pc.sum(bad.cast(pa.int64())).as_py() or 0
    kept = rows.filter(pc.invert(bad)) if failed else rows
    return pa.Table.from_arrays(list(kept.columns), schema=schema), failed, errors
