//! `sync`: copy local backups a repository lacks into it
//! ([`crate::repository::sync`]).

use std::sync::Arc;

use super::args::SyncArgs;
use super::GlobalArgs;
use crate::backup::create;
use crate::backup::progress::Terminal;
use crate::error::{Error, Result};
use crate::repository::{self, sync, Repository};
use crate::ui;

/// Run `sync`: every repository of `--to`, else of `backup.targets`.
pub fn run(global: &GlobalArgs, args: SyncArgs) -> Result<()> {
    let (ctx, store) = super::list::open_store(global)?;
    let names: Vec<String> = create::targets(&ctx, &args.to)?
        .into_iter()
        .filter(|n| n != repository::LOCAL)
        .collect();
    if names.is_empty() {
        return Err(Error::user("no repository to send backups to")
            .with_hint("give --to REPO, or name a repository in backup.targets"));
    }
    let progress = Terminal::new(true);
    let mut reports = Vec::new();
    for name in &names {
        let repo: Arc<dyn Repository> = repository::open(&ctx, name)?.into();
        let report = sync::sync(&ctx, &store, &repo, &progress)?;
        for (id, why) in &report.skipped {
            ui::note(format!("{id} not sent to {name}: {why}"));
        }
        for (id, why) in &report.failed {
            ui::warn(format!("{id} could not be sent to {name}: {why}"));
        }
        ui::note(format!(
            "{name}: {} sent, {} already there, {} skipped, {} failed",
            report.sent.len(),
            report.present,
            report.skipped.len(),
            report.failed.len()
        ));
        reports.push(report);
    }
    if global.json {
        ui::print_json(&reports)?;
    }
    let failed = reports.iter().map(|r| r.failed.len()).sum::<usize>();
    if failed > 0 {
        return Err(Error::user(format!("{failed} backups were not sent"))
            .with_hint("see the warnings above; run `leger-backup sync` again once fixed"));
    }
    Ok(())
}
