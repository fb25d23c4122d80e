//! `create`: back up a deployment now.

use std::time::Duration;

use serde::Serialize;

use super::args::CreateArgs;
use super::GlobalArgs;
use crate::backup::create::{self, CreateOptions};
use crate::backup::interrupted;
use crate::backup::metadata::Metadata;
use crate::context::Context;
use crate::deployment;
use crate::error::Result;
use crate::ui;

/// What `create --json` prints: the ID and the metadata as stored.
#[derive(Debug, Serialize)]
struct Created<'a> {
    id: &'a str,
    metadata: &'a Metadata,
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
    };
    let metadata = create::create(&ctx, &deployment, &opts)?;
    if global.json {
        return ui::print_json(&Created {
            id: &metadata.id,
            metadata: &metadata,
        });
    }
    let volumes = metadata.volumes.iter().filter(|v| v.existed).count();
    ui::note(format!(
        "created backup {} of {}: {}, {} files, {} volume{}{}",
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
