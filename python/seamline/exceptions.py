"""The Seamline exception hierarchy (defined in the native module, re-exported here).

SeamlineError
├── SchemaError            a column is unknown, missing, renamed or of an incompatible type
├── ValueParseError        a value does not parse as its column's declared logical type
├── InvalidInputError      a malformed argument, file or serialised tree
│   └── ContractError      an invalid contract file
├── StoreUnavailableError  a store is down or refuses the connection
├── NotFoundError          a table, index or snapshot does not exist
└── RepairRefusedError     a repair that cannot be proven safe was not applied
"""

from seamline._core import (
    ContractError,
    InvalidInputError,
    NotFoundError,
    RepairRefusedError,
    SchemaError,
    SeamlineError,
    StoreUnavailableError,
    ValueParseError,
)

__all__ = [
    "ContractError",
    "InvalidInputError",
    "NotFoundError",
    "RepairRefusedError",
    "SchemaError",
    "SeamlineError",
    "StoreUnavailableError",
    "ValueParseError",
]
