"""The contract file: the stores, the seams between them and the chains (bronze -> silver -> gold) a
scheduled `seamline` run checks, declared in YAML.

    version: 1
    stores:
      oltp:   {type: postgres, dsn: "${SHOP_PG_DSN}"}
      search: {type: opensearch, hosts: ["${SHOP_OS_URL}"]}
    seams:
      - name: products_search
        source: {store: oltp, table: public.products, where: "deleted_at IS NULL"}
        target: {store: search, index: products}
        key: {id: product_id}
        columns: [sku, name, price, in_stock, updated_at]
        version: updated_at
        freshness: {warn_after: 10m, error_after: 1h}
    chains:
      revenue: [orders_bronze, revenue_gold]

`load` parses and validates the whole file up front: every problem is a `ContractError` with one line
naming the file, the store/seam/chain and the field. `${VAR}` reads the environment (`${VAR:-default}`
gives a default, `$$` is a literal `$`); the values that are secrets (passwords in DSNs and URLs,
`password` fields, variables named like *PASSWORD*, *SECRET*, *TOKEN*, *KEY*) are remembered so that
`Contract.redact` can scrub them from every output.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from seamline.compare import (
    TIME_PRECISIONS,
    Binary,
    Boolean,
    Compare,
    Date,
    Decimal,
    Float,
    Integer,
    Json,
    LogicalType,
    String,
    Timestamp,
    Uuid,
    Vector,
)
from seamline.durations import parse_duration
from seamline.exceptions import ContractError, InvalidInputError

STORE_TYPES = ("postgres", "opensearch", "iceberg", "lancedb")
_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\{([^}]*)\})")
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|(^|_)KEY($|_)|PRIVATE", re.IGNORECASE)
_SECRET_PROP = re.compile(r"password|secret|token|credential|access-key|private", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


# -- the model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """A store: `type` and its connection settings (after `${VAR}` substitution)."""

    name: str
    type: str
    dsn: str | None = None  # postgres
    reader: str | None = None  # postgres: "rust" or "adbc" (None: the default reader)
    hosts: tuple[str, ...] = ()  # opensearch
    username: str | None = None  # opensearch
    password: str | None = None  # opensearch
    verify_certs: bool | None = None  # opensearch
    ca_certs: str | None = None  # opensearch
    timeout: float | None = None  # opensearch
    catalog: Mapping[str, Any] = field(default_factory=dict)  # iceberg (pyiceberg catalog properties)
    uri: str | None = None  # lancedb


@dataclass(frozen=True)
class Side:
    """One side of a seam: a table, an index or a query of one store, optionally filtered."""

    store: str
    table: str | None = None
    index: str | None = None
    query: str | Mapping[str, Any] | None = None
    where: str | None = None

    @property
    def object(self) -> str:
        return self.table or self.index or "query"


@dataclass(frozen=True)
class Freshness:
    """dbt-style SLA on the lag between the newest source and target versions (seconds)."""

    warn_after: float | None = None
    error_after: float | None = None


@dataclass(frozen=True)
class RepairPolicy:
    max_fraction: float | None = None


@dataclass(frozen=True)
class Seam:
    name: str
    source: Side
    target: Side
    key: str | list[str] | dict[str, str]
    columns: list[str] | dict[str, str] | None
    version: str | None
    compare: Compare
    freshness: Freshness
    repair: RepairPolicy

    def target_name(self, column: str) -> str:
        """The target's name for a source column (through the key and column mappings)."""
        for mapping in (self.key, self.columns):
            if isinstance(mapping, dict) and column in mapping:
                return mapping[column]
        return column


