"""Resolve what a seam compares: key and column mapping, and each column's logical type.

Names are checked against both schemas up front, so a column renamed on one side is an error that
names it, never a column silently compared as all-null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from seamline import _core
from seamline.compare import (
    TIME_PRECISIONS,
    Binary,
    Boolean,
    Compare,
    Date,
    Decimal,
    Float,
    Integer,
    Json,
    LogicalType,
    Timestamp,
    Uuid,
    Vector,
)
from seamline.exceptions import InvalidInputError, SchemaError

KeyArg = str | Sequence[str] | Mapping[str, str]
ColumnsArg = Sequence[str] | Mapping[str, str] | None

LOGICAL_METADATA = b"seamline.logical"


def _pairs(arg: KeyArg | ColumnsArg, what: str) -> list[tuple[str, str]]:
    if isinstance(arg, str):
        return [(arg, arg)]
    if isinstance(arg, Mapping):
        return [(str(s), str(t)) for s, t in arg.items()]
    if arg is None:
        return []
    pairs = [(str(c), str(c)) for c in arg]
    if not pairs:
        raise InvalidInputError(f"{what}: an empty list; name at least one column")
    return pairs


def _time_unit(t: pa.DataType) -> str | None:
    if pa.types.is_timestamp(t):
        return str(t.unit)
    if pa.types.is_date(t):
        return "s"
    return None


def _value_type(t: pa.DataType) -> pa.DataType:
    """The type of the values of a dictionary or run-end encoded column (what the core reads)."""
    return t.value_type if pa.types.is_dictionary(t) or pa.types.is_run_end_encoded(t) else t


def infer_logical(src: pa.Field, dst: pa.Field | None, compare: Compare) -> LogicalType:
    """The logical type of a column, from the source's declared type (and the target's for the
    precision a timestamp can be compared at)."""
    if src.name in compare.columns:
        return compare.columns[src.name]
    if pa.types.is_null(_value_type(src.type)):
        # An all-NULL column (Arrow `null`: an all-None column, a frame built from no rows) holds
        # NULLs of the other side's type; NULL against NULL is equal in any type.
        if dst is not None and not pa.types.is_null(_value_type(dst.type)):
            return infer_logical(dst.with_name(src.name), None, compare)
        return compare.string()
    t = _value_type(src.type)
    hint = (src.metadata or {}).get(LOGICAL_METADATA, b"").decode()
    if hint == "json":
        return Json()
    if hint == "uuid":
        return Uuid()
    if hint == "decimal" or pa.types.is_decimal(t):
        if pa.types.is_decimal(t):
            return Decimal(t.scale)
        if dst is not None and pa.types.is_decimal(_value_type(dst.type)):
            return Decimal(_value_type(dst.type).scale)
        raise SchemaError(
            f"column '{src.name}': a numeric without a declared scale; set "
            f"compare=Compare(columns={{'{src.name}': Decimal(scale)}})"
        )
    if pa.types.is_integer(t):
        return Integer()
    if pa.types.is_floating(t):
        return Float(compare.float_digits)
    if pa.types.is_boolean(t):
        return Boolean()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return compare.string()
    if pa.types.is_timestamp(t):
        if compare.timestamp_precision:
            return Timestamp(compare.timestamp_precision)
        units = [u for u in (_time_unit(t), dst and _time_unit(_value_type(dst.type))) if u]
        return Timestamp(min(units, key=TIME_PRECISIONS.index))
    if pa.types.is_date(t):
        return Date()
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16 or str(t) in ("extension<arrow.uuid>", "uuid"):
        return Uuid()
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return Binary()
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
        pa.types.is_floating(t.value_type)
    ):
        return Vector()
    raise SchemaError(
        f"column '{src.name}': no logical type for Arrow type {t}; declare one in compare.columns"
    )


@dataclass
class SeamColumns:
    """Both sides' names for the key and the compared columns, with one logical type each."""

    key: list[tuple[str, str]]
    values: list[tuple[str, str]]
    logical: dict[str, LogicalType]
    source_only: list[str] = field(default_factory=list)
    target_only: list[str] = field(default_factory=list)
    #: (source name, target name) of the version column (updated_at, a sequence, an LSN), if any.
    version: tuple[str, str] | None = None

    def spec(self, side: str) -> _core.SideSpec:
        i = 0 if side == "source" else 1
        key = [self.logical[p[0]].spec(p[i]) for p in self.key]
        values = [self.logical[p[0]].spec(p[i]) for p in self.values]
        return _core.SideSpec(side, key, values)

    def key_spec(self, side: str) -> _core.SideSpec:
        i = 0 if side == "source" else 1
        return _core.SideSpec(side, [self.logical[p[0]].spec(p[i]) for p in self.key], [])

    def names(self, side: str) -> list[str]:
        i = 0 if side == "source" else 1
        return [p[i] for p in self.key] + [p[i] for p in self.values]

    def key_names(self, side: str) -> list[str]:
        i = 0 if side == "source" else 1
        return [p[i] for p in self.key]

    def describe(self) -> dict[str, Any]:
        return {
            "key": [{"source": s, "target": t, "type": repr(self.logical[s])} for s, t in self.key],
            "columns": [{"source": s, "target": t, "type": repr(self.logical[s])} for s, t in self.values],
            "source_only": self.source_only,
            "target_only": self.target_only,
        }


