"""The Rust Postgres reader's connections (issue 13): TLS with rustls under every libpq sslmode,
certificate revocation lists, SCRAM passwords, client certificates (`cert` authentication, encrypted
keys), target_session_attrs and load_balance_hosts against a real hot standby (and its recovery
conflicts), and the DSN forms libpq accepts (URI, key=value, the PG* environment, .pgpass,
connection service files), against a real TLS cluster of our own (`pg_tls_server.tls_cluster`:
ssl=on, hostssl-only scram-sha-256 and, for certuser, cert; a certificate for localhost signed by a
throwaway CA). Where both readers are run on the same seam
(services, client certificates), libpq (the ADBC reader) is the reference.

Most cases call the Rust reader directly (`_core.pg_copy_stream` with the keywords
`seamline.stores.postgres.dsn.resolve` gives), so that libpq (ADBC) cannot be what made them pass;
the reconcile cases run the whole adapter with reader="rust".
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest
from pg_tls_server import (
    CERT_USER,
    DATABASE,
    PASSWORD,
    USER,
    TlsCluster,
    configure_standby,
    server_binaries,
    standby_of,
    tls_cluster,
)

import seamline as sl
from seamline._core import pg_copy_stream
from seamline.exceptions import InvalidInputError, StoreUnavailableError
from seamline.stores.postgres import dsn as libpq_dsn
from seamline.stores.postgres.store import PostgresStore

_PG_ENV = [v for v in libpq_dsn.KEYWORDS.values() if v]


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsCluster]:
    if server_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("no initdb/pg_ctl: install Debian's postgresql package (scripts/setup.sh)")
        pytest.skip("no initdb/pg_ctl (Debian's postgresql package) to start a TLS cluster")
    with tls_cluster() as cluster:
        cluster.psql(
            "CREATE SCHEMA tlsschema; CREATE TABLE public.tls_items (id int PRIMARY KEY, v text);"
            " INSERT INTO public.tls_items SELECT i, 'v' || i FROM generate_series(1, 1000) i;"
            " CREATE TABLE public.tls_items_copy AS SELECT * FROM public.tls_items;"
            " ALTER TABLE public.tls_items_copy ADD PRIMARY KEY (id)"
        )
        yield cluster


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PG* variable or ~/.pgpass / ~/.postgresql of the machine leaks into a case."""
    for var in _PG_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def kv(**params: object) -> str:
    """A key=value DSN, every value quoted and escaped."""
    out = []
    for k, v in params.items():
        text = str(v).replace("\\", "\\\\").replace("'", "\\'")
        out.append(f"{k}='{text}'")
    return " ".join(out)


def base(c: TlsCluster, **extra: object) -> str:
    params: dict[str, object] = {
        "host": "localhost",
        "port": c.port,
        "user": USER,
        "password": PASSWORD,
        "dbname": DATABASE,
    }
    params.update(extra)
    return kv(**params)


SSL_SQL = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def rust_read(dsn: str, sql: str = SSL_SQL) -> list[dict[str, object]]:
    """Rows of `sql` read by the Rust reader alone (no ADBC connection is made)."""
    return rust_read_with(PostgresStore(dsn), sql)


def rust_read_with(store: PostgresStore, sql: str) -> list[dict[str, object]]:
    stream = pg_copy_stream(
        store.keywords(), sql, snapshot=None, settings=[], address=store.address, what="tls test"
    )
    rows: list[dict[str, object]] = pa.RecordBatchReader.from_stream(stream).read_all().to_pylist()
    return rows


def rust_error(dsn: str, sql: str = SSL_SQL) -> str:
    with pytest.raises(StoreUnavailableError) as info:
        rust_read(dsn, sql)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    assert PASSWORD not in text
    return text


def reconcile_one_change(
    c: TlsCluster, dsn: str, row_id: int, target_reader: str = "rust"
) -> sl.ReconcileResult:
    """tls_items (Rust reader) against tls_items_copy (`target_reader`) with the copy's row `row_id`
    changed for the reconcile (and put back after)."""
    c.psql(f"UPDATE public.tls_items_copy SET v = 'changed' WHERE id = {row_id}")
    try:
        return sl.reconcile(
            sl.postgres(dsn, "public.tls_items", reader="rust"),
            sl.postgres(dsn, "public.tls_items_copy", reader=target_reader),
            key="id",
        )
    finally:
        c.psql(f"UPDATE public.tls_items_copy SET v = 'v{row_id}' WHERE id = {row_id}")


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TLS ------------------------------------------------------------------------------------------