@dataclass
class Contract:
    path: Path
    version: int
    stores: dict[str, Store]
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

    def store_of(self, seam: Seam, side: str) -> Store:
        return self.stores[(seam.source if side == "source" else seam.target).store]

    def open(self, seam: Seam, side: str, *, as_of: Any = None) -> Any:
        """The store adapter for one side of a seam (from the store registry); `as_of` pins
        Iceberg sides to the snapshot current at that time."""
        from seamline.stores import registry

        spec = seam.source if side == "source" else seam.target
        store = self.stores[spec.store]
        key_field = _target_key_field(seam)
        return registry.from_contract(store.type, store, spec, key_field=key_field, as_of=as_of)

    def reconcile(self, seam: Seam, *, as_of: Any = None, options: Any = None) -> Any:
        """Reconcile one seam as declared (a `ReconcileResult`)."""
        import inspect

        import seamline as sl

        kwargs: dict[str, Any] = {}
        if seam.version is not None and "version" in inspect.signature(sl.reconcile).parameters:
            kwargs["version"] = seam.version
        src = self.open(seam, "source", as_of=as_of)
        dst = self.open(seam, "target", as_of=as_of)
        return sl.reconcile(
            src, dst, key=seam.key, columns=seam.columns, compare=seam.compare, options=options, **kwargs
        )

    def redact(self, text: str) -> str:
        """`text` without any secret of this contract (nor any URL's or DSN's password)."""
        return redact(text, self.secrets)


def _target_key_field(seam: Seam) -> str | None:
    """OpenSearch: the field holding the key when it is not `_id` (enables range pushdown)."""
    if isinstance(seam.key, dict) and len(seam.key) == 1:
        (name,) = seam.key.values()
    elif isinstance(seam.key, str):
        name = seam.key
    elif isinstance(seam.key, list) and len(seam.key) == 1:
        name = seam.key[0]
    else:
        return None
    return None if name == "_id" else name


# -- secrets ------------------------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
_KV_PASSWORD = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + "***", text)
    return _KV_PASSWORD.sub(lambda m: m.group("pre") + "***", text)


def _secrets_in(value: str) -> set[str]:
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


# -- loading and validation ---------------------------------------------------------------------------


