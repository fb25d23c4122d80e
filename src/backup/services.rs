//! The deployment's services around a backup or a restore: which of them
//! run, stopping them and starting them again whatever happens
//! ([`ServiceGuard`]), and which containers outside the deployment use its
//! volumes. Everything goes through the [`ServiceManager`] and
//! [`ContainerEngine`] traits, so it is unit-tested with in-memory fakes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::backup::create::{in_parallel, Progress, Subject};
use crate::error::Result;
use crate::podman::{ContainerEngine, ContainerRef};
use crate::systemd::ServiceManager;
use crate::ui;

/// The containers that use one of `volumes` and are not run by one of the
/// `own` services (by the `PODMAN_SYSTEMD_UNIT` label Quadlet sets), in
/// any state: (volume, container). A restore refuses to replace such a
/// volume; a backup warns that the running ones may make it inconsistent.
pub(crate) fn foreign_users(
    podman: &dyn ContainerEngine,
    volumes: &[String],
    own: &BTreeSet<String>,
) -> Result<Vec<(String, ContainerRef)>> {
    let users = in_parallel(volumes, |volume| podman.containers_using_volume(volume))?;
    Ok(volumes
        .iter()
        .zip(users)
        .flat_map(|(volume, containers)| {
            containers
                .into_iter()
                .filter(|c| !c.systemd_unit().is_some_and(|unit| own.contains(unit)))
                .map(move |c| (volume.clone(), c))
        })
        .collect())
}

/// Every service whose state matters: the deployment's and those mounting
/// its volumes.
pub(crate) fn all_services(subject: &Subject) -> Vec<String> {
    let mut all: BTreeSet<String> = subject.services.iter().cloned().collect();
    for volume in &subject.volumes {
        all.extend(volume.used_by.iter().cloned());
    }
    all.into_iter().collect()
}

/// The units of `units` that are running (active, activating, reloading or
/// deactivating: anything a stop would change).
pub(crate) fn running_services(
    systemctl: &dyn ServiceManager,
    units: &[String],
) -> Result<BTreeSet<String>> {
    let states = systemctl.active_states(units)?;
    Ok(units
        .iter()
        .zip(states)
        .filter(|(_, s)| {
            matches!(
                s.as_str(),
                "active" | "activating" | "reloading" | "deactivating" | "refreshing"
            )
        })
        .map(|(u, _)| u.clone())
        .collect())
}

/// Services stopped for a backup, started again when the backup is done —
/// and, through `Drop`, when it fails half-way, so an error never leaves a
/// deployment down.
pub(crate) struct ServiceGuard<'a> {
    systemctl: &'a dyn ServiceManager,
    units: Vec<String>,
    stopped_at: Option<Instant>,
}

impl<'a> ServiceGuard<'a> {
    /// A guard for `units` (nothing is stopped yet).
    pub fn new(systemctl: &'a dyn ServiceManager, units: Vec<String>) -> ServiceGuard<'a> {
        ServiceGuard {
            systemctl,
            units,
            stopped_at: None,
        }
    }

    /// Stop the units. From here on they are started again whatever happens.
    pub fn stop(&mut self, progress: &Progress) -> Result<()> {
        if self.units.is_empty() {
            return Ok(());
        }
        progress.step(format!("stopping {}", self.units.join(", ")));
        self.stopped_at = Some(Instant::now());
        self.systemctl.stop(&self.units)
    }

    /// The caller takes over starting the units (a restore, which starts
    /// what the restored backup says instead).
    pub fn hand_over(mut self) {
        self.stopped_at = None;
    }

    /// Start the units again; returns how long they were down (`None` when
    /// nothing was stopped).
    pub fn start(mut self, progress: &Progress) -> Result<Option<Duration>> {
        let Some(stopped_at) = self.stopped_at.take() else {
            return Ok(None);
        };
        progress.step(format!("starting {}", self.units.join(", ")));
        self.systemctl
            .start(&self.units)
            .map_err(|e| e.context("the services stopped for the backup did not start again"))?;
        Ok(Some(stopped_at.elapsed()))
    }
}

impl Drop for ServiceGuard<'_> {
    fn drop(&mut self) {
        if self.stopped_at.take().is_some() {
            ui::note(format!("starting {} again", self.units.join(", ")));
            if let Err(e) = self.systemctl.start(&self.units) {
                ui::warn(self.not_started_again(&e));
            }
        }
    }
}

