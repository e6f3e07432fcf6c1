"""Differential tests: random schemas and random drift, Seamline against a plain-Python oracle.

Each example draws a schema (key kind and value columns of every logical type), source rows with
NULLs, NaN, empty strings and extreme values, and a target derived from them: every column in
another physical type that must compare equal (int64 as text, decimal128 as decimal256, text as
string_view, microseconds at another zone, uuid as 16 bytes...), then drift of every kind
(missing, extra, changed, replayed rows, keys held several times on both sides). The oracle knows
nothing of leaves or digests: per key, it compares the multisets of the rows' logical values.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seamline as sl

UTC = dt.UTC
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
# Small leaves and a tiny diff budget: every example goes through ranges, refinement and groups;
# parallelism 5: two hashing threads a side, adding into the side's one accumulator.
SMALL = sl.Options(diff_budget_rows=8, max_ranges=8, sample_size=40, parallelism=5)
INT64 = (-(2**63), 2**63 - 1)

# ------------------------------------------------------------------------------- value columns
# kind -> (strategy of Python values, source Arrow type, target encodings that must compare equal)

TEXT = st.text(alphabet="aAbZ09 -_é\u0301ß\u00a0", max_size=6)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e-308, 5e-324]),
    st.floats(allow_nan=False, width=64),
)
DECIMALS = st.one_of(
    st.sampled_from([decimal.Decimal("9999999999.99"), decimal.Decimal("-9999999999.99")]),
    st.decimals(min_value=-(10**10) + 1, max_value=10**10 - 1, places=2, allow_nan=False),
)
INSTANTS = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
# whole milliseconds: one target holds this column at ms (the seam then compares at ms)
INSTANTS_MS = INSTANTS.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
DATES = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))


def _text_of(values: list, fmt: Any = str) -> pa.Array:
    return pa.array([None if v is None else fmt(v) for v in values], pa.string())


def _float_text(v: float) -> str:
    return "NaN" if math.isnan(v) else repr(v)


COLUMN_KINDS: dict[str, tuple[st.SearchStrategy, Any, list]] = {
    "int": (
        st.one_of(st.sampled_from(list(INT64) + [0, -1]), st.integers(*INT64)),
        pa.int64(),
        [
            lambda v: pa.array(v, pa.int64()),
            lambda v: _text_of(v),
            lambda v: pa.array(v, pa.decimal128(20, 0)),
        ],
    ),
    "float": (
        FLOATS,
        pa.float64(),
        [lambda v: pa.array(v, pa.float64()), lambda v: _text_of(v, _float_text)],
    ),
    "decimal": (
        DECIMALS,
        pa.decimal128(12, 2),
        [
            lambda v: pa.array(v, pa.decimal256(40, 2)),
            lambda v: pa.array(v, pa.decimal128(20, 4)),
            lambda v: _text_of(v),
        ],
    ),
    "decimal256": (
        DECIMALS,
        pa.decimal256(40, 2),
        [lambda v: pa.array(v, pa.decimal128(12, 2)), lambda v: pa.array(v, pa.decimal256(40, 2))],
    ),
    "bool": (
        st.booleans(),
        pa.bool_(),
        [
            lambda v: pa.array([None if b is None else int(b) for b in v], pa.int8()),
            lambda v: _text_of(v, lambda b: "true" if b else "f"),
        ],
    ),
    "text": (
        TEXT,
        pa.string(),
        [lambda v: pa.array(v, pa.large_string()), lambda v: pa.array(v, pa.string_view())],
    ),
    "text_view": (
        TEXT,
        pa.string_view(),
        [lambda v: pa.array(v, pa.string()), lambda v: pa.array(v, pa.string_view())],
    ),
    "timestamp": (
        INSTANTS,
        pa.timestamp("us", tz="UTC"),
        [
            lambda v: pa.array(v, pa.timestamp("ns", tz="+05:30")),
            lambda v: pa.array(
                [None if d is None else d.replace(tzinfo=None) for d in v], pa.timestamp("us")
            ),
            lambda v: _text_of(v, lambda d: d.isoformat()),
        ],
    ),
    "timestamp_offset": (
        INSTANTS_MS,
        pa.timestamp("us", tz="+05:30"),
        [lambda v: pa.array(v, pa.timestamp("us", tz="UTC")), lambda v: pa.array(v, pa.timestamp("ms"))],
    ),
    "date": (
        DATES,
        pa.date32(),
        [lambda v: pa.array(v, pa.date64()), lambda v: _text_of(v, lambda d: d.isoformat())],
    ),
    "binary": (
        st.binary(max_size=5),
        pa.binary(),
        [lambda v: pa.array(v, pa.large_binary()), lambda v: pa.array(v, pa.binary_view())],
    ),
}


def canonical(kind: str, v: Any) -> Any:
    """What the oracle compares: the logical value, as plain Python."""
    if v is None:
        return None
    if kind == "float":
        if math.isnan(v):
            return "nan"
        return "0" if v == 0 else f"{v:.14e}"  # Float(15): 15 significant digits, -0.0 is 0
    return v


# ------------------------------------------------------------------------------------ keys

KEY_KINDS = ("int", "text", "uuid_text", "uuid_bytes", "composite")


def key_strategy(kind: str) -> st.SearchStrategy:
    if kind == "int":
        return st.one_of(st.sampled_from([INT64[0], INT64[1], 0, -1]), st.integers(*INT64))
    if kind == "text":
        return st.text(alphabet="aAbZ09 -é", max_size=5)  # the empty string is a key too
    if kind.startswith("uuid"):
        return st.uuids()
    return st.tuples(st.integers(-3, 3), st.text(alphabet="ab\x00", max_size=2))


def key_columns(kind: str, keys: list, side: str, variant: int) -> dict[str, pa.Array]:
    if kind == "int":
        if side == "source" or variant == 0:
            return {"id": pa.array(keys, pa.int64())}
        return {"id": pa.array([str(k) for k in keys], pa.string())}
    if kind == "text":
        types = [pa.string(), pa.large_string(), pa.string_view()]
        return {"id": pa.array(keys, types[0] if side == "source" else types[variant % 3])}
    if kind in ("uuid_text", "uuid_bytes"):
        as_bytes = (kind == "uuid_bytes") == (side == "source")
        if as_bytes:
            return {"id": pa.array([k.bytes for k in keys], pa.binary(16))}
        texts = [str(k).upper() if variant % 2 else str(k) for k in keys]
        return {"id": pa.array(texts, pa.string_view() if variant == 2 else pa.string())}
    return {
        "order_id": pa.array([k[0] for k in keys], pa.int32() if side == "target" else pa.int64()),
        "line": pa.array([k[1] for k in keys], pa.large_string() if side == "target" else pa.string()),
    }


def key_names(kind: str) -> list[str]:
    return ["order_id", "line"] if kind == "composite" else ["id"]


def key_of(kind: str, row: dict) -> Any:
    """A differences row's key, as the oracle holds keys."""
    if kind == "composite":
        return (row["order_id"], row["line"])
    k = row["id"]
    if kind.startswith("uuid"):
        return uuid.UUID(bytes=k) if isinstance(k, bytes) else uuid.UUID(k)
    return int(k) if kind == "int" else k


