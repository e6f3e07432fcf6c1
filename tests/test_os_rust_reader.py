"""The Rust OpenSearch reader (`reader="rust"`, the default: `seamline._core.os_search_stream`) against
the real node, checked against the opensearch-py reader (`reader="python"`) on the same documents
(issue 13):

- every mapping type the adapter reads (long/integer/short/byte/unsigned_long, double/float/
  half_float/scaled_float, keyword/text, boolean, dates as ISO strings with offsets, epoch_millis and
  epoch_second, a nested object path a.b.c, an object read as JSON) gives the same Arrow table and a
  clean reconcile of the two readers — a property test over generated documents with missing fields,
  nulls, one-element arrays, strings in numeric fields, dates at years 1 and 9999, non-BMP text, big
  longs and NaN-free doubles;
- slices (parallelism, a 3-shard index) and pushed-down key ranges give the same rows;
- pages fit an index whose `max_result_window` is below the reader's page size;
- 429 answers are retried with backoff (a local proxy in front of the node answers 429 to the first K
  page requests and counts them), and past the retries it is one line StoreUnavailableError;
- a node that stops answering mid-scan is one line StoreUnavailableError naming host and port;
- basic auth reaches the node as an Authorization header (the proxy records it), and no error shows
  the password; `headers` and `opaque_id` reach it on every page;
- TLS (the proxy terminating it with a throwaway CA's certificate for localhost, Python's ssl):
  `ca_certs` right and wrong, `verify_certs=False`, and mutual TLS with `client_cert`/`client_key`
  (the proxy requiring a client certificate of its CA), beside opensearch-py on the same proxy;
- an opensearch-py option the Rust reader cannot honour is one line naming it and reader="python".
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ssl
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pg_tls_server import make_certs

import seamline as sl
from seamline.exceptions import StoreUnavailableError, ValueParseError
from seamline.stores.protocols import KeyRange, ScanRequest

pytestmark = pytest.mark.services

MAPPING = {
    "id": {"type": "long"},
    "run": {"type": "keyword"},
    "l": {"type": "long"},
    "i": {"type": "integer"},
    "s": {"type": "short"},
    "b": {"type": "byte"},
    "u": {"type": "unsigned_long"},
    "d": {"type": "double"},
    "f": {"type": "float"},
    "hf": {"type": "half_float"},
    "sf": {"type": "scaled_float", "scaling_factor": 100},
    "k": {"type": "keyword"},
    "t": {"type": "text"},
    "flag": {"type": "boolean"},
    "dt": {"type": "date"},
    "dm": {"type": "date", "format": "epoch_millis"},
    "ds": {"type": "date", "format": "epoch_second"},
    "obj": {"properties": {"a": {"properties": {"b": {"properties": {"c": {"type": "keyword"}}}}}}},
    "raw": {"type": "object", "enabled": False},
}
COLUMNS = ["id", *[c for c in MAPPING if c not in ("id", "run", "obj")], "obj.a.b.c"]

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["😀", "𝄞 clef", "naïve", ""])
MS_MIN, MS_MAX = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31T23:59:59.999


def iso(ms: int, digits: int, offset: int | None) -> str:
    """An ISO date-time of `ms` with `digits` fraction digits and an offset in minutes (None: "Z")."""
    when = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    if offset is not None:
        when += dt.timedelta(minutes=offset)
        if not dt.datetime(1, 1, 1) < when < dt.datetime(9999, 12, 31):
            offset, when = None, when - dt.timedelta(minutes=offset)
    base = when.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    frac = f"{when.microsecond:06d}{ms % 7}00"[:digits]
    zone = (
        "Z"
        if offset is None
        else f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    )
    return base + (f".{frac}" if digits else "") + zone


dates = st.one_of(
    st.builds(
        iso,
        st.integers(MS_MIN + 86_400_000, MS_MAX - 86_400_000),
        st.sampled_from([0, 3, 6, 9]),
        st.none() | st.sampled_from([330, -480, 0, 45]),
    ),
    # a number below -999,999,999 is read by the node's strict_date_optional_time as a year out of
    # range (mapper_parsing_exception) before epoch_millis gets it
    st.integers(-999_999_999, MS_MAX),
    st.sampled_from(["1970-01-01", "2024-02-29T12:00:00Z", "1969-12-31T23:59:59.9999Z"]),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field value, null, or a one-element array of it."""
    return st.one_of(strategy, st.none(), strategy.map(lambda v: [v]))


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "l": maybe(st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**6), 10**6).map(str)),
    "i": maybe(st.integers(-(2**31), 2**31 - 1)),
    "s": maybe(st.integers(-(2**15), 2**15 - 1)),
    "b": maybe(st.integers(-128, 127) | st.integers(-128, 127).map(str)),
    "u": maybe(st.integers(0, 2**64 - 1)),
    "d": maybe(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)),
    "f": maybe(st.floats(width=32, allow_nan=False, allow_infinity=False)),
    "hf": maybe(st.floats(-60000, 60000, width=16)),
    "sf": maybe(st.floats(-1e6, 1e6).map(lambda x: round(x, 2))),
    # integers within 64 bits: a larger JSON integer in a keyword field reads as a double in Rust
    "k": maybe(text | st.integers(-(2**63), 2**63 - 1) | st.booleans()) | st.lists(text, max_size=3),
    "t": maybe(text),
    "flag": maybe(st.booleans() | st.sampled_from(["true", "false"])),
    "dt": maybe(dates),
    "dm": maybe(st.integers(MS_MIN, MS_MAX)),
    "ds": maybe(st.integers(MS_MIN // 1000, MS_MAX // 1000)),
    "raw": maybe(
        st.recursive(
            st.none()
            | st.booleans()
            # integers within 64 bits, no doubles: a double inside a disabled object is rendered
            # differently by the two readers (a known difference, e.g. a double the node re-renders
            # as a >64-bit integer is an int to Python and a double to Rust)
            | st.integers(-(2**63), 2**63 - 1)
            | text,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
            max_leaves=6,
        )
    ),
}

NESTED = st.one_of(
    st.none(),
    text.map(lambda v: {"obj": {"a": {"b": {"c": v}}}}),
    text.map(lambda v: {"obj.a.b.c": v}),
    st.just({"obj": {"a": {}}}),
)

documents = st.lists(
    st.tuples(st.fixed_dictionaries({}, optional=FIELDS), NESTED),
    min_size=1,
    max_size=25,
)


class Node:
    """The shared test node, with unique index names (all deleted afterwards)."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch

        self.url = url
        self.client = OpenSearch(hosts=[url], timeout=120)
        self.prefix = f"sl-osrust-{uuid.uuid4().hex[:8]}"
        self.indices: list[str] = []

    def index(self, name: str, properties: dict[str, Any], shards: int = 1) -> str:
        index = f"{self.prefix}-{name}"
        self.client.indices.create(
            index=index,
            body={
                "settings": {"number_of_shards": shards, "number_of_replicas": 0},
                "mappings": {"properties": properties},
            },
        )
        self.indices.append(index)
        return index

    def load(self, index: str, docs: list[dict[str, Any]]) -> None:
        from opensearchpy import helpers

        helpers.bulk(
            self.client,
            ({"_index": index, "_id": str(d["id"]), "_source": d} for d in docs),
            chunk_size=5000,
            refresh="wait_for",
        )

    def close(self) -> None:
        for index in self.indices:
            self.client.indices.delete(index=index, ignore_unavailable=True)


@pytest.fixture(scope="module")
def node(opensearch_url: str) -> Iterator[Node]:
    n = Node(opensearch_url)
    yield n
    n.close()


@pytest.fixture(scope="module")
def numbers(node: Node) -> str:
    """3 shards (so at least 3 slices), 12,000 documents: id, a keyword and a price."""
    index = node.index(
        "numbers", {"id": {"type": "long"}, "k": {"type": "keyword"}, "p": {"type": "double"}}, 3
    )
    node.load(index, [{"id": i, "k": f"k{i % 97}", "p": i * 0.25} for i in range(12_000)])
    return index


def read(source: sl.Source, columns: list[str], parallelism: int = 1, ranges: Any = None) -> pa.Table:
    request = ScanRequest(columns=columns, key=["id"], ranges=ranges, parallelism=parallelism)
    tables = [pa.RecordBatchReader.from_stream(s).read_all() for s in source.open(request)]
    return pa.concat_tables(tables).sort_by("_id" if "_id" in columns else "id")


# -- every mapping type, against the Python reader ---------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example is an index write
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=documents)
def test_rust_reader_equals_python_reader_on_every_mapping_type(node: Node, data: list[Any]) -> None:
    if not hasattr(node, "types"):
        node.types = node.index("types", MAPPING)  # type: ignore[attr-defined]
    index: str = node.types  # type: ignore[attr-defined]
    run = uuid.uuid4().hex
    docs = [{"id": i, "run": run, **fields, **(nested or {})} for i, (fields, nested) in enumerate(data)]
    node.load(index, docs)
    query = {"term": {"run": run}}  # each example reads only its own documents
    rust = sl.opensearch(node.url, index, query=query, key_field="id", reader="rust")
    python = sl.opensearch(node.url, index, query=query, key_field="id", reader="python")
    try:
        outcome: dict[str, Any] = {}
        for name, source in (("rust", rust), ("python", python)):
            try:
                outcome[name] = read(source, ["_id", *COLUMNS])
            except (ValueParseError, pa.ArrowException, TypeError, ValueError, ArithmeticError) as exc:
                outcome[name] = type(exc)  # a value neither reader can type: both must refuse
        if isinstance(outcome["python"], pa.Table):
            assert isinstance(outcome["rust"], pa.Table), outcome["rust"]
            assert outcome["rust"].schema == outcome["python"].schema
            assert outcome["rust"].to_pylist() == outcome["python"].to_pylist()
            assert outcome["rust"].num_rows == len(docs)
            # the canonical digests of the core over the two readers (a nested path is compared through
            # its top-level object, the seam's schema names top-level fields)
            compared = [c for c in COLUMNS if c not in ("id", "obj.a.b.c")] + ["obj"]
            result = sl.reconcile(rust, python, key="id", columns=compared)
            assert result.clean, result.diffs
        else:
            assert not isinstance(outcome["rust"], pa.Table), "python refused a page the rust reader read"
    finally:
        rust.close()
        python.close()


def test_a_multi_valued_number_is_a_value_error_in_both_readers(node: Node) -> None:
    index = node.index("multi", {"id": {"type": "long"}, "n": {"type": "long"}})
    node.load(index, [{"id": 1, "n": [1, 2]}])
    for reader in ("rust", "python"):
        source = sl.opensearch(node.url, index, key_field="id", reader=reader)
        with pytest.raises(ValueParseError, match="multi-valued"):
            sl.reconcile(source, source, key="id", columns=["n"])


# -- slices and ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2, 5])
def test_slices_and_ranges_read_the_same_rows_as_the_python_reader(
    node: Node, numbers: str, parallelism: int
) -> None:
    ranges_cases: list[Any] = [
        None,
        [KeyRange(lo=(100,), hi=(500,)), KeyRange(lo=(2_000,), hi=(2_001,)), KeyRange(lo=(11_990,), hi=None)],
        [],
    ]
    for ranges in ranges_cases:
        tables = {}
        for reader in ("rust", "python"):
            source = sl.opensearch(node.url, numbers, key_field="id", reader=reader)
            try:
                tables[reader] = read(source, ["id", "k", "p"], parallelism, ranges)
            finally:
                source.close()
        assert tables["rust"].equals(tables["python"])
        expected = 12_000 if ranges is None else (400 + 1 + 10 if ranges else 0)
        assert tables["rust"].num_rows == expected
        assert len(set(tables["rust"]["id"].to_pylist())) == expected  # no page read twice


def test_pages_fit_an_index_whose_result_window_is_smaller(node: Node) -> None:
    """Pages are PAGE_SIZE hits, or the index's `max_result_window` when smaller (a larger page is
    refused by the node): every document once, in both readers, full and by ranges."""
    from seamline.stores.opensearch.read import PAGE_SIZE

    index = node.index("window", {"id": {"type": "long"}, "k": {"type": "keyword"}})
    node.client.indices.put_settings(index=index, body={"index": {"max_result_window": 1500}})
    node.load(index, [{"id": i, "k": f"k{i}"} for i in range(4_000)])
    assert PAGE_SIZE > 1500
    for reader in ("rust", "python"):
        source = sl.opensearch(node.url, index, key_field="id", reader=reader)
        try:
            whole = read(source, ["id", "k"])
            ranged = read(source, ["id", "k"], 2, [KeyRange(lo=(10,), hi=(3_990,))])
            streams = source.open(ScanRequest(columns=["id"], key=["id"], parallelism=1))
            pages = [b.num_rows for s in streams for b in pa.RecordBatchReader.from_stream(s)]
        finally:
            source.close()
        assert whole["id"].to_pylist() == list(range(4_000))
        assert ranged["id"].to_pylist() == list(range(10, 3_990))
        assert sum(pages) == 4_000 and max(pages) <= 1500  # one batch a page


@pytest.mark.parametrize("key_type", ["long", "date"])
def test_streams_of_a_one_shard_index_split_the_key_range_not_hash_slices(node: Node, key_type: str) -> None:
    """More streams than shards split the key's [min, max] into range queries (no `slice`: a hash
    slice makes the node re-hash the whole shard for every page), the documents without a key are
    read by one of them; every document once, in both readers. The mapping also has unmapped source
    keys (dynamic: false), which the whole `_source` asked for a full read brings along unused."""
    from opensearchpy import helpers

    index = f"{node.prefix}-split-{key_type}"
    node.client.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic": False,
                "properties": {"id": {"type": key_type}, "k": {"type": "keyword"}},
            },
        },
    )
    node.indices.append(index)
    docs: list[dict[str, Any]] = [
        {"id": 1_000 + i * 7, "k": f"k{i}", "extra": {"x": i}} for i in range(3_000)
    ]
    docs += [{"k": f"nokey{i}"} for i in range(5)] + [{"id": None, "k": "nullkey"}]
    helpers.bulk(
        node.client,
        ({"_index": index, "_id": f"d{n}", "_source": d} for n, d in enumerate(docs)),
        refresh="wait_for",
    )
    proxy = Proxy(node.url)
    try:
        for reader in ("rust", "python"):
            one = sl.opensearch(node.url, index, key_field="id", reader=reader)
            expected = read(one, ["_id", "id", "k"], parallelism=1)
            one.close()
            assert expected.num_rows == len(docs)
            for parallelism in (2, 3):
                source = sl.opensearch(proxy.url(), index, key_field="id", reader=reader)
                streams = source.open(
                    ScanRequest(columns=["_id", "id", "k"], key=["id"], parallelism=parallelism)
                )
                assert len(streams) == parallelism
                table = pa.concat_tables(pa.RecordBatchReader.from_stream(s).read_all() for s in streams)
                source.close()
                assert table.sort_by("_id").equals(expected)
        assert proxy.bodies and not any(b"slice" in body for body in proxy.bodies)
        # every mapped field is read: the whole source, unfiltered
        assert all(b'"_source":true' in body.replace(b" ", b"") for body in proxy.bodies)
    finally:
        proxy.close()


def test_the_default_reader_is_rust_and_the_contract_can_choose(node: Node, numbers: str) -> None:
    assert sl.opensearch(node.url, numbers).reader == "rust"  # type: ignore[attr-defined]
    with pytest.raises(sl.InvalidInputError, match="opensearch reader 'java'"):
        sl.opensearch(node.url, numbers, reader="java")


# -- a proxy in front of the node -----------------------------------------------------------------------


class Proxy:
    """Forwards every request to the node; page requests (`POST /_search`) can be answered 429 (the
    first `throttle` of them, or all with `throttle=-1`) or dropped without an answer once `die_after`
    have been forwarded. Counts what it did and records the Authorization and X-* headers of pages.
    With `tls` it speaks HTTPS (that context's certificate, and client verification if it asks)."""

    def __init__(
        self, target: str, throttle: int = 0, die_after: int | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.target = target.split("://", 1)[-1]
        self.throttle = throttle
        self.die_after = die_after
        self.throttled = 0
        self.forwarded_pages = 0
        self.dropped = 0
        self.auth: set[str | None] = set()
        self.extra: set[tuple[tuple[str, str], ...]] = set()
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # a page: POST /_search (the Rust reader sends no query string), not an aggregation
                page = (
                    self.command == "POST" and self.path.split("?")[0] == "/_search" and b'"aggs"' not in body
                )
                if page:
                    with proxy.lock:
                        proxy.bodies.append(body)
                        proxy.auth.add(self.headers.get("Authorization"))
                        proxy.extra.add(
                            tuple(
                                sorted(
                                    (k.lower(), v)
                                    for k, v in self.headers.items()
                                    if k.lower().startswith("x-")
                                )
                            )
                        )
                        if proxy.throttle < 0 or proxy.throttled < proxy.throttle:
                            proxy.throttled += 1
                            verdict = "429"
                        elif proxy.die_after is not None and proxy.forwarded_pages >= proxy.die_after:
                            proxy.dropped += 1
                            verdict = "drop"
                        else:
                            proxy.forwarded_pages += 1
                            verdict = "forward"
                    if verdict == "429":
                        reply = b'{"error":{"reason":"rejected execution (queue full)"},"status":429}'
                        self.send_response(429)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(reply)))
                        self.end_headers()
                        self.wfile.write(reply)
                        return
                    if verdict == "drop":
                        self.close_connection = True
                        return
                conn = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.tls = tls is not None
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, userinfo: str = "") -> str:
        if self.tls:  # the certificate is for localhost
            return f"https://{userinfo}localhost:{self.port}"
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fast_retries(source: sl.Source, attempts: int = 6) -> sl.Source:
    source.retry_backoff = 0.01  # type: ignore[attr-defined]
    source.retry_attempts = attempts  # type: ignore[attr-defined]
    return source


