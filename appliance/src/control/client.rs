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
        // A daemon that restarted since the last call closed this connection: writing to it
        // would fail the request although a new daemon is listening (a console left at its
        // prompt across a daemon respawn). Check before reusing it.
        if self.conn.as_ref().is_some_and(|c| !still_open(c)) {
            self.conn = None;
        }
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

/// The daemon has not closed `conn` and nothing unread is waiting on it (a connection is
/// only reused between complete request/answer pairs).
fn still_open(conn: &BufReader<UnixStream>) -> bool {
    if !conn.buffer().is_empty() {
        return false;
    }
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // Open and idle: no byte to peek yet. 0 = closed by the daemon; a byte = a stray answer.
    matches!(
        recv(
            conn.get_ref().as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(nix::errno::Errno::EAGAIN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// Answers one request per connection with a status-free `Ok(Pong)`-like reply, then
    /// closes it, like a daemon that restarts between two calls.
    fn serve(listener: UnixListener, conns: usize) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut served = 0;
            for _ in 0..conns {
                let Ok((s, _)) = listener.accept() else { break };
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let reply = serde_json::to_string(&Response::Error {
                    message: format!("answer {served}"),
                })
                .expect("encode");
                let _ = r.get_mut().write_all(format!("{reply}\n").as_bytes());
                served += 1;
                // Dropping the stream closes it: the next call finds a dead connection.
            }
            served
        })
    }

    #[test]
    fn a_connection_the_daemon_closed_is_replaced_before_the_next_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let server = serve(UnixListener::bind(&path).expect("bind"), 2);
        let mut c = Client::new(&path);
        for want in ["answer 0", "answer 1"] {
            match c.call(&Request::Status) {
                Err(ClientError::Refused(m)) => assert_eq!(m, want),
                other => panic!("expected the daemon's answer '{want}', got {other:?}"),
            }
            // Let the server close its side before the next call.
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(server.join().expect("server"), 2);
    }
}
