//! The complete backups of the local backup directory: list them, load one
//! by ID with its metadata checked, delete one.

use std::io::Write;
use std::path::{Path, PathBuf};

use fs_err as fs;

use super::{
    create_private_file, rename_noreplace, sync_dir, validate_id, BackupStore, PID_FILE, TMP_PREFIX,
};
use crate::backup::metadata::{Metadata, METADATA_FILE};
use crate::error::{Error, Result};
use crate::process_identity::ProcessIdentity;

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

impl BackupStore {
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
    /// The backup `id` whose files are in `path`, a directory that is not
    /// in the backup directory's listing (a snapshot fetched from a
    /// repository into a pending directory). Checked as [`BackupStore::load`] checks.
    pub fn load_from(path: &Path, id: &str) -> Result<StoredBackup> {
        let metadata = load_dir(path, id).map_err(|e| {
            Error::user(format!("backup {id} is invalid: {}", e.message))
                .with_hint("the snapshot is damaged or not a leger-backup backup")
        })?;
        Ok(StoredBackup {
            path: path.to_owned(),
            metadata,
        })
    }

    /// The backup's ID.
    pub fn id(&self) -> &str {
        &self.metadata.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::store::tests::{metadata, publish, store};

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
}