def test_require_is_encrypted(tls_pg: TlsCluster) -> None:
    (row,) = rust_read(base(tls_pg, sslmode="require"))
    assert row["ssl"] is True and str(row["version"]).startswith("TLS")


def test_prefer_uses_tls_and_allow_falls_back_to_it(tls_pg: TlsCluster) -> None:
    assert rust_read(base(tls_pg, sslmode="prefer"))[0]["ssl"] is True
    assert rust_read(base(tls_pg))[0]["ssl"] is True  # prefer is the default
    # allow tries a plain session first; pg_hba rejects it (hostnossl ... reject), then TLS
    assert rust_read(base(tls_pg, sslmode="allow"))[0]["ssl"] is True


def test_disable_is_refused_by_a_hostssl_only_server(tls_pg: TlsCluster) -> None:
    text = rust_error(base(tls_pg, sslmode="disable"))
    assert text.startswith(f"postgres at localhost:{tls_pg.port}: ")
    assert "no encryption" in text


def test_verify_full_with_the_right_ca(tls_pg: TlsCluster) -> None:
    (row,) = rust_read(base(tls_pg, sslmode="verify-full", sslrootcert=tls_pg.ca))
    assert row["ssl"] is True


def test_verify_full_with_a_wrong_ca_fails(tls_pg: TlsCluster) -> None:
    text = rust_error(base(tls_pg, sslmode="verify-full", sslrootcert=tls_pg.other_ca))
    assert "UnknownIssuer" in text and "verify-full" in text and str(tls_pg.other_ca) in text


def test_verify_full_with_a_wrong_host_fails_and_verify_ca_does_not_check_it(tls_pg: TlsCluster) -> None:
    # the certificate is for localhost only
    text = rust_error(base(tls_pg, host="127.0.0.1", sslmode="verify-full", sslrootcert=tls_pg.ca))
    assert "not valid for name" in text and "127.0.0.1" in text
    assert rust_read(base(tls_pg, host="127.0.0.1", sslmode="verify-ca", sslrootcert=tls_pg.ca))[0]["ssl"]
    text = rust_error(base(tls_pg, host="127.0.0.1", sslmode="verify-ca", sslrootcert=tls_pg.other_ca))
    assert "UnknownIssuer" in text


def test_verify_full_without_sslrootcert_checks_the_system_roots(tls_pg: TlsCluster) -> None:
    # HOME has no ~/.postgresql/root.crt: the system's roots, which never signed our throwaway CA
    text = rust_error(base(tls_pg, sslmode="verify-full"))
    assert "UnknownIssuer" in text and "system's root certificates" in text


def test_default_root_file_is_used_like_libpq(tls_pg: TlsCluster, tmp_path: Path) -> None:
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_bytes(tls_pg.ca.read_bytes())
    assert rust_read(base(tls_pg, sslmode="verify-full"))[0]["ssl"] is True
    # and a root file that exists makes require check the chain too (libpq's rule)
    (tmp_path / ".postgresql" / "root.crt").write_bytes(tls_pg.other_ca.read_bytes())
    assert "UnknownIssuer" in rust_error(base(tls_pg, sslmode="require"))


def test_a_missing_root_file_is_named(tls_pg: TlsCluster, tmp_path: Path) -> None:
    text = rust_error(base(tls_pg, sslmode="verify-ca", sslrootcert=tmp_path / "nope.crt"))
    assert "nope.crt" in text and "does not exist" in text


# -- passwords ------------------------------------------------------------------------------------


def test_scram_password_and_a_wrong_one(tls_pg: TlsCluster) -> None:
    (row,) = rust_read(base(tls_pg, sslmode="require"), "SELECT current_user AS u")
    assert row["u"] == USER
    wrong = "not-the-Pa55word"
    text = rust_error(base(tls_pg, sslmode="require", password=wrong))
    assert "password authentication failed" in text and wrong not in text
    text = rust_error(kv(host="localhost", port=tls_pg.port, user=USER, dbname=DATABASE, sslmode="require"))
    assert "password" in text


# -- DSN forms ------------------------------------------------------------------------------------

SETTINGS_SQL = (
    "SELECT current_setting('application_name') AS app, current_setting('search_path') AS sp,"
    " current_database() AS db, current_user AS u, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
    " AS ssl"
)


