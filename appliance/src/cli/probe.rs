//! `appliance probe HOST[:PORT]`: one or more SIP OPTIONS, the replies printed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::config::ProbeSettings;
use crate::probe::options_once_from;

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "probe",
    help_triggers("-h", "--help", "help"),
    note = "Exit status: 0 when every probe got a 2xx reply, 1 otherwise, 2 on bad arguments."
)]
/// send SIP OPTIONS (default port 5060) and print the reply and round-trip time.
pub struct Args {
    /// server, HOST[:PORT]
    #[argh(positional, from_str_fn(parse_target))]
    pub target: SocketAddrV4,
    /// probes to send, 1 to 100000 (default 1)
    #[argh(option, short = 'c', default = "1", from_str_fn(count))]
    pub count: u32,
    /// pause between probes, 0 to 60000 ms (default 200)
    #[argh(option, default = "Duration::from_millis(200)", from_str_fn(interval))]
    pub interval: Duration,
    /// wait for each final reply, 1 to 60000 ms (default 1000)
    #[argh(option, default = "Duration::from_millis(1000)", from_str_fn(timeout))]
    pub timeout: Duration,
    /// source IPv4 address
    #[argh(option)]
    pub from: Option<Ipv4Addr>,
    /// print one JSON object per probe
    #[argh(switch)]
    pub json: bool,
}

fn parse_target(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(SocketAddrV4::new(ip, 5060));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:5060")
    };
    let addrs = with_port.to_socket_addrs().map_err(|e| {
        format!("cannot resolve '{s}': {e} (give an IPv4 address like 198.51.100.11[:5060])")
    })?;
    addrs
        .filter_map(|a| match a {
            SocketAddr::V4(v) => Some(v),
            SocketAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| format!("'{s}' has no IPv4 address"))
}

fn ranged(v: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let n: u64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("must be between {lo} and {hi}, got {n}"));
    }
    Ok(n)
}

fn count(v: &str) -> Result<u32, String> {
    ranged(v, 1, 100_000).map(|n| n as u32)
}

fn interval(v: &str) -> Result<Duration, String> {
    ranged(v, 0, 60_000).map(Duration::from_millis)
}

fn timeout(v: &str) -> Result<Duration, String> {
    ranged(v, 1, 60_000).map(Duration::from_millis)
}

/// `appliance probe ...`.
pub fn run(a: Args) -> ExitCode {
    let settings = ProbeSettings::default();
    let (mut ok, mut rtts) = (0u32, Vec::new());
    for i in 0..a.count {
        if i > 0 {
            std::thread::sleep(a.interval);
        }
        let r = options_once_from(a.from, a.target, &settings, a.timeout);
        if a.json {
            let v = match &r {
                Ok(rep) => {
                    serde_json::json!({"target": a.target.to_string(), "ok": rep.accepted, "reply": rep})
                }
                Err(e) => {
                    serde_json::json!({"target": a.target.to_string(), "ok": false, "error": e.to_string()})
                }
            };
            println!("{v}");
        } else {
            match &r {
                Ok(rep) => {
                    println!(
                        "{} -> {}: SIP/2.0 {} {}  rtt {:.3} ms{}",
                        rep.local,
                        rep.target,
                        rep.code,
                        rep.reason,
                        rep.rtt_us as f64 / 1000.0,
                        if rep.accepted {
                            ""
                        } else {
                            "  (code not accepted: counts as DOWN)"
                        }
                    );
                    if i == 0 {
                        for (n, v) in &rep.headers {
                            println!("  {n}: {v}");
                        }
                    }
                }
                Err(e) => println!("{e}"),
            }
        }
        if let Ok(rep) = &r {
            rtts.push(rep.rtt_us);
            if rep.accepted {
                ok += 1;
            }
        }
    }
    if a.count > 1 && !a.json {
        let (min, max) = (rtts.iter().min(), rtts.iter().max());
        let avg = if rtts.is_empty() {
            0
        } else {
            rtts.iter().sum::<u64>() / rtts.len() as u64
        };
        println!(
            "--- {}: {} sent, {} accepted, {} replied; rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            a.target,
            a.count,
            ok,
            rtts.len(),
            min.copied().unwrap_or(0) as f64 / 1000.0,
            avg as f64 / 1000.0,
            max.copied().unwrap_or(0) as f64 / 1000.0
        );
    }
    if ok == a.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{argv, parse, Appliance, Command};
    use super::*;

    fn probe(v: &[&str]) -> Result<Args, String> {
        match parse(&argv(&[&["probe"], v].concat())) {
            Ok(Appliance {
                command: Some(Command::Probe(a)),
                ..
            }) => Ok(a),
            Ok(other) => Err(format!("{other:?}")),
            Err((text, _)) => Err(text),
        }
    }

    #[test]
    fn args_parse() {
        let a = probe(&["198.51.100.11", "--count", "3", "--json"]).expect("ok");
        assert_eq!(a.target, "198.51.100.11:5060".parse().expect("addr"));
        assert_eq!((a.count, a.json), (3, true));
        let a = probe(&["198.51.100.11:5070", "--from", "198.51.100.1", "-c", "2"]).expect("ok");
        assert_eq!((a.target.port(), a.count), (5070, 2));
        assert_eq!(a.from, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(a.timeout, Duration::from_millis(1000));
        for (bad, says) in [
            (vec![], "target"),
            (
                vec!["198.51.100.11", "--count", "0"],
                "between 1 and 100000",
            ),
            (vec!["198.51.100.11", "--count", "x"], "not a number"),
            (vec!["198.51.100.11", "--bogus"], "--bogus"),
            (vec!["198.51.100.11", "198.51.100.12"], "198.51.100.12"),
            (vec!["198.51.100.11:99999"], "198.51.100.11:99999"),
            (vec!["198.51.100.11", "--from", "nope"], "--from"),
        ] {
            let e = probe(&bad).expect_err(&format!("{bad:?}"));
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
