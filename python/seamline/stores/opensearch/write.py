"""Applies a repair plan to an OpenSearch index with the bulk API and external versions.

Assumptions, checked where they can be:

- **External versions are the contract.** Every write to the index, by the live pipeline (CDC sink)
  as well as by a repair, uses ``version_type=external``/``external_gte`` with the row's version as the
  document version: a timestamp as microseconds since the epoch, a sequence or an LSN as it is
  (`seamline.repair.version_numbers`). That is what makes a repair safe against a concurrent writer:
  OpenSearch itself refuses (409) a repair write whose version is below the document's current one,
  so a repair can never overwrite a newer write. A pipeline writing with internal versions (1, 2,
  3...) breaks that guarantee, and no reader can tell.
- **_id is the key.** The seam's key is ``_id``, or a single field (``id``) whose value is also the
  document's ``_id`` (``str(value)``). The convention is checked on a sample of the index before
  anything is written, and on every document read back for the plan; a document that breaks it is
  never written (counted failed).

Upserts are ``index`` operations with ``version=<source version>, version_type=external_gte``: an
``update`` cannot carry an external version, and an ``index`` replaces the whole document, while the
plan only knows the compared columns. So the current documents of each chunk are read first
(realtime ``mget``) and the plan's columns are laid over their ``_source``: fields outside the seam
(a description, a vector) survive the repair. A write by the pipeline between that read and the bulk
has a newer version, so the bulk item fails with 409 instead of erasing it.

Deletes carry a version too. The plan holds the version the target row had when it was read, at the
precision the index stores it (``date`` is milliseconds) while the document version is exact (us).
So each delete reads the document's current ``_version`` (mget), keeps it only if it is the write the
plan saw (its version, at the plan's precision, is not newer than the recorded one), and deletes with
exactly that version: a write that lands in between makes the delete fail with 409. A newer write in
the same millisecond as the one read cannot be told apart at millisecond precision.

Counting: per bulk item, 2xx is applied, 409 ``skipped_newer`` (a newer write won), a delete of a
document already gone (404) applied (idempotent), anything else failed with its reason. De-duplication
is impossible in OpenSearch (``_id`` is unique), so dedupes are counted failed.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from seamline.exceptions import RepairRefusedError
from seamline.stores._common import chunks
from seamline.stores.opensearch.store import OpenSearchStore
from seamline.stores.protocols import PlanData, WriteCounts

CHUNK = 1000  # bulk actions per request
MAX_ERRORS = 50  # one-line messages kept; the count is always exact
_CHECK_SAMPLE = 200  # documents sampled to check the _id == key convention

_NUMERIC = {"long", "integer", "short", "byte", "unsigned_long"}
_FLOATING = {"double", "float", "half_float", "scaled_float"}
_OBJECT = {"object", "nested", "flat_object"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class OpenSearchRepairWriter:
    """Writes repair plans to one OpenSearch index (see the module docstring for the guarantees)."""

    def __init__(self, store: OpenSearchStore, index: str, chunk: int = CHUNK) -> None:
        self._store = store
        self._client = store.client
        self._index = index
        self._chunk = chunk
        self._counts = {"applied": 0, "skipped_newer": 0, "failed": 0}
        self._errors: list[str] = []
        self._error_count = 0

    # ---------------------------------------------------------------- the writer contract

    def apply(self, plan: PlanData) -> WriteCounts:
        self._counts = {"applied": 0, "skipped_newer": 0, "failed": 0}
        self._errors, self._error_count = [], 0
        if len(plan.key) != 1:
            raise RepairRefusedError(
                f"repair of {plan.seam} refused: an OpenSearch document has one _id, "
                f"the key {plan.key} has {len(plan.key)} columns"
            )
        if plan.version is None:
            raise RepairRefusedError(f"repair of {plan.seam} refused: no version column")
        key = plan.key[0]
        if key != "_id":
            self._check_convention(key)
        if plan.dedupes.num_rows:
            self._fail(
                plan.dedupes.num_rows,
                f"{plan.dedupes.num_rows} dedupe(s) not applied: OpenSearch cannot hold a key twice "
                "(unique _id), so a duplicate there means the _id == key convention is broken",
            )
        if plan.upserts.num_rows:
            self._upserts(plan, key)
        if plan.deletes.num_rows:
            self._deletes(plan, key)
        # An explicit refresh rather than refresh=wait_for on the last bulk: wait_for only covers the
        # shards that request touched, and re-verification must see every chunk.
        self._call(lambda: self._client.indices.refresh(index=self._index))
        errors = list(self._errors)
        if self._error_count > len(errors):
            errors.append(f"... and {self._error_count - len(errors)} more error(s)")
        return WriteCounts(
            applied=self._counts["applied"],
            skipped_newer=self._counts["skipped_newer"],
            failed=self._counts["failed"],
            errors=errors,
        )

    # ---------------------------------------------------------------- upserts

    def _upserts(self, plan: PlanData, key: str) -> None:
        table = plan.upserts
        versions = plan.upsert_versions().to_pylist()
        columns = [c for c in plan.columns if c != "_id"]
        convert = {c: self._converter(c, table.schema.field(c).type) for c in columns}
        key_convert = self._converter(key, table.schema.field(key).type) if key != "_id" else None
        # Keyed on _id, the pipeline's documents may hold the key in a field too (the source's key
        # column, `product_id: _id`): a repaired document must carry it like one the pipeline wrote.
        key_fields = {
            name: self._converter(name, table.schema.field(key).type)
            for name in (plan.source_key or [])
            if key == "_id" and name != "_id" and self._store.resolve(self._index, name)[1]
        }
        paths = {c: self._path(c) for c in columns}
        for start, rows in chunks(table, self._chunk):
            ids = [_doc_id(r[key]) for r in rows]
            current = self._mget(ids, source=True)
            actions: list[dict[str, Any]] = []
            for i, (row, _id) in enumerate(zip(rows, ids, strict=True)):
                version = versions[start + i]
                if version is None:
                    self._fail(1, f"_id {_id}: the source row has no version ({plan.version} is NULL)")
                    continue
                doc = current.get(_id)
                if doc is not None and key_convert is not None and not _same_key(doc, key, _id):
                    self._fail(1, f"_id {_id}: the document holds {key}={_key_of(doc, key)!r}, not {_id}")
                    continue
                # Overlay: the current document (fields outside the seam) under the plan's columns.
                body = dict(doc.get("_source") or {}) if doc is not None else {}
                if key_convert is not None:
                    body[key] = key_convert(row[key])
                for name, to_json in key_fields.items():
                    _put(body, self._path(name), to_json(row[key]))
                for c in columns:
                    _put(body, paths[c], convert[c](row[c]))
                actions.append({"index": {"_id": _id, "version": version, "version_type": "external_gte"}})
                actions.append(body)
            self._bulk(actions)

    # ---------------------------------------------------------------- deletes

    def _deletes(self, plan: PlanData, key: str) -> None:
        table = plan.deletes
        assert plan.version is not None
        recorded = plan.delete_versions().to_pylist()
        step = _granularity(table.schema.field(plan.version).type)
        for start, rows in chunks(table.select([key]), self._chunk):
            ids = [_doc_id(r[key]) for r in rows]
            current = self._mget(ids, source=key != "_id")
            actions: list[dict[str, Any]] = []
            for i, _id in enumerate(ids):
                doc = current.get(_id)
                if doc is None:
                    self._counts["applied"] += 1  # already gone: a second apply of the same plan
                    continue
                if key != "_id" and not _same_key(doc, key, _id):
                    self._fail(1, f"_id {_id}: the document holds {key}={_key_of(doc, key)!r}, not {_id}")
                    continue
                now, seen = int(doc["_version"]), recorded[start + i]
                # The write the plan saw, read at the plan's precision, or an older one: delete exactly
                # that version. A newer one won.
                if seen is not None and now - now % step > seen:
                    self._counts["skipped_newer"] += 1
                    continue
                actions.append({"delete": {"_id": _id, "version": now, "version_type": "external_gte"}})
            self._bulk(actions)

    # ---------------------------------------------------------------- requests

    def _mget(self, ids: list[str], *, source: bool) -> dict[str, dict[str, Any]]:
        """The current documents (realtime: not waiting for a refresh), found ones only, by _id."""
        if not ids:
            return {}
        body = {"ids": ids}
        params = {"realtime": "true", "_source": "true" if source else "false"}
        resp = self._call(lambda: self._client.mget(index=self._index, body=body, params=params))
        return {d["_id"]: d for d in resp.get("docs", []) if d.get("found")}

    def _bulk(self, actions: list[dict[str, Any]]) -> None:
        if not actions:
            return
        resp = self._call(lambda: self._client.bulk(index=self._index, body=actions))
        for item in resp.get("items", []):
            ((op, result),) = item.items()
            status = int(result.get("status", 0))
            if 200 <= status < 300 or (op == "delete" and status == 404):
                self._counts["applied"] += 1
            elif status == 409:
                self._counts["skipped_newer"] += 1  # the document holds a newer version
            else:
                error = result.get("error") or {}
                reason = error.get("reason", "") if isinstance(error, dict) else str(error)
                kind = error.get("type", "") if isinstance(error, dict) else ""
                self._fail(1, f"{op} _id {result.get('_id')}: {status} {kind}: {' '.join(reason.split())}")

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self._store.call(self._index, fn)

    def _fail(self, n: int, message: str) -> None:
        self._counts["failed"] += n
        self._error_count += 1
        if len(self._errors) < MAX_ERRORS:
            self._errors.append(message)

    def _check_convention(self, key: str) -> None:
        """Refuse before writing anything if sampled documents have an _id other than their key."""
        path, _ = self._store.resolve(self._index, key)
        body = {"size": _CHECK_SAMPLE, "query": {"exists": {"field": path}}, "_source": [path]}
        resp = self._call(lambda: self._client.search(index=self._index, body=body))
        for hit in resp.get("hits", {}).get("hits", []):
            if not _same_key(hit, path, hit["_id"]):
                raise RepairRefusedError(
                    f"repair of opensearch index {self._index} refused: document _id {hit['_id']!r} holds "
                    f"{key}={_key_of(hit, path)!r}; the writer writes each document under _id = its {key}, "
                    "so every document must follow that convention"
                )

    # ---------------------------------------------------------------- values

    def _path(self, column: str) -> str:
        """Where a column lives in _source (a multi-field such as title.keyword is its parent)."""
        path, _ = self._store.resolve(self._index, column)
        return path

    def _converter(self, column: str, typ: pa.DataType) -> Callable[[Any], Any]:
        """Python value of the plan (source logical type) -> JSON value for the field's mapping."""
        _, spec = self._store.resolve(self._index, column)
        mapped = spec.get("type") or ("object" if "properties" in spec else None)
        fmt = str(spec.get("format", ""))

        def convert(value: Any) -> Any:
            return _to_json(value, mapped, fmt)

        return convert


