"""pydantic's error locations turned into the one line a user reads:

    contract.yaml: seam 'products_search': field 'freshness.warn_after': '10 minutes' is not a duration

The location names the store/seam/chain the field belongs to (a seam by its name when it has a valid
one, else by its position), then the field inside it as a dotted path with `[i]` for list items.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from seamline.contract.schema import _NAME, STORE_TYPES, ContractFile, kind
from seamline.contract.secrets import Path as DocPath
from seamline.exceptions import ContractError

# Checked first: an unknown key is the likeliest typo and explains the other errors of its mapping.
_FIRST = ("extra_forbidden",)


def line(path: Path, where: str, field: str | None, message: str) -> ContractError:
    parts = [str(path)]
    if where:
        parts.append(where)
    if field:
        parts.append(f"field {field!r}")
    return ContractError(": ".join([*parts, message]))


def locate(doc: Any, loc: DocPath) -> tuple[str, str | None]:
    """(the store/seam/chain, the field path inside it) of a location in the document."""
    loc = tuple(loc)
    if len(loc) >= 2 and loc[0] == "stores":
        rest = loc[2:]
        spec = doc.get("stores", {}).get(loc[1]) if isinstance(doc, dict) else None
        if rest and isinstance(spec, dict) and rest[0] in STORE_TYPES and rest[0] == spec.get("type"):
            rest = rest[1:]  # the discriminated union's tag
        return f"store {loc[1]!r}", _dotted(rest)
    if len(loc) >= 2 and loc[0] == "seams" and isinstance(loc[1], int):
        seams = doc.get("seams") if isinstance(doc, dict) else None
        spec = seams[loc[1]] if isinstance(seams, list) and loc[1] < len(seams) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        where = f"seam {name!r}" if isinstance(name, str) and _NAME.match(name) else f"seam #{loc[1] + 1}"
        return where, _dotted(loc[2:])
    if len(loc) >= 2 and loc[0] == "chains":
        return f"chain {loc[1]!r}", _dotted(loc[2:])
    return "", _dotted(loc)


def _dotted(parts: DocPath) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def from_validation(path: Path, doc: Any, error: ValidationError) -> ContractError:
    """The first error of a validation, as one line."""
    errors = error.errors(include_url=False)
    first = min(errors, key=lambda e: 0 if e["type"] in _FIRST else 1)
    loc: DocPath = tuple(first["loc"])
    message = _message(first, loc)
    context = first.get("ctx") or {}
    if context.get("field"):
        sub = str(context["field"])
        loc = (*loc, int(sub[1:-1])) if sub.startswith("[") else (*loc, sub)
    if first["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(first.get("input"), dict):
        loc = (*loc, "type")
    where, field = locate(doc, loc)
    return line(path, where, field, message)


def _message(error: ErrorDetails, loc: DocPath) -> str:
    kind_ = error["type"]
    value = error.get("input")
    if kind_ == "seamline":
        return str(error["msg"])
    if kind_ == "missing":
        return "missing"
    if kind_ == "extra_forbidden":
        expected = ", ".join(_keys_of(loc[:-1]))
        return f"unknown key (expected one of: {expected})"
    if kind_ == "union_tag_not_found" and not isinstance(value, dict):
        return f"expected a mapping, got {kind(value)}"
    if kind_ == "union_tag_not_found":
        return f"missing (one of: {', '.join(STORE_TYPES)})"
    if kind_ == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        return f"{tag!r} is not a store type (one of: {', '.join(STORE_TYPES)})"
    if kind_ in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {kind(value)}"
    if kind_ in ("list_type", "tuple_type"):
        return f"expected a list, got {kind(value)}"
    if kind_ in ("string_type",):
        return f"expected a string, got {kind(value)}"
    if kind_ in ("int_type", "int_parsing", "int_from_float"):
        return f"{value!r} is not an integer"
    return str(error["msg"])


def _keys_of(loc: DocPath) -> list[str]:
    """The keys the model at `loc` accepts, in the order it declares them."""
    annotation: Any = ContractFile
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    model = _model(annotation)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _step(annotation: Any, part: str | int) -> Any:
    model = _model(annotation)
    if model is not None:
        for name, f in model.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    for option in _options(annotation):  # a union: the member tagged `part`, or the one model in it
        m = _model(option)
        if m is not None and part == _tag(m):
            return m
    return None


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if args else None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _options(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [_unwrap(a) for a in typing.get_args(annotation)]
    return [annotation]


def _model(annotation: Any) -> type[BaseModel] | None:
    options = [o for o in _options(annotation) if isinstance(o, type) and issubclass(o, BaseModel)]
    return options[0] if len(options) == 1 else None
