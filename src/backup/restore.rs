//! `restore`: put a deployment back exactly as a backup recorded it — or, if
//! anything goes wrong on the way, leave it as it was before.
//!
//! The steps (numbered as in the design):
//! 1. load and fully verify the backup: a damaged one is refused before
//!    anything live is touched;
//! 2. show the plan and confirm;
//! 3. refuse when a container outside the deployment uses one of its volumes;
//! 4. take a safety backup of the current state (through the same code path
//!    as `create`), with the services already stopped;
//! 5. put the files back exactly, `daemon-reload`;
//! 6. each volume: remove, recreate, import, restore the root's mode/owner;
//! 7. start the services that ran at backup time and wait until active.
//!
//! Steps 5-7 are [`put_back`]; a failure there runs [`put_back`] again with
//! the safety backup (the rollback uses the very same code), so the state
//! before the restore comes back, or the user is told exactly what to do.
//!
//! Each step is recorded in the operation journal before it begins
//! ([`crate::backup::journal`]). A restore killed half-way is not guessed
//! at: `leger-backup recover` ([`recover`]) puts the safety backup back
//! through the same `put_back`. SIGINT/SIGTERM stop a restore at the next
//! safe point: before anything was replaced it just ends (services started
//! again), after that it rolls back like any other failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::archive;
use crate::backup::create::{self, CreateOptions, Progress, Subject, VolumeSpec};
use crate::backup::files::{self, Roots};
use crate::backup::journal::{Journal, Operation, Record, Safety, Step};
use crate::backup::lock::DeploymentLock;
use crate::backup::metadata::{FileEntry, Installation, Metadata, VolumeEntry};
use crate::backup::services::{self, ServiceGuard};
use crate::backup::store::{validate_id, BackupStore, StoredBackup};
use crate::backup::tar_guard::{self, Specials, TarGuard};
use crate::backup::trust;
use crate::backup::verify;
use crate::context::Context;
use crate::deployment::{self, Deployment, DeploymentFile};
use crate::error::{Error, ErrorKind, Result};
use crate::fault;
use crate::interrupt;
use crate::podman::VolumeInfo;
use crate::quadlet::Resolution;
use crate::ui;

/// How `restore` runs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Leave the services stopped afterwards.
    pub no_start: bool,
    /// Do not ask for confirmation (`--yes`).
    pub assume_yes: bool,
    /// Replace volumes other deployments' quadlet files use too, and files
    /// in the restore's way that belong to no deployment (`--force`; those
    /// files go into the safety backup).
    pub force: bool,
}

/// What a successful restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub id: String,
    /// Its deployment.
    pub deployment: String,
    /// The safety backup of the state before: the undo.
    pub safety_backup: Option<String>,
    /// Services started and active afterwards.
    pub started: Vec<String>,
    /// Secrets the units require that do not exist.
    pub missing_secrets: Vec<String>,
    /// Whether the backup was written by leger's Go implementation (nothing
    /// could be verified).
    pub legacy: bool,
    /// Seconds the deployment's services were down (from stopping the ones
    /// that ran to the restored ones being active); `None` when none ran.
    pub downtime_seconds: Option<f64>,
}

/// Which services [`put_back`] starts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Those that were running when the backup was taken.
    WasRunning,
    /// All of them (the deployment had been removed).
    All,
    /// None (`--no-start`).
    Nothing,
}

/// A state to put back: a backup's metadata, where its files are, and its
/// file entries (from the metadata, or found on disk for leger's backups).
struct Target {
    backup: StoredBackup,
    entries: Vec<FileEntry>,
}

impl Target {
    fn of(backup: StoredBackup) -> Result<Target> {
        let entries = if backup.metadata.is_legacy() {
            files::legacy_entries(&backup.path, is_leger(&backup.metadata))?
        } else {
            backup.metadata.files.clone()
        };
        Ok(Target { backup, entries })
    }

    /// "Nothing was installed": the state to return to when a restore of a
    /// deployment that did not exist at all fails. Files and volumes the
    /// restore created are removed again.
    fn nothing(store: &BackupStore, failed: &Metadata) -> Target {
        let mut metadata = failed.clone();
        metadata.files.clear();
        metadata.dirs.clear();
        metadata.quadlet_files.clear();
        metadata.services.clear();
        metadata.secrets.clear();
        metadata.format_version = Some(crate::backup::metadata::FORMAT_VERSION);
        for volume in &mut metadata.volumes {
            volume.existed = false;
            volume.archive_path = None;
        }
        Target {
            backup: StoredBackup {
                path: store.dir().to_owned(),
                metadata,
            },
            entries: Vec::new(),
        }
    }

    fn metadata(&self) -> &Metadata {
        &self.backup.metadata
    }
}

/// Whether a backup is of a leger deployment (active directory + installed
/// quadlets) rather than a plain Quadlet directory. leger's own backups are.
fn is_leger(metadata: &Metadata) -> bool {
    match &metadata.installation {
        Some(i) => i.active_dir.is_some() || i.installed_from_active,
        None => true,
    }
}

/// Where the files of `metadata`'s deployment go on this machine: derived
/// from the current layout (not from the recorded absolute paths, which may
/// belong to another HOME), in the recorded form.
fn roots_for(ctx: &Context, metadata: &Metadata) -> Roots {
    let name = &metadata.deployment_name;
    if is_leger(metadata) {
        Roots {
            active: Some(ctx.layout.active_dir_of(name)),
            installed: ctx.layout.quadlet_dir.clone(),
        }
    } else {
        Roots {
            active: None,
            installed: ctx.layout.quadlet_dir.join(name),
        }
    }
}

/// The deployment called `name` as installed now, if it is.
fn current_deployment(ctx: &Context, name: &str) -> Result<Option<Deployment>> {
    Ok(deployment::discover(&ctx.layout)?
        .into_iter()
        .find(|d| d.name == name))
}

