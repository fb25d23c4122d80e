//! The host paths of a backup (bind-mounted directories, env files and
//! configs a unit refers to): what is recorded of each, and the checks that
//! metadata read from disk passes before a path in it is trusted — a
//! restore writes to these absolute paths, so a hostile backup must not be
//! able to name `/`, climb with `..`, or hide one entry inside another.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::podman::RootOwnership;

/// Where a backup keeps the archives of host paths, relative to its directory.
pub const HOST_PATHS_DIR: &str = "host-paths";

/// What was at a host path when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostPathKind {
    /// A directory (its contents are the archive's entries).
    Dir,
    /// A single regular file.
    File,
}

/// One host path in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPathEntry {
    /// The absolute, resolved host path.
    pub path: String,
    /// The source as the unit writes it (`${UPLOAD_LOCATION}`, `%h/db`).
    pub source: String,
    /// Directory or file; `None` when nothing was there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<HostPathKind>,
    /// Whether something was at the path when the backup read it (it may
    /// have vanished since the deployment was resolved).
    pub existed: bool,
    /// The archive, relative to the backup directory
    /// (`host-paths/<n>.tar.zst`); `None` when it did not exist.
    #[serde(default)]
    pub archive_path: Option<PathBuf>,
    /// Only in a repository's snapshot: the path is the tree (or file)
    /// `host-paths/<n>` of the snapshot, not an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<PathBuf>,
    /// Archive size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Bytes of the uncompressed tar.
    #[serde(default)]
    pub uncompressed_size: u64,
    /// sha256 of the archive file, hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Mode and owner of the path itself inside the user namespace, as a
    /// volume's root is recorded.
    #[serde(default)]
    pub root: Option<RootOwnership>,
    /// Services using it.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Device nodes and FIFOs it held (paths in the archive): the only ones
    /// a restore lets through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_files: Vec<String>,
    /// Its tree signature, taken before it was read (see
    /// [`crate::backup::reuse`]): a later backup finding the same one
    /// shares this archive instead of reading the path again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_signature: Option<String>,
}

impl HostPathEntry {
    /// The host path `path` (from `source`) before it is read: nothing
    /// recorded yet.
    pub fn new(path: &str, source: &str, used_by: Vec<String>) -> HostPathEntry {
        HostPathEntry {
            path: path.to_owned(),
            source: source.to_owned(),
            kind: None,
            existed: false,
            archive_path: None,
            tree: None,
            size: 0,
            uncompressed_size: 0,
            sha256: None,
            root: None,
            used_by,
            special_files: Vec::new(),
            tree_signature: None,
        }
    }
}

/// The tree of the `index`th host path in a repository's snapshot:
/// `host-paths/<index>`.
pub fn tree_name(index: usize) -> PathBuf {
    PathBuf::from(HOST_PATHS_DIR).join(index.to_string())
}

/// The archive name of the `index`th host path: `host-paths/<index>.<ext>`.
/// Numbers, not paths: a host path becomes no file name in the backup.
pub fn archive_name(index: usize, extension: &str) -> PathBuf {
    PathBuf::from(HOST_PATHS_DIR).join(format!("{index}.{extension}"))
}

/// Why an absolute host path from metadata cannot be trusted, if it cannot:
/// it must be absolute and normalized (no `.`, `..`, `//` or trailing `/`),
/// not `/` itself, and text without control characters.
pub fn check_host_path(path: &str) -> std::result::Result<(), String> {
    if path.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if !path.starts_with('/') {
        return Err("is not absolute".into());
    }
    if path == "/" {
        return Err("is the root directory".into());
    }
    if path.ends_with('/') || path.contains("//") {
        return Err("is not normalized (empty component or trailing '/')".into());
    }
    if path[1..].split('/').any(|c| c == "." || c == "..") {
        return Err("contains '.' or '..'".into());
    }
    Ok(())
}

/// Why an archive path of a host path cannot be trusted, if it cannot: it
/// must be `host-paths/<number>.<tar, tar.gz or tar.zst>`, as written.
pub fn check_archive_name(rel: &Path) -> std::result::Result<(), String> {
    let mut parts = rel.components();
    let (Some(Component::Normal(dir)), Some(Component::Normal(name)), None) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("is not directly under {HOST_PATHS_DIR}/"));
    };
    if dir != HOST_PATHS_DIR {
        return Err(format!("is not directly under {HOST_PATHS_DIR}/"));
    }
    let name = name.to_str().unwrap_or_default();
    let stem = ["tar.zst", "tar.gz", "tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext)?.strip_suffix('.'));
    match stem {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("is not named <number>.tar, .tar.gz or .tar.zst".into()),
    }
}

