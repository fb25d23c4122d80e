//! A deployment's files in a backup: copied in with their checksums and
//! modes, put back exactly where they were installed.
//!
//! "Exactly" means: every file of the backup is written with its recorded
//! content, mode (and symlink target), and every file of the deployment that
//! is not in the backup is removed, so a restore never leaves a stale unit
//! behind for systemd's generator to pick up.
//!
//! Inside the backup each file keeps its relative path, as in leger's own
//! backups; a copy installed under the Quadlet directory that equals the
//! active directory's copy is stored once. Paths that would collide with the
//! backup's own entries (`volumes/`, the metadata) go under `.active/` or
//! `.installed/`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;
use sha2::{Digest, Sha256};

use crate::backup::metadata::{FileEntry, METADATA_FILE};
use crate::deployment::{self, is_quadlet_path, Deployment, DeploymentFile, Location};
use crate::error::{Error, Result};
use crate::ui;

/// Names at the top of a backup directory that belong to the backup itself.
const RESERVED: &[&str] = &[
    "volumes",
    METADATA_FILE,
    crate::backup::store::PID_FILE,
    ".active",
    ".installed",
];

/// Suffix of the temporary file a restore writes before renaming it over
/// the target.
const TMP_SUFFIX: &str = ".leger-backup-tmp";