/// Restore backup `id`: verify, plan, confirm, safety backup, put back, and
/// roll back to the safety backup if putting back fails.
pub fn restore(
    ctx: &Context,
    store: &BackupStore,
    id: &str,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    validate_id(id)?;
    let started = Instant::now();
    let backup = store.load(id)?;
    let metadata = backup.metadata.clone();
    let name = metadata.deployment_name.clone();
    if let Some(scope) = metadata.scope {
        if scope != ctx.layout.scope {
            return Err(Error::user(format!(
                "backup {id} was taken in {} scope, this is {} scope",
                scope.as_str(),
                ctx.layout.scope.as_str()
            ))
            .with_hint(format!(
                "run `leger-backup --{} restore {id}`",
                scope.as_str()
            )));
        }
    }
    let progress = Progress::new(true);

    // 1. Before any command runs: every name the restore acts on must come
    // from the backup's own quadlet files (or the deployment installed
    // now), then every checksum and archive is verified. Only then are
    // podman and systemd asked (read-only) what exists and runs.
    let legacy = metadata.is_legacy();
    let target = Target::of(backup.clone())?;
    let current = current_deployment(ctx, &name)?;
    let outside_storage = check_trusted(ctx, &target, current.as_ref())?;
    progress.step(format!("verifying {id}"));
    verify_backup(&backup)?;
    check_volumes_outside_storage(&name, &outside_storage, opts.force)?;
    // What the restore would replace that is not the deployment's: refused
    // before the question (only files are read).
    let in_the_way = check_in_the_way(ctx, &target, opts.force)?;
    let plan = plan_lines(ctx, &target, current.as_ref(), true)?;

    // 2. Show the plan; confirm.
    for line in plan {
        ui::note(line);
    }
    if !opts.assume_yes {
        let question = format!("Replace the current state of {name} with backup {id}?");
        if !ui::confirm(&question, "--yes")? {
            return Err(Error::user("restore cancelled; nothing was changed"));
        }
    }

    let _lock = DeploymentLock::acquire(&ctx.layout.state_dir, &name, Duration::ZERO)?;
    // A journal a dead run left for this deployment is dealt with first.
    crate::backup::recovery::before_restore(ctx, &name)?;
    // Declared after the lock, so it is removed before the lock is released.
    // While it lives it also keeps the stop hooks of the services stopped
    // below from backing up a half-restored deployment (see `auto::ops`).
    let mut journal = Journal::begin(
        &ctx.layout.state_dir,
        &name,
        Operation::Restore,
        store.dir(),
        true,
    )?;
    journal.update(|r| r.backup_id = Some(id.to_owned()))?;
    interrupt::install()?;
    // The deployment may have changed while the question was open.
    let current = current_deployment(ctx, &name)?;
    let existed = current.is_some();
    let subject = safety_subject(ctx, &metadata, current.as_ref(), &in_the_way)?;

    // 3. Volumes in use by containers of other deployments.
    let mut own_services: BTreeSet<String> = subject.services.iter().cloned().collect();
    own_services.extend(metadata.services.iter().map(|s| s.name.clone()));
    for volume in &subject.volumes {
        own_services.extend(volume.used_by.iter().cloned());
    }
    let touched: Vec<String> = metadata.volumes.iter().map(|v| v.name.clone()).collect();
    check_not_in_use(ctx, &name, &touched, &own_services)?;

    // Stop the deployment's services; they stay down through the safety
    // backup (consistent, and one downtime instead of two).
    let units: Vec<String> = own_services.iter().cloned().collect();
    let running = services::running_services(&*ctx.systemctl, &units)?;
    interrupt::check().map_err(|e| nothing_changed(id, e))?;
    journal.update(|r| {
        r.stopped = running.iter().cloned().collect();
        r.step = Step::StoppingServices;
    })?;
    let down_since = Instant::now();
    let mut guard = ServiceGuard::new(&*ctx.systemctl, running.iter().cloned().collect());
    guard.stop(&progress)?;

    // 4. Safety backup of the current state, when there is one.
    let any_volume = create::in_parallel(&subject.volumes, |volume| {
        ctx.podman.volume_exists(&volume.name)
    })?
    .contains(&true);
    let safety = if existed || any_volume || !in_the_way.is_empty() {
        let opts = CreateOptions {
            reason: "pre-restore".to_owned(),
            live: false,
            wait: Duration::ZERO,
            services_already_stopped: true,
            progress: true,
            stop_result: None,
        };
        journal.update(|r| {
            r.safety = Some(Safety::Taking { id: String::new() });
            r.step = Step::SafetyBackup;
        })?;
        let safety = create::create_locked(
            ctx,
            store,
            &subject,
            &opts,
            Some(&running),
            &progress,
            &mut journal,
        )
        .map_err(|e| {
            let e = interrupt::explain(e);
            if e.kind == ErrorKind::Interrupted {
                nothing_changed(id, e)
            } else {
                e.context("the safety backup of the current state failed; nothing was restored")
            }
        })?;
        journal.update(|r| {
            r.safety = Some(Safety::Taken {
                id: safety.id.clone(),
            });
            r.writing = None;
            r.step = Step::SafetyTaken;
        })?;
        progress.step(format!("safety backup {} taken", safety.id));
        Some(safety.id)
    } else {
        journal.update(|r| r.safety = Some(Safety::NotNeeded))?;
        progress.step("nothing of the deployment exists: no safety backup needed");
        None
    };
    fault::point("restore:after-safety");
    // The last moment to stop without changing anything: the guard starts
    // the services again.
    interrupt::check().map_err(|e| {
        let e = nothing_changed(id, e);
        match &safety {
            Some(s) => e.with_hint(format!(
                "the safety backup {s} of the current state is kept; restore {id} again when you are ready"
            )),
            None => e,
        }
    })?;
    // From here on put_back (or the rollback) decides what runs.
    guard.hand_over();
    journal.update(|r| r.touched = true)?;

    // 5-7.
    let start = if opts.no_start {
        Start::Nothing
    } else if existed {
        Start::WasRunning
    } else {
        Start::All
    };
    let result = put_back(ctx, &target, start, &progress, &mut journal, true);
    let started_units = match result {
        Ok(units) => units,
        Err(cause) => {
            let err = roll_back(
                ctx,
                store,
                &target,
                safety.as_deref(),
                cause,
                &progress,
                &mut journal,
            );
            if journal.record().rollback_failed.is_some() {
                // `recover` retries the rollback; `status` shows it.
                journal.keep();
            }
            return Err(err);
        }
    };
    let downtime = (!running.is_empty()).then(|| down_since.elapsed().as_secs_f64());

    // After: secrets the units need.
    // (leger's backups do not record them: ask the restored units.)
    let secrets = if legacy {
        current_deployment(ctx, &name)?
            .and_then(|d| d.resolve(&ctx.layout).ok())
            .map(|r| r.secrets)
            .unwrap_or_default()
    } else {
        metadata.secrets.clone()
    };
    let mut missing_secrets = Vec::new();
    for secret in &secrets {
        match ctx.podman.secret_exists(secret) {
            Ok(true) => {}
            Ok(false) => missing_secrets.push(secret.clone()),
            Err(e) => ui::warn(format!("cannot check secret {secret}: {e}")),
        }
    }
    if !missing_secrets.is_empty() {
        ui::warn(format!(
            "secrets the units require do not exist: {} (backups never hold secret values; \
             create them with `podman secret create NAME FILE`)",
            missing_secrets.join(", ")
        ));
    }
    progress.step(format!(
        "restored {id} in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        match downtime {
            Some(d) => format!(", services down {d:.1} s"),
            None => String::new(),
        }
    ));
    Ok(RestoreOutcome {
        id: id.to_owned(),
        deployment: name,
        safety_backup: safety,
        started: started_units,
        missing_secrets,
        legacy,
        downtime_seconds: downtime,
    })
}

