"""The OpenSearch store: a cluster URL and its clients, the index mappings (how a column resolves to a
field of `_source`), and one error mapping for every request, shared by the reader (`read.py`) and
the repair writer (`write.py`). The URL is shown without user or password.

Two clients: the Rust reader's HTTP client (`seamline._core.OsHttp`, the catalog requests of a read)
and opensearch-py (the "python" reader and the repair writer), made on first use: importing it
loads requests, urllib3 and aiohttp (~0.5 CPU-s), which a read on the Rust reader never needs."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from seamline.exceptions import InvalidInputError, NotFoundError, StoreUnavailableError
from seamline.stores._common import redact_url

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

KEEP_ALIVE = "5m"  # a point in time's keep-alive, refreshed by every page request
_T = TypeVar("_T")


@dataclass(frozen=True)
class Connection:
    """What the Rust reader needs to reach the cluster as opensearch-py does: the URL with its scheme,
    basic auth, extra headers, the TLS options and the request timeout in seconds."""

    url: str
    username: str | None
    password: str | None
    verify_certs: bool
    ca_certs: str | None
    timeout: float
    client_cert: str | None = None
    client_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


# opensearch-py's client options the Rust reader honours (see _connection) ...
_RUST_OPTIONS = frozenset(
    "http_auth use_ssl verify_certs ca_certs client_cert client_key headers opaque_id timeout".split()
)
# ... and those that change neither what is read nor who reads it (transport tuning: the Rust client
# has its own pool and retries, and never compresses)
_IGNORED_OPTIONS = frozenset(
    "ssl_show_warn http_compress max_retries retry_on_status retry_on_timeout maxsize pool_maxsize"
    " sniff_on_start sniff_on_connection_fail sniffer_timeout sniff_timeout serializer".split()
)


def _connection(url: str, options: dict[str, Any], *, strict: bool = False) -> Connection:
    """The Rust client's connection; `strict` (the Rust reader chosen): an option it cannot honour
    (an auth object such as AWS SigV4, `ssl_context`, `connection_class`, ...) is an
    InvalidInputError naming it and reader="python", not a request sent without it."""
    if strict:
        verify = bool(options.get("verify_certs", True))
        # the Rust client checks the host name whenever it checks the certificate: an
        # ssl_assert_hostname that asks no more (True, or anything with verify_certs=False) is fine
        assert_hostname = options.get("ssl_assert_hostname", True)
        if assert_hostname is not True and verify:
            raise InvalidInputError(
                f"opensearch ssl_assert_hostname={assert_hostname!r} with verify_certs is not supported by"
                " the rust reader (it always checks the host name it connects to): use reader='python'"
            )
        for name in sorted(set(options) - _RUST_OPTIONS - _IGNORED_OPTIONS - {"ssl_assert_hostname"}):
            raise InvalidInputError(
                f"opensearch client option {name!r} is not supported by the rust reader: use reader='python'"
            )
    if "://" not in url:  # opensearch-py takes "host:port" (https with use_ssl)
        url = ("https://" if options.get("use_ssl") else "http://") + url
    auth = options.get("http_auth")
    username = password = None
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        username, password = str(auth[0]), str(auth[1])
    elif isinstance(auth, str) and ":" in auth:
        username, _, password = auth.partition(":")
    elif auth is not None and strict:
        raise InvalidInputError(
            f"opensearch http_auth of type {type(auth).__name__} is not supported by the rust reader"
            " (a (user, password) pair or 'user:password' is): use reader='python'"
        )
    headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
    if options.get("opaque_id"):
        headers["X-Opaque-Id"] = str(options["opaque_id"])
    ca_certs, client_cert, client_key = (options.get(k) for k in ("ca_certs", "client_cert", "client_key"))
    if client_key and not client_cert and strict:
        raise InvalidInputError("opensearch client_key without client_cert")
    return Connection(
        url=url,
        username=username,
        password=password,
        verify_certs=bool(options.get("verify_certs", True)),
        ca_certs=str(ca_certs) if ca_certs else None,
        timeout=float(options.get("timeout") or 120),
        client_cert=str(client_cert) if client_cert else None,
        client_key=str(client_key) if client_key else None,
        headers=tuple(headers.items()),
    )


class AccessRefused(StoreUnavailableError):
    """The node refused the credentials (401) or the request (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OpenSearchStore:
    """One OpenSearch cluster (the first of its hosts). `python_client`: the catalog requests of a
    read go through opensearch-py too (the "python" reader), else through the Rust client."""

    #: Retries of a request on 429/502/503/504 or a lost connection (Rust client; the reader's page
    #: requests take theirs from OpenSearchReader): attempts, and the first backoff in seconds.
    retry_attempts = 6
    retry_backoff = 0.2

    def __init__(self, url: str, *, python_client: bool = False, **client_options: Any) -> None:
        self.url = url
        self._options = {"timeout": 120, "pool_maxsize": 32, **client_options}
        self.connection = _connection(url, self._options, strict=not python_client)
        self.python_client = python_client
        self._lock = threading.Lock()
        self._client: OpenSearch | None = None
        self._http: HttpClient | None = None
        self._mappings: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> OpenSearch:
        """opensearch-py's client (the python reader and the repair writer), made on first use."""
        with self._lock:
            if self._client is None:
                from opensearchpy import OpenSearch

                self._client = OpenSearch(hosts=[self.url], **self._options)
            return self._client

    @property
    def catalog(self) -> Any:
        """The client of a read's catalog requests: opensearch-py's, or the Rust one with its calls."""
        return self.client if self.python_client else self.http

    @property
    def http(self) -> HttpClient:
        """The Rust client (catalog requests of the Rust reader; its scans start from its
        connection), made on first use."""
        with self._lock:
            if self._http is None:
                self._http = HttpClient(self.connection, self.retry_attempts, self.retry_backoff)
            return self._http

    def describe(self) -> str:
        return f"opensearch {redact_url(self.url)}"

    def call(self, index: str, fn: Callable[[], _T]) -> _T:
        """One request about `index`, its errors mapped: a missing index or expired point in time is
        NotFoundError, an unreachable cluster StoreUnavailableError (AccessRefused for 401/403), one
        line without credentials. The same mapping for either client."""
        try:
            return fn()
        except HttpStatusError as exc:
            raise self._status_error(index, exc.status, exc.error, exc.info, exc) from None
        except Exception as exc:
            driver = sys.modules.get("opensearchpy")  # not loaded: the error is not opensearch-py's
            if driver is None:
                raise
            if isinstance(exc, driver.ConnectionError):
                raise StoreUnavailableError(f"opensearch at {redact_url(self.url)}: {_cause(exc)}") from None
            if isinstance(
                exc, driver.NotFoundError | driver.AuthenticationException | driver.AuthorizationException
            ):
                raise self._status_error(index, exc.status_code, exc.error, exc.info, exc) from None
            raise

    def _status_error(self, index: str, status: Any, error: Any, info: Any, exc: Exception) -> Exception:
        where = f"opensearch at {redact_url(self.url)}"
        if status == 404:
            if error == "index_not_found_exception":
                return NotFoundError(f"opensearch index {index} does not exist")
            if "search context" in str(info).lower() or "search_context" in str(error):
                return NotFoundError(
                    f"opensearch point in time on {index} expired (idle longer than {KEEP_ALIVE})"
                )
            return StoreUnavailableError(f"{where}: {_cause(exc)}")
        if status in (401, 403):
            return AccessRefused(f"{where}: HTTP {status} (authentication or permission refused)", status)
        if isinstance(status, int) and 400 <= status < 500:
            return InvalidInputError(f"opensearch index {index}: {_cause(exc)}")
        return StoreUnavailableError(f"{where}: {_cause(exc)}")

    def properties(self, index: str) -> dict[str, Any]:
        """The mapped fields of `index` (an alias or pattern: the first mapping of a field wins)."""
        with self._lock:
            if index in self._mappings:
                return self._mappings[index]
        resp = self.call(index, lambda: self.catalog.indices.get_mapping(index=index))
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


class HttpStatusError(Exception):
    """An error status from the Rust client, with the fields of opensearch-py's TransportError
    (`error`: the error type, `info`: the parsed body) that `OpenSearchStore.call` maps."""

    def __init__(self, status: int, body: bytes) -> None:
        try:
            info: Any = json.loads(body)
        except ValueError:
            info = body.decode(errors="replace")
        error = info.get("error") if isinstance(info, dict) else None
        reason = ""
        if isinstance(error, dict):
            causes = error.get("root_cause") or [{}]
            reason = str(causes[0].get("reason") or error.get("reason") or "")
            error = error.get("type")
        super().__init__(f"HTTP {status}: {reason or error or ''}")
        self.status, self.error, self.info = status, error, info


class HttpClient:
    """The few calls of opensearch-py's client that a read makes (same names and arguments), over
    the Rust reader's HTTP client: `count`, `create_pit`, `delete_pit`, `search`, `info` and
    `indices.get_settings` / `indices.get_mapping`. An error status raises HttpStatusError."""

    def __init__(self, connection: Connection, attempts: int, backoff: float) -> None:
        from seamline._core import OsHttp

        self.native = OsHttp(
            connection.url,
            username=connection.username,
            password=connection.password,
            verify_certs=connection.verify_certs,
            ca_certs=connection.ca_certs,
            timeout=connection.timeout,
            attempts=attempts,
            backoff=backoff,
            address=redact_url(connection.url),
            client_cert=connection.client_cert,
            client_key=connection.client_key,
            headers=list(connection.headers),
        )
        self.indices = _Indices(self)

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if params:
            path += "?" + urlencode(params, safe=",*")
        # A POST always has a body (an empty one has Content-Length 0, where ureq would send chunks).
        payload = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
        status, answer = self.native.request(method, path, payload)
        if status >= 400:
            raise HttpStatusError(status, answer)
        return json.loads(answer) if answer else {}

    def info(self) -> Any:
        return self.request("GET", "/")

    def count(self, index: str, body: Any = None) -> Any:
        return self.request("POST" if body is not None else "GET", f"/{_path(index)}/_count", body)

    def search(self, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        return self.request("POST", "/_search", body, params)

    def create_pit(self, index: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("POST", f"/{_path(index)}/_search/point_in_time", None, params)

    def delete_pit(self, body: Any = None) -> Any:
        return self.request("DELETE", "/_search/point_in_time", body)


class _Indices:
    def __init__(self, client: HttpClient) -> None:
        self._client = client

    def get_mapping(self, index: str) -> Any:
        return self._client.request("GET", f"/{_path(index)}/_mapping")

    def get_settings(self, index: str, name: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.request("GET", f"/{_path(index)}/_settings/{_path(name)}", None, params)


def _path(part: str) -> str:
    """A path segment as opensearch-py writes it (index patterns and lists keep `*` and `,`)."""
    return quote(part, safe=",*")
