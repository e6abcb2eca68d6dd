//! keepalived.conf importer: `virtual_server`/`real_server` blocks to appliance services.
//!
//! The importer never drops anything silently: every keyword it does not map,
//! every unsupported block and every syntax problem becomes a [`Note`] with its
//! file and line. The produced config is the base config (current or factory)
//! with only `services` replaced, because keepalived.conf does not carry the
//! appliance's interface addresses; it is then checked with [`validate`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::*;
use super::validate::{validate, Report};
use super::{to_toml, ConfigError};

mod include;
mod lexer;
mod mapping;
mod parser;
mod vrrp;

use include::load_tokens;
#[cfg(test)]
use include::wildcard;
pub use include::{FsIncludes, Includes, NoIncludes};
use mapping::Mapper;
use parser::{Node, Parser};

/// keepalived's persistence timeout when `persistence_timeout` has no value.
pub const KEEPALIVED_DEFAULT_PERSISTENCE: u32 = 360;
/// Nesting limit for `include` (keepalived's own limit is similar; stops loops).
const MAX_INCLUDE_DEPTH: usize = 8;
/// Input size limit (keepalived.conf files are a few KiB); also the total over all included files.
const MAX_INPUT: usize = 4 * 1024 * 1024;
/// Block nesting limit: real keepalived.conf nests 4-5 levels (virtual_server > real_server >
/// check > ...); the parser recurses per level, so deeper input would exhaust the stack.
pub const MAX_NESTING: usize = 32;
/// Limit on the number of files `include` may pull in (stops wildcard fan-out).
pub const MAX_INCLUDE_FILES: usize = 256;

/// How serious a note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Syntax error or something that prevents a faithful import; the result must not be applied.
    Error,
    /// A keyword or block that is not imported.
    Unmapped,
    /// Imported, but with a change of meaning worth knowing.
    Info,
}

/// One remark about the input, tied to a line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Note {
    /// Included file name, or None for the main input.
    pub file: Option<String>,
    /// 1-based line number (0 = whole input).
    pub line: usize,
    /// Seriousness.
    pub severity: Severity,
    /// What and why.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Unmapped => "not imported",
            Severity::Info => "note",
        };
        match &self.file {
            Some(file) => write!(f, "{file} line {}: {sev}: {}", self.line, self.message),
            None => write!(f, "line {}: {sev}: {}", self.line, self.message),
        }
    }
}

/// The outcome of an import: the produced config, every note and the validation report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportResult {
    /// Base config with `services` replaced by the imported ones.
    pub config: Config,
    /// Number of virtual services imported.
    pub services: usize,
    /// Every unmapped line, unsupported feature and syntax error, in input order.
    pub notes: Vec<Note>,
    /// `validate(&config)`.
    pub report: Report,
}

impl ImportResult {
    /// True when the result may be applied: no error notes, at least one service, validation passed.
    pub fn ok_to_apply(&self) -> bool {
        self.services > 0
            && self.report.is_ok()
            && !self.notes.iter().any(|n| n.severity == Severity::Error)
    }

    /// The produced TOML followed by every note and validation problem, for the CLI and console.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# --- imported configuration (interfaces and other settings kept from the base config) ---\n");
        out.push_str(&to_toml(&self.config));
        out.push_str(&format!(
            "\n# --- import notes ({}) ---\n",
            self.notes.len()
        ));
        for n in &self.notes {
            out.push_str(&format!("{n}\n"));
        }
        out.push_str(&format!(
            "# --- validation: {} error(s), {} warning(s) ---\n",
            self.report.errors.len(),
            self.report.warnings.len()
        ));
        for l in self.report.lines() {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(if self.ok_to_apply() {
            "# result: can be applied\n"
        } else {
            "# result: NOT applicable until the errors above are fixed\n"
        });
        out
    }
}

