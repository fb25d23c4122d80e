//! Copying a deployment's files into a backup (dirs 0700, files 0600),
//! each with its checksum and mode, under the name it is stored as; an
//! installed copy equal to the active one is stored once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;

use crate::backup::metadata::{FileEntry, METADATA_FILE};
use crate::deployment::{is_quadlet_path, open_regular, DeploymentFile, Location, MAX_FILE_SIZE};
use crate::error::{Error, Result};
use crate::ui;

use super::hash::{copy_hashed, hash_bytes};
use super::PERMISSION_BITS;

/// Names at the top of a backup directory that belong to the backup itself.
const RESERVED: &[&str] = &[
    "volumes",
    METADATA_FILE,
    crate::backup::store::PID_FILE,
    ".active",
    ".installed",
];

/// Copy the deployment's `files` into `backup_dir` (dirs 0700, files 0600),
/// returning one entry per file with its checksum and mode. Symlinks are
/// recorded by their target (stored as a small text file), never followed.
pub fn copy_into_backup(files: &[DeploymentFile], backup_dir: &Path) -> Result<Vec<FileEntry>> {
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut taken: BTreeSet<PathBuf> = BTreeSet::new();
    for file in files {
        let meta = fs::symlink_metadata(&file.path)?;
        let mode = meta.permissions().mode() & PERMISSION_BITS;
        let symlink = if meta.file_type().is_symlink() {
            Some(fs::read_link(&file.path)?)
        } else if meta.file_type().is_file() {
            None
        } else {
            ui::warn(format!(
                "{} is neither a file nor a symlink; not backed up",
                file.path.display()
            ));
            continue;
        };
        // An installed copy equal to the active one is stored once.
        if file.location == Location::Installed {
            let (sha, size) = match &symlink {
                Some(target) => hash_bytes(target.as_os_str().as_encoded_bytes()),
                None => hash_deployment_file(&file.path)?,
            };
            let twin = entries.iter().find(|e| {
                e.location == Location::Active
                    && e.path == file.rel_path
                    && e.sha256 == sha
                    && e.symlink.is_some() == symlink.is_some()
            });
            if let Some(twin) = twin {
                let stored_as = twin.stored_as.clone();
                entries.push(FileEntry {
                    location: Location::Installed,
                    path: file.rel_path.clone(),
                    stored_as,
                    size,
                    mode,
                    sha256: sha,
                    symlink,
                });
                continue;
            }
        }
        let stored_as = stored_name(&file.rel_path, file.location, &taken);
        taken.insert(stored_as.clone());
        let dest = backup_dir.join(&stored_as);
        if let Some(parent) = dest.parent() {
            private_dirs(parent)?;
        }
        let (sha256, size) = match &symlink {
            Some(target) => {
                let bytes = target.as_os_str().as_encoded_bytes();
                write_new(&dest, bytes)?;
                hash_bytes(bytes)
            }
            None => copy_hashing(&file.path, &dest)?,
        };
        entries.push(FileEntry {
            location: file.location,
            path: file.rel_path.clone(),
            stored_as,
            size,
            mode,
            sha256,
            symlink,
        });
    }
    Ok(entries)
}

/// leger's `quadlet_files`: the relative paths of the quadlet files, sorted,
/// each once.
pub fn quadlet_files(entries: &[FileEntry]) -> Vec<String> {
    let set: BTreeSet<String> = entries
        .iter()
        .filter(|e| is_quadlet_path(&e.path))
        .map(|e| e.path.to_string_lossy().into_owned())
        .collect();
    set.into_iter().collect()
}

/// Where in the backup a file is stored: its relative path, unless that is
/// reserved or already used by the other location's differing copy.
fn stored_name(rel: &Path, location: Location, taken: &BTreeSet<PathBuf>) -> PathBuf {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    if !RESERVED.contains(&first.as_str()) && !taken.contains(rel) {
        return rel.to_owned();
    }
    let prefix = match location {
        Location::Active => ".active",
        Location::Installed => ".installed",
    };
    Path::new(prefix).join(rel)
}

/// Create `dir` and its missing parents with mode 0700.
fn private_dirs(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))
}

/// Write a new file (0600, exclusively).
fn write_new(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    out.write_all(bytes)?;
    Ok(())
}

/// Copy the deployment file `src` to a new file `dest` (0600), returning
/// sha256 and size.
pub(super) fn copy_hashing(src: &Path, dest: &Path) -> Result<(String, u64)> {
    copy_deployment_file(src, || {
        Ok(fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)?)
    })
}

/// sha256 and size of the deployment file `path`.
fn hash_deployment_file(path: &Path) -> Result<(String, u64)> {
    copy_deployment_file(path, || Ok(std::io::sink()))
}

/// Stream the deployment file `src` (a regular file, not followed if a
/// link) into what `out` opens (only once `src` is found fit), hashing it;
/// one larger than [`MAX_FILE_SIZE`] is refused before it is read, or as
/// soon as it grows past it while read.
fn copy_deployment_file<W: Write>(
    src: &Path,
    out: impl FnOnce() -> Result<W>,
) -> Result<(String, u64)> {
    let too_large = |size: u64| {
        Error::user(format!(
            "{} is {size} bytes, more than a deployment file may be ({MAX_FILE_SIZE} bytes)",
            src.display()
        ))
        .with_hint(
            "deployment files are unit files, env files and small configuration; \
             move large data into a volume",
        )
    };
    let (input, size) = open_regular(src, false)?;
    if size > MAX_FILE_SIZE {
        return Err(too_large(size));
    }
    let (sha, copied) = copy_hashed(&mut input.take(MAX_FILE_SIZE + 1), &mut out()?)?;
    if copied > MAX_FILE_SIZE {
        return Err(too_large(copied));
    }
    Ok((sha, copied))
}
