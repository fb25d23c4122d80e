//! `repo init | check | list`: the restic repositories of `backup.repositories`.

use super::args::RepoCommand;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run a `repo` subcommand.
pub fn run(_global: &GlobalArgs, _command: RepoCommand) -> Result<()> {
    Err(Error::internal("`repo` is not built yet"))
}
