"""The contract file: the example of the docs loads into a typed model; every kind of mistake is one
`ContractError` line naming the file, the store/seam/chain and the field; `${VAR}` reads the
environment; secrets are remembered and scrubbed."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

import seamline as sl
from seamline.contract import Contract, load, parse, parse_time, redact
from seamline.durations import format_duration, parse_duration
from seamline.exceptions import ContractError, InvalidInputError

ENV = {
    "SHOP_PG_DSN": "postgresql://app:pg-s3cret@db.internal:5432/shop",
    "SHOP_OS_URL": "https://search.internal:9200",
    "OS_PASSWORD": "os-s3cret",
}

EXAMPLE = """\
version: 1
stores:
  oltp:    {type: postgres, dsn: "${SHOP_PG_DSN}"}
  search:  {type: opensearch, hosts: ["${SHOP_OS_URL}"], username: admin, password: "${OS_PASSWORD}"}
  lake:    {type: iceberg, catalog: {type: sql, uri: "sqlite:///lake/catalog.db", warehouse: "lake/wh"}}
  vectors: {type: lancedb, uri: "./vectors"}
seams:
  - name: products_search
    source: {store: oltp, table: public.products, where: "deleted_at IS NULL"}
    target: {store: search, index: products}
    key: {id: product_id}
    columns: [sku, name, price, in_stock, updated_at]
    version: updated_at
    compare: {timestamp_precision: ms, columns: {price: "decimal(2)"}}
    freshness: {warn_after: 10m, error_after: 1h}
    repair: {max_fraction: 0.05}
  - name: orders_bronze
    source: {store: oltp, table: public.orders}
    target: {store: lake, table: shop.orders_bronze}
    key: order_id
  - name: revenue_gold
    source: {store: oltp, query: "SELECT day, revenue FROM revenue"}
    target: {store: lake, table: shop.revenue_gold}
    key: day
  - name: products_vectors
    source: {store: oltp, table: public.products}
    target: {store: vectors, table: products, where: "id > 0"}
    key: id
    columns: {name: title}
chains:
  revenue: [orders_bronze, revenue_gold]
