"""Durations as people write them: "30s", "10m", "1h", "2d", "500ms", a number of seconds, or a
timedelta."""

from __future__ import annotations

import datetime as dt
import re

from seamline.exceptions import InvalidInputError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: str | float | dt.timedelta, what: str = "duration") -> float:
    """Seconds; a clear InvalidInputError naming `what` otherwise."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _PATTERN.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise InvalidInputError(f"{what}: {value!r} is not a duration (e.g. 30s, 10m, 1h, 2d)")
