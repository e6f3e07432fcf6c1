"""Reading a contract: YAML (duplicate keys refused), `${VAR}` substitution, the declared schema, then
the checks that span the file (a seam's store exists and fits the side, chains name known seams)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from seamline.contract.errors import from_validation, line, locate
from seamline.contract.model import Contract
from seamline.contract.schema import ContractFile, Seam, Side, StoreBase
from seamline.contract.secrets import Substitution, SubstitutionError
from seamline.exceptions import ContractError
from seamline.stores import registry

# What each store type reads: its object keys (the first is the one to name when missing).
_OBJECTS = {
    "postgres": ("table", "query"),
    "opensearch": ("index",),
    "iceberg": ("table",),
    "lancedb": ("table",),
    "kafka": ("topic",),
}


def _yaml_loader() -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in out:
                at = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {at})", key_node.start_mark
                )
            out[key] = loader.construct_object(value_node, deep=deep)
        return out

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def read_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ContractError(f"{path}: {at}not valid YAML: {problem}") from None


def parse(text: str, path: str | Path = "contract.yaml", env: Mapping[str, str] | None = None) -> Contract:
    """A contract from YAML text; `path` names it in errors and anchors relative paths."""
    path = Path(path)
    doc = read_yaml(text, path)
    if doc is None:
        raise line(path, "", None, "the file is empty")
    substitution = Substitution(os.environ if env is None else env)
    try:
        resolved = substitution.document(doc)
    except SubstitutionError as e:
        where, field = locate(doc, e.path)
        raise line(path, where, field, e.message) from None
    secrets = set(substitution.secrets)
    try:
        declared = ContractFile.model_validate(
            resolved, context={"directory": path.parent, "secrets": secrets}
        )
    except ValidationError as e:
        raise from_validation(path, resolved, e) from None
    seams: dict[str, Seam] = {}
    for i, seam in enumerate(declared.seams):
        where = f"seam {seam.name!r}"
        for which in ("source", "target"):
            _check_side(path, where, which, getattr(seam, which), declared.stores, (i, which), resolved)
        if seam.name in seams:
            raise line(path, where, "name", "is declared twice")
        seams[seam.name] = seam
    for name, members in declared.chains.items():
        for j, member in enumerate(members):
            if member not in seams:
                known = ", ".join(seams) or "none"
                raise line(path, f"chain {name!r}", f"[{j}]", f"no seam {member!r} (seams: {known})")
    return Contract(
        path, declared.version, dict(declared.stores), seams, dict(declared.chains), frozenset(secrets)
    )


def _check_side(
    path: Path,
    where: str,
    which: str,
    side: Side,
    stores: Mapping[str, StoreBase],
    at: tuple[int, str],
    doc: Any,
) -> None:
    """A side names a declared store and the objects that store type reads."""
    if side.store not in stores:
        raise line(path, where, f"{which}.store", f"no store {side.store!r} (stores: {', '.join(stores)})")
    kind = stores[side.store].type
    allowed = _OBJECTS[kind]
    if kind != "kafka":
        for k in ("topic", *side.stream):
            if k == "sql" and side.sql is not None:
                if registry.store_type(kind).sql_view:
                    continue  # a DuckDB query over the side's rows (seamline.stores.sql_view)
                raise line(path, where, f"{which}.sql", f"not for a {kind} store (use query)")
            if getattr(side, k) is not None:
                raise line(path, where, f"{which}.{k}", f"only for a kafka store, not a {kind} one")
    given = [k for k in ("table", "index", "query", "topic") if getattr(side, k) is not None]
    objects = [k for k in given if k != "query" or kind != "opensearch"]
    for k in objects:
        if k not in allowed:
            raise line(path, where, f"{which}.{k}", f"not for a {kind} store (use {' or '.join(allowed)})")
    if len(objects) != 1:
        if not objects:
            raise line(path, where, f"{which}.{allowed[0]}", "missing")
        raise line(path, where, f"{which}.{objects[1]}", f"give one of {' or '.join(allowed)}, not both")
    if kind == "opensearch" and side.query is not None and not isinstance(side.query, dict):
        raise line(path, where, f"{which}.query", "expected a mapping (an OpenSearch query)")
    if kind != "opensearch" and isinstance(side.query, dict):
        raise line(path, where, f"{which}.query", "expected a string, got a mapping")
    if side.where is not None:
        if kind == "kafka":
            raise line(path, where, f"{which}.where", "not for a kafka store (use sql)")
        if kind == "iceberg":
            raise line(path, where, f"{which}.where", "not supported for an iceberg store")
        if kind == "postgres" and side.query is not None:
            raise line(path, where, f"{which}.where", "put the filter in the query itself")
        if kind == "opensearch" and side.query is not None:
            raise line(path, where, f"{which}.where", "give a query or a where, not both")


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Contract:
    """Read and validate a contract file (ContractError on any problem, naming the field)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"{p}: no such contract file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{p}: cannot read the contract: {exc}") from None
    return parse(text, p, env)
