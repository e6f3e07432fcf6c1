"""A throwaway Postgres cluster with TLS and SCRAM passwords, for the connection tests.

`tls_cluster()` runs Debian's initdb/pg_ctl (the binaries scripts/services.sh uses) in a fresh
temporary directory on a free port (55532 if it is free), as the postgres user when run as root:
``ssl=on`` with a server certificate for ``localhost`` signed by a throwaway CA (made with openssl),
``password_encryption=scram-sha-256``, and pg_hba

    local     all all                     trust
    local     replication all             trust   (for standby_of's base backup)
    hostssl   all certuser 127.0.0.1/32   cert
    hostssl   all all      127.0.0.1/32   scram-sha-256
    hostnossl all all      127.0.0.1/32   reject

so every TCP session must be TLS and authenticate with its password, but for ``certuser``
(CERT_USER), who authenticates with a client certificate for CN=certuser signed by the CA
(``ssl_ca_file``). A second, unrelated CA is made for the wrong-CA cases, with a client certificate
of its own. The cluster is stopped and the directory removed when the context ends. Without the
binaries the caller skips, or fails under CI.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "seamline"
CERT_USER = "certuser"
PASSWORD = "S3cret p@ss:w/rd%'"  # every character a DSN must escape
DATABASE = "tlsdb"


@dataclass(frozen=True)
class TlsCluster:
    port: int
    dir: Path
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    socket_dir: Path
    client_cert: Path  # CN=certuser, signed by ca
    client_key: Path
    other_client_cert: Path  # CN=certuser, signed by other_ca
    other_client_key: Path

    def psql(self, sql: str, db: str = DATABASE) -> str:
        return _run(
            _as_pg(
                [
                    "psql",
                    "-X",
                    "-q",
                    "-At",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    USER,
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]
            )
        )


def server_binaries() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port(preferred: int = 55532) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], **kw: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return str(proc.stdout)


def _openssl(*args: str, cwd: Path) -> None:
    _run(["openssl", *args], cwd=cwd)


def make_certs(d: Path) -> None:
    """In `d`: ca.crt/.key and other_ca.crt/.key (throwaway CAs), server.crt/.key for localhost
    signed by ca, client.crt/.key and other_client.crt/.key (CN=certuser) signed by ca and other_ca.
    Also the certificates of the OpenSearch TLS tests."""
    for ca in ("ca", "other_ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=seamline test {ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d,
        )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    # v3 certificates (extensions given): rustls refuses v1 ones, which `x509 -req` makes without them
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    )
    for name, ca in (("client", "ca"), ("other_client", "other_ca")):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={CERT_USER}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "client.ext", cwd=d,
        )  # fmt: skip
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "server.ext",
        cwd=d,
    )


@contextlib.contextmanager
def tls_cluster() -> Iterator[TlsCluster]:
    bin_dir = server_binaries()
    if bin_dir is None:
        raise FileNotFoundError("no initdb/pg_ctl (Debian's postgresql package)")
    if shutil.which("openssl") is None:
        raise FileNotFoundError("no openssl")
    d = Path(tempfile.mkdtemp(prefix="seamline-pgtls-"))
    data = d / "data"
    port = _free_port()
    started = False
    try:
        make_certs(d)
        (d / "pw").write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(d, "postgres", "postgres")
            for f in d.iterdir():
                shutil.chown(f, "postgres", "postgres")
        for key in ("server.key", "client.key", "other_client.key"):
            os.chmod(d / key, 0o600)
        os.chmod(d, 0o755)
        _run(
            _as_pg(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    f"--username={USER}",
                    f"--pwfile={d / 'pw'}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        )
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n"
                f"ssl = on\nssl_cert_file = '{d / 'server.crt'}'\nssl_key_file = '{d / 'server.key'}'\n"
                f"ssl_ca_file = '{d / 'ca.crt'}'\n"
                "password_encryption = 'scram-sha-256'\nfsync = off\nshared_buffers = 16MB\n"
                "max_connections = 40\n"
            )
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "local replication all trust\n"
            f"hostssl all {CERT_USER} 127.0.0.1/32 cert\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        _run(
            _as_pg(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(d / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        )
        started = True
        cluster = TlsCluster(
            port=port,
            dir=d,
            ca=d / "ca.crt",
            other_ca=d / "other_ca.crt",
            socket_dir=d,
            client_cert=d / "client.crt",
            client_key=d / "client.key",
            other_client_cert=d / "other_client.crt",
            other_client_key=d / "other_client.key",
        )
        cluster.psql(f"CREATE DATABASE {DATABASE}", db="postgres")
        cluster.psql(f"CREATE ROLE {CERT_USER} LOGIN; GRANT pg_read_all_data TO {CERT_USER}")
        yield cluster
    finally:
        if started:
            subprocess.run(
                _as_pg([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def standby_of(primary: TlsCluster) -> Iterator[int]:
    """A hot standby of `primary` (`pg_basebackup -R`, streaming over its socket), with the same
    settings on a port of its own: yields that port. Stopped and removed when the context ends."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise FileNotFoundError("no initdb/pg_ctl (Debian's postgresql package)")
    data = primary.dir / "standby"
    port = _free_port(55533)
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        _run(
            _as_pg(
                [str(bin_dir / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c", "fast",
                 "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", USER]
            )
        )  # fmt: skip
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nhot_standby = on\n")
        _run(_as_pg([*pg_ctl, "-l", str(primary.dir / "standby.log"), "-w", "-t", "60", "start"]))
        started = True
        yield port
    finally:
        if started:
            subprocess.run(
                _as_pg([*pg_ctl, "-m", "immediate", "-w", "stop"]), capture_output=True, check=False
            )
        shutil.rmtree(data, ignore_errors=True)


def configure_standby(primary: TlsCluster, setting: str) -> None:
    """Append `setting` to the standby's postgresql.conf (standby_of's) and have it reloaded."""
    bin_dir = server_binaries()
    assert bin_dir is not None
    data = primary.dir / "standby"
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\n{setting}\n")
    _run(_as_pg([str(bin_dir / "pg_ctl"), "-D", str(data), "reload"]))
