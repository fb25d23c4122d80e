//! The stop hook: what a service's `ExecStopPost=` runs. It takes one
//! consistent backup (reason `on-stop`) when the deployment has gone fully
//! down, and otherwise records why not.
//!
//! The checks, cheapest first:
//! 1. automatic backups are on for the deployment (config);
//! 2. the stop was not caused by leger-backup itself (a consistent `create`
//!    or a `restore`: the [`own_operation`] marker) — checked without any lock, so the
//!    hook returns at once and never holds up that operation's stop job —
//!    nor by a leger operation run with `--no-backup` moments ago;
//! 3. the manager is not shutting down (`is-system-running` = `stopping`),
//!    unless `auto.on_shutdown` (checked before anything costlier, so that a
//!    shutdown is not held up);
//! 4. the service that stopped became active in the start this stop ends:
//!    one whose start failed (a bad `Exec=`, a missing image) ran nothing
//!    that changed the data, and a backup then would record an `on-stop`
//!    success for a deployment that never came up;
//! 5. no other service of the deployment is still up; one still stopping
//!    its main process will run its own hook, which takes the backup;
//! 6. one hook per deployment at a time: the later one waits its turn, then
//! 7. skips when a backup finished within `auto.coalesce_seconds`, or less
//!    than `auto.min_interval` ago (both read from the backup directory).
//!
//! The decisions are pure functions over an [`Env`], so they are tested
//! with a fake; [`SystemEnv`] is the real machine.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backup::create::CreateOptions;
use crate::backup::lock::DeploymentLock;
use crate::backup::metadata::StopResult;
use crate::config::Seconds;
use crate::context::Context;
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::file_lock::{self, FileLock};

use super::history::{self, Summary};
use super::own_operation::{self, OwnOperation};
use super::record::{self, Event, Outcome};

/// The reason written into stop-hook backups.
pub const REASON: &str = "on-stop";

/// A unit's `ActiveState` and `SubState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `deactivating`, `inactive`, ...
    pub active: String,
    /// `running`, `stop-sigterm`, `stop-post`, `dead`, ... (only asked for
    /// units that are deactivating; empty otherwise).
    pub sub: String,
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// Nothing done, and why.
    Skipped(String),
    /// A backup was taken: its ID.
    BackedUp(String),
    /// A backup was attempted or a check could not be made: why.
    Failed(String),
}

/// Settings the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Automatic backups are on for the deployment.
    pub enabled: bool,
    /// Back up even when the manager is stopping.
    pub on_shutdown: bool,
    /// A backup that finished this recently absorbs the hook.
    pub coalesce: Seconds,
    /// At most one stop-hook backup in this interval.
    pub min_interval: Seconds,
    /// How long to wait for another hook of the deployment to finish.
    pub turn_wait: Duration,
}

/// Skip when the manager is going down, unless asked to back up then.
pub fn shutdown_skip(manager_state: &str, on_shutdown: bool) -> Option<String> {
    (manager_state == "stopping" && !on_shutdown).then(|| {
        "the service manager is stopping (logout or shutdown); set auto.on_shutdown: true to back up then"
            .to_owned()
    })
}

/// Whether the deployment is fully down, judged from the states of its
/// *other* hooked services; `Some(why not)` when it is not.
///
/// Active, activating (including waiting to restart) or reloading means it
/// is still up: the last service to stop takes the backup. A service still
/// stopping its main process (`deactivating` before `stop-post`) will run
/// its own hook once its container is gone, and that hook takes the backup;
/// waiting for it here could wait on a hook that waits for us.
pub fn not_down_reason(others: &[(String, UnitState)]) -> Option<String> {
    let running: Vec<&str> = others
        .iter()
        .filter(|(_, s)| matches!(s.active.as_str(), "active" | "activating" | "reloading"))
        .map(|(u, _)| u.as_str())
        .collect();
    if !running.is_empty() {
        return Some(format!(
            "not fully down: {} still running",
            running.join(", ")
        ));
    }
    let stopping: Vec<&str> = others
        .iter()
        .filter(|(_, s)| {
            s.active == "deactivating"
                && matches!(
                    s.sub.as_str(),
                    "stop" | "stop-sigterm" | "stop-sigkill" | "stop-watchdog" | "stop-sigabrt"
                )
        })
        .map(|(u, _)| u.as_str())
        .collect();
    if !stopping.is_empty() {
        return Some(format!(
            "{} still stopping; its own stop hook takes the backup",
            stopping.join(", ")
        ));
    }
    None
}

