"""`seamline k8s render`: the Kubernetes manifests of a scaled-out run of one seam.

- a ConfigMap holding the contract (its text as written: `${VAR}` references, never secrets);
- an Indexed Job (completionMode: Indexed): pod i of N runs `seamline check --shard` on slice i and
  writes its partial leaf sets and differences to the output URI; with `--schedule`, a CronJob with
  that Job as its template;
- the merge Job (a CronJob too with `--schedule`): waits for every shard of the run, merges them
  into the report one process would have made, and exits with the same codes as `check`.

Credentials: every `${VAR}` of the contract comes from a Secret through `secretKeyRef`; a contract
with a literal secret (a password typed into a DSN or a `password:` field) is refused before
anything is printed, since the ConfigMap would carry it in clear. Pods run
as non-root with a read-only root filesystem and no privilege escalation; requests and limits are
sized from the rows a shard is expected to read.

The run id that ties the shards and the merge together is the job's name (for a CronJob, the
scheduled time that Kubernetes appends to both jobs' names); the shards' folders also carry the seam
and the contract's identity, so two seams on one schedule never mix.

Failures: a shard exiting 2 (bad input) fails its index at once (podFailurePolicy FailIndex); one
exiting 3 (a store unavailable) is retried up to backoffLimitPerIndex times; the merge is told how
many attempts a shard gets, so it stops waiting for one the Job gave up on. A merge exiting 1 (drift)
or 2 fails its Job at once (drift is the answer, not a crash to retry).

`status` (`seamline k8s status JOB`) reads a shard Job from the API server and its shards' outputs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from seamline.exceptions import ContractError, InvalidInputError

CONTRACT_DIR = "/etc/seamline"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_OK = re.compile(r"[^a-z0-9-]+")
# A CronJob's name is at most 52 characters (its Jobs append "-<11 digits>" under the 63 of a label):
# "seamline-" + seam + "-shards" must fit.
MAX_SEAM_NAME = 52 - len("seamline-") - len("-shards")
EXIT_DRIFT, EXIT_BAD_INPUT = 1, 2

# Memory sizing, from measurements, not arithmetic: peak RSS (VmHWM at the end of the reconcile) of
# one process reconciling a Postgres -> Postgres seam (0.2% drift, default options, 2 cores), MB by
# rows per side, measured with benches/bench_memory.py (README, Sizing). From ~4.2M rows the leaves
# of the hash pass are at their cap (engine.MAX_PUSHED_RANGES ranges of ~4 rows or more, one leaf
# each, 48 bytes a leaf a side) and the hash pass's peak is level; what still grows is the
# refinement's and the diff's share, bounded in groups but holding the differences (0.2% of the rows
# here). Between measured points the peak is interpolated (never falling); past the last one it grows
# by PEAK_GROWTH_PAST_LAST_MB a million rows. A pod's request is that peak plus SIZING_MARGIN, the
# limit twice that. 5M, 10M and 20M were measured again (2026-12-02, 4, 4 and 2 runs, the largest
# kept) when the ranges of 16 rows became ranges of 4 (the cap reached at 4.2M rows instead of
# 16.8M): 250-272, 253-263 and 235-264 MB, where they had been 155.6, 194 and 252.6 (20M and 50M have
# the same 2^20 leaves either way). 50M: 252.5 and 265.2 MB with ranges of 4 (2026-12-02, at 759011d
# and c5579db), the larger kept.
MEASURED_PEAK_MB: dict[int, float] = {
    5_000_000: 272.1,
    10_000_000: 263.2,
    20_000_000: 263.7,
    50_000_000: 265.2,
}
# Past the last point: the refinement and diff passes' own peak (after the hash pass, from the same
# runs' timelines) was 149-159 MB at 20M and 250 MB at 50M, ~3.0 MB more a million rows per side;
# that share goes on growing where the hash pass's no longer does.
PEAK_GROWTH_PAST_LAST_MB = 3.0
SIZING_MARGIN = 1.25


def peak_mb(rows_per_side: int, points: dict[int, float] = MEASURED_PEAK_MB) -> float:
    """The expected peak for `rows_per_side`: piecewise linear through the measured points, the first
    point's value below it (fewer rows never need more), PEAK_GROWTH_PAST_LAST_MB a million rows
    more above the last; never less than a point measured at fewer rows (on the plateau the points
    differ by the noise of a run, and more rows never need less)."""
    xs = sorted(points)
    floor = max(points[x] for x in xs if x <= max(rows_per_side, xs[0]))
    return max(floor, _through_points(rows_per_side, xs, points))


def _through_points(rows_per_side: int, xs: list[int], points: dict[int, float]) -> float:
    """`peak_mb` before its floor: the line through the sorted points `xs`."""
    if rows_per_side <= xs[0] or len(xs) == 1:
        return points[xs[0]]
    if rows_per_side > xs[-1]:
        return points[xs[-1]] + PEAK_GROWTH_PAST_LAST_MB * (rows_per_side - xs[-1]) / 1e6
    segment = 1
    while rows_per_side > xs[segment]:
        segment += 1
    lo, hi = xs[segment - 1], xs[segment]
    slope = max(0.0, (points[hi] - points[lo]) / (hi - lo))
    return points[lo] + slope * (rows_per_side - lo)


def memory_request_mib(rows_per_shard: int) -> int:
    """The memory a pod reading `rows_per_shard` rows per side requests, in MiB (rounded up to 16)."""
    mib = peak_mb(rows_per_shard) * 1e6 / (1 << 20) * SIZING_MARGIN
    return -(-int(mib + 0.999) // 16) * 16


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
    """A seam's name as a DNS label part; a long or altered one keeps a digest of the original, so
    two seams never map to one name."""
    name = NAME_OK.sub("-", text.lower()).strip("-") or "seam"
    if len(name) > MAX_SEAM_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = f"{name[: MAX_SEAM_NAME - 9].rstrip('-')}-{digest}"
    return name


def literal_secrets(text: str) -> list[str]:
    """The fields of a contract (as written) that hold a secret in clear: a password inside a DSN or
    URL, or a value of a password-like field that is not entirely `${VAR}` references. A `${VAR:-x}`
    default counts as written. Returned as "store 'oltp': field 'dsn'" paths, never the values."""
    from seamline.contract.secrets import SECRET_PROPERTY, secrets_in

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # the contract loader reports malformed YAML

    def as_written(value: str) -> str:
        # ${VAR} contributes nothing literal; ${VAR:-default} contributes its default
        return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-([^}]*))?\}", lambda m: m.group(1) or "", value)

    found: list[str] = []

    def walk(value: Any, where: list[str]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, [*where, str(k)])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*where[:-1], f"{where[-1]}[{i}]"] if where else [f"[{i}]"])
        elif isinstance(value, str):
            literal = as_written(value)
            field = where[-1] if where else ""
            if secrets_in(literal) or (SECRET_PROPERTY.search(field.split("[")[0]) and literal.strip()):
                found.append(_field_path(where))

    walk(doc, [])
    return found


def _field_path(where: list[str]) -> str:
    if len(where) >= 3 and where[0] == "stores":
        return f"store {where[1]!r}: field {'.'.join(where[2:])!r}"
    return f"field {'.'.join(where)!r}"


def check_no_literal_secrets(text: str, path: str) -> None:
    """Refuse (exit 2) a contract whose ConfigMap would carry a secret in clear."""
    fields = literal_secrets(text)
    if fields:
        raise ContractError(
            f"{path}: {'; '.join(fields)}: holds a literal secret, which the ConfigMap would show in clear; "
            "write it as ${VAR} (the rendered pods read every ${VAR} from the Secret) and render again"
        )


def _resources(rows_per_shard: int) -> dict[str, Any]:
    mib = memory_request_mib(rows_per_shard)
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


def _failure_policy(action: str, exit_codes: list[int]) -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": action,
                "onExitCodes": {"containerName": "seamline", "operator": "In", "values": exit_codes},
            },
            # a pod evicted or preempted did not fail: it does not count against the retries
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
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
        "--shard-attempts", str(opts.backoff_limit_per_index + 1),
    ]  # fmt: skip
    shard_job_spec = {
        "completionMode": "Indexed",
        "completions": opts.shards,
        "parallelism": parallelism,
        "backoffLimitPerIndex": opts.backoff_limit_per_index,
        "maxFailedIndexes": max(1, opts.shards // 10) if opts.shards > 1 else 1,
        # bad input fails the index at once; a store unavailable (3) is retried
        "podFailurePolicy": _failure_policy("FailIndex", [EXIT_BAD_INPUT]),
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
        # drift (1) is the answer and bad input (2) will not change: neither is retried
        "podFailurePolicy": _failure_policy("FailJob", [EXIT_DRIFT, EXIT_BAD_INPUT]),
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


# -- status ------------------------------------------------------------------------------------------


@dataclass
class ShardState:
    index: int
    state: str  # done, running, failed, retrying, pending
    attempts: int
    manifest: dict[str, Any] | None
    last_error: str | None

    @property
    def drift(self) -> int | None:
        if self.manifest is None:
            return None
        return sum(self.manifest["counts"].get(k, 0) for k in ("missing", "extra", "changed", "duplicate"))

    @property
    def rows_per_second(self) -> float | None:
        if self.manifest is None or not self.manifest.get("seconds"):
            return None
        return float(self.manifest["counts"]["source_rows"]) / float(self.manifest["seconds"])


@dataclass
class RunStatus:
    job: str
    namespace: str
    seam: str
    run_id: str
    shards: int
    job_state: str
    states: list[ShardState]
    report: dict[str, Any] | None
    outputs_note: str | None = None

    def count(self, state: str) -> int:
        return sum(1 for s in self.states if s.state == state)

    def render(self) -> str:
        lines = [
            f"job {self.job} (namespace {self.namespace}): seam {self.seam!r}, run {self.run_id}, "
            f"{self.shards} shards, job {self.job_state}",
            f"{'shard':>5}  {'state':<9} {'attempts':>8} {'source rows':>12} {'target rows':>12} "
            f"{'rows/s':>10} {'drift':>7}",
        ]
        for s in self.states:
            m = s.manifest
            nums = (
                (f"{m['counts']['source_rows']:,}", f"{m['counts']['target_rows']:,}",
                 f"{s.rows_per_second or 0:,.0f}", f"{s.drift:,}")
                if m else ("-", "-", "-", "-")
            )  # fmt: skip
            line = (
                f"{s.index:>5}  {s.state:<9} {s.attempts:>8} "
                f"{nums[0]:>12} {nums[1]:>12} {nums[2]:>10} {nums[3]:>7}"
            )
            if s.last_error and s.state != "done":
                line += f"  last error: {s.last_error}"
            lines.append(line)
        done = [s for s in self.states if s.manifest]
        rows = sum(s.manifest["counts"]["source_rows"] for s in done if s.manifest)
        slowest = max((float(s.manifest.get("seconds") or 0) for s in done if s.manifest), default=0.0)
        kinds = {k: sum(s.manifest["counts"].get(k, 0) for s in done if s.manifest) for k in
                 ("missing", "extra", "changed", "duplicate")}  # fmt: skip
        rate = f" at {rows / slowest:,.0f} rows/s" if slowest else ""
        lines.append(
            f"so far: {self.count('done')} of {self.shards} shards done, {self.count('running')} running, "
            f"{self.count('failed')} failed, {self.count('retrying')} retrying, "
            f"{self.count('pending')} pending; "
            f"{rows:,} source rows{rate}; drift {sum(kinds.values()):,} "
            f"({', '.join(f'{k} {v:,}' for k, v in kinds.items())})"
        )
        if self.report is not None:
            verdict = "clean" if self.report.get("clean") else "drift"
            lines.append(f"merge: done, {verdict} (exit {self.report.get('exit_code')})")
        else:
            lines.append("merge: no report yet")
        if self.outputs_note:
            lines.append(f"note: {self.outputs_note}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "namespace": self.namespace,
            "seam": self.seam,
            "run_id": self.run_id,
            "shards": self.shards,
            "job_state": self.job_state,
            "shard_states": [
                {
                    "shard": s.index,
                    "state": s.state,
                    "attempts": s.attempts,
                    "drift": s.drift,
                    "rows_per_second": s.rows_per_second,
                    "last_error": s.last_error,
                    "counts": s.manifest["counts"] if s.manifest else None,
                }
                for s in self.states
            ],  # fmt: skip
            "merge_report": self.report is not None,
        }


def _indexes(text: str | None) -> set[int]:
    """A Job's index set ("0,2-4") as numbers."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if "-" in part:
            a, b = part.split("-")
            out |= set(range(int(a), int(b) + 1))
        elif part.strip():
            out.add(int(part))
    return out


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def _job_state(job: Any) -> str:
    for c in job.status.conditions or []:
        if c.status == "True" and c.type in ("Complete", "Failed", "Suspended"):
            return c.type + (f" ({c.reason})" if c.reason and c.type == "Failed" else "")
    return "Running"