def test_429_answers_are_retried_with_backoff(node: Node, numbers: str) -> None:
    proxy = Proxy(node.url, throttle=4)
    try:
        through = fast_retries(sl.opensearch(proxy.url(), numbers, key_field="id"))
        direct = sl.opensearch(node.url, numbers, key_field="id")
        table = read(through, ["id", "k", "p"], parallelism=1)
        assert table.equals(read(direct, ["id", "k", "p"], parallelism=1))
        assert proxy.throttled == 4  # every 429 was followed by a retry that got its page
        # 3 slices (3 shards) of ~4,000 documents: one page each, then an empty one (a page longer
        # than page_size * MIN_HIT_BYTES is taken as full, its hits not counted)
        assert proxy.forwarded_pages == 6
        through.close()
        direct.close()
    finally:
        proxy.close()


def test_429_past_the_retries_is_one_line_store_unavailable(node: Node, numbers: str) -> None:
    proxy = Proxy(node.url, throttle=-1)
    try:
        source = fast_retries(sl.opensearch(proxy.url(), numbers, key_field="id"), attempts=3)
        with pytest.raises(StoreUnavailableError) as info:
            sl.reconcile(source, sl.opensearch(node.url, numbers, key_field="id"), key="id")
        message = str(info.value)
        assert message == (
            f"opensearch at http://127.0.0.1:{proxy.port}: HTTP 429: rejected execution (queue full)"
            " (after 3 attempts)"
        )
        assert proxy.throttled >= 3
    finally:
        proxy.close()


