"""`seamline check`: reconcile the seams of a contract and report each one's drift."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from seamline.commands.common import (
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_UNAVAILABLE,
    Report,
    SeamRun,
    run_seams,
    select,
    worst,
)
from seamline.commands.session import Session


@dataclass(frozen=True)
class CheckRequest:
    contract: str
    seams: tuple[str, ...] = ()


@dataclass
class CheckReport(Report):
    runs: list[SeamRun] = field(default_factory=list)

    def _status(self, run: SeamRun) -> str:
        if run.failed:
            return "error"
        return "clean" if run.value.clean else "drift"

    def text(self) -> str:
        from seamline.report import differences, summary

        results = {run.name: run.value for run in self.runs}
        failed = {
            r.name: "UNAVAILABLE" if r.code == EXIT_UNAVAILABLE else "ERROR" for r in self.runs if r.failed
        }
        out = [summary(results, failed=failed, seconds={r.name: r.seconds for r in self.runs})]
        for run in self.runs:
            if not run.failed and not run.value.clean:
                out += ["", f"{run.name}:", differences(run.value)]
        errors = [r for r in self.runs if r.failed]
        if errors:
            out.append("")
            for run in errors:
                what = "store unavailable" if run.code == EXIT_UNAVAILABLE else "error"
                out.append(f"{run.name}: {what}: {run.error}")
        return "\n".join(out)

    def body(self) -> dict[str, Any]:
        seams: dict[str, Any] = {}
        for run in self.runs:
            if run.failed:
                seams[run.name] = {"status": "error", "exit_code": run.code, "error": run.error}
            else:
                status = self._status(run)
                seams[run.name] = {
                    "status": status,
                    "exit_code": EXIT_CLEAN if status == "clean" else EXIT_DRIFT,
                    "error": None,
                    **run.value.to_dict(),
                }
        statuses = [self._status(r) for r in self.runs]
        return {
            "clean": self.exit_code == EXIT_CLEAN,
            "summary": {
                "seams": len(self.runs),
                "clean": statuses.count("clean"),
                "drift": statuses.count("drift"),
                "error": statuses.count("error"),
            },
            "seams": seams,
        }

    def diff_results(self) -> dict[str, Any]:
        return {r.name: r.value for r in self.runs if not r.failed}


def check(request: CheckRequest, session: Session) -> CheckReport:
    from seamline.engine import Options
    from seamline.metrics import Metrics

    started = time.time()
    contract = session.load(request.contract)
    seams = select(contract, request.seams)
    metrics = Metrics("check")
    progress = session.progress

    def reconcile(seam: Any) -> Any:
        return contract.reconcile(seam, options=Options(on_progress=progress.rows))

    def done(seam: Any, run: SeamRun) -> None:
        progress.seam_done(seam.name, run.value, run.seconds)

    runs = run_seams(seams, reconcile, session, doing="reconciling", done=done)
    for run in runs:
        if run.failed:
            metrics.error(run.name)
            metrics.add("seamline_duration_seconds", run.seconds, seam=run.name)
        else:
            metrics.reconcile(run.name, run.value)
    code = worst([r.code if r.failed else EXIT_CLEAN if r.value.clean else EXIT_DRIFT for r in runs])
    return CheckReport("check", str(contract.path), started, code, metrics, runs)
