//! The backup directory ("repository"): one subdirectory per backup, named
//! by its ID, each holding `.backup-metadata.json`, the deployment's files
//! and `volumes/`.
//!
//! A backup becomes visible only when complete: it is written into
//! `.tmp-<ID>/` and renamed to `<ID>/` after every file, the metadata and
//! the directory have been fsynced, so a crash never leaves anything
//! [`BackupStore::list`] shows as valid.
//!
//! Leftover detection: [`BackupStore::begin`] writes the creating process's
//! pid and start time into `.tmp-<ID>/.pid`. A `.tmp-*` directory is a
//! leftover when that process no longer runs (see [`ProcessIdentity`]: a
//! pid reused by another process does not count), or, if it
//! has no readable `.pid`, when it has not been modified for
//! [`LEFTOVER_GRACE`] (the window between `mkdir` and writing the pid, and
//! between removing the pid and the final rename, is far shorter).
//!
//! Backups hold databases and keys: directories are 0700, files 0600, and
//! the backup directory itself must belong to the user and not be writable
//! by anyone else, or it is refused (as ssh refuses a loose `~/.ssh`).
//! Paths read from metadata are untrusted: they are checked lexically by
//! [`Metadata::load`] and again here after resolving symlinks.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use fs_err as fs;

use crate::backup::metadata::{Metadata, VolumeEntry, METADATA_FILE};
use crate::error::{Error, Result};
use crate::process_identity::ProcessIdentity;

/// Prefix of a backup being written.
pub const TMP_PREFIX: &str = ".tmp-";

/// File inside a `.tmp-<ID>` directory naming its creator
/// ([`ProcessIdentity::to_record`]).
pub const PID_FILE: &str = ".pid";

/// A `.tmp-*` directory without a readable pid file is a leftover only once
/// it is this old.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(60);

/// Longest ID accepted (a file name).
pub const MAX_ID_LEN: usize = 255;

/// Check a backup ID from the command line or from disk before it is used in
/// any path: `^[A-Za-z0-9][A-Za-z0-9._-]*$`, at most 255 bytes. This alone
/// keeps `..`, `/` and hidden names (`.tmp-*`) out.
pub fn validate_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && id.len() <= MAX_ID_LEN {
        Ok(())
    } else {
        Err(Error::user(format!("invalid backup ID {id:?}")).with_hint(
            "IDs look like `web-2025-01-31-120000`: letters, digits, '.', '_' and '-', \
             starting with a letter or digit; `leger-backup list` shows them",
        ))
    }
}

/// The backup directory, checked to be private.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

/// One entry of [`BackupStore::list`]: a backup directory and its metadata,
/// or why the metadata could not be used.
#[derive(Debug)]
pub struct Listed {
    /// The directory name (the ID when valid).
    pub id: String,
    /// The backup directory.
    pub path: PathBuf,
    /// The checked metadata, or the reason the backup is invalid.
    pub metadata: std::result::Result<Metadata, String>,
}

/// A complete backup loaded by ID, its metadata checked.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    /// The backup directory.
    pub path: PathBuf,
    /// Its checked metadata.
    pub metadata: Metadata,
}

/// A backup being written in `.tmp-<ID>/`; removed on drop unless
/// [`PendingBackup::finalize`] succeeded.
#[derive(Debug)]
pub struct PendingBackup {
    path: PathBuf,
    store_dir: PathBuf,
    id: String,
    finalized: bool,
    /// The size [`PendingBackup::seal`] found, when it ran.
    sealed_size: Option<u64>,
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

    /// A fresh ID for `deployment` at `now`: `<deployment>-YYYY-MM-DD-HHMMSS`
    /// in UTC, then `-2`, `-3`... while a backup or a `.tmp-` of that name
    /// exists.
    pub fn new_id(&self, deployment: &str, now: DateTime<Utc>) -> Result<String> {
        let base = format!("{deployment}-{}", now.format("%Y-%m-%d-%H%M%S"));
        validate_id(&base).map_err(|e| {
            Error::user(format!(
                "deployment name {deployment:?} cannot start a backup ID"
            ))
            .with_hint(e.hint.unwrap_or_default())
        })?;
        for n in 1u32.. {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            validate_id(&id)?;
            if !self.taken(&id)? {
                return Ok(id);
            }
        }
        unreachable!("u32 IDs exhausted")
    }

