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
                ui::warn(format!(
                    "could not start {} again: {e}; start them with `{} start {}`",
                    self.units.join(", "),
                    self.systemctl.scope().systemctl_words(),
                    self.units.join(" ")
                ));
            }
        }
    }
}
