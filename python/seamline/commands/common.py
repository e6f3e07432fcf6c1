"""What every command shares: exit codes, the one line an error becomes, the per-seam loop, and the
report base class the renderer takes."""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seamline.commands.session import Session
    from seamline.contract import Contract, Seam
    from seamline.metrics import Metrics

EXIT_CLEAN, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
# Which exit code wins when the seams of one run end differently.
_SEVERITY = {EXIT_CLEAN: 0, EXIT_DRIFT: 1, EXIT_UNAVAILABLE: 2, EXIT_BAD_INPUT: 3, EXIT_INTERRUPTED: 4}


class SeamFailed(Exception):
    """An error while working on one seam: the line that reports it names the seam."""

    def __init__(self, seam: str, error: BaseException) -> None:
        super().__init__(f"seam {seam!r}: {describe(error)}")
        self.seam = seam
        self.error = error


def _mro_names(error: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__name__}" for c in type(error).__mro__}


def is_connection_error(error: BaseException) -> bool:
    """Driver errors that mean the store went away mid-run (not wrapped by an adapter)."""
    if isinstance(error, SeamFailed):
        return is_connection_error(error.error)
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return bool(
        _mro_names(error)
        & {
            "adbc_driver_manager.OperationalError",
            "opensearchpy.exceptions.ConnectionError",
            "opensearchpy.exceptions.ConnectionTimeout",
        }
    )


def exit_code_for(error: BaseException) -> int:
    from seamline.exceptions import RepairRefusedError, StoreUnavailableError

    if isinstance(error, SeamFailed):
        return exit_code_for(error.error)
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, StoreUnavailableError) or is_connection_error(error):
        return EXIT_UNAVAILABLE
    if isinstance(error, RepairRefusedError):
        return EXIT_DRIFT
    return EXIT_BAD_INPUT


def worst(codes: Sequence[int]) -> int:
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=EXIT_CLEAN)


def _server_message(error: BaseException) -> str | None:
    """A database driver's error as the server said it (ADBC keeps the server's fields apart from
    its own text, which repeats the query and a caret on several lines)."""
    details = getattr(error, "details", None)
    if not details or "adbc_driver_manager.Error" not in _mro_names(error):
        return None
    fields = {}
    for name, value in details:
        name = name.decode() if isinstance(name, bytes) else str(name)
        fields[name] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    primary = fields.get("PG_DIAG_MESSAGE_PRIMARY")
    if not primary:
        return None
    hint = fields.get("PG_DIAG_MESSAGE_HINT")
    return f"postgres: {primary}" + (f" ({hint})" if hint else "")


def is_unexpected(error: BaseException) -> bool:
    """An error no part of seamline put into words (its traceback may help: `--debug`)."""
    from seamline.exceptions import SeamlineError

    if isinstance(error, SeamFailed):
        return is_unexpected(error.error)
    known = isinstance(error, SeamlineError) or is_connection_error(error)
    return not known and _server_message(error) is None


def describe(error: BaseException) -> str:
    """The one line a user reads for an error (no traceback, no driver boilerplate)."""
    from seamline.exceptions import SeamlineError

    if isinstance(error, SeamFailed):
        return str(error)
    server = _server_message(error)
    if server is not None:
        text = server
    elif isinstance(error, SeamlineError):
        text = str(error)
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return " ".join(text.split())


def refusal_text(error: BaseException) -> str:
    """A repair refusal raised below the CLI (the scale-out merge), in the contract's words: without
    the library's "repair of X refused:" (the CLI line says it once) nor its Python advice."""
    import re

    text = describe(error)
    text = re.sub(r"^repair of .*? refused: ", "", text)
    return text.replace("pass version= to reconcile", "add `version:` to the seam in the contract")


def percent(fraction: float) -> str:
    """A fraction as a percentage with two significant digits however small: 7.5%, 0.000050%."""
    import math

    p = fraction * 100
    if p == 0:
        return "0%"
    digits = min(8, max(0, 1 - math.floor(math.log10(abs(p)))))
    return f"{p:.{digits}f}%"


# -- the per-seam loop ------------------------------------------------------------------------------


@dataclass
class SeamRun:
    """One seam's turn in a command: the value it computed, or the error that stopped it."""

    name: str
    seconds: float
    value: Any = None
    code: int = EXIT_CLEAN
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def select(contract: Contract, names: Sequence[str]) -> list[Seam]:
    if not names:
        return list(contract.seams.values())
    return [contract.seam(n) for n in dict.fromkeys(names)]


def run_seams(
    seams: Sequence[Seam],
    work: Callable[[Seam], Any],
    session: Session,
    *,
    doing: str,
    done: Callable[[Seam, SeamRun], None] | None = None,
) -> list[SeamRun]:
    """`work` on each seam in turn under a spinner saying `doing`; an error ends that seam only (one
    line on stderr naming it), never the run. `done` sees each seam that succeeded."""
    runs = []
    for seam in seams:
        started = time.perf_counter()
        try:
            with session.progress.step(f"{seam.name}: {doing}"):
                value = work(seam)
        except Exception as e:  # every error of one seam becomes its line
            if session.debug:
                traceback.print_exc(file=session.err)
            code, text = exit_code_for(e), describe(e)
            session.progress.line(f"seamline: error: seam {seam.name!r}: {text}")
            runs.append(SeamRun(seam.name, time.perf_counter() - started, None, code, text))
            continue
        run = SeamRun(seam.name, session.progress.last_seconds or time.perf_counter() - started, value)
        runs.append(run)
        if done is not None:
            done(seam, run)
    return runs


# -- reports ------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a command found. The renderer prints `text()`, writes `to_dict()` as JSON, `metrics` as
    Prometheus text and `diff_results()` as Parquet; another output is one more writer of these."""

    command: str
    contract: str | None
    started: float
    exit_code: int = EXIT_CLEAN
    metrics: Metrics | None = field(default=None, repr=False)

    def text(self) -> str:
        return ""

    def body(self) -> dict[str, Any]:
        return {}

    def diff_results(self) -> dict[str, Any]:
        """Seam name -> a result whose differences `--diffs` writes."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        from seamline import __version__

        return {
            "seamline": __version__,
            "command": self.command,
            "contract": self.contract,
            "started_at": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
            "exit_code": self.exit_code,
            **self.body(),
        }


@dataclass
class FailedReport(Report):
    """A command that could not run at all (a bad contract, a bad argument, a store down before the
    first seam): still a report, so a scheduler's JSON and `seamline_last_run_exit_code` move on."""

    error: str = ""

    def body(self) -> dict[str, Any]:
        return {"clean": False, "error": self.error}
