//! `info`.

use super::args::IdArg;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `info`.
pub fn run(global: &GlobalArgs, args: IdArg) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("info"))
}
