"""One renderer for every command's report: the terminal text, then one writer per requested output
file. A new output format (HTML, ...) is one more entry in `WRITERS` taking the same report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seamline.commands.common import Report
from seamline.commands.session import Session


@dataclass(frozen=True)
class Outputs:
    """The files a run writes besides its terminal text (None: not asked for)."""

    json: str | None = None
    metrics: str | None = None
    diffs: str | None = None  # FILE.parquet; with several seams FILE.<seam>.parquet, or {seam}
    html: str | None = None  # one self-contained page (seamline.html_report)


def write_json(report: Report, path: str, session: Session) -> None:
    from seamline.jsonsafe import json_safe
    from seamline.metrics import write_atomic

    write_atomic(path, session.redact(json.dumps(json_safe(report.to_dict()), indent=2)) + "\n")


def write_html(report: Report, path: str, session: Session) -> None:
    from seamline.html_report import write

    write(path, report.to_dict(), session.redact)


def write_metrics(report: Report, path: str, session: Session) -> None:
    from seamline.metrics import Metrics

    metrics = report.metrics if report.metrics is not None else Metrics(report.command)
    metrics.write(path, report.exit_code)


def diffs_path(pattern: str, seam: str, many: bool) -> Path:
    if "{seam}" in pattern:
        return Path(pattern.replace("{seam}", seam))
    p = Path(pattern)
    return p.with_name(f"{p.stem}.{seam}{p.suffix or '.parquet'}") if many else p


def write_diffs(report: Report, pattern: str, session: Session) -> None:
    results = report.diff_results()
    many = len(getattr(report, "runs", results)) > 1
    for name, result in results.items():
        path = diffs_path(pattern, name, many)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.write_diffs(str(path))


WRITERS: dict[str, Callable[[Report, str, Session], None]] = {
    "json": write_json,
    "html": write_html,
    "diffs": write_diffs,
    "metrics": write_metrics,
}


def emit(report: Report, outputs: Outputs, session: Session) -> int:
    """Print the report and write the files asked for; the report's exit code."""
    text = report.text()
    if text:
        session.print(text)
    write_files(report, outputs, session)
    return report.exit_code


def write_files(report: Report, outputs: Outputs, session: Session) -> None:
    for name, writer in WRITERS.items():
        destination = getattr(outputs, name, None)
        if destination:
            writer(report, destination, session)
