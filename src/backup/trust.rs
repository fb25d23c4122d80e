//! A backup's metadata checked against the backup's own quadlet files.
//!
//! The metadata names units and volumes (`services`, `used_by`,
//! `volume_service`, `volumes`); a restore stops, starts, removes and
//! recreates them. Anyone who can hand a user a backup can write that file,
//! so a name counts only when quadlet files produce it: the backup's own
//! (resolved as Quadlet would once they are installed) or, on the safety
//! side, those of the deployment installed now — whose units and volumes a
//! restore replaces anyway. A name nothing produces refuses the backup as
//! hostile, before any command runs.
//!
//! Volume settings follow the same rule: the metadata's driver and options
//! are never used. A volume a `.volume` file defines is recreated through
//! its `-volume.service`, so its driver and options are the file's. A plain
//! named volume (no `.volume` file) keeps the driver and options it has on
//! this machine, or is made with the local driver and no options when it
//! does not exist; a backup recording another driver or any option for one
//! (`device=/etc,o=bind` would make the import write into `/etc`) is
//! refused. Such a volume belongs in a `.volume` file (`Driver=`, `Device=`,
//! `Options=`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::backup::files::Roots;
use crate::backup::metadata::{FileEntry, Metadata, VolumeEntry};
use crate::backup::store::StoredBackup;
use crate::deployment::{is_quadlet_path, Location};
use crate::error::{Error, Result};
use crate::quadlet::{Resolution, SourceFile, VolumeUse};

/// The units, volumes and secrets some quadlet files produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Produced {
    /// Services Quadlet generates.
    pub services: BTreeSet<String>,
    /// Podman volumes, each with the `-volume.service` that creates it when
    /// a `.volume` file defines it.
    pub volumes: BTreeMap<String, Option<String>>,
    /// Secrets the units require.
    pub secrets: BTreeSet<String>,
}

impl Produced {
    /// Add what `resolution` produces.
    pub fn add(&mut self, resolution: &Resolution) {
        self.services
            .extend(resolution.units.iter().map(|u| u.service.clone()));
        for volume in &resolution.volumes {
            let service = volume_service(resolution, volume);
            let slot = self.volumes.entry(volume.name.clone()).or_default();
            if slot.is_none() {
                *slot = service;
            }
            self.services.extend(volume.used_by.iter().cloned());
        }
        self.secrets.extend(resolution.secrets.iter().cloned());
    }

    /// What `resolution` produces.
    pub fn of(resolution: &Resolution) -> Produced {
        let mut produced = Produced::default();
        produced.add(resolution);
        produced
    }
}

/// The service that creates `volume`, when a `.volume` file defines it: the
/// service resolved for that file, else Quadlet's default name for it.
pub(crate) fn volume_service(resolution: &Resolution, volume: &VolumeUse) -> Option<String> {
    let file = volume.defined_by.as_ref()?;
    Some(
        resolution
            .units
            .iter()
            .find(|u| &u.file == file)
            .map(|u| u.service.clone())
            .unwrap_or_else(|| crate::backup::create::volume_service_of(file)),
    )
}

/// The quadlet files stored in `backup` (`entries`: its file entries), as
/// Quadlet will read them once installed under `roots`: the installed copy
/// of a file when the backup holds both. Symlinks are left out: their
/// target is not in the backup, so nothing in it vouches for what they say.
pub(crate) fn backup_sources(
    backup: &StoredBackup,
    entries: &[FileEntry],
    roots: &Roots,
) -> Result<Vec<SourceFile>> {
    let mut chosen: BTreeMap<&Path, &FileEntry> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.symlink.is_none() && is_quadlet_path(&e.path))
    {
        match chosen.get(entry.path.as_path()) {
            Some(existing) if existing.location == Location::Installed => {}
            _ => {
                chosen.insert(&entry.path, entry);
            }
        }
    }
    chosen
        .into_values()
        .map(|entry| {
            let stored = backup.resolve(&entry.stored_as)?;
            // Read before verification: bounded, and never blocking on a
            // FIFO a crafted backup put there.
            let bytes =
                crate::regular_file::read_capped(&stored, crate::deployment::QUADLET_FILE_MAX)
                    .map_err(|e| {
                        Error::user(format!("{e}: not read as a quadlet file of the backup"))
                            .with_hint("the backup is damaged or hostile; it is refused")
                    })?;
            let root = match (entry.location, &roots.active) {
                (Location::Active, Some(active)) => active,
                _ => &roots.installed,
            };
            Ok(SourceFile {
                rel_path: entry.path.clone(),
                origin: root.join(&entry.path),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            })
        })
        .collect()
}

