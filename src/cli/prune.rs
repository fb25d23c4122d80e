//! `prune`.

use super::args::PruneArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `prune`.
pub fn run(global: &GlobalArgs, args: PruneArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("prune"))
}
