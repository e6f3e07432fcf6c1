"""The contract file declared as pydantic models: what each field accepts, and why not.

Every model forbids unknown keys; the stores are a union discriminated on `type`. A field that is
wrong raises a `PydanticCustomError` whose message is the one line the user reads (`errors.py` adds
the file, the store/seam/chain and the field). Checks that need two parts of the file at once (a
seam's store exists, the side fits the store's type, chains name known seams) are in `loading.py`.

The validation context carries `directory` (relative paths resolve against the contract's folder)
and `secrets` (the set literal passwords are added to).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
from seamline.contract.secrets import SECRET_PROPERTY, redact
from seamline.durations import parse_duration
from seamline.exceptions import InvalidInputError
from seamline.stores import registry

# The contract's store types are the registry's; each has its model in `StoreSpec` below (checked there).
STORE_TYPES = tuple(registry.names(contract_only=True))
# the reading options of a kafka seam side besides `topic` (those of sl.kafka)
STREAM_FIELDS = ("value", "key_field", "fold", "version", "dedupe", "order_by", "sql", "group")
_STREAM_CHOICES = {"value": ("json", "debezium", "raw"), "fold": ("latest",)}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_LOGICAL_HINT = (
    "integer, decimal(2), float(6), boolean, string, timestamp(ms), date, json, binary, uuid, vector"
)


def invalid(message: str, field: str | None = None) -> PydanticCustomError:
    """The error a validator raises; `field` names a sub-field the message is about."""
    return PydanticCustomError("seamline", message, {"field": field} if field else None)


def kind(value: Any) -> str:
    """How an error names the type of a value the user wrote."""
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


# -- field types --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid(f"expected a string, got {kind(value)}")
    text = str(value)
    if not text.strip():
        raise invalid("is empty")
    return text


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "1"):
            return True
        if word in ("false", "no", "0"):
            return False
    if not isinstance(value, bool):
        raise invalid(f"expected true or false, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise invalid(f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"expected a number, got {kind(value)}")
    return float(value)


def _duration(value: Any) -> float:
    try:
        if not isinstance(value, str):
            raise InvalidInputError(str(value))
        return parse_duration(value)
    except InvalidInputError:
        raise invalid(f"{value!r} is not a duration (e.g. 30s, 10m, 1h, 2d)") from None


def _names(value: Any) -> str | list[str] | dict[str, str]:
    """A key or column spec: "id" | [a, b] | {source_name: target_name}."""
    if isinstance(value, list):
        if not value:
            raise invalid("is an empty list")
        return [_text(v) for v in value]
    if isinstance(value, dict):
        if not value:
            raise invalid("is an empty mapping")
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return _text(value)
    raise invalid(f"expected a column name, a list or a mapping, got {kind(value)}")


def _columns(value: Any) -> list[str] | dict[str, str]:
    names = _names(value)
    return [names] if isinstance(names, str) else names


def logical_type(value: Any) -> LogicalType:
    """integer, decimal(2), float / float(6), boolean, string, timestamp / timestamp(ms), date, json,
    binary, uuid, vector / vector(6)."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    m = re.fullmatch(r"([a-z]+)\s*(?:\(\s*([a-z0-9]+)\s*\))?", text)
    if m:
        name, arg = m.group(1), m.group(2)
        simple: dict[str, type[LogicalType]] = {
            "integer": Integer,
            "boolean": Boolean,
            "string": String,
            "date": Date,
            "json": Json,
            "binary": Binary,
            "uuid": Uuid,
        }
        if name in simple and arg is None:
            return simple[name]()
        try:
            if name == "decimal" and arg is not None:
                return Decimal(int(arg))
            if name == "float":
                return Float(int(arg)) if arg is not None else Float()
            if name == "vector":
                return Vector(int(arg)) if arg is not None else Vector()
            if name == "timestamp" and (arg is None or arg in TIME_PRECISIONS):
                return Timestamp(arg) if arg is not None else Timestamp()
        except ValueError:
            pass
    raise invalid(f"{value!r} is not a logical type ({_LOGICAL_HINT})")


Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Number = Annotated[float, BeforeValidator(_number)]
Duration = Annotated[float, BeforeValidator(_duration)]
Names = Annotated[str | list[str] | dict[str, str], BeforeValidator(_names)]
Columns = Annotated[list[str] | dict[str, str], BeforeValidator(_columns)]
Logical = Annotated[LogicalType, BeforeValidator(logical_type)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# -- paths relative to the contract -------------------------------------------------------------------


def _directory(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("directory", "."))


def _secrets(info: ValidationInfo) -> set[str]:
    context = info.context or {}
    secrets: set[str] = context.setdefault("secrets", set())
    return secrets


def _path(text: str, directory: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (directory / p).resolve()


def resolve_uri(text: str, directory: Path, plain_as_file: bool = False) -> str:
    """Relative paths resolve against the contract's directory: a plain path, `./x`,
    `sqlite:///relative.db` (SQLAlchemy: three slashes, then the path; four for an absolute one),
    `file:relative/path`. `file:///abs` and remote URIs are left alone."""
    if text.startswith("sqlite:///"):
        rest = text[len("sqlite:///") :]
        if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
            return f"sqlite:///{_path(rest, directory)}"
        return text
    if text.startswith("file:") and not text.startswith("file://"):
        return f"file://{_path(text[len('file:') :], directory)}"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text):
        return text
    path = _path(text, directory)
    return f"file://{path}" if plain_as_file else str(path)


# -- stores -------------------------------------------------------------------------------------------


class StoreBase(Model):
    """A store: `type` and its connection settings (after `${VAR}` substitution). Its name is the key
    it has under `stores:`."""

    type: str
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        return self._name


class PostgresStore(StoreBase):
    type: Literal["postgres"]
    dsn: Text
    reader: Literal["rust", "adbc"] | None = None  # None: the default reader (rust)


class OpenSearchStore(StoreBase):
    type: Literal["opensearch"]
    hosts: tuple[str, ...]
    username: Text | None = None
    password: Text | None = None
    verify_certs: Flag | None = None
    ca_certs: Text | None = None
    client_cert: Text | None = None  # PEM, for mutual TLS; client_key: its key, if not in the same file
    client_key: Text | None = None
    headers: dict[str, Text] | None = None  # sent with every request (an API key, say): kept secret
    timeout: Number | None = None
    reader: Literal["rust", "python"] | None = None  # None: the default reader (rust)

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> tuple[str, ...]:
        hosts = [value] if isinstance(value, str) else value
        if not isinstance(hosts, list) or not hosts:
            raise invalid("expected a non-empty list of URLs")
        urls = tuple(_text(h) for h in hosts)
        for i, url in enumerate(urls):
            if not re.match(r"^https?://", url):
                raise invalid(f"{redact(url)!r} is not an http(s) URL", f"[{i}]")
        return urls

    @field_validator("password")
    @classmethod
    def _remember_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:
            _secrets(info).add(value)
        return value

    @field_validator("headers")
    @classmethod
    def _remember_header_values(
        cls, value: dict[str, str] | None, info: ValidationInfo
    ) -> dict[str, str] | None:
        for text in (value or {}).values():
            if text:
                _secrets(info).add(text)
        return value

    @field_validator("ca_certs", "client_cert", "client_key")
    @classmethod
    def _ca_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else str(_path(value, _directory(info)))


class IcebergStore(StoreBase):
    type: Literal["iceberg"]
    catalog: dict[str, str]

    @field_validator("catalog", mode="before")
    @classmethod
    def _catalog(cls, value: Any, info: ValidationInfo) -> dict[str, str]:
        """pyiceberg catalog properties, as strings; secret-looking ones are remembered."""
        if not isinstance(value, dict):
            raise invalid(f"expected a mapping, got {kind(value)}")
        catalog: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                raise invalid("expected a scalar property", str(k))
            catalog[str(k)] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            if SECRET_PROPERTY.search(str(k)) and catalog[str(k)]:
                _secrets(info).add(catalog[str(k)])
        directory = _directory(info)
        if "uri" in catalog:
            catalog["uri"] = resolve_uri(catalog["uri"], directory)
        if "warehouse" in catalog:
            catalog["warehouse"] = resolve_uri(catalog["warehouse"], directory, plain_as_file=True)
        return catalog


class LanceDBStore(StoreBase):
    type: Literal["lancedb"]
    uri: Text

    @field_validator("uri")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        return resolve_uri(value, _directory(info))


class KafkaStore(StoreBase):
    type: Literal["kafka"]
    bootstrap: Text
    reader: Literal["rust", "confluent"] | None = None  # None: rust where it can serve `config`
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("config", mode="before")
    @classmethod
    def _settings(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        """librdkafka client settings, scalars only; secret-looking ones are remembered."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise invalid(f"expected a mapping, got {kind(value)}")
        for k, v in value.items():
            if isinstance(v, dict | list):
                raise invalid("expected a scalar setting", f"config.{k}")
            if SECRET_PROPERTY.search(str(k)) and v:
                _secrets(info).add(str(v))
        return {str(k): v for k, v in value.items()}


def _store_type(value: Any) -> str | None:
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else None


StoreSpec = Annotated[
    Annotated[PostgresStore, Tag("postgres")]
    | Annotated[OpenSearchStore, Tag("opensearch")]
    | Annotated[IcebergStore, Tag("iceberg")]
    | Annotated[LanceDBStore, Tag("lancedb")]
    | Annotated[KafkaStore, Tag("kafka")],
    Discriminator(_store_type),
]
_MODELS = {
    "postgres": PostgresStore,
    "opensearch": OpenSearchStore,
    "iceberg": IcebergStore,
    "lancedb": LanceDBStore,
    "kafka": KafkaStore,
}
if set(_MODELS) != set(STORE_TYPES):  # a store registered for contracts needs its model here
    raise ImportError(
        f"contract store models {sorted(_MODELS)} != registered store types {sorted(STORE_TYPES)}"
    )


# -- seams --------------------------------------------------------------------------------------------


def _query(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return _text(value)


class Side(Model):
    """One side of a seam: a table, an index or a query of one store, optionally filtered."""

    store: Text
    table: Text | None = None
    index: Text | None = None
    query: Annotated[str | dict[str, Any] | None, BeforeValidator(_query)] = None
    where: Text | None = None
    topic: Text | None = None  # kafka
    value: Text | None = None
    key_field: Text | None = None
    fold: Text | None = None
    version: Text | None = None
    dedupe: Text | None = None
    order_by: Text | None = None
    sql: Text | None = None
    group: Text | None = None

    @field_validator("value", "fold")
    @classmethod
    def _choice(cls, value: str | None, info: ValidationInfo) -> str | None:
        allowed = _STREAM_CHOICES[str(info.field_name)]
        if value is not None and value not in allowed:
            raise invalid(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    @property
    def stream(self) -> dict[str, str]:
        """The kafka reading options given (the keyword arguments of sl.kafka besides the topic)."""
        return {k: getattr(self, k) for k in STREAM_FIELDS if getattr(self, k) is not None}

    @property
    def object(self) -> str:
        return self.table or self.index or self.topic or "query"


def _size(value: Any) -> int | None:
    """A size in bytes: 1048576, 512KB, 64MB, 2GB (powers of 1024)."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", str(value), re.IGNORECASE)
    if isinstance(value, bool) or not m:
        raise invalid(f"{value!r} is not a size (e.g. 512MB, 2GB)")
    return int(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_")


class Freshness(Model):
    """dbt-style SLA on the lag between the newest source and target versions (seconds)."""

    warn_after: Duration | None = None
    error_after: Duration | None = None
    # postgres sides: every logical replication slot is reported; an error past this lag (or WAL lost)
    slot_lag_bytes: Annotated[int | None, BeforeValidator(_size)] = None

    @model_validator(mode="after")
    def _ordered(self) -> Freshness:
        if (
            self.warn_after is not None
            and self.error_after is not None
            and self.warn_after > self.error_after
        ):
            raise invalid("is longer than freshness.error_after", "warn_after")
        return self


class RepairPolicy(Model):
    max_fraction: Number | None = None

    @field_validator("max_fraction")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise invalid(f"{value} is not in (0, 1]")
        return value


class CompareSpec(Model):
    """`compare:` as written; `build()` is the engine's `Compare`."""

    timestamp_precision: Text | None = None
    float_digits: int | None = None
    unicode: Text | None = None
    trim: Flag | None = None
    case_insensitive: Flag | None = None
    empty_as_null: Flag | None = None
    columns: dict[str, Logical] | None = None

    @field_validator("timestamp_precision")
    @classmethod
    def _precision(cls, value: str | None) -> str | None:
        if value is not None and value not in TIME_PRECISIONS:
            raise invalid(f"{value!r} is not one of s, ms, us, ns")
        return value

    @field_validator("float_digits", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 17
        ):
            raise invalid(f"{value!r} is not an integer between 1 and 17")
        return value

    @field_validator("unicode")
    @classmethod
    def _unicode(cls, value: str | None) -> str | None:
        if value is not None and value != "nfc":
            raise invalid(f"{value!r} is not supported (use nfc)")
        return value

    def build(self) -> Compare:
        given = self.model_dump(exclude_none=True)
        if self.columns is not None:
            given["columns"] = dict(self.columns)
        return Compare(**given)


def _seam_name(value: Any) -> str:
    name = _text(value)
    if not _NAME.match(name):
        raise invalid(f"{name!r}: use letters, digits, '_', '-' and '.'")
    return name


class Seam(Model):
    name: Annotated[str, BeforeValidator(_seam_name)]
    source: Side
    target: Side
    key: Names
    columns: Columns | None = None
    version: Text | None = None
    compare_spec: CompareSpec = Field(default_factory=CompareSpec, alias="compare")
    freshness: Freshness = Field(default_factory=Freshness)
    repair: RepairPolicy = Field(default_factory=RepairPolicy)

    @field_validator("compare_spec", "freshness", "repair", mode="before")
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        return {} if value is None else value

    @property
    def compare(self) -> Compare:
        return self.compare_spec.build()

    def target_name(self, column: str) -> str:
        """The target's name for a source column (through the key and column mappings)."""
        for mapping in (self.key, self.columns):
            if isinstance(mapping, dict) and column in mapping:
                return mapping[column]
        return column


# -- the file -----------------------------------------------------------------------------------------


def _version(value: Any) -> int:
    if value != 1 or isinstance(value, bool):
        raise invalid(f"{value!r} is not supported (use version: 1)")
    return 1


def _chain(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid("expected a non-empty list of seam names")
    return [str(v) for v in value]


class ContractFile(Model):
    version: Annotated[int, BeforeValidator(_version)]
    stores: dict[str, StoreSpec]
    seams: list[Seam]
    chains: dict[str, Annotated[list[str], BeforeValidator(_chain)]] = Field(default_factory=dict)

    @field_validator("stores")
    @classmethod
    def _some(cls, value: dict[str, StoreBase]) -> dict[str, StoreBase]:
        if not value:
            raise invalid("declares no store")
        for name, store in value.items():
            store._name = name
        return value

    @field_validator("chains", mode="before")
    @classmethod
    def _no_chains(cls, value: Any) -> Any:
        return {} if value is None else value
