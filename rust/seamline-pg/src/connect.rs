//! Connecting as libpq does, from the connection keywords the Python adapter resolved
//! (`seamline/stores/postgres/dsn.py`: URI or key=value, the connection service file, the PG*
//! environment variables and `.pgpass` already applied), with TLS by rustls.
//!
//! sslmode follows libpq: `disable` (plain), `allow` (plain, then TLS if the server refuses a plain
//! session), `prefer` (TLS if the server offers it, the default), `require` (TLS), `verify-ca` (TLS,
//! the server's chain checked against the root certificates) and `verify-full` (also the host name).
//! Roots: `sslrootcert=<file>` (PEM), `sslrootcert=system` (the system's roots), otherwise
//! `~/.postgresql/root.crt` when it exists, otherwise the system's roots (libpq would fail there; the
//! system roots are what a managed server's certificate is signed by). As with libpq, a root file
//! that exists makes `require` (and `prefer`/`allow` when they use TLS) check the chain too.
//! Where the chain is checked, certificate revocation lists are too, as libpq: `sslcrl=<file>`
//! (PEM), else `~/.postgresql/root.crl` when it exists, and every CRL file of `sslcrldir`; a
//! revoked certificate fails the handshake, and so does one whose issuer has no CRL there (OpenSSL's
//! check of the whole chain, as libpq asks it). A CRL file or directory that does not exist is no
//! CRL (libpq ignores it too).
//!
//! A client certificate (for `cert` authentication, or `clientcert=verify-*` in pg_hba) is sent as
//! libpq sends it: `sslcert`/`sslkey` (PEM; PKCS#8, PKCS#1 or SEC1 keys), by default
//! `~/.postgresql/postgresql.crt` and `.key`; none when the certificate file does not exist, an
//! error when its key is missing or has group or world access (as libpq checks). An encrypted
//! PKCS#8 key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, what `openssl pkey -aes256` writes) is
//! decrypted with `sslpassword`; a legacy `Proc-Type: 4,ENCRYPTED` key is refused, naming
//! `reader="adbc"`. `sslcertmode=disable` sends none.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{ChannelBinding, Host, SslMode, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::raw::{self, RawSocket, Tap};
use crate::{one_line, PgError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A connected client, and its socket for the COPY loop when the connection has no TLS.
pub struct Connected {
    pub client: Client,
    pub raw: Option<RawSocket>,
}

/// Connect with `tls` and drive the connection on the current runtime.
async fn connect_with<T>(config: &Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    // Ends when the client is dropped (or the server goes away: the client's calls then fail).
    tokio::spawn(connection);
    Ok(client)
}

/// A connected client for the keywords `params` (libpq names; host and port may be comma lists).
/// Runs inside the reader thread's tokio runtime (the connection is a task on it).
///
/// target_session_attrs as libpq: `any`, `read-write` and `read-only` by tokio-postgres (each host
/// in turn, `SHOW transaction_read_only`); `primary`, `standby` and `prefer-standby` here, each host
/// in turn kept when `pg_is_in_recovery()` is what is asked for (`prefer-standby`: the first host
/// that connects when none is a standby), so that a reconcile can read from a replica.
pub async fn connect(params: &[(String, String)]) -> Result<Connected, PgError> {
    let attrs = params.iter().find(|(k, _)| k == "target_session_attrs").map(|(_, v)| v.as_str());
    let (standby, prefer) = match attrs {
        Some("primary") => (false, false),
        Some("standby") => (true, false),
        Some("prefer-standby") => (true, true),
        _ => return connect_one(params).await,
    };
    let mut fallback: Option<Connected> = None;
    let mut last_error: Option<PgError> = None;
    let mut wrong_role = Vec::new();
    for host in one_per_host(params) {
        let connected = match connect_one(&host).await {
            Ok(connected) => connected,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let row = connected
            .client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| PgError::Unavailable(one_line(&e)))?;
        if row.get::<_, bool>(0) == standby {
            return Ok(connected);
        }
        wrong_role.push(host_name(&host));
        if prefer && fallback.is_none() {
            fallback = Some(connected);
        }
    }
    if let Some(connected) = fallback {
        return Ok(connected);
    }
    match (wrong_role.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Err(PgError::Unavailable(format!(
            "no server is {} (target_session_attrs={}): {} {}",
            if standby { "in hot standby mode" } else { "a primary" },
            attrs.unwrap_or_default(),
            wrong_role.join(", "),
            if standby { "is not a standby" } else { "is a standby" },
        ))),
    }
}

/// The keywords once per host of a host list (its port and host address with it), without
/// target_session_attrs: the hosts tried one by one.
fn one_per_host(params: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    let list = |key: &str| -> Vec<String> {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let (hosts, ports, addrs) = (list("host"), list("port"), list("hostaddr"));
    let count = hosts.len().max(addrs.len()).max(1);
    let nth = |values: &[String], i: usize| values.get(i).or(values.first()).cloned();
    (0..count)
        .map(|i| {
            let mut one: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "host" | "port" | "hostaddr" | "target_session_attrs"))
                .cloned()
                .collect();
            for (key, values) in [("host", &hosts), ("port", &ports), ("hostaddr", &addrs)] {
                if let Some(value) = nth(values, i) {
                    one.push((key.to_string(), value));
                }
            }
            one
        })
        .collect()
}