def resolve(
    source: pa.Schema,
    target: pa.Schema,
    key: KeyArg,
    columns: ColumnsArg,
    compare: Compare,
    version: str | None = None,
) -> SeamColumns:
    key_pairs = _pairs(key, "key")
    if not key_pairs:
        raise InvalidInputError("key: name at least one key column")
    for side, schema, idx in (("source", source, 0), ("target", target, 1)):
        for pair in key_pairs:
            if schema.get_field_index(pair[idx]) < 0:
                raise SchemaError(
                    f"key column '{pair[idx]}' is missing on the {side} (it has: {', '.join(schema.names)})"
                )
    key_src = {s for s, _ in key_pairs}
    key_dst = {t for _, t in key_pairs}
    source_only: list[str] = []
    target_only: list[str] = []
    if columns is None:
        value_pairs = [
            (f.name, f.name)
            for f in source
            if f.name not in key_src
            and target.get_field_index(f.name) >= 0
            and f.name not in key_dst
            and not isinstance(_default_or_none(f, compare), Vector)
        ]
        source_only = [n for n in source.names if n not in key_src and target.get_field_index(n) < 0]
        target_only = [n for n in target.names if n not in key_dst and source.get_field_index(n) < 0]
    else:
        value_pairs = _pairs(columns, "columns")
        for side, schema, idx in (("source", source, 0), ("target", target, 1)):
            for pair in value_pairs:
                if schema.get_field_index(pair[idx]) < 0:
                    raise SchemaError(
                        f"column '{pair[idx]}' is missing on the {side} (it has: {', '.join(schema.names)})"
                    )
    version_pair = None
    if version is not None:
        version_pair = next((p for p in value_pairs if p[0] == version), (version, version))
        for side, schema, idx in (("source", source, 0), ("target", target, 1)):
            if schema.get_field_index(version_pair[idx]) < 0:
                raise SchemaError(f"version column '{version_pair[idx]}' is missing on the {side}")
        if version_pair not in value_pairs:
            value_pairs.append(version_pair)  # a stale version is drift too, and repair needs it
    unknown = set(compare.columns) - {s for s, _ in key_pairs + value_pairs}
    if unknown:
        raise SchemaError(f"compare.columns names column(s) not compared: {', '.join(sorted(unknown))}")
    logical = {
        s: infer_logical(source.field(s), target.field(t), compare) for s, t in key_pairs + value_pairs
    }
    return SeamColumns(key_pairs, value_pairs, logical, source_only, target_only, version_pair)


def _default_or_none(f: pa.Field, compare: Compare) -> LogicalType | None:
    try:
        return infer_logical(f, None, compare)
    except SchemaError:
        return None
