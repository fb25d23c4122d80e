//! Modes of automatic backups (`auto.deployments.NAME.mode`), applied to
//! every automatic backup of the deployment: leger's hooks, the schedule,
//! the stop hook.
//!
//! - `stop`: the services that mount the volumes are stopped for the copy.
//! - `live`: nothing is stopped (no downtime, no consistency).
//! - `dump`: the `before:` commands run with the services up (typically
//!   `podman exec DB pg_dumpall -f /dump/db.sql` into a volume of the
//!   deployment), the backup is taken live, then the `after:` commands run,
//!   also when the backup failed. A failing `before:` command fails the
//!   backup before anything is written; the `after:` commands still run
//!   (with `failure`), since an earlier `before:` command may have left
//!   something to undo (a lock, a half-written dump).
//!
//! The stop hook runs once the services are already down: a `podman exec`
//! cannot work then, and it need not, since a stopped database's files are
//! a consistent copy. So a `dump` deployment's stop-hook backup is the
//! ordinary stopped copy, without the commands.
//!
//! The commands run through `/bin/sh -c` with the caller's environment plus
//! [`ENV_DEPLOYMENT`], [`ENV_REASON`] and [`ENV_SCOPE`]; `after:` also gets
//! [`ENV_RESULT`] and, when the backup was made, [`ENV_ID`].

use std::process::Command;

use crate::backup::create::CreateOptions;
use crate::backup::metadata::Metadata;
use crate::error::{Error, Result};
use crate::layout::Scope;

use super::schedule::Mode;

/// The deployment backed up.
pub const ENV_DEPLOYMENT: &str = "LEGER_BACKUP_DEPLOYMENT";
/// The backup's reason (`scheduled`, `before-apply`, ...).
pub const ENV_REASON: &str = "LEGER_BACKUP_REASON";
/// `user` or `system`.
pub const ENV_SCOPE: &str = "LEGER_BACKUP_SCOPE";
/// `after:` only: `success` or `failure`.
pub const ENV_RESULT: &str = "LEGER_BACKUP_RESULT";
/// `after:` only, after a success: the backup's ID.
pub const ENV_ID: &str = "LEGER_BACKUP_ID";

/// What a mode needs of the deployment's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The configured mode (`None`: the caller's default).
    pub mode: Option<Mode>,
    /// `before:` commands.
    pub before: Vec<String>,
    /// `after:` commands.
    pub after: Vec<String>,
}

impl Plan {
    /// The plan of `deployment` under `auto`.
    pub fn of(auto: &crate::config::AutoConfig, deployment: &str) -> Plan {
        let d = auto.deployments.get(deployment);
        Plan {
            mode: d.and_then(|d| d.mode),
            before: d.map(|d| d.before.clone()).unwrap_or_default(),
            after: d.map(|d| d.after.clone()).unwrap_or_default(),
        }
    }

    /// Whether the commands run for a backup with these options: mode
    /// `dump`, and the services not already stopped (the stop hook).
    pub fn runs_commands(&self, options: &CreateOptions) -> bool {
        self.mode == Some(Mode::Dump) && !options.services_already_stopped
    }

    /// `options` as the mode wants them: `live` for `live` and `dump`, not
    /// for `stop`; unchanged when no mode is set or the services are
    /// already down.
    pub fn adjust(&self, options: &mut CreateOptions) {
        if options.services_already_stopped {
            return;
        }
        match self.mode {
            Some(Mode::Stop) => options.live = false,
            Some(Mode::Live | Mode::Dump) => options.live = true,
            None => {}
        }
    }
}

/// Runs one shell command with extra environment; faked in tests.
pub trait Runner {
    /// Run `command`; `Err(why)` when it could not run or failed.
    fn run(&self, command: &str, env: &[(&str, String)]) -> std::result::Result<(), String>;
}

/// `/bin/sh -c COMMAND`, through [`crate::process`].
pub struct ShellRunner;

