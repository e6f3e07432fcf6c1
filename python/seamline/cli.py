"""The `seamline` command line: a scheduled batch job driven by a contract file.

    seamline check CONTRACT [--seam NAME ...] [--json FILE] [--diffs FILE.parquet] [--metrics FILE]
    seamline repair CONTRACT --seam NAME [--apply] [--max-fraction F]
    seamline freshness CONTRACT [--seam NAME ...]
    seamline lineage CONTRACT --chain NAME [--as-of TIME]
    seamline demo [--workdir DIR] [--arrow-only]

Exit codes a scheduler can use: 0 clean, 1 drift found (or a freshness SLA at error, or a repair
refused or not verified), 2 bad input (contract, arguments, schema), 3 a store unavailable, 130
interrupted. When seams of one run end differently, the most severe wins: 2, then 3, then 1.
Errors are one line on stderr; `--debug` shows the traceback too. No secret from the contract is
ever printed or written: every output goes through the contract's redaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

from seamline.engine import Options
from seamline.exceptions import (
    RepairRefusedError,
    SeamlineError,
    StoreUnavailableError,
)

EXIT_CLEAN, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
# Which exit code wins when the seams of one run end differently.
_SEVERITY = {EXIT_CLEAN: 0, EXIT_DRIFT: 1, EXIT_UNAVAILABLE: 2, EXIT_BAD_INPUT: 3, EXIT_INTERRUPTED: 4}


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, StoreUnavailableError) or _is_connection_error(error):
        return EXIT_UNAVAILABLE
    if isinstance(error, RepairRefusedError):
        return EXIT_DRIFT
    return EXIT_BAD_INPUT


def _is_connection_error(error: BaseException) -> bool:
    """Driver errors that mean the store went away mid-run (not wrapped by an adapter)."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    names = {f"{c.__module__}.{c.__name__}" for c in type(error).__mro__}
    return bool(
        names
        & {
            "adbc_driver_manager.OperationalError",
            "opensearchpy.exceptions.ConnectionError",
            "opensearchpy.exceptions.ConnectionTimeout",
        }
    )


def worst(codes: Sequence[int]) -> int:
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=EXIT_CLEAN)


def _message(error: BaseException) -> str:
    if isinstance(error, SeamlineError):
        text = str(error)
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return " ".join(text.split())


# -- output: everything through the contract's redaction ---------------------------------------------


