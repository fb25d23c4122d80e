//! Deployments: where their files live and how they are found.
//!
//! Two kinds exist on a machine, and both are first-class:
//! - **leger deployments**: leger keeps every file in
//!   `<leger data>/active/<name>/` and installs the quadlet files from it into
//!   the Quadlet directory keeping their relative paths;
//! - **plain Quadlet deployments**: a subdirectory `<quadlet dir>/<name>/`.
//!
//! Everything here is derived from the file system on each call; nothing is
//! cached between runs.

use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::quadlet::{self, SourceFile};

/// Extensions of the files Quadlet turns into units.
pub const QUADLET_EXTENSIONS: &[&str] = &[
    "container",
    "volume",
    "network",
    "pod",
    "kube",
    "image",
    "build",
];

/// The largest quadlet file or drop-in read, in bytes. Real ones are a few
/// KiB; anything near this is a mistake or an attack, and the generator
/// reads these files at every `daemon-reload`, where it must stay fast and
/// small whatever the Quadlet directories hold.
pub const QUADLET_FILE_MAX: u64 = 1 << 20;

/// Check a deployment name before it touches the disk: letters, digits,
/// `-`, `_`, `.`, not starting with `.` (so never `..` or a hidden file) nor
/// `-` (it becomes an argument: `stop-hook --deployment NAME`).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(
            Error::user(format!("invalid deployment name {name:?}")).with_hint(
                "names use letters, digits, '-', '_' and '.', and do not start with '.' or '-'",
            ),
        )
    }
}

/// Whether `path` is a quadlet unit file or lies in a quadlet drop-in
/// directory (`web.container.d/10-x.conf`), judged by its name alone.
pub fn is_quadlet_path(path: &Path) -> bool {
    let has_quadlet_ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| QUADLET_EXTENSIONS.contains(&e))
    };
    if has_quadlet_ext(path) {
        return true;
    }
    // Drop-ins: `web.container.d/x.conf`, `web-.container.d/x.conf`, and the
    // unit-type-wide `container.d/x.conf` that Quadlet applies to every unit.
    let type_wide = |dir: &Path| {
        dir.file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|s| QUADLET_EXTENSIONS.contains(&s))
    };
    path.extension().is_some_and(|e| e == "conf")
        && path.parent().is_some_and(|dir| {
            dir.extension().is_some_and(|e| e == "d")
                && (has_quadlet_ext(&dir.with_extension("")) || type_wide(dir))
        })
}

/// Where a deployment file is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// leger's active directory of the deployment.
    Active,
    /// The Quadlet directory, where systemd's generator reads it.
    Installed,
}

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentFile {
    /// Path relative to the location's root.
    pub rel_path: PathBuf,
    /// Which root.
    pub location: Location,
    /// Absolute path on disk.
    pub path: PathBuf,
}

/// A deployment found on disk (or a directory given with `--quadlet-dir`).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Its name (validated).
    pub name: String,
    /// leger's active directory, when leger installed it.
    pub active_dir: Option<PathBuf>,
    /// The root its quadlet files are installed under: the Quadlet directory
    /// for leger deployments, `<quadlet dir>/<name>` for plain ones, the
    /// given directory for `--quadlet-dir`.
    pub installed_root: PathBuf,
    /// Whether only files under `installed_root` that leger installed from the
    /// active directory belong to it (leger), or all of them (plain Quadlet).
    pub installed_from_active: bool,
}

impl Deployment {
    /// A deployment made of every file below `dir` (plain Quadlet layout,
    /// or a directory that is not installed).
    pub fn from_dir(name: &str, dir: &Path) -> Result<Deployment> {
        validate_name(name)?;
        if !dir.is_dir() {
            return Err(Error::user(format!("{} is not a directory", dir.display()))
                .with_hint("give a directory holding .container/.volume/... files"));
        }
        Ok(Deployment {
            name: name.to_owned(),
            active_dir: None,
            installed_root: dir.to_owned(),
            installed_from_active: false,
        })
    }

    /// Every file of the deployment, active directory first, sorted.
    pub fn files(&self) -> Result<Vec<DeploymentFile>> {
        let mut files = Vec::new();
        if let Some(active) = &self.active_dir {
            for rel in walk_files(active)? {
                files.push(DeploymentFile {
                    path: active.join(&rel),
                    rel_path: rel,
                    location: Location::Active,
                });
            }
        }
        for rel in self.installed_rel_paths()? {
            files.push(DeploymentFile {
                path: self.installed_root.join(&rel),
                rel_path: rel,
                location: Location::Installed,
            });
        }
        Ok(files)
    }

    /// Relative paths of the installed files that belong to this deployment.
    fn installed_rel_paths(&self) -> Result<Vec<PathBuf>> {
        if !self.installed_from_active {
            return if self.installed_root.is_dir() {
                walk_files(&self.installed_root)
            } else {
                Ok(Vec::new())
            };
        }
        let Some(active) = &self.active_dir else {
            return Ok(Vec::new());
        };
        Ok(walk_files(active)?
            .into_iter()
            .filter(|rel| is_quadlet_path(rel) && self.installed_root.join(rel).is_file())
            .collect())
    }