"""


def example(tmp_path: Path) -> Contract:
    path = tmp_path / "contract.yaml"
    path.write_text(EXAMPLE)
    return load(path, env=ENV)


def test_the_example_loads_into_a_typed_model(tmp_path: Path) -> None:
    c = example(tmp_path)
    assert list(c.stores) == ["oltp", "search", "lake", "vectors"]
    assert c.stores["oltp"].dsn == ENV["SHOP_PG_DSN"]
    assert c.stores["search"].hosts == ("https://search.internal:9200",)
    seam = c.seam("products_search")
    assert seam.source.table == "public.products" and seam.source.where == "deleted_at IS NULL"
    assert seam.target.index == "products"
    assert seam.key == {"id": "product_id"}
    assert seam.columns == ["sku", "name", "price", "in_stock", "updated_at"]
    assert seam.version == "updated_at" and seam.target_name("updated_at") == "updated_at"
    assert seam.compare == sl.Compare(timestamp_precision="ms", columns={"price": sl.Decimal(2)})
    assert (seam.freshness.warn_after, seam.freshness.error_after) == (600, 3600)
    assert seam.repair.max_fraction == 0.05
    assert c.seam("revenue_gold").source.query == "SELECT day, revenue FROM revenue"
    assert c.seam("products_vectors").target_name("name") == "title"
    assert [s.name for s in c.chain("revenue")] == ["orders_bronze", "revenue_gold"]


def test_relative_paths_resolve_against_the_contract_directory(tmp_path: Path) -> None:
    c = example(tmp_path)
    assert c.stores["lake"].catalog["uri"] == f"sqlite:///{tmp_path}/lake/catalog.db"
    assert c.stores["lake"].catalog["warehouse"] == f"file://{tmp_path}/lake/wh"
    assert c.stores["vectors"].uri == str(tmp_path / "vectors")
    absolute = EXAMPLE.replace("sqlite:///lake/catalog.db", "sqlite:////data/catalog.db").replace(
        '"lake/wh"', '"s3://bucket/wh"'
    )
    c = parse(absolute, tmp_path / "c.yaml", ENV)
    assert c.stores["lake"].catalog["uri"] == "sqlite:////data/catalog.db"
    assert c.stores["lake"].catalog["warehouse"] == "s3://bucket/wh"


def test_secrets_are_remembered_and_scrubbed(tmp_path: Path) -> None:
    c = example(tmp_path)
    assert {"pg-s3cret", "os-s3cret"} <= c.secrets
    text = f"dsn {ENV['SHOP_PG_DSN']} password os-s3cret"
    assert "s3cret" not in c.redact(text)
    assert c.redact(ENV["SHOP_PG_DSN"]) == "postgresql://app:***@db.internal:5432/shop"
    # without the contract: URL userinfo and key=value passwords
    assert redact("host=db password='x y' user=app") == "host=db password=*** user=app"
    assert redact("https://u:p@h:1/x") == "https://u:***@h:1/x"


def test_opensearch_tls_files_and_headers(tmp_path: Path) -> None:
    """client_cert/client_key/ca_certs resolve against the contract's directory (an absolute path
    stays), header values are secrets, and they reach the OpenSearch source's client."""
    from pg_tls_server import make_certs

    from seamline.contract.factory import open_side

    (tmp_path / "tls").mkdir()
    make_certs(tmp_path / "tls")
    key = tmp_path / "tls" / "client.key"
    text = EXAMPLE.replace(
        'password: "${OS_PASSWORD}"}',
        f"ca_certs: tls/ca.crt, client_cert: tls/client.crt, client_key: {key},"
        ' headers: {Authorization: "ApiKey ${OS_API_KEY}", X-Tenant: shop}}',
    )
    c = parse(text, tmp_path / "c.yaml", {**ENV, "OS_API_KEY": "a9i-k3y"})
    store = c.stores["search"]
    assert (store.ca_certs, store.client_cert, store.client_key) == (
        str(tmp_path / "tls" / "ca.crt"),
        str(tmp_path / "tls" / "client.crt"),
        str(key),
    )
    assert store.headers == {"Authorization": "ApiKey a9i-k3y", "X-Tenant": "shop"}
    assert "ApiKey a9i-k3y" in c.secrets and "a9i-k3y" not in c.redact("sent ApiKey a9i-k3y")
    seam = c.seam("products_search")
    connection = open_side(store, seam.target, seam).store.connection
    assert (connection.client_cert, connection.client_key) == (str(tmp_path / "tls" / "client.crt"), str(key))
    assert dict(connection.headers) == {"Authorization": "ApiKey a9i-k3y", "X-Tenant": "shop"}


def test_variables_with_defaults_and_dollar_escapes() -> None:
    text = EXAMPLE.replace("${SHOP_OS_URL}", "${MISSING_URL:-http://localhost:9200}").replace(
        "deleted_at IS NULL", "note = '$$5'"
    )
    c = parse(text, "c.yaml", ENV)
    assert c.stores["search"].hosts == ("http://localhost:9200",)
    assert c.seam("products_search").source.where == "note = '$5'"


def _bad(change: tuple[str, str], env: dict[str, str] | None = None) -> str:
    old, new = change
    assert old in EXAMPLE, old
    with pytest.raises(ContractError) as info:
        parse(EXAMPLE.replace(old, new, 1), "contract.yaml", ENV if env is None else env)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("contract.yaml: ")
    return message