/// Where tokens come from: file names (index = Token::file) and the notes collected so far.
struct Ctx {
    files: Vec<String>,
    notes: Vec<Note>,
    /// Bytes of input read so far (main text plus included files), bounded by [`MAX_INPUT`].
    bytes: usize,
    /// Files pulled in by `include` so far, bounded by [`MAX_INCLUDE_FILES`].
    included: usize,
    /// Whether the include count or size limit was already reported (reported once).
    include_limit_noted: bool,
}

impl Ctx {
    fn note(&mut self, file: Option<usize>, line: usize, severity: Severity, message: String) {
        let file = file.and_then(|i| self.files.get(i).cloned());
        self.notes.push(Note {
            file,
            line,
            severity,
            message,
        });
    }
}

fn run(
    text: &str,
    dir: Option<&Path>,
    fs: &dyn Includes,
    main_file: Option<String>,
    base: &Config,
) -> ImportResult {
    let mut ctx = Ctx {
        files: Vec::new(),
        notes: Vec::new(),
        bytes: text.len(),
        included: 0,
        include_limit_noted: false,
    };
    let file = main_file.map(|f| {
        ctx.files.push(f);
        0
    });
    let mut toks = Vec::new();
    if text.len() > MAX_INPUT {
        ctx.note(
            file,
            0,
            Severity::Error,
            format!("input is larger than {MAX_INPUT} bytes"),
        );
    } else {
        load_tokens(text, file, dir, fs, 0, &mut ctx, &mut toks);
    }
    let (nodes, _) = Parser {
        toks: &toks,
        pos: 0,
        depth: 0,
    }
    .block(&mut ctx, None);
    let mut services = Vec::new();
    let mut vrrp = vrrp::Vrrp::default();
    Mapper { ctx: &mut ctx }.top(&nodes, &mut services, &mut vrrp);
    let mut config = base.clone();
    config.services.clear();
    let found = services.len();
    for s in services {
        if config.services.push(s).is_err() {
            ctx.note(
                file,
                0,
                Severity::Error,
                format!(
                    "{found} virtual servers found; the appliance holds at most {MAX_SERVICES}"
                ),
            );
            break;
        }
    }
    Mapper { ctx: &mut ctx }.map_vrrp(&vrrp, &mut config);
    ctx.note(
        file,
        0,
        Severity::Info,
        "keepalived.conf has no interface addresses: WAN, LAN and all other settings are kept from the base config; only the services are replaced (and [ha] when the file has VRRP settings)".into(),
    );
    // Input order per file (files in order of first appearance); whole-input notes last.
    let order: Vec<Option<String>> = ctx.notes.iter().fold(Vec::new(), |mut v, n| {
        if !v.contains(&n.file) {
            v.push(n.file.clone());
        }
        v
    });
    ctx.notes.sort_by_key(|n| {
        let f = order.iter().position(|x| *x == n.file).unwrap_or(0);
        if n.line == 0 {
            (usize::MAX, 0)
        } else {
            (f, n.line)
        }
    });
    let report = validate(&config);
    let services = config.services.len();
    ImportResult {
        config,
        services,
        notes: ctx.notes,
        report,
    }
}

/// Import pasted keepalived.conf text into the built-in default config (`include` cannot be followed).
pub fn import(text: &str) -> ImportResult {
    import_into(text, &Config::builtin_default())
}

/// Import pasted keepalived.conf text, replacing only the services of `base`.
pub fn import_into(text: &str, base: &Config) -> ImportResult {
    run(text, None, &NoIncludes, None, base)
}

/// Import a keepalived.conf file (includes resolved relative to it), replacing only the services of `base`.
pub fn import_file(path: impl AsRef<Path>, base: &Config) -> Result<ImportResult, ConfigError> {
    import_with(path, base, &FsIncludes)
}

/// [`import_file`] with the main file and its includes read through `fs`.
pub fn import_with(
    path: impl AsRef<Path>,
    base: &Config,
    fs: &dyn Includes,
) -> Result<ImportResult, ConfigError> {
    let path = path.as_ref();
    let bytes = fs.read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(run(
        &text,
        Some(&dir),
        fs,
        Some(path.display().to_string()),
        base,
    ))
}

#[cfg(test)]
mod tests;
