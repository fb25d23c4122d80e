//! `create`: back up a deployment's files and the data of its volumes.
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

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backup::archive;
use crate::backup::files;
use crate::backup::journal::{Journal, Operation, Step};
use crate::backup::lock::DeploymentLock;
use crate::backup::metadata::{
    BackupType, Consistency, Installation, Metadata, ServiceEntry, StopResult, VolumeEntry,
    FORMAT_VERSION,
};
use crate::backup::reuse;
use crate::backup::services::{all_services, foreign_users, running_services, ServiceGuard};
use crate::backup::store::{BackupStore, StoredBackup};
use crate::backup::tar_guard::{Guarded, Specials};
use crate::backup::volume_reader::{self, ReaderChoice};
use crate::context::Context;
use crate::deployment::{Deployment, DeploymentFile};
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::interrupt;
use crate::podman::{ContainerEngine, RootOwnership, VolumeInfo};
use crate::ui;

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
        }
    }
}

/// A volume to back up, with what is needed to recreate it on restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeSpec {
    /// Podman volume name.
    pub name: String,
    /// The `.volume` file defining it, if any.
    pub defined_by: Option<String>,
    /// The service Quadlet generates from that file.
    pub volume_service: Option<String>,
    /// Services mounting it.
    pub used_by: Vec<String>,
}

/// Everything a backup captures, gathered before anything is written: from
/// an installed deployment ([`Subject::of_deployment`]) or, for a restore's
/// safety backup, from what is on the machine now.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// Deployment name.
    pub name: String,
    /// Its files (empty when it is not installed).
    pub files: Vec<DeploymentFile>,
    /// Where those files are installed.
    pub installation: Installation,
    /// Volumes, sorted by name.
    pub volumes: Vec<VolumeSpec>,
    /// Its services, sorted.
    pub services: Vec<String>,
    /// Secret names its units require.
    pub secrets: Vec<String>,
}

impl Subject {
    /// What a backup of an installed deployment captures.
    pub fn of_deployment(ctx: &Context, deployment: &Deployment) -> Result<Subject> {
        let resolution = deployment.resolve(&ctx.layout)?;
        for mount in &resolution.bind_mounts {
            ui::warn(format!(
                "{} ({}:{}) is a bind mount: its data is not in the backup",
                mount.value, mount.file, mount.line
            ));
        }
        for unresolved in &resolution.unresolved {
            ui::warn(format!(
                "{}={} ({}:{}) depends on {}: not resolved, not backed up",
                unresolved.key,
                unresolved.value,
                unresolved.file,
                unresolved.line,
                unresolved.variables.join(", ")
            ));
        }
        let volumes = resolution
            .volumes
            .iter()
            .map(|v| VolumeSpec {
                name: v.name.clone(),
                defined_by: v.defined_by.clone(),
                volume_service: crate::backup::trust::volume_service(&resolution, v),
                used_by: v.used_by.clone(),
            })
            .collect();
        let services: BTreeSet<String> =
            resolution.units.iter().map(|u| u.service.clone()).collect();
        Ok(Subject {
            name: deployment.name.clone(),
            files: deployment.files()?,
            installation: installation_of(deployment),
            volumes,
            services: services.into_iter().collect(),
            secrets: resolution.secrets.clone(),
        })
    }
}

/// Where a deployment's files are installed, for the metadata.
pub(crate) fn installation_of(deployment: &Deployment) -> Installation {
    Installation {
        active_dir: deployment.active_dir.clone(),
        installed_root: deployment.installed_root.clone(),
        installed_from_active: deployment.installed_from_active,
    }
}

/// The service Quadlet makes of a `.volume` file: `data.volume` ->
/// `data-volume.service`, whatever directory it is in.
pub(crate) fn volume_service_of(file: &str) -> String {
    let base = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{base}-volume.service")
}

