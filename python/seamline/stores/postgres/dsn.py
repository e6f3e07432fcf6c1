"""libpq connection strings resolved to connection keywords, for the Rust reader (the ADBC reader
hands the DSN to libpq itself). This is the one place where Seamline reads a DSN the way libpq does:

- URIs (``postgresql://`` or ``postgres://``): ``user:password@`` (percent-encoded), a comma list of
  hosts each with an optional ``:port`` (``[v6]`` addresses; a percent-encoded socket directory),
  ``/dbname``, and ``?key=value&...`` parameters (``ssl=true`` is ``sslmode=require``, as in libpq);
- ``key=value`` words: values single-quoted or not, backslash escapes, spaces around ``=``;
- the environment, for keywords the DSN does not give: PGHOST, PGHOSTADDR, PGPORT, PGDATABASE,
  PGUSER, PGPASSWORD, PGPASSFILE, PGOPTIONS, PGAPPNAME, PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT,
  ... (libpq's table below);
- a connection service (``service=name`` or PGSERVICE): its keywords from the first service file
  that defines it, PGSERVICEFILE or ``~/.pg_service.conf``, then ``pg_service.conf`` in PGSYSCONFDIR
  (else ``/etc/postgresql-common``, where Debian's libpq looks), for keywords the DSN does not give
  (the environment comes after it, as in libpq). Sections ``[name]`` of ``keyword=value`` lines,
  ``#`` comments; an unknown keyword, a line without ``=`` or a nested ``service`` is an error
  naming the file and line, and so is a service no file defines;
- libpq's defaults: the socket directory when no host is given (``/var/run/postgresql`` or ``/tmp``,
  whichever has the port's socket, else ``localhost``), port 5432, the OS user, dbname = user,
  sslmode=prefer;
- the password file when there is no password: ``passfile``, PGPASSFILE or ``~/.pgpass``, ignored
  (as libpq does) unless it is a regular file without group or other permissions; lines
  ``host:port:dbname:user:password``, ``*`` matching anything, ``\\`` escaping ``:`` and ``\\``, ``#``
  comments, the first matching line wins; a socket directory or no host matches ``localhost``.
  Where several hosts are given, the password is the first host's that has a matching line (the
  Rust client has one password per connection string).

``pinned`` is the DSN libpq itself gets (the ADBC reader): ``load_balance_hosts=random`` turned off,
so that every stream of a source reaches the server its snapshot was exported on.

Errors are one line (`InvalidInputError`), never echoing a password.
"""

from __future__ import annotations

import getpass
import os
import random
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote_to_bytes

from seamline.exceptions import InvalidInputError

#: every keyword libpq knows, with its environment variable
KEYWORDS: dict[str, str | None] = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "fallback_application_name": None,
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
    "tcp_user_timeout": None,
    "replication": None,
    "gssencmode": "PGGSSENCMODE",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslpassword": None,
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# What the Rust client is handed (connect.rs reads exactly these).
_PASSED = (
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
    "channel_binding",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
)
# Keywords the Rust client can leave aside when they have these values (anything else is refused
# with a pointer to reader="adbc"); keywords absent here and from _PASSED are ignored (tuning,
# Kerberos names, TLS versions rustls already bounds).
_ONLY = {
    "client_encoding": {"utf8", "utf-8", "unicode", "auto"},
    "gssencmode": {"disable", "prefer"},
    "replication": {"false", "0", "off", "no"},
    "sslnegotiation": {"postgres"},
    "sslcertmode": {"disable", "allow"},
    "load_balance_hosts": {"disable", "random"},
    "requirepeer": set(),
    "require_auth": set(),
}
_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")
# where Debian's libpq looks for pg_service.conf when PGSYSCONFDIR is not set (its SYSCONFDIR)
_SYSCONFDIR = "/etc/postgresql-common"
DEFAULT_PORT = "5432"


def parse(dsn: str) -> dict[str, str]:
    """The keywords a libpq connection string gives (URI or key=value), nothing added."""
    text = dsn.strip()
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return _parse_uri(text[len(prefix) :])
    return _parse_words(text)


