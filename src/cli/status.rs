//! `status`: automatic-backup state per deployment (see [`crate::auto::status`]).

use super::GlobalArgs;
use crate::auto::status;
use crate::context::Context;
use crate::error::Result;
use crate::ui;

/// Run `status`.
pub fn run(global: &GlobalArgs) -> Result<()> {
    let ctx = Context::load(global.scope())?;
    let status = status::gather(&ctx)?;
    if global.json {
        ui::print_json(&status)
    } else {
        status::print(&status)
    }
}
