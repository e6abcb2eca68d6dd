//! keepalived.conf tokenizer: words, `{` and `}`, with file and line; comments dropped.

use super::{Ctx, Severity};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Open,
    Close,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) file: Option<usize>,
    pub(super) line: usize,
}

pub(super) fn tokenize(text: &str, file: Option<usize>, ctx: &mut Ctx, out: &mut Vec<Token>) {
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
