//! `create`: back up a deployment's files, the data of its volumes and its
//! host paths (bind-mounted directories and the host files its units refer
//! to, chosen by [`host_paths::select`], read and stored as volumes are).
//!
//! The order matters for consistency and downtime: files first (services
//! still running, they do not change), then the services that mount the
//! volumes are stopped, every volume is streamed from `podman volume export`
//! through the compressor into the backup, and the services are started
//! again right after the last export, before the slow part (fsync and
//! rename) — and also when anything fails, through [`ServiceGuard`].
//!
//! A volume unchanged since the deployment's newest backup is not exported:
//! that backup's archive is linked into this one ([`crate::backup::reuse`]).
//! The journal records linking as the volume's `Exporting` step.
//!
//! [`create`] takes the deployment's lock; [`create_locked`] is the same
//! backup for a caller that already holds it (a restore taking its safety
//! backup), so both go through one code path.
//!
//! Every step that changes something is recorded first in the operation
//! journal ([`crate::backup::journal`]), so a run killed half-way is cleaned
//! up by the next one; SIGINT/SIGTERM stop the run at the next safe point
//! (between volumes, or inside the streaming loop) through the ordinary
//! error path ([`crate::interrupt`]).
//!
//! Cut by concern: this file quiesces the services, writes the backup and
//! seals it; `subject` gathers what a backup captures, `volumes` writes the
//! archives of the volumes, and [`crate::backup::progress`] shows how it
//! goes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::backup::files;
use crate::backup::journal::{CreateRecord, Journal, Operation, OperationRecord, Step};
use crate::backup::lock::DeploymentLock;
use crate::backup::metadata::{
    BackupType, Consistency, DirEntry, FileEntry, HostPathEntry, Metadata, ServiceEntry,
    StopResult, VolumeEntry, FORMAT_VERSION,
};
use crate::backup::reuse;
use crate::backup::services::{all_services, foreign_users, running_services, ServiceGuard};
use crate::backup::store::{BackupStore, PendingBackup, StoredBackup};
use crate::backup::volume_reader::ReaderChoice;
use crate::context::Context;
use crate::deployment::Deployment;
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::interrupt;
use crate::podman::ContainerRef;
use crate::repository::{BackupSummary, Repository};
use crate::ui;

mod host_paths;
pub(crate) use host_paths::HostPathSpec;
mod subject;
use subject::{check_reason, check_subject};
mod targets;
pub use targets::{create_to_targets, targets, TargetResults};
mod trees;
mod volumes;

pub(crate) use crate::backup::progress::Progress;
use crate::backup::progress::Terminal;
pub(crate) use subject::{
    check_volume_name, installation_of, volume_service_of, Subject, VolumeSpec,
};
pub(crate) use volumes::widen_pipe;
use volumes::{inspect_volumes, quiet_volumes, write_volumes, Inspected, VolumeSources};

/// How `create` runs.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Why the backup is taken; decides manual or automatic.
    pub reason: String,
    /// Export while the services run (not crash-consistent, no downtime).
    pub live: bool,
    /// How long to wait for another backup or restore of the deployment.
    pub wait: Duration,
    /// Set by the stop hook: services are already down, stop/start nothing.
    pub services_already_stopped: bool,
    /// Show progress on stderr (bars on a terminal, lines otherwise).
    pub progress: bool,
    /// Set by the stop hook when the service failed to stop cleanly.
    pub stop_result: Option<StopResult>,
    /// A restore's safety backup: volumes not archived because the restore
    /// moves their data aside instead (recorded as [`VolumeEntry::held_aside`]).
    pub hold_aside: BTreeSet<String>,
    /// Where the backup goes.
    pub destination: Destination,
}

/// Where a backup goes: the local backup directory, or a restic repository
/// (one snapshot; see [`crate::repository`]).
#[derive(Debug, Clone, Default)]
pub enum Destination {
    /// The backup directory (`backup.dir`).
    #[default]
    Local,
    /// A repository of `backup.repositories`.
    Repository(Arc<dyn Repository>),
}

impl CreateOptions {
    /// A manual backup with progress, as `create` without flags does it.
    pub fn manual() -> CreateOptions {
        CreateOptions {
            reason: "manual".to_owned(),
            live: false,
            wait: Duration::ZERO,
            services_already_stopped: false,
            progress: true,
            stop_result: None,
            hold_aside: BTreeSet::new(),
            destination: Destination::Local,
        }
    }
}

