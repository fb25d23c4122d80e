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
            let scope = ctx.layout.scope;
            rollback_failed_error(scope, journal.record(), &failed_id, safety, &cause, &second)
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
    scope: Scope,
    record: &Record,
    failed_id: &str,
    safety: Option<&str>,
    cause: &Error,
    second: &Error,
) -> Error {
    let held_in = (!record.aside().is_empty()).then(|| aside_dirs(record));
    let manual = rollback_failed_hint(scope, held_in.as_deref(), failed_id, safety);
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

/// What to do by hand when a rollback failed, in `scope`'s commands.
/// `held_in`: where the volumes' previous data is held, if a restore moved
/// it aside.
fn rollback_failed_hint(
    scope: Scope,
    held_in: Option<&str>,
    failed_id: &str,
    safety: Option<&str>,
) -> String {
    let recover = scope.command("recover");
    let retry = scope.command(&format!("restore {failed_id}"));
    match (safety, held_in) {
        (Some(_), Some(dirs)) => format!(
            "every backup is kept, and the previous data of the volumes is held in {dirs}. \
             Fix the cause, then `{recover}` tries the rollback again (another \
             restore is refused until then: it would lose track of that data)"
        ),
        (Some(id), None) => format!(
            "every backup is kept. `{recover}` tries the rollback again; or see \
             `{}`, then put the previous state back with \
             `{}` (or retry `{retry}`)",
            scope.command("list"),
            scope.command(&format!("restore {id}"))
        ),
        (None, _) => format!(
            "every backup is kept. Nothing existed before the restore: `{recover}` \
             tries again to remove what it put in place; or remove the deployment's files and \
             volumes by hand, or retry `{retry}`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_out_of_a_failed_rollback_is_in_the_restores_scope() {
        let user = rollback_failed_hint(Scope::User, None, "web-2", Some("web-1"));
        assert!(
            user.contains("`leger-backup recover`")
                && user.contains("`leger-backup restore web-1`")
                && user.contains("`leger-backup restore web-2`"),
            "{user}"
        );
        for hint in [
            rollback_failed_hint(Scope::System, Some("/var/lib/x"), "db-2", Some("db-1")),
            rollback_failed_hint(Scope::System, None, "db-2", Some("db-1")),
            rollback_failed_hint(Scope::System, None, "db-2", None),
        ] {
            assert!(hint.contains("`leger-backup --system recover`"), "{hint}");
            assert_eq!(
                hint.matches("`leger-backup ").count(),
                hint.matches("`leger-backup --system ").count(),
                "{hint}"
            );
        }
    }
}