/// Skip when the newest backup of the deployment is too recent: within
/// `coalesce` of its end (hooks firing together, or the stop that follows a
/// leger hook's backup), or less than `min_interval` ago (a crash-restart
/// loop must not fill the disk).
pub fn timing_skip(
    now: DateTime<Utc>,
    newest: Option<&Summary>,
    coalesce: Seconds,
    min_interval: Seconds,
) -> Option<String> {
    let newest = newest?;
    let age = (now - newest.finished_at).num_seconds().max(0) as u64;
    if age < coalesce.0 {
        return Some(format!(
            "coalesced: backup {} ({}) finished {age}s ago, within auto.coalesce_seconds ({})",
            newest.id, newest.reason, coalesce
        ));
    }
    if age < min_interval.0 {
        return Some(format!(
            "rate limited: backup {} ({}) finished {age}s ago, less than auto.min_interval ({}) ago",
            newest.id, newest.reason, min_interval
        ));
    }
    None
}

/// Skip when leger was told `--no-backup` moments ago: the stop that
/// follows belongs to that leger operation, and the user declined a backup
/// of it.
pub fn declined_skip(
    now: DateTime<Utc>,
    declined: Option<&Event>,
    coalesce: Seconds,
) -> Option<String> {
    let event = declined?;
    let age = (now - event.time).num_seconds().max(0) as u64;
    (age < coalesce.0).then(|| {
        format!(
            "{} ran with --no-backup {age}s ago (within auto.coalesce_seconds, {coalesce})",
            event.trigger
        )
    })
}

/// The properties [`became_active`] reads, from `systemctl show`.
pub const ACTIVATION_PROPERTIES: [&str; 2] = [
    "ActiveEnterTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
];

/// Whether a unit reached `active` in its latest start, judged from
/// [`ACTIVATION_PROPERTIES`]: `InactiveExitTimestamp` is when that start
/// began, `ActiveEnterTimestamp` when the unit last became active (0 if it
/// never did, an older time if only an earlier start got there).
pub fn became_active(properties: &[(String, String)]) -> Result<bool> {
    let value = |name: &str| -> Result<u64> {
        let (_, v) = properties
            .iter()
            .find(|(k, _)| k == name)
            .ok_or_else(|| Error::internal(format!("systemctl show gave no {name}")))?;
        v.trim()
            .parse()
            .map_err(|_| Error::internal(format!("systemctl show: {name}={v} is not a number")))
    };
    let entered = value(ACTIVATION_PROPERTIES[0])?;
    let started = value(ACTIVATION_PROPERTIES[1])?;
    Ok(entered != 0 && entered >= started)
}

