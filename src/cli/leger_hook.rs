//! `leger-hook`.

use super::args::LegerHookArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `leger-hook`.
pub fn run(global: &GlobalArgs, args: LegerHookArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("leger-hook"))
}
