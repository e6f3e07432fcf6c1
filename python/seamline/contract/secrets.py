"""`${VAR}` substitution over a parsed contract document, and the secrets it must never print.

`${VAR}` reads the environment, `${VAR:-default}` gives a default, `$$` is a literal `$`. The values
that are secrets are remembered: passwords inside DSNs and URLs, `password=` in key/value DSNs, and
the values of variables named like *PASSWORD*, *SECRET*, *TOKEN*, *KEY*; the schema adds the literal
`password` fields and secret-looking catalog properties. `redact` scrubs them (and any URL or DSN
password, known or not) from a text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\{([^}]*)\})")
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|(^|_)KEY($|_)|PRIVATE", re.IGNORECASE)
SECRET_PROPERTY = re.compile(r"password|secret|token|credential|access-key|private", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
_KV_PASSWORD = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

Path = tuple[str | int, ...]


class SubstitutionError(Exception):
    """A `${VAR}` that cannot be substituted, at `path` inside the document."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def redact(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """`text` without the given secrets, nor any URL's or key/value DSN's password."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + "***", text)
    return _KV_PASSWORD.sub(lambda m: m.group("pre") + "***", text)


def secrets_in(value: str) -> set[str]:
    """The passwords inside a DSN or URL."""
    out: set[str] = set()
    if "://" in value:
        try:
            parts = urlsplit(value)
            if parts.password:
                out.add(parts.password)
        except ValueError:
            pass
        m = re.search(r"[?&]password=([^&]+)", value)
        if m:
            out.add(m.group(1))
    for m in _KV_PASSWORD.finditer(value):
        out.add(m.group("pw").strip("'"))
    return {s for s in out if s and s != "***"}


class Substitution:
    """Substitutes `${VAR}` in every string value of a document and collects the secrets met."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.secrets: set[str] = set()

    def document(self, value: Any, path: Path = ()) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, list):
            return [self.document(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.document(v, (*path, k)) for k, v in value.items()}
        return value

    def text(self, value: str, path: Path = ()) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            if m.group(3) is not None:
                raise SubstitutionError(path, f"'${{{m.group(3)}}}' is not a valid ${{VAR}} reference")
            name, default = m.group(1), m.group(2)
            if name in self.env:
                got = self.env[name]
            elif default is not None:
                got = default
            else:
                raise SubstitutionError(path, f"environment variable {name} is not set")
            if _SECRET_NAME.search(name) and got:
                self.secrets.add(got)
            return got

        out = _VAR.sub(one, value)
        self.secrets |= secrets_in(out)
        return out
