//! `disable`: turn automatic backups off (see [`crate::auto::switch`]).

use super::args::SelectArgs;
use super::GlobalArgs;
use crate::auto::switch;
use crate::error::Result;

/// Run `disable`.
pub fn run(global: &GlobalArgs, args: SelectArgs) -> Result<()> {
    switch::switch(global.scope(), &super::enable::selection(args), false).map(drop)
}
