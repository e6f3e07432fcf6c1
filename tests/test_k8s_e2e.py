"""Scale-out on a real Kubernetes control plane (scripts/k8s.sh: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok for the node).

What `seamline k8s render` prints is applied with kubectl; the real Job and CronJob controllers create
the pods, the real scheduler binds them to the kwok node, and `Kubelet` (tests/k8s_harness.py) runs
each pod's own command against the real Postgres and OpenSearch and sets its phase from the exit code.
The merge pod's report must equal a single-process `check`, difference for difference.

Start the control plane with `eval "$(scripts/k8s.sh up)"` (SEAMLINE_KUBECONFIG, SEAMLINE_K8S_BIN);
without it these tests skip locally and fail under CI, like the store tests.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

SEAMLINE = str(Path(sys.executable).parent / "seamline")
N_ROWS = 4000
NODE = "kwok-node-0"
KWOK_TOLERATION = '[{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]'


def _env_or_skip(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        message = f'{var} is not set: start the control plane with eval "$(scripts/k8s.sh up)"'
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return value


@dataclass
class Cluster:
    kubeconfig: str
    kubectl: str
    api: Any

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    from kubernetes import client, config

    kubeconfig = _env_or_skip("SEAMLINE_KUBECONFIG")
    kubectl = str(Path(_env_or_skip("SEAMLINE_K8S_BIN")) / "kubectl")
    api = config.new_client_from_config(config_file=kubeconfig)
    client.VersionApi(api).get_code()  # reachable
    return Cluster(kubeconfig, kubectl, api)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace per test, enforcing the `restricted` Pod Security Standard; its pods tolerate the
    kwok node's taint by default (PodTolerationRestriction), so the manifests stay as rendered."""
    name = f"sl-{uuid.uuid4().hex[:10]}"
    cluster.run(
        "apply", "-f", "-",
        stdin=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                           "pod-security.kubernetes.io/warn": "restricted"},
                "annotations": {"scheduler.alpha.kubernetes.io/defaultTolerations": KWOK_TOLERATION},
            },
        }),
    )  # fmt: skip
    # the service-account controller gives every namespace its "default" account; pods need it first
    _wait(
        "the default service account",
        lambda: cluster.run("-n", name, "get", "sa", "default", check=False).returncode == 0,
        60,
    )
    yield name
    cluster.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def out() -> Iterator[Path]:
    """The shared storage of a run (a bucket in production). Not under /tmp: in a pod /tmp is the
    emptyDir, and the stand-in kubelet maps it to the pod's own folder, as a kubelet would."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="seamline-e2e-", dir="/var/tmp"))
    yield folder / "runs"
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Shop:
    contract: Path
    env: dict[str, str]
    single: dict[str, dict[str, Any]]  # seam -> the single-process check's report of that seam


@pytest.fixture(scope="module")
def shop(pg_dsn: str, opensearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A Postgres table and an OpenSearch index with known drift; two seams over them."""
    import adbc_driver_postgresql.dbapi as pg
    from opensearchpy import OpenSearch, helpers

    name = f"k8s_{uuid.uuid4().hex[:8]}"
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {name} AS SELECT g::bigint AS id, 'sku-' || g AS sku,"
            f" (g % 997)::numeric(12,2) AS price FROM generate_series(1, {N_ROWS}) g"
        )
        cur.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        cur.execute(f"ANALYZE {name}")
        conn.commit()
    os_client = OpenSearch(hosts=[opensearch_url], timeout=60)
    os_client.indices.create(
        index=name,
        body={
            "settings": {"number_of_shards": 2},
            "mappings": {
                "properties": {
                    "id": {"type": "long"},
                    "sku": {"type": "keyword"},
                    "price": {"type": "double"},
                }
            },
        },
    )
    changed, missing, extra = {17, 2500, 3999}, {1, 2001, 3333}, {N_ROWS + 7, N_ROWS + 900}
    docs = [
        {"_index": name, "_id": str(i),
         "_source": {"id": i, "sku": f"sku-{i}", "price": (i % 997) + (1 if i in changed else 0)}}
        for i in [*range(1, N_ROWS + 1), *extra] if i not in missing
    ]  # fmt: skip
    helpers.bulk(os_client, docs, refresh=True)
    folder = tmp_path_factory.mktemp("k8s-shop")
    contract = folder / "contract.yaml"
    seams = [
        {"name": "products", "columns": ["sku", "price"]},
        {"name": "skus", "columns": ["sku"]},
    ]
    contract.write_text(
        yaml.safe_dump({
            "version": 1,
            "stores": {
                "oltp": {"type": "postgres", "dsn": "${SEAMLINE_PG_DSN}"},
                "search": {"type": "opensearch", "hosts": ["${SEAMLINE_OPENSEARCH_URL}"]},
            },
            "seams": [
                {**s, "source": {"store": "oltp", "table": f"public.{name}"},
                 "target": {"store": "search", "index": name}, "key": "id"}
                for s in seams
            ],
        })
    )  # fmt: skip
    env = dict(os.environ)
    single = {}
    for s in seams:
        out = folder / f"single-{s['name']}.json"
        done = subprocess.run(
            [SEAMLINE, "check", str(contract), "--seam", s["name"], "--json", str(out)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        single[s["name"]] = json.loads(out.read_text())["seams"][s["name"]]
    assert {(d["id"], d["kind"]) for d in single["products"]["differences"]} == (
        {(i, "changed") for i in changed} | {(i, "missing") for i in missing} | {(i, "extra") for i in extra}
    )
    yield Shop(contract, env, single)
    os_client.indices.delete(index=name)
    with pg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")
        conn.commit()


# -- helpers -----------------------------------------------------------------------------------------


def _render(shop: Shop, seam: str, namespace: str, *extra: str) -> str:
    done = subprocess.run(
        [SEAMLINE, "k8s", "render", str(shop.contract), "--seam", seam, "--namespace", namespace, *extra],
        env=shop.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _secret(cluster: Cluster, namespace: str, seam: str, shop: Shop) -> None:
    """The Secret the rendered pods read every ${VAR} of the contract from."""
    data = {
        k: base64.b64encode(shop.env[k].encode()).decode()
        for k in ("SEAMLINE_PG_DSN", "SEAMLINE_OPENSEARCH_URL")
    }
    cluster.run(
        "apply", "-f", "-",
        stdin=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": f"seamline-{seam}-credentials", "namespace": namespace},
        }),
    )  # fmt: skip


def _job(cluster: Cluster, namespace: str, name: str) -> Any:
    from kubernetes import client

    return client.BatchV1Api(cluster.api).read_namespaced_job(name, namespace)


def _finished(job: Any) -> str | None:
    for c in job.status.conditions or []:
        if c.status == "True" and c.type in ("Complete", "Failed"):
            return str(c.type)
    return None


def _wait(what: str, check: Callable[[], Any], timeout: float = 600) -> Any:
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _wait_job(cluster: Cluster, namespace: str, name: str, timeout: float = 600) -> str:
    return str(_wait(f"job {name}", lambda: _finished(_job(cluster, namespace, name)), timeout))


def _report(out: Path, seam: str, run_id: str) -> dict[str, Any]:
    (path,) = (out / seam).glob(f"*/{run_id}/report.json")
    return dict(json.loads(path.read_text()))


def _same_as_single(report: dict[str, Any], single: dict[str, Any]) -> None:
    for k in ("source_rows", "target_rows", "missing", "extra", "changed", "duplicate", "in_flight"):
        assert report["counts"][k] == single["counts"][k], k
    assert report["merkle_roots"] == single["merkle_roots"]

    def key(d: dict[str, Any]) -> str:
        return json.dumps(d, sort_keys=True, default=str)

    assert sorted(map(key, report["differences"])) == sorted(map(key, single["differences"]))


def _kubelet(cluster: Cluster, namespace: str, tmp_path: Path, **kw: Any) -> Any:
    from k8s_harness import Kubelet

    work = tmp_path / "pods"
    work.mkdir(exist_ok=True)
    return Kubelet(cluster.api, namespace, NODE, work, **kw)


def _dsn_nothing_listens_on(env: dict[str, str]) -> dict[str, str]:
    return {"SEAMLINE_PG_DSN": "postgresql://seamline@127.0.0.1:9/seamline"}


# -- end to end ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [None, "0 3 * * *"], ids=["job", "cronjob"])
@pytest.mark.parametrize("shards", [1, 4, 16])
def test_a_rendered_run_on_the_control_plane_equals_one_check(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path, shards: int, schedule: str | None
) -> None:
    extra = ["--shards", str(shards), "--output-uri", str(out)] + (
        ["--schedule", schedule] if schedule else []
    )
    _secret(cluster, namespace, "products", shop)
    cluster.run("apply", "-f", "-", stdin=_render(shop, "products", namespace, *extra))
    if schedule:
        # what the CronJob controller does at the scheduled time (kubectl create job --from=cronjob/...):
        # both jobs of the run get the scheduled minute as their suffix
        minute = str(int(time.time() // 60))
        for cron in ("seamline-products-shards", "seamline-products-merge"):
            cluster.run("-n", namespace, "create", "job", f"--from=cronjob/{cron}", f"{cron}-{minute}")
        shards_job, merge_job, run_id = (
            f"seamline-products-shards-{minute}",
            f"seamline-products-merge-{minute}",
            minute,
        )
    else:
        shards_job, merge_job, run_id = (
            "seamline-products-shards",
            "seamline-products-merge",
            "seamline-products",
        )
    with _kubelet(cluster, namespace, tmp_path, slots=4) as kubelet:
        assert _wait_job(cluster, namespace, shards_job) == "Complete"
        # drift: the merge exits 1 like check, and its Job fails at once (podFailurePolicy FailJob)
        assert _wait_job(cluster, namespace, merge_job) == "Failed"
    shard_runs = kubelet.runs_of("shard")
    assert sorted(r.index for r in shard_runs) == list(range(shards))  # the controller's completion indexes
    assert all(r.exit_code == 0 for r in shard_runs), [r.stderr for r in shard_runs if r.exit_code]
    (merge,) = kubelet.runs_of("merge")
    assert merge.exit_code == 1, merge.stderr
    _same_as_single(_report(out, "products", run_id), shop.single["products"])
    if shards > 1:
        manifests = [
            json.loads(p.read_text()) for p in out.glob(f"products/*/{run_id}/shard-*/manifest.json")
        ]
        rows = [m["counts"]["source_rows"] for m in manifests]
        assert len(rows) == shards and sum(rows) == N_ROWS and max(rows) < N_ROWS


def test_two_seams_on_one_schedule_merge_only_their_own_shards(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path
) -> None:
    minute = str(int(time.time() // 60))
    for seam in ("products", "skus"):
        _secret(cluster, namespace, seam, shop)
        rendered = _render(
            shop, seam, namespace, "--shards", "3", "--schedule", "0 3 * * *", "--output-uri", str(out)
        )
        cluster.run("apply", "-f", "-", stdin=rendered)
        for cron in (f"seamline-{seam}-shards", f"seamline-{seam}-merge"):
            cluster.run("-n", namespace, "create", "job", f"--from=cronjob/{cron}", f"{cron}-{minute}")
    with _kubelet(cluster, namespace, tmp_path, slots=4):
        for seam in ("products", "skus"):
            _wait_job(cluster, namespace, f"seamline-{seam}-merge-{minute}")
    for seam in ("products", "skus"):
        report = _report(out, seam, minute)
        assert report["seam"] == seam and report["run_id"] == minute
        _same_as_single(report, shop.single[seam])


# -- failures ------------------------------------------------------------------------------------------


def _failure_run(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path, **kubelet: Any
) -> tuple[Any, Path]:
    _secret(cluster, namespace, "products", shop)
    cluster.run(
        "apply",
        "-f",
        "-",
        stdin=_render(shop, "products", namespace, "--shards", "4", "--output-uri", str(out)),
    )
    return _kubelet(cluster, namespace, tmp_path, slots=5, **kubelet), out


def test_a_shard_failing_once_is_retried_and_the_merge_is_complete(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path
) -> None:
    def faults(pod: Any) -> dict[str, str]:
        ann = pod.metadata.annotations or {}
        first_try = ann.get("batch.kubernetes.io/job-index-failure-count", "0") == "0"
        if ann.get("batch.kubernetes.io/job-completion-index") == "1" and first_try:
            return _dsn_nothing_listens_on(shop.env)
        return {}

    kubelet, out = _failure_run(cluster, namespace, shop, tmp_path, out, faults=faults)
    with kubelet:
        assert _wait_job(cluster, namespace, "seamline-products-shards") == "Complete"
        _wait_job(cluster, namespace, "seamline-products-merge")
    ones = [r for r in kubelet.runs_of("shard") if r.index == 1]
    assert [r.exit_code for r in ones] == [3, 0]  # store unavailable, then retried by the Job controller
    assert [r.attempt for r in ones] == [0, 1]
    assert "127.0.0.1:9" in ones[0].stderr
    _same_as_single(_report(out, "products", "seamline-products"), shop.single["products"])


def test_a_shard_failing_past_its_backoff_limit_fails_the_job_and_the_merge_names_it(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path
) -> None:
    def faults(pod: Any) -> dict[str, str]:
        if (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index") == "2":
            return _dsn_nothing_listens_on(shop.env)
        return {}

    kubelet, out = _failure_run(cluster, namespace, shop, tmp_path, out, faults=faults)
    with kubelet:
        assert _wait_job(cluster, namespace, "seamline-products-shards") == "Failed"
        merge = _wait(
            "the merge's first run", lambda: [r for r in kubelet.runs_of("merge") if r.exit_code is not None]
        )[0]
        status = subprocess.run(
            [SEAMLINE, "k8s", "status", "seamline-products-shards", "--namespace", namespace,
             "--kubeconfig", cluster.kubeconfig, "--json", str(tmp_path / "status.json")],
            env=shop.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    job = _job(cluster, namespace, "seamline-products-shards")
    assert job.status.failed_indexes == "2"
    assert any(c.reason == "FailedIndexes" for c in job.status.conditions or [] if c.type == "Failed")
    twos = [r for r in kubelet.runs_of("shard") if r.index == 2]
    assert [r.exit_code for r in twos] == [3, 3, 3]  # backoffLimitPerIndex 2: three attempts
    # the merge stops waiting for the shard the Job gave up on, names it, exits like an unavailable store
    assert merge.exit_code == 3, merge.stderr
    assert "shard 2 failed 3 time(s)" in merge.stderr and merge.stderr.count("\n") == 1
    assert "127.0.0.1:9" in merge.stderr
    # k8s status: which shards are done, which failed, and the drift so far
    assert status.returncode == 0, status.stderr
    states = {s["shard"]: s for s in json.loads((tmp_path / "status.json").read_text())["shard_states"]}
    assert {i: s["state"] for i, s in states.items()} == {0: "done", 1: "done", 2: "failed", 3: "done"}
    assert states[2]["attempts"] == 3 and "127.0.0.1:9" in states[2]["last_error"]
    assert all(states[i]["rows_per_second"] > 0 for i in (0, 1, 3))
    assert "3 of 4 shards done" in status.stdout and "1 failed" in status.stdout


def test_a_shard_arriving_after_the_merge_started_is_waited_for(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path
) -> None:
    started: dict[str, float] = {}

    def hold(pod: Any) -> bool:
        """Index 3 starts only once the merge has been running (waiting) for a while."""
        if (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index") != "3":
            return False
        merges = kubelet.runs_of("merge")
        if merges and "merge" not in started:
            started["merge"] = merges[0].started
        return not merges or time.time() - merges[0].started < 8

    kubelet, out = _failure_run(cluster, namespace, shop, tmp_path, out, hold=hold)
    with kubelet:
        _wait_job(cluster, namespace, "seamline-products-merge")
    (merge,) = kubelet.runs_of("merge")
    late = next(r for r in kubelet.runs_of("shard") if r.index == 3)
    assert (
        merge.started < late.started and late.finished is not None and late.finished < (merge.finished or 0)
    )
    assert merge.exit_code == 1, merge.stderr
    _same_as_single(_report(out, "products", "seamline-products"), shop.single["products"])


# -- validation and permissions ------------------------------------------------------------------------


VARIANTS = [
    ["--shards", "1"],
    ["--shards", "4", "--parallelism", "2"],
    ["--shards", "16", "--rows", "1000000000"],
    ["--shards", "64", "--parallelism", "8", "--rows", "1"],
    ["--shards", "8", "--schedule", "*/15 * * * *", "--rows", "4000000000", "--secret", "shop-creds"],
    ["--shards", "2", "--schedule", "0 3 * * *", "--image", "registry.example/seamline@sha256:" + "a" * 64],
]


def test_every_rendered_manifest_passes_server_side_validation(
    cluster: Cluster, namespace: str, shop: Shop, tmp_path: Path, out: Path
) -> None:
    long_name = "orders_by_customer_and_region_" + "x" * 40
    contract = tmp_path / "long.yaml"
    text = yaml.safe_load(shop.contract.read_text())
    text["seams"][0]["name"] = long_name
    contract.write_text(yaml.safe_dump(text))
    cases = [(shop.contract, "products", v) for v in VARIANTS] + [
        (contract, long_name, ["--shards", "4", "--schedule", "0 3 * * *"]),
        (contract, long_name, ["--shards", "4"]),
    ]
    for path, seam, variant in cases:
        done = subprocess.run(
            [SEAMLINE, "k8s", "render", str(path), "--seam", seam, "--namespace", namespace, *variant],
            env=shop.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        check = cluster.run("apply", "--dry-run=server", "-f", "-", stdin=done.stdout, check=False)
        assert check.returncode == 0, f"{variant}: {check.stderr}"
        assert check.stdout.count("(server dry run)") == 3, check.stdout
        assert "PodSecurity" not in check.stderr, check.stderr  # the pod templates meet `restricted`
    # the validation is real: the server refuses what it should
    docs = list(yaml.safe_load_all(_render(shop, "products", namespace, "--shards", "4")))
    docs[1]["spec"]["completions"] = -1
    bad = cluster.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs), check=False)
    assert bad.returncode != 0 and "completions" in bad.stderr
    docs = list(yaml.safe_load_all(_render(shop, "products", namespace, "--shards", "4")))
    docs[1]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    bad = cluster.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs), check=False)
    # Pod Security judges a Job's pod template with a warning (and would refuse its pods)
    assert "would violate PodSecurity" in bad.stderr and "allowPrivilegeEscalation" in bad.stderr


def test_the_pods_service_account_needs_no_permissions(cluster: Cluster, namespace: str, shop: Shop) -> None:
    docs = list(yaml.safe_load_all(_render(shop, "products", namespace, "--shards", "2")))
    for doc in docs[1:]:
        pod = doc["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert not any(d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") for d in docs)
    who = f"system:serviceaccount:{namespace}:default"
    for verb, resource in [("get", "secrets"), ("get", "configmaps"), ("list", "pods"), ("get", "jobs"),
                           ("create", "pods"), ("patch", "jobs")]:  # fmt: skip
        can = cluster.run("auth", "can-i", verb, resource, "-n", namespace, "--as", who, check=False)
        assert can.stdout.strip() == "no", f"{who} can {verb} {resource}"
    admin = cluster.run("auth", "can-i", "get", "secrets", "-n", namespace, check=False)
    assert admin.stdout.strip() == "yes"  # the check itself answers yes where it should
