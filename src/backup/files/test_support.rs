//! Helpers for the tests of [`super`]: deployment trees on disk, their
//! files and modes, and a backup of them put back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::backup::metadata::{DirEntry, FileEntry, Installation};
use crate::deployment::{self, Deployment, DeploymentFile, Location};
use crate::error::Result;

pub(super) fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn deployment_files(active: &Path, installed: &Path) -> Vec<DeploymentFile> {
    let mut out = Vec::new();
    for rel in deployment::walk_files(active).unwrap() {
        out.push(DeploymentFile {
            path: active.join(&rel),
            rel_path: rel,
            location: Location::Active,
        });
    }
    for rel in deployment::walk_files(installed).unwrap() {
        out.push(DeploymentFile {
            path: installed.join(&rel),
            rel_path: rel,
            location: Location::Installed,
        });
    }
    out
}

pub(super) fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

pub(super) fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A leger deployment: its active directory and the shared Quadlet
/// directory it installs into.
pub(super) fn leger_installation(active: &Path, installed: &Path) -> Installation {
    Installation {
        active_dir: Some(active.to_owned()),
        installed_root: installed.to_owned(),
        installed_from_active: true,
    }
}

/// Back up the files and directories under `active` and `installed`.
pub(super) fn back_up(
    active: &Path,
    installed: &Path,
    backup: &Path,
) -> (Vec<FileEntry>, Vec<DirEntry>) {
    std::fs::create_dir_all(backup).unwrap();
    let files = deployment_files(active, installed);
    let entries = copy_into_backup(&files, backup).unwrap();
    let dirs = record_dirs(&files, &leger_installation(active, installed)).unwrap();
    (entries, dirs)
}

/// Restore `entries` and `dirs` over whatever is under the roots now.
pub(super) fn put_back(
    entries: &[FileEntry],
    dirs: &[DirEntry],
    backup: &Path,
    active: &Path,
    installed: &Path,
) -> Result<()> {
    let roots = Roots {
        active: Some(active.to_owned()),
        installed: installed.to_owned(),
    };
    let deployment = Deployment {
        name: "web".into(),
        active_dir: Some(active.to_owned()),
        installed_root: installed.to_owned(),
        installed_from_active: true,
    };
    let current = if active.exists() {
        current_files(&deployment)?
    } else {
        Vec::new()
    };
    let plan = plan_restore(entries, &roots, &current)?.with_dirs(dirs, &roots)?;
    apply(&plan, backup, &roots)
}
