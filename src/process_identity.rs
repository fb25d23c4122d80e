//! "Is the process that wrote this record still running?" — answered by pid
//! *and* start time, so a pid the kernel has handed to another process since
//! is not taken for the writer.
//!
//! A pid alone is fooled by reuse: after a crash, a busy host can give the
//! dead writer's pid to any new process, and `kill(pid, 0)` then says
//! "alive" for ever, so a leftover is never cleaned. The start time (field
//! 22 of `/proc/PID/stat`, clock ticks since boot) tells the two apart.
//! Records written by older versions hold only the pid; they are judged as
//! before, by `kill(pid, 0)`. When `/proc` cannot tell (not mounted, or
//! hidden with `hidepid=`), `kill(pid, 0)` decides too: a record is never
//! declared dead only because its process could not be inspected.
//!
//! The operation journal ([`crate::backup::journal`]) stores the same pair
//! in its JSON record and asks the same question here.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A process as a record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Its pid.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/PID/stat`); `None` in records of
    /// older versions, or when `/proc` could not be read.
    pub start_time: Option<u64>,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> ProcessIdentity {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            start_time: process_start_time(pid),
        }
    }

    /// Whether the process this names still runs: the pid exists and, when
    /// both start times are known, they match.
    pub fn is_alive(&self) -> bool {
        match (self.start_time, process_start_time(self.pid)) {
            (Some(then), Some(now)) => then == now,
            _ => pid_exists(self.pid),
        }
    }

    /// The one-line record: `PID START`, or `PID` when the start time is
    /// unknown.
    pub fn to_record(&self) -> String {
        match self.start_time {
            Some(start) => format!("{} {start}", self.pid),
            None => self.pid.to_string(),
        }
    }

    /// Read a record written by [`ProcessIdentity::to_record`] or by an
    /// older version (`PID` alone). `None` when it is not one.
    pub fn parse(text: &str) -> Option<ProcessIdentity> {
        let mut words = text.split_whitespace();
        let pid = words
            .next()?
            .parse()
            .ok()
            .filter(|p: &u32| (1..=i32::MAX as u32).contains(p))?;
        let start_time = match words.next() {
            Some(word) => Some(word.parse().ok()?),
            None => None,
        };
        words
            .next()
            .is_none()
            .then_some(ProcessIdentity { pid, start_time })
    }
}

/// `kill(pid, 0)`: the process exists unless that fails with ESRCH (EPERM
/// means it exists but is another user's).
fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), or
/// `None` when the process does not exist (or `/proc` cannot tell).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that no process has: that of a child already reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn this_process_is_alive_with_its_start_time() {
        let me = ProcessIdentity::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_time.is_some());
        assert!(me.is_alive());
        let record = me.to_record();
        assert_eq!(ProcessIdentity::parse(&format!("{record}\n")), Some(me));
    }

    #[test]
    fn a_dead_pid_is_not_alive() {
        let pid = dead_pid();
        assert!(!ProcessIdentity::parse(&pid.to_string()).unwrap().is_alive());
        let with_start = ProcessIdentity {
            pid,
            start_time: Some(1),
        };
        assert!(!with_start.is_alive());
    }

    /// Our own pid with another start time stands for a pid reused by
    /// another process after the writer died.
    #[test]
    fn a_reused_pid_is_not_alive() {
        let me = ProcessIdentity::current();
        let reused = ProcessIdentity {
            pid: me.pid,
            start_time: Some(me.start_time.unwrap() + 1),
        };
        assert!(!reused.is_alive());
        assert!(!ProcessIdentity::parse(&reused.to_record())
            .unwrap()
            .is_alive());
    }

    /// A record of an older version (pid only) is judged by the pid alone.
    #[test]
    fn a_pid_only_record_is_judged_by_the_pid() {
        let old = ProcessIdentity::parse(&format!("{}\n", std::process::id())).unwrap();
        assert_eq!(old.start_time, None);
        assert!(old.is_alive());
    }

    #[test]
    fn malformed_records_are_refused() {
        for bad in ["", "x", "0", "-3", "12 x", "12 3 4", "4294967295"] {
            assert_eq!(ProcessIdentity::parse(bad), None, "{bad:?}");
        }
    }
}