def uri(c: TlsCluster, scheme: str = "postgresql", hosts: str | None = None, query: str = "") -> str:
    hosts = hosts or f"localhost:{c.port}"
    return f"{scheme}://{quote(USER)}:{quote(PASSWORD, safe='')}@{hosts}/{DATABASE}{query}"


def test_uri_with_percent_encoding_and_query_parameters(tls_pg: TlsCluster) -> None:
    query = (
        f"?sslmode=verify-full&sslrootcert={quote(str(tls_pg.ca), safe='')}&application_name=seam%20line"
        "&options=-c%20search_path%3Dtlsschema&connect_timeout=5"
    )
    (row,) = rust_read(uri(tls_pg, query=query), SETTINGS_SQL)
    assert row == {"app": "seam line", "sp": "tlsschema", "db": DATABASE, "u": USER, "ssl": True}


def test_postgres_scheme_and_ssl_true(tls_pg: TlsCluster) -> None:
    (row,) = rust_read(uri(tls_pg, scheme="postgres", query="?ssl=true"), SETTINGS_SQL)
    assert row["ssl"] is True and row["db"] == DATABASE


def test_multiple_hosts_the_first_that_answers(tls_pg: TlsCluster) -> None:
    hosts = f"127.0.0.1:{dead_port()},localhost:{tls_pg.port}"
    (row,) = rust_read(uri(tls_pg, hosts=hosts, query="?sslmode=require"), SETTINGS_SQL)
    assert row["ssl"] is True
    # errors name the first host (the one the DSN names first)
    store = PostgresStore(uri(tls_pg, hosts=hosts))
    assert store.address.startswith("127.0.0.1:")


def test_key_value_with_quoting(tls_pg: TlsCluster) -> None:
    dsn = (
        f"host = localhost port={tls_pg.port} user={USER} dbname = {DATABASE} sslmode=require"
        f" application_name='a \\'quoted\\' name' password='{PASSWORD.replace(chr(39), chr(92) + chr(39))}'"
    )
    (row,) = rust_read(dsn, SETTINGS_SQL)
    assert row["app"] == "a 'quoted' name" and row["ssl"] is True


def test_environment_variables(tls_pg: TlsCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in {
        "PGHOST": "localhost",
        "PGPORT": str(tls_pg.port),
        "PGUSER": USER,
        "PGPASSWORD": PASSWORD,
        "PGDATABASE": DATABASE,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(tls_pg.ca),
        "PGAPPNAME": "from-env",
        "PGOPTIONS": "-c search_path=tlsschema",
    }.items():
        monkeypatch.setenv(var, value)
    (row,) = rust_read("", SETTINGS_SQL)
    assert row == {"app": "from-env", "sp": "tlsschema", "db": DATABASE, "u": USER, "ssl": True}
    # the DSN wins over the environment
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_pg.other_ca))
    assert "UnknownIssuer" in rust_error("postgresql://")
    assert rust_read(f"postgresql:///?sslrootcert={quote(str(tls_pg.ca), safe='')}")[0]["ssl"] is True


def write_pgpass(path: Path, lines: list[str], mode: int = 0o600) -> Path:
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def test_pgpass(tls_pg: TlsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        "# comment line",
        "otherhost:*:*:*:wrong-1",
        f"localhost:{tls_pg.port}:otherdb:*:wrong-2",
        f"localhost:*:{DATABASE}:{USER}:{escaped(PASSWORD)}",
        "*:*:*:*:wrong-3",
    ]
    dsn = kv(host="localhost", port=tls_pg.port, user=USER, dbname=DATABASE, sslmode="require")
    # ~/.pgpass by default
    write_pgpass(tmp_path / ".pgpass", lines)
    assert rust_read(dsn)[0]["ssl"] is True
    # group/world-readable: ignored, as libpq ignores it
    (tmp_path / ".pgpass").chmod(0o644)
    assert "password" in rust_error(dsn)
    # PGPASSFILE, then passfile= in the DSN
    other = write_pgpass(tmp_path / "elsewhere", lines)
    monkeypatch.setenv("PGPASSFILE", str(other))
    assert rust_read(dsn)[0]["ssl"] is True
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "missing"))
    assert rust_read(f"{dsn} passfile='{other}'")[0]["ssl"] is True
    # the first matching line wins: a wildcard line before the right one gives its (wrong) password
    first = write_pgpass(tmp_path / "first", ["*:*:*:*:wrong-4", *lines])
    text = rust_error(f"{dsn} passfile='{first}'")
    assert "password authentication failed" in text and "wrong-4" not in text


