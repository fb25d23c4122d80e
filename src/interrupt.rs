//! SIGINT and SIGTERM during a `create`, `restore` or `recover`: stop at the
//! next safe point and clean up, instead of dying half-way.
//!
//! [`install`] replaces the default action (death) by a handler that only
//! records the signal in an atomic; the operation polls it with [`check`]
//! between steps (between volumes, inside the streaming loops) and then
//! takes its normal error path: a `create` removes its unfinished backup
//! and starts the services it stopped again, a `restore` rolls back to its
//! safety backup. Rollbacks and restarts are never interrupted; a second
//! signal changes nothing. Only SIGKILL ends the process at once, and the
//! operation journal ([`crate::backup::journal`]) covers that.
//!
//! The handler is installed without `SA_RESTART`, so a read blocked on a
//! pipe from `podman volume export` returns `EINTR` and the loop sees the
//! flag at once. While it is installed, [`crate::process`] starts children
//! in a process group of their own, so a Ctrl-C on the terminal reaches
//! leger-backup only and not, say, the `systemctl start` that brings the
//! services back; a child that dies of a signal anyway is treated as the
//! interruption by [`explain`].

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::error::{Error, ErrorKind, Result};

/// The signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Whether [`install`] ran in this process.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The handler: one atomic store, which is async-signal-safe.
extern "C" fn record(signal: nix::libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Handle SIGINT and SIGTERM from now on (idempotent). Call it once the
/// operation holds its lock and can clean up after itself; before that the
/// default action (ending the process) is right, as nothing has changed.
pub fn install() -> Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe; no other state is touched.
        unsafe { signal::sigaction(sig, &action) }
            .map_err(|e| Error::internal(format!("cannot install a handler for {sig}: {e}")))?;
    }
    Ok(())
}

/// Whether [`install`] ran: children then get a process group of their own.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// The signal received since [`install`], if any.
pub fn requested() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// The error of an operation stopped by `signal`.
pub fn error(signal: Signal) -> Error {
    Error::interrupted(format!("interrupted by {signal}"))
}

/// A safe point: `Err` when a signal asked the operation to stop.
pub fn check() -> Result<()> {
    match requested() {
        Some(signal) => Err(error(signal)),
        None => Ok(()),
    }
}

/// After a failure: when a signal was received, the failure is its
/// consequence (a child killed by the same Ctrl-C, a read cut short), so
/// report the interruption, keeping the original cause as detail.
pub fn explain(err: Error) -> Error {
    match requested() {
        Some(signal) if err.kind != ErrorKind::Interrupted => {
            // The original hint is about the failure, not the interruption.
            let mut e = error(signal);
            if !err.message.contains("interrupted by") {
                e.message = format!("{} ({})", e.message, err.message);
            }
            e
        }
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_signal() {
        let e = error(Signal::SIGINT);
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert_eq!(e.message, "interrupted by SIGINT");
        assert_eq!(e.kind.exit_code(), 130);
    }
}
