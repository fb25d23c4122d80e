//! `stage` (hidden): bind a backup's sources into one directory and run
//! restic there (see [`crate::repository::stage`]).

use super::args::StageArgs;
use crate::error::{Error, Result};

/// Run `stage`.
pub fn run(_args: StageArgs) -> Result<()> {
    Err(Error::internal("`stage` is not built yet"))
}