/// The backup's own `.volume` files (and their drop-ins) that mount a
/// volume from outside Podman's storage: `Device=` (a bind of a host path,
/// a disk, an NFS share) or a `Driver=` other than `local`. A restore
/// imports the archive into whatever such a volume mounts, so a crafted
/// backup could aim the import at a host directory; each is described as
/// `FILE: Device=...`, for the restore to refuse without `--force`.
pub(crate) fn volumes_outside_podman_storage(sources: &[SourceFile]) -> Vec<String> {
    let is_volume_file = |path: &Path| {
        path.extension().is_some_and(|e| e == "volume")
            || path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy().ends_with(".volume.d"))
    };
    sources
        .iter()
        .filter(|s| is_volume_file(&s.rel_path))
        .filter_map(|s| {
            let file = s.rel_path.to_string_lossy();
            let unit = crate::quadlet::unit_file::parse(&file, &s.text).ok()?;
            let value = |key: &str| {
                unit.lookup("Volume", key)
                    .map(|(v, _)| v)
                    .filter(|v| !v.is_empty())
            };
            let settings: Vec<String> = [
                value("Device").map(|d| format!("Device={d}")),
                value("Driver")
                    .filter(|d| d != "local")
                    .map(|d| format!("Driver={d}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!settings.is_empty()).then(|| format!("{file}: {}", settings.join(", ")))
        })
        .collect()
}

/// Refuse `metadata` when it names a unit, volume or secret that `produced`
/// does not hold, or volume settings no `.volume` file declares. The error
/// names the field and the value.
pub(crate) fn check(metadata: &Metadata, produced: &Produced) -> Result<()> {
    let id = &metadata.id;
    let hostile = |what: String| {
        Error::user(format!("backup {id} is refused as hostile: {what}")).with_hint(format!(
            "a restore acts only on the units and volumes the backup's own quadlet files define; \
             this metadata was altered or written for something else. Do not restore it \
             (`leger-backup delete {id}` removes it)"
        ))
    };
    let unknown = |field: &str, name: &str| {
        hostile(format!(
            "its metadata names {field} {name:?}, which its quadlet files do not produce"
        ))
    };
    for service in &metadata.services {
        if !produced.services.contains(&service.name) {
            return Err(unknown("services", &service.name));
        }
    }
    for volume in &metadata.volumes {
        let Some(service) = produced.volumes.get(&volume.name) else {
            return Err(unknown("volume", &volume.name));
        };
        if let Some(claimed) = &volume.volume_service {
            if service.as_ref() != Some(claimed) {
                return Err(unknown("volume_service", claimed));
            }
        }
        if let Some(user) = volume
            .used_by
            .iter()
            .find(|u| !produced.services.contains(*u))
        {
            return Err(unknown("used_by", user));
        }
        if service.is_none() {
            check_plain_settings(volume).map_err(hostile)?;
        }
    }
    if let Some(secret) = metadata
        .secrets
        .iter()
        .find(|s| !produced.secrets.contains(*s))
    {
        return Err(unknown("secrets", secret));
    }
    Ok(())
}

/// A plain named volume is recreated with the local driver and no options;
/// a backup recording anything else for one is not followed.
fn check_plain_settings(volume: &VolumeEntry) -> std::result::Result<(), String> {
    let name = &volume.name;
    if let Some(driver) = volume.driver.as_deref() {
        if !driver.is_empty() && driver != "local" {
            return Err(format!(
                "its metadata records driver {driver:?} for volume {name}, which no .volume file \
                 of the backup declares"
            ));
        }
    }
    if !volume.options.is_empty() {
        let options: Vec<String> = volume
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return Err(format!(
            "its metadata records options {:?} for volume {name}, which no .volume file of the \
             backup declares",
            options.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::{resolve, SourceFile};

    fn source(rel: &str, text: &str) -> SourceFile {
        SourceFile {
            rel_path: rel.into(),
            origin: format!("/q/{rel}").into(),
            text: text.to_owned(),
        }
    }

    /// Review finding: `Device=` in a backup's `.volume` file would aim the
    /// import at a host directory.
    #[test]
    fn volumes_that_mount_host_paths_or_other_drivers_are_named() {
        let files = [
            source(
                "web.container",
                "[Container]\nImage=x\nVolume=data.volume:/d\n",
            ),
            source(
                "data.volume",
                "[Volume]\nDevice=/home/u\nType=none\nOptions=bind\n",
            ),
            source("nfs.volume", "[Volume]\nDriver=local\n"),
            source("plug.volume", "[Volume]\nDriver=rexray\n"),
            source("cache.volume.d/10-dev.conf", "[Volume]\nDevice=/dev/sdb1\n"),
        ];
        assert_eq!(
            volumes_outside_podman_storage(&files),
            [
                "data.volume: Device=/home/u",
                "plug.volume: Driver=rexray",
                "cache.volume.d/10-dev.conf: Device=/dev/sdb1",
            ]
        );
    }

    /// `web.container` mounting `data.volume` and a plain `cache` volume.
    fn produced() -> Produced {
        let files = [
            source(
                "web.container",
                "[Container]\nImage=busybox\nVolume=data.volume:/data\nVolume=cache:/cache\nSecret=token\n",
            ),
            source("data.volume", "[Volume]\n"),
        ];
        Produced::of(&resolve(&files, &[]).unwrap())
    }

    fn metadata(services: &str, volumes: &str) -> Metadata {
        let json = format!(
            r#"{{"id":"web-2025-01-01-000000","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,
            "services":[{services}],"volumes":[{volumes}],"secrets":["token"]}}"#
        );
        Metadata::parse(json.as_bytes(), Path::new("m.json")).unwrap()
    }

    const DATA: &str = r#"{"name":"systemd-data","archive_path":null,"size":0,
        "volume_service":"data-volume.service","used_by":["web.service"],
        "driver":"local","options":{"o":"uid=1"}}"#;

    #[test]
    fn quadlet_files_produce_services_and_volumes() {
        let p = produced();
        assert_eq!(
            p.services,
            ["data-volume.service", "web.service"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            p.volumes.get("systemd-data"),
            Some(&Some("data-volume.service".to_owned()))
        );
        assert_eq!(p.volumes.get("cache"), Some(&None));
    }

    #[test]
    fn consistent_metadata_passes() {
        let m = metadata(
            r#"{"name":"web.service","was_running":true}"#,
            &format!(r#"{DATA},{{"name":"cache","archive_path":null,"size":0,"driver":"local"}}"#),
        );
        check(&m, &produced()).unwrap();
    }

    #[test]
    fn names_the_files_do_not_produce_are_hostile() {
        let p = produced();
        let cases = [
            (
                metadata(r#"{"name":"sshd.service","was_running":true}"#, ""),
                "services \"sshd.service\"",
            ),
            (
                metadata("", r#"{"name":"other-data","archive_path":null,"size":0}"#),
                "volume \"other-data\"",
            ),
            (
                metadata("", &DATA.replace("\"web.service\"", "\"sshd.service\"")),
                "used_by \"sshd.service\"",
            ),
            (
                metadata(
                    "",
                    &DATA.replace("data-volume.service", "evil-volume.service"),
                ),
                "volume_service \"evil-volume.service\"",
            ),
            (
                metadata(
                    "",
                    r#"{"name":"cache","archive_path":null,"size":0,"volume_service":"web.service"}"#,
                ),
                "volume_service \"web.service\"",
            ),
        ];
        for (m, expected) in cases {
            let err = check(&m, &p).unwrap_err();
            assert!(
                err.message.contains(expected) && err.message.contains("hostile"),
                "{}",
                err.message
            );
        }
        let mut m = metadata("", "");
        m.secrets = vec!["other".to_owned()];
        assert!(check(&m, &p).unwrap_err().message.contains("secrets"));
    }

    #[test]
    fn plain_volumes_take_no_recorded_driver_or_options() {
        let p = produced();
        let bind = metadata(
            "",
            r#"{"name":"cache","archive_path":null,"size":0,"driver":"local",
                "options":{"device":"/etc","o":"bind","type":"none"}}"#,
        );
        let err = check(&bind, &p).unwrap_err();
        assert!(
            err.message.contains("device=/etc,o=bind,type=none"),
            "{}",
            err.message
        );
        let plugin = metadata(
            "",
            r#"{"name":"cache","archive_path":null,"size":0,"driver":"sshfs"}"#,
        );
        assert!(check(&plugin, &p)
            .unwrap_err()
            .message
            .contains("driver \"sshfs\""));
    }
}
