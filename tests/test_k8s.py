"""Rendered Kubernetes manifests, validated against the Kubernetes API's own models (the official
Python client): every field known, every required field present, every type right."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client

from seamline.exceptions import InvalidInputError
from seamline.k8s import RenderOptions, render, render_yaml, run_id_from_job_name

CONTRACT = """version: 1
stores:
  oltp: {type: postgres, dsn: "${SHOP_PG_DSN}"}
  search: {type: opensearch, hosts: ["${SHOP_OS_URL}"]}
seams:
  - name: products_search
    source: {store: oltp, table: public.products}
    target: {store: search, index: products}
    key: {id: _id}
"""

MODELS = {"ConfigMap": "V1ConfigMap", "Job": "V1Job", "CronJob": "V1CronJob"}


def _strict(doc: dict[str, Any]) -> Any:
    """Deserialize into the API model (types, required fields), then check nothing was dropped
    (an unknown or misspelled field would be)."""
    api = client.ApiClient()
    model = api._ApiClient__deserialize(doc, MODELS[doc["kind"]])  # type: ignore[attr-defined]
    back = api.sanitize_for_serialization(model)
    assert json.loads(json.dumps(back)) == json.loads(json.dumps(doc)), "a field is unknown to the API"
    return model


def options(**kw: Any) -> RenderOptions:
    base = dict(contract_path="contract.yaml", contract_text=CONTRACT, seam="products_search", shards=4)
    return RenderOptions(**(base | kw))


@pytest.mark.parametrize("shards,parallelism", [(1, None), (4, 2), (16, 16), (64, 8)])
@pytest.mark.parametrize("schedule", [None, "0 2 * * *"])
def test_manifests_validate_against_the_api(
    shards: int, parallelism: int | None, schedule: str | None
) -> None:
    docs = list(
        yaml.safe_load_all(render_yaml(options(shards=shards, parallelism=parallelism, schedule=schedule)))
    )
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "CronJob", "CronJob"] if schedule else ["ConfigMap", "Job", "Job"]
    models = [_strict(d) for d in docs]
    shard_job = models[1].spec.job_template.spec if schedule else models[1].spec
    assert shard_job.completion_mode == "Indexed"
    assert shard_job.completions == shards
    assert shard_job.parallelism == (parallelism or shards)
    assert shard_job.backoff_limit_per_index == 2
    if schedule:
        assert models[1].spec.schedule == schedule and models[1].spec.concurrency_policy == "Forbid"


def test_pods_are_locked_down_and_sized() -> None:
    small, large = render(options(expected_rows=1_000_000)), render(options(expected_rows=4_000_000_000))
    for docs in (small, large):
        pod = docs[1]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    mem = [
        int(d[1]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"][:-2])
        for d in (small, large)
    ]
    assert mem[1] >= mem[0]  # more rows per shard never less memory


def test_memory_request_follows_the_measured_peaks_plus_margin() -> None:
    """`render --rows` requests what the measured peaks say (benches/bench_memory.py), with room."""
    from seamline import k8s

    points = k8s.MEASURED_PEAK_MB
    for rows, peak in points.items():
        # the point itself, or a larger one measured at fewer rows (the plateau's noise)
        assert k8s.peak_mb(rows) == max(p for r, p in points.items() if r <= rows)
        # at least 20% above what was measured at that size
        assert k8s.memory_request_mib(rows) * (1 << 20) >= peak * 1e6 * 1.2, rows
    (_, pa_), *_ = sorted(points.items())
    assert k8s.peak_mb(1) == pa_  # fewer rows never need more than the smallest measured point
    # interpolated between rising points
    assert k8s.peak_mb(2_000, {1_000: 10.0, 3_000: 30.0, 4_000: 35.0}) == pytest.approx(20.0)
    z, pz = max(points.items())
    # past the last point the refinement and diff's measured growth goes on
    far = 100 * z
    assert k8s.peak_mb(far) == pytest.approx(pz + k8s.PEAK_GROWTH_PAST_LAST_MB * (far - z) / 1e6)
    assert k8s.PEAK_GROWTH_PAST_LAST_MB > 0
    # more rows never need less
    grid = [int(1e6 * 1.1**i) for i in range(80)]
    assert all(k8s.peak_mb(x) <= k8s.peak_mb(y) for x, y in zip(grid, grid[1:], strict=False))
    # the plateau's points differ by noise; a point under one at fewer rows does not lower the peak
    noisy = {1_000: 10.0, 2_000: 30.0, 3_000: 20.0}
    assert k8s.peak_mb(3_000, noisy) == 30.0 and k8s.peak_mb(2_500, noisy) == 30.0
    for total, shards in ((1, 1), (5_000_000, 1), (1_000_000_000, 16), (4_000_000_000, 64)):
        per_shard = -(-total // shards)
        want_mb = k8s.peak_mb(per_shard) * k8s.SIZING_MARGIN
        docs = render(options(expected_rows=total, shards=shards))
        resources = docs[1]["spec"]["template"]["spec"]["containers"][0]["resources"]
        request = int(resources["requests"]["memory"].removesuffix("Mi"))
        assert request == k8s.memory_request_mib(per_shard)
        assert want_mb * 1e6 <= request * (1 << 20) < want_mb * 1e6 + 17 * (1 << 20)
        assert resources["limits"]["memory"] == f"{2 * request}Mi"


def test_credentials_come_from_a_secret_never_inline() -> None:
    text = render_yaml(options())
    docs = list(yaml.safe_load_all(text))
    env = docs[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(refs) == {"SHOP_PG_DSN", "SHOP_OS_URL"}
    assert all(r["name"] == "seamline-products-search-credentials" for r in refs.values())
    assert docs[0]["data"]["contract.yaml"] == CONTRACT  # ${VAR} references, not values
    assert "postgresql://" not in text


def test_the_shard_command_is_the_same_for_every_pod() -> None:
    docs = render(options(shards=8))
    args = docs[1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["check", "/etc/seamline/contract.yaml"]
    assert "--shard" not in args  # the shard index comes from JOB_COMPLETION_INDEX
    merge = docs[2]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert merge[0] == "merge" and "--wait" in merge


def test_bad_options() -> None:
    with pytest.raises(InvalidInputError, match="--shards 0"):
        render(options(shards=0))
    with pytest.raises(InvalidInputError, match="--parallelism 9"):
        render(options(shards=4, parallelism=9))


def test_run_id_is_shared_by_the_jobs_of_one_run() -> None:
    assert run_id_from_job_name("seamline-x-shards-29399160") == run_id_from_job_name(
        "seamline-x-merge-29399160"
    )
    assert (
        run_id_from_job_name("seamline-x-shards") == run_id_from_job_name("seamline-x-merge") == "seamline-x"
    )


def test_the_validation_itself_catches_mistakes() -> None:
    job = render(options())[1]
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"  # misspelled field
    with pytest.raises(AssertionError, match="unknown to the API"):
        _strict(job)
    job = render(options())[1]
    del job["spec"]["template"]["spec"]["containers"][0]["name"]  # required field
    with pytest.raises(ValueError, match="name"):
        _strict(job)


LITERAL = {
    "a password typed into a DSN": (
        'oltp: {type: postgres, dsn: "postgresql://shop:hunter2@db:5432/shop"}',
        "store 'oltp': field 'dsn'",
    ),
    "a password in a DSN's query string": (
        'oltp: {type: postgres, dsn: "postgresql://db/shop?user=shop&password=hunter2"}',
        "store 'oltp': field 'dsn'",
    ),
    "a password field": (
        'oltp: {type: postgres, dsn: "${SHOP_PG_DSN}"}\n'
        '  search: {type: opensearch, hosts: ["${SHOP_OS_URL}"], username: admin, password: hunter2}',
        "store 'search': field 'password'",
    ),
    "a password as a ${VAR:-default}": (
        'oltp: {type: postgres, dsn: "${PG_DSN:-postgresql://shop:hunter2@db/shop}"}',
        "store 'oltp': field 'dsn'",
    ),
}


def _contract_with(store: str, tmp_path: Any) -> Any:
    path = tmp_path / "contract.yaml"
    search = "" if "search:" in store else '\n  search: {type: opensearch, hosts: ["${SHOP_OS_URL}"]}'
    path.write_text(
        "version: 1\nstores:\n  " + store + search + "\n"
        "seams:\n  - name: products_search\n    source: {store: oltp, table: public.products}\n"
        "    target: {store: search, index: products}\n    key: {id: _id}\n"
    )
    return path


@pytest.mark.parametrize("case", sorted(LITERAL))
def test_render_refuses_literal_secrets(case: str, tmp_path: Any) -> None:
    """Issue 10 item 5: a literal secret in the contract would be printed into the ConfigMap."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    store, field = LITERAL[case]
    path = _contract_with(store, tmp_path)
    seamline = str(Path(sys.executable).parent / "seamline")
    env = dict(os.environ, SHOP_OS_URL="http://127.0.0.1:9", SHOP_PG_DSN="postgresql://127.0.0.1:9/x")
    env.pop("PG_DSN", None)
    done = subprocess.run(
        [seamline, "k8s", "render", str(path), "--seam", "products_search", "--shards", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert "hunter2" not in done.stdout + done.stderr and done.stdout == ""
    assert field in done.stderr and "${VAR}" in done.stderr and done.stderr.count("\n") == 1


def test_secrets_by_reference_are_fine(tmp_path: Any) -> None:
    from seamline.k8s import literal_secrets

    ok = 'oltp: {type: postgres, dsn: "postgresql://shop:${PG_PASSWORD}@db/shop"}'
    assert literal_secrets(_contract_with(ok, tmp_path).read_text()) == []
    ok = "oltp: {type: postgres, dsn: x}\n  search: {type: opensearch, password: '${OS_PASSWORD}'}"
    assert literal_secrets(_contract_with(ok, tmp_path).read_text()) == []


def test_long_seam_names_stay_within_the_api_limits() -> None:
    """A CronJob's name has at most 52 characters; two long seam names must not collapse to one."""
    a = "orders_" + "x" * 60 + "_a"
    b = "orders_" + "x" * 60 + "_b"
    names = []
    for seam in (a, b):
        docs = render(options(seam=seam, schedule="0 2 * * *"))
        names.append(docs[1]["metadata"]["name"])
        assert all(len(d["metadata"]["name"]) <= 52 for d in docs if d["kind"] == "CronJob")
        assert all(len(d["metadata"]["name"]) <= 63 for d in docs)
        assert len(docs[1]["metadata"]["labels"]["seamline.dev/seam"]) <= 63
    assert names[0] != names[1]
