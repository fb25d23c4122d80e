//! `delete`.

use super::args::DeleteArgs;
use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `delete`.
pub fn run(global: &GlobalArgs, args: DeleteArgs) -> Result<()> {
    let _ = (global, args);
    Err(Error::not_implemented("delete"))
}
