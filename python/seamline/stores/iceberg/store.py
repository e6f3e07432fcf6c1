"""The Iceberg store: a pyiceberg catalog (its properties), loading tables with one error mapping,
shared by the reader (`read.py`) and the repair writer (`write.py`)."""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table

try:  # the SQL catalog's database errors; sqlalchemy comes with pyiceberg[sql-*]
    from sqlalchemy.exc import OperationalError as _CatalogDbError
except ImportError:  # pragma: no cover
    _CatalogDbError = OSError  # type: ignore[misc,assignment]

from seamline.exceptions import NotFoundError, StoreUnavailableError


class IcebergStore:
    """One Iceberg catalog, from its pyiceberg properties (which may hold credentials: never shown)."""

    def __init__(self, catalog: dict[str, Any]) -> None:
        self.properties = dict(catalog)
        self._catalog: Catalog | None = None

    def describe(self) -> str:
        """The catalog's type, without any of its properties."""
        return f"iceberg {self.properties.get('type') or 'catalog'}"

    def load(self, name: str) -> Table:
        """A fresh handle on the table's current metadata."""
        try:
            if self._catalog is None:
                # A SQL catalog keys its tables by catalog name: "name" in the properties picks it.
                props = dict(self.properties)
                self._catalog = load_catalog(str(props.pop("name", "default")), **props)
            return self._catalog.load_table(name)
        except (NoSuchTableError, NoSuchNamespaceError) as exc:
            raise NotFoundError(f"iceberg table {name} does not exist") from exc
        except (OSError, ConnectionError, _CatalogDbError) as exc:
            # A REST catalog that refuses, or the database of a SQL catalog that is down.
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreUnavailableError(f"iceberg catalog for {name}: {cause}") from None

    def close(self) -> None:
        self._catalog = None
