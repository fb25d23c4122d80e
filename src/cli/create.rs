//! `create`.

use super::args::CreateArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `create`.
pub fn run(global: &GlobalArgs, args: CreateArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("create"))
}
