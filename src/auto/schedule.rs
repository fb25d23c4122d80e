//! Scheduled backups: the `auto.schedule` and `auto.deployments.NAME.schedule`
//! settings, and the systemd timer and service that run them.
//!
//! Each scheduled deployment gets a timer `leger-backup-scheduled@NAME.timer`
//! (its `OnCalendar=` is the schedule, `Persistent=true` catches up a run
//! missed while the machine was off, `RandomizedDelaySec=` spreads the
//! deployments of one machine) that starts the template service
//! `leger-backup-scheduled@.service`, which runs the hidden `scheduled`
//! command for the instance (the deployment). The generator writes them at
//! every reload; without it `enable` writes them into the user's unit
//! directory, as it does the stop hook's drop-ins.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{AutoConfig, Seconds};
use crate::error::{Error, Result};
use crate::layout::Scope;

use super::stop_hook_dropin::exec_word;

/// The reason written into scheduled backups.
pub const REASON: &str = "scheduled";

/// First line of every unit file we write, so we only ever remove our own.
pub const HEADER: &str = "# Written by leger-backup: scheduled backups.";

/// The template service every timer starts.
pub const SERVICE: &str = "leger-backup-scheduled@.service";

/// A calendar expression systemd accepts (checked when the config is read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Calendar(String);

impl Calendar {
    /// The expression, as `OnCalendar=` gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Check `text` (surrounding blanks dropped, as systemd does in a unit file).
    pub fn parse(text: &str) -> std::result::Result<Calendar, String> {
        let text = text.trim();
        super::calendar::check(text).map_err(|why| {
            format!(
                "invalid schedule {text:?}: {why}; use `off` or a systemd calendar expression \
                 (daily, weekly, \"Sun 04:00\", \"*-*-* 03:00\"; see `man systemd.time`, \
                 `systemd-analyze calendar EXPR` checks one)"
            )
        })?;
        Ok(Calendar(text.to_owned()))
    }
}

/// `off`, or when to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Schedule {
    /// No scheduled backups.
    #[serde(serialize_with = "serialize_off")]
    Off,
    /// A calendar expression.
    At(Calendar),
}

fn serialize_off<S: serde::Serializer>(s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str("off")
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            // YAML 1.1 readers take `off` for false: accept both spellings.
            Raw::Flag(false) => Ok(Schedule::Off),
            Raw::Text(t) if t.trim().eq_ignore_ascii_case("off") => Ok(Schedule::Off),
            Raw::Flag(true) => Err(serde::de::Error::custom(
                "a schedule is `off` or a calendar expression (daily, \"Sun 04:00\"), not `true`",
            )),
            Raw::Text(t) => Calendar::parse(&t)
                .map(Schedule::At)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// How the automatic backups of a deployment treat its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Stop the services that mount the volumes, back up, start them again:
    /// a crash-consistent copy (the default).
    Stop,
    /// Back up while the services run: no downtime, not consistent.
    Live,
    /// Run the `before:` commands with the services up (a database dump into
    /// a volume the backup includes), back up live, then run `after:`.
    Dump,
}

impl Mode {
    /// `stop`, `live`, `dump`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Stop => "stop",
            Mode::Live => "live",
            Mode::Dump => "dump",
        }
    }
}

impl AutoConfig {
    /// When `deployment` is backed up on a schedule: its own `schedule`,
    /// else `auto.schedule`; `None` when off, or when automatic backups are
    /// off for it.
    pub fn schedule_for(&self, deployment: &str) -> Option<&Calendar> {
        if !self.enabled_for(deployment) {
            return None;
        }
        let own = self
            .deployments
            .get(deployment)
            .and_then(|d| d.schedule.as_ref());
        match own.unwrap_or(&self.schedule.value) {
            Schedule::Off => None,
            Schedule::At(calendar) => Some(calendar),
        }
    }

    /// The deployment's `mode`, when set.
    pub fn mode_for(&self, deployment: &str) -> Option<Mode> {
        self.deployments.get(deployment).and_then(|d| d.mode)
    }
}

