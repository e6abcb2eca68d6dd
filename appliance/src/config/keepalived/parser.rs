//! keepalived.conf block parser: statements (keyword, arguments, optional block) from tokens.

use super::lexer::{Tok, Token};
use super::{Ctx, Severity, MAX_NESTING};

/// One statement: keyword, arguments on the same line, optional `{ ... }` block.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) key: String,
    pub(super) args: Vec<String>,
    pub(super) block: Option<Vec<Node>>,
    pub(super) file: Option<usize>,
    pub(super) line: usize,
    pub(super) end_line: usize,
}

pub(super) struct Parser<'a> {
    pub(super) toks: &'a [Token],
    pub(super) pos: usize,
    /// Blocks currently open (bounded by [`MAX_NESTING`]).
    pub(super) depth: usize,
}

impl Parser<'_> {
    /// Parse the block whose `{` was just consumed, or skip it when it nests too deep.
    pub(super) fn child(
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
    pub(super) fn skip_block(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        file: Option<usize>,
        line: usize,
    ) -> usize {
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
    pub(super) fn block(
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
