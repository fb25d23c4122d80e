//! `restore`.

use super::args::RestoreArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `restore`.
pub fn run(global: &GlobalArgs, args: RestoreArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("restore"))
}
