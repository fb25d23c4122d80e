//! Steps 5-7: put a state back (a backup, or on rollback the safety
//! backup) and start its services.

use super::*;

/// Steps 5-7: put `target` back and start its services. The same code
/// restores a backup and rolls back to the safety backup. Each step is
/// recorded in `journal` first. `interruptible`: a signal stops it at the
/// next safe point (a restore); otherwise it goes on (a rollback).
pub(super) fn put_back(
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
    stop_what_runs(ctx, m, current.as_ref(), progress)?;
    check()?;
    put_files_back(ctx, target, current.as_ref(), progress, journal)?;
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
    put_host_paths_back(ctx, target, progress, journal, interruptible)?;
    if interruptible {
        fault::point("restore:before-start");
    }
    check()?;

    // 7. Start and wait.
    let to_start = services_to_start(m, start, placed.as_ref(), progress);
    if !to_start.is_empty() {
        journal.step(Step::StartingRestored)?;
        progress.step(format!("starting {}", to_start.join(", ")));
        ctx.systemctl.start(&to_start)?;
        ctx.systemctl
            .wait_active(&to_start, ctx.config.backup.start_timeout.value.duration())?;
    }
    Ok(to_start)
}

/// Stop whatever of the deployment runs (on a rollback: what the failed
/// attempt started): the services `m` records, those mounting its volumes,
/// and those of the deployment installed now.
fn stop_what_runs(
    ctx: &Context,
    m: &Metadata,
    current: Option<&Deployment>,
    progress: &Progress,
) -> Result<()> {
    let mut units: BTreeSet<String> = m.services.iter().map(|s| s.name.clone()).collect();
    for volume in &m.volumes {
        units.extend(volume.used_by.iter().cloned());
    }
    for host in &m.host_paths {
        units.extend(host.used_by.iter().cloned());
    }
    if let Some(resolution) = current.and_then(|d| d.resolve(&ctx.layout).ok()) {
        units.extend(resolution.units.iter().map(|u| u.service.clone()));
    }
    let units: Vec<String> = units.into_iter().collect();
    let running: Vec<String> = services::running_services(&*ctx.systemctl, &units)?
        .into_iter()
        .collect();
    if !running.is_empty() {
        progress.step(format!("stopping {}", running.join(", ")));
        ctx.systemctl.stop(&running)?;
    }
    Ok(())
}

/// Step 5: the files, exactly (those of the deployment installed now that
/// `target` lacks are removed); then let the generator see them.
fn put_files_back(
    ctx: &Context,
    target: &Target,
    current: Option<&Deployment>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<()> {
    let m = target.metadata();
    let roots = roots_for(ctx, m);
    if let Some(installation) = &m.installation {
        let recorded = Roots {
            active: installation.active_dir.clone(),
            installed: installation.installed_root.clone(),
        };
        if recorded != roots {
            progress.step(format!(
                "files go to {} (recorded at backup time: {})",
                describe_roots(&roots),
                describe_roots(&recorded)
            ));
        }
    }
    let current_files = match current {
        Some(d) => files::current_files(d)?,
        None => Vec::new(),
    };
    let plan =
        files::plan_restore(&target.entries, &roots, &current_files)?.with_dirs(&m.dirs, &roots)?;
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
    if let Some(d) = current {
        own_roots.extend(d.active_dir.iter().cloned());
        if !d.installed_from_active {
            own_roots.push(d.installed_root.clone());
        }
    }
    files::remove_empty_roots(&own_roots);
    ctx.systemctl.daemon_reload()?;
    Ok(())
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
pub(super) fn services_to_start(
    m: &Metadata,
    start: Start,
    placed: Option<&Resolution>,
    progress: &Progress,
) -> Vec<String> {
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
        progress.warn(format!(
            "not starting {}: the restored quadlet files do not produce them",
            skipped.join(", ")
        ));
    }
    start
}

/// Step 6 for one volume: remove it, recreate it the way it was made,
/// import the archive, restore the root's mode and owner.
pub(super) fn restore_volume(
    ctx: &Context,
    target: &Target,
    volume: &VolumeEntry,
    volume_service: Option<&String>,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    create::check_volume_name(&volume.name)?;
    let name = &volume.name;
    // A safety backup's volume moved aside: put back only if its data did
    // leave the volume (a restore killed before the move, or a rollback
    // done before, leaves it there).
    let aside = match (volume.held_aside, target.aside.get(name)) {
        (false, _) => None,
        (true, Some(dest)) if aside::is_held(name, dest)? => Some(dest),
        (true, Some(_)) => {
            progress.step(format!("volume {name}: its data never left it"));
            return Ok(());
        }
        (true, None) => {
            return Err(Error::user(format!(
                "backup {} does not hold volume {name}'s data: a restore moved it aside",
                target.metadata().id
            ))
            .with_hint(recover_hint(ctx.layout.scope, "puts it back")))
        }
    };
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
    let info = recreate_volume(ctx, volume, live, volume_service, progress)?;
    if let Some(dest) = aside {
        aside::put_aside_back(ctx, name, dest, &info.mountpoint)?;
        progress.step(format!("volume {name}: its data moved back"));
        return Ok(());
    }
    if volume.tree.is_some() {
        restore_volume_tree(ctx, target, volume, &info.mountpoint, progress)?;
    } else {
        import_volume_archive(ctx, target, volume, progress, interruptible)?;
    }
    match volume.root {
        Some(root) => ctx.podman.set_root_ownership(&info.mountpoint, root)?,
        None => progress.warn(format!(
            "the backup does not record the mode and owner of volume {name}'s root; left as podman made it"
        )),
    }
    Ok(())
}

/// Recreate the volume of `volume` (removed before): through its
/// `.volume`'s service (driver, options and labels from the file, as
/// Quadlet makes it); else with the recorded labels and the driver and
/// options the volume had on this machine (`live`: the user made it so), or
/// none (local) when it did not exist. The backup's recorded driver and
/// options are never used. Returns it as podman shows it now.
fn recreate_volume(
    ctx: &Context,
    volume: &VolumeEntry,
    live: Option<VolumeInfo>,
    volume_service: Option<&String>,
    progress: &Progress,
) -> Result<VolumeInfo> {
    // Recreate: through the .volume's service (driver, options and labels
    // from the file, as Quadlet makes it); else with the recorded labels and
    // the driver and options the volume had on this machine (the user made
    // it so), or none (local) when it did not exist. The backup's recorded
    // driver and options are never used.
    let mut info = None;
    if let Some(service) = volume_service {
        if ctx.systemctl.is_loaded(service)? {
            ctx.systemctl.restart(service)?;
            info = ctx.podman.volume_inspect(&volume.name)?;
        }
        if info.is_none() {
            progress.step(format!(
                "{service} did not create volume {}; creating it with `podman volume create`",
                volume.name
            ));
        }
    }
    match info {
        Some(info) => Ok(info),
        None => {
            let name = &volume.name;
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
            })
        }
    }
}

