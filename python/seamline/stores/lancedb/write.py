"""Apply a repair plan to a LanceDB table: delete tombstoned ids, merge-insert stale and missing rows.

The writer reads the table's current rows for the plan's keys, drops what a newer write already
superseded and what is already in place, then writes: `delete` for the tombstones (guarded by the
version the plan recorded), and one `merge_insert` on the key for the rows to write, whose update
branch is guarded by `target.version <= source.version`, so a row rewritten by a newer write between
the read and the write is left alone (counted as skipped_newer). A key the table holds more than
once (a dedupe) is deleted first, then inserted once. Not one transaction: a crash between the two
steps leaves the key missing until the plan is applied again (re-applying is harmless: what is in
place already is not written again but counts as applied, and a plan already applied writes no
new version).

Vector columns (a list of floats in the table, outside the plan's columns) are not in the source of
record: the plan carries the text they embed. With `embed=` (a callable: list of texts -> list of
vectors), the vector of every row inserted, or whose text changed, or whose vector is NULL, is
computed from `embed_from` (default: the first string column among the plan's columns) and written.
Without it, an updated row keeps its current vector and a vector whose text changed is reported as
stale (`stale_vectors`, and a line in `errors`), never silently written; an inserted row gets a NULL
vector if the column is nullable (reported the same way), else it is not inserted and counts as
failed ("vector column 'vector' needs embed=").
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from lancedb.expr import Expr, col, lit

from seamline.exceptions import InvalidInputError
from seamline.stores._rows import Changes, Key, decide, drop_incomplete, key_tuples, plan_keys
from seamline.stores.lancedb.store import LanceDBStore
from seamline.stores.protocols import Embed, PlanData, WriteCounts

#: keys per predicate (reading the current rows, deleting)
_CHUNK = 500


def _is_vector(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
        pa.types.is_floating(t.value_type)
    )


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _orderable(t: pa.DataType) -> bool:
    """Versions SQL can compare like `version_numbers` does (not a numeric string: that sorts as text)."""
    return pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_decimal(t)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _show(keys: list[Key], n: int = 3) -> str:
    text = ", ".join(str(k[0] if len(k) == 1 else k) for k in keys[:n])
    return text + ("..." if len(keys) > n else "")


class LanceDBWriter:
    """Applies repair plans to one LanceDB table (a `RepairWriter`)."""

    def __init__(
        self, store: LanceDBStore, table: str, *, embed: Embed | None = None, embed_from: str | None = None
    ) -> None:
        self._store = store
        self._name = table
        self._embed = embed
        self._embed_from = embed_from

    def apply(self, plan: PlanData) -> WriteCounts:
        """Counts: applied (operations whose effect the table now holds: written, or `unchanged`,
        already in place and not written again), skipped_newer, failed, errors (one line each);
        detail: stale_vectors (rows written without a fresh vector) and version (the table's after)."""
        plan.check_guard()
        out = WriteCounts(detail={"stale_vectors": 0, "version": None})
        if plan.empty:
            return out
        tbl = self._store.open_table(self._name)  # a fresh handle on the latest version
        schema: pa.Schema = tbl.schema
        changes = decide(plan, schema, self._current(tbl, plan, schema))
        out.skipped_newer, out.unchanged = changes.skipped_newer, changes.unchanged

        # everything is computed (embeddings included) before the first write
        rows, stale, failed, errors = self._vectors(plan, schema, changes)
        rows, more_failed, more_errors = drop_incomplete(rows, schema, plan.key)
        out.detail["stale_vectors"], out.failed = stale, failed + more_failed
        out.errors = errors + more_errors

        applied = skipped = 0
        version = plan.version
        assert version is not None  # check_guard refuses a plan without one
        guarded = version in schema.names and _orderable(schema.field(version).type)
        for i in range(0, len(changes.delete), _CHUNK):
            keys = changes.delete[i : i + _CHUNK]
            recorded = changes.delete_recorded[i : i + _CHUNK]
            for group, where in self._delete_predicates(plan.key, version, keys, recorded, guarded):
                done = min(len(group), int(tbl.delete(where).num_deleted_rows))
                applied, skipped = applied + done, skipped + len(group) - done
        written = set(key_tuples(rows, plan.key))
        replace = [k for k in changes.replace if k in written]
        for i in range(0, len(replace), _CHUNK):
            tbl.delete(_keys_expr(plan.key, replace[i : i + _CHUNK]))  # every copy; inserted once below
        if rows.num_rows:
            merge = tbl.merge_insert(plan.key if len(plan.key) > 1 else plan.key[0])
            condition = None
            if guarded:
                v = _quote(version)
                condition = f"target.{v} IS NULL OR target.{v} <= source.{v}"
            merge = merge.when_matched_update_all(where=condition).when_not_matched_insert_all()
            has_null_vectors = any(
                _is_vector(f.type) and rows.column(f.name).null_count for f in schema if f.nullable
            )
            result = merge.execute(rows, on_bad_vectors="null" if has_null_vectors else "error")
            done = int(result.num_updated_rows) + int(result.num_inserted_rows)
            applied, skipped = applied + done, skipped + max(0, rows.num_rows - done)
        out.applied = changes.unchanged + applied
        out.skipped_newer += skipped
        out.detail["version"] = int(tbl.version)
        return out

    # -- internals -------------------------------------------------------------------------------

    def _current(self, tbl: Any, plan: PlanData, schema: pa.Schema) -> pa.Table:
        keys = plan_keys(plan, schema)
        parts = []
        for i in range(0, len(keys), _CHUNK):
            parts.append(
                tbl.search().where(_keys_expr(plan.key, keys[i : i + _CHUNK])).limit(None).to_arrow()
            )
        return pa.concat_tables(parts, promote_options="permissive") if parts else schema.empty_table()

    def _delete_predicates(
        self, key: list[str], version: str, keys: list[Key], recorded: list[Any], guarded: bool
    ) -> list[tuple[list[Key], str | Expr]]:
        """Tombstone deletes, each guarded (when the version is orderable in SQL) so that a row
        rewritten after the plan read it is not deleted: rows with a recorded version go only if
        their version is still at most the newest recorded one, rows without one only if still NULL."""
        if not guarded:
            return [(keys, _keys_expr(key, keys))]
        v = _quote(version)
        out: list[tuple[list[Key], str | Expr]] = []
        with_version = [(k, r) for k, r in zip(keys, recorded, strict=True) if r is not None]
        without = [k for k, r in zip(keys, recorded, strict=True) if r is None]
        if with_version:
            group = [k for k, _ in with_version]
            newest = lit(max(r for _, r in with_version)).to_sql()
            out.append((group, f"({_keys_expr(key, group).to_sql()}) AND ({v} IS NULL OR {v} <= {newest})"))
        if without:
            out.append((without, f"({_keys_expr(key, without).to_sql()}) AND {v} IS NULL"))
        return out

    def _vectors(
        self, plan: PlanData, schema: pa.Schema, changes: Changes
    ) -> tuple[pa.Table, int, int, list[str]]:
        """The rows to write with their vector columns filled (see the module docstring); the count
        of rows with a stale or NULL vector, the count of rows that cannot be written, errors."""
        rows = changes.write
        vectors = [f for f in schema if _is_vector(f.type) and f.name not in {*plan.key, *plan.columns}]
        if not vectors or not rows.num_rows:
            return rows, 0, 0, []
        text = self._text_column(plan, schema)
        at = changes.write_current
        current = changes.current
        new_text = rows.column(text).to_pylist() if text else [None] * rows.num_rows
        old_text = current.column(text).to_pylist() if text else []
        changed = [text is not None and (i is None or new_text[n] != old_text[i]) for n, i in enumerate(at)]
        need = {
            f.name: [
                changed[n] or i is None or current.column(f.name)[i].as_py() is None for n, i in enumerate(at)
            ]
            for f in vectors
        }
        needs_any = [any(need[f.name][n] for f in vectors) for n in range(rows.num_rows)]
        keys = key_tuples(rows, plan.key)
        errors: list[str] = []
        fresh: dict[int, list[float]] = {}
        if self._embed is not None:
            todo = [n for n in range(rows.num_rows) if needs_any[n] and new_text[n] is not None]
            if todo:
                fresh = self._embedded(todo, [str(new_text[n]) for n in todo], vectors)
        stale_rows: set[int] = set()
        drop: set[int] = set()
        for f in vectors:
            values = rows.column(f.name).to_pylist()
            missing_keys: list[Key] = []
            stale_keys: list[Key] = []
            for n in range(rows.num_rows):
                if not need[f.name][n]:
                    continue
                if n in fresh:
                    values[n] = fresh[n]
                elif at[n] is None and not f.nullable:
                    drop.add(n)
                    missing_keys.append(keys[n])
                else:
                    stale_rows.add(n)  # an old vector kept, or a NULL one written
                    stale_keys.append(keys[n])
            if missing_keys:
                errors.append(
                    f"vector column '{f.name}' needs embed= to insert {len(missing_keys)} row(s) "
                    f"(keys {_show(missing_keys)}); not inserted"
                )
            if stale_keys:
                source = f"'{text}'" if text else "a text column (embed_from=)"
                errors.append(
                    f"vector column '{f.name}' is stale or NULL for {len(stale_keys)} row(s) written "
                    f"(keys {_show(stale_keys)}); pass embed= to embed them from {source}"
                )
            idx = rows.schema.get_field_index(f.name)
            rows = rows.set_column(idx, rows.schema.field(idx), pa.array(values, type=f.type))
        stale_rows -= drop
        if drop:
            mask = pa.array([n not in drop for n in range(rows.num_rows)], pa.bool_())
            rows = rows.filter(mask)
        return rows, len(stale_rows), len(drop), errors

    def _text_column(self, plan: PlanData, schema: pa.Schema) -> str | None:
        if self._embed_from is not None:
            if self._embed_from not in plan.columns:
                raise InvalidInputError(
                    f"embed_from='{self._embed_from}' is not among the plan's columns "
                    f"({', '.join(plan.columns)})"
                )
            return self._embed_from
        text = next((c for c in plan.columns if _is_text(schema.field(c).type)), None)
        if text is None and self._embed is not None:
            raise InvalidInputError(
                f"lancedb table {self._name}: embed= was given but the plan has no text column to embed; "
                "pass embed_from="
            )
        return text

    def _embedded(self, rows: list[int], texts: list[str], vectors: list[pa.Field]) -> dict[int, list[float]]:
        assert self._embed is not None
        result = list(self._embed(texts))
        if len(result) != len(texts):
            raise InvalidInputError(f"embed= returned {len(result)} vectors for {len(texts)} texts")
        out = {}
        for n, vec in zip(rows, result, strict=True):
            values = [float(x) for x in vec]
            for f in vectors:
                if pa.types.is_fixed_size_list(f.type) and len(values) != f.type.list_size:
                    raise InvalidInputError(
                        f"embed= returned a vector of {len(values)} values; column '{f.name}' holds "
                        f"{f.type.list_size}"
                    )
            out[n] = values
        return out


def _keys_expr(key: list[str], keys: list[Key]) -> Expr:
    """`key IN (...)` for one column; a balanced OR of `k1 = a AND k2 = b` for a composite key,
    with literals built by LanceDB's expression builder (never formatted into SQL by hand)."""
    if len(key) == 1:
        return col(key[0]).isin([k[0] for k in keys])
    terms = []
    for k in keys:
        term = col(key[0]) == lit(k[0])
        for name, value in zip(key[1:], k[1:], strict=True):
            term = term & (col(name) == lit(value))
        terms.append(term)
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]
