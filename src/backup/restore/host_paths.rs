//! The host paths of a backup (bind-mounted directories, files a unit
//! refers to) put back exactly: what was there is removed as a whole (the
//! safety backup holds it), the path is made again with its recorded mode
//! and owner, and the archive is written into it by our own `tree-write`
//! inside the user namespace (numeric owners as the container sees them).
//!
//! A backup's metadata is untrusted and these are absolute paths, so three
//! checks stand between a backup and the host:
//! - before anything changes ([`check_host_paths`]): no entry is a path the
//!   system owns (`/etc/localtime`, `/usr`...), judged here and now;
//! - a path another deployment's units use is refused unless `--force`
//!   ([`shared_host_paths`]), like a shared volume;
//! - during a restore, a path is written only once the files just put
//!   back show a unit that uses it ([`put_host_paths_back`]); an entry no
//!   unit uses is left alone, with a warning. The files' own env files may
//!   be host paths of the backup, so the units are resolved again after
//!   each round of writes.
//!
//! The safety copy is the safety backup itself ([`safety_specs`]): every
//! host path the backup restores is archived first, or recorded absent, so
//! a rollback removes what the restore wrote.

use super::*;
use crate::backup::create::HostPathSpec;
use crate::backup::metadata::{HostPathEntry, HostPathKind};
use crate::host_paths::classify::{self, FileKind, Kind};
use crate::host_paths::policy::Policy;
use crate::quadlet::HostRefKind;

/// Refuse a backup naming a host path a backup of its deployment would
/// not take here and now: the system's (`/etc/localtime`, `/usr`...), one
/// inside or holding leger-backup's own directories (the backups, the
/// journal) or the user's own setup (`~/.ssh`), or one outside the usual
/// places of data that no `include:` glob names. Returns the paths an
/// `exclude:` glob (or `bind_mounts: none`) leaves out now: the restore
/// leaves them as they are.
pub(super) fn check_host_paths(ctx: &Context, metadata: &Metadata) -> Result<Vec<String>> {
    let mut excluded = Vec::new();
    for entry in &metadata.host_paths {
        let file = entry.kind == Some(HostPathKind::File);
        let (kind, reason) = judge(ctx, &metadata.deployment_name, Path::new(&entry.path), file)?;
        match kind {
            Kind::System | Kind::NeedsInclude | Kind::Unresolved => {
                return Err(Error::user(format!(
                    "backup {} would write the host path {}, which a backup of {} does not \
                     take: {reason}",
                    metadata.id, entry.path, metadata.deployment_name
                ))
                .with_hint(
                    "a backup names only paths its deployment's units use; if you trust this \
                     one, add the path to an include: glob of the deployment in the config file \
                     (a path holding leger-backup's own data is restored by hand only)",
                ))
            }
            Kind::Excluded => excluded.push(entry.path.clone()),
            Kind::Data | Kind::Referenced => {}
        }
    }
    Ok(excluded)
}

/// The decision a backup of `deployment` makes on `path` here and now.
fn judge(ctx: &Context, deployment: &str, path: &Path, file: bool) -> Result<(Kind, String)> {
    let scope = ctx.layout.scope;
    let mut place = crate::host_paths::Context::current(scope, Vec::new()).place;
    place
        .own_dirs
        .extend(crate::host_paths::own_dirs(scope, &ctx.config.backup));
    // Replacing a path holding them would remove the backups themselves.
    if let Some(own) = place.own_dirs.iter().find(|d| d.starts_with(path)) {
        let why = format!(
            "it holds {}, leger-backup's or the user's own",
            own.display()
        );
        return Ok((Kind::System, why));
    }
    let policy = Policy::new(&ctx.config.backup, deployment, &place.home)?;
    let kind = if file { FileKind::File } else { FileKind::Dir };
    let (kind, reason) = classify::classify(path, kind, HostRefKind::Mount, &place);
    Ok(policy.apply(kind, reason, path, file))
}

