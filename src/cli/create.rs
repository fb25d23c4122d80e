//! `create`: back up a deployment now.

use std::time::Duration;

use serde::Serialize;

use super::args::CreateArgs;
use super::GlobalArgs;
use crate::backup::create::{self, CreateOptions, Destination};
use crate::backup::interrupted;
use crate::backup::metadata::Metadata;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::ui;

/// What `create --json` prints: the ID and the metadata as stored (of the
/// first target), and with several targets the ID each one got.
#[derive(Debug, Serialize)]
struct Created<'a> {
    id: &'a str,
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    targets: Vec<TargetId<'a>>,
}

/// One target of `create --to A --to B` and the backup it got.
#[derive(Debug, Serialize)]
struct TargetId<'a> {
    target: &'a str,
    id: &'a str,
}

/// Run `create`: the ID on stdout (or the JSON document), a summary on
/// stderr.
pub fn run(global: &GlobalArgs, args: CreateArgs) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    interrupted::startup(&ctx, interrupted::Mode::Command);
    // Checked first: a misspelt --to is named before anything else.
    let targets = create::targets(&ctx, &args.to)?;
    if args.notify {
        crate::notify::check_requested(&ctx)?;
    }
    let deployment = deployment::find_or_only(&ctx.layout, args.name.as_deref())?;
    let opts = CreateOptions {
        reason: args.reason,
        live: args.live,
        wait: Duration::from_secs(args.wait),
        services_already_stopped: false,
        progress: true,
        stop_result: None,
        hold_aside: Default::default(),
        destination: Destination::Local,
    };
    let results = crate::notify::backup_to_targets(&ctx, &deployment, &opts, &targets, args.notify);
    // With one target the error is the backup's own, as it always was.
    let several = targets.len() > 1;
    let mut failures = results.failed.into_iter().map(|(name, e)| {
        if several {
            e.context(format!("backup to {name}"))
        } else {
            e
        }
    });
    let failed = failures.next();
    for e in failures {
        ui::warn(format!("{e}"));
    }
    let done = results.done;
    let Some((_, metadata)) = done.first() else {
        return Err(failed.unwrap_or_else(|| crate::error::Error::internal("no target")));
    };
    if global.json {
        ui::print_json(&Created {
            id: &metadata.id,
            metadata,
            targets: if done.len() > 1 {
                done.iter()
                    .map(|(target, m)| TargetId { target, id: &m.id })
                    .collect()
            } else {
                Vec::new()
            },
        })?;
        return failed.map_or(Ok(()), Err);
    }
    for (name, metadata) in &done {
        summarize(name, metadata)?;
    }
    failed.map_or(Ok(()), Err)
}

/// The summary of one backup made, on stderr; its ID on stdout.
fn summarize(target: &str, metadata: &Metadata) -> Result<()> {
    let volumes = metadata.volumes.iter().filter(|v| v.existed).count();
    ui::note(format!(
        "created backup {} of {} in {target}: {}, {} files, {} volume{}{}",
        metadata.id,
        metadata.deployment_name,
        ui::human_size(metadata.size),
        metadata.files.len(),
        volumes,
        if volumes == 1 { "" } else { "s" },
        match metadata.downtime_seconds {
            Some(s) => format!(", services down {s:.1} s"),
            None => String::new(),
        }
    ));
    ui::print_text(&format!("{}\n", metadata.id))
}