/// What the hook needs from the machine; faked in tests.
pub trait Env {
    /// Held while it is this hook's turn (dropped at the end).
    type Turn;
    /// leger-backup's own operation on the deployment, if one is running.
    fn operation_in_progress(&self) -> Option<OwnOperation>;
    /// The last time a leger hook of the deployment was told `--no-backup`.
    fn last_declined(&self) -> Option<Event>;
    /// Whether the service that stopped became active in its latest start.
    fn stopped_unit_became_active(&self) -> Result<bool>;
    /// `is-system-running` of the manager.
    fn manager_state(&self) -> Result<String>;
    /// States of `units`, in order.
    fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>>;
    /// Wait up to `wait` for this deployment's hook turn; `None` if another
    /// hook still has it then.
    fn take_turn(&self, wait: Duration) -> Result<Option<Self::Turn>>;
    /// The backup of the deployment that finished last.
    fn newest_backup(&self) -> Result<Option<Summary>>;
    /// Whether the deployment lock is free right now (checked without waiting).
    fn lock_is_free(&self) -> std::result::Result<(), String>;
    /// Take the backup; its ID.
    fn create_backup(&self) -> Result<String>;
    /// The time.
    fn now(&self) -> DateTime<Utc>;
}

/// Decide, and back up when every check passes. `others` are the
/// deployment's hooked services except the one that stopped.
pub fn run_hook<E: Env>(env: &E, policy: &Policy, others: &[String]) -> HookOutcome {
    if !policy.enabled {
        return HookOutcome::Skipped(
            "automatic backups are off for this deployment (config auto.enabled / auto.deployments)"
                .to_owned(),
        );
    }
    if let Some(op) = env.operation_in_progress() {
        return skip_for_own_operation(&op);
    }
    if let Some(why) = declined_skip(env.now(), env.last_declined().as_ref(), policy.coalesce) {
        return HookOutcome::Skipped(why);
    }
    match env.manager_state() {
        Ok(state) => {
            if let Some(why) = shutdown_skip(&state, policy.on_shutdown) {
                return HookOutcome::Skipped(why);
            }
        }
        // Cannot tell: a backup is better than none.
        Err(err) => crate::ui::note(format!(
            "leger-backup stop-hook: cannot ask the manager's state ({}); going on",
            err.message
        )),
    }
    if let Some(why) = never_active_skip(env) {
        return HookOutcome::Skipped(why);
    }
    let states = match env.unit_states(others) {
        Ok(states) => states,
        Err(err) => {
            return HookOutcome::Failed(format!(
                "cannot read the state of the other services: {}",
                err.message
            ))
        }
    };
    let pairs: Vec<(String, UnitState)> = others.iter().cloned().zip(states).collect();
    if let Some(why) = not_down_reason(&pairs) {
        return HookOutcome::Skipped(why);
    }
    let _turn = match env.take_turn(policy.turn_wait) {
        Ok(Some(turn)) => turn,
        Ok(None) => {
            return HookOutcome::Skipped(format!(
                "another stop hook of this deployment is still running after {}s",
                policy.turn_wait.as_secs()
            ))
        }
        Err(err) => return HookOutcome::Failed(err.message),
    };
    // An operation may have begun while we waited.
    if let Some(op) = env.operation_in_progress() {
        return skip_for_own_operation(&op);
    }
    match env.newest_backup() {
        Ok(newest) => {
            if let Some(why) = timing_skip(
                env.now(),
                newest.as_ref(),
                policy.coalesce,
                policy.min_interval,
            ) {
                return HookOutcome::Skipped(why);
            }
        }
        Err(err) => {
            return HookOutcome::Failed(format!(
                "cannot read the backup directory: {}",
                err.message
            ))
        }
    }
    if let Err(why) = env.lock_is_free() {
        return HookOutcome::Skipped(format!("another leger-backup operation is running: {why}"));
    }
    match env.create_backup() {
        Ok(id) => HookOutcome::BackedUp(id),
        Err(err) => HookOutcome::Failed(match err.hint {
            Some(hint) => format!("{} (hint: {hint})", err.message),
            None => err.message,
        }),
    }
}

/// Skip when the service that stopped never became active in this start;
/// when that cannot be told, go on (a backup is better than none).
fn never_active_skip<E: Env>(env: &E) -> Option<String> {
    match env.stopped_unit_became_active() {
        Ok(true) => None,
        Ok(false) => Some(
            "the service never became active in this start (its start failed or was \
             cancelled): nothing ran that needs a backup"
                .to_owned(),
        ),
        Err(err) => {
            crate::ui::note(format!(
                "leger-backup stop-hook: cannot tell whether the service ran ({}); going on",
                err.message
            ));
            None
        }
    }
}

