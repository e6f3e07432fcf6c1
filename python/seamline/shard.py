"""Scaled-out runs: one shard's results written to shared storage, and the merge of all of them.

A shard (`seamline check --shard I/N --output-uri URI`) reconciles slice I of the key ranges and
writes, under URI/<seam>/<contract id>/<run id>/shard-I-of-N/: both sides' leaf sets (bytes), its
differences (Parquet) and a manifest (run id, seam, contract id, layout digest, counts, as-of of each
side). The seam and the contract's identity (a digest of its text) are part of the path, so two seams
on one schedule (one run id: the CronJobs' scheduled time) never share a folder. A shard that fails
leaves a marker under <run>/failures/ (its exit code and one line), so the merge can give up on a
shard the Job gave up on instead of waiting for it. Slices are disjoint and
together cover the key space because every shard cuts the ranges from the same layout (the range
boundaries and leaf fan-out, recorded in the manifest and checked at the merge).

The merge checks that all N shards of the run are there, from the same run and the same layout,
sums the leaf sets (sums merge exactly: the merged tree is the one a single process would build),
concatenates the differences, and reports like `check` (and writes the report to <run>/report.json).
Re-running a shard overwrites its own
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
from seamline.exceptions import InvalidInputError, NotFoundError, StoreUnavailableError
from seamline.jsonsafe import json_safe
from seamline.keyspace import key_space
from seamline.result import KINDS, ReconcileResult

MANIFEST = "manifest.json"
REPORT = "report.json"
FAILURES = "failures"
FORMAT = 2
EXIT_BAD_INPUT = 2


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


def contract_id(text: str) -> str:
    """The identity of a contract: a digest of its text as written (`${VAR}`s, not their values), the
    same for every pod of a run since they all mount one ConfigMap."""
    return "c" + hashlib.sha256(text.encode()).hexdigest()[:11]


@dataclass(frozen=True)
class RunRef:
    """Where one run of one seam of one contract lives under an output URI."""

    uri: str
    seam: str
    contract: str
    run_id: str

    @property
    def folder(self) -> str:
        return f"{self.uri.rstrip('/')}/{self.seam}/{self.contract}/{self.run_id}"

    def shard_dir(self, index: int, count: int) -> str:
        return f"{self.folder}/{shard_name(index, count)}"


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def write_shard(result: ReconcileResult, run: RunRef, *, index: int, count: int) -> str:
    """Write one shard's partial tree, differences and as-of; returns the folder written."""
    out = result.output
    if out.leafsets is None:
        raise InvalidInputError("this result carries no leaf sets to ship")
    folder = run.shard_dir(index, count)
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
        "run_id": run.run_id,
        "seam": run.seam,
        "contract": run.contract,
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


def write_failure(run: RunRef, *, index: int, count: int, exit_code: int, message: str) -> None:
    """Record that this attempt of a shard failed (best effort: the store may be what failed)."""
    fs, path = _fs(f"{run.folder}/{FAILURES}")
    fs.create_dir(path, recursive=True)
    body = {"shard": index, "shards": count, "exit_code": exit_code, "error": message, "at": time.time()}
    _write(fs, f"{path}/{shard_name(index, count)}.{time.time_ns()}.json", json.dumps(body).encode())


def failures(run: RunRef, count: int) -> dict[int, list[dict[str, Any]]]:
    """The failed attempts of each shard of a run, oldest first."""
    fs, path = _fs(f"{run.folder}/{FAILURES}")
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    out: dict[int, list[dict[str, Any]]] = {}
    for info in sorted(infos, key=lambda i: i.base_name):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        with fs.open_input_stream(info.path) as f:
            body = json.loads(f.read())
        if body.get("shards") == count:
            out.setdefault(int(body["shard"]), []).append(body)
    return out


def given_up(run: RunRef, count: int, missing: list[int], attempts: int | None) -> dict[int, dict[str, Any]]:
    """The missing shards that will not arrive: failed as bad input (the Job fails that index at
    once), or failed `attempts` times (the Job's backoffLimitPerIndex + 1). Their last failure each."""
    out = {}
    for i, tries in failures(run, count).items():
        if i in missing and (
            any(t["exit_code"] == EXIT_BAD_INPUT for t in tries) or (attempts and len(tries) >= attempts)
        ):
            out[i] = tries[-1]
    return out


def write_report(run: RunRef, report: dict[str, Any]) -> None:
    fs, path = _fs(run.folder)
    _write(fs, f"{path}/{REPORT}", json.dumps(json_safe(report), indent=2).encode())


def read_json(uri: str) -> dict[str, Any] | None:
    """A JSON file under an output URI, or None when it is not there (yet)."""
    fs, path = _fs(uri)
    try:
        with fs.open_input_stream(path) as f:
            out: dict[str, Any] = json.loads(f.read())
            return out
    except FileNotFoundError:
        return None


@dataclass
class MergedRun:
    """All shards of one run, merged: counts, differences and roots as one process would report."""

    run_id: str
    seam: str
    contract: str
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
                "contract": self.contract,
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