/// Back up `deployment`: take its lock, clean leftovers of interrupted runs,
/// write the backup, and prune after an automatic one when configured.
/// Returns the metadata as stored (with its size).
pub fn create(ctx: &Context, deployment: &Deployment, opts: &CreateOptions) -> Result<Metadata> {
    check_reason(&opts.reason)?;
    let store = BackupStore::open(ctx.backup_dir())?;
    for notice in store.clean_leftovers()? {
        ui::note(notice);
    }
    let _lock = DeploymentLock::acquire(&ctx.layout.state_dir, &deployment.name, opts.wait)?;
    // A journal a dead run left for this deployment is dealt with first
    // (an interrupted restore must be recovered before anything else).
    crate::backup::interrupted::before_create(
        ctx,
        &deployment.name,
        opts.services_already_stopped,
    )?;
    // Declared after the lock, so it is removed before the lock is released.
    // While it lives it also tells the stop hooks of the services stopped
    // below that the stop is ours (see `auto::own_operation`); a stop hook's own
    // backup does not claim that.
    let mut journal = Journal::begin(
        &ctx.layout.state_dir,
        &deployment.name,
        OperationRecord::Create(CreateRecord {
            reason: Some(opts.reason.clone()),
        }),
        store.dir(),
        !opts.services_already_stopped,
    )?;
    interrupt::install()?;
    let subject = Subject::of_deployment(ctx, deployment)?;
    let terminal = Terminal::new(opts.progress);
    let progress: &Progress = &terminal;
    let metadata = create_locked(ctx, &store, &subject, opts, None, progress, &mut journal)
        .map_err(|e| {
            let e = interrupt::explain(e);
            if e.kind == ErrorKind::Interrupted {
                // A stop hook's backup stopped nothing: say nothing was started.
                let services = if opts.services_already_stopped {
                    "the services were already down and stay down"
                } else {
                    "the services stopped for it were started again"
                };
                e.context(format!("backup of {}", deployment.name))
                    .with_hint(format!(
                        "no backup was kept and {services}; run the backup again when you are ready"
                    ))
            } else {
                e
            }
        })?;
    let local = matches!(opts.destination, Destination::Local);
    if local && metadata.backup_type == BackupType::Automatic && ctx.config.backup.auto_prune.value
    {
        auto_prune(ctx, &store, &metadata.deployment_name, progress);
    }
    Ok(metadata)
}

/// Prune the deployment's backups by the configured policy. A failure is
/// only a warning: the backup itself succeeded.
fn auto_prune(ctx: &Context, store: &BackupStore, deployment: &str, progress: &Progress) {
    let keep = crate::backup::prune::Keep::configured(&ctx.config.backup);
    let in_use = crate::backup::journal::backups_in_use(&ctx.layout.state_dir);
    match crate::backup::prune::prune(store, Some(deployment), &keep, &in_use, false) {
        Ok(outcome) => {
            for id in outcome.deleted {
                progress.step(format!("pruned {id}"));
            }
        }
        Err(e) => progress.warn(format!("pruning old backups failed: {e}")),
    }
}