/// Refuse to write `path` when a directory on the way to it is a symlink
/// to a place a backup of `deployment` would not take (the checks before
/// the restore judged the path's text; an archive restored since, a
/// volume's say, may have made a symlink of one of its parents).
fn check_real_path(ctx: &Context, deployment: &str, path: &Path, file: bool) -> Result<()> {
    let Some(existing) = path
        .ancestors()
        .skip(1)
        .find(|a| std::fs::symlink_metadata(a).is_ok())
    else {
        return Ok(());
    };
    let real = fs_err::canonicalize(existing)?;
    if real == existing {
        return Ok(());
    }
    let rest = path.strip_prefix(existing).unwrap_or(path);
    let real_path = real.join(rest);
    let (kind, reason) = judge(ctx, deployment, &real_path, file)?;
    if matches!(kind, Kind::Data | Kind::Referenced) {
        return Ok(());
    }
    Err(Error::user(format!(
        "host path {} leads through the symlink {} to {}, which a backup of {deployment} does \
         not take: {reason}",
        path.display(),
        existing.display(),
        real_path.display()
    ))
    .with_hint("nothing was written there; remove the symlink, or restore that path by hand"))
}

/// The host paths `target` writes that another deployment's units use
/// (the same path, or one inside the other), as `"host path P is used by
/// deployment D"`. A deployment whose files do not resolve cannot be
/// checked: said, not guessed.
pub(super) fn shared_host_paths(
    ctx: &Context,
    target: &Target,
    deployments: &[Deployment],
    progress: &Progress,
) -> Vec<String> {
    let m = target.metadata();
    if m.host_paths.is_empty() {
        return Vec::new();
    }
    let mut shared = Vec::new();
    for other in deployments.iter().filter(|d| d.name != m.deployment_name) {
        let used = match resolved_paths(ctx, other) {
            Ok(used) => used,
            Err(e) => {
                progress.warn(format!(
                    "deployment {} cannot be resolved ({e}); whether it uses the host paths of {} \
                     is not known",
                    other.name, m.deployment_name
                ));
                continue;
            }
        };
        for entry in &m.host_paths {
            let mine = Path::new(&entry.path);
            if used
                .iter()
                .any(|p| mine.starts_with(p) || Path::new(p).starts_with(mine))
            {
                shared.push(format!(
                    "host path {} is used by deployment {}",
                    entry.path, other.name
                ));
            }
        }
    }
    shared
}

/// The resolved host paths of `deployment`'s units, whatever the decision
/// on each (an excluded path is still that deployment's).
fn resolved_paths(ctx: &Context, deployment: &Deployment) -> Result<BTreeSet<String>> {
    let resolution = deployment.resolve(&ctx.layout)?;
    let (_, paths) = crate::host_paths::of_deployment(
        ctx.layout.scope,
        deployment,
        &resolution,
        &ctx.config.backup,
    )?;
    Ok(paths
        .into_iter()
        .filter(|h| !matches!(h.kind, Kind::System | Kind::Unresolved))
        .filter_map(|h| h.resolved)
        .collect())
}

/// What the safety backup of a restore of `metadata` archives besides the
/// current deployment's own host paths: every host path the restore
/// writes (archived when it exists, recorded absent otherwise).
pub(super) fn safety_specs(metadata: &Metadata, current: &[HostPathSpec]) -> Vec<HostPathSpec> {
    let mut specs: Vec<HostPathSpec> = current.to_vec();
    for entry in &metadata.host_paths {
        let inside = |spec: &HostPathSpec| Path::new(&entry.path).starts_with(&spec.path);
        if !specs.iter().any(inside) {
            specs.push(HostPathSpec {
                path: entry.path.clone(),
                source: entry.source.clone(),
                used_by: entry.used_by.clone(),
            });
        }
    }
    // A path of the backup holding a path of the current deployment: the
    // outer one is read, with both users.
    let mut outer: Vec<HostPathSpec> = Vec::new();
    specs.sort_by(|a, b| a.path.cmp(&b.path));
    for spec in specs {
        match outer
            .iter_mut()
            .find(|o| Path::new(&spec.path).starts_with(&o.path))
        {
            Some(o) => o.used_by.extend(spec.used_by),
            None => outer.push(spec),
        }
    }
    for spec in &mut outer {
        spec.used_by.sort();
        spec.used_by.dedup();
    }
    outer
}

