//! Step 8: back to the state before a failed restore.

use super::*;

/// Step 8: put the safety backup back (or remove what the restore created
/// when nothing existed before), and build the error the user sees. A
/// rollback is never interrupted. When it fails too, `journal` records it
/// and the caller keeps the journal for `recover`.
pub(super) fn roll_back(
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
        progress.warn(format!(
            "restore of {failed_id} {}: rolling back to the state before it \
             (another signal does not stop this)",
            cause.message
        ));
    } else {
        progress.warn(format!("restore of {failed_id} failed: {cause}"));
    }
    // Best effort: the rollback matters more than its record.
    let _ = journal.update_restore(|_, r| r.rolling_back = Some(cause.message.clone()));
    let rollback = put_previous_state_back(ctx, store, failed, safety, progress, journal);
    match rollback {
        Ok(()) => rolled_back_error(store, &failed_id, safety, cause, interrupted),
        Err(second) => {
            let _ = journal.update_restore(|_, r| r.rollback_failed = Some(second.message.clone()));
            rollback_failed_error(journal.record(), &failed_id, safety, &cause, &second)
        }
    }
}

/// The state before the restore back: the safety backup (and the data it
/// moved aside, dropped with it afterwards), or nothing when nothing
/// existed.
fn put_previous_state_back(
    ctx: &Context,
    store: &BackupStore,
    failed: &Target,
    safety: Option<&str>,
    progress: &Progress,
    journal: &mut Journal,
) -> Result<()> {
    match safety {
        Some(id) => {
            progress.step(format!("rolling back to the safety backup {id}"));
            store
                .load(id)
                .and_then(|b| Target::of_safety(b, journal.record()))
                .and_then(|t| {
                    put_back(ctx, &t, Start::WasRunning, progress, journal, false)?;
                    if t.holds_aside() {
                        drop_held(ctx, store, id, progress, journal);
                    }
                    Ok(())
                })
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
            .map(drop)
        }
    }
}

/// The error of a restore that failed (`cause`) and was rolled back.
fn rolled_back_error(
    store: &BackupStore,
    failed_id: &str,
    safety: Option<&str>,
    cause: Error,
    interrupted: bool,
) -> Error {
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
    // A safety backup that held volumes aside is gone with them:
    // the live state is back, exactly.
    let kept = safety.filter(|id| store.exists(id).unwrap_or(false));
    if let Some(id) = kept {
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

/// The error of a restore that failed (`cause`) and whose rollback failed
/// too (`second`): what to do by hand.
fn rollback_failed_error(
    record: &Record,
    failed_id: &str,
    safety: Option<&str>,
    cause: &Error,
    second: &Error,
) -> Error {
    let held = !record.aside().is_empty();
    let manual = match safety {
        Some(_) if held => format!(
            "every backup is kept, and the previous data of the volumes is held in {}. \
             Fix the cause, then `leger-backup recover` tries the rollback again (another \
             restore is refused until then: it would lose track of that data)",
            aside_dirs(record)
        ),
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
