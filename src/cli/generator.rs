//! `generator`: the systemd generator entry point (argv[0] `*-generator`).

use super::args::GeneratorArgs;
use super::GlobalArgs;
use crate::error::Result;

/// Run the generator. It must never fail a daemon-reload: until the
/// automatic-backup work lands it writes nothing and succeeds.
pub fn run(global: &GlobalArgs, args: GeneratorArgs) -> Result<()> {
    let _ = (global, args);
    Ok(())
}
