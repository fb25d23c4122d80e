//! `generator`: the systemd generator entry point (argv[0] `*-generator`),
//! see [`crate::auto::generator`].

use super::args::GeneratorArgs;
use super::GlobalArgs;
use crate::auto::generator;
use crate::error::Result;

/// Run the generator. It never fails a daemon-reload: every problem is
/// logged to stderr and the exit status is 0. Without an output directory
/// (run by hand) it prints the drop-ins it would write.
pub fn run(global: &GlobalArgs, args: GeneratorArgs) -> Result<()> {
    // systemd passes normal, early and late directories; only the normal
    // one is used (drop-ins there apply like /etc ones, below /etc itself).
    let _ = (args.early_dir, args.late_dir);
    generator::run_never_failing(global.scope(), args.normal_dir);
    Ok(())
}
