"""How values are compared: logical types per column and the seam's normalisation options.

A logical type says what a column means, so that `numeric(12,2)`, an OpenSearch `double` and the
string "19.990" can all be compared as `Decimal(2)`. Types are inferred from the source schema and
can be overridden per column with `Compare(columns={"price": Decimal(2)})`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TIME_PRECISIONS = ("s", "ms", "us", "ns")


@dataclass(frozen=True)
class LogicalType:
    """Base of the logical types; `spec` is what the native core reads."""

    def spec(self, name: str) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(LogicalType):
    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "integer"}


@dataclass(frozen=True)
class Decimal(LogicalType):
    """Fixed point with `scale` digits after the point (half-even rounding)."""

    scale: int

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "decimal", "scale": self.scale}


@dataclass(frozen=True)
class Float(LogicalType):
    """Rounded to `digits` significant digits."""

    digits: int = 15

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "float", "digits": self.digits}


@dataclass(frozen=True)
class Boolean(LogicalType):
    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "boolean"}


@dataclass(frozen=True)
class String(LogicalType):
    nfc: bool = False
    trim: bool = False
    casefold: bool = False
    empty_as_null: bool = False

    def spec(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "string",
            "nfc": self.nfc,
            "trim": self.trim,
            "casefold": self.casefold,
            "empty_as_null": self.empty_as_null,
        }


@dataclass(frozen=True)
class Timestamp(LogicalType):
    """A UTC instant at `precision` (s, ms, us, ns), truncated; naive values are read as UTC."""

    precision: str = "us"

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "timestamp", "precision": self.precision}


@dataclass(frozen=True)
class Date(LogicalType):
    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "date"}


@dataclass(frozen=True)
class Json(LogicalType):
    """Canonical JSON: sorted keys, no whitespace."""

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "json"}


@dataclass(frozen=True)
class Binary(LogicalType):
    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "binary"}


@dataclass(frozen=True)
class Uuid(LogicalType):
    """16 bytes, from binary or text in any case."""

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "uuid"}


@dataclass(frozen=True)
class Vector(LogicalType):
    """A list of floats, each rounded to `digits` significant digits. Vectors are not compared by
    default (re-embedding noise); compare a content-hash or version column instead, or list the
    vector column explicitly."""

    digits: int = 6

    def spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "vector", "digits": self.digits}


@dataclass(frozen=True)
class Compare:
    """The seam's normalisation. `timestamp_precision=None` compares instants at the coarser of the
    two sides' precisions (a millisecond store cannot hold microseconds)."""

    timestamp_precision: str | None = None
    float_digits: int = 15
    unicode: str | None = None
    trim: bool = False
    case_insensitive: bool = False
    empty_as_null: bool = False
    columns: dict[str, LogicalType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from seamline.exceptions import InvalidInputError

        if self.timestamp_precision is not None and self.timestamp_precision not in TIME_PRECISIONS:
            raise InvalidInputError(
                f"compare: timestamp_precision {self.timestamp_precision!r} is not one of s, ms, us, ns"
            )
        if self.unicode not in (None, "nfc"):
            raise InvalidInputError(f"compare: unicode {self.unicode!r} is not supported (use 'nfc' or None)")
        if not 1 <= self.float_digits <= 17:
            raise InvalidInputError(f"compare: float_digits {self.float_digits} is not between 1 and 17")
        for name, logical in self.columns.items():
            if not isinstance(logical, LogicalType):
                raise InvalidInputError(
                    f"compare: columns[{name!r}] is not a logical type (e.g. sl.Decimal(2))"
                )

    def string(self) -> String:
        return String(
            nfc=self.unicode == "nfc",
            trim=self.trim,
            casefold=self.case_insensitive,
            empty_as_null=self.empty_as_null,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "timestamp_precision": self.timestamp_precision or "auto",
            "float_digits": self.float_digits,
            "unicode": self.unicode,
            "trim": self.trim,
            "case_insensitive": self.case_insensitive,
            "empty_as_null": self.empty_as_null,
        }
