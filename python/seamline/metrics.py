"""Metrics for schedulers, in the Prometheus text exposition format, built with prometheus_client.

Written atomically (a temporary file in the same directory, then a rename) so that a node exporter's
textfile collector (`--collector.textfile.directory`, files named `*.prom`) never reads half a file;
the same file can be pushed to a Pushgateway (`curl --data-binary @seamline.prom
http://pushgateway:9091/metrics/job/seamline`).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

KINDS = ("missing", "extra", "changed", "duplicate")
_FRESHNESS_LEVEL = {"pass": 0, "warn": 1, "error": 2}

# name -> (type, help)
FAMILIES: dict[str, tuple[str, str]] = {
    "seamline_drift_rows": ("gauge", "Rows that differ between the source and the target, by kind."),
    "seamline_seam_clean": ("gauge", "1 when the last reconcile of the seam found no difference, else 0."),
    "seamline_rows_read": ("gauge", "Rows read from each side by the last reconcile (all passes)."),
    "seamline_rows_per_second": ("gauge", "Rows per second of the full hash pass, per side."),
    "seamline_duration_seconds": ("gauge", "Wall time of the last check of the seam."),
    "seamline_freshness_lag_seconds": (
        "gauge",
        "Newest source version minus newest target version (or between commit times), in seconds.",
    ),
    "seamline_freshness_backlog_rows": ("gauge", "Source rows newer than the target's newest version."),
    "seamline_freshness_status": ("gauge", "Freshness against the SLA: 0 pass, 1 warn, 2 error."),
    "seamline_freshness_warn_after_seconds": ("gauge", "The seam's freshness SLA: warn past this lag."),
    "seamline_freshness_error_after_seconds": ("gauge", "The seam's freshness SLA: error past this lag."),
    "seamline_repair_rows": ("gauge", "Rows in the repair plan (planned) or written (applied), by action."),
    "seamline_seam_error": ("gauge", "1 when the seam could not be checked (store unavailable, bad input)."),
    "seamline_last_run_timestamp_seconds": ("gauge", "When this run finished (Unix time)."),
    "seamline_last_run_exit_code": ("gauge", "The exit code of this run."),
}


def escape_label(value: str) -> str:
    """A label value as the text format escapes it (what prometheus_client writes)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Metrics:
    """The samples of one run, by family; `registry` turns them into prometheus_client gauges."""

    command: str
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def add(self, name: str, value: float, **labels: str) -> None:
        if name not in FAMILIES:
            raise KeyError(name)
        self.samples.setdefault(name, []).append((labels, value))

    def reconcile(self, seam: str, result: Any) -> None:
        for kind in KINDS:
            self.add("seamline_drift_rows", result.counts.get(kind, 0), seam=seam, kind=kind)
        self.add("seamline_seam_clean", 1 if result.clean else 0, seam=seam)
        from seamline.progress import side_stats

        for side in ("source", "target"):
            rows, read, seconds = side_stats(result.passes, side)
            self.add("seamline_rows_read", read, seam=seam, side=side)
            if seconds > 0:
                self.add("seamline_rows_per_second", rows / seconds, seam=seam, side=side)
        self.add("seamline_duration_seconds", result.seconds, seam=seam)

    def freshness(self, seam: str, f: Any) -> None:
        if f.lag_seconds is not None:
            self.add("seamline_freshness_lag_seconds", f.lag_seconds, seam=seam)
        if f.backlog is not None:
            self.add("seamline_freshness_backlog_rows", f.backlog, seam=seam)
        if f.warn_after is not None:
            self.add("seamline_freshness_warn_after_seconds", f.warn_after, seam=seam)
        if f.error_after is not None:
            self.add("seamline_freshness_error_after_seconds", f.error_after, seam=seam)
        if f.status in _FRESHNESS_LEVEL:
            self.add("seamline_freshness_status", _FRESHNESS_LEVEL[f.status], seam=seam)

    def error(self, seam: str) -> None:
        self.add("seamline_seam_error", 1, seam=seam)

    def registry(self, exit_code: int, now: float | None = None) -> CollectorRegistry:
        """A registry holding every family that has samples, plus when and how this run ended.
        prometheus_client is imported here: a run that writes no metrics file never loads it."""
        from prometheus_client import CollectorRegistry, Gauge

        now = time.time() if now is None else now
        self.samples.pop("seamline_last_run_timestamp_seconds", None)
        self.samples.pop("seamline_last_run_exit_code", None)
        self.add("seamline_last_run_timestamp_seconds", round(now, 3), command=self.command)
        self.add("seamline_last_run_exit_code", exit_code, command=self.command)
        registry = CollectorRegistry(auto_describe=False)
        for name, (_, text) in FAMILIES.items():
            samples = self.samples.get(name)
            if not samples:
                continue
            labelnames = list(dict.fromkeys(k for labels, _ in samples for k in labels))
            gauge = Gauge(name, text, labelnames, registry=registry)
            for labels, value in samples:
                child = (
                    gauge.labels(**{k: str(labels.get(k, "")) for k in labelnames}) if labelnames else gauge
                )
                child.set(value)
        return registry

    def render(self, exit_code: int, now: float | None = None) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry(exit_code, now)).decode("utf-8")

    def write(self, path: str | Path, exit_code: int) -> None:
        """Atomically (prometheus_client writes a temporary file and renames it). Labels are seam
        names, commands and fixed words, never a value from a store, so nothing here needs redaction."""
        from prometheus_client import write_to_textfile

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(target), self.registry(exit_code))


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a part."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
