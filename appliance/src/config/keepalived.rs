//! keepalived.conf importer: `virtual_server`/`real_server` blocks to appliance services.
//!
//! The importer never drops anything silently: every keyword it does not map,
//! every unsupported block and every syntax problem becomes a [`Note`] with its
//! file and line. The produced config is the base config (current or factory)
//! with only `services` replaced, because keepalived.conf does not carry the
//! appliance's interface addresses; it is then checked with [`validate`].

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::model::*;
use super::validate::{validate, Report};
use super::{to_toml, ConfigError};

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

// ---- tokenizer -----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    file: Option<usize>,
    line: usize,
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

fn tokenize(text: &str, file: Option<usize>, ctx: &mut Ctx, out: &mut Vec<Token>) {
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut chars = raw.char_indices().peekable();
        let mut cur = String::new();
        let push = |cur: &mut String, out: &mut Vec<Token>| {
            if !cur.is_empty() {
                out.push(Token {
                    tok: Tok::Word(std::mem::take(cur)),
                    file,
                    line,
                });
            }
        };
        while let Some((_, c)) = chars.next() {
            match c {
                '!' | '#' if cur.is_empty() => break, // comment to end of line
                '"' if cur.is_empty() => {
                    let mut s = String::new();
                    let mut closed = false;
                    for (_, q) in chars.by_ref() {
                        if q == '"' {
                            closed = true;
                            break;
                        }
                        s.push(q);
                    }
                    if !closed {
                        ctx.note(
                            file,
                            line,
                            Severity::Error,
                            "unterminated quoted string; add the closing \"".into(),
                        );
                    }
                    out.push(Token {
                        tok: Tok::Word(s),
                        file,
                        line,
                    });
                }
                '{' => {
                    push(&mut cur, out);
                    out.push(Token {
                        tok: Tok::Open,
                        file,
                        line,
                    });
                }
                '}' => {
                    push(&mut cur, out);
                    out.push(Token {
                        tok: Tok::Close,
                        file,
                        line,
                    });
                }
                c if c.is_whitespace() => push(&mut cur, out),
                c => cur.push(c),
            }
        }
        push(&mut cur, out);
    }
}

// ---- block parser --------------------------------------------------------------

/// One statement: keyword, arguments on the same line, optional `{ ... }` block.
#[derive(Clone, Debug)]
struct Node {
    key: String,
    args: Vec<String>,
    block: Option<Vec<Node>>,
    file: Option<usize>,
    line: usize,
    end_line: usize,
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    /// Blocks currently open (bounded by [`MAX_NESTING`]).
    depth: usize,
}

