//! `sync`: copy local backups a repository lacks into it.

use super::args::SyncArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `sync`.
pub fn run(_global: &GlobalArgs, _args: SyncArgs) -> Result<()> {
    Err(Error::internal("`sync` is not built yet"))
}
