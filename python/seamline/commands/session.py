"""The output of one command: stdout and stderr scrubbed of the contract's secrets, the progress
display, `--debug`. Loading the contract through the session is what teaches it the secrets, so every
line written afterwards (and every error) is scrubbed, without a global or a swapped `sys.stdout`."""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, TextIO, cast

if TYPE_CHECKING:
    from seamline.contract import Contract
    from seamline.progress import Progress


class RedactingStream(io.TextIOBase):
    """A text stream that scrubs the session's secrets from everything written through it."""

    def __init__(self, inner: TextIO, session: Session) -> None:
        self.inner = inner
        self.session = session

    def write(self, text: str) -> int:
        self.inner.write(self.session.redact(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()


class Session:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *, debug: bool = False) -> None:
        self.out = RedactingStream(out if out is not None else sys.stdout, self)
        self.err = RedactingStream(err if err is not None else sys.stderr, self)
        self.debug = debug
        self.secrets: frozenset[str] = frozenset()
        self._progress: Progress | None = None

    def redact(self, text: str) -> str:
        """`text` without the loaded contract's secrets, nor any URL's or DSN's password."""
        from seamline.contract.secrets import redact

        return redact(text, self.secrets)

    def load(self, path: str) -> Contract:
        from seamline.contract import load

        contract = load(path)
        self.secrets = contract.secrets
        return contract

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            from seamline.progress import Progress

            self._progress = Progress(cast(TextIO, self.err))
        return self._progress

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(f"seamline: {text}", file=self.err, flush=True)