/// Why a backup's host paths cannot be trusted, if they cannot: every path
/// and archive name checked, and no path equal to or inside another (a
/// restore of one would overwrite part of the other).
pub fn check_entries(entries: &[HostPathEntry]) -> std::result::Result<(), String> {
    for e in entries {
        check_host_path(&e.path).map_err(|why| format!("host path {:?} {why}", e.path))?;
        if let Some(rel) = &e.archive_path {
            check_archive_name(rel)
                .map_err(|why| format!("archive_path {rel:?} of host path {:?} {why}", e.path))?;
        }
        if let Some(tree) = &e.tree {
            let numbered = tree.parent() == Some(Path::new(HOST_PATHS_DIR))
                && tree
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !numbered || e.archive_path.is_some() {
                return Err(format!(
                    "tree {tree:?} of host path {:?} is not {HOST_PATHS_DIR}/<number>, or comes with an archive",
                    e.path
                ));
            }
        }
        if e.special_files.len() > crate::backup::tar_guard::MAX_SPECIALS {
            return Err(format!(
                "host path {:?} records more than {} device nodes and FIFOs",
                e.path,
                crate::backup::tar_guard::MAX_SPECIALS
            ));
        }
        for special in &e.special_files {
            super::check_relative(Path::new(special))
                .map_err(|why| format!("special file {special:?} {why}"))?;
        }
        if let Some(root) = &e.root {
            super::check_mode(root.mode).map_err(|why| format!("host path {:?}: {why}", e.path))?;
        }
        for s in &e.used_by {
            crate::names::check_service(s).map_err(|why| format!("used_by {s:?} {why}"))?;
        }
    }
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            let (pa, pb) = (Path::new(&a.path), Path::new(&b.path));
            if pa.starts_with(pb) || pb.starts_with(pa) {
                return Err(format!(
                    "host paths {:?} and {:?} are the same or one is inside the other",
                    a.path, b.path
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, archive: Option<&str>) -> HostPathEntry {
        HostPathEntry {
            existed: true,
            archive_path: archive.map(PathBuf::from),
            ..HostPathEntry::new(path, "${X}", vec!["a.service".into()])
        }
    }

    #[test]
    fn normalized_absolute_paths_pass() {
        let ok = [
            entry("/srv/album/library", Some("host-paths/0.tar.zst")),
            entry("/var/lib/album/postgres", Some("host-paths/1.tar")),
            entry("/srv/album/library2", Some("host-paths/12.tar.gz")),
            entry("/srv/gone", None),
        ];
        assert_eq!(check_entries(&ok), Ok(()));
    }

    #[test]
    fn hostile_paths_are_refused_with_the_reason() {
        let cases = [
            ("srv/x", "is not absolute"),
            ("/", "is the root directory"),
            ("/srv/x/", "not normalized"),
            ("/srv//x", "not normalized"),
            ("/srv/../etc", "'..'"),
            ("/srv/./x", "'.'"),
            ("/srv/\nx", "control character"),
            ("", "is not absolute"),
        ];
        for (path, why) in cases {
            let err = check_entries(&[entry(path, None)]).unwrap_err();
            assert!(err.contains(why), "{path:?}: {err}");
            assert!(err.contains("host path"), "{path:?}: {err}");
        }
    }

    #[test]
    fn repository_trees_are_numbered_names_without_an_archive() {
        let mut e = entry("/srv/x", None);
        e.tree = Some("host-paths/3".into());
        assert_eq!(check_entries(std::slice::from_ref(&e)), Ok(()));
        for bad in [
            "host-paths/../x",
            "host-paths/a",
            "volumes/3",
            "host-paths/",
            "/host-paths/1",
        ] {
            e.tree = Some(bad.into());
            let err = check_entries(std::slice::from_ref(&e)).unwrap_err();
            assert!(err.contains("tree"), "{bad}: {err}");
        }
        let mut both = entry("/srv/x", Some("host-paths/0.tar.zst"));
        both.tree = Some("host-paths/0".into());
        assert!(check_entries(&[both]).is_err());
    }

    #[test]
    fn archive_names_are_ours_only() {
        for bad in [
            "volumes/0.tar.zst",
            "host-paths/../0.tar",
            "host-paths/x.tar.zst",
            "host-paths/0.zip",
            "host-paths/.tar",
            "/host-paths/0.tar",
            "host-paths/a/0.tar",
            "host-paths",
        ] {
            let err = check_entries(&[entry("/srv/x", Some(bad))]).unwrap_err();
            assert!(err.contains("archive_path"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_same_or_nested_paths_are_refused() {
        for (a, b) in [
            ("/srv/x", "/srv/x"),
            ("/srv/x", "/srv/x/db"),
            ("/srv/x/db", "/srv/x"),
        ] {
            let err = check_entries(&[entry(a, None), entry(b, None)]).unwrap_err();
            assert!(err.contains("one is inside the other"), "{err}");
        }
        // A common prefix is not nesting.
        assert_eq!(
            check_entries(&[entry("/srv/x", None), entry("/srv/xy", None)]),
            Ok(())
        );
    }

    #[test]
    fn loading_metadata_checks_its_host_paths() {
        let doc = |path: &str| {
            format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"volumes":[],"host_paths":[{{"path":{path:?},"source":"${{X}}","kind":"dir","existed":true,"archive_path":"host-paths/0.tar.zst"}}]}}"#
            )
        };
        let file = Path::new("m.json");
        let sound = super::super::Metadata::parse(doc("/srv/x").as_bytes(), file).unwrap();
        assert_eq!(sound.host_paths[0].kind, Some(HostPathKind::Dir));
        let err = super::super::Metadata::parse(doc("/srv/../etc").as_bytes(), file).unwrap_err();
        assert!(
            err.message
                .contains(r#"m.json: host path "/srv/../etc" contains '.' or '..'"#),
            "{}",
            err.message
        );
    }

    #[test]
    fn services_and_modes_are_checked() {
        let mut e = entry("/srv/x", None);
        e.used_by = vec!["--user".into()];
        assert!(check_entries(&[e]).unwrap_err().contains("used_by"));
        let mut e = entry("/srv/x", None);
        e.root = Some(RootOwnership {
            mode: 0o170_755,
            uid: 0,
            gid: 0,
        });
        assert!(check_entries(&[e]).unwrap_err().contains("0o7777"));
    }
}