# ------------------------------------------------------------------------------------ drift


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    key_kind = draw(st.sampled_from(KEY_KINDS))
    columns = draw(st.lists(st.sampled_from(sorted(COLUMN_KINDS)), min_size=1, max_size=4, unique=True))
    nullable = st.none() | st.just(0)  # 0: draw a value

    def row() -> dict:
        out = {}
        for c in columns:
            out[c] = None if draw(nullable) is None else draw(COLUMN_KINDS[c][0])
        return out

    keys = draw(st.lists(key_strategy(key_kind), max_size=40, unique=True))
    source = [(k, row()) for k in keys]
    target = []
    for k, values in source:
        op = draw(
            st.sampled_from(["same"] * 6 + ["missing", "changed", "replayed", "replayed_other", "both_twice"])
        )
        if op == "same":
            target.append((k, values))
        elif op == "changed":
            c = draw(st.sampled_from(columns))
            target.append((k, values | {c: draw(st.none() | COLUMN_KINDS[c][0])}))
        elif op == "replayed":
            target += [(k, values), (k, values)]
        elif op == "replayed_other":
            target += [(k, values), (k, row())]
        elif op == "both_twice":
            # held twice on both sides, identically: agrees, whatever else shares its leaf
            source.append((k, values))
            target += [(k, values), (k, values)]
    extra_keys = draw(st.lists(key_strategy(key_kind), max_size=4, unique=True))
    target += [(k, row()) for k in extra_keys if k not in set(keys)]
    target = draw(st.permutations(target))
    encodings = {c: draw(st.integers(0, len(COLUMN_KINDS[c][2]) - 1)) for c in columns}
    return {
        "key_kind": key_kind,
        "columns": columns,
        "source": source,
        "target": target,
        "key_variant": draw(st.integers(0, 2)),
        "encodings": encodings,
    }


