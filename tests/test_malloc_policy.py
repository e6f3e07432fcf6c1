"""The process's malloc policy (seamline.malloc_policy): one place sets it, per workload, and a
reconcile's policy wins over a stream read's whichever comes first. Each case runs in a fresh
process: the policy is process-wide and set once per workload."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _policy_after(calls: list[str]) -> list[str]:
    code = (
        "from seamline import malloc_policy\n"
        f"for w in {calls!r}:\n"
        "    malloc_policy.set_malloc_policy(w)\n"
        "print(','.join(malloc_policy._MALLOC_POLICY))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [w for w in out.stdout.strip().split(",") if w]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_reconcile_policy_wins_whichever_comes_first() -> None:
    assert _policy_after(["stream"]) == ["stream"]
    assert _policy_after(["stream", "reconcile", "stream"]) == ["stream", "reconcile"]
    assert _policy_after(["reconcile", "stream"]) == ["reconcile"]


def test_an_unknown_workload_is_refused() -> None:
    from seamline.malloc_policy import set_malloc_policy

    with pytest.raises(ValueError, match="unknown workload"):
        set_malloc_policy("batch")