def test_pgpass_matching_rules() -> None:
    want = ("localhost", "5432", "db", "me")
    assert libpq_dsn._pgpass_match("localhost:5432:db:me:pw", want) == "pw"
    assert libpq_dsn._pgpass_match("*:*:*:*:p\\:w\\\\x", want) == "p:w\\x"
    assert libpq_dsn._pgpass_match("localhost:5433:db:me:pw", want) is None
    assert libpq_dsn._pgpass_match("\\*:*:*:*:pw", want) is None  # an escaped * is a literal *
    assert libpq_dsn._pgpass_match("#localhost:5432:db:me:pw", want) is None
    assert libpq_dsn._pgpass_match("localhost:5432:db", want) is None


# -- certificate revocation lists -------------------------------------------------------------------


def make_crl(d: Path, ca: str, c: TlsCluster, *, revoke: Path | None = None) -> Path:
    """A CRL (`d/<ca>.crl`) of the cluster's CA `ca` ("ca" or "other_ca", with `openssl ca`),
    revoking the certificate `revoke` if given."""
    d.mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text(
        f"[ca]\ndefault_ca = own\n[own]\ndatabase = {d / 'index.txt'}\ncrlnumber = {d / 'crlnumber'}\n"
        "default_md = sha256\ndefault_crl_days = 2\n"
    )
    openssl_ca = ["openssl", "ca", "-config", str(d / "ca.cnf"), "-keyfile", str(c.dir / f"{ca}.key"),
                  "-cert", str(c.dir / f"{ca}.crt")]  # fmt: skip
    if revoke is not None:
        subprocess.run([*openssl_ca, "-revoke", str(revoke)], check=True, capture_output=True)
    subprocess.run([*openssl_ca, "-gencrl", "-out", str(d / f"{ca}.crl")], check=True, capture_output=True)
    return d / f"{ca}.crl"


def test_revocation_lists(tls_pg: TlsCluster, tmp_path: Path) -> None:
    empty = make_crl(tmp_path / "empty", "ca", tls_pg)
    revoked = make_crl(tmp_path / "revoked", "ca", tls_pg, revoke=tls_pg.dir / "server.crt")
    verified = {"sslmode": "verify-full", "sslrootcert": tls_pg.ca}
    assert rust_read(base(tls_pg, sslcrl=empty, **verified))[0]["ssl"] is True
    text = rust_error(base(tls_pg, sslcrl=revoked, **verified))
    assert "Revoked" in text and "verify-full" in text and f"sslcrl={revoked}" in text
    # only a CRL of another CA: the server's issuer has none, which a checked chain does not pass
    other = make_crl(tmp_path / "other", "other_ca", tls_pg)
    assert "UnknownRevocationStatus" in rust_error(base(tls_pg, sslcrl=other, **verified))
    # sslcrldir: every CRL file in it (another file passed over); ~/.postgresql/root.crl by default
    crls = tmp_path / "crls"
    crls.mkdir()
    (crls / "README").write_text("revocation lists\n")
    (crls / "ca.r0").write_bytes(revoked.read_bytes())
    assert "Revoked" in rust_error(base(tls_pg, sslcrldir=crls, **verified))
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crl").write_bytes(revoked.read_bytes())
    assert "Revoked" in rust_error(base(tls_pg, **verified))
    (tmp_path / ".postgresql" / "root.crl").unlink()
    # a CRL file that does not exist is no CRL (libpq), and without a checked chain none is read
    assert rust_read(base(tls_pg, sslcrl=tmp_path / "none.crl", **verified))[0]["ssl"] is True
    assert rust_read(base(tls_pg, sslmode="require", sslcrl=revoked))[0]["ssl"] is True


# -- client certificates ------------------------------------------------------------------------


def cert_dsn(c: TlsCluster, **extra: object) -> str:
    """certuser, whom pg_hba lets in by client certificate alone (no password)."""
    return kv(host="localhost", port=c.port, user=CERT_USER, dbname=DATABASE, sslmode="verify-full",
              sslrootcert=c.ca, **extra)  # fmt: skip


# the server's refusal of certuser without a certificate it accepts
NEEDS_CERT = "connection requires a valid client certificate"


def copied_key(c: TlsCluster, tmp_path: Path, name: str, mode: int) -> Path:
    key = tmp_path / name
    key.write_bytes(c.client_key.read_bytes())
    key.chmod(mode)
    return key


