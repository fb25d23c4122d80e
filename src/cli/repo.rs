//! `repo init | check | list`: the restic repositories of `backup.repositories`;
//! and the `--repo` side of `list`, `info`, `delete` and `prune`. The
//! logic is in [`crate::repository::catalog`]; this only prints.
//!
//! None of these needs the backup directory: on a machine with nothing but
//! the config entry and its secrets, `list --repo` works.

use super::args::{DeleteArgs, PruneArgs, RepoCommand};
use super::list::{listed_json, type_name};
use super::GlobalArgs;
use crate::backup::journal::backups_in_use;
use crate::backup::store::Listed;
use crate::context::Context;
use crate::error::Result;
use crate::repository::catalog;
use crate::repository::{self, Repository};
use crate::ui;

/// Run a `repo` subcommand.
pub fn run(global: &GlobalArgs, command: RepoCommand) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    match command {
        RepoCommand::Init { name } => {
            repository::open(&ctx, &name)?.init()?;
            let url = repository::config_of(&ctx, &name)?.display_url();
            if global.json {
                return ui::print_json(&serde_json::json!({ "initialized": name, "url": url }));
            }
            ui::note(format!("created repository {name} ({url})"));
            Ok(())
        }
        RepoCommand::Check { name, read_data } => {
            let report = repository::open(&ctx, &name)?.check(read_data)?;
            if global.json {
                return ui::print_json(
                    &serde_json::json!({ "name": name, "ok": true, "report": report }),
                );
            }
            ui::print_text(&report)?;
            ui::note(format!("repository {name}: no errors found"));
            Ok(())
        }
        RepoCommand::List => list_repositories(global, &ctx),
    }
}

fn list_repositories(global: &GlobalArgs, ctx: &Context) -> Result<()> {
    let shown = catalog::status(ctx);
    if global.json {
        return ui::print_json(&shown);
    }
    if shown.is_empty() {
        ui::note(format!(
            "no repository is configured (`backup.repositories` in {})",
            ctx.config.file.display()
        ));
        return Ok(());
    }
    let mut table = ui::table(&["NAME", "URL", "STATUS", "SNAPSHOTS"]);
    for s in &shown {
        table.add_row(vec![
            s.name.clone(),
            s.url.clone(),
            s.error.clone().unwrap_or_else(|| "reachable".to_owned()),
            s.snapshots.map_or("-".to_owned(), |n| n.to_string()),
        ]);
    }
    ui::print_table(&table)
}

/// Load the context and open repository `name`.
fn open(global: &GlobalArgs, name: &str) -> Result<(Context, Box<dyn Repository>)> {
    let ctx = Context::load(global.scope())?;
    let repo = repository::open(&ctx, name)?;
    Ok((ctx, repo))
}

/// `list --repo NAME`.
pub(super) fn list(global: &GlobalArgs, name: &str, deployment: Option<&str>) -> Result<()> {
    let (_ctx, repo) = open(global, name)?;
    let entries = catalog::list(repo.as_ref(), deployment)?;
    if global.json {
        let items: Vec<_> = entries.iter().map(|e| e.json(name)).collect();
        return ui::print_json(&items);
    }
    if entries.is_empty() {
        ui::note(format!("no backups in repository {name}"));
        return Ok(());
    }
    let mut table = ui::table(&["ID", "CREATED", "TYPE", "REASON", "SNAPSHOT"]);
    for e in &entries {
        let created = e.snapshot.time.format("%Y-%m-%d %H:%M:%S").to_string();
        let (kind, reason) = match &e.tags {
            Ok(t) => (type_name(t.backup_type).to_owned(), t.reason.clone()),
            Err(why) => ("invalid".to_owned(), why.clone()),
        };
        table.add_row(vec![
            e.id(),
            created,
            kind,
            reason,
            e.snapshot.short_id().to_owned(),
        ]);
    }
    ui::print_table(&table)?;
    let invalid = entries.iter().filter(|e| e.tags.is_err()).count();
    if invalid > 0 {
        ui::warn(format!(
            "{invalid} snapshot(s) tagged `leger-backup` whose tags are not leger-backup's: \
             they are never restored or pruned by leger-backup"
        ));
    }
    Ok(())
}

/// `info ID --repo NAME`.
pub(super) fn info(global: &GlobalArgs, name: &str, id: &str) -> Result<()> {
    let (_ctx, repo) = open(global, name)?;
    let found = catalog::find(repo.as_ref(), id)?;
    warn_duplicates(&found, name);
    let metadata = catalog::load_metadata(repo.as_ref(), &found)?;
    let path = std::path::PathBuf::from(format!("{name}:{}", found.snapshot.short_id()));
    if global.json {
        let entry = Listed {
            id: metadata.id.clone(),
            path,
            metadata: Ok(metadata),
        };
        let mut json = listed_json(&entry)?;
        if let Some(o) = json.as_object_mut() {
            o.insert("snapshot".into(), found.snapshot.id.clone().into());
            o.insert("repository".into(), name.into());
        }
        return ui::print_json(&json);
    }
    ui::print_text(&super::info::render(&metadata, &path))
}

fn warn_duplicates(found: &catalog::Found, name: &str) {
    if found.all.len() > 1 {
        ui::warn(format!(
            "{} snapshots in repository {name} are tagged as backup {}: using the newest, {}",
            found.all.len(),
            found.tags.id,
            found.snapshot.short_id()
        ));
    }
}

/// `delete ID --repo NAME`: `restic forget` of its snapshot(s); the data
/// goes at the next `prune --repo`.
pub(super) fn delete(global: &GlobalArgs, name: &str, args: &DeleteArgs) -> Result<()> {
    let (ctx, repo) = open(global, name)?;
    let found = catalog::find(repo.as_ref(), &args.id)?;
    let in_use = backups_in_use(&ctx.layout.state_dir);
    catalog::check_not_in_use(&args.id, &in_use, ctx.layout.scope)?;
    warn_duplicates(&found, name);
    if !args.yes {
        let t = &found.tags;
        let what = format!(
            "{} ({}, {}, {}) from repository {name}",
            t.id,
            t.deployment,
            found.snapshot.time.format("%Y-%m-%d %H:%M:%S UTC"),
            type_name(t.backup_type),
        );
        if !ui::confirm(&format!("Delete backup {what}?"), "--yes")? {
            ui::note("nothing deleted");
            return Ok(());
        }
    }
    repo.forget(&found.all)?;
    if global.json {
        return ui::print_json(&serde_json::json!({ "deleted": [args.id], "repository": name }));
    }
    ui::note(format!(
        "deleted {} from repository {name} (its data is freed by `leger-backup prune --repo {name}`)",
        args.id
    ));
    Ok(())
}

/// `prune --repo NAME`.
pub(super) fn prune(global: &GlobalArgs, name: &str, args: &PruneArgs) -> Result<()> {
    let (ctx, repo) = open(global, name)?;
    let configured = catalog::keep_for(&ctx.config.backup, repository::config_of(&ctx, name)?);
    let keep = crate::backup::prune::Keep {
        manual: args.keep_manual.unwrap_or(configured.manual),
        before_change: args.keep_before_change.unwrap_or(configured.before_change),
        automatic: args.keep_automatic.unwrap_or(configured.automatic),
        scheduled: configured.scheduled,
    };
    let in_use = backups_in_use(&ctx.layout.state_dir);
    let outcome = catalog::prune(
        repo.as_ref(),
        args.deployment.as_deref(),
        &keep,
        &in_use,
        args.dry_run,
    )?;
    super::prune::report(global, &outcome, &keep)
}
