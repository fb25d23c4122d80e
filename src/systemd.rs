//! The one place `systemctl` is run, for the user manager (default) or the
//! system manager.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::Scope;
use crate::process;

/// Runs systemctl against one manager.
#[derive(Debug, Clone)]
pub struct Systemctl {
    scope: Scope,
}

/// A unit's `ActiveState`, as systemd reports it.
pub type ActiveState = String;

/// The systemctl operations leger-backup uses: what tests replace with an
/// in-memory manager, so the stop/start guard, create and the restore's
/// rollback paths run without systemd.
pub trait ServiceManager: std::fmt::Debug + Send + Sync {
    /// The manager's scope: the words of the commands hints suggest.
    fn scope(&self) -> Scope;

    /// `daemon-reload`: reruns the generators (Quadlet's and ours).
    fn daemon_reload(&self) -> Result<()>;

    /// Start units and wait for the start jobs.
    fn start(&self, units: &[String]) -> Result<()>;

    /// Stop units and wait for the stop jobs.
    fn stop(&self, units: &[String]) -> Result<()>;

    /// Restart a unit (a oneshot `-volume.service` stays active after its
    /// first run, so `start` would do nothing).
    fn restart(&self, unit: &str) -> Result<()>;

    /// The `ActiveState` of each unit, in order (`inactive` for unknown units).
    fn active_states(&self, units: &[String]) -> Result<Vec<ActiveState>>;

    /// Whether systemd has the unit loaded (a generated unit exists for it):
    /// a restore recreates a volume through its `-volume.service` only then.
    fn is_loaded(&self, unit: &str) -> Result<bool>;

    /// A unit's `SubState`: while it is deactivating, `stop-sigterm` and the
    /// like (its main process is still there) or `stop-post` (it is gone).
    fn sub_state(&self, unit: &str) -> Result<String>;

    /// `is-system-running`: `running`, `degraded`, `stopping`, ...
    fn system_state(&self) -> Result<String>;

    /// Wait until every unit is active; fail naming those that are not
    /// (failed at once, or still starting at the deadline).
    fn wait_active(&self, units: &[String], timeout: Duration) -> Result<()>;

    /// When a timer elapses next (`NextElapseUSecRealtime`, as systemctl
    /// prints it; `now (running)` while the service it started runs and
    /// systemd has no next time yet), `None` when it is not scheduled (not
    /// loaded, stopped).
    fn timer_next_elapse(&self, _timer: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Whether a unit is active (or reloading, or activating).
    fn is_running(&self, unit: &str) -> Result<bool> {
        let states = self.active_states(&[unit.to_owned()])?;
        Ok(matches!(
            states[0].as_str(),
            "active" | "activating" | "reloading"
        ))
    }
}

impl Systemctl {
    /// systemctl for `scope`.
    pub fn new(scope: Scope) -> Systemctl {
        Systemctl { scope }
    }

    /// `systemctl [--user] ARGS`. Callers put `--` before unit names: a
    /// name is never read as an option (`--host=…`).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("systemctl");
        if self.scope == Scope::User {
            cmd.arg("--user");
        }
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        process::run_stdout(&mut self.command(args))
            .map_err(|e| unreachable_manager_hint(self.scope, e))
    }

    /// `systemctl show -p P... UNIT` as `(name, value)` pairs: with several
    /// properties `--value` would not say which value is which.
    pub fn show(&self, unit: &str, properties: &[&str]) -> Result<Vec<(String, String)>> {
        let mut args = vec!["show".to_owned()];
        args.extend(properties.iter().map(|p| format!("--property={p}")));
        args.extend(["--".to_owned(), unit.to_owned()]);
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = self.run(&words)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

impl ServiceManager for Systemctl {
    fn scope(&self) -> Scope {
        self.scope
    }

    fn daemon_reload(&self) -> Result<()> {
        self.run(&["daemon-reload"]).map(drop)
    }

    fn start(&self, units: &[String]) -> Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        let mut args = vec!["start", "--"];
        args.extend(units.iter().map(String::as_str));
        self.run(&args).map(drop)
    }

    fn stop(&self, units: &[String]) -> Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        let mut args = vec!["stop", "--"];
        args.extend(units.iter().map(String::as_str));
        self.run(&args).map(drop)
    }

    fn restart(&self, unit: &str) -> Result<()> {
        self.run(&["restart", "--", unit]).map(drop)
    }

