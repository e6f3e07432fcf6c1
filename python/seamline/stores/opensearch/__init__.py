"""The OpenSearch store: `store.py` (the client, mappings and error mapping), `read.py` (an index in
one point in time) and `write.py` (bulk writes with external versions). The source below joins the
reader to its writer; `ADAPTERS` registers it (`seamline.stores.registry`)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

# opensearch-py is imported only when its client is used (the "python" reader, repair writes), but
# the store needs it all the same: without it, the store is refused as the registry says (by name).
if sys.modules.get("opensearchpy", 0) is None or (
    "opensearchpy" not in sys.modules and importlib.util.find_spec("opensearchpy") is None
):
    raise ModuleNotFoundError("No module named 'opensearchpy'", name="opensearchpy")

from seamline.stores.opensearch.read import OpenSearchReader
from seamline.stores.opensearch.write import OpenSearchRepairWriter
from seamline.stores.protocols import (
    Embed,
    RangePushdown,
    Repairable,
    RepairWriter,
    RowFetchPushdown,
    Source,
    Versioned,
)
from seamline.stores.registry import StoreAdapter


class OpenSearchSource(OpenSearchReader):
    """An OpenSearch index (`OpenSearchReader`) that a repair plan can be written to."""

    def repair_writer(self, embed: Embed | None = None) -> OpenSearchRepairWriter:
        """The writer for this index (`embed` is unused)."""
        return OpenSearchRepairWriter(self.store, self.index)


def from_contract(store: Any, side: Any, *, key_field: str | None, as_of: Any) -> OpenSearchSource:
    client: dict[str, Any] = {}
    if store.username is not None:
        client["http_auth"] = (store.username, store.password or "")
    if store.verify_certs is not None:
        client["verify_certs"] = store.verify_certs
    for option in ("ca_certs", "client_cert", "client_key", "headers"):
        if getattr(store, option) is not None:
            client[option] = getattr(store, option)
    if store.timeout is not None:
        client["timeout"] = store.timeout
    dsl: dict[str, Any] | None = dict(side.query) if isinstance(side.query, Mapping) else None
    if side.where:
        dsl = {"query_string": {"query": side.where}}
    return OpenSearchSource(
        store.hosts[0], side.index, query=dsl, key_field=key_field, reader=store.reader, **client
    )


def _conforms(
    source: OpenSearchSource, writer: OpenSearchRepairWriter
) -> tuple[Source, RangePushdown, RowFetchPushdown, Versioned, Repairable, RepairWriter]:
    """Never called: mypy checks here that the adapter has every capability it claims."""
    return source, source, source, source, source, writer


ADAPTERS = {"opensearch": StoreAdapter(open=OpenSearchSource, from_contract=from_contract)}

__all__ = ["ADAPTERS", "OpenSearchReader", "OpenSearchRepairWriter", "OpenSearchSource"]