def status(job_name: str, *, namespace: str | None = None, kubeconfig: str | None = None) -> RunStatus:
    """The state of each shard of a run: from the shard Job and its pods (API server) and from what
    the shards wrote under the output URI."""
    from seamline import shard
    from seamline.exceptions import NotFoundError, StoreUnavailableError

    try:
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
    except ImportError:
        raise InvalidInputError(
            "`seamline k8s status` needs the Kubernetes client: pip install 'seamline[k8s]'"
        ) from None
    try:
        config.load_kube_config(config_file=kubeconfig)
        if namespace is None:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = active.get("context", {}).get("namespace") or "default"
    except Exception as e:  # noqa: BLE001 - any unreadable kubeconfig is bad input
        raise InvalidInputError(f"kubeconfig: {' '.join(str(e).split())}") from e
    batch: Any = client.BatchV1Api()
    core: Any = client.CoreV1Api()
    host = client.Configuration.get_default_copy().host
    try:
        job = batch.read_namespaced_job(job_name, namespace)
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
        ).items
        volumes = job.spec.template.spec.volumes or []
        cm_name = next((v.config_map.name for v in volumes if v.config_map is not None), None)
        contract_text = None
        if cm_name:
            try:
                contract_text = core.read_namespaced_config_map(cm_name, namespace).data.get("contract.yaml")
            except ApiException as e:
                if e.status != 404:
                    raise
    except ApiException as e:
        if e.status == 404:
            raise NotFoundError(f"job {job_name!r} not found in namespace {namespace!r}") from None
        raise StoreUnavailableError(f"kubernetes API at {host}: {e.status} {e.reason}") from None
    except Exception as e:  # noqa: BLE001 - the API server unreachable
        raise StoreUnavailableError(f"kubernetes API at {host}: {' '.join(str(e).split())[:200]}") from None
    args = list(job.spec.template.spec.containers[0].args or [])
    seam, uri = _arg(args, "--seam"), _arg(args, "--output-uri")
    if seam is None or uri is None or job.spec.completion_mode != "Indexed":
        raise InvalidInputError(f"job {job_name!r} is not the shard Job of a seamline run")
    count = int(job.spec.completions)
    rid = run_id_from_job_name(job_name)
    by_index: dict[int, list[Any]] = {}
    for p in pods:
        ann = p.metadata.annotations or {}
        if "batch.kubernetes.io/job-completion-index" in ann:
            by_index.setdefault(int(ann["batch.kubernetes.io/job-completion-index"]), []).append(p)
    completed, failed = _indexes(job.status.completed_indexes), _indexes(job.status.failed_indexes)
    manifests: dict[int, dict[str, Any]] = {}
    fails: dict[int, list[dict[str, Any]]] = {}
    report, note = None, None
    try:
        cid = shard.contract_id(contract_text) if contract_text is not None else None
        ref = (
            shard.find_run(uri, seam=seam, contract=cid, run_id=rid)
            if cid is None
            else shard.RunRef(uri, seam, cid, rid)
        )
        for i in range(count):
            m = shard.read_json(f"{ref.shard_dir(i, count)}/{shard.MANIFEST}")
            if m is not None:
                manifests[i] = m
        fails = shard.failures(ref, count)
        report = shard.read_json(f"{ref.folder}/{shard.REPORT}")
    except NotFoundError:
        note = f"nothing written under {uri} for this run yet"
    except Exception as e:  # noqa: BLE001 - outputs unreadable from here: show the Job's view
        note = f"shard outputs at {uri} not readable from here ({' '.join(str(e).split())[:160]})"
    states = []
    for i in range(count):
        tried = by_index.get(i, [])
        active = any(
            p.status.phase in ("Pending", "Running") and not p.metadata.deletion_timestamp for p in tried
        )
        attempts = max(len(tried), len(fails.get(i, [])) + (1 if active or i in manifests else 0))
        if i in manifests or i in completed:
            state = "done"
        elif i in failed:
            state = "failed"
        elif active:
            state = "running"
        elif tried or fails.get(i):
            state = "retrying"
        else:
            state = "pending"
        last = fails[i][-1]["error"] if fails.get(i) else None
        states.append(ShardState(i, state, attempts, manifests.get(i), last))
    return RunStatus(job_name, namespace, seam, rid, count, _job_state(job), states, report, note)