def build(s: dict[str, Any], side: str) -> pa.Table:
    rows = s[side]
    cols = key_columns(s["key_kind"], [k for k, _ in rows], side, s["key_variant"])
    for c in s["columns"]:
        values = [v[c] for _, v in rows]
        if side == "source":
            cols[c] = pa.array(values, COLUMN_KINDS[c][1])
        elif values and all(v is None for v in values):
            cols[c] = pa.nulls(len(values))  # an all-NULL column is Arrow's `null` type
        else:
            cols[c] = COLUMN_KINDS[c][2][s["encodings"][c]](values)
    return pa.table(cols)


def oracle(s: dict[str, Any]) -> tuple[set, dict]:
    """(key, kind, side) of every difference, and the changed columns of keys held once a side.

    A key agrees when both sides hold it as many times with the same values. Otherwise: a
    duplicate on each side holding it more than once; missing or extra when a side lacks it;
    changed when the sides share no version of the row."""
    columns = s["columns"]

    def versions(rows: list) -> dict[Any, Counter]:
        out: dict[Any, Counter] = {}
        for k, v in rows:
            out.setdefault(k, Counter())[tuple(canonical(c, v[c]) for c in columns)] += 1
        return out

    src, dst = versions(s["source"]), versions(s["target"])
    found, changed_cols = set(), {}
    for k in src.keys() | dst.keys():
        a, b = src.get(k, Counter()), dst.get(k, Counter())
        if a == b:
            continue
        for side, held in (("source", a), ("target", b)):
            if held.total() > 1:
                found.add((k, "duplicate", side))
        if not b:
            found.add((k, "missing", None))
        elif not a:
            found.add((k, "extra", None))
        elif not (a.keys() & b.keys()):
            found.add((k, "changed", None))
            if a.total() == 1 and b.total() == 1:
                (va,), (vb,) = a.keys(), b.keys()
                changed_cols[k] = sorted(c for c, x, y in zip(columns, va, vb, strict=True) if x != y)
    return found, changed_cols


def check(s: dict[str, Any]) -> None:
    source, target = build(s, "source"), build(s, "target")
    key_kind = s["key_kind"]
    compare = sl.Compare(columns={"id": sl.Uuid()} if key_kind.startswith("uuid") else {})
    result = sl.reconcile(
        sl.arrow(source), sl.arrow(target), key=key_names(key_kind), compare=compare, options=SMALL
    )
    want, want_cols = oracle(s)
    got, got_cols = set(), {}
    for row in result.diffs.to_dicts():
        k = key_of(key_kind, row)
        got.add((k, row["kind"], row["side"]))
        if row["kind"] == "changed":
            got_cols[k] = sorted(row["columns"])
    assert got == want, f"extra: {got - want}, not found: {want - got}"
    assert {k: got_cols[k] for k in want_cols} == want_cols
    if key_kind.startswith("uuid") and result.diffs.height:
        # keys of differing physical types come out in their canonical form: uuid text
        assert all(isinstance(v, str) and str(uuid.UUID(v)) == v for v in result.diffs["id"].to_list())
    assert result.clean == (not want)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(scenarios())
