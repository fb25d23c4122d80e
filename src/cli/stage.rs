//! `stage` (hidden): bind a backup's sources into one directory and run
//! restic there ([`crate::repository::stage`]).

use super::args::StageArgs;
use crate::error::Result;
use crate::repository::stage;

/// Run `stage`: on success this process becomes the command.
pub fn run(args: StageArgs) -> Result<()> {
    let binds = args
        .binds
        .iter()
        .map(|b| stage::parse_bind(b))
        .collect::<Result<Vec<_>>>()?;
    stage::run_in_stage(&args.stage, &binds, &args.command)
}
