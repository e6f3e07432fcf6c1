"""The process's malloc policy, in one place: mallopt is process-wide and the last call wins, so the
engine (every reconcile) and the stream store (a Kafka read outside a reconcile) both set it here.
It sits under every layer (imports nothing of seamline)."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

import pyarrow as pa

# glibc's mallopt parameters, and the policy in force (set only by set_malloc_policy)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MALLOC_POLICY: list[str] = []


@functools.cache
def set_malloc_policy(workload: str) -> None:
    """The process's malloc policy, set here and nowhere else (glibc only; once per workload).
    mallopt is process-wide and the last call wins, so every caller comes through this function.

    ``reconcile`` (every Engine): freed large blocks go back to the OS. glibc raises its mmap
    threshold (up to 32 MiB) each time an mmapped block is freed; blocks below the threshold then
    come from malloc arenas, which keep freed memory resident. Every pass frees its leaf
    accumulators, batches and collected rows, so without a fixed threshold the resident set grows
    pass after pass (measured, 5M rows per side: peak 281 MB with the dynamic threshold, 208 MB
    with one fixed at 128 KiB; benches/bench_memory.py).

    ``stream`` (a Kafka topic read by the Rust reader outside a reconcile): freed memory stays with
    the process (blocks up to 32 MiB from the arenas, 64 MiB kept free per arena). librdkafka and
    the reader allocate a fetch buffer, a decompressed batch and a message batch on one thread and
    free them on another, megabytes at a time; handed back to the kernel, each comes back as fresh
    pages it must zero (a fifth of an events read's CPU against glibc's defaults on a quiet machine,
    docs/benchmarks-history.md). Against the reconcile's policy, on a loaded machine (load 7-9, 5M
    events, interleaved): fold CPU 7.23 vs 7.10 s, events 13.5 vs 13.1 s, within the noise; the
    reader's memory is bounded by its prefetch and batch sizes either way.

    A reconcile's policy wins: set once, a later stream read keeps it (the reconcile's passes
    must not hold freed memory), and it replaces a stream policy set before it."""
    if workload not in ("reconcile", "stream"):
        raise ValueError(f"unknown workload {workload!r}")
    if "reconcile" in _MALLOC_POLICY:
        return
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
        if workload == "stream":
            mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            mallopt(_M_TRIM_THRESHOLD, 64 << 20)
        else:
            mallopt(_M_MMAP_THRESHOLD, 128 << 10)
            mallopt(_M_TRIM_THRESHOLD, 128 << 10)  # glibc's default, should a stream have raised it
    except (OSError, AttributeError):
        return
    _MALLOC_POLICY.append(workload)
    if workload == "stream":
        return
    # pyarrow's bundled mimalloc keeps freed pages resident too: the copies made while the result
    # is built (group tables, the sort, the polars conversion) would stay in the resident set.
    # The system allocator, with the threshold above, returns them (1M rows, 100k differences: peak
    # 290 -> 260 MB). Not when the user chose a pool (pyarrow's ARROW_DEFAULT_MEMORY_POOL).
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
