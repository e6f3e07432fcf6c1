"""Scaled-out runs: one shard's results written to shared storage, and the merge of all of them.

A shard (`seamline check --shard I/N --output-uri URI`) reconciles slice I of the key ranges and
writes, under URI/<run id>/shard-I-of-N/: both sides' leaf sets (bytes), its differences (Parquet)
and a manifest (run id, seam, layout digest, counts, as-of of each side). Slices are disjoint and
together cover the key space because every shard cuts the ranges from the same layout (the range
boundaries and leaf fan-out, recorded in the manifest and checked at the merge).

The merge checks that all N shards of the run are there, from the same run and the same layout,
sums the leaf sets (sums merge exactly: the merged tree is the one a single process would build),
concatenates the differences, and reports like `check`. Re-running a shard overwrites its own
folder only, so merging again is harmless.

URIs are local paths or anything pyarrow's filesystems open (s3://, gs://).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from seamline import _core
from seamline.exceptions import InvalidInputError, NotFoundError
from seamline.jsonsafe import json_safe
from seamline.keyspace import key_space
from seamline.result import KINDS, ReconcileResult

MANIFEST = "manifest.json"
FORMAT = 1


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
        raise InvalidInputError(f"--output-uri {uri!r}: {str(e).splitlines()[0]}") from e


def _write(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    # write then move, so a reader never sees half a file (local and most object stores)
    tmp = f"{path}.tmp-{time.time_ns()}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def layout_digest(bounds: pa.Table | None, fanout_bits: int) -> str:
    """A digest of the range boundaries and fan-out: shards of one run must agree on it."""
    h = hashlib.sha256(str(fanout_bits).encode())
    if bounds is not None:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, bounds.schema) as w:
            w.write_table(bounds)
        h.update(sink.getvalue())
    return h.hexdigest()[:16]


def shard_dir(uri: str, run_id: str, index: int, count: int) -> str:
    return f"{uri.rstrip('/')}/{run_id}/shard-{index:05d}-of-{count:05d}"


def write_shard(result: ReconcileResult, uri: str, *, run_id: str, seam: str, index: int, count: int) -> str:
    """Write one shard's partial tree, differences and as-of; returns the folder written."""
    out = result.output
    if out.leafsets is None:
        raise InvalidInputError("this result carries no leaf sets to ship")
    folder = shard_dir(uri, run_id, index, count)
    fs, path = _fs(folder)
    fs.create_dir(path, recursive=True)
    _write(fs, f"{path}/source.leaves", out.leafsets[0].to_bytes())
    _write(fs, f"{path}/target.leaves", out.leafsets[1].to_bytes())
    sink = io.BytesIO()
    pq.write_table(result.diffs.to_arrow(), sink)
    _write(fs, f"{path}/diffs.parquet", sink.getvalue())
    bounds_sink = io.BytesIO()
    if out.bounds is not None:
        pq.write_table(out.bounds, bounds_sink)
    _write(fs, f"{path}/bounds.parquet", bounds_sink.getvalue())
    manifest = {
        "format": FORMAT,
        "run_id": run_id,
        "seam": seam,
        "shard": index,
        "shards": count,
        "layout": layout_digest(out.bounds, out.partitioner.fanout_bits),
        "fanout_bits": out.partitioner.fanout_bits,
        "key": [s for s, _ in result.seam.key],
        "counts": result.counts,
        "as_of": result.as_of,
        "source": result.source,
        "target": result.target,
        "seconds": result.seconds,
        "written_at": time.time(),
    }
    _write(fs, f"{path}/{MANIFEST}", json.dumps(json_safe(manifest), indent=2).encode())
    return folder


@dataclass
class MergedRun:
    """All shards of one run, merged: counts, differences and roots as one process would report."""

    run_id: str
    seam: str
    shards: int
    manifests: list[dict[str, Any]]
    counts: dict[str, int]
    diffs: pl.DataFrame
    merkle_roots: tuple[str, str]
    mismatched_leaves: list[int]
    bounds: pa.Table | None
    fanout_bits: int

    @property
    def clean(self) -> bool:
        return all(self.counts[k] == 0 for k in KINDS)

    @property
    def seconds(self) -> float:
        """Wall time of the slowest shard (they run side by side)."""
        return max(float(m.get("seconds", 0.0)) for m in self.manifests)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "clean": self.clean,
                "run_id": self.run_id,
                "seam": self.seam,
                "shards": self.shards,
                "counts": self.counts,
                "merkle_roots": {"source": self.merkle_roots[0], "target": self.merkle_roots[1]},
                "as_of": {m["shard"]: m["as_of"] for m in self.manifests},
                "seconds": round(self.seconds, 3),
                "key_space": key_space(
                    bounds=self.bounds,
                    fanout_bits=self.fanout_bits,
                    mismatched_leaves=self.mismatched_leaves,
                    diffs=self.diffs,
                    key_names=self.manifests[0]["key"],
                    source_rows=self.counts["source_rows"],
                ),
                "differences": self.diffs.to_dicts(),
            }
        )


