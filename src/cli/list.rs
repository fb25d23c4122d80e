//! `list`.

use super::args::ListArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `list`.
pub fn run(global: &GlobalArgs, args: ListArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("list"))
}
