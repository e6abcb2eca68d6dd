//! Apply as a transaction, pure: the steps an apply takes, which parts a failure at one
//! of them must put back to the running config, and the sentence that says how it went.
//! [`super::live::Live`] runs the steps and the rollback.

use crate::config::Config;

/// One step of an apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Stop the VRRP runner before the network step (HA turned off): its resign removes
    /// the VIPs, which the network planner then adds back as ordinary addresses.
    VrrpStop,
    /// Interfaces, addresses, VIPs, routes, rules, router/IPVS/sync sysctls, hostname,
    /// syslog and NTP targets.
    Network,
    /// The prober's server set and the health map.
    Prober,
    /// The kernel IPVS table, programmed and read back.
    Table,
    /// The kernel's IPVS connection-sync daemons (started, stopped or restarted).
    SyncDaemons,
    /// The VRRP runner started or reconfigured (HA on).
    Vrrp,
}

impl Step {
    /// The step as the operator reads it in an error.
    pub fn name(self) -> &'static str {
        match self {
            Step::VrrpStop => "VRRP stop",
            Step::Network => "network",
            Step::Prober => "prober",
            Step::Table => "IPVS table",
            Step::SyncDaemons => "IPVS sync daemons",
            Step::Vrrp => "VRRP",
        }
    }

    /// What the step changes, as a rollback sentence names it.
    fn part(self) -> &'static str {
        match self {
            Step::Network => "the network",
            Step::Prober => "the probed servers",
            Step::Table => "the IPVS table",
            Step::SyncDaemons => "the IPVS sync daemons",
            Step::VrrpStop | Step::Vrrp => "the VRRP settings",
        }
    }
}

/// The order in which parts are put back: the order a boot brings them up (the network
/// before the table; VRRP last, after the IPVS services exist).
const RESTORE_ORDER: [Step; 5] = [
    Step::Network,
    Step::Prober,
    Step::Table,
    Step::SyncDaemons,
    Step::Vrrp,
];

/// The steps an apply of `after` takes, in order. The sync daemons step runs with HA off
/// too: it stops daemons the running config had.
pub fn plan(after: &Config) -> Vec<Step> {
    let mut steps = Vec::with_capacity(6);
    if !after.ha.enabled {
        steps.push(Step::VrrpStop);
    }
    steps.extend([Step::Network, Step::Prober, Step::Table, Step::SyncDaemons]);
    if after.ha.enabled {
        steps.push(Step::Vrrp);
    }
    steps
}

/// The parts to put back after `failed` failed in `plan`, in restore order: every step
/// that ran before it, and the failed step itself (it may have changed something before
/// failing). A stopped runner is put back by restoring the VRRP settings.
pub fn rollback(plan: &[Step], failed: Step) -> Vec<Step> {
    let end = plan
        .iter()
        .position(|s| *s == failed)
        .map_or(plan.len(), |i| i + 1);
    let touched: Vec<Step> = plan[..end]
        .iter()
        .map(|s| match s {
            Step::VrrpStop => Step::Vrrp,
            other => *other,
        })
        .collect();
    RESTORE_ORDER
        .into_iter()
        .filter(|s| touched.contains(s))
        .collect()
}

/// The error of a failed apply: what failed (its message names the step), then the
/// rollback's outcome. `problems` are the parts the rollback could not put back.
pub fn failure_message(
    failed: Step,
    error: &str,
    restored: &[Step],
    problems: &[String],
) -> String {
    let error = if error.trim().is_empty() {
        format!("{} step failed", failed.name())
    } else {
        error.to_string()
    };
    if !problems.is_empty() {
        return format!("{error}; rollback INCOMPLETE: {}", problems.join("; "));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in restored.iter().map(|s| s.part()) {
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    let list = match parts.as_slice() {
        [] => return format!("{error}; nothing was changed"),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let verb = match parts.as_slice() {
        [one] if !one.ends_with('s') => "is",
        _ => "are",
    };
    format!("{error}; {list} {verb} back to the running config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ha(on: bool) -> Config {
        let mut c = Config::builtin_default();
        c.ha.enabled = on;
        c
    }

    #[test]
    fn the_plan_stops_vrrp_first_when_ha_goes_off_and_starts_it_last_when_on() {
        assert_eq!(
            plan(&ha(false)),
            [
                Step::VrrpStop,
                Step::Network,
                Step::Prober,
                Step::Table,
                Step::SyncDaemons
            ]
        );
        assert_eq!(
            plan(&ha(true)),
            [
                Step::Network,
                Step::Prober,
                Step::Table,
                Step::SyncDaemons,
                Step::Vrrp
            ]
        );
    }

    #[test]
    fn a_failure_puts_back_every_step_that_ran_and_itself() {
        let on = plan(&ha(true));
        assert_eq!(rollback(&on, Step::Network), [Step::Network]);
        assert_eq!(
            rollback(&on, Step::Table),
            [Step::Network, Step::Prober, Step::Table]
        );
        assert_eq!(
            rollback(&on, Step::SyncDaemons),
            [Step::Network, Step::Prober, Step::Table, Step::SyncDaemons]
        );
        // A runner that failed to start or reconfigure goes back to the running settings,
        // and so do the sync daemons started just before it.
        assert_eq!(rollback(&on, Step::Vrrp), RESTORE_ORDER);
    }

    #[test]
    fn a_runner_stopped_for_ha_off_is_restored_last() {
        let off = plan(&ha(false));
        // The stop itself ran first: a network failure restarts the runner after the
        // network is back, never before.
        assert_eq!(rollback(&off, Step::Network), [Step::Network, Step::Vrrp]);
        assert_eq!(rollback(&off, Step::VrrpStop), [Step::Vrrp]);
        assert_eq!(
            rollback(&off, Step::SyncDaemons),
            [
                Step::Network,
                Step::Prober,
                Step::Table,
                Step::SyncDaemons,
                Step::Vrrp
            ]
        );
    }

    #[test]
    fn the_message_names_the_step_and_what_came_back() {
        let on = plan(&ha(true));
        let back = rollback(&on, Step::SyncDaemons);
        let m = failure_message(
            Step::SyncDaemons,
            "IPVS sync daemons: no such device",
            &back,
            &[],
        );
        assert_eq!(
            m,
            "IPVS sync daemons: no such device; the network, the probed servers, the IPVS \
             table and the IPVS sync daemons are back to the running config"
        );
        let m = failure_message(Step::Vrrp, "", &[Step::Vrrp], &[]);
        assert_eq!(
            m,
            "VRRP step failed; the VRRP settings are back to the running config"
        );
        assert_eq!(
            failure_message(Step::Network, "bad", &[Step::Network], &[]),
            "bad; the network is back to the running config"
        );
        let m = failure_message(
            Step::Table,
            "IPVS table differs from the config: x",
            &rollback(&on, Step::Table),
            &["network: IPVS sysctls: missing".into()],
        );
        assert_eq!(
            m,
            "IPVS table differs from the config: x; rollback INCOMPLETE: network: IPVS \
             sysctls: missing"
        );
        assert_eq!(
            failure_message(Step::Network, "bad", &[], &[]),
            "bad; nothing was changed"
        );
    }
}