/// `before:`/`after:` commands only run in mode `dump`: given with another
/// mode they would silently never run, so that is a config error.
pub fn check_commands(auto: &AutoConfig, file: &Path) -> Result<()> {
    for (name, d) in &auto.deployments {
        let has_commands = !d.before.is_empty() || !d.after.is_empty();
        if has_commands && d.mode != Some(Mode::Dump) {
            let mode = d.mode.map_or("not set", Mode::name);
            return Err(Error::config(format!(
                "{}: auto.deployments.{name}: `before:`/`after:` commands run only with \
                 `mode: dump` (mode is {mode})",
                file.display()
            ))
            .with_hint(format!(
                "set `mode: dump` under auto.deployments.{name}, or remove the commands"
            )));
        }
        if let Some(i) = d
            .before
            .iter()
            .chain(&d.after)
            .position(|c| c.trim().is_empty())
        {
            return Err(Error::config(format!(
                "{}: auto.deployments.{name}: command {} of `before:`/`after:` is empty",
                file.display(),
                i + 1
            ))
            .with_hint("remove it or write the command"));
        }
    }
    Ok(())
}

/// The timer of `deployment`'s scheduled backups.
pub fn timer_name(deployment: &str) -> String {
    format!("leger-backup-scheduled@{deployment}.timer")
}

/// The deployment a timer file name of ours belongs to.
pub fn timer_deployment(file_name: &str) -> Option<&str> {
    file_name
        .strip_prefix("leger-backup-scheduled@")?
        .strip_suffix(".timer")
        .filter(|d| crate::deployment::validate_name(d).is_ok())
}

/// The timer unit for `deployment`. `AccuracySec=1s`: systemd's default
/// of one minute would merge runs of a schedule finer than that.
pub fn timer_text(deployment: &str, calendar: &Calendar, delay: Seconds) -> String {
    format!(
        "{HEADER}\n\
         # Deployment: {deployment}. Set by auto.schedule / auto.deployments.{deployment}.schedule.\n\
         [Unit]\n\
         Description=leger-backup: scheduled backup of {deployment}\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         Persistent=true\n\
         RandomizedDelaySec={delay}\n\
         AccuracySec=1s\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        calendar = calendar.as_str(),
        delay = delay.0,
    )
}

/// The template service the timers start (`%i`: the deployment).
pub fn service_text(binary: &Path, scope: Scope) -> String {
    format!(
        "{HEADER}\n\
         [Unit]\n\
         Description=leger-backup: scheduled backup of %i\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={binary}{flag} scheduled %i\n",
        binary = exec_word(&binary.to_string_lossy()),
        flag = scope.cli_flag(),
    )
}

/// The unit files of every scheduled deployment among `deployments`, as
/// `(relative path, text)`; the wants links are made by [`write_units`].
pub fn units(
    auto: &AutoConfig,
    deployments: &[&str],
    binary: &Path,
    scope: Scope,
) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = deployments
        .iter()
        .filter_map(|d| {
            let calendar = auto.schedule_for(d)?;
            Some((
                timer_name(d),
                timer_text(d, calendar, auto.randomized_delay.value),
            ))
        })
        .collect();
    if !files.is_empty() {
        files.push((SERVICE.to_owned(), service_text(binary, scope)));
    }
    files
}

/// Write `files` (from [`units`]) into the unit directory `dir`, each timer
/// linked from `timers.target.wants/` so that it starts with the manager.
/// A file already there with that text is left alone. Returns the paths
/// written.
pub fn write_units(dir: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        let same = crate::regular_file::read_capped(&path, 64 * 1024)
            .is_ok_and(|old| old == text.as_bytes());
        if !same {
            fs_err::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{name}.tmp"));
            fs_err::write(&tmp, text)?;
            fs_err::rename(&tmp, &path)?;
            written.push(path.clone());
        }
        if timer_deployment(name).is_some() {
            let wants = dir.join("timers.target.wants");
            let link = wants.join(name);
            if link.symlink_metadata().is_err() {
                fs_err::create_dir_all(&wants)?;
                fs_err::os::unix::fs::symlink(&path, &link)?;
            }
        }
    }
    Ok(written)
}

