"""Plain JSON values for reports: times as ISO 8601, decimals and UUIDs as strings, bytes as hex."""

from __future__ import annotations

import datetime as dt
from typing import Any


def json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, float) and v != v:
        return "NaN"
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)
