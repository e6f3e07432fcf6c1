"""The Python API over any Arrow source: FFI round trips (pyarrow, polars, DuckDB, Parquet), the
result's shape, the key/column mappings, and one-line errors for bad input."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seamline as sl

UTC = dt.UTC


def products(n: int = 1000) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "sku": pa.array([f"SKU-{i:05d}" for i in range(n)]),
            "price": pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
            "in_stock": pa.array([i % 3 == 0 for i in range(n)]),
            "updated_at": pa.array(
                [
                    dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i, microseconds=i)
                    for i in range(n)
                ],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def drift(t: pa.Table) -> pa.Table:
    """Target: id 5 price changed, id 7 missing, id 5000 extra, id 9 twice."""
    df = pl.from_arrow(t)
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(
        pl.when(pl.col("id") == 5)
        .then(pl.lit(decimal.Decimal("99.99")))
        .otherwise(pl.col("price"))
        .alias("price")
    ).filter(pl.col("id") != 7)
    extra = df.filter(pl.col("id") == 9).with_columns(pl.lit(5000, pl.Int64).alias("id"))
    return pl.concat([df, extra, df.filter(pl.col("id") == 9)]).to_arrow()


EXPECTED = {(5, "changed"), (7, "missing"), (5000, "extra"), (9, "duplicate")}


def kinds(result: sl.ReconcileResult) -> set:
    return {(r["id"], r["kind"]) for r in result.diffs.select("id", "kind").to_dicts()}


def test_pyarrow_tables() -> None:
    result = sl.reconcile(products(), drift(products()), key="id")
    assert kinds(result) == EXPECTED
    changed = result.diffs.filter(pl.col("kind") == "changed").row(0, named=True)
    assert changed["columns"] == ["price"]
    assert changed["source"]["price"] == decimal.Decimal("0.05")
    assert changed["target"]["price"] == decimal.Decimal("99.99")
    assert result.counts == {
        "source_rows": 1000,
        "target_rows": 1001,
        "missing": 1,
        "extra": 1,
        "changed": 1,
        "duplicate": 1,
        "in_flight": 0,
    }
    assert not result.clean


def test_polars_frames_and_record_batch_reader() -> None:
    source = pl.from_arrow(products())
    target = pa.RecordBatchReader.from_batches(
        drift(products()).schema, drift(products()).to_batches(max_chunksize=97)
    )
    assert kinds(sl.reconcile(source, target, key="id")) == EXPECTED


def test_duckdb_relation() -> None:
    con = duckdb.connect()
    src = products()
    dst = drift(products())
    con.register("src", src)
    con.register("dst", dst)
    result = sl.reconcile(con.sql("select * from src"), con.sql("select * from dst"), key="id")
    assert kinds(result) == EXPECTED


def test_parquet_glob(tmp_path) -> None:
    src, dst = products(), drift(products())
    for i, part in enumerate(src.to_batches(max_chunksize=300)):
        pq.write_table(pa.Table.from_batches([part]), tmp_path / f"src-{i}.parquet")
    pq.write_table(dst, tmp_path / "dst.parquet")
    result = sl.reconcile(
        sl.parquet(str(tmp_path / "src-*.parquet")), sl.parquet(str(tmp_path / "dst.parquet"))
    )
    assert kinds(result) == EXPECTED


def test_identical_sources_are_clean() -> None:
    result = sl.reconcile(products(), pl.from_arrow(products()), key="id")
    assert result.clean
    assert result.diffs.height == 0
    assert result.ranges == []


def test_key_and_column_mapping_with_compare_options() -> None:
    src = products(50)
    dst = (
        pl.from_arrow(src)
        .rename({"id": "product_id", "sku": "code"})
        .with_columns(
            pl.col("code").str.to_lowercase().alias("code"),
            pl.col("price").cast(pl.Float64),
            pl.col("updated_at").dt.truncate("1ms"),
        )
    )
    columns = {"sku": "code", "price": "price", "updated_at": "updated_at"}
    strict = sl.reconcile(src, dst, key={"id": "product_id"}, columns=columns)
    assert strict.counts["changed"] == 50  # case and sub-millisecond both differ
    relaxed = sl.reconcile(
        src,
        dst,
        key={"id": "product_id"},
        columns=columns,
        compare=sl.Compare(timestamp_precision="ms", case_insensitive=True),
    )
    assert relaxed.clean, relaxed.diffs


def test_to_json_is_the_whole_report() -> None:
    report = json.loads(sl.reconcile(products(), drift(products()), key="id").to_json())
    assert report["clean"] is False
    assert report["counts"]["missing"] == 1
    assert {d["kind"] for d in report["differences"]} == {"changed", "missing", "extra", "duplicate"}
    assert report["seam"]["columns"][0]["source"] == "sku"
    assert report["ranges"] and all(set(r) == {"lo", "hi"} for r in report["ranges"])
    assert report["as_of"]["source"]["store"] == "arrow"
    assert report["compare"]["timestamp_precision"] == "auto"


def test_unknown_column_is_a_schema_error() -> None:
    with pytest.raises(sl.SchemaError, match="column 'nope' is missing on the source"):
        sl.reconcile(products(), products(), key="id", columns=["nope"])


def test_missing_key_names_the_side() -> None:
    dst = products().rename_columns(["product_id", "sku", "price", "in_stock", "updated_at"])
    with pytest.raises(sl.SchemaError, match="key column 'id' is missing on the target"):
        sl.reconcile(products(), dst, key="id")


def test_renamed_column_is_an_error_not_all_null() -> None:
    dst = products().rename_columns(["id", "title", "price", "in_stock", "updated_at"])
    with pytest.raises(sl.SchemaError, match="'sku' is missing on the target"):
        sl.reconcile(products(), dst, key="id", columns=["sku", "price"])
    # with columns=None the unmatched columns are reported, not silently compared as NULL
    result = sl.reconcile(products(), dst, key="id")
    assert result.seam.source_only == ["sku"] and result.seam.target_only == ["title"]


def test_bad_decimal_string_names_column_and_value() -> None:
    dst = pl.from_arrow(products(20)).with_columns(pl.col("price").cast(pl.String))
    dst = dst.with_columns(
        pl.when(pl.col("id") == 3).then(pl.lit("12,50")).otherwise(pl.col("price")).alias("price")
    )
    with pytest.raises(sl.ValueParseError) as err:
        sl.reconcile(products(20), dst, key="id")
    message = str(err.value)
    assert "column 'price'" in message and "12,50" in message and "\n" not in message


def test_null_key_is_an_error() -> None:
    dst = products(10).set_column(0, "id", pa.array([None] + list(range(1, 10)), pa.int64()))
    with pytest.raises(sl.ValueParseError, match="key column 'id' is NULL"):
        sl.reconcile(products(10), dst, key="id")


def test_not_an_arrow_object() -> None:
    with pytest.raises(sl.InvalidInputError, match="does not export __arrow_c_stream__"):
        sl.reconcile([1, 2, 3], products(), key="id")


def test_bad_compare_option() -> None:
    with pytest.raises(sl.InvalidInputError, match="timestamp_precision"):
        sl.Compare(timestamp_precision="minutes")


def test_leaf_sets_serialise_and_merge_like_shards() -> None:
    from seamline import _core
    from seamline.seam import resolve

    src = products(500)
    seam = resolve(src.schema, src.schema, "id", None, sl.Compare())
    spec = seam.spec("source")
    p = _core.Partitioner(seam.key_spec("source"), None, 6)
    whole = _core.hash_pass([src], spec, p)
    halves = [_core.hash_pass([src.slice(0, 200)], spec, p), _core.hash_pass([src.slice(200)], spec, p)]
    merged = _core.LeafSet.from_bytes(halves[0].to_bytes()).merged(
        _core.LeafSet.from_bytes(halves[1].to_bytes())
    )
    assert merged.merkle_root() == whole.merkle_root()
    assert merged.mismatched(whole) == []
    # both sides' roots at once (two threads) are each side's own root, in order
    assert _core.merkle_roots(halves[0], whole) == (halves[0].merkle_root(), whole.merkle_root())
    assert halves[0].merkle_root() != whole.merkle_root()
    with pytest.raises(sl.InvalidInputError, match="not a Seamline leaf set"):
        _core.LeafSet.from_bytes(b"garbage")


def test_progress_reports_rows_read_while_passes_run() -> None:
    from seamline.stores.protocols import AsOf

    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])

    class Trickle:
        """40 batches of 50 rows, 20 ms apart: long enough to be polled while it runs."""

        def describe(self) -> str:
            return "trickle"

        def schema(self) -> pa.Schema:
            return schema

        def pin(self) -> AsOf:
            return AsOf("trickle")

        def sample_keys(self, key: list[str], n: int) -> None:
            return None

        def estimated_rows(self) -> int:
            return 2000

        def close(self) -> None:
            pass

        def open(self, request: object) -> list[pa.RecordBatchReader]:
            import time

            def batches():  # type: ignore[no-untyped-def]
                for i in range(40):
                    time.sleep(0.02)
                    ids = pa.array(range(i * 50, i * 50 + 50), pa.int64())
                    yield pa.record_batch([ids, pa.array(["x"] * 50)], schema=schema)

            return [pa.RecordBatchReader.from_batches(schema, batches())]

    seen: list[dict[str, int]] = []
    result = sl.reconcile(Trickle(), Trickle(), key="id", options=sl.Options(on_progress=seen.append))
    assert result.clean
    assert len(seen) >= 3
    sources = [s["source"] for s in seen]
    assert sources == sorted(sources) and 0 < sources[-1] <= 2000
    assert any(0 < s < 2000 for s in sources)  # seen mid-pass, not only at the end


# ------------------------------------------------------------------ hardening (issue 10: 1, 7, 8, 15)


@pytest.mark.parametrize("where", ["arrow", "parquet"])
@pytest.mark.parametrize("composite", [False, True])
def test_a_null_key_in_an_in_memory_source_is_one_value_error(tmp_path, where: str, composite: bool) -> None:
    """It was a `PanicException` (index out of bounds in canonical.rs) while sampling boundaries."""
    cols = {"id": pa.array([1, None], pa.int64()), "v": ["a", "b"]}
    good = {"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"]}
    if composite:
        cols["line"] = good["line"] = pa.array(["x", "y"])
    src: object = pa.table(cols)
    if where == "parquet":
        pq.write_table(pa.table(cols), tmp_path / "src.parquet")
        src = sl.parquet(str(tmp_path / "src.parquet"))
    key = ["id", "line"] if composite else "id"
    with pytest.raises(sl.ValueParseError) as err:
        sl.reconcile(src, pa.table(good), key=key)
    assert str(err.value) == "source: key column 'id' is NULL at row 1 of a batch (keys must not be NULL)"


def test_all_null_columns_are_nulls_of_the_other_sides_type() -> None:
    """An Arrow `null` column (all None, or a frame built from no rows) against a typed one, or
    against another `null` column, was a SchemaError ("no logical type for Arrow type null")."""
    typed = pa.table({"id": [1, 2], "v": pa.array([None, "b"])})
    nulls = pa.table({"id": [1, 2], "v": pa.nulls(2)})
    assert sl.reconcile(nulls, nulls, key="id").clean
    both = sl.reconcile(nulls, typed, key="id")
    assert both.counts["changed"] == 1 and both.diffs["id"].to_list() == [2]
    assert sl.reconcile(typed, nulls, key="id").counts["changed"] == 1
    empty = pl.DataFrame({"id": [], "v": []})
    assert sl.reconcile(empty, pl.DataFrame({"id": [1], "v": ["x"]}), key="id").counts["extra"] == 1


def test_a_key_held_twice_identically_agrees_whatever_else_its_leaf_holds() -> None:
    """Issue 10's case: ids 1..5000 plus 5 again. Against an identical copy and against a copy with
    other rows changed, key 5 is reported the same way: not at all (it used to be a `duplicate`
    only when an unrelated row of its leaf differed)."""
    ids = list(range(1, 5001)) + [5]
    src = pa.table({"id": ids, "v": [str(i) for i in ids]})
    changed = pa.table({"id": ids, "v": [str(i) if i % 7 else "x" for i in ids]})
    assert sl.reconcile(src, src, key="id").clean
    result = sl.reconcile(src, changed, key="id", options=sl.Options(max_ranges=4))
    assert result.counts["duplicate"] == 0 and result.counts["changed"] == 5000 // 7
    # a replayed row (once in the source, twice in the target) is a duplicate, nothing more
    once = pa.table({"id": list(range(1, 5001)), "v": [str(i) for i in range(1, 5001)]})
    replayed = pa.concat_tables([once, once.slice(0, 1)])
    result = sl.reconcile(once, replayed, key="id")
    assert result.diffs.select("id", "kind", "side", "occurrences").rows() == [(1, "duplicate", "target", 2)]


def test_uuid_key_as_bytes_on_one_side_and_text_on_the_other() -> None:
    """The differences frame crashed (`ArrowInvalid: Invalid UTF8 payload`): keys come out as uuid
    text whichever side holds them, in every kind of difference."""
    import uuid

    keys = [uuid.UUID(int=(i + 1) * 0x0123456789ABCDEF0FEDCBA987654321 % 2**128) for i in range(5)]
    as_bytes = pa.table({"id": pa.array([k.bytes for k in keys], pa.binary(16)), "v": [1, 2, 3, 4, 5]})
    as_text = pa.table(
        {"id": [str(k).upper() for k in keys[1:]] + [str(uuid.UUID(int=7))], "v": [2, 3, 4, 9, 6]}
    )
    for src, dst in ((as_bytes, as_text), (as_text, as_bytes)):
        result = sl.reconcile(src, dst, key="id", compare=sl.Compare(columns={"id": sl.Uuid()}))
        got = dict(zip(result.diffs["id"].to_list(), result.diffs["kind"].to_list(), strict=True))
        assert all(str(uuid.UUID(k)) == k for k in got), got
        assert sorted(got.values()) == ["changed", "extra", "missing"]


def test_fixed_offset_zones_and_decimal256_make_a_differences_frame() -> None:
    """`timestamp(tz="+05:30")` crashed polars (unknown zone) and a decimal256 panicked in polars
    (Int256) once anything differed. The instants are the same, shown in UTC."""
    stamps = [dt.datetime(2024, 1, 1, 12, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)]
    src = pa.table(
        {
            "id": [1, 2],
            "at": pa.array(stamps, pa.timestamp("us", tz="+05:30")),
            "big": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.50")], pa.decimal256(40, 2)),
            "fits": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.50")], pa.decimal256(20, 2)),
        }
    )
    dst = src.set_column(
        1, "at", pa.array([stamps[0], stamps[1] + dt.timedelta(seconds=1)], pa.timestamp("us", tz="+05:30"))
    )
    dst = dst.set_column(
        2, "big", pa.array([decimal.Decimal("1.5"), decimal.Decimal("9")], pa.decimal256(40, 2))
    )
    dst = dst.set_column(
        3, "fits", pa.array([decimal.Decimal("1.5"), decimal.Decimal("9")], pa.decimal256(20, 2))
    )
    result = sl.reconcile(src, dst, key="id")
    (row,) = result.diffs.to_dicts()
    assert row["id"] == 2 and sorted(row["columns"]) == ["at", "big", "fits"]
    assert row["target"]["at"] == stamps[1] + dt.timedelta(seconds=1)
    assert row["target"]["fits"] == decimal.Decimal("9.00")
    assert row["target"]["big"] == "9.00"  # beyond polars' 38 digits: as text


def test_arrow_view_types_are_accepted_like_their_plain_types() -> None:
    """A polars frame with a text key failed even against itself (`array_take` has no kernel for
    string_view while sampling keys); binary_view had no logical type."""
    frame = pl.DataFrame({"id": [f"k{i}" for i in range(500)], "v": list(range(500))})
    assert sl.reconcile(frame, frame, key="id").clean
    views = pa.table(
        {
            "id": pa.array([f"k{i}" for i in range(50)], pa.string_view()),
            "b": pa.array([bytes([i]) for i in range(50)], pa.binary_view()),
            "t": pa.array([str(i) for i in range(50)], pa.string_view()),
        }
    )
    plain = views.cast(pa.schema([("id", pa.string()), ("b", pa.large_binary()), ("t", pa.large_string())]))
    assert sl.reconcile(views, plain, key="id").clean
    drift = plain.set_column(1, "b", pa.array([bytes([i + (i == 7)]) for i in range(50)], pa.large_binary()))
    result = sl.reconcile(views, drift, key=["id", "b"])
    assert sorted(result.diffs["kind"].to_list()) == ["extra", "missing"]
    ree = pa.table({"id": pa.array(["a", "b", "c"]), "v": pa.array(["x", "x", "y"])})
    encoded = ree.set_column(0, "id", pa.compute.run_end_encode(ree.column(0)))
    result = sl.reconcile(encoded, ree.set_column(1, "v", pa.array(["x", "x", "z"])), key="id")
    assert result.diffs["id"].to_list() == ["c"]


def test_a_stream_failing_mid_scan_is_store_unavailable() -> None:
    """Only a stream that fails while it is read is the store's fault (exit 3)."""
    from seamline import _core
    from seamline.seam import resolve

    table = products(100)
    seam = resolve(table.schema, table.schema, "id", None, sl.Compare())

    def batches():
        yield table.to_batches()[0]
        raise OSError("connection reset by peer")

    reader = pa.RecordBatchReader.from_batches(table.schema, batches())
    partitioner = _core.Partitioner(seam.key_spec("source"), None, 2)
    with pytest.raises(sl.StoreUnavailableError, match="connection reset"):
        _core.hash_pass([reader], seam.spec("source"), partitioner)


def test_a_panic_in_the_core_is_a_seamline_error_not_a_panic_exception() -> None:
    """The last resort behind the fixed causes: a panic anywhere in the native core (here: the
    internal `classify` told the wrong number of value columns, so it slices past the value
    hashes) is one-line `SeamlineError`, never `pyo3_runtime.PanicException` (a BaseException)."""
    from seamline import _core
    from seamline.seam import resolve

    table = products(50)
    seam = resolve(table.schema, table.schema, "id", None, sl.Compare())
    partitioner = _core.Partitioner(seam.key_spec("source"), None, 0)
    other = table.set_column(1, "sku", pa.array(["changed"] * 50))
    a, b = (
        _core.collect_pass([t], seam.spec(side), partitioner, [0])
        for t, side in ((table, "source"), (other, "target"))
    )
    with pytest.raises(sl.SeamlineError, match="internal error in the Seamline core") as err:
        _core.classify(a, b, 99)
    assert "\n" not in str(err.value)