def _dirs(fs: pafs.FileSystem, root: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def find_run(uri: str, *, seam: str | None, contract: str | None, run_id: str | None) -> RunRef:
    """The one run under `uri` that matches what is known (seam, contract id, run id)."""
    fs, root = _fs(uri)
    found = [
        RunRef(uri, s, c, r)
        for s in ([seam] if seam else _dirs(fs, root))
        for c in ([contract] if contract else _dirs(fs, f"{root}/{s}"))
        for r in ([run_id] if run_id else _dirs(fs, f"{root}/{s}/{c}"))
        if fs.get_file_info(f"{root}/{s}/{c}/{r}").type == pafs.FileType.Directory
    ]
    if len(found) == 1:
        return found[0]
    what = ", ".join(f"{k} {v!r}" for k, v in (("seam", seam), ("run", run_id)) if v) or "any seam"
    if not found:
        raise NotFoundError(f"{uri}: no run of {what}")
    listed = ", ".join(f"seam {r.seam} run {r.run_id} (contract {r.contract})" for r in found[:5])
    raise InvalidInputError(f"{uri}: several runs of {what}: {listed}; pass --seam, --run-id or --contract")


def missing_shards(run: RunRef, count: int) -> list[int]:
    fs, folder = _fs(run.folder)
    present = set()
    for i in range(count):
        info = fs.get_file_info(f"{folder}/{shard_name(i, count)}/{MANIFEST}")
        if info.type == pafs.FileType.File:
            present.add(i)
    return [i for i in range(count) if i not in present]


def check_given_up(run: RunRef, count: int, attempts: int | None) -> None:
    """Raise, naming them, when shards of the run failed for good (see `given_up`)."""
    missing = missing_shards(run, count)
    lost = given_up(run, count, missing, attempts) if missing else {}
    if not lost:
        return
    parts = [
        f"shard {i} failed {len(failures(run, count)[i])} time(s) (last: exit {f['exit_code']}, {f['error']})"
        for i, f in sorted(lost.items())
    ]
    message = f"run {run.run_id} of seam {run.seam!r}: {'; '.join(parts)}; not merged"
    if all(f["exit_code"] == EXIT_BAD_INPUT for f in lost.values()):
        raise InvalidInputError(message)
    raise StoreUnavailableError(message)


def merge(run: RunRef, *, shards: int | None = None) -> MergedRun:
    """Merge every shard of a run."""
    fs, root = _fs(run.folder)
    folders = [d for d in _dirs(fs, root) if d.startswith("shard-")]
    if not folders:
        raise NotFoundError(f"{run.uri}: no shard of run {run.run_id!r} of seam {run.seam!r}")
    manifests = []
    for name in folders:
        try:
            with fs.open_input_stream(f"{root}/{name}/{MANIFEST}") as f:
                manifests.append(json.loads(f.read()))
        except (FileNotFoundError, OSError, ValueError) as e:
            raise InvalidInputError(f"shard {name} of run {run.run_id}: no readable manifest ({e})") from e
    first = manifests[0]
    count = shards or first["shards"]
    for m, name in zip(manifests, folders, strict=True):
        where = f"shard {name} of run {run.run_id}"
        if m.get("format") != FORMAT or m["run_id"] != run.run_id:
            raise InvalidInputError(f"{where} belongs to another run ({m.get('run_id')!r})")
        if m["seam"] != run.seam:
            raise InvalidInputError(f"{where} is of seam {m['seam']!r}, not {run.seam!r}")
        if m["contract"] != run.contract:
            raise InvalidInputError(f"{where} is of another contract ({m['contract']}, not {run.contract})")
        if m["shards"] != count:
            raise InvalidInputError(f"{where} is from another run: {m['shards']} shards, not {count}")
        if m["layout"] != first["layout"]:
            raise InvalidInputError(
                f"{where} cut the key space differently (layout {m['layout']} vs {first['layout']}); "
                "re-run the shards with one --layout file"
            )
    missing = sorted(set(range(count)) - {m["shard"] for m in manifests})
    if missing:
        raise InvalidInputError(
            f"run {run.run_id}: shard(s) {', '.join(map(str, missing))} of {count} missing"
        )
    manifests.sort(key=lambda m: m["shard"])
    leafsets: dict[str, _core.LeafSet] = {}
    frames = []
    for m in manifests:
        folder = f"{root}/{shard_name(m['shard'], count)}"
        for side in ("source", "target"):
            with fs.open_input_stream(f"{folder}/{side}.leaves") as f:
                part = _core.LeafSet.from_bytes(f.read())
            leafsets[side] = leafsets[side].merged(part) if side in leafsets else part
        with fs.open_input_file(f"{folder}/diffs.parquet") as f:
            df = pl.from_arrow(pq.read_table(f))
        assert isinstance(df, pl.DataFrame)
        if df.height:
            frames.append(df)
    with fs.open_input_file(f"{root}/{shard_name(0, count)}/bounds.parquet") as f:
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
        run_id=run.run_id,
        seam=run.seam,
        contract=run.contract,
        shards=count,
        manifests=manifests,
        counts=counts,
        diffs=diffs,
        merkle_roots=_core.merkle_roots(src, dst),
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