    fn taken(&self, id: &str) -> Result<bool> {
        for name in [id.to_owned(), format!("{TMP_PREFIX}{id}")] {
            match std::fs::symlink_metadata(self.dir.join(&name)) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::internal(format!(
                        "{}: {e}",
                        self.dir.join(name).display()
                    )))
                }
            }
        }
        Ok(false)
    }

    /// Create `<dir>/.tmp-<id>/` exclusively (mkdir 0700 fails on anything
    /// already there, symlinks included) and record our pid and start time
    /// in it.
    pub fn begin(&self, id: &str) -> Result<PendingBackup> {
        validate_id(id)?;
        let path = self.dir.join(format!("{TMP_PREFIX}{id}"));
        private_dir_builder().create(&path).map_err(|e| {
            let err = Error::internal(format!("cannot create {}: {e}", path.display()));
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                err.with_hint("another backup with this ID is being written; try again")
            } else {
                err.with_hint("check that the backup directory is writable and has free space")
            }
        })?;
        let pending = PendingBackup {
            path,
            store_dir: self.dir.clone(),
            id: id.to_owned(),
            finalized: false,
            sealed_size: None,
        };
        let mut pid_file = create_private_file(&pending.path.join(PID_FILE))?;
        writeln!(pid_file, "{}", ProcessIdentity::current().to_record())?;
        Ok(pending)
    }

    /// Every backup directory (not `.tmp-*`), newest first (by `created_at`,
    /// then ID); entries whose metadata is unreadable or does not check come
    /// last, with the reason — they are never hidden.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                out.push(Listed {
                    id: name.to_string_lossy().into_owned(),
                    path: entry.path(),
                    metadata: Err("name is not valid UTF-8".into()),
                });
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let metadata = load_dir(&path, name).map_err(|e| e.message);
            out.push(Listed {
                id: name.to_owned(),
                path,
                metadata,
            });
        }
        out.sort_by(|a, b| match (&a.metadata, &b.metadata) {
            (Ok(x), Ok(y)) => (y.created_at, &b.id).cmp(&(x.created_at, &a.id)),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => b.id.cmp(&a.id),
        });
        Ok(out)
    }

    /// Load one backup by ID (validated first); an error if it is missing or
    /// invalid, with the hint `leger-backup list`.
    pub fn load(&self, id: &str) -> Result<StoredBackup> {
        validate_id(id)?;
        let path = self.dir.join(id);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    Error::user(format!("no backup {id} in {}", self.dir.display()))
                        .with_hint("`leger-backup list` shows the backups"),
                )
            }
            _ => {}
        }
        let metadata = load_dir(&path, id).map_err(|e| {
            Error::user(format!("backup {id} is invalid: {}", e.message))
                .with_hint("`leger-backup list` shows the valid backups; delete this one with `leger-backup delete`")
        })?;
        Ok(StoredBackup { path, metadata })
    }

    /// Whether a backup directory (valid or not) named `id` exists.
    pub fn exists(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        Ok(std::fs::symlink_metadata(self.dir.join(id)).is_ok())
    }

    /// Delete a backup, valid or not. It is first renamed to a `.tmp-`
    /// name, so an interrupted delete never leaves a half-deleted backup
    /// that looks valid (the rest is cleaned as a leftover).
    pub fn delete(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let path = self.dir.join(id);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    Error::user(format!("no backup {id} in {}", self.dir.display()))
                        .with_hint("`leger-backup list` shows the backups"),
                )
            }
            Err(e) => return Err(Error::internal(format!("{}: {e}", path.display()))),
        };
        if !meta.is_dir() {
            // A stray file or symlink: remove the entry itself, never its target.
            fs::remove_file(&path)?;
            return Ok(());
        }
        // Mark it as ours first, so a concurrent leftover cleanup leaves the
        // renamed directory to us.
        if let Ok(mut f) = create_private_file(&path.join(PID_FILE)) {
            let _ = writeln!(f, "{}", ProcessIdentity::current().to_record());
        }
        let doomed = self.dir.join(format!("{TMP_PREFIX}deleting-{id}"));
        let target = match rename_noreplace(&path, &doomed) {
            Ok(()) => doomed,
            Err(_) => path,
        };
        fs::remove_dir_all(&target)?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Remove leftover `.tmp-*` directories whose creator is gone (see the
    /// module docs); returns one notice per removal, for the caller to print.
    pub fn clean_leftovers(&self) -> Result<Vec<String>> {
        let mut notices = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                fs::remove_file(&path)?;
                notices.push(format!("removed stray {name} from the backup directory"));
                continue;
            }
            let why = match read_owner(&path) {
                Some(owner) if owner.is_alive() => continue,
                Some(owner) => format!("its process {} is gone", owner.pid),
                None => {
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .unwrap_or_default();
                    if age < LEFTOVER_GRACE {
                        continue;
                    }
                    "it has no owner".to_owned()
                }
            };
            match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other.map_err(|e| {
                    Error::internal(format!("cannot remove {}: {e}", path.display()))
                        .with_hint("remove it by hand; it is not a complete backup")
                })?,
            }
            notices.push(format!(
                "removed {name}, left by an interrupted backup or delete ({why})"
            ));
        }
        Ok(notices)
    }
}

