"""Freshness of a seam: what each side read ("as of"), how far the target lags behind the source, and
the backlog, checked against a dbt-style SLA (`warn_after` / `error_after`).

With a version column (`version: updated_at`), the lag is the newest source version minus the newest
target version (both floored to the seam's timestamp precision), and the backlog is the number of
source rows newer than the target's newest version: the changes that have not arrived. Without one,
the lag is measured between the two sides' commit times (an Iceberg snapshot's time, a LanceDB
version's time; a live store's is the time it was read), and there is no backlog.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from seamline.contract import Contract, Seam
from seamline.durations import format_duration
from seamline.exceptions import InvalidInputError
from seamline.jsonsafe import json_safe
from seamline.stores.protocols import Versioned

UTC = dt.UTC
STATUSES = ("pass", "warn", "error", "none", "unknown")  # none: no SLA declared; unknown: not measurable
_UNIT = {
    "s": dt.timedelta(seconds=1),
    "ms": dt.timedelta(milliseconds=1),
    "us": dt.timedelta(microseconds=1),
    "ns": dt.timedelta(microseconds=1),
}


@dataclass
class SeamFreshness:
    seam: str
    source_as_of: dict[str, Any]
    target_as_of: dict[str, Any]
    basis: str  # "version" | "snapshot_time"
    source_newest: Any = None
    target_newest: Any = None
    lag_seconds: float | None = None
    backlog: int | None = None
    warn_after: float | None = None
    error_after: float | None = None
    status: str = "none"
    note: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "seam": self.seam,
                "status": self.status,
                "basis": self.basis,
                "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
                "backlog": self.backlog,
                "source_newest": self.source_newest,
                "target_newest": self.target_newest,
                "warn_after_seconds": self.warn_after,
                "error_after_seconds": self.error_after,
                "as_of": {"source": self.source_as_of, "target": self.target_as_of},
                "note": self.note,
                "seconds": round(self.seconds, 3),
                **(
                    {"replication_slots": self.extra["replication_slots"]}
                    if "replication_slots" in self.extra
                    else {}
                ),
            }
        )


def as_of_label(as_of: dict[str, Any]) -> str:
    """What one side read, in a few words: the snapshot (Iceberg, Postgres), version or PIT."""
    store, d = as_of.get("store"), as_of.get("detail") or {}
    if store == "iceberg":
        if d.get("snapshot_id") is None:
            return "iceberg: no snapshot"
        return f"snapshot {d['snapshot_id']} @ {_short(d.get('snapshot_time'))}"
    if store == "lancedb":
        return f"v{d.get('version')} @ {_short(d.get('version_time'))}"
    if store == "opensearch":
        return f"pit @ {_short(d.get('pit_created_at'))}"
    if store == "postgres":
        return f"snapshot @ {_short(d.get('snapshot_time'))}"
    if store == "kafka":
        return f"offsets {d.get('messages')} msgs, newest @ {_short(d.get('newest_message_time'))}"
    return str(store or "-")


def _short(iso: Any) -> str:
    if not isinstance(iso, str):
        return "-"
    try:
        t = dt.datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        return iso
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if t.microsecond else "") + "Z"


def commit_time(as_of: dict[str, Any]) -> dt.datetime | None:
    """When what a side read was written (Iceberg snapshot, LanceDB version), or read (live stores)."""
    d = as_of.get("detail") or {}
    for k in ("snapshot_time", "version_time", "pit_created_at", "pinned_at", "newest_message_time"):
        if d.get(k):
            try:
                t = dt.datetime.fromisoformat(str(d[k]))
            except ValueError:
                continue
            return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def _instant(v: Any) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=UTC)
    return None


def _floor(t: dt.datetime, precision: str) -> dt.datetime:
    if precision == "s":
        return t.replace(microsecond=0)
    if precision == "ms":
        return t.replace(microsecond=t.microsecond - t.microsecond % 1000)
    return t


def status_for(lag: float | None, warn_after: float | None, error_after: float | None) -> str:
    if warn_after is None and error_after is None:
        return "none"
    if lag is None:
        return "unknown"
    if error_after is not None and lag > error_after:
        return "error"
    if warn_after is not None and lag > warn_after:
        return "warn"
    return "pass"


def precision_of(contract: Contract, seam: Seam) -> str:
    """The precision versions are compared at: the seam's, else ms if a side is OpenSearch."""
    if seam.compare.timestamp_precision:
        return seam.compare.timestamp_precision
    types = {contract.store_of(seam, s).type for s in ("source", "target")}
    return "ms" if "opensearch" in types else "us"


