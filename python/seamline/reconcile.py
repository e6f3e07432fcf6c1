"""`reconcile`: pin both sides, resolve the seam, run the engine, and settle in-flight changes.

Copies lag by design. A difference whose version (on the source, or on the target for an `extra`
row) is newer than `now - grace` is `in_flight`: reported apart, and once the grace period is over
the reconcile looks again at just the differing leaves, from fresh snapshots. Only differences
that are still there count as drift, and only they go into a repair plan.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pyarrow as pa

from seamline.compare import Binary, Compare, Date, Decimal, Integer, LogicalType, String, Timestamp, Uuid
from seamline.durations import parse_duration
from seamline.engine import Engine, EngineOutput, Options
from seamline.result import ReconcileResult, SeamContext
from seamline.seam import ColumnsArg, KeyArg, SeamColumns, resolve
from seamline.stores.arrow.read import ArrowSource
from seamline.stores.protocols import RangePushdown, Source


def as_source(obj: Any, name: str) -> Source:
    """A store adapter as is; anything else exporting `__arrow_c_stream__` as an Arrow source."""
    if isinstance(obj, Source):
        return obj
    return ArrowSource(obj, name)


def _orders_like(logical: LogicalType, t: pa.DataType) -> bool:
    """Whether a store orders this key type as the core does, so a range can be pushed down."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    if isinstance(logical, Integer):
        return pa.types.is_integer(t)
    if isinstance(logical, Decimal):
        return pa.types.is_decimal(t) or pa.types.is_integer(t)
    if isinstance(logical, String):
        plain = not (logical.nfc or logical.trim or logical.casefold or logical.empty_as_null)
        return plain and (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))
    if isinstance(logical, Timestamp | Date):
        return pa.types.is_timestamp(t) or pa.types.is_date(t)
    if isinstance(logical, Uuid | Binary):
        return pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t)
    return False


def pushdown(seam: SeamColumns, schema: pa.Schema, side: str, source: Source | None = None) -> bool:
    """Ranges go to a side's store only if it can range-scan the key and orders it as the core does."""
    i = 0 if side == "source" else 1
    names = [p[i] for p in seam.key]
    if source is not None and not (isinstance(source, RangePushdown) and source.can_push_down(names)):
        return False
    return all(_orders_like(seam.logical[p[0]], schema.field(p[i]).type) for p in seam.key)


def reconcile(
    source: Any,
    target: Any,
    key: KeyArg = "id",
    columns: ColumnsArg = None,
    compare: Compare | None = None,
    *,
    version: str | None = None,
    grace: str | float | dt.timedelta | None = None,
    options: Options | None = None,
) -> ReconcileResult:
    """Reconcile `target` against `source` (the system of record).

    key: "id" | ["order_id", "line_no"] | {"id": "product_id"} (source name -> target name)
    columns: None (all common non-key columns) | ["a", "b"] | {"name": "title"}
    compare: normalisation and per-column logical types (`Compare`)
    version: the source's version column (updated_at, a sequence, an LSN); needed to repair
    grace: how far copies may lag ("30s", seconds, a timedelta): newer differences are in flight,
        re-checked once the grace period is over
    """
    started = time.perf_counter()
    ctx = SeamContext(
        source=as_source(source, "source"),
        target=as_source(target, "target"),
        key=key,
        columns=columns,
        compare=compare or Compare(),
        version=version,
        grace_seconds=parse_duration(grace, "grace") if grace is not None else None,
        options=options or Options(),
    )
    result = run(ctx, started)
    if result.counts["in_flight"] and ctx.grace_seconds is not None:
        wait = result.recheck_at - time.time()
        if wait > 0:
            time.sleep(wait)
        result = run(ctx, started, previous=result)
    return result


def run(ctx: SeamContext, started: float, previous: ReconcileResult | None = None) -> ReconcileResult:
    """One pass over a seam: everything, or (`previous`) just the leaves it found differing, from
    fresh snapshots. The result can look again itself (`ReconcileResult.recheck`)."""
    src, dst = ctx.source, ctx.target
    try:
        as_of = {"source": src.pin(), "target": dst.pin()}
        pinned_at = time.time()
        schemas = {"source": src.schema(), "target": dst.schema()}
        seam = resolve(schemas["source"], schemas["target"], ctx.key, ctx.columns, ctx.compare, ctx.version)
        sides = {"source": src, "target": dst}
        ranged = {side: pushdown(seam, schemas[side], side, sides[side]) for side in sides}
        engine = Engine(src, dst, seam, ctx.options, ranged)
        output: EngineOutput
        if previous is None:
            output = engine.run()
        else:
            # only the leaves that differed; the row totals are those of the first pass
            output = engine.recheck(previous.output)
            output.source_rows = previous.counts["source_rows"]
            output.target_rows = previous.counts["target_rows"]
    finally:
        src.close()
        dst.close()
    return ReconcileResult(
        context=ctx,
        seam=seam,
        as_of=as_of,
        output=output,
        schemas=schemas,
        pinned_at=pinned_at,
        rechecked=previous is not None,
        seconds=time.perf_counter() - started,
        recheck=_recheck,
    )


def _recheck(result: ReconcileResult) -> ReconcileResult:
    return run(result.context, 0.0, previous=result)