/// Copy the deployment's `files` into `backup_dir` (dirs 0700, files 0600),
/// returning one entry per file with its checksum and mode. Symlinks are
/// recorded by their target (stored as a small text file), never followed.
pub fn copy_into_backup(files: &[DeploymentFile], backup_dir: &Path) -> Result<Vec<FileEntry>> {
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut taken: BTreeSet<PathBuf> = BTreeSet::new();
    for file in files {
        let meta = fs::symlink_metadata(&file.path)?;
        let mode = meta.permissions().mode() & 0o7777;
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
                None => hash_file(&file.path)?,
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

/// Copy `src` to a new file `dest` (0600), returning sha256 and size.
fn copy_hashing(src: &Path, dest: &Path) -> Result<(String, u64)> {
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(src)?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    Ok(copy_hashed(&mut input, &mut out)?)
}

/// sha256 and size of a file's content.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut input = fs::File::open(path)?;
    Ok(copy_hashed(&mut input, &mut std::io::sink())?)
}

/// Copy `input` to `out` to its end; the sha256 (hex) and size of what
/// passed. One read of each file both stores and checksums it.
fn copy_hashed(input: &mut impl Read, out: &mut impl Write) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn hash_bytes(bytes: &[u8]) -> (String, u64) {
    (hex::encode(Sha256::digest(bytes)), bytes.len() as u64)
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
    fn of(&self, location: Location) -> Option<&Path> {
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
        let root = roots.of(entry.location).ok_or_else(|| {
            Error::user(format!(
                "the backup holds {} for leger's active directory, but the deployment has none",
                entry.path.display()
            ))
        })?;
        let target = root.join(&entry.path);
        if targets.insert(target.clone()) {
            plan.write.push((entry.clone(), target));
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

/// Carry out `plan`, reading the stored files from `backup_dir` and
/// checking each against its recorded checksum while copying. Each target
/// is written to a temporary file next to it and renamed over it, so a file
/// is always either the old or the new version.
pub fn apply(plan: &FilesPlan, backup_dir: &Path, roots: &Roots) -> Result<()> {
    for (entry, target) in &plan.write {
        let root = roots.of(entry.location).unwrap_or(&roots.installed);
        ensure_real_dirs(root, target)?;
        write_one(entry, &backup_dir.join(&entry.stored_as), target)?;
    }
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
        remove_empty_parents(path, root);
    }
    Ok(())
}

/// Create the directories between `root` and `target`, refusing to go
/// through a symlink: a file must land where the backup says, not wherever a
/// link points.
fn ensure_real_dirs(root: &Path, target: &Path) -> Result<()> {
    let rel = target.strip_prefix(root).map_err(|_| {
        Error::internal(format!(
            "{} is not below {}",
            target.display(),
            root.display()
        ))
    })?;
    fs::create_dir_all(root)?;
    let mut dir = root.to_owned();
    let parents: Vec<Component> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for component in parents {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(&dir)?,
            Err(e) => return Err(e.into()),
        }
    }
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
                let (sha, size) = hash_file(stored)?;
                std::os::unix::fs::symlink(link, &tmp).map_err(|e| {
                    Error::internal(format!("cannot create symlink {}: {e}", tmp.display()))
                })?;
                (sha, size)
            }
            None => {
                let mut input = fs::File::open(stored)?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&tmp)?;
                let hashed = copy_hashed(&mut input, &mut out)?;
                out.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
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

/// Remove the now-empty directories between `path` and `root` (exclusive).
fn remove_empty_parents(path: &Path, root: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

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
        let (sha256, size) = hash_file(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn deployment_files(active: &Path, installed: &Path) -> Vec<DeploymentFile> {
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

    #[test]
    fn round_trip_is_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let active = tmp.path().join("active/web");
        let installed = tmp.path().join("systemd");
        write(&active.join("web.container"), "[Container]\n", 0o644);
        write(
            &active.join("web.container.d/10-env.conf"),
            "[Container]\nEnvironment=A=1\n",
            0o640,
        );
        write(&active.join("secret.env"), "TOKEN=x\n", 0o600);
        write(
            &active.join("volumes/odd.txt"),
            "collides with volumes/\n",
            0o644,
        );
        symlink("web.container", active.join("link.container")).unwrap();
        write(&installed.join("web.container"), "[Container]\n", 0o644);
        write(
            &installed.join("web.container.d/10-env.conf"),
            "locally edited\n",
            0o644,
        );

        let backup = tmp.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        let entries = copy_into_backup(&deployment_files(&active, &installed), &backup).unwrap();
        assert_eq!(entries.len(), 7);
        let by = |location: Location, rel: &str| {
            entries
                .iter()
                .find(|e| e.location == location && e.path == Path::new(rel))
                .unwrap()
        };
        // Identical installed copy shares the stored file.
        let a = by(Location::Active, "web.container");
        let i = by(Location::Installed, "web.container");
        assert_eq!(a.stored_as, i.stored_as);
        // A differing one does not.
        let i2 = by(Location::Installed, "web.container.d/10-env.conf");
        assert_eq!(
            i2.stored_as,
            PathBuf::from(".installed/web.container.d/10-env.conf")
        );
        let odd = by(Location::Active, "volumes/odd.txt");
        assert_eq!(odd.stored_as, PathBuf::from(".active/volumes/odd.txt"));
        let link = by(Location::Active, "link.container");
        assert_eq!(link.symlink.as_deref(), Some(Path::new("web.container")));
        assert_eq!(by(Location::Active, "secret.env").mode, 0o600);
        let mode = std::fs::metadata(backup.join("secret.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            quadlet_files(&entries),
            vec![
                "link.container",
                "web.container",
                "web.container.d/10-env.conf"
            ]
        );

        // Change, add and delete files, then restore.
        write(
            &active.join("web.container"),
            "[Container]\nImage=changed\n",
            0o600,
        );
        write(&active.join("new/extra.env"), "NEW=1\n", 0o644);
        std::fs::remove_file(active.join("secret.env")).unwrap();
        std::fs::remove_file(active.join("link.container")).unwrap();
        write(&installed.join("stale.container"), "[Container]\n", 0o644);

        let roots = Roots {
            active: Some(active.clone()),
            installed: installed.clone(),
        };
        let deployment = Deployment {
            name: "web".into(),
            active_dir: Some(active.clone()),
            installed_root: installed.clone(),
            installed_from_active: false,
        };
        let current = current_files(&deployment).unwrap();
        let plan = plan_restore(&entries, &roots, &current).unwrap();
        assert_eq!(plan.remove.len(), 2, "{:?}", plan.remove);
        apply(&plan, &backup, &roots).unwrap();

        let again = deployment_files(&active, &installed);
        let check = tmp.path().join("check");
        std::fs::create_dir(&check).unwrap();
        let entries2 = copy_into_backup(&again, &check).unwrap();
        let strip = |v: &[FileEntry]| {
            v.iter()
                .map(|e| {
                    (
                        e.location,
                        e.path.clone(),
                        e.mode,
                        e.sha256.clone(),
                        e.symlink.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&entries), strip(&entries2));
        assert!(!active.join("new").exists(), "empty dir left behind");
    }

    #[test]
    fn tampered_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("a.container"), "[Container]\n", 0o644);
        let backup = tmp.path().join("b");
        std::fs::create_dir(&backup).unwrap();
        let files = vec![DeploymentFile {
            rel_path: "a.container".into(),
            location: Location::Installed,
            path: src.join("a.container"),
        }];
        let entries = copy_into_backup(&files, &backup).unwrap();
        std::fs::write(backup.join("a.container"), "[Container]\nX\n").unwrap();
        let dest = tmp.path().join("dest");
        let roots = Roots {
            active: None,
            installed: dest.clone(),
        };
        let plan = plan_restore(&entries, &roots, &[]).unwrap();
        let err = apply(&plan, &backup, &roots).unwrap_err();
        assert!(err.message.contains("checksum"), "{}", err.message);
        assert!(!dest.join("a.container").exists());
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            0,
            "temp file left"
        );
    }

    #[test]
    fn legacy_backup_files() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("web.container"), "x", 0o600);
        write(&tmp.path().join("web.env"), "y", 0o600);
        write(&tmp.path().join(METADATA_FILE), "{}", 0o600);
        write(&tmp.path().join("volumes/v.tar"), "", 0o600);
        let entries = legacy_entries(tmp.path(), true).unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| (e.location, e.path.to_string_lossy().into_owned(), e.mode))
            .collect();
        assert_eq!(
            names,
            vec![
                (Location::Active, "web.container".to_owned(), 0o644),
                (Location::Installed, "web.container".to_owned(), 0o644),
                (Location::Active, "web.env".to_owned(), 0o644),
            ]
        );
    }
}