/// Podman volume names are `[A-Za-z0-9][A-Za-z0-9_.-]*`; anything else must
/// not become a file name in the backup (or an argument of podman).
pub(crate) fn check_volume_name(name: &str) -> Result<()> {
    crate::names::check_podman_name(name)
        .map_err(|why| Error::user(format!("invalid volume name {name:?}: it {why}")))
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
    crate::backup::recovery::before_create(ctx, &deployment.name, opts.services_already_stopped)?;
    // Declared after the lock, so it is removed before the lock is released.
    // While it lives it also tells the stop hooks of the services stopped
    // below that the stop is ours (see `auto::own_operation`); a stop hook's own
    // backup does not claim that.
    let mut journal = Journal::begin(
        &ctx.layout.state_dir,
        &deployment.name,
        Operation::Create,
        store.dir(),
        !opts.services_already_stopped,
    )?;
    journal.update(|r| r.reason = Some(opts.reason.clone()))?;
    interrupt::install()?;
    let subject = Subject::of_deployment(ctx, deployment)?;
    let progress = Progress::new(opts.progress);
    let metadata = create_locked(ctx, &store, &subject, opts, None, &progress, &mut journal)
        .map_err(|e| {
            let e = interrupt::explain(e);
            if e.kind == ErrorKind::Interrupted {
                e.context(format!("backup of {}", deployment.name))
                    .with_hint(
                        "no backup was kept and the services stopped for it were started again; \
                     run the backup again when you are ready",
                    )
            } else {
                e
            }
        })?;
    if metadata.backup_type == BackupType::Automatic && ctx.config.backup.auto_prune.value {
        auto_prune(ctx, &store, &metadata.deployment_name, &progress);
    }
    Ok(metadata)
}

/// A reason is one line of text.
fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() || reason.chars().any(char::is_control) || reason.len() > 200 {
        return Err(Error::user(format!("invalid reason {reason:?}"))
            .with_hint("give one line of text, e.g. --reason before-upgrade"));
    }
    Ok(())
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
        Err(e) => ui::warn(format!("pruning old backups failed: {e}")),
    }
}