/// `host:port` of a one-host keyword list, for messages.
fn host_name(params: &[(String, String)]) -> String {
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    format!("{}:{}", get("host").or(get("hostaddr")).unwrap_or("localhost"), get("port").unwrap_or("5432"))
}

/// One connection as tokio-postgres makes it (any, read-write or read-only sessions).
async fn connect_one(params: &[(String, String)]) -> Result<Connected, PgError> {
    let mut config = Config::new();
    let mut mode = Mode::Prefer;
    let mut files = TlsFiles::default();
    let bad = |key: &str, value: &str| PgError::Decode(format!("invalid connection option {key}={value:?}"));
    for (key, value) in params {
        let value = value.as_str();
        match key.as_str() {
            "host" => {
                for host in value.split(',') {
                    config.host(host);
                }
            }
            "hostaddr" => {
                for addr in value.split(',') {
                    config.hostaddr(addr.parse::<IpAddr>().map_err(|_| bad(key, value))?);
                }
            }
            "port" => {
                for port in value.split(',') {
                    config.port(port.parse().map_err(|_| bad(key, value))?);
                }
            }
            "user" => {
                config.user(value);
            }
            "password" => {
                config.password(value);
            }
            "dbname" => {
                config.dbname(value);
            }
            "options" => {
                config.options(value);
            }
            "application_name" => {
                config.application_name(value);
            }
            "connect_timeout" => {
                // libpq: 0 or negative waits forever, 1 is taken as 2 seconds.
                let seconds: i64 = value.trim().parse().map_err(|_| bad(key, value))?;
                if seconds > 0 {
                    config.connect_timeout(Duration::from_secs(seconds.max(2) as u64));
                }
            }
            "keepalives" => {
                config.keepalives(value != "0");
            }
            "keepalives_idle" => {
                let seconds: u64 = value.trim().parse().map_err(|_| bad(key, value))?;
                config.keepalives_idle(Duration::from_secs(seconds));
            }
            "target_session_attrs" => {
                config.target_session_attrs(match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => return Err(bad(key, value)),
                });
            }
            "channel_binding" => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(bad(key, value)),
                });
            }
            "sslmode" => {
                mode = match value {
                    "disable" => Mode::Disable,
                    "allow" => Mode::Allow,
                    "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    _ => return Err(bad(key, value)),
                };
            }
            "sslrootcert" => files.rootcert = Some(value.to_string()),
            "sslcert" => files.cert = Some(value.to_string()),
            "sslkey" => files.key = Some(value.to_string()),
            "sslpassword" => files.key_password = Some(value.to_string()),
            "sslcrl" => files.crl = Some(value.to_string()),
            "sslcrldir" => files.crl_dir = Some(value.to_string()),
            "sslcertmode" => files.no_client_cert = value == "disable",
            _ => {
                return Err(PgError::Decode(format!(
                    "connection option {key:?} is not supported by the rust reader (use reader=\"adbc\")"
                )))
            }
        }
    }
    if let Some((host, port)) = plain_target(&config, mode) {
        let socket = tcp(&config, &host, port).await?;
        return connect_tapped(&config, mode, &files, &host, socket).await;
    }
    let connected = match mode {
        Mode::Disable => connect_with(config.ssl_mode(SslMode::Disable), NoTls).await,
        Mode::Allow => match connect_with(config.ssl_mode(SslMode::Disable), NoTls).await {
            // The server refused a plain session (pg_hba `hostssl`): try again with TLS.
            Err(e) if e.as_db_error().is_some() => {
                let tls = tls_connector(mode, &files)?;
                connect_with(config.ssl_mode(SslMode::Require), tls).await
            }
            other => other,
        },
        Mode::Prefer => {
            let tls = tls_connector(mode, &files)?;
            connect_with(config.ssl_mode(SslMode::Prefer), tls).await
        }
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => {
            let tls = tls_connector(mode, &files)?;
            connect_with(config.ssl_mode(SslMode::Require), tls).await
        }
    };
    let client = connected.map_err(|e| connect_error(&e, mode, &files))?;
    Ok(Connected { client, raw: None })
}

