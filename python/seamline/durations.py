"""Durations as people write them: "30s", "10m", "1h", "2d", "1w", "500ms", "1h30m", a number of
seconds, or a timedelta; and back to a short text for reports."""

from __future__ import annotations

import datetime as dt
import re

from seamline.exceptions import InvalidInputError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: str | float | dt.timedelta, what: str = "duration") -> float:
    """Seconds; an InvalidInputError naming `what` otherwise."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        compact = value.replace(" ", "")
        if compact and _DURATION.match(compact):
            return sum(float(n) * _UNITS[u] for n, u in _PART.findall(compact))
    raise InvalidInputError(f"{what}: {value!r} is not a duration (e.g. 30s, 10m, 1h, 2d)")


def format_duration(seconds: float | None) -> str:
    """A short text for a report: "2h5m", "45s", "120ms"; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    out: list[str] = []
    rest = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not out):
            out.append(f"{rest // size}{unit}")
            rest %= size
        if len(out) == 2:
            break
    return "".join(out)


def parse_time(text: str) -> dt.datetime:
    """An ISO-8601 time (naive = UTC), or a duration meaning that long ago ("2h")."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=parse_duration(text.strip()))
        except InvalidInputError:
            raise InvalidInputError(
                f"--as-of: {text!r} is not a time (ISO 8601, e.g. 2026-11-20T06:00:00Z, or 2h: 2 hours ago)"
            ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
