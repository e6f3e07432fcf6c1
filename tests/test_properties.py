"""Property tests: random tables, random injected drift of every kind. Seamline must report exactly
the injected keys with the right kind, and nothing for two encodings of the same values."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seamline as sl

UTC = dt.UTC
TEXT_ALPHABET = "aAbB-_zZ09 é"

# Small leaves and a tiny diff budget so every run exercises ranges, refinement and grouping.
SMALL = sl.Options(diff_budget_rows=8, max_ranges=8, sample_size=40, parallelism=3)


def key_strategy(kind: str) -> st.SearchStrategy:
    if kind == "int":
        return st.integers(min_value=-(2**62), max_value=2**62)
    if kind == "text":
        return st.text(alphabet=TEXT_ALPHABET, min_size=1, max_size=8)
    if kind == "uuid":
        return st.uuids().map(str)
    return st.tuples(st.integers(-50, 50), st.text(alphabet=TEXT_ALPHABET, min_size=0, max_size=3))


def key_columns(kind: str, keys: list) -> dict[str, pa.Array]:
    if kind == "int":
        return {"id": pa.array(keys, pa.int64())}
    if kind == "text":
        return {"id": pa.array(keys, pa.string())}
    if kind == "uuid":
        return {"id": pa.array(keys, pa.string())}
    return {
        "order_id": pa.array([k[0] for k in keys], pa.int64()),
        "line": pa.array([k[1] for k in keys], pa.string()),
    }


def key_names(kind: str) -> list[str]:
    return ["order_id", "line"] if kind == "composite" else ["id"]


row_values = st.fixed_dictionaries(
    {
        "name": st.text(alphabet=TEXT_ALPHABET, max_size=6),
        "price": st.decimals(min_value=-9999, max_value=9999, places=2, allow_nan=False),
        "in_stock": st.booleans(),
        "updated_at": st.datetimes(min_value=dt.datetime(1960, 1, 1), max_value=dt.datetime(2060, 1, 1)).map(
            lambda d: d.replace(tzinfo=UTC)
        ),
        "deleted_at": st.none()
        | st.datetimes(min_value=dt.datetime(2000, 1, 1)).map(lambda d: d.replace(tzinfo=UTC)),
    }
)

SCHEMA = {
    "name": pa.string(),
    "price": pa.decimal128(12, 2),
    "in_stock": pa.bool_(),
    "updated_at": pa.timestamp("us", tz="UTC"),
    "deleted_at": pa.timestamp("us", tz="UTC"),
}


def table(kind: str, rows: list[tuple]) -> pa.Table:
    cols = key_columns(kind, [k for k, _ in rows])
    for name, t in SCHEMA.items():
        cols[name] = pa.array([v[name] for _, v in rows], t)
    return pa.table(cols)


def mutate(values: dict, column: str) -> dict:
    out = dict(values)
    if column == "name":
        out["name"] = values["name"] + "!"
    elif column == "price":
        out["price"] = values["price"] + decimal.Decimal("0.01")
    elif column == "in_stock":
        out["in_stock"] = not values["in_stock"]
    elif column == "updated_at":
        out["updated_at"] = values["updated_at"] + dt.timedelta(microseconds=1)
    else:
        out["deleted_at"] = None if values["deleted_at"] else dt.datetime(2020, 1, 1, tzinfo=UTC)
    return out


def as_tuple(kind: str, row: dict) -> tuple:
    if kind == "composite":
        return (row["order_id"], row["line"])
    return (row["id"],)


@st.composite
def drifted(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(["int", "text", "uuid", "composite"]))
    keys = draw(st.lists(key_strategy(kind), min_size=0, max_size=120, unique=True))
    rows = [(k, draw(row_values)) for k in keys]
    n_extra = draw(st.integers(0, 5))
    extra_keys = [
        k for k in draw(st.lists(key_strategy(kind), max_size=n_extra, unique=True)) if k not in set(keys)
    ]
    idx = list(range(len(rows)))
    chosen = draw(st.permutations(idx))
    n_missing, n_changed, n_dup = (draw(st.integers(0, max(0, len(rows) // 4))) for _ in range(3))
    missing = set(chosen[:n_missing])
    changed = {i: draw(st.sampled_from(list(SCHEMA))) for i in chosen[n_missing : n_missing + n_changed]}
    dups = set(chosen[n_missing + n_changed : n_missing + n_changed + n_dup])
    target_rows = []
    for i, (k, v) in enumerate(rows):
        if i in missing:
            continue
        target_rows.append((k, mutate(v, changed[i]) if i in changed else v))
        if i in dups:
            target_rows.append((k, v if i not in changed else mutate(v, changed[i])))
    target_rows += [(k, draw(row_values)) for k in extra_keys]
    target_rows = draw(st.permutations(target_rows))
    expected = (
        {(rows[i][0], "missing") for i in missing}
        | {(rows[i][0], "changed") for i in changed}
        | {(rows[i][0], "duplicate") for i in dups}
        | {(k, "extra") for k in extra_keys}
    )
    changed_cols = {rows[i][0]: [c] for i, c in changed.items()}
    return kind, table(kind, rows), table(kind, list(target_rows)), expected, changed_cols


def found(kind: str, result: sl.ReconcileResult) -> tuple[set, dict]:
    kinds, cols = set(), {}
    for row in result.diffs.to_dicts():
        k = as_tuple(kind, row)
        k = k if kind == "composite" else k[0]
        kinds.add((k, row["kind"]))
        if row["kind"] == "changed":
            cols[k] = row["columns"]
    return kinds, cols


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(drifted())
def test_finds_exactly_the_injected_drift(case: tuple) -> None:
    kind, source, target, expected, changed_cols = case
    result = sl.reconcile(source, target, key=key_names(kind), options=SMALL)
    kinds, cols = found(kind, result)
    assert kinds == expected
    assert cols == changed_cols
    assert result.clean == (not expected)
    assert result.counts["source_rows"] == source.num_rows
    assert result.counts["target_rows"] == target.num_rows


def other_encoding(source: pa.Table, kind: str) -> pl.DataFrame:
    """The same values with other physical types: polars' string views, decimals as float64 and
    text, timestamps in nanoseconds without a zone, an int32 key where it fits."""
    df = pl.from_arrow(source)
    assert isinstance(df, pl.DataFrame)
    exprs = [
        pl.col("price").cast(pl.Float64).alias("price"),
        pl.col("updated_at").dt.replace_time_zone(None).dt.cast_time_unit("ns").alias("updated_at"),
        pl.col("deleted_at").cast(pl.String).alias("deleted_at"),
    ]
    if kind == "uuid":
        exprs.append(pl.col("id").str.to_uppercase())
    return df.with_columns(exprs)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(drifted())
def test_same_values_other_encodings_are_clean(case: tuple) -> None:
    kind, source, _, _, _ = case
    ts_ok = source.column("updated_at").cast(pa.int64()).to_pylist()
    if any(v is not None and abs(v) > 9_000_000_000_000_000 for v in ts_ok):
        return  # outside the nanosecond range of polars' conversion
    compare = sl.Compare(columns={"id": sl.Uuid()}) if kind == "uuid" else None
    result = sl.reconcile(
        source, other_encoding(source, kind), key=key_names(kind), compare=compare, options=SMALL
    )
    assert result.clean, result.diffs