def test_client_certificate_authenticates(tls_pg: TlsCluster) -> None:
    (row,) = rust_read(cert_dsn(tls_pg, sslcert=tls_pg.client_cert, sslkey=tls_pg.client_key), SETTINGS_SQL)
    assert (row["u"], row["ssl"]) == (CERT_USER, True)
    # without one the server refuses certuser; with one signed by another CA it refuses the handshake
    assert NEEDS_CERT in rust_error(cert_dsn(tls_pg))
    text = rust_error(cert_dsn(tls_pg, sslcert=tls_pg.other_client_cert, sslkey=tls_pg.other_client_key))
    assert "UnknownCA" in text and f"sslcert={tls_pg.other_client_cert}" in text
    # a password user is unaffected by sending a certificate it does not need
    assert rust_read(base(tls_pg, sslmode="require", sslcert=tls_pg.client_cert, sslkey=tls_pg.client_key))


def test_client_certificate_defaults_environment_and_certmode(
    tls_pg: TlsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~/.postgresql/postgresql.crt and .key, as libpq (HOME is tmp_path)
    home = tmp_path / ".postgresql"
    home.mkdir()
    (home / "postgresql.crt").write_bytes(tls_pg.client_cert.read_bytes())
    copied_key(tls_pg, home, "postgresql.key", 0o600)
    assert rust_read(cert_dsn(tls_pg), SETTINGS_SQL)[0]["u"] == CERT_USER
    # sslcertmode=disable sends none
    assert NEEDS_CERT in rust_error(cert_dsn(tls_pg, sslcertmode="disable"))
    # PGSSLCERT / PGSSLKEY
    (home / "postgresql.crt").unlink()
    assert NEEDS_CERT in rust_error(cert_dsn(tls_pg))
    monkeypatch.setenv("PGSSLCERT", str(tls_pg.client_cert))
    monkeypatch.setenv("PGSSLKEY", str(tls_pg.client_key))
    assert rust_read(cert_dsn(tls_pg), SETTINGS_SQL)[0]["u"] == CERT_USER


def test_client_key_problems_are_named(tls_pg: TlsCluster, tmp_path: Path) -> None:
    cert = tls_pg.client_cert
    # group/world-readable key of the current user: refused, as libpq refuses it
    loose = copied_key(tls_pg, tmp_path, "loose.key", 0o644)
    text = rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=loose))
    assert f'private key file "{loose}" has group or world access' in text
    assert rust_read(cert_dsn(tls_pg, sslcert=cert, sslkey=copied_key(tls_pg, tmp_path, "tight.key", 0o600)))
    # a certificate without its key
    text = rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=tmp_path / "missing.key"))
    assert f'certificate present, but not private key file "{tmp_path / "missing.key"}"' in text
    # an encrypted key ...
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls_pg.client_key), "-aes256", "-passout", "pass:k3y-secret",
         "-out", str(encrypted)],
        check=True, capture_output=True,
    )  # fmt: skip
    encrypted.chmod(0o600)
    # ... is decrypted with sslpassword (PKCS#8, as openssl writes it), and never echoed
    (row,) = rust_read(
        cert_dsn(tls_pg, sslcert=cert, sslkey=encrypted, sslpassword="k3y-secret"), SETTINGS_SQL
    )
    assert row["u"] == CERT_USER
    text = rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=encrypted, sslpassword="wrong-k3y"))
    assert f'cannot decrypt private key file "{encrypted}"' in text and "wrong-k3y" not in text
    assert "give its password (sslpassword)" in rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=encrypted))
    # the legacy encrypted PEM (Proc-Type: 4,ENCRYPTED) is named, with the reader that reads it
    legacy = tmp_path / "legacy.key"
    subprocess.run(
        ["openssl", "rsa", "-in", str(tls_pg.client_key), "-aes256", "-traditional",
         "-passout", "pass:k3y-secret", "-out", str(legacy)],
        check=True, capture_output=True,
    )  # fmt: skip
    legacy.chmod(0o600)
    text = rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=legacy, sslpassword="k3y-secret"))
    assert "legacy PEM form" in text and 'reader="adbc"' in text and "k3y-secret" not in text
    # a key that is not a key
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    assert f'cannot read private key file "{junk}"' in rust_error(cert_dsn(tls_pg, sslcert=cert, sslkey=junk))
    # a certificate file that does not exist means no certificate (libpq), so certuser is refused
    assert NEEDS_CERT in rust_error(cert_dsn(tls_pg, sslcert=tmp_path / "none.crt", sslkey=junk))