impl Runner for ShellRunner {
    fn run(&self, command: &str, env: &[(&str, String)]) -> std::result::Result<(), String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = crate::process::run_unchecked(&mut cmd).map_err(|e| e.message)?;
        if out.status.success() {
            return Ok(());
        }
        // The command itself is not repeated: it may hold a password, and
        // this message reaches the records and notifications.
        let how = match out.status.code() {
            Some(code) => format!("exit status {code}"),
            None => out.status.to_string(),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or_default();
        Err(if last.is_empty() {
            how
        } else {
            format!("{how}: {}", truncate(last, 300))
        })
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Take an automatic backup of `deployment` in its mode: `backup` takes it
/// with the options given. In mode `dump` the `before:` commands run first
/// (the first failure fails the backup, nothing taken) and the `after:`
/// commands last, whatever the outcome (an `after:` failure is only
/// reported through `warn`: it changes nothing about the backup).
pub fn backup_in_mode(
    plan: &Plan,
    scope: Scope,
    deployment: &str,
    mut options: CreateOptions,
    runner: &dyn Runner,
    warn: &dyn Fn(String),
    backup: impl FnOnce(&CreateOptions) -> Result<Metadata>,
) -> Result<Metadata> {
    plan.adjust(&mut options);
    if !plan.runs_commands(&options) {
        return backup(&options);
    }
    let mut env = vec![
        (ENV_DEPLOYMENT, deployment.to_owned()),
        (ENV_REASON, options.reason.clone()),
        (ENV_SCOPE, scope.as_str().to_owned()),
    ];
    let before = plan.before.iter().enumerate().try_for_each(|(i, command)| {
        runner.run(command, &env).map_err(|why| {
            Error::user(format!(
                "`before:` command {} of {deployment} failed ({why}): no backup was taken",
                i + 1
            ))
            .with_hint(format!(
                "run the command of auto.deployments.{deployment}.before by hand to see why; \
                 the services were left running"
            ))
        })
    });
    let result = before.and_then(|()| backup(&options));
    match &result {
        Ok(metadata) => {
            env.push((ENV_RESULT, "success".to_owned()));
            env.push((ENV_ID, metadata.id.clone()));
        }
        Err(_) => env.push((ENV_RESULT, "failure".to_owned())),
    }
    for (i, command) in plan.after.iter().enumerate() {
        if let Err(why) = runner.run(command, &env) {
            warn(format!(
                "`after:` command {} of {deployment} failed ({why})",
                i + 1
            ));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A command run, with its extra environment.
    type Ran = (String, Vec<(String, String)>);

    /// Records the commands and their environment; fails those starting
    /// with `fail`.
    #[derive(Default)]
    struct Fake {
        ran: RefCell<Vec<Ran>>,
    }

    impl Runner for Fake {
        fn run(&self, command: &str, env: &[(&str, String)]) -> std::result::Result<(), String> {
            let env = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
            self.ran
                .borrow_mut()
                .push((command.to_owned(), env.collect()));
            if command.starts_with("fail") {
                Err("exit status 1: no database".to_owned())
            } else {
                Ok(())
            }
        }
    }

    fn options() -> CreateOptions {
        CreateOptions {
            reason: "scheduled".into(),
            ..CreateOptions::manual()
        }
    }

    fn dump(before: &[&str], after: &[&str]) -> Plan {
        Plan {
            mode: Some(Mode::Dump),
            before: before.iter().map(|s| s.to_string()).collect(),
            after: after.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn metadata(id: &str) -> Metadata {
        crate::backup::store::tests::metadata(id, "db", 1)
    }

    fn env_of(fake: &Fake, i: usize, key: &str) -> Option<String> {
        let ran = fake.ran.borrow();
        ran[i]
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn dump_runs_before_backs_up_live_then_after() {
        let fake = Fake::default();
        let live = std::cell::Cell::new(false);
        let m = backup_in_mode(
            &dump(&["pg_dumpall"], &["rm dump"]),
            Scope::User,
            "db",
            options(),
            &fake,
            &|_| panic!("no warning"),
            |o| {
                live.set(o.live);
                assert_eq!(fake.ran.borrow().len(), 1, "before: ran first");
                Ok(metadata("db-1"))
            },
        )
        .unwrap();
        assert_eq!(m.id, "db-1");
        assert!(live.get(), "dump backs up live");
        assert_eq!(fake.ran.borrow().len(), 2);
        assert_eq!(env_of(&fake, 0, ENV_DEPLOYMENT).as_deref(), Some("db"));
        assert_eq!(env_of(&fake, 0, ENV_REASON).as_deref(), Some("scheduled"));
        assert_eq!(env_of(&fake, 0, ENV_SCOPE).as_deref(), Some("user"));
        assert_eq!(env_of(&fake, 0, ENV_ID), None);
        assert_eq!(env_of(&fake, 1, ENV_RESULT).as_deref(), Some("success"));
        assert_eq!(env_of(&fake, 1, ENV_ID).as_deref(), Some("db-1"));
    }

    #[test]
    fn failing_before_takes_no_backup_and_runs_only_after() {
        let fake = Fake::default();
        let err = backup_in_mode(
            &dump(&["fail dump", "second"], &["cleanup"]),
            Scope::User,
            "db",
            options(),
            &fake,
            &|_| {},
            |_| panic!("no backup after a failed before:"),
        )
        .unwrap_err();
        assert!(
            err.message.contains("`before:` command 1 of db failed"),
            "{}",
            err.message
        );
        assert!(err.message.contains("no database"), "{}", err.message);
        assert!(
            !err.message.contains("fail dump"),
            "the command is not echoed"
        );
        let ran: Vec<String> = fake.ran.borrow().iter().map(|r| r.0.clone()).collect();
        assert_eq!(
            ran,
            ["fail dump", "cleanup"],
            "no second before:, then after:"
        );
        assert_eq!(env_of(&fake, 1, ENV_RESULT).as_deref(), Some("failure"));
    }

    #[test]
    fn after_runs_when_the_backup_fails_and_its_failure_only_warns() {
        let fake = Fake::default();
        let warnings = RefCell::new(Vec::new());
        let err = backup_in_mode(
            &dump(&[], &["fail cleanup", "next"]),
            Scope::System,
            "db",
            options(),
            &fake,
            &|w| warnings.borrow_mut().push(w),
            |_| Err(Error::internal("disk full")),
        )
        .unwrap_err();
        assert_eq!(err.message, "disk full");
        assert_eq!(fake.ran.borrow().len(), 2, "every after: runs");
        assert_eq!(env_of(&fake, 0, ENV_RESULT).as_deref(), Some("failure"));
        assert_eq!(env_of(&fake, 0, ENV_SCOPE).as_deref(), Some("system"));
        assert!(warnings.borrow()[0].contains("`after:` command 1 of db failed"));
    }

    #[test]
    fn modes_set_live_and_the_stop_hook_skips_commands() {
        let fake = Fake::default();
        let run = |plan: &Plan, options: CreateOptions| {
            let live = std::cell::Cell::new(None);
            backup_in_mode(plan, Scope::User, "db", options, &fake, &|_| {}, |o| {
                live.set(Some(o.live));
                Ok(metadata("db-1"))
            })
            .unwrap();
            live.get().unwrap()
        };
        let with = |mode| Plan {
            mode,
            ..Plan::default()
        };
        let live_default = CreateOptions {
            live: true,
            ..options()
        };
        assert!(!run(&with(Some(Mode::Stop)), live_default.clone()));
        assert!(run(&with(Some(Mode::Live)), options()));
        assert!(run(&with(None), live_default), "no mode: the caller's");
        assert!(!run(&with(None), options()));
        let stop_hook = CreateOptions {
            services_already_stopped: true,
            ..options()
        };
        assert!(!run(&dump(&["before"], &["after"]), stop_hook));
        assert!(
            fake.ran.borrow().is_empty(),
            "no commands from the stop hook"
        );
    }

    #[test]
    fn the_shell_runner_passes_the_environment_and_reports_failures() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let command = format!("echo \"$LEGER_BACKUP_DEPLOYMENT\" > '{}'", out.display());
        ShellRunner
            .run(&command, &[(ENV_DEPLOYMENT, "db".to_owned())])
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "db\n");
        let why = ShellRunner
            .run("echo secret-arg >/dev/null; echo oops >&2; exit 3", &[])
            .unwrap_err();
        assert_eq!(why, "exit status 3: oops");
    }
}
