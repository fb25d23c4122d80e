//! `stage` (hidden): bind a backup's sources into one directory and run
//! restic there ([`crate::repository::stage`]).

use super::args::StageArgs;
use crate::error::{Error, Result};
use crate::process_identity::ProcessIdentity;
use crate::repository::stage;

/// Run `stage`: on success this process becomes the command.
pub fn run(args: StageArgs) -> Result<()> {
    let binds = args
        .binds
        .iter()
        .map(|b| stage::parse_bind(b))
        .collect::<Result<Vec<_>>>()?;
    let watch = match &args.watch {
        Some(text) => Some(ProcessIdentity::parse(text).ok_or_else(|| {
            Error::user(format!("bad --watch `{text}`")).with_hint("give `PID START`")
        })?),
        None => None,
    };
    stage::run_in_stage(&args.stage, &binds, &args.command, watch)
}
