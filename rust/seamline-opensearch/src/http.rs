//! The HTTP side: one `ureq` agent (rustls, pooled keep-alive connections) per reader, basic auth,
//! extra headers (an API key, say), the TLS options of the Python client (`verify_certs`,
//! `ca_certs`, a client certificate `client_cert`/`client_key`), and bounded retries with
//! exponential backoff on 429 / 502 / 503 / 504 and lost connections. Credentials never appear in
//! a message: the URL's user info is moved into the Authorization header before anything else, and
//! no header value is ever quoted.

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};
use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::OsError;

/// The client certificate chain of `cert_path` and the key of `key_path` (else the one in the
/// certificate's file), PEM.
fn client_cert(cert_path: &str, key_path: Option<&str>) -> Result<ClientCert, OsError> {
    let (chain, pem) = pem_certificates("client_cert", cert_path)?;
    let key_path = key_path.unwrap_or(cert_path);
    let key_pem = if key_path == cert_path { pem } else { read_file("client_key", key_path)? };
    if key_pem.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(OsError::Config(format!(
            "client_key {key_path}: an encrypted private key, which the rust reader cannot decrypt (use \
             reader=\"python\")"
        )));
    }
    let key = parse_pem(&key_pem)
        .find_map(|item| match item {
            Ok(PemItem::PrivateKey(k)) => Some(k),
            _ => None,
        })
        .ok_or_else(|| OsError::Config(format!("client_key {key_path}: no PEM private key in the file")))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// The certificates of the PEM file at `path` (at least one), and the file's bytes; `option`
/// names it in errors.
fn pem_certificates(option: &str, path: &str) -> Result<(Vec<Certificate<'static>>, Vec<u8>), OsError> {
    let pem = read_file(option, path)?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(OsError::Config(format!("{option} {path}: no PEM certificate in the file")));
    }
    Ok((certs, pem))
}

fn read_file(option: &str, path: &str) -> Result<Vec<u8>, OsError> {
    std::fs::read(path).map_err(|e| OsError::Config(format!("{option} {path}: {}", e.kind())))
}

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http(s)://[user[:password]@]host:port[/prefix]`
    pub url: String,
    /// Basic auth; overrides user info in the URL.
    pub username: Option<String>,
    pub password: Option<String>,
    pub verify_certs: bool,
    /// A PEM file of CA certificates to trust instead of the bundled Mozilla roots.
    pub ca_certs: Option<String>,
    /// A PEM client certificate (chain) for mutual TLS, and its key (None: in the same file).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Sent with every request (after Authorization, which a header of the same name replaces).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Attempts of one request before giving up (>= 1).
    pub attempts: u32,
    /// The first backoff; doubled per retry, capped at 8 s.
    pub backoff: Duration,
    /// Names the cluster in messages (host:port, no credentials).
    pub address: String,
    /// Names the index in messages.
    pub index: String,
    pub keep_alive: String,
}

