//! Packet captures (tcpdump) inside lab namespaces: the independent record
//! of what crossed a wire.

use super::frames::{self, Frame};
use super::pcap::{self, SipPacket};
use super::{ns_cmd, LabError, Result};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running tcpdump writing SIP (UDP port 5060) packets to a pcap file,
/// flushed per packet so the file can be read while it runs.
#[derive(Debug)]
pub struct Capture {
    /// The pcap file.
    pub file: PathBuf,
    /// Where it listens, for messages.
    pub what: String,
    child: Option<Child>,
}

impl Capture {
    /// Starts capturing on `iface` in namespace `ns` into `file`; returns
    /// once tcpdump reports it is listening (bounded by 10 s).
    pub fn start(ns: &str, iface: &str, file: PathBuf) -> Result<Capture> {
        Self::start_filtered(ns, iface, file, &["udp", "port", "5060"])
    }

    /// Like [`Capture::start`] with another tcpdump filter (words).
    pub fn start_filtered(
        ns: &str,
        iface: &str,
        file: PathBuf,
        filter: &[&str],
    ) -> Result<Capture> {
        let log = file.with_extension("log");
        let err = fs::File::create(&log).map_err(|source| LabError::Io {
            path: log.clone(),
            source,
        })?;
        let mut cmd = ns_cmd(ns, "tcpdump");
        // -B: a 32 MiB buffer; with TCG guests and sipp sharing two cores
        // the default 2 MiB one dropped packets under call load.
        cmd.args([
            "-i",
            iface,
            "-n",
            "-U",
            "--immediate-mode",
            "-B",
            "32768",
            "-s",
            "0",
            "-w",
        ])
        .arg(&file)
        // Packet sockets see both directions; -Q is not needed.
        .args(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            cmd: "tcpdump".into(),
            source,
        })?;
        let mut cap = Capture {
            file,
            what: format!("{iface} in {ns}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(cap);
            }
            if let Some(c) = cap.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(LabError::Failed {
                        cmd: format!("tcpdump on {}", cap.what),
                        status: st.to_string(),
                        stderr: text.trim().to_owned(),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout(
                    Duration::from_secs(10),
                    format!("tcpdump to start on {}", cap.what),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIP packets captured so far (safe while tcpdump still runs).
    pub fn packets(&self) -> Result<Vec<SipPacket>> {
        let data = fs::read(&self.file).map_err(|source| LabError::Io {
            path: self.file.clone(),
            source,
        })?;
        pcap::parse(&data).map_err(|e| LabError::Evidence(format!("{}: {e}", self.file.display())))
    }

    /// Every frame captured so far, with MACs, VRRP and ARP decoded.
    pub fn frames(&self) -> Result<Vec<Frame>> {
        let data = fs::read(&self.file).map_err(|source| LabError::Io {
            path: self.file.clone(),
            source,
        })?;
        frames::parse(&data)
            .map_err(|e| LabError::Evidence(format!("{}: {e}", self.file.display())))
    }

    /// Stops tcpdump (SIGTERM: it flushes and closes the file).
    pub fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Let the last packets in flight arrive before stopping.
            std::thread::sleep(Duration::from_millis(300));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if super::wait_bounded(&mut c, Duration::from_secs(5), "tcpdump to stop").is_err() {
                let _ = c.kill();
            }
        }
    }

    /// Stops tcpdump (SIGTERM: it flushes and closes the file) and returns
    /// every SIP packet it captured.
    pub fn stop(&mut self) -> Result<Vec<SipPacket>> {
        self.finish();
        self.packets()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