impl Parser<'_> {
    /// Parse the block whose `{` was just consumed, or skip it when it nests too deep.
    fn child(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        file: Option<usize>,
        line: usize,
    ) -> (Vec<Node>, usize) {
        if self.depth >= MAX_NESTING {
            ctx.note(
                file,
                line,
                Severity::Error,
                format!(
                    "block '{key}' nests more than {MAX_NESTING} levels deep; keepalived.conf blocks nest a few levels only: check this block's braces"
                ),
            );
            return (Vec::new(), self.skip_block(ctx, key, file, line));
        }
        self.depth += 1;
        let r = self.block(ctx, Some((key, file, line)));
        self.depth -= 1;
        r
    }

    /// Skip to the `}` matching an already consumed `{`, without recursion; returns its line.
    fn skip_block(&mut self, ctx: &mut Ctx, key: &str, file: Option<usize>, line: usize) -> usize {
        let mut open = 1usize;
        while let Some(t) = self.toks.get(self.pos) {
            self.pos += 1;
            match t.tok {
                Tok::Open => open += 1,
                Tok::Close => {
                    open -= 1;
                    if open == 0 {
                        return t.line;
                    }
                }
                Tok::Word(_) => {}
            }
        }
        ctx.note(
            file,
            line,
            Severity::Error,
            format!("block '{key}' opened here is never closed; add the missing '}}'"),
        );
        self.toks.last().map(|t| t.line).unwrap_or(0)
    }

    /// Parse statements until a `}` (when `nested`) or the end.
    fn block(
        &mut self,
        ctx: &mut Ctx,
        nested: Option<(&str, Option<usize>, usize)>,
    ) -> (Vec<Node>, usize) {
        let mut nodes = Vec::new();
        while let Some(t) = self.toks.get(self.pos) {
            match &t.tok {
                Tok::Close => {
                    self.pos += 1;
                    if nested.is_some() {
                        return (nodes, t.line);
                    }
                    ctx.note(
                        t.file,
                        t.line,
                        Severity::Error,
                        "unexpected '}' with no open block; remove it or add the missing '{'"
                            .into(),
                    );
                }
                Tok::Open => {
                    self.pos += 1;
                    ctx.note(
                        t.file,
                        t.line,
                        Severity::Error,
                        "'{' without a keyword before it".into(),
                    );
                    // Skip the anonymous block, keeping the braces balanced.
                    let _ = self.child(ctx, "{", t.file, t.line);
                }
                Tok::Word(w) => {
                    let (key, file, line) = (w.clone(), t.file, t.line);
                    self.pos += 1;
                    let mut args = Vec::new();
                    while let Some(Token {
                        tok: Tok::Word(a),
                        line: l,
                        file: f,
                    }) = self.toks.get(self.pos)
                    {
                        if *l != line || *f != file {
                            break;
                        }
                        args.push(a.clone());
                        self.pos += 1;
                    }
                    let mut node = Node {
                        key,
                        args,
                        block: None,
                        file,
                        line,
                        end_line: line,
                    };
                    if let Some(Token { tok: Tok::Open, .. }) = self.toks.get(self.pos) {
                        self.pos += 1;
                        let (children, end) = self.child(ctx, &node.key, file, line);
                        node.block = Some(children);
                        node.end_line = end;
                    }
                    nodes.push(node);
                }
            }
        }
        if let Some((key, file, line)) = nested {
            ctx.note(
                file,
                line,
                Severity::Error,
                format!("block '{key}' opened here is never closed; add the missing '}}'"),
            );
        }
        (nodes, self.toks.last().map(|t| t.line).unwrap_or(0))
    }
}

// ---- include handling ----------------------------------------------------------

/// Simple `*`/`?` wildcard match of one file name (keepalived's include takes glob patterns).
///
/// Iterative with single back-tracking to the last `*`: linear in practice, no recursion, so a
/// long pattern of stars can neither overflow the stack nor take exponential time.
fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

fn expand_include(pattern: &str, dir: &Path) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![full];
    }
    let parent = full
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf());
    let mut hits: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| wildcard(name.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    hits.sort();
    hits
}

/// Tokenize `text` and splice in included files (when `dir` is known).
fn load_tokens(
    text: &str,
    file: Option<usize>,
    dir: Option<&Path>,
    depth: usize,
    ctx: &mut Ctx,
    out: &mut Vec<Token>,
) {
    let mut toks = Vec::new();
    tokenize(text, file, ctx, &mut toks);
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let is_include = matches!(&t.tok, Tok::Word(w) if w == "include");
        let at_statement_start = i == 0 || toks[i - 1].line != t.line || toks[i - 1].file != t.file;
        if !(is_include && at_statement_start) {
            out.push(t.clone());
            i += 1;
            continue;
        }
        let (line, f) = (t.line, t.file);
        let mut args = Vec::new();
        i += 1;
        while let Some(Token {
            tok: Tok::Word(a),
            line: l,
            ..
        }) = toks.get(i)
        {
            if *l != line {
                break;
            }
            args.push(a.clone());
            i += 1;
        }
        if args.is_empty() {
            ctx.note(f, line, Severity::Error, "include needs a file name".into());
            continue;
        }
        let Some(dir) = dir else {
            ctx.note(
                f,
                line,
                Severity::Error,
                format!(
                    "include {} cannot be followed in pasted text; paste the included file's content in its place",
                    args.join(" ")
                ),
            );
            continue;
        };
        if depth >= MAX_INCLUDE_DEPTH {
            ctx.note(
                f,
                line,
                Severity::Error,
                format!("include {} nested more than {MAX_INCLUDE_DEPTH} levels deep (an include loop?)", args.join(" ")),
            );
            continue;
        }
        for pat in &args {
            let paths = expand_include(pat, dir);
            if paths.is_empty() {
                ctx.note(
                    f,
                    line,
                    Severity::Info,
                    format!("include {pat} matched no file"),
                );
            }
            for p in paths {
                // Count and size bounds over the whole import, not per file: a wildcard or a
                // chain of includes must not pull in an unbounded amount of text.
                if ctx.included >= MAX_INCLUDE_FILES {
                    if !ctx.include_limit_noted {
                        ctx.include_limit_noted = true;
                        ctx.note(
                            f,
                            line,
                            Severity::Error,
                            format!("include {pat}: more than {MAX_INCLUDE_FILES} files included in all; include fewer files (narrow the wildcard)"),
                        );
                    }
                    break;
                }
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                if ctx
                    .bytes
                    .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
                    > MAX_INPUT
                {
                    if !ctx.include_limit_noted {
                        ctx.include_limit_noted = true;
                        ctx.note(
                            f,
                            line,
                            Severity::Error,
                            format!("include {}: the configuration with its included files is larger than {MAX_INPUT} bytes in all", p.display()),
                        );
                    }
                    break;
                }
                match std::fs::read(&p) {
                    Ok(bytes) if ctx.bytes.saturating_add(bytes.len()) <= MAX_INPUT => {
                        ctx.bytes += bytes.len();
                        ctx.included += 1;
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        ctx.files.push(p.display().to_string());
                        let idx = ctx.files.len() - 1;
                        let sub_dir = p
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_else(|| dir.to_path_buf());
                        load_tokens(&text, Some(idx), Some(&sub_dir), depth + 1, ctx, out);
                    }
                    Ok(_) => ctx.note(
                        f,
                        line,
                        Severity::Error,
                        format!(
                            "include {}: the configuration with its included files is larger than {MAX_INPUT} bytes in all",
                            p.display()
                        ),
                    ),
                    Err(e) => ctx.note(
                        f,
                        line,
                        Severity::Error,
                        format!("cannot read included file {}: {e}", p.display()),
                    ),
                }
            }
        }
    }
}

