"""A stand-in kubelet for the kwok node of the test control plane (scripts/k8s.sh).

kwok plays the node and moves pods to Running; nothing runs their containers. `Kubelet` does, the
way a kubelet would for this project's image (ENTRYPOINT seamline): for each pod the controllers
created on the node, it runs the container's own command and arguments as a local process, with the
environment resolved from the pod spec (values, `$(VAR)` references, Secret and ConfigMap keys read
from the API server, downward-API fields such as the completion index the Job controller set), the
ConfigMap volumes' files and emptyDirs at temporary paths (mount paths in arguments and values are
mapped to them), then patches the pod's status from the exit code: Succeeded or Failed, with the
container's terminated state, as the Job controller expects from a kubelet.

Faults are injected per pod (`faults`): extra environment for chosen indexes and attempts, e.g. a
store address nothing listens on; `hold` delays a pod until a condition holds.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

# The image's ENTRYPOINT (Dockerfile): the seamline console script, here the one of this venv.
IMAGE_ENTRYPOINT = [str(Path(sys.executable).parent / "seamline")]
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
FAILURES_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"


@dataclass
class PodRun:
    """One container run: what the kubelet stand-in started and how it ended."""

    pod: str
    job: str
    component: str
    index: int | None
    attempt: int
    argv: list[str]
    started: float
    finished: float | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""


@dataclass
class Kubelet:
    api: client.ApiClient
    namespace: str
    node: str
    workdir: Path
    slots: int = 4
    faults: Callable[[Any], dict[str, str]] = lambda pod: {}
    hold: Callable[[Any], bool] = lambda pod: False
    runs: list[PodRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._loop = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Kubelet:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._loop.join(timeout=10)
        with self._lock:
            for p in self._procs:  # a kubelet going away takes its containers with it
                if p.poll() is None:
                    p.kill()
        for t in self._threads:
            t.join(timeout=60)

    # -- the loop ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(
                self.namespace, field_selector=f"spec.nodeName={self.node}"
            ).items
            for pod in pods:
                name = pod.metadata.name
                if name in self._seen or pod.metadata.deletion_timestamp:
                    continue
                # start once kwok has made it Running (IP assigned): after that kwok leaves its
                # status to us, as the pod-ready stage matches only pods without an IP
                if pod.status.phase != "Running" or not pod.status.pod_ip:
                    continue
                self._seen.add(name)
                t = threading.Thread(target=self._run_pod, args=(pod,), daemon=True)
                self._threads.append(t)
                t.start()
            self._stop.wait(0.3)

    def _run_pod(self, pod: Any) -> None:
        while self.hold(pod) and not self._stop.is_set():
            time.sleep(0.3)
        with self._slots:
            self._execute(pod)

    # -- one pod -------------------------------------------------------------------------------

    def _execute(self, pod: Any) -> None:
        meta, spec = pod.metadata, pod.spec
        (container,) = spec.containers
        ann, labels = meta.annotations or {}, meta.labels or {}
        root = Path(tempfile.mkdtemp(prefix=f"{meta.name}-", dir=self.workdir))
        mounts = self._volumes(pod, container, root)
        env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}  # image ENV
        for var in container.env or []:
            env[var.name] = self._env_value(pod, var, env)
        env = {k: _remap(v, mounts) for k, v in env.items()}
        env |= self.faults(pod)
        argv = (container.command or IMAGE_ENTRYPOINT) + [
            _remap(_expand(a, env), mounts) for a in container.args or []
        ]
        run = PodRun(
            pod=meta.name,
            job=labels.get("batch.kubernetes.io/job-name", ""),
            component=labels.get("app.kubernetes.io/component", ""),
            index=int(ann[INDEX_ANNOTATION]) if INDEX_ANNOTATION in ann else None,
            attempt=int(ann.get(FAILURES_ANNOTATION, "0")),
            argv=argv,
            started=time.time(),
        )
        with self._lock:
            self.runs.append(run)
        started = _now()
        proc = subprocess.Popen(
            argv, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with self._lock:
            self._procs.append(proc)
        if self._stop.is_set():
            proc.kill()
        run.stdout, run.stderr = proc.communicate(timeout=900)
        run.exit_code = proc.returncode
        if self._stop.is_set():
            return
        run.finished = time.time()
        terminated = {
            "exitCode": proc.returncode,
            "reason": "Completed" if proc.returncode == 0 else "Error",
            "startedAt": started,
            "finishedAt": _now(),
        }
        self.core.patch_namespaced_pod_status(
            meta.name,
            self.namespace,
            {
                "status": {
                    "phase": "Succeeded" if proc.returncode == 0 else "Failed",
                    "conditions": [
                        {"type": "Ready", "status": "False", "reason": "PodCompleted"},
                        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted"},
                    ],
                    "containerStatuses": [
                        {
                            "name": container.name,
                            "image": container.image,
                            "imageID": "",
                            "ready": False,
                            "started": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            },
        )

    def _volumes(self, pod: Any, container: Any, root: Path) -> dict[str, str]:
        """Materialise the pod's volumes under `root`; returns mount path -> local path."""
        local: dict[str, Path] = {}
        for vol in pod.spec.volumes or []:
            path = root / "volumes" / vol.name
            path.mkdir(parents=True)
            if vol.config_map is not None:
                cm = self.core.read_namespaced_config_map(vol.config_map.name, self.namespace)
                items = {i.key: i.path for i in vol.config_map.items or []} or {k: k for k in cm.data or {}}
                for key, rel in items.items():
                    (path / rel).write_text(cm.data[key])
            elif vol.secret is not None:
                sec = self.core.read_namespaced_secret(vol.secret.secret_name, self.namespace)
                for key, value in (sec.data or {}).items():
                    (path / key).write_bytes(base64.b64decode(value))
            elif vol.empty_dir is None:
                raise AssertionError(f"volume {vol.name}: only configMap, secret and emptyDir are run here")
            local[vol.name] = path
        return {m.mount_path: str(local[m.name]) for m in container.volume_mounts or []}

    def _env_value(self, pod: Any, var: Any, env: dict[str, str]) -> str:
        if var.value_from is None:
            return _expand(var.value or "", env)
        src = var.value_from
        if src.secret_key_ref is not None:
            ref = src.secret_key_ref
            data = self.core.read_namespaced_secret(ref.name, self.namespace).data or {}
            return base64.b64decode(data[ref.key]).decode()
        if src.config_map_key_ref is not None:
            ref = src.config_map_key_ref
            return str(self.core.read_namespaced_config_map(ref.name, self.namespace).data[ref.key])
        if src.field_ref is not None:
            return _field(pod, src.field_ref.field_path)
        raise AssertionError(f"env {var.name}: unsupported source {src}")

    # -- queries for tests ---------------------------------------------------------------------

    def runs_of(self, component: str) -> list[PodRun]:
        with self._lock:
            return sorted((r for r in self.runs if r.component == component), key=lambda r: r.started)


def _field(pod: Any, path: str) -> str:
    """A downward-API field path, as the kubelet resolves it."""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((getattr(pod.metadata, m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": pod.status.pod_ip,
        "status.hostIP": pod.status.host_ip,
    }
    if path not in simple:
        raise AssertionError(f"fieldRef {path}: not supported by the test kubelet")
    return str(simple[path] or "")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion ($$ escapes); unknown references stay as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def _remap(text: str, mounts: dict[str, str]) -> str:
    """A path under a mount point, moved to where that volume lives locally."""
    for mount in sorted(mounts, key=len, reverse=True):
        if text == mount or text.startswith(mount.rstrip("/") + "/"):
            return mounts[mount] + text[len(mount) :]
    return text


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
