//! `appliance leds ...`: drive the board LEDs by hand (diagnostics and the QEMU uleds test).

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use crate::config::bounded;
use crate::leds::{HaLed, LedBackend, LedBinding, LedRole, Leds, PoolSummary};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "leds", help_triggers("-h", "--help", "help"))]
/// drive the board LEDs by hand (diagnostics, the QEMU uleds test).
pub struct Args {
    #[argh(subcommand)]
    /// what to do
    pub command: Sub,
}

/// A `leds` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Sub {
    /// `leds test-uleds`
    TestUleds(TestUleds),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "test-uleds",
    help_triggers("-h", "--help", "help"),
    note = "Creates userspace LED class devices through /dev/uleds (kernel CONFIG_LEDS_USER), binds
them in order to the roles status,pool,ha,activity, then reads lines
    UP TOTAL [booting] [fault] [crash] [activity] [master|backup|hafault]
from stdin, shows the matching patterns and prints each LED's trigger, brightness and
delays as 'led NAME trigger=T brightness=B delay_on=X delay_off=Y'. Ends at EOF."
)]
/// drive userspace LEDs from patterns read on stdin.
pub struct TestUleds {
    /// LED names, comma-separated (1 to 4)
    #[argh(positional)]
    pub names: String,
}

/// `struct uleds_user_dev` from <linux/uleds.h>.
const LED_MAX_NAME_SIZE: usize = 64;

fn create_uleds(name: &str) -> Result<std::fs::File, String> {
    if name.is_empty() || name.len() >= LED_MAX_NAME_SIZE || name.contains('/') {
        return Err(format!("bad LED name '{name}' (1-63 chars, no '/')"));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/uleds")
        .map_err(|e| format!("/dev/uleds: {e} (kernel needs CONFIG_LEDS_USER)"))?;
    let mut rec = [0u8; LED_MAX_NAME_SIZE + 4];
    rec[..name.len()].copy_from_slice(name.as_bytes());
    rec[LED_MAX_NAME_SIZE..].copy_from_slice(&255i32.to_ne_bytes());
    f.write_all(&rec)
        .map_err(|e| format!("creating uleds '{name}': {e}"))?;
    // The device exists as long as this file stays open.
    Ok(f)
}

fn attr(name: &str, a: &str) -> String {
    let raw = std::fs::read_to_string(format!("/sys/class/leds/{name}/{a}")).unwrap_or_default();
    if a == "trigger" {
        // "[none] timer" -> the bracketed active one.
        raw.split_whitespace()
            .find_map(|t| t.strip_prefix('[').and_then(|t| t.strip_suffix(']')))
            .unwrap_or("?")
            .to_owned()
    } else {
        let v = raw.trim();
        if v.is_empty() {
            "-".into()
        } else {
            v.to_owned()
        }
    }
}

/// `appliance leds ...`.
pub fn run(a: Args) -> ExitCode {
    let Sub::TestUleds(t) = a.command;
    match test_uleds(&t.names) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leds: {e}");
            ExitCode::from(1)
        }
    }
}

fn test_uleds(names: &str) -> Result<(), String> {
    let roles = [
        LedRole::Status,
        LedRole::Pool,
        LedRole::Ha,
        LedRole::Activity,
    ];
    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    if names.is_empty() || names.len() > roles.len() {
        return Err(format!("give 1 to {} LED names", roles.len()));
    }
    let mut keep = Vec::new();
    let mut bindings = Vec::new();
    for (n, role) in names.iter().zip(roles) {
        keep.push(create_uleds(n)?);
        bindings.push(LedBinding {
            role,
            backend: LedBackend::Class,
            name: bounded(n),
            gpio: 0,
            active_low: false,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let mut leds = Leds::open(&bindings, Path::new("/sys")).map_err(|e| e.to_string())?;
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(up), Some(total)) = (
            w.first().and_then(|v| v.parse().ok()),
            w.get(1).and_then(|v| v.parse().ok()),
        ) else {
            println!("error: expected 'UP TOTAL [booting] [fault] [crash] [activity] [master|backup|hafault]'");
            continue;
        };
        let has = |f: &str| w.iter().skip(2).any(|x| *x == f);
        let s = PoolSummary {
            up,
            total,
            fault: has("fault"),
            booting: has("booting"),
            ha: if has("master") {
                HaLed::Master
            } else if has("backup") {
                HaLed::Backup
            } else if has("hafault") {
                HaLed::Fault
            } else {
                HaLed::Disabled
            },
        };
        if let Err(e) = leds.show_all(s, has("crash"), has("activity")) {
            println!("error: {e}");
            continue;
        }
        for n in &names {
            println!(
                "led {n} trigger={} brightness={} delay_on={} delay_off={}",
                attr(n, "trigger"),
                attr(n, "brightness"),
                attr(n, "delay_on"),
                attr(n, "delay_off")
            );
        }
        println!("done");
    }
    drop(keep);
    Ok(())
}
