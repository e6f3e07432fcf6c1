"""`seamline merge`: the shards of a scaled-out run as one report, printed like `check`."""

from __future__ import annotations

from typing import Any


def merged_text(merged: Any, limit: int = 10) -> str:
    """The summary row and the first differences of a merged run, with the changed values."""
    from seamline.report import difference_lines, summary

    name = f"{merged.seam} (run {merged.run_id}, {merged.shards} shards)"
    out = [summary({name: merged})]
    if merged.diffs.height:
        out.append(difference_lines(merged.diffs, list(merged.manifests[0]["key"]), limit))
    return "\n".join(out)
