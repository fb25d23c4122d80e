//! The host paths of a backup: which of a deployment's host paths
//! ([`crate::host_paths`]) are archived, and their archives, read as a
//! local volume is read (our own reader inside the user namespace, see
//! [`crate::backup::volume_reader`]) and stored through the same pipeline
//! ([`write_stream`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::volumes::{private_dir, write_stream};
use crate::backup::journal::{Journal, Step};
use crate::backup::metadata::{archive_name, HostPathEntry, HostPathKind, HOST_PATHS_DIR};
use crate::backup::progress::Progress;
use crate::backup::store::StoredBackup;
use crate::backup::volume_reader::VolumeStream;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::host_paths::classify::Kind;
use crate::host_paths::HostPath;
use crate::interrupt;
use crate::podman::ContainerEngine;
use crate::process::Producer;

/// A host path to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPathSpec {
    /// The absolute, resolved path.
    pub path: String,
    /// The source as the unit writes it (the first unit's, when several
    /// use the path).
    pub source: String,
    /// Services using it, sorted.
    pub used_by: Vec<String>,
}

/// The host paths a backup archives, sorted by path: those judged data or
/// referenced, resolved and existing, neither inside the deployment's own
/// directories (`deployment_dirs`: their files are in every backup) nor
/// inside another chosen path (a bind nested in another is read with the
/// outer one). A path several units use is archived once.
pub(crate) fn select(paths: &[HostPath], deployment_dirs: &[PathBuf]) -> Vec<HostPathSpec> {
    let mut chosen: BTreeMap<&str, HostPathSpec> = BTreeMap::new();
    for h in paths {
        let Some(path) = h.resolved.as_deref() else {
            continue;
        };
        let wanted = matches!(h.kind, Kind::Data | Kind::Referenced)
            && h.exists
            && !h.backed_up_today
            && !deployment_dirs
                .iter()
                .any(|d| Path::new(path).starts_with(d));
        if !wanted {
            continue;
        }
        let spec = chosen.entry(path).or_insert_with(|| HostPathSpec {
            path: path.to_owned(),
            source: h.source.clone(),
            used_by: Vec::new(),
        });
        if !spec.used_by.contains(&h.service) {
            spec.used_by.push(h.service.clone());
        }
    }
    // Sorted, an outer path comes before every path inside it.
    let mut outer: Vec<HostPathSpec> = Vec::new();
    for (_, mut spec) in chosen {
        match outer
            .iter_mut()
            .find(|o| Path::new(&spec.path).starts_with(&o.path))
        {
            Some(o) => {
                // The outer path is read while the inner one's users are
                // stopped too.
                o.used_by.append(&mut spec.used_by);
                o.used_by.sort();
                o.used_by.dedup();
            }
            None => {
                spec.used_by.sort();
                outer.push(spec);
            }
        }
    }
    outer
}

/// How a backup shares the archives of unchanged host paths.
pub(super) struct Sharing<'a> {
    /// The deployment's newest backup, whose archives may be shared.
    pub(super) previous: Option<&'a StoredBackup>,
    /// The paths' users are stopped: a signature taken now may be recorded
    /// for the next backup to share this one's archives.
    pub(super) quiet: bool,
}

/// Write the archive of every host path of `specs` into the pending backup
/// at `dir`, `host-paths/<n>.<ext>` in order; a path unchanged since the
/// newest backup shares its archive (see [`crate::backup::reuse`]). A path
/// gone since the deployment was resolved is recorded as absent; one that
/// cannot be read fails the backup, naming it (a backup never leaves data
/// out silently).
pub(super) fn write_host_paths(
    ctx: &Context,
    deployment: &str,
    specs: &[HostPathSpec],
    sharing: &Sharing<'_>,
    dir: &Path,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Vec<HostPathEntry>> {
    let extension = ctx.config.backup.compression.value.extension();
    let mut entries = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        interrupt::check()?;
        let mut entry = host_entry(ctx, deployment, spec, progress)?;
        if !entry.existed {
            entries.push(entry);
            continue;
        }
        let what = format!("reading host path {}", spec.path);
        let hint = || hint_for(deployment, &spec.path);
        let unreadable = |e: Error| e.context(what.clone()).with_hint(hint());
        journal.step(Step::ReadingHostPath {
            path: spec.path.clone(),
        })?;
        private_dir(&dir.join(HOST_PATHS_DIR))?;
        let rel = archive_name(index, extension);
        // Taken before the read: any change after it moves a ctime, so an
        // archive is shared only while the path is as it was then.
        let signature = signature_of(ctx, &spec.path, progress);
        if let Some(shared) = share(ctx, sharing, &entry, signature.as_deref(), &dir.join(&rel)) {
            progress.step(format!(
                "host path {}: unchanged since backup {}, its archive is shared",
                spec.path,
                sharing.previous.map_or("", |p| p.id())
            ));
            entries.push(HostPathEntry {
                archive_path: Some(rel),
                ..shared
            });
            continue;
        }
        entry.tree_signature = signature.filter(|_| sharing.quiet);
        let bar = progress.bar("reading", &spec.path);
        let stream = open_host_tar(&*ctx.podman, &spec.path).map_err(|e| {
            bar.fail();
            unreadable(e)
        })?;
        let (stats, specials) =
            write_stream(ctx, stream, bar, &what, "read directly", &dir.join(&rel))
                .map_err(|e| e.with_hint(hint()))?;
        entry.archive_path = Some(rel);
        entry.size = stats.size;
        entry.uncompressed_size = stats.uncompressed_size;
        entry.sha256 = Some(stats.sha256);
        entry.special_files = specials;
        entries.push(entry);
    }
    Ok(entries)
}

