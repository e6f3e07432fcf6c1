"""Scale-out, end to end through the real CLI: N local processes play the pods of a Kubernetes
Indexed Job (JOB_COMPLETION_INDEX set), each reconciling its slice of a Postgres -> OpenSearch seam
against the real services; `seamline merge` must give the single-process result, key for key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

SEAMLINE = str(Path(sys.executable).parent / "seamline")
N_ROWS = 6000
SHARDS = 3


@dataclass
class Seam:
    contract: Path
    env: dict[str, str]
    expected: set[tuple[int, str]]


def _run(args: list[str], env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEAMLINE, *args], env=env | extra, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def seam(pg_dsn: str, opensearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seam]:
    import adbc_driver_postgresql.dbapi as pg
    from opensearchpy import OpenSearch, helpers

    name = f"scale_{uuid.uuid4().hex[:8]}"
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {name} AS SELECT g::bigint AS id, 'sku-' || g AS sku,"
            " (g % 997)::numeric(12,2) AS price, timestamptz '2026-11-01' + g * interval '1 second'"
            f" AS updated_at FROM generate_series(1, {N_ROWS}) g"
        )
        cur.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        cur.execute(f"ANALYZE {name}")
        conn.commit()
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    client.indices.create(
        index=name,
        body={
            "settings": {"number_of_shards": 2},
            "mappings": {
                "properties": {
                    "id": {"type": "long"},
                    "sku": {"type": "keyword"},
                    "price": {"type": "double"},
                    "updated_at": {"type": "date"},
                }
            },
        },
    )
    changed, missing, extra = {17, 2500, 5999}, {1, 3001, 4444}, {N_ROWS + 7, N_ROWS + 900}
    docs = []
    for i in [*range(1, N_ROWS + 1), *extra]:
        if i in missing:
            continue
        price = (i % 997) + (1 if i in changed else 0)
        ts = f"2026-11-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
        docs.append(
            {
                "_index": name,
                "_id": str(i),
                "_source": {"id": i, "sku": f"sku-{i}", "price": price, "updated_at": ts},
            }
        )
    helpers.bulk(client, docs, refresh=True)
    folder = tmp_path_factory.mktemp("scale")
    contract = folder / "contract.yaml"
    contract.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "stores": {
                    "oltp": {"type": "postgres", "dsn": "${SEAMLINE_PG_DSN}"},
                    "search": {"type": "opensearch", "hosts": ["${SEAMLINE_OPENSEARCH_URL}"]},
                },
                "seams": [
                    {
                        "name": "products",
                        "source": {"store": "oltp", "table": f"public.{name}"},
                        "target": {"store": "search", "index": name},
                        "key": "id",
                        "columns": ["sku", "price", "updated_at"],
                        "compare": {"timestamp_precision": "ms"},
                    },
                    {
                        "name": "skus",
                        "source": {"store": "oltp", "table": f"public.{name}"},
                        "target": {"store": "search", "index": name},
                        "key": "id",
                        "columns": ["sku"],
                    },
                ],
            }
        )
    )
    env = dict(os.environ)
    expected = (
        {(i, "changed") for i in changed} | {(i, "missing") for i in missing} | {(i, "extra") for i in extra}
    )
    yield Seam(contract, env, expected)
    client.indices.delete(index=name)
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")
        conn.commit()


def _shards(seam: Seam, out: Path, run_id: str, extra: list[str] | None = None) -> None:
    """The pods: one process per index, all at once, the same command line for each."""
    cmd = [SEAMLINE, "check", str(seam.contract), "--seam", "products", "--shards", str(SHARDS)]
    cmd += ["--output-uri", str(out), "--run-id", run_id, *(extra or [])]
    procs = [
        subprocess.Popen(cmd, env=seam.env | {"JOB_COMPLETION_INDEX": str(i)}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(SHARDS)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def _run_dir(out: Path, run_id: str, seam: str = "products") -> Path:
    """URI/<seam>/<contract id>/<run id>: the layout carries the seam and the contract's identity."""
    (found,) = (out / seam).glob(f"*/{run_id}")
    return found


def _found(report: dict) -> set[tuple[int, str]]:
    return {(int(d["id"]), d["kind"]) for d in report["differences"]}


