//! Backup IDs and the paths inside a backup: which names are IDs, a fresh
//! ID for a new backup, and resolving a path read from metadata inside its
//! backup. Paths read from metadata are untrusted: they are checked
//! lexically by [`Metadata::load`](crate::backup::metadata::Metadata::load)
//! and again here after resolving symlinks.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{BackupStore, StoredBackup, TMP_PREFIX};
use crate::backup::metadata::VolumeEntry;
use crate::error::{Error, Result};

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

impl BackupStore {
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
}

impl StoredBackup {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::store::tests::{metadata, store};
    use chrono::TimeZone;

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
        let absent = VolumeEntry::absent("v");
        assert_eq!(b.archive_path(&absent).unwrap(), None);
        let evil = VolumeEntry {
            archive_path: Some("volumes/evil.tar.zst".into()),
            ..absent
        };
        assert!(b.archive_path(&evil).is_err());
    }
}
