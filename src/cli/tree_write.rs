//! `tree-write [--file] DEST` (internal): write the tar read from stdin
//! into the empty directory DEST (or with `--file` the one regular file it
//! holds to the new path DEST), exactly; `restore` runs it inside podman's
//! user namespace and feeds it a tar it has already checked
//! ([`crate::backup::tree_writer`]).

use std::os::fd::AsFd;

use super::args::TreeWriteArgs;
use crate::backup::tree_writer::{self, Target};
use crate::error::Result;

/// Read the tar from stdin, unbuffered by the standard library (the
/// writer buffers it). Runs as the child of `restore`.
pub fn run(args: TreeWriteArgs) -> Result<()> {
    let stdin = super::volume_tar::pipe_end(std::io::stdin().as_fd(), "stdin")?;
    let target = if args.file {
        Target::File(&args.dest)
    } else {
        Target::Dir(&args.dest)
    };
    tree_writer::write(stdin, target)
}
