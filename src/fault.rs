//! Fault injection, a test hook: `LEGER_BACKUP_FAULT=<point>[,<action>]`
//! makes the process fail at one named point of a `create` or `restore`,
//! so the end-to-end fault suite (`tests/integration/e2e/faults.rs`) can
//! prove that the real release binary recovers from a crash at that point.
//! It is compiled into every build and does nothing when the variable is
//! unset (one environment lookup per process).
//!
//! Points (each fires the first time it is reached):
//! - `create:during-export`: the first volume export has streamed data
//!   (also inside a restore's safety backup);
//! - `create:after-archive`: every archive written, services still
//!   stopped, no metadata yet;
//! - `create:before-rename`: metadata written and synced, just before the
//!   `.tmp-<ID>` directory is renamed into place;
//! - `restore:after-safety`: the safety backup is complete, nothing replaced;
//! - `restore:after-files`: the deployment's files were replaced;
//! - `restore:during-import`: the first volume import has received data;
//! - `restore:during-host-path`: the first host path was removed, not yet
//!   written back;
//! - `restore:before-start`: every volume and host path replaced, services
//!   not started.
//!
//! Actions:
//! - `kill` (the default): SIGKILL this process, as a crash or the OOM
//!   killer would;
//! - `sleep=SECS`: pause (a signal received meanwhile ends the pause, and
//!   the operation then handles it at its next safe point);
//! - `wait=PATH`: pause until PATH exists (or a signal arrives);
//! - `hang`: pause and ignore signals until killed (a stuck process, for
//!   systemd's `TimeoutStopSec=` to kill).
//!
//! Reaching a point is announced on stderr
//! (`leger-backup: fault injection: reached POINT`), so a test knows when
//! to act.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable read.
pub const ENV: &str = "LEGER_BACKUP_FAULT";

/// What to do at the point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Kill,
    Sleep(Duration),
    Wait(PathBuf),
    Hang,
}

/// The configured fault: point and action.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    point: String,
    action: Action,
}

fn parse(value: &str) -> Option<Fault> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let (point, action) = match value.split_once(',') {
        Some((p, a)) => (p, a.trim()),
        None => (value, "kill"),
    };
    let action = if action == "kill" {
        Action::Kill
    } else if action == "hang" {
        Action::Hang
    } else if let Some(secs) = action.strip_prefix("sleep=") {
        Action::Sleep(Duration::from_secs_f64(secs.parse().ok()?))
    } else if let Some(path) = action.strip_prefix("wait=") {
        Action::Wait(PathBuf::from(path))
    } else {
        return None;
    };
    Some(Fault {
        point: point.trim().to_owned(),
        action,
    })
}

fn configured() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let fault = parse(&value);
            if fault.is_none() {
                eprintln!("leger-backup: ignoring {ENV}={value:?}: not POINT[,kill|sleep=SECS|wait=PATH|hang]");
            }
            fault
        })
        .as_ref()
}

/// Whether `point` is the configured one (cheap: for arming a check in a
/// hot loop once).
pub fn armed(point: &str) -> bool {
    configured().is_some_and(|f| f.point == point)
}

/// A named point: fails here as configured, the first time it is reached;
/// nothing when `LEGER_BACKUP_FAULT` names another point or is unset.
pub fn point(point: &str) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let Some(fault) = configured() else { return };
    if fault.point != point || FIRED.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!("leger-backup: fault injection: reached {point}");
    match &fault.action {
        Action::Kill => {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
            // SIGKILL cannot be caught; this is never reached.
            std::process::abort();
        }
        Action::Sleep(d) => pause(|| false, Some(Instant::now() + *d), true),
        Action::Wait(path) => pause(|| path.exists(), None, true),
        Action::Hang => pause(|| false, None, false),
    }
}

fn pause(done: impl Fn() -> bool, deadline: Option<Instant>, interruptible: bool) {
    loop {
        if done() || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        if interruptible && crate::interrupt::requested().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse(""), None);
        assert_eq!(
            parse("create:during-export"),
            Some(Fault {
                point: "create:during-export".into(),
                action: Action::Kill
            })
        );
        assert_eq!(
            parse("restore:after-files,sleep=2.5").unwrap().action,
            Action::Sleep(Duration::from_millis(2500))
        );
        assert_eq!(
            parse("create:before-rename,wait=/tmp/go").unwrap().action,
            Action::Wait("/tmp/go".into())
        );
        assert_eq!(parse("x,hang").unwrap().action, Action::Hang);
        assert_eq!(parse("x,explode"), None);
        assert_eq!(parse("x,sleep=soon"), None);
    }

    #[test]
    fn unset_is_harmless() {
        // The test environment does not set the variable.
        if std::env::var_os(ENV).is_none() {
            assert!(!armed("create:during-export"));
            point("create:during-export");
        }
    }
}
