"""A repair plan is data: the upserts, deletes and de-duplications that close the settled drift of
one seam, in the target's column names, carrying the source rows they write and the versions that
guard every write. Dry-run is printing it; `apply()` hands it to the target store's writer, then
re-verifies the repaired leaves against both stores.

Never over a newer write: every upsert carries the source row's version and every delete the
version the target row had when it was read; writers use them as optimistic guards (OpenSearch
external_gte versions, `WHERE target.version < excluded.version` in Postgres...). A plan that would
touch more than `max_fraction` of the target is refused: a renamed column or a wrong filter must
never wipe an index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from seamline.exceptions import InvalidInputError, RepairRefusedError
from seamline.stores._common import version_numbers
from seamline.stores._rows import cast_column
from seamline.stores.protocols import Embed, Repairable, RepairWriter, ScanRequest, Source

if TYPE_CHECKING:
    from seamline.result import ReconcileResult

PLAN_FORMAT = 1


def _rows(
    diffs: pl.DataFrame, struct: str, key: list[tuple[str, str]], columns: list[tuple[str, str]]
) -> pa.Table:
    """Key columns and the `struct` side's compared values, renamed to the target's names."""
    if not diffs.height:
        return pa.table({t: pa.array([], pa.null()) for _, t in key + columns})
    flat = diffs.select(
        [pl.col(s).alias(t) for s, t in key] + [pl.col(struct).struct.field(s).alias(t) for s, t in columns]
    )
    return flat.to_arrow()


def _same_type(diffs: pl.DataFrame, column: str) -> bool:
    """Whether both sides' compared values of `column` can be ordered against each other (both
    times, both numbers, or one type)."""
    types = []
    for side in ("source", "target"):
        dtype = diffs.schema.get(side)
        fields = {f.name: f.dtype for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}
        types.append(fields.get(column))
    a, b = types
    if a is None or b is None:
        return False
    return a == b or (a.is_temporal() and b.is_temporal()) or (a.is_numeric() and b.is_numeric())


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


@dataclass
class RepairOutcome:
    """What `apply()` did: counts (applied, skipped_newer, failed), the re-verification, and the
    differences still present on the plan's keys after it (other than those a newer write won)."""

    counts: dict[str, int]
    verified: bool
    remaining: pl.DataFrame
    errors: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<RepairOutcome verified={self.verified} {self.counts}>"