/// Load and check the metadata of the backup directory `path` named `id`.
fn load_dir(path: &Path, id: &str) -> Result<Metadata> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::user(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(Error::user("is a symlink, not a backup directory"));
    }
    if !meta.is_dir() {
        return Err(Error::user("is not a directory"));
    }
    validate_id(id).map_err(|_| Error::user("name is not a valid backup ID"))?;
    let file = path.join(METADATA_FILE);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::user(format!(
                "{METADATA_FILE} is not a regular file"
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::user(format!(
                "no {METADATA_FILE}: incomplete backup"
            )))
        }
        Err(e) => return Err(Error::user(format!("{METADATA_FILE}: {e}"))),
    }
    let prefix = format!("{}/", path.display());
    let metadata = Metadata::load(&file).map_err(|mut e| {
        e.message = e.message.replace(&prefix, "");
        e
    })?;
    if metadata.id != id {
        return Err(Error::user(format!(
            "metadata id {:?} does not match the directory name",
            metadata.id
        )));
    }
    Ok(metadata)
}

impl StoredBackup {
    /// The backup's ID.
    pub fn id(&self) -> &str {
        &self.metadata.id
    }

    /// The archive of volume `v`: `Ok(None)` when the volume had no archive
    /// (it did not exist at backup time); an error when the recorded path
    /// leaves the backup directory (through `..` or a symlink) or is not a
    /// regular file. Metadata is untrusted, so a bad path is never mistaken
    /// for "no archive".
    pub fn archive_path(&self, v: &VolumeEntry) -> Result<Option<PathBuf>> {
        match &v.archive_path {
            None => Ok(None),
            Some(rel) => self.resolve(rel).map(Some),
        }
    }

    /// Resolve `rel` (a path from the metadata) inside the backup directory:
    /// it must exist, and after resolving every symlink must still be inside
    /// it. The final component may not be a symlink unless it resolves
    /// inside too.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf> {
        resolve_inside(&self.path, rel)
    }
}

/// [`StoredBackup::resolve`] for any directory.
pub fn resolve_inside(dir: &Path, rel: &Path) -> Result<PathBuf> {
    let bad = |why: String| {
        Error::user(format!("{}: {} {why}", dir.display(), rel.display()))
            .with_hint("the backup is damaged or hostile; it is refused")
    };
    crate::backup::metadata::check_relative(rel).map_err(|why| bad(why.to_owned()))?;
    let root = std::fs::canonicalize(dir).map_err(|e| bad(format!("cannot be resolved: {e}")))?;
    let joined = dir.join(rel);
    let real = std::fs::canonicalize(&joined).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            bad("is missing".to_owned())
        } else {
            bad(format!("cannot be resolved: {e}"))
        }
    })?;
    if !real.starts_with(&root) || real == root {
        return Err(bad("points outside the backup".to_owned()));
    }
    Ok(real)
}

impl PendingBackup {
    /// The `.tmp-<ID>` directory to write into (dirs 0700, files 0600).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ID the backup will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal what is written: every directory 0700 and file 0600, each
    /// fsynced (the archives' last dirty pages too), their total size kept
    /// for the metadata. Apart from [`PendingBackup::finalize`] (which seals
    /// whatever was not) so that a create can start its services again
    /// meanwhile: both mostly wait, one for podman, the other for the disk.
    pub fn seal(&mut self) -> Result<()> {
        self.sealed_size = Some(seal_tree(&self.path, true)?);
        Ok(())
    }