def test_merged_shards_equal_the_single_process_result(seam: Seam, tmp_path: Path) -> None:
    single = _run(["check", str(seam.contract), "--json", str(tmp_path / "single.json")], seam.env)
    assert single.returncode == 1, single.stderr
    whole = json.loads((tmp_path / "single.json").read_text())["seams"]["products"]
    assert _found(whole) == seam.expected

    out = tmp_path / "runs"
    _shards(seam, out, "run-1")
    assert sorted(p.name for p in _run_dir(out, "run-1").iterdir()) == [
        f"shard-{i:05d}-of-{SHARDS:05d}" for i in range(SHARDS)
    ]
    merged = _run(["merge", "--output-uri", str(out), "--json", str(tmp_path / "merged.json")], seam.env)
    assert merged.returncode == 1, merged.stderr  # drift, like check
    report = json.loads((tmp_path / "merged.json").read_text())
    assert _found(report) == _found(whole) == seam.expected
    for k in ("source_rows", "target_rows", "missing", "extra", "changed", "duplicate"):
        assert report["counts"][k] == whole["counts"][k], k
    assert report["merkle_roots"] == whole["merkle_roots"]  # the same tree a single process builds
    # each pod read only its slice
    rows = [
        json.loads((_run_dir(out, "run-1") / d / "manifest.json").read_text())["counts"]["source_rows"]
        for d in sorted(os.listdir(_run_dir(out, "run-1")))
        if d.startswith("shard-")
    ]
    assert sum(rows) == N_ROWS and max(rows) < N_ROWS