/// Write a backup of `subject` while the caller holds its lock.
///
/// `running` overrides which services count as running at backup time: a
/// restore stops the services before taking its safety backup and passes
/// what ran before, so that a rollback starts exactly those again.
/// `journal` is the caller's operation journal: each step is recorded in
/// it before it begins.
pub(crate) fn create_locked(
    ctx: &Context,
    store: &BackupStore,
    subject: &Subject,
    opts: &CreateOptions,
    running: Option<&BTreeSet<String>>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Metadata> {
    check_reason(&opts.reason)?;
    for volume in &subject.volumes {
        check_volume_name(&volume.name)?;
    }
    let reader = ReaderChoice::from_env()?;
    let started = Instant::now();
    let created_at = Utc::now();
    let id = store.new_id(&subject.name, created_at)?;
    journal.update(|r| {
        r.writing = Some(id.clone());
        if r.operation == Operation::Create {
            r.backup_id = Some(id.clone());
        }
        r.step = Step::CopyingFiles;
    })?;
    let pending = store.begin(&id)?;
    progress.step(format!(
        "backing up {} as {id} (reason: {})",
        subject.name, opts.reason
    ));

    // Which services run now (or ran before a restore stopped them).
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

    // Stop the running services that mount a volume (the volumes of a
    // running container exist: podman made them when it started).
    let live = opts.live || !ctx.config.backup.stop_services.value;
    let mounting: BTreeSet<String> = subject
        .volumes
        .iter()
        .flat_map(|v| v.used_by.iter().cloned())
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
    interrupt::check()?;
    if !to_stop.is_empty() {
        // Recorded first: whoever finds this journal starts them again.
        journal.update(|r| {
            r.stopped = to_stop.clone();
            r.step = Step::StoppingServices;
        })?;
    }
    let stopped_any = !to_stop.is_empty();
    let mut guard = ServiceGuard::new(&*ctx.systemctl, to_stop);
    // While they stop (podman's stop takes longest), all else that precedes
    // the export happens side by side, each query a process of its own: the
    // files are copied, each volume is inspected and its root's mode and
    // owner read (a `podman unshare`: it sets up a user namespace), and
    // containers outside the deployment using the volumes are looked for,
    // and the newest backup, whose archives this one may share, is found.
    // A stop changes none of it; the downtime holds only the export.
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
    // Containers of other deployments (or none) keep writing: say so.
    // Nothing else writes to the other volumes while they are read, unless
    // the deployment's services keep running.
    let mut quiet: BTreeSet<String> = match consistency {
        Consistency::Stopped => subject.volumes.iter().map(|v| v.name.clone()).collect(),
        Consistency::Live => BTreeSet::new(),
    };
    for (volume, container) in foreign? {
        if container.state == "running" {
            quiet.remove(&volume);
            ui::warn(format!(
                "volume {volume} is also used by container {}{}, which is not part of {} and \
                 keeps running: its writes during the export may make this backup of {volume} \
                 inconsistent (stop it first for a consistent backup)",
                container.display_name(),
                container
                    .systemd_unit()
                    .map(|u| format!(" (run by {u})"))
                    .unwrap_or_default(),
                subject.name
            ));
        }
    }

    let previous = previous.unwrap_or_else(|e| {
        progress.step(format!(
            "no archive is shared: listing the backups failed: {e}"
        ));
        None
    });
    let sources = VolumeSources {
        previous: previous.as_ref(),
        quiet,
        held_aside: &opts.hold_aside,
        reader,
    };
    let volumes = write_volumes(
        ctx,
        subject,
        infos,
        &sources,
        pending.path(),
        progress,
        journal,
    )?;
    fault::point("create:after-archive");
    interrupt::check()?;
    // The data is read: the services start again while the backup is
    // sealed (every file fsynced), side by side. A failure to start again
    // is reported after the backup is made visible, not instead of it.
    if stopped_any {
        journal.step(Step::StartingServices)?;
    }
    let mut pending = pending;
    let (started_again, sealed) = std::thread::scope(|scope| {
        let starting = scope.spawn(|| guard.start(progress));
        let sealed = pending.seal();
        (joined(starting, "starting the services"), sealed)
    });
    let downtime = started_again.as_ref().ok().copied().flatten();
    journal.update(|r| {
        if stopped_any {
            r.stopped.clear();
        }
        r.step = Step::Finalizing;
    })?;

    let metadata = Metadata {
        id: id.clone(),
        deployment_name: subject.name.clone(),
        created_at,
        backup_type: BackupType::from_reason(&opts.reason),
        reason: opts.reason.clone(),
        size: 0,
        quadlet_files: files::quadlet_files(&files),
        volumes,
        format_version: Some(FORMAT_VERSION),
        leger_backup_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        scope: Some(ctx.layout.scope),
        compression: Some(ctx.config.backup.compression.value),
        files,
        dirs,
        installation: Some(subject.installation.clone()),
        services,
        secrets: subject.secrets.clone(),
        consistency: Some(consistency),
        downtime_seconds: downtime.map(|d| d.as_secs_f64()),
        stop_result: opts.stop_result.clone(),
    };
    sealed?;
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

/// A volume as `podman volume inspect` shows it, and its root's mode and
/// owner; `None` when it does not exist.
type Inspected = Option<(VolumeInfo, Option<RootOwnership>)>;

/// Inspect every volume and read its root's mode and owner, volumes in
/// parallel (each is podman calls of its own); `None` for one that does
/// not exist.
fn inspect_volumes(podman: &dyn ContainerEngine, volumes: &[VolumeSpec]) -> Result<Vec<Inspected>> {
    in_parallel(volumes, |volume| {
        let Some(info) = podman.volume_inspect(&volume.name)? else {
            return Ok(None);
        };
        let root = if info.mountpoint.is_empty() {
            None
        } else {
            Some(podman.root_ownership(&info.mountpoint)?)
        };
        Ok(Some((info, root)))
    })
}

/// Where the archives of a backup's volumes come from, besides the export.
struct VolumeSources<'a> {
    /// The deployment's newest backup, whose archives may be shared.
    previous: Option<&'a StoredBackup>,
    /// The volumes nothing writes to while they are read: the services
    /// mounting them are stopped and no container of another deployment
    /// runs on them.
    quiet: BTreeSet<String>,
    /// Volumes not archived: a restore moves their data aside.
    held_aside: &'a BTreeSet<String>,
    /// Which reader archives the volumes.
    reader: ReaderChoice,
}

/// Write the archive of every volume into the pending backup at `dir`: a
/// link to the previous backup's archive when the volume has not changed
/// since, an export otherwise. Returns the volumes' entries, in order.
fn write_volumes(
    ctx: &Context,
    subject: &Subject,
    infos: Vec<Inspected>,
    sources: &VolumeSources,
    dir: &Path,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Vec<VolumeEntry>> {
    let compression = ctx.config.backup.compression.value;
    let mut volumes = Vec::new();
    for (spec, info) in subject.volumes.iter().zip(infos) {
        let mut entry = VolumeEntry {
            name: spec.name.clone(),
            archive_path: None,
            size: 0,
            existed: info.is_some(),
            uncompressed_size: 0,
            sha256: None,
            root: None,
            driver: None,
            labels: Default::default(),
            options: Default::default(),
            defined_by: spec.defined_by.clone(),
            volume_service: spec.volume_service.clone(),
            used_by: spec.used_by.clone(),
            special_files: Vec::new(),
            tree_signature: None,
            held_aside: false,
        };
        let Some((info, root)) = info else {
            progress.step(format!(
                "volume {} does not exist yet: recorded as absent",
                spec.name
            ));
            volumes.push(entry);
            continue;
        };
        entry.root = root;
        entry.driver = Some(info.driver.clone());
        entry.labels = info.labels.clone();
        entry.options = info.options.clone();
        if sources.held_aside.contains(&spec.name) {
            entry.held_aside = true;
            volumes.push(entry);
            continue;
        }
        interrupt::check()?;
        journal.step(Step::Exporting {
            volume: spec.name.clone(),
        })?;
        let rel =
            PathBuf::from("volumes").join(format!("{}.{}", spec.name, compression.extension()));
        let volumes_dir = dir.join("volumes");
        if !volumes_dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&volumes_dir)
                .map_err(|e| {
                    Error::internal(format!("cannot create {}: {e}", volumes_dir.display()))
                })?;
        }
        let dest = dir.join(&rel);
        entry.archive_path = Some(rel);
        volumes.push(archive_volume(ctx, &info, entry, sources, &dest, progress)?);
    }
    Ok(volumes)
}

