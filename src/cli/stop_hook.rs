//! `stop-hook`.

use super::args::StopHookArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `stop-hook`.
pub fn run(global: &GlobalArgs, args: StopHookArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("stop-hook"))
}