/// A cluster to search.
pub struct Client {
    agent: Agent,
    base_url: String,
    search_url: String,
    authorization: Option<String>,
    options: ClientOptions,
    retries: AtomicU64,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, OsError> {
        let (base, user_info) = split_user_info(&options.url);
        let credentials = match (&options.username, user_info) {
            (Some(user), _) => Some(format!("{user}:{}", options.password.clone().unwrap_or_default())),
            (None, Some(info)) => Some(info),
            (None, None) => None,
        };
        let authorization =
            credentials.map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        let mut tls = TlsConfig::builder().disable_verification(!options.verify_certs);
        if let Some(path) = &options.ca_certs {
            let (roots, _) = pem_certificates("ca_certs", path)?;
            tls = tls.root_certs(RootCerts::new_with_certs(&roots));
        }
        if let Some(cert_path) = &options.client_cert {
            tls = tls.client_cert(Some(client_cert(cert_path, options.client_key.as_deref())?));
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .max_idle_connections_per_host(64)
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: config.into(),
            search_url: format!("{}/_search", base.trim_end_matches('/')),
            base_url: base.trim_end_matches('/').to_string(),
            authorization,
            options,
            retries: AtomicU64::new(0),
        })
    }

    /// How this client reaches the cluster (a scan's client starts from a catalog client's).
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Requests retried so far (429/503/lost connections), over every stream of this client.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// One `_search` page: the response body (read into `buffer`, a spent page's, so that its
    /// memory is reused), retried while the cluster is busy or unreachable. `filter_path` may be
    /// empty (the whole response).
    pub fn search(
        &self,
        body: &Map<String, Value>,
        filter_path: &str,
        mut buffer: Vec<u8>,
    ) -> Result<Vec<u8>, OsError> {
        let payload = serde_json::to_vec(body).expect("a JSON map serialises");
        // No filter_path at all when none is asked: filtering makes the node re-parse every hit.
        let url = if filter_path.is_empty() {
            self.search_url.clone()
        } else {
            format!("{}?filter_path={filter_path}", self.search_url)
        };
        self.retrying(|| self.attempt(&url, &payload, &mut buffer))?;
        Ok(buffer)
    }

    /// Any request (`method`, `path` with its query string, an optional JSON `body`): the status and
    /// body of the answer, retried like a page while the cluster is busy or unreachable. Statuses
    /// are the caller's to judge (the catalog requests of the Python adapter, mapped there).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), OsError> {
        let url = format!("{}{path}", self.base_url);
        let mut buffer = Vec::new();
        let status = self.retrying(|| {
            let status = self.exchange(method, &url, body, &mut buffer)?;
            match status {
                429 | 502 | 503 | 504 => Err(Failure::Retryable(format!("HTTP {status}{}", reason(&buffer)))),
                _ => Ok(status),
            }
        })?;
        Ok((status, buffer))
    }

    /// `once` until it succeeds, fails for good, or has been tried `attempts` times (exponential
    /// backoff between tries).
    fn retrying<T>(&self, mut once: impl FnMut() -> Result<T, Failure>) -> Result<T, OsError> {
        let mut delay = self.options.backoff;
        let mut attempt = 1;
        loop {
            match once() {
                Ok(value) => return Ok(value),
                Err(Failure::Retryable(_)) if attempt < self.options.attempts => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                Err(Failure::Retryable(why)) => {
                    let tries =
                        if attempt > 1 { format!(" (after {attempt} attempts)") } else { String::new() };
                    return Err(OsError::Unavailable(format!(
                        "opensearch at {}: {why}{tries}",
                        self.options.address
                    )));
                }
                Err(Failure::Final(e)) => return Err(e),
            }
        }
    }

    /// One exchange: the answer's status, its body read into `body`.
    fn exchange(
        &self,
        method: &str,
        url: &str,
        payload: Option<&[u8]>,
        body: &mut Vec<u8>,
    ) -> Result<u16, Failure> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        if payload.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let custom = |name: &str| self.options.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name));
        if let Some(auth) = self.authorization.as_ref().filter(|_| !custom("Authorization")) {
            request = request.header("Authorization", auth);
        }
        for (name, value) in &self.options.headers {
            request = request.header(name, value);
        }
        let sent = match payload {
            Some(bytes) => request.body(bytes).map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = sent
            .map_err(|e| {
                Failure::Final(OsError::Config(format!("request {method} {}: {e}", self.options.address)))
            })?
            .map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        if let Some(length) = response.body().content_length() {
            body.reserve(usize::try_from(length).unwrap_or(0).saturating_sub(body.len()));
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        read_over(&mut reader, body).map_err(|e| self.transport(ureq::Error::from(e)))?;
        Ok(status)
    }

    fn attempt(&self, url: &str, payload: &[u8], body: &mut Vec<u8>) -> Result<(), Failure> {
        let status = self.exchange("POST", url, Some(payload), body)?;
        let body = body.as_slice();
        match status {
            200..=299 => Ok(()),
            429 | 502 | 503 | 504 => Err(Failure::Retryable(format!("HTTP {status}{}", reason(body)))),
            404 => Err(Failure::Final(self.not_found(body))),
            401 | 403 => Err(Failure::Final(OsError::Unavailable(format!(
                "opensearch at {}: HTTP {status} (authentication or permission refused)",
                self.options.address
            )))),
            400..=499 => Err(Failure::Final(OsError::Request(format!(
                "opensearch index {}: HTTP {status}{}",
                self.options.index,
                reason(body)
            )))),
            _ => Err(Failure::Final(OsError::Unavailable(format!(
                "opensearch at {}: HTTP {status}{}",
                self.options.address,
                reason(body)
            )))),
        }
    }

    fn not_found(&self, body: &[u8]) -> OsError {
        let text = String::from_utf8_lossy(body).to_lowercase();
        if text.contains("index_not_found_exception") {
            return OsError::NotFound(format!("opensearch index {} does not exist", self.options.index));
        }
        if text.contains("search_context_missing") || text.contains("search context") {
            return OsError::NotFound(format!(
                "opensearch point in time on {} expired (idle longer than {})",
                self.options.index, self.options.keep_alive
            ));
        }
        OsError::Unavailable(format!("opensearch at {}: HTTP 404{}", self.options.address, reason(body)))
    }

    fn transport(&self, e: ureq::Error) -> Failure {
        let why = match &e {
            // a refused handshake does not get better with retries: said at once, with the TLS
            // options behind it
            ureq::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                return Failure::Final(OsError::Unavailable(format!(
                    "opensearch at {}: TLS: {}{}",
                    self.options.address,
                    one_line(&io.to_string()),
                    self.tls_settings()
                )))
            }
            ureq::Error::Io(io) => match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused".to_string(),
                ErrorKind::TimedOut => "timed out".to_string(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                    "connection lost".to_string()
                }
                ErrorKind::UnexpectedEof => "connection closed mid-response".to_string(),
                _ => one_line(&io.to_string()),
            },
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::HostNotFound => "name or service not known".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
                return Failure::Final(OsError::Unavailable(format!(
                    "opensearch at {}: TLS: {}{}",
                    self.options.address,
                    one_line(&e.to_string()),
                    self.tls_settings()
                )))
            }
            other => one_line(&other.to_string()),
        };
        Failure::Retryable(why)
    }

    /// The TLS options a handshake failed under, for its message (paths only, never a key).
    fn tls_settings(&self) -> String {
        let o = &self.options;
        let roots = match (&o.ca_certs, o.verify_certs) {
            (_, false) => "verify_certs=False".to_string(),
            (Some(path), true) => format!("ca_certs={path}"),
            (None, true) => "the bundled root certificates".to_string(),
        };
        let client = match &o.client_cert {
            Some(path) => format!(", client_cert={path}"),
            None => ", no client_cert".to_string(),
        };
        format!(" ({roots}{client})")
    }
}