class _Loader:
    """Walks the parsed YAML, substituting `${VAR}` and checking every field."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.secrets: set[str] = set()

    def fail(self, where: str, fld: str | None, message: str) -> ContractError:
        parts = [str(self.path)]
        if where:
            parts.append(where)
        if fld:
            parts.append(f"field {fld!r}")
        return ContractError(": ".join(parts + [message]))

    # -- ${VAR} ----------------------------------------------------------------------------------

    def subst(self, where: str, fld: str, value: Any) -> Any:
        if isinstance(value, str):
            return self._subst_str(where, fld, value)
        if isinstance(value, list):
            return [self.subst(where, f"{fld}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.subst(where, f"{fld}.{k}", v) for k, v in value.items()}
        return value

    def _subst_str(self, where: str, fld: str, value: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            if m.group(3) is not None:
                raise self.fail(where, fld, f"'${{{m.group(3)}}}' is not a valid ${{VAR}} reference")
            name, default = m.group(1), m.group(2)
            if name in self.env:
                got = self.env[name]
            elif default is not None:
                got = default
            else:
                raise self.fail(where, fld, f"environment variable {name} is not set")
            if _SECRET_NAME.search(name) and got:
                self.secrets.add(got)
            return got

        out = _VAR.sub(one, value)
        self.secrets |= _secrets_in(out)
        return out

    # -- typed fields ----------------------------------------------------------------------------

    def mapping(self, where: str, fld: str | None, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, fld, f"expected a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(where, fld, f"key {k!r} is not a string")
        return value

    def keys(
        self,
        where: str,
        prefix: str,
        value: dict[str, Any],
        required: tuple[str, ...],
        allowed: tuple[str, ...],
    ) -> None:
        for k in value:
            if k not in required and k not in allowed:
                expected = ", ".join((*required, *allowed))
                raise self.fail(where, prefix + k, f"unknown key (expected one of: {expected})")
        for k in required:
            if k not in value or value[k] is None:
                raise self.fail(where, prefix + k, "missing")

    def string(self, where: str, fld: str, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(where, fld, f"expected a string, got {_kind(value)}")
        text = self._subst_str(where, fld, str(value))
        if not text.strip():
            raise self.fail(where, fld, "is empty")
        return text

    def boolean(self, where: str, fld: str, value: Any) -> bool:
        if isinstance(value, str):
            value = self._subst_str(where, fld, value).strip().lower()
            if value in ("true", "yes", "1"):
                return True
            if value in ("false", "no", "0"):
                return False
        if not isinstance(value, bool):
            raise self.fail(where, fld, f"expected true or false, got {value!r}")
        return value

    def number(self, where: str, fld: str, value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(self._subst_str(where, fld, value))
            except ValueError:
                raise self.fail(where, fld, f"{value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, fld, f"expected a number, got {_kind(value)}")
        return float(value)

    def duration(self, where: str, fld: str, value: Any) -> float:
        text = self._subst_str(where, fld, value) if isinstance(value, str) else value
        try:
            if not isinstance(text, str):
                raise InvalidInputError(str(text))
            return parse_duration(text)
        except InvalidInputError:
            raise self.fail(where, fld, f"{value!r} is not a duration (e.g. 30s, 10m, 1h, 2d)") from None

    def names(self, where: str, fld: str, value: Any) -> str | list[str] | dict[str, str]:
        """A key or column spec: "id" | [a, b] | {source_name: target_name}."""
        if isinstance(value, str):
            return self.string(where, fld, value)
        if isinstance(value, list):
            if not value:
                raise self.fail(where, fld, "is an empty list")
            return [self.string(where, f"{fld}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if not value:
                raise self.fail(where, fld, "is an empty mapping")
            return {self.string(where, fld, k): self.string(where, f"{fld}.{k}", v) for k, v in value.items()}
        raise self.fail(where, fld, f"expected a column name, a list or a mapping, got {_kind(value)}")

    # -- the file --------------------------------------------------------------------------------

    def contract(self, doc: Any) -> Contract:
        if doc is None:
            raise self.fail("", None, "the file is empty")
        top = self.mapping("", None, doc)
        self.keys("", "", top, ("version", "stores", "seams"), ("chains",))
        if top["version"] != 1 or isinstance(top["version"], bool):
            raise self.fail("", "version", f"{top['version']!r} is not supported (use version: 1)")
        stores_raw = self.mapping("", "stores", top["stores"])
        if not stores_raw:
            raise self.fail("", "stores", "declares no store")
        stores = {name: self.store(name, spec) for name, spec in stores_raw.items()}
        seams_raw = top["seams"]
        if not isinstance(seams_raw, list):
            raise self.fail("", "seams", f"expected a list of seams, got {_kind(seams_raw)}")
        seams: dict[str, Seam] = {}
        for i, spec in enumerate(seams_raw):
            seam = self.seam(i, spec, stores)
            if seam.name in seams:
                raise self.fail(f"seam {seam.name!r}", "name", "is declared twice")
            seams[seam.name] = seam
        chains: dict[str, list[str]] = {}
        for name, members in self.mapping("", "chains", top.get("chains") or {}).items():
            where = f"chain {name!r}"
            if not isinstance(members, list) or not members:
                raise self.fail(where, None, "expected a non-empty list of seam names")
            for j, member in enumerate(members):
                if member not in seams:
                    known = ", ".join(seams) or "none"
                    raise self.fail(where, f"[{j}]", f"no seam {member!r} (seams: {known})")
            chains[name] = [str(m) for m in members]
        return Contract(self.path, 1, stores, seams, chains, frozenset(self.secrets))

    def store(self, name: str, spec: Any) -> Store:
        where = f"store {name!r}"
        spec = self.mapping(where, None, spec)
        if "type" not in spec:
            raise self.fail(where, "type", f"missing (one of: {', '.join(STORE_TYPES)})")
        kind = spec["type"]
        if kind not in STORE_TYPES:
            raise self.fail(where, "type", f"{kind!r} is not a store type (one of: {', '.join(STORE_TYPES)})")
        if kind == "postgres":
            self.keys(where, "", spec, ("type", "dsn"), ("reader",))
            reader = None
            if "reader" in spec:
                reader = self.string(where, "reader", spec["reader"])
                if reader not in ("rust", "adbc"):
                    raise self.fail(where, "reader", f"{reader!r} is not a Postgres reader (rust or adbc)")
            return Store(name, kind, dsn=self.string(where, "dsn", spec["dsn"]), reader=reader)
        if kind == "opensearch":
            self.keys(
                where,
                "",
                spec,
                ("type", "hosts"),
                ("username", "password", "verify_certs", "ca_certs", "timeout"),
            )
            hosts = spec["hosts"]
            if isinstance(hosts, str):
                hosts = [hosts]
            if not isinstance(hosts, list) or not hosts:
                raise self.fail(where, "hosts", "expected a non-empty list of URLs")
            urls = tuple(self.string(where, f"hosts[{i}]", h) for i, h in enumerate(hosts))
            for i, url in enumerate(urls):
                if not re.match(r"^https?://", url):
                    raise self.fail(where, f"hosts[{i}]", f"{redact(url)!r} is not an http(s) URL")
            password = None
            if spec.get("password") is not None:
                password = self.string(where, "password", spec["password"])
                self.secrets.add(password)
            return Store(
                name,
                kind,
                hosts=urls,
                username=self.string(where, "username", spec["username"])
                if spec.get("username") is not None
                else None,
                password=password,
                verify_certs=self.boolean(where, "verify_certs", spec["verify_certs"])
                if "verify_certs" in spec
                else None,
                ca_certs=str(self._path(self.string(where, "ca_certs", spec["ca_certs"])))
                if spec.get("ca_certs") is not None
                else None,
                timeout=self.number(where, "timeout", spec["timeout"]) if "timeout" in spec else None,
            )
        if kind == "iceberg":
            self.keys(where, "", spec, ("type", "catalog"), ())
            raw = self.subst(where, "catalog", self.mapping(where, "catalog", spec["catalog"]))
            catalog: dict[str, Any] = {}
            for k, v in raw.items():
                if isinstance(v, dict | list):
                    raise self.fail(where, f"catalog.{k}", "expected a scalar property")
                catalog[k] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                if _SECRET_PROP.search(k) and catalog[k]:
                    self.secrets.add(catalog[k])
            if "uri" in catalog:
                catalog["uri"] = self._uri(catalog["uri"])
            if "warehouse" in catalog:
                catalog["warehouse"] = self._uri(catalog["warehouse"], plain_as_file=True)
            return Store(name, kind, catalog=catalog)
        self.keys(where, "", spec, ("type", "uri"), ())
        return Store(name, kind, uri=self._uri(self.string(where, "uri", spec["uri"]), plain_as_file=False))

    def _path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def _uri(self, text: str, plain_as_file: bool = False) -> str:
        """Relative paths resolve against the contract's directory: a plain path, `./x`,
        `sqlite:///relative.db` (SQLAlchemy: three slashes, then the path; four for an absolute one),
        `file:relative/path`. `file:///abs` and remote URIs are left alone."""
        if text.startswith("sqlite:///"):
            rest = text[len("sqlite:///") :]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                return f"sqlite:///{self._path(rest)}"
            return text
        if text.startswith("file:") and not text.startswith("file://"):
            return f"file://{self._path(text[len('file:') :])}"
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text):
            return text
        path = self._path(text)
        return f"file://{path}" if plain_as_file else str(path)

    def side(self, where: str, which: str, spec: Any, stores: dict[str, Store]) -> Side:
        spec = self.mapping(where, which, spec)
        self.keys(where, f"{which}.", spec, ("store",), ("table", "index", "query", "where"))
        store_name = self.string(where, f"{which}.store", spec["store"])
        if store_name not in stores:
            known = ", ".join(stores)
            raise self.fail(where, f"{which}.store", f"no store {store_name!r} (stores: {known})")
        kind = stores[store_name].type
        given = [k for k in ("table", "index", "query") if spec.get(k) is not None]
        allowed = {
            "postgres": ("table", "query"),
            "opensearch": ("index",),
            "iceberg": ("table",),
            "lancedb": ("table",),
        }[kind]
        objects = [k for k in given if k != "query" or kind != "opensearch"]
        for k in objects:
            if k not in allowed:
                raise self.fail(where, f"{which}.{k}", f"not for a {kind} store (use {' or '.join(allowed)})")
        if len(objects) != 1:
            fld = f"{which}.{allowed[0]}"
            if not objects:
                raise self.fail(where, fld, "missing")
            raise self.fail(where, f"{which}.{objects[1]}", f"give one of {' or '.join(allowed)}, not both")
        query: str | dict[str, Any] | None = None
        if spec.get("query") is not None:
            if kind == "opensearch":
                query = self.subst(
                    where, f"{which}.query", self.mapping(where, f"{which}.query", spec["query"])
                )
            else:
                query = self.string(where, f"{which}.query", spec["query"])
        where_clause = None
        if spec.get("where") is not None:
            if kind == "iceberg":
                raise self.fail(where, f"{which}.where", "not supported for an iceberg store")
            if kind == "postgres" and query is not None:
                raise self.fail(where, f"{which}.where", "put the filter in the query itself")
            if kind == "opensearch" and query is not None:
                raise self.fail(where, f"{which}.where", "give a query or a where, not both")
            where_clause = self.string(where, f"{which}.where", spec["where"])
        return Side(
            store=store_name,
            table=self.string(where, f"{which}.table", spec["table"]) if "table" in objects else None,
            index=self.string(where, f"{which}.index", spec["index"]) if "index" in objects else None,
            query=query,
            where=where_clause,
        )

    def seam(self, i: int, spec: Any, stores: dict[str, Store]) -> Seam:
        where = f"seam #{i + 1}"
        spec = self.mapping(where, None, spec)
        if spec.get("name") is not None:
            name = self.string(where, "name", spec["name"])
            if not _NAME.match(name):
                raise self.fail(where, "name", f"{name!r}: use letters, digits, '_', '-' and '.'")
            where = f"seam {name!r}"
        self.keys(
            where,
            "",
            spec,
            ("name", "source", "target", "key"),
            ("columns", "version", "compare", "freshness", "repair"),
        )
        name = str(spec["name"])
        columns = self.names(where, "columns", spec["columns"]) if spec.get("columns") is not None else None
        if isinstance(columns, str):
            columns = [columns]
        version = self.string(where, "version", spec["version"]) if spec.get("version") is not None else None
        return Seam(
            name=name,
            source=self.side(where, "source", spec["source"], stores),
            target=self.side(where, "target", spec["target"], stores),
            key=self.names(where, "key", spec["key"]),
            columns=columns,
            version=version,
            compare=self.compare(where, spec.get("compare")),
            freshness=self.freshness(where, spec.get("freshness"), version),
            repair=self.repair(where, spec.get("repair")),
        )

    def compare(self, where: str, spec: Any) -> Compare:
        if spec is None:
            return Compare()
        spec = self.mapping(where, "compare", spec)
        allowed = (
            "timestamp_precision",
            "float_digits",
            "unicode",
            "trim",
            "case_insensitive",
            "empty_as_null",
            "columns",
        )
        self.keys(where, "compare.", spec, (), allowed)
        kwargs: dict[str, Any] = {}
        if spec.get("timestamp_precision") is not None:
            p = self.string(where, "compare.timestamp_precision", spec["timestamp_precision"])
            if p not in TIME_PRECISIONS:
                raise self.fail(where, "compare.timestamp_precision", f"{p!r} is not one of s, ms, us, ns")
            kwargs["timestamp_precision"] = p
        if spec.get("float_digits") is not None:
            d = spec["float_digits"]
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 17:
                raise self.fail(where, "compare.float_digits", f"{d!r} is not an integer between 1 and 17")
            kwargs["float_digits"] = d
        if spec.get("unicode") is not None:
            u = self.string(where, "compare.unicode", spec["unicode"])
            if u != "nfc":
                raise self.fail(where, "compare.unicode", f"{u!r} is not supported (use nfc)")
            kwargs["unicode"] = u
        for flag in ("trim", "case_insensitive", "empty_as_null"):
            if spec.get(flag) is not None:
                kwargs[flag] = self.boolean(where, f"compare.{flag}", spec[flag])
        if spec.get("columns") is not None:
            cols = self.mapping(where, "compare.columns", spec["columns"])
            kwargs["columns"] = {c: self.logical(where, f"compare.columns.{c}", t) for c, t in cols.items()}
        return Compare(**kwargs)

    def logical(self, where: str, fld: str, value: Any) -> LogicalType:
        """integer, decimal(2), float / float(6), boolean, string, timestamp / timestamp(ms), date,
        json, binary, uuid, vector / vector(6)."""
        text = str(value).strip().lower() if isinstance(value, str) else ""
        m = re.fullmatch(r"([a-z]+)\s*(?:\(\s*([a-z0-9]+)\s*\))?", text)
        hint = (
            "integer, decimal(2), float(6), boolean, string, timestamp(ms), date, json, binary, uuid, vector"
        )
        if not m:
            raise self.fail(where, fld, f"{value!r} is not a logical type ({hint})")
        kind, arg = m.group(1), m.group(2)
        simple: dict[str, LogicalType] = {
            "integer": Integer(),
            "boolean": Boolean(),
            "string": String(),
            "date": Date(),
            "json": Json(),
            "binary": Binary(),
            "uuid": Uuid(),
        }
        if kind in simple and arg is None:
            return simple[kind]
        try:
            if kind == "decimal" and arg is not None:
                return Decimal(int(arg))
            if kind == "float":
                return Float(int(arg)) if arg is not None else Float()
            if kind == "vector":
                return Vector(int(arg)) if arg is not None else Vector()
            if kind == "timestamp" and (arg is None or arg in TIME_PRECISIONS):
                return Timestamp(arg) if arg is not None else Timestamp()
        except ValueError:
            pass
        raise self.fail(where, fld, f"{value!r} is not a logical type ({hint})")

    def freshness(self, where: str, spec: Any, version: str | None) -> Freshness:
        if spec is None:
            return Freshness()
        spec = self.mapping(where, "freshness", spec)
        self.keys(where, "freshness.", spec, (), ("warn_after", "error_after"))
        warn = (
            self.duration(where, "freshness.warn_after", spec["warn_after"])
            if spec.get("warn_after") is not None
            else None
        )
        error = (
            self.duration(where, "freshness.error_after", spec["error_after"])
            if spec.get("error_after") is not None
            else None
        )
        if warn is not None and error is not None and warn > error:
            raise self.fail(where, "freshness.warn_after", "is longer than freshness.error_after")
        return Freshness(warn, error)

    def repair(self, where: str, spec: Any) -> RepairPolicy:
        if spec is None:
            return RepairPolicy()
        spec = self.mapping(where, "repair", spec)
        self.keys(where, "repair.", spec, (), ("max_fraction",))
        fraction = None
        if spec.get("max_fraction") is not None:
            fraction = self.number(where, "repair.max_fraction", spec["max_fraction"])
            if not 0 < fraction <= 1:
                raise self.fail(where, "repair.max_fraction", f"{fraction} is not in (0, 1]")
        return RepairPolicy(fraction)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _yaml_loader() -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in out:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
                )
            out[key] = loader.construct_object(value_node, deep=deep)
        return out

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def parse(text: str, path: str | Path = "contract.yaml", env: Mapping[str, str] | None = None) -> Contract:
    """A contract from YAML text; `path` names it in errors and anchors relative paths."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ContractError(f"{path}: {at}not valid YAML: {problem}") from None
    return _Loader(path, os.environ if env is None else env).contract(doc)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Contract:
    """Read and validate a contract file (ContractError on any problem, naming the field)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"{p}: no such contract file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{p}: cannot read the contract: {exc}") from None
    contract = parse(text, p, env)
    contract.path = p
    return contract


def parse_time(text: str) -> dt.datetime:
    """An ISO-8601 time (naive = UTC), or a duration meaning that long ago ("2h")."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=parse_duration(text.strip()))
        except InvalidInputError:
            raise InvalidInputError(
                f"--as-of: {text!r} is not a time (ISO 8601, e.g. 2026-11-20T06:00:00Z, or 2h: 2 hours ago)"
            ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
