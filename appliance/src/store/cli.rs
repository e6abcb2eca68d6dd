//! `appliance factory-reset [--yes] [--store SPEC]`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use super::Store;
use crate::config::board::{Board, BOARD_PATH};

/// Store spec from `--store SPEC` in `args` (removed from it), else the board file, else the default.
pub fn store_spec(args: &mut Vec<String>) -> Result<String, String> {
    if let Some(i) = args.iter().position(|a| a == "--store") {
        if i + 1 >= args.len() {
            return Err("--store needs a value: file:/path or mtd:/dev/mtdN".into());
        }
        let spec = args.remove(i + 1);
        args.remove(i);
        return Ok(spec);
    }
    if let Some(i) = args.iter().position(|a| a.starts_with("--store=")) {
        let a = args.remove(i);
        return Ok(a["--store=".len()..].to_owned());
    }
    Ok(Board::load_or_default(BOARD_PATH).store)
}

/// Entry point for `appliance factory-reset`.
pub fn cli(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let spec = match store_spec(&mut args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("factory-reset: {e}");
            return ExitCode::from(2);
        }
    };
    let mut yes = false;
    for a in &args {
        match a.as_str() {
            "--yes" | "-y" => yes = true,
            other => {
                eprintln!("factory-reset: unknown argument '{other}'\nusage: appliance factory-reset [--yes] [--store SPEC]");
                return ExitCode::from(2);
            }
        }
    }
    let mut store = match Store::open(&spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("factory-reset: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !yes {
        print!(
            "Erase the stored configuration on {}? The appliance will use factory defaults at the next start. Type 'yes' to confirm: ",
            store.describe()
        );
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "yes" {
            eprintln!("factory-reset: not confirmed, nothing changed");
            return ExitCode::FAILURE;
        }
    }
    match store.erase() {
        Ok(()) => {
            println!(
                "config store {} erased; factory defaults apply at the next start",
                store.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("factory-reset: {e}");
            ExitCode::FAILURE
        }
    }
}
