"""The contract file: the stores, the seams between them and the chains (bronze -> silver -> gold) a
scheduled `seamline` run checks, declared in YAML.

    version: 1
    stores:
      oltp:   {type: postgres, dsn: "${SHOP_PG_DSN}"}
      search: {type: opensearch, hosts: ["${SHOP_OS_URL}"]}
    seams:
      - name: products_search
        source: {store: oltp, table: public.products, where: "deleted_at IS NULL"}
        target: {store: search, index: products}
        key: {id: product_id}
        columns: [sku, name, price, in_stock, updated_at]
        version: updated_at
        freshness: {warn_after: 10m, error_after: 1h}
    chains:
      revenue: [orders_bronze, revenue_gold]

`load` parses and validates the whole file up front: every problem is a `ContractError` with one line
naming the file, the store/seam/chain and the field.

    schema.py    the file declared as pydantic models (the field types and their validators)
    secrets.py   `${VAR}` substitution, the secrets it meets, `redact`
    errors.py    pydantic's error locations -> one line
    loading.py   YAML, substitution, schema, cross-references -> a `Contract`
    model.py     `Contract`: seams, chains, open a side, reconcile a seam, redact
    factory.py   the store adapter for one side of a seam
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seamline.contract.loading import load, parse
    from seamline.contract.model import Contract
    from seamline.contract.schema import (
        STORE_TYPES,
        CompareSpec,
        Freshness,
        IcebergStore,
        KafkaStore,
        LanceDBStore,
        OpenSearchStore,
        PostgresStore,
        RepairPolicy,
        Seam,
        Side,
        StoreBase,
    )
    from seamline.contract.secrets import redact
    from seamline.durations import parse_time

    Store = StoreBase

# Imported on first use: `redact` (every line the CLI prints) must not pay for pydantic and the schema.
_LAZY = {
    "load": "seamline.contract.loading",
    "parse": "seamline.contract.loading",
    "Contract": "seamline.contract.model",
    "redact": "seamline.contract.secrets",
    "parse_time": "seamline.durations",
    **dict.fromkeys(
        (
            "STORE_TYPES CompareSpec Freshness IcebergStore KafkaStore LanceDBStore OpenSearchStore "
            "PostgresStore RepairPolicy Seam Side StoreBase"
        ).split(),
        "seamline.contract.schema",
    ),
}


def __getattr__(name: str) -> Any:
    if name == "Store":
        return __getattr__("StoreBase")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seamline.contract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "STORE_TYPES",
    "CompareSpec",
    "Contract",
    "Freshness",
    "IcebergStore",
    "KafkaStore",
    "LanceDBStore",
    "OpenSearchStore",
    "PostgresStore",
    "RepairPolicy",
    "Seam",
    "Side",
    "Store",
    "StoreBase",
    "load",
    "parse",
    "parse_time",
    "redact",
]
