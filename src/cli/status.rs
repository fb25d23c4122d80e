//! `status`.

use super::GlobalArgs;
use crate::error::{Error, Result};

/// Run `status`.
pub fn run(global: &GlobalArgs) -> Result<()> {
    let _ = global;
    Err(Error::not_implemented("status"))
}
