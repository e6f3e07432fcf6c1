"""Terminal rendering of reconcile results: one summary table for any number of seams, and the
differences one line each (`check`, `repair` plans and merged shards print them alike)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from seamline.result import ReconcileResult

KINDS = ("missing", "extra", "changed", "duplicate")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(text.rstrip() for text in out)


def count(n: int | None) -> str:
    """A row count with thousands separators; "-" when there is none."""
    return "-" if n is None else f"{n:,}"


def summary(
    results: Mapping[str, Any],
    *,
    failed: Mapping[str, str] | None = None,
    seconds: Mapping[str, float] | None = None,
) -> str:
    """A table: seam, status, rows read per side, each kind of difference, seconds. `results` maps a
    seam to its result (None when it failed: `failed` gives the status to show, e.g. "ERROR");
    `seconds` overrides a result's own time with the wall time the progress line showed."""
    failed = failed or {}
    seconds = seconds or {}
    header = ["seam", "status", "source rows", "target rows", *KINDS, "seconds"]
    rows = []
    for name, r in results.items():
        took = seconds.get(name, r.seconds if r is not None else None)
        shown = "-" if took is None else f"{took:.2f}"
        if r is None:
            rows.append([name, failed.get(name, "ERROR"), "-", "-", "-", "-", "-", "-", shown])
            continue
        c = r.counts
        rows.append(
            [
                name,
                "clean" if r.clean else "DRIFT",
                count(c["source_rows"]),
                count(c["target_rows"]),
                *(count(c[k]) for k in KINDS),
                shown,
            ]
        )
    return _table(header, rows)


# -- one difference --------------------------------------------------------------------------------

_INVISIBLE = {"Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp"}


def _show(v: Any) -> str:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return repr(v) if isinstance(v, str) else str(v)


def escaped(text: str) -> str:
    """`text` quoted, with what a terminal cannot show spelled out: combining marks, format and
    control characters, non-breaking and other unusual spaces, and trailing spaces."""
    body = text.rstrip(" ")
    out = []
    for ch in body:
        if ch != " " and (unicodedata.category(ch) in _INVISIBLE or ch in "\\'"):
            out.append(f"\\u{ord(ch):04x}" if ch not in "\\'" else f"\\{ch}")
        else:
            out.append(ch)
    out.append("\\u0020" * (len(text) - len(body)))
    return "'" + "".join(out) + "'"


def _looks_alike(a: str, b: str) -> bool:
    """Two different strings a reader would see as the same."""
    visible = [
        "".join(
            ch
            for ch in unicodedata.normalize("NFC", s).rstrip()
            if unicodedata.category(ch) not in _INVISIBLE
        )
        for s in (a, b)
    ]
    return visible[0] == visible[1]


def change(column: str, source: Any, target: Any) -> str:
    """`column: source -> target`, with escapes (and the `compare:` option that would make them
    equal) when the two look alike."""
    if isinstance(source, str) and isinstance(target, str) and _looks_alike(source, target):
        hint = ""
        if unicodedata.normalize("NFC", source) == unicodedata.normalize("NFC", target):
            hint = " (equal under unicode: nfc)"
        elif source.strip() == target.strip():
            hint = " (equal under trim: true)"
        return f"{column}: {escaped(source)} -> {escaped(target)}{hint}"
    return f"{column}: {_show(source)} -> {_show(target)}"


def detail(row: Mapping[str, Any]) -> str:
    """What one difference row says beyond its kind and key."""
    if row["kind"] == "changed":
        source, target = row.get("source") or {}, row.get("target") or {}
        return "  " + "; ".join(change(c, source.get(c), target.get(c)) for c in row["columns"])
    if row["kind"] == "duplicate":
        return f"  {row['occurrences']}x in the {row['side']}"
    return ""


def key_text(row: Mapping[str, Any], key: Sequence[str]) -> str:
    return ", ".join(f"{n}={_show(row[n])}" for n in key)


def difference_lines(diffs: pl.DataFrame, key: Sequence[str], limit: int = 10) -> str:
    """The first differences of a differences frame, one line each."""
    return _lines(diffs.head(limit).to_dicts(), diffs.height, key, limit)


def differences(result: ReconcileResult, limit: int = 10) -> str:
    """The first differences of one seam, one line each (from its Arrow table: printing them does
    not import polars, 0.2 CPU-seconds of a `seamline check`)."""
    table = result.diffs_arrow
    return _lines(table.slice(0, limit).to_pylist(), table.num_rows, [s for s, _ in result.seam.key], limit)


def _lines(rows: Sequence[Mapping[str, Any]], total: int, key: Sequence[str], limit: int) -> str:
    lines = [f"  {row['kind']:<9} {key_text(row, key)}{detail(row)}" for row in rows]
    more = total - limit
    if more > 0:
        lines.append(f"  ... and {more:,} more")
    return "\n".join(lines)
