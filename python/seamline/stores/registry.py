"""The store registry: a store type is its package (`seamline.stores.<name>`) plus one registration
here. The public factories (`sl.postgres`, ...), the contract's adapter factory and the conformance
suite (`tests/stores/`) all come from it.

A package is imported only when its store is first used, because its drivers are optional (one pip
extra per store, `seamline[stores]` for all): a missing driver is one line naming the extra to
install. Each package exposes `ADAPTERS`: its store types' names -> `StoreAdapter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seamline.exceptions import InvalidInputError
from seamline.stores.protocols import Source


@dataclass(frozen=True)
class StoreAdapter:
    """What a store package gives the rest of Seamline.

    open: the public factory (`sl.<name>(...)`), returning the store's source.
    from_contract: the source for one side of a contract's seam, from the contract's store and side
        objects (`seamline.contract`), the target's key field and the time an Iceberg side is read as of.
    """

    open: Callable[..., Source]
    from_contract: Callable[..., Source] | None = None


@dataclass(frozen=True)
class StoreType:
    """A registered store type: its name (the contract's `type:`), its package, and the pip extra
    that installs its drivers (None: always installed)."""

    name: str
    package: str
    extra: str | None = None
    in_contract: bool = True
    #: `sql=` makes the side a DuckDB query over the store's rows (`stores/sql_view.py`); stores that
    #: speak SQL (Postgres: `query=`) or run it themselves (Kafka: after the fold) take no view
    sql_view: bool = False


_TYPES: dict[str, StoreType] = {}
_LOADED: dict[str, StoreAdapter] = {}


def register(store_type: StoreType) -> None:
    """Add a store type (a name is registered once)."""
    if store_type.name in _TYPES:
        raise InvalidInputError(f"store type {store_type.name!r} is already registered")
    _TYPES[store_type.name] = store_type


def names(*, contract_only: bool = False) -> list[str]:
    """The registered store types, in registration order."""
    return [n for n, t in _TYPES.items() if t.in_contract or not contract_only]


def store_type(name: str) -> StoreType:
    if name not in _TYPES:
        raise InvalidInputError(f"{name!r} is not a store type (one of: {', '.join(names())})")
    return _TYPES[name]


def adapter(name: str) -> StoreAdapter:
    """The adapter of a store type, importing its package on first use."""
    if name in _LOADED:
        return _LOADED[name]
    kind = store_type(name)
    try:
        module = importlib.import_module(kind.package)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing == "seamline":
            raise
        extra = f"seamline[{kind.extra}]" if kind.extra else "seamline"
        raise InvalidInputError(
            f"the {name} store needs the Python package {missing!r}, which is not installed: "
            f"pip install '{extra}' (or 'seamline[stores]' for every store)"
        ) from None
    found = module.ADAPTERS[name]
    if not isinstance(found, StoreAdapter):
        raise InvalidInputError(f"{kind.package}.ADAPTERS[{name!r}] is not a StoreAdapter")
    _LOADED[name] = found
    return found


def open_store(name: str, *args: Any, sql: str | None = None, **kwargs: Any) -> Source:
    """`sl.<name>(...)`: the store's source (with `sql=`, a query over its rows)."""
    if not store_type(name).sql_view:
        if sql is not None:
            kwargs["sql"] = sql  # the store's own (Kafka), or a TypeError naming the argument
        return adapter(name).open(*args, **kwargs)
    return _with_sql(adapter(name).open(*args, **kwargs), sql)


def from_contract(name: str, store: Any, side: Any, *, key_field: str | None, as_of: Any) -> Source:
    """The source for one side of a contract's seam (see `StoreAdapter.from_contract`)."""
    make = adapter(name).from_contract
    if make is None:
        raise InvalidInputError(f"the {name} store cannot be declared in a contract")
    source = make(store, side, key_field=key_field, as_of=as_of)
    return _with_sql(source, getattr(side, "sql", None)) if store_type(name).sql_view else source


def _with_sql(source: Source, sql: str | None) -> Source:
    if sql is None:
        return source
    from seamline.stores.sql_view import SqlView

    return SqlView(source, sql)


# -- the store types: one registration each ---------------------------------------------------------

register(StoreType("postgres", "seamline.stores.postgres", extra="postgres"))
register(StoreType("opensearch", "seamline.stores.opensearch", extra="opensearch", sql_view=True))
register(StoreType("iceberg", "seamline.stores.iceberg", extra="iceberg", sql_view=True))
register(StoreType("lancedb", "seamline.stores.lancedb", extra="lancedb", sql_view=True))
register(StoreType("kafka", "seamline.stores.kafka", extra="kafka"))
register(StoreType("arrow", "seamline.stores.arrow", in_contract=False, sql_view=True))
register(StoreType("parquet", "seamline.stores.arrow", in_contract=False, sql_view=True))
