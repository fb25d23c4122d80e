//! What a backup captures, gathered before anything is written: the
//! deployment's files, its volumes and what recreates them, its services
//! and the secrets its units require.

use std::collections::BTreeSet;
use std::path::Path;

use crate::backup::metadata::Installation;
use crate::context::Context;
use crate::deployment::{Deployment, DeploymentFile};
use crate::error::{Error, Result};
use crate::host_paths::classify::Kind;
use crate::ui;

use super::host_paths::{select, HostPathSpec};

/// A volume to back up, with what is needed to recreate it on restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeSpec {
    /// Podman volume name.
    pub name: String,
    /// The `.volume` file defining it, if any.
    pub defined_by: Option<String>,
    /// The service Quadlet generates from that file.
    pub volume_service: Option<String>,
    /// Services mounting it.
    pub used_by: Vec<String>,
}

/// Everything a backup captures, gathered before anything is written: from
/// an installed deployment ([`Subject::of_deployment`]) or, for a restore's
/// safety backup, from what is on the machine now.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// Deployment name.
    pub name: String,
    /// Its files (empty when it is not installed).
    pub files: Vec<DeploymentFile>,
    /// Where those files are installed.
    pub installation: Installation,
    /// Volumes, sorted by name.
    pub volumes: Vec<VolumeSpec>,
    /// Its services, sorted.
    pub services: Vec<String>,
    /// Secret names its units require.
    pub secrets: Vec<String>,
    /// Host paths whose data is archived, sorted by path.
    pub host_paths: Vec<HostPathSpec>,
}

impl Subject {
    /// What a backup of an installed deployment captures.
    pub fn of_deployment(ctx: &Context, deployment: &Deployment) -> Result<Subject> {
        let resolution = deployment.resolve(&ctx.layout)?;
        let (place, paths) = crate::host_paths::of_deployment(
            ctx.layout.scope,
            deployment,
            &resolution,
            &ctx.config.backup,
        )?;
        for h in paths
            .iter()
            .filter(|h| matches!(h.kind, Kind::NeedsInclude | Kind::Unresolved))
        {
            ui::warn(format!(
                "{} ({}:{}) is not backed up: {}",
                h.resolved.as_deref().unwrap_or(&h.source),
                h.file,
                h.line,
                h.reason
            ));
        }
        // Values of other settings that depend on variables (the host
        // paths among them are judged above, with systemd's environment).
        let judged =
            |file: &str, line: usize| paths.iter().any(|h| h.file == file && h.line == line);
        for unresolved in resolution
            .unresolved
            .iter()
            .filter(|u| !judged(&u.file, u.line))
        {
            ui::warn(format!(
                "{}={} ({}:{}) depends on {}: not resolved, not backed up",
                unresolved.key,
                unresolved.value,
                unresolved.file,
                unresolved.line,
                unresolved.variables.join(", ")
            ));
        }
        let volumes = resolution
            .volumes
            .iter()
            .map(|v| VolumeSpec {
                name: v.name.clone(),
                defined_by: v.defined_by.clone(),
                volume_service: crate::backup::trust::volume_service(&resolution, v),
                used_by: v.used_by.clone(),
            })
            .collect();
        let services: BTreeSet<String> =
            resolution.units.iter().map(|u| u.service.clone()).collect();
        Ok(Subject {
            name: deployment.name.clone(),
            files: deployment.files()?,
            installation: installation_of(deployment),
            volumes,
            services: services.into_iter().collect(),
            secrets: resolution.secrets.clone(),
            host_paths: select(&paths, &place.place.deployment_dirs),
        })
    }
}

/// Where a deployment's files are installed, for the metadata.
pub(crate) fn installation_of(deployment: &Deployment) -> Installation {
    Installation {
        active_dir: deployment.active_dir.clone(),
        installed_root: deployment.installed_root.clone(),
        installed_from_active: deployment.installed_from_active,
    }
}

/// The service Quadlet makes of a `.volume` file: `data.volume` ->
/// `data-volume.service`, whatever directory it is in.
pub(crate) fn volume_service_of(file: &str) -> String {
    let base = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{base}-volume.service")
}

/// Podman volume names are `[A-Za-z0-9][A-Za-z0-9_.-]*`; anything else must
/// not become a file name in the backup (or an argument of podman).
pub(crate) fn check_volume_name(name: &str) -> Result<()> {
    crate::names::check_podman_name(name)
        .map_err(|why| Error::user(format!("invalid volume name {name:?}: it {why}")))
}

/// A reason is one line of text.
pub(super) fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() || reason.chars().any(char::is_control) || reason.len() > 200 {
        return Err(Error::user(format!("invalid reason {reason:?}"))
            .with_hint("give one line of text, e.g. --reason before-upgrade"));
    }
    Ok(())
}

/// The reason, every volume name and every host path, checked before
/// anything is written.
pub(super) fn check_subject(subject: &Subject, opts: &super::CreateOptions) -> Result<()> {
    check_reason(&opts.reason)?;
    for volume in &subject.volumes {
        check_volume_name(&volume.name)?;
    }
    // What a backup records must load again: a path its metadata check
    // would refuse (`/`, a control character) is refused before anything.
    for host in &subject.host_paths {
        crate::backup::metadata::check_host_path(&host.path).map_err(|why| {
            Error::user(format!(
                "host path {:?} {why}: it cannot be backed up",
                host.path
            ))
            .with_hint(format!(
                "leave it out with an exclude: glob under backup.deployments.{}",
                subject.name
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_services() {
        assert_eq!(volume_service_of("data.volume"), "data-volume.service");
        assert_eq!(volume_service_of("sub/db.volume"), "db-volume.service");
    }

    #[test]
    fn volume_names() {
        assert!(check_volume_name("systemd-data").is_ok());
        assert!(check_volume_name("a.b_c-1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
    }
}
