"""The store adapter for one side of a seam, from the store registry (each store package turns its
declared store and side into its source)."""

from __future__ import annotations

from typing import Any

from seamline.contract.schema import Seam, Side, StoreBase


def open_side(store: StoreBase, spec: Side, seam: Seam, *, as_of: Any = None) -> Any:
    """The adapter reading `spec` from `store`; `as_of` pins Iceberg sides to the snapshot current
    at that time."""
    from seamline.stores import registry

    return registry.from_contract(store.type, store, spec, key_field=_key_field(seam), as_of=as_of)


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