/// Write a backup of `subject` while the caller holds its lock.
///
/// `running` overrides which services count as running at backup time: a
/// restore stops the services before taking its safety backup and passes
/// what ran before, so that a rollback starts exactly those again.
/// `journal` is the caller's operation journal: each step is recorded in
/// it before it begins.
///
/// The steps, in order: [`begin_backup`], [`plan_stop`], [`quiesce`] (the
/// services stop while all else the export needs is gathered),
/// [`volumes::write_volumes`], [`restart_and_seal`], [`publish`].
pub(crate) fn create_locked(
    ctx: &Context,
    store: &BackupStore,
    subject: &Subject,
    opts: &CreateOptions,
    running: Option<&BTreeSet<String>>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Metadata> {
    check_subject(subject, opts)?;
    let reader = ReaderChoice::from_env()?;
    let started = Instant::now();
    let created_at = Utc::now();
    let mut pending = begin_backup(store, subject, opts, created_at, progress, journal)?;
    let plan = plan_stop(ctx, subject, opts, running)?;
    let parent = match &opts.destination {
        Destination::Repository(repo) => {
            crate::repository::parent_snapshot(&**repo, &subject.name)?
        }
        Destination::Local => None,
    };
    interrupt::check()?;
    let stopped_any = !plan.to_stop.is_empty();
    if stopped_any {
        // Recorded first: whoever finds this journal starts them again.
        journal.update(|r| {
            r.stopped = plan.to_stop.clone();
            r.step = Step::StoppingServices;
        })?;
    }
    let mut guard = ServiceGuard::new(&*ctx.systemctl, plan.to_stop.clone());
    let gathered = quiesce(ctx, store, subject, &pending, &mut guard, progress)?;
    let mut metadata = metadata_of(ctx, subject, opts, &pending, created_at, &plan);
    metadata.quadlet_files = files::quadlet_files(&gathered.files);
    (metadata.files, metadata.dirs) = (gathered.files, gathered.dirs);
    let read = Reads {
        infos: gathered.infos,
        foreign: gathered.foreign?,
        previous: gathered.previous,
        consistency: plan.consistency,
        reader,
    };
    let snapshot = match &opts.destination {
        Destination::Local => {
            (metadata.volumes, metadata.host_paths) =
                write_sources(ctx, subject, opts, read, pending.path(), progress, journal)?;
            None
        }
        Destination::Repository(repo) => Some(trees::snapshot_into(
            ctx,
            repo,
            subject,
            read.infos,
            &mut metadata,
            &pending,
            parent,
            progress,
        )?),
    };
    fault::point("create:after-archive");
    interrupt::check()?;
    let (started_again, sealed) =
        restart_and_seal(guard, &mut pending, stopped_any, progress, journal)?;
    metadata.downtime_seconds = started_again
        .as_ref()
        .ok()
        .copied()
        .flatten()
        .map(|d| d.as_secs_f64());
    sealed?;
    match snapshot {
        None => publish(store, pending, metadata, started, progress, started_again),
        Some(summary) => sent(metadata, &summary, started, progress, started_again),
    }
}

/// The metadata of the backup `pending` before its sources are read.
fn metadata_of(
    ctx: &Context,
    subject: &Subject,
    opts: &CreateOptions,
    pending: &PendingBackup,
    created_at: DateTime<Utc>,
    plan: &StopPlan,
) -> Metadata {
    Metadata {
        id: pending.id().to_owned(),
        deployment_name: subject.name.clone(),
        created_at,
        backup_type: BackupType::from_reason(&opts.reason),
        reason: opts.reason.clone(),
        size: 0,
        quadlet_files: Vec::new(),
        volumes: Vec::new(),
        format_version: Some(FORMAT_VERSION),
        leger_backup_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        scope: Some(ctx.layout.scope),
        compression: Some(ctx.config.backup.compression.value),
        files: Vec::new(),
        dirs: Vec::new(),
        installation: Some(subject.installation.clone()),
        services: plan.services.clone(),
        secrets: subject.secrets.clone(),
        consistency: Some(plan.consistency),
        downtime_seconds: None,
        stop_result: opts.stop_result.clone(),
        host_paths: Vec::new(),
    }
}

/// What [`quiesce`] found that reading the sources needs.
struct Reads {
    infos: Vec<Inspected>,
    foreign: Vec<(String, ContainerRef)>,
    previous: Result<Option<StoredBackup>>,
    consistency: Consistency,
    reader: ReaderChoice,
}

/// Read every source of `subject` into the pending backup at `dir`: the
/// volumes (an unchanged one linked from the deployment's newest backup),
/// then the host paths. Returns their metadata entries.
fn write_sources(
    ctx: &Context,
    subject: &Subject,
    opts: &CreateOptions,
    read: Reads,
    dir: &std::path::Path,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<(Vec<VolumeEntry>, Vec<HostPathEntry>)> {
    let quiet = quiet_volumes(subject, read.consistency, read.foreign, progress);
    let previous = read.previous.unwrap_or_else(|e| {
        progress.step(format!(
            "no archive is shared: listing the backups failed: {e}"
        ));
        None
    });
    let sources = VolumeSources {
        previous: previous.as_ref(),
        quiet,
        held_aside: &opts.hold_aside,
        reader: read.reader,
    };
    let volumes = write_volumes(ctx, subject, read.infos, &sources, dir, progress, journal)?;
    let sharing = host_paths::Sharing {
        previous: previous.as_ref(),
        quiet: read.consistency == Consistency::Stopped,
    };
    let host_paths = host_paths::write_host_paths(
        ctx,
        &subject.name,
        &subject.host_paths,
        &sharing,
        dir,
        progress,
        journal,
    )?;
    Ok((volumes, host_paths))
}

/// Pick the backup's ID, record it in the journal (the copy of the files
/// comes first) and create its pending directory.
fn begin_backup(
    store: &BackupStore,
    subject: &Subject,
    opts: &CreateOptions,
    created_at: DateTime<Utc>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<PendingBackup> {
    let id = store.new_id(&subject.name, created_at)?;
    journal.update(|r| {
        r.writing = Some(id.clone());
        if r.operation() == Operation::Create {
            r.backup_id = Some(id.clone());
        }
        r.step = Step::CopyingFiles;
    })?;
    let pending = store.begin(&id)?;
    progress.step(format!(
        "backing up {} as {id} (reason: {})",
        subject.name, opts.reason
    ));
    Ok(pending)
}

/// What [`plan_stop`] decided.
struct StopPlan {
    /// The deployment's services and whether each was running.
    services: Vec<ServiceEntry>,
    /// Whether the volumes are read with their services stopped.
    consistency: Consistency,
    /// The services this backup stops (and starts again).
    to_stop: Vec<String>,
}

/// Which services run now (or ran before a restore stopped them), and which
/// of them to stop: the running ones that mount a volume (the volumes of a
/// running container exist: podman made them when it started), unless the
/// backup is live or the stop hook already stopped them. The services
/// using a host path the backup reads count as mounting it.
fn plan_stop(
    ctx: &Context,
    subject: &Subject,
    opts: &CreateOptions,
    running: Option<&BTreeSet<String>>,
) -> Result<StopPlan> {
    let running: BTreeSet<String> = match running {
        Some(set) => set.clone(),
        None => running_services(&*ctx.systemctl, &all_services(subject))?,
    };
    let services: Vec<ServiceEntry> = subject
        .services
        .iter()
        .map(|name| ServiceEntry {
            name: name.clone(),
            was_running: running.contains(name),
        })
        .collect();
    let live = opts.live || !ctx.config.backup.stop_services.value;
    // The services using a volume or a host path the backup reads.
    let mounting: BTreeSet<String> = subject
        .volumes
        .iter()
        .flat_map(|v| v.used_by.iter().cloned())
        .chain(
            subject
                .host_paths
                .iter()
                .flat_map(|h| h.used_by.iter().cloned()),
        )
        .filter(|s| running.contains(s))
        .collect();
    let mounting: Vec<String> = mounting.into_iter().collect();
    let consistency = if live && !opts.services_already_stopped && !mounting.is_empty() {
        Consistency::Live
    } else {
        Consistency::Stopped
    };
    let to_stop = if live || opts.services_already_stopped {
        Vec::new()
    } else {
        mounting
    };
    Ok(StopPlan {
        services,
        consistency,
        to_stop,
    })
}

/// What [`quiesce`] gathered while the services stopped.
struct Gathered {
    /// The deployment's files, copied into the pending backup.
    files: Vec<FileEntry>,
    /// The directories of its trees.
    dirs: Vec<DirEntry>,
    /// Each volume as inspected, in the order of the subject's volumes.
    infos: Vec<Inspected>,
    /// Containers outside the deployment using its volumes.
    foreign: Result<Vec<(String, ContainerRef)>>,
    /// The deployment's newest backup, whose archives may be shared.
    previous: Result<Option<StoredBackup>>,
}

/// Stop the services of `guard` and, while they stop (podman's stop takes
/// longest), do all else that precedes the export side by side, each query
/// a process of its own: the files are copied, each volume is inspected and
/// its root's mode and owner read (a `podman unshare`: it sets up a user
/// namespace), containers outside the deployment using the volumes are
/// looked for, and the newest backup, whose archives this one may share, is
/// found. A stop changes none of it; the downtime holds only the export.
fn quiesce(
    ctx: &Context,
    store: &BackupStore,
    subject: &Subject,
    pending: &PendingBackup,
    guard: &mut ServiceGuard,
    progress: &Progress,
) -> Result<Gathered> {
    let (stopped, files, infos, foreign, previous) = std::thread::scope(|scope| {
        let stopping = scope.spawn(|| guard.stop(progress));
        let inspected = scope.spawn(|| inspect_volumes(&*ctx.podman, &subject.volumes));
        let foreign = scope.spawn(|| {
            let names: Vec<String> = subject.volumes.iter().map(|v| v.name.clone()).collect();
            let own: BTreeSet<String> = all_services(subject).into_iter().collect();
            foreign_users(&*ctx.podman, &names, &own)
        });
        let previous = scope.spawn(|| reuse::newest_backup(store, &subject.name));
        let files = files::copy_into_backup(&subject.files, pending.path());
        (
            joined(stopping, "stopping the services"),
            files,
            joined(inspected, "inspecting the volumes"),
            joined(foreign, "listing the volumes' containers"),
            joined(previous, "listing the backups"),
        )
    });
    stopped?;
    let (files, infos) = (files?, infos?);
    let dirs = files::record_dirs(&subject.files, &subject.installation)?;
    progress.step(format!("copied {} files", files.len()));
    Ok(Gathered {
        files,
        dirs,
        infos,
        foreign,
        previous,
    })
}

/// The data is read: start the services again while the backup is sealed
/// (every file fsynced), side by side. The outcome of the start is
/// returned, not raised: a failure to start again is reported after the
/// backup is made visible, not instead of it.
fn restart_and_seal(
    guard: ServiceGuard,
    pending: &mut PendingBackup,
    stopped_any: bool,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<(Result<Option<Duration>>, Result<()>)> {
    if stopped_any {
        journal.step(Step::StartingServices)?;
    }
    let (started_again, sealed) = std::thread::scope(|scope| {
        let starting = scope.spawn(|| guard.start(progress));
        let sealed = pending.seal();
        (joined(starting, "starting the services"), sealed)
    });
    journal.update(|r| {
        if stopped_any {
            r.stopped.clear();
        }
        r.step = Step::Finalizing;
    })?;
    Ok((started_again, sealed))
}

/// Make the sealed backup visible with its `metadata` and say so; then
/// report a failure to start the services again (`started_again`), if any.
fn publish(
    store: &BackupStore,
    pending: PendingBackup,
    metadata: Metadata,
    started: Instant,
    progress: &Progress,
    started_again: Result<Option<Duration>>,
) -> Result<Metadata> {
    let id = pending.id().to_owned();
    let downtime = started_again.as_ref().ok().copied().flatten();
    pending.finalize(metadata)?;
    let stored = store.load(&id)?;
    progress.step(format!(
        "backup {id} complete: {} in {:.1} s{}",
        ui::human_size(stored.metadata.size),
        started.elapsed().as_secs_f64(),
        match downtime {
            Some(d) => format!(", services down for {:.1} s", d.as_secs_f64()),
            None => String::new(),
        }
    ));
    if let Err(mut e) = started_again {
        e.message = format!("backup {id} is complete, but {}", e.message);
        return Err(e);
    }
    Ok(stored.metadata)
}

/// Say that the snapshot of the backup `metadata` describes is in its
/// repository (the pending directory it was taken of goes when dropped);
/// then report a failure to start the services again, if any.
fn sent(
    mut metadata: Metadata,
    summary: &BackupSummary,
    started: Instant,
    progress: &Progress,
    started_again: Result<Option<Duration>>,
) -> Result<Metadata> {
    let id = metadata.id.clone();
    metadata.size = summary.total_bytes_processed;
    progress.step(format!(
        "backup {id} complete: snapshot {} holds {}, {} added to the repository ({} files new, \
         {} changed, {} unchanged) in {:.1} s{}",
        summary.snapshot_id.get(..8).unwrap_or(&summary.snapshot_id),
        ui::human_size(summary.total_bytes_processed),
        ui::human_size(summary.data_added),
        summary.files_new,
        summary.files_changed,
        summary.files_unmodified,
        started.elapsed().as_secs_f64(),
        match metadata.downtime_seconds {
            Some(d) => format!(", services down for {d:.1} s"),
            None => String::new(),
        }
    ));
    if let Err(mut e) = started_again {
        e.message = format!("backup {id} is complete, but {}", e.message);
        return Err(e);
    }
    Ok(metadata)
}

/// `f` of every item, each on a thread of its own; the first error wins.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| {
                let f = &f;
                scope.spawn(move || f(item))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| joined(h, "a podman query"))
            .collect()
    })
}

/// The result of a scoped thread; its panic becomes an internal error
/// naming `what` it was doing.
fn joined<R>(handle: std::thread::ScopedJoinHandle<'_, Result<R>>, what: &str) -> Result<R> {
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::internal(format!("{what} panicked"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_path_its_metadata_would_refuse_is_refused_first() {
        let subject = Subject {
            name: "web".into(),
            files: Vec::new(),
            installation: crate::backup::metadata::Installation {
                active_dir: None,
                installed_root: "/q".into(),
                installed_from_active: false,
            },
            volumes: Vec::new(),
            services: Vec::new(),
            secrets: Vec::new(),
            host_paths: vec![host_paths::HostPathSpec {
                path: "/".into(),
                source: "%h/..".into(),
                used_by: Vec::new(),
            }],
        };
        let err = check_subject(&subject, &CreateOptions::manual()).unwrap_err();
        assert!(
            err.message.contains("is the root directory"),
            "{}",
            err.message
        );
        assert!(err
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("backup.deployments.web"));
    }

    #[test]
    fn reasons() {
        assert!(check_reason("before-test").is_ok());
        assert!(check_reason("").is_err());
        assert!(check_reason("a\nb").is_err());
    }
}

#[cfg(test)]
mod with_fakes;