    /// The quadlet files systemd uses for this deployment: the installed copy
    /// when there is one, else the active directory's. The first file that
    /// cannot be read (not a regular file, too large) is an error naming it.
    pub fn quadlet_sources(&self) -> Result<Vec<SourceFile>> {
        let (sources, unread) = self.quadlet_sources_skipping()?;
        match unread.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(sources),
        }
    }

    /// [`Self::quadlet_sources`], leaving out each file that cannot be read,
    /// with the error naming it: for the generator and `enable`, where one
    /// bad file must not cost the other units their drop-ins.
    pub fn quadlet_sources_skipping(&self) -> Result<(Vec<SourceFile>, Vec<Error>)> {
        let files = self.files()?;
        let mut chosen: Vec<&DeploymentFile> = Vec::new();
        for file in files.iter().filter(|f| is_quadlet_path(&f.rel_path)) {
            match chosen.iter_mut().find(|c| c.rel_path == file.rel_path) {
                Some(existing) if file.location == Location::Installed => *existing = file,
                Some(_) => {}
                None => chosen.push(file),
            }
        }
        let mut sources = Vec::new();
        let mut unread = Vec::new();
        for file in chosen {
            match read_source(&file.rel_path, &file.path) {
                Ok(source) => sources.push(source),
                Err(err) => unread.push(err),
            }
        }
        Ok((sources, unread))
    }

    /// Resolve this deployment's quadlets against everything installed.
    pub fn resolve(&self, layout: &Layout) -> Result<quadlet::Resolution> {
        let own = self.quadlet_sources()?;
        let installed = installed_quadlet_files(layout)?;
        quadlet::resolve(&own, &installed)
    }
}

/// Largest deployment file leger-backup copies. Deployment files are unit
/// files, env files and small configuration; anything larger is data, which
/// belongs in a volume, and a cap keeps one odd file from filling the backup
/// disk (or, read back from a hostile backup, the machine's).
pub const MAX_FILE_SIZE: u64 = 64 << 20;

/// Open `path` for reading if it is a regular file, returning it and its
/// size ([`crate::regular_file::open`]: never blocks on a FIFO or streams a
/// device). `follow`: whether a final symlink is followed (a symlinked
/// quadlet file is the user's choice; a file copied into a backup is
/// recorded as a link). Not a regular file: a user error saying so.
pub fn open_regular(path: &Path, follow: bool) -> Result<(fs::File, u64)> {
    crate::regular_file::open(path, follow).map_err(|err| {
        if crate::regular_file::is_refusal(&err) {
            Error::user(format!("{err}; not read"))
                .with_hint("a deployment holds regular files and symlinks only: move it away")
        } else {
            err.into()
        }
    })
}

