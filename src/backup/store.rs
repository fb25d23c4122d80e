//! The backup directory ("repository"): one subdirectory per backup, named
//! by its ID, each holding `.backup-metadata.json`, the deployment's files
//! and `volumes/`.
//!
//! Cut by concern: `local` lists, loads and deletes complete backups;
//! `pending` writes a new one so that it becomes visible only when complete,
//! and cleans what interrupted runs left; `ids` names backups and resolves
//! the paths their metadata records. This file opens the directory and
//! holds the few file-system primitives they share.
//!
//! Backups hold databases and keys: directories are 0700, files 0600, and
//! the backup directory itself must belong to the user and not be writable
//! by anyone else, or it is refused (as ssh refuses a loose `~/.ssh`).

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::error::{Error, Result};

mod ids;
mod local;
mod pending;

pub use ids::{resolve_inside, validate_id, MAX_ID_LEN};
pub use local::{Listed, StoredBackup};
pub use pending::{PendingBackup, LEFTOVER_GRACE, PID_FILE, TMP_PREFIX};

/// The backup directory, checked to be private.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

fn private_dir_builder() -> std::fs::DirBuilder {
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    b
}

impl BackupStore {
    /// Open the backup dir, creating it (0700) if absent; refuse it if it is
    /// not owned by the effective user or is writable by group or others,
    /// with the command that fixes it, as ssh does for `~/.ssh`.
    pub fn open(dir: &Path) -> Result<BackupStore> {
        if !dir.is_absolute() {
            return Err(Error::config(format!(
                "backup directory {} is not an absolute path",
                dir.display()
            ))
            .with_hint("set backup.dir to an absolute path or one starting with ~/"));
        }
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                Error::user(format!("cannot create the backup directory: {e}"))
                    .with_hint("check backup.dir in the config and the permissions of its parent")
            })?;
        }
        match private_dir_builder().create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::user(format!(
                    "cannot create the backup directory {}: {e}",
                    dir.display()
                ))
                .with_hint("check backup.dir in the config and the permissions of its parent"))
            }
        }
        let meta = fs::metadata(dir).map_err(|e| {
            Error::user(format!("cannot use the backup directory: {e}"))
                .with_hint("check backup.dir in the config")
        })?;
        check_private(dir, &meta)?;
        Ok(BackupStore {
            dir: dir.to_owned(),
        })
    }

    /// The backup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Create a new file 0600, exclusively, never through a symlink.
pub fn create_private_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            Error::internal(format!("cannot create {}: {e}", path.display()))
                .with_hint("check that the backup directory is writable and has free space")
        })
}

/// fsync a directory, so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::internal(format!("fsync {}: {e}", dir.display())))
}

/// rename(2) that fails instead of replacing an existing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    nix::fcntl::renameat2(
        None,
        from,
        None,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(std::io::Error::from)
}

/// Refuse a backup directory others could tamper with.
fn check_private(dir: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        return Err(Error::user(format!(
            "backup directory {} is not a directory",
            dir.display()
        ))
        .with_hint("set backup.dir in the config to a directory"));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(Error::user(format!(
            "backup directory {} belongs to uid {}, not to you (uid {euid})",
            dir.display(),
            meta.uid()
        ))
        .with_hint(format!(
            "backups hold secrets: `chown {euid} {}` or set backup.dir to a directory of yours",
            dir.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::user(format!(
            "backup directory {} is writable by group or others (mode {:o})",
            dir.display(),
            meta.mode() & 0o7777
        ))
        .with_hint(format!(
            "backups hold secrets: run `chmod 700 {}`",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::metadata::{BackupType, Metadata, FORMAT_VERSION};
    use chrono::{TimeZone, Utc};
    use std::os::unix::fs::PermissionsExt;

    /// Minimal valid metadata of backup `id` of `deployment`, taken on `day`.
    pub(crate) fn metadata(id: &str, deployment: &str, day: u32) -> Metadata {
        Metadata {
            id: id.into(),
            deployment_name: deployment.into(),
            created_at: Utc.with_ymd_and_hms(2025, 1, day, 12, 0, 0).unwrap(),
            backup_type: BackupType::Manual,
            reason: "manual".into(),
            size: 0,
            quadlet_files: vec![],
            volumes: vec![],
            format_version: Some(FORMAT_VERSION),
            leger_backup_version: None,
            scope: None,
            compression: None,
            files: vec![],
            dirs: vec![],
            installation: None,
            services: vec![],
            secrets: vec![],
            consistency: None,
            downtime_seconds: None,
            stop_result: None,
            host_paths: Vec::new(),
        }
    }

    /// An empty store in a temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, BackupStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&tmp.path().join("backups")).unwrap();
        (tmp, store)
    }

    /// Permission bits of `path` (not following a symlink).
    pub(crate) fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// Write `m` as a complete backup (no files).
    pub(crate) fn publish(store: &BackupStore, m: Metadata) {
        store.begin(&m.id.clone()).unwrap().finalize(m).unwrap();
    }

    #[test]
    fn loose_permissions_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backups");
        let store = BackupStore::open(&dir).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o770)).unwrap();
        let err = BackupStore::open(&dir).unwrap_err();
        assert!(
            err.message.contains("writable by group or others"),
            "{}",
            err.message
        );
        assert_eq!(
            err.hint.as_deref(),
            Some(format!("backups hold secrets: run `chmod 700 {}`", dir.display()).as_str())
        );
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        BackupStore::open(&dir).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o702)).unwrap();
        assert!(BackupStore::open(&dir).is_err());
        assert!(BackupStore::open(Path::new("relative/dir")).is_err());
    }
}