    /// Make the backup visible: set every directory to 0700 and file to
    /// 0600, compute `size` (bytes of every file but the metadata), write
    /// the metadata (0600), fsync every file and directory, rename
    /// `.tmp-<id>` to `<id>` (never replacing anything) and fsync the parent.
    /// Returns the final path; `BackupStore::load` returns the metadata with
    /// its size.
    pub fn finalize(mut self, mut metadata: Metadata) -> Result<PathBuf> {
        if metadata.id != self.id {
            return Err(Error::internal(format!(
                "metadata id {} differs from the backup being written ({})",
                metadata.id, self.id
            )));
        }
        metadata.size = match self.sealed_size {
            Some(size) => size,
            None => seal_tree(&self.path, true)?,
        };
        let pid = self.path.join(PID_FILE);
        if std::fs::symlink_metadata(&pid).is_ok() {
            fs::remove_file(&pid)?;
        }
        let mut json = serde_json::to_vec_pretty(&metadata)?;
        json.push(b'\n');
        let meta_path = self.path.join(METADATA_FILE);
        let mut file = create_private_file(&meta_path)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        sync_dir(&self.path)?;
        crate::fault::point("create:before-rename");
        let dest = self.store_dir.join(&self.id);
        rename_noreplace(&self.path, &dest).map_err(|e| {
            Error::internal(format!(
                "cannot rename {} to {}: {e}",
                self.path.display(),
                dest.display()
            ))
            .with_hint("a backup with this ID appeared meanwhile; run the backup again")
        })?;
        self.finalized = true;
        sync_dir(&self.store_dir)?;
        Ok(dest)
    }
}

impl Drop for PendingBackup {
    fn drop(&mut self) {
        if !self.finalized {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Walk `dir` without following symlinks: chmod dirs 0700 and files 0600,
/// fsync each, and return the total size of the regular files. At the
/// `top` of a pending backup its [`PID_FILE`] is left out (it goes before
/// the rename).
fn seal_tree(dir: &Path, top: bool) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if top && entry.file_name() == PID_FILE {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            total += seal_tree(&path, false)?;
        } else if meta.is_file() {
            if meta.permissions().mode() & 0o7777 != 0o600 {
                fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            total += meta.len();
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
            f.sync_all()
                .map_err(|e| Error::internal(format!("fsync {}: {e}", path.display())))?;
        }
    }
    sync_dir(dir)?;
    Ok(total)
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

/// The process named in the [`PID_FILE`] of the `.tmp-*` directory `tmp`.
fn read_owner(tmp: &Path) -> Option<ProcessIdentity> {
    let path = tmp.join(PID_FILE);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 64 {
        return None;
    }
    ProcessIdentity::parse(&std::fs::read_to_string(&path).ok()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::metadata::{BackupType, FORMAT_VERSION};
    use chrono::TimeZone;

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
        }
    }

    /// An empty store in a temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, BackupStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&tmp.path().join("backups")).unwrap();
        (tmp, store)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn ids_are_validated() {
        for ok in ["web-2025-01-01-000000", "a", "A.b_c-1", "0x"] {
            validate_id(ok).unwrap();
        }
        for bad in [
            "", ".", "..", ".tmp-x", "-x", "_x", "a/b", "../etc", "a b", "é", "a\n",
        ] {
            let err = validate_id(bad).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::User, "{bad:?}");
            assert!(err.hint.is_some());
        }
        validate_id(&"a".repeat(255)).unwrap();
        assert!(validate_id(&"a".repeat(256)).is_err());
    }

    #[test]
    fn new_ids_skip_taken_names() {
        let (_tmp, store) = store();
        let now = Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap();
        let id = store.new_id("web", now).unwrap();
        assert_eq!(id, "web-2025-03-04-050607");
        std::fs::create_dir(store.dir().join(&id)).unwrap();
        assert_eq!(store.new_id("web", now).unwrap(), "web-2025-03-04-050607-2");
        // A backup being written takes its name too.
        let pending = store.begin("web-2025-03-04-050607-2").unwrap();
        assert_eq!(store.new_id("web", now).unwrap(), "web-2025-03-04-050607-3");
        drop(pending);
        assert_eq!(store.new_id("web", now).unwrap(), "web-2025-03-04-050607-2");
        assert_eq!(store.new_id("db", now).unwrap(), "db-2025-03-04-050607");
        assert!(store.new_id("-x", now).is_err());
    }

    #[test]
    fn begin_is_exclusive_and_private() {
        let (_tmp, store) = store();
        let pending = store.begin("web-1").unwrap();
        assert_eq!(mode(pending.path()), 0o700);
        assert!(pending.path().ends_with(".tmp-web-1"));
        let owner = std::fs::read_to_string(pending.path().join(PID_FILE)).unwrap();
        assert_eq!(
            ProcessIdentity::parse(&owner),
            Some(ProcessIdentity::current())
        );
        assert!(store.begin("web-1").is_err());
        // Never through a symlink.
        let elsewhere = store.dir().parent().unwrap().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, store.dir().join(".tmp-web-2")).unwrap();
        assert!(store.begin("web-2").is_err());
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(store.begin("../x").is_err());
    }

