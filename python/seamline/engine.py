"""The reconcile algorithm (DESIGN.md 3.2-3.3), driving store adapters and the native core.

1. Cut the key space into ranges at boundaries sampled from the source; each range is split into
   2^bits leaves by key-digest prefix.
2. Hash pass: both sides stream every row once into leaf summaries (memory O(leaves)).
3. Compare the two merkle trees; coalesce the mismatched leaves into key ranges.
4. While the rows under the mismatched leaves exceed the memory budget, refine those leaves
   (16 children each, only their ranges re-read) and compare again.
5. Diff: fetch the mismatched ranges again (pushed down to the store), keep only the rows of
   mismatched leaves, and classify each differing key. Leaves are diffed in groups that fit the
   budget, so many differences never make one huge in-memory join. A side whose re-read costs a
   fetch per document (OpenSearch) and fits Options.retain_bytes is replayed from the batches its
   hash pass kept instead.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, overload

import pyarrow as pa

from seamline import _core
from seamline.compare import Integer
from seamline.exceptions import (
    InvalidInputError,
    NotFoundError,
    SchemaError,
    SeamlineError,
    StoreUnavailableError,
    ValueParseError,
)
from seamline.malloc_policy import set_malloc_policy
from seamline.seam import SeamColumns
from seamline.stores.protocols import (
    KeyRange,
    Replayable,
    RowFetchPushdown,
    RowSeekPushdown,
    ScanRequest,
    Source,
)

ROWS_PER_PUSHED_RANGE = 32
# The same where a side fetches every row of a re-read range again (RowFetchPushdown, OpenSearch):
# finer ranges, fewer documents fetched for each mismatched leaf. Postgres -> OpenSearch, 1M
# documents, 0.2% drift, a fresh process per run, interleaved: 32 -> 4 rows a range took the
# documents the diff fetched from 31,772 to 7,686, its target pass 0.81-1.13 -> 0.29-0.55 s and the
# node's CPU 3.6-5.3 -> 2.8-4.3 s, the process's CPU unchanged, +23 MB of peak (139 -> 162); 2 rows
# halved the documents again for no time and +60 MB.
ROWS_PER_REFETCHED_RANGE = 4
# Finer where both sides read only a re-read range's rows (RowSeekPushdown: Postgres): a mismatched
# range is read again whole, so halving its rows halves what the diff re-reads. Postgres -> Postgres,
# 5M rows per side, 0.2% drift, a fresh process per run, 3 interleaved pairs: 32 -> 16 rows a range
# took the rows re-read per side from 316k to 160k, the diff 0.48-0.68 -> 0.30-0.32 s a side, the
# run 1.22-1.28x -> 0.99-1.15x of the two COPYs, the process CPU 1.80-2.58 -> 1.66-2.11 s, +7-18 MB
# of peak. Up to MAX_PUSHED_RANGES like every pushed-down layout (each range is a leaf held in the
# pass, 48 bytes a side): at 20M rows 2^20 ranges instead of 2^19 took the rows re-read per side from
# 1.27M to 764k, the diff 2.0-2.2 -> 1.4 s and the run 12.6-12.7 -> 11.9-12.0 s (2 interleaved
# pairs), for +55-65 MB of peak (191 -> 245-256 MB): the peak a 50M-row run has anyway, since from
# 32M rows on 32-row ranges reach the cap too. Not where a side re-reads covering files (Iceberg;
# Postgres -> Iceberg, 1M rows, 2 pairs: no faster, +0.1 CPU-s). 16 -> 4 rows: the cap is reached at
# ~4.2M rows, so a pass holds the same 2^20 leaves from there on and the peak is flat from 5M rows
# (issue 13): 5M rows, 5 interleaved pairs, 2026-12-02: 138-154 -> 265-270 MB (20M and 50M: 256-261
# and 253-257 either way), the rows re-read per side 98.7k -> 46.3k, the run 5.94-7.89 -> 6.68-7.00 s
# and the reconcile's CPU +0.04 s on average (-0.16 to +0.19) once a key leaving its range is
# searched for forward from it (before that, binary searches over 2^20 bounds every ~5 rows: up
# to +0.56 CPU-s in 11 pairs; docs/benchmarks-history.md).
FINE_ROWS_PER_PUSHED_RANGE = 4
# Pushed-down ranges cut from the sample, at most. Finer ranges make the diff pass read fewer rows it
# then drops: at 20M rows per side (0.2% drift) 2^20 ranges took the diff pass from 6.3-6.5 s to
# 3.4-3.7 s against 2^18, and the peak from 240-249 to 218-219 MB (benches/bench_postgres.py tables).
MAX_PUSHED_RANGES = 1 << 20
REFINE_BITS = 4
MAX_REFINEMENTS = 4
TARGET_ROWS_PER_LEAF = 32
MAX_FANOUT_BITS = 22
# Leaves of a whole-side pass, at most: each costs 48 bytes per side (one accumulator a side) during
# the pass, so past ~32M rows leaves hold more rows instead of growing in number, and the refinement
# passes (which re-read only mismatched ranges) localise the drift. Memory stays flat in rows.
MAX_LEAVES = 1 << 20
# Parents refined in one pass, at most: 2^REFINE_BITS children each, accumulated densely.
REFINE_GROUP_LEAVES = 1 << 15


@dataclass
class Options:
    """Tuning knobs; the defaults suit tens of millions of rows on a small machine."""

    #: rows under mismatched leaves above which they are refined (re-hashed into 16 children each)
    #: before the diff. Not a memory bound (the diff runs in groups of diff_group_rows): a refinement
    #: reads those rows once more, which costs more than diffing them unless the drift is far larger
    #: (20M rows per side, 0.2% drift: 4M skipped a refinement that 1M made, 30.4 -> 23.1-29.6 s)
    diff_budget_rows: int = 4_000_000
    #: rows per side one diff group holds in memory at once (about 300 bytes each with their
    #: digests): larger diffs are read in several groups of consecutive leaves
    diff_group_rows: int = 100_000
    max_ranges: int = 256
    #: threads: readers and hashing workers (half each side while both sides are read at once). By
    #: default the cores this process may use, its cgroup's CPU quota included: in a pod limited to
    #: 2 CPUs on a 32-core node os.cpu_count() says 32 (16 reader streams a side on 2 CPUs)
    parallelism: int = field(default_factory=_core.available_cores)
    sample_size: int = 20_000
    #: explicit range boundaries (a table of key rows, source names) and leaf fan-out, instead of
    #: sampling the source: shards of one run must all use the same layout
    bounds: pa.Table | None = None
    fanout_bits: int | None = None
    #: (i, n): reconcile only slice i of n of the ranges (a shard of a scaled-out run)
    shard: tuple[int, int] | None = None
    #: bytes of a side's batches its hash pass keeps in memory for the passes after it, when the side
    #: fetches every document of a re-read range again (RowFetchPushdown: OpenSearch): the diff then
    #: reads the mismatched leaves' rows from memory, not from the node. A side that will not fit
    #: (judged from its first batch and its row count, else when it passes the budget) is not kept.
    #: Never in a shard of a scaled-out run (its pod is sized by rows). 0: never.
    retain_bytes: int = 256 << 20
    #: called about every 0.1 s while passes run with {"source": rows read, "target": rows read}
    #: by the running pass (never more than the side holds): live progress for a terminal
    on_progress: Callable[[dict[str, int]], None] | None = None


@dataclass
class PassStats:
    """One pass over one side: what was read and how long it took."""

    kind: str
    side: str
    rows: int
    seconds: float


# One diffed group: the source rows and the target rows the differences point at, and the
# differences (kind, source_row, target_row, columns, duplicate_side, occurrences; see
# `_core.classify`).
Diffs = tuple[pa.Table | None, pa.Table | None, pa.Table]


@dataclass
class EngineOutput:
    source_rows: int
    target_rows: int
    bounds: pa.Table | None
    partitioner: _core.Partitioner
    mismatched_leaves: list[int]
    diffs: list[Diffs]
    passes: list[PassStats]
    #: the first hash pass of both sides (what a shard ships to the merge)
    leafsets: tuple[_core.LeafSet, _core.LeafSet] | None = None
    #: a recheck's leaf sets (only the leaves it re-read): its merkle roots come from these
    root_sets: tuple[_core.LeafSet, _core.LeafSet] | None = None
    #: roots known without leaf sets (merged shards); else computed when first asked for
    known_roots: tuple[str, str] | None = None
    #: the mismatched key ranges, if already made; else made when first asked for
    known_ranges: list[KeyRange] | None = None

    @property
    def ranges(self) -> list[KeyRange]:
        """The mismatched leaves as key ranges, made on first use: a Python object per range (40k
        at 20M rows per side, 0.2% drift: ~0.1 s) that most callers never look at."""
        if self.known_ranges is None:
            bits = self.partitioner.fanout_bits
            self.known_ranges = key_ranges(self.mismatched_leaves, bits, _bound_tuples(self.bounds))
        return self.known_ranges

    @property
    def merkle_roots(self) -> tuple[str, str]:
        """Hex merkle roots of both sides, built on first use (building costs milliseconds per
        hundred thousand leaves, and most callers never ask)."""
        if self.known_roots is None:
            sets = self.root_sets or self.leafsets
            if sets is None:
                raise ValueError("this output has neither merkle roots nor leaf sets")
            self.known_roots = _core.merkle_roots(*sets)
        return self.known_roots


def _bounds(
    source: Source,
    seam: SeamColumns,
    opts: Options,
    fine: bool,
    leaf_fine: bool = False,
    seek_fine: bool = False,
) -> pa.Table | None:
    """Range boundaries from a cheap sample of the source's keys, in canonical key order.

    `fine`: the stores can push ranges down, so cut about ROWS_PER_PUSHED_RANGE rows per range
    (ROWS_PER_REFETCHED_RANGE when `leaf_fine`, FINE_ROWS_PER_PUSHED_RANGE when `seek_fine`; at most
    MAX_PUSHED_RANGES): scattered drift then marks only a fraction of the ranges, and only those are
    read again. A single integer key is cut between the sampled keys by interpolation (statistics
    give ~100 bounds)."""
    key_names = seam.key_names("source")
    rows = source.estimated_rows() or 0
    want = opts.max_ranges
    if fine:
        if leaf_fine:
            ranges = rows // ROWS_PER_REFETCHED_RANGE
        elif not seek_fine:
            ranges = rows // ROWS_PER_PUSHED_RANGE
        else:
            ranges = rows // FINE_ROWS_PER_PUSHED_RANGE
        want = max(want, min(MAX_PUSHED_RANGES, ranges))
    # ~16 samples per range place the quantiles well; more only costs time
    sample = source.sample_keys(key_names, min(opts.sample_size, max(1024, 16 * want)))
    if sample is None or sample.num_rows < 2:
        return None
    sample = sample.select(key_names)
    order = _core.sorted_unique_rows(sample, seam.key_spec("source"))
    if len(order) < 2:
        return None
    if want > len(order) and len(key_names) == 1 and isinstance(seam.logical[seam.key[0][0]], Integer):
        keys = sample.take(order)
        bounds = _interpolated(keys, want)
        # `leaf_fine`: pushed-down ranges as fine as the leaves. Ranges cut a little coarser than
        # `want` get 2 leaves each (a digest bit), and a store that fetches every document of a
        # re-read range (OpenSearch) then fetches twice the rows of the mismatched leaves. Cut 2^bits
        # times as many ranges instead, one leaf each: as many leaves (a pass's memory is
        # unchanged), half the documents fetched again. 1M documents, 0.2% drift: 62,932 -> 31,772
        # fetched, node CPU 1.07-1.19 -> 0.58-0.65 s. Not for stores that re-read covering spans
        # (Postgres, Iceberg): there the larger bounds table only costs the hash pass (5M rows per
        # side, 312k bounds instead of 155k: 3.91-3.93 -> 4.21-4.28 CPU s, the same rows re-read).
        # Never with a fan-out given in the options, nor for a source of unknown size.
        # (With ROWS_PER_REFETCHED_RANGE `want` is already finer than the leaves, so this only
        # acts where interpolation fell short; at the MAX_PUSHED_RANGES cap it cannot add ranges.)
        split = (
            _fanout_bits(rows, bounds.num_rows + 1)
            if fine and leaf_fine and rows and opts.fanout_bits is None
            else 0
        )
        finer = min(MAX_PUSHED_RANGES, want << split)
        if finer > want:
            bounds = _interpolated(keys, finer)
        return bounds
    ranges = min(want, len(order))
    # interior quantiles of the distinct sampled keys: ranges-1 boundaries
    positions = sorted({(i * len(order)) // ranges for i in range(1, ranges)})
    return sample.take([order[p] for p in positions])


def _interpolated(sorted_keys: pa.Table, want: int) -> pa.Table:
    """About `want` integer boundaries: the sampled keys, and evenly spaced points between them
    (statistics bounds are equi-depth, so rows are spread evenly within each gap). The keys are
    distinct and ascending, so the points are too: each gap's run stops short of the next key."""
    values = sorted_keys.column(0).to_pylist()
    per_gap = max(1, -(-want // (len(values) - 1)))
    kind = sorted_keys.schema.field(0).type
    column = _interpolated_numpy(values, per_gap, kind)
    if column is None:
        points: list[int] = []
        for a, b in zip(values, values[1:], strict=False):
            step = max(1, (b - a) // per_gap)
            points.extend(range(a, b, step))
        points.append(values[-1])
        column = pa.array(points, kind)
    return pa.table({sorted_keys.column_names[0]: column})


def _interpolated_numpy(values: list[int], per_gap: int, kind: pa.DataType) -> pa.Array | None:
    """`_interpolated`'s points computed by numpy, when it is installed (pyarrow then has already
    imported it) and the keys' span cannot overflow int64: 5-10x faster than building the Python
    list (20M rows: ~290 ms of CPU for 2^19 bounds). None: use the list."""
    if not -(1 << 62) <= values[0] <= values[-1] < (1 << 62):
        return None
    try:
        import numpy as np
    except ImportError:
        return None
    keys = np.asarray(values, dtype=np.int64)
    lo, gap = keys[:-1], np.diff(keys)
    step = np.maximum(1, gap // per_gap)
    count = -(-gap // step)  # len(range(lo, hi, step))
    first = np.cumsum(count) - count  # where each gap's points start
    at = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(first, count)
    points = np.ascontiguousarray(np.append(np.repeat(lo, count) + at * np.repeat(step, count), keys[-1]))
    # from the buffer: pa.array() of an ndarray imports numpy.ma to check for a masked array (~12-27
    # ms of a process's CPU)
    return pa.Array.from_buffers(pa.int64(), len(points), [None, pa.py_buffer(points)]).cast(kind)


def _fanout_bits(rows: int | None, num_ranges: int) -> int:
    """Digest-prefix bits per range: leaves of about TARGET_ROWS_PER_LEAF rows, about MAX_LEAVES at
    most (ranges counts are boundaries + 1: 2^18 + 1 ranges still get 2 bits under a 2^20 cap)."""
    cap = max(0, math.floor(math.log2(max(1.0, MAX_LEAVES / num_ranges)) + 1e-3))
    if not rows:
        return min(8, cap)
    leaves_per_range = max(1.0, rows / TARGET_ROWS_PER_LEAF / num_ranges)
    return min(MAX_FANOUT_BITS, cap, max(0, math.ceil(math.log2(leaves_per_range))))


class BoundRows(Sequence[tuple[Any, ...]]):
    """The range boundaries as key tuples, read from the Arrow table on demand: a quarter of a
    million boundaries as Python tuples would be ~25 MB held for the whole run, and only the
    boundaries of mismatched ranges are ever looked at."""

    def __init__(self, bounds: pa.Table | None):
        self._table = bounds
        self._len = bounds.num_rows if bounds is not None else 0

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[Any, ...]]: ...
    def __getitem__(self, i: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        if isinstance(i, slice):
            return self.take(list(range(*i.indices(self._len))))
        if not -self._len <= i < self._len:
            raise IndexError(i)
        return self.take([i % self._len])[0]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for start in range(0, self._len, 65_536):
            yield from self.take(range(start, min(self._len, start + 65_536)))

    def take(self, indices: Sequence[int]) -> list[tuple[Any, ...]]:
        """The boundaries at `indices`, converted in one go."""
        if self._table is None or not indices:
            return []
        rows = self._table.take(pa.array(indices, pa.int64()))
        cols = [rows.column(j).to_pylist() for j in range(rows.num_columns)]
        return list(zip(*cols, strict=True))


def _bound_tuples(bounds: pa.Table | None) -> BoundRows:
    return BoundRows(bounds)


def key_ranges(leaves: Sequence[int], fanout_bits: int, bounds: Sequence[tuple[Any, ...]]) -> list[KeyRange]:
    """Mismatched leaves -> half-open key ranges [lo, hi) between range boundaries."""
    runs = _core.coalesce_ranges(sorted(leaves), fanout_bits)
    if not runs:
        return []
    # Runs are ascending and never adjacent (next first >= last + 2), so the boundaries they need,
    # bounds[first - 1] and bounds[last] of each run in turn, are at strictly increasing indices:
    # only the first can be -1 (the first range: no lower bound) and only the last can be len(bounds)
    # (the last range: no upper bound). 20M rows per side, 40k runs: 190 -> 40 ms.
    wanted = [i for first, last in runs for i in (first - 1, last)]
    start = 1 if wanted[0] < 0 else 0
    end = len(wanted) - 1 if wanted[-1] >= len(bounds) else len(wanted)
    inner = wanted[start:end]
    taken = bounds.take(inner) if isinstance(bounds, BoundRows) else [bounds[i] for i in inner]
    edges: list[tuple[Any, ...] | None] = [None] * start + list(taken) + [None] * (len(wanted) - end)
    pairs = iter(edges)
    return [KeyRange(lo, hi) for lo, hi in zip(pairs, pairs, strict=True)]


class Engine:
    """One reconcile of one seam: holds both sides' specs and runs the passes."""

    def __init__(
        self, source: Source, target: Source, seam: SeamColumns, opts: Options, pushdown: dict[str, bool]
    ):
        set_malloc_policy("reconcile")
        self.sides = {"source": source, "target": target}
        self.seam = seam
        self.opts = opts
        self.pushdown = pushdown
        self.specs = {side: seam.spec(side) for side in self.sides}
        self.passes: list[PassStats] = []
        self.cancel = _core.CancelToken()
        self.rows_read = {side: _core.RowCounter() for side in self.sides}
        #: the leaf of every row of a side held in memory (read whole each time), remembered by its
        #: first hash pass so the diff pass need not hash every key again
        self.row_leaves = {
            side: _core.RowLeaves() if _replays(src) and not pushdown[side] else None
            for side, src in self.sides.items()
        }
        #: the batches of a side's first hash pass, kept for the passes after it (Options.retain_bytes)
        self.retained: dict[str, _core.RetainedBatches | None] = {side: None for side in self.sides}

    def _readers(self, ranges: list[KeyRange] | None) -> int:
        """Streams per side. A full read runs both sides at once, so each gets half the cores (more
        readers only contend with the hashing); a read of scattered ranges waits on lookups, so it
        gets them all. Measured on Postgres, 5M rows per side: 5.75 s vs 6.3 s for the hash pass."""
        if ranges is None:
            return max(1, self.opts.parallelism // 2)
        return self.opts.parallelism

    def _workers(self) -> int:
        """Hashing threads per side. Both sides' passes run at once (`_both`), so each gets half the
        cores: more threads would only take turns on them, each with its own leaf accumulator."""
        return max(1, self.opts.parallelism // 2)

    def _streams(self, side: str, ranges: list[KeyRange] | None) -> list[Any]:
        kept = self.retained[side]
        if kept is not None and (replay := kept.streams()) is not None:
            # the side as its first pass read it: every later pass filters by leaf, so the ranges
            # (which only spare the store work) are not needed
            return replay
        pushed = ranges if self.pushdown[side] else None
        # a side read whole is read the same way every time: its remembered leaves then line up
        readers = self._readers(pushed if self.row_leaves[side] is not None else ranges)
        request = ScanRequest(
            columns=self.seam.names(side),
            key=self.seam.key_names(side),
            ranges=pushed,
            parallelism=readers,
        )
        return self.sides[side].open(request)

    def _hash(
        self,
        side: str,
        p: _core.Partitioner,
        parents: list[int] | None,
        shift: int,
        ranges: list[KeyRange] | None,
        opened: dict[str, list[Any]] | None = None,
    ) -> _core.LeafSet:
        started = time.perf_counter()
        with _adapter_errors():
            streams = opened.pop(side) if opened and side in opened else self._streams(side, ranges)
            retain = self._retain(side)
            leaves = _core.hash_pass(
                streams,
                self.specs[side],
                p,
                parents,
                shift,
                self.cancel,
                self.rows_read[side],
                remember=self.row_leaves[side] if parents is None else None,
                workers=self._workers(),
                retain=retain,
            )
        if retain is not None and not retain.complete:
            self.row_leaves[side] = None  # remembered for a replay that will not come
        kind = "hash" if parents is None else "refine"
        self.passes.append(PassStats(kind, side, leaves.total_rows, time.perf_counter() - started))
        return leaves

    def _retain(self, side: str) -> _core.RetainedBatches | None:
        """Where the side's first pass keeps its batches (Options.retain_bytes), else None."""
        opts, src = self.opts, self.sides[side]
        if self.retained[side] is not None or opts.retain_bytes <= 0 or opts.shard is not None:
            return None  # kept once, and never in a shard (its pod is sized by rows)
        if not _refetches_each_row(src):
            return None
        expected = src.estimated_rows()
        kept = _core.RetainedBatches(opts.retain_bytes, expected)
        self.retained[side] = kept
        # The leaf of every row too (4 bytes a row), so the replays pick the mismatched leaves' rows
        # without hashing every key again (1M documents: ~0.05 CPU-s a pass); only where that costs
        # an eighth of the budget at most, which is all it costs if the batches turn out not to fit.
        if expected is not None and expected * 4 * 8 <= opts.retain_bytes:
            self.row_leaves[side] = _core.RowLeaves()
        return kept

    def _collect(
        self, side: str, p: _core.Partitioner, leaves: list[int], ranges: list[KeyRange]
    ) -> _core.Collected:
        started = time.perf_counter()
        with _adapter_errors():
            collected = _core.collect_pass(
                self._streams(side, ranges),
                self.specs[side],
                p,
                leaves,
                0,
                self.cancel,
                self.rows_read[side],
                known=self.row_leaves[side],
                workers=self._workers(),
            )
        self.passes.append(PassStats("diff", side, collected.num_rows, time.perf_counter() - started))
        return collected

    def _both(self, work: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
        """Run `work` for both sides at once: the native passes release the GIL, and a store's
        latency on one side overlaps with hashing on the other."""
        # each pass counts from zero: a live counter summing passes would pass the side's total
        self.rows_read = {side: _core.RowCounter() for side in self.sides}
        with ThreadPoolExecutor(max_workers=2) as pool:
            a, b = pool.submit(work, "source", *args), pool.submit(work, "target", *args)
            try:
                # timed waits: the OS may deliver SIGINT to any thread, and only a main thread that
                # wakes up runs Python's handler
                while wait([a, b], timeout=0.1).not_done:
                    if self.opts.on_progress is not None:
                        self.opts.on_progress({side: c.value for side, c in self.rows_read.items()})
                return a.result(), b.result()
            except BaseException:
                # Ctrl-C reaches only this thread: stop the native passes on the pool's threads too
                self.cancel.cancel()
                wait([a, b])
                raise

    def _diff(
        self, p: _core.Partitioner, leaves: list[int], sizes: list[int], bounds: Sequence[tuple[Any, ...]]
    ) -> list[Diffs]:
        """Row diff of the given leaves, in groups whose rows fit the budget."""
        diffs = []
        for group in _groups(leaves, sizes, min(self.opts.diff_budget_rows, self.opts.diff_group_rows)):
            ranges = key_ranges(group, p.fanout_bits, bounds)
            a, b = self._both(self._collect, p, group, ranges)
            src_rows, dst_rows, found = _core.classify(a, b, len(self.seam.values))
            # a group's collected rows (digests and values, ~300 bytes a row a side) go before the
            # next group is read: only the differences' rows stay, so the pass is bounded by one group
            del a, b
            if found.num_rows:
                diffs.append((src_rows, dst_rows, found))
        return diffs

    def recheck(self, previous: EngineOutput) -> EngineOutput:
        """Hash and, where still needed, diff again only the leaves that differed last time (after a
        repair, or once the grace period of in-flight changes is over)."""
        p, leaves = previous.partitioner, previous.mismatched_leaves
        bounds = _bound_tuples(previous.bounds)
        ranges = key_ranges(leaves, p.fanout_bits, bounds)
        src, dst = self._both(self._hash, p, leaves, 0, ranges)
        still, sizes = src.mismatched_sizes(dst)
        return EngineOutput(
            source_rows=src.total_rows,
            target_rows=dst.total_rows,
            bounds=previous.bounds,
            partitioner=p,
            mismatched_leaves=still,
            diffs=self._diff(p, still, sizes, bounds),
            passes=self.passes,
            root_sets=(src, dst),
        )

    def layout(self) -> tuple[pa.Table | None, int]:
        """Range boundaries and leaf fan-out: given in the options, or sampled from the source."""
        source = self.sides["source"]
        bounds = self.opts.bounds
        if bounds is None:
            fine = self.pushdown["source"] and self.pushdown["target"]
            leaf_fine = any(_refetches_each_row(side) for side in self.sides.values())
            seek_fine = all(
                isinstance(side, RowSeekPushdown) and side.seeks_range_rows(self.seam.key_names(name))
                for name, side in self.sides.items()
            )
            bounds = _bounds(source, self.seam, self.opts, fine, leaf_fine, seek_fine)
        bits = self.opts.fanout_bits
        if bits is None:
            bits = _fanout_bits(source.estimated_rows(), (bounds.num_rows if bounds is not None else 0) + 1)
        return bounds, bits

    def _open_target_early(self) -> Future[list[Any]] | None:
        """A full read's target streams do not depend on the layout: open them on a thread while
        the source is sampled and the bounds are cut, so the target store starts reading (an
        OpenSearch stream's PIT, aggregation and first pages: ~0.07-0.09 s at 1M documents)."""
        if self.opts.shard is not None:
            return None

        def opened() -> list[Any]:
            with _adapter_errors():
                return self._streams("target", None)

        pool = ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(opened)
        finally:
            pool.shutdown(wait=False)  # the open runs on; its thread ends with it

    def run(self) -> EngineOutput:
        early = self._open_target_early()
        try:
            bounds, bits = self.layout()
            bound_values = _bound_tuples(bounds)
            num_ranges = len(bound_values) + 1
            p = _core.Partitioner(self.seam.key_spec("source"), bounds, bits)
        except BaseException:
            if early is not None:
                wait([early])
            raise
        if early is not None:
            src, dst = self._both(self._hash, p, None, 0, None, {"target": early.result()})
        else:
            # this shard's slice of the ranges: read only its key range, count only its leaves
            assert self.opts.shard is not None
            i, n = self.opts.shard
            first, end = i * num_ranges // n, (i + 1) * num_ranges // n
            mine = list(range(first, end))
            span = [
                KeyRange(
                    bound_values[first - 1] if first > 0 else None,
                    bound_values[end - 1] if end < num_ranges else None,
                )
            ]
            src, dst = self._both(self._hash, p, mine, p.fanout_bits, span if mine else [])
        # A shard ships its leaf sets to the merge; otherwise only their roots are ever asked for:
        # take them now and let the sets go (48 bytes a leaf a side, up to MAX_LEAVES)
        leafsets = (src, dst) if self.opts.shard is not None else None
        roots = None if leafsets is not None else _core.merkle_roots(src, dst)
        totals = (src.total_rows, dst.total_rows)
        mismatched, sizes = src.mismatched_sizes(dst)
        del src, dst
        for _ in range(MAX_REFINEMENTS):
            if sum(sizes) <= self.opts.diff_budget_rows or not mismatched:
                break
            finer = p.refined(REFINE_BITS)
            refined: list[int] = []
            refined_sizes: list[int] = []
            # in groups of parents: a group's children are what a refinement holds in memory
            for start in range(0, len(mismatched), REFINE_GROUP_LEAVES):
                group = mismatched[start : start + REFINE_GROUP_LEAVES]
                ranges = key_ranges(group, p.fanout_bits, bound_values)
                a, b = self._both(self._hash, finer, group, REFINE_BITS, ranges)
                found, found_sizes = a.mismatched_sizes(b)
                refined += found
                refined_sizes += found_sizes
                del a, b
            p, mismatched, improved = finer, refined, sum(refined_sizes) < sum(sizes) / 2
            sizes = refined_sizes
            if not improved:  # dense drift: finer leaves no longer narrow it down
                break

        diffs = self._diff(p, mismatched, sizes, bound_values)
        return EngineOutput(
            source_rows=totals[0],
            target_rows=totals[1],
            bounds=bounds,
            partitioner=p,
            mismatched_leaves=mismatched,
            diffs=diffs,
            passes=self.passes,
            leafsets=leafsets,
            known_roots=roots,
        )


def _groups(leaves: list[int], sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups of leaves whose rows fit the budget (a leaf larger than the budget on
    its own is still diffed, alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for leaf, size in sorted(zip(leaves, sizes, strict=True)):
        if current and total + size > budget:
            groups.append(current)
            current, total = [], 0
        current.append(leaf)
        total += size
    if current:
        groups.append(current)
    return groups


def _replays(source: Source) -> bool:
    return isinstance(source, Replayable) and source.replays_identically()


def _refetches_each_row(source: Source) -> bool:
    return isinstance(source, RowFetchPushdown) and source.refetches_each_row()


# The last line of a Python traceback carried in an Arrow C stream error: the adapter's own error.
_RAISED = re.compile(r"^(?:seamline\._core\.|seamline\.exceptions\.)?([A-Za-z]+Error): (.+)$")
_NATIVE_RAISED = re.compile(r"seamline\.exceptions\.([A-Za-z]+Error): (.+)$")
_ADAPTER_ERRORS: dict[str, type[SeamlineError]] = {
    cls.__name__: cls
    for cls in (
        SchemaError,
        ValueParseError,
        InvalidInputError,
        StoreUnavailableError,
        NotFoundError,
    )
}


@contextmanager
def _adapter_errors() -> Iterator[None]:
    """An error a store adapter raises while the core reads its stream crosses the Arrow C stream
    interface as text (`arrow: C Data interface error: ... Python exception: Traceback ...`): raise
    the adapter's own one-line error again, not the wrapped traceback."""
    try:
        yield
    except SeamlineError as exc:
        text = str(exc)
        # A Rust reader's error (seamline._core.pg_copy_stream) names its exception the same way.
        native = _NATIVE_RAISED.search(text)
        if native and native.group(1) in _ADAPTER_ERRORS:
            raise _ADAPTER_ERRORS[native.group(1)](native.group(2)) from None
        if "Python exception:" not in text:
            raise
        for line in reversed(text.splitlines()):
            m = _RAISED.match(line.strip())
            if m and m.group(1) in _ADAPTER_ERRORS:
                raise _ADAPTER_ERRORS[m.group(1)](m.group(2)) from None
        raise
