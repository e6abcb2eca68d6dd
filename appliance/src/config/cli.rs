//! `appliance config check|export|import|import-keepalived ...`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use super::board::{Board, BOARD_PATH};
use super::text::{load_factory, parse_named};
use super::{keepalived, to_toml, validate, Config};
use crate::store::{cli::store_spec, Origin, Store};

const USAGE: &str = "usage:
  appliance config check FILE                       parse and validate a TOML config (- = stdin)
  appliance config export [FILE] [--store SPEC]     write the stored (or factory) config as TOML
  appliance config import FILE [--store SPEC]       validate FILE and save it to the store (used at next start)
  appliance config import FILE --live [--socket P]  stage, apply and save FILE through the running daemon
  appliance config import-keepalived FILE [--apply] [--store SPEC]
                                                    convert a keepalived.conf; --apply saves it
SPEC is file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml)";

/// Entry point for `appliance config`.
pub fn cli(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let spec = match store_spec(&mut args) {
        Ok(s) => s,
        Err(e) => return usage_err(&e),
    };
    let Some(sub) = args.first().cloned() else {
        return usage_err("missing sub-command");
    };
    let rest: Vec<String> = args[1..].to_vec();
    match sub.as_str() {
        "check" => match rest.as_slice() {
            [f] => check(f),
            _ => usage_err("config check needs exactly one FILE"),
        },
        "export" => match rest.as_slice() {
            [] => export(&spec, None),
            [f] => export(&spec, Some(f)),
            _ => usage_err("config export takes at most one FILE"),
        },
        "import" => {
            let live = rest.iter().any(|a| a == "--live");
            let mut socket = crate::control::proto::DEFAULT_SOCKET.to_string();
            let mut files = Vec::new();
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--live" => {}
                    "--socket" => match it.next() {
                        Some(p) => socket = p.clone(),
                        None => return usage_err("--socket needs a path"),
                    },
                    _ => files.push(a.clone()),
                }
            }
            match (files.as_slice(), live) {
                ([f], false) => import(&spec, f),
                ([f], true) => import_live(&socket, f),
                _ => usage_err("config import needs exactly one FILE"),
            }
        }
        "import-keepalived" => {
            let apply = rest.iter().any(|a| a == "--apply");
            let files: Vec<&String> = rest.iter().filter(|a| *a != "--apply").collect();
            match files.as_slice() {
                [f] => import_keepalived(&spec, f, apply),
                _ => usage_err("config import-keepalived needs exactly one FILE"),
            }
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => usage_err(&format!("unknown sub-command '{other}'")),
    }
}

fn usage_err(msg: &str) -> ExitCode {
    eprintln!("config: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn read_input(file: &str) -> Result<(String, String), String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok((s, "stdin".into()))
    } else {
        std::fs::read_to_string(file)
            .map(|s| (s, file.to_owned()))
            .map_err(|e| format!("cannot read {file}: {e}"))
    }
}

/// Parse + validate; prints every problem. Ok(config) only without errors.
fn parse_and_validate(file: &str) -> Result<Config, ExitCode> {
    let (text, origin) = read_input(file).map_err(|e| {
        eprintln!("config: {e}");
        ExitCode::FAILURE
    })?;
    let c = parse_named(&text, &origin).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })?;
    let r = validate(&c);
    for l in r.lines() {
        eprintln!("{origin}: {l}");
    }
    if r.is_ok() {
        Ok(c)
    } else {
        eprintln!(
            "{origin}: {} error(s), {} warning(s)",
            r.errors.len(),
            r.warnings.len()
        );
        Err(ExitCode::FAILURE)
    }
}