/// Write the archive of the existing volume `info` to `dest` and complete
/// its `entry`, tree signature included.
///
/// When the previous backup holds an archive of the volume that may be
/// shared, the signature is taken first and decides: a match proves the
/// tree is the one that archive holds. Otherwise, on a quiet volume (see
/// [`VolumeSources`]) it is taken while the volume is exported, so a backup
/// with nothing to share waits no longer than for the export. A signature
/// is recorded only for a quiet volume, or with a shared archive (it is
/// the one that archive was proven against): a tree that changes while it
/// is read may differ from what the signature describes.
fn archive_volume(
    ctx: &Context,
    info: &VolumeInfo,
    mut entry: VolumeEntry,
    sources: &VolumeSources,
    dest: &Path,
    progress: &Progress,
) -> Result<VolumeEntry> {
    let compression = ctx.config.backup.compression.value;
    let podman = &*ctx.podman;
    let name = entry.name.clone();
    let fingerprint = || fingerprint(podman, info, progress);
    let export = || export_volume(ctx, info, sources.reader, dest, progress);
    let candidate = sources.previous.filter(|p| {
        reuse::fingerprintable(info)
            && reuse::candidate(&p.metadata, &entry.name, compression).is_some()
    });
    let quiet = sources.quiet.contains(&name);
    let (stats, specials) = match candidate {
        Some(previous) => {
            let signature = fingerprint();
            if let Some(shared) =
                share_archive(previous, &entry, signature.as_deref(), dest, progress)
            {
                return Ok(shared);
            }
            entry.tree_signature = signature.filter(|_| quiet);
            export()?
        }
        None if !quiet => export()?,
        None => std::thread::scope(|scope| {
            let signing = scope.spawn(fingerprint);
            let exported = export();
            // A panic in the signature thread only loses the signature.
            entry.tree_signature = signing.join().ok().flatten();
            exported
        })?,
    };
    entry.size = stats.size;
    entry.uncompressed_size = stats.uncompressed_size;
    entry.sha256 = Some(stats.sha256);
    entry.special_files = specials;
    Ok(entry)
}