/// A failed connection in one line, with the TLS settings when TLS is what failed (the client
/// certificate too when the server's alert refused the handshake: UnknownCA, say).
fn connect_error(e: &tokio_postgres::Error, mode: Mode, files: &TlsFiles) -> PgError {
    let mut text = one_line(e);
    let alert = text.contains("fatal alert");
    if text.contains("TLS") || text.contains("certificate") || alert {
        let roots = match (mode, &files.rootcert) {
            (Mode::VerifyCa | Mode::VerifyFull, Some(path)) => format!(", sslrootcert={path}"),
            (Mode::VerifyCa | Mode::VerifyFull, None) => ", the system's root certificates".into(),
            _ => String::new(),
        };
        let client = match &files.cert {
            Some(path) if alert => format!(", sslcert={path}"),
            _ => String::new(),
        };
        let mut crls = String::new();
        if text.contains("Revoked") || text.contains("RevocationStatus") {
            for (key, path) in [("sslcrl", &files.crl), ("sslcrldir", &files.crl_dir)] {
                if let Some(path) = path {
                    crls.push_str(&format!(", {key}={path}"));
                }
            }
        }
        text = format!("{text} (sslmode={}{roots}{client}{crls})", mode_name(mode));
    }
    PgError::Unavailable(text)
}

/// The one TCP host and port of a connection that may go without TLS (sslmode disable, or prefer
/// with a server that offers none), made here so that the COPY can read the socket itself (see
/// `raw`). Several hosts, host addresses, Unix sockets and `target_session_attrs=read-write` are
/// left to tokio-postgres' own connect.
fn plain_target(config: &Config, mode: Mode) -> Option<(String, u16)> {
    if !matches!(mode, Mode::Disable | Mode::Prefer)
        || config.get_target_session_attrs() != TargetSessionAttrs::Any
        || !config.get_hostaddrs().is_empty()
    {
        return None;
    }
    let [Host::Tcp(host)] = config.get_hosts() else { return None };
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return None,
    };
    Some((host.clone(), port))
}

