//! Step 4: keep the state before the restore — volumes in Podman's
//! storage moved aside (see [`super::aside`]), the rest in a safety
//! backup — and drop what was kept once the restore succeeded.

use super::*;

/// How the state before the restore is kept (step 4).
pub(super) struct Kept {
    /// The safety backup, when anything of the deployment existed.
    pub(super) safety: Option<String>,
    /// The volumes whose data is moved aside instead of archived, and where.
    pub(super) held: BTreeMap<String, PathBuf>,
    /// The deployment's volumes as inspected before.
    pub(super) inspected: Vec<(String, Option<VolumeInfo>)>,
}

/// Step 4: keep the current state, with the services stopped: volumes in
/// Podman's storage are to be moved aside (a rename), the rest goes into a
/// safety backup. Ends with the last check for a signal: until then
/// nothing was replaced.
#[allow(clippy::too_many_arguments)]
pub(super) fn keep_current_state(
    ctx: &Context,
    store: &BackupStore,
    plan: &RestorePlan,
    existed: bool,
    subject: &Subject,
    running: &BTreeSet<String>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<Kept> {
    let id = plan.target.metadata().id.as_str();
    let inspected = create::in_parallel(&subject.volumes, |volume| {
        Ok((
            volume.name.clone(),
            ctx.podman.volume_inspect(&volume.name)?,
        ))
    })?;
    let any_volume = inspected.iter().any(|(_, info)| info.is_some());
    // Data at a host path of the backup outside any installed deployment
    // (left by a removed one, say) is replaced too: it is kept as well.
    let any_host_path = subject
        .host_paths
        .iter()
        .any(|h| std::fs::symlink_metadata(&h.path).is_ok());
    // Files of no deployment that `--force` replaces are kept in a safety
    // backup that stays (the printed undo): then it holds the volumes too.
    let held = if plan.in_the_way.is_empty() && !plan.forced_shared {
        aside::plan(journal.record(), &inspected)
    } else {
        BTreeMap::new()
    };
    let safety = if existed || any_volume || any_host_path || !plan.in_the_way.is_empty() {
        Some(take_safety(
            ctx, store, id, subject, running, &held, progress, journal,
        )?)
    } else {
        journal.update_restore(|_, restore| restore.safety = Safety::NotNeeded)?;
        progress.step("nothing of the deployment exists: no safety backup needed");
        None
    };
    fault::point("restore:after-safety");
    // The last moment to stop without changing anything: the guard starts
    // the services again.
    interrupt::check().map_err(|e| {
        let e = nothing_changed(id, e);
        match &safety {
            // Without the data it would have moved aside it is of no use.
            Some(s) if !held.is_empty() => {
                let _ = store.delete(s);
                e
            }
            Some(s) => e.with_hint(format!(
                "the safety backup {s} of the current state is kept; restore {id} again when you are ready"
            )),
            None => e,
        }
    })?;
    Ok(Kept {
        safety,
        held,
        inspected,
    })
}

/// Step 4: the safety backup of the current state (the deployment's files,
/// the volumes that are not moved aside), with the services already
/// stopped. Returns its ID. A failure leaves everything as it was.
#[allow(clippy::too_many_arguments)]
pub(super) fn take_safety(
    ctx: &Context,
    store: &BackupStore,
    id: &str,
    subject: &Subject,
    running: &BTreeSet<String>,
    held: &BTreeMap<String, PathBuf>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<String> {
    let opts = CreateOptions {
        reason: "pre-restore".to_owned(),
        live: false,
        wait: Duration::ZERO,
        services_already_stopped: true,
        progress: true,
        stop_result: None,
        hold_aside: held.keys().cloned().collect(),
        destination: Default::default(),
    };
    journal.update_restore(|r, restore| {
        restore.safety = Safety::Taking { id: String::new() };
        r.step = Step::SafetyBackup;
    })?;
    let safety =
        create::create_locked(ctx, store, subject, &opts, Some(running), progress, journal)
            .map_err(|e| {
                let e = interrupt::explain(e);
                if e.kind == ErrorKind::Interrupted {
                    nothing_changed(id, e)
                } else {
                    e.context("the safety backup of the current state failed; nothing was restored")
                }
            })?;
    journal.update_restore(|r, restore| {
        restore.safety = Safety::Taken {
            id: safety.id.clone(),
        };
        r.writing = None;
        r.step = Step::SafetyTaken;
    })?;
    progress.step(format!("safety backup {} taken", safety.id));
    Ok(safety.id)
}

/// Move the data of the volumes in `held` aside (see [`aside`]); the
/// volumes are as `inspected` before the safety backup (the services using
/// them have been stopped since).
pub(super) fn move_aside(
    ctx: &Context,
    inspected: &[(String, Option<VolumeInfo>)],
    held: &BTreeMap<String, PathBuf>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<()> {
    for (volume, info) in inspected {
        let (Some(dest), Some(info)) = (held.get(volume), info) else {
            continue;
        };
        aside::move_aside(ctx, journal, volume, &info.mountpoint, dest)?;
    }
    if !held.is_empty() {
        progress.step(format!(
            "moved the data of {} aside",
            held.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    fault::point("restore:after-move-aside");
    Ok(())
}

/// After a successful restore (its services up) or rollback: drop the data
/// moved aside and the safety backup `safety`, which only held the rest.
/// The restore is done: a failure here is a warning, never its error.
pub(super) fn drop_held(
    ctx: &Context,
    store: &BackupStore,
    safety: &str,
    progress: &Progress,
    journal: &mut Journal,
) {
    let _ = journal.step(Step::DroppingAside);
    fault::point("restore:before-drop");
    if let Err(e) = aside::drop_all(ctx, journal.record()) {
        progress.warn(format!(
            "the previous data moved aside could not be removed ({e}); remove it by hand: {}",
            aside_dirs(journal.record())
        ));
    }
    match store.delete(safety) {
        Ok(()) => progress.step("dropped the previous state moved aside"),
        Err(e) => progress.warn(format!(
            "the safety backup {safety} could not be removed ({e}); `leger-backup delete {safety}`"
        )),
    }
}

/// The directories of a journal's data moved aside, for a message.
pub(super) fn aside_dirs(record: &Record) -> String {
    let dirs: BTreeSet<String> = record
        .aside()
        .values()
        .filter_map(|p| p.parent())
        .map(|p| p.display().to_string())
        .collect();
    dirs.into_iter().collect::<Vec<_>>().join(", ")
}
