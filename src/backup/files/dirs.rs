//! Recording the modes of a deployment's directories when it is backed
//! up, so a restore gives each its mode back (empty ones too).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::backup::metadata::{DirEntry, Installation};
use crate::deployment::{DeploymentFile, Location};
use crate::error::Result;

use super::PERMISSION_BITS;

/// Every directory of the deployment's trees with its mode: leger's active
/// directory and everything below it; a plain deployment's own Quadlet
/// directory and everything below it; for a leger deployment, the
/// directories of the shared Quadlet directory that hold its installed files
/// (never that directory itself: it is not the deployment's). Symlinked
/// directories are not followed (they are recorded as links, with the files).
pub fn record_dirs(files: &[DeploymentFile], installation: &Installation) -> Result<Vec<DirEntry>> {
    let mut dirs = Vec::new();
    if let Some(active) = &installation.active_dir {
        tree_dirs(active, Path::new("."), Location::Active, &mut dirs)?;
    }
    let installed = &installation.installed_root;
    if !installation.installed_from_active {
        tree_dirs(installed, Path::new("."), Location::Installed, &mut dirs)?;
        return Ok(dirs);
    }
    let parents: BTreeSet<&Path> = files
        .iter()
        .filter(|f| f.location == Location::Installed)
        .flat_map(|f| f.rel_path.ancestors().skip(1))
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    for rel in parents {
        let meta = fs::symlink_metadata(installed.join(rel))?;
        if meta.is_dir() {
            dirs.push(dir_entry(Location::Installed, rel, &meta));
        }
    }
    Ok(dirs)
}

/// `dir` (recorded as `rel`) and every directory below it, parents first;
/// nothing when `dir` is not a directory (a deployment not installed).
fn tree_dirs(dir: &Path, rel: &Path, location: Location, out: &mut Vec<DirEntry>) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    out.push(dir_entry(location, rel, &meta));
    let mut children: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        if child.file_type()?.is_dir() {
            let name = child.file_name();
            let child_rel = if rel == Path::new(".") {
                PathBuf::from(&name)
            } else {
                rel.join(&name)
            };
            tree_dirs(&dir.join(&name), &child_rel, location, out)?;
        }
    }
    Ok(())
}

fn dir_entry(location: Location, rel: &Path, meta: &std::fs::Metadata) -> DirEntry {
    DirEntry {
        location,
        path: rel.to_owned(),
        mode: meta.permissions().mode() & PERMISSION_BITS,
    }
}
