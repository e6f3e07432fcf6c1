"""The HTML report: values with their differences highlighted and invisible characters shown, the
key-space summary of real reconciles, sampling, redaction, and `--html` / `seamline report` run as a
real subprocess against the real Postgres (a password in the DSN that must never reach the page).

The page in a real browser is tests/test_html_browser.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

import seamline as sl
from seamline import html_report
from seamline.html_report import SAMPLE_PER_KIND, SAMPLE_ROWS, sample_differences, value_html

SEAMLINE = str(Path(sys.executable).parent / "seamline")
SECRET = "Html-S3cret-pw"
UTC = dt.UTC


# -- values ----------------------------------------------------------------------------------------


def test_changed_part_is_marked_on_both_sides() -> None:
    assert value_html("27.53", "17.53", compare=True) == '<span class="v"><mark>2</mark>7.53</span>'
    assert value_html("17.53", "27.53", compare=True) == '<span class="v"><mark>1</mark>7.53</span>'
    # a value only one side has: all of it differs
    assert "<mark>abc</mark>" in value_html("abc", None, compare=True)
    assert value_html(None) == '<span class="null">NULL</span>'


@pytest.mark.parametrize(
    ("value", "escape", "name"),
    [
        ("Caf\u00e9\u00a0Noir", "\\u00a0", "no-break space"),
        ("Cafe\u0301", "\\u0301", "combining acute accent"),
        ("zero\u200bwidth", "\\u200b", "zero width space"),
        ("bom\ufeff", "\\ufeff", "zero width no-break space"),
        ("tab\there", "\\t", "control character"),
    ],
)
def test_invisible_characters_become_escapes(value: str, escape: str, name: str) -> None:
    page = value_html(value, value.replace("\u00a0", " "), compare=True)
    assert f">{escape}<" in page
    assert name in page


def test_leading_and_trailing_spaces_are_shown_inner_ones_are_not() -> None:
    page = value_html(" a b  ", "a b", compare=True)
    assert page.count("\u2423") == 3  # one leading, two trailing
    assert "a b" in page  # the inner space stays a space


def test_nfc_and_nfd_differ_visibly() -> None:
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    assert value_html(nfc, nfd, compare=True) != value_html(nfd, nfc, compare=True)
    assert "\\u0301" in value_html(nfd, nfc, compare=True)
    assert "\\u0301" not in value_html(nfc, nfd, compare=True)


def test_same_text_different_type_is_labelled() -> None:
    assert "(text)" in value_html("5", 5, compare=True)
    assert "(number)" in value_html(5, "5", compare=True)


def test_long_values_are_cut_around_their_difference() -> None:
    a = "x" * 5000 + "A" + "y" * 5000
    b = "x" * 5000 + "B" + "y" * 5000
    page = value_html(a, b, compare=True)
    assert "<mark>A</mark>" in page
    assert len(page) < 600
    assert page.count("\u2026") == 2


def test_markup_in_values_is_escaped() -> None:
    page = value_html("<script>alert(1)</script>", "x", compare=True)
    assert "<script>" not in page and "&lt;script&gt;" in page


# -- sampling and the key-space summary of real reconciles ---------------------------------------


def _products(n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "name": pa.array([f"product {i}" for i in range(n)]),
            "price": pa.array([decimal.Decimal(i % 1000) / 10 for i in range(n)], pa.decimal128(12, 2)),
        }
    )


def _drifted(source: pa.Table, changed: list[int], missing: list[int]) -> pa.Table:
    rows = source.to_pylist()
    gone = set(missing)
    for i in changed:
        rows[i]["name"] = rows[i]["name"] + "\u00a0"  # an NBSP: invisible in a terminal
    return pa.Table.from_pylist([r for r in rows if r["id"] not in gone], source.schema)


def _report(result: sl.ReconcileResult, name: str = "products") -> dict[str, object]:
    return {"command": "check", "seams": {name: {"status": "drift", **result.to_dict()}}}


def test_key_space_counts_every_difference_and_locates_a_cluster() -> None:
    source = _products(20_000)
    batch = list(range(12_000, 12_400))  # one bad batch: 400 adjacent keys
    scattered = list(range(7, 20_000, 997))  # 21 keys all over the key space
    result = sl.reconcile(source, _drifted(source, batch, scattered), key="id")
    space = result.to_dict()["key_space"]
    buckets = space["buckets"]
    assert sum(b["changed"] for b in buckets) == len(batch) == result.counts["changed"]
    assert sum(b["missing"] for b in buckets) == len(scattered) == result.counts["missing"]
    assert sum(b["ranges"] for b in buckets) == space["ranges"]
    assert sum(b["mismatched_leaves"] for b in buckets) == result.to_dict()["leaves"]["mismatched"]
    # every changed row lands in the buckets whose bounds hold its key
    for b in buckets:
        if b["changed"]:
            assert (b["lo"] or {"id": -1})["id"] <= 12_399 and (b["hi"] or {"id": 10**9})["id"] > 12_000
    dense = [b for b in buckets if b["changed"]]
    assert len(dense) <= 3  # the batch stays a cluster on the strip
    assert sum(1 for b in buckets if b["missing"]) >= 15  # the scattered drift is spread out


def test_sample_shows_the_first_differences_and_every_kind() -> None:
    diffs = [{"id": i, "kind": "changed"} for i in range(1000)] + [
        {"id": 1000 + i, "kind": k} for k in ("missing", "extra", "duplicate") for i in range(10)
    ]
    shown = sample_differences(diffs)
    assert shown[:SAMPLE_ROWS] == diffs[:SAMPLE_ROWS]
    kinds = [d["kind"] for d in shown]
    for kind in ("missing", "extra", "duplicate"):
        assert kinds.count(kind) == SAMPLE_PER_KIND


def test_a_large_difference_set_makes_a_small_page(tmp_path: Path) -> None:
    source = _products(60_000)
    result = sl.reconcile(source, _drifted(source, list(range(0, 60_000, 2)), []), key="id")
    assert result.counts["changed"] == 30_000
    path = html_report.write(tmp_path / "big.html", _report(result))
    page = path.read_text()
    assert len(page.encode()) < 120_000
    assert "25 of 30,000 differences" in page
    assert page.count('class="diff"') == SAMPLE_ROWS
    assert page.count('<svg class="strip"') == 1
    assert "\\u00a0" in page  # the NBSP that differs is shown


def test_secrets_are_redacted_before_escaping(tmp_path: Path) -> None:
    secret = 'p&<w>"d'
    report = {
        "command": "repair",
        "contract": f"postgresql://u:{secret}@db/x",
        "seam": f"s {secret}",
        "counts": {"source_rows": 1},
        "plan": {"upsert": 1},
        "refused": f"password={secret} is wrong",
    }
    page = html_report.write(tmp_path / "r.html", report, lambda t: t.replace(secret, "***")).read_text()
    import html as html_lib

    assert secret not in page and html_lib.escape(secret) not in page
    assert "***" in page


def test_a_run_that_failed_shows_its_error() -> None:
    page = html_report.render(
        {"command": "check", "exit_code": 3, "clean": False, "error": "store 'oltp' unavailable: 127.0.0.1:1"}
    )
    assert 'data-verdict="error"' in page and "store &#x27;oltp&#x27; unavailable" in page


def test_not_a_report_is_bad_input() -> None:
    with pytest.raises(sl.InvalidInputError, match="not a Seamline report"):
        html_report.render({"command": "nope"})


# -- the CLI, against the real Postgres ----------------------------------------------------------------


@dataclass
class Shop:
    dir: Path
    contract: Path
    env: dict[str, str]


def _with_password(dsn: str, password: str) -> str:
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Shop]:
    import adbc_driver_postgresql.dbapi as pg

    d = tmp_path_factory.mktemp("html")
    p = f"html{os.getpid()}"
    now = dt.datetime.now(UTC).replace(microsecond=0)
    rows = [
        {"id": i, "name": f"product {i}", "updated_at": now - dt.timedelta(days=1, minutes=i)}
        for i in range(1, 201)
    ]
    copy = [dict(r) for r in rows if r["id"] != 50]  # 50: never delivered
    copy[9]["name"] = "product\u00a010"  # 10: an NBSP instead of a space
    copy[99]["name"] = "Produ\u0301ct 101"  # 101: a combining mark
    rows[0]["updated_at"] = now  # 1: updated after the copy was made, the copy lags a day
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("updated_at", pa.timestamp("us", "UTC"))])
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        for table, data in ((f"{p}_src", rows), (f"{p}_dst", copy)):
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, updated_at timestamptz)")
            cur.adbc_ingest(table, pa.Table.from_pylist(data, schema), mode="append")
        cur.execute(f"DROP TABLE IF EXISTS {p}_dst2")
        cur.execute(f"CREATE TABLE {p}_dst2 AS SELECT * FROM {p}_dst")
        cur.execute(f"ALTER TABLE {p}_dst2 ADD PRIMARY KEY (id)")
        conn.commit()
    contract = d / "contract.yaml"
    contract.write_text(
        f"""\