BAD = [
    # (what to change, the exact message)
    (
        ("warn_after: 10m", "warn_after: 10 minutes"),
        "contract.yaml: seam 'products_search': field 'freshness.warn_after': '10 minutes' is not a "
        "duration (e.g. 30s, 10m, 1h, 2d)",
    ),
    (
        ("error_after: 1h", "error_after: 30"),
        "contract.yaml: seam 'products_search': field 'freshness.error_after': 30 is not a duration "
        "(e.g. 30s, 10m, 1h, 2d)",
    ),
    (
        ("error_after: 1h", "error_after: 1m"),
        "contract.yaml: seam 'products_search': field 'freshness.warn_after': is longer than "
        "freshness.error_after",
    ),
    (
        ("    version: updated_at\n", "    version: updated_at\n    versoin: 2\n"),
        "contract.yaml: seam 'products_search': field 'versoin': unknown key (expected one of: name, "
        "source, target, key, columns, version, compare, freshness, repair)",
    ),
    (
        ("    key: order_id\n", ""),
        "contract.yaml: seam 'orders_bronze': field 'key': missing",
    ),
    (
        ("target: {store: search, index: products}", "target: {store: serach, index: products}"),
        "contract.yaml: seam 'products_search': field 'target.store': no store 'serach' (stores: oltp, "
        "search, lake, vectors)",
    ),
    (
        ("target: {store: search, index: products}", "target: {store: search, table: products}"),
        "contract.yaml: seam 'products_search': field 'target.table': not for a opensearch store (use index)",
    ),
    (
        ("source: {store: oltp, table: public.orders}", "source: {store: oltp}"),
        "contract.yaml: seam 'orders_bronze': field 'source.table': missing",
    ),
    (
        ("source: {store: oltp, table: public.orders}", "source: {store: oltp, table: a, query: b}"),
        "contract.yaml: seam 'orders_bronze': field 'source.query': give one of table or query, not both",
    ),
    (
        (
            "source: {store: oltp, table: public.orders}",
            "source: {store: oltp, table: public.orders, sql: x}",
        ),
        "contract.yaml: seam 'orders_bronze': field 'source.sql': not for a postgres store (use query)",
    ),
    (
        (
            "target: {store: search, index: products}",
            "target: {store: search, index: products, fold: latest}",
        ),
        "contract.yaml: seam 'products_search': field 'target.fold': only for a kafka store, not a "
        "opensearch one",
    ),
    (
        ("table: shop.orders_bronze}", "table: shop.orders_bronze, where: 'x > 1'}"),
        "contract.yaml: seam 'orders_bronze': field 'target.where': not supported for an iceberg store",
    ),
    (
        ("timestamp_precision: ms", "timestamp_precision: minutes"),
        "contract.yaml: seam 'products_search': field 'compare.timestamp_precision': 'minutes' is not "
        "one of s, ms, us, ns",
    ),
    (
        ('price: "decimal(2)"', 'price: "money"'),
        "contract.yaml: seam 'products_search': field 'compare.columns.price': 'money' is not a logical "
        "type (integer, decimal(2), float(6), boolean, string, timestamp(ms), date, json, binary, uuid, "
        "vector)",
    ),
    (
        ("max_fraction: 0.05", "max_fraction: 5"),
        "contract.yaml: seam 'products_search': field 'repair.max_fraction': 5.0 is not in (0, 1]",
    ),
    (
        ("oltp:    {type: postgres, ", "oltp:    {type: postgress, "),
        "contract.yaml: store 'oltp': field 'type': 'postgress' is not a store type (one of: postgres, "
        "opensearch, iceberg, lancedb, kafka)",
    ),
    (
        ('{type: postgres, dsn: "${SHOP_PG_DSN}"}', "{type: postgres}"),
        "contract.yaml: store 'oltp': field 'dsn': missing",
    ),
    (
        ('{type: postgres, dsn: "${SHOP_PG_DSN}"}', '{type: postgres, dsn: "${SHOP_PG_DSN}", port: 1}'),
        "contract.yaml: store 'oltp': field 'port': unknown key (expected one of: type, dsn, reader)",
    ),
    (
        ('dsn: "${SHOP_PG_DSN}"', 'dsn: "${SHOP_PG_URL}"'),
        "contract.yaml: store 'oltp': field 'dsn': environment variable SHOP_PG_URL is not set",
    ),
    (
        ('hosts: ["${SHOP_OS_URL}"]', "hosts: []"),
        "contract.yaml: store 'search': field 'hosts': expected a non-empty list of URLs",
    ),
    (
        ("revenue: [orders_bronze, revenue_gold]", "revenue: [orders_bronze, revenue_silver]"),
        "contract.yaml: chain 'revenue': field '[1]': no seam 'revenue_silver' (seams: products_search, "
        "orders_bronze, revenue_gold, products_vectors)",
    ),
    (
        ("version: 1\n", "version: 2\n"),
        "contract.yaml: field 'version': 2 is not supported (use version: 1)",
    ),
    (
        ("version: 1\n", ""),
        "contract.yaml: field 'version': missing",
    ),
    (
        ("chains:", "chain:"),
        "contract.yaml: field 'chain': unknown key (expected one of: version, stores, seams, chains)",
    ),
    (
        ("  - name: orders_bronze", "  - name: products_search"),
        "contract.yaml: seam 'products_search': field 'name': is declared twice",
    ),
    (
        ("  - name: orders_bronze\n", "  - nmae: orders_bronze\n"),
        "contract.yaml: seam #2: field 'nmae': unknown key (expected one of: name, source, target, key, "
        "columns, version, compare, freshness, repair)",
    ),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(": ", 1)[1][:60] for _, m in BAD])
