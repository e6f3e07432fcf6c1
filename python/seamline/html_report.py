"""One self-contained HTML page per run, rendered from the JSON report (`--json`) of `check`,
`freshness`, `lineage`, `repair` or `merge`: inline CSS and SVG, no script, no network, so it opens
from an e-mail attachment or an artifact store offline.

Per seam: the verdict and counts; for a drifted seam a key-space strip (the run's key ranges on one
axis, the differences of each kind per range as a heat lane: one bad batch stands out from scattered
drift) and the first differences side by side, the changed part of each value highlighted and
invisible characters (no-break spaces, combining marks, zero-width characters, leading and trailing
spaces) shown as escapes. Freshness: lag bars against the warn/error SLAs. Lineage: the chain as
boxes, the first divergent layer marked, each with the snapshot it read. Repair: plan and outcome.
The run: as-of, duration, rows/s per side.

The page stays small whatever the run found: differences are sampled (the first in key order, every
kind shown) and the rest counted; the strip is drawn from the report's `key_space` summary, which
counts every difference. Everything written goes through the redaction of every other output.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seamline.durations import format_duration
from seamline.freshness import as_of_label

KINDS = ("missing", "extra", "changed", "duplicate")
SAMPLE_ROWS = 25  # differences shown per seam (first in key order) ...
SAMPLE_PER_KIND = 3  # ... plus the first few of every kind not among them
MAX_VALUE_CHARS = 160  # longer values are cut around their difference
COMMANDS = ("check", "freshness", "lineage", "repair", "merge")

_CSS = """
:root{--missing:#d9480f;--extra:#7048e8;--changed:#1971c2;--duplicate:#c2255c;--in_flight:#868e96;
--clean:#2b8a3e;--drift:#c92a2a;--error:#5f3dc4;--warn:#e67700;--pass:#2b8a3e;--none:#868e96;
--unknown:#868e96;--muted:#5c636a;--line:#dee2e6}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;
background:#f8f9fa}
main{max-width:1180px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:14px;margin:14px 0 6px}
.meta{color:var(--muted);font-size:13px}.meta span{margin-right:16px;white-space:nowrap}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:14px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600;vertical-align:middle;text-transform:uppercase}
.b-clean,.b-pass{background:var(--clean)}.b-drift,.b-stale,.b-diverged{background:var(--drift)}
.b-error,.b-failed,.b-unavailable,.b-refused{background:var(--error)}.b-warn{background:var(--warn)}
.b-none,.b-unknown,.b-not-checked,.b-dry-run{background:var(--none)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f1f3f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.k{font-weight:600}.k-missing{color:var(--missing)}.k-extra{color:var(--extra)}
.k-changed{color:var(--changed)}.k-duplicate{color:var(--duplicate)}
.v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;
white-space:pre-wrap;word-break:break-all}
mark{background:#ffe066;padding:0 1px;border-radius:2px}
.inv{background:#ffc9c9;color:#c92a2a;border-radius:3px;padding:0 2px;font-size:11px}
.null{color:var(--muted);font-style:italic}.type{color:var(--muted);font-size:10px;margin-left:4px}
.note{color:var(--muted);font-size:12px}.err{color:var(--error);font-weight:600}
svg{display:block;width:100%;height:auto;max-width:100%}svg.lag{max-width:440px}
svg text{font:11px system-ui,sans-serif;fill:#495057}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:6px 18px;
font-size:13px;margin:8px 0}
.grid b{color:var(--muted);font-weight:500;margin-right:6px}
.grid span{min-width:0;overflow-wrap:anywhere}
.chain{display:flex;align-items:stretch;flex-wrap:wrap;gap:0;margin:10px 0}
.layer{border:2px solid var(--line);border-radius:8px;padding:8px 10px;width:250px;background:#fff;
font-size:12px}
.layer.l-clean{border-color:var(--clean)}.layer.l-diverged{border:3px solid var(--drift);
background:#fff5f5}.layer.l-not-checked{border-style:dashed;color:var(--muted)}
.layer .name{font-weight:700;font-size:14px}.arrow{align-self:center;font-size:22px;color:#adb5bd;
padding:0 6px}.first{color:var(--drift);font-weight:700;font-size:11px;text-transform:uppercase}
a{color:#1864ab}
"""


# -- values: the changed part highlighted, the invisible made visible ---------------------------------

_ESCAPED_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cn", "Cs", "Mn", "Me"}


def _char_tokens(text: str) -> list[str]:
    """One HTML token per character; characters a reader cannot see become escapes: non-ASCII
    spaces (NBSP), zero-width and other format characters, controls, combining marks, and the
    spaces at either end of the value."""
    lead = len(text) - len(text.lstrip(" "))
    trail = len(text.rstrip(" ")) if text.strip(" ") else lead
    out = []
    for i, c in enumerate(text):
        if c == " ":
            if i < lead or i >= trail:
                out.append('<span class="inv" title="space at the end of the value">\u2423</span>')
            else:
                out.append(" ")
        elif c in "\t\n\r":
            escape = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}[c]
            out.append(f'<span class="inv" title="control character">{escape}</span>')
        elif unicodedata.category(c) in _ESCAPED_CATEGORIES:
            name = unicodedata.name(c, "unnamed character").lower()
            code = f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
            out.append(f'<span class="inv" title="{html.escape(name)}">{code}</span>')
        else:
            out.append(html.escape(c))
    return out


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _cut(tokens: list[str], lo: int, hi: int) -> tuple[list[str], int, int, bool, bool]:
    """At most MAX_VALUE_CHARS tokens around [lo, hi): the part that differs stays in view."""
    if len(tokens) <= MAX_VALUE_CHARS:
        return tokens, lo, hi, False, False
    context = MAX_VALUE_CHARS // 4
    start = max(0, lo - context)
    end = min(len(tokens), max(hi, lo + 1) + context, start + MAX_VALUE_CHARS)
    return tokens[start:end], lo - start, min(hi, end) - start, start > 0, end < len(tokens)


def value_html(value: Any, other: Any = None, *, compare: bool = False) -> str:
    """A value for a table cell; with `compare`, the part that differs from `other` is marked."""
    if value is None:
        return '<span class="null">NULL</span>'
    text = _text_of(value)
    tokens = _char_tokens(text)
    lo, hi = len(tokens), len(tokens)
    if compare and other is not None:
        other_text = _text_of(other)
        prefix = 0
        while prefix < min(len(text), len(other_text)) and text[prefix] == other_text[prefix]:
            prefix += 1
        suffix = 0
        while (
            suffix < min(len(text), len(other_text)) - prefix
            and text[len(text) - 1 - suffix] == other_text[len(other_text) - 1 - suffix]
        ):
            suffix += 1
        lo, hi = prefix, len(text) - suffix
    elif compare:
        lo, hi = 0, len(tokens)
    shown, lo, hi, cut_left, cut_right = _cut(tokens, lo, hi)
    body = "".join(shown[:lo]) + (f"<mark>{''.join(shown[lo:hi])}</mark>" if hi > lo else "")
    body += "".join(shown[hi:])
    body = ("\u2026" if cut_left else "") + body + ("\u2026" if cut_right else "")
    if compare and other is not None and _text_of(other) == text and _type_of(other) != _type_of(value):
        body += f'<span class="type">({_type_of(value)})</span>'  # same text, different JSON type
    return f'<span class="v">{body}</span>'


# -- small pieces ----------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value))


def _n(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return _e(value)


def _rate(value: Any) -> str:
    if not isinstance(value, int | float) or value <= 0:
        return "-"
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}/s"
    return f"{value:.0f}/s"


def _badge(status: str, tone: str | None = None) -> str:
    slug = tone or status.replace(",", "").replace(" ", "-").lower()
    if slug == "stale-drift":
        slug = "drift"
    return f'<span class="badge b-{_e(slug)}">{_e(status)}</span>'


def _key_text(key: dict[str, Any] | None, fallback: str) -> str:
    if not key:
        return fallback
    values = [_text_of(v) for v in key.values()]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _when(iso: Any) -> str:
    if not isinstance(iso, str):
        return "-"
    try:
        t = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
    except ValueError:
        return _e(iso)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(report: dict[str, Any]) -> float | None:
    try:
        start = dt.datetime.fromisoformat(report["started_at"])
        end = dt.datetime.fromisoformat(report["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def _table(header: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> str:
    right = set(numeric)
    head = "".join(f"<th{' class=n' if i in right else ''}>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in right else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _as_of_html(as_of: dict[str, Any] | None) -> str:
    if not as_of:
        return ""
    parts = []
    for side in ("source", "target"):
        if side in as_of and isinstance(as_of[side], dict):
            parts.append(f"<span><b>{side} read</b>{_e(as_of_label(as_of[side]))}</span>")
    return "".join(parts)


# -- the key-space strip ---------------------------------------------------------------------------

_STRIP_WIDTH, _LABEL_WIDTH, _LANE, _GAP = 960, 110, 16, 4


def key_space_svg(space: dict[str, Any], seam: str) -> str:
    """One heat lane per kind (and one for the mismatched leaves) over the key ranges: each cell is
    a bucket of consecutive ranges (about equal rows each), darker where more rows differ."""
    buckets = space.get("buckets") or []
    if not buckets:
        return ""
    lanes = [("mismatched_leaves", "mismatched leaves")] + [
        (k, k) for k in (*KINDS, "in_flight") if any(b.get(k) for b in buckets)
    ]
    width = (_STRIP_WIDTH - _LABEL_WIDTH) / len(buckets)
    height = len(lanes) * (_LANE + _GAP) + 30
    parts = [
        f'<svg class="strip" data-seam="{_e(seam)}" viewBox="0 0 {_STRIP_WIDTH} {height}" '
        f'role="img" aria-label="key-space strip of {_e(seam)}">'
    ]
    spans = [f"[{_e(_key_text(b.get('lo'), 'start'))}, {_e(_key_text(b.get('hi'), 'end'))})" for b in buckets]
    for i, (field, label) in enumerate(lanes):
        y = i * (_LANE + _GAP)
        color = "#868e96" if field == "mismatched_leaves" else f"var(--{field})"
        parts.append(f'<text x="0" y="{y + 12}">{_e(label)}</text>')
        parts.append(
            f'<rect x="{_LABEL_WIDTH}" y="{y}" width="{_STRIP_WIDTH - _LABEL_WIDTH}" '
            f'height="{_LANE}" fill="#f1f3f5"/>'
        )
        # one group per lane: each cell carries only its place, shade and tooltip (a page of many
        # scattered seams stays small)
        parts.append(f'<g class="lane" fill="{color}" transform="translate(0 {y})">')
        top = max(b.get(field, 0) for b in buckets)
        for j, b in enumerate(buckets):
            count = b.get(field, 0)
            if not count:
                continue
            # log scale: one dense bucket stands out, and a single row still shows
            shade = 0.25 + 0.75 * math.log1p(count) / math.log1p(top)
            parts.append(
                f'<rect x="{_LABEL_WIDTH + j * width:.1f}" width="{max(width - 0.5, 1):.1f}" '
                f'height="{_LANE}" fill-opacity="{shade:.2f}">'
                f"<title>{count:,} {_e(label)}: {spans[j]}</title></rect>"
            )
        parts.append("</g>")
    axis = len(lanes) * (_LANE + _GAP) + 14
    first, middle, last = buckets[0], buckets[len(buckets) // 2], buckets[-1]
    labels = [
        (_LABEL_WIDTH, "start", _key_text(first.get("lo"), "start of keys")),
        (_LABEL_WIDTH + (len(buckets) // 2) * width, "middle", _key_text(middle.get("lo"), "")),
        (_STRIP_WIDTH, "end", _key_text(last.get("hi"), "end of keys")),
    ]
    for x, anchor, text in labels:
        if text:
            parts.append(f'<text x="{x:.1f}" y="{axis}" text-anchor="{anchor}">{_e(text[:40])}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- freshness bars --------------------------------------------------------------------------------


_FRESHNESS_COLOR = {"pass": "var(--pass)", "warn": "var(--warn)", "error": "var(--drift)"}


def lag_bar_svg(f: dict[str, Any]) -> str:
    """The lag as a bar, with the warn and error SLAs as marks on the same (log) scale: a lag of
    days and an SLA of minutes both stay legible."""
    lag, warn, error = f.get("lag_seconds"), f.get("warn_after_seconds"), f.get("error_after_seconds")
    status = str(f.get("status") or "none")
    w, track, h = 440, 360, 34
    if not isinstance(lag, int | float):
        note = f": {_e(f['note'])}" if f.get("note") else ""
        return f'<svg class="lag" viewBox="0 0 {w} 20"><text x="0" y="14">lag not measured{note}</text></svg>'
    top = math.log10(1 + 1.5 * max([v for v in (lag, warn, error) if isinstance(v, int | float)] + [1]))

    def x(v: float) -> float:
        return track * min(1.0, math.log10(1 + max(v, 0)) / top)

    fill = _FRESHNESS_COLOR.get(status, "var(--none)")
    parts = [
        f'<svg class="lag" viewBox="0 0 {w} {h}" role="img" aria-label="freshness lag">',
        f'<rect x="0" y="4" width="{track}" height="14" fill="#f1f3f5"/>',
        f'<rect class="lag-bar" x="0" y="4" width="{max(x(lag), 1.5):.1f}" height="14" fill="{fill}">'
        f"<title>lag {_e(format_duration(lag))}</title></rect>",
        f'<text x="{track + 6}" y="16">{_e(format_duration(lag))}</text>',
    ]
    # warn's label ends at its mark, error's starts at its own: close SLAs never overlap
    marks = ((warn, "warn", "var(--warn)", "end", -3), (error, "error", "#212529", "start", 3))
    for value, label, color, anchor, nudge in marks:
        if isinstance(value, int | float):
            parts.append(
                f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="1" y2="21" stroke="{color}" '
                f'stroke-width="2" stroke-dasharray="3 2"/>'
                f'<text x="{max(x(value) + nudge, 0):.1f}" y="32" text-anchor="{anchor}">{label} '
                f"{_e(format_duration(value))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


# -- differences -----------------------------------------------------------------------------------


def sample_differences(differences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first SAMPLE_ROWS in key order, plus the first SAMPLE_PER_KIND of every kind not among
    them, in the order of the report."""
    chosen = set(range(min(SAMPLE_ROWS, len(differences))))
    seen = {differences[i].get("kind") for i in chosen}
    wanted = {k: SAMPLE_PER_KIND for k in KINDS if k not in seen}
    for i in range(len(chosen), len(differences)):
        if not wanted:
            break
        kind = str(differences[i].get("kind"))
        if wanted.get(kind, 0) > 0:
            chosen.add(i)
            wanted[kind] -= 1
            if not wanted[kind]:
                del wanted[kind]
    return [differences[i] for i in sorted(chosen)]


def _record(values: dict[str, Any] | None) -> str:
    if not values:
        return '<span class="null">-</span>'
    return "<br>".join(f"<b>{_e(k)}</b> {value_html(v)}" for k, v in values.items())


def _sampled(report: dict[str, Any]) -> dict[str, Any]:
    """The report with each seam's differences cut to the sample the page shows (and their total
    kept): rendering and redaction then cost the same for 100 differences as for a million."""

    def cut(seam: Any) -> Any:
        if not isinstance(seam, dict) or not isinstance(seam.get("differences"), list):
            return seam
        total = seam.get("differences_total", len(seam["differences"]))
        return seam | {"differences": sample_differences(seam["differences"]), "differences_total": total}

    out = cut(report)
    if isinstance(out.get("drift"), dict):  # repair: the reconcile it planned from
        out = out | {"drift": cut(out["drift"])}
    if isinstance(out.get("seams"), dict):
        out = out | {"seams": {name: cut(seam) for name, seam in out["seams"].items()}}
    return out


def differences_html(seam: dict[str, Any], key_names: list[str]) -> str:
    differences = seam.get("differences") or []
    if not differences:
        return ""
    shown = sample_differences(differences)
    rows = []
    for d in shown:
        key = ", ".join(
            f"{_e(k)}={value_html(d.get(k))}" if len(key_names) > 1 else value_html(d.get(k))
            for k in key_names
        )
        kind = str(d.get("kind"))
        late = ' <span class="note">(in flight)</span>' if d.get("in_flight") else ""
        head = f'<td>{key}</td><td class="k k-{_e(kind)}">{_e(kind)}{late}</td>'
        src, dst = d.get("source") or {}, d.get("target") or {}
        if kind == "changed":
            columns = d.get("columns") or []
            for i, col in enumerate(columns):
                before, after = src.get(col), dst.get(col)
                cells = (
                    f"<td><b>{_e(col)}</b></td><td>{value_html(before, after, compare=True)}</td>"
                    f"<td>{value_html(after, before, compare=True)}</td>"
                )
                lead = head if i == 0 else "<td></td><td></td>"
                rows.append(f'<tr class="diff">{lead}{cells}</tr>' if i == 0 else f"<tr>{lead}{cells}</tr>")
        elif kind == "duplicate":
            rows.append(
                f'<tr class="diff">{head}<td>{_n(d.get("occurrences"))}\u00d7 in the {_e(d.get("side"))}</td>'
                f"<td>{_record(src or None)}</td><td>{_record(dst or None)}</td></tr>"
            )
        else:
            rows.append(
                f'<tr class="diff">{head}<td></td><td>{_record(src or None)}</td>'
                f"<td>{_record(dst or None)}</td></tr>"
            )
    total = seam.get("differences_total", len(differences))
    note = (
        f"all {total:,} differences"
        if len(shown) == total
        else (
            f"{len(shown):,} of {total:,} differences: the first in key order and the first of every kind; "
            "every difference is in the JSON report and in <code>--diffs FILE.parquet</code>"
        )
    )
    key_head = _e(", ".join(key_names)) or "key"
    header = f"<tr><th>{key_head}</th><th>kind</th><th>column</th><th>source</th><th>target</th></tr>"
    return (
        f'<h3>First differences</h3><p class="note">{note}</p>'
        f'<table class="diffs"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


# -- one seam of a check or a merge ---------------------------------------------------------------


def _seam_counts_row(name: str, s: dict[str, Any]) -> list[str]:
    c = s.get("counts") or {}
    t = s.get("throughput") or {}
    status = s.get("status") or ("clean" if s.get("clean") else "drift")
    return [
        f'<a href="#seam-{_e(name)}">{_e(name)}</a>',
        _badge(status),
        _n(c.get("source_rows")),
        _n(c.get("target_rows")),
        *(_n(c.get(k)) if c else "-" for k in (*KINDS, "in_flight")),
        _rate((t.get("source") or {}).get("rows_per_second")),
        _rate((t.get("target") or {}).get("rows_per_second")),
        f"{s['seconds']:.2f}" if isinstance(s.get("seconds"), int | float) else "-",
    ]


_SUMMARY_HEADER = [
    "seam",
    "verdict",
    "source rows",
    "target rows",
    *KINDS,
    "in flight",
    "source rows/s",
    "target rows/s",
    "s",
]


def seam_section(name: str, s: dict[str, Any]) -> str:
    status = s.get("status") or ("clean" if s.get("clean") else "drift")
    out = [f'<section class="seam" id="seam-{_e(name)}"><h2>{_e(name)} {_badge(status)}</h2>']
    if s.get("error"):
        out.append(f'<p class="err">{_e(s["error"])}</p></section>')
        return "".join(out)
    grid = []
    for side in ("source", "target"):
        if isinstance(s.get(side), str):
            grid.append(f"<span><b>{side}</b>{_e(s[side])}</span>")
    as_of = s.get("as_of") or {}
    if as_of and all(isinstance(v, dict) and "store" in v for v in as_of.values()):
        grid.append(_as_of_html(as_of))
    for side, t in (s.get("throughput") or {}).items():
        grid.append(
            f"<span><b>{_e(side)} speed</b>{_n(t.get('rows'))} rows in {_n(t.get('seconds'))} s "
            f"({_rate(t.get('rows_per_second'))})</span>"
        )
    space = s.get("key_space") or {}
    if space:
        grid.append(
            f"<span><b>key ranges</b>{_n(space.get('ranges'))} of "
            f"~{_n(round(space.get('rows_per_range') or 0))} rows each</span>"
        )
    out.append(f'<div class="grid">{"".join(grid)}</div>')
    if status != "clean" and space.get("buckets"):
        per, rows = space.get("ranges_per_bucket", 1), space.get("rows_per_range") or 0
        out.append(
            "<h3>Where in the key space</h3>"
            f'<p class="note">{_n(space.get("ranges"))} key ranges in key order'
            f"{f', {per} per cell' if per > 1 else ''} (about {_n(round(per * rows))} rows a cell); darker: "
            "more rows differ there (hover a cell for its keys and count).</p>" + key_space_svg(space, name)
        )
    key_names = space.get("key") or [k["source"] for k in (s.get("seam") or {}).get("key", [])]
    if not key_names and s.get("differences"):
        key_names = [k for k in s["differences"][0] if k not in _DIFF_FIELDS]
    out.append(differences_html(s, key_names))
    out.append("</section>")
    return "".join(out)


_DIFF_FIELDS = {"kind", "columns", "side", "occurrences", "source", "target", "in_flight"}


# -- pages -----------------------------------------------------------------------------------------


def _header(report: dict[str, Any], title: str, verdict: str) -> str:
    meta = []
    if report.get("contract"):
        meta.append(f"<span>contract {_e(report['contract'])}</span>")
    if report.get("started_at"):
        meta.append(f"<span>started {_when(report['started_at'])}</span>")
    took = _duration(report)
    if took is not None:
        meta.append(f"<span>took {_e(format_duration(took))}</span>")
    if isinstance(report.get("as_of"), str):  # lineage --as-of: what every Iceberg side read
        meta.append(f"<span>as of {_when(report['as_of'])}</span>")
    if "exit_code" in report:
        meta.append(f"<span>exit code {_e(report['exit_code'])}</span>")
    if report.get("seamline"):
        meta.append(f"<span>seamline {_e(report['seamline'])}</span>")
    return f'<header><h1>{_e(title)} {_badge(verdict)}</h1><p class="meta">{"".join(meta)}</p></header>'


def _check_page(report: dict[str, Any]) -> tuple[str, str, str]:
    seams: dict[str, Any] = report.get("seams") or {}
    statuses = [s.get("status") or ("clean" if s.get("clean") else "drift") for s in seams.values()]
    drifted = statuses.count("drift")
    errors = statuses.count("error")
    verdict = "error" if errors else "drift" if drifted else "clean"
    title = f"Seamline check: {len(seams)} seam{'s' * (len(seams) != 1)}"
    rows = [_seam_counts_row(n, s) for n, s in seams.items()]
    summary = (
        f"<section><h2>Seams</h2>"
        f'<p class="note">{len(seams) - drifted - errors} clean, {drifted} drifted, {errors} not checked'
        f"</p>{_table(_SUMMARY_HEADER, rows, numeric=range(2, 13))}</section>"
    )
    body = summary + "".join(seam_section(n, s) for n, s in seams.items())
    return title, verdict, body


def _merge_page(report: dict[str, Any]) -> tuple[str, str, str]:
    name = str(report.get("seam") or "seam")
    seam = dict(report) | {"status": "clean" if report.get("clean") else "drift"}
    seam.pop("as_of", None)
    title = f"Seamline merge: {name}, run {report.get('run_id')}, {report.get('shards')} shards"
    shards = report.get("as_of") or {}
    rows = [
        [_e(i), _e(as_of_label(a.get("source") or {})), _e(as_of_label(a.get("target") or {}))]
        for i, a in shards.items()
    ]
    extra = f"<section><h2>Shards</h2>{_table(['shard', 'source read', 'target read'], rows)}</section>"
    body = (
        f"<section><h2>Seam</h2>{_table(_SUMMARY_HEADER, [_seam_counts_row(name, seam)], range(2, 13))}"
        f"</section>{seam_section(name, seam)}{extra}"
    )
    return title, seam["status"], body


def _fresh_badge(f: dict[str, Any]) -> str:
    """`error` here is an SLA breach (red); a seam that could not be measured is `failed`."""
    status = str(f.get("status"))
    return _badge(status, "drift" if status == "error" else None)


def _freshness_row(name: str, f: dict[str, Any]) -> str:
    head = f'<tr class="fresh"><td>{_e(name)}</td><td>{_fresh_badge(f)}</td>'
    if f.get("error"):
        return f'{head}<td colspan=3 class="err">{_e(f["error"])}</td></tr>'
    as_of = f.get("as_of") or {}
    note = f'<br><span class="note">{_e(f["note"])}</span>' if f.get("note") else ""
    return (
        f"{head}<td style='min-width:440px'>{lag_bar_svg(f)}</td><td class=n>{_n(f.get('backlog'))}</td>"
        f'<td><span class="note">source</span> {_e(as_of_label(as_of.get("source") or {}))}'
        f'<br><span class="note">target</span> {_e(as_of_label(as_of.get("target") or {}))}{note}</td></tr>'
    )


def _freshness_page(report: dict[str, Any]) -> tuple[str, str, str]:
    seams: dict[str, Any] = report.get("seams") or {}
    statuses = [str(f.get("status")) for f in seams.values()]
    verdict = next((s for s in ("failed", "unavailable", "error", "warn") if s in statuses), "pass")
    verdict = "stale" if verdict == "error" else verdict  # an SLA at error: red, like drift
    header = (
        "<tr><th>seam</th><th>status</th><th>lag against warn / error (log scale)</th>"
        "<th class=n>backlog</th><th>what each side read</th></tr>"
    )
    rows = "".join(_freshness_row(name, f) for name, f in seams.items())
    body = f"<section><h2>Freshness</h2><table><thead>{header}</thead><tbody>{rows}</tbody></table></section>"
    return f"Seamline freshness: {len(seams)} seam{'s' * (len(seams) != 1)}", verdict, body


def _lineage_page(report: dict[str, Any]) -> tuple[str, str, str]:
    layers = report.get("layers") or []
    first = report.get("diverged_at")
    boxes = []
    for i, layer in enumerate(layers):
        verdict = str(layer.get("verdict"))
        cls = (
            "l-diverged" if layer.get("seam") == first else "l-" + "-".join(verdict.replace(",", "").split())
        )
        counts = layer.get("counts") or {}
        found = ", ".join(f"{k} {counts[k]:,}" for k in KINDS if counts.get(k)) or (
            "no differences" if counts else "-"
        )
        f = layer.get("freshness") or {}
        as_of = layer.get("as_of") or {}
        boxes.append(
            f'<div class="layer {_e(cls)}" data-seam="{_e(layer.get("seam"))}">'
            + ('<div class="first">first divergence</div>' if layer.get("seam") == first else "")
            + f'<div class="name">{_e(layer.get("seam"))}</div><div>{_badge(verdict)}</div>'
            f'<div><span class="note">freshness</span> {_e(f.get("status", "-"))}, lag '
            f"{_e(format_duration(f.get('lag_seconds')))}</div>"
            f'<div><span class="note">differences</span> {_e(found)}</div>'
            f'<div><span class="note">source read</span> {_e(as_of_label(as_of.get("source") or {}))}</div>'
            f'<div><span class="note">target read</span> {_e(as_of_label(as_of.get("target") or {}))}</div>'
            "</div>"
        )
        if i < len(layers) - 1:
            boxes.append('<div class="arrow">\u2192</div>')
    chain = report.get("chain")
    text = (
        f"every layer of chain {_e(chain)} agrees with the one before it"
        if first is None
        else f"chain {_e(chain)} first diverges at <b>{_e(first)}</b>; the layers after it are built from it"
    )
    bars = "".join(
        f"<tr><td>{_e(layer.get('seam'))}</td><td>{lag_bar_svg(layer['freshness'])}</td></tr>"
        for layer in layers
        if layer.get("freshness")
    )
    body = (
        f'<section><h2>Chain {_e(chain)}</h2><p>{text}</p><div class="chain">{"".join(boxes)}</div></section>'
        f"<section><h2>Freshness of each layer</h2><table><tbody>{bars}</tbody></table></section>"
    )
    verdict = "clean" if first is None else "diverged"
    return f"Seamline lineage: chain {chain}", verdict, body


def _plan_rows(rows: list[dict[str, Any]], total: int) -> str:
    """The first operations of the plan: what each writes (or the key it deletes)."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    body = [[value_html(r.get(c)) if c != "op" else f"<b>{_e(r.get(c))}</b>" for c in columns] for r in rows]
    note = f"the first {len(rows)} of {total:,} operations" if total > len(rows) else "every operation"
    return f'<h3>Operations</h3><p class="note">{note}</p>' + _table([_e(c) for c in columns], body)


def _repair_page(report: dict[str, Any]) -> tuple[str, str, str]:
    seam = report.get("seam")
    counts = report.get("counts") or {}
    plan = report.get("plan") or {}
    outcome = report.get("outcome")
    if report.get("refused"):
        verdict = "refused"
    elif outcome is not None:
        verdict = "clean" if outcome.get("verified") else "drift"
    elif sum(v for v in plan.values() if isinstance(v, int)):
        verdict = "dry run" if not report.get("apply") else "drift"
    else:
        verdict = "clean"
    if isinstance(report.get("drift"), dict):
        parts = [seam_section(str(seam), report["drift"])]
    else:
        drift = _table(
            ["source rows", "target rows", *KINDS, "in flight"],
            [[_n(counts.get(k)) for k in ("source_rows", "target_rows", *KINDS, "in_flight")]],
            numeric=range(8),
        )
        parts = [f"<section><h2>Drift found in {_e(seam)}</h2>{drift}</section>"]
    if plan:
        parts.append(
            "<section><h2>Repair plan</h2>"
            + _table(list(plan), [[_n(v) for v in plan.values()]], numeric=range(len(plan)))
            + ("" if report.get("apply") else '<p class="note">dry run: nothing written</p>')
            + _plan_rows(report.get("plan_rows") or [], sum(v for v in plan.values() if isinstance(v, int)))
            + "</section>"
        )
    if report.get("refused"):
        parts.append(f'<section><h2>Refused</h2><p class="err">{_e(report["refused"])}</p></section>')
    if outcome is not None:
        verified = outcome.get("verified")
        shown = {k: v for k, v in outcome.items() if k != "verified"}
        parts.append(
            "<section><h2>Outcome</h2>"
            + _table(list(shown), [[_n(v) for v in shown.values()]], numeric=range(len(shown)))
            + f"<p>{_badge('clean' if verified else 'drift')} "
            + (
                "verified: the seam is clean after the repair"
                if verified
                else "NOT verified: differences remain"
            )
            + "</p></section>"
        )
    return f"Seamline repair: {seam}", verdict, "".join(parts)


_PAGES: dict[str, Callable[[dict[str, Any]], tuple[str, str, str]]] = {
    "check": _check_page,
    "merge": _merge_page,
    "freshness": _freshness_page,
    "lineage": _lineage_page,
    "repair": _repair_page,
}


def render(report: dict[str, Any]) -> str:
    """The page of one run's JSON report (any command in COMMANDS)."""
    from seamline.exceptions import InvalidInputError

    command = report.get("command") if isinstance(report, dict) else None
    page = _PAGES.get(str(command))
    if page is None:
        raise InvalidInputError(
            f"not a Seamline report (command {command!r}; expected one of {', '.join(COMMANDS)})"
        )
    title, verdict, body = page(_sampled(report))
    if isinstance(report.get("error"), str) and report["error"]:
        # the run could not start (a bad contract, a store down before the first seam)
        verdict = "error"
        body = f'<section><h2>The run failed</h2><p class="err">{_e(report["error"])}</p></section>{body}'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)} - {_e(verdict)}</title><style>{_CSS}</style></head>"
        f'<body><main data-command="{_e(command)}" data-verdict="{_e(verdict)}">'
        f"{_header(report, title, verdict)}{body}"
        '<p class="note">Written by Seamline. Self-contained: no script, no network.</p>'
        "</main></body></html>\n"
    )


def _scrubbed(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string of the report redacted before it is escaped into HTML (where a secret with
    `&` or `<` in it would no longer match)."""
    if isinstance(value, dict):
        return {redact(str(k)): _scrubbed(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, redact) for v in value]
    return redact(value) if isinstance(value, str) else value


def write(path: str | Path, report: dict[str, Any], redact: Callable[[str], str] | None = None) -> Path:
    """Render `report` to `path` atomically. Secrets are scrubbed (the contract's `redact`, and
    passwords in any URL or DSN) from the report before rendering and from the page after."""
    from seamline.contract import redact as redact_urls
    from seamline.jsonsafe import json_safe
    from seamline.metrics import write_atomic

    def scrub(text: str) -> str:
        return redact_urls(redact(text) if redact is not None else text)

    write_atomic(path, scrub(render(_scrubbed(json_safe(_sampled(report)), scrub))))
    return Path(path)
