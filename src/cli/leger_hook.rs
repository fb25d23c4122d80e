//! `leger-hook EVENT DEPLOYMENT`: what leger's hook scripts run (see
//! [`crate::auto::hooks`]).

use super::args::LegerHookArgs;
use super::GlobalArgs;
use crate::auto::hooks;
use crate::error::Result;

/// Run `leger-hook`. The scope is `--system` or leger's `LEGER_SCOPE`;
/// `LEGER_NO_BACKUP=1` (leger's `--no-backup`) skips the backup.
pub fn run(global: &GlobalArgs, args: LegerHookArgs) -> Result<()> {
    let leger_scope = std::env::var("LEGER_SCOPE").ok();
    let scope = hooks::scope_of(global.system, leger_scope.as_deref());
    let no_backup = hooks::no_backup_requested(std::env::var("LEGER_NO_BACKUP").ok().as_deref());
    hooks::run(scope, &args.event, &args.deployment, no_backup)
}