/// The error of a restore stopped by a signal before it replaced anything.
fn nothing_changed(id: &str, err: Error) -> Error {
    let what = match interrupt::requested() {
        Some(signal) => interrupt::error(signal).message,
        None => interrupt::explain(err).message,
    };
    Error::interrupted(format!(
        "restore of {id} {what}, before anything was replaced: nothing was changed"
    ))
}

/// How `recover` ended for one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// The restore had replaced nothing: its services were started again.
    NothingReplaced,
    /// Rolled back to the safety backup.
    RolledBack,
    /// Nothing of the deployment existed before: what the restore put in
    /// place was removed.
    Removed,
}

/// What `recover` did for one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    /// The deployment.
    pub deployment: String,
    /// The backup the interrupted restore was putting back.
    pub backup: Option<String>,
    /// Its safety backup (the state put back).
    pub safety_backup: Option<String>,
    /// What was done.
    pub outcome: Recovery,
    /// Services started afterwards.
    pub started: Vec<String>,
}

/// Finish a restore that a dead process left half-done, as its journal
/// `record` says (the caller holds the deployment lock): put the safety
/// backup back through `put_back`, as the rollback of a failed restore
/// does; or, when the restore had replaced nothing yet, only start the
/// services it stopped. When the safety backup cannot be used, nothing is
/// changed and the error says what to do.
pub fn recover(
    ctx: &Context,
    store: &BackupStore,
    record: Record,
    assume_yes: bool,
) -> Result<Recovered> {
    let name = record.deployment.clone();
    let progress = Progress::new(true);
    let what = crate::backup::recovery::describe(&record);
    let mut outcome = Recovered {
        deployment: name.clone(),
        backup: record.backup_id.clone(),
        safety_backup: record.safety_id().map(str::to_owned),
        outcome: Recovery::NothingReplaced,
        started: Vec::new(),
    };
    if let Some(removed) = crate::backup::recovery::remove_unfinished(&record)? {
        progress.step(format!("removed the unfinished safety backup {removed}"));
    }
    if !record.touched && record.rollback_failed.is_none() {
        ui::note(format!(
            "{what}. It had not replaced anything yet: the files and volumes of {name} are as they were."
        ));
        let mut journal = Journal::adopt(&ctx.layout.state_dir, record.clone())?;
        interrupt::install()?;
        if !record.stopped.is_empty() {
            progress.step(format!("starting {} again", record.stopped.join(", ")));
            journal.step(Step::StartingServices)?;
            let started = ctx.systemctl.start(&record.stopped).and_then(|()| {
                ctx.systemctl.wait_active(
                    &record.stopped,
                    ctx.config.backup.start_timeout.value.duration(),
                )
            });
            if let Err(e) = started {
                // Still pending: `recover` can try again once fixed.
                journal.keep();
                return Err(e.context(format!("starting the services of {name} again")));
            }
            outcome.started = record.stopped.clone();
        }
        return Ok(outcome);
    }
    let undo_hint = |e: Error| {
        let retry = match &record.backup_id {
            Some(b) => format!("`leger-backup restore {b}` (the backup it was restoring)"),
            None => "`leger-backup restore <ID>`".to_owned(),
        };
        e.with_hint(format!(
            "nothing was changed. {name} may be half-restored: put a known state back with {retry} \
             or another backup from `leger-backup list`"
        ))
    };
    let (target, start, question) = match &record.safety {
        Some(Safety::Taken { id }) => {
            let backup = store.load(id).map_err(|e| {
                undo_hint(Error::user(format!(
                    "{what}, and its safety backup {id} cannot be used: {}",
                    e.message
                )))
            })?;
            progress.step(format!("verifying the safety backup {id}"));
            verify_backup(&backup).map_err(|e| {
                undo_hint(Error::user(format!(
                    "{what}, and its safety backup {id} is damaged: {}",
                    e.message
                )))
            })?;
            outcome.outcome = Recovery::RolledBack;
            (
                Target::of(backup)?,
                Start::WasRunning,
                format!("Roll {name} back to {id}, its state before the interrupted restore?"),
            )
        }
        Some(Safety::NotNeeded) => {
            let failed = record
                .backup_id
                .as_deref()
                .ok_or_else(|| Error::user("the journal names no backup"))
                .and_then(|b| store.load(b))
                .map_err(|e| {
                    undo_hint(Error::user(format!(
                        "{what}; nothing of {name} existed before it, but what it put in place \
                         cannot be told: {}",
                        e.message
                    )))
                })?;
            outcome.outcome = Recovery::Removed;
            (
                Target::nothing(store, &failed.metadata),
                Start::Nothing,
                format!(
                    "Remove what the interrupted restore put in place (nothing of {name} existed before it)?"
                ),
            )
        }
        _ => {
            return Err(undo_hint(Error::user(format!(
                "{what}, and it has no complete safety backup"
            ))))
        }
    };
    ui::note(format!("{what}."));
    let current = current_deployment(ctx, &name)?;
    show_plan(ctx, &target, current.as_ref(), false)?;
    if !assume_yes && !ui::confirm(&question, "--yes")? {
        return Err(
            Error::user("recover cancelled; nothing was changed").with_hint(
                "`leger-backup status` keeps showing the interrupted restore until it is recovered",
            ),
        );
    }
    let mut journal = Journal::adopt(&ctx.layout.state_dir, record.clone())?;
    journal.update(|r| {
        r.rolling_back = Some("the restore was interrupted".to_owned());
        r.rollback_failed = None;
    })?;
    // Signals are handled (and ignored: a rollback is not interrupted).
    interrupt::install()?;
    match put_back(ctx, &target, start, &progress, &mut journal, false) {
        Ok(started) => {
            outcome.started = started;
            Ok(outcome)
        }
        Err(e) => {
            let _ = journal.update(|r| r.rollback_failed = Some(e.message.clone()));
            journal.keep();
            Err(e.context(format!("rolling {name} back failed")).with_hint(
                match &outcome.safety_backup {
                    Some(id) => format!(
                    "every backup is kept; fix the cause and run `leger-backup recover` again, or \
                     `leger-backup restore {id}`"
                ),
                    None => {
                        "every backup is kept; fix the cause and run `leger-backup recover` again"
                            .to_owned()
                    }
                },
            ))
        }
    }
}

