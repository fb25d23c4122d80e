//! A backup being written: it becomes visible only when complete. It is
//! written into `.tmp-<ID>/` and renamed to `<ID>/` after every file, the
//! metadata and the directory have been fsynced, so a crash never leaves
//! anything [`BackupStore::list`] shows as valid.
//!
//! Leftover detection: [`BackupStore::begin`] writes the creating process's
//! pid and start time into `.tmp-<ID>/.pid`. A `.tmp-*` directory is a
//! leftover when that process no longer runs (see [`ProcessIdentity`]: a
//! pid reused by another process does not count), or, if it
//! has no readable `.pid`, when it has not been modified for
//! [`LEFTOVER_GRACE`] (the window between `mkdir` and writing the pid, and
//! between removing the pid and the final rename, is far shorter).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fs_err as fs;

use super::{
    create_private_file, private_dir_builder, rename_noreplace, sync_dir, validate_id, BackupStore,
};
use crate::backup::metadata::{Metadata, METADATA_FILE};
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

impl BackupStore {
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

    /// Write `metadata` as the backup's metadata file (0600, fsynced): done
    /// by [`PendingBackup::finalize`], and before a repository's snapshot
    /// of this directory is taken (the metadata travels inside it).
    pub fn write_metadata(&self, metadata: &Metadata) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(metadata)?;
        json.push(b'\n');
        let meta_path = self.path.join(METADATA_FILE);
        let mut file = create_private_file(&meta_path)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        sync_dir(&self.path)
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
        self.write_metadata(&metadata)?;
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
mod tests {
    use super::*;
    use crate::backup::store::tests::{metadata, mode, store};

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
}
