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
ever printed or written: every output goes through the session's redaction.

This module only parses arguments (checking every one before a store is touched) into the typed
requests of `seamline.commands`, and hands the reports they return to the renderer. It imports
nothing heavy at start-up: `seamline --help` needs neither pyarrow nor polars nor a store client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from seamline.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    FailedReport,
    describe,
    exit_code_for,
    is_unexpected,
    refusal_text,
    worst,
)
from seamline.commands.session import Session

__all__ = ["EXIT_CLEAN", "EXIT_DRIFT", "EXIT_UNAVAILABLE", "exit_code_for", "main", "parser", "worst"]

EXIT_CODES = """\
exit codes:
  0    clean (every seam agrees, every SLA passes, the repair verified)
  1    drift found, a freshness SLA at error, a repair refused or not verified
  2    bad input: the contract, an argument, a schema
  3    a store unavailable
  130  interrupted (Ctrl-C)
when seams end differently the most severe wins: 2, then 3, then 1"""


# -- argument types: every argument is checked before a store is touched ------------------------------


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1], e.g. 0.05 for 5%")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _shard(text: str) -> str:
    """I/N, kept as text (the scale-out code reads it), checked here."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 3/16") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be at least 1")
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"{text!r}: the index must be between 0 and {n - 1}")
    return text


def _duration(text: str) -> str:
    from seamline.durations import parse_duration
    from seamline.exceptions import InvalidInputError

    try:
        parse_duration(text)
    except InvalidInputError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 10m, 1h)") from None
    return text


def _time(text: str) -> Any:
    from seamline.durations import parse_time
    from seamline.exceptions import InvalidInputError

    try:
        return parse_time(text)
    except InvalidInputError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (ISO 8601, e.g. 2026-11-20T06:00:00Z, or 2h: 2 hours ago)"
        ) from None


def _writable(value: str) -> bool:
    """The file can be written: its nearest existing folder is a writable folder (URIs: assumed)."""
    import os
    from pathlib import Path

    if "://" in value:
        return True
    folder = Path(value).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output file can be written: a run must not read the stores and then fail to say what it
    found."""
    from seamline.exceptions import InvalidInputError

    for option in ("json", "metrics", "diffs", "output", "html"):
        value = getattr(args, option, None)
        if value and not _writable(value):
            raise InvalidInputError(f"--{option} {value}: cannot write there (not a writable folder)")


# -- commands -----------------------------------------------------------------------------------------


def _outputs(args: argparse.Namespace) -> Any:
    from seamline.commands.render import Outputs

    return Outputs(
        json=getattr(args, "json", None),
        metrics=getattr(args, "metrics", None),
        diffs=getattr(args, "diffs", None),
        html=getattr(args, "html", None),
    )


def _check(args: argparse.Namespace, session: Session) -> int:
    from seamline.commands.check import CheckRequest, check
    from seamline.commands.render import emit

    if args.shard or args.shards or args.output_uri:
        from seamline.scaleout import shard_check

        contract = session.load(args.contract)
        return shard_check(
            contract, seams=args.seam, shard_spec=args.shard, shards=args.shards,
            output_uri=args.output_uri, run=args.run_id, layout=args.layout,
            classify=lambda e: (exit_code_for(e), describe(e)), out=session.out,
        )  # fmt: skip
    report = check(CheckRequest(args.contract, tuple(args.seam or ())), session)
    return emit(report, _outputs(args), session)


def _freshness(args: argparse.Namespace, session: Session) -> int:
    from seamline.commands.freshness import FreshnessRequest, freshness
    from seamline.commands.render import emit

    report = freshness(FreshnessRequest(args.contract, tuple(args.seam or ())), session)
    return emit(report, _outputs(args), session)


def _lineage(args: argparse.Namespace, session: Session) -> int:
    from seamline.commands.lineage import LineageRequest, lineage
    from seamline.commands.render import emit

    report = lineage(LineageRequest(args.contract, args.chain, args.as_of), session)
    return emit(report, _outputs(args), session)


def _repair(args: argparse.Namespace, session: Session) -> int:
    from seamline.commands.render import emit
    from seamline.commands.repair import RepairRequest, repair

    request = RepairRequest(args.contract, args.seam, apply=args.apply, max_fraction=args.max_fraction)
    return emit(repair(request, session), _outputs(args), session)