/// The entry of host path `spec` before its data is read: what is there
/// (a directory or a file), its mode and owner; absent (said) when nothing
/// is there any more. A path that cannot be looked at fails the backup.
pub(super) fn host_entry(
    ctx: &Context,
    deployment: &str,
    spec: &HostPathSpec,
    progress: &Progress,
) -> Result<HostPathEntry> {
    let mut entry = HostPathEntry::new(&spec.path, &spec.source, spec.used_by.clone());
    let unreadable = |e: Error| {
        e.context(format!("reading host path {}", spec.path))
            .with_hint(hint_for(deployment, &spec.path))
    };
    let Some(kind) = kind_of(&spec.path).map_err(unreadable)? else {
        progress.step(format!(
            "host path {} no longer exists: recorded as absent",
            spec.path
        ));
        return Ok(entry);
    };
    entry.existed = true;
    entry.kind = Some(kind);
    entry.root = Some(ctx.podman.root_ownership(&spec.path).map_err(unreadable)?);
    Ok(entry)
}

/// The tree signature of the host path `path`; `None` (said) when it
/// cannot be taken: the next backup then reads the path again.
fn signature_of(ctx: &Context, path: &str, progress: &Progress) -> Option<String> {
    crate::backup::reuse::tree_signature(&*ctx.podman, path)
        .map_err(|e| {
            progress.step(format!(
                "host path {path}: no tree signature ({e}); the next backup reads it again"
            ))
        })
        .ok()
}

/// The entry of `current` (as read now) with the archive of the previous
/// backup linked to `dest`, when its `signature` says the path is
/// unchanged; `None` when it must be read (a failed link included).
fn share(
    ctx: &Context,
    sharing: &Sharing<'_>,
    current: &HostPathEntry,
    signature: Option<&str>,
    dest: &Path,
) -> Option<HostPathEntry> {
    let previous = sharing.previous?;
    let compression = ctx.config.backup.compression.value;
    let old = crate::backup::reuse::reusable_host(
        &previous.metadata,
        &current.path,
        signature?,
        compression,
    )?;
    crate::backup::reuse::link_archive(previous, old.archive_path.as_deref(), old.size, dest)
        .ok()?;
    Some(HostPathEntry {
        size: old.size,
        uncompressed_size: old.uncompressed_size,
        sha256: old.sha256.clone(),
        special_files: old.special_files.clone(),
        tree_signature: old.tree_signature.clone(),
        ..current.clone()
    })
}

/// The hint of a host path that could not be read.
fn hint_for(deployment: &str, path: &str) -> String {
    format!(
        "no backup was kept; make {path} readable, or leave it out with an exclude: glob under \
         backup.deployments.{deployment} in the config file"
    )
}

/// What is at `path` now, not following a symlink: `None` when nothing is.
fn kind_of(path: &str) -> Result<Option<HostPathKind>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::user(format!("cannot look at {path}: {e}"))),
        Ok(m) if m.is_dir() => Ok(Some(HostPathKind::Dir)),
        Ok(m) if m.is_file() => Ok(Some(HostPathKind::File)),
        Ok(m) if m.file_type().is_symlink() => Err(Error::user(format!(
            "{path} is a symlink: name the path it points to in the unit"
        ))),
        Ok(_) => Err(Error::user(format!(
            "{path} is neither a directory nor a regular file"
        ))),
    }
}

