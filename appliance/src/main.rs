//! Multi-call entry point: `appliance <command> [args...]`; the command line lives in
//! the library's `cli` module (see `appliance --help`).

fn main() -> std::process::ExitCode {
    appliance::cli::main()
}
