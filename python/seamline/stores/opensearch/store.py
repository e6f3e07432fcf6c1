"""The OpenSearch store: a cluster URL and its client, the index mappings (how a column resolves to a
field of `_source`), and one error mapping for every request, shared by the reader (`read.py`) and
the repair writer (`write.py`). The URL is shown without user or password."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import opensearchpy
from opensearchpy import OpenSearch

from seamline.exceptions import NotFoundError, StoreUnavailableError
from seamline.stores._common import redact_url

KEEP_ALIVE = "5m"  # a point in time's keep-alive, refreshed by every page request
_T = TypeVar("_T")


@dataclass(frozen=True)
class Connection:
    """What the Rust reader needs to reach the cluster as opensearch-py does: the URL with its scheme,
    basic auth, the TLS options and the request timeout in seconds."""

    url: str
    username: str | None
    password: str | None
    verify_certs: bool
    ca_certs: str | None
    timeout: float


def _connection(url: str, options: dict[str, Any]) -> Connection:
    if "://" not in url:  # opensearch-py takes "host:port" (https with use_ssl)
        url = ("https://" if options.get("use_ssl") else "http://") + url
    auth = options.get("http_auth")
    username = password = None
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        username, password = str(auth[0]), str(auth[1])
    elif isinstance(auth, str) and ":" in auth:
        username, _, password = auth.partition(":")
    ca_certs = options.get("ca_certs")
    return Connection(
        url=url,
        username=username,
        password=password,
        verify_certs=bool(options.get("verify_certs", True)),
        ca_certs=str(ca_certs) if ca_certs else None,
        timeout=float(options.get("timeout") or 120),
    )


class OpenSearchStore:
    """One OpenSearch cluster (the first of its hosts)."""

    def __init__(self, url: str, **client_options: Any) -> None:
        self.url = url
        options = {"timeout": 120, "pool_maxsize": 32, **client_options}
        self.client = OpenSearch(hosts=[url], **options)
        self.connection = _connection(url, options)
        self._lock = threading.Lock()
        self._mappings: dict[str, dict[str, Any]] = {}

    def describe(self) -> str:
        return f"opensearch {redact_url(self.url)}"

    def call(self, index: str, fn: Callable[[], _T]) -> _T:
        """One request about `index`, its errors mapped: a missing index or expired point in time is
        NotFoundError, an unreachable cluster StoreUnavailableError (one line, no credentials)."""
        try:
            return fn()
        except opensearchpy.NotFoundError as exc:
            if exc.error == "index_not_found_exception":
                raise NotFoundError(f"opensearch index {index} does not exist") from None
            if "search context" in str(exc.info).lower() or "search_context" in str(exc.error):
                raise NotFoundError(
                    f"opensearch point in time on {index} expired (idle longer than {KEEP_ALIVE})"
                ) from None
            raise StoreUnavailableError(f"opensearch at {redact_url(self.url)}: {_cause(exc)}") from None
        except opensearchpy.ConnectionError as exc:
            raise StoreUnavailableError(f"opensearch at {redact_url(self.url)}: {_cause(exc)}") from None

    def properties(self, index: str) -> dict[str, Any]:
        """The mapped fields of `index` (an alias or pattern: the first mapping of a field wins)."""
        with self._lock:
            if index in self._mappings:
                return self._mappings[index]
        resp = self.call(index, lambda: self.client.indices.get_mapping(index=index))
        props: dict[str, Any] = {}
        for name in sorted(resp):
            for field, spec in (resp[name].get("mappings", {}).get("properties") or {}).items():
                props.setdefault(field, spec)
        with self._lock:
            self._mappings[index] = props
        return props

    def resolve(self, index: str, column: str) -> tuple[str, dict[str, Any]]:
        """Column -> (path in _source, mapping). Dotted names walk objects; a multi-field
        (``title.keyword``) reads its parent's source value; an unmapped column has no mapping."""
        if column == "_id":
            return "_id", {"type": "keyword"}
        props = self.properties(index)
        if column in props:
            return column, props[column]
        parts = column.split(".")
        spec: dict[str, Any] | None = None
        level: dict[str, Any] = props
        path: list[str] = []
        for i, part in enumerate(parts):
            if part in level:
                spec = level[part]
                path.append(part)
                level = spec.get("properties") or {}
            elif spec is not None and part in (spec.get("fields") or {}) and i == len(parts) - 1:
                return ".".join(path), spec["fields"][part]
            else:
                return column, {}  # unmapped: read as JSON from _source
        return ".".join(path), spec or {}


def _cause(exc: BaseException) -> str:
    text = str(exc)
    lowered = text.lower()
    for needle in (
        "connection refused",
        "timed out",
        "name or service not known",
        "certificate verify failed",
    ):
        if needle in lowered:
            return needle
    return " ".join(text.split())[:200] or type(exc).__name__