/// Start reading the host path `path` with our own reader, as a local
/// volume's directory is read (inside the user namespace rootless, where
/// the files of the container's users are readable). The one place the
/// reader of host paths is chosen.
fn open_host_tar(podman: &dyn ContainerEngine, path: &str) -> Result<VolumeStream> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find leger-backup's own binary: {e}")))?;
    let program = podman.host_path_tar(&exe, path)?;
    streaming(program)
}

/// The stream of a started reader.
fn streaming(mut program: Box<dyn Producer>) -> Result<VolumeStream> {
    let Some(stdout) = program.output() else {
        program.abort();
        return Err(Error::internal("the host path reader has no stdout"));
    };
    super::widen_pipe(stdout.pipe_fd());
    Ok(VolumeStream {
        program,
        stdout,
        head: Vec::new(),
        direct: true,
        fallback: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::HostRefKind;

    fn host(path: Option<&str>, kind: Kind, service: &str) -> HostPath {
        HostPath {
            source: format!("src-of-{}", path.unwrap_or("?")),
            resolved: path.map(str::to_owned),
            target: Some("/t".into()),
            unit: "a.container".into(),
            service: service.into(),
            file: "a.container".into(),
            line: 1,
            reference: HostRefKind::Mount,
            kind,
            reason: String::new(),
            exists: true,
            size_bytes: None,
            size_at_least: false,
            backed_up_today: false,
        }
    }

    fn paths(specs: &[HostPathSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.path.as_str()).collect()
    }

    #[test]
    fn data_and_referenced_are_chosen_the_rest_is_not() {
        let mut missing = host(Some("/srv/missing"), Kind::Data, "a.service");
        missing.exists = false;
        let all = [
            host(Some("/srv/lib"), Kind::Data, "a.service"),
            host(Some("/etc/app/app.env"), Kind::Referenced, "a.service"),
            host(Some("/etc/localtime"), Kind::System, "a.service"),
            host(Some("/srv/media"), Kind::Excluded, "a.service"),
            host(Some("/home/ana"), Kind::NeedsInclude, "a.service"),
            host(None, Kind::Unresolved, "a.service"),
            missing,
        ];
        assert_eq!(paths(&select(&all, &[])), ["/etc/app/app.env", "/srv/lib"]);
    }

    #[test]
    fn the_deployments_own_directory_is_not_chosen_again() {
        let dirs = [PathBuf::from("/h/.config/containers/systemd/app")];
        let mut today = host(
            Some("/h/.config/containers/systemd/app/app.env"),
            Kind::Data,
            "a.service",
        );
        today.backed_up_today = true;
        let all = [
            today,
            host(
                Some("/h/.config/containers/systemd/app/data"),
                Kind::Data,
                "a.service",
            ),
            host(
                Some("/h/.config/containers/systemd/app2"),
                Kind::Data,
                "a.service",
            ),
        ];
        assert_eq!(
            paths(&select(&all, &dirs)),
            ["/h/.config/containers/systemd/app2"]
        );
    }

    #[test]
    fn what_is_at_a_path_now_decides_absent_dir_file_or_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |rel: &str| tmp.path().join(rel).display().to_string();
        std::fs::create_dir(tmp.path().join("dir")).unwrap();
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("dir", tmp.path().join("link")).unwrap();
        assert_eq!(kind_of(&at("gone")).unwrap(), None);
        assert_eq!(kind_of(&at("dir")).unwrap(), Some(HostPathKind::Dir));
        assert_eq!(kind_of(&at("file")).unwrap(), Some(HostPathKind::File));
        let err = kind_of(&at("link")).unwrap_err();
        assert!(err.message.contains("is a symlink"), "{}", err.message);
    }

    #[test]
    fn nested_binds_keep_the_outer_path_with_every_user() {
        let all = [
            host(Some("/srv/app/db"), Kind::Data, "db.service"),
            host(Some("/srv/app"), Kind::Data, "web.service"),
            host(Some("/srv/app"), Kind::Data, "web.service"),
            host(Some("/srv/apple"), Kind::Data, "web.service"),
            host(Some("/srv/apple"), Kind::Data, "db.service"),
        ];
        let chosen = select(&all, &[]);
        assert_eq!(paths(&chosen), ["/srv/app", "/srv/apple"]);
        assert_eq!(chosen[0].used_by, ["db.service", "web.service"]);
        assert_eq!(chosen[1].used_by, ["db.service", "web.service"]);
        assert_eq!(chosen[0].source, "src-of-/srv/app");
    }
}
