"""The Iceberg store: `store.py` (the catalog and its error mapping), `read.py` (one snapshot of a
table) and `write.py` (one transaction per repair plan). The source below joins the reader to its
writer; `ADAPTERS` registers it (`seamline.stores.registry`)."""

from __future__ import annotations

from typing import Any

from seamline.stores.iceberg.read import IcebergReader
from seamline.stores.iceberg.write import IcebergWriter
from seamline.stores.protocols import Embed, RangePushdown, Repairable, RepairWriter, Source, Versioned
from seamline.stores.registry import StoreAdapter


class IcebergSource(IcebergReader):
    """An Iceberg table (`IcebergReader`) that a repair plan can be written to."""

    def repair_writer(self, embed: Embed | None = None) -> IcebergWriter:
        """The writer for this table (the current snapshot of its main branch, whatever snapshot
        this source reads): one transaction per plan, tagged snapshots. `embed` is unused."""
        return IcebergWriter(self.store, self.table)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> IcebergSource:
    return IcebergSource(side.table, catalog=dict(store.catalog), as_of=as_of)


def _conforms(
    source: IcebergSource, writer: IcebergWriter
) -> tuple[Source, RangePushdown, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, writer


ADAPTERS = {"iceberg": StoreAdapter(open=IcebergSource, from_contract=from_contract)}

__all__ = ["ADAPTERS", "IcebergReader", "IcebergSource", "IcebergWriter"]
