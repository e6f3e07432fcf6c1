"""`seamline merge`: the shards of a scaled-out run as one report, printed like `check`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seamline.commands.common import EXIT_CLEAN, EXIT_DRIFT, Report


def merged_text(merged: Any, limit: int = 10) -> str:
    """The summary row and the first differences of a merged run, with the changed values."""
    from seamline.report import difference_lines, summary

    name = f"{merged.seam} (run {merged.run_id}, {merged.shards} shards)"
    out = [summary({name: merged})]
    if merged.diffs.height:
        out.append(difference_lines(merged.diffs, list(merged.manifests[0]["key"]), limit))
    return "\n".join(out)


@dataclass
class MergeReport(Report):
    """The merged run (before any repair the merge then plans)."""

    merged: Any = None

    def text(self) -> str:
        return merged_text(self.merged)

    def body(self) -> dict[str, Any]:
        return dict(self.merged.to_dict())


def merge_report(merged: Any, contract: str | None, started: float) -> MergeReport:
    from seamline.metrics import Metrics

    metrics = Metrics("merge")
    for kind in ("missing", "extra", "changed", "duplicate"):
        metrics.add("seamline_drift_rows", merged.counts.get(kind, 0), seam=merged.seam, kind=kind)
    metrics.add("seamline_seam_clean", 1 if merged.clean else 0, seam=merged.seam)
    code = EXIT_CLEAN if merged.clean else EXIT_DRIFT
    return MergeReport("merge", contract, started, code, metrics, merged)