def test_rerunning_a_shard_is_harmless(seam: Seam, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    _shards(seam, out, "run-2")
    first = _run(["merge", "--output-uri", str(out), "--json", str(tmp_path / "a.json")], seam.env)
    cmd = [
        "check",
        str(seam.contract),
        "--seam",
        "products",
        "--shards",
        str(SHARDS),
        "--output-uri",
        str(out),
        "--run-id",
        "run-2",
    ]
    again = _run(cmd, seam.env, JOB_COMPLETION_INDEX="1")
    assert again.returncode == 0, again.stderr
    second = _run(["merge", "--output-uri", str(out), "--json", str(tmp_path / "b.json")], seam.env)
    assert first.returncode == second.returncode == 1
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["counts"] == b["counts"] and _found(a) == _found(b)


def test_missing_and_foreign_shards_are_named(seam: Seam, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    _shards(seam, out, "run-3")
    shutil.rmtree(_run_dir(out, "run-3") / f"shard-00001-of-{SHARDS:05d}")
    missing = _run(["merge", "--output-uri", str(out), "--run-id", "run-3"], seam.env)
    assert missing.returncode == 2
    assert "shard(s) 1 of 3 missing" in missing.stderr and missing.stderr.count("\n") == 1

    _shards(seam, out, "run-4")
    shutil.copytree(
        _run_dir(out, "run-4") / f"shard-00001-of-{SHARDS:05d}",
        _run_dir(out, "run-3") / f"shard-00001-of-{SHARDS:05d}",
    )
    foreign = _run(["merge", "--output-uri", str(out), "--run-id", "run-3"], seam.env)
    assert foreign.returncode == 2
    assert "shard-00001-of-00003 of run run-3 belongs to another run ('run-4')" in foreign.stderr


def test_a_pinned_layout_and_the_merge_repair_dry_run(seam: Seam, tmp_path: Path) -> None:
    layout = tmp_path / "layout.parquet"
    made = _run(["layout", str(seam.contract), "--seam", "products", "--output", str(layout)], seam.env)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "runs"
    _shards(seam, out, "run-5", ["--layout", str(layout)])
    plan = _run(["merge", "--output-uri", str(out), "--repair", "--contract", str(seam.contract)], seam.env)
    # no version column in this seam: the plan is printed, and applying it would be refused
    assert plan.returncode == 1, plan.stderr
    assert "repair plan for seam 'products': upsert 6, delete 2, dedupe 0" in plan.stdout
    assert "no version column" in plan.stderr


def test_shard_arguments_are_checked(seam: Seam, tmp_path: Path) -> None:
    base = ["check", str(seam.contract), "--seam", "products", "--output-uri", str(tmp_path), "--run-id", "x"]
    no_index = _run(
        [*base, "--shards", "3"], {k: v for k, v in seam.env.items() if k != "JOB_COMPLETION_INDEX"}
    )
    assert no_index.returncode == 2 and "JOB_COMPLETION_INDEX" in no_index.stderr
    bad = _run([*base, "--shard", "3/3"], seam.env)
    assert bad.returncode == 2 and "between 0 and 2" in bad.stderr


def test_k8s_render_through_the_cli(seam: Seam) -> None:
    args = ["k8s", "render", str(seam.contract), "--seam", "products", "--shards", "8", "--parallelism", "4"]
    rendered = _run([*args, "--schedule", "0 3 * * *", "--output-uri", "s3://bucket/runs"], seam.env)
    assert rendered.returncode == 0, rendered.stderr
    docs = list(yaml.safe_load_all(rendered.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "CronJob", "CronJob"]
    job = docs[1]["spec"]["jobTemplate"]["spec"]
    assert (job["completions"], job["parallelism"], job["completionMode"]) == (8, 4, "Indexed")
    assert seam.env["SEAMLINE_PG_DSN"] not in rendered.stdout


def _cron_shards(seam: Seam, out: Path, name: str, job: str) -> None:
    """The pods of one CronJob-made Job: the run id comes from the job's name, as in Kubernetes."""
    cmd = [SEAMLINE, "check", str(seam.contract), "--seam", name, "--shards", str(SHARDS)]
    cmd += ["--output-uri", str(out)]
    for i in range(SHARDS):
        env = seam.env | {"JOB_COMPLETION_INDEX": str(i), "SEAMLINE_JOB_NAME": job}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr


def test_two_seams_on_one_schedule_do_not_collide(seam: Seam, tmp_path: Path) -> None:
    """Issue 10 item 2: both CronJobs of one schedule get the same scheduled-time suffix, and the
    default --output-uri is shared; each merge must see only its own seam's shards."""
    out = tmp_path / "runs"
    _cron_shards(seam, out, "products", "seamline-products-shards-29399160")
    _cron_shards(seam, out, "skus", "seamline-skus-shards-29399160")
    reports = {}
    for name in ("products", "skus"):
        merged = _run(
            ["merge", "--output-uri", str(out), "--seam", name, "--contract", str(seam.contract),
             "--shards", str(SHARDS), "--json", str(tmp_path / f"{name}.json")],
            seam.env, SEAMLINE_JOB_NAME=f"seamline-{name}-merge-29399160",
        )  # fmt: skip
        assert merged.returncode == 1, merged.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert reports[name]["seam"] == name and reports[name]["run_id"] == "29399160"
    assert _found(reports["products"]) == seam.expected
    # the sku-only seam sees the missing and extra rows, not the price changes
    assert _found(reports["skus"]) == {(i, k) for i, k in seam.expected if k != "changed"}


def test_merge_refuses_shards_of_another_seam(seam: Seam, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    _cron_shards(seam, out, "products", "seamline-products-shards-1")
    _cron_shards(seam, out, "skus", "seamline-skus-shards-1")
    a = next(p for p in out.rglob(f"shard-00001-of-{SHARDS:05d}") if "products" in str(p))
    b = next(p for p in out.rglob(f"shard-00001-of-{SHARDS:05d}") if "skus" in str(p))
    shutil.rmtree(a)
    shutil.copytree(b, a)  # a shard of seam skus lands in seam products' run
    merged = _run(["merge", "--output-uri", str(out), "--seam", "products", "--run-id", "1"], seam.env)
    assert merged.returncode == 2, merged.stdout
    assert "is of seam 'skus', not 'products'" in merged.stderr and merged.stderr.count("\n") == 1


def test_merge_gives_up_on_a_shard_that_failed_for_good_and_waits_for_a_late_one(
    seam: Seam, tmp_path: Path
) -> None:
    """A failing shard leaves a marker; `merge --wait --shard-attempts K` names a shard that failed K
    times and exits 3 (like check for an unavailable store) instead of waiting out --wait."""
    out = tmp_path / "runs"
    cmd = ["check", str(seam.contract), "--seam", "products", "--shards", str(SHARDS)]
    cmd += ["--output-uri", str(out), "--run-id", "run-6"]
    down = {"SEAMLINE_PG_DSN": "postgresql://seamline@127.0.0.1:9/seamline"}
    for i in range(SHARDS):
        tries = 2 if i == 1 else 1
        for _ in range(tries):
            done = _run(cmd, seam.env | (down if i == 1 else {}), JOB_COMPLETION_INDEX=str(i))
            assert done.returncode == (3 if i == 1 else 0), done.stderr
    merge = ["merge", "--output-uri", str(out), "--seam", "products", "--run-id", "run-6"]
    merge += ["--shards", str(SHARDS), "--wait", "10m", "--shard-attempts", "2"]
    gave_up = _run(merge, seam.env)
    assert gave_up.returncode == 3, gave_up.stderr
    assert "shard 1 failed 2 time(s) (last: exit 3, postgres at 127.0.0.1:9" in gave_up.stderr
    # one more attempt is allowed: the merge waits, and the shard arriving late completes the run
    waiting = subprocess.Popen(
        [SEAMLINE, *merge[:-1], "3", "--json", str(tmp_path / "late.json")],
        env=seam.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    assert waiting.poll() is None  # still waiting for shard 1
    late = _run(cmd, seam.env, JOB_COMPLETION_INDEX="1")
    assert late.returncode == 0, late.stderr
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 1, err
    assert _found(json.loads((tmp_path / "late.json").read_text())) == seam.expected