    fn active_states(&self, units: &[String]) -> Result<Vec<ActiveState>> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["show", "--property=ActiveState", "--value", "--"];
        args.extend(units.iter().map(String::as_str));
        let text = self.run(&args)?;
        let states: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if states.len() != units.len() {
            return Err(Error::internal(format!(
                "systemctl show returned {} states for {} units",
                states.len(),
                units.len()
            )));
        }
        Ok(states)
    }

    fn is_loaded(&self, unit: &str) -> Result<bool> {
        let state = self.run(&["show", "--property=LoadState", "--value", "--", unit])?;
        Ok(state.trim() == "loaded")
    }

    fn sub_state(&self, unit: &str) -> Result<String> {
        self.run(&["show", "--property=SubState", "--value", "--", unit])
    }

    fn timer_next_elapse(&self, timer: &str) -> Result<Option<String>> {
        let args = [
            "show",
            "--property=NextElapseUSecRealtime,SubState",
            "--",
            timer,
        ];
        let text = self.run(&args)?;
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_default()
        };
        let next = value("NextElapseUSecRealtime");
        Ok(if !next.is_empty() && next != "n/a" {
            Some(next.to_owned())
        } else if value("SubState") == "running" {
            Some("now (running)".to_owned())
        } else {
            None
        })
    }

    fn system_state(&self) -> Result<String> {
        // It exits non-zero for anything but running: the output is what counts.
        let out = process::run_unchecked(&mut self.command(&["is-system-running"]))?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state.is_empty() {
            let cmd = self.command(&["is-system-running"]);
            return Err(unreachable_manager_hint(
                self.scope,
                process::failure(&cmd, out.status, &out.stderr),
            ));
        }
        Ok(state)
    }

    fn wait_active(&self, units: &[String], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.active_states(units)?;
            let pending: Vec<String> = units
                .iter()
                .zip(&states)
                .filter(|(_, s)| s.as_str() != "active")
                .map(|(u, s)| format!("{u} ({s})"))
                .collect();
            let failed = states.iter().any(|s| s == "failed");
            if pending.is_empty() {
                return Ok(());
            }
            if failed || Instant::now() >= deadline {
                return Err(Error::internal(format!(
                    "services did not become active: {}",
                    pending.join(", ")
                ))
                .with_hint(format!(
                    "see `{} status <service>` and `podman logs`",
                    self.scope.systemctl_words()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Explain the commonest cause of a failing `systemctl [--user]`: no
/// manager to talk to. The hint is the scope's: a user manager needs a
/// session or linger, the system manager needs systemd as PID 1 and root.
fn unreachable_manager_hint(scope: Scope, err: Error) -> Error {
    let unreachable = [
        "Failed to connect to bus",
        "Failed to connect to user scope bus",
        "No medium found",
        "System has not been booted with systemd",
    ]
    .iter()
    .any(|s| err.message.contains(s));
    if !unreachable {
        return err;
    }
    err.with_hint(match scope {
        Scope::User => {
            "the systemd user manager is not reachable: log in to a session (or `loginctl enable-linger`) and check XDG_RUNTIME_DIR"
        }
        Scope::System => {
            "the systemd system manager is not reachable: `--system` needs a machine booted with systemd and root (`sudo`); `systemctl is-system-running` says whether it answers"
        }
    })
}

/// Why `name` is not a service name leger-backup may act on, or `None`
/// when it is one. The one check for every service name that becomes a path
/// (`<unit dir>/<name>.d/`) or a `systemctl` argument: systemd's unit-name
/// grammar (`[A-Za-z0-9:_.\@-]`, at most 255 bytes, a `.service` suffix
/// after a non-empty name), and never a leading `-`, which `systemctl` and
/// `podman` would read as an option. Quadlet copies `ServiceName=` into the
/// name unchecked, so `ServiceName=../../x` would otherwise make a drop-in
/// path leave its directory. The grammar itself is [`crate::names`]'s, the
/// one used for names read from backups.
pub fn service_name_problem(name: &str) -> Option<&'static str> {
    crate::names::check_service(name).err()
}

/// [`service_name_problem`] as an error naming the value.
pub fn validate_service_name(name: &str) -> Result<()> {
    match service_name_problem(name) {
        None => Ok(()),
        Some(why) => Err(Error::user(format!(
            "{name:?} is not a valid systemd service name: it {why}"
        ))
        .with_hint("service names use letters, digits, ':', '_', '.', '\\', '@' and '-', do not start with '-', and end in .service")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_manager_hint_follows_the_scope() {
        let bus = || Error::internal("systemctl failed: Failed to connect to bus: No such file");
        let user = unreachable_manager_hint(Scope::User, bus()).hint.unwrap();
        assert!(
            user.contains("user manager") && user.contains("enable-linger"),
            "{user}"
        );
        let system = unreachable_manager_hint(Scope::System, bus()).hint.unwrap();
        assert!(system.contains("system manager"), "{system}");
        assert!(
            !system.contains("user") && !system.contains("XDG_RUNTIME_DIR"),
            "{system}"
        );
        let other = Error::internal("systemctl failed: Unit x.service not found.");
        assert_eq!(unreachable_manager_hint(Scope::System, other).hint, None);
    }

    #[test]
    fn service_names_follow_systemd_and_are_never_options() {
        for ok in [
            "web.service",
            "web-db.service",
            "foo@.service",
            "foo@bar.service",
            "a:b_c.d\\x2d.service",
            &format!("{}.service", "a".repeat(247)),
        ] {
            assert_eq!(service_name_problem(ok), None, "{ok}");
            assert!(validate_service_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("../../x.service", "contains '/'"),
            ("a/b.service", "contains '/'"),
            ("-x.service", "starts with '-'"),
            ("--url=ssh:x.service", "starts with '-'"),
            ("web", "does not end in .service"),
            ("web.socket", "does not end in .service"),
            (".service", "has no name before .service"),
            ("@x.service", "has no name before .service"),
            ("a b.service", "contains a blank or control character"),
            ("a\nb.service", "contains a blank or control character"),
            ("a\0b.service", "contains a blank or control character"),
            (
                "wéb.service",
                "contains a character outside [A-Za-z0-9:_.\\@-]",
            ),
            (
                "a$b.service",
                "contains a character outside [A-Za-z0-9:_.\\@-]",
            ),
            (
                &format!("{}.service", "a".repeat(248)),
                "longer than 255 bytes",
            ),
            ("", "does not end in .service"),
        ] {
            // The reasons are names::check_service's; `why` says which case.
            assert!(service_name_problem(bad).is_some(), "{bad:?}: {why}");
        }
        let err = validate_service_name("../../x.service").unwrap_err();
        assert!(
            err.message.contains("\"../../x.service\""),
            "{}",
            err.message
        );
        assert!(err.hint.is_some());
    }
}