/// The tree signature of volume `info` (see [`reuse`]), `None` when it is
/// not fingerprinted or the fingerprint failed: that costs only the
/// sharing of its archive by the next backup, so it is a note, not an
/// error.
fn fingerprint(
    podman: &dyn ContainerEngine,
    info: &VolumeInfo,
    progress: &Progress,
) -> Option<String> {
    if !reuse::fingerprintable(info) {
        return None;
    }
    reuse::tree_signature(podman, &info.mountpoint)
        .map_err(|e| {
            progress.step(format!(
                "volume {}: no tree signature ({e}); the next backup exports it again",
                info.name
            ))
        })
        .ok()
}

/// The entry of a volume whose archive in `previous` (a candidate: of the
/// same compression) is linked to `dest`, when the volume's `signature`
/// says it has not changed since (see [`reuse::reusable`]); `None`
/// when it must be exported, a failed link (`EXDEV`, `EMLINK`, the archive
/// gone) included.
fn share_archive(
    previous: &StoredBackup,
    entry: &VolumeEntry,
    signature: Option<&str>,
    dest: &Path,
    progress: &Progress,
) -> Option<VolumeEntry> {
    let compression = previous.metadata.compression?;
    let old = reuse::reusable(&previous.metadata, &entry.name, signature?, compression)?;
    match reuse::link_archive(previous, old, dest) {
        Ok(()) => {
            progress.step(format!(
                "volume {}: unchanged since backup {}, its archive is shared",
                entry.name,
                previous.id()
            ));
            Some(reuse::shared_entry(entry.clone(), old))
        }
        Err(e) => {
            progress.step(format!(
                "volume {}: unchanged since backup {}, but its archive cannot be shared ({e}): \
                 exporting it",
                entry.name,
                previous.id()
            ));
            None
        }
    }
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

/// Stream one volume into its archive: its tar (read directly or by
/// `podman volume export`, see [`volume_reader`]) piped through the
/// [`TarGuard`] (so a backup that a restore would refuse fails now, not on
/// the bad day) into [`archive::write_archive`]. Either side failing ends
/// the other. Returns the archive's figures and the device nodes and FIFOs
/// the volume holds (a restore lets only those through).
fn export_volume(
    ctx: &Context,
    info: &VolumeInfo,
    reader: ReaderChoice,
    dest: &Path,
    progress: &Progress,
) -> Result<(archive::ArchiveStats, Vec<String>)> {
    let name = info.name.as_str();
    let backup = &ctx.config.backup;
    let (compression, level, threads) = (
        backup.compression.value,
        backup.level.value,
        backup.threads.value,
    );
    let bar = progress.bar("exporting", name);
    let stream = volume_reader::open(&*ctx.podman, info, reader).map_err(|e| {
        bar.fail();
        e.context(format!("exporting volume {name}"))
    })?;
    if let Some(why) = &stream.fallback {
        progress.step(format!(
            "reading volume {name} with `podman volume export`: the direct read did not start ({why})"
        ));
    }
    let how = if stream.direct {
        "read directly"
    } else {
        "podman volume export"
    };
    let export = stream.program;
    let stdout = Interruptible {
        inner: std::io::Read::chain(std::io::Cursor::new(stream.head), stream.stdout),
        fault: fault::armed("create:during-export"),
    };
    let mut guarded = Guarded::new(stdout, Specials::Record);
    let written =
        archive::write_archive(&mut guarded, dest, compression, level, threads, &mut |n| {
            bar.set(n)
        });
    match written {
        Ok(stats) => {
            // A podman failure mid-stream ends the tar early; only its exit
            // status tells.
            if let Err(e) = export.finish() {
                let _ = std::fs::remove_file(dest);
                bar.fail();
                return Err(e.context(format!("exporting volume {name}")));
            }
            let Some(specials) = guarded.recorded() else {
                let _ = std::fs::remove_file(dest);
                bar.fail();
                return Err(Error::internal(format!(
                    "exporting volume {name}: the export stream was not read to its end"
                )));
            };
            bar.done(&format!(
                "{} -> {} ({how})",
                ui::human_size(stats.uncompressed_size),
                ui::human_size(stats.size)
            ));
            Ok((stats, specials))
        }
        Err(e) => {
            // A reader that failed (a file it could not read) says why.
            let e = export.abort_explained().unwrap_or(e);
            bar.fail();
            Err(e.context(format!("exporting volume {name}")))
        }
    }
}

/// The export stream, cut short when SIGINT/SIGTERM arrived: the read that
/// the signal interrupted (`EINTR`, retried by the archive writer) comes
/// back here and fails, so the archive writer stops and removes its file.
/// It is also where the `create:during-export` fault point fires.
struct Interruptible<R> {
    inner: R,
    fault: bool,
}

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(signal) = interrupt::requested() {
            return Err(std::io::Error::other(format!("interrupted by {signal}")));
        }
        let n = self.inner.read(buf)?;
        if n > 0 && self.fault {
            self.fault = false;
            fault::point("create:during-export");
        }
        Ok(n)
    }
}