def _runs(fs: pafs.FileSystem, root: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def missing_shards(uri: str, run_id: str, count: int) -> list[int]:
    fs, root = _fs(uri)
    present = []
    for i in range(count):
        info = fs.get_file_info(f"{shard_dir(root, run_id, i, count)}/{MANIFEST}")
        if info.type == pafs.FileType.File:
            present.append(i)
    return [i for i in range(count) if i not in present]


def merge(uri: str, *, run_id: str | None = None, shards: int | None = None) -> MergedRun:
    """Merge every shard of a run. The run is `run_id`, or the only run under `uri`."""
    fs, root = _fs(uri)
    if run_id is None:
        runs = _runs(fs, root)
        if len(runs) != 1:
            found = ", ".join(runs) or "none"
            raise InvalidInputError(f"{uri}: pass --run-id; runs found: {found}")
        run_id = runs[0]
    folders = _runs(fs, f"{root}/{run_id}")
    if not folders:
        raise NotFoundError(f"{uri}: no shard of run {run_id!r}")
    manifests = []
    for name in folders:
        try:
            with fs.open_input_stream(f"{root}/{run_id}/{name}/{MANIFEST}") as f:
                manifests.append(json.loads(f.read()))
        except (FileNotFoundError, OSError, ValueError) as e:
            raise InvalidInputError(f"shard {name} of run {run_id}: no readable manifest ({e})") from e
    first = manifests[0]
    count = shards or first["shards"]
    for m, name in zip(manifests, folders, strict=True):
        where = f"shard {name} of run {run_id}"
        if m.get("format") != FORMAT or m["run_id"] != run_id:
            raise InvalidInputError(f"{where} belongs to another run ({m.get('run_id')!r})")
        if m["shards"] != count or m["seam"] != first["seam"]:
            raise InvalidInputError(f"{where} is from another run: seam {m['seam']!r}, {m['shards']} shards")
        if m["layout"] != first["layout"]:
            raise InvalidInputError(
                f"{where} cut the key space differently (layout {m['layout']} vs {first['layout']}); "
                "re-run the shards with one --layout file"
            )
    missing = sorted(set(range(count)) - {m["shard"] for m in manifests})
    if missing:
        raise InvalidInputError(f"run {run_id}: shard(s) {', '.join(map(str, missing))} of {count} missing")
    manifests.sort(key=lambda m: m["shard"])
    leafsets: dict[str, _core.LeafSet] = {}
    frames = []
    for m in manifests:
        folder = shard_dir(root, run_id, m["shard"], count)
        for side in ("source", "target"):
            with fs.open_input_stream(f"{folder}/{side}.leaves") as f:
                part = _core.LeafSet.from_bytes(f.read())
            leafsets[side] = leafsets[side].merged(part) if side in leafsets else part
        with fs.open_input_file(f"{folder}/diffs.parquet") as f:
            df = pl.from_arrow(pq.read_table(f))
        assert isinstance(df, pl.DataFrame)
        if df.height:
            frames.append(df)
    with fs.open_input_file(f"{shard_dir(root, run_id, 0, count)}/bounds.parquet") as f:
        raw = f.read()
    bounds = pq.read_table(pa.BufferReader(raw)) if raw else None
    diffs = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if diffs.height:
        diffs = diffs.sort([*first["key"], "kind"])
    settled = diffs.filter(~pl.col("in_flight"))["kind"].to_list() if diffs.height else []
    src, dst = leafsets["source"], leafsets["target"]
    counts = (
        {"source_rows": src.total_rows, "target_rows": dst.total_rows}
        | {k: settled.count(k) for k in KINDS}
        | {"in_flight": diffs.height - len(settled)}
    )
    return MergedRun(
        run_id=run_id,
        seam=first["seam"],
        shards=count,
        manifests=manifests,
        counts=counts,
        diffs=diffs,
        merkle_roots=(src.merkle_root(), dst.merkle_root()),
        mismatched_leaves=src.mismatched(dst),
        bounds=bounds,
        fanout_bits=first["fanout_bits"],
    )


def save_layout(bounds: pa.Table | None, fanout_bits: int, path: str) -> None:
    """Pin a layout to a file (Parquet of the boundaries, fan-out in its metadata)."""
    table = bounds if bounds is not None else pa.table({})
    meta = {
        b"seamline.fanout_bits": str(fanout_bits).encode(),
        b"seamline.empty": b"1" if bounds is None else b"0",
    }
    pq.write_table(table.replace_schema_metadata(meta), path)


def load_layout(path: str) -> tuple[pa.Table | None, int]:
    try:
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        bits = int(meta[b"seamline.fanout_bits"])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid) as e:
        raise InvalidInputError(f"--layout {path}: not a Seamline layout file ({e})") from e
    return (None if meta.get(b"seamline.empty") == b"1" else table.replace_schema_metadata(None)), bits