impl ServiceGuard<'_> {
    /// The warning when starting the units again after a failure failed
    /// too: the command to start them, in the manager's scope.
    fn not_started_again(&self, err: &crate::error::Error) -> String {
        format!(
            "could not start {} again: {err}; start them with `{} start {}`",
            self.units.join(", "),
            self.systemctl.scope().systemctl_words(),
            self.units.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::progress::Terminal;
    use crate::error::Error;
    use crate::layout::Scope;
    use crate::testing::fake_systemd::FakeSystemd;

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Only units in a state a stop would change count as running.
    #[test]
    fn running_services_are_those_a_stop_would_change() {
        let systemd = FakeSystemd::new(Scope::User);
        for (unit, state) in [
            ("a.service", "active"),
            ("b.service", "inactive"),
            ("c.service", "activating"),
            ("d.service", "failed"),
            ("e.service", "deactivating"),
        ] {
            systemd.set_state(unit, state);
        }
        let all = units(&[
            "a.service",
            "b.service",
            "c.service",
            "d.service",
            "e.service",
            "unknown.service",
        ]);
        let running = running_services(&systemd, &all).unwrap();
        assert_eq!(
            running.into_iter().collect::<Vec<_>>(),
            units(&["a.service", "c.service", "e.service"])
        );
    }

    /// The guard stops only the units it was given (those that ran), and a
    /// guard dropped on an error path starts them again.
    #[test]
    fn guard_stops_only_what_ran_and_starts_it_again_on_error() {
        let systemd = FakeSystemd::new(Scope::User);
        systemd.set_state("web.service", "active");
        systemd.set_state("idle.service", "inactive");
        let all = units(&["idle.service", "web.service"]);
        let failing_backup = || -> Result<()> {
            let running = running_services(&systemd, &all)?;
            let mut guard = ServiceGuard::new(&systemd, running.into_iter().collect());
            guard.stop(&Terminal::new(false))?;
            assert_eq!(systemd.state_of("web.service"), "inactive");
            Err(Error::internal("the export failed"))
        };
        assert!(failing_backup().is_err());
        assert_eq!(systemd.state_of("web.service"), "active");
        assert_eq!(systemd.state_of("idle.service"), "inactive");
        let calls = systemd.calls();
        assert!(calls.contains(&"stop web.service".to_owned()), "{calls:?}");
        assert!(calls.contains(&"start web.service".to_owned()), "{calls:?}");
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("idle.service") && !c.starts_with("active_states")),
            "{calls:?}"
        );
    }

    /// `start` starts the units again and says how long they were down;
    /// after that, dropping the guard does nothing more.
    #[test]
    fn guard_start_reports_downtime_once() {
        let systemd = FakeSystemd::new(Scope::User);
        systemd.set_state("web.service", "active");
        let mut guard = ServiceGuard::new(&systemd, units(&["web.service"]));
        guard.stop(&Terminal::new(false)).unwrap();
        let down = guard.start(&Terminal::new(false)).unwrap();
        assert!(down.is_some());
        assert_eq!(systemd.state_of("web.service"), "active");
        let starts = systemd
            .calls()
            .iter()
            .filter(|c| c.starts_with("start"))
            .count();
        assert_eq!(starts, 1);
    }

    /// A failed start says the services did not start again.
    #[test]
    fn guard_start_failure_names_the_services() {
        let systemd = FakeSystemd::new(Scope::User);
        systemd.set_state("web.service", "active");
        systemd.fail(|f| f.fail_on("start", "web.service"));
        let mut guard = ServiceGuard::new(&systemd, units(&["web.service"]));
        guard.stop(&Terminal::new(false)).unwrap();
        let err = guard.start(&Terminal::new(false)).unwrap_err();
        assert!(
            err.message
                .contains("the services stopped for the backup did not start again"),
            "{}",
            err.message
        );
        assert!(err.message.contains("web.service"), "{}", err.message);
    }

    /// After `hand_over` the caller decides: nothing is started on drop.
    #[test]
    fn hand_over_leaves_the_units_stopped() {
        let systemd = FakeSystemd::new(Scope::User);
        systemd.set_state("web.service", "active");
        let mut guard = ServiceGuard::new(&systemd, units(&["web.service"]));
        guard.stop(&Terminal::new(false)).unwrap();
        guard.hand_over();
        assert_eq!(systemd.state_of("web.service"), "inactive");
        assert!(!systemd.calls().iter().any(|c| c.starts_with("start")));
    }

    /// The command the warning suggests is the scope's: `systemctl --user`
    /// only in user scope.
    #[test]
    fn not_started_again_names_the_scopes_systemctl() {
        let err = Error::internal("boom");
        let system = FakeSystemd::new(Scope::System);
        let guard = ServiceGuard::new(&system, units(&["web.service", "db.service"]));
        let text = guard.not_started_again(&err);
        assert!(
            text.contains("`systemctl start web.service db.service`"),
            "{text}"
        );
        assert!(!text.contains("--user"), "{text}");
        let user = FakeSystemd::new(Scope::User);
        let guard = ServiceGuard::new(&user, units(&["web.service"]));
        assert!(guard
            .not_started_again(&err)
            .contains("`systemctl --user start web.service`"));
    }

    /// Containers run by the deployment's own services are not foreign;
    /// any other container on one of its volumes is, in any state.
    #[test]
    fn foreign_users_are_containers_not_run_by_own_services() {
        use crate::podman::ContainerRef;
        use crate::testing::fake_podman::FakePodman;
        let podman = FakePodman::new();
        let container = |name: &str, unit: Option<&str>, state: &str| ContainerRef {
            id: format!("{name}-id"),
            names: vec![name.to_owned()],
            state: state.to_owned(),
            labels: unit
                .map(|u| [("PODMAN_SYSTEMD_UNIT".to_owned(), u.to_owned())].into())
                .unwrap_or_default(),
        };
        podman.add_container("data", container("web", Some("web.service"), "running"));
        podman.add_container("data", container("other", Some("other.service"), "exited"));
        podman.add_container("logs", container("adhoc", None, "running"));
        let own: BTreeSet<String> = ["web.service".to_owned()].into();
        let found = foreign_users(&podman, &units(&["data", "logs"]), &own).unwrap();
        let names: Vec<(String, String)> = found
            .iter()
            .map(|(v, c)| (v.clone(), c.display_name()))
            .collect();
        assert_eq!(
            names,
            [
                ("data".to_owned(), "other".to_owned()),
                ("logs".to_owned(), "adhoc".to_owned())
            ]
        );
    }
}