def test_a_bad_contract_is_one_line_naming_the_file_the_seam_and_the_field(
    change: tuple[str, str], message: str
) -> None:
    assert _bad(change) == message


def test_yaml_syntax_errors_and_duplicate_keys_name_the_line() -> None:
    with pytest.raises(ContractError, match=r"^c.yaml: line \d+, column \d+: not valid YAML: "):
        parse("version: 1\nstores: {oltp: [\n", "c.yaml", ENV)
    with pytest.raises(ContractError, match=r"duplicate key 'key' \(line 4\)"):
        parse("version: 1\nseams:\n  - key: a\n    key: b\n", "c.yaml", ENV)
    with pytest.raises(ContractError, match=r"^c.yaml: the file is empty$"):
        parse("", "c.yaml", ENV)


def test_a_missing_file_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="no such contract file"):
        load(tmp_path / "nope.yaml")


def test_a_secret_never_appears_in_a_contract_error() -> None:
    text = EXAMPLE.replace('hosts: ["${SHOP_OS_URL}"]', 'hosts: ["${SHOP_PG_DSN}"]')
    with pytest.raises(ContractError) as info:
        parse(text, "c.yaml", ENV)
    assert "pg-s3cret" not in str(info.value)
    assert "is not an http(s) URL" in str(info.value)


def test_unknown_seam_and_chain_name_the_known_ones(tmp_path: Path) -> None:
    c = example(tmp_path)
    with pytest.raises(ContractError, match=r"no seam 'x' \(seams: products_search, orders_bronze"):
        c.seam("x")
    with pytest.raises(ContractError, match=r"no chain 'x' \(chains: revenue\)"):
        c.chain("x")


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("500ms") == 0.5
    for bad in ("", "10", "10 minutes", "m", "-1h", "1x"):
        with pytest.raises(InvalidInputError, match="is not a duration"):
            parse_duration(bad)
    assert format_duration(None) == "-"
    assert format_duration(0) == "0s"
    assert format_duration(59) == "59s"
    assert format_duration(3725) == "1h2m"
    assert format_duration(594224) == "6d21h"


def test_as_of_times() -> None:
    assert parse_time("2026-11-20T06:00:00Z") == dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
    assert parse_time("2026-11-20T06:00:00") == dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
    before = dt.datetime.now(dt.UTC)
    ago = parse_time("2h")
    assert before - dt.timedelta(hours=2, minutes=1) < ago <= dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with pytest.raises(InvalidInputError, match="is not a time"):
        parse_time("yesterday")


def test_the_demo_contract_ships_and_is_valid(tmp_path: Path) -> None:
    from seamline.demo import CONTRACT

    env = {"SEAMLINE_PG_DSN": "postgresql://x@h/db", "SEAMLINE_OPENSEARCH_URL": "http://h:9200"}
    c = load(CONTRACT, env=env)
    assert set(c.seams) == {
        "products_search",
        "products_silver",
        "products_vectors",
        "orders_bronze",
        "revenue_gold",
    }
    assert c.chains == {"revenue": ["orders_bronze", "revenue_gold"]}
    assert textwrap.dedent(CONTRACT.read_text()).startswith("#")


def test_a_postgres_store_names_its_reader() -> None:
    line = next(x for x in EXAMPLE.splitlines() if "type: postgres" in x)
    rust = line.replace("type: postgres,", "type: postgres, reader: rust,")
    assert parse(EXAMPLE.replace(line, rust), "c.yaml", ENV).stores["oltp"].reader == "rust"
    assert parse(EXAMPLE, "c.yaml", ENV).stores["oltp"].reader is None
    message = _bad((line, line.replace("type: postgres,", "type: postgres, reader: odbc,")))
    assert message == "contract.yaml: store 'oltp': field 'reader': Input should be 'rust' or 'adbc'"


def test_the_contracts_store_types_are_the_registrys() -> None:
    """A store type registered for contracts is a `type:` the contract accepts, with its own model."""
    from seamline.contract import schema
    from seamline.stores import registry

    assert list(schema.STORE_TYPES) == registry.names(contract_only=True)
    assert set(schema._MODELS) == set(registry.names(contract_only=True))
    assert "arrow" not in schema.STORE_TYPES  # in-memory sources are not declared in a contract
