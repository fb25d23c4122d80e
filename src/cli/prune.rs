//! `prune`: keep the newest backups per deployment and class, delete the
//! rest; invalid backups are listed, never deleted automatically.

use super::args::PruneArgs;
use super::list::open_store;
use super::GlobalArgs;
use crate::backup::journal::backups_in_use;
use crate::backup::prune::{prune, Keep, PruneOutcome};
use crate::error::Result;
use crate::ui;

/// Run `prune`.
pub fn run(global: &GlobalArgs, args: PruneArgs) -> Result<()> {
    if let Some(d) = &args.deployment {
        crate::deployment::validate_name(d)?;
    }
    if let Some(repo) = &args.repo {
        return super::repo::prune(global, repo, &args);
    }
    let (ctx, store) = open_store(global)?;
    if !args.dry_run {
        for notice in store.clean_leftovers()? {
            ui::note(notice);
        }
    }
    let configured = Keep::configured(&ctx.config.backup);
    let keep = Keep {
        manual: args.keep_manual.unwrap_or(configured.manual),
        before_change: args.keep_before_change.unwrap_or(configured.before_change),
        automatic: args.keep_automatic.unwrap_or(configured.automatic),
        scheduled: configured.scheduled,
    };
    let in_use = backups_in_use(&ctx.layout.state_dir);
    let outcome = prune(
        &store,
        args.deployment.as_deref(),
        &keep,
        &in_use,
        args.dry_run,
    )?;
    report(global, &outcome, &keep)
}

/// Print what prune did (or would do), as text or `--json`.
pub(super) fn report(global: &GlobalArgs, outcome: &PruneOutcome, keep: &Keep) -> Result<()> {
    if global.json {
        return ui::print_json(outcome);
    }
    let verb = if outcome.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut text = String::new();
    for id in &outcome.deleted {
        text.push_str(&format!("{verb} {id}\n"));
    }
    for held in &outcome.held {
        text.push_str(&format!("kept {} ({})\n", held.id, held.why));
    }
    for id in &outcome.protected {
        text.push_str(&format!(
            "kept {id} (the newest good backup of its deployment is never pruned)\n"
        ));
    }
    for invalid in &outcome.invalid {
        text.push_str(&format!(
            "kept invalid {} (not pruned automatically: {})\n",
            invalid.id, invalid.error
        ));
    }
    ui::print_text(&text)?;
    ui::note(format!(
        "{} {}, kept {} (keeping {keep} per deployment)",
        verb,
        outcome.deleted.len(),
        outcome.kept.len()
    ));
    if !outcome.invalid.is_empty() {
        ui::warn(format!(
            "{} invalid backup(s) left alone: inspect them and remove them with `{}`",
            outcome.invalid.len(),
            global.scope().command("delete <ID>")
        ));
    }
    Ok(())
}