def test_both_readers_authenticate_with_a_client_certificate(tls_pg: TlsCluster) -> None:
    dsn = cert_dsn(tls_pg, sslcert=tls_pg.client_cert, sslkey=tls_pg.client_key)
    result = reconcile_one_change(tls_pg, dsn, 11, target_reader="adbc")
    assert result.diffs["id"].to_list() == [11]


# -- target_session_attrs: a primary and its hot standby ---------------------------------------------


@pytest.fixture(scope="module")
def standby(tls_pg: TlsCluster) -> Iterator[int]:
    with standby_of(tls_pg) as port:
        yield port


ROLE_SQL = "SELECT pg_is_in_recovery() AS standby, inet_server_port() AS port"


def on_hosts(c: TlsCluster, ports: list[int], attrs: str) -> str:
    hosts = ",".join(f"localhost:{p}" for p in ports)
    return uri(c, hosts=hosts, query=f"?sslmode=require&target_session_attrs={attrs}")


def test_target_session_attrs_choose_the_server_by_role(tls_pg: TlsCluster, standby: int) -> None:
    primary = tls_pg.port
    for ports, attrs, expected in [
        ([primary, standby], "standby", standby),
        ([standby, primary], "primary", primary),
        ([primary, standby], "prefer-standby", standby),
        ([primary], "prefer-standby", primary),  # no standby: the first that connects
        ([primary, standby], "read-only", standby),
        ([standby, primary], "read-write", primary),
        ([standby, primary], "any", standby),
        ([dead_port(), standby], "standby", standby),  # a host that does not answer is passed over
    ]:
        (row,) = rust_read(on_hosts(tls_pg, ports, attrs), ROLE_SQL)
        assert (row["port"], row["standby"]) == (expected, expected == standby), (ports, attrs)
    text = rust_error(on_hosts(tls_pg, [primary], "standby"))
    assert "target_session_attrs=standby" in text and f"localhost:{primary}" in text
    text = rust_error(on_hosts(tls_pg, [standby], "primary"))
    assert "target_session_attrs=primary" in text and f"localhost:{standby}" in text
    # nothing answers: the connection error itself
    assert "refused" in rust_error(on_hosts(tls_pg, [dead_port()], "standby")).lower()


def test_load_balance_hosts_random_picks_a_random_order_once_per_source(
    tls_pg: TlsCluster, standby: int
) -> None:
    dsn = on_hosts(tls_pg, [tls_pg.port, standby], "any") + "&load_balance_hosts=random"
    # each connection string resolved anew: both servers come first (P(miss) = 2 * 2^-40)
    assert {rust_read(dsn, ROLE_SQL)[0]["port"] for _ in range(40)} == {tls_pg.port, standby}
    # one source resolves once: all its streams reach one server, the snapshot's
    store = PostgresStore(dsn)
    assert len({rust_read_with(store, ROLE_SQL)[0]["port"] for _ in range(10)}) == 1
    # so a reconcile on either reader imports its snapshot on every stream (libpq, left to draw
    # an order per connection, failed 6 runs of 6 with "invalid snapshot identifier")
    for reader in ("rust", "adbc"):
        for _ in range(3):
            result = sl.reconcile(
                sl.postgres(dsn, "public.tls_items", reader=reader),
                sl.postgres(dsn, "public.tls_items", reader=reader),
                key="id",
                options=sl.Options(parallelism=4),
            )
            assert result.clean and dict(result.counts)["source_rows"] == 1000
    assert libpq_dsn.pinned("host=a,b load_balance_hosts=random") == (
        "host=a,b load_balance_hosts=random load_balance_hosts=disable"
    )
    assert libpq_dsn.pinned("postgresql://a,b/db", {"PGLOADBALANCEHOSTS": "random"}) == (
        "postgresql://a,b/db?load_balance_hosts=disable"
    )
    assert (
        libpq_dsn.pinned("postgresql://a,b/db?sslmode=require", {}) == "postgresql://a,b/db?sslmode=require"
    )


def test_a_reconcile_reads_its_source_from_a_standby(tls_pg: TlsCluster, standby: int) -> None:
    """The source read from the replica (one snapshot exported there and imported by each stream),
    the target from the primary: the same rows, so only the change made on the primary's copy."""
    replica = on_hosts(tls_pg, [tls_pg.port, standby], "standby")
    primary = on_hosts(tls_pg, [tls_pg.port, standby], "primary")
    tls_pg.psql("UPDATE public.tls_items_copy SET v = 'changed' WHERE id = 13")
    try:
        result = sl.reconcile(
            sl.postgres(replica, "public.tls_items", reader="rust"),
            sl.postgres(primary, "public.tls_items_copy", reader="rust"),
            key="id",
            options=sl.Options(parallelism=4),
        )
    finally:
        tls_pg.psql("UPDATE public.tls_items_copy SET v = 'v13' WHERE id = 13")
    assert dict(result.counts)["source_rows"] == 1000
    assert result.diffs["id"].to_list() == [13]


