//! Bundle downloads from a management host over HTTP (and HTTPS in builds with the `https`
//! feature), as a stream: the bytes go straight to the verifier or the slot writer, never
//! whole into memory. Every failure is a [`FetchError`] that says what to check.
//!
//! The trust is the bundle's Ed25519 signature in both cases: a download over plain HTTP that
//! was altered on the way fails the signature or hash check before anything is switched.

use std::io::Read;
use std::time::Duration;

/// Trusted CA certificates for `https://` downloads (PEM) when `--ca-file` is not given;
/// without this file the Mozilla roots built into the binary are used.
pub const CA_FILE: &str = "/etc/appliance/firmware-ca.pem";

/// Limits of one download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Connecting (per address tried).
    pub connect_timeout: Duration,
    /// Longest wait for the response head, and for any one read of the body (a stall).
    pub stall_timeout: Duration,
    /// The whole request, head and body.
    pub total_timeout: Duration,
    /// Largest body accepted (a bundle bigger than this cannot fit the slots).
    pub max_bytes: u64,
    /// PEM file of trusted CA certificates for https (None: [`CA_FILE`] if present, else the
    /// built-in roots).
    pub ca_file: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(30 * 60),
            max_bytes: 1 << 30,
            ca_file: None,
        }
    }
}

/// Why a download failed, with what to check.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Not a URL this client takes.
    #[error("'{0}' is not a bundle URL: give http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH")]
    BadUrl(String),
    /// https asked for in a build without TLS.
    #[error("this firmware was built without https support: serve the bundle over http:// (its signature is checked either way)")]
    NoTls,
    /// The host name does not resolve.
    #[error(
        "cannot resolve the host of {url}: check the name, or use the management host's IP address"
    )]
    Dns {
        /// The URL.
        url: String,
    },
    /// Refused, unreachable or reset while connecting.
    #[error(
        "cannot connect to {url}: {detail}; is the web server running and reachable from the box?"
    )]
    Connect {
        /// The URL.
        url: String,
        /// The system's reason.
        detail: String,
    },
    /// A status other than 200.
    #[error("{url}: the server answered HTTP {code}; check the path and that the bundle is published there")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status code.
        code: u16,
    },
    /// No progress within a limit.
    #[error("{url}: {what} timed out after {secs} s; check the management host and the network, then try again")]
    Timeout {
        /// The URL.
        url: String,
        /// Which wait.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// Larger than any bundle that fits the slots.
    #[error("{url} is larger than {cap} bytes, more than a bundle for this box can be: is it the right file?")]
    TooBig {
        /// The URL.
        url: String,
        /// The cap.
        cap: u64,
    },
    /// The body ended before its Content-Length.
    #[error("the download of {url} stopped after {got} of {expected} bytes: the connection was cut; try again")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        got: u64,
        /// Content-Length.
        expected: u64,
    },
    /// TLS setup or handshake.
    #[error("https with {url} failed: {detail}")]
    Tls {
        /// The URL.
        url: String,
        /// What failed (certificate, CA file).
        detail: String,
    },
    /// Anything else the client reports.
    #[error("downloading {url} failed: {detail}")]
    Other {
        /// The URL.
        url: String,
        /// The client's message.
        detail: String,
    },
}

/// True for the sources [`get`] takes (`http://...`, `https://...`).
pub fn is_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// An open download: read the body from it.
pub struct Download {
    body: ureq::BodyReader<'static>,
    url: String,
    /// Content-Length, when the server sent one.
    pub len: Option<u64>,
    got: u64,
    cap: u64,
    limits: (Duration, Duration),
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Download({}, {:?} bytes)", self.url, self.len)
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.body.read(buf) {
            Ok(n) => n,
            Err(e) => {
                return Err(std::io::Error::other(map_io(
                    &self.url,
                    e,
                    self.got,
                    self.len,
                    self.limits,
                )));
            }
        };
        self.got += n as u64;
        if self.got > self.cap {
            return Err(std::io::Error::other(FetchError::TooBig {
                url: self.url.clone(),
                cap: self.cap,
            }));
        }
        if n == 0 {
            if let Some(expected) = self.len.filter(|&l| self.got < l) {
                return Err(std::io::Error::other(FetchError::Truncated {
                    url: self.url.clone(),
                    got: self.got,
                    expected,
                }));
            }
        }
        Ok(n)
    }
}

/// Start a GET of `url`: the head is read and checked (status 200, Content-Length within
/// the cap); the body is read through the returned [`Download`].
pub fn get(url: &str, o: &Options) -> Result<Download, FetchError> {
    if !is_url(url) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FetchError::BadUrl(url.chars().take(200).collect()));
    }
    let https = url[..5].eq_ignore_ascii_case("https");
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(3)
        .timeout_connect(Some(o.connect_timeout))
        .timeout_recv_response(Some(o.stall_timeout))
        .timeout_per_read(Some(o.stall_timeout))
        .timeout_global(Some(o.total_timeout))
        .user_agent(format!("sip-lb-appliance/{}", crate::VERSION));
    if https {
        cfg = with_tls(cfg, url, o)?;
    }
    let agent: ureq::Agent = cfg.build().into();
    let resp = agent.get(url).call().map_err(|e| map_err(url, e, o))?;
    let code = resp.status().as_u16();
    if code != 200 {
        return Err(FetchError::Status {
            url: url.into(),
            code,
        });
    }
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if len.is_some_and(|l| l > o.max_bytes) {
        return Err(FetchError::TooBig {
            url: url.into(),
            cap: o.max_bytes,
        });
    }
    // Our own cap and truncation check (above) give the messages; the client's limit is off.
    let body = resp.into_body().into_with_config().limit(u64::MAX).reader();
    Ok(Download {
        body,
        url: url.into(),
        len,
        got: 0,
        cap: o.max_bytes,
        limits: (o.stall_timeout, o.total_timeout),
    })
}