/// Our timers in the unit directory `dir`, as `(deployment, path)`.
pub fn find_timers(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let deployment = timer_deployment(&name)?.to_owned();
            let ours = crate::regular_file::read_capped(&e.path(), 64 * 1024)
                .is_ok_and(|t| t.starts_with(HEADER.as_bytes()));
            ours.then(|| (deployment, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Remove our timer for `deployment` from `dir` with its wants link, and
/// the template service when no timer of ours is left. Returns the paths
/// removed.
pub fn remove_units(dir: &Path, deployment: &str) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let name = timer_name(deployment);
    if find_timers(dir).iter().any(|(d, _)| d == deployment) {
        let _ = std::fs::remove_file(dir.join("timers.target.wants").join(&name));
        fs_err::remove_file(dir.join(&name))?;
        removed.push(dir.join(&name));
    }
    let service = dir.join(SERVICE);
    let ours = crate::regular_file::read_capped(&service, 64 * 1024)
        .is_ok_and(|t| t.starts_with(HEADER.as_bytes()));
    if ours && find_timers(dir).is_empty() {
        fs_err::remove_file(&service)?;
        removed.push(service);
    }
    Ok(removed)
}

/// A deployment's schedule as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// The calendar expression.
    pub calendar: String,
    /// The mode of its automatic backups (`stop` when not set).
    pub mode: Mode,
    /// Its timer.
    pub timer: String,
    /// When the timer elapses next, as systemd says it (`None`: the timer
    /// is not running: run `enable`, or reload).
    pub next_run: Option<String>,
    /// Why the next run is unknown, when asking systemd failed.
    pub next_run_error: Option<String>,
    /// What the last scheduled run did (backed up, skipped or failed).
    pub last_run: Option<super::record::Event>,
}

/// The schedule of `deployment`, `None` when it has none.
pub fn status_of(ctx: &crate::context::Context, deployment: &str) -> Option<ScheduleStatus> {
    let calendar = ctx.config.auto.schedule_for(deployment)?;
    let timer = timer_name(deployment);
    let (next_run, next_run_error) = match ctx.systemctl.timer_next_elapse(&timer) {
        Ok(next) => (next, None),
        Err(err) => (None, Some(err.message)),
    };
    let record = super::record::load(&ctx.layout.state_dir, deployment);
    let last_run = [record.last_success, record.last_failure, record.last_skip]
        .into_iter()
        .flatten()
        .filter(|e| e.trigger == super::scheduled::TRIGGER)
        .max_by_key(|e| e.time);
    Some(ScheduleStatus {
        calendar: calendar.as_str().to_owned(),
        mode: ctx.config.auto.mode_for(deployment).unwrap_or(Mode::Stop),
        timer,
        next_run,
        next_run_error,
        last_run,
    })
}

/// The `status` lines of a schedule.
pub fn status_lines(s: &ScheduleStatus) -> String {
    let next = match (&s.next_run, &s.next_run_error) {
        (Some(next), _) => next.clone(),
        (None, Some(err)) => format!("unknown ({err})"),
        (None, None) => format!("not scheduled: {} is not running", s.timer),
    };
    let mut out = format!(
        "  schedule:          {} (mode {})\n  next run:          {next}\n",
        s.calendar,
        s.mode.name()
    );
    if let Some(e) = &s.last_run {
        let what = if e.backup_id.is_some() {
            "ok"
        } else {
            "not backed up"
        };
        out.push_str(&format!(
            "  last scheduled:    {} {what}: {}\n",
            e.time.format("%Y-%m-%d %H:%M:%S UTC"),
            e.message
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::layout::Layout;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(
            text,
            Path::new("/h/.config/leger/config.yaml"),
            &Layout::user_at(Path::new("/h")),
        )
    }

    #[test]
    fn schedules_resolve_per_deployment() {
        let c = parse("").unwrap();
        assert_eq!(c.auto.schedule.value, Schedule::Off);
        assert_eq!(c.auto.schedule_for("web"), None);
        let c = parse(
            "auto:\n  schedule: daily\n  deployments:\n    db:\n      schedule: \"Sun 04:00\"\n      mode: dump\n      before: [\"podman exec db pg_dumpall -f /dump/db.sql\"]\n    quiet: {schedule: off}\n    gone: {enabled: false}\n",
        )
        .unwrap();
        let at = |d: &str| c.auto.schedule_for(d).map(Calendar::as_str);
        assert_eq!(at("web"), Some("daily"));
        assert_eq!(at("db"), Some("Sun 04:00"));
        assert_eq!(at("quiet"), None);
        assert_eq!(at("gone"), None, "automatic backups off: no schedule");
        assert_eq!(c.auto.mode_for("db"), Some(Mode::Dump));
        assert_eq!(c.auto.mode_for("web"), None);
        assert_eq!(c.auto.deployments["db"].before.len(), 1);
    }

    #[test]
    fn bad_schedules_name_line_and_column() {
        let err = parse("auto:\n  schedule: \"Sun 25:00\"\n").unwrap_err();
        assert!(err.message.contains("config.yaml:2:"), "{}", err.message);
        assert!(err.message.contains("invalid schedule"), "{}", err.message);
        assert!(err.message.contains("hour"), "{}", err.message);
        let err = parse("auto:\n  deployments:\n    db:\n      schedule: sometimes\n").unwrap_err();
        assert!(err.message.contains("config.yaml:4:"), "{}", err.message);
        let err = parse("auto:\n  deployments:\n    db:\n      mode: fast\n").unwrap_err();
        assert!(err.message.contains("config.yaml:4:"), "{}", err.message);
        assert!(parse("auto:\n  schedule: true\n").is_err());
    }

    #[test]
    fn commands_need_mode_dump() {
        let err = parse("auto:\n  deployments:\n    db:\n      before: [\"x\"]\n").unwrap_err();
        assert!(err.message.contains("mode: dump"), "{}", err.message);
        assert!(err.message.contains("config.yaml"), "{}", err.message);
        assert!(err.hint.is_some());
        let err = parse("auto:\n  deployments:\n    db:\n      mode: live\n      after: [\"x\"]\n")
            .unwrap_err();
        assert!(err.message.contains("mode is live"), "{}", err.message);
        let err =
            parse("auto:\n  deployments:\n    db:\n      mode: dump\n      before: [\" \"]\n")
                .unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
    }

    #[test]
    fn units_for_scheduled_deployments_only() {
        let c = parse(
            "auto:\n  randomized_delay: 2m\n  deployments:\n    db: {schedule: \"*:*:0/5\"}\n",
        )
        .unwrap();
        let files = units(
            &c.auto,
            &["db", "web"],
            Path::new("/usr/bin/leger-backup"),
            Scope::User,
        );
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["leger-backup-scheduled@db.timer", SERVICE]);
        let timer = &files[0].1;
        for line in [
            "OnCalendar=*:*:0/5",
            "Persistent=true",
            "RandomizedDelaySec=120",
            "WantedBy=timers.target",
        ] {
            assert!(timer.lines().any(|l| l == line), "{line} in {timer}");
        }
        assert!(files[1]
            .1
            .contains("ExecStart=/usr/bin/leger-backup scheduled %i"));
        assert!(units(&c.auto, &["web"], Path::new("/b"), Scope::User).is_empty());
        let system = service_text(Path::new("/b"), Scope::System);
        assert!(
            system.contains("ExecStart=/b --system scheduled %i"),
            "{system}"
        );
    }

    #[test]
    fn status_lines_say_the_next_run_and_the_last_one() {
        let mut s = ScheduleStatus {
            calendar: "daily".into(),
            mode: Mode::Dump,
            timer: timer_name("db"),
            next_run: Some("Sat 2026-11-28 00:03:12 UTC".into()),
            next_run_error: None,
            last_run: None,
        };
        let text = status_lines(&s);
        assert!(
            text.contains("schedule:          daily (mode dump)"),
            "{text}"
        );
        assert!(
            text.contains("next run:          Sat 2026-11-28 00:03:12 UTC"),
            "{text}"
        );
        s.next_run = None;
        s.last_run = Some(crate::auto::record::Event {
            time: chrono::Utc::now(),
            trigger: "schedule".into(),
            message: "`before:` command 1 of db failed".into(),
            backup_id: None,
        });
        let text = status_lines(&s);
        assert!(
            text.contains("not scheduled: leger-backup-scheduled@db.timer is not running"),
            "{text}"
        );
        assert!(
            text.contains("not backed up: `before:` command 1"),
            "{text}"
        );
    }

    #[test]
    fn write_find_and_remove_units() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let c = parse("auto:\n  schedule: daily\n").unwrap();
        let files = units(&c.auto, &["a", "b"], Path::new("/b"), Scope::User);
        assert_eq!(write_units(dir, &files).unwrap().len(), 3);
        assert!(write_units(dir, &files).unwrap().is_empty(), "unchanged");
        let link = dir.join("timers.target.wants/leger-backup-scheduled@a.timer");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            dir.join("leger-backup-scheduled@a.timer")
        );
        let found: Vec<String> = find_timers(dir).into_iter().map(|(d, _)| d).collect();
        assert_eq!(found, ["a", "b"]);
        // A file of that name we did not write is left alone.
        std::fs::write(dir.join("leger-backup-scheduled@c.timer"), "[Timer]\n").unwrap();
        assert!(remove_units(dir, "c").unwrap().is_empty());
        assert_eq!(remove_units(dir, "a").unwrap().len(), 1);
        assert!(link.symlink_metadata().is_err());
        assert!(dir.join(SERVICE).exists(), "b still uses the service");
        assert_eq!(remove_units(dir, "b").unwrap().len(), 2);
        assert!(!dir.join(SERVICE).exists());
    }
}