def _merge(args: argparse.Namespace, session: Session) -> int:
    from seamline.commands.merge import MergeReport, merge_report
    from seamline.commands.render import Outputs, emit, write_files
    from seamline.scaleout import MergeRequest, merge_cmd

    started = time.time()
    shown: list[MergeReport] = []

    def show(merged: Any) -> None:
        # the merged run through the one renderer; the repair that may follow prints its own lines
        shown.append(merge_report(merged, args.contract, started))
        emit(shown[-1], Outputs(json=args.json, html=args.html), session)

    request = MergeRequest(
        output_uri=args.output_uri, run_id=args.run_id, seam=args.seam, contract=args.contract,
        shards=args.shards, wait=args.wait, shard_attempts=args.shard_attempts,
        repair=args.repair, apply=args.apply,
    )  # fmt: skip
    code: int = merge_cmd(request, session.load, show, out=session.out)
    if shown and args.metrics:
        shown[-1].exit_code = code  # the metrics carry the run's exit code, repair included
        write_files(shown[-1], Outputs(metrics=args.metrics), session)
    return code


def _layout(args: argparse.Namespace, session: Session) -> int:
    from seamline.scaleout import layout_cmd

    contract = session.load(args.contract)
    return layout_cmd(contract, seam_name=args.seam, output=args.output, out=session.out)


def _k8s_render(args: argparse.Namespace, session: Session) -> int:
    from pathlib import Path

    from seamline.k8s import RenderOptions
    from seamline.scaleout import k8s_render_cmd

    contract = session.load(args.contract)
    opts = RenderOptions(
        contract_path=args.contract, contract_text=Path(args.contract).read_text(), seam=args.seam,
        shards=args.shards, parallelism=args.parallelism, schedule=args.schedule, image=args.image,
        output_uri=args.output_uri, expected_rows=args.rows, secret=args.secret, namespace=args.namespace,
    )  # fmt: skip
    return k8s_render_cmd(contract, opts, out=session.out)


def _k8s_status(args: argparse.Namespace, session: Session) -> int:
    import json

    from seamline.jsonsafe import json_safe
    from seamline.k8s import status
    from seamline.metrics import write_atomic

    run = status(args.job, namespace=args.namespace, kubeconfig=args.kubeconfig)
    session.print(run.render())
    if args.json:
        write_atomic(
            args.json, json.dumps(json_safe({"command": "k8s status", **run.to_dict()}), indent=2) + "\n"
        )
    return EXIT_CLEAN


def _report(args: argparse.Namespace, session: Session) -> int:
    """Render a saved JSON report as HTML."""
    import json
    from pathlib import Path

    from seamline.exceptions import InvalidInputError, NotFoundError
    from seamline.html_report import write

    path = Path(args.report)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInputError(f"{path}: not a JSON report ({describe(e)})") from None
    try:
        session.print(str(write(args.page, report, session.redact)))
    except InvalidInputError as e:
        raise InvalidInputError(f"{path}: {e}") from None
    return EXIT_CLEAN


def _demo(args: argparse.Namespace, session: Session) -> int:
    from seamline import demo

    return demo.run(workdir=args.workdir, stores=not args.arrow_only)


# -- parser -------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2, starting like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"seamline: error: {message} (see {self.prog} --help)\n")


