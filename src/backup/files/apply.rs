//! Applying a [`FilesPlan`]: each file written atomically and checked
//! against its checksum, never through a symlink; directories made and
//! given their modes; the deployment's files not in the backup removed.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;

use crate::backup::metadata::FileEntry;
use crate::deployment::open_regular;
use crate::error::{Error, Result};

use super::hash::{copy_hashed, hash_file};
use super::plan::{FilesPlan, Roots};
use super::PERMISSION_BITS;

/// Suffix of the temporary file a restore writes before renaming it over
/// the target.
const TMP_SUFFIX: &str = ".leger-backup-tmp";

/// Carry out `plan`, reading the stored files from `backup_dir` and
/// checking each against its recorded checksum while copying. Each target
/// is written to a temporary file next to it and renamed over it, so a file
/// is always either the old or the new version.
///
/// Recorded directories are made first, owner-writable so their files can
/// be written (a 0500 directory), group and others already as recorded (a
/// 0700 `secrets/` is never open to others, not even for a moment); they get
/// their exact mode last, deepest first, once nothing more is written into
/// them.
pub fn apply(plan: &FilesPlan, backup_dir: &Path, roots: &Roots) -> Result<()> {
    for dir in &plan.dirs {
        ensure_real_dirs(&dir.root, &dir.path, Some(0o700))?;
        set_dir_mode(&dir.path, dir.mode | 0o700)?;
    }
    for (entry, target) in &plan.write {
        let root = roots.of(entry.location).unwrap_or(&roots.installed);
        let parent = target.parent().unwrap_or(root);
        ensure_real_dirs(root, parent, None)?;
        write_one(entry, &backup_dir.join(&entry.stored_as), target)?;
    }
    let kept: BTreeSet<&Path> = plan.dirs.iter().map(|d| d.path.as_path()).collect();
    for (path, root) in &plan.remove {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::internal(format!(
                    "{} is a directory; expected a file of the deployment",
                    path.display()
                )))
            }
            Ok(_) => fs::remove_file(path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        remove_empty_parents(path, root, &kept);
    }
    for dir in plan.dirs.iter().rev() {
        set_dir_mode(&dir.path, dir.mode)?;
    }
    Ok(())
}

/// Create `target` and the directories between `root` and it, refusing to
/// go through a symlink: a file must land where the backup says, not
/// wherever a link points. Directories created below `root` get `new_mode`
/// (`None`: the default mode).
fn ensure_real_dirs(root: &Path, target: &Path, new_mode: Option<u32>) -> Result<()> {
    let rel = target.strip_prefix(root).map_err(|_| {
        Error::internal(format!(
            "{} is not below {}",
            target.display(),
            root.display()
        ))
    })?;
    fs::create_dir_all(root)?;
    let mut dir = root.to_owned();
    for component in rel.components() {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::user(format!(
                    "{} is not a directory; cannot restore {} below it",
                    dir.display(),
                    target.display()
                ))
                .with_hint("move it away and run the restore again"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut builder = std::fs::DirBuilder::new();
                if let Some(mode) = new_mode {
                    builder.mode(mode);
                }
                builder
                    .create(&dir)
                    .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Set the mode of the directory `dir`, which must be a real directory (a
/// symlink there is refused, never followed).
fn set_dir_mode(dir: &Path, mode: u32) -> Result<()> {
    if !fs::symlink_metadata(dir)?.is_dir() {
        return Err(Error::user(format!(
            "{} is not a directory; the backup has a directory there",
            dir.display()
        ))
        .with_hint("move it away and run the restore again"));
    }
    fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Write one file (or symlink) in place, atomically.
fn write_one(entry: &FileEntry, stored: &Path, target: &Path) -> Result<()> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::internal(format!("{} has no file name", target.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(TMP_SUFFIX);
    let tmp = target.with_file_name(tmp_name);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    if let Ok(meta) = fs::symlink_metadata(target) {
        if meta.is_dir() {
            return Err(Error::user(format!(
                "{} is a directory; the backup has a file there",
                target.display()
            ))
            .with_hint("move it away and run the restore again"));
        }
    }
    let result = (|| -> Result<()> {
        let (sha, size) = match &entry.symlink {
            Some(link) => {
                // The stored text must match the recorded target.
                let (sha, size) = hash_file(stored, entry.size)?;
                std::os::unix::fs::symlink(link, &tmp).map_err(|e| {
                    Error::internal(format!("cannot create symlink {}: {e}", tmp.display()))
                })?;
                (sha, size)
            }
            None => {
                // At most one byte more than recorded: enough to tell the
                // stored file is too long, never a disk filled from it.
                let (input, _) = open_regular(stored, false)?;
                let mut input = input.take(entry.size.saturating_add(1));
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&tmp)?;
                let hashed = copy_hashed(&mut input, &mut out)?;
                out.set_permissions(std::fs::Permissions::from_mode(
                    entry.mode & PERMISSION_BITS,
                ))?;
                out.sync_all()?;
                hashed
            }
        };
        if !entry.sha256.is_empty() && (sha != entry.sha256 || size != entry.size) {
            return Err(Error::user(format!(
                "{} in the backup does not match its checksum",
                stored.display()
            ))
            .with_hint(
                "the backup was modified after it was verified; run `leger-backup verify`",
            ));
        }
        fs::rename(&tmp, target)?;
        if let Some(parent) = target.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove each of `dirs` that is an empty directory. A deployment's own
/// root (leger's active directory, a plain deployment's Quadlet
/// subdirectory) left empty must go: its mere existence makes the
/// deployment look installed, to leger and to discovery alike.
pub fn remove_empty_roots(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Remove the now-empty directories between `path` and `root` (exclusive),
/// up to the first one the backup records (`kept`).
fn remove_empty_parents(path: &Path, root: &Path, kept: &BTreeSet<&Path>) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || kept.contains(d) {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