/// Step 1: every checksum and every archive, before anything live changes.
fn verify_backup(backup: &StoredBackup) -> Result<()> {
    let report = verify::verify(backup)?;
    for warning in &report.warnings {
        ui::warn(format!("backup {}: {warning}", backup.metadata.id));
    }
    report.ensure_ok().map_err(|e| {
        e.context(format!(
            "refusing to restore {} (nothing was changed)",
            backup.metadata.id
        ))
    })
}

/// Refuse a backup whose metadata names a unit, volume or secret that
/// neither its own quadlet files nor those of the deployment installed now
/// produce, or volume settings no `.volume` file declares (see
/// [`trust`]). Reads files only: it runs before any command. Returns the
/// backup's volumes that mount something outside Podman's storage
/// ([`trust::volumes_outside_podman_storage`]).
fn check_trusted(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
) -> Result<Vec<String>> {
    let m = target.metadata();
    let roots = roots_for(ctx, m);
    let sources = trust::backup_sources(&target.backup, &target.entries, &roots)?;
    let installed = deployment::installed_quadlet_files(&ctx.layout)?;
    let resolution = crate::quadlet::resolve(&sources, &installed).map_err(|e| {
        Error::user(format!(
            "backup {}: its quadlet files cannot be resolved, so its metadata cannot be \
             checked against them: {}",
            m.id, e.message
        ))
        .with_hint("the backup is refused; restore another one (`leger-backup list`)")
    })?;
    let mut produced = trust::Produced::of(&resolution);
    if let Some(resolution) = current.and_then(|d| d.resolve(&ctx.layout).ok()) {
        produced.add(&resolution);
    }
    trust::check(m, &produced)?;
    Ok(trust::volumes_outside_podman_storage(&sources))
}

/// A volume that mounts a host path or a device takes the import wherever
/// it points: only with `--force`, after the user has seen where.
fn check_volumes_outside_storage(name: &str, volumes: &[String], force: bool) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    if force {
        for v in volumes {
            ui::warn(format!(
                "--force: {v}: the import writes into what this volume mounts"
            ));
        }
        return Ok(());
    }
    Err(Error::user(format!(
        "refusing to restore {name}: its quadlet files mount volumes from outside Podman's \
         storage, and the import would write into them: {}",
        volumes.join("; ")
    ))
    .with_hint(
        "check that these are the deployment's own (an NFS share, a disk), then pass --force",
    ))
}

/// What the safety backup captures: the deployment as installed now (if it
/// is) plus every volume the restore will replace.
fn safety_subject(
    ctx: &Context,
    metadata: &Metadata,
    current: Option<&Deployment>,
    in_the_way: &[DeploymentFile],
) -> Result<Subject> {
    let mut subject = match current {
        Some(d) => match Subject::of_deployment(ctx, d) {
            Ok(s) => s,
            Err(e) => {
                ui::warn(format!(
                    "the installed deployment cannot be resolved ({e}); the safety backup \
                     holds its files and the volumes of the backup"
                ));
                Subject {
                    name: d.name.clone(),
                    files: d.files()?,
                    installation: create::installation_of(d),
                    volumes: Vec::new(),
                    services: Vec::new(),
                    secrets: Vec::new(),
                }
            }
        },
        None => {
            let roots = roots_for(ctx, metadata);
            Subject {
                name: metadata.deployment_name.clone(),
                files: Vec::new(),
                installation: Installation {
                    installed_from_active: roots.active.is_some(),
                    active_dir: roots.active,
                    installed_root: roots.installed,
                },
                volumes: Vec::new(),
                services: Vec::new(),
                secrets: Vec::new(),
            }
        }
    };
    // Files of no deployment that `--force` lets the restore replace: kept
    // in the safety backup, so a rollback puts them back.
    for file in in_the_way {
        if !subject.files.iter().any(|f| f.path == file.path) {
            subject.files.push(file.clone());
        }
    }
    for volume in &metadata.volumes {
        if !subject.volumes.iter().any(|v| v.name == volume.name) {
            subject.volumes.push(VolumeSpec {
                name: volume.name.clone(),
                defined_by: volume.defined_by.clone(),
                volume_service: volume.volume_service.clone(),
                used_by: volume.used_by.clone(),
            });
        }
    }
    subject.volumes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut services: BTreeSet<String> = subject.services.iter().cloned().collect();
    services.extend(metadata.services.iter().map(|s| s.name.clone()));
    subject.services = services.into_iter().collect();
    Ok(subject)
}

/// Step 3: refuse when a container that is not one of the deployment's
/// (by its `PODMAN_SYSTEMD_UNIT` label) uses a volume to be replaced.
fn check_not_in_use(
    ctx: &Context,
    deployment: &str,
    volumes: &[String],
    own_services: &BTreeSet<String>,
) -> Result<()> {
    let users: Vec<String> = services::foreign_users(&*ctx.podman, volumes, own_services)?
        .into_iter()
        .map(|(volume, container)| {
            let unit = container
                .systemd_unit()
                .map(|u| format!(", run by {u}"))
                .unwrap_or_default();
            format!(
                "volume {volume} is used by container {} ({}{unit})",
                container.display_name(),
                if container.state.is_empty() {
                    "unknown state"
                } else {
                    &container.state
                }
            )
        })
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "refusing to restore {deployment}: {}",
        users.join("; ")
    ))
    .with_hint("stop and remove those containers (they are not part of the deployment), then restore again"))
}

