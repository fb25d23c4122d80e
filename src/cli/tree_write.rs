//! `tree-write [--file] DEST` (internal): write the tar read from stdin
//! into the empty directory DEST (or with `--file` the one regular file it
//! holds to the new path DEST), exactly; `restore` runs it inside podman's
//! user namespace and feeds it a tar it has already checked
//! ([`crate::backup::tree_writer`]).

use std::os::fd::AsFd;

use super::args::TreeWriteArgs;
use crate::backup::tree_writer::{self, Target};
use crate::error::{Error, Result};

/// Read the tar from stdin, unbuffered by the standard library (the
/// writer buffers it). Runs as the child of `restore`.
pub fn run(args: TreeWriteArgs) -> Result<()> {
    // Rootless, our parent is `podman unshare`: die with the leger-backup
    // that started it rather than write on alone.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::internal(format!("cannot use stdin: {e}")))?;
    let target = if args.file {
        Target::File(&args.dest)
    } else {
        Target::Dir(&args.dest)
    };
    tree_writer::write(std::fs::File::from(stdin), target)
}