/// A TCP connection as tokio-postgres makes one: connect_timeout, no delay, keepalives.
async fn tcp(config: &Config, host: &str, port: u16) -> Result<tokio::net::TcpStream, PgError> {
    let failed = |e: std::io::Error| PgError::Unavailable(format!("error connecting to server: {e}"));
    let connecting = tokio::net::TcpStream::connect((host, port));
    let socket = match config.get_connect_timeout() {
        Some(limit) => tokio::time::timeout(*limit, connecting)
            .await
            .map_err(|_| failed(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")))?,
        None => connecting.await,
    }
    .map_err(failed)?;
    socket.set_nodelay(true).map_err(failed)?;
    if config.get_keepalives() {
        let keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive).map_err(failed)?;
    }
    Ok(socket)
}

/// Start the session on `socket`, tapped (see `raw`); with sslmode=prefer the server may still
/// choose TLS, and then the COPY goes through tokio-postgres.
async fn connect_tapped(
    config: &Config,
    mode: Mode,
    files: &TlsFiles,
    host: &str,
    socket: tokio::net::TcpStream,
) -> Result<Connected, PgError> {
    let (tap, raw) = raw::tap(socket);
    let failed = |e: tokio_postgres::Error| connect_error(&e, mode, files);
    let mut config = config.clone();
    if mode == Mode::Disable {
        let (client, connection) =
            config.ssl_mode(SslMode::Disable).connect_raw(tap, NoTls).await.map_err(failed)?;
        tokio::spawn(connection);
        return Ok(Connected { client, raw: Some(raw) });
    }
    let mut tls = tls_connector(mode, files)?;
    let used = Arc::new(AtomicBool::new(false));
    let connect = MakeTlsConnect::<Tap>::make_tls_connect(&mut tls, host)
        .map_err(|e| PgError::Unavailable(format!("TLS setup: {e}")))?;
    let tls = NoticedTls { inner: connect, used: used.clone() };
    let (client, connection) =
        config.ssl_mode(SslMode::Prefer).connect_raw(tap, tls).await.map_err(failed)?;
    tokio::spawn(connection);
    let raw = (!used.load(Ordering::Relaxed)).then_some(raw);
    Ok(Connected { client, raw })
}

/// A TLS connector that notes whether the server took up TLS.
struct NoticedTls<T> {
    inner: T,
    used: Arc<AtomicBool>,
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for NoticedTls<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> T::Future {
        self.used.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Disable => "disable",
        Mode::Allow => "allow",
        Mode::Prefer => "prefer",
        Mode::Require => "require",
        Mode::VerifyCa => "verify-ca",
        Mode::VerifyFull => "verify-full",
    }
}

/// The TLS files of a connection: libpq's sslrootcert, sslcert, sslkey and sslcertmode.
#[derive(Debug, Clone, Default)]
struct TlsFiles {
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    /// sslpassword: decrypts an encrypted key
    key_password: Option<String>,
    /// sslcrl, sslcrldir: revocation lists for a checked chain
    crl: Option<String>,
    crl_dir: Option<String>,
    /// sslcertmode=disable: no client certificate, not even the default one
    no_client_cert: bool,
}

/// The rustls connector for `mode`, with its certificate checks and the client certificate.
fn tls_connector(mode: Mode, files: &TlsFiles) -> Result<MakeRustlsConnect, PgError> {
    let rootcert = files.rootcert.as_deref();
    // ring, chosen here rather than process-wide: other crates in the process may bring another.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verify = matches!(mode, Mode::VerifyCa | Mode::VerifyFull);
    let root_file = match rootcert {
        Some("system") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => default_root_file(),
    };
    // The roots the chain is checked against; None: the certificate is not checked.
    let roots = match root_file {
        // As libpq: sslrootcert names a file that must exist for the verify modes.
        Some(path) if verify || path.exists() => Some(load_roots(&path)?),
        _ if verify => Some(system_roots()?),
        _ => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        Some(roots) => {
            let chain = webpki_verifier(roots, &provider, revocation_lists(files)?)?;
            // only verify-full checks the host name
            if mode == Mode::VerifyFull {
                chain
            } else {
                Arc::new(IgnoreHostName(chain))
            }
        }
        None => Arc::new(AnyCertificate(provider.clone())),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Unavailable(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_identity(files)? {
        Some((chain, key)) => config
            .with_client_auth_cert(chain, key)
            .map_err(|e| PgError::Unavailable(format!("client certificate: {e}")))?,
        None => config.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The client certificate chain and key to send, as libpq finds them (None: no certificate file).
fn client_identity(
    files: &TlsFiles,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, PgError> {
    if files.no_client_cert {
        return Ok(None);
    }
    let Some(cert) = files.cert.as_ref().map(PathBuf::from).or_else(|| libpq_default("postgresql.crt"))
    else {
        return Ok(None);
    };
    // libpq: a certificate file that does not exist means no certificate, not an error
    if !cert.exists() {
        return Ok(None);
    }
    let unavailable = |what: String| PgError::Unavailable(what);
    let shown = cert.display();
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unavailable(format!("cannot read certificate file \"{shown}\": {e}")))?;
    if chain.is_empty() {
        return Err(unavailable(format!("certificate file \"{shown}\" holds no certificate")));
    }
    let key = files.key.as_ref().map(PathBuf::from).or_else(|| libpq_default("postgresql.key")).ok_or_else(
        || unavailable(format!("certificate present, but no private key file (sslkey) for \"{shown}\"")),
    )?;
    let key_shown = key.display();
    let meta = std::fs::metadata(&key)
        .map_err(|_| unavailable(format!("certificate present, but not private key file \"{key_shown}\"")))?;
    if !meta.is_file() {
        return Err(unavailable(format!("private key file \"{key_shown}\" is not a regular file")));
    }
    if key_too_open(&meta) {
        return Err(unavailable(format!(
            "private key file \"{key_shown}\" has group or world access; file must have permissions u=rw \
             (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned \
             by root"
        )));
    }
    let text = std::fs::read(&key)
        .map_err(|e| unavailable(format!("cannot read private key file \"{key_shown}\": {e}")))?;
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    let key = if contains(b"BEGIN ENCRYPTED PRIVATE KEY") {
        decrypt_key(&text, files.key_password.as_deref(), &key_shown.to_string())?
    } else if contains(b"Proc-Type: 4,ENCRYPTED") {
        return Err(unavailable(format!(
            "private key file \"{key_shown}\" is encrypted in the legacy PEM form, which the rust \
             reader cannot decrypt: convert it (openssl pkcs8 -topk8) or use reader=\"adbc\""
        )));
    } else {
        PrivateKeyDer::from_pem_slice(&text)
            .map_err(|e| unavailable(format!("cannot read private key file \"{key_shown}\": {e}")))?
    };
    Ok(Some((chain, key)))
}

/// An encrypted PKCS#8 key (PEM) decrypted with sslpassword; the password never in a message.
fn decrypt_key(pem: &[u8], password: Option<&str>, shown: &str) -> Result<PrivateKeyDer<'static>, PgError> {
    use pkcs8::der::Decode;
    let unavailable = |what: String| PgError::Unavailable(what);
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(unavailable(format!(
            "private key file \"{shown}\" is encrypted: give its password (sslpassword)"
        )));
    };
    let text = std::str::from_utf8(pem)
        .map_err(|_| unavailable(format!("cannot read private key file \"{shown}\": not PEM text")))?;
    let (_, der) = pkcs8::der::pem::decode_vec(text.as_bytes())
        .map_err(|e| unavailable(format!("cannot read private key file \"{shown}\": {e}")))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
        .map_err(|e| unavailable(format!("cannot read private key file \"{shown}\": {e}")))?;
    let plain = encrypted.decrypt(password).map_err(|_| {
        unavailable(format!("cannot decrypt private key file \"{shown}\": wrong password (sslpassword)?"))
    })?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// libpq's check of a private key file's permissions: the owner's alone (0600 or less), or, for
/// a file owned by root, group read as well (0640).
fn key_too_open(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (meta.uid() == euid && mode & 0o077 != 0) || (meta.uid() == 0 && mode & 0o037 != 0)
}

/// `~/.postgresql/<name>`, where libpq looks for the TLS files a connection does not name.
fn libpq_default(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql").join(name))
}

/// libpq's default root file, `~/.postgresql/root.crt`, when it exists.
fn default_root_file() -> Option<PathBuf> {
    libpq_default("root.crt").filter(|path| path.exists())
}

fn load_roots(path: &Path) -> Result<RootCertStore, PgError> {
    let shown = path.display();
    if !path.exists() {
        return Err(PgError::Unavailable(format!("root certificate file \"{shown}\" does not exist")));
    }
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PgError::Unavailable(format!("cannot read root certificate file \"{shown}\": {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            PgError::Unavailable(format!("cannot read root certificate file \"{shown}\": {e}"))
        })?;
        roots.add(cert).map_err(|e| {
            PgError::Unavailable(format!("invalid certificate in root certificate file \"{shown}\": {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(PgError::Unavailable(format!("root certificate file \"{shown}\" holds no certificate")));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, PgError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(PgError::Unavailable(
            "no system root certificates found (give sslrootcert=<file>)".into(),
        ));
    }
    Ok(roots)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, PgError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| PgError::Unavailable(format!("TLS setup: {e}")))
}

/// The revocation lists of sslcrl (else `~/.postgresql/root.crl`) and of every file in sslcrldir
/// that holds one; none where the file or directory does not exist.
fn revocation_lists(files: &TlsFiles) -> Result<Vec<CertificateRevocationListDer<'static>>, PgError> {
    let file = files.crl.as_ref().map(PathBuf::from).or_else(|| libpq_default("root.crl"));
    let mut paths: Vec<PathBuf> = file.into_iter().filter(|p| p.is_file()).collect();
    if let Some(dir) = &files.crl_dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> =
                entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
            found.sort();
            paths.extend(found);
        }
    }
    let mut crls = Vec::new();
    for path in paths {
        let shown = path.display();
        let listed = CertificateRevocationListDer::pem_file_iter(&path)
            .and_then(|items| items.collect::<Result<Vec<_>, _>>())
            .map_err(|e| PgError::Unavailable(format!("cannot read revocation list \"{shown}\": {e}")))?;
        // a file of sslcrldir that holds no CRL (a README, say) is passed over; sslcrl must hold one
        if listed.is_empty() && files.crl.as_deref().map(Path::new) == Some(path.as_path()) {
            return Err(PgError::Unavailable(format!("revocation list \"{shown}\" holds no CRL")));
        }
        crls.extend(listed);
    }
    Ok(crls)
}

/// verify-ca: the chain must lead to a root, the name is not checked (the chain is checked first,
/// so a name error means the chain was good).
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require/prefer/allow without a root file: encrypted, the certificate not checked (libpq's
/// behaviour); the handshake's signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