// ---- mapping -------------------------------------------------------------------

/// Per-service probe facts gathered from checks, merged across real servers.
#[derive(Default)]
struct CheckFacts {
    seen_check: bool,
    timeout_s: Option<u32>,
    retry: Option<u32>,
    inhibit: Vec<bool>,
}

struct Mapper<'c> {
    ctx: &'c mut Ctx,
}

fn parse_u32(s: &str) -> Option<u32> {
    s.parse::<u32>().ok()
}

impl Mapper<'_> {
    fn note(&mut self, n: &Node, sev: Severity, msg: String) {
        self.ctx.note(n.file, n.line, sev, msg);
    }

    /// The `ADDRESS PORT` arguments of a virtual_server or real_server line; every
    /// problem becomes an error note on that line.
    fn address_port(
        &mut self,
        n: &Node,
        label: &str,
        keyword: &str,
        v4_hint: &str,
    ) -> Option<(Ipv4Addr, u16)> {
        let addr = match n.args.first().map(|a| a.parse::<Ipv4Addr>()) {
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{label}: '{}' is not an IPv4 address{v4_hint}", n.args[0]),
                );
                return None;
            }
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{keyword} needs an address and a port"),
                );
                return None;
            }
        };
        let port = match n.args.get(1).map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{label}: '{}' is not a port number", n.args[1]),
                );
                return None;
            }
            None => {
                self.note(n, Severity::Error, format!("{label}: missing port"));
                return None;
            }
        };
        Some((addr, port))
    }

    /// The single numeric argument of `n`, or an error note naming the keyword.
    fn num(&mut self, n: &Node, what: &str) -> Option<u32> {
        match n.args.first() {
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{} needs a value ({what})", n.key),
                );
                None
            }
            Some(a) => match parse_u32(a) {
                Some(v) => {
                    self.extra_args(n, 1);
                    Some(v)
                }
                None => {
                    self.note(
                        n,
                        Severity::Error,
                        format!("{} needs a whole number ({what}), got '{a}'", n.key),
                    );
                    None
                }
            },
        }
    }

    fn word<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n str> {
        match n.args.first() {
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{} needs a value ({what})", n.key),
                );
                None
            }
            Some(a) => {
                self.extra_args(n, 1);
                Some(a.as_str())
            }
        }
    }

    fn extra_args(&mut self, n: &Node, expected: usize) {
        if n.args.len() > expected {
            self.note(
                n,
                Severity::Unmapped,
                format!(
                    "extra arguments after {}: '{}' ignored",
                    n.key,
                    n.args[expected..].join(" ")
                ),
            );
        }
    }

    fn no_block(&mut self, n: &Node) {
        if n.block.is_some() {
            self.note(
                n,
                Severity::Unmapped,
                format!("unexpected block after {}; its content is ignored", n.key),
            );
        }
    }

    fn top<'n>(
        &mut self,
        nodes: &'n [Node],
        services: &mut Vec<VirtualService>,
        vrrp: &mut vrrp::Vrrp<'n>,
    ) {
        for n in nodes {
            match n.key.as_str() {
                "vrrp_instance" => vrrp.instances.push(n),
                "global_defs" => {
                    let why = if self.global_defs_sync(n, vrrp) {
                        "apart from the sync daemon interface (see its note) it has no equivalent on the appliance"
                    } else {
                        "it has no equivalent on the appliance"
                    };
                    self.note(
                        n,
                        Severity::Unmapped,
                        format!("{} {}(lines {}-{}) not imported: {why}", n.key, args_sp(n), n.line, n.end_line),
                    )
                }
                "virtual_server" => {
                    if let Some(s) = self.virtual_server(n, services.len()) {
                        services.push(s);
                    }
                }
                "virtual_server_group" => self.note(
                    n,
                    Severity::Unmapped,
                    format!(
                        "virtual_server_group {} (lines {}-{}) is not supported; define each VIP as its own virtual_server",
                        n.args.join(" "),
                        n.line,
                        n.end_line
                    ),
                ),
                "vrrp_sync_group" | "vrrp_script" | "vrrp_track_process"
                | "static_ipaddress" | "static_routes" | "static_rules" | "linkbeat_interfaces" | "track_file"
                | "garp_group" | "bfd_instance" | "net_namespace" => {
                    let why = if n.key == "vrrp_sync_group" {
                        "the appliance's WAN and LAN routers always act as one group"
                    } else if n.key.starts_with("vrrp") {
                        "the appliance tracks its WAN and LAN links and the pool health itself"
                    } else if n.key.starts_with("static") {
                        "addresses and routes come from the appliance's WAN/LAN settings"
                    } else {
                        "it has no equivalent on the appliance"
                    };
                    self.note(
                        n,
                        Severity::Unmapped,
                        format!("{} {}(lines {}-{}) not imported: {why}", n.key, args_sp(n), n.line, n.end_line),
                    )
                }
                _ => self.note(
                    n,
                    Severity::Unmapped,
                    format!("unknown top-level keyword '{}' not imported", n.key),
                ),
            }
        }
    }

    fn virtual_server(&mut self, n: &Node, index: usize) -> Option<VirtualService> {
        let label = format!("virtual_server {}", n.args.join(" "));
        if n.args.first().map(String::as_str) == Some("group")
            || n.args.first().map(String::as_str) == Some("fwmark")
        {
            self.note(
                n,
                Severity::Unmapped,
                format!(
                    "{label} (lines {}-{}): {} virtual servers are not supported; use VIP and port",
                    n.line, n.end_line, n.args[0]
                ),
            );
            return None;
        }
        let (vip, port) =
            self.address_port(n, &label, "virtual_server", " (IPv6 is not supported)")?;
        self.extra_args(n, 2);
        let Some(block) = &n.block else {
            self.note(
                n,
                Severity::Error,
                format!("{label} has no {{ ... }} block"),
            );
            return None;
        };
        let mut s = VirtualService {
            name: bounded(&if index == 0 {
                "sip".to_string()
            } else {
                format!("sip-{}", index + 1)
            }),
            vip,
            port,
            protocol: Protocol::Udp,
            scheduler: Scheduler::Rr,
            forwarding: Forwarding::Nat,
            persistence_timeout: 0,
            sip_persistence: false,
            one_packet: false,
            // ipvsadm's default persistent netmask when none is given.
            persistence_granularity: Ipv4Addr::BROADCAST,
            probe: ProbeSettings::default(),
            servers: heapless::Vec::new(),
        };
        let mut protocol_ok = true;
        let mut facts = CheckFacts::default();
        let mut pe_line: Option<&Node> = None;
        let mut sched_set = false;
        let mut delay_loop: Option<(u32, &Node)> = None;
        for c in block {
            match c.key.as_str() {
                "delay_loop" => {
                    if let Some(v) = self.num(c, "seconds between checks") {
                        delay_loop = Some((v, c));
                    }
                }
                "lb_algo" | "lvs_sched" => {
                    if let Some(w) = self.word(c, "scheduler") {
                        sched_set = true;
                        match w.to_ascii_lowercase().as_str() {
                            "rr" => s.scheduler = Scheduler::Rr,
                            "wrr" => s.scheduler = Scheduler::Wrr,
                            "lc" => s.scheduler = Scheduler::Lc,
                            "wlc" => s.scheduler = Scheduler::Wlc,
                            "sh" => s.scheduler = Scheduler::Sh,
                            "mh" => s.scheduler = Scheduler::Mh,
                            other => self.note(
                                c,
                                Severity::Error,
                                format!("scheduler '{other}' is not supported; use rr, wrr, lc, wlc, sh or mh"),
                            ),
                        }
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(w) = self.word(c, "forwarding method") {
                        match w.to_ascii_uppercase().as_str() {
                            "NAT" => s.forwarding = Forwarding::Nat,
                            "DR" => s.forwarding = Forwarding::Dr,
                            other => self.note(
                                c,
                                Severity::Error,
                                format!("forwarding method {other} is not supported; use NAT or DR"),
                            ),
                        }
                    }
                }
                "protocol" => {
                    if let Some(w) = self.word(c, "UDP") {
                        if !w.eq_ignore_ascii_case("udp") {
                            self.note(
                                c,
                                Severity::Error,
                                format!("{label}: protocol {w} is not supported; the appliance balances SIP over UDP only"),
                            );
                            protocol_ok = false;
                        }
                    }
                }
                "persistence_timeout" => {
                    if c.args.is_empty() {
                        s.persistence_timeout = KEEPALIVED_DEFAULT_PERSISTENCE;
                        self.note(
                            c,
                            Severity::Info,
                            format!("persistence_timeout without a value: keepalived's default {KEEPALIVED_DEFAULT_PERSISTENCE} s used"),
                        );
                    } else if let Some(v) = self.num(c, "seconds") {
                        s.persistence_timeout = v;
                    }
                }
                "persistence_granularity" => {
                    if let Some(w) = self.word(c, "netmask") {
                        match w.parse::<Ipv4Addr>() {
                            Ok(m) => s.persistence_granularity = m,
                            Err(_) => self.note(c, Severity::Error, format!("persistence_granularity '{w}' is not a netmask")),
                        }
                    }
                }
                "pe" | "persistence_engine" => {
                    if let Some(w) = self.word(c, "persistence engine name") {
                        if w.eq_ignore_ascii_case("sip") {
                            s.sip_persistence = true;
                            pe_line = Some(c);
                            if w != "sip" {
                                self.note(
                                    c,
                                    Severity::Info,
                                    format!("persistence engine '{w}' imported as sip (the kernel only accepts lower case; '{w}' made keepalived's table empty)"),
                                );
                            }
                        } else {
                            self.note(c, Severity::Error, format!("persistence engine '{w}' is not supported; only sip"));
                        }
                    }
                }
                "ops" => {
                    self.extra_args(c, 0);
                    s.one_packet = true;
                }
                "nat_mask" => self.note(
                    c,
                    Severity::Info,
                    "nat_mask not needed: the LAN prefix comes from the appliance's LAN setting".into(),
                ),
                "alpha" => self.note(
                    c,
                    Severity::Info,
                    "alpha is how the appliance always works: a server takes calls only after passing its probe".into(),
                ),
                "retry" => {
                    if let Some(v) = self.num(c, "retries") {
                        facts.retry.get_or_insert(v);
                    }
                }
                "delay_before_retry" => self.note(
                    c,
                    Severity::Unmapped,
                    "delay_before_retry not imported: the prober retries at the probe interval".into(),
                ),
                "inhibit_on_failure" => facts.inhibit.push(true),
                "real_server" => {
                    if let Some(r) = self.real_server(c, &mut facts) {
                        if s.servers.push(r).is_err() {
                            self.note(c, Severity::Error, format!("{label}: more than {MAX_SERVERS} real servers; the rest are not imported"));
                        }
                    }
                }
                "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" | "quorum" | "quorum_up"
                | "quorum_down" | "hysteresis" | "virtualhost" | "ha_suspend" | "smtp_alert" | "omega"
                | "one_packet_scheduling" | "lvs_flags" | "hashed" | "flag-1" | "flag-2" | "flag-3" | "sh-port"
                | "sh-fallback" | "mh-port" | "mh-fallback" | "ip_family" | "connect_timeout" | "warmup"
                | "notify_up" | "notify_down" | "quorum_up_script" => {
                    let why = match c.key.as_str() {
                        "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" => {
                            "a sorry server is not supported; calls are dropped when no server is healthy"
                        }
                        "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
                            "quorum is not supported; the service stays up while any server is healthy"
                        }
                        _ => "no equivalent on the appliance",
                    };
                    self.note(c, Severity::Unmapped, format!("{} {}not imported: {why}", c.key, args_sp(c)));
                }
                other => self.note(
                    c,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in {label} not imported"),
                ),
            }
            if c.key != "real_server" {
                self.no_block(c);
            }
        }
        if !sched_set {
            self.note(
                n,
                Severity::Info,
                format!("{label}: no lb_algo given; rr used (set the scheduler explicitly)"),
            );
        }
        if s.sip_persistence && s.persistence_timeout == 0 {
            if let Some(p) = pe_line {
                self.note(
                    p,
                    Severity::Info,
                    "pe sip without persistence_timeout: keepalived silently drops the engine; the appliance refuses this (add persistence_timeout)".into(),
                );
            }
        }
        if s.persistence_timeout == 0 {
            s.persistence_granularity = Ipv4Addr::UNSPECIFIED;
        }
        // Probe mapping.
        if let Some((v, node)) = delay_loop {
            let ms = v.saturating_mul(1000);
            s.probe.interval_ms = ms;
            self.note(
                node,
                Severity::Info,
                format!(
                    "delay_loop {v} s mapped to probe interval {ms} ms; the appliance's default is {} ms, which detects a dead server in about a second",
                    super::DEFAULT_PROBE_INTERVAL_MS
                ),
            );
        }
        if let Some(t) = facts.timeout_s {
            let r = &super::validate::PROBE_TIMEOUT_RANGE_MS;
            s.probe.timeout_ms = t.saturating_mul(1000).clamp(*r.start(), *r.end());
        }
        if let Some(r) = facts.retry {
            s.probe.fall = u8::try_from(r.saturating_add(1)).unwrap_or(u8::MAX);
        }
        if !facts.seen_check && !s.servers.is_empty() {
            self.note(
                n,
                Severity::Info,
                format!("{label} has no health check; the appliance probes every server with SIP OPTIONS (set probe.enabled = false to turn it off)"),
            );
        }
        let inhibited = facts.inhibit.iter().filter(|b| **b).count();
        if inhibited == 0 {
            s.probe.on_failure = FailureAction::Remove;
            self.note(
                n,
                Severity::Info,
                format!("{label}: failed servers are removed as keepalived does without inhibit_on_failure; on_failure = \"weight0\" keeps them at weight 0 instead"),
            );
        } else {
            s.probe.on_failure = FailureAction::Weight0;
        }
        if inhibited > 0 && inhibited < facts.inhibit.len() {
            self.note(
                n,
                Severity::Info,
                format!("{label}: inhibit_on_failure is set on some servers only; the appliance applies weight 0 to all"),
            );
        }
        if protocol_ok {
            Some(s)
        } else {
            None
        }
    }

    fn real_server(&mut self, n: &Node, facts: &mut CheckFacts) -> Option<RealServer> {
        let label = format!("real_server {}", n.args.join(" "));
        let (address, port) = self.address_port(n, &label, "real_server", "")?;
        self.extra_args(n, 2);
        let mut r = RealServer {
            address,
            port,
            weight: 1,
            state: AdminState::Enabled,
        };
        let mut inhibit = false;
        for c in n.block.as_deref().unwrap_or(&[]) {
            match c.key.as_str() {
                "weight" => {
                    if let Some(w) = self.num(c, "weight") {
                        r.weight = w;
                        if w == 0 {
                            r.state = AdminState::Draining;
                            self.note(
                                c,
                                Severity::Info,
                                format!("{label}: weight 0 imported as state \"draining\""),
                            );
                        }
                    }
                }
                "inhibit_on_failure" => inhibit = true,
                "MISC_CHECK" => self.misc_check(c, address, facts),
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK"
                | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    facts.seen_check = true;
                    self.note(
                        c,
                        Severity::Unmapped,
                        format!(
                            "{} (lines {}-{}) replaced by the appliance's SIP OPTIONS probe",
                            c.key, c.line, c.end_line
                        ),
                    );
                    self.check_timing(c, facts);
                }
                "notify_up" | "notify_down" | "uthreshold" | "lthreshold" | "virtualhost"
                | "rise" | "alpha" => {
                    self.note(
                        c,
                        Severity::Unmapped,
                        format!("{} in {label} not imported: no equivalent", c.key),
                    );
                }
                other => self.note(
                    c,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in {label} not imported"),
                ),
            }
            if !c.key.ends_with("_CHECK") && !matches!(c.key.as_str(), "HTTP_GET" | "SSL_GET") {
                self.no_block(c);
            }
        }
        facts.inhibit.push(inhibit);
        if n.block.is_none() {
            self.note(
                n,
                Severity::Info,
                format!("{label} has no block; weight 1 used"),
            );
        }
        Some(r)
    }

    /// Timing keywords shared by all checks: connect_timeout / misc_timeout, retry, delay_before_retry.
    fn check_timing(&mut self, c: &Node, facts: &mut CheckFacts) {
        for k in c.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "connect_timeout" | "misc_timeout" => {
                    if let Some(v) = self.num(k, "seconds") {
                        facts.timeout_s.get_or_insert(v);
                        self.note(
                            k,
                            Severity::Info,
                            format!("{} {v} s mapped to probe timeout", k.key),
                        );
                    }
                }
                "retry" | "nb_get_retry" => {
                    if let Some(v) = self.num(k, "retries") {
                        facts.retry.get_or_insert(v);
                        self.note(
                            k,
                            Severity::Info,
                            format!(
                                "{} {v} mapped to probe fall = {}",
                                k.key,
                                v.saturating_add(1)
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn misc_check(&mut self, c: &Node, server: Ipv4Addr, facts: &mut CheckFacts) {
        facts.seen_check = true;
        let mut have_path = false;
        for k in c.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "misc_path" => {
                    have_path = true;
                    // keepalived takes the script and its arguments as one (quoted) string.
                    let joined = k.args.join(" ");
                    let mut parts = joined.split_whitespace();
                    let script = parts.next().unwrap_or("");
                    let ip = parts.next();
                    let port = parts.next();
                    let mut msg = format!("MISC_CHECK script {script} replaced by the appliance's SIP OPTIONS probe of {server}");
                    match ip.map(|i| i.parse::<Ipv4Addr>()) {
                        Some(Ok(ip)) if ip != server => {
                            msg.push_str(&format!(
                                "; the script probed {ip}, not the real server: the appliance always probes the server itself"
                            ))
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) => msg.push_str(&format!("; script argument '{}' is not an address", ip.unwrap_or(""))),
                        None => msg.push_str("; the script had no server address argument"),
                    }
                    if let Some(p) = port {
                        msg.push_str(&format!(
                            "; its local probe port {p} is not needed (one prober socket serves all servers)"
                        ));
                    }
                    self.note(k, Severity::Info, msg);
                }
                "misc_timeout" | "retry" | "nb_get_retry" => {}
                "misc_dynamic" => self.note(
                    k,
                    Severity::Unmapped,
                    "misc_dynamic not imported: weights stay as configured".into(),
                ),
                "delay_before_retry" => self.note(
                    k,
                    Severity::Unmapped,
                    "delay_before_retry not imported: the prober retries at the probe interval"
                        .into(),
                ),
                other => self.note(
                    k,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in MISC_CHECK not imported"),
                ),
            }
        }
        if !have_path {
            self.note(
                c,
                Severity::Info,
                "MISC_CHECK without misc_path; SIP OPTIONS probe used".into(),
            );
        }
        self.check_timing(c, facts);
    }
}

fn args_sp(n: &Node) -> String {
    if n.args.is_empty() {
        String::new()
    } else {
        format!("{} ", n.args.join(" "))
    }
}

fn run(text: &str, dir: Option<&Path>, main_file: Option<String>, base: &Config) -> ImportResult {
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
        load_tokens(text, file, dir, 0, &mut ctx, &mut toks);
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
    run(text, None, None, base)
}

/// Import a keepalived.conf file (includes resolved relative to it), replacing only the services of `base`.
pub fn import_file(path: impl AsRef<Path>, base: &Config) -> Result<ImportResult, ConfigError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
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
        Some(path.display().to_string()),
        base,
    ))
}

#[cfg(test)]
mod tests;
mod vrrp;
