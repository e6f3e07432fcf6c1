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
    assert mem[1] > mem[0]  # more rows per shard, more memory


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
