//! The three configurations (running, candidate, saved) and their edit/apply/save rules.
//!
//! Pure: side effects (validation, network + IPVS apply, flash save) go through the
//! [`Effects`] trait, which the daemon wires to the real modules and tests fake.
//!
//! Rules:
//! - Every edit lands in the candidate. A candidate with validation errors may be
//!   staged (an operator may need several edits to move a subnet), but `apply` refuses
//!   it and lists every problem.
//! - `apply` makes the candidate running only if the side effect succeeds; on failure
//!   the running config is unchanged.
//! - `save` writes the running config (not unapplied candidate edits) to flash.
//! - `revert` copies the running (or saved) config into the candidate.
//! - `drain` acts at once on the running config and on the candidate and leaves the
//!   running config unsaved, because draining is an operational action.
//! - The console password hash is owned by `set_password`: it is written to all three
//!   configs and saved to flash at once; `set_candidate` never changes it.
//! - During a store fault the console never runs on the factory config's password: the last
//!   known hash is kept in tmpfs across daemon restarts and used; when none is known nobody is
//!   admitted ([`ConfigSession::keep_password`]).

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::config::{AdminState, Config, RealServer, VirtualService};
use crate::control::password::{self, Backoff, PasswordError};
use crate::control::proto::{
    DiffInfo, Reply, Request, Response, ServerOp, Validation, VerifyInfo, Which,
};

/// A side effect failed; the message says what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EffectError(pub String);

/// Side effects of the session, implemented by the daemon (real) or tests (fake).
pub trait Effects: Send {
    /// Validate a config (the daemon calls `config::validate`).
    fn validate(&self, config: &Config) -> Validation;
    /// Make `config` the live state (network, IPVS, prober); returns a summary.
    fn apply(&mut self, config: &Config) -> Result<String, EffectError>;
    /// Write `config` to the flash store; returns the new generation.
    fn save(&mut self, config: &Config) -> Result<u64, EffectError>;
}

/// Why a session operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Apply refused: the candidate has validation errors.
    #[error("the candidate cannot be applied, fix these problems first:\n{}", bullet(&.0.errors))]
    Invalid(Validation),
    /// The apply side effect failed.
    #[error("apply failed, the running config is unchanged: {0}")]
    Apply(EffectError),
    /// The save side effect failed.
    #[error("save failed, flash still holds the previous config: {0}")]
    Save(EffectError),
    /// Unknown service name.
    #[error("there is no service named '{0}' (see 'appliance show services')")]
    NoService(String),
    /// Unknown server.
    #[error("server {1} is not in service '{0}' (see 'appliance show servers')")]
    NoServer(String, SocketAddrV4),
    /// Server already present.
    #[error("server {1} is already in service '{0}'")]
    Duplicate(String, SocketAddrV4),
    /// Pool full.
    #[error("service '{0}' already has the maximum of {max} servers", max = crate::config::MAX_SERVERS)]
    Full(String),
    /// Weight out of range.
    #[error("weight {0} is out of range, use 1 to 65535")]
    Weight(u32),
    /// Wrong current password.
    #[error("the current password is wrong")]
    WrongPassword,
    /// A live import would discard edits staged in the candidate.
    #[error("the candidate holds unapplied edits (see 'appliance config diff'); apply or revert them, then import again")]
    PendingEdits,
    /// A password was tried again during the back-off after wrong ones.
    #[error("too many wrong passwords: wait {0} s before trying again")]
    TooSoon(u32),
    /// Password policy or hashing.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The store is faulty and no password is known: nobody may log in or set one.
    #[error("nobody can log in: the config store is faulty ({0}) and no console password is known since this boot; see the console for the recovery")]
    LoginBlocked(String),
    /// Revert asked to copy the candidate onto itself.
    #[error("revert copies 'running' or 'saved' into the candidate; 'candidate' makes no sense")]
    RevertSource,
}