def test_differential_against_a_plain_python_oracle(s: dict[str, Any]) -> None:
    check(s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_physical_type_changes_alone_are_clean(s: dict[str, Any]) -> None:
    """The target holds exactly the source's rows in other physical types: nothing differs."""
    s = s | {"target": list(s["source"])}
    check(s)


# ------------------------------------------------------------------------------ NULL keys


@pytest.mark.parametrize("kind", [*COLUMN_KINDS, "composite"])
@given(data=st.data())
@settings(max_examples=5, deadline=None)
def test_a_null_key_of_any_type_on_either_side_is_one_value_error(kind: str, data: st.DataObject) -> None:
    """A NULL in any key column, of any type, on either side: one `ValueParseError` line naming the
    side and the column, never a panic (it used to be `PanicException` in canonical.rs)."""
    if kind == "composite":
        make = {"a": lambda v: pa.array(v, pa.int64()), "k": lambda v: pa.array(v, pa.string())}
    else:
        strategy, arrow_type, _ = COLUMN_KINDS[kind]
        make = {"k": lambda v: pa.array(v, arrow_type)}
    n = data.draw(st.integers(2, 30))
    values = {
        c: data.draw(
            st.lists(
                COLUMN_KINDS["int" if c == "a" else ("text" if kind == "composite" else kind)][0],
                min_size=n,
                max_size=n,
            )
        )
        for c in make
    }
    null_col = data.draw(st.sampled_from(sorted(make)))
    null_row = data.draw(st.integers(0, n - 1))
    broken = dict(values)
    broken[null_col] = [None if i == null_row else v for i, v in enumerate(values[null_col])]
    good_table = pa.table({c: make[c](values[c]) for c in make} | {"v": pa.array(range(n))})
    bad_table = pa.table({c: make[c](broken[c]) for c in make} | {"v": pa.array(range(n))})
    side = data.draw(st.sampled_from(["source", "target"]))
    pair = (bad_table, good_table) if side == "source" else (good_table, bad_table)
    with pytest.raises(sl.ValueParseError) as err:
        sl.reconcile(sl.arrow(pair[0]), sl.arrow(pair[1]), key=sorted(make), options=SMALL)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{side}: key column '{null_col}' is NULL"), message


@pytest.mark.parametrize("kind", sorted(COLUMN_KINDS))
@given(data=st.data())
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_type_as_a_key_with_odd_values(kind: str, data: st.DataObject) -> None:
    """Every column type as the key, with NaN, infinities, -0.0, empty strings and extreme values,
    in another physical type on the target: the same rows agree, a dropped row is `missing`."""
    strategy, arrow_type, encodings = COLUMN_KINDS[kind]
    values = data.draw(st.lists(strategy, min_size=1, max_size=30, unique_by=lambda v: canonical(kind, v)))
    if kind == "bool":
        values = values[:2]
    source = pa.table({"k": pa.array(values, arrow_type), "n": pa.array(range(len(values)))})
    order = data.draw(st.permutations(range(len(values))))
    encode = encodings[data.draw(st.integers(0, len(encodings) - 1))]
    target = pa.table({"k": encode([values[i] for i in order]), "n": pa.array(order)})
    assert sl.reconcile(source, target, key="k", options=SMALL).clean
    dropped = data.draw(st.integers(0, len(values) - 1))
    kept = [i for i in order if i != dropped]
    target = pa.table({"k": encode([values[i] for i in kept]), "n": pa.array(kept)})
    result = sl.reconcile(source, target, key="k", options=SMALL)
    assert result.diffs["kind"].to_list() == ["missing"]
    assert result.diffs["source"].struct.field("n").to_list() == [dropped]
