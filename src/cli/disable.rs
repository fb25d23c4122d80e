//! `disable`.

use super::args::SelectArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `disable`.
pub fn run(global: &GlobalArgs, args: SelectArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("disable"))
}
