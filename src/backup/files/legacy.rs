//! The files of a backup written by leger's Go implementation, which lists
//! none with checksums: entries made up from the backup directory itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fs_err as fs;

use crate::backup::metadata::{FileEntry, METADATA_FILE};
use crate::deployment::{self, is_quadlet_path, Location, MAX_FILE_SIZE};
use crate::error::Result;

use super::hash::hash_file;
use super::PERMISSION_BITS;

/// Entries for a backup written by leger's Go implementation, which lists no
/// files with checksums: every file in the backup directory (outside
/// `volumes/` and the metadata) belongs to the active directory, and the
/// quadlet files among them are installed too. Symlinks in such a backup are
/// ignored: nothing vouches for them.
pub fn legacy_entries(backup_dir: &Path, leger: bool) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    for rel in deployment::walk_files(backup_dir)? {
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if first == "volumes" || first == METADATA_FILE {
            continue;
        }
        let path = backup_dir.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() {
            continue;
        }
        let (sha256, size) = hash_file(&path, MAX_FILE_SIZE)?;
        let mode = meta.permissions().mode() & PERMISSION_BITS;
        // Backups are 0600; installed files are normally world-readable.
        let mode = if mode & 0o044 == 0 { 0o644 } else { mode };
        let locations: &[Location] = if !leger {
            &[Location::Installed]
        } else if is_quadlet_path(&rel) {
            &[Location::Active, Location::Installed]
        } else {
            &[Location::Active]
        };
        for location in locations {
            entries.push(FileEntry {
                location: *location,
                path: rel.clone(),
                stored_as: rel.clone(),
                size,
                mode,
                sha256: sha256.clone(),
                symlink: None,
            });
        }
    }
    Ok(entries)
}
