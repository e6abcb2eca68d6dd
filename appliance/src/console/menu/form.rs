//! One table of fields per console form, and the one loop that asks, notes and stages them.
//!
//! A form is a list of [`Field`]s: the prompt, the name in the change summary, how the value
//! is shown, the parser (which calls `config`'s rule) and where the value goes in the
//! candidate, plus optionally the config problem path checked once the value is in place.
//! [`Menu::form`] asks each field (Enter keeps the value in brackets), asks again while the
//! parser or config's rules refuse it, and lists what changed; a new field is one more row.

use super::{Changes, Daemon, Menu, Port, R};
use crate::config::validate::Report;
use crate::config::Config;
use crate::console::fields::Parsed;

type Show<'a> = Box<dyn Fn(&Config) -> String + 'a>;
type Current<'a> = Box<dyn Fn(&Config, &Config) -> String + 'a>;
type Set<'a> = Box<dyn Fn(&mut Config, &str) -> Parsed<()> + 'a>;

/// One field of a console form.
pub(super) struct Field<'a> {
    prompt: String,
    name: String,
    show: Show<'a>,
    current: Option<Current<'a>>,
    set: Set<'a>,
    path: Option<&'static str>,
    when: Option<fn(&Config) -> bool>,
}

impl<'a> Field<'a> {
    /// A field asked with `prompt`, listed as `name` among the changes, shown by `show`;
    /// typed text goes through `parse` and the value into the config through `set`.
    pub(super) fn new<T: 'a>(
        prompt: impl Into<String>,
        name: impl Into<String>,
        show: impl Fn(&Config) -> String + 'a,
        parse: impl Fn(&str) -> Parsed<T> + 'a,
        set: impl Fn(&mut Config, T) + 'a,
    ) -> Self {
        Self::new_in(prompt, name, show, move |_, s| parse(s), set)
    }

    /// Like [`Field::new`] for a parser that needs the values entered so far (the config
    /// being edited), e.g. a gateway inside the address just typed.
    pub(super) fn new_in<T: 'a>(
        prompt: impl Into<String>,
        name: impl Into<String>,
        show: impl Fn(&Config) -> String + 'a,
        parse: impl Fn(&Config, &str) -> Parsed<T> + 'a,
        set: impl Fn(&mut Config, T) + 'a,
    ) -> Self {
        Field {
            prompt: prompt.into(),
            name: name.into(),
            show: Box::new(show),
            current: None,
            set: Box::new(move |c, s| {
                let v = parse(c, s)?;
                set(c, v);
                Ok(())
            }),
            path: None,
            when: None,
        }
    }

    /// After each value, also check config's rules for problems at `path` (or inside it).
    pub(super) fn checked(mut self, path: &'static str) -> Self {
        self.path = Some(path);
        self
    }

    /// Ask only when `cond` holds for the config being edited.
    pub(super) fn when(mut self, cond: fn(&Config) -> bool) -> Self {
        self.when = Some(cond);
        self
    }

    /// The value in brackets, from (the config before the form, the one being edited), when
    /// it is not `show` of the config before the form.
    pub(super) fn current(mut self, f: impl Fn(&Config, &Config) -> String + 'a) -> Self {
        self.current = Some(Box::new(f));
        self
    }
}

/// How a form's checked fields meet config's rules.
#[derive(Clone, Copy)]
pub(super) struct Rules {
    /// The rule set: `config::validate`, or `ha_problems` for `[ha]`.
    pub check: fn(&Config) -> Report,
    /// While false for the edited config, a problem is only a note and the value is kept.
    pub binding: fn(&Config) -> bool,
    /// How such a note starts.
    pub note: &'static str,
}

fn always(_: &Config) -> bool {
    true
}

impl Rules {
    /// Every rule of `config::validate`, always binding.
    pub(super) const ALL: Rules = Rules {
        check: crate::config::validate,
        binding: always,
        note: "note",
    };
}

/// True when a problem at `p` is about the field at `path` (itself, an element, a member).
fn at(p: &str, path: &str) -> bool {
    p.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
}

impl<P: Port, D: Daemon> Menu<P, D> {
    /// Ask every field of `rows` over `c`; returns the edited config and its changes.
    pub(super) fn form(
        &mut self,
        c: &Config,
        rows: &[Field<'_>],
        rules: Rules,
    ) -> R<(Config, Changes)> {
        let mut n = c.clone();
        for f in rows {
            if f.when.is_some_and(|w| !w(&n)) {
                continue;
            }
            let current = match &f.current {
                Some(cur) => cur(c, &n),
                None => (f.show)(c),
            };
            self.ask_field(&mut n, f, &current, rules)?;
        }
        let mut ch = Changes::default();
        let mut named: Vec<&str> = Vec::new();
        for f in rows {
            // Fields that share a name (a list asked item by item) are listed once.
            if !named.contains(&f.name.as_str()) {
                named.push(&f.name);
                ch.note(&f.name, (f.show)(c), (f.show)(&n));
            }
        }
        Ok((n, ch))
    }

    /// Ask one field until its parser and config's rules at its path accept it in `n`.
    fn ask_field(&mut self, n: &mut Config, f: &Field<'_>, current: &str, rules: Rules) -> R<()> {
        loop {
            let trial = self.ask(&f.prompt, current, |s| {
                let mut t = n.clone();
                (f.set)(&mut t, s).map(|()| t)
            })?;
            let Some(path) = f.path else {
                *n = trial;
                return Ok(());
            };
            let r = (rules.check)(&trial);
            for w in r.warnings.iter().filter(|p| at(&p.path, path)) {
                self.say(&format!("warning: {}", w.message));
            }
            let errors: Vec<&str> = r
                .errors
                .iter()
                .filter(|p| at(&p.path, path))
                .map(|p| p.message.as_str())
                .collect();
            if errors.is_empty() {
                *n = trial;
                return Ok(());
            }
            if !(rules.binding)(&trial) {
                for e in errors {
                    self.say(&format!("{}: {e}", rules.note));
                }
                *n = trial;
                return Ok(());
            }
            for e in errors {
                self.say(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::at;

    #[test]
    fn problem_paths_match_the_field_and_what_is_inside_it() {
        assert!(at("ntp.poll_s", "ntp.poll_s"));
        assert!(at("management.allow[1]", "management.allow"));
        assert!(at("syslog.collectors[0].address", "syslog.collectors"));
        assert!(!at("ha.priority", "ha.pri"));
        assert!(!at("management.address", "management.allow"));
    }
}
