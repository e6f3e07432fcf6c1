"""The HTML report in a real browser: Debian's chromium, headless, driven through playwright (no
browser download: `executable_path=/usr/bin/chromium`; scripts/test-tools.sh installs it).

Three pages: the demo's (`seamline demo` against the real services), a check of 20 seams with
thousands of differences each, and one seam with 100,000 differences. Each must load with no
console error, no request beyond the file itself, and one key-space strip (an SVG) per drifted
seam; the big one must stay small and load in under a second. Screenshots and the measured sizes
and load times go to benches/out/ (a CI artifact, not committed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import seamline as sl
from seamline import html_report

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benches" / "out"
SEAMLINE = str(Path(sys.executable).parent / "seamline")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "chromium not found: run scripts/test-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives every run a fresh, throwaway user data dir
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser: Any, path: Path, screenshot: str) -> tuple[Any, dict[str, Any]]:
    """Open `path`; the page, and what happened: console errors, requests beyond the file, the
    load time (navigation start to the end of the load event)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if r.url != path.as_uri() else None)
    started = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    wall = time.perf_counter() - started
    load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / screenshot), full_page=True)
    return page, {
        "errors": errors,
        "requests": requests,
        "load_ms": round(load_ms, 1),
        "goto_s": round(wall, 3),
        "bytes": path.stat().st_size,
    }


def record(name: str, numbers: dict[str, Any]) -> None:
    path = OUT / "html-report.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = numbers | {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    path.write_text(json.dumps(data, indent=2) + "\n")


