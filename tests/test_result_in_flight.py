"""Which differences are in flight (result.py `_in_flight`, computed in Arrow since polars is no
longer loaded by a reconcile): the source's version, else the target's for a row only the target
has, newer than the pin minus the grace period; any timestamp unit, naive timestamps as UTC."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from seamline.result import _in_flight

PINNED = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()


def _diffs(source: list[Any], target: list[Any], unit: str, tz: str | None) -> pa.Table:
    t = pa.timestamp(unit, tz=tz)

    def side(values: list[Any]) -> pa.StructArray:
        mask = pa.array([v is None for v in values])
        return pa.StructArray.from_arrays([pa.array(values, t)], names=["updated_at"], mask=mask)

    return pa.table({"source": side(source), "target": side(target)})


def _at(seconds_before_pin: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(PINNED - seconds_before_pin, tz=dt.UTC).replace(tzinfo=None)


def test_the_source_version_decides_else_the_targets_in_every_unit() -> None:
    seam = SimpleNamespace(version=("updated_at", "updated_at"))
    for unit in ("s", "ms", "us", "ns"):
        for tz in (None, "UTC"):
            # newer than pin - 10 s, older, target-only newer, target-only older, source older + target newer
            source = [_at(5), _at(60), None, None, _at(60)]
            target = [_at(60), _at(5), _at(1), _at(30), _at(1)]
            if tz:
                source = [v.replace(tzinfo=dt.UTC) if v else None for v in source]
                target = [v.replace(tzinfo=dt.UTC) for v in target]
            flags = _in_flight(_diffs(source, target, unit, tz), seam, 10.0, PINNED)  # type: ignore[arg-type]
            assert flags.to_pylist() == [True, False, True, False, False], (unit, tz)


def test_nothing_is_in_flight_without_a_grace_period_or_a_timestamp_version() -> None:
    seam = SimpleNamespace(version=("updated_at", "updated_at"))
    diffs = _diffs([_at(1)], [_at(1)], "us", None)
    assert _in_flight(diffs, seam, None, PINNED).to_pylist() == [False]  # type: ignore[arg-type]
    numbers = pa.table(
        {
            "source": pa.StructArray.from_arrays([pa.array([5])], names=["updated_at"]),
            "target": pa.StructArray.from_arrays([pa.array([5])], names=["updated_at"]),
        }
    )
    assert _in_flight(numbers, seam, 10.0, PINNED).to_pylist() == [False]  # type: ignore[arg-type]
