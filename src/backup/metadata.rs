//! `.backup-metadata.json`: what a backup holds, written last so a backup
//! without it is never taken for a valid one.
//!
//! The fields leger documents come first and keep leger's names, so leger's
//! own `backup list` can read our backups; everything after them is ours.
//! Metadata read from disk is untrusted: [`Metadata::load`] checks it before
//! any path in it is used.
//!
//! Cut by concern: this file holds the types and what they say;
//! `check` loads metadata and checks it before it is trusted, `stop_result`
//! reads how a service's stop ended from systemd's variables, `legacy`
//! reads the metadata of leger's Go implementation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Compression;
use crate::deployment::Location;
use crate::layout::Scope;
use crate::podman::RootOwnership;

mod check;
mod host_paths;
mod legacy;
mod stop_result;

pub use check::{check_mode, check_relative};
pub use host_paths::{
    archive_name, check_host_path, tree_name, HostPathEntry, HostPathKind, HOST_PATHS_DIR,
};

/// Name of the metadata file inside a backup directory.
pub const METADATA_FILE: &str = ".backup-metadata.json";

/// Largest metadata file read: far above what a real backup records (its
/// files, volumes and device nodes), far below what would strain memory
/// when `list` reads every backup's metadata.
pub const MAX_METADATA_BYTES: u64 = 2 << 20;

/// The metadata format this version writes; loading refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// Manual or automatic, as leger documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Asked for by a person.
    Manual,
    /// Taken by a hook or before a destructive operation.
    Automatic,
}

impl BackupType {
    /// `before-*`, `pre-*` and `on-*` reasons and `scheduled` are automatic,
    /// others manual.
    pub fn from_reason(reason: &str) -> BackupType {
        if ["before-", "pre-", "on-"]
            .iter()
            .any(|p| reason.starts_with(p))
            || reason == crate::auto::schedule::REASON
        {
            BackupType::Automatic
        } else {
            BackupType::Manual
        }
    }
}

/// How the service whose stop triggered an on-stop backup ended, from the
/// `$SERVICE_RESULT`, `$EXIT_CODE` and `$EXIT_STATUS` systemd gives
/// `ExecStopPost=`. Recorded only when the stop failed: such a backup may
/// hold the state that made the service fail, so it is marked and pruned
/// apart from good ones (see `backup::prune`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResult {
    /// `exit-code`, `signal`, `timeout`, `core-dump`, `oom-kill`, ...
    pub service_result: String,
    /// `exited`, `killed` or `dumped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
    /// The exit status (`1`) or the signal (`KILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
}

/// Whether services were stopped while volumes were exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Every service mounting a volume was stopped: crash-consistent.
    Stopped,
    /// Exported while running (`--live`).
    Live,
}

/// One file of the deployment kept in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where it was installed.
    pub location: Location,
    /// Path relative to that location's root (checked: relative, no `..`).
    pub path: PathBuf,
    /// Path inside the backup directory.
    pub stored_as: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// sha256, hex.
    pub sha256: String,
    /// Target, when the file was a symlink (then `size` and `sha256` are of
    /// the target text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<PathBuf>,
}

/// One directory of the deployment's trees, so a restore gives it back its
/// mode (a `secrets/` directory stays 0700) and empty ones come back too.
/// The owner is the user running leger-backup: nothing to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Which root it lies under.
    pub location: Location,
    /// Path relative to that root (`.`: the root itself; checked: relative,
    /// no `..`).
    pub path: PathBuf,
    /// Permission bits (never setuid, setgid or sticky).
    pub mode: u32,
}

/// One Podman volume in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeEntry {
    /// Podman volume name (leger's field).
    pub name: String,
    /// Archive path relative to the backup directory (leger's field); `None`
    /// when the volume did not exist at backup time.
    pub archive_path: Option<PathBuf>,
    /// Archive size in bytes (leger's field).
    pub size: u64,
    /// Whether the volume existed when the backup was taken.
    #[serde(default = "legacy::yes")]
    pub existed: bool,
    /// Bytes of the uncompressed tar.
    #[serde(default)]
    pub uncompressed_size: u64,
    /// sha256 of the archive file, hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Mode and owner of the volume root inside the user namespace.
    #[serde(default)]
    pub root: Option<RootOwnership>,
    /// Volume driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The `.volume` file defining it (relative path), if any.
    #[serde(default)]
    pub defined_by: Option<String>,
    /// The `-volume.service` that creates it, when a `.volume` file defines it.
    #[serde(default)]
    pub volume_service: Option<String>,
    /// Services mounting it.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Device nodes and FIFOs the volume held when the backup was created
    /// (paths in the archive): the only ones a restore lets through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_files: Vec<String>,
    /// Fingerprint of the volume's tree when the backup was taken (see
    /// [`crate::backup::reuse`]): a later backup finding the same one
    /// shares this archive instead of exporting the volume again. `None`
    /// for a volume that is not fingerprinted (absent, not of the local
    /// driver, or the fingerprint failed) and in older backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_signature: Option<String>,
    /// Only in the safety backup of a restore: the volume's data is not in
    /// this backup but was moved aside, next to Podman's volumes, by the
    /// restore (see `backup::restore::aside`). Only that restore's rollback
    /// or `recover` can put it back; it is dropped when the restore succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_aside: bool,
    /// Only in a repository's snapshot: the volume is the directory tree
    /// `volumes/NAME` of the snapshot, not an archive (see
    /// [`crate::repository`]). Checked to be exactly that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<PathBuf>,
}

