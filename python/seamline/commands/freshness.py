"""`seamline freshness`: the lag and backlog of each seam against its SLA."""

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
class FreshnessRequest:
    contract: str
    seams: tuple[str, ...] = ()


@dataclass
class FreshnessReport(Report):
    runs: list[SeamRun] = field(default_factory=list)

    def text(self) -> str:
        from seamline.freshness import table

        measured = [r.value for r in self.runs if not r.failed]
        out = [table(measured)] if measured else []
        out += [f"  {f.seam}: {f.note}" for f in measured if f.note]
        out += [f"{r.name}: error: {r.error}" for r in self.runs if r.failed]
        return "\n".join(out)

    def body(self) -> dict[str, Any]:
        seams: dict[str, Any] = {}
        for run in self.runs:
            if run.failed:
                status = "unavailable" if run.code == EXIT_UNAVAILABLE else "failed"
                seams[run.name] = {"seam": run.name, "status": status, "error": run.error}
            else:
                seams[run.name] = run.value.to_dict()
        return {"seams": seams}


def freshness(request: FreshnessRequest, session: Session) -> FreshnessReport:
    from seamline.freshness import measure
    from seamline.metrics import Metrics

    started = time.time()
    contract = session.load(request.contract)
    metrics = Metrics("freshness")
    runs = run_seams(
        select(contract, request.seams),
        lambda seam: measure(contract, seam),
        session,
        doing="reading the newest versions",
    )
    for run in runs:
        if run.failed:
            metrics.error(run.name)
        else:
            metrics.freshness(run.name, run.value)
    code = worst(
        [r.code if r.failed else EXIT_DRIFT if r.value.status == "error" else EXIT_CLEAN for r in runs]
    )
    return FreshnessReport("freshness", str(contract.path), started, code, metrics, runs)