def test_a_node_that_dies_mid_scan_is_one_line_store_unavailable(node: Node, numbers: str) -> None:
    proxy = Proxy(node.url, die_after=2)
    try:
        source = fast_retries(
            sl.opensearch(proxy.url("seamline:s3cret@"), numbers, key_field="id"), attempts=2
        )
        with pytest.raises(StoreUnavailableError) as info:
            sl.reconcile(source, sl.opensearch(node.url, numbers, key_field="id"), key="id")
        message = str(info.value)
        assert "\n" not in message and "s3cret" not in message and "Traceback" not in message
        assert message.startswith(f"opensearch at http://127.0.0.1:{proxy.port}: "), message
        assert "(after 2 attempts)" in message
        assert proxy.forwarded_pages == 2 and proxy.dropped >= 2
    finally:
        proxy.close()


@pytest.mark.parametrize("how", ["http_auth", "url"])
def test_basic_auth_is_sent_on_every_page(node: Node, numbers: str, how: str) -> None:
    proxy = Proxy(node.url)
    try:
        if how == "http_auth":
            source = sl.opensearch(proxy.url(), numbers, key_field="id", http_auth=("seamline", "s3cr:et"))
        else:
            source = sl.opensearch(proxy.url("seamline:s3cr%3Aet@"), numbers, key_field="id")
        assert read(source, ["id"], parallelism=2).num_rows == 12_000
        source.close()
        expected = "Basic " + base64.b64encode(b"seamline:s3cr:et").decode()
        assert proxy.auth == {expected}
        assert "s3cr" not in source.describe()
    finally:
        proxy.close()


