//! Blocking client of the control socket (used by the console and the admin CLI).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::proto::{Reply, Request, Response, MAX_LINE};

/// How long to wait for an answer (ping with 10 echo requests takes ~10 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Cannot connect or the connection broke.
    #[error(
        "cannot reach the appliance daemon at {path}: {source} (is it running? are you root?)"
    )]
    Unreachable {
        /// Socket path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// The daemon answered with an unreadable line.
    #[error("the appliance daemon sent an unreadable answer: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to the daemon; reconnects on the next call after a failure.
pub struct Client {
    path: PathBuf,
    conn: Option<BufReader<UnixStream>>,
}

impl Client {
    /// A client for the socket at `path` (connects lazily).
    pub fn new(path: impl AsRef<Path>) -> Client {
        Client {
            path: path.as_ref().to_path_buf(),
            conn: None,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unreachable(&self, source: io::Error) -> ClientError {
        ClientError::Unreachable {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Send one request and return the daemon's reply, or its error message as `Refused`.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        match self.exchange(req)? {
            Response::Ok(r) => Ok(r),
            Response::Error { message } => Err(ClientError::Refused(message)),
        }
    }

    fn exchange(&mut self, req: &Request) -> Result<Response, ClientError> {
        let r = self.try_exchange(req);
        if r.is_err() {
            // Start from a clean connection next time (daemon restarts, half-read lines).
            self.conn = None;
        }
        r
    }

    fn try_exchange(&mut self, req: &Request) -> Result<Response, ClientError> {
        if self.conn.is_none() {
            let s = UnixStream::connect(&self.path).map_err(|e| self.unreachable(e))?;
            s.set_read_timeout(Some(REPLY_TIMEOUT))
                .map_err(|e| self.unreachable(e))?;
            self.conn = Some(BufReader::new(s));
        }
        let mut line = serde_json::to_string(req)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push('\n');
        let path = self.path.display().to_string();
        let unreachable = |source| ClientError::Unreachable {
            path: path.clone(),
            source,
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(unreachable(io::Error::other("not connected")));
        };
        conn.get_mut()
            .write_all(line.as_bytes())
            .map_err(unreachable)?;
        let mut buf = Vec::new();
        conn.by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(unreachable)?;
        if buf.is_empty() {
            return Err(unreachable(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            )));
        }
        serde_json::from_slice(&buf).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
