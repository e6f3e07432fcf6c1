"""The store adapter for one side of a seam: the only place that turns a declared store into a
source object (`sl.postgres`, `sl.opensearch`, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seamline.contract.schema import (
    IcebergStore,
    LanceDBStore,
    OpenSearchStore,
    PostgresStore,
    Seam,
    Side,
    StoreBase,
)
from seamline.exceptions import ContractError


def open_side(store: StoreBase, spec: Side, seam: Seam, *, as_of: Any = None) -> Any:
    """The adapter reading `spec` from `store`; `as_of` pins Iceberg sides to the snapshot current
    at that time."""
    import seamline as sl

    if isinstance(store, PostgresStore):
        sql = spec.query if isinstance(spec.query, str) else None
        return sl.postgres(store.dsn, spec.table, where=spec.where, query=sql)
    if isinstance(store, OpenSearchStore):
        assert spec.index is not None
        client: dict[str, Any] = {}
        if store.username is not None:
            client["http_auth"] = (store.username, store.password or "")
        if store.verify_certs is not None:
            client["verify_certs"] = store.verify_certs
        if store.ca_certs is not None:
            client["ca_certs"] = store.ca_certs
        if store.timeout is not None:
            client["timeout"] = store.timeout
        dsl: dict[str, Any] | None = dict(spec.query) if isinstance(spec.query, Mapping) else None
        if spec.where:
            dsl = {"query_string": {"query": spec.where}}
        return sl.opensearch(store.hosts[0], spec.index, query=dsl, key_field=_key_field(seam), **client)
    if isinstance(store, IcebergStore):
        assert spec.table is not None
        return sl.iceberg(spec.table, catalog=dict(store.catalog), as_of=as_of)
    if isinstance(store, LanceDBStore):
        assert spec.table is not None
        return sl.lancedb(store.uri, spec.table, where=spec.where)
    raise ContractError(f"store {store.name!r}: unknown type {store.type!r}")


def _key_field(seam: Seam) -> str | None:
    """OpenSearch: the field holding the key when it is not `_id` (enables range pushdown)."""
    if isinstance(seam.key, dict) and len(seam.key) == 1:
        (name,) = seam.key.values()
    elif isinstance(seam.key, str):
        name = seam.key
    elif isinstance(seam.key, list) and len(seam.key) == 1:
        name = seam.key[0]
    else:
        return None
    return None if name == "_id" else name
