//! `recover`.

use super::args::RecoverArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `recover`.
pub fn run(global: &GlobalArgs, args: RecoverArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("recover"))
}
