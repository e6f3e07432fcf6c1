"""OpenSearch reader: reads an index (optionally filtered by a query) as Arrow streams, with one of two
readers: "rust" (the default: `seamline._core.os_search_stream`, pages fetched, parsed and converted to
Arrow in Rust on one worker thread per stream, no GIL) or "python" (opensearch-py, JSON parsed in
Python, then `pa.array`). Both run the requests planned here (PIT, queries with the pushed-down key
ranges, sort, slices, `_source` includes) and convert values by the same rules. The PIT, mappings,
counts and freshness go through the reader's client: the Rust one (`seamline._core.OsHttp`, so a read
never imports opensearch-py) or opensearch-py; repair writes always through opensearch-py.

Reading uses a point in time (PIT) plus ``search_after``: the PIT fixes the view of the index for the
whole reconcile (created by ``pin``, deleted by ``close``), ``search_after`` pages through it without the
10,000-hit ``from``/``size`` window, and PIT slices give independent parallel streams. Scroll is not
used: it pins resources per request and cannot be shared between passes.

The search_after order must be total within the PIT: ``_shard_doc`` on OpenSearch 3.3+, else ``_doc``
inside slices confined to one shard each (see ``_ordering``).

Each page of hits becomes one Arrow record batch, typed by the index mapping. Dates become ms since the
epoch (UTC, truncated), documents missing a field give NULL, objects and unmapped values become JSON.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from seamline._core import os_search_stream
from seamline.exceptions import InvalidInputError, SchemaError, ValueParseError
from seamline.stores.opensearch.store import KEEP_ALIVE as _KEEP_ALIVE
from seamline.stores.opensearch.store import AccessRefused, OpenSearchStore
from seamline.stores.protocols import AsOf, KeyRange, ScanRequest

#: hits per search_after page, at most: the node's default `index.max_result_window` (a smaller
#: window of the index is honoured, see `_page_size`). Each page is a search of its own: at 10,000
#: hits a full read of 1M documents costs the node 3.2-3.5 CPU s against 4.1-4.5 s at 5,000 (a
#: sliced PIT scan discarding the bodies, benches/bench_opensearch.py's floor, load 5.7-6.2).
PAGE_SIZE = 10_000
#: the page readers: "rust" (seamline._core.os_search_stream) and "python" (opensearch-py)
READERS = ("rust", "python")
DEFAULT_READER = "rust"
#: overrides DEFAULT_READER for sources that name no reader (e.g. to run a test suite on each)
READER_ENV = "SEAMLINE_OS_READER"
_FILTER_PATH = "hits.hits._id,hits.hits._source,hits.hits.sort"
_JSON_META = {"seamline.logical": "json"}
_NO_SOURCE: dict[str, Any] = {}
_T = TypeVar("_T")

_TYPES: dict[str, pa.DataType] = {
    "long": pa.int64(),
    "integer": pa.int32(),
    "short": pa.int16(),
    "byte": pa.int8(),
    "unsigned_long": pa.uint64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "half_float": pa.float64(),
    "scaled_float": pa.float64(),
    "keyword": pa.string(),
    "constant_keyword": pa.string(),
    "wildcard": pa.string(),
    "text": pa.string(),
    "match_only_text": pa.string(),
    "ip": pa.string(),
    "version": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.timestamp("ms", tz="UTC"),
    "date_nanos": pa.timestamp("ms", tz="UTC"),
    "knn_vector": pa.list_(pa.float32()),
    "binary": pa.binary(),
}


#: key field types whose value range a scan splits between its streams (OpenSearchReader._key_splits)
_SPLIT_TYPES = ("long", "integer", "short", "byte", "date")
# Ranges per query, at most (a range on a numeric field counts as two clauses toward the 1024 limit).
# Few enough that a query of fine ranges (~35 documents each) is about one page: the diff pass's
# 1,810 ranges of 1M documents (0.2% drift) cost the node 1.56-2.04 CPU s in queries of 400 on
# 5,000-hit pages, 0.94-1.18 s in queries of 200 on 10,000-hit pages. Its cost is the hits' fetch
# (scattered documents: ~20 us of node CPU each against ~3 us in a full read), not the clauses:
# the same queries without any hit fetched (stored_fields _none_) cost the node under 0.05 s.
# A search per range or per group costs more, the node paying each search's setup (1,908 ranges,
# load ~4.5: one search each 5.8-6.7 node CPU s; _msearch of 100 or 500 searches 1.9-3.1 s; the
# groups of 200: 0.76-1.12 s; hits without _source: the same), so fewer fetched documents is the
# only lever left there (the core's leaf size).
_MAX_RANGES = 200
#: key ranges a full read of fewer streams is paged as, at once, by the Rust reader (see `open`)
_FETCHERS = 2


def _all_of(filters: list[dict[str, Any]]) -> dict[str, Any]:
    if not filters:
        return {"match_all": {}}
    return filters[0] if len(filters) == 1 else {"bool": {"filter": filters}}


class OpenSearchReader:
    """One OpenSearch index, alias or pattern; key is ``_id`` unless ``key_field`` names a field."""

    def __init__(
        self,
        url: str | OpenSearchStore,
        index: str,
        *,
        query: dict[str, Any] | None = None,
        key_field: str | None = None,
        reader: str | None = None,
        **client_options: Any,
    ) -> None:
        chosen = reader or os.environ.get(READER_ENV) or DEFAULT_READER
        if chosen not in READERS:
            raise InvalidInputError(f"opensearch reader {chosen!r}: expected one of {', '.join(READERS)}")
        self.reader = chosen
        self.store = (
            url
            if isinstance(url, OpenSearchStore)
            else OpenSearchStore(url, python_client=chosen == "python", **client_options)
        )
        self.index = index
        self.key_field = key_field or "_id"
        self._index = index
        self._query = query
        self._client = self.store.client if chosen == "python" else self.store.catalog
        self._lock = threading.Lock()
        self._pit_id: str | None = None
        self._as_of: AsOf | None = None
        self._sort: list[Any] | None = None
        self._min_slices = 1
        self._page: int | None = None

    # -- Source protocol -------------------------------------------------------------------------

    def can_push_down(self, key: Sequence[str]) -> bool:
        """A single key field takes `range` queries; `_id` does not."""
        return len(key) == 1 and key[0] != "_id"

    def refetches_each_row(self) -> bool:
        """A re-read range costs the node a fetch per document (~20 us each when scattered, against
        ~3 us in a full read's consecutive pages): the engine cuts pushed-down ranges as fine as the
        leaves (engine._bounds `leaf_fine`), so the diff pass fetches only the mismatched leaves'."""
        return True

    def describe(self) -> str:
        text = f"{self.store.describe()} index {self._index}"
        if self._query is not None:
            text += " (filtered)"
        return text

    def schema(self) -> pa.Schema:
        props = self._properties()
        fields = [pa.field("_id", pa.string(), nullable=False)]
        for name, spec in props.items():
            fields.append(_field(name, spec))
        return pa.schema(fields)

    def open(self, request: ScanRequest) -> list[Any]:
        self.pin()
        columns = [c for c in (request.columns or self.schema().names)]
        plan = [(c, *self._resolve(c)) for c in columns]
        schema = pa.schema([_field(name, spec) for name, _, spec in plan])
        sort, min_slices = self._ordering()
        n = max(1, request.parallelism)
        # The Rust reader pages a full read of fewer streams than _FETCHERS as _FETCHERS key ranges
        # at once, merged into the streams asked for: the node answers two searches at a time while
        # one consumer hashes (1M documents read as 1 stream, at load 4.4-5.0: 5.9-7.2 s for one
        # range at a time, 5.0-5.4 s for 2 at once, the same client CPU).
        parts = n
        if self.reader == "rust" and request.ranges is None and n < _FETCHERS and self._splittable(request):
            parts = _FETCHERS
        # More streams than shards: split the key, not a hash of _id (see _key_splits).
        split = parts > min_slices
        queries, by_key = self._scan_queries(request, parts if split else 1)
        if not queries:  # an empty union of ranges
            return [pa.RecordBatchReader.from_batches(schema, iter(()))]
        sources = sorted({path for _, path, _ in plan if path != "_id"})
        whole = self._whole_source(sources)
        if split and not by_key and (splits := self._key_splits(request, parts)) is not None:
            queries, by_key = [_both(q, s) for q in queries for s in splits], True
        # Split by key, slices only confine _doc to one shard each; else hash slices as many as streams.
        total = min_slices if by_key else max(n, min_slices)
        # Every (query, slice) is read whole by one stream; a stream may read several one after another.
        work = [(q, i) for q in queries for i in range(total)]
        if self.reader == "rust":
            return [
                self._rust_stream(schema, plan, sources, whole, sort, work[i::n], total, parts // n)
                for i in range(min(n, len(work)))
            ]
        return [
            pa.RecordBatchReader.from_batches(
                schema, self._pages(schema, plan, sources, whole, sort, work[i::n], total)
            )
            for i in range(min(n, len(work)))
        ]

    def sample_keys(self, key: Sequence[str], n: int) -> pa.Table | None:
        return None

    def estimated_rows(self) -> int | None:
        body = {"query": self._query} if self._query is not None else None
        resp = self._call(lambda: self._client.count(index=self._index, body=body))
        return int(resp["count"])

    def pin(self) -> AsOf:
        with self._lock:
            if self._as_of is not None:
                return self._as_of
            resp = self._call(
                lambda: self._client.create_pit(index=self._index, params={"keep_alive": _KEEP_ALIVE})
            )
            self._pit_id = str(resp["pit_id"])
            created = resp.get("creation_time")
            created_at = (
                datetime.fromtimestamp(int(created) / 1000, tz=UTC).isoformat()
                if created is not None
                else datetime.now(UTC).isoformat()
            )
            self._as_of = AsOf(
                store="opensearch",
                detail={
                    "index": self._index,
                    "pit_id": self._pit_id[:16] + "...",
                    "pit_created_at": created_at,
                },
            )
            return self._as_of

    def close(self) -> None:
        with self._lock:
            pit, self._pit_id, self._as_of = self._pit_id, None, None
        if pit is not None:
            try:
                self._call(lambda: self._client.delete_pit(body={"pit_id": [pit]}))
            except Exception:
                pass  # expired or node gone: the PIT dies with its keep-alive anyway

    # -- internals -------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        return self.store.call(self._index, fn)

    def _properties(self) -> dict[str, Any]:
        return self.store.properties(self._index)

    def _resolve(self, column: str) -> tuple[str, dict[str, Any]]:
        return self.store.resolve(self._index, column)

    def _scan_queries(self, request: ScanRequest, groups: int = 1) -> tuple[list[dict[str, Any]], bool]:
        """The queries that together read the request: one, or with key ranges at least ``groups``
        groups of them (as far as there are ranges; at most _MAX_RANGES per query: OpenSearch refuses
        more than 1024 clauses); none for no ranges. And whether they split the key ranges."""
        filters: list[dict[str, Any]] = [self._query] if self._query is not None else []
        # Range pushdown needs a single key field with doc values; _id has none to range over.
        field = request.key[0] if len(request.key) == 1 else "_id"
        if request.ranges is None or field == "_id":
            return [_all_of(filters)], False
        if not request.ranges:
            return [], True
        spec = self._resolve(field)[1]
        ranges = list(request.ranges)
        per_query = min(_MAX_RANGES, -(-len(ranges) // max(1, groups)))
        queries = []
        for start in range(0, len(ranges), per_query):
            group = ranges[start : start + per_query]
            shoulds = [q for q in (_range_query(field, r, spec) for r in group) if q]
            if len(shoulds) != len(group):  # a bound the field cannot take: read it all
                return [_all_of(filters)], False
            queries.append(_all_of([*filters, {"bool": {"should": shoulds, "minimum_should_match": 1}}]))
        return queries, True

    def _whole_source(self, sources: list[str]) -> bool:
        """Whether to ask for the whole ``_source`` instead of ``includes``: when the read paths cover
        every mapped top-level field. Filtering makes the node parse and re-serialise every hit's
        source (1M documents of 7 fields: 12.7 node CPU s with includes and filter_path, 4.6 s for
        the whole source, unfiltered), and what the read does not use is only skipped bytes."""
        if not sources:
            return False
        read = {path.split(".")[0] for path in sources}
        return read >= set(self._properties())

    def _splittable(self, request: ScanRequest) -> bool:
        """Whether `_key_splits` can split the key (its conditions, without the aggregation)."""
        if len(request.key) != 1 or request.key[0] == "_id":
            return False
        spec = self._resolve(request.key[0])[1]
        return (
            spec.get("type") in _SPLIT_TYPES
            and spec.get("index") is not False
            and spec.get("doc_values") is not False
        )

    def _key_splits(self, request: ScanRequest, n: int) -> list[dict[str, Any]] | None:
        """``n`` queries splitting the key field's values into ranges of equal width (the first and
        last unbounded), plus one for documents without the field; None when the key cannot be split.

        More slices than shards filter every page by a hash of ``_id`` (or of a doc-values field),
        which the node recomputes over the whole shard for each page: on a 1-shard index of 1M
        documents two slices cost ~200 ms of server time per 5,000-hit page against ~10 ms unsliced.
        A range query on an indexed key is computed once and kept by the node's query cache, so the
        streams split the key range instead. Only for integer and date keys with an index and doc
        values (any boundary is exact there; the min/max aggregation reads the BKD tree's bounds).
        """
        if not self._splittable(request):
            return None
        field = request.key[0]
        spec = self._resolve(field)[1]
        body = {
            "size": 0,
            "query": self._query or {"match_all": {}},
            "aggs": {"lo": {"min": {"field": field}}, "hi": {"max": {"field": field}}},
            "track_total_hits": False,
            "pit": {"id": self._pit_id, "keep_alive": _KEEP_ALIVE},
        }
        aggs = self._call(lambda: self._client.search(body=body))["aggregations"]
        lo, hi = aggs["lo"]["value"], aggs["hi"]["value"]
        missing = {"bool": {"must_not": [{"exists": {"field": field}}]}}
        if lo is None or hi is None:  # no document has the key
            return [{"match_all": {}}]
        # Interior boundaries only: the outer ranges are open, so rounding cannot lose a document.
        cuts = sorted({int(lo + (hi - lo) * i / n) for i in range(1, n)} - {int(lo)})
        fmt = {"format": "epoch_millis"} if spec.get("type") == "date" else {}
        bounds = [None, *cuts, None]
        ranges: list[dict[str, Any]] = []
        for start, end in zip(bounds, bounds[1:], strict=False):
            cond: dict[str, Any] = {**({"gte": start} if start is not None else {})}
            if end is not None:
                cond["lt"] = end
            ranges.append({"range": {field: {**cond, **fmt}}} if cond else {"exists": {"field": field}})
        return [*ranges, missing]

    # Retries of one page request on 429/502/503/504 or a lost connection (Rust reader): attempts,
    # and the first backoff in seconds, doubled per retry (0.2 + 0.4 + ... + 3.2 = 6.2 s at most).
    retry_attempts = 6
    retry_backoff = 0.2

    def _rust_stream(
        self,
        schema: pa.Schema,
        plan: list[tuple[str, str, dict[str, Any]]],
        sources: list[str],
        whole: bool,
        sort: list[Any],
        work: list[tuple[dict[str, Any], int]],
        slices: int,
        concurrency: int = 1,
    ) -> Any:
        """One stream of the Rust reader over some (query, slice) pairs: the same request bodies as
        `_pages`, paged and converted in Rust (`seamline._core.os_search_stream`), up to
        `concurrency` of them at once."""
        bodies = [
            json.dumps(_search_body(query, sort, sources, whole, slice_id, slices))
            for query, slice_id in work
        ]
        columns = [
            (path, "id" if path == "_id" else _kind(field.type, spec))
            for field, (_, path, spec) in zip(schema, plan, strict=True)
        ]
        return os_search_stream(
            self.store.http.native,
            attempts=self.retry_attempts,
            backoff=self.retry_backoff,
            pit_id=str(self._pit_id),
            keep_alive=_KEEP_ALIVE,
            page_size=self._page_size(),
            bodies=bodies,
            schema=schema,
            columns=columns,
            # No filter_path: it makes the node re-parse every hit (1M documents: ~3 node CPU s);
            # the extra fields of each hit cost the Rust parser only skipped bytes.
            filter_path="",
            what=self.describe(),
            index=self._index,
            concurrency=max(1, concurrency),
        )

    def _pages(
        self,
        schema: pa.Schema,
        plan: list[tuple[str, str, dict[str, Any]]],
        sources: list[str],
        whole: bool,
        sort: list[Any],
        work: list[tuple[dict[str, Any], int]],
        slices: int,
    ) -> Iterator[pa.RecordBatch]:
        """search_after pages over some (query, slice) pairs of the PIT, one record batch per page."""
        converters = [_converter(f.type, spec) for f, (_, _, spec) in zip(schema, plan, strict=True)]
        size = self._page_size()
        for query, slice_id in work:
            body = _search_body(query, sort, sources, whole, slice_id, slices)
            body["size"] = size
            yield from self._slice_pages(body, schema, plan, converters)

    def _slice_pages(
        self,
        body: dict[str, Any],
        schema: pa.Schema,
        plan: list[tuple[str, str, dict[str, Any]]],
        converters: list[Converter],
    ) -> Iterator[pa.RecordBatch]:
        after: list[Any] | None = None
        while True:
            body["pit"] = {"id": self._pit_id, "keep_alive": _KEEP_ALIVE}
            if after is not None:
                body["search_after"] = after
            # filter_path: only what is used, which roughly halves the JSON to transfer and parse.
            resp = self._call(lambda: self._client.search(body=body, params={"filter_path": _FILTER_PATH}))
            hits = resp.get("hits", {}).get("hits", [])
            if not hits:
                return
            sources = [h.get("_source") or _NO_SOURCE for h in hits]
            arrays = []
            for (_, path, _), conv, field in zip(plan, converters, schema, strict=True):
                if path == "_id":
                    values = [h["_id"] for h in hits]
                elif "." not in path:
                    values = [src.get(path) for src in sources]
                else:
                    values = [_get(src, path) for src in sources]
                arrays.append(conv(values, field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            after = hits[-1]["sort"]
            if len(hits) < body["size"]:
                return

    def _page_size(self) -> int:
        """PAGE_SIZE, or the smallest `index.max_result_window` of the indices read when that is less
        (a search_after page larger than the window is refused)."""
        if self._page is None:
            try:
                settings = self._call(
                    lambda: self._client.indices.get_settings(
                        index=self._index, name="index.max_result_window", params={"include_defaults": "true"}
                    )
                )
            except AccessRefused as exc:
                if exc.status != 403:
                    raise
                settings = {}  # a user who may search but not read settings: the default window
            windows = [
                int(window)
                for entry in settings.values()
                for group in ("settings", "defaults")
                if (window := entry.get(group, {}).get("index", {}).get("max_result_window")) is not None
            ]
            self._page = max(1, min([PAGE_SIZE, *windows]))
        return self._page

    def _ordering(self) -> tuple[list[Any], int]:
        """The search_after sort that is a total order within the PIT, and the fewest slices it needs.

        OpenSearch 3.3+ has ``_shard_doc``. Before that, ``_doc`` is unique only within one shard, and
        a slice is confined to one shard when there are at least as many slices as shards of the index
        (slice ``i`` goes to shard ``i % shards``), so a single index is read as >= shards slices sorted
        by ``_doc`` (index order, the cheapest). Several indices (a pattern or alias) fall back to
        ``_index`` + ``_id``, which costs ``_id`` fielddata on the server.
        """
        if self._sort is None:
            version = str(self._call(lambda: self._client.info())["version"]["number"])
            major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
            if major_minor >= (3, 3):
                self._sort, self._min_slices = [{"_shard_doc": "asc"}], 1
            else:
                settings = self._call(
                    lambda: self._client.indices.get_settings(
                        index=self._index, name="index.number_of_shards"
                    )
                )
                if len(settings) == 1:
                    (only,) = settings.values()
                    shards = int(only["settings"]["index"]["number_of_shards"])
                    self._sort, self._min_slices = [{"_doc": "asc"}], shards
                else:
                    self._sort, self._min_slices = [{"_index": "asc"}, {"_id": "asc"}], 1
        return self._sort, self._min_slices

    # -- freshness: the newest value of a field, and how many documents are newer, in the PIT ------

    def max_value(self, column: str) -> Any:
        """The largest value of a mapped field in the point in time (one sorted hit), or None."""
        path, spec = self._freshness_field(column)
        body = {
            "size": 1,
            "query": self._query or {"match_all": {}},
            "sort": [{path: {"order": "desc", "missing": "_last"}}],
            "_source": False,
            "track_total_hits": False,
            "pit": {"id": self._pit_id, "keep_alive": _KEEP_ALIVE},
        }
        resp = self._call(lambda: self._client.search(body=body))
        hits = resp.get("hits", {}).get("hits", [])
        if not hits or not hits[0].get("sort") or hits[0]["sort"][0] is None:
            return None
        value = hits[0]["sort"][0]
        if spec.get("type") in ("date", "date_nanos") and isinstance(value, int | float):
            # sort values of dates are epoch ms (ns for date_nanos), whatever the field's format
            ms = int(value) // 1_000_000 if spec.get("type") == "date_nanos" else int(value)
            return _EPOCH + timedelta(milliseconds=ms)
        if isinstance(value, int | float) and abs(value) >= 2**63 - 1:
            return None  # the "missing: _last" sentinel of an all-missing field
        return value

    def count_newer(self, column: str, value: Any, inclusive: bool = False) -> int:
        """Documents whose field is > ``value`` (>= when inclusive; None: every document with it)."""
        path, spec = self._freshness_field(column)
        if value is None:
            cond: dict[str, Any] = {"exists": {"field": path}}
        else:
            bound = _json_value(value)
            if bound is None:
                raise InvalidInputError(f"{self.describe()}: cannot compare {column!r} with {value!r}")
            op = "gte" if inclusive else "gt"
            if isinstance(value, datetime):
                # stored at ms: x >= 12.3456 ms is x > 12 ms for whole milliseconds
                if inclusive and (value.microsecond % 1000):
                    op = "gt"
                rng: dict[str, Any] = {op: bound, "format": "epoch_millis"}
            else:
                rng = {op: bound}
            cond = {"range": {path: rng}}
        filters = [cond] if self._query is None else [self._query, cond]
        body = {
            "size": 0,
            "query": {"bool": {"filter": filters}},
            "track_total_hits": True,
            "pit": {"id": self._pit_id, "keep_alive": _KEEP_ALIVE},
        }
        resp = self._call(lambda: self._client.search(body=body))
        return int(resp["hits"]["total"]["value"])

    def _freshness_field(self, column: str) -> tuple[str, dict[str, Any]]:
        self.pin()
        path, spec = self._resolve(column)
        if not spec:
            raise SchemaError(f"{self.describe()}: no mapped field {column!r}")
        return path, spec


# -- mapping and conversion ------------------------------------------------------------------------


def _both(query: dict[str, Any], split: dict[str, Any]) -> dict[str, Any]:
    return split if query == {"match_all": {}} else {"bool": {"filter": [query, split]}}


def _search_body(
    query: dict[str, Any], sort: list[Any], sources: list[str], whole: bool, slice_id: int, slices: int
) -> dict[str, Any]:
    """One (query, slice) of a scan, without the page fields (size, pit, search_after)."""
    body: dict[str, Any] = {
        "query": query,
        "sort": sort,
        "_source": True if whole else ({"includes": sources} if sources else False),
        "track_total_hits": False,
    }
    if slices > 1:
        body["slice"] = {"id": slice_id, "max": slices}
    return body


_KINDS: dict[pa.DataType, str] = {
    pa.int8(): "int8",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.uint64(): "uint64",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.binary(): "binary",
    pa.list_(pa.float32()): "vector_f32",
}


def _kind(typ: pa.DataType, spec: dict[str, Any]) -> str:
    """How the Rust reader converts a column: the same rules as `_converter` (named per type)."""
    if pa.types.is_timestamp(typ):
        return "date_seconds" if _epoch_seconds(spec) else "date"
    if pa.types.is_string(typ):
        return "text" if spec.get("type") in _TYPES else "json"
    return _KINDS[typ]


def _epoch_seconds(spec: dict[str, Any]) -> bool:
    fmt = str(spec.get("format", ""))
    return "epoch_second" in fmt and "epoch_millis" not in fmt


def _field(name: str, spec: dict[str, Any]) -> pa.Field:
    if name == "_id":
        return pa.field("_id", pa.string(), nullable=False)
    typ = spec.get("type")
    if typ in _TYPES:
        return pa.field(name, _TYPES[typ])
    return pa.field(name, pa.string(), metadata=_JSON_META)


Converter = Callable[[list[Any], pa.DataType], pa.Array]


def _converter(typ: pa.DataType, spec: dict[str, Any]) -> Converter:
    if pa.types.is_timestamp(typ):
        seconds = _epoch_seconds(spec)
        return lambda values, t: _dates(values, seconds).cast(t)
    if pa.types.is_binary(typ):
        return lambda values, t: pa.array(
            [base64.b64decode(v) if isinstance(v, str) else v for v in values], type=t
        )
    if typ == pa.string() and spec.get("type") not in _TYPES:
        return lambda values, t: pa.array([_to_json(v) for v in values], type=t)
    return _typed


def _typed(values: list[Any], typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        # Sources hold what was sent: "42" in a long field, 42 in a keyword field, ["a"] for "a".
        return pa.array([_coerce(v, typ) for v in values], type=typ)


def _coerce(value: Any, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if isinstance(value, list) and not pa.types.is_list(typ):
        if len(value) == 1:
            value = value[0]
        elif pa.types.is_string(typ):
            return _to_json(value)
        else:
            raise ValueParseError(f"multi-valued field {value!r} where {typ} is mapped")
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else _to_json(value)
    if pa.types.is_boolean(typ):
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if pa.types.is_integer(typ):
        return int(Decimal(str(value)))
    if pa.types.is_floating(typ):
        return float(value)
    return value


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _dates(values: list[Any], seconds: bool) -> pa.Array:
    """Date values of one page -> int64 ms since epoch, floored."""
    try:
        # Fast path: ISO strings with an offset ("...Z"), parsed by Arrow at ns, floored to ms.
        text = pa.array(values, type=pa.string())
        ns = text.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Epoch numbers, naive or date-only strings, years outside 1677-2262: one by one.
        return pa.array([_to_ms(v, seconds) for v in values], type=pa.int64())
    quotient = pc.divide(ns, 1_000_000)  # truncates toward zero
    below = pc.and_(pc.less(ns, 0), pc.not_equal(pc.multiply(quotient, 1_000_000), ns))
    result: pa.Array = pc.subtract(quotient, pc.cast(below, pa.int64()))
    return result


def _to_ms(value: Any, seconds: bool) -> int | None:
    """A date as stored in _source (ISO string or epoch number) -> ms since epoch, truncated."""
    if value is None:
        return None
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    if isinstance(value, bool):
        raise ValueParseError(f"not a date: {value!r}")
    if isinstance(value, (int, float)):
        return int(value * 1000) if seconds else int(value)
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text) * 1000 if seconds else int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueParseError(f"not a date: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # OpenSearch reads a date without offset as UTC
    delta = dt - _EPOCH
    # Integer arithmetic: floor to the millisecond, exact for any year.
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _get(source: dict[str, Any] | None, path: str) -> Any:
    if source is None:
        return None
    if path in source:
        return source[path]
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _range_query(field: str, r: KeyRange, spec: dict[str, Any]) -> dict[str, Any] | None:
    cond: dict[str, Any] = {}
    for bound, op in ((r.lo, "gte"), (r.hi, "lt")):
        if bound is None:
            continue
        value = _json_value(bound[0])
        if value is None:
            return None  # not expressible: no pushdown, the core filters
        cond[op] = value
    if not cond:
        return {"match_all": {}}
    if spec.get("type") in ("date", "date_nanos") and any(isinstance(v, int) for v in cond.values()):
        cond["format"] = "epoch_millis"
    return {"range": {field: cond}}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (str, int, float)):
        return value
    return None
