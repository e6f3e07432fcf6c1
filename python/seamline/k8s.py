"""`seamline k8s render`: the Kubernetes manifests of a scaled-out run of one seam.

- a ConfigMap holding the contract (its text as written: `${VAR}` references, never secrets);
- an Indexed Job (completionMode: Indexed): pod i of N runs `seamline check --shard` on slice i and
  writes its partial leaf sets and differences to the output URI; with `--schedule`, a CronJob with
  that Job as its template;
- the merge Job (a CronJob too with `--schedule`): waits for every shard of the run, merges them
  into the report one process would have made, and exits with the same codes as `check`.

Credentials: every `${VAR}` of the contract comes from a Secret through `secretKeyRef`. Pods run
as non-root with a read-only root filesystem and no privilege escalation; requests and limits are
sized from the rows a shard is expected to read.

The run id that ties the shards and the merge together is the job's name (for a CronJob, the
scheduled time that Kubernetes appends to both jobs' names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from seamline.exceptions import InvalidInputError

CONTRACT_DIR = "/etc/seamline"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_OK = re.compile(r"[^a-z0-9-]+")

# Memory model for sizing: a process with its imports and read buffers (~256 MiB), the diff budget,
# and per row of the shard ~3 bytes (leaves of ~32 rows at 48 B per side, range bounds). The
# Postgres benchmark peaked at 472 MB for 5M rows per side (README, Benchmarks).
BASE_MEMORY_MIB = 256
DIFF_BUDGET_MIB = 300
LEAF_BYTES_PER_ROW = 3


@dataclass(frozen=True)
class RenderOptions:
    contract_path: str
    contract_text: str
    seam: str
    shards: int
    parallelism: int | None = None
    schedule: str | None = None
    image: str = "ghcr.io/seamline/seamline:0.1.0"
    output_uri: str = "s3://seamline-runs"
    expected_rows: int = 10_000_000
    secret: str | None = None
    namespace: str | None = None
    backoff_limit_per_index: int = 2


def _dns_name(text: str) -> str:
    name = NAME_OK.sub("-", text.lower()).strip("-")
    return name[:40] or "seam"


def _resources(rows_per_shard: int) -> dict[str, Any]:
    mib = BASE_MEMORY_MIB + DIFF_BUDGET_MIB + rows_per_shard * LEAF_BYTES_PER_ROW // (1 << 20)
    return {
        # two cores: the hash pass reads both sides at once (the throughput in README was measured so)
        "requests": {"cpu": "2", "memory": f"{mib}Mi"},
        "limits": {"cpu": "2", "memory": f"{mib * 2}Mi"},
    }


def _security() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _env(opts: RenderOptions, secret: str) -> list[dict[str, Any]]:
    names = sorted(set(ENV_REF.findall(opts.contract_text)))
    env: list[dict[str, Any]] = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": n}}} for n in names
    ]
    env.append(
        {
            "name": "SEAMLINE_JOB_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}},
        }
    )
    env.append({"name": "HOME", "value": "/tmp"})
    return env


def _pod_spec(
    opts: RenderOptions, args: list[str], config_map: str, secret: str, rows: int
) -> dict[str, Any]:
    pod_security, container_security = _security()
    return {
        "restartPolicy": "Never",
        "securityContext": pod_security,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "seamline",
                "image": opts.image,
                "imagePullPolicy": "IfNotPresent",
                "args": args,
                "env": _env(opts, secret),
                "resources": _resources(rows),
                "securityContext": container_security,
                "volumeMounts": [
                    {"name": "contract", "mountPath": CONTRACT_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "contract", "configMap": {"name": config_map}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def _metadata(name: str, opts: RenderOptions, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": "seamline",
            "app.kubernetes.io/component": component,
            "seamline.dev/seam": _dns_name(opts.seam),
        },
    }
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def render(opts: RenderOptions) -> list[dict[str, Any]]:
    """The manifests as dicts: ConfigMap, shard Job (or CronJob), merge Job (or CronJob)."""
    if opts.shards < 1:
        raise InvalidInputError(f"--shards {opts.shards}: must be at least 1")
    parallelism = opts.parallelism or opts.shards
    if not 1 <= parallelism <= opts.shards:
        raise InvalidInputError(
            f"--parallelism {parallelism}: must be between 1 and --shards ({opts.shards})"
        )
    base = f"seamline-{_dns_name(opts.seam)}"
    config_map, secret = f"{base}-contract", opts.secret or f"{base}-credentials"
    contract_file = f"{CONTRACT_DIR}/contract.yaml"
    rows_per_shard = -(-opts.expected_rows // opts.shards)

    check_args = [
        "check", contract_file, "--seam", opts.seam,
        "--shards", str(opts.shards), "--output-uri", opts.output_uri,
    ]  # fmt: skip
    merge_args = [
        "merge", "--output-uri", opts.output_uri, "--contract", contract_file,
        "--seam", opts.seam, "--shards", str(opts.shards), "--wait", "6h",
    ]  # fmt: skip
    shard_job_spec = {
        "completionMode": "Indexed",
        "completions": opts.shards,
        "parallelism": parallelism,
        "backoffLimitPerIndex": opts.backoff_limit_per_index,
        "maxFailedIndexes": max(1, opts.shards // 10) if opts.shards > 1 else 1,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {
                "labels": {"app.kubernetes.io/name": "seamline", "app.kubernetes.io/component": "shard"}
            },
            "spec": _pod_spec(opts, check_args, config_map, secret, rows_per_shard),
        },
    }
    merge_job_spec = {
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {
                "labels": {"app.kubernetes.io/name": "seamline", "app.kubernetes.io/component": "merge"}
            },
            "spec": _pod_spec(opts, merge_args, config_map, secret, 0),
        },
    }
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(config_map, opts, "contract"),
            "data": {"contract.yaml": opts.contract_text},
        }
    ]
    for suffix, spec, component in (("shards", shard_job_spec, "shard"), ("merge", merge_job_spec, "merge")):
        name = f"{base}-{suffix}"
        if opts.schedule:
            docs.append(
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "metadata": _metadata(name, opts, component),
                    "spec": {
                        "schedule": opts.schedule,
                        "concurrencyPolicy": "Forbid",
                        "successfulJobsHistoryLimit": 3,
                        "failedJobsHistoryLimit": 3,
                        "jobTemplate": {
                            "metadata": {"labels": {"app.kubernetes.io/name": "seamline"}},
                            "spec": spec,
                        },
                    },
                }
            )
        else:
            docs.append(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": _metadata(name, opts, component),
                    "spec": spec,
                }
            )
    return docs


def render_yaml(opts: RenderOptions) -> str:
    return yaml.safe_dump_all(render(opts), sort_keys=False)


def run_id_from_job_name(job_name: str) -> str:
    """The id shared by the shard Job and the merge Job of one run: for CronJob-made jobs the
    scheduled-time suffix both names end with; else the name without its -shards/-merge suffix."""
    m = re.search(r"-(\d+)$", job_name)
    if m:
        return m.group(1)
    return re.sub(r"-(shards|merge)$", "", job_name)
