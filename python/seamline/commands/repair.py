"""`seamline repair`: reconcile one seam, plan its repair (printed one line per operation, like the
differences of `check`), and with `--apply` write it and verify the target agrees."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from seamline.commands.common import (
    EXIT_CLEAN,
    EXIT_DRIFT,
    Report,
    SeamRun,
    describe,
    percent,
    run_seams,
)
from seamline.commands.session import Session

SHOWN = 20  # plan lines printed; the JSON and --apply have them all


@dataclass(frozen=True)
class RepairRequest:
    contract: str
    seam: str
    apply: bool = False
    max_fraction: float | None = None  # None: the contract's repair.max_fraction (else the default)


@dataclass
class RepairReport(Report):
    seam: str = ""
    apply: bool = False
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(self.lines)

    def body(self) -> dict[str, Any]:
        return {"seam": self.seam, "apply": self.apply, **self.data}


def refusal(plan: Any, seam: str) -> str | None:
    """Why the guard refuses this plan, in the contract's words (None: it does not)."""
    target_rows = max(int(plan.target_rows), 1)
    if plan.touched > plan.max_fraction * target_rows:
        return (
            f"seam {seam!r}: the repair would touch {plan.touched:,} of {plan.target_rows:,} target rows "
            f"({percent(plan.touched / target_rows)}), above max_fraction {percent(plan.max_fraction)}; "
            "check the seam's columns and filters, or raise `repair: {max_fraction: ...}` "
            "(or --max-fraction)"
        )
    if plan.version is None and not plan.empty:
        return (
            f"seam {seam!r}: it has no version column, so a repair could overwrite a newer write; "
            "add `version:` (the column holding each row's version) to the seam in the contract"
        )
    return None


def plan_lines(plan: Any, result: Any, limit: int = SHOWN) -> list[str]:
    """One line per operation: the op, the key and what it writes (a changed row's values as
    `target value -> value written`)."""
    from seamline.report import _show, change, key_text

    frame = plan.to_polars()
    pairs = list(result.seam.key)
    names = [s for s, _ in pairs]
    plan_key = names if all(n in frame.columns for n in names) else [t for _, t in pairs]
    diffs = {tuple(row[n] for n in names): row for row in result.settled.to_dicts()}
    lines = []
    for row in frame.head(limit).to_dicts():
        values = tuple(row[n] for n in plan_key)
        diff = diffs.get(values, {})
        key = key_text(dict(zip(names, values, strict=True)), names)
        detail = ""
        if diff.get("kind") == "changed":
            source, target = diff.get("source") or {}, diff.get("target") or {}
            detail = "  " + "; ".join(change(c, target.get(c), source.get(c)) for c in diff["columns"])
        elif diff.get("kind") == "missing":
            written = {k: v for k, v in (diff.get("source") or {}).items()}
            detail = "  new: " + ", ".join(f"{k}={_show(v)}" for k, v in written.items())
        elif diff.get("kind") == "duplicate":
            detail = f"  {diff['occurrences']}x in the {diff['side']}"
        lines.append(f"  {row['op']:<9} {key}{detail}")
    if frame.height > limit:
        lines.append(f"  ... and {frame.height - limit:,} more")
    return lines


def repair(request: RepairRequest, session: Session) -> RepairReport:
    from seamline.engine import Options
    from seamline.exceptions import RepairRefusedError
    from seamline.metrics import Metrics

    started = time.time()
    contract = session.load(request.contract)
    seam = contract.seam(request.seam)
    progress = session.progress
    metrics = Metrics("repair")
    report = RepairReport(
        "repair", str(contract.path), started, EXIT_CLEAN, metrics, seam.name, request.apply
    )

    def done(_: Any, run: SeamRun) -> None:
        progress.seam_done(seam.name, run.value, run.seconds)

    (run,) = run_seams(
        [seam],
        lambda s: contract.reconcile(s, options=Options(on_progress=progress.rows)),
        session,
        doing="reconciling",
        done=done,
    )
    if run.failed:
        metrics.error(seam.name)
        report.exit_code, report.data = run.code, {"error": run.error}
        return report
    result = run.value
    metrics.reconcile(seam.name, result)
    report.data["counts"] = result.counts
    report.data["drift"] = {"status": "clean" if result.clean else "drift", **result.to_dict()}  # --html
    fraction = request.max_fraction if request.max_fraction is not None else seam.repair.max_fraction
    plan = result.plan_repair(**({"max_fraction": fraction} if fraction is not None else {}))
    counts = dict(plan.counts)
    report.data["plan"] = counts
    for action, n in counts.items():
        metrics.add("seamline_repair_rows", n, seam=seam.name, action=action, stage="planned")
    total = sum(counts.values())
    lines = report.lines
    summary = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    lines.append(f"repair plan for seam {seam.name!r}: {summary}")
    if total:
        lines.append("  (a changed row shows: target value -> value written)")
        lines += plan_lines(plan, result)
        report.data["plan_rows"] = plan.to_polars().head(SHOWN).to_dicts()  # --html: the first operations
    why = refusal(plan, seam.name) if total else None
    try:
        if why is None and total:
            plan.check_guard()  # the plan's own rules have the last word
    except RepairRefusedError as e:
        why = describe(e)
    if why is not None:
        session.error(f"repair refused: {why}; drift not repaired")
        report.data["refused"] = why
        report.exit_code = EXIT_DRIFT
        return report
    if not request.apply:
        lines.append("dry run: nothing written (run with --apply to write and verify)")
        report.exit_code = EXIT_DRIFT if total else EXIT_CLEAN
        return report
    if total == 0:
        lines.append("nothing to repair")
        return report
    with progress.step(f"{seam.name}: applying the repair"):
        outcome = plan.apply()
    applied = dict(outcome.counts)
    report.data["outcome"] = applied | {"verified": bool(outcome.verified)}
    for action, n in applied.items():
        metrics.add("seamline_repair_rows", n, seam=seam.name, action=action, stage="applied")
    lines.append("applied: " + ", ".join(f"{k} {v:,}" for k, v in applied.items()))
    if outcome.verified:
        lines.append(f"verified: seam {seam.name!r} is clean after the repair")
    else:
        lines.append(f"NOT verified: seam {seam.name!r} still differs after the repair")
        report.exit_code = EXIT_DRIFT
    return report