type Builder = ureq::config::ConfigBuilder<ureq::typestate::AgentScope>;

#[cfg(feature = "https")]
fn with_tls(cfg: Builder, url: &str, o: &Options) -> Result<Builder, FetchError> {
    Ok(cfg.tls_config(tls_config(url, o)?))
}

#[cfg(not(feature = "https"))]
fn with_tls(_cfg: Builder, _url: &str, _o: &Options) -> Result<Builder, FetchError> {
    Err(FetchError::NoTls)
}

#[cfg(feature = "https")]
fn tls_config(url: &str, o: &Options) -> Result<ureq::tls::TlsConfig, FetchError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let path = o.ca_file.clone().or_else(|| {
        std::path::Path::new(CA_FILE)
            .exists()
            .then(|| CA_FILE.into())
    });
    let Some(path) = path else {
        return Ok(TlsConfig::builder().root_certs(RootCerts::WebPki).build());
    };
    let tls = |detail: String| FetchError::Tls {
        url: url.into(),
        detail,
    };
    let pem = std::fs::read(&path).map_err(|e| tls(format!("CA file {path}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(tls(format!("CA file {path}: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(tls(format!(
            "CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

fn map_err(url: &str, e: ureq::Error, o: &Options) -> FetchError {
    let u = || url.to_owned();
    match e {
        ureq::Error::HostNotFound => FetchError::Dns { url: u() },
        ureq::Error::ConnectionFailed => FetchError::Connect {
            url: u(),
            detail: "connection failed".into(),
        },
        ureq::Error::BadUri(_) => FetchError::BadUrl(u()),
        ureq::Error::Timeout(t) => {
            let (what, d) = match t {
                ureq::Timeout::Connect => ("connecting", o.connect_timeout),
                ureq::Timeout::Global => ("the download", o.total_timeout),
                _ => ("waiting for the server", o.stall_timeout),
            };
            FetchError::Timeout {
                url: u(),
                what: what.into(),
                secs: d.as_secs(),
            }
        }
        ureq::Error::Io(io) => io_error(url, &io, o.stall_timeout),
        ureq::Error::Tls(m) => FetchError::Tls {
            url: u(),
            detail: m.into(),
        },
        #[cfg(feature = "https")]
        ureq::Error::Rustls(r) => FetchError::Tls {
            url: u(),
            detail: format!(
                "{r} (is the server's certificate signed by a CA in {CA_FILE} or --ca-file?)"
            ),
        },
        ureq::Error::BodyExceedsLimit(cap) => FetchError::TooBig { url: u(), cap },
        other if url[..5].eq_ignore_ascii_case("https") && other.to_string().contains("certificate") => {
            FetchError::Tls {
                url: u(),
                detail: format!("{other} (is the server's certificate signed by a CA in {CA_FILE} or --ca-file?)"),
            }
        }
        other => FetchError::Other {
            url: u(),
            detail: other.to_string(),
        },
    }
}

fn io_error(url: &str, io: &std::io::Error, stall: Duration) -> FetchError {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused | K::ConnectionReset | K::HostUnreachable | K::NetworkUnreachable => {
            FetchError::Connect {
                url: url.into(),
                detail: io.to_string(),
            }
        }
        K::TimedOut | K::WouldBlock => FetchError::Timeout {
            url: url.into(),
            what: "waiting for the server".into(),
            secs: stall.as_secs(),
        },
        _ => FetchError::Other {
            url: url.into(),
            detail: io.to_string(),
        },
    }
}

/// An error while reading the body: ureq wraps its own errors in `io::Error`.
fn map_io(
    url: &str,
    e: std::io::Error,
    got: u64,
    len: Option<u64>,
    (stall, total): (Duration, Duration),
) -> FetchError {
    let timeout = |what: &str, d: Duration| FetchError::Timeout {
        url: url.into(),
        what: what.into(),
        secs: d.as_secs(),
    };
    if e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
        let inner = e.into_inner().map(|b| b.downcast::<ureq::Error>());
        return match inner {
            Some(Ok(ue)) => match *ue {
                ureq::Error::Timeout(ureq::Timeout::Global) => timeout("the download", total),
                ureq::Error::Timeout(_) => timeout("waiting for more data", stall),
                ureq::Error::Io(io) => short_or(url, io, got, len, stall),
                other => FetchError::Other {
                    url: url.into(),
                    detail: other.to_string(),
                },
            },
            _ => FetchError::Other {
                url: url.into(),
                detail: "read failed".into(),
            },
        };
    }
    short_or(url, e, got, len, stall)
}

/// A body error after part of a known length: the connection was cut (truncated).
fn short_or(
    url: &str,
    io: std::io::Error,
    got: u64,
    len: Option<u64>,
    stall: Duration,
) -> FetchError {
    match len {
        Some(expected) if got < expected && io.kind() != std::io::ErrorKind::TimedOut => {
            FetchError::Truncated {
                url: url.into(),
                got,
                expected,
            }
        }
        _ => io_error(url, &io, stall),
    }
}