@dataclass
class RepairPlan:
    """Upserts (source rows in the target's shape), deletes (target keys + the version read) and
    dedupes (the one row to keep for a key the target holds more than once)."""

    seam: str
    key: list[str]
    columns: list[str]
    version: str | None
    upserts: pa.Table
    deletes: pa.Table
    dedupes: pa.Table
    target_rows: int
    max_fraction: float
    #: differences a repair cannot fix (a key duplicated in the source of record)
    unrepairable: int = 0
    result: ReconcileResult | None = field(default=None, repr=False)
    #: the source's names of the key columns (a target keyed on `_id` may hold them as fields too)
    source_key: list[str] | None = None

    # ---------------------------------------------------------------- building

    @classmethod
    def from_result(cls, result: ReconcileResult, max_fraction: float = 0.05) -> RepairPlan:
        if not 0 <= max_fraction <= 1:
            raise InvalidInputError(f"max_fraction {max_fraction} is not between 0 and 1")
        seam = result.seam
        diffs = result.settled
        kind = pl.col("kind")
        dup_target = diffs.filter((kind == "duplicate") & (pl.col("side") == "target"))
        dup_keys = dup_target.select([s for s, _ in seam.key])
        write = diffs.filter(kind.is_in(["missing", "changed"]))
        if dup_keys.height:
            # a duplicated key is rewritten whole by the dedupe; no separate upsert for it
            write = write.join(dup_keys, on=[s for s, _ in seam.key], how="anti")
        extra = diffs.filter(kind == "extra")
        dedupe = orphans = dup_target
        if dup_target.height:  # (a clean result's frame has no value columns to look at)
            dedupe = dup_target.filter(pl.col("source").is_not_null())
            # a key duplicated in the target but gone from the source: every copy is deleted
            orphans = dup_target.filter(pl.col("source").is_null()).join(
                extra.select([s for s, _ in seam.key]), on=[s for s, _ in seam.key], how="anti"
            )
        version = [seam.version] if seam.version else []
        delete_cols = version  # the target's version, read with the row, guards the delete
        plan = cls(
            seam=f"{result.source} -> {result.target}",
            key=[t for _, t in seam.key],
            columns=[t for _, t in seam.values],
            version=seam.version[1] if seam.version else None,
            upserts=_rows(write, "source", seam.key, seam.values),
            deletes=_rows(
                pl.concat([extra, orphans]) if orphans.height else extra, "target", seam.key, delete_cols
            ),
            dedupes=_rows(dedupe, "source", seam.key, seam.values),
            target_rows=result.counts["target_rows"],
            max_fraction=max_fraction,
            unrepairable=diffs.filter((kind == "duplicate") & (pl.col("side") == "source")).height,
            result=result,
            source_key=[s for s, _ in seam.key],
        )
        return plan

    # ---------------------------------------------------------------- looking at it

    @property
    def counts(self) -> dict[str, int]:
        return {
            "upsert": self.upserts.num_rows,
            "delete": self.deletes.num_rows,
            "dedupe": self.dedupes.num_rows,
        }

    @property
    def touched(self) -> int:
        return self.upserts.num_rows + self.deletes.num_rows + self.dedupes.num_rows

    @property
    def empty(self) -> bool:
        return self.touched == 0

    def to_polars(self) -> pl.DataFrame:
        """One row per operation: op (upsert/delete/dedupe), the key, and the values written."""
        frames = []
        for op, table in (("upsert", self.upserts), ("delete", self.deletes), ("dedupe", self.dedupes)):
            if table.num_rows:
                df = _frame(table)
                frames.append(df.with_columns(pl.lit(op).alias("op")).select(["op", *df.columns]))
        if not frames:
            return pl.DataFrame({"op": []}, schema={"op": pl.String})
        return pl.concat(frames, how="diagonal_relaxed")

    def check_guard(self) -> None:
        """Refuse a plan that touches more than max_fraction of the target, or has no version."""
        limit = self.max_fraction * max(self.target_rows, 1)
        if self.touched > limit:
            raise RepairRefusedError(
                f"repair of {self.seam} refused: it would touch {self.touched} of {self.target_rows} "
                f"target rows ({self.touched / max(self.target_rows, 1):.1%}), above max_fraction "
                f"{self.max_fraction:.1%}; check the seam's columns and filters, or raise max_fraction"
            )
        if self.version is None and not self.empty:
            raise RepairRefusedError(
                f"repair of {self.seam} refused: no version column, so a repair could overwrite a newer "
                "write; pass version= to reconcile"
            )

    def upsert_versions(self) -> pa.Array:
        assert self.version is not None
        return version_numbers(self.upserts.column(self.version).combine_chunks())

    def delete_versions(self) -> pa.Array:
        assert self.version is not None
        return version_numbers(self.deletes.column(self.version).combine_chunks())

    def dedupe_versions(self) -> pa.Array:
        assert self.version is not None
        return version_numbers(self.dedupes.column(self.version).combine_chunks())

    # ---------------------------------------------------------------- applying

    def apply(
        self,
        target: Source | None = None,
        *,
        verify: bool = True,
        embed: Embed | None = None,
    ) -> RepairOutcome:
        """Write the plan to the target (the reconciled one, or `target`), then verify it: a plan
        from a reconcile re-checks the repaired leaves against fresh snapshots of both stores; a
        loaded plan checks the target against the rows and versions it carries. Idempotent:
        applying it again writes nothing new."""
        self.check_guard()
        store = target or (self.result.context.target if self.result else None)
        if store is None:
            raise InvalidInputError("this plan was loaded from a file: pass target= to apply it")
        if not isinstance(store, Repairable):
            raise InvalidInputError(f"{store.describe()} cannot be repaired (no repair writer)")
        writer: RepairWriter = store.repair_writer(embed=embed)
        done = writer.apply(self) if not self.empty else None
        counts = {
            "applied": done.applied if done else 0,
            "skipped_newer": done.skipped_newer if done else 0,
            "failed": done.failed if done else 0,
        }
        errors = list(done.errors) if done else []
        remaining = pl.DataFrame()
        verified = counts["failed"] == 0
        if verify and self.result is not None:
            remaining = self._remaining_after(self.result)
            verified = verified and remaining.height == 0
        elif verify:
            remaining = self._unmet(store)
            verified = verified and remaining.height == 0
        return RepairOutcome(counts=counts, verified=verified, remaining=remaining, errors=errors)

    def _remaining_after(self, result: ReconcileResult) -> pl.DataFrame:
        """Differences on the plan's keys after applying it, from fresh snapshots of the leaves that
        differed, ignoring keys that a newer write now holds (or that are in flight)."""
        again = result.recheck()
        keys = [s for s, _ in result.seam.key]
        planned = pl.DataFrame()
        for table in (self.upserts, self.deletes, self.dedupes):
            if table.num_rows:
                frame = _frame(table.select(self.key)).rename(dict(zip(self.key, keys, strict=True)))
                planned = pl.concat([planned, frame], how="vertical_relaxed") if planned.height else frame
        left = again.settled
        if not left.height or not planned.height:
            return left.clear() if left.height else left
        left = left.join(planned.unique(), on=keys, how="semi")
        if self.version and result.seam.version and _same_type(left, result.seam.version[0]):
            # a target row whose version is newer than the source's won against the repair: fine
            # (sides whose versions differ in type, e.g. text in a JSON topic, are not compared)
            name = result.seam.version[0]
            newer = pl.col("target").struct.field(name) > pl.col("source").struct.field(name)
            left = left.filter(~(newer.fill_null(False)))
        return left

    def _unmet(self, target: Source) -> pl.DataFrame:
        """The plan's operations the target does not hold, judged by the versions the plan carries
        (a loaded plan has no source to re-check against): an upserted or de-duplicated key must be
        held exactly once at the plan's version or a newer one, a deleted key must be gone or held
        at a version newer than the one the plan read. One row per unmet operation: op, key."""
        version = self.version
        assert version is not None  # check_guard
        schema = target.schema()
        names = list(dict.fromkeys([*self.key, version]))
        target.pin()
        try:
            streams = target.open(ScanRequest(columns=names, key=self.key, parallelism=1))
            held = pa.concat_tables([pa.RecordBatchReader.from_stream(s).read_all() for s in streams])
        finally:
            target.close()
        vtype = schema.field(version).type

        def versions(table: pa.Table) -> list[int | None]:
            values = cast_column(table.column(version), vtype, version)
            out: list[int | None] = version_numbers(values).to_pylist()
            return out

        def keys(table: pa.Table) -> list[tuple[Any, ...]]:
            conformed = [cast_column(table.column(k), schema.field(k).type, k) for k in self.key]
            return list(zip(*(c.to_pylist() for c in conformed), strict=True))

        now: dict[tuple[Any, ...], list[int | None]] = {}
        for k, v in zip(keys(held), versions(held), strict=True):
            now.setdefault(k, []).append(v)
        unmet: list[dict[str, Any]] = []
        for op, table in (("upsert", self.upserts), ("dedupe", self.dedupes), ("delete", self.deletes)):
            if not table.num_rows:
                continue
            for k, v in zip(keys(table), versions(table), strict=True):
                there = now.get(k, [])
                newest = max((x for x in there if x is not None), default=None)
                if op == "delete":
                    ok = not there or (newest is not None and (v is None or newest > v))
                else:
                    ok = len(there) == 1 and newest is not None and v is not None and newest >= v
                if not ok:
                    unmet.append({"op": op, **dict(zip(self.key, k, strict=True))})
        if not unmet:
            return pl.DataFrame()
        return pl.DataFrame(unmet)

    # ---------------------------------------------------------------- files

    def save(self, path: str | Path) -> None:
        """Write the plan (Arrow IPC with the metadata in the schema), so it can be applied later or
        again after a crash, without the source."""
        meta = {
            "format": PLAN_FORMAT,
            "seam": self.seam,
            "key": self.key,
            "columns": self.columns,
            "version": self.version,
            "target_rows": self.target_rows,
            "max_fraction": self.max_fraction,
            "unrepairable": self.unrepairable,
            "source_key": self.source_key,
        }
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "plan.json").write_text(json.dumps(meta, indent=2))
        for name, table in (("upserts", self.upserts), ("deletes", self.deletes), ("dedupes", self.dedupes)):
            with pa.OSFile(str(path / f"{name}.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table)

    @classmethod
    def load(cls, path: str | Path) -> RepairPlan:
        path = Path(path)
        try:
            meta = json.loads((path / "plan.json").read_text())
            tables = {
                n: pa.ipc.open_file(str(path / f"{n}.arrow")).read_all()
                for n in ("upserts", "deletes", "dedupes")
            }
        except (OSError, ValueError, pa.ArrowInvalid) as e:
            raise InvalidInputError(f"{path}: not a Seamline repair plan ({e})") from e
        if meta.get("format") != PLAN_FORMAT:
            raise InvalidInputError(f"{path}: repair plan format {meta.get('format')} is not {PLAN_FORMAT}")
        return cls(
            seam=meta["seam"],
            key=meta["key"],
            columns=meta["columns"],
            version=meta["version"],
            target_rows=meta["target_rows"],
            max_fraction=meta["max_fraction"],
            unrepairable=meta.get("unrepairable", 0),
            source_key=meta.get("source_key"),
            **tables,
        )