/// Refuse what a restore would replace that is not its deployment's:
/// - a file of another deployment (two deployments installing the same
///   quadlet file name): always refused, the restore would silently change
///   that other deployment;
/// - a file in the way that belongs to no deployment (a stray quadlet file
///   of the same name): refused unless `force`; returned, for the safety
///   backup to hold it;
/// - a volume the quadlet files of another deployment use, running or not:
///   refused unless `force`.
///
/// Reads files only.
fn check_in_the_way(ctx: &Context, target: &Target, force: bool) -> Result<Vec<DeploymentFile>> {
    let name = &target.metadata().deployment_name;
    let deployments = deployment::discover(&ctx.layout)?;
    let (clashes, unowned) = files_in_the_way(ctx, target, &deployments)?;
    if !clashes.is_empty() {
        return Err(Error::user(format!(
            "refusing to restore {name}: its files would replace files of another deployment: {}",
            clashes.join(", ")
        ))
        .with_hint("remove or rename the other deployment's files first"));
    }
    let shared = shared_volumes(ctx, target, &deployments);
    if force {
        for line in shared.iter().cloned().chain(
            unowned
                .iter()
                .map(|f| format!("{} belongs to no deployment", f.path.display())),
        ) {
            ui::warn(format!("--force: {line}; replacing it anyway"));
        }
        return Ok(unowned);
    }
    if !unowned.is_empty() {
        return Err(Error::user(format!(
            "refusing to restore {name}: it would overwrite files that belong to no deployment: {}",
            unowned
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint(
            "move them away, or pass --force to replace them (they are kept in the safety backup, \
             and a rollback puts them back)",
        ));
    }
    if !shared.is_empty() {
        return Err(Error::user(format!(
            "refusing to restore {name}: it would replace volumes other deployments use: {}",
            shared.join("; ")
        ))
        .with_hint(
            "the restore would change those deployments' data too; pass --force to replace the \
             volumes anyway (the safety backup keeps their current contents)",
        ));
    }
    Ok(unowned)
}

/// The files `target` would write that exist already and are not its
/// deployment's: those of other deployments (`"PATH (deployment D)"`) and
/// those of none.
fn files_in_the_way(
    ctx: &Context,
    target: &Target,
    deployments: &[Deployment],
) -> Result<(Vec<String>, Vec<DeploymentFile>)> {
    let name = &target.metadata().deployment_name;
    let roots = roots_for(ctx, target.metadata());
    let plan = files::plan_restore(&target.entries, &roots, &[])?;
    let mut owner: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for d in deployments {
        for file in d.files()? {
            owner.entry(file.path).or_insert(&d.name);
        }
    }
    let mut clashes = Vec::new();
    let mut unowned = Vec::new();
    for (entry, path) in &plan.write {
        match owner.get(path) {
            Some(other) if other != name => {
                clashes.push(format!("{} (deployment {other})", path.display()));
            }
            Some(_) => {}
            None if fs_err::symlink_metadata(path).is_ok() => unowned.push(DeploymentFile {
                rel_path: entry.path.clone(),
                location: entry.location,
                path: path.clone(),
            }),
            None => {}
        }
    }
    Ok((clashes, unowned))
}

/// The volumes `target` replaces that another deployment's quadlet files
/// use, as `"volume V is used by deployment D"`. A deployment whose files
/// do not resolve cannot be checked: said, not guessed.
fn shared_volumes(ctx: &Context, target: &Target, deployments: &[Deployment]) -> Vec<String> {
    let m = target.metadata();
    let touched: BTreeSet<&str> = m.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut shared = Vec::new();
    for other in deployments.iter().filter(|d| d.name != m.deployment_name) {
        match other.resolve(&ctx.layout) {
            Ok(resolution) => shared.extend(
                resolution
                    .volumes
                    .iter()
                    .filter(|v| touched.contains(v.name.as_str()))
                    .map(|v| format!("volume {} is used by deployment {}", v.name, other.name)),
            ),
            Err(e) => ui::warn(format!(
                "deployment {} cannot be resolved ({e}); whether it uses the volumes of {} is not known",
                other.name, m.deployment_name
            )),
        }
    }
    shared
}

/// Step 2: what will happen, on stderr. `safety`: a safety backup is taken
/// first (a restore; not `recover`, which puts a safety backup back).
fn show_plan(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
    safety: bool,
) -> Result<()> {
    for line in plan_lines(ctx, target, current, safety)? {
        ui::note(line);
    }
    Ok(())
}

/// The lines [`show_plan`] prints; only reads (files, podman, systemd).
fn plan_lines(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
    safety: bool,
) -> Result<Vec<String>> {
    let m = target.metadata();
    let mut lines = vec![format!(
        "restore {} ({}, reason {:?}, taken {})",
        m.id,
        match m.backup_type {
            crate::backup::metadata::BackupType::Manual => "manual",
            crate::backup::metadata::BackupType::Automatic => "automatic",
        },
        m.reason,
        m.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    )];
    lines.push(format!(
        "  deployment {}: {}",
        m.deployment_name,
        if current.is_some() && safety {
            "installed; its current state is backed up first (the undo)"
        } else if current.is_some() {
            "installed; replaced"
        } else {
            "not installed; it is installed from the backup"
        }
    ));
    let roots = roots_for(ctx, m);
    let current_files = match current {
        Some(d) => files::current_files(d)?,
        None => Vec::new(),
    };
    let plan =
        files::plan_restore(&target.entries, &roots, &current_files)?.with_dirs(&m.dirs, &roots)?;
    lines.push(format!(
        "  files: {} written{}",
        plan.write.len(),
        if plan.remove.is_empty() {
            String::new()
        } else {
            format!(
                ", {} removed ({})",
                plan.remove.len(),
                plan.remove
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    for volume in &m.volumes {
        let exists = ctx.podman.volume_exists(&volume.name)?;
        let what = if volume.existed {
            let size = if volume.uncompressed_size > 0 {
                volume.uncompressed_size
            } else {
                volume.size
            };
            format!(
                "{} from the backup{}",
                ui::human_size(size),
                if exists {
                    ", replacing the current data"
                } else {
                    ""
                }
            )
        } else if exists {
            "did not exist at backup time: removed".to_owned()
        } else {
            "did not exist at backup time: stays absent".to_owned()
        };
        lines.push(format!("  volume {}: {what}", volume.name));
    }
    let mut names: BTreeSet<String> = m.services.iter().map(|s| s.name.clone()).collect();
    if let Some(resolution) = current.and_then(|d| d.resolve(&ctx.layout).ok()) {
        names.extend(resolution.units.iter().map(|u| u.service.clone()));
        for volume in &resolution.volumes {
            names.extend(volume.used_by.iter().cloned());
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let running = services::running_services(&*ctx.systemctl, &names)?;
    if !running.is_empty() {
        lines.push(format!(
            "  services stopped: {}",
            running.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(lines)
}

/// Steps 5-7: put `target` back and start its services. The same code
/// restores a backup and rolls back to the safety backup. Each step is
/// recorded in `journal` first. `interruptible`: a signal stops it at the
/// next safe point (a restore); otherwise it goes on (a rollback).
fn put_back(
    ctx: &Context,
    target: &Target,
    start: Start,
    progress: &Progress,
    journal: &mut Journal,
    interruptible: bool,
) -> Result<Vec<String>> {
    let check = || {
        if interruptible {
            interrupt::check()
        } else {
            Ok(())
        }
    };
    let m = target.metadata();
    let name = &m.deployment_name;
    let current = current_deployment(ctx, name)?;

    // Stop whatever of the deployment runs (on a rollback: what the failed
    // attempt started).
    let mut units: BTreeSet<String> = m.services.iter().map(|s| s.name.clone()).collect();
    for volume in &m.volumes {
        units.extend(volume.used_by.iter().cloned());
    }
    if let Some(d) = &current {
        if let Ok(resolution) = d.resolve(&ctx.layout) {
            units.extend(resolution.units.iter().map(|u| u.service.clone()));
        }
    }
    let units: Vec<String> = units.into_iter().collect();
    let running: Vec<String> = services::running_services(&*ctx.systemctl, &units)?
        .into_iter()
        .collect();
    if !running.is_empty() {
        progress.step(format!("stopping {}", running.join(", ")));
        ctx.systemctl.stop(&running)?;
    }

    // 5. Files, exactly; then let the generator see them.
    let roots = roots_for(ctx, m);
    if let Some(installation) = &m.installation {
        let recorded = Roots {
            active: installation.active_dir.clone(),
            installed: installation.installed_root.clone(),
        };
        if recorded != roots {
            ui::note(format!(
                "files go to {} (recorded at backup time: {})",
                describe_roots(&roots),
                describe_roots(&recorded)
            ));
        }
    }
    let current_files = match &current {
        Some(d) => files::current_files(d)?,
        None => Vec::new(),
    };
    let plan =
        files::plan_restore(&target.entries, &roots, &current_files)?.with_dirs(&m.dirs, &roots)?;
    check()?;
    journal.step(Step::ReplacingFiles)?;
    progress.step(format!(
        "putting back {} files{}",
        plan.write.len(),
        if plan.remove.is_empty() {
            String::new()
        } else {
            format!(", removing {}", plan.remove.len())
        }
    ));
    files::apply(&plan, &target.backup.path, &roots)?;
    let mut own_roots: Vec<PathBuf> = roots.active.iter().cloned().collect();
    if roots.active.is_none() {
        own_roots.push(roots.installed.clone());
    }
    if let Some(d) = &current {
        own_roots.extend(d.active_dir.iter().cloned());
        if !d.installed_from_active {
            own_roots.push(d.installed_root.clone());
        }
    }
    files::remove_empty_roots(&own_roots);
    ctx.systemctl.daemon_reload()?;
    if interruptible {
        fault::point("restore:after-files");
    }

    // 6. Volumes. How each is made, and which services exist, come from
    // the files just put back (never from the metadata's volume_service).
    let placed = current_deployment(ctx, name)?.and_then(|d| d.resolve(&ctx.layout).ok());
    let volume_services: BTreeMap<String, String> = placed
        .iter()
        .flat_map(|r| {
            r.volumes
                .iter()
                .filter_map(|v| Some((v.name.clone(), trust::volume_service(r, v)?)))
        })
        .collect();
    for volume in &m.volumes {
        check()?;
        journal.step(Step::ReplacingVolume {
            volume: volume.name.clone(),
        })?;
        restore_volume(
            ctx,
            target,
            volume,
            volume_services.get(&volume.name),
            progress,
            interruptible,
        )
        .map_err(|e| e.context(format!("volume {}", volume.name)))?;
    }
    if interruptible {
        fault::point("restore:before-start");
    }
    check()?;

    // 7. Start and wait.
    let to_start = services_to_start(m, start, placed.as_ref());
    if !to_start.is_empty() {
        journal.step(Step::StartingRestored)?;
        progress.step(format!("starting {}", to_start.join(", ")));
        ctx.systemctl.start(&to_start)?;
        ctx.systemctl
            .wait_active(&to_start, ctx.config.backup.start_timeout.value.duration())?;
    }
    Ok(to_start)
}

fn describe_roots(roots: &Roots) -> String {
    match &roots.active {
        Some(active) => format!("{} and {}", active.display(), roots.installed.display()),
        None => roots.installed.display().to_string(),
    }
}

/// The services step 7 starts: those `start` asks for, among the services
/// the files just put back (`placed`) produce — a name the metadata holds
/// that they do not produce is not started. leger's own backups record no
/// services: all of `placed`'s are started, as leger's install does.
fn services_to_start(m: &Metadata, start: Start, placed: Option<&Resolution>) -> Vec<String> {
    let recorded: Vec<String> = match (start, placed) {
        (Start::Nothing, _) => return Vec::new(),
        (_, Some(r)) if m.is_legacy() => {
            return r.units.iter().map(|u| u.service.clone()).collect()
        }
        (Start::All, _) => m.services.iter().map(|s| s.name.clone()).collect(),
        (Start::WasRunning, _) => m
            .services
            .iter()
            .filter(|s| s.was_running)
            .map(|s| s.name.clone())
            .collect(),
    };
    let Some(placed) = placed else {
        return recorded;
    };
    let produced = trust::Produced::of(placed).services;
    let (start, skipped): (Vec<String>, Vec<String>) =
        recorded.into_iter().partition(|s| produced.contains(s));
    if !skipped.is_empty() {
        ui::warn(format!(
            "not starting {}: the restored quadlet files do not produce them",
            skipped.join(", ")
        ));
    }
    start
}

/// Step 6 for one volume: remove it, recreate it the way it was made,
/// import the archive, restore the root's mode and owner.
fn restore_volume(
    ctx: &Context,
    target: &Target,
    volume: &VolumeEntry,
    volume_service: Option<&String>,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    create::check_volume_name(&volume.name)?;
    let name = &volume.name;
    let live = ctx.podman.volume_inspect(name)?;
    if live.is_some() {
        ctx.podman.volume_rm(name)?;
    }
    if !volume.existed {
        progress.step(format!(
            "volume {name} did not exist at backup time: left absent"
        ));
        return Ok(());
    }
    // Recreate: through the .volume's service (driver, options and labels
    // from the file, as Quadlet makes it); else with the recorded labels and
    // the driver and options the volume had on this machine (the user made
    // it so), or none (local) when it did not exist. The backup's recorded
    // driver and options are never used.
    let mut info = None;
    if let Some(service) = volume_service {
        if ctx.systemctl.is_loaded(service)? {
            ctx.systemctl.restart(service)?;
            info = ctx.podman.volume_inspect(name)?;
        }
        if info.is_none() {
            ui::warn(format!(
                "{service} did not create volume {name}; creating it with `podman volume create`"
            ));
        }
    }
    let info = match info {
        Some(info) => info,
        None => {
            let (driver, options) = live.map(|l| (l.driver, l.options)).unwrap_or_default();
            ctx.podman.volume_create(&VolumeInfo {
                name: name.clone(),
                driver,
                mountpoint: String::new(),
                labels: volume.labels.clone(),
                options,
            })?;
            ctx.podman.volume_inspect(name)?.ok_or_else(|| {
                Error::internal(format!(
                    "volume {name} does not exist right after creating it"
                ))
            })?
        }
    };
    let path = target.backup.archive_path(volume)?.ok_or_else(|| {
        Error::user(format!(
            "the backup records volume {name} but holds no archive for it"
        ))
    })?;
    let compression = archive::compression_of(&path)
        .or(target.metadata().compression)
        .ok_or_else(|| {
            Error::user(format!(
                "cannot tell the compression of {} from its name",
                path.display()
            ))
        })?;
    let size = std::fs::symlink_metadata(&path)
        .map(|m| m.len())
        .unwrap_or(0);
    let expected = archive::Expected {
        sha256: volume.sha256.as_deref(),
        limit: archive::decompressed_limit(volume.uncompressed_size, size),
        specials: &volume.special_files,
    };
    import_archive(
        ctx,
        name,
        &path,
        compression,
        expected,
        progress,
        interruptible,
    )?;
    match volume.root {
        Some(root) => ctx.podman.set_root_ownership(&info.mountpoint, root)?,
        None => ui::warn(format!(
            "the backup does not record the mode and owner of volume {name}'s root; left as podman made it"
        )),
    }
    Ok(())
}

/// Stream an archive through the decompressor and the [`TarGuard`] into
/// `podman volume import NAME -`, then check that every byte of the archive
/// was read and matches its recorded checksum. podman is handed only chunks
/// the guard accepted, and never more bytes than the metadata records.
/// `interruptible`: a signal stops the copy.
fn import_archive(
    ctx: &Context,
    name: &str,
    path: &Path,
    compression: crate::config::Compression,
    expected: archive::Expected<'_>,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    let mut fault_armed = interruptible && fault::armed("restore:during-import");
    let bar = progress.bar("importing", name);
    let reader = archive::open_archive(path, compression)?.limit(expected.limit);
    let guard = TarGuard::new(Specials::Allow(expected.specials));
    let mut import = ctx.podman.volume_import(name)?;
    let mut stdin = import
        .input()
        .ok_or_else(|| Error::internal("podman volume import: no stdin"))?;
    create::widen_pipe(stdin.pipe_fd());
    // Decompress on a thread of its own while this one writes to podman:
    // neither waits for the other (a bounded queue keeps memory small).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IMPORT_QUEUE);
    let (reader, copied) = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decompress_into(reader, guard, tx));
        let mut total = 0u64;
        let mut written: Result<()> = Ok(());
        for chunk in rx {
            if interruptible {
                if let Err(e) = interrupt::check() {
                    written = Err(e);
                    break;
                }
            }
            match stdin.write_all(&chunk) {
                Ok(()) => {}
                // podman stopped reading: its exit status says why (or,
                // after the tar's end marker, that all is well).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => {
                    written = Err(Error::internal(format!(
                        "writing to `podman volume import {name}`: {e}"
                    )));
                    break;
                }
            }
            total += chunk.len() as u64;
            bar.set(total);
            if fault_armed {
                fault_armed = false;
                fault::point("restore:during-import");
            }
        }
        // Leaving the loop drops the receiver, which ends the decoder.
        let (reader, decoded) = decoder.join().expect("the decompression thread panicked");
        let copied = match decoded {
            Err(e) => Err(reader.damaged(&e)),
            Ok(()) => written,
        };
        (reader, copied)
    });
    drop(stdin);
    if let Err(e) = copied {
        import.abort();
        bar.fail();
        return Err(e);
    }
    if let Err(e) = import.finish() {
        bar.fail();
        return Err(e);
    }
    let digest = reader.finish()?;
    if let Some(expected) = expected.sha256 {
        if !digest.sha256.eq_ignore_ascii_case(expected) {
            bar.fail();
            return Err(Error::user(format!(
                "{}: checksum mismatch while importing (the archive changed after it was verified)",
                path.display()
            )));
        }
    }
    bar.done(&ui::human_size(digest.uncompressed_size));
    Ok(())
}

/// Decompressed chunks queued between the decompression thread and the
/// writer: a few MiB at most.
const IMPORT_QUEUE: usize = 4;

/// Read `reader` to its end in chunks handed to `tx`, each only after
/// `guard` accepted it; stop early when the receiver is gone. Returns the
/// reader (for its digest) and any read error or refusal.
fn decompress_into(
    mut reader: archive::ArchiveReader,
    mut guard: TarGuard<'_>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> (archive::ArchiveReader, std::io::Result<()>) {
    // Our own first block: podman never sniffs the archive's bytes for a
    // compression format (see `tar_guard::root_header`).
    let root = tar_guard::root_header();
    if let Err(why) = guard.feed(&root) {
        return (reader, Err(std::io::Error::other(why)));
    }
    if tx.send(root.to_vec()).is_err() {
        return (reader, Ok(()));
    }
    loop {
        let mut chunk = vec![0u8; archive::CHUNK];
        let n = match reader.read(&mut chunk) {
            Ok(0) => {
                let end = guard.finish().map(drop).map_err(std::io::Error::other);
                return (reader, end);
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (reader, Err(e)),
        };
        chunk.truncate(n);
        if let Err(why) = guard.feed(&chunk) {
            return (reader, Err(std::io::Error::other(why)));
        }
        if tx.send(chunk).is_err() {
            return (reader, Ok(()));
        }
    }
}

/// Step 8: put the safety backup back (or remove what the restore created
/// when nothing existed before), and build the error the user sees. A
/// rollback is never interrupted. When it fails too, `journal` records it
/// and the caller keeps the journal for `recover`.
fn roll_back(
    ctx: &Context,
    store: &BackupStore,
    failed: &Target,
    safety: Option<&str>,
    cause: Error,
    progress: &Progress,
    journal: &mut Journal,
) -> Error {
    let mut cause = interrupt::explain(cause);
    let interrupted = cause.kind == ErrorKind::Interrupted;
    if let (true, Some(signal)) = (interrupted, interrupt::requested()) {
        // Where it stopped is in the progress above; say what happened.
        cause.message = interrupt::error(signal).message;
    }
    let failed_id = failed.metadata().id.clone();
    if interrupted {
        ui::warn(format!(
            "restore of {failed_id} {}: rolling back to the state before it \
             (another signal does not stop this)",
            cause.message
        ));
    } else {
        ui::warn(format!("restore of {failed_id} failed: {cause}"));
    }
    // Best effort: the rollback matters more than its record.
    let _ = journal.update(|r| r.rolling_back = Some(cause.message.clone()));
    let rollback = match safety {
        Some(id) => {
            progress.step(format!("rolling back to the safety backup {id}"));
            store
                .load(id)
                .and_then(Target::of)
                .and_then(|t| put_back(ctx, &t, Start::WasRunning, progress, journal, false))
        }
        None => {
            progress.step("rolling back: removing what the restore put in place");
            put_back(
                ctx,
                &Target::nothing(store, failed.metadata()),
                Start::Nothing,
                progress,
                journal,
                false,
            )
        }
    };
    match rollback {
        Ok(_) => {
            let kind = match cause.kind {
                ErrorKind::Usage => ErrorKind::User,
                other => other,
            };
            let mut err = if interrupted {
                Error::user(format!(
                    "restore of {failed_id} {}, rolled back to the previous state",
                    cause.message
                ))
            } else {
                Error::user(format!(
                    "restore failed, rolled back to the previous state: {}",
                    cause.message
                ))
            };
            err.kind = kind;
            let mut hint = if interrupted {
                String::new()
            } else {
                cause.hint.unwrap_or_default()
            };
            if let Some(id) = safety {
                if !hint.is_empty() {
                    hint.push_str("; ");
                }
                hint.push_str(&format!(
                    "the state before the restore is also kept as backup {id}"
                ));
            }
            if hint.is_empty() {
                err
            } else {
                err.with_hint(hint)
            }
        }
        Err(second) => {
            let _ = journal.update(|r| r.rollback_failed = Some(second.message.clone()));
            let manual = match safety {
                Some(id) => format!(
                    "every backup is kept. `leger-backup recover` tries the rollback again; or see \
                     `leger-backup list`, then put the previous state back with \
                     `leger-backup restore {id}` (or retry `leger-backup restore {failed_id}`)"
                ),
                None => format!(
                    "every backup is kept. Nothing existed before the restore: `leger-backup recover` \
                     tries again to remove what it put in place; or remove the deployment's files and \
                     volumes by hand, or retry `leger-backup restore {failed_id}`"
                ),
            };
            Error::internal(format!(
                "restore failed: {}; rolling back {} failed too: {}",
                cause.message,
                match safety {
                    Some(id) => format!("to {id}"),
                    None => "what the restore did".to_owned(),
                },
                second.message
            ))
            .with_hint(manual)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::layout::{Layout, Scope};

    fn ctx() -> Context {
        let layout = Layout {
            scope: Scope::User,
            quadlet_dir: "/h/.config/containers/systemd".into(),
            quadlet_search_path: vec![],
            leger_data_dir: "/h/.local/share/bluebuild-quadlets".into(),
            leger_config_dir: "/h/.config/leger".into(),
            state_dir: "/h/.local/state/leger-backup".into(),
            systemd_unit_dir: "/h/.config/systemd/user".into(),
        };
        let config = Config::parse("", Path::new("/h/.config/leger/config.yaml"), &layout).unwrap();
        Context::new(layout, config)
    }

    fn metadata(installation: Option<Installation>) -> Metadata {
        let json = r#"{"id":"web-2025-01-01-000000","deployment_name":"web",
            "created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"manual","size":0,
            "quadlet_files":[],"volumes":[{"name":"v","archive_path":"volumes/v.tar","size":1}]}"#;
        let mut m = Metadata::parse(json.as_bytes(), Path::new("m.json")).unwrap();
        m.installation = installation;
        m
    }

    #[test]
    fn files_go_where_this_layout_keeps_them() {
        let ctx = ctx();
        // leger's own backups record nothing: a leger deployment.
        let roots = roots_for(&ctx, &metadata(None));
        assert_eq!(
            roots.active.as_deref(),
            Some(Path::new("/h/.local/share/bluebuild-quadlets/active/web"))
        );
        assert_eq!(roots.installed, Path::new("/h/.config/containers/systemd"));
        // A plain Quadlet deployment recorded under another HOME.
        let plain = metadata(Some(Installation {
            active_dir: None,
            installed_root: "/old/home/.config/containers/systemd/web".into(),
            installed_from_active: false,
        }));
        let roots = roots_for(&ctx, &plain);
        assert_eq!(roots.active, None);
        assert_eq!(
            roots.installed,
            Path::new("/h/.config/containers/systemd/web")
        );
    }

    /// Only services the restored quadlet files produce are started, even
    /// when the metadata names others (defence in depth behind
    /// [`check_trusted`]).
    #[test]
    fn only_services_the_placed_files_produce_are_started() {
        let mut m = metadata(None);
        m.format_version = Some(crate::backup::metadata::FORMAT_VERSION);
        m.services = ["web.service", "sshd.service", "idle.service"]
            .iter()
            .map(|name| crate::backup::metadata::ServiceEntry {
                name: (*name).to_owned(),
                was_running: *name != "idle.service",
            })
            .collect();
        let files = [crate::quadlet::SourceFile {
            rel_path: "web.container".into(),
            origin: "/q/web.container".into(),
            text: "[Container]\nImage=busybox\n".to_owned(),
        }];
        let placed = crate::quadlet::resolve(&files, &[]).unwrap();
        assert_eq!(
            services_to_start(&m, Start::WasRunning, Some(&placed)),
            ["web.service"]
        );
        assert_eq!(
            services_to_start(&m, Start::All, Some(&placed)),
            ["web.service"]
        );
        assert!(services_to_start(&m, Start::Nothing, Some(&placed)).is_empty());
    }

    #[test]
    fn nothing_removes_every_volume_and_file() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = BackupStore::open(store_dir.path()).unwrap();
        let failed = metadata(None);
        let nothing = Target::nothing(&store, &failed);
        assert!(nothing.entries.is_empty());
        assert!(nothing.metadata().services.is_empty());
        assert!(!nothing.metadata().is_legacy());
        assert!(nothing
            .metadata()
            .volumes
            .iter()
            .all(|v| !v.existed && v.archive_path.is_none()));
    }
}

#[cfg(test)]
#[path = "restore_rollback_tests.rs"]
mod rollback_tests;
