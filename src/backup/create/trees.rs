//! A backup going to a repository: the volumes and host paths are not
//! archived but bound, as they are, into the pending backup's directory,
//! and restic takes one snapshot of it while the services are stopped
//! ([`crate::repository::stage`]). The metadata travels inside the
//! snapshot, so a machine with nothing but the repository's config entry
//! can restore it.

use std::sync::Arc;

use super::host_paths::host_entry;
use super::volumes::{volume_entry, Inspected};
use super::Subject;
use crate::backup::metadata::{tree_name, volume_tree, HostPathEntry, Metadata, VolumeEntry};
use crate::backup::progress::Progress;
use crate::backup::store::PendingBackup;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::Scope;
use crate::repository::{BackupRequest, BackupSummary, Repository, SnapshotTags, StageBind};

/// What a repository's snapshot holds besides the pending directory.
struct Trees {
    volumes: Vec<VolumeEntry>,
    host_paths: Vec<HostPathEntry>,
    binds: Vec<StageBind>,
}

/// Take the snapshot of `subject` into `repo`: record every volume and host
/// path as a tree in `metadata`, write it into `pending`, and run restic on
/// the stage. The services are stopped (unless live) while this runs.
#[allow(clippy::too_many_arguments)]
pub(super) fn snapshot_into(
    ctx: &Context,
    repo: &Arc<dyn Repository>,
    subject: &Subject,
    infos: Vec<Inspected>,
    metadata: &mut Metadata,
    pending: &PendingBackup,
    parent: Option<String>,
    progress: &Progress,
) -> Result<BackupSummary> {
    let trees = tree_sources(ctx, subject, infos, progress)?;
    metadata.volumes = trees.volumes;
    metadata.host_paths = trees.host_paths;
    pending.write_metadata(metadata)?;
    let tags = SnapshotTags {
        deployment: metadata.deployment_name.clone(),
        id: metadata.id.clone(),
        backup_type: metadata.backup_type,
        reason: metadata.reason.clone(),
    }
    .to_tags()?;
    progress.step(format!(
        "sending {} to repository {}",
        metadata.id,
        repo.name()
    ));
    repo.backup(&BackupRequest {
        tags,
        root: pending.path().to_owned(),
        binds: trees.binds,
        parent,
        time: Some(metadata.created_at),
        in_namespace: ctx.layout.scope == Scope::User,
    })
    .map_err(|e| e.context(format!("backup to repository {}", repo.name())))
}

/// The entries and binds of every volume and host path of `subject`.
fn tree_sources(
    ctx: &Context,
    subject: &Subject,
    infos: Vec<Inspected>,
    progress: &Progress,
) -> Result<Trees> {
    let mut trees = Trees {
        volumes: Vec::new(),
        host_paths: Vec::new(),
        binds: Vec::new(),
    };
    for (spec, info) in subject.volumes.iter().zip(infos) {
        let (mut entry, info) = volume_entry(spec, info, progress);
        if let Some(info) = info {
            if info.driver != "local" || info.mountpoint.is_empty() {
                return Err(Error::user(format!(
                    "volume {} uses the {} driver: a repository backup reads a volume's files \
                     in place, which only the local driver offers",
                    spec.name, info.driver
                ))
                .with_hint("back this deployment up with --to local"));
            }
            let rel = volume_tree(&spec.name);
            trees.binds.push(StageBind {
                source: info.mountpoint.into(),
                rel: rel.clone(),
            });
            entry.tree = Some(rel);
        }
        trees.volumes.push(entry);
    }
    for (index, spec) in subject.host_paths.iter().enumerate() {
        let mut entry = host_entry(ctx, &subject.name, spec, progress)?;
        if entry.existed {
            let rel = tree_name(index);
            trees.binds.push(StageBind {
                source: spec.path.clone().into(),
                rel: rel.clone(),
            });
            entry.tree = Some(rel);
        }
        trees.host_paths.push(entry);
    }
    Ok(trees)
}
