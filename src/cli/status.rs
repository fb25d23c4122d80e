//! `status`: automatic-backup state per deployment (see [`crate::auto::status`]).

use super::GlobalArgs;
use crate::auto::status;
use crate::backup::interrupted;
use crate::context::Context;
use crate::error::Result;
use crate::ui;

/// Run `status`.
pub fn run(global: &GlobalArgs) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    // Clean up after operations that died; interrupted restores stay
    // pending and are shown below.
    interrupted::startup(&ctx, interrupted::Mode::Command);
    let status = status::gather(&ctx)?;
    if global.json {
        ui::print_json(&status)
    } else {
        status::print(&status)
    }
}