version: 1
stores:
  oltp: {{type: postgres, dsn: "${{HTML_PG_DSN}}"}}
seams:
  - name: products_copy
    source: {{store: oltp, table: public.{p}_src}}
    target: {{store: oltp, table: public.{p}_dst}}
    key: id
    version: updated_at
    freshness: {{warn_after: 10m, error_after: 1h}}
    repair: {{max_fraction: 0.5}}
  - name: copy_of_copy
    source: {{store: oltp, table: public.{p}_dst}}
    target: {{store: oltp, table: public.{p}_dst2}}
    key: id
    version: updated_at
chains:
  products: [products_copy, copy_of_copy]
"""
    )
    env = dict(os.environ) | {"HTML_PG_DSN": _with_password(pg_dsn, SECRET)}
    env.pop("CI", None)
    yield Shop(d, contract, env)
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {p}_src, {p}_dst, {p}_dst2")
        conn.commit()


def run(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [SEAMLINE, *args], env=shop.env, cwd=shop.dir, capture_output=True, text=True, timeout=180
    )
    assert SECRET not in out.stdout + out.stderr
    return out


def page(shop: Shop, name: str) -> str:
    text = (shop.dir / name).read_text()
    assert SECRET not in text
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|src=|https?://(?!127\.0\.0\.1)", text)  # nothing to fetch
    return text


@pytest.mark.services
def test_check_html_shows_the_drift_and_seamline_report_renders_the_same(shop: Shop) -> None:
    contract = str(shop.contract)
    out = run(shop, "check", contract, "--seam", "products_copy", "--json", "c.json", "--html", "c.html")
    assert out.returncode == 1, out.stderr
    html = page(shop, "c.html")
    assert 'data-verdict="drift"' in html
    assert html.count('<svg class="strip"') == 1
    assert "\\u00a0" in html and "\\u0301" in html  # the invisible differences, made visible
    assert "k-missing" in html and "k-changed" in html
    report = json.loads((shop.dir / "c.json").read_text())
    seam = report["seams"]["products_copy"]
    assert seam["throughput"]["source"]["rows"] == 200 and seam["throughput"]["target"]["rows"] == 199
    assert seam["throughput"]["source"]["rows_per_second"] > 0
    assert sum(b["missing"] + b["changed"] for b in seam["key_space"]["buckets"]) == 4
    again = run(shop, "report", "c.json", "--html", "again.html")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "again.html"
    # the same page, but for when the run finished (each output stamps its own finished_at)
    meta = re.compile(r'<p class="meta">.*?</p>')
    assert meta.sub("", page(shop, "again.html")) == meta.sub("", html)


@pytest.mark.services
def test_freshness_lineage_repair_and_merge_pages(shop: Shop) -> None:
    out = run(shop, "freshness", str(shop.contract), "--html", "f.html")
    assert out.returncode == 1, out.stderr
    html = page(shop, "f.html")
    assert html.count('<svg class="lag"') == 2
    assert "error 1h" in html and "warn 10m" in html and 'data-verdict="stale"' in html

    out = run(shop, "lineage", str(shop.contract), "--chain", "products", "--html", "l.html")
    assert out.returncode == 1, out.stderr
    html = page(shop, "l.html")
    assert html.count('class="layer ') == 2
    assert 'class="layer l-diverged" data-seam="products_copy"' in html
    assert 'class="layer l-not-checked" data-seam="copy_of_copy"' in html
    assert html.count("snapshot @ ") >= 2  # what each side of the checked layer read

    out = run(shop, "repair", str(shop.contract), "--seam", "products_copy", "--html", "r.html")
    assert out.returncode == 1, out.stderr
    html = page(shop, "r.html")
    assert "Repair plan" in html and "dry run" in html and 'data-verdict="dry run"' in html
    assert html.count('<svg class="strip"') == 1  # the drift it plans from, drawn like check's
    assert html.count("<b>upsert</b>") == 4 and html.count("<b>delete</b>") == 0  # 1, 10, 50, 101

    for i in (0, 1):
        out = run(
            shop, "check", str(shop.contract), "--seam", "products_copy", "--shard", f"{i}/2",
            "--output-uri", str(shop.dir / "runs"), "--run-id", "r1",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    out = run(shop, "merge", "--output-uri", str(shop.dir / "runs"), "--run-id", "r1", "--html", "m.html")
    assert out.returncode == 1, out.stderr
    html = page(shop, "m.html")
    assert html.count('<svg class="strip"') == 1 and "Shards" in html

    # last, as it writes: the repair applied and verified
    out = run(shop, "repair", str(shop.contract), "--seam", "products_copy", "--apply", "--html", "ra.html")
    assert out.returncode == 0, out.stdout + out.stderr
    html = page(shop, "ra.html")
    assert "Outcome" in html and "verified: the seam is clean after the repair" in html


def test_report_of_a_missing_or_broken_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"command": ')
    (tmp_path / "other.json").write_text('{"command": "dance"}')
    for name, expected in (
        ("missing.json", "missing.json: no such file"),
        ("broken.json", "broken.json: not a JSON report"),
        ("other.json", "other.json: not a Seamline report"),
    ):
        out = subprocess.run(
            [SEAMLINE, "report", name, "--html", "x.html"], cwd=tmp_path, capture_output=True, text=True
        )
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("seamline: error: "), out.stderr
        assert expected in lines[0]
        assert not (tmp_path / "x.html").exists()