def eventually(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("reader", ["rust", "adbc"])
def test_a_recovery_conflict_on_a_standby_is_store_unavailable_with_the_remedy(
    tls_pg: TlsCluster, standby: int, reader: str
) -> None:
    """A read on the standby whose rows the primary vacuums away is cancelled by the standby (here
    at once: max_standby_streaming_delay = 0, no hot_standby_feedback): a StoreUnavailableError (exit
    3: run again) that names the settings that let a long read finish, not a bad-input error."""
    on_standby = on_hosts(tls_pg, [standby], "standby")
    delay_sql = "SELECT current_setting('max_standby_streaming_delay') AS d"
    configure_standby(tls_pg, "max_standby_streaming_delay = 0")
    try:
        eventually(lambda: rust_read(on_standby, delay_sql)[0]["d"] == "0")
        tls_pg.psql("CREATE TABLE public.conflict AS SELECT generate_series(1, 1000) AS id")
        eventually(
            lambda: rust_read(on_standby, "SELECT to_regclass('public.conflict') IS NOT NULL AS t")[0]["t"]
        )
        failures: list[BaseException] = []

        def read_slowly() -> None:  # the source's snapshot held on the standby for 5 s
            try:
                sl.reconcile(
                    sl.postgres(
                        on_standby, query="SELECT c.id FROM public.conflict c, pg_sleep(5)", reader=reader
                    ),
                    # not the primary: a snapshot held there would keep VACUUM from removing the rows
                    sl.arrow(pa.table({"id": list(range(1, 1001))})),
                    key="id",
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                failures.append(exc)

        slow = threading.Thread(target=read_slowly)
        slow.start()
        time.sleep(1)
        tls_pg.psql("DELETE FROM public.conflict")
        tls_pg.psql("VACUUM public.conflict")
        slow.join(30)
        (failure,) = failures
        assert isinstance(failure, StoreUnavailableError), repr(failure)
        text = str(failure)
        assert "conflict with recovery" in text and "hot_standby_feedback=on" in text and "\n" not in text
    finally:
        configure_standby(tls_pg, "max_standby_streaming_delay = 30s")
        tls_pg.psql("DROP TABLE IF EXISTS public.conflict")


# -- connection services ------------------------------------------------------------------------


def write_services(path: Path, sections: dict[str, list[str]]) -> Path:
    path.write_text(
        "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections.items())
    )
    return path


def service_lines(c: TlsCluster, password: str = PASSWORD) -> list[str]:
    return [
        "# the TLS cluster, verified",
        "host=localhost",
        f"port={c.port}",
        f"user={USER}",
        f"password={password}",
        f"dbname={DATABASE}",
        "sslmode=verify-full",
        f"sslrootcert={c.ca}",
        "application_name=from-service",
    ]


def test_service_files(tls_pg: TlsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sysconf = tmp_path / "etc"
    sysconf.mkdir()
    monkeypatch.setenv("PGSYSCONFDIR", str(sysconf))
    # ~/.pg_service.conf (HOME is tmp_path), the service's section among others
    write_services(
        tmp_path / ".pg_service.conf",
        {"other": ["host=nowhere.invalid"], "tls": service_lines(tls_pg), "after": ["port=1"]},
    )
    (row,) = rust_read("service=tls", SETTINGS_SQL)
    assert (row["app"], row["db"], row["u"], row["ssl"]) == ("from-service", DATABASE, USER, True)
    # the DSN wins over the service, the service over the environment, the environment fills the rest
    monkeypatch.setenv("PGAPPNAME", "from-env")
    monkeypatch.setenv("PGOPTIONS", "-c search_path=tlsschema")
    (row,) = rust_read("postgresql:///?service=tls", SETTINGS_SQL)
    assert (row["app"], row["sp"]) == ("from-service", "tlsschema")
    assert rust_read("service=tls application_name=mine", SETTINGS_SQL)[0]["app"] == "mine"
    # PGSERVICE names it when the DSN does not
    monkeypatch.setenv("PGSERVICE", "tls")
    assert rust_read("", SETTINGS_SQL)[0]["app"] == "from-service"
    monkeypatch.delenv("PGSERVICE")
    # a service the user's file does not define comes from PGSYSCONFDIR's pg_service.conf
    write_services(sysconf / "pg_service.conf", {"sys": [*service_lines(tls_pg), "application_name=system"]})
    assert rust_read("service=sys", SETTINGS_SQL)[0]["app"] == "from-service"  # the first value wins
    # PGSERVICEFILE instead of ~/.pg_service.conf
    elsewhere = write_services(
        tmp_path / "services", {"tls": [*service_lines(tls_pg)[:-1], "application_name=b"]}
    )
    monkeypatch.setenv("PGSERVICEFILE", str(elsewhere))
    assert rust_read("service=tls", SETTINGS_SQL)[0]["app"] == "b"
    # a password from a service file is never echoed
    write_services(elsewhere, {"tls": service_lines(tls_pg, password="wrong-service-pw")})
    text = rust_error("service=tls")
    assert "password authentication failed" in text and "wrong-service-pw" not in text
    # messages name the service's server, not libpq's default one
    assert text.startswith(f"postgres at localhost:{tls_pg.port}: ")


def test_service_file_errors_name_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path / "no-etc"))
    services = tmp_path / "services"
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    for lines, words in [
        (["host=h", "port 5432"], f'syntax error in service file "{services}", line 3'),
        (["host=h", "nosuchkeyword=1"], f'syntax error in service file "{services}", line 3'),
        (
            ["service=other"],
            f'nested service specifications not supported in service file "{services}", line 2',
        ),
    ]:
        write_services(services, {"s": lines})
        with pytest.raises(InvalidInputError) as info:
            libpq_dsn.resolve("service=s")
        assert words in str(info.value) and "\n" not in str(info.value)
    write_services(services, {"s": ["host=h"]})
    for dsn in ("service=missing", "postgresql:///?service=missing"):
        with pytest.raises(InvalidInputError, match='definition of service "missing" not found'):
            libpq_dsn.resolve(dsn)
    # an error in another service's section is not read
    write_services(services, {"s": ["host=h", "port=7"], "broken": ["no equals sign"]})
    assert (
        libpq_dsn.resolve("service=s", environ={"PGSERVICEFILE": str(services), "HOME": str(tmp_path)})[
            "port"
        ]
        == "7"
    )


def test_both_readers_connect_through_a_service(
    tls_pg: TlsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq (the ADBC reader) and the Rust reader read the same service file to the same server."""
    monkeypatch.setenv(
        "PGSERVICEFILE", str(write_services(tmp_path / "services", {"tls": service_lines(tls_pg)}))
    )
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path))
    result = reconcile_one_change(tls_pg, "service=tls", 9, target_reader="adbc")
    assert dict(result.counts)["changed"] == 1 and dict(result.counts)["source_rows"] == 1000
    assert result.diffs["id"].to_list() == [9]


def test_bad_dsns_are_one_line_input_errors() -> None:
    for dsn, words in [
        ("host=localhost port", 'missing "="'),
        ("host=localhost nosuchoption=1", '"nosuchoption"'),
        ("postgresql://h/db?nosuch=1", '"nosuch"'),
        ("postgresql://h/db?gssencmode=require", "gssencmode"),
        ("postgresql://h/db?sslcertmode=require", "sslcertmode"),
        ("postgresql://h:5432,h2:1,h3:2/db?port=1,2", "ports"),
        ("postgresql://u:p%zz@h/db", "percent-encoding"),
    ]:
        with pytest.raises(InvalidInputError) as info:
            libpq_dsn.resolve(dsn)
        assert words in str(info.value) and "\n" not in str(info.value)
    assert libpq_dsn.parse("postgresql://u:s%40cr%3At@[::1]:5433,%2Ftmp/d%20b") == {
        "user": "u",
        "password": "s@cr:t",
        "host": "::1,/tmp",
        "port": "5433,",
        "dbname": "d b",
    }


# -- the whole adapter ----------------------------------------------------------------------------


def test_reconcile_over_tls_with_the_rust_reader(tls_pg: TlsCluster) -> None:
    dsn = uri(tls_pg, query=f"?sslmode=verify-full&sslrootcert={quote(str(tls_pg.ca), safe='')}")
    result = reconcile_one_change(tls_pg, dsn, 7)
    assert dict(result.counts)["changed"] == 1
    assert result.diffs["id"].to_list() == [7]
