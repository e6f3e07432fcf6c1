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