fn bullet(items: &[String]) -> String {
    items
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Running, candidate and saved configs plus password back-off.
pub struct ConfigSession<E: Effects> {
    running: Config,
    candidate: Config,
    saved: Config,
    effects: E,
    backoff: Backoff,
    /// Where the back-off survives a daemon restart (`None`: memory only, as in tests).
    backoff_file: Option<std::path::PathBuf>,
    /// Where the last known password hash survives a daemon restart (`None`: not kept).
    hash_file: Option<std::path::PathBuf>,
    /// Set when nobody may log in: the store fault, with no password known.
    login_blocked: Option<String>,
    hash_cost: (u32, u32),
}

impl<E: Effects> ConfigSession<E> {
    /// Start from what flash holds (`saved`) and what was applied at boot (`running`).
    pub fn new(saved: Config, running: Config, effects: E) -> Self {
        ConfigSession {
            candidate: running.clone(),
            running,
            saved,
            effects,
            backoff: Backoff::default(),
            backoff_file: None,
            hash_file: None,
            login_blocked: None,
            hash_cost: (
                argon2::Params::DEFAULT_M_COST,
                argon2::Params::DEFAULT_T_COST,
            ),
        }
    }

    /// Keep the login back-off in `path` (tmpfs) and take over what it holds; `now` is on the
    /// boot clock ([`password::boot_clock`]), as every later `now` must be.
    pub fn set_backoff_file(&mut self, path: std::path::PathBuf, now: Duration) {
        let (backoff, problem) = Backoff::load(&path, now);
        if let Some(problem) = problem {
            tracing::warn!(%problem, "console login back-off");
        }
        if backoff.failures() > 0 {
            tracing::info!(
                failures = backoff.failures(),
                wait_s = backoff.wait_s(now),
                "console login back-off carried over from before the restart"
            );
        }
        self.backoff = backoff;
        self.backoff_file = Some(path);
    }

    /// Keep the console password across daemon restarts in `path` (tmpfs) and decide who may
    /// log in. Without a store fault the running config's hash rules and is kept in `path`.
    /// With one (`store_fault`: why), the running config is the factory one, whose password
    /// must never admit anyone: the last known hash (kept in `path` by an earlier daemon of
    /// this boot, else `stored_hash`, read from a stored record that cannot run) goes into all
    /// three configs; when none is known nobody is admitted until the store is erased.
    pub fn keep_password(
        &mut self,
        path: std::path::PathBuf,
        store_fault: Option<&str>,
        stored_hash: &str,
    ) {
        let Some(reason) = store_fault else {
            self.login_blocked = None;
            let hash = self.running.console.password_hash.clone();
            if let Err(e) = password::keep_known_hash(&path, &hash) {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the console password across restarts");
            }
            self.hash_file = Some(path);
            return;
        };
        let kept = password::load_known_hash(&path).unwrap_or_else(|problem| {
            tracing::warn!(%problem, "last known console password");
            None
        });
        let known =
            kept.or_else(|| password::usable_hash(stored_hash).then(|| stored_hash.to_owned()));
        self.hash_file = Some(path);
        match known {
            Some(hash) => {
                let bounded = crate::config::bounded(&hash);
                for c in [&mut self.running, &mut self.candidate, &mut self.saved] {
                    c.console.password_hash = bounded.clone();
                }
                self.persist_hash();
                tracing::warn!(%reason, "config store fault: the console stays locked with the last known password");
            }
            None => {
                for c in [&mut self.running, &mut self.candidate, &mut self.saved] {
                    c.console.password_hash.clear();
                }
                tracing::error!(%reason, "config store fault and no console password known: nobody can log in until the store is erased (factory reset at the console)");
                self.login_blocked = Some(reason.to_owned());
            }
        }
    }

    /// Why nobody may log in (a store fault with no password known), if so.
    pub fn login_blocked(&self) -> Option<&str> {
        self.login_blocked.as_deref()
    }

    fn persist_hash(&self) {
        if let Some(path) = &self.hash_file {
            if let Err(e) = password::keep_known_hash(path, &self.running.console.password_hash) {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the console password across restarts");
            }
        }
    }

    fn persist_backoff(&self) {
        if let Some(path) = &self.backoff_file {
            if let Err(e) = self.backoff.store(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the login back-off across restarts");
            }
        }
    }

    /// Start a password check: refused (with the wait) during the back-off; otherwise counted
    /// as a failure before the slow check, so a crash during the check still counts.
    fn begin_attempt(&mut self, now: Duration) -> Result<u32, u32> {
        let wait = self.backoff.wait_s(now);
        if wait > 0 {
            return Err(wait);
        }
        let delay = self.backoff.failure(now);
        self.persist_backoff();
        Ok(delay)
    }

    /// Finish a password check begun with [`Self::begin_attempt`].
    fn end_attempt(&mut self, ok: bool, what: &str) {
        if ok {
            self.backoff.success();
            self.persist_backoff();
        } else if self.backoff.lockout() {
            tracing::warn!(
                failures = self.backoff.failures(),
                wait_s = password::MAX_BACKOFF_S,
                "console locked out after repeated wrong passwords ({what}); each further attempt waits longer"
            );
        }
    }

    /// Use cheaper argon2 parameters (memory KiB, passes); for tests only.
    pub fn set_hash_cost(&mut self, m_kib: u32, t: u32) {
        self.hash_cost = (m_kib, t);
    }

    /// The running config.
    pub fn running(&self) -> &Config {
        &self.running
    }
    /// The candidate config.
    pub fn candidate(&self) -> &Config {
        &self.candidate
    }
    /// The saved config.
    pub fn saved(&self) -> &Config {
        &self.saved
    }
    /// One of the three.
    pub fn get(&self, which: Which) -> &Config {
        match which {
            Which::Running => &self.running,
            Which::Candidate => &self.candidate,
            Which::Saved => &self.saved,
        }
    }
    /// The side-effect implementation.
    pub fn effects(&self) -> &E {
        &self.effects
    }
    /// Mutable side-effect implementation.
    pub fn effects_mut(&mut self) -> &mut E {
        &mut self.effects
    }
    /// Candidate differs from running.
    pub fn unapplied(&self) -> bool {
        self.candidate != self.running
    }
    /// Running differs from saved.
    pub fn unsaved(&self) -> bool {
        self.running != self.saved
    }
    /// Validation of the current candidate.
    pub fn validation(&self) -> Validation {
        self.effects.validate(&self.candidate)
    }
    /// A console password is set.
    pub fn password_set(&self) -> bool {
        !self.running.console.password_hash.is_empty()
    }

    /// Stage a new candidate (keeping the password hash); returns every problem.
    pub fn set_candidate(&mut self, mut config: Config) -> Validation {
        config.console.password_hash = self.candidate.console.password_hash.clone();
        self.candidate = config;
        self.validation()
    }

    /// Replace the configuration in one request (admin `config import`), serialised with the
    /// console's edits by the daemon's session lock.
    ///
    /// Validated first; with `live` it is applied and then saved, refused while the candidate
    /// holds unapplied edits (an import must not silently discard them); without `live` it is
    /// only saved (used at the next start). The password hash is kept, as for any candidate.
    pub fn import(&mut self, mut config: Config, live: bool) -> Result<String, SessionError> {
        config.console.password_hash = self.running.console.password_hash.clone();
        let v = self.effects.validate(&config);
        if !v.is_ok() {
            return Err(SessionError::Invalid(v));
        }
        if !live {
            let generation = self.effects.save(&config).map_err(SessionError::Save)?;
            self.saved = config;
            return Ok(format!(
                "saved to flash as generation {generation}; the running config is unchanged until the next start"
            ));
        }
        if self.unapplied() {
            return Err(SessionError::PendingEdits);
        }
        let summary = self.effects.apply(&config).map_err(SessionError::Apply)?;
        self.running = config.clone();
        self.candidate = config;
        let generation = self.effects.save(&self.running).map_err(|e| {
            SessionError::Save(EffectError(format!(
                "{}; the imported config runs but is NOT saved: run 'appliance save'",
                e.0
            )))
        })?;
        self.saved = self.running.clone();
        Ok(format!(
            "applied: {summary}; saved to flash (generation {generation})"
        ))
    }

    /// Unified-style diff running -> candidate of the TOML forms.
    pub fn diff(&self) -> Vec<String> {
        unified_diff(
            &config_toml(&self.running),
            &config_toml(&self.candidate),
            3,
        )
    }

    /// Make the candidate running.
    pub fn apply(&mut self) -> Result<String, SessionError> {
        let v = self.validation();
        if !v.is_ok() {
            return Err(SessionError::Invalid(v));
        }
        if !self.unapplied() {
            return Ok("nothing to apply: the candidate equals the running config".into());
        }
        let summary = self
            .effects
            .apply(&self.candidate)
            .map_err(SessionError::Apply)?;
        self.running = self.candidate.clone();
        Ok(format!("applied: {summary}"))
    }

    /// Save the running config to flash.
    pub fn save(&mut self) -> Result<String, SessionError> {
        let generation = self
            .effects
            .save(&self.running)
            .map_err(SessionError::Save)?;
        Ok(self.saved_as(self.running.clone(), generation))
    }

    /// Record that `config` is in flash as `generation`, for a save written outside the
    /// session (off the event loop, without holding it); returns what [`Self::save`] says.
    pub fn saved_as(&mut self, config: Config, generation: u64) -> String {
        self.saved = config;
        let mut msg = format!("saved the running config to flash (generation {generation})");
        if self.running != self.saved {
            msg.push_str("; note: the running config changed during the save and is not saved");
        } else if self.unapplied() {
            msg.push_str("; note: candidate changes that are not applied were not saved");
        }
        msg
    }

    /// Copy the running or saved config into the candidate.
    pub fn revert(&mut self, from: Which) -> Result<String, SessionError> {
        let src = match from {
            Which::Running => self.running.clone(),
            Which::Saved => self.saved.clone(),
            Which::Candidate => return Err(SessionError::RevertSource),
        };
        let hash = self.candidate.console.password_hash.clone();
        self.candidate = src;
        self.candidate.console.password_hash = hash;
        Ok(match from {
            Which::Saved => "the candidate now holds the saved config (apply to run it)".into(),
            _ => "candidate changes discarded; the candidate equals the running config".into(),
        })
    }

    /// Act on one server (see the module docs for which actions are live).
    pub fn server_action(
        &mut self,
        service: &str,
        server: SocketAddrV4,
        op: &ServerOp,
    ) -> Result<Reply, SessionError> {
        let mut cand = self.candidate.clone();
        match op {
            ServerOp::Add { weight } => {
                if !(1..=65535).contains(weight) {
                    return Err(SessionError::Weight(*weight));
                }
                let svc = find_service(&mut cand, service)?;
                if svc
                    .servers
                    .iter()
                    .any(|s| s.address == *server.ip() && s.port == server.port())
                {
                    return Err(SessionError::Duplicate(service.into(), server));
                }
                svc.servers
                    .push(RealServer {
                        address: *server.ip(),
                        port: server.port(),
                        weight: *weight,
                        state: AdminState::Enabled,
                    })
                    .map_err(|_| SessionError::Full(service.into()))?;
            }
            ServerOp::Remove => {
                let svc = find_service(&mut cand, service)?;
                let before = svc.servers.len();
                svc.servers
                    .retain(|s| !(s.address == *server.ip() && s.port == server.port()));
                if svc.servers.len() == before {
                    return Err(SessionError::NoServer(service.into(), server));
                }
            }
            ServerOp::Enable => set_state(&mut cand, service, server, AdminState::Enabled)?,
            ServerOp::Disable => set_state(&mut cand, service, server, AdminState::Disabled)?,
            ServerOp::Drain => return self.drain(service, server),
        }
        Ok(Reply::Validation(self.set_candidate(cand)))
    }

    fn drain(&mut self, service: &str, server: SocketAddrV4) -> Result<Reply, SessionError> {
        let mut run = self.running.clone();
        set_state(&mut run, service, server, AdminState::Draining)?;
        let summary = self.effects.apply(&run).map_err(SessionError::Apply)?;
        self.running = run;
        // The candidate follows when it has the server; if it was removed there, keep that edit.
        let _ = set_state(&mut self.candidate, service, server, AdminState::Draining);
        Ok(Reply::Done {
            message: format!(
                "server {server} is draining now (weight 0, calls in progress continue): {summary}; \
                 the running config is not saved yet"
            ),
        })
    }

    /// Change the password (`old` is ignored when none is set) and save it at once.
    ///
    /// Checking `old` goes through the same back-off as a login (`now` as for
    /// [`Self::verify_password`]), so it cannot be used to guess the password faster.
    pub fn set_password(
        &mut self,
        old: &str,
        new: &str,
        now: Duration,
    ) -> Result<String, SessionError> {
        if let Some(why) = &self.login_blocked {
            return Err(SessionError::LoginBlocked(why.clone()));
        }
        if self.password_set() {
            self.begin_attempt(now).map_err(SessionError::TooSoon)?;
            let ok = password::verify_password(&self.running.console.password_hash, old);
            self.end_attempt(ok, "password change");
            if !ok {
                return Err(SessionError::WrongPassword);
            }
        }
        let hash = password::hash_password_with(new, self.hash_cost.0, self.hash_cost.1)?;
        let bounded: heapless::String<{ crate::config::HASH_LEN }> = hash
            .as_str()
            .try_into()
            .map_err(|_| PasswordError::Hash("the hash does not fit the config field".into()))?;
        let mut saved = self.saved.clone();
        saved.console.password_hash = bounded.clone();
        let generation = self.effects.save(&saved).map_err(SessionError::Save)?;
        self.saved = saved;
        self.running.console.password_hash = bounded.clone();
        self.candidate.console.password_hash = bounded;
        self.persist_hash();
        self.backoff.success();
        self.persist_backoff();
        Ok(format!(
            "password changed and saved to flash (generation {generation})"
        ))
    }

    /// Check a password at monotonic time `now`, honouring the back-off.
    pub fn verify_password(&mut self, pw: &str, now: Duration) -> VerifyInfo {
        if self.login_blocked.is_some() {
            // Nothing to check against; no back-off either, the answer cannot change.
            return VerifyInfo {
                ok: false,
                retry_after_s: 0,
            };
        }
        let delay = match self.begin_attempt(now) {
            Ok(delay) => delay,
            Err(wait) => {
                return VerifyInfo {
                    ok: false,
                    retry_after_s: wait,
                }
            }
        };
        let ok = password::verify_password(&self.running.console.password_hash, pw);
        self.end_attempt(ok, "login");
        VerifyInfo {
            ok,
            retry_after_s: if ok { 0 } else { delay },
        }
    }

    /// Handle the config-related requests; `None` for requests the daemon handles itself.
    pub fn handle(&mut self, req: &Request, now: Duration) -> Option<Response> {
        let r = match req {
            Request::GetConfig { which } => {
                let c = self.get(*which).clone();
                Ok(Reply::Config {
                    which: *which,
                    toml: config_toml(&c),
                    config: Box::new(c),
                })
            }
            Request::SetCandidate { config } => {
                Ok(Reply::Validation(self.set_candidate((**config).clone())))
            }
            Request::Diff => Ok(Reply::Diff(DiffInfo {
                lines: self.diff(),
                unsaved: self.unsaved(),
            })),
            Request::Apply => self.apply().map(|message| Reply::Done { message }),
            Request::Save => self.save().map(|message| Reply::Done { message }),
            Request::Revert { from } => self.revert(*from).map(|message| Reply::Done { message }),
            Request::ServerAction {
                service,
                server,
                action,
            } => self.server_action(service, *server, action),
            Request::ImportConfig { config, live } => self
                .import((**config).clone(), *live)
                .map(|message| Reply::Done { message }),
            Request::SetPassword { old, new } => self
                .set_password(old, new, now)
                .map(|message| Reply::Done { message }),
            Request::VerifyPassword { password } => {
                Ok(Reply::Verified(self.verify_password(password, now)))
            }
            // Live state and devices: the daemon (or the test double) answers these.
            Request::Status
            | Request::ShowServers
            | Request::ShowServices
            | Request::DrainStatus { .. }
            | Request::FactoryReset { .. }
            | Request::Reboot
            | Request::PowerOff
            | Request::Ping { .. }
            | Request::SipOptions { .. }
            | Request::Logs { .. }
            | Request::ListNics
            | Request::ImportKeepalived { .. }
            | Request::Firmware { .. } => return None,
        };
        Some(match r {
            Ok(reply) => Response::Ok(reply),
            Err(e) => Response::error(e.to_string()),
        })
    }
}

fn find_service<'a>(c: &'a mut Config, name: &str) -> Result<&'a mut VirtualService, SessionError> {
    c.services
        .iter_mut()
        .find(|s| s.name.as_str() == name)
        .ok_or_else(|| SessionError::NoService(name.into()))
}

