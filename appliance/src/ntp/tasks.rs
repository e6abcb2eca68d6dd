//! The SNTP client task: every round asks each configured server once (connected UDP
//! socket, 1 s timeout), feeds the results to [`Client`], and steps or slews the
//! system clock. Only `CLOCK_REALTIME` changes; every timer of the daemon (probes,
//! VRRP, watchdog) runs on the monotonic clock, so a step disturbs nothing else.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::client::{Adjust, Client, NtpStatus};
use super::packet::{self, Reply, Timestamp};
use crate::config::{Config, NtpSettings, NTP_PORT};

/// How long to wait for one server's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Time between rounds while unsynced.
pub const UNSYNCED_RETRY: Duration = Duration::from_secs(4);

/// The daemon's NTP handle: settings, the task, and its shared status.
pub struct Ntp {
    settings: Option<NtpSettings>,
    status: Arc<Mutex<NtpStatus>>,
    synced: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Ntp {
    /// Not started; call [`Ntp::reconfigure`].
    pub fn new() -> Ntp {
        Ntp {
            settings: None,
            status: Arc::new(Mutex::new(Client::new(&[]).status().clone())),
            synced: Arc::new(AtomicBool::new(false)),
            task: None,
        }
    }

    /// The sync flag (shared with syslog's timeQuality).
    pub fn synced_flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    /// The status now.
    pub fn status(&self) -> NtpStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Start, restart or stop the task to match `c` (inside the tokio runtime).
    pub fn reconfigure(&mut self, c: &Config) {
        if self.settings.as_ref() == Some(&c.ntp) {
            return;
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.settings = Some(c.ntp.clone());
        let servers: Vec<Ipv4Addr> = c.ntp.servers.iter().copied().collect();
        let client = Client::new(&servers);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = client.status().clone();
        // A synced clock stays right for a while; the flag follows the new client's rounds.
        if servers.is_empty() {
            self.synced.store(false, Ordering::Relaxed);
            info!("NTP off: no server configured");
            return;
        }
        info!(servers = ?servers, poll_s = c.ntp.poll_s, "NTP client starting");
        let poll = Duration::from_secs(u64::from(c.ntp.poll_s));
        self.task = Some(tokio::spawn(run(
            servers,
            poll,
            client,
            self.status.clone(),
            self.synced.clone(),
        )));
    }
}

impl Default for Ntp {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Ntp {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn run(
    servers: Vec<Ipv4Addr>,
    poll: Duration,
    mut client: Client,
    status: Arc<Mutex<NtpStatus>>,
    synced: Arc<AtomicBool>,
) {
    loop {
        let mut results = Vec::with_capacity(servers.len());
        for &a in &servers {
            results.push((a, query(SocketAddrV4::new(a, NTP_PORT)).await));
        }
        let was = client.synced();
        let adj = client.on_round(now_us(), &results);
        match adj {
            Adjust::Step(off) => {
                if let Err(e) = step(off) {
                    warn!(error = %e, "NTP: cannot set the clock");
                } else {
                    info!(
                        server = client.status().server.as_deref().unwrap_or("-"),
                        offset_ms = off as f64 / 1000.0,
                        "NTP: clock stepped"
                    );
                }
            }
            Adjust::Slew(off) => {
                if let Err(e) = slew(off) {
                    warn!(error = %e, "NTP: cannot slew the clock");
                }
            }
            Adjust::None => {}
        }
        let now = client.synced();
        if now != was {
            if now {
                info!(
                    server = client.status().server.as_deref().unwrap_or("-"),
                    "NTP: clock synced"
                );
            } else {
                warn!("NTP: clock no longer synced: no server answered");
            }
        }
        synced.store(now, Ordering::Relaxed);
        *status.lock().unwrap_or_else(|p| p.into_inner()) = client.status().clone();
        tokio::time::sleep(if now { poll } else { UNSYNCED_RETRY }).await;
    }
}

/// One request/reply with `server`; errors in words an operator can act on.
async fn query(server: SocketAddrV4) -> Result<packet::Sample, String> {
    let sock = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    let mut cookie = [0u8; 8];
    getrandom::getrandom(&mut cookie).map_err(|e| format!("no randomness: {e}"))?;
    let cookie = Timestamp(u64::from_be_bytes(cookie));
    let t1 = now_us();
    sock.send(&packet::request(cookie))
        .await
        .map_err(|e| io_error(server, &e))?;
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "no reply within {} s (server down, unreachable or filtered)",
                    REPLY_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(io_error(server, &e)),
            Ok(Ok(n)) => n,
        };
        let t4 = now_us();
        match Reply::decode(&buf[..n]) {
            // A reply to an older request or a forgery: keep waiting for ours.
            Ok(r) if r.origin != cookie => continue,
            Ok(r) => return Ok(packet::sample(t1, &r, t4)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn io_error(server: SocketAddrV4, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) if n == nix::libc::ECONNREFUSED => {
            format!("{server}: nothing listens on UDP port 123 (ICMP port unreachable)")
        }
        Some(n) if n == nix::libc::EHOSTUNREACH || n == nix::libc::ENETUNREACH => {
            format!("{server}: host unreachable (no ARP reply or no route)")
        }
        _ => format!("{server}: {e}"),
    }
}

/// Add `offset_us` to the realtime clock at once.
fn step(offset_us: i64) -> Result<(), String> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| e.to_string())?;
    let now_us = now.tv_sec() * 1_000_000 + now.tv_nsec() / 1000;
    let t = now_us.saturating_add(offset_us).max(0);
    let ts = nix::sys::time::TimeSpec::new(t / 1_000_000, (t % 1_000_000) * 1000);
    clock_settime(ClockId::CLOCK_REALTIME, ts).map_err(|e| format!("clock_settime: {e}"))
}

/// Slew the realtime clock by `offset_us` (the kernel spreads it out; < 128 ms here).
fn slew(offset_us: i64) -> Result<(), String> {
    let delta = nix::libc::timeval {
        tv_sec: offset_us.div_euclid(1_000_000) as nix::libc::time_t,
        tv_usec: offset_us.rem_euclid(1_000_000) as nix::libc::suseconds_t,
    };
    // SAFETY: adjtime reads `delta` and, with a null second argument, writes nothing.
    let rc = unsafe { nix::libc::adjtime(&delta, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("adjtime: {}", std::io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake SNTP server on loopback: the query path decodes, matches the cookie and
    /// measures; a reply with the wrong origin is ignored; a silent server times out.
    #[tokio::test(flavor = "current_thread")]
    async fn query_against_a_loopback_server() {
        let srv = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = srv.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut b = [0u8; 64];
            let (n, from) = srv.recv_from(&mut b).await.unwrap();
            assert_eq!(n, 48);
            assert_eq!(b[0], 0x23);
            let mut origin = [0u8; 8];
            origin.copy_from_slice(&b[40..48]);
            let t = Timestamp::from_unix_us(now_us() + 5_000_000);
            let mut r = Reply {
                leap: 0,
                version: 4,
                stratum: 8,
                poll: 3,
                precision: -20,
                root_delay: 0,
                root_dispersion: 0,
                reference_id: *b"LOCL",
                reference: t,
                origin: Timestamp(!u64::from_be_bytes(origin)),
                receive: t,
                transmit: t,
            };
            // A stale or forged reply first, then the real one.
            srv.send_to(&r.encode(), from).await.unwrap();
            r.origin = Timestamp(u64::from_be_bytes(origin));
            srv.send_to(&r.encode(), from).await.unwrap();
        });
        let s = query(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        server.await.unwrap();
        assert!((s.offset_us - 5_000_000).abs() < 200_000, "{s:?}");
        assert_eq!(s.stratum, 8);

        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let e = query(silent.local_addr().unwrap().to_string().parse().unwrap())
            .await
            .unwrap_err();
        assert!(e.contains("no reply within 1 s"), "{e}");
        drop(silent);
    }
}
