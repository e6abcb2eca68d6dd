//! `include` handling: wildcard expansion and splicing included files into the token stream.
//!
//! File access goes through [`Includes`], so the tokenizer and the splicing never touch the
//! file system themselves: pasted text gets [`NoIncludes`], files get [`FsIncludes`], and tests
//! can give an in-memory tree.

use std::path::{Path, PathBuf};

use super::lexer::{tokenize, Tok, Token};
use super::{Ctx, Severity, MAX_INCLUDE_DEPTH, MAX_INCLUDE_FILES, MAX_INPUT};

/// Simple `*`/`?` wildcard match of one file name (keepalived's include takes glob patterns).
///
/// Iterative with single back-tracking to the last `*`: linear in practice, no recursion, so a
/// long pattern of stars can neither overflow the stack nor take exponential time.
pub(super) fn wildcard(pat: &[u8], name: &[u8]) -> bool {
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

/// Where included files come from.
pub trait Includes {
    /// The files of one directory (for wildcard patterns); empty when it cannot be read.
    fn list(&self, dir: &Path) -> Vec<PathBuf>;
    /// A file's size in bytes, when known without reading it (to refuse huge files early).
    fn size(&self, path: &Path) -> Option<u64>;
    /// A file's bytes.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// Includes from the file system (`import_file`).
pub struct FsIncludes;

impl Includes for FsIncludes {
    fn list(&self, dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
    fn size(&self, path: &Path) -> Option<u64> {
        std::fs::metadata(path).ok().map(|m| m.len())
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// No includes can be followed (pasted text: there is no directory to resolve them in).
pub struct NoIncludes;

impl Includes for NoIncludes {
    fn list(&self, _: &Path) -> Vec<PathBuf> {
        Vec::new()
    }
    fn size(&self, _: &Path) -> Option<u64> {
        None
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} cannot be read from pasted text", path.display()),
        ))
    }
}

pub(super) fn expand_include(pattern: &str, dir: &Path, fs: &dyn Includes) -> Vec<PathBuf> {
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
    let mut hits: Vec<PathBuf> = fs
        .list(&parent)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| wildcard(name.as_bytes(), n.to_string_lossy().as_bytes()))
        })
        .collect();
    hits.sort();
    hits
}

/// Tokenize `text` and splice in included files (when `dir` is known).
pub(super) fn load_tokens(
    text: &str,
    file: Option<usize>,
    dir: Option<&Path>,
    fs: &dyn Includes,
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
            let paths = expand_include(pat, dir, fs);
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
                let size = fs.size(&p).unwrap_or(0);
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
                match fs.read(&p) {
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
                        load_tokens(&text, Some(idx), Some(&sub_dir), fs, depth + 1, ctx, out);
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
