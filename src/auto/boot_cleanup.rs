//! Cleaning up at boot after backups the last shutdown cut off.
//!
//! A stop hook's backup that outlives the services' `TimeoutStopSec=` at a
//! shutdown is SIGKILLed, leaving its `.tmp-*` directory and its journal.
//! Any later leger-backup run of the scope removes them (see
//! [`crate::backup::interrupted`]), but on a machine where nothing stops
//! after boot that can be days. So the generator also writes
//! `leger-backup-cleanup.service`, wanted by the manager's default target:
//! a oneshot that runs only when the journal directory is not empty
//! (`ConditionDirectoryNotEmpty=`, so a clean boot costs no process) and
//! cleans up what dead processes left, never starting a service (the
//! deployments start by themselves at boot).

use std::path::Path;

use crate::context::Context;
use crate::error::Result;
use crate::layout::{Layout, Scope};

use super::stop_hook_dropin::exec_word;

/// The unit's file name.
pub const UNIT: &str = "leger-backup-cleanup.service";

/// The target that wants it: what the manager reaches at boot.
pub fn wanted_by(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    }
}

/// The unit's text for `layout`, running `binary`.
pub fn unit_text(layout: &Layout, binary: &Path) -> String {
    format!(
        "# Written by leger-backup's generator: clean-up after backups cut off by a shutdown.\n\
         [Unit]\n\
         Description=leger-backup: clean up after backups cut off by the last shutdown\n\
         ConditionDirectoryNotEmpty={journal}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={binary}{flag} cleanup\n",
        journal = exec_word(&layout.state_dir.join("journal").to_string_lossy()),
        binary = exec_word(&binary.to_string_lossy()),
        flag = layout.scope.cli_flag(),
    )
}

/// Write the unit into the generator's output directory `dir`, linked
/// from its target's `.wants/` (a generator's way of enabling a unit).
pub fn write(dir: &Path, layout: &Layout, binary: &Path) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::write(dir.join(UNIT), unit_text(layout, binary))?;
    let wants = dir.join(format!("{}.wants", wanted_by(layout.scope)));
    fs_err::create_dir_all(&wants)?;
    let link = wants.join(UNIT);
    if std::fs::symlink_metadata(&link).is_err() {
        fs_err::os::unix::fs::symlink(format!("../{UNIT}"), &link)?;
    }
    Ok(())
}

/// `cleanup`: what the unit runs. Cleans up after dead processes as any
/// command does at its start, in the stop hook's way: no service started.
pub fn run(scope: Scope) -> Result<()> {
    let ctx = Context::load(scope)?;
    crate::backup::interrupted::startup(&ctx, crate::backup::interrupted::Mode::StopHook);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_only_when_a_journal_is_left_and_is_wanted_at_boot() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::user_at(tmp.path());
        let out = tmp.path().join("normal");
        write(&out, &layout, Path::new("/usr/bin/leger-backup")).unwrap();
        write(&out, &layout, Path::new("/usr/bin/leger-backup")).unwrap();
        let text = std::fs::read_to_string(out.join(UNIT)).unwrap();
        let journal = layout.state_dir.join("journal");
        assert!(
            text.contains(&format!(
                "ConditionDirectoryNotEmpty={}\n",
                journal.display()
            )),
            "{text}"
        );
        assert!(
            text.contains("ExecStart=/usr/bin/leger-backup cleanup\n"),
            "{text}"
        );
        let link = out.join("default.target.wants").join(UNIT);
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            Path::new("../leger-backup-cleanup.service")
        );
        assert_eq!(wanted_by(Scope::System), "multi-user.target");
    }
}
