"""The LanceDB store: `store.py` (the database URI and its error mapping), `read.py` (one version of a
table) and `write.py` (deletes and merge-inserts, vectors filled by `embed`). The source below joins
the reader to its writer; `ADAPTERS` registers it (`seamline.stores.registry`)."""

from __future__ import annotations

from typing import Any

from seamline.stores.lancedb.read import LanceDBReader
from seamline.stores.lancedb.write import LanceDBWriter
from seamline.stores.protocols import Embed, RangePushdown, Repairable, RepairWriter, Source, Versioned
from seamline.stores.registry import StoreAdapter


class LanceDBSource(LanceDBReader):
    """A LanceDB table (`LanceDBReader`) that a repair plan can be written to."""

    def repair_writer(self, embed: Embed | None = None, embed_from: str | None = None) -> LanceDBWriter:
        """The writer for this table (its latest version): deletes tombstoned ids, merge-inserts
        stale rows; vector columns are filled by `embed(texts)` from `embed_from` (default: the
        first string column among the plan's columns)."""
        return LanceDBWriter(self.store, self.table, embed=embed, embed_from=embed_from)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> LanceDBSource:
    return LanceDBSource(store.uri, side.table, where=side.where)


def _conforms(
    source: LanceDBSource, writer: LanceDBWriter
) -> tuple[Source, RangePushdown, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, writer


ADAPTERS = {"lancedb": StoreAdapter(open=LanceDBSource, from_contract=from_contract)}

__all__ = ["ADAPTERS", "LanceDBReader", "LanceDBSource", "LanceDBWriter"]