fn set_state(
    c: &mut Config,
    service: &str,
    server: SocketAddrV4,
    state: AdminState,
) -> Result<(), SessionError> {
    let svc = find_service(c, service)?;
    let s = svc
        .servers
        .iter_mut()
        .find(|s| s.address == *server.ip() && s.port == server.port())
        .ok_or_else(|| SessionError::NoServer(service.into(), server))?;
    s.state = state;
    Ok(())
}

/// TOML text of a config (the same form as `appliance config export`).
pub fn config_toml(c: &Config) -> String {
    toml::to_string(c).unwrap_or_else(|e| format!("# cannot render config as TOML: {e}\n"))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tag {
    Same,
    Del,
    Add,
}

/// Line diff of `a` -> `b` in unified style with `context` lines around each change.
pub fn unified_diff(a: &str, b: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let ops = edit_script(&a, &b);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| *t != Tag::Same)
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    if changed.is_empty() {
        return out;
    }
    // Group changes whose gap is small enough to share context.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        match groups.last_mut() {
            Some((_, end)) if i <= *end + 2 * context + 1 => *end = i,
            _ => groups.push((i, i)),
        }
    }
    // Line numbers of each op in a and b (1-based position of the next line).
    let mut pos = Vec::with_capacity(ops.len());
    let (mut la, mut lb) = (1usize, 1usize);
    for (t, _) in &ops {
        pos.push((la, lb));
        match t {
            Tag::Same => {
                la += 1;
                lb += 1;
            }
            Tag::Del => la += 1,
            Tag::Add => lb += 1,
        }
    }
    for (s, e) in groups {
        let start = s.saturating_sub(context);
        let end = (e + context + 1).min(ops.len());
        let slice = &ops[start..end];
        let na = slice.iter().filter(|(t, _)| *t != Tag::Add).count();
        let nb = slice.iter().filter(|(t, _)| *t != Tag::Del).count();
        let (pa, pb) = pos[start];
        out.push(format!(
            "@@ -{},{} +{},{} @@",
            if na == 0 { pa - 1 } else { pa },
            na,
            if nb == 0 { pb - 1 } else { pb },
            nb
        ));
        for (t, l) in slice {
            let p = match t {
                Tag::Same => ' ',
                Tag::Del => '-',
                Tag::Add => '+',
            };
            out.push(format!("{p}{l}"));
        }
    }
    out
}

fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Tag, &'a str)> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let am = &a[pre..a.len() - suf];
    let bm = &b[pre..b.len() - suf];
    let mut ops: Vec<(Tag, &str)> = a[..pre].iter().map(|l| (Tag::Same, *l)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > 4_000_000 {
        // Too big for the quadratic table: show it as a block replacement.
        ops.extend(am.iter().map(|l| (Tag::Del, *l)));
        ops.extend(bm.iter().map(|l| (Tag::Add, *l)));
    } else {
        // lcs[i][j] = LCS length of am[i..] and bm[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((Tag::Same, am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                // Deletions before additions, like diff -u.
                ops.push((Tag::Del, am[i]));
                i += 1;
            } else {
                ops.push((Tag::Add, bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suf..].iter().map(|l| (Tag::Same, *l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Records calls; fails on demand; validates "servers on LAN subnet" like the real validator.
    #[derive(Default)]
    struct Fake {
        applied: Vec<Config>,
        saved: Vec<Config>,
        fail_apply: bool,
        fail_save: bool,
    }

    impl Effects for Fake {
        fn validate(&self, c: &Config) -> Validation {
            let mut v = Validation::default();
            for s in &c.services {
                for r in &s.servers {
                    if !c.lan.address.contains(r.address) {
                        v.errors
                            .push(format!("server {} is not on the LAN subnet", r.address));
                    }
                }
            }
            v
        }
        fn apply(&mut self, c: &Config) -> Result<String, EffectError> {
            if self.fail_apply {
                return Err(EffectError("netlink said no".into()));
            }
            self.applied.push(c.clone());
            Ok("1 op".into())
        }
        fn save(&mut self, c: &Config) -> Result<u64, EffectError> {
            if self.fail_save {
                return Err(EffectError("flash write error".into()));
            }
            self.saved.push(c.clone());
            Ok(self.saved.len() as u64)
        }
    }

    fn session() -> ConfigSession<Fake> {
        let c = Config::builtin_default();
        let mut s = ConfigSession::new(c.clone(), c, Fake::default());
        s.set_hash_cost(64, 1);
        s
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn edit_apply_save_cycle() {
        let mut s = session();
        assert!(!s.unapplied() && !s.unsaved());
        let r = s
            .server_action(
                "sip",
                sa("198.51.100.14:5060"),
                &ServerOp::Add { weight: 2 },
            )
            .unwrap();
        assert_eq!(r, Reply::Validation(Validation::default()));
        assert!(s.unapplied() && !s.unsaved());
        assert!(s.effects().applied.is_empty(), "an edit must not apply");
        let d = s.diff();
        assert!(
            d.iter().any(|l| l == "+address = \"198.51.100.14\""),
            "{d:#?}"
        );
        assert!(d[0].starts_with("@@ -"), "{d:#?}");
        assert!(s.apply().unwrap().starts_with("applied"));
        assert_eq!(s.effects().applied.len(), 1);
        assert!(!s.unapplied() && s.unsaved());
        assert!(s.save().unwrap().contains("generation 1"));
        assert!(!s.unsaved());
        assert_eq!(s.saved().services[0].servers.len(), 4);
        assert!(s.apply().unwrap().contains("nothing to apply"));
    }

    #[test]
    fn invalid_candidate_is_staged_but_not_applied() {
        let mut s = session();
        let r = s
            .server_action("sip", sa("192.0.2.9:5060"), &ServerOp::Add { weight: 1 })
            .unwrap();
        let Reply::Validation(v) = r else {
            panic!("{r:?}")
        };
        assert_eq!(v.errors, vec!["server 192.0.2.9 is not on the LAN subnet"]);
        let e = s.apply().unwrap_err();
        assert!(e
            .to_string()
            .contains("  - server 192.0.2.9 is not on the LAN subnet"));
        assert!(s.effects().applied.is_empty());
        assert_eq!(s.running(), &Config::builtin_default());
        s.revert(Which::Running).unwrap();
        assert!(!s.unapplied());
    }

    #[test]
    fn failed_effects_change_nothing() {
        let mut s = session();
        s.server_action("sip", sa("198.51.100.11:5060"), &ServerOp::Disable)
            .unwrap();
        s.effects_mut().fail_apply = true;
        let e = s.apply().unwrap_err();
        assert!(e
            .to_string()
            .contains("running config is unchanged: netlink said no"));
        assert_eq!(s.running(), &Config::builtin_default());
        assert!(s.unapplied());
        s.effects_mut().fail_apply = false;
        s.apply().unwrap();
        s.effects_mut().fail_save = true;
        assert!(s
            .save()
            .unwrap_err()
            .to_string()
            .contains("flash write error"));
        assert!(s.unsaved());
        assert_eq!(s.saved(), &Config::builtin_default());
        // Drain with a failing apply changes nothing either.
        s.effects_mut().fail_apply = true;
        assert!(s
            .server_action("sip", sa("198.51.100.12:5060"), &ServerOp::Drain)
            .is_err());
        assert_eq!(
            s.running().services[0].servers[1].state,
            AdminState::Enabled
        );
    }

    #[test]
    fn drain_is_live_and_unsaved() {
        let mut s = session();
        s.server_action("sip", sa("198.51.100.12:5060"), &ServerOp::Drain)
            .unwrap();
        assert_eq!(
            s.running().services[0].servers[1].state,
            AdminState::Draining
        );
        assert_eq!(
            s.candidate().services[0].servers[1].state,
            AdminState::Draining
        );
        assert_eq!(s.effects().applied.len(), 1);
        assert!(s.unsaved() && !s.unapplied());
    }

    #[test]
    fn server_action_errors() {
        let mut s = session();
        let e = |r: Result<Reply, SessionError>| r.unwrap_err().to_string();
        assert!(
            e(s.server_action("nope", sa("198.51.100.11:5060"), &ServerOp::Enable))
                .contains("no service named 'nope'")
        );
        assert!(
            e(s.server_action("sip", sa("198.51.100.99:5060"), &ServerOp::Remove))
                .contains("not in service 'sip'")
        );
        assert!(e(s.server_action(
            "sip",
            sa("198.51.100.11:5060"),
            &ServerOp::Add { weight: 1 }
        ))
        .contains("already in service"));
        assert!(e(s.server_action(
            "sip",
            sa("198.51.100.20:5060"),
            &ServerOp::Add { weight: 0 }
        ))
        .contains("weight 0 is out of range"));
        assert!(
            !s.unapplied(),
            "failed actions must not touch the candidate"
        );
        for i in 0..61u8 {
            s.server_action(
                "sip",
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 100 + i), 5060),
                &ServerOp::Add { weight: 1 },
            )
            .unwrap();
        }
        assert!(e(s.server_action(
            "sip",
            sa("198.51.100.250:5060"),
            &ServerOp::Add { weight: 1 }
        ))
        .contains("maximum of 64"));
    }

    #[test]
    fn revert_from_saved_and_candidate_source() {
        let mut s = session();
        s.server_action("sip", sa("198.51.100.11:5060"), &ServerOp::Remove)
            .unwrap();
        s.apply().unwrap();
        assert!(s.unsaved());
        s.revert(Which::Saved).unwrap();
        assert_eq!(s.candidate(), s.saved());
        assert!(s.unapplied());
        assert_eq!(s.revert(Which::Candidate), Err(SessionError::RevertSource));
    }

    #[test]
    fn password_first_set_change_and_backoff() {
        let mut s = session();
        assert!(!s.password_set());
        assert!(matches!(
            s.set_password("", "short", Duration::ZERO),
            Err(SessionError::Password(PasswordError::Policy))
        ));
        s.set_password("", "first-password", Duration::ZERO)
            .unwrap();
        assert!(s.password_set());
        // Saved to flash at once and identical in all three configs; no unsaved flag.
        assert_eq!(s.effects().saved.len(), 1);
        assert!(!s.unsaved() && !s.unapplied());
        assert_eq!(
            s.set_password("wrong-password", "second-password", Duration::ZERO),
            Err(SessionError::WrongPassword)
        );
        let t = Duration::from_secs(1000);
        assert!(s.verify_password("first-password", t).ok);
        let v = s.verify_password("nope", t);
        assert_eq!((v.ok, v.retry_after_s), (false, 1));
        // During the back-off even the right password is not checked.
        let v = s.verify_password("first-password", t);
        assert_eq!((v.ok, v.retry_after_s), (false, 1));
        let v = s.verify_password("nope", t + Duration::from_secs(1));
        assert_eq!(v.retry_after_s, 2);
        assert!(
            s.verify_password("first-password", t + Duration::from_secs(3))
                .ok
        );
        // set_candidate never changes the hash.
        let mut c = Config::builtin_default();
        c.hostname = crate::config::bounded("other");
        s.set_candidate(c);
        assert_eq!(
            s.candidate().console.password_hash,
            s.running().console.password_hash
        );
    }

    #[test]
    fn backoff_survives_a_restart_covers_set_password_and_logs_lockout() {
        use crate::daemon::logbuf::LogRing;
        use tracing_subscriber::layer::SubscriberExt;
        let ring = LogRing::new();
        let _log =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(ring.clone()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run/login-backoff");
        let t = Duration::from_secs(5000); // fake boot clock
        let mut s = session();
        s.set_backoff_file(file.clone(), t);
        s.set_password("", "first-password", t).unwrap();
        // Wrong old password in a password change counts like a wrong login...
        assert_eq!(
            s.set_password("guess-one", "second-password", t),
            Err(SessionError::WrongPassword)
        );
        // ...and during the back-off a change is refused without checking.
        assert_eq!(
            s.set_password("first-password", "second-password", t),
            Err(SessionError::TooSoon(1))
        );
        assert_eq!(s.verify_password("first-password", t).retry_after_s, 1);
        let mut now = t + Duration::from_secs(1);
        for _ in 0..3 {
            let v = s.verify_password("guess", now);
            assert!(!v.ok);
            now += Duration::from_secs(u64::from(v.retry_after_s));
        }
        assert_eq!(s.backoff.failures(), 4);
        assert!(
            !ring
                .recent(50)
                .iter()
                .any(|e| e.text.contains("locked out")),
            "no lockout before {} failures",
            password::LOCKOUT_FAILURES
        );
        // The daemon crashes and respawns: a new session takes the back-off over.
        let mut s = session();
        s.set_password("", "first-password", now).unwrap();
        s.set_backoff_file(file.clone(), now - Duration::from_secs(1));
        assert_eq!(s.backoff.failures(), 4);
        let v = s.verify_password("first-password", now - Duration::from_secs(1));
        assert_eq!((v.ok, v.retry_after_s), (false, 1), "wait carried over");
        let v = s.verify_password("guess", now);
        assert_eq!((v.ok, v.retry_after_s), (false, 16));
        let locked: Vec<_> = ring
            .recent(50)
            .into_iter()
            .filter(|e| e.text.contains("locked out"))
            .collect();
        assert_eq!(locked.len(), 1, "{locked:?}");
        assert_eq!(locked[0].level, "WARN");
        assert!(locked[0].text.contains("failures=5"), "{}", locked[0].text);
        // Success resets the file too: the next restart starts clean.
        now += Duration::from_secs(16);
        assert!(s.verify_password("first-password", now).ok);
        let mut s = session();
        s.set_password("", "first-password", now).unwrap();
        s.set_backoff_file(file, now);
        assert_eq!(s.backoff.failures(), 0);
    }

    /// A store fault never runs the console on the factory (empty) password: the hash kept in
    /// tmpfs by an earlier daemon of this boot stands in, else a readable record's, else nobody.
    #[test]
    fn store_fault_keeps_the_last_known_password_or_admits_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run/console-hash");
        let t = Duration::from_secs(100);
        // A healthy start keeps the stored hash; a password change updates it.
        let mut s = session();
        s.keep_password(file.clone(), None, "");
        assert!(!file.exists(), "no password yet, nothing kept");
        s.set_password("", "first-password", t).unwrap();
        let first = s.running().console.password_hash.to_string();
        assert_eq!(password::load_known_hash(&file), Ok(Some(first.clone())));

        // The daemon respawns and finds the store faulty: the session holds the factory
        // config (no password), yet the console stays locked with the last known one.
        let mut s = session();
        s.keep_password(file.clone(), Some("both slots are corrupt"), "");
        assert_eq!(s.login_blocked(), None);
        assert!(s.password_set());
        for w in [Which::Running, Which::Candidate, Which::Saved] {
            assert_eq!(s.get(w).console.password_hash.as_str(), first);
        }
        assert!(!s.unsaved() && !s.unapplied(), "the stand-in is no edit");
        assert!(!s.verify_password("", t).ok, "never an empty password");
        assert!(
            !s.verify_password("other-password", t + Duration::from_secs(5))
                .ok
        );
        assert!(
            s.verify_password("first-password", t + Duration::from_secs(10))
                .ok
        );
        // A candidate staged and applied during the fault keeps it too.
        let mut c = Config::builtin_default();
        c.hostname = crate::config::bounded("taken-over");
        s.set_candidate(c);
        s.apply().unwrap();
        assert_eq!(s.running().console.password_hash.as_str(), first);

        // No file (fault found at boot), but a record that was read and fails validation.
        std::fs::remove_file(&file).unwrap();
        let mut s = session();
        s.keep_password(file.clone(), Some("invalid under this firmware"), &first);
        assert!(s.verify_password("first-password", t).ok);
        assert_eq!(
            password::load_known_hash(&file),
            Ok(Some(first.clone())),
            "kept for the next respawn"
        );

        // Nothing known (fault at boot, the kept file damaged): nobody gets in, and no
        // password can be set in its place, not even the first one.
        std::fs::write(&file, "garbage").unwrap();
        let mut s = session();
        s.keep_password(file.clone(), Some("unreadable: I/O error"), "not-a-hash");
        assert_eq!(s.login_blocked(), Some("unreadable: I/O error"));
        assert!(!s.password_set());
        assert!(!s.verify_password("", t).ok);
        assert!(!s.verify_password("first-password", t).ok);
        let e = s.set_password("", "new-password-1", t).unwrap_err();
        assert!(matches!(e, SessionError::LoginBlocked(_)), "{e}");
        assert!(e.to_string().contains("nobody can log in"), "{e}");
        assert!(s.effects().saved.is_empty(), "nothing was written");
        assert!(s.running().console.password_hash.is_empty());

        // A factory config that ships a hash is never the stand-in either.
        let mut factory = Config::builtin_default();
        factory.console.password_hash = crate::config::bounded(&first);
        let mut s = ConfigSession::new(factory.clone(), factory, Fake::default());
        std::fs::remove_file(&file).unwrap();
        s.keep_password(file.clone(), Some("both slots are corrupt"), "");
        assert!(s.login_blocked().is_some());
        assert!(!s.verify_password("first-password", t).ok);
    }

    #[test]
    fn import_is_one_step_and_keeps_console_edits() {
        let mut s = session();
        let mut c = s.running().clone();
        c.hostname = crate::config::bounded("imported");
        // Saved only: running and candidate stay.
        let m = s.import(c.clone(), false).unwrap();
        assert!(m.contains("running config is unchanged"), "{m}");
        assert_eq!(s.saved().hostname.as_str(), "imported");
        assert_ne!(s.running().hostname.as_str(), "imported");
        // A console user's staged edit blocks a live import and survives it.
        let mut edit = s.running().clone();
        edit.hostname = crate::config::bounded("console-edit");
        s.set_candidate(edit);
        assert_eq!(s.import(c.clone(), true), Err(SessionError::PendingEdits));
        assert_eq!(s.candidate().hostname.as_str(), "console-edit");
        s.revert(Which::Running).unwrap();
        let m = s.import(c.clone(), true).unwrap();
        assert!(m.starts_with("applied") && m.contains("saved"), "{m}");
        assert_eq!(s.running(), s.saved());
        assert_eq!(s.candidate(), s.running());
        assert_eq!(s.running().hostname.as_str(), "imported");
        // Invalid: nothing changes.
        let before = (
            s.running().clone(),
            s.saved().clone(),
            s.effects().saved.len(),
        );
        let mut bad = c;
        bad.services[0].servers[0].address = std::net::Ipv4Addr::new(192, 0, 2, 99);
        assert!(matches!(s.import(bad, true), Err(SessionError::Invalid(_))));
        assert_eq!(
            (
                s.running().clone(),
                s.saved().clone(),
                s.effects().saved.len()
            ),
            before
        );
    }

    #[test]
    fn handle_maps_requests_and_errors() {
        let mut s = session();
        let now = Duration::ZERO;
        assert!(s.handle(&Request::Status, now).is_none());
        let r = s.handle(&Request::Apply, now).unwrap();
        assert!(matches!(r, Response::Ok(Reply::Done { .. })), "{r:?}");
        let r = s
            .handle(
                &Request::Revert {
                    from: Which::Candidate,
                },
                now,
            )
            .unwrap();
        assert!(matches!(r, Response::Error { .. }), "{r:?}");
        let r = s
            .handle(
                &Request::GetConfig {
                    which: Which::Saved,
                },
                now,
            )
            .unwrap();
        let Response::Ok(Reply::Config { toml, .. }) = r else {
            panic!()
        };
        assert!(toml.contains("hostname = \"sip-lb\""));
    }

    #[test]
    fn unified_diff_shapes() {
        assert!(unified_diff("a\nb\n", "a\nb\n", 3).is_empty());
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let b = "1\n2\n3\n4\nX\n6\n7\n8\n9\n10\n11\n12\nY\n";
        let d = unified_diff(a, b, 1);
        assert_eq!(
            d,
            vec![
                "@@ -4,3 +4,3 @@",
                " 4",
                "-5",
                "+X",
                " 6",
                "@@ -12,1 +12,2 @@",
                " 12",
                "+Y"
            ]
        );
        assert_eq!(
            unified_diff("", "new\n", 3),
            vec!["@@ -0,0 +1,1 @@", "+new"]
        );
        assert_eq!(
            unified_diff("old\n", "", 3),
            vec!["@@ -1,1 +0,0 @@", "-old"]
        );
    }
}
