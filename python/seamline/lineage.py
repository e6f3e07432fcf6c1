"""The lineage walk: along a chain of seams (bronze first), layer by layer, freshness then checksums,
until the first seam that diverges; it is named with the snapshot each side read.

A stalled load upstream makes every layer below it stale, and a corrupted layer makes every layer
built from it wrong: the first divergence along the chain is where to look. With `as_of`, every
Iceberg side reads the snapshot that was current at that time, i.e. what a dashboard read then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seamline.contract import Contract, Seam
from seamline.durations import format_duration
from seamline.freshness import SeamFreshness, as_of_label, measure
from seamline.jsonsafe import json_safe


@dataclass
class Layer:
    seam: str
    freshness: SeamFreshness | None = None
    result: Any = None  # ReconcileResult
    verdict: str = "not checked"  # clean | stale | drift | stale, drift | not checked

    @property
    def diverged(self) -> bool:
        return self.verdict not in ("clean", "not checked")

    @property
    def as_of(self) -> dict[str, Any]:
        """What each side read: the reconcile's snapshots, else the freshness check's."""
        if self.result is not None:
            return dict(self.result.as_of)
        if self.freshness is not None:
            return {"source": self.freshness.source_as_of, "target": self.freshness.target_as_of}
        return {}

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "seam": self.seam,
                "verdict": self.verdict,
                "freshness": self.freshness.to_dict() if self.freshness is not None else None,
                "counts": dict(self.result.counts) if self.result is not None else None,
                "as_of": self.as_of,
            }
        )


@dataclass
class Walk:
    chain: str
    as_of: dt.datetime | None
    layers: list[Layer] = field(default_factory=list)

    @property
    def diverged(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.diverged), None)

    def to_dict(self) -> dict[str, Any]:
        first = self.diverged
        return json_safe(
            {
                "chain": self.chain,
                "as_of": self.as_of,
                "clean": first is None,
                "diverged_at": first.seam if first is not None else None,
                "layers": [layer.to_dict() for layer in self.layers],
            }
        )

    def render(self) -> str:
        from seamline.report import _table

        rows = []
        for i, layer in enumerate(self.layers, 1):
            f, r = layer.freshness, layer.result
            counts = "-"
            if r is not None:
                c = r.counts
                counts = " ".join(
                    f"{k}={c[k]}" for k in ("missing", "extra", "changed", "duplicate") if c.get(k)
                ) or ("clean" if r.clean else "-")
            rows.append(
                [
                    i,
                    layer.seam,
                    layer.verdict.upper() if layer.diverged else layer.verdict,
                    f.status if f is not None else "-",
                    format_duration(f.lag_seconds) if f is not None else "-",
                    "-" if f is None or f.backlog is None else f.backlog,
                    counts,
                    as_of_label(layer.as_of["source"]) if layer.as_of else "-",
                    as_of_label(layer.as_of["target"]) if layer.as_of else "-",
                ]
            )
        header = ["#", "seam", "verdict", "freshness", "lag", "backlog", "differences", "source", "target"]
        out = [_table(header, rows), ""]
        at = f" as of {self.as_of.isoformat()}" if self.as_of is not None else ""
        first = self.diverged
        if first is None:
            out.append(f"chain {self.chain!r}{at}: every layer agrees with the one before it")
        else:
            why = []
            if first.freshness is not None and first.freshness.status == "error":
                why.append(f"stale by {format_duration(first.freshness.lag_seconds)}")
            if first.result is not None and not first.result.clean:
                why.append("checksums differ")
            src, dst = first.as_of.get("source", {}), first.as_of.get("target", {})
            out.append(
                f"chain {self.chain!r}{at}: first divergence at seam {first.seam!r} ({', '.join(why)}); "
                f"source read {as_of_label(src)}, target read {as_of_label(dst)}"
            )
        return "\n".join(out)


def walk(
    contract: Contract,
    chain: str,
    *,
    as_of: dt.datetime | None = None,
    reconcile: Callable[[Seam], Any] | None = None,
    on_layer: Callable[[Layer], None] | None = None,
) -> Walk:
    """Walk `chain` until the first seam that is stale (freshness at error) or differs."""
    seams = contract.chain(chain)
    out = Walk(chain, as_of, [Layer(s.name) for s in seams])
    run = reconcile or (lambda seam: contract.reconcile(seam, as_of=as_of))
    for seam, layer in zip(seams, out.layers, strict=True):
        layer.freshness = measure(contract, seam, as_of=as_of)
        layer.result = run(seam)
        stale = layer.freshness.status == "error"
        drift = not layer.result.clean
        layer.verdict = (
            "stale, drift" if stale and drift else "stale" if stale else "drift" if drift else "clean"
        )
        if on_layer is not None:
            on_layer(layer)
        if layer.diverged:
            break
    return out