def _command(sub: Any, name: str, summary: str, description: str, parents: list[Any]) -> Any:
    return sub.add_parser(
        name,
        parents=parents,
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _version() -> str:
    """The installed package's version (its metadata: no import of the native module)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seamline")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    outputs = _Parser(add_help=False)
    outputs.add_argument("--json", metavar="FILE", help="write the report as JSON (also when the run fails)")
    outputs.add_argument(
        "--metrics", metavar="FILE", help="write Prometheus metrics, text format (also when the run fails)"
    )
    outputs.add_argument("--html", metavar="FILE", help="write the report as one self-contained HTML page")

    p = _Parser(
        prog="seamline",
        description="Reconcile the copies of one fact across stores, as declared in a contract file.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"seamline {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = _command(
        sub,
        "check",
        "reconcile the seams of a contract",
        "Reconcile every seam of the contract (or those named with --seam): a summary row per seam, "
        "then each seam's first differences. Exit 1 when any seam drifted.",
        [common, outputs],
    )
    check.add_argument("contract", help="the contract file (YAML)")
    check.add_argument("--seam", action="append", metavar="NAME", help="only this seam (repeatable)")
    check.add_argument(
        "--diffs",
        metavar="FILE.parquet",
        help="write the differences as Parquet (several seams: FILE.<seam>.parquet, or use {seam})",
    )
    scale = check.add_argument_group("scale-out (one shard of a run; see `seamline merge`)")
    scale.add_argument("--shard", type=_shard, metavar="I/N", help="reconcile slice I of N of the key ranges")
    scale.add_argument(
        "--shards", type=_positive, metavar="N", help="N slices; this pod's index from JOB_COMPLETION_INDEX"
    )
    scale.add_argument("--output-uri", metavar="URI", help="where shards write (a path, s3://, gs://)")
    scale.add_argument("--run-id", metavar="ID", help="the run the shard belongs to (default: from the job)")
    scale.add_argument("--layout", metavar="FILE", help="range layout pinned by `seamline layout`")
    check.set_defaults(run=_check)

    merge = _command(
        sub,
        "merge",
        "merge the shards of a run into one report (and repair)",
        "Merge the shards a scaled-out run wrote under --output-uri into one report, printed like "
        "`check`; with --repair, plan (and with --apply, write and verify) the repair of the drift.",
        [common, outputs],
    )
    merge.add_argument("--output-uri", required=True, metavar="URI", help="where the shards wrote")
    merge.add_argument("--run-id", metavar="ID", help="the run (default: the only one, or from the job)")
    merge.add_argument("--shards", type=_positive, metavar="N", help="how many shards the run has")
    merge.add_argument(
        "--wait",
        type=_duration,
        metavar="DURATION",
        help="wait up to this long for missing shards (e.g. 10m)",
    )
    merge.add_argument(
        "--shard-attempts",
        type=_positive,
        metavar="K",
        help="with --wait: give up on a shard that failed K times (the Job's backoffLimitPerIndex + 1)",
    )
    merge.add_argument("--contract", metavar="FILE", help="the contract (needed for --repair)")
    merge.add_argument(
        "--seam", metavar="NAME", help="the seam the run checked (refused if it checked another)"
    )
    merge.add_argument("--repair", action="store_true", help="plan the repair of the merged drift")
    merge.add_argument("--apply", action="store_true", help="with --repair: write and verify it")
    merge.set_defaults(run=_merge)

    layout = _command(
        sub,
        "layout",
        "pin a seam's key-range layout for shards",
        "Compute a seam's key ranges once and write them to a file, so that every shard of a run "
        "slices the key space the same way.",
        [common],
    )
    layout.add_argument("contract", help="the contract file (YAML)")
    layout.add_argument("--seam", required=True, metavar="NAME", help="the seam to lay out")
    layout.add_argument("--output", required=True, metavar="FILE", help="the layout file to write")
    layout.set_defaults(run=_layout)

    k8s = _command(
        sub,
        "k8s",
        "Kubernetes manifests for a scaled-out run",
        "Kubernetes manifests: an Indexed Job (or a CronJob) whose pods each check one shard, and the merge.",
        [],
    )
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    render = _command(
        k8s_sub,
        "render",
        "print the manifests (YAML)",
        "Print the manifests of a scaled-out check of one seam: the contract as a ConfigMap, the shard "
        "Job (or CronJob with --schedule) and the merge.",
        [common],
    )
    render.add_argument("contract", help="the contract file (YAML)")
    render.add_argument("--seam", required=True, metavar="NAME", help="the seam to check")
    render.add_argument(
        "--shards", type=_positive, required=True, metavar="N", help="pods (slices of the key space)"
    )
    render.add_argument("--parallelism", type=_positive, metavar="P", help="pods running at once (default N)")
    render.add_argument("--schedule", metavar="CRON", help="a CronJob on this schedule instead of a Job")
    render.add_argument(
        "--image", default="ghcr.io/seamline/seamline:0.1.0", metavar="IMAGE", help="the container image"
    )
    render.add_argument(
        "--output-uri", default="s3://seamline-runs", metavar="URI", help="where the shards write"
    )
    render.add_argument(
        "--rows", type=_positive, default=10_000_000, metavar="N", help="expected rows, to size the pods"
    )
    render.add_argument("--secret", metavar="NAME", help="the Secret with the contract's ${VARS}")
    render.add_argument("--namespace", metavar="NS", help="the Kubernetes namespace (default: none set)")
    render.set_defaults(run=_k8s_render)
    k8s_status = _command(
        k8s_sub,
        "status",
        "which shards of a run are done, running or failed, and the drift so far",
        "Read a run's shard Job and its pods from the API server and what the shards wrote under the "
        "output URI: one line per shard (state, attempts, rows, rows/s, drift), the drift so far, and "
        "whether the merge wrote its report.",
        [common],
    )
    k8s_status.add_argument("job", metavar="JOB", help="the shard Job of the run (kubectl get jobs)")
    k8s_status.add_argument("--namespace", metavar="NS", help="default: the kubeconfig context's")
    k8s_status.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    k8s_status.add_argument("--json", metavar="FILE", help="write the status as JSON")
    k8s_status.set_defaults(run=_k8s_status)

    repair = _command(
        sub,
        "repair",
        "plan (dry run) or apply the repair of one seam",
        "Reconcile one seam and print the repair plan, one line per operation. A dry run writes "
        "nothing; --apply writes the plan under the version guard and verifies the target agrees. A "
        "plan touching more than max_fraction of the target is refused.",
        [common, outputs],
    )
    repair.add_argument("contract", help="the contract file (YAML)")
    repair.add_argument("--seam", required=True, metavar="NAME", help="the seam to repair")
    repair.add_argument("--apply", action="store_true", help="write the repair and verify it")
    repair.add_argument(
        "--max-fraction",
        type=_fraction,
        metavar="F",
        help="refuse a repair touching more than this fraction of the target, in (0, 1] "
        "(default: the contract's repair.max_fraction, else 0.05)",
    )
    repair.set_defaults(run=_repair)

    fresh = _command(
        sub,
        "freshness",
        "lag and backlog of each seam",
        "For each seam: how far the target's newest version lags the source's, how many source rows "
        "are newer, and the verdict against the seam's freshness SLA. Exit 1 when one is at error.",
        [common, outputs],
    )
    fresh.add_argument("contract", help="the contract file (YAML)")
    fresh.add_argument("--seam", action="append", metavar="NAME", help="only this seam (repeatable)")
    fresh.set_defaults(run=_freshness)

    lineage = _command(
        sub,
        "lineage",
        "walk a chain to the first seam that diverges",
        "Walk a chain of seams (bronze -> silver -> gold) in order, checking freshness and drift of "
        "each, and name the first layer that diverges.",
        [common, outputs],
    )
    lineage.add_argument("contract", help="the contract file (YAML)")
    lineage.add_argument("--chain", required=True, metavar="NAME", help="the chain to walk")
    lineage.add_argument(
        "--as-of",
        type=_time,
        metavar="TIME",
        help="read the Iceberg snapshots current at TIME (ISO 8601, or e.g. 2h for two hours ago)",
    )
    lineage.set_defaults(run=_lineage)

    report = _command(
        sub,
        "report",
        "render a saved JSON report as HTML",
        "Render a report written by --json (check, freshness, lineage, repair or merge) as one "
        "self-contained HTML page, and print its path.",
        [common],
    )
    report.add_argument("report", metavar="REPORT.json", help="a report written by --json")
    # not `--html` as an output: a `report` that fails must not write a report of itself
    report.add_argument("--html", dest="page", required=True, metavar="FILE", help="the page to write")
    report.set_defaults(run=_report)

    demo = _command(
        sub,
        "demo",
        "build a small shop with drift injected, and reconcile it",
        "Build a small shop (Arrow and Parquet; with the services up also Postgres, OpenSearch, "
        "Iceberg and LanceDB), inject drift, and reconcile it through a contract.",
        [common],
    )
    demo.add_argument(
        "--workdir", default="demo-out", help="where the demo writes its files (default: demo-out)"
    )
    demo.add_argument("--arrow-only", action="store_true", help="only the in-memory Arrow/Parquet part")
    demo.set_defaults(run=_demo)
    return p


# -- main ---------------------------------------------------------------------------------------------


def _failed(args: argparse.Namespace, session: Session, started: float, code: int, text: str) -> None:
    """A run that failed still writes its --json and --metrics (with its exit code)."""
    outputs = _outputs(args)
    json_file = outputs.json if outputs.json and _writable(outputs.json) else None
    metrics_file = outputs.metrics if outputs.metrics and _writable(outputs.metrics) else None
    html_file = outputs.html if outputs.html and _writable(outputs.html) else None
    if not (json_file or metrics_file or html_file):
        return
    from seamline.commands.render import Outputs, write_files

    contract = getattr(args, "contract", None)
    report = FailedReport(args.command, contract, started, code, None, session.redact(text))
    try:
        write_files(report, Outputs(json=json_file, metrics=metrics_file, html=html_file), session)
    except Exception as e:  # the failure being reported matters more than the report
        session.error(f"error: cannot write the report: {describe(e)}")


def _run(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    session = Session(debug=args.debug)
    started = time.time()
    try:
        _check_outputs(args)
        code: int = args.run(args, session)
        return code
    except KeyboardInterrupt:
        session.error("interrupted")
        _failed(args, session, started, EXIT_INTERRUPTED, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # every error is one line
        if args.debug:
            traceback.print_exc(file=session.err)
        from seamline.exceptions import RepairRefusedError

        if isinstance(e, RepairRefusedError):
            text = refusal_text(e)
            session.error(f"repair refused: {text}; drift not repaired")
            _failed(args, session, started, EXIT_DRIFT, f"repair refused: {text}")
            return EXIT_DRIFT
        text, code = describe(e), exit_code_for(e)
        if is_unexpected(e) and not args.debug:
            text += " (run with --debug for the traceback)"
        session.error(f"error: {text}")
        _failed(args, session, started, code, text)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    # The command does no linear algebra, but pyarrow loads numpy, whose OpenBLAS starts a thread
    # per core that spins ~0.1 CPU-s at start-up (perf, a 5M-row seam): one thread. A setting in
    # the environment wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Ctrl-C at any moment, start-up imports included, is this one line and 130
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("seamline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
