//! A backup to its targets with its notifications around it: Healthchecks
//! hears of the start, each target's outcome is an event, and the
//! deliveries that failed are logged — the backup's results are the same
//! as without notifications, whatever the receivers do.

use std::time::{Duration, Instant};

use super::{Event, Http, Notifier, NotifyConfig, UreqHttp, When};
use crate::backup::create::{self, CreateOptions, TargetResults};
use crate::context::Context;
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::ui;

/// Back `deployment` up to `targets`, notifying `backup.notify` when
/// `notify` is set (and a channel is configured).
pub fn backup_to_targets(
    ctx: &Context,
    deployment: &Deployment,
    options: &CreateOptions,
    targets: &[String],
    notify: bool,
) -> TargetResults {
    let config = &ctx.config.backup.notify;
    if !notify || !config.is_set() {
        return create::create_to_targets(ctx, deployment, options, targets);
    }
    let http = UreqHttp::new();
    let backup = |target: &String| {
        let one = std::slice::from_ref(target);
        create::create_to_targets(ctx, deployment, options, one)
    };
    let (results, warnings) = notified(config, &http, targets, backup, |target, one, took| {
        event_of(config, deployment, options, target, one, took)
    });
    log_warnings(deployment, warnings);
    results
}

/// An automatic backup failed before any target was tried (a `before:`
/// command of mode `dump` failed): each target hears of a failure, as it
/// would of a failed backup, Healthchecks of a start and a `/fail`.
pub fn no_backup_taken(
    ctx: &Context,
    deployment: &Deployment,
    reason: &str,
    error: &Error,
    took: Duration,
) {
    let config = &ctx.config.backup.notify;
    if !config.is_set() {
        return;
    }
    let targets =
        create::targets(ctx, &[]).unwrap_or_else(|_| vec![crate::repository::LOCAL.to_owned()]);
    let events: Vec<Event> = targets
        .iter()
        .map(|target| Event {
            event: When::Failure,
            deployment: deployment.name.clone(),
            id: None,
            reason: reason.to_owned(),
            target: target.clone(),
            error: Some(config.scrub(&error.message)),
            duration_seconds: seconds(took),
        })
        .collect();
    let warnings = announce(config, &UreqHttp::new(), &events);
    log_warnings(deployment, warnings);
}

/// Send `events`, already decided, as one backup's notifications; the
/// delivery warnings.
fn announce(config: &NotifyConfig, http: &dyn Http, events: &[Event]) -> Vec<String> {
    let mut notifier = Notifier::new(config, http);
    notifier.started();
    for event in events {
        notifier.finished(event);
    }
    notifier.concluded(events);
    notifier.into_warnings()
}

fn log_warnings(deployment: &Deployment, warnings: Vec<String>) {
    for warning in warnings {
        ui::warn(format!("leger-backup: {}: {warning}", deployment.name));
    }
}

/// A duration as the events give it: seconds, to the millisecond.
fn seconds(took: Duration) -> f64 {
    (took.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `create --notify` asks for notifications: refused, before anything is
/// backed up, when there is nowhere to send them.
pub fn check_requested(ctx: &Context) -> Result<()> {
    if ctx.config.backup.notify.is_set() {
        return Ok(());
    }
    Err(Error::user(format!(
        "--notify: {} sets no notification channel (backup.notify)",
        ctx.config.file.display()
    ))
    .with_hint("set `backup.notify.webhook`, `ntfy` or `healthchecks` (see the README's \"Notifications\"), or drop --notify"))
}

/// Run `backup` for each target between the notifier's start and its
/// conclusion; the results of all targets and the delivery warnings.
fn notified(
    config: &NotifyConfig,
    http: &dyn Http,
    targets: &[String],
    backup: impl Fn(&String) -> TargetResults,
    event: impl Fn(&str, &TargetResults, Duration) -> Event,
) -> (TargetResults, Vec<String>) {
    let mut notifier = Notifier::new(config, http);
    notifier.started();
    let mut results = TargetResults::default();
    let mut events = Vec::new();
    for target in targets {
        let start = Instant::now();
        let one = backup(target);
        let e = event(target, &one, start.elapsed());
        notifier.finished(&e);
        events.push(e);
        results.done.extend(one.done);
        results.failed.extend(one.failed);
    }
    notifier.concluded(&events);
    (results, notifier.into_warnings())
}

/// The event of the backup to `target` whose results are `one`.
fn event_of(
    config: &NotifyConfig,
    deployment: &Deployment,
    options: &CreateOptions,
    target: &str,
    one: &TargetResults,
    took: Duration,
) -> Event {
    let error = one.failed.first().map(|(_, e)| config.scrub(&e.message));
    Event {
        event: if error.is_some() || one.done.is_empty() {
            When::Failure
        } else {
            When::Success
        },
        deployment: deployment.name.clone(),
        id: one.first().map(|m| m.id.clone()),
        reason: options.reason.clone(),
        target: target.to_owned(),
        error,
        duration_seconds: seconds(took),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::backup::store::tests::metadata;
    use crate::notify::NotifyUrl;

    /// A receiver that refuses everything, recording what it was sent.
    struct Down(RefCell<Vec<String>>);

    impl Http for Down {
        fn post(
            &self,
            url: &str,
            _: &[(&str, String)],
            _: &[u8],
            _: Duration,
        ) -> Result<u16, String> {
            self.0.borrow_mut().push(url.to_owned());
            Err("connection refused".into())
        }
    }

    #[test]
    fn receivers_that_are_down_change_nothing_of_the_backups() {
        let config = NotifyConfig {
            webhook: Some(NotifyUrl::parse("http://127.0.0.1:9/hook").unwrap()),
            healthchecks: Some(NotifyUrl::parse("http://127.0.0.1:9/hc").unwrap()),
            ..NotifyConfig::default()
        };
        let down = Down(RefCell::new(Vec::new()));
        let targets = ["local".to_owned(), "offsite".to_owned()];
        let ran = RefCell::new(Vec::new());
        let backup = |target: &String| {
            ran.borrow_mut().push(target.clone());
            let mut one = TargetResults::default();
            if target == "local" {
                one.done.push((target.clone(), metadata("web-1", "web", 1)));
            } else {
                one.failed
                    .push((target.clone(), Error::user("unreachable")));
            }
            one
        };
        let event = |target: &str, one: &TargetResults, _| Event {
            event: if one.done.is_empty() {
                When::Failure
            } else {
                When::Success
            },
            deployment: "web".into(),
            id: one.first().map(|m| m.id.clone()),
            reason: "on-stop".into(),
            target: target.into(),
            error: one.failed.first().map(|(_, e)| e.message.clone()),
            duration_seconds: 0.0,
        };
        let (results, warnings) = notified(&config, &down, &targets, backup, event);
        assert_eq!(*ran.borrow(), targets);
        assert_eq!(results.done.len(), 1);
        assert_eq!(results.failed.len(), 1);
        assert_eq!(
            *down.0.borrow(),
            [
                "http://127.0.0.1:9/hc/start",
                "http://127.0.0.1:9/hook",
                "http://127.0.0.1:9/hc/fail"
            ]
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[1].contains("webhook http://127.0.0.1:9/hook failed: connection refused"));
    }
}
