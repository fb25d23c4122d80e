//! Automatic backups: the systemd generator and the unprivileged drop-ins
//! that call the stop hook, the stop hook itself, leger's hooks, and status.
//!
//! How the pieces fit:
//! - [`generator`] runs at every `daemon-reload` and writes, for each service
//!   of a deployment with automatic backups on, a drop-in
//!   ([`stop_hook_dropin::DROPIN_FILE`]) whose `ExecStopPost=` calls `stop-hook`.
//!   Without root the generator cannot be installed; [`switch`] (`enable`,
//!   `disable`) then writes the same drop-ins into the user's unit directory.
//! - [`stop_hook`] decides whether a stop is worth a backup (deployment fully
//!   down, not coalesced, not rate-limited, not a shutdown, not caused by
//!   leger-backup itself) and takes it.
//! - [`hooks`] is what leger's `pre-remove` / `pre-apply` hooks run.
//! - [`own_operation`] is how leger-backup's own operations tell the stop hook "this
//!   stop is mine" (it reads their operation journal,
//!   [`crate::backup::journal`]); [`record`] keeps the last skip, failure
//!   and success per deployment for [`status`].

pub mod boot_cleanup;
pub mod calendar;
pub mod config_edit;
pub mod generator;
pub mod history;
pub mod hooks;
pub mod modes;
pub mod own_operation;
pub mod record;
pub mod schedule;
pub mod scheduled;
pub mod status;
pub mod stop_hook;
pub mod stop_hook_dropin;
pub mod switch;
pub mod targets;

use std::path::{Path, PathBuf};

use crate::layout::Scope;

/// The file name the generator symlink has for `scope`; systemd runs it
/// under that name, which the CLI turns into the `generator` command.
pub fn generator_name(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "leger-backup-user-generator",
        Scope::System => "leger-backup-system-generator",
    }
}

/// The directories systemd searches for generators of `scope`, highest
/// priority first (a file in an earlier one masks the same name later).
pub fn generator_dirs(scope: Scope) -> &'static [&'static str] {
    match scope {
        Scope::User => &[
            "/run/systemd/user-generators",
            "/etc/systemd/user-generators",
            "/usr/local/lib/systemd/user-generators",
            "/usr/lib/systemd/user-generators",
        ],
        Scope::System => &[
            "/run/systemd/system-generators",
            "/etc/systemd/system-generators",
            "/usr/local/lib/systemd/system-generators",
            "/usr/lib/systemd/system-generators",
            "/lib/systemd/system-generators",
        ],
    }
}

/// Environment variable that, for the user manager, replaces the
/// directories searched for our generator (`:`-separated): tests decide
/// whether a generator is installed, whatever the host has. It changes only
/// whether `enable`/`disable` flip the config or write the user's own
/// drop-ins, and never what root's `--system` commands do.
pub const GENERATOR_DIRS_ENV: &str = "LEGER_BACKUP_GENERATOR_DIRS";

/// Where our generator is installed for `scope`, if it is: the first entry
/// of the search path with its name, unless that entry masks it (a symlink
/// to `/dev/null`) or dangles. Decides whether `enable`/`disable` flip the
/// config (generator) or write drop-ins themselves.
pub fn installed_generator(scope: Scope) -> Option<PathBuf> {
    let name = generator_name(scope);
    match std::env::var(GENERATOR_DIRS_ENV) {
        Ok(dirs) if scope == Scope::User => {
            let dirs: Vec<&str> = dirs.split(':').filter(|d| !d.is_empty()).collect();
            installed_generator_in(&dirs, name)
        }
        _ => installed_generator_in(generator_dirs(scope), name),
    }
}

fn installed_generator_in(dirs: &[&str], name: &str) -> Option<PathBuf> {
    for dir in dirs {
        let path = Path::new(dir).join(name);
        if path.symlink_metadata().is_err() {
            continue;
        }
        let masked = std::fs::canonicalize(&path)
            .map(|target| target == Path::new("/dev/null"))
            .unwrap_or(true);
        return (!masked).then_some(path);
    }
    None
}

/// The directory systemd hands the generator as its "normal" output
/// directory, where the drop-ins it wrote can be checked after a reload.
pub fn generator_output_dir(scope: Scope) -> Option<PathBuf> {
    match scope {
        Scope::System => Some(PathBuf::from("/run/systemd/generator")),
        Scope::User => std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|p| p.join("systemd/generator")),
    }
}

/// [`Scope::systemctl_words`], for callers not yet moved to it.
pub fn systemctl_words(scope: Scope) -> &'static str {
    scope.systemctl_words()
}

/// [`Scope::cli_flag`], for callers not yet moved to it.
pub fn scope_flag(scope: Scope) -> &'static str {
    scope.cli_flag()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_found_first_and_masking_respected() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let dirs = [a.to_str().unwrap(), b.to_str().unwrap()];
        assert_eq!(installed_generator_in(&dirs, "g"), None);
        std::fs::write(b.join("g"), "x").unwrap();
        assert_eq!(installed_generator_in(&dirs, "g"), Some(b.join("g")));
        std::os::unix::fs::symlink("/dev/null", a.join("g")).unwrap();
        assert_eq!(installed_generator_in(&dirs, "g"), None, "masked");
        std::fs::remove_file(a.join("g")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("missing"), a.join("g")).unwrap();
        assert_eq!(installed_generator_in(&dirs, "g"), None, "dangling");
    }
}