    #[test]
    fn finalize_publishes_a_complete_private_backup() {
        let (_tmp, store) = store();
        let pending = store.begin("web-1").unwrap();
        let vols = pending.path().join("volumes");
        std::fs::create_dir(&vols).unwrap();
        std::fs::write(vols.join("data.tar.zst"), vec![1u8; 1000]).unwrap();
        std::fs::set_permissions(vols.join("data.tar.zst"), PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(pending.path().join("web.container"), "[Container]\n").unwrap();
        let tmp_path = pending.path().to_owned();
        // Invisible while being written.
        assert!(store.list().unwrap().is_empty());
        let path = pending.finalize(metadata("web-1", "web", 1)).unwrap();
        assert_eq!(path, store.dir().join("web-1"));
        assert!(!tmp_path.exists());
        assert!(!path.join(PID_FILE).exists());
        assert_eq!(mode(&path.join("volumes")), 0o700);
        assert_eq!(mode(&path.join("volumes/data.tar.zst")), 0o600);
        assert_eq!(mode(&path.join(METADATA_FILE)), 0o600);
        let loaded = store.load("web-1").unwrap();
        assert_eq!(loaded.metadata.size, 1000 + 12);
        assert_eq!(loaded.path, path);
    }

    #[test]
    fn finalize_refuses_a_mismatched_id_and_drop_cleans_up() {
        let (_tmp, store) = store();
        let pending = store.begin("web-1").unwrap();
        let tmp_path = pending.path().to_owned();
        assert!(pending.finalize(metadata("web-2", "web", 1)).is_err());
        assert!(!tmp_path.exists(), "dropped on error");
        let pending = store.begin("web-1").unwrap();
        drop(pending);
        assert!(!tmp_path.exists());
    }

    #[test]
    fn finalize_never_replaces_an_existing_backup() {
        let (_tmp, store) = store();
        std::fs::create_dir(store.dir().join("web-1")).unwrap();
        let pending = store.begin("web-1").unwrap();
        assert!(pending.finalize(metadata("web-1", "web", 1)).is_err());
        assert!(!store.dir().join("web-1").join(METADATA_FILE).exists());
    }

    #[test]
    fn leftovers_of_dead_processes_are_cleaned() {
        let (_tmp, store) = store();
        let mine = store.begin("web-live").unwrap();
        let dead_pid = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let dead = store.dir().join(".tmp-web-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(PID_FILE), format!("{dead_pid}\n")).unwrap();
        std::fs::write(dead.join("partial.tar.zst"), b"x").unwrap();
        let young = store.dir().join(".tmp-web-young");
        std::fs::create_dir(&young).unwrap();
        let old = store.dir().join(".tmp-web-old");
        std::fs::create_dir(&old).unwrap();
        let long_ago = nix::sys::time::TimeVal::new(1_000_000_000, 0);
        nix::sys::stat::utimes(&old, &long_ago, &long_ago).unwrap();
        std::os::unix::fs::symlink("/", store.dir().join(".tmp-link")).unwrap();

        let mut notices = store.clean_leftovers().unwrap();
        notices.sort();
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert!(notices[0].contains(".tmp-web-dead") && notices[0].contains("is gone"));
        assert!(notices[1].contains(".tmp-web-old") && notices[1].contains("no owner"));
        assert!(notices[2].contains(".tmp-link"));
        assert!(mine.path().exists());
        assert!(young.exists());
        assert!(!dead.exists() && !old.exists());
        assert!(Path::new("/").exists());
    }

    /// A `.tmp-*` whose record names a live pid with another start time was
    /// left by a process whose pid has been reused: it is cleaned. Records
    /// of older versions (pid only) of a live pid are kept, as before.
    #[test]
    fn leftovers_of_reused_pids_are_cleaned() {
        let (_tmp, store) = store();
        let me = ProcessIdentity::current();
        let plant = |name: &str, record: String| {
            let dir = store.dir().join(format!("{TMP_PREFIX}{name}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(PID_FILE), format!("{record}\n")).unwrap();
            dir
        };
        let reused = plant(
            "web-reused",
            format!("{} {}", me.pid, me.start_time.unwrap() + 1),
        );
        let live = plant("web-live", me.to_record());
        let old_live = plant("web-old-format", me.pid.to_string());

        let notices = store.clean_leftovers().unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains(".tmp-web-reused"), "{notices:?}");
        assert!(notices[0].contains(&format!("process {} is gone", me.pid)));
        assert!(!reused.exists());
        assert!(live.exists() && old_live.exists());
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

    /// Write `m` as a complete backup (no files).
    pub(crate) fn publish(store: &BackupStore, m: Metadata) {
        store.begin(&m.id.clone()).unwrap().finalize(m).unwrap();
    }

    #[test]
    fn list_shows_invalid_backups_last_never_hidden() {
        let (_tmp, store) = store();
        publish(&store, metadata("web-a", "web", 1));
        publish(&store, metadata("web-b", "web", 3));
        publish(&store, metadata("db-c", "db", 2));
        std::fs::create_dir(store.dir().join("web-broken")).unwrap();
        std::fs::create_dir(store.dir().join("web-bad-json")).unwrap();
        std::fs::write(store.dir().join("web-bad-json").join(METADATA_FILE), "{").unwrap();
        let renamed = store.dir().join("web-renamed");
        std::fs::rename(store.dir().join("web-a"), &renamed).unwrap();
        publish(&store, metadata("web-a", "web", 1));

        let listed = store.list().unwrap();
        let ids: Vec<_> = listed.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "web-b",
                "db-c",
                "web-a",
                "web-renamed",
                "web-broken",
                "web-bad-json"
            ]
        );
        let err = |i: usize| listed[i].metadata.as_ref().unwrap_err().clone();
        assert!(err(3).contains("does not match"), "{}", err(3));
        assert!(err(4).contains("incomplete backup"), "{}", err(4));
        assert!(
            err(5).starts_with(".backup-metadata.json: malformed"),
            "{}",
            err(5)
        );
        let load_err = store.load("web-broken").unwrap_err();
        assert!(load_err.message.contains("invalid"), "{}", load_err.message);
        let missing = store.load("web-zzz").unwrap_err();
        assert!(missing.hint.unwrap().contains("leger-backup list"));
    }

    #[test]
    fn delete_removes_valid_and_invalid_backups() {
        let (_tmp, store) = store();
        publish(&store, metadata("web-a", "web", 1));
        std::fs::create_dir(store.dir().join("web-broken")).unwrap();
        store.delete("web-a").unwrap();
        store.delete("web-broken").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
        assert!(store.delete("web-a").is_err());
        assert!(store.delete("../x").is_err());
    }

    #[test]
    fn paths_from_metadata_stay_inside() {
        let (tmp, store) = store();
        let mut m = metadata("web-a", "web", 1);
        let pending = store.begin("web-a").unwrap();
        std::fs::create_dir(pending.path().join("volumes")).unwrap();
        std::fs::write(pending.path().join("volumes/ok.tar.zst"), b"x").unwrap();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, b"s").unwrap();
        std::os::unix::fs::symlink(&secret, pending.path().join("volumes/evil.tar.zst")).unwrap();
        m.volumes = vec![];
        pending.finalize(m).unwrap();
        let b = store.load("web-a").unwrap();
        assert!(b.resolve(Path::new("volumes/ok.tar.zst")).is_ok());
        let err = b.resolve(Path::new("volumes/evil.tar.zst")).unwrap_err();
        assert!(err.message.contains("points outside"), "{}", err.message);
        let err = b.resolve(Path::new("volumes/none.tar.zst")).unwrap_err();
        assert!(err.message.contains("is missing"), "{}", err.message);
        assert!(b.resolve(Path::new("../web-a/x")).is_err());
        assert!(b.resolve(Path::new(".")).is_err());
        let absent = VolumeEntry {
            name: "v".into(),
            archive_path: None,
            size: 0,
            existed: false,
            uncompressed_size: 0,
            sha256: None,
            root: None,
            driver: None,
            labels: Default::default(),
            options: Default::default(),
            defined_by: None,
            volume_service: None,
            used_by: vec![],
            special_files: vec![],
            tree_signature: None,
            held_aside: false,
        };
        assert_eq!(b.archive_path(&absent).unwrap(), None);
        let evil = VolumeEntry {
            archive_path: Some("volumes/evil.tar.zst".into()),
            ..absent
        };
        assert!(b.archive_path(&evil).is_err());
    }
}