def _to_json(value: Any, mapped: str | None, fmt: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # a naive timestamp is UTC, as everywhere in Seamline
        if mapped in _NUMERIC or (mapped in ("date", "date_nanos") and _epoch_only(fmt)):
            delta = value - _EPOCH
            ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
            return ms // 1000 if "epoch_second" in fmt and "epoch_millis" not in fmt else ms
        # ISO 8601 with microseconds (the default strict_date_optional_time keeps them in _source)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if mapped in _NUMERIC and value == value.to_integral_value():
            return int(value)
        if mapped in ("keyword", "text", "wildcard", "constant_keyword", "match_only_text"):
            return str(value)
        return float(value)  # double, float, scaled_float (and a dynamic mapping)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN: the server decides
    if isinstance(value, bytes):
        if mapped == "binary":
            return base64.b64encode(value).decode()
        if len(value) == 16 and mapped in ("keyword", "text"):
            return str(uuid.UUID(bytes=value))
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if mapped in _OBJECT:
            try:
                return json.loads(value)  # a JSON column of the source into an object field
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return {k: _to_json(v, None, "") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v, mapped if mapped not in _OBJECT else None, fmt) for v in value]
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def _epoch_only(fmt: str) -> bool:
    return bool(fmt) and "date" not in fmt.replace("epoch", "") and "epoch" in fmt


def _granularity(typ: pa.DataType) -> int:
    """How many version units one step of the recorded version spans (ms-precision dates: 1000 us)."""
    if pa.types.is_timestamp(typ):
        return {"s": 1_000_000, "ms": 1000}.get(typ.unit, 1)
    return 1


def _doc_id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise RepairRefusedError(f"key value {value!r} cannot be a document _id")
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    if isinstance(value, int | decimal.Decimal | uuid.UUID):
        return str(value)
    raise RepairRefusedError(f"key value {value!r} ({type(value).__name__}) cannot be a document _id")


def _key_of(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc.get("_source") or {}
    if path in value:
        return value[path]
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _same_key(doc: dict[str, Any], path: str, _id: str) -> bool:
    value = _key_of(doc, path)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value is not None and str(value) == _id


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a field of _source: a flat dotted key where the document has one, else nested objects."""
    if path in doc or "." not in path:
        doc[path] = value
        return
    head, rest = path.split(".", 1)
    child = doc.get(head)
    if not isinstance(child, dict):
        child = {}
    else:
        child = dict(child)
    doc[head] = child
    _put(child, rest, value)