def strips_per_seam(page: Any) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('section.seam')].map(
               s => [s.id, s.querySelectorAll('svg.strip g.lane rect').length > 0
                            ? s.querySelectorAll('svg.strip').length : 0]))"""
    )
    return counts


# -- the demo --------------------------------------------------------------------------------------------


@pytest.mark.services
def test_the_demo_report_in_chromium(
    browser: Any, tmp_path: Path, pg_dsn: str, opensearch_url: str, request: pytest.FixtureRequest
) -> None:
    from seamline.demo import drop_pipeline

    request.addfinalizer(lambda: drop_pipeline(tmp_path / "demo"))  # the stream pipeline's stores
    out = subprocess.run(
        [SEAMLINE, "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.search(r"^HTML report: (.+)$", out.stdout, re.MULTILINE)
    assert found, out.stdout
    path = Path(found.group(1))
    assert path == (tmp_path / "demo" / "report.html").resolve() and path.exists()

    page, numbers = open_page(browser, path, "report-demo.png")
    assert numbers["errors"] == [] and numbers["requests"] == []
    strips = strips_per_seam(page)
    # the Arrow part and the five seams of the contract, and (Kafka and Debezium up) the stream
    # pipeline's seven: every one has drift injected but orders_outbox (the outbox's own guarantee)
    stream = "seam-orders_outbox" in strips
    assert len(strips) == (13 if stream else 6), strips
    assert strips.pop("seam-orders_outbox", 0) == 0 and set(strips.values()) == {1}, strips
    assert page.locator("main").get_attribute("data-verdict") == "drift"
    box = page.locator("svg.strip").first.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 40  # drawn, not collapsed
    # the lost update of product 42 is highlighted on both sides
    changed = page.locator("section#seam-products_search tr.diff", has_text="price")
    assert changed.locator("mark").count() == 2
    # the top of the page (summary and the first seam), the picture the README shows
    top = page.locator("section.seam").first.bounding_box()
    assert top is not None
    clip = {"x": 0, "y": 0, "width": 1280, "height": top["y"] + top["height"] + 16}
    page.screenshot(path=str(OUT / "report-demo-top.png"), clip=clip, full_page=True)
    record("demo", numbers)
    page.close()

    # freshness and lineage of the demo's stores, through the contract it left behind
    contract = str(tmp_path / "demo" / "contract.yaml")
    for args, name in (
        (["freshness", contract], "freshness.html"),
        (["lineage", contract, "--chain", "revenue"], "lineage.html"),
    ):
        out = subprocess.run(
            [SEAMLINE, *args, "--html", name], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert out.returncode == 1, out.stdout + out.stderr  # stale seams; a chain that diverges
        page, numbers = open_page(browser, tmp_path / name, f"report-demo-{name.replace('.html', '.png')}")
        assert numbers["errors"] == [] and numbers["requests"] == []
        if name == "freshness.html":
            assert page.locator("svg.lag").count() == 5  # one lag bar per seam
            assert page.locator("svg.lag rect.lag-bar").count() == 5
        else:
            assert page.locator(".chain .layer").count() == 2
            assert page.locator(".layer.l-diverged").get_attribute("data-seam") == "orders_bronze"
        page.close()


# -- synthetic checks with many differences --------------------------------------------------------------


def _seam(rows: int, every: int, clustered: bool, offset: int) -> sl.ReconcileResult:
    """A real reconcile of `rows` rows whose copy lost, changed and gained rows: every `every`-th
    row, or (clustered) one block of adjacent rows, as from one bad batch."""
    ids = list(range(rows))
    names = [f"item {i}" for i in ids]
    source = pa.table({"id": ids, "name": names, "qty": [i % 97 for i in ids]})
    block = range(rows // 3, rows // 3 + rows // every) if clustered else range(offset, rows, every)
    hit = set(block)
    target_ids, target_names = [], []
    for i in ids:
        if i in hit and i % 3 == 0:
            continue  # missing
        target_ids.append(i)
        target_names.append(names[i] + (" " if i % 3 == 1 else "\u00a0") if i in hit else names[i])
    extra = [rows + i for i in range(len(hit) // 10)]
    target = pa.table(
        {
            "id": target_ids + extra,
            "name": target_names + [f"ghost {i}" for i in extra],
            "qty": [i % 97 for i in target_ids] + [0] * len(extra),
        }
    )
    return sl.reconcile(source, target, key="id")


def _check_report(results: dict[str, sl.ReconcileResult]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "command": "check",
        "contract": "synthetic",
        "started_at": now,
        "finished_at": now,
        "exit_code": 1,
        "seams": {
            name: {"status": "clean" if r.clean else "drift", "error": None} | r.to_dict()
            for name, r in results.items()
        },
    }


def test_twenty_seams_with_thousands_of_differences(browser: Any, tmp_path: Path) -> None:
    results = {
        f"seam_{i:02d}": _seam(20_000, every=4 + i % 5, clustered=i % 2 == 0, offset=i) for i in range(20)
    }
    assert all(sum(r.counts[k] for k in ("missing", "extra", "changed")) > 2000 for r in results.values())
    report = _check_report(results)
    started = time.perf_counter()
    path = html_report.write(tmp_path / "twenty.html", report)
    render_s = time.perf_counter() - started

    page, numbers = open_page(browser, path, "report-20-seams.png")
    assert numbers["errors"] == [] and numbers["requests"] == []
    strips = strips_per_seam(page)
    assert len(strips) == 20 and set(strips.values()) == {1}, strips
    assert page.locator("table.diffs").count() == 20
    assert numbers["load_ms"] < 2000, numbers  # measured ~0.7 s on a loaded 2-core VM
    record("twenty_seams", numbers | {"render_s": round(render_s, 3)})
    page.close()


def test_a_hundred_thousand_differences_stay_small_and_fast(browser: Any, tmp_path: Path) -> None:
    result = _seam(150_000, every=1, clustered=False, offset=0)
    differences = sum(result.counts[k] for k in ("missing", "extra", "changed"))
    assert differences >= 100_000
    report = _check_report({"products": result})
    started = time.perf_counter()
    path = html_report.write(tmp_path / "big.html", report)
    render_s = time.perf_counter() - started

    page, numbers = open_page(browser, path, "report-100k.png")
    assert numbers["errors"] == [] and numbers["requests"] == []
    assert strips_per_seam(page) == {"seam-products": 1}
    assert page.locator("tr.diff").count() <= html_report.SAMPLE_ROWS + 3 * html_report.SAMPLE_PER_KIND
    assert f"of {differences:,} differences" in page.inner_text("section.seam")
    assert numbers["bytes"] < 100_000, numbers
    assert numbers["load_ms"] < 1000, numbers
    record("differences_100k", numbers | {"differences": differences, "render_s": round(render_s, 3)})
    page.close()
