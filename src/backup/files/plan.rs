//! Planning a restore of a deployment's files ([`FilesPlan`]): what to
//! write where, what to remove, which directories to give which mode,
//! checked against hostile metadata before anything is touched.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::backup::metadata::{check_mode, DirEntry, FileEntry};
use crate::deployment::{Deployment, Location, MAX_FILE_SIZE};
use crate::error::{Error, Result};

use super::PERMISSION_BITS;

/// The mode a recorded `mode` is restored with: permission bits only. A mode
/// with bits above `0o7777` was not written by leger-backup: refused.
fn restored_mode(mode: u32, what: &Path) -> Result<u32> {
    check_mode(mode).map_err(|why| {
        Error::user(format!("{} in the backup: {why}", what.display()))
            .with_hint("the metadata is damaged or hostile; the backup is refused")
    })?;
    Ok(mode & PERMISSION_BITS)
}

/// The directories a deployment's files go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// leger's active directory of the deployment (leger deployments).
    pub active: Option<PathBuf>,
    /// Where quadlet files are installed.
    pub installed: PathBuf,
}

impl Roots {
    pub(super) fn of(&self, location: Location) -> Option<&Path> {
        match location {
            Location::Active => self.active.as_deref(),
            Location::Installed => Some(&self.installed),
        }
    }
}

/// What putting the files back will do, computed before anything is touched
/// so it can be shown and so a missing root is found early.
#[derive(Debug, Clone, Default)]
pub struct FilesPlan {
    /// Files to write: the entry and its absolute target.
    pub write: Vec<(FileEntry, PathBuf)>,
    /// Files of the deployment that are not in the backup, to remove, with
    /// the root they lie under (empty directories are removed up to it).
    pub remove: Vec<(PathBuf, PathBuf)>,
    /// Directories the backup records (see [`FilesPlan::with_dirs`]),
    /// parents first.
    pub dirs: Vec<PlannedDir>,
}

/// A directory to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDir {
    /// Absolute path.
    pub path: PathBuf,
    /// The root it lies under (or is).
    pub root: PathBuf,
    /// The mode it gets: the recorded permission bits.
    pub mode: u32,
}

impl FilesPlan {
    /// Add the directories a backup records: each is created when missing
    /// (empty ones too), kept when its files are removed, and given its
    /// recorded mode, without setuid, setgid or sticky. Directories a
    /// backup does not record (older backups) keep the default mode.
    pub fn with_dirs(mut self, dirs: &[DirEntry], roots: &Roots) -> Result<FilesPlan> {
        for dir in dirs {
            crate::backup::metadata::check_relative(&dir.path).map_err(|why| {
                Error::user(format!("directory path {:?} in the backup {why}", dir.path))
            })?;
            let mode = restored_mode(dir.mode, &dir.path)?;
            let root = roots
                .of(dir.location)
                .ok_or_else(|| no_active_root(&dir.path))?;
            let path: PathBuf = root
                .components()
                .chain(dir.path.components())
                .filter(|c| *c != Component::CurDir)
                .collect();
            if dir.location == Location::Installed && roots.active.is_some() {
                self.check_own_installed_dir(&path, &dir.path, &roots.installed)?;
            }
            if !self.dirs.iter().any(|d| d.path == path) {
                self.dirs.push(PlannedDir {
                    path,
                    root: root.to_owned(),
                    mode,
                });
            }
        }
        self.dirs.sort_by_key(|d| d.path.components().count());
        Ok(self)
    }
}

impl FilesPlan {
    /// A leger deployment shares the Quadlet directory with every other
    /// deployment: of it, a backup may only give modes to directories that
    /// hold files it writes — never the shared directory itself (a crafted
    /// `"."`, mode 0777, would let anyone add units) nor another
    /// deployment's.
    fn check_own_installed_dir(&self, path: &Path, recorded: &Path, shared: &Path) -> Result<()> {
        let holds_own_file = self.write.iter().any(|(entry, target)| {
            entry.location == Location::Installed && target.starts_with(path) && target != path
        });
        if holds_own_file && path != shared {
            return Ok(());
        }
        Err(Error::user(format!(
            "the backup records directory {:?} of the shared Quadlet directory, which holds none of its files",
            recorded
        ))
        .with_hint("the metadata is damaged or hostile; the backup is refused"))
    }
}

fn no_active_root(path: &Path) -> Error {
    Error::user(format!(
        "the backup holds {} for leger's active directory, but the deployment has none",
        path.display()
    ))
}

/// Plan putting `entries` back under `roots`, removing every file of
/// `current` (the deployment as installed now: each file with the root it
/// lies under, see [`current_files`]) that the backup does not have.
pub fn plan_restore(
    entries: &[FileEntry],
    roots: &Roots,
    current: &[(PathBuf, PathBuf)],
) -> Result<FilesPlan> {
    let mut plan = FilesPlan::default();
    let mut targets: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in entries {
        crate::backup::metadata::check_relative(&entry.path).map_err(|why| {
            Error::user(format!("file path {:?} in the backup {why}", entry.path))
        })?;
        let root = roots
            .of(entry.location)
            .ok_or_else(|| no_active_root(&entry.path))?;
        let mode = restored_mode(entry.mode, &entry.path)?;
        if entry.size > MAX_FILE_SIZE {
            return Err(Error::user(format!(
                "{} in the backup is {} bytes, more than a deployment file may be ({MAX_FILE_SIZE})",
                entry.path.display(),
                entry.size
            ))
            .with_hint("the metadata is damaged or hostile; the backup is refused"));
        }
        let target = root.join(&entry.path);
        if targets.insert(target.clone()) {
            plan.write.push((
                FileEntry {
                    mode,
                    ..entry.clone()
                },
                target,
            ));
        }
    }
    for (path, root) in current {
        if !targets.contains(path) {
            plan.remove.push((path.clone(), root.clone()));
        }
    }
    plan.remove.sort();
    plan.remove.dedup();
    Ok(plan)
}

/// The files of a deployment as installed now, each with the root it lies
/// under (for [`plan_restore`]).
pub fn current_files(deployment: &Deployment) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for file in deployment.files()? {
        let root = match (&file.location, &deployment.active_dir) {
            (Location::Active, Some(active)) => active.clone(),
            _ => deployment.installed_root.clone(),
        };
        out.push((file.path, root));
    }
    Ok(out)
}
