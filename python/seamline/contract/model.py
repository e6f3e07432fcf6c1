"""A loaded contract: its stores, seams and chains, and what a run does with them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seamline.contract.factory import open_side
from seamline.contract.schema import Seam, StoreBase
from seamline.contract.secrets import redact
from seamline.exceptions import ContractError


@dataclass
class Contract:
    path: Path
    version: int
    stores: dict[str, StoreBase]
    seams: dict[str, Seam]
    chains: dict[str, list[str]]
    secrets: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path:
        return self.path.parent

    def seam(self, name: str) -> Seam:
        if name not in self.seams:
            known = ", ".join(self.seams) or "none"
            raise ContractError(f"{self.path}: no seam {name!r} (seams: {known})")
        return self.seams[name]

    def chain(self, name: str) -> list[Seam]:
        if name not in self.chains:
            known = ", ".join(self.chains) or "none"
            raise ContractError(f"{self.path}: no chain {name!r} (chains: {known})")
        return [self.seams[s] for s in self.chains[name]]

    def store_of(self, seam: Seam, side: str) -> StoreBase:
        return self.stores[(seam.source if side == "source" else seam.target).store]

    def open(self, seam: Seam, side: str, *, as_of: Any = None) -> Any:
        """The store adapter for one side of a seam; `as_of` pins Iceberg sides to the snapshot
        current at that time."""
        spec = seam.source if side == "source" else seam.target
        return open_side(self.stores[spec.store], spec, seam, as_of=as_of)

    def reconcile(self, seam: Seam, *, as_of: Any = None, options: Any = None) -> Any:
        """Reconcile one seam as declared (a `ReconcileResult`)."""
        import seamline as sl

        kwargs: dict[str, Any] = {} if seam.version is None else {"version": seam.version}
        src = self.open(seam, "source", as_of=as_of)
        dst = self.open(seam, "target", as_of=as_of)
        return sl.reconcile(
            src, dst, key=seam.key, columns=seam.columns, compare=seam.compare, options=options, **kwargs
        )

    def redact(self, text: str) -> str:
        """`text` without any secret of this contract (nor any URL's or DSN's password)."""
        return redact(text, self.secrets)
