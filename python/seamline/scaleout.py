"""The scale-out commands: `check --shard` (one pod's slice), `merge`, `layout` and `k8s render`.

A shard pod exits 0 once its results are written, drift or not (a non-zero exit would make
Kubernetes retry it); the merge reports drift with the same exit codes as `check`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seamline import _core, shard
from seamline.durations import parse_duration
from seamline.engine import EngineOutput, Options, key_ranges
from seamline.exceptions import InvalidInputError
from seamline.k8s import RenderOptions, render_yaml, run_id_from_job_name

EXIT_CLEAN, EXIT_DRIFT = 0, 1


def parse_shard(args: argparse.Namespace) -> tuple[int, int] | None:
    """(i, n) from --shard I/N, or from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) and
    --shards N; None when not sharded."""
    if args.shard:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise InvalidInputError(f"--shard {args.shard!r}: expected I/N, e.g. 3/16") from None
    elif args.shards:
        index = os.environ.get("JOB_COMPLETION_INDEX")
        if index is None:
            raise InvalidInputError("--shards N needs --shard I/N or JOB_COMPLETION_INDEX in the environment")
        try:
            i, n = int(index), args.shards
        except ValueError:
            raise InvalidInputError(f"JOB_COMPLETION_INDEX {index!r} is not a number") from None
    else:
        return None
    if not 0 <= i < n:
        raise InvalidInputError(f"shard {i}/{n}: the index must be between 0 and {n - 1}")
    return i, n


def run_id(args: argparse.Namespace) -> str:
    if getattr(args, "run_id", None):
        return str(args.run_id)
    if os.environ.get("SEAMLINE_RUN_ID"):
        return os.environ["SEAMLINE_RUN_ID"]
    if os.environ.get("SEAMLINE_JOB_NAME"):
        return run_id_from_job_name(os.environ["SEAMLINE_JOB_NAME"])
    raise InvalidInputError("no run id: pass --run-id (or set SEAMLINE_RUN_ID)")


def shard_check(args: argparse.Namespace, contract: Any) -> int:
    """Reconcile one slice of one seam and write it under --output-uri."""
    sliced = parse_shard(args)
    if sliced is None or not args.output_uri:
        raise InvalidInputError("a shard needs both --shard I/N (or --shards N) and --output-uri")
    if not args.seam or len(args.seam) != 1:
        raise InvalidInputError("a shard reconciles exactly one seam: pass --seam NAME once")
    seam = contract.seam(args.seam[0])
    rid = run_id(args)
    options = Options(shard=sliced)
    if args.layout:
        options.bounds, options.fanout_bits = shard.load_layout(args.layout)
    result = contract.reconcile(seam, options=options)
    folder = shard.write_shard(
        result, args.output_uri, run_id=rid, seam=seam.name, index=sliced[0], count=sliced[1]
    )
    c = result.counts
    print(
        f"shard {sliced[0]}/{sliced[1]} of {seam.name!r} (run {rid}): {c['source_rows']} source rows, "
        f"{c['target_rows']} target rows, {sum(c[k] for k in ('missing', 'extra', 'changed', 'duplicate'))} "
        f"differences -> {folder}"
    )
    return EXIT_CLEAN


def layout_cmd(args: argparse.Namespace, contract: Any) -> int:
    """Compute the range layout of a seam once and pin it to a file, for every shard to use."""
    from seamline.engine import Engine
    from seamline.reconcile import pushdown
    from seamline.seam import resolve

    seam = contract.seam(args.seam)
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
    shard.save_layout(bounds, bits, args.output)
    ranges = (bounds.num_rows if bounds is not None else 0) + 1
    print(f"layout of {seam.name!r}: {ranges} key ranges x 2^{bits} leaves -> {args.output}")
    return EXIT_CLEAN


@dataclass
class _Prior:
    """What a recheck needs of an earlier run: its output and row totals (here: merged shards)."""

    output: EngineOutput
    counts: dict[str, int]


def merge_cmd(args: argparse.Namespace, load_contract: Any, summary_out: Any) -> int:
    """Merge the shards of a run; print and report like `check`; optionally plan/apply the repair."""
    if args.wait:
        deadline = time.time() + parse_duration(args.wait, "--wait")
        rid = run_id(args)
        if not args.shards:
            raise InvalidInputError("--wait needs --shards N (how many shards to wait for)")
        while shard.missing_shards(args.output_uri, rid, args.shards) and time.time() < deadline:
            time.sleep(5)
    merged = shard.merge(
        args.output_uri, run_id=getattr(args, "run_id", None) or _env_run_id(), shards=args.shards
    )
    summary_out(merged)
    code = EXIT_CLEAN if merged.clean else EXIT_DRIFT
    if args.repair:
        if not args.contract:
            raise InvalidInputError("--repair needs --contract FILE (to reach the target store)")
        code = _merge_repair(merged, load_contract(args.contract), args)
    return code


def _env_run_id() -> str | None:
    if os.environ.get("SEAMLINE_RUN_ID"):
        return os.environ["SEAMLINE_RUN_ID"]
    if os.environ.get("SEAMLINE_JOB_NAME"):
        return run_id_from_job_name(os.environ["SEAMLINE_JOB_NAME"])
    return None


def _merge_repair(merged: shard.MergedRun, contract: Any, args: argparse.Namespace) -> int:
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
    bounds = [tuple(r.values()) for r in merged.bounds.to_pylist()] if merged.bounds is not None else []
    p = _core.Partitioner(cols.key_spec("source"), merged.bounds, merged.fanout_bits)
    prior = _Prior(
        output=EngineOutput(
            source_rows=merged.counts["source_rows"],
            target_rows=merged.counts["target_rows"],
            bounds=merged.bounds,
            partitioner=p,
            mismatched_leaves=merged.mismatched_leaves,
            ranges=key_ranges(merged.mismatched_leaves, merged.fanout_bits, bounds),
            diffs=[],
            passes=[],
            known_roots=merged.merkle_roots,
        ),
        counts=merged.counts,
    )
    result = run(ctx, time.perf_counter(), previous=prior)  # type: ignore[arg-type]
    fraction = seam.repair.max_fraction if seam.repair.max_fraction is not None else 0.05
    plan = result.plan_repair(max_fraction=fraction)
    print(f"repair plan for seam {seam.name!r}: " + ", ".join(f"{k} {v}" for k, v in plan.counts.items()))
    if not args.apply:
        if not plan.empty:
            plan.check_guard()
        print("dry run: nothing written (add --apply to write and verify)")
        return EXIT_DRIFT if not plan.empty else EXIT_CLEAN
    if plan.empty:
        print("nothing to repair")
        return EXIT_CLEAN
    outcome = plan.apply()
    print("applied: " + ", ".join(f"{k} {v}" for k, v in outcome.counts.items()))
    print("verified" if outcome.verified else "NOT verified: differences remain after the repair")
    return EXIT_CLEAN if outcome.verified else EXIT_DRIFT


def k8s_render_cmd(args: argparse.Namespace, contract: Any) -> int:
    contract.seam(args.seam)  # the seam must exist
    text = Path(args.contract).read_text()
    opts = RenderOptions(
        contract_path=args.contract,
        contract_text=text,
        seam=args.seam,
        shards=args.shards,
        parallelism=args.parallelism,
        schedule=args.schedule,
        image=args.image,
        output_uri=args.output_uri,
        expected_rows=args.rows,
        secret=args.secret,
        namespace=args.namespace,
    )
    print(render_yaml(opts), end="")
    return EXIT_CLEAN
