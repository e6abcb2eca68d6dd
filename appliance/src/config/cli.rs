//! `appliance config ...` sub-commands.
/// Entry point for `appliance config`.
pub fn cli(_args: &[String]) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