/// Put every host path of `target` back. A restore (`interruptible`)
/// writes a path only once the deployment's files, just put back, use it;
/// a rollback puts back its own safety backup's paths as they are.
pub(super) fn put_host_paths_back(
    ctx: &Context,
    target: &Target,
    progress: &Progress,
    journal: &mut Journal,
    interruptible: bool,
) -> Result<()> {
    let m = target.metadata();
    let mut pending: Vec<&HostPathEntry> = m.host_paths.iter().collect();
    while !pending.is_empty() {
        let used = if interruptible {
            placed_paths(ctx, &m.deployment_name)?
        } else {
            pending.iter().map(|e| e.path.clone()).collect()
        };
        let (now, later): (Vec<&HostPathEntry>, Vec<&HostPathEntry>) =
            pending.into_iter().partition(|e| used.contains(&e.path));
        if now.is_empty() {
            for entry in later {
                progress.warn(format!(
                    "host path {} not restored: the restored units do not use it",
                    entry.path
                ));
            }
            return Ok(());
        }
        for entry in now {
            if interruptible {
                interrupt::check()?;
            }
            journal.step(Step::ReplacingHostPath {
                path: entry.path.clone(),
            })?;
            put_host_path_back(ctx, target, entry, progress, interruptible)
                .map_err(|e| e.context(format!("host path {}", entry.path)))?;
        }
        pending = later;
    }
    Ok(())
}

/// The resolved host paths of the deployment `name` as its files are now.
fn placed_paths(ctx: &Context, name: &str) -> Result<BTreeSet<String>> {
    match current_deployment(ctx, name)? {
        Some(d) => resolved_paths(ctx, &d),
        None => Ok(BTreeSet::new()),
    }
}

/// One host path: remove what is there, then (when it existed at backup
/// time) make it again with its recorded mode and owner and write the
/// archive into it.
fn put_host_path_back(
    ctx: &Context,
    target: &Target,
    entry: &HostPathEntry,
    progress: &Progress,
    interruptible: bool,
) -> Result<()> {
    let path = entry.path.as_str();
    let file = entry.kind == Some(HostPathKind::File);
    check_real_path(
        ctx,
        &target.metadata().deployment_name,
        Path::new(path),
        file,
    )?;
    if std::fs::symlink_metadata(path).is_ok() {
        ctx.podman.remove_tree(path)?;
    }
    if interruptible {
        fault::point("restore:during-host-path");
    }
    if !entry.existed {
        progress.step(format!(
            "host path {path} did not exist at backup time: left absent"
        ));
        return Ok(());
    }
    let (Some(_), Some(root)) = (entry.kind, entry.root) else {
        return Err(Error::user(format!(
            "backup {} records host path {path} without its kind, mode and owner",
            target.metadata().id
        ))
        .with_hint("the backup is damaged; restore another one"));
    };
    if let Some(parent) = Path::new(path).parent() {
        fs_err::create_dir_all(parent)?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find leger-backup's own binary: {e}")))?;
    if !file {
        fs_err::create_dir(path)?;
        ctx.podman.set_root_ownership(path, root)?;
    }
    if entry.tree.is_some() {
        return restore_host_path_tree(ctx, target, entry, file, progress);
    }
    let sink = Sink {
        program: ctx.podman.tree_write(&exe, path, file)?,
        what: format!("leger-backup tree-write {path}"),
        label: path.to_owned(),
        root_header: false,
    };
    let recorded = Recorded {
        what: format!("host path {path}"),
        rel: entry.archive_path.as_deref(),
        sha256: entry.sha256.as_deref(),
        uncompressed_size: entry.uncompressed_size,
        specials: &entry.special_files,
    };
    // A file's owner and mode come with its entry (a chown after it would
    // drop its file capabilities).
    import_recorded(target, &recorded, sink, progress, interruptible)
}

/// The plan's lines for the host paths `m` writes.
pub(super) fn host_path_lines(m: &Metadata) -> Vec<String> {
    m.host_paths
        .iter()
        .map(|entry| {
            let now = std::fs::symlink_metadata(&entry.path).is_ok();
            let size = match entry.tree {
                Some(_) => "its tree".to_owned(),
                None => ui::human_size(entry.uncompressed_size),
            };
            let what = match (entry.existed, now) {
                (true, true) => format!("{size} from the backup, replacing what is there"),
                (true, false) => format!("{size} from the backup"),
                (false, true) => "did not exist at backup time: removed".to_owned(),
                (false, false) => "did not exist at backup time: stays absent".to_owned(),
            };
            format!("  host path {}: {what}", entry.path)
        })
        .collect()
}
