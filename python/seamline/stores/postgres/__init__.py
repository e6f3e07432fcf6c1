"""The Postgres store: `store.py` (the DSN, connections, catalog, error mapping), `read.py` (a table
or query from one exported snapshot) and `write.py` (version-guarded repair). The source below joins
the reader to its writer; `ADAPTERS` registers it (`seamline.stores.registry`)."""

from __future__ import annotations

from typing import Any

from seamline.stores.postgres.read import PostgresReader
from seamline.stores.postgres.write import PostgresRepairWriter
from seamline.stores.protocols import Embed, RangePushdown, Repairable, RepairWriter, Source, Versioned
from seamline.stores.registry import StoreAdapter


class PostgresSource(PostgresReader):
    """A Postgres table or query (`PostgresReader`) that a repair plan can be written to (a table)."""

    def repair_writer(self, embed: Embed | None = None) -> PostgresRepairWriter:
        """The writer for this table (`embed` is unused: Postgres has no vector columns to fill)."""
        return PostgresRepairWriter(self.store, self.table)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> PostgresSource:
    sql = side.query if isinstance(side.query, str) else None
    return PostgresSource(store.dsn, side.table, where=side.where, query=sql, reader=store.reader)


def _conforms(
    source: PostgresSource, writer: PostgresRepairWriter
) -> tuple[Source, RangePushdown, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, writer


ADAPTERS = {"postgres": StoreAdapter(open=PostgresSource, from_contract=from_contract)}

__all__ = ["ADAPTERS", "PostgresReader", "PostgresRepairWriter", "PostgresSource"]
