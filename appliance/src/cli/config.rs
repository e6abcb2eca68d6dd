//! `appliance config check|export|import|import-keepalived ...`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use super::store::{writer, Writer, WriterPaths, EXPLICIT_STORE_BUSY};
use crate::config::board::{Board, BOARD_PATH};
use crate::config::text::{load_factory, parse_named};
use crate::config::{keepalived, to_toml, validate, Config};
use crate::store::{Origin, Store};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "config",
    help_triggers("-h", "--help", "help"),
    note = "SPEC is file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml).
Saves take the store lock (--lock PATH, default /run/appliance/store.lock); while the daemon
runs it holds that lock, and the change goes through it instead (--socket PATH)."
)]
/// check, export and import the config (TOML or keepalived.conf).
pub struct Args {
    #[argh(subcommand)]
    /// what to do
    pub command: Sub,
}

/// A `config` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Sub {
    /// `config check`
    Check(Check),
    /// `config export`
    Export(Export),
    /// `config import`
    Import(Import),
    /// `config import-keepalived`
    ImportKeepalived(ImportKeepalived),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "check", help_triggers("-h", "--help", "help"))]
/// parse and validate a TOML config; prints every problem.
pub struct Check {
    /// the TOML file (- = stdin)
    #[argh(positional)]
    pub file: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "export", help_triggers("-h", "--help", "help"))]
/// write the stored (or factory) config as TOML.
pub struct Export {
    /// output file (default or - = stdout)
    #[argh(positional)]
    pub file: Option<String>,
    /// config store, file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml)
    #[argh(option)]
    pub store: Option<String>,
    /// store lock file (accepted for symmetry with import; export only reads)
    #[argh(option)]
    pub lock: Option<String>,
    /// control socket of the daemon (accepted for symmetry with import)
    #[argh(option)]
    pub socket: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "import", help_triggers("-h", "--help", "help"))]
/// validate FILE and save it to the store (used at the next start); with --live apply and save it through the running daemon in one step.
pub struct Import {
    /// the TOML file (- = stdin)
    #[argh(positional)]
    pub file: String,
    /// apply (verified) and save through the running daemon
    #[argh(switch)]
    pub live: bool,
    /// config store, file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml)
    #[argh(option)]
    pub store: Option<String>,
    /// store lock file (default /run/appliance/store.lock)
    #[argh(option)]
    pub lock: Option<String>,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option)]
    pub socket: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "import-keepalived",
    help_triggers("-h", "--help", "help")
)]
/// convert a keepalived.conf onto the current config and show the result; --apply saves it.
pub struct ImportKeepalived {
    /// the keepalived.conf
    #[argh(positional)]
    pub file: String,
    /// save the converted config (only when it has no errors)
    #[argh(switch)]
    pub apply: bool,
    /// config store, file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml)
    #[argh(option)]
    pub store: Option<String>,
    /// store lock file (default /run/appliance/store.lock)
    #[argh(option)]
    pub lock: Option<String>,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option)]
    pub socket: Option<String>,
}

