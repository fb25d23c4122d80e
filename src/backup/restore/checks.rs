//! What a restore checks before it changes anything: the backup verified,
//! its metadata trusted, nothing of another deployment in its way.

use super::*;

/// Step 1: every checksum and every archive, before anything live changes.
pub(super) fn verify_backup(backup: &StoredBackup, progress: &Progress) -> Result<()> {
    let report = verify::verify(backup)?;
    for warning in &report.warnings {
        progress.warn(format!("backup {}: {warning}", backup.metadata.id));
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
pub(super) fn check_trusted(
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
pub(super) fn check_volumes_outside_storage(
    name: &str,
    volumes: &[String],
    force: bool,
    progress: &Progress,
) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    if force {
        for v in volumes {
            progress.warn(format!(
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
pub(super) fn safety_subject(
    ctx: &Context,
    metadata: &Metadata,
    current: Option<&Deployment>,
    in_the_way: &[DeploymentFile],
    progress: &Progress,
) -> Result<Subject> {
    let mut subject = match current {
        Some(d) => match Subject::of_deployment(ctx, d) {
            Ok(s) => s,
            Err(e) => {
                progress.warn(format!(
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
                    host_paths: Vec::new(),
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
                host_paths: Vec::new(),
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
    subject.host_paths = safety_specs(metadata, &subject.host_paths);
    let mut services: BTreeSet<String> = subject.services.iter().cloned().collect();
    services.extend(metadata.services.iter().map(|s| s.name.clone()));
    subject.services = services.into_iter().collect();
    Ok(subject)
}

/// Step 3: refuse when a container that is not one of the deployment's
/// (by its `PODMAN_SYSTEMD_UNIT` label) uses a volume to be replaced.
pub(super) fn check_not_in_use(
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
/// Returns the files of no deployment to keep, and whether `force` let
/// the restore replace data other deployments use (then it keeps a full
/// safety backup). Reads files only.
pub(super) fn check_in_the_way(
    ctx: &Context,
    target: &Target,
    force: bool,
    progress: &Progress,
) -> Result<(Vec<DeploymentFile>, bool)> {
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
    let mut shared = shared_volumes(ctx, target, &deployments, progress);
    shared.extend(shared_host_paths(ctx, target, &deployments, progress));
    if force {
        for line in shared.iter().cloned().chain(
            unowned
                .iter()
                .map(|f| format!("{} belongs to no deployment", f.path.display())),
        ) {
            progress.warn(format!("--force: {line}; replacing it anyway"));
        }
        return Ok((unowned, !shared.is_empty()));
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
            "refusing to restore {name}: it would replace data other deployments use: {}",
            shared.join("; ")
        ))
        .with_hint(
            "the restore would change those deployments' data too; pass --force to replace it \
             anyway (the safety backup keeps its current contents)",
        ));
    }
    Ok((unowned, false))
}

/// The files `target` would write that exist already and are not its
/// deployment's: those of other deployments (`"PATH (deployment D)"`) and
/// those of none.
pub(super) fn files_in_the_way(
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
pub(super) fn shared_volumes(
    ctx: &Context,
    target: &Target,
    deployments: &[Deployment],
    progress: &Progress,
) -> Vec<String> {
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
            Err(e) => progress.warn(format!(
                "deployment {} cannot be resolved ({e}); whether it uses the volumes of {} is not known",
                other.name, m.deployment_name
            )),
        }
    }
    shared
}
