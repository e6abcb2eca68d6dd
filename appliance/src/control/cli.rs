pub fn cli(_a: &[String]) -> std::process::ExitCode { std::process::ExitCode::SUCCESS }
