//! `create`: back up a deployment now.

use std::time::Duration;

use serde::Serialize;

use super::args::CreateArgs;
use super::GlobalArgs;
use std::sync::Arc;

use crate::backup::create::{self, CreateOptions, Destination};
use crate::backup::interrupted;
use crate::backup::metadata::Metadata;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::repository::{self, Repository};
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

/// Where `create` sends the backup: `--to` (repeatable), else
/// `backup.targets`; each name once, in the order given.
fn destinations(ctx: &Context, to: &[String]) -> Result<Vec<(String, Destination)>> {
    let names: Vec<String> = if to.is_empty() {
        vec![repository::LOCAL.to_owned()] // MERGE: ctx.config.backup.targets.value.clone()
    } else {
        to.to_vec()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| seen.insert(n.clone())) {
        let destination = if name == repository::LOCAL {
            Destination::Local
        } else {
            let repo: Arc<dyn Repository> = repository::open(ctx, &name)?.into();
            Destination::Repository(repo)
        };
        out.push((name, destination));
    }
    Ok(out)
}

/// Run `create`: the ID on stdout (or the JSON document), a summary on
/// stderr.
pub fn run(global: &GlobalArgs, args: CreateArgs) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    interrupted::startup(&ctx, interrupted::Mode::Command);
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
    let mut done = Vec::new();
    let mut failed = None;
    for (name, destination) in destinations(&ctx, &args.to)? {
        let opts = CreateOptions {
            destination,
            ..opts.clone()
        };
        match create::create(&ctx, &deployment, &opts) {
            Ok(metadata) => done.push((name, metadata)),
            Err(e) if failed.is_none() => failed = Some(e.context(format!("backup to {name}"))),
            Err(e) => ui::warn(format!("backup to {name} failed too: {e}")),
        }
    }
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