class _Redacting(io.TextIOBase):
    """A text stream that scrubs secrets from everything written through it."""

    def __init__(self, inner: TextIO, redact: Callable[[str], str]) -> None:
        self.inner = inner
        self.redact = redact

    def write(self, text: str) -> int:
        self.inner.write(self.redact(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()


_redact: Callable[[str], str] = lambda text: text  # noqa: E731 - replaced once a contract is loaded


@contextmanager
def _redacted(redact: Callable[[str], str]) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = _Redacting(saved[0], redact)
    sys.stderr = _Redacting(saved[1], redact)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _load(path: str) -> Any:
    """Load the contract; from then on its secrets are scrubbed from every error too."""
    global _redact
    from seamline.contract import load

    contract = load(path)
    _redact = contract.redact
    return contract


def _write_json(path: str, report: dict[str, Any]) -> None:
    from seamline.jsonsafe import json_safe
    from seamline.metrics import write_atomic

    write_atomic(path, _redact(json.dumps(json_safe(report), indent=2)) + "\n")


def _report(command: str, contract: Any, started: float, code: int, **body: Any) -> dict[str, Any]:
    from seamline import __version__

    return {
        "seamline": __version__,
        "command": command,
        "contract": str(contract.path),
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "exit_code": code,
        **body,
    }


def _select(contract: Any, names: list[str] | None) -> list[Any]:
    if not names:
        return list(contract.seams.values())
    return [contract.seam(n) for n in dict.fromkeys(names)]


def _seam_error(progress: Any, seam: str, error: BaseException) -> int:
    code = exit_code_for(error)
    progress.line(f"seamline: error: seam {seam!r}: {_message(error)}")
    return code


def _diffs_path(pattern: str, seam: str, many: bool) -> Path:
    if "{seam}" in pattern:
        return Path(pattern.replace("{seam}", seam))
    p = Path(pattern)
    return p.with_name(f"{p.stem}.{seam}{p.suffix or '.parquet'}") if many else p


# -- commands ------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from seamline.metrics import Metrics
    from seamline.progress import Progress
    from seamline.report import differences, summary

    started = time.time()
    contract = _load(args.contract)
    if args.shard or args.shards or args.output_uri:
        from seamline.scaleout import shard_check

        with _redacted(contract.redact):
            return shard_check(
                contract, seams=args.seam, shard_spec=args.shard, shards=args.shards,
                output_uri=args.output_uri, run=args.run_id, layout=args.layout,
            )  # fmt: skip
    with _redacted(contract.redact):
        seams = _select(contract, args.seam)
        progress = Progress()
        metrics = Metrics("check")
        results: dict[str, Any] = {}
        errors: dict[str, tuple[int, str]] = {}
        for seam in seams:
            t0 = time.perf_counter()
            try:
                with progress.step(f"{seam.name}: reconciling"):
                    result = contract.reconcile(seam, options=Options(on_progress=progress.rows))
            except (SeamlineError, Exception) as e:  # noqa: B014 - SeamlineError first, for readers
                if args.debug:
                    traceback.print_exc()
                errors[seam.name] = (_seam_error(progress, seam.name, e), _message(e))
                metrics.error(seam.name)
                metrics.add("seamline_duration_seconds", time.perf_counter() - t0, seam=seam.name)
                continue
            results[seam.name] = result
            progress.seam_done(seam.name, result)
            metrics.reconcile(seam.name, result)
        if results:
            print(summary(results))
        for name, result in results.items():
            if not result.clean:
                print(f"\n{name}:")
                print(differences(result))
        if errors:
            print()
            for name, (code, text) in errors.items():
                what = "store unavailable" if code == EXIT_UNAVAILABLE else "error"
                print(f"{name}: {what}: {text}")
        codes = [EXIT_CLEAN if r.clean else EXIT_DRIFT for r in results.values()]
        code = worst(codes + [c for c, _ in errors.values()])
        if args.diffs:
            for name, result in results.items():
                path = _diffs_path(args.diffs, name, len(seams) > 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                result.write_diffs(str(path))
        if args.json:
            seams_out: dict[str, Any] = {}
            for seam in seams:
                if seam.name in results:
                    r = results[seam.name]
                    seams_out[seam.name] = {
                        "status": "clean" if r.clean else "drift",
                        "exit_code": EXIT_CLEAN if r.clean else EXIT_DRIFT,
                        "error": None,
                        **r.to_dict(),
                    }
                else:
                    c, text = errors[seam.name]
                    seams_out[seam.name] = {"status": "error", "exit_code": c, "error": text}
            _write_json(
                args.json,
                _report(
                    "check",
                    contract,
                    started,
                    code,
                    clean=code == EXIT_CLEAN,
                    summary={
                        "seams": len(seams),
                        "clean": sum(1 for r in results.values() if r.clean),
                        "drift": sum(1 for r in results.values() if not r.clean),
                        "error": len(errors),
                    },
                    seams=seams_out,
                ),
            )
        if args.metrics:
            metrics.write(args.metrics, code, contract.redact)
        return code


def _freshness(args: argparse.Namespace) -> int:
    from seamline.freshness import measure, table
    from seamline.metrics import Metrics
    from seamline.progress import Progress

    started = time.time()
    contract = _load(args.contract)
    with _redacted(contract.redact):
        progress = Progress()
        metrics = Metrics("freshness")
        rows = []
        errors: dict[str, tuple[int, str]] = {}
        for seam in _select(contract, args.seam):
            try:
                with progress.step(f"{seam.name}: reading the newest versions"):
                    f = measure(contract, seam)
            except (SeamlineError, Exception) as e:  # noqa: B014
                if args.debug:
                    traceback.print_exc()
                errors[seam.name] = (_seam_error(progress, seam.name, e), _message(e))
                metrics.error(seam.name)
                continue
            rows.append(f)
            metrics.freshness(seam.name, f)
        if rows:
            print(table(rows))
        for f in rows:
            if f.note:
                print(f"  {f.seam}: {f.note}")
        for name, (_, text) in errors.items():
            print(f"{name}: error: {text}")
        code = worst(
            [EXIT_DRIFT if f.status == "error" else EXIT_CLEAN for f in rows]
            + [c for c, _ in errors.values()]
        )
        if args.json:
            body = {f.seam: f.to_dict() for f in rows} | {
                name: {
                    "seam": name,
                    "status": "unavailable" if c == EXIT_UNAVAILABLE else "failed",
                    "error": t,
                }
                for name, (c, t) in errors.items()
            }
            _write_json(args.json, _report("freshness", contract, started, code, seams=body))
        if args.metrics:
            metrics.write(args.metrics, code, contract.redact)
        return code


def _lineage(args: argparse.Namespace) -> int:
    from seamline.contract import parse_time
    from seamline.lineage import Layer, walk
    from seamline.metrics import Metrics
    from seamline.progress import Progress

    started = time.time()
    as_of = parse_time(args.as_of) if args.as_of else None
    contract = _load(args.contract)
    with _redacted(contract.redact):
        contract.chain(args.chain)  # a bad chain name is bad input before anything is read
        progress = Progress()
        metrics = Metrics("lineage")

        def reconcile(seam: Any) -> Any:
            with progress.step(f"{seam.name}: reconciling"):
                return contract.reconcile(seam, as_of=as_of)

        def on_layer(layer: Layer) -> None:
            assert layer.freshness is not None and layer.result is not None
            progress.seam_done(layer.seam, layer.result)
            metrics.freshness(layer.seam, layer.freshness)
            metrics.reconcile(layer.seam, layer.result)

        result = walk(contract, args.chain, as_of=as_of, reconcile=reconcile, on_layer=on_layer)
        print(result.render())
        code = EXIT_DRIFT if result.diverged is not None else EXIT_CLEAN
        if args.json:
            _write_json(args.json, _report("lineage", contract, started, code, **result.to_dict()))
        if args.metrics:
            metrics.write(args.metrics, code, contract.redact)
        return code


def _repair(args: argparse.Namespace) -> int:
    from seamline.metrics import Metrics
    from seamline.progress import Progress
    from seamline.result import ReconcileResult

    started = time.time()
    contract = _load(args.contract)
    with _redacted(contract.redact):
        seam = contract.seam(args.seam)
        if not hasattr(ReconcileResult, "plan_repair"):
            raise SeamlineError("repair is not available in this version of seamline (no plan_repair)")
        progress = Progress()
        metrics = Metrics("repair")
        with progress.step(f"{seam.name}: reconciling"):
            result = contract.reconcile(seam, options=Options(on_progress=progress.rows))
        progress.seam_done(seam.name, result)
        metrics.reconcile(seam.name, result)
        fraction = args.max_fraction if args.max_fraction is not None else seam.repair.max_fraction
        kwargs = {"max_fraction": fraction} if fraction is not None else {}
        report: dict[str, Any] = {"seam": seam.name, "apply": bool(args.apply), "counts": result.counts}
        code = EXIT_CLEAN
        try:
            plan = result.plan_repair(**kwargs)
            counts = dict(plan.counts)
            report["plan"] = counts
            for action, n in counts.items():
                metrics.add("seamline_repair_rows", n, seam=seam.name, action=action, stage="planned")
            total = sum(counts.values())
            print(f"repair plan for seam {seam.name!r}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            if total:
                frame = plan.to_polars()
                print(frame.head(20))
                if frame.height > 20:
                    print(f"... and {frame.height - 20} more")
            if not args.apply:
                guard = getattr(plan, "check_guard", None)
                if total and guard is not None:
                    guard()  # a plan that --apply would refuse is refused now
                print("dry run: nothing written (run with --apply to write and verify)")
                code = EXIT_DRIFT if total else EXIT_CLEAN
            elif total == 0:
                print("nothing to repair")
            else:
                with progress.step(f"{seam.name}: applying the repair"):
                    outcome = plan.apply()
                applied = dict(outcome.counts)
                report["outcome"] = applied | {"verified": bool(outcome.verified)}
                for action, n in applied.items():
                    metrics.add("seamline_repair_rows", n, seam=seam.name, action=action, stage="applied")
                print("applied: " + ", ".join(f"{k} {v}" for k, v in applied.items()))
                if outcome.verified:
                    print(f"verified: seam {seam.name!r} is clean after the repair")
                else:
                    print(f"NOT verified: seam {seam.name!r} still differs after the repair")
                    code = EXIT_DRIFT
        except RepairRefusedError as e:
            print(f"seamline: repair refused: {_message(e)}; drift not repaired", file=sys.stderr)
            report["refused"] = _message(e)
            code = EXIT_DRIFT
        if args.json:
            _write_json(args.json, _report("repair", contract, started, code, **report))
        if args.metrics:
            metrics.write(args.metrics, code, contract.redact)
        return code


def _merge(args: argparse.Namespace) -> int:
    from seamline.report import summary
    from seamline.scaleout import MergeRequest, merge_cmd

    def show(merged: Any) -> None:
        print(summary({f"{merged.seam} (run {merged.run_id}, {merged.shards} shards)": merged}))
        key = merged.manifests[0]["key"]
        for row in merged.diffs.head(10).to_dicts():
            where = ", ".join(f"{k}={row[k]}" for k in key)
            cols = f"  {', '.join(row['columns'])}" if row["kind"] == "changed" else ""
            print(f"  {row['kind']:<9} {where}{cols}")
        if merged.diffs.height > 10:
            print(f"  ... and {merged.diffs.height - 10} more")
        if args.json:
            _write_json(args.json, {"command": "merge", **merged.to_dict()})

    request = MergeRequest(
        output_uri=args.output_uri, run_id=args.run_id, seam=args.seam, contract=args.contract,
        shards=args.shards, wait=args.wait, shard_attempts=args.shard_attempts,
        repair=args.repair, apply=args.apply,
    )  # fmt: skip
    return merge_cmd(request, _load, show)


def _layout(args: argparse.Namespace) -> int:
    from seamline.scaleout import layout_cmd

    contract = _load(args.contract)
    with _redacted(contract.redact):
        return layout_cmd(contract, seam_name=args.seam, output=args.output)


def _k8s_render(args: argparse.Namespace) -> int:
    from seamline.k8s import RenderOptions
    from seamline.scaleout import k8s_render_cmd

    contract = _load(args.contract)
    opts = RenderOptions(
        contract_path=args.contract, contract_text=Path(args.contract).read_text(), seam=args.seam,
        shards=args.shards, parallelism=args.parallelism, schedule=args.schedule, image=args.image,
        output_uri=args.output_uri, expected_rows=args.rows, secret=args.secret, namespace=args.namespace,
    )  # fmt: skip
    return k8s_render_cmd(contract, opts)


def _k8s_status(args: argparse.Namespace) -> int:
    from seamline.k8s import status

    run = status(args.job, namespace=args.namespace, kubeconfig=args.kubeconfig)
    print(run.render())
    if args.json:
        _write_json(args.json, {"command": "k8s status", **run.to_dict()})
    return EXIT_CLEAN


def _demo(args: argparse.Namespace) -> int:
    from seamline import demo

    return demo.run(workdir=args.workdir, stores=not args.arrow_only)


# -- parser ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    outputs = _Parser(add_help=False)
    outputs.add_argument("--json", metavar="FILE", help="write the report as JSON")
    outputs.add_argument("--metrics", metavar="FILE", help="write Prometheus metrics (text format)")

    p = _Parser(
        prog="seamline",
        description="Reconcile the copies of one fact across stores, as declared in a contract file.",
        epilog="exit codes: 0 clean, 1 drift or SLA at error, 2 bad input, 3 store unavailable",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", parents=[common, outputs], help="reconcile the seams of a contract", description=""
    )
    check.add_argument("contract", help="the contract file (YAML)")
    check.add_argument("--seam", action="append", metavar="NAME", help="only this seam (repeatable)")
    check.add_argument(
        "--diffs",
        metavar="FILE.parquet",
        help="write the differences as Parquet (several seams: FILE.<seam>.parquet, or use {seam})",
    )
    scale = check.add_argument_group("scale-out (one shard of a run; see `seamline merge`)")
    scale.add_argument("--shard", metavar="I/N", help="reconcile slice I of N of the key ranges")
    scale.add_argument(
        "--shards", type=int, metavar="N", help="N slices; this pod's index from JOB_COMPLETION_INDEX"
    )
    scale.add_argument("--output-uri", metavar="URI", help="where shards write (a path, s3://, gs://)")
    scale.add_argument("--run-id", metavar="ID", help="the run the shard belongs to (default: from the job)")
    scale.add_argument("--layout", metavar="FILE", help="range layout pinned by `seamline layout`")
    check.set_defaults(run=_check)

    merge = sub.add_parser(
        "merge", parents=[common, outputs], help="merge the shards of a run into one report (and repair)"
    )
    merge.add_argument("--output-uri", required=True, metavar="URI", help="where the shards wrote")
    merge.add_argument("--run-id", metavar="ID", help="the run (default: the only one, or from the job)")
    merge.add_argument("--shards", type=int, metavar="N", help="how many shards the run has")
    merge.add_argument("--wait", metavar="DURATION", help="wait up to this long for missing shards")
    merge.add_argument(
        "--shard-attempts",
        type=int,
        metavar="K",
        help="with --wait: give up on a shard that failed K times (the Job's backoffLimitPerIndex + 1)",
    )
    merge.add_argument("--contract", metavar="FILE", help="the contract (needed for --repair)")
    merge.add_argument(
        "--seam", metavar="NAME", help="the seam whose run to merge (refuses other seams' shards)"
    )
    merge.add_argument("--repair", action="store_true", help="plan the repair of the merged drift")
    merge.add_argument("--apply", action="store_true", help="with --repair: write and verify it")
    merge.set_defaults(run=_merge)

    layout = sub.add_parser("layout", parents=[common], help="pin a seam's key-range layout for shards")
    layout.add_argument("contract", help="the contract file (YAML)")
    layout.add_argument("--seam", required=True, metavar="NAME")
    layout.add_argument("--output", required=True, metavar="FILE", help="the layout file to write")
    layout.set_defaults(run=_layout)

    k8s = sub.add_parser("k8s", help="Kubernetes manifests for a scaled-out run")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    render = k8s_sub.add_parser("render", parents=[common], help="print the manifests (YAML)")
    render.add_argument("contract", help="the contract file (YAML)")
    render.add_argument("--seam", required=True, metavar="NAME")
    render.add_argument(
        "--shards", type=int, required=True, metavar="N", help="pods (slices of the key space)"
    )
    render.add_argument("--parallelism", type=int, metavar="P", help="pods running at once (default N)")
    render.add_argument("--schedule", metavar="CRON", help="a CronJob on this schedule instead of a Job")
    render.add_argument("--image", default="ghcr.io/seamline/seamline:0.1.0", metavar="IMAGE")
    render.add_argument("--output-uri", default="s3://seamline-runs", metavar="URI")
    render.add_argument("--rows", type=int, default=10_000_000, help="expected rows, to size the pods")
    render.add_argument("--secret", metavar="NAME", help="the Secret with the contract's ${VARS}")
    render.add_argument("--namespace", metavar="NS")
    render.set_defaults(run=_k8s_render)
    k8s_status = k8s_sub.add_parser(
        "status",
        parents=[common],
        help="which shards of a run are done, running or failed, and the drift so far",
    )
    k8s_status.add_argument("job", metavar="JOB", help="the shard Job of the run (kubectl get jobs)")
    k8s_status.add_argument("--namespace", metavar="NS", help="default: the kubeconfig context's")
    k8s_status.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    k8s_status.add_argument("--json", metavar="FILE", help="write the status as JSON")
    k8s_status.set_defaults(run=_k8s_status)

    repair = sub.add_parser(
        "repair", parents=[common, outputs], help="plan (dry run) or apply the repair of one seam"
    )
    repair.add_argument("contract", help="the contract file (YAML)")
    repair.add_argument("--seam", required=True, metavar="NAME", help="the seam to repair")
    repair.add_argument("--apply", action="store_true", help="write the repair and verify it")
    repair.add_argument(
        "--max-fraction",
        type=float,
        metavar="F",
        help="refuse a repair touching more than this fraction of the target (default: the contract's)",
    )
    repair.set_defaults(run=_repair)

    fresh = sub.add_parser("freshness", parents=[common, outputs], help="lag and backlog of each seam")
    fresh.add_argument("contract", help="the contract file (YAML)")
    fresh.add_argument("--seam", action="append", metavar="NAME", help="only this seam (repeatable)")
    fresh.set_defaults(run=_freshness)

    lineage = sub.add_parser(
        "lineage", parents=[common, outputs], help="walk a chain to the first seam that diverges"
    )
    lineage.add_argument("contract", help="the contract file (YAML)")
    lineage.add_argument("--chain", required=True, metavar="NAME", help="the chain to walk")
    lineage.add_argument(
        "--as-of",
        metavar="TIME",
        help="read the Iceberg snapshots current at TIME (ISO 8601, or e.g. 2h for two hours ago)",
    )
    lineage.set_defaults(run=_lineage)

    demo = sub.add_parser(
        "demo", parents=[common], help="build a small shop with drift injected, and reconcile it"
    )
    demo.add_argument(
        "--workdir", default="demo-out", help="where the demo writes its files (default: demo-out)"
    )
    demo.add_argument("--arrow-only", action="store_true", help="only the in-memory Arrow/Parquet part")
    demo.set_defaults(run=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("seamline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SeamlineError, Exception) as e:  # noqa: B014 - every error is one line
        if args.debug:
            traceback.print_exc()
        from seamline.contract import redact

        text = _redact(redact(_message(e)))
        if not isinstance(e, SeamlineError) and not _is_connection_error(e) and not args.debug:
            text += " (run with --debug for the traceback)"
        print(f"seamline: error: {text}", file=sys.stderr)
        return exit_code_for(e)


if __name__ == "__main__":
    sys.exit(main())
