//! A deployment's files in a backup: copied in with their checksums and
//! modes, put back exactly where they were installed.
//!
//! "Exactly" means: every file of the backup is written with its recorded
//! content, mode (and symlink target), every directory the backup records
//! gets its mode back (empty ones too), and every file of the deployment that
//! is not in the backup is removed, so a restore never leaves a stale unit
//! behind for systemd's generator to pick up. Modes are permission bits only:
//! setuid, setgid and sticky are neither recorded nor restored.
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

use crate::backup::metadata::{check_mode, DirEntry, FileEntry, Installation, METADATA_FILE};
use crate::deployment::{
    self, is_quadlet_path, open_regular, Deployment, DeploymentFile, Location, MAX_FILE_SIZE,
};
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

/// The mode bits a deployment's files and directories are recorded and
/// restored with. setuid, setgid and sticky never are: a unit file or a
/// config has no use for them, and a backup handed over by someone else must
/// not plant a setuid program in the user's home.
const PERMISSION_BITS: u32 = 0o777;

/// The mode a recorded `mode` is restored with: permission bits only. A mode
/// with bits above `0o7777` was not written by leger-backup: refused.
fn restored_mode(mode: u32, what: &Path) -> Result<u32> {
    check_mode(mode).map_err(|why| {
        Error::user(format!("{} in the backup: {why}", what.display()))
            .with_hint("the metadata is damaged or hostile; the backup is refused")
    })?;
    Ok(mode & PERMISSION_BITS)
}

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
fn copy_hashing(src: &Path, dest: &Path) -> Result<(String, u64)> {
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

/// sha256 and size of a regular file's content (never a FIFO or device),
/// reading at most `limit` + 1 bytes: enough to tell it is too long.
pub fn hash_file(path: &Path, limit: u64) -> Result<(String, u64)> {
    let (input, _) = open_regular(path, false)?;
    Ok(copy_hashed(
        &mut input.take(limit.saturating_add(1)),
        &mut std::io::sink(),
    )?)
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

/// sha256 (hex) and length of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> (String, u64) {
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

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn mkdir(path: &Path, mode: u32) {
        std::fs::create_dir_all(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A leger deployment: its active directory and the shared Quadlet
    /// directory it installs into.
    fn leger_installation(active: &Path, installed: &Path) -> Installation {
        Installation {
            active_dir: Some(active.to_owned()),
            installed_root: installed.to_owned(),
            installed_from_active: true,
        }
    }

    /// Back up the files and directories under `active` and `installed`.
    fn back_up(active: &Path, installed: &Path, backup: &Path) -> (Vec<FileEntry>, Vec<DirEntry>) {
        std::fs::create_dir_all(backup).unwrap();
        let files = deployment_files(active, installed);
        let entries = copy_into_backup(&files, backup).unwrap();
        let dirs = record_dirs(&files, &leger_installation(active, installed)).unwrap();
        (entries, dirs)
    }

    /// Restore `entries` and `dirs` over whatever is under the roots now.
    fn put_back(
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

    /// A 0700 `secrets/`, a 0750 dir, an empty dir and a 0500 dir holding a
    /// file come back with their modes, after removal and over a changed
    /// tree.
    /// Review finding: a crafted `dirs` entry for `.` of the shared Quadlet
    /// directory (mode 0777) would have made it world-writable.
    #[test]
    fn a_leger_backup_gives_modes_only_to_directories_of_its_own_files() {
        use crate::backup::metadata::DirEntry;
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots {
            active: Some(tmp.path().join("active/web")),
            installed: tmp.path().join("systemd"),
        };
        let entry = |path: &str| FileEntry {
            location: Location::Installed,
            path: path.into(),
            stored_as: path.into(),
            size: 0,
            mode: 0o644,
            sha256: String::new(),
            symlink: None,
        };
        let plan = || {
            plan_restore(
                &[entry("web.container"), entry("sub/x.container")],
                &roots,
                &[],
            )
            .unwrap()
        };
        let dir = |path: &str| DirEntry {
            location: Location::Installed,
            path: path.into(),
            mode: 0o777,
        };
        assert!(plan().with_dirs(&[dir("sub")], &roots).is_ok());
        for hostile in [".", "other", "sub/x.container/.."] {
            let err = plan().with_dirs(&[dir(hostile)], &roots);
            assert!(err.is_err(), "{hostile}: {:?}", err.map(|p| p.dirs));
        }
    }

    #[test]
    fn directory_modes_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let active = tmp.path().join("active/web");
        let installed = tmp.path().join("systemd");
        write(&active.join("web.container"), "[Container]\n", 0o644);
        write(&active.join("web.container.d/10.conf"), "[Unit]\n", 0o644);
        write(&active.join("secrets/token"), "t\n", 0o600);
        write(&active.join("conf/app.ini"), "a=1\n", 0o640);
        write(&active.join("ro/fixed.txt"), "fixed\n", 0o444);
        mkdir(&active.join("empty/deeper"), 0o710);
        mkdir(&active.join("secrets"), 0o700);
        mkdir(&active.join("conf"), 0o750);
        mkdir(&active.join("web.container.d"), 0o750);
        mkdir(&active.join("ro"), 0o500);
        mkdir(&active, 0o750);
        write(&installed.join("web.container"), "[Container]\n", 0o644);
        write(
            &installed.join("web.container.d/10.conf"),
            "[Unit]\n",
            0o644,
        );
        mkdir(&installed.join("web.container.d"), 0o700);
        let expected = [
            (active.clone(), 0o750),
            (active.join("secrets"), 0o700),
            (active.join("secrets/token"), 0o600),
            (active.join("conf"), 0o750),
            (active.join("conf/app.ini"), 0o640),
            (active.join("ro"), 0o500),
            (active.join("ro/fixed.txt"), 0o444),
            (active.join("empty"), 0o755),
            (active.join("empty/deeper"), 0o710),
            (installed.join("web.container.d"), 0o700),
        ];
        mkdir(&active.join("empty"), 0o755);
        let backup = tmp.path().join("backup");
        let (entries, dirs) = back_up(&active, &installed, &backup);
        let recorded = |location, rel: &str| {
            dirs.iter()
                .find(|d| d.location == location && d.path == Path::new(rel))
                .map(|d| d.mode)
        };
        assert_eq!(recorded(Location::Active, "."), Some(0o750));
        assert_eq!(recorded(Location::Active, "secrets"), Some(0o700));
        assert_eq!(recorded(Location::Active, "empty/deeper"), Some(0o710));
        assert_eq!(
            recorded(Location::Installed, "web.container.d"),
            Some(0o700)
        );
        // The shared Quadlet directory is not the deployment's.
        assert_eq!(recorded(Location::Installed, "."), None);

        // Removed (as `leger remove` does), then restored.
        std::fs::set_permissions(active.join("ro"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::remove_dir_all(&active).unwrap();
        std::fs::remove_dir_all(installed.join("web.container.d")).unwrap();
        std::fs::remove_file(installed.join("web.container")).unwrap();
        put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
        for (path, mode) in &expected {
            assert_eq!(mode_of(path), *mode, "{} after removal", path.display());
        }

        // Over a changed tree: modes opened up, a stale file in the empty
        // directory (its removal keeps the directory), a file changed
        // below the 0500 directory.
        for dir in ["secrets", "conf", "empty", "ro", "."] {
            mkdir(&active.join(dir), 0o755);
        }
        write(&active.join("empty/stale.txt"), "stale\n", 0o644);
        std::fs::remove_file(active.join("ro/fixed.txt")).unwrap();
        write(&active.join("ro/fixed.txt"), "changed\n", 0o644);
        mkdir(&active.join("ro"), 0o500);
        put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
        for (path, mode) in &expected {
            assert_eq!(
                mode_of(path),
                *mode,
                "{} over a changed tree",
                path.display()
            );
        }
        assert!(!active.join("empty/stale.txt").exists());
        assert_eq!(
            std::fs::read_to_string(active.join("ro/fixed.txt")).unwrap(),
            "fixed\n"
        );
        std::fs::set_permissions(active.join("ro"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }

    /// setuid, setgid and sticky bits in the deployment are not recorded.
    #[test]
    fn special_bits_are_never_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let active = tmp.path().join("active/web");
        let installed = tmp.path().join("systemd");
        write(&active.join("suid.sh"), "#!/bin/sh\n", 0o4755);
        write(&active.join("shared/sgid.sh"), "#!/bin/sh\n", 0o2750);
        mkdir(&active.join("shared"), 0o2770);
        mkdir(&active.join("tmp"), 0o1777);
        std::fs::create_dir_all(&installed).unwrap();
        // The bits are really there (the owner may set them).
        assert_eq!(mode_of(&active.join("suid.sh")), 0o4755);
        assert_eq!(mode_of(&active.join("tmp")), 0o1777);
        let (entries, dirs) = back_up(&active, &installed, &tmp.path().join("backup"));
        let file_mode = |rel: &str| {
            entries
                .iter()
                .find(|e| e.path == Path::new(rel))
                .unwrap()
                .mode
        };
        let dir_mode = |rel: &str| dirs.iter().find(|d| d.path == Path::new(rel)).unwrap().mode;
        assert_eq!(file_mode("suid.sh"), 0o755);
        assert_eq!(file_mode("shared/sgid.sh"), 0o750);
        assert_eq!(dir_mode("tmp"), 0o777);
        if mode_of(&active.join("shared")) == 0o2770 {
            assert_eq!(dir_mode("shared"), 0o770);
        }
    }

    /// A plain Quadlet deployment's own directory is recorded, with those
    /// below it.
    #[test]
    fn a_plain_deployment_records_its_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("systemd/web");
        write(&dir.join("web.container.d/10.conf"), "[Unit]\n", 0o644);
        mkdir(&dir.join("web.container.d"), 0o700);
        mkdir(&dir, 0o750);
        let deployment = Deployment::from_dir("web", &dir).unwrap();
        let installation = Installation {
            active_dir: None,
            installed_root: dir.clone(),
            installed_from_active: false,
        };
        let dirs = record_dirs(&deployment.files().unwrap(), &installation).unwrap();
        let got: Vec<_> = dirs
            .iter()
            .map(|d| (d.location, d.path.to_string_lossy().into_owned(), d.mode))
            .collect();
        assert_eq!(
            got,
            vec![
                (Location::Installed, ".".to_owned(), 0o750),
                (Location::Installed, "web.container.d".to_owned(), 0o700),
            ]
        );
    }

    /// A crafted backup asking for setuid/setgid gets permission bits only.
    #[test]
    fn crafted_special_bits_restore_as_permission_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let active = tmp.path().join("active/web");
        let installed = tmp.path().join("systemd");
        write(&active.join("bin/tool"), "#!/bin/sh\n", 0o755);
        std::fs::create_dir_all(&installed).unwrap();
        let backup = tmp.path().join("backup");
        let (mut entries, mut dirs) = back_up(&active, &installed, &backup);
        std::fs::remove_dir_all(&active).unwrap();
        entries[0].mode = 0o4755;
        for dir in &mut dirs {
            dir.mode = 0o2750;
        }
        put_back(&entries, &dirs, &backup, &active, &installed).unwrap();
        assert_eq!(mode_of(&active.join("bin/tool")), 0o755);
        assert_eq!(mode_of(&active.join("bin")), 0o750);
        assert_eq!(mode_of(&active), 0o750);
    }

    /// A mode with bits above 0o7777 (a file type, garbage) is hostile.
    #[test]
    fn modes_above_permission_bits_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let active = tmp.path().join("active/web");
        let installed = tmp.path().join("systemd");
        write(&active.join("conf/a.env"), "A=1\n", 0o644);
        std::fs::create_dir_all(&installed).unwrap();
        let backup = tmp.path().join("backup");
        let (entries, dirs) = back_up(&active, &installed, &backup);
        let before = mode_of(&active.join("conf/a.env"));

        let mut bad_file = entries.clone();
        bad_file[0].mode = 0o100644;
        let err = put_back(&bad_file, &dirs, &backup, &active, &installed).unwrap_err();
        assert!(err.message.contains("0o100644"), "{}", err.message);
        assert!(err.message.contains("conf/a.env"), "{}", err.message);

        let mut bad_dir = dirs.clone();
        bad_dir[1].mode = 0o40755;
        let err = put_back(&entries, &bad_dir, &backup, &active, &installed).unwrap_err();
        assert!(err.message.contains("0o40755"), "{}", err.message);
        assert_eq!(mode_of(&active.join("conf/a.env")), before);

        // Refused when the metadata is loaded, too.
        let json = serde_json::json!({
            "id": "web-2025-01-01-000000", "deployment_name": "web",
            "created_at": "2025-01-01T00:00:00Z", "type": "manual", "reason": "m",
            "size": 0, "quadlet_files": [], "volumes": [], "format_version": 1,
            "dirs": [{"location": "active", "path": "conf", "mode": 0o40755}],
        });
        let err = crate::backup::metadata::Metadata::parse(
            json.to_string().as_bytes(),
            Path::new("m.json"),
        )
        .unwrap_err();
        assert!(err.message.contains("above 0o7777"), "{}", err.message);
    }

    /// A file larger than the cap is refused, naming it; nothing is read.
    #[test]
    fn oversized_deployment_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("big.db"), "", 0o644);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(src.join("big.db"))
            .unwrap();
        file.set_len(MAX_FILE_SIZE + 1).unwrap();
        let backup = tmp.path().join("b");
        std::fs::create_dir(&backup).unwrap();
        let files = vec![DeploymentFile {
            rel_path: "big.db".into(),
            location: Location::Active,
            path: src.join("big.db"),
        }];
        let err = copy_into_backup(&files, &backup).unwrap_err();
        assert!(err.message.contains("big.db"), "{}", err.message);
        assert!(err.message.contains("more than"), "{}", err.message);
        assert!(
            err.hint.as_deref().unwrap_or("").contains("volume"),
            "{err:?}"
        );
        assert!(!backup.join("big.db").exists());
    }

    /// A FIFO in a deployment directory is skipped, never opened (a read
    /// would block forever); opened anyway (a race), it is refused at once.
    #[test]
    fn a_fifo_is_skipped_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("a.container"), "[Container]\n", 0o644);
        nix::unistd::mkfifo(&src.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let backup = tmp.path().join("b");
        std::fs::create_dir(&backup).unwrap();
        let files: Vec<DeploymentFile> = ["a.container", "pipe"]
            .iter()
            .map(|rel| DeploymentFile {
                rel_path: rel.into(),
                location: Location::Installed,
                path: src.join(rel),
            })
            .collect();
        let entries = copy_into_backup(&files, &backup).unwrap();
        assert_eq!(entries.len(), 1);
        let err = copy_hashing(&src.join("pipe"), &backup.join("pipe")).unwrap_err();
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );
    }

    /// Hashing a stored file reads at most one byte past the recorded size.
    #[test]
    fn hashing_stops_past_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write(&path, &"x".repeat(1000), 0o600);
        assert_eq!(hash_file(&path, 10).unwrap().1, 11);
        assert_eq!(hash_file(&path, 5000).unwrap().1, 1000);
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