/// `appliance config ...`.
pub fn run(a: Args) -> ExitCode {
    match a.command {
        Sub::Check(c) => check(&c.file),
        Sub::Export(e) => export(&WriterPaths::new(e.store, e.lock, e.socket).spec, e.file),
        Sub::Import(i) if i.live => {
            import_live(&WriterPaths::new(i.store, i.lock, i.socket).socket, &i.file)
        }
        Sub::Import(i) => import(&i.file, &WriterPaths::new(i.store, i.lock, i.socket)),
        Sub::ImportKeepalived(k) => import_keepalived(
            &k.file,
            k.apply,
            &WriterPaths::new(k.store, k.lock, k.socket),
        ),
    }
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

fn export(spec: &str, file: Option<String>) -> ExitCode {
    let (c, from) = match current(spec) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let text = format!(
        "# appliance {} config export: {from}\n{}",
        crate::VERSION,
        to_toml(&c)
    );
    match file.as_deref() {
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

/// Save `c` with one writer at a time: under the store lock when it is free, else (the
/// daemon runs and holds it) through the daemon, which saves to its own store.
fn save_serialised(c: &Config, paths: &WriterPaths) -> ExitCode {
    match writer(Path::new(&paths.lock), Path::new(&paths.socket)) {
        Ok(Writer::Direct(held)) => {
            let code = save(&paths.spec, c);
            drop(held);
            code
        }
        Ok(Writer::Daemon) if !paths.route_to_daemon => {
            eprintln!("config: {EXPLICIT_STORE_BUSY}\nnothing was changed");
            ExitCode::FAILURE
        }
        Ok(Writer::Daemon) => {
            use crate::control::client::Client;
            use crate::control::proto::{Reply, Request};
            let req = Request::ImportConfig {
                config: Box::new(c.clone()),
                live: false,
            };
            match Client::new(&paths.socket).call(&req) {
                Ok(Reply::Done { message }) => {
                    println!("the daemon is running and saved it: {message}");
                    ExitCode::SUCCESS
                }
                Ok(other) => {
                    eprintln!("config: unexpected answer from the daemon: {other:?}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!(
                        "config: the config store is locked ({}: the daemon runs or another writer is saving) and the daemon at {} did not take the change: {e}\nnothing was changed; try again",
                        paths.lock, paths.socket
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("config: {e}\nnothing was changed");
            ExitCode::FAILURE
        }
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

fn import(file: &str, paths: &WriterPaths) -> ExitCode {
    match parse_and_validate(file) {
        Ok(c) => save_serialised(&c, paths),
        Err(code) => {
            eprintln!("nothing was changed");
            code
        }
    }
}

/// Import into the running box in one request: the daemon validates, applies (network +
/// IPVS, verified) and saves, so running and flash agree; it refuses while a console user has
/// unapplied edits, and any refusal leaves everything as it was.
fn import_live(socket: &str, file: &str) -> ExitCode {
    use crate::control::client::Client;
    use crate::control::proto::{Reply, Request};
    let c = match parse_and_validate(file) {
        Ok(c) => c,
        Err(code) => {
            eprintln!("nothing was changed");
            return code;
        }
    };
    let req = Request::ImportConfig {
        config: Box::new(c),
        live: true,
    };
    match Client::new(socket).call(&req) {
        Ok(Reply::Done { message }) => {
            println!("{file}: {message}");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("config: unexpected answer from the daemon: {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("config: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_keepalived(file: &str, apply: bool, paths: &WriterPaths) -> ExitCode {
    let (base, from) = match current(&paths.spec) {
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
    save_serialised(&r.config, paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        crate::cli::argv(v)
    }

    /// `appliance config ARGS...`, parsed and run as the binary does.
    fn cli(args: &[String]) -> ExitCode {
        crate::cli::run(&[vec!["config".to_owned()], args.to_vec()].concat())
    }

    #[test]
    fn import_check_export_round_trip_through_a_file_store() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let lock = d.path().join("run/store.lock").display().to_string();
        let good = d.path().join("good.toml");
        let mut c = Config::builtin_default();
        c.hostname = crate::config::bounded("imported");
        std::fs::write(&good, to_toml(&c)).unwrap();
        let g = good.display().to_string();
        assert_eq!(cli(&s(&["check", &g])), ExitCode::SUCCESS);
        assert_eq!(
            cli(&s(&["import", &g, "--store", &store, "--lock", &lock])),
            ExitCode::SUCCESS
        );
        let l = Store::open(&store).unwrap().load().unwrap();
        assert_eq!(l.config, c);
        let out = d.path().join("out.toml");
        let o = out.display().to_string();
        assert_eq!(
            cli(&s(&["export", &o, "--store", &store, "--lock", &lock])),
            ExitCode::SUCCESS
        );
        let back = crate::config::from_toml(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_import_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let lock = d.path().join("run/store.lock").display().to_string();
        let bad = d.path().join("bad.toml");
        let mut c = Config::builtin_default();
        c.services[0].port = 0;
        std::fs::write(&bad, to_toml(&c)).unwrap();
        let b = bad.display().to_string();
        assert_eq!(cli(&s(&["check", &b])), ExitCode::FAILURE);
        assert_eq!(
            cli(&s(&["import", &b, "--store", &store, "--lock", &lock])),
            ExitCode::FAILURE
        );
        assert!(
            !d.path().join("c.bin").exists(),
            "store must not be touched"
        );
        std::fs::write(&bad, "hostname = [").unwrap();
        assert_eq!(
            cli(&s(&["import", &b, "--store", &store, "--lock", &lock])),
            ExitCode::FAILURE
        );
        assert!(!d.path().join("c.bin").exists());
    }

    #[test]
    fn keepalived_import_applies_only_when_clean() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let lock = d.path().join("run/store.lock").display().to_string();
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
                &store,
                "--lock",
                &lock
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
            cli(&s(&[
                "import-keepalived",
                &g,
                "--store",
                &store,
                "--lock",
                &lock
            ])),
            ExitCode::SUCCESS
        );
        assert!(
            !d.path().join("c.bin").exists(),
            "without --apply nothing is saved"
        );
        assert_eq!(
            cli(&s(&[
                "import-keepalived",
                &g,
                "--apply",
                "--store",
                &store,
                "--lock",
                &lock
            ])),
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

    /// A fake daemon serving the control socket at `sock` (in its own runtime thread).
    fn serve_fake(sock: &std::path::Path) -> std::sync::Arc<crate::control::fake::FakeDaemon> {
        let fake = std::sync::Arc::new(crate::control::fake::FakeDaemon::new(
            Config::builtin_default(),
        ));
        let (f, p) = (fake.clone(), sock.to_path_buf());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let _server = crate::control::server::serve(&p, f).unwrap();
                tx.send(()).unwrap();
                std::future::pending::<()>().await
            })
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        fake
    }

    #[test]
    fn writes_go_through_the_daemon_while_it_holds_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let store_path = d.path().join("c.bin");
        let store = format!("file:{}", store_path.display());
        let lock_path = d.path().join("run/store.lock");
        let lock = lock_path.display().to_string();
        let sock = d.path().join("run/control.sock");
        let good = d.path().join("good.toml");
        let mut c = Config::builtin_default();
        c.hostname = crate::config::bounded("via-daemon");
        std::fs::write(&good, to_toml(&c)).unwrap();
        let g = good.display().to_string();
        let args = |extra: &[&str]| {
            let mut v = s(&["import", &g, "--store", &store, "--lock", &lock]);
            v.extend(s(extra));
            v
        };
        // The "daemon" holds the lock but does not answer: refused, nothing written.
        let held = crate::store::lock::StoreLock::try_acquire(&lock_path).unwrap();
        // An explicit --store is never redirected to the daemon's own store unannounced.
        assert_eq!(cli(&args(&[])), ExitCode::FAILURE);
        assert!(!store_path.exists());
        let missing = d.path().join("nobody.sock").display().to_string();
        assert_eq!(cli(&args(&["--socket", &missing])), ExitCode::FAILURE);
        assert!(
            !store_path.exists(),
            "the store must not be written without the lock"
        );
        // It answers: the change goes through it, the file store stays untouched.
        let fake = serve_fake(&sock);
        let sk = sock.display().to_string();
        assert_eq!(cli(&args(&["--socket", &sk])), ExitCode::SUCCESS);
        assert!(!store_path.exists());
        {
            let st = fake.state.lock().unwrap();
            assert_eq!(st.session.saved().hostname.as_str(), "via-daemon");
            assert_eq!(st.session.effects().saved.len(), 1);
            assert_ne!(st.session.running().hostname.as_str(), "via-daemon");
        }
        // --live is one request: refused while the console has unapplied edits.
        {
            let mut st = fake.state.lock().unwrap();
            let mut edit = st.session.running().clone();
            edit.hostname = crate::config::bounded("console-edit");
            st.session.set_candidate(edit);
        }
        assert_eq!(cli(&args(&["--live", "--socket", &sk])), ExitCode::FAILURE);
        assert_eq!(
            fake.state
                .lock()
                .unwrap()
                .session
                .candidate()
                .hostname
                .as_str(),
            "console-edit"
        );
        // The lock released: written directly again.
        drop(held);
        assert_eq!(cli(&args(&["--socket", &missing])), ExitCode::SUCCESS);
        let l = Store::open(&store).unwrap().load().unwrap();
        assert_eq!(l.config.hostname.as_str(), "via-daemon");
    }

    #[test]
    fn concurrent_offline_writers_never_share_a_generation() {
        let d = tempfile::tempdir().unwrap();
        let store = format!("file:{}", d.path().join("c.bin").display());
        let lock = d.path().join("run/store.lock").display().to_string();
        let files: Vec<String> = (0..4)
            .map(|i| {
                let mut c = Config::builtin_default();
                c.hostname = crate::config::bounded(&format!("writer-{i}"));
                let f = d.path().join(format!("w{i}.toml"));
                std::fs::write(&f, to_toml(&c)).unwrap();
                f.display().to_string()
            })
            .collect();
        let handles: Vec<_> = files
            .into_iter()
            .map(|f| {
                let (store, lock) = (store.clone(), lock.clone());
                std::thread::spawn(move || {
                    (0..3)
                        .map(|_| {
                            cli(&s(&[
                                "import",
                                &f,
                                "--store",
                                &store,
                                "--lock",
                                &lock,
                                "--socket",
                                "/nonexistent/control.sock",
                            ]))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for code in h.join().unwrap() {
                assert_eq!(code, ExitCode::SUCCESS);
            }
        }
        // Twelve serialised saves: generation 12, and the other slot holds generation 11.
        let l = Store::open(&store).unwrap().load().unwrap();
        assert_eq!(l.generation, 12, "{:?}", l.notes);
        assert!(
            l.notes.iter().any(|n| n.contains("generation 11")),
            "{:?}",
            l.notes
        );
    }
}
