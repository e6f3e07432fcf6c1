"""Terminal rendering of reconcile results: one summary table for any number of seams."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from seamline.result import ReconcileResult


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


def summary(results: dict[str, ReconcileResult]) -> str:
    """A table: seam, verdict, rows read per side, each kind of difference, seconds."""
    header = [
        "seam",
        "verdict",
        "source rows",
        "target rows",
        "missing",
        "extra",
        "changed",
        "duplicate",
        "s",
    ]
    rows = []
    for name, r in results.items():
        c = r.counts
        rows.append(
            [
                name,
                "clean" if r.clean else "DRIFT",
                c["source_rows"],
                c["target_rows"],
                c["missing"],
                c["extra"],
                c["changed"],
                c["duplicate"],
                f"{r.seconds:.2f}",
            ]
        )
    return _table(header, rows)


def _show(v: Any) -> str:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return repr(v) if isinstance(v, str) else str(v)


def differences(result: ReconcileResult, limit: int = 10) -> str:
    """The first differences of one seam, one line each."""
    key = [s for s, _ in result.seam.key]
    lines = []
    for row in result.diffs.head(limit).to_dicts():
        k = ", ".join(f"{n}={_show(row[n])}" for n in key)
        detail = ""
        if row["kind"] == "changed":
            parts = []
            for col in row["columns"]:
                parts.append(f"{col}: {_show(row['source'][col])} -> {_show(row['target'][col])}")
            detail = "  " + "; ".join(parts)
        elif row["kind"] == "duplicate":
            detail = f"  {row['occurrences']}x in the {row['side']}"
        lines.append(f"  {row['kind']:<9} {k}{detail}")
    more = result.diffs.height - limit
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)