def resolve(dsn: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keywords the Rust client connects with: the DSN's, then the environment's, then libpq's
    defaults, the password from the password file if none was given; keywords the client cannot
    honour raise InvalidInputError."""
    env = os.environ if environ is None else environ
    given = parse(dsn)
    out = dict(given)
    service = out.get("service") or env.get("PGSERVICE")
    if service:
        for keyword, from_service in _service_keywords(service, env).items():
            out.setdefault(keyword, from_service)
    for keyword, var in KEYWORDS.items():
        if keyword not in out and var and env.get(var):
            out[keyword] = env[var]
    for keyword, allowed in _ONLY.items():
        value = out.get(keyword)
        if value is not None and value != "" and value.lower() not in allowed:
            raise InvalidInputError(
                f"postgres connection option {keyword}={value if keyword != 'sslpassword' else '***'}"
                " is not supported by the rust reader: use reader='adbc'"
            )
    port = out.get("port") or DEFAULT_PORT
    hosts = (out.get("host") or "").split(",")
    ports = port.split(",")
    if len(ports) not in (1, len(hosts)):
        raise InvalidInputError(f"postgres connection: {len(hosts)} hosts but {len(ports)} ports")
    ports = [p or DEFAULT_PORT for p in (ports * len(hosts) if len(ports) == 1 else ports)]
    if not out.get("hostaddr"):
        hosts = [h or _default_host(p) for h, p in zip(hosts, ports, strict=True)]
    if (out.get("load_balance_hosts") or "").lower() == "random" and len(hosts) > 1:
        # libpq shuffles the hosts of each connection; here once per resolve, which a store does once:
        # every stream of a source then reaches the server its snapshot was exported on
        addrs = out["hostaddr"].split(",") if out.get("hostaddr") else []
        order = random.sample(range(len(hosts)), len(hosts))
        hosts, ports = [hosts[i] for i in order], [ports[i] for i in order]
        if len(addrs) == len(order):
            out["hostaddr"] = ",".join(addrs[i] for i in order)
    out["host"] = ",".join(hosts)
    out["port"] = ",".join(ports)
    if not out.get("user"):
        out["user"] = _os_user()
    if not out.get("dbname"):
        out["dbname"] = out["user"]
    if not out.get("application_name") and out.get("fallback_application_name"):
        out["application_name"] = out["fallback_application_name"]
    out.setdefault("sslmode", "prefer")
    if not out.get("password"):
        password = _password_from_file(out, env)
        if password is not None:
            out["password"] = password
    return {k: out[k] for k in _PASSED if out.get(k) not in (None, "")}


def pinned(dsn: str, environ: Mapping[str, str] | None = None) -> str:
    """The DSN libpq (the ADBC reader) connects with: with ``load_balance_hosts=random`` libpq draws
    a host order per connection, so the streams of one source could reach other servers than the
    one its snapshot was exported on (and fail to import it); they keep the given order instead."""
    env = os.environ if environ is None else environ
    try:
        given = parse(dsn).get("load_balance_hosts")
    except InvalidInputError:
        return dsn  # libpq says what is wrong
    if (given or env.get("PGLOADBALANCEHOSTS") or "").lower() != "random":
        return dsn
    text = dsn.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return text + ("&" if "?" in text else "?") + "load_balance_hosts=disable"
    return f"{text} load_balance_hosts=disable"  # the last value of a keyword is the one libpq keeps


def first_address(dsn: str) -> tuple[str, int, str]:
    """(host, port, dbname) of the first host a DSN (or the connection service it names) gives, for
    messages (no other environment, no defaults beyond localhost:5432); a DSN that does not parse
    gives the defaults."""
    try:
        kw = parse(dsn)
        service = kw.get("service") or os.environ.get("PGSERVICE")
        if service:  # the service's host and port, not the defaults
            kw = _service_keywords(service, os.environ) | kw
    except InvalidInputError:
        kw = {}
    host = (kw.get("host") or kw.get("hostaddr") or "localhost").split(",")[0] or "localhost"
    try:
        port = int((kw.get("port") or DEFAULT_PORT).split(",")[0] or DEFAULT_PORT)
    except ValueError:
        port = int(DEFAULT_PORT)
    return host, port, kw.get("dbname", "")


# -- parsing -----------------------------------------------------------------------------------------


def _check_keyword(keyword: str) -> str:
    if keyword not in KEYWORDS:
        raise InvalidInputError(f'postgres connection string: invalid connection option "{keyword}"')
    return keyword


def _parse_words(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        keyword = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            raise InvalidInputError(
                f'postgres connection string: missing "=" after "{keyword}" in connection info string'
            )
        i += 1
        while i < n and text[i].isspace():
            i += 1
        chars: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise InvalidInputError("postgres connection string: unterminated quoted string")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                else:
                    chars.append(text[i])
                    i += 1
        out[_check_keyword(keyword)] = "".join(chars)
    return out


def _decode(part: str, what: str) -> str:
    if "%" in part:
        for at in range(len(part)):
            if part[at] == "%":
                code = part[at + 1 : at + 3]
                if len(code) != 2 or any(c not in "0123456789abcdefABCDEF" for c in code):
                    raise InvalidInputError(f"postgres connection URI: bad percent-encoding in the {what}")
    try:
        return unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"postgres connection URI: the {what} is not UTF-8 once decoded") from None


def _parse_uri(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    path = ""
    # user info ends at the last "@" before the path (an "@" in a password must be encoded anyway)
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash + 1 :])
    if "@" in authority:
        userinfo, authority = authority.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            out["user"] = _decode(user, "user name")
        if ":" in userinfo:
            out["password"] = _decode(password, "password")
    hosts: list[str] = []
    ports: list[str] = []
    if authority:
        for spec in authority.split(","):
            if spec.startswith("["):
                end = spec.find("]")
                if end < 0:
                    raise InvalidInputError('postgres connection URI: missing "]" in an IPv6 host address')
                host, tail = spec[1:end], spec[end + 1 :]
            else:
                host, sep, port_part = spec.partition(":")
                tail = sep + port_part
            if tail and not tail.startswith(":"):
                raise InvalidInputError("postgres connection URI: unexpected text after a host")
            port = tail[1:]
            if port and not port.isdigit():
                raise InvalidInputError(f"postgres connection URI: invalid port {port!r}")
            hosts.append(_decode(host, "host"))
            ports.append(port)
        if any(hosts):
            out["host"] = ",".join(hosts)
        if any(ports):
            out["port"] = ",".join(ports)
    if path:
        out["dbname"] = _decode(path, "database name")
    for pair in query.split("&") if query else []:
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInputError(f'postgres connection URI: missing "=" in query parameter "{key}"')
        key, value = _decode(key, "query parameters"), _decode(value, "query parameters")
        if key == "ssl" and value == "true":  # libpq's JDBC-compatible spelling
            key, value = "sslmode", "require"
        out[_check_keyword(key)] = value
    return out


# -- connection services ------------------------------------------------------------------------------


def _service_keywords(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """The keywords of connection service `service`: from the user's service file if it defines the
    service, else from the system's (libpq's parseServiceInfo)."""
    home = env.get("HOME") or os.path.expanduser("~")
    user_file = Path(env.get("PGSERVICEFILE") or os.path.join(home, ".pg_service.conf"))
    system_file = Path(env.get("PGSYSCONFDIR") or _SYSCONFDIR) / "pg_service.conf"
    for path in (user_file, system_file):
        if path.exists():  # libpq passes over a file it cannot stat
            found = _read_service(path, service)
            if found is not None:
                return found
    raise InvalidInputError(f'postgres connection: definition of service "{service}" not found')


def _read_service(path: Path, service: str) -> dict[str, str] | None:
    """The keywords of section `[service]` of one service file (None: no such section); the first
    value of a keyword given twice wins, as in libpq."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InvalidInputError(
            f'postgres connection: service file "{path}" not found: {exc.strerror}'
        ) from None
    found: dict[str, str] | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if found is not None:
                break  # the service's section has ended
            if line.startswith(f"[{service}]"):  # libpq reads no further than the "]"
                found = {}
            continue
        if found is None:
            continue
        keyword, sep, value = line.partition("=")
        if keyword == "service":
            raise InvalidInputError(
                f'postgres connection: nested service specifications not supported in service file "{path}",'
                f" line {number}"
            )
        if not sep or keyword not in KEYWORDS:
            raise InvalidInputError(
                f'postgres connection: syntax error in service file "{path}", line {number}'
            )
        found.setdefault(keyword, value)
    return found


