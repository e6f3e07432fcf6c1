"""Progress on the terminal while a command runs, on stderr so stdout stays the report.

On a terminal: a spinner with the seam, the step and the elapsed time, redrawn in place, then one line
per finished seam (rows and rows/s per side). Not on a terminal (a scheduler's log): only the
finished lines, so a log shows what each seam read and how fast.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_FRAMES = "|/-\\"


def rate(rows: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    r = rows / seconds
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if r >= size:
            return f"{r / size:.1f}{unit}"
    return f"{r:.0f}"


def side_stats(passes: list[dict[str, Any]], side: str) -> tuple[int, int, float]:
    """(rows in the full pass, rows read over all passes, seconds of the full pass) of one side."""
    full = [p for p in passes if p["side"] == side and p["kind"] == "hash"]
    rows = sum(p["rows"] for p in full)
    seconds = sum(p["seconds"] for p in full)
    read = sum(p["rows"] for p in passes if p["side"] == side)
    return rows, read, seconds


def throughput(passes: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per side, for reports: rows of the full pass, rows read over all passes, seconds of the full
    pass and its rows per second."""
    out: dict[str, dict[str, float | None]] = {}
    for side in ("source", "target"):
        rows, read, seconds = side_stats(passes, side)
        per_second = round(rows / seconds, 1) if seconds > 0 else None
        out[side] = {
            "rows": rows,
            "rows_read": read,
            "seconds": round(seconds, 3),
            "rows_per_second": per_second,
        }
    return out


class Progress:
    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, quiet: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = is_tty if live is None else live
        self.quiet = quiet
        self._lock = threading.Lock()
        self._status: str | None = None
        self._detail = ""
        self._started = 0.0
        #: wall seconds of the last step, as the spinner counted them (the finished line shows them)
        self.last_seconds = 0.0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._clear()
            print(text, file=self.stream, flush=True)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        """A spinner with `text` and the elapsed time while the block runs (terminals only)."""
        started = time.monotonic()
        if not self.live or self.quiet:
            try:
                yield
            finally:
                self.last_seconds = time.monotonic() - started
            return
        self._status, self._started = text, started
        stop = threading.Event()
        thread = threading.Thread(target=self._spin, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.last_seconds = time.monotonic() - started
            with self._lock:
                self._clear()
                self._status = None
                self._detail = ""

    def rows(self, read: dict[str, int]) -> None:
        """Live counts while a seam runs (`Options.on_progress`): rows read by the running pass and
        rows/s per side, shown next to the spinner."""
        if not self.live or self._status is None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-9)
        with self._lock:
            self._detail = ", ".join(f"{side} {n:,} rows ({rate(n, elapsed)}/s)" for side, n in read.items())

    def seam_done(self, name: str, result: Any, seconds: float | None = None) -> None:
        """One line: rows and rows/s per side, differences, and the wall seconds of the step (the
        time the spinner showed last; the result's own time when there was no step)."""
        parts = []
        for side in ("source", "target"):
            rows, _, pass_seconds = side_stats(result.passes, side)
            parts.append(f"{side} {rows:,} rows ({rate(rows, pass_seconds)} rows/s)")
        found = sum(v for k, v in result.counts.items() if k in ("missing", "extra", "changed", "duplicate"))
        verdict = "clean" if result.clean else f"{found:,} difference{'s' if found != 1 else ''}"
        took = result.seconds if seconds is None else seconds
        self.line(f"{name}: {', '.join(parts)}; {verdict}; {took:.2f}s")

    def _spin(self, stop: threading.Event) -> None:
        i = 0
        while not stop.wait(0.1):
            with self._lock:
                if self._status is None:
                    continue
                elapsed = time.monotonic() - self._started
                detail = f": {self._detail}" if self._detail else ""
                text = f"\r{_FRAMES[i % len(_FRAMES)]} {self._status} {elapsed:.1f}s{detail}"
                self.stream.write(text + "\x1b[K")
                self.stream.flush()
            i += 1

    def _clear(self) -> None:
        if self.live and self._status is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