def measure(contract: Contract, seam: Seam, *, as_of: Any = None) -> SeamFreshness:
    """Pin both sides of `seam` and measure its lag and backlog."""
    started = time.perf_counter()
    src = contract.open(seam, "source", as_of=as_of)
    dst = contract.open(seam, "target", as_of=as_of)
    try:
        src_as_of = _plain_as_of(src.pin())
        dst_as_of = _plain_as_of(dst.pin())
        sla = seam.freshness
        if seam.version is None:
            out = SeamFreshness(seam.name, src_as_of, dst_as_of, "snapshot_time")
            s_time, t_time = commit_time(src_as_of), commit_time(dst_as_of)
            out.source_newest, out.target_newest = s_time, t_time
            if s_time is not None and t_time is not None:
                out.lag_seconds = max(0.0, (s_time - t_time).total_seconds())
            out.note = "no version column: lag between the sides' commit times"
        else:
            out = SeamFreshness(seam.name, src_as_of, dst_as_of, "version")
            _by_version(contract, seam, src, dst, out)
        out.warn_after, out.error_after = sla.warn_after, sla.error_after
        if out.lag_seconds is None and out.extra.get("target_empty"):
            # the source has versions, the target none at all: as stale as it gets
            out.status = "error" if sla.error_after is not None else "warn" if sla.warn_after else "none"
        else:
            out.status = status_for(out.lag_seconds, sla.warn_after, sla.error_after)
        if sla.slot_lag_bytes is not None:
            _check_slots(contract, seam, out, sla.slot_lag_bytes)
    finally:
        src.close()
        dst.close()
    out.seconds = time.perf_counter() - started
    return out


def _check_slots(contract: Contract, seam: Seam, out: SeamFreshness, limit: int) -> None:
    """The CDC hop: every logical replication slot of the seam's Postgres cluster(s); a slot whose
    WAL is lost or that lags past `limit` bytes makes the seam's freshness an error."""
    from seamline.contract.schema import PostgresStore
    from seamline.stores.kafka.cdc import replication_slots

    stores = [contract.store_of(seam, side) for side in ("source", "target")]
    dsns = {store.dsn for store in stores if isinstance(store, PostgresStore)}
    slots = [s for dsn in sorted(d for d in dsns if d) for s in replication_slots(dsn, limit)]
    out.extra["replication_slots"] = [s.to_dict() for s in slots]
    bad = [s for s in slots if s.status == "error"]
    if bad:
        out.status = "error"
        reasons = "; ".join(f"slot {s.slot_name}: {s.reason}" for s in bad)
        out.note = f"{out.note}; {reasons}" if out.note else reasons


def _plain_as_of(a: Any) -> dict[str, Any]:
    return {"store": a.store, "detail": dict(a.detail)}


def _by_version(contract: Contract, seam: Seam, src: Any, dst: Any, out: SeamFreshness) -> None:
    assert seam.version is not None
    for side, adapter in (("source", src), ("target", dst)):
        if not isinstance(adapter, Versioned):
            raise InvalidInputError(
                f"the {side} store of seam {seam.name!r} cannot report its newest version"
            )
    s_new = src.max_value(seam.version)
    t_new = dst.max_value(seam.target_name(seam.version))
    out.source_newest, out.target_newest = s_new, t_new
    if s_new is None:
        out.lag_seconds, out.backlog = 0.0, 0
        out.note = "the source has no versions"
        return
    if t_new is None:
        out.backlog = src.count_newer(seam.version, None)
        out.extra["target_empty"] = True
        out.note = "the target has no versions"
        return
    s_t, t_t = _instant(s_new), _instant(t_new)
    if s_t is not None and t_t is not None:
        precision = precision_of(contract, seam)
        s_t, t_t = _floor(s_t, precision), _floor(t_t, precision)
        out.lag_seconds = max(0.0, (s_t - t_t).total_seconds())
        # the source rows the target has not seen: newer than its newest, at the compared precision
        out.backlog = src.count_newer(seam.version, t_t + _UNIT[precision], inclusive=True)
    elif isinstance(s_new, int | float) and isinstance(t_new, int | float) and not isinstance(s_new, bool):
        out.extra["lag_versions"] = max(0, s_new - t_new)
        out.backlog = src.count_newer(seam.version, t_new)
        out.note = f"numeric versions: the target is {out.extra['lag_versions']} behind (no lag in time)"
    else:
        out.note = f"versions not comparable: {type(s_new).__name__} vs {type(t_new).__name__}"


def table(rows: list[SeamFreshness]) -> str:
    from seamline.report import _table

    header = ["seam", "status", "lag", "backlog", "warn", "error", "source as of", "target as of"]
    body = []
    for f in rows:
        lag = format_duration(f.lag_seconds)
        if f.lag_seconds is None and "lag_versions" in f.extra:
            lag = f"{f.extra['lag_versions']} versions"
        body.append(
            [
                f.seam,
                f.status.upper() if f.status in ("warn", "error") else f.status,
                lag,
                "-" if f.backlog is None else f.backlog,
                format_duration(f.warn_after),
                format_duration(f.error_after),
                as_of_label(f.source_as_of),
                as_of_label(f.target_as_of),
            ]
        )
    return _table(header, body)
