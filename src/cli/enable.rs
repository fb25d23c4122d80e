//! `enable`: turn automatic backups on (see [`crate::auto::switch`]).

use super::args::SelectArgs;
use super::GlobalArgs;
use crate::auto::switch::{self, Selection};
use crate::error::Result;

/// Run `enable`.
pub fn run(global: &GlobalArgs, args: SelectArgs) -> Result<()> {
    switch::switch(global.scope(), &selection(args), true).map(drop)
}

/// The deployments named on the command line.
pub(crate) fn selection(args: SelectArgs) -> Selection {
    match args.name {
        Some(name) if !args.all => Selection::One(name),
        _ => Selection::All,
    }
}