/// Grow a pipe to podman to 1 MiB (the unprivileged maximum by default), so
/// data crosses it in whole chunks instead of 64 KiB at a time. Only a
/// speed-up: failure is ignored, and a stream that is no pipe (`None`, an
/// in-memory one in tests) is left alone.
pub(crate) fn widen_pipe(fd: Option<std::os::fd::RawFd>) {
    if let Some(fd) = fd {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    }
}

/// Progress on stderr: a bar per volume on a terminal, a line per step
/// otherwise (logs, the stop hook), nothing when disabled.
pub(crate) struct Progress {
    multi: Option<MultiProgress>,
    lines: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; silent unless `enabled`.
    pub fn new(enabled: bool) -> Progress {
        let bars = enabled && ui::stderr_is_tty();
        Progress {
            multi: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            lines: enabled && !bars,
        }
    }

    /// One step of the work.
    pub fn step(&self, message: impl std::fmt::Display) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(ui::escape(&message.to_string()));
            }
            None if self.lines => ui::note(message),
            None => {}
        }
    }

    /// A bar (or start and end lines) for streaming one volume.
    pub fn bar(&self, verb: &'static str, volume: &str) -> VolumeBar {
        let started = Instant::now();
        match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix} {bytes} ({binary_bytes_per_sec}) {elapsed} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(ui::escape(&format!("{verb} {volume}")).into_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                VolumeBar {
                    bar: Some((multi.clone(), bar)),
                    lines: false,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                }
            }
            None => {
                if self.lines {
                    ui::note(format!("{verb} volume {volume}"));
                }
                VolumeBar {
                    bar: None,
                    lines: self.lines,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                }
            }
        }
    }
}

/// Progress of one volume.
pub(crate) struct VolumeBar {
    bar: Option<(MultiProgress, ProgressBar)>,
    lines: bool,
    volume: String,
    started: Instant,
    bytes: std::cell::Cell<u64>,
}

impl VolumeBar {
    /// Bytes (uncompressed) streamed so far.
    pub fn set(&self, bytes: u64) {
        self.bytes.set(bytes);
        if let Some((_, bar)) = &self.bar {
            bar.set_position(bytes);
        }
    }

    /// The volume is done; `detail` says what came of it. The bar gives
    /// way to a summary line that stays in the scrollback.
    pub fn done(&self, detail: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes.get() as f64 / secs
        } else {
            0.0
        };
        let line = format!(
            "volume {}: {detail} in {secs:.1} s ({}/s)",
            self.volume,
            ui::human_size(rate as u64)
        );
        match &self.bar {
            Some((multi, bar)) => {
                bar.finish_and_clear();
                let _ = multi.println(ui::escape(&line));
            }
            None if self.lines => ui::note(line),
            None => {}
        }
    }

    /// The volume failed (the error is reported by the caller).
    pub fn fail(&self) {
        if let Some((_, bar)) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for VolumeBar {
    /// A bar left behind by an early error is cleared, not frozen on screen.
    fn drop(&mut self) {
        if let Some((_, bar)) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_services() {
        assert_eq!(volume_service_of("data.volume"), "data-volume.service");
        assert_eq!(volume_service_of("sub/db.volume"), "db-volume.service");
    }

    #[test]
    fn volume_names() {
        assert!(check_volume_name("systemd-data").is_ok());
        assert!(check_volume_name("a.b_c-1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reasons() {
        assert!(check_reason("before-test").is_ok());
        assert!(check_reason("").is_err());
        assert!(check_reason("a\nb").is_err());
    }
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod with_fakes;