fn skip_for_own_operation(op: &OwnOperation) -> HookOutcome {
    HookOutcome::Skipped(format!(
        "leger-backup's own {} (pid {}) is in progress on this deployment: the stop is its own, or its backup covers it",
        op.operation, op.pid
    ))
}

/// The real machine.
pub struct SystemEnv<'a> {
    /// Paths, settings, runners.
    pub ctx: &'a Context,
    /// The deployment whose service stopped.
    pub deployment: &'a Deployment,
    /// The service that stopped (`%n`).
    pub unit: &'a str,
    /// How that service's stop ended, when it failed (recorded in the backup).
    pub stop_result: Option<StopResult>,
}

impl Env for SystemEnv<'_> {
    type Turn = FileLock;

    fn operation_in_progress(&self) -> Option<OwnOperation> {
        own_operation::in_progress(&self.ctx.layout.state_dir, &self.deployment.name)
    }

    fn last_declined(&self) -> Option<Event> {
        record::load(&self.ctx.layout.state_dir, &self.deployment.name).last_declined
    }

    fn stopped_unit_became_active(&self) -> Result<bool> {
        let systemctl = crate::systemd::Systemctl::new(self.ctx.layout.scope);
        became_active(&systemctl.show(self.unit, &ACTIVATION_PROPERTIES)?)
    }

    fn manager_state(&self) -> Result<String> {
        self.ctx.systemctl.system_state()
    }

    fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>> {
        let active = self.ctx.systemctl.active_states(units)?;
        let mut states = Vec::with_capacity(units.len());
        for (unit, active) in units.iter().zip(active) {
            let sub = if active == "deactivating" {
                self.ctx.systemctl.sub_state(unit)?
            } else {
                String::new()
            };
            states.push(UnitState { active, sub });
        }
        Ok(states)
    }

    fn take_turn(&self, wait: Duration) -> Result<Option<FileLock>> {
        let path = self
            .ctx
            .layout
            .state_dir
            .join("auto")
            .join(format!("{}.hook.lock", self.deployment.name));
        file_lock::lock(&path, wait)
    }

    fn newest_backup(&self) -> Result<Option<Summary>> {
        let all = history::read_dir(self.ctx.backup_dir())?;
        Ok(history::newest(&all, &self.deployment.name).cloned())
    }

    fn lock_is_free(&self) -> std::result::Result<(), String> {
        DeploymentLock::acquire(
            &self.ctx.layout.state_dir,
            &self.deployment.name,
            Duration::ZERO,
        )
        .map(drop)
        .map_err(|e| e.message)
    }

    fn create_backup(&self) -> Result<String> {
        let options = CreateOptions {
            reason: REASON.to_owned(),
            live: false,
            wait: Duration::ZERO,
            services_already_stopped: true,
            progress: false,
            stop_result: self.stop_result.clone(),
            hold_aside: Default::default(),
            destination: Default::default(),
        };
        let trigger = "stop-hook";
        Ok(super::targets::automatic_backup(self.ctx, self.deployment, &options, trigger)?.id)
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Log an outcome to stderr (the journal, under the unit) and record it.
/// Returns the error to exit with on failure.
pub fn report(
    state_dir: &std::path::Path,
    deployment: &str,
    trigger: &str,
    outcome: &HookOutcome,
) -> Result<()> {
    let (kind, message, backup_id) = match outcome {
        HookOutcome::Skipped(why) => (Outcome::Skipped, why.clone(), None),
        HookOutcome::Failed(why) => (Outcome::Failed, why.clone(), None),
        HookOutcome::BackedUp(id) => (
            Outcome::BackedUp,
            format!("backup {id} taken"),
            Some(id.clone()),
        ),
    };
    let word = match kind {
        Outcome::Skipped | Outcome::Declined => "no backup",
        Outcome::Failed => "backup FAILED",
        Outcome::BackedUp => "backed up",
    };
    crate::ui::note(format!(
        "leger-backup {trigger}: {deployment}: {word}: {message}"
    ));
    let event = Event {
        time: Utc::now(),
        trigger: trigger.to_owned(),
        message: message.clone(),
        backup_id,
    };
    if let Err(err) = record::store(state_dir, deployment, kind, event) {
        crate::ui::note(format!(
            "leger-backup {trigger}: {deployment}: cannot record this: {}",
            err.message
        ));
    }
    match outcome {
        HookOutcome::Failed(why) => Err(Error::internal(format!(
            "automatic backup of {deployment} failed: {why}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::metadata::BackupType;
    use std::cell::{Cell, RefCell};

    fn st(active: &str, sub: &str) -> UnitState {
        UnitState {
            active: active.into(),
            sub: sub.into(),
        }
    }

    fn summary(finished_secs_ago: i64, now: DateTime<Utc>) -> Summary {
        Summary {
            id: "web-1".into(),
            deployment: "web".into(),
            created_at: now - chrono::Duration::seconds(finished_secs_ago + 5),
            finished_at: now - chrono::Duration::seconds(finished_secs_ago),
            backup_type: BackupType::Automatic,
            reason: "before-remove".into(),
            size: 1,
        }
    }

    #[test]
    fn shutdown() {
        assert!(shutdown_skip("stopping", false).is_some());
        assert_eq!(shutdown_skip("stopping", true), None);
        assert_eq!(shutdown_skip("running", false), None);
        assert_eq!(shutdown_skip("degraded", false), None);
    }

    #[test]
    fn fully_down() {
        assert_eq!(not_down_reason(&[]), None);
        let down = [
            ("a.service".to_owned(), st("inactive", "")),
            ("b.service".to_owned(), st("failed", "")),
            ("c.service".to_owned(), st("deactivating", "stop-post")),
        ];
        assert_eq!(not_down_reason(&down), None);
        for up in ["active", "activating", "reloading"] {
            let why = not_down_reason(&[
                ("a.service".to_owned(), st("inactive", "")),
                ("db.service".to_owned(), st(up, "")),
            ])
            .unwrap();
            assert!(why.contains("db.service still running"), "{why}");
        }
        let why = not_down_reason(&[("db.service".to_owned(), st("deactivating", "stop-sigterm"))])
            .unwrap();
        assert!(why.contains("its own stop hook"), "{why}");
    }

    #[test]
    fn coalesce_and_min_interval() {
        let now = Utc::now();
        let c = Seconds(60);
        let m = Seconds(600);
        assert_eq!(timing_skip(now, None, c, m), None);
        let why = timing_skip(now, Some(&summary(5, now)), c, m).unwrap();
        assert!(why.starts_with("coalesced"), "{why}");
        let why = timing_skip(now, Some(&summary(120, now)), c, m).unwrap();
        assert!(why.starts_with("rate limited"), "{why}");
        assert_eq!(timing_skip(now, Some(&summary(601, now)), c, m), None);
        // Both off.
        assert_eq!(
            timing_skip(now, Some(&summary(0, now)), Seconds(0), Seconds(0)),
            None
        );
        // A clock step backwards counts as "just now".
        assert!(timing_skip(now, Some(&summary(-30, now)), c, m).is_some());
    }

    /// A scripted machine.
    struct Fake {
        op: RefCell<Vec<Option<OwnOperation>>>,
        declined: Option<Event>,
        became_active: bool,
        manager: &'static str,
        states: Vec<UnitState>,
        turn: bool,
        newest: Option<Summary>,
        lock_free: bool,
        create_result: std::result::Result<String, String>,
        created: Cell<u32>,
        now: DateTime<Utc>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                op: RefCell::new(Vec::new()),
                declined: None,
                became_active: true,
                manager: "running",
                states: vec![st("inactive", "")],
                turn: true,
                newest: None,
                lock_free: true,
                create_result: Ok("web-2".into()),
                created: Cell::new(0),
                now: Utc::now(),
            }
        }
    }

    impl Env for Fake {
        type Turn = ();
        fn operation_in_progress(&self) -> Option<OwnOperation> {
            let mut ops = self.op.borrow_mut();
            if ops.is_empty() {
                None
            } else {
                ops.remove(0)
            }
        }
        fn last_declined(&self) -> Option<Event> {
            self.declined.clone()
        }
        fn stopped_unit_became_active(&self) -> Result<bool> {
            Ok(self.became_active)
        }
        fn manager_state(&self) -> Result<String> {
            Ok(self.manager.to_owned())
        }
        fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>> {
            assert_eq!(units.len(), self.states.len());
            Ok(self.states.clone())
        }
        fn take_turn(&self, _wait: Duration) -> Result<Option<()>> {
            Ok(self.turn.then_some(()))
        }
        fn newest_backup(&self) -> Result<Option<Summary>> {
            Ok(self.newest.clone())
        }
        fn lock_is_free(&self) -> std::result::Result<(), String> {
            if self.lock_free {
                Ok(())
            } else {
                Err("process 7 holds it".into())
            }
        }
        fn create_backup(&self) -> Result<String> {
            self.created.set(self.created.get() + 1);
            self.create_result.clone().map_err(Error::internal)
        }
        fn now(&self) -> DateTime<Utc> {
            self.now
        }
    }

    fn policy() -> Policy {
        Policy {
            enabled: true,
            on_shutdown: false,
            coalesce: Seconds(60),
            min_interval: Seconds(600),
            turn_wait: Duration::from_secs(1),
        }
    }

    fn op() -> OwnOperation {
        OwnOperation {
            pid: 42,
            start_time: None,
            operation: "create".into(),
            started_at: Utc::now(),
        }
    }

    fn others() -> Vec<String> {
        vec!["db.service".to_owned()]
    }

    #[test]
    fn backs_up_when_all_checks_pass() {
        let fake = Fake::new();
        assert_eq!(
            run_hook(&fake, &policy(), &others()),
            HookOutcome::BackedUp("web-2".into())
        );
        assert_eq!(fake.created.get(), 1);
    }

    #[test]
    fn each_check_skips_without_creating() {
        let skipped = |fake: Fake, policy: Policy, needle: &str| {
            match run_hook(&fake, &policy, &others()) {
                HookOutcome::Skipped(why) => assert!(why.contains(needle), "{why}"),
                other => panic!("expected skip with {needle:?}, got {other:?}"),
            }
            assert_eq!(fake.created.get(), 0);
        };
        skipped(
            Fake::new(),
            Policy {
                enabled: false,
                ..policy()
            },
            "off",
        );
        let fake = Fake::new();
        fake.op.borrow_mut().push(Some(op()));
        skipped(fake, policy(), "own create (pid 42) is in progress");
        // An operation that began while this hook waited for its turn.
        let fake = Fake::new();
        fake.op.borrow_mut().extend([None, Some(op())]);
        skipped(fake, policy(), "own create");
        let declined = |secs_ago: i64| Event {
            time: Utc::now() - chrono::Duration::seconds(secs_ago),
            trigger: "leger pre-remove".into(),
            message: "LEGER_NO_BACKUP=1".into(),
            backup_id: None,
        };
        skipped(
            Fake {
                declined: Some(declined(5)),
                ..Fake::new()
            },
            policy(),
            "leger pre-remove ran with --no-backup",
        );
        {
            let fake = Fake {
                declined: Some(declined(120)),
                ..Fake::new()
            };
            assert!(matches!(
                run_hook(&fake, &policy(), &others()),
                HookOutcome::BackedUp(_)
            ));
        }
        skipped(
            Fake {
                manager: "stopping",
                ..Fake::new()
            },
            policy(),
            "stopping",
        );
        skipped(
            Fake {
                states: vec![st("active", "")],
                ..Fake::new()
            },
            policy(),
            "db.service still running",
        );
        skipped(
            Fake {
                turn: false,
                ..Fake::new()
            },
            policy(),
            "another stop hook",
        );
        let now = Utc::now();
        skipped(
            Fake {
                newest: Some(summary(3, now)),
                now,
                ..Fake::new()
            },
            policy(),
            "coalesced",
        );
        skipped(
            Fake {
                newest: Some(summary(300, now)),
                now,
                ..Fake::new()
            },
            policy(),
            "rate limited",
        );
        skipped(
            Fake {
                lock_free: false,
                ..Fake::new()
            },
            policy(),
            "process 7",
        );
    }

    fn props(entered: &str, started: &str) -> Vec<(String, String)> {
        vec![
            ("ActiveEnterTimestampMonotonic".into(), entered.into()),
            ("InactiveExitTimestampMonotonic".into(), started.into()),
        ]
    }

    #[test]
    fn activation_is_judged_from_the_latest_start() {
        // Stopped while running.
        assert!(became_active(&props("2000", "1000")).unwrap());
        // Its first start failed: never active.
        assert!(!became_active(&props("0", "1000")).unwrap());
        // Ran once, then a restart failed: the earlier run does not count.
        assert!(!became_active(&props("2000", "5000")).unwrap());
        assert!(became_active(&props("x", "1")).is_err());
        assert!(became_active(&props("1", "1")[..1]).is_err());
    }

    #[test]
    fn a_service_whose_start_failed_gets_no_backup() {
        let fake = Fake {
            became_active: false,
            ..Fake::new()
        };
        match run_hook(&fake, &policy(), &others()) {
            HookOutcome::Skipped(why) => assert!(why.contains("never became active"), "{why}"),
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(fake.created.get(), 0);
        // At shutdown (on_shutdown off) the cheaper manager check decides.
        let fake = Fake {
            became_active: false,
            manager: "stopping",
            ..Fake::new()
        };
        match run_hook(&fake, &policy(), &others()) {
            HookOutcome::Skipped(why) => assert!(why.contains("auto.on_shutdown"), "{why}"),
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn shutdown_backup_when_asked() {
        let fake = Fake {
            manager: "stopping",
            ..Fake::new()
        };
        let p = Policy {
            on_shutdown: true,
            ..policy()
        };
        assert!(matches!(
            run_hook(&fake, &p, &others()),
            HookOutcome::BackedUp(_)
        ));
    }

    #[test]
    fn failure_is_reported() {
        let fake = Fake {
            create_result: Err("podman exploded".into()),
            ..Fake::new()
        };
        assert_eq!(
            run_hook(&fake, &policy(), &others()),
            HookOutcome::Failed("podman exploded".into())
        );
    }

    #[test]
    fn report_records_and_fails_only_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let trigger = "stop-hook web.service";
        report(
            tmp.path(),
            "web",
            trigger,
            &HookOutcome::Skipped("x".into()),
        )
        .unwrap();
        report(
            tmp.path(),
            "web",
            trigger,
            &HookOutcome::BackedUp("web-1".into()),
        )
        .unwrap();
        let err = report(tmp.path(), "web", trigger, &HookOutcome::Failed("y".into())).unwrap_err();
        assert!(err.message.contains("failed: y"));
        let r = record::load(tmp.path(), "web");
        assert_eq!(r.last_skip.unwrap().message, "x");
        assert_eq!(r.last_success.unwrap().backup_id.as_deref(), Some("web-1"));
        assert_eq!(r.last_failure.unwrap().message, "y");
    }
}
