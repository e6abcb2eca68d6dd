//! Daemon side of the control socket: accept clients, read JSON lines, call the [`Handler`].
//!
//! Each client gets its own task and each request runs in its own task, so a slow or
//! stuck client cannot block others.
//!
//! Panics: release builds use `panic = "abort"`, so a panic anywhere, a handler included,
//! ends the whole daemon; init respawns it and the start log counts the restart towards the
//! crash-loop alert. Nothing reachable from a request line may therefore panic: parsing
//! ([`parse_request_line`]), the session's handling and response encoding are fuzzed by
//! `fuzz/fuzz_targets/control_request.rs`. Only in unwinding (debug and test) builds does a
//! panicking handler task fail just its own request, answered with an internal error.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::control::proto::{Request, Response, MAX_LINE};

/// A boxed, sendable future (what [`Handler::handle`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers control requests; implemented by the daemon (and by test fakes).
///
/// Typical daemon shape: keep a `Mutex<ConfigSession<RealEffects>>`, try
/// `session.handle(&req, monotonic_now)` first (config, diff, apply, save, revert,
/// server actions, passwords) and answer the rest (status, show, drain status, logs,
/// ping, SIP OPTIONS, import, reboot...) from live state; see `control::fake` for a
/// complete in-memory example.
pub trait Handler: Send + Sync + 'static {
    /// Handle one request. Must not panic on any input; report problems as `Response::Error`.
    fn handle(&self, req: Request) -> BoxFuture<'_, Response>;
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Creating the directory, binding or setting permissions failed.
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        /// Socket path.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// Bind `path` (mode 0600; a stale socket file is replaced) and serve clients in a task.
///
/// Must be called inside a tokio runtime. Dropping the returned handle does not stop it;
/// abort it to stop serving.
pub fn serve(path: &Path, handler: Arc<dyn Handler>) -> Result<JoinHandle<()>, ServeError> {
    let err = |source| ServeError::Bind {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // Bind with a tight umask so the socket is never briefly world-accessible.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    tracing::info!(path = %path.display(), "control socket listening");
    Ok(tokio::spawn(accept_loop(listener, handler)))
}

async fn accept_loop(listener: UnixListener, handler: Arc<dyn Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let h = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, h).await {
                        tracing::debug!(error = %e, "control client ended");
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn peer_allowed(stream: &UnixStream) -> bool {
    // The 0600 mode already limits access to root; also refuse other uids if the
    // socket was bound by a non-root daemon (tests) and someone loosened its mode.
    match stream.peer_cred() {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

async fn client(stream: UnixStream, handler: Arc<dyn Handler>) -> io::Result<()> {
    let allowed = peer_allowed(&stream);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    if !allowed {
        let resp = Response::error("permission denied: only root may use the control socket");
        return write_response(&mut wr, &resp).await;
    }
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') {
            let resp = if buf.len() > MAX_LINE {
                Response::error(format!(
                    "request longer than {MAX_LINE} bytes; closing the connection"
                ))
            } else {
                Response::error("request not terminated by a newline; closing the connection")
            };
            write_response(&mut wr, &resp).await?;
            return Ok(());
        }
        let resp = match parse_request_line(&buf[..buf.len() - 1]) {
            Ok(None) => continue,
            Ok(Some(req)) => {
                let h = handler.clone();
                match tokio::spawn(async move { h.handle(req).await }).await {
                    Ok(r) => r,
                    // Only reachable in unwinding builds; release builds abort (module doc).
                    Err(e) => {
                        tracing::error!(error = %e, "control handler failed");
                        Response::error("internal error in the daemon while handling the request; see 'appliance logs'")
                    }
                }
            }
            Err(resp) => resp,
        };
        write_response(&mut wr, &resp).await?;
    }
}

/// Decode one request line (without its newline): `Ok(None)` for a blank line, `Err` with the
/// response to send for a line that is not a request.
pub fn parse_request_line(line: &[u8]) -> Result<Option<Request>, Response> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Request>(line)
        .map(Some)
        .map_err(|e| Response::error(format!("bad request: {e}")))
}

/// Encode one response as a JSON line (with its newline); never fails.
pub fn encode_response(resp: &Response) -> String {
    let mut text = serde_json::to_string(resp).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"cannot encode the response: {e}"}}}}"#)
    });
    text.push('\n');
    text
}

async fn write_response(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
) -> io::Result<()> {
    wr.write_all(encode_response(resp).as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_decode_or_explain() {
        assert_eq!(parse_request_line(b"  \t "), Ok(None));
        assert_eq!(
            parse_request_line(br#"{"cmd":"status"}"#),
            Ok(Some(Request::Status))
        );
        for bad in [
            &b"{"[..],
            b"\xff\xfe",
            br#"{"cmd":"nope"}"#,
            br#"{"cmd":"logs","n":-1}"#,
        ] {
            match parse_request_line(bad) {
                Err(Response::Error { message }) => {
                    assert!(message.starts_with("bad request: "), "{message}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let line = encode_response(&Response::error("x\ny"));
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
    }
}