# -- defaults and the password file ------------------------------------------------------------------


def _default_host(port: str) -> str:
    for directory in _SOCKET_DIRS:
        if os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
            return directory
    return "localhost"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise InvalidInputError("postgres connection: no user given and no OS user name") from None


def _password_from_file(kw: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    name = kw.get("passfile") or env.get("PGPASSFILE")
    if not name:
        home = env.get("HOME") or os.path.expanduser("~")
        name = os.path.join(home, ".pgpass")
    path = Path(name)
    try:
        info = path.stat()
    except OSError:
        return None
    # libpq skips a file that is not regular or that the group or others can read (with a warning)
    if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    hosts = kw["host"].split(",") if kw.get("host") else [kw.get("hostaddr", "")]
    ports = kw.get("port", DEFAULT_PORT).split(",")
    for at, host in enumerate(hosts):
        if not host or host in _SOCKET_DIRS:
            host = "localhost"
        port = ports[at] if at < len(ports) else ports[0]
        for line in lines:
            password = _pgpass_match(line, (host, port, kw.get("dbname", ""), kw.get("user", "")))
            if password is not None:
                return password
    return None


def _pgpass_match(line: str, want: tuple[str, str, str, str]) -> str | None:
    """The password of one .pgpass line if its first four fields match ``want``."""
    if not line or line.startswith("#"):
        return None
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(line) and len(fields) < 4:
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            current.append("\x00" + line[i + 1])  # an escaped char never makes a wildcard
            i += 2
            continue
        if c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    if len(fields) < 4:
        return None
    for field, value in zip(fields, want, strict=True):
        if field != "*" and field.replace("\x00", "") != value:
            return None
    rest = line[i:]
    out, j = [], 0
    while j < len(rest):
        if rest[j] == "\\" and j + 1 < len(rest):
            out.append(rest[j + 1])
            j += 2
        else:
            out.append(rest[j])
            j += 1
    return "".join(out)