/// Import the archive `target` holds for `volume` into the (empty) volume.
fn import_volume_archive(
    ctx: &Context,
    target: &Target,
    volume: &VolumeEntry,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    let name = &volume.name;
    let sink = Sink {
        program: ctx.podman.volume_import(name)?,
        what: format!("podman volume import {name}"),
        label: name.clone(),
        root_header: true,
    };
    let recorded = Recorded {
        what: format!("volume {name}"),
        rel: volume.archive_path.as_deref(),
        sha256: volume.sha256.as_deref(),
        uncompressed_size: volume.uncompressed_size,
        specials: &volume.special_files,
    };
    import_recorded(target, &recorded, sink, progress, interruptible)
}

/// What a backup's metadata records of one archive to stream back.
pub(super) struct Recorded<'a> {
    /// Whose it is (`volume db`, `host path /srv/x`), for messages.
    pub(super) what: String,
    /// The archive, relative to the backup (untrusted: resolved inside it).
    pub(super) rel: Option<&'a Path>,
    /// Its checksum.
    pub(super) sha256: Option<&'a str>,
    /// Bytes of its tar.
    pub(super) uncompressed_size: u64,
    /// The device nodes and FIFOs it may hold.
    pub(super) specials: &'a [String],
}

/// Stream the archive `recorded` names, of the backup of `target`, into
/// `sink`: one path for volumes and host paths.
pub(super) fn import_recorded(
    target: &Target,
    recorded: &Recorded<'_>,
    sink: Sink,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    let no_archive = || {
        Error::user(format!(
            "the backup records {} but holds no archive for it",
            recorded.what
        ))
    };
    let rel = recorded.rel.ok_or_else(no_archive)?;
    let path = target.backup.resolve(rel)?;
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
        sha256: recorded.sha256,
        limit: archive::decompressed_limit(recorded.uncompressed_size, size),
        specials: recorded.specials,
    };
    import_archive(sink, &path, compression, expected, progress, interruptible)
}

/// Write the archive `rel` of `backup` (recorded with `sha256`,
/// `uncompressed_size` and `specials`) into `dest` with our tree writer
/// inside the user namespace, exactly: into the empty directory `dest`, or
/// as the new file `dest` when `file`. The archive goes through the same
/// checks as a restore's. What `sync` does to turn a local backup's
/// archives into a repository's trees.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unpack_archive(
    ctx: &Context,
    backup: &StoredBackup,
    rel: &Path,
    sha256: Option<&str>,
    uncompressed_size: u64,
    specials: &[String],
    dest: &str,
    file: bool,
    progress: &Progress,
) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find leger-backup's own binary: {e}")))?;
    let sink = Sink {
        program: ctx.podman.tree_write(&exe, dest, file)?,
        what: format!("leger-backup tree-write {dest}"),
        label: rel.display().to_string(),
        root_header: false,
    };
    let recorded = Recorded {
        what: rel.display().to_string(),
        rel: Some(rel),
        sha256,
        uncompressed_size,
        specials,
    };
    import_recorded(
        &Target::of(backup.clone())?,
        &recorded,
        sink,
        progress,
        true,
    )
}
