"""The default parallelism is the cores this process may use, not the machine's.

A Kubernetes pod limited to 2 CPUs on a 32-core node sees os.cpu_count() == 32; a reconcile sized
by that count would open 16 reader streams per side, each with batches in flight, to take turns on
2 CPUs, over the memory its pod was sized for. `Options().parallelism` follows the CPU
affinity and the cgroup's CPU quota (v1 `cpu.cfs_quota_us` or v2 `cpu.max`), which is what the
pod's `limits.cpu` sets. Both are checked here on real kernels' mechanisms, in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PROBE = (
    "import json, os, seamline as sl; from seamline import _core; "
    "print(json.dumps([_core.available_cores(), sl.Options().parallelism, os.cpu_count()]))"
)


def probe(preexec: Callable[[], None] | None = None) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, preexec_fn=preexec
    )
    return [int(n) for n in out.stdout.strip().strip("[]").split(",")]


def test_without_limits_every_core_is_used() -> None:
    cores, parallelism, count = probe()
    assert cores == parallelism == len(os.sched_getaffinity(0))
    assert count == os.cpu_count()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to pin to fewer")
def test_the_cpu_affinity_bounds_the_default_parallelism() -> None:
    cores, parallelism, count = probe(lambda: os.sched_setaffinity(0, {0}))
    assert (cores, parallelism) == (1, 1)
    assert count == os.cpu_count() and count >= 2  # what os.cpu_count() would have given


def _controls_cpu(unified: Path) -> bool:
    control = unified / "cgroup.subtree_control"
    return control.exists() and "cpu" in control.read_text().split()


@contextmanager
def one_cpu_quota() -> Iterator[Path]:
    """A cgroup whose CPU quota is one core (v1 cpu controller, else v2), removed afterwards."""
    name = f"seamline-test-{uuid.uuid4().hex[:8]}"
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    if (v1 / "cpu.cfs_quota_us").exists():
        group = v1 / name
        settings = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"}
    elif _controls_cpu(v2):
        group = v2 / name
        settings = {"cpu.max": "100000 100000"}
    else:
        pytest.skip("no cgroup cpu controller to set a quota in")
    try:
        group.mkdir()
    except OSError as e:
        pytest.skip(f"cannot make a cgroup here ({e})")
    try:
        for file, value in settings.items():
            (group / file).write_text(value)
        yield group
    finally:
        group.rmdir()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for a quota below them")
def test_a_cgroup_cpu_quota_bounds_the_default_parallelism() -> None:
    with one_cpu_quota() as group:
        procs = group / "cgroup.procs"
        cores, parallelism, count = probe(lambda: procs.write_text(str(os.getpid())))
    assert (cores, parallelism) == (1, 1)
    assert count == os.cpu_count() and count >= 2
