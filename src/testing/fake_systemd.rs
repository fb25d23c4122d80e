//! An in-memory service manager: units with an `ActiveState`, the set of
//! loaded units, a call log, and failures injected per call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::Calls;
use crate::error::{Error, Result};
use crate::layout::Scope;
use crate::systemd::{ActiveState, ServiceManager};

#[derive(Debug, Default)]
struct State {
    units: BTreeMap<String, ActiveState>,
    loaded: BTreeSet<String>,
    calls: Calls,
}

/// A [`ServiceManager`] that keeps its units in memory. A started unit is
/// `active` at once; one whose `start` is made to fail is `failed`.
#[derive(Debug)]
pub(crate) struct FakeSystemd {
    scope: Scope,
    state: Mutex<State>,
}

impl FakeSystemd {
    /// A manager of `scope` with no units.
    pub fn new(scope: Scope) -> FakeSystemd {
        FakeSystemd {
            scope,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set a unit's `ActiveState` (it becomes loaded).
    pub fn set_state(&self, unit: &str, state: &str) {
        let mut s = self.state();
        s.units.insert(unit.to_owned(), state.to_owned());
        s.loaded.insert(unit.to_owned());
    }

    /// A unit's `ActiveState` (`inactive` when unknown).
    pub fn state_of(&self, unit: &str) -> ActiveState {
        self.state()
            .units
            .get(unit)
            .cloned()
            .unwrap_or_else(|| "inactive".to_owned())
    }

    /// The units that are `active`, sorted.
    pub fn active(&self) -> Vec<String> {
        self.state()
            .units
            .iter()
            .filter(|(_, s)| *s == "active")
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Every call so far, `op units...` each.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.log()
    }

    /// Inject failures (see [`Calls`]); `f` gets the rules.
    pub fn fail(&self, f: impl FnOnce(&mut Calls)) {
        f(&mut self.state().calls)
    }
}

impl ServiceManager for FakeSystemd {
    fn scope(&self) -> Scope {
        self.scope
    }

    fn daemon_reload(&self) -> Result<()> {
        self.state().calls.record("systemctl", "daemon_reload", &[])
    }

    /// Units a rule makes fail end `failed` (all of them for a rule on
    /// the call itself), the others `active`, as `systemctl start a b`
    /// leaves them when only `a` fails.
    fn start(&self, units: &[String]) -> Result<()> {
        let mut s = self.state();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let result = s.calls.record("systemctl", "start", &names);
        let failing = match (&result, s.calls.failing_targets("start", units)) {
            (Err(_), targets) if targets.is_empty() => units.to_vec(),
            (_, targets) => targets,
        };
        for unit in units {
            let state = if failing.contains(unit) {
                "failed"
            } else {
                "active"
            };
            s.units.insert(unit.clone(), state.to_owned());
        }
        result
    }

    fn stop(&self, units: &[String]) -> Result<()> {
        let mut s = self.state();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        s.calls.record("systemctl", "stop", &names)?;
        for unit in units {
            s.units.insert(unit.clone(), "inactive".to_owned());
        }
        Ok(())
    }

    fn restart(&self, unit: &str) -> Result<()> {
        let mut s = self.state();
        s.calls.record("systemctl", "restart", &[unit])?;
        s.units.insert(unit.to_owned(), "active".to_owned());
        Ok(())
    }

    fn active_states(&self, units: &[String]) -> Result<Vec<ActiveState>> {
        let mut s = self.state();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        s.calls.record("systemctl", "active_states", &names)?;
        Ok(units
            .iter()
            .map(|u| s.units.get(u).cloned().unwrap_or_else(|| "inactive".into()))
            .collect())
    }

    fn is_loaded(&self, unit: &str) -> Result<bool> {
        let mut s = self.state();
        s.calls.record("systemctl", "is_loaded", &[unit])?;
        Ok(s.loaded.contains(unit))
    }

    fn sub_state(&self, unit: &str) -> Result<String> {
        let mut s = self.state();
        s.calls.record("systemctl", "sub_state", &[unit])?;
        let active = s.units.get(unit).is_some_and(|st| st == "active");
        Ok(if active { "running" } else { "dead" }.to_owned())
    }

    fn system_state(&self) -> Result<String> {
        self.state()
            .calls
            .record("systemctl", "system_state", &[])?;
        Ok("running".to_owned())
    }

    /// A rule on `wait_active` stands for a unit still starting at the
    /// deadline; otherwise units that are not active fail it at once.
    fn wait_active(&self, units: &[String], _timeout: Duration) -> Result<()> {
        let mut s = self.state();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let timed_out = s.calls.record("systemctl", "wait_active", &names).is_err();
        let pending: Vec<String> = units
            .iter()
            .filter_map(|u| {
                let state = s.units.get(u).map(String::as_str).unwrap_or("inactive");
                match (timed_out, state) {
                    (true, "active") => Some(format!("{u} (activating)")),
                    (_, "active") => None,
                    (_, other) => Some(format!("{u} ({other})")),
                }
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        Err(Error::internal(format!(
            "services did not become active: {}",
            pending.join(", ")
        )))
    }
}
