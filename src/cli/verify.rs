//! `verify`.

use super::args::VerifyArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `verify`.
pub fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("verify"))
}