/// Read one quadlet file within [`QUADLET_FILE_MAX`], never blocking.
fn read_source(rel: &Path, path: &Path) -> Result<SourceFile> {
    let bytes = crate::regular_file::read_capped(path, QUADLET_FILE_MAX).map_err(|err| {
        if crate::regular_file::is_refusal(&err) {
            Error::user(format!("{err}: not read as a quadlet file")).with_hint(
                "a quadlet file must be a regular file (or a symlink to one) of at most 1 MiB",
            )
        } else {
            err.into()
        }
    })?;
    Ok(SourceFile {
        rel_path: rel.to_owned(),
        origin: path.to_owned(),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Every file below `root` (following no symlinked directories), as sorted
/// relative paths. Symlinked files are listed: they are part of what the
/// user wrote.
pub fn walk_files(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Every quadlet file on the Quadlet search path, relative to its search
/// directory. Earlier directories win for the same relative path, as in
/// Quadlet. Unreadable directories are skipped: they cannot hold anything
/// the user's units could reference either.
pub fn installed_quadlet_files(layout: &Layout) -> Result<Vec<SourceFile>> {
    let mut out: Vec<SourceFile> = Vec::new();
    for dir in &layout.quadlet_search_path {
        let Ok(rels) = walk_files(dir) else { continue };
        for rel in rels.into_iter().filter(|r| is_quadlet_path(r)) {
            if out.iter().any(|s| s.rel_path == rel) {
                continue;
            }
            if let Ok(source) = read_source(&rel, &dir.join(&rel)) {
                out.push(source);
            }
        }
    }
    Ok(out)
}

/// All deployments in `layout`, sorted by name. A Quadlet subdirectory with
/// the name of a leger deployment is the same deployment.
pub fn discover(layout: &Layout) -> Result<Vec<Deployment>> {
    let mut found: Vec<Deployment> = Vec::new();
    for name in subdirectory_names(&layout.active_dir())? {
        found.push(Deployment {
            active_dir: Some(layout.active_dir_of(&name)),
            installed_root: layout.quadlet_dir.clone(),
            installed_from_active: true,
            name,
        });
    }
    let claimed = claimed_by_leger(&found)?;
    for name in subdirectory_names(&layout.quadlet_dir)? {
        let dir = layout.quadlet_dir.join(&name);
        let is_leger_subdir = claimed.iter().any(|rel| rel.starts_with(&name));
        if found.iter().any(|d| d.name == name) || is_leger_subdir || !holds_quadlet_file(&dir)? {
            continue;
        }
        found.push(Deployment {
            active_dir: None,
            installed_root: dir,
            installed_from_active: false,
            name,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Installed relative paths that leger deployments own, so a subdirectory
/// leger installed into is not taken for a plain Quadlet deployment.
fn claimed_by_leger(leger: &[Deployment]) -> Result<Vec<PathBuf>> {
    let mut claimed = Vec::new();
    for deployment in leger {
        claimed.extend(deployment.installed_rel_paths()?);
    }
    Ok(claimed)
}

/// The deployment called `name` as installed now, or `None` when there is
/// none: the one lookup by name, for callers to whom "not installed" is an
/// answer rather than an error (hooks, restore onto nothing).
pub fn lookup(layout: &Layout, name: &str) -> Result<Option<Deployment>> {
    Ok(discover(layout)?.into_iter().find(|d| d.name == name))
}

/// The deployment called `name`, or an error listing those that exist.
pub fn find(layout: &Layout, name: &str) -> Result<Deployment> {
    validate_name(name)?;
    if let Some(found) = lookup(layout, name)? {
        return Ok(found);
    }
    let names: Vec<String> = discover(layout)?.into_iter().map(|d| d.name).collect();
    Err(no_such_deployment(name, &names))
}

/// `name` when given, else the only deployment; an error listing the
/// choices otherwise.
pub fn find_or_only(layout: &Layout, name: Option<&str>) -> Result<Deployment> {
    if let Some(name) = name {
        return find(layout, name);
    }
    let mut all = discover(layout)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(Error::user("no deployments found").with_hint(format!(
            "install one with leger, or put quadlet files in {}/<name>/",
            layout.quadlet_dir.display()
        ))),
        _ => Err(
            Error::user("several deployments exist; name one").with_hint(format!(
                "choose one of: {}",
                all.iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
    }
}

fn no_such_deployment(name: &str, names: &[String]) -> Error {
    let hint = if names.is_empty() {
        "no deployments are installed".to_owned()
    } else {
        format!("deployments here: {}", names.join(", "))
    };
    Error::user(format!("no deployment named {name:?}")).with_hint(hint)
}

/// Names of the subdirectories of `dir` that are valid deployment names.
fn subdirectory_names(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if validate_name(name).is_ok() && !name.ends_with(".d") {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

fn holds_quadlet_file(dir: &Path) -> Result<bool> {
    Ok(walk_files(dir)?.iter().any(|p| is_quadlet_path(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_identifiers() {
        for ok in ["web", "my-app_2", "a.b", "X1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".hidden", "..", "a/b", "a b", "ä", "../x", "a\0b", "-x", "--url=x",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    /// A quadlet file that is a link to a device, or huge, is refused by
    /// name; it is never read to its end.
    #[test]
    fn quadlet_files_are_read_within_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.container")).unwrap();
        let deployment = Deployment::from_dir("web", &dir).unwrap();
        let err = deployment.quadlet_sources().unwrap_err();
        assert!(err.message.contains("zero.container"), "{}", err.message);
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );
        std::fs::remove_file(dir.join("zero.container")).unwrap();
        let big = std::fs::File::create(dir.join("big.container")).unwrap();
        big.set_len(QUADLET_FILE_MAX + 1).unwrap();
        let err = deployment.quadlet_sources().unwrap_err();
        assert!(err.message.contains("big.container"), "{}", err.message);
        assert!(err.message.contains("larger than"), "{}", err.message);
    }

    /// `lookup` answers "not installed" with `None`; `find` turns it into an
    /// error naming the deployments that exist.
    #[test]
    fn lookup_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::user_at(tmp.path());
        for name in ["web", "db"] {
            let dir = layout.quadlet_dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.container")), "[Container]\n").unwrap();
        }
        let web = lookup(&layout, "web").unwrap().unwrap();
        assert_eq!(web.name, "web");
        assert_eq!(web.installed_root, layout.quadlet_dir.join("web"));
        assert!(lookup(&layout, "mail").unwrap().is_none());
        assert_eq!(find(&layout, "db").unwrap().name, "db");
        let err = find(&layout, "mail").unwrap_err();
        assert!(err.message.contains("mail"), "{}", err.message);
        let hint = err.hint.unwrap_or_default();
        assert!(hint.contains("db") && hint.contains("web"), "{hint}");
    }

    #[test]
    fn quadlet_paths_by_name() {
        assert!(is_quadlet_path(Path::new("web.container")));
        assert!(is_quadlet_path(Path::new("sub/data.volume")));
        assert!(is_quadlet_path(Path::new("web.container.d/10-env.conf")));
        assert!(!is_quadlet_path(Path::new("web.env")));
        assert!(is_quadlet_path(Path::new("container.d/10-all.conf")));
        assert!(!is_quadlet_path(Path::new("conf.d/x.conf")));
    }
}