/// The tree of volume `name` in a repository's snapshot: `volumes/NAME`.
pub fn volume_tree(name: &str) -> PathBuf {
    PathBuf::from("volumes").join(name)
}

impl VolumeEntry {
    /// A volume called `name` that did not exist: no archive, nothing
    /// recorded yet. What `create` starts from, and fixtures build on.
    pub fn absent(name: &str) -> VolumeEntry {
        VolumeEntry {
            name: name.to_owned(),
            tree: None,
            archive_path: None,
            size: 0,
            existed: false,
            uncompressed_size: 0,
            sha256: None,
            root: None,
            driver: None,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            defined_by: None,
            volume_service: None,
            used_by: Vec::new(),
            special_files: Vec::new(),
            tree_signature: None,
            held_aside: false,
        }
    }
}

/// A service of the deployment and its state at backup time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The systemd unit.
    pub name: String,
    /// Whether it was active (or activating) before the backup began.
    pub was_running: bool,
}

/// Where the deployment's files were installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// leger's active directory, if it was a leger deployment.
    pub active_dir: Option<PathBuf>,
    /// Root the quadlet files were installed under.
    pub installed_root: PathBuf,
    /// True for leger deployments: only the files leger installed from the
    /// active directory belong to the deployment under `installed_root`.
    pub installed_from_active: bool,
}

/// The whole metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Backup ID (leger).
    pub id: String,
    /// Deployment (leger).
    pub deployment_name: String,
    /// When the backup started (leger; RFC 3339).
    pub created_at: DateTime<Utc>,
    /// Manual or automatic (leger).
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// Why it was taken (leger).
    pub reason: String,
    /// Total bytes of the backup directory (leger).
    pub size: u64,
    /// Relative paths of the quadlet files (leger).
    pub quadlet_files: Vec<String>,
    /// Volumes (leger, extended).
    pub volumes: Vec<VolumeEntry>,
    /// Format of this document; absent in leger's own backups.
    #[serde(default)]
    pub format_version: Option<u32>,
    /// leger-backup version that wrote it.
    #[serde(default)]
    pub leger_backup_version: Option<String>,
    /// User or system scope.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Archive compression.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Every file of the deployment with its checksum.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Every directory of the deployment with its mode (absent in older
    /// backups: their directories are created with the default mode).
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Where the files were installed.
    #[serde(default)]
    pub installation: Option<Installation>,
    /// Services and whether each was running.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Secret names the units require (never values).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Stopped or live.
    #[serde(default)]
    pub consistency: Option<Consistency>,
    /// Seconds services were down for the backup.
    #[serde(default)]
    pub downtime_seconds: Option<f64>,
    /// Set on an on-stop backup taken after the service failed to stop cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_result: Option<StopResult>,
    /// Host paths the units mount or read (bind-mounted directories,
    /// environment files, configs), each archived like a volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_paths: Vec<HostPathEntry>,
}

impl Metadata {
    /// Whether this backup was taken after its service failed to stop cleanly.
    pub fn after_failed_stop(&self) -> bool {
        self.stop_result.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_decides_type() {
        assert_eq!(BackupType::from_reason("manual"), BackupType::Manual);
        assert_eq!(
            BackupType::from_reason("before-remove"),
            BackupType::Automatic
        );
        assert_eq!(
            BackupType::from_reason("pre-restore"),
            BackupType::Automatic
        );
        assert_eq!(BackupType::from_reason("on-stop"), BackupType::Automatic);
        assert_eq!(BackupType::from_reason("scheduled"), BackupType::Automatic);
        assert_eq!(BackupType::from_reason("weekly"), BackupType::Manual);
    }
}