def test_a_missing_index_is_not_found(node: Node) -> None:
    source = sl.opensearch(node.url, f"{node.prefix}-nope", key_field="id")
    with pytest.raises(sl.NotFoundError, match="does not exist"):
        read(source, ["id"])


# -- headers, TLS and client certificates -------------------------------------------------------------


def test_headers_and_opaque_id_are_sent_on_every_page(node: Node, numbers: str) -> None:
    proxy = Proxy(node.url)
    try:
        source = sl.opensearch(
            proxy.url(),
            numbers,
            key_field="id",
            http_auth=("seamline", "pw"),
            headers={"Authorization": "ApiKey a2V5OnNlY3JldA==", "X-Tenant": "shop"},
            opaque_id="nightly-reconcile",
        )
        assert read(source, ["id"], parallelism=2).num_rows == 12_000
        source.close()
        # the header replaces basic auth; every page carried both X- headers
        assert proxy.auth == {"ApiKey a2V5OnNlY3JldA=="}
        assert proxy.extra == {(("x-opaque-id", "nightly-reconcile"), ("x-tenant", "shop"))}
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def certs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="seamline-ostls-") as d:
        make_certs(Path(d))
        yield Path(d)


def tls_context(certs: Path, *, client_certs: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.crt", certs / "server.key")
    if client_certs:
        ctx.load_verify_locations(certs / "ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def refused_handshake(source: sl.Source) -> str:
    """The one-line error of a read whose TLS handshake fails: said at once (a handshake refused is
    not retried), naming the node and the TLS options."""
    with pytest.raises(StoreUnavailableError) as info:
        read(source, ["id"])
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text and "attempts" not in text
    assert text.startswith("opensearch at https://localhost:") and ": TLS: " in text
    return text


def test_tls_ca_certs_and_verify_certs(node: Node, numbers: str, certs: Path) -> None:
    proxy = Proxy(node.url, tls=tls_context(certs, client_certs=False))
    try:
        url = proxy.url()
        assert (
            read(sl.opensearch(url, numbers, key_field="id", ca_certs=str(certs / "ca.crt")), ["id"]).num_rows
            == 12_000
        )
        # a certificate no trusted root signed: the bundled roots, or the wrong CA
        text = refused_handshake(sl.opensearch(url, numbers, key_field="id"))
        assert "UnknownIssuer" in text and "the bundled root certificates" in text
        other_ca = str(certs / "other_ca.crt")
        text = refused_handshake(sl.opensearch(url, numbers, key_field="id", ca_certs=other_ca))
        assert "UnknownIssuer" in text and f"ca_certs={other_ca}" in text
        assert (
            read(sl.opensearch(url, numbers, key_field="id", verify_certs=False), ["id"]).num_rows == 12_000
        )
    finally:
        proxy.close()


def test_mutual_tls_with_a_client_certificate(node: Node, numbers: str, certs: Path, tmp_path: Path) -> None:
    proxy = Proxy(node.url, tls=tls_context(certs, client_certs=True))
    tls = {"ca_certs": str(certs / "ca.crt")}
    mine = {"client_cert": str(certs / "client.crt"), "client_key": str(certs / "client.key")}
    try:
        url = proxy.url()
        rust = read(sl.opensearch(url, numbers, key_field="id", **tls, **mine), ["id", "k", "p"])
        assert rust.num_rows == 12_000
        # opensearch-py through the same proxy, the same options: the same rows
        python = read(
            sl.opensearch(url, numbers, key_field="id", reader="python", **tls, **mine), ["id", "k", "p"]
        )
        assert python.equals(rust)
        # the certificate and its key in one PEM file
        both = tmp_path / "both.pem"
        both.write_bytes((certs / "client.crt").read_bytes() + (certs / "client.key").read_bytes())
        assert (
            read(sl.opensearch(url, numbers, key_field="id", client_cert=str(both), **tls), ["id"]).num_rows
            == 12_000
        )
        # no certificate, or one of another CA: the handshake is refused
        text = refused_handshake(sl.opensearch(url, numbers, key_field="id", **tls))
        assert "CertificateRequired" in text and "no client_cert" in text
        other = {
            "client_cert": str(certs / "other_client.crt"),
            "client_key": str(certs / "other_client.key"),
        }
        text = refused_handshake(sl.opensearch(url, numbers, key_field="id", **tls, **other))
        assert f"client_cert={other['client_cert']}" in text
        # an encrypted key is named, with the reader that can read it
        encrypted = tmp_path / "encrypted.key"
        subprocess.run(
            [
                "openssl",
                "pkey",
                "-in",
                str(certs / "client.key"),
                "-aes256",
                "-passout",
                "pass:x",
                "-out",
                str(encrypted),
            ],
            check=True,
            capture_output=True,
        )
        with pytest.raises(sl.SeamlineError, match=r"encrypted private key.*reader=.python") as info:
            read(
                sl.opensearch(
                    url,
                    numbers,
                    key_field="id",
                    client_cert=mine["client_cert"],
                    client_key=str(encrypted),
                    **tls,
                ),
                ["id"],
            )
        assert "\n" not in str(info.value)
    finally:
        proxy.close()


def test_options_the_rust_reader_cannot_honour_name_the_python_reader(node: Node, numbers: str) -> None:
    class SigV4Auth:  # an auth object, as opensearch-py's AWS signers are
        def __call__(self, request: Any) -> Any:
            return request

    from opensearchpy import Urllib3HttpConnection

    for options in (
        {"ssl_context": ssl.create_default_context()},
        {"ssl_assert_hostname": False},  # with verify_certs (the default): a name check it cannot skip
        {"ssl_assert_hostname": "search.internal"},
        {"connection_class": Urllib3HttpConnection},
        {"http_auth": SigV4Auth()},
    ):
        with pytest.raises(sl.InvalidInputError, match="reader='python'") as info:
            sl.opensearch(node.url, numbers, key_field="id", **options)
        assert "\n" not in str(info.value)
        # the python reader takes them (opensearch-py does)
        sl.opensearch(node.url, numbers, key_field="id", reader="python", **options)
    # opensearch-py's documented self-signed setup asks nothing the Rust client does not do
    unverified = sl.opensearch(
        node.url, numbers, key_field="id", verify_certs=False, ssl_assert_hostname=False, ssl_show_warn=False
    )
    assert read(unverified, ["id"]).num_rows == 12_000
    # transport tuning is the Rust client's own: accepted, and the read is the same
    tuned = sl.opensearch(
        node.url, numbers, key_field="id", max_retries=5, http_compress=True, pool_maxsize=4
    )
    assert read(tuned, ["id"]).num_rows == 12_000
