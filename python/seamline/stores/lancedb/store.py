"""The LanceDB store: a database URI, opening tables with one error mapping, shared by the reader
(`read.py`) and the repair writer (`write.py`). The URI is shown without user or password."""

from __future__ import annotations

from typing import Any

import lancedb

from seamline.exceptions import NotFoundError, StoreUnavailableError
from seamline.stores._common import redact_url


class LanceDBStore:
    """One LanceDB database (a directory or an object-store URI)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._db: Any = None

    def describe(self) -> str:
        return f"lancedb {redact_url(self.uri)}"

    def open_table(self, name: str) -> Any:
        """A fresh handle on the table's latest version."""
        try:
            if self._db is None:
                self._db = lancedb.connect(self.uri)
            return self._db.open_table(name)
        except ValueError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise NotFoundError(
                    f"lancedb table {name} does not exist at {redact_url(self.uri)}"
                ) from None
            raise StoreUnavailableError(f"lancedb at {redact_url(self.uri)}: {_first_line(exc)}") from None
        except (OSError, ConnectionError, RuntimeError) as exc:
            raise StoreUnavailableError(f"lancedb at {redact_url(self.uri)}: {_first_line(exc)}") from None

    def close(self) -> None:
        self._db = None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
