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