fn check(file: &str) -> ExitCode {
    match parse_and_validate(file) {
        Ok(_) => {
            println!("{file}: valid");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn factory(board: &Board) -> Config {
    match load_factory(&board.factory) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: factory config unusable ({e}); using the built-in default");
            Config::builtin_default()
        }
    }
}

fn open_store(spec: &str, board: &Board) -> Result<Store, ExitCode> {
    Store::open(spec)
        .map(|s| s.with_factory(factory(board)))
        .map_err(|e| {
            eprintln!("config: {e}");
            ExitCode::FAILURE
        })
}

/// The stored config (or factory defaults) with a note on where it came from.
fn current(spec: &str) -> Result<(Config, String), ExitCode> {
    let board = Board::load_or_default(BOARD_PATH);
    let mut store = open_store(spec, &board)?;
    let l = store.load().map_err(|e| {
        eprintln!("config: {e}");
        ExitCode::FAILURE
    })?;
    let from = match l.origin {
        Origin::SlotA | Origin::SlotB => format!(
            "stored config, generation {} ({:?}) in {}",
            l.generation,
            l.origin,
            store.describe()
        ),
        Origin::Empty => format!("factory defaults ({} is empty)", store.describe()),
        Origin::BothCorrupt => format!(
            "factory defaults ({} holds no valid record: {})",
            store.describe(),
            l.notes.join("; ")
        ),
    };
    Ok((l.config, from))
}

fn export(spec: &str, file: Option<&String>) -> ExitCode {
    let (c, from) = match current(spec) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let text = format!(
        "# appliance {} config export: {from}\n{}",
        crate::VERSION,
        to_toml(&c)
    );
    match file.map(String::as_str) {
        None | Some("-") => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Some(f) => match std::fs::write(f, text) {
            Ok(()) => {
                eprintln!("wrote {f} ({from})");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("config: cannot write {f}: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn save(spec: &str, c: &Config) -> ExitCode {
    let board = Board::load_or_default(BOARD_PATH);
    let mut store = match open_store(spec, &board) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.save(c) {
        Ok(g) => {
            println!(
                "saved to {} as generation {g}; the daemon applies it at its next start or reload",
                store.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import(spec: &str, file: &str) -> ExitCode {
    match parse_and_validate(file) {
        Ok(c) => save(spec, &c),
        Err(code) => {
            eprintln!("nothing was changed");
            code
        }
    }
}

/// Import into the running box: the daemon validates, applies (network + IPVS, verified)
/// and saves, so running and flash agree; any refusal leaves everything as it was.
fn import_live(socket: &str, file: &str) -> ExitCode {
    use crate::control::client::Client;
    use crate::control::proto::{Reply, Request, Which};
    let c = match parse_and_validate(file) {
        Ok(c) => c,
        Err(code) => {
            eprintln!("nothing was changed");
            return code;
        }
    };
    let mut client = Client::new(socket);
    let step = |client: &mut Client, req: Request| client.call(&req).map_err(|e| e.to_string());
    match step(
        &mut client,
        Request::SetCandidate {
            config: Box::new(c),
        },
    ) {
        Ok(Reply::Validation(v)) if !v.errors.is_empty() => {
            for e in &v.errors {
                eprintln!("error: {e}");
            }
            let _ = step(
                &mut client,
                Request::Revert {
                    from: Which::Running,
                },
            );
            eprintln!("the daemon refused the config; nothing was changed");
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("config: {e}\nnothing was changed");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = step(&mut client, Request::Apply) {
        let _ = step(
            &mut client,
            Request::Revert {
                from: Which::Running,
            },
        );
        eprintln!("config: {e}");
        return ExitCode::FAILURE;
    }
    println!("applied {file}");
    match step(&mut client, Request::Save) {
        Ok(_) => {
            println!("saved to flash");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config: {e}\nthe new config runs but is NOT saved: run 'appliance save'");
            ExitCode::FAILURE
        }
    }
}

fn import_keepalived(spec: &str, file: &str, apply: bool) -> ExitCode {
    let (base, from) = match current(spec) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let r = match keepalived::import_file(Path::new(file), &base) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("config: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("# base config: {from}");
    print!("{}", r.render());
    if !apply {
        println!("# nothing changed (run again with --apply to save)");
        return if r.ok_to_apply() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if !r.ok_to_apply() {
        eprintln!("config: not applied: fix the errors above; nothing was changed");
        return ExitCode::FAILURE;
    }
    save(spec, &r.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn import_check_export_round_trip_through_a_file_store() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let good = d.path().join("good.toml");
        let mut c = Config::builtin_default();
        c.hostname = crate::config::bounded("imported");
        std::fs::write(&good, to_toml(&c)).unwrap();
        let g = good.display().to_string();
        assert_eq!(cli(&s(&["check", &g])), ExitCode::SUCCESS);
        assert_eq!(
            cli(&s(&["import", &g, "--store", &store])),
            ExitCode::SUCCESS
        );
        let l = Store::open(&store).unwrap().load().unwrap();
        assert_eq!(l.config, c);
        let out = d.path().join("out.toml");
        let o = out.display().to_string();
        assert_eq!(
            cli(&s(&["export", &o, "--store", &store])),
            ExitCode::SUCCESS
        );
        let back = crate::config::from_toml(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_import_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let bad = d.path().join("bad.toml");
        let mut c = Config::builtin_default();
        c.services[0].port = 0;
        std::fs::write(&bad, to_toml(&c)).unwrap();
        let b = bad.display().to_string();
        assert_eq!(cli(&s(&["check", &b])), ExitCode::FAILURE);
        assert_eq!(
            cli(&s(&["import", &b, "--store", &store])),
            ExitCode::FAILURE
        );
        assert!(
            !d.path().join("c.bin").exists(),
            "store must not be touched"
        );
        std::fs::write(&bad, "hostname = [").unwrap();
        assert_eq!(
            cli(&s(&["import", &b, "--store", &store])),
            ExitCode::FAILURE
        );
        assert!(!d.path().join("c.bin").exists());
    }

    #[test]
    fn keepalived_import_applies_only_when_clean() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let seed = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/keepalived/seed-xms.conf"
        );
        assert_eq!(
            cli(&s(&[
                "import-keepalived",
                seed,
                "--apply",
                "--store",
                &store
            ])),
            ExitCode::FAILURE
        );
        assert!(!d.path().join("c.bin").exists());
        let good = d.path().join("k.conf");
        std::fs::write(
            &good,
            "virtual_server 203.0.113.10 5060 {\n protocol UDP\n lb_algo wrr\n persistence_timeout 300\n persistence_granularity 0.0.0.0\n pe sip\n ops\n inhibit_on_failure\n real_server 198.51.100.21 5060 {\n weight 5\n }\n}\n",
        )
        .unwrap();
        let g = good.display().to_string();
        assert_eq!(
            cli(&s(&["import-keepalived", &g, "--store", &store])),
            ExitCode::SUCCESS
        );
        assert!(
            !d.path().join("c.bin").exists(),
            "without --apply nothing is saved"
        );
        assert_eq!(
            cli(&s(&["import-keepalived", &g, "--apply", "--store", &store])),
            ExitCode::SUCCESS
        );
        let l = Store::open(&store).unwrap().load().unwrap();
        assert_eq!(
            l.config.services[0].scheduler,
            crate::config::Scheduler::Wrr
        );
        assert_eq!(l.config.services[0].servers[0].weight, 5);
    }

    #[test]
    fn bad_usage() {
        assert_eq!(cli(&s(&[])), ExitCode::from(2));
        assert_eq!(cli(&s(&["frob"])), ExitCode::from(2));
        assert_eq!(cli(&s(&["check"])), ExitCode::from(2));
        assert_eq!(cli(&s(&["export", "--store"])), ExitCode::from(2));
    }
}
