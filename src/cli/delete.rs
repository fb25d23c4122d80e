//! `delete`: remove one backup (valid or not), after confirmation.

use super::args::DeleteArgs;
use super::list::{open_store, type_name};
use super::GlobalArgs;
use crate::backup::journal::backups_in_use;
use crate::backup::store::validate_id;
use crate::error::{Error, Result};
use crate::repository::catalog::check_not_in_use;
use crate::ui;

/// Run `delete`.
pub fn run(global: &GlobalArgs, args: DeleteArgs) -> Result<()> {
    // Before anything touches the disk.
    validate_id(&args.id)?;
    if let Some(repo) = &args.repo {
        return super::repo::delete(global, repo, &args);
    }
    let (ctx, store) = open_store(global)?;
    if !store.exists(&args.id)? {
        return Err(Error::user(format!(
            "no backup {} in {}",
            args.id,
            store.dir().display()
        ))
        .with_hint(format!(
            "`{}` shows the backups",
            ctx.layout.scope.command("list")
        )));
    }
    let in_use = backups_in_use(&ctx.layout.state_dir);
    check_not_in_use(&args.id, &in_use, ctx.layout.scope)?;
    if !args.yes {
        let what = match store.load(&args.id) {
            Ok(b) => format!(
                "{} ({}, {}, {}, {})",
                args.id,
                b.metadata.deployment_name,
                b.metadata.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                type_name(b.metadata.backup_type),
                ui::human_size(b.metadata.size)
            ),
            Err(_) => format!("{} (invalid)", args.id),
        };
        if !ui::confirm(&format!("Delete backup {what}?"), "--yes")? {
            ui::note("nothing deleted");
            return Ok(());
        }
    }
    store.delete(&args.id)?;
    if global.json {
        return ui::print_json(&serde_json::json!({ "deleted": [args.id] }));
    }
    ui::note(format!("deleted {}", args.id));
    Ok(())
}
