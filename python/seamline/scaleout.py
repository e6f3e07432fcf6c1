"""The scale-out commands: `check --shard` (one pod's slice), `merge`, `layout` and `k8s render`.

A shard pod exits 0 once its results are written, drift or not (a non-zero exit would make
Kubernetes retry it); a shard that fails leaves a failure marker first, so the merge can name it.
The merge reports drift with the same exit codes as `check`. The functions here take typed values;
the CLI's handlers turn arguments into them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seamline import _core, shard
from seamline.durations import parse_duration
from seamline.engine import EngineOutput, Options
from seamline.exceptions import InvalidInputError, StoreUnavailableError
from seamline.k8s import RenderOptions, check_no_literal_secrets, render_yaml, run_id_from_job_name

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    Out = SupportsWrite[str]  # where the commands print their lines (the CLI passes its redacting stream)

EXIT_CLEAN, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2
WAIT_POLL_SECONDS = 5.0


def parse_shard(
    shard_spec: str | None, shards: int | None, environ: Mapping[str, str] = os.environ
) -> tuple[int, int] | None:
    """(i, n) from --shard I/N, or from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) and
    --shards N; None when not sharded."""
    if shard_spec:
        try:
            i, n = (int(x) for x in shard_spec.split("/"))
        except ValueError:
            raise InvalidInputError(f"--shard {shard_spec!r}: expected I/N, e.g. 3/16") from None
    elif shards:
        index = environ.get("JOB_COMPLETION_INDEX")
        if index is None:
            raise InvalidInputError("--shards N needs --shard I/N or JOB_COMPLETION_INDEX in the environment")
        try:
            i, n = int(index), shards
        except ValueError:
            raise InvalidInputError(f"JOB_COMPLETION_INDEX {index!r} is not a number") from None
    else:
        return None
    if not 0 <= i < n:
        raise InvalidInputError(f"shard {i}/{n}: the index must be between 0 and {n - 1}")
    return i, n


def env_run_id(environ: Mapping[str, str] = os.environ) -> str | None:
    """The run id a pod gets from its job: SEAMLINE_RUN_ID, or derived from SEAMLINE_JOB_NAME."""
    if environ.get("SEAMLINE_RUN_ID"):
        return environ["SEAMLINE_RUN_ID"]
    if environ.get("SEAMLINE_JOB_NAME"):
        return run_id_from_job_name(environ["SEAMLINE_JOB_NAME"])
    return None


def run_id(explicit: str | None) -> str:
    rid = explicit or env_run_id()
    if not rid:
        raise InvalidInputError("no run id: pass --run-id (or set SEAMLINE_RUN_ID)")
    return rid


def shard_check(
    contract: Any,
    *,
    seams: list[str] | None,
    shard_spec: str | None,
    shards: int | None,
    output_uri: str | None,
    run: str | None = None,
    layout: str | None = None,
    classify: Callable[[BaseException], tuple[int, str]] | None = None,
    out: Out | None = None,
) -> int:
    """Reconcile one slice of one seam and write it under `output_uri`. A failure is recorded for the
    merge first: `classify` gives its exit code and one line (the CLI's own mapping)."""
    sliced = parse_shard(shard_spec, shards)
    if sliced is None or not output_uri:
        raise InvalidInputError("a shard needs both --shard I/N (or --shards N) and --output-uri")
    if not seams or len(seams) != 1:
        raise InvalidInputError("a shard reconciles exactly one seam: pass --seam NAME once")
    seam = contract.seam(seams[0])
    ref = shard.RunRef(output_uri, seam.name, shard.contract_id(contract.path.read_text()), run_id(run))
    index, count = sliced
    options = Options(shard=sliced)
    try:
        if layout:
            options.bounds, options.fanout_bits = shard.load_layout(layout)
        result = contract.reconcile(seam, options=options)
        folder = shard.write_shard(result, ref, index=index, count=count)
    except Exception as e:
        code, line = classify(e) if classify else (EXIT_BAD_INPUT, str(e))
        _record_failure(ref, index, count, code, contract.redact(" ".join(line.split())))
        raise
    c = result.counts
    print(
        f"shard {index}/{count} of {seam.name!r} (run {ref.run_id}): {c['source_rows']} source rows, "
        f"{c['target_rows']} target rows, {sum(c[k] for k in ('missing', 'extra', 'changed', 'duplicate'))} "
        f"differences -> {folder}",
        file=out or sys.stdout,
    )
    return EXIT_CLEAN


def _record_failure(ref: shard.RunRef, index: int, count: int, code: int, message: str) -> None:
    try:
        shard.write_failure(ref, index=index, count=count, exit_code=code, message=message)
    except Exception:  # noqa: BLE001 - best effort: the output store may be what failed; the error stands
        pass


def layout_cmd(contract: Any, *, seam_name: str, output: str, out: Out | None = None) -> int:
    """Compute the range layout of a seam once and pin it to a file, for every shard to use."""
    from seamline.engine import Engine
    from seamline.reconcile import pushdown
    from seamline.seam import resolve

    seam = contract.seam(seam_name)
    src, dst = contract.open(seam, "source"), contract.open(seam, "target")
    try:
        src.pin()
        dst.pin()
        schemas = src.schema(), dst.schema()
        cols = resolve(schemas[0], schemas[1], seam.key, seam.columns, seam.compare, seam.version)
        ranged = {
            "source": pushdown(cols, schemas[0], "source", src),
            "target": pushdown(cols, schemas[1], "target", dst),
        }
        bounds, bits = Engine(src, dst, cols, Options(), ranged).layout()
    finally:
        src.close()
        dst.close()
    shard.save_layout(bounds, bits, output)
    ranges = (bounds.num_rows if bounds is not None else 0) + 1
    line = f"layout of {seam.name!r}: {ranges} key ranges x 2^{bits} leaves -> {output}"
    print(line, file=out or sys.stdout)
    return EXIT_CLEAN


@dataclass
class _Prior:
    """What a recheck needs of an earlier run: its output and row totals (here: merged shards)."""

    output: EngineOutput
    counts: dict[str, int]


@dataclass(frozen=True)
class MergeRequest:
    """What `seamline merge` was asked: which run, how long to wait, whether to repair."""

    output_uri: str
    run_id: str | None = None
    seam: str | None = None
    contract: str | None = None
    shards: int | None = None
    wait: str | None = None
    shard_attempts: int | None = None
    repair: bool = False
    apply: bool = False


def merge_cmd(
    req: MergeRequest,
    load_contract: Callable[[str], Any],
    summary_out: Callable[[shard.MergedRun], None],
    out: Out | None = None,
) -> int:
    """Merge the shards of a run; print and report like `check`; optionally plan/apply the repair.
    The report is also written next to the shards (<run>/report.json)."""
    if req.repair and not req.contract:
        raise InvalidInputError("--repair needs --contract FILE (to reach the target store)")
    if req.wait and not req.shards:
        raise InvalidInputError("--wait needs --shards N (how many shards to wait for)")
    deadline = time.time() + parse_duration(req.wait, "--wait") if req.wait else None
    contract = load_contract(req.contract) if req.contract else None
    cid = shard.contract_id(contract.path.read_text()) if contract is not None else None
    rid = req.run_id or env_run_id()
    if deadline is not None:
        ref = shard.RunRef(req.output_uri, req.seam, cid, rid) if cid and req.seam and rid else None
        while True:
            ref = ref or _find_quietly(req.output_uri, req.seam, rid)
            if ref is not None:
                assert req.shards is not None
                shard.check_given_up(ref, req.shards, req.shard_attempts)
                if not shard.missing_shards(ref, req.shards):
                    break
            if time.time() >= deadline:
                assert req.shards is not None
                missing = shard.missing_shards(ref, req.shards) if ref is not None else None
                raise StoreUnavailableError(
                    f"seam {req.seam or '(any)'} run {rid or '(any)'}: "
                    + (f"shard(s) {', '.join(map(str, missing))} of {req.shards}" if missing else "no shard")
                    + f" still missing after waiting {req.wait}"
                )
            time.sleep(WAIT_POLL_SECONDS)
    ref = shard.find_run(req.output_uri, seam=req.seam, contract=cid, run_id=rid)
    merged = shard.merge(ref, shards=req.shards)
    summary_out(merged)
    code = EXIT_CLEAN if merged.clean else EXIT_DRIFT
    shard.write_report(ref, {"command": "merge", "exit_code": code, **merged.to_dict()})
    if req.repair:
        code = _merge_repair(merged, contract, apply=req.apply, out=out or sys.stdout)
    return code


def _find_quietly(uri: str, seam: str | None, rid: str | None) -> shard.RunRef | None:
    """The run, once its first shard wrote (None before: nothing to wait on yet)."""
    from seamline.exceptions import NotFoundError

    try:
        return shard.find_run(uri, seam=seam, contract=None, run_id=rid)
    except NotFoundError:
        return None


def _merge_repair(merged: shard.MergedRun, contract: Any, *, apply: bool, out: Out) -> int:
    """Re-read only the leaves the shards found different (fresh snapshots, one process), plan the
    repair from that, and apply it when asked."""
    from seamline.reconcile import run
    from seamline.result import SeamContext
    from seamline.seam import resolve

    seam = contract.seam(merged.seam)
    src, dst = contract.open(seam, "source"), contract.open(seam, "target")
    options = Options(bounds=merged.bounds, fanout_bits=merged.fanout_bits)
    ctx = SeamContext(src, dst, seam.key, seam.columns, seam.compare, seam.version, None, options)
    try:
        src.pin()
        dst.pin()
        cols = resolve(src.schema(), dst.schema(), seam.key, seam.columns, seam.compare, seam.version)
    finally:
        src.close()
        dst.close()
    p = _core.Partitioner(cols.key_spec("source"), merged.bounds, merged.fanout_bits)
    prior = _Prior(
        output=EngineOutput(
            source_rows=merged.counts["source_rows"],
            target_rows=merged.counts["target_rows"],
            bounds=merged.bounds,
            partitioner=p,
            mismatched_leaves=merged.mismatched_leaves,
            diffs=[],
            passes=[],
            known_roots=merged.merkle_roots,
        ),
        counts=merged.counts,
    )
    result = run(ctx, time.perf_counter(), previous=prior)  # type: ignore[arg-type]
    fraction = seam.repair.max_fraction if seam.repair.max_fraction is not None else 0.05
    plan = result.plan_repair(max_fraction=fraction)
    planned = ", ".join(f"{k} {v}" for k, v in plan.counts.items())
    print(f"repair plan for seam {seam.name!r}: {planned}", file=out)
    if not apply:
        if not plan.empty:
            plan.check_guard()
        print("dry run: nothing written (add --apply to write and verify)", file=out)
        return EXIT_DRIFT if not plan.empty else EXIT_CLEAN
    if plan.empty:
        print("nothing to repair", file=out)
        return EXIT_CLEAN
    outcome = plan.apply()
    print("applied: " + ", ".join(f"{k} {v}" for k, v in outcome.counts.items()), file=out)
    print("verified" if outcome.verified else "NOT verified: differences remain after the repair", file=out)
    return EXIT_CLEAN if outcome.verified else EXIT_DRIFT


def k8s_render_cmd(contract: Any, opts: RenderOptions, out: Out | None = None) -> int:
    """Print the manifests of a scaled-out run of one seam; refuse a contract with literal secrets."""
    contract.seam(opts.seam)  # the seam must exist
    check_no_literal_secrets(opts.contract_text, opts.contract_path)
    print(render_yaml(opts), end="", file=out or sys.stdout)
    return EXIT_CLEAN