enum Failure {
    Retryable(String),
    Final(OsError),
}

/// `scheme://user:pass@rest` -> (`scheme://rest`, Some("user:pass") percent-decoded).
fn split_user_info(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else { return (url.to_string(), None) };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let info = percent_encoding::percent_decode_str(&rest[..at]).decode_utf8_lossy().into_owned();
            (format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]), Some(info))
        }
        None => (url.to_string(), None),
    }
}

/// The server's reason from an error body (`error.root_cause[0].reason` or `error.reason`).
fn reason(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return String::new() };
    let error = &value["error"];
    let text = error["root_cause"][0]["reason"]
        .as_str()
        .or_else(|| error["reason"].as_str())
        .or_else(|| error.as_str());
    match text {
        Some(t) => format!(": {}", one_line(t)),
        None => String::new(),
    }
}

fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.chars().take(200).collect()
}

/// Reads `reader` to its end into `body`, over the bytes `body` already holds (a spent page's)
/// before appending: `read_to_end` zeroes a reused buffer's spare capacity, ~2.5 MB a page, which
/// was ~2% of a Postgres -> OpenSearch reconcile's CPU.
fn read_over(reader: &mut impl Read, body: &mut Vec<u8>) -> std::io::Result<()> {
    let mut filled = 0;
    let mut chunk = [0u8; 16 * 1024];
    let outcome = loop {
        let read = if filled < body.len() {
            reader.read(&mut body[filled..])
        } else {
            reader.read(&mut chunk).inspect(|&n| body.extend_from_slice(&chunk[..n]))
        };
        match read {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    body.truncate(filled);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_leaves_the_url() {
        let (url, info) = split_user_info("https://ad%40min:s3cr%3At@host:9200/prefix");
        assert_eq!(url, "https://host:9200/prefix");
        assert_eq!(info.as_deref(), Some("ad@min:s3cr:t"));
        assert_eq!(split_user_info("http://host:9200"), ("http://host:9200".to_string(), None));
    }

    #[test]
    fn reasons_are_one_line() {
        let body = br#"{"error":{"root_cause":[{"reason":"bad\n query"}],"reason":"outer"},"status":400}"#;
        assert_eq!(reason(body), ": bad query");
        assert_eq!(reason(b"not json"), "");
    }

    /// Hands out `data` a few bytes a read, with an interruption on the way.
    struct Trickle<'a> {
        data: &'a [u8],
        interrupted: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if !std::mem::replace(&mut self.interrupted, true) {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = out.len().min(self.data.len()).min(7);
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_body_is_read_over_a_spent_page_of_any_length() {
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for spent in [Vec::new(), vec![b'x'; 10], vec![b'y'; 100_000], body.clone()] {
            let mut buffer = spent;
            read_over(&mut Trickle { data: &body, interrupted: false }, &mut buffer).unwrap();
            assert_eq!(buffer, body);
        }
        let mut buffer = vec![b'z'; 5];
        read_over(&mut Trickle { data: b"", interrupted: false }, &mut buffer).unwrap();
        assert!(buffer.is_empty());
    }
}
