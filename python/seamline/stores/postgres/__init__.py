"""The Postgres store: `store.py` (the DSN, connections, catalog, error mapping), `read.py` (a table
or query from one exported snapshot) and `write.py` (version-guarded repair). The source below joins
the reader to its writer; `ADAPTERS` registers it (`seamline.stores.registry`). The writer is
imported when a repair is written (a reconcile only reads)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from seamline.stores.postgres.read import PostgresReader
from seamline.stores.protocols import (
    Embed,
    RangePushdown,
    Repairable,
    RepairWriter,
    RowSeekPushdown,
    Source,
    Versioned,
)
from seamline.stores.registry import StoreAdapter

if TYPE_CHECKING:
    from seamline.stores.postgres.write import PostgresRepairWriter

# The ADBC driver is imported only when used (repair writes, freshness, reader="adbc"): a reconcile on
# the Rust reader never loads it. It is still this store's driver: a missing one is reported (by the
# registry, naming the extra) when the store is first used, not midway through a repair.
for _driver in ("adbc_driver_manager", "adbc_driver_postgresql"):
    if importlib.util.find_spec(_driver) is None:
        raise ModuleNotFoundError(f"No module named {_driver!r}", name=_driver)


class PostgresSource(PostgresReader):
    """A Postgres table or query (`PostgresReader`) that a repair plan can be written to (a table)."""

    def repair_writer(self, embed: Embed | None = None) -> PostgresRepairWriter:
        """The writer for this table (`embed` is unused: Postgres has no vector columns to fill)."""
        from seamline.stores.postgres.write import PostgresRepairWriter

        return PostgresRepairWriter(self.store, self.table)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> PostgresSource:
    sql = side.query if isinstance(side.query, str) else None
    return PostgresSource(store.dsn, side.table, where=side.where, query=sql, reader=store.reader)


def _conforms(
    source: PostgresSource, writer: PostgresRepairWriter
) -> tuple[Source, RangePushdown, RowSeekPushdown, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, source, writer


ADAPTERS = {"postgres": StoreAdapter(open=PostgresSource, from_contract=from_contract)}


def __getattr__(name: str) -> Any:
    if name == "PostgresRepairWriter":
        from seamline.stores.postgres.write import PostgresRepairWriter

        return PostgresRepairWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ADAPTERS", "PostgresReader", "PostgresRepairWriter", "PostgresSource"]
