//! `volume-tar [--host] DIR` (internal): the tar of a volume's directory
//! (or with `--host` of a host path) on stdout, for `create`, which runs
//! it inside podman's user namespace and reads the stream as it reads
//! `podman volume export` ([`crate::backup::volume_reader`]).

use std::os::fd::{AsFd, BorrowedFd};

use super::args::VolumeTarArgs;
use crate::error::{Error, Result};

/// Write the tar to stdout, unbuffered by the standard library (its stdout
/// is line-buffered: a tar is not lines). Runs as the child of `create`.
pub fn run(args: VolumeTarArgs) -> Result<()> {
    let stdout = pipe_end(std::io::stdout().as_fd(), "stdout")?;
    if args.host {
        crate::backup::volume_reader::write_host_path(&args.dir, stdout)
    } else {
        crate::backup::volume_reader::write_tree(&args.dir, stdout)
    }
}

/// Our end of the pipe `fd` (`what`) as an unbuffered file, for a child
/// of `create` or `restore`. Rootless, our parent is `podman unshare`,
/// which dies with the leger-backup that started it: die with it too, not
/// only at the next write into (or read from) the closed pipe.
pub(super) fn pipe_end(fd: BorrowedFd, what: &str) -> Result<std::fs::File> {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let fd = fd
        .try_clone_to_owned()
        .map_err(|e| Error::internal(format!("cannot use {what}: {e}")))?;
    Ok(std::fs::File::from(fd))
}
