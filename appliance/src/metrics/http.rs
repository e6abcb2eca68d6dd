//! Minimal HTTP/1.x request-head parser and responses for the metrics endpoint.
//!
//! Pure and bounded: it reads only the request head (request line + headers, no body),
//! answers one request per connection and closes it. Anything but `GET /metrics` gets
//! a short error response; anything that is not HTTP gets 400.

/// Largest request head accepted, bytes (a scrape's head is about 200 bytes).
pub const MAX_HEAD: usize = 4096;

/// What the bytes read so far amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more (up to [`MAX_HEAD`]).
    Incomplete,
    /// A complete, well-formed head.
    Request(Request),
    /// Not an acceptable request; answer with this status and close.
    Reject(Status),
}

/// The parts of a request the endpoint looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Path without the query string.
    pub path: String,
}

/// Statuses the endpoint answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: not a well-formed HTTP/1.x request head.
    BadRequest,
    /// 404: another path.
    NotFound,
    /// 405: another method.
    MethodNotAllowed,
    /// 408: the head did not arrive in time.
    Timeout,
    /// 431: the head is larger than [`MAX_HEAD`].
    TooLarge,
    /// 505: not HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl Status {
    /// Status line code and reason.
    pub fn line(self) -> (u16, &'static str) {
        match self {
            Status::Ok => (200, "OK"),
            Status::BadRequest => (400, "Bad Request"),
            Status::NotFound => (404, "Not Found"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::Timeout => (408, "Request Timeout"),
            Status::TooLarge => (431, "Request Header Fields Too Large"),
            Status::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }
}

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the bytes received so far. Never panics; bounded by [`MAX_HEAD`].
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Parsed::Reject(Status::TooLarge)
        } else if buf.iter().take(MAX_HEAD).any(|b| *b == 0) {
            // Binary junk (e.g. a TLS hello) never becomes HTTP: answer now.
            Parsed::Reject(Status::BadRequest)
        } else {
            Parsed::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Parsed::Reject(Status::TooLarge);
    }
    let head = &buf[..end];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(first) = lines.next() else {
        return Parsed::Reject(Status::BadRequest);
    };
    let mut parts = first.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Reject(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return Parsed::Reject(Status::BadRequest);
    }
    if target.first() != Some(&b'/') || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Parsed::Reject(Status::BadRequest);
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.starts_with(b"HTTP/") => return Parsed::Reject(Status::VersionNotSupported),
        _ => return Parsed::Reject(Status::BadRequest),
    }
    for l in lines {
        if l.is_empty() {
            continue;
        }
        // field-name ":" value; obsolete line folding and junk are refused.
        let Some(colon) = l.iter().position(|b| *b == b':') else {
            return Parsed::Reject(Status::BadRequest);
        };
        if colon == 0 || !l[..colon].iter().all(|b| is_tchar(*b)) {
            return Parsed::Reject(Status::BadRequest);
        }
        if l[colon + 1..].iter().any(|b| *b < 0x20 && *b != b'\t') {
            return Parsed::Reject(Status::BadRequest);
        }
    }
    let path = target.split(|b| *b == b'?').next().unwrap_or(target);
    // Both are ASCII-checked above.
    Parsed::Request(Request {
        method: String::from_utf8_lossy(method).into_owned(),
        path: String::from_utf8_lossy(path).into_owned(),
    })
}

/// Length of the head including its terminating blank line, if complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let lim = &buf[..buf.len().min(MAX_HEAD + 4)];
    (0..lim.len()).find_map(|i| {
        if lim[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if lim[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// What to answer to a parsed request: 200 only for `GET` (or `HEAD`) of [`METRICS_PATH`].
pub fn route(r: &Request) -> Status {
    if r.path != METRICS_PATH {
        Status::NotFound
    } else if r.method != "GET" && r.method != "HEAD" {
        Status::MethodNotAllowed
    } else {
        Status::Ok
    }
}

/// A complete response head (`Connection: close`; the body follows when `len > 0`).
pub fn response_head(status: Status, content_type: &str, len: usize) -> String {
    let (code, reason) = status.line();
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n{allow}Connection: close\r\n\r\n"
    )
}

/// A complete error response with a one-line plain-text body.
pub fn error_response(status: Status) -> Vec<u8> {
    let (code, reason) = status.line();
    let body = format!("{code} {reason}\n");
    let mut out = response_head(status, "text/plain; charset=utf-8", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(m: &str, p: &str) -> Parsed {
        Parsed::Request(Request {
            method: m.into(),
            path: p.into(),
        })
    }

    #[test]
    fn a_prometheus_scrape_parses_and_routes_to_ok() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: 198.51.100.1:9100\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(parse(head), req("GET", "/metrics"));
        // Every strict prefix is incomplete, never an error.
        for n in 0..head.len() {
            assert_eq!(parse(&head[..n]), Parsed::Incomplete, "prefix {n}");
        }
        assert_eq!(
            route(&Request {
                method: "GET".into(),
                path: "/metrics".into()
            }),
            Status::Ok
        );
        // Query strings are ignored; bare LF line ends are accepted.
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            req("GET", "/metrics")
        );
    }

    #[test]
    fn other_paths_and_methods_are_404_and_405() {
        let Parsed::Request(r) = parse(b"GET / HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!(route(&r), Status::NotFound);
        let Parsed::Request(r) = parse(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(route(&r), Status::MethodNotAllowed);
        let e = String::from_utf8(error_response(Status::MethodNotAllowed)).unwrap();
        assert_eq!(
            e,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n405 Method Not Allowed\n"
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET /m\xffetrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00",
        ] {
            assert_eq!(parse(bad), Parsed::Reject(Status::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse(b"GET /metrics HTTP/2.0\r\n\r\n"),
            Parsed::Reject(Status::VersionNotSupported)
        );
    }

    #[test]
    fn an_endless_head_is_too_large_not_incomplete() {
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse(&big), Parsed::Reject(Status::TooLarge));
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse(&big), Parsed::Reject(Status::TooLarge));
    }

    /// The fuzz target's invariants over deterministic mutations of real heads (the
    /// fuzzer explores further; this keeps the invariants checked on every test run).
    #[test]
    fn mutated_heads_never_panic_and_prefixes_agree() {
        let seeds: [&[u8]; 3] = [
            b"GET /metrics HTTP/1.1\r\nHost: 198.51.100.1:9100\r\nAccept: */*\r\n\r\n",
            b"POST /metrics HTTP/1.0\n\n",
            b"HEAD /x?y HTTP/1.1\r\nA: b\r\n\r\n",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let mut v = seeds[i % seeds.len()].to_vec();
            for _ in 0..(next() % 4) {
                let pos = (next() as usize) % (v.len() + 1);
                match next() % 3 {
                    0 if pos < v.len() => v[pos] = next() as u8,
                    1 => v.insert(pos, next() as u8),
                    _ if pos < v.len() => {
                        v.remove(pos);
                    }
                    _ => {}
                }
            }
            let whole = parse(&v);
            if let Parsed::Request(r) = &whole {
                assert!(r.path.starts_with('/') && !r.path.contains('?'), "{v:?}");
                if route(r) == Status::Ok {
                    assert_eq!(r.path, METRICS_PATH);
                }
            }
            let cut = v.len() / 2;
            match (parse(&v[..cut]), &whole) {
                (Parsed::Incomplete, _) | (Parsed::Reject(_), Parsed::Reject(_)) => {}
                (Parsed::Request(a), Parsed::Request(b)) => assert_eq!(&a, b),
                (p, w) => panic!("{v:?}: prefix {p:?} but whole {w:?}"),
            }
        }
    }
}
