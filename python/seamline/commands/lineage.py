"""`seamline lineage`: walk a chain of seams to the first one that diverges."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from seamline.commands.common import EXIT_CLEAN, EXIT_DRIFT, Report, SeamFailed
from seamline.commands.session import Session


@dataclass(frozen=True)
class LineageRequest:
    contract: str
    chain: str
    as_of: dt.datetime | None = None


@dataclass
class LineageReport(Report):
    walk: Any = None

    def text(self) -> str:
        return str(self.walk.render())

    def body(self) -> dict[str, Any]:
        return dict(self.walk.to_dict())


def lineage(request: LineageRequest, session: Session) -> LineageReport:
    from seamline.lineage import Layer, walk
    from seamline.metrics import Metrics

    started = time.time()
    contract = session.load(request.contract)
    contract.chain(request.chain)  # a bad chain name is bad input before anything is read
    progress = session.progress
    metrics = Metrics("lineage")

    def reconcile(seam: Any) -> Any:
        try:
            with progress.step(f"{seam.name}: reconciling"):
                return contract.reconcile(seam, as_of=request.as_of)
        except Exception as e:
            raise SeamFailed(seam.name, e) from e

    def on_layer(layer: Layer) -> None:
        assert layer.freshness is not None and layer.result is not None
        progress.seam_done(layer.seam, layer.result, progress.last_seconds)
        metrics.freshness(layer.seam, layer.freshness)
        metrics.reconcile(layer.seam, layer.result)

    result = walk(contract, request.chain, as_of=request.as_of, reconcile=reconcile, on_layer=on_layer)
    code = EXIT_DRIFT if result.diverged is not None else EXIT_CLEAN
    return LineageReport("lineage", str(contract.path), started, code, metrics, result)
