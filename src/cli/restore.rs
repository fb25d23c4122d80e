//! `restore`: put a deployment back as a backup recorded it.

use super::args::RestoreArgs;
use super::GlobalArgs;
use crate::backup::interrupted;
use crate::backup::progress::Terminal;
use crate::backup::restore::{self, RestoreOptions};
use crate::backup::store::{validate_id, BackupStore};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ui;

/// Run `restore`; on success say how to undo it.
pub fn run(global: &GlobalArgs, args: RestoreArgs) -> Result<()> {
    // Checked before any file system access.
    validate_id(&args.id)?;
    let ctx = Context::load(global.scope())?;
    interrupted::startup(&ctx, interrupted::Mode::Command);
    let store = BackupStore::open(ctx.backup_dir())?;
    let opts = RestoreOptions {
        no_start: args.no_start,
        force: args.force,
    };
    let progress = Terminal::new(true);
    let plan = match &args.from {
        None => restore::prepare(&ctx, &store, &args.id, &opts, &progress)?,
        Some(name) if name == crate::repository::LOCAL => {
            restore::prepare(&ctx, &store, &args.id, &opts, &progress)?
        }
        Some(name) => {
            let repo = crate::repository::open(&ctx, name)?.into();
            restore::prepare_from(&ctx, &store, repo, &args.id, &opts, &progress)?
        }
    };
    for line in &plan.lines {
        ui::note(line);
    }
    if !args.yes && !ui::confirm(&plan.question, "--yes")? {
        return Err(Error::user("restore cancelled; nothing was changed"));
    }
    let outcome = restore::execute(&ctx, &store, plan, &opts, &progress)?;
    if global.json {
        ui::print_json(&outcome)?;
    }
    ui::note(format!(
        "restored {} from {}",
        outcome.deployment, outcome.id
    ));
    if let Some(safety) = &outcome.safety_backup {
        let undo = ctx.layout.scope.command(&format!("restore {safety}"));
        ui::note(format!("undo with: {undo}"));
    }
    Ok(())
}
