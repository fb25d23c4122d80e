//! `sync`: send the local backups a repository lacks (taken while it was
//! unreachable, or before it was configured) as snapshots of their own.
//!
//! A local backup holds archives; a repository holds trees (so restic
//! deduplicates per file). Each archive is written out as a tree by our
//! exact tree writer inside the user namespace, through the same checks a
//! restore makes, into a pending directory beside the backups; the
//! deployment's files are hard-linked; the metadata is the backup's own
//! with each archive replaced by its tree. The snapshot keeps the backup's
//! ID, tags and time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::metadata::{tree_name, volume_tree, Metadata, METADATA_FILE};
use crate::backup::progress::Progress;
use crate::backup::restore::unpack_archive;
use crate::backup::store::{BackupStore, StoredBackup, PID_FILE};
use crate::context::Context;
use crate::error::Result;
use crate::layout::Scope;
use crate::repository::{parent_snapshot, BackupRequest, Repository, SnapshotTags};

/// What `sync` did for one repository.
#[derive(Debug, Default, serde::Serialize)]
pub struct SyncReport {
    /// The repository.
    pub repository: String,
    /// Backups sent, by ID.
    pub sent: Vec<String>,
    /// Local backups the repository already had.
    pub present: usize,
    /// Backups not sent on purpose, with why (invalid, or a restore's
    /// safety backup whose data was moved aside).
    pub skipped: Vec<(String, String)>,
    /// Backups that could not be sent, with the error.
    pub failed: Vec<(String, String)>,
}

/// Send every valid local backup of `store` that `repo` lacks.
pub fn sync(
    ctx: &Context,
    store: &BackupStore,
    repo: &Arc<dyn Repository>,
    progress: &Progress,
) -> Result<SyncReport> {
    let present: std::collections::BTreeSet<String> = repo
        .snapshots(&[super::snapshot::TAG.to_owned()])?
        .iter()
        .filter_map(|s| s.backup_tags().ok().map(|t| t.id))
        .collect();
    let mut report = SyncReport {
        repository: repo.name().to_owned(),
        ..SyncReport::default()
    };
    let mut listed = store.list()?;
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    for entry in listed {
        let Ok(metadata) = &entry.metadata else {
            report.skipped.push((entry.id.clone(), "invalid".into()));
            continue;
        };
        if present.contains(&entry.id) {
            report.present += 1;
            continue;
        }
        if metadata.volumes.iter().any(|v| v.held_aside) {
            report.skipped.push((
                entry.id.clone(),
                "a restore's safety backup: its volumes' data was moved aside".into(),
            ));
            continue;
        }
        let backup = store.load(&entry.id)?;
        match send(ctx, store, repo, &backup, progress) {
            Ok(()) => report.sent.push(entry.id.clone()),
            Err(e) => report.failed.push((entry.id.clone(), e.to_string())),
        }
    }
    Ok(report)
}

/// Send one local backup as a snapshot.
fn send(
    ctx: &Context,
    store: &BackupStore,
    repo: &Arc<dyn Repository>,
    backup: &StoredBackup,
    progress: &Progress,
) -> Result<()> {
    let m = &backup.metadata;
    progress.step(format!("sending {} to repository {}", m.id, repo.name()));
    let pending = store.begin(&m.id)?;
    let staged = stage_trees(ctx, backup, pending.path(), progress);
    let sent = staged.and_then(|metadata| {
        link_files(&backup.path, pending.path())?;
        pending.write_metadata(&metadata)?;
        let tags = SnapshotTags {
            deployment: m.deployment_name.clone(),
            id: m.id.clone(),
            backup_type: m.backup_type,
            reason: m.reason.clone(),
        }
        .to_tags()?;
        repo.backup(&BackupRequest {
            tags,
            root: pending.path().to_owned(),
            binds: Vec::new(),
            parent: parent_snapshot(&**repo, &m.deployment_name)?,
            time: Some(m.created_at),
            in_namespace: ctx.layout.scope == Scope::User,
        })
    });
    // The trees belong to the containers' users: removed inside the user
    // namespace, before the pending directory goes.
    for dir in ["volumes", "host-paths"] {
        let path = pending.path().join(dir);
        if path.exists() {
            ctx.podman.remove_tree(&path.display().to_string())?;
        }
    }
    sent.map(drop)
}

/// Write each archive of `backup` as a tree under `dir`; the metadata with
/// every archive replaced by its tree.
fn stage_trees(
    ctx: &Context,
    backup: &StoredBackup,
    dir: &Path,
    progress: &Progress,
) -> Result<Metadata> {
    let mut metadata = backup.metadata.clone();
    for volume in &mut metadata.volumes {
        let Some(rel) = volume.archive_path.take() else {
            continue;
        };
        let tree = volume_tree(&volume.name);
        let dest = private_dir(&dir.join(&tree))?;
        unpack_archive(
            ctx,
            backup,
            &rel,
            volume.sha256.as_deref(),
            volume.uncompressed_size,
            &volume.special_files,
            &dest,
            false,
            progress,
        )?;
        if let Some(root) = volume.root {
            ctx.podman.set_root_ownership(&dest, root)?;
        }
        (volume.sha256, volume.tree) = (None, Some(tree));
    }
    for (index, host) in metadata.host_paths.iter_mut().enumerate() {
        let Some(rel) = host.archive_path.take() else {
            continue;
        };
        let tree = tree_name(index);
        let file = host.kind == Some(crate::backup::metadata::HostPathKind::File);
        let dest = if file {
            private_dir(&dir.join(crate::backup::metadata::HOST_PATHS_DIR))?;
            dir.join(&tree).display().to_string()
        } else {
            private_dir(&dir.join(&tree))?
        };
        unpack_archive(
            ctx,
            backup,
            &rel,
            host.sha256.as_deref(),
            host.uncompressed_size,
            &host.special_files,
            &dest,
            file,
            progress,
        )?;
        if let (Some(root), false) = (host.root, file) {
            ctx.podman.set_root_ownership(&dest, root)?;
        }
        (host.sha256, host.tree) = (None, Some(tree));
    }
    Ok(metadata)
}

/// Create `path` and its parents (0700); its path as a string.
fn private_dir(path: &Path) -> Result<String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| {
            crate::error::Error::internal(format!("cannot create {}: {e}", path.display()))
        })?;
    Ok(path.display().to_string())
}

/// Hard-link the deployment's files of the backup at `from` into `to`:
/// everything but the archives, the metadata and the pid file.
fn link_files(from: &Path, to: &Path) -> Result<()> {
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if ["volumes", "host-paths", METADATA_FILE, PID_FILE]
            .iter()
            .any(|n| name == *n)
        {
            continue;
        }
        link_tree(&entry.path(), &to.join(&name))?;
    }
    Ok(())
}

fn link_tree(from: &Path, to: &PathBuf) -> Result<()> {
    let meta = fs_err::symlink_metadata(from)?;
    if meta.is_dir() {
        private_dir(to)?;
        for entry in fs_err::read_dir(from)? {
            let entry = entry?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        Ok(fs_err::hard_link(from, to)?)
    }
}
