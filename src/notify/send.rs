//! What each channel gets, within the time limits. The notifier never
//! fails: a delivery that does not go through becomes a warning for the
//! caller to log, its text naming the channel and the URL without secrets.

use std::time::{Duration, Instant};

use super::{Event, Http, NotifyConfig, NotifyUrl, When};

/// The longest one request may take: a receiver that hangs holds a stop
/// hook up by this much at most.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// The longest all the notifications of one backup may take together;
/// past it the rest are dropped (and that is logged).
pub const TOTAL_LIMIT: Duration = Duration::from_secs(15);

/// Error texts sent are cut to this many characters: a notification says
/// what failed, the journal has the rest.
const ERROR_MAX: usize = 1000;

/// Sends the notifications of one backup (to one or more targets).
pub struct Notifier<'a> {
    config: &'a NotifyConfig,
    http: &'a dyn Http,
    left: Duration,
    warnings: Vec<String>,
}

impl<'a> Notifier<'a> {
    /// A notifier with the whole [`TOTAL_LIMIT`] ahead of it.
    pub fn new(config: &'a NotifyConfig, http: &'a dyn Http) -> Notifier<'a> {
        Notifier {
            config,
            http,
            left: TOTAL_LIMIT,
            warnings: Vec::new(),
        }
    }

    /// Before the backup: Healthchecks' `/start` (which also times it).
    pub fn started(&mut self) {
        if let Some(url) = &self.config.healthchecks {
            self.deliver("healthchecks", &url.with_suffix("/start"), &[], b"");
        }
    }

    /// One target's outcome: the webhook and ntfy, if `on` selects it.
    pub fn finished(&mut self, event: &Event) {
        if !self.config.on.contains(&event.event) {
            return;
        }
        if let Some(url) = &self.config.webhook {
            let body = serde_json::to_vec(event).unwrap_or_default();
            let headers = [("Content-Type", "application/json".to_owned())];
            self.deliver("webhook", url, &headers, &body);
        }
        if let Some(url) = &self.config.ntfy {
            let (headers, text) = ntfy_message(event);
            self.deliver("ntfy", url, &headers, text.as_bytes());
        }
    }

    /// After every target: Healthchecks' success ping when all of them got
    /// the backup, `/fail` otherwise, with one line per target.
    pub fn concluded(&mut self, events: &[Event]) {
        let Some(url) = &self.config.healthchecks else {
            return;
        };
        let failed = events.iter().any(|e| e.event == When::Failure);
        let url = if failed {
            url.with_suffix("/fail")
        } else {
            url.clone()
        };
        let body: Vec<String> = events.iter().map(summary).collect();
        let headers = [("Content-Type", "text/plain; charset=utf-8".to_owned())];
        self.deliver("healthchecks", &url, &headers, body.join("\n").as_bytes());
    }

    /// The deliveries that failed, as messages to log.
    pub fn into_warnings(self) -> Vec<String> {
        self.warnings
    }

    /// One request within what is left of the time, judged by its status.
    fn deliver(&mut self, channel: &str, url: &NotifyUrl, headers: &[(&str, String)], body: &[u8]) {
        let limit = REQUEST_LIMIT.min(self.left);
        let outcome = if limit.is_zero() {
            Err(format!(
                "not sent: the notifications of this backup took their {} s already",
                TOTAL_LIMIT.as_secs()
            ))
        } else {
            let start = Instant::now();
            let result = self.http.post(url.as_str(), headers, body, limit);
            self.left = self.left.saturating_sub(start.elapsed());
            match result {
                Ok(status) if (200..300).contains(&status) => Ok(()),
                Ok(status) => Err(format!("the server answered HTTP {status}")),
                Err(why) => Err(why),
            }
        };
        if let Err(why) = outcome {
            let message = format!("notification to {channel} {} failed: {why}", url.shown());
            self.warnings.push(self.config.scrub(&message));
        }
    }
}

/// An ntfy message: its headers (title, priority, tags) and text.
fn ntfy_message(event: &Event) -> (Vec<(&'static str, String)>, String) {
    let (title, priority, tags) = match event.event {
        When::Failure => (
            format!("Backup of {} FAILED", event.deployment),
            "high",
            "warning",
        ),
        When::Success => (
            format!("{} backed up", event.deployment),
            "default",
            "white_check_mark",
        ),
    };
    let headers = vec![
        ("Title", header_safe(&title)),
        ("Priority", priority.to_owned()),
        ("Tags", tags.to_owned()),
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
    ];
    (headers, summary(event))
}

/// One line on a backup: what, where, why, how long, and how it ended.
fn summary(event: &Event) -> String {
    let head = format!(
        "{} to {} ({}, {:.1} s)",
        event.deployment, event.target, event.reason, event.duration_seconds
    );
    match (&event.id, &event.error) {
        (_, Some(error)) => format!("{head}: backup failed: {}", cut(error)),
        (Some(id), None) => format!("{head}: backup {id} taken"),
        (None, None) => head,
    }
}

/// At most [`ERROR_MAX`] characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(ERROR_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An HTTP header value: printable ASCII only (a deployment name is, but
/// a header is no place to find out).
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A request as the fake received it: URL, headers, body, time limit.
    type Sent = (String, Vec<(String, String)>, String, Duration);

    /// A fake receiver: records each request and answers with a status or
    /// an error.
    #[derive(Default)]
    struct Fake {
        sent: RefCell<Vec<Sent>>,
        answer: Option<Result<u16, String>>,
    }

    impl Http for Fake {
        fn post(
            &self,
            url: &str,
            headers: &[(&str, String)],
            body: &[u8],
            limit: Duration,
        ) -> Result<u16, String> {
            let headers = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let body = String::from_utf8_lossy(body).into_owned();
            self.sent
                .borrow_mut()
                .push((url.to_owned(), headers, body, limit));
            self.answer.clone().unwrap_or(Ok(200))
        }
    }

    impl Fake {
        fn urls(&self) -> Vec<String> {
            self.sent.borrow().iter().map(|s| s.0.clone()).collect()
        }
    }

    fn url(text: &str) -> Option<NotifyUrl> {
        Some(NotifyUrl::parse(text).unwrap())
    }

    fn all_channels(on: Vec<When>) -> NotifyConfig {
        NotifyConfig {
            webhook: url("http://h/hook"),
            ntfy: url("https://ntfy.example/backups"),
            healthchecks: url("https://hc.example/ping/abc"),
            on,
        }
    }

    fn event(kind: When) -> Event {
        Event {
            event: kind,
            deployment: "web".into(),
            id: (kind == When::Success).then(|| "web-2026-01-01-120000".into()),
            reason: "on-stop".into(),
            target: "local".into(),
            error: (kind == When::Failure).then(|| "volume data: no space left".into()),
            duration_seconds: 1.25,
        }
    }

    fn run(config: &NotifyConfig, fake: &Fake, events: &[Event]) -> Vec<String> {
        let mut n = Notifier::new(config, fake);
        n.started();
        for e in events {
            n.finished(e);
        }
        n.concluded(events);
        n.into_warnings()
    }

    #[test]
    fn a_failure_reaches_every_channel_by_default() {
        let config = all_channels(NotifyConfig::default().on);
        let fake = Fake::default();
        let warnings = run(&config, &fake, &[event(When::Failure)]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            fake.urls(),
            [
                "https://hc.example/ping/abc/start",
                "http://h/hook",
                "https://ntfy.example/backups",
                "https://hc.example/ping/abc/fail",
            ]
        );
        let sent = fake.sent.borrow();
        let json: serde_json::Value = serde_json::from_str(&sent[1].2).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "failure", "deployment": "web", "id": null,
                "reason": "on-stop", "target": "local",
                "error": "volume data: no space left", "duration_seconds": 1.25})
        );
        let ntfy_headers = &sent[2].1;
        assert!(ntfy_headers.contains(&("Priority".into(), "high".into())));
        assert!(ntfy_headers.contains(&("Title".into(), "Backup of web FAILED".into())));
        assert!(sent[2].2.contains("no space left"), "{}", sent[2].2);
        assert!(sent[3].2.contains("web to local"), "{}", sent[3].2);
        assert!(sent.iter().all(|s| s.3 <= REQUEST_LIMIT));
    }

    #[test]
    fn a_success_pings_healthchecks_but_tells_the_others_only_when_asked() {
        let fake = Fake::default();
        run(
            &all_channels(vec![When::Failure]),
            &fake,
            &[event(When::Success)],
        );
        assert_eq!(
            fake.urls(),
            [
                "https://hc.example/ping/abc/start",
                "https://hc.example/ping/abc"
            ]
        );
        let fake = Fake::default();
        run(
            &all_channels(vec![When::Success]),
            &fake,
            &[event(When::Success)],
        );
        assert_eq!(fake.urls().len(), 4);
        let sent = fake.sent.borrow();
        let json: serde_json::Value = serde_json::from_str(&sent[1].2).unwrap();
        assert_eq!(json["id"], "web-2026-01-01-120000");
        assert_eq!(json["error"], serde_json::Value::Null);
        assert!(sent[2].1.contains(&("Priority".into(), "default".into())));
    }

    #[test]
    fn one_failed_target_of_two_fails_the_check() {
        let fake = Fake::default();
        let mut remote = event(When::Failure);
        remote.target = "offsite".into();
        let config = NotifyConfig {
            healthchecks: url("https://hc.example/ping/abc"),
            ..NotifyConfig::default()
        };
        run(&config, &fake, &[event(When::Success), remote]);
        let sent = fake.sent.borrow();
        assert_eq!(sent.last().unwrap().0, "https://hc.example/ping/abc/fail");
        let body = &sent.last().unwrap().2;
        assert!(
            body.contains("web to local (on-stop, 1.2 s): backup web-2026"),
            "{body}"
        );
        assert!(body.contains("web to offsite"), "{body}");
    }

    #[test]
    fn failed_deliveries_are_warnings_without_secrets() {
        let config = NotifyConfig {
            webhook: url("http://me:hunter22@h/hook?token=s3cret"),
            ..NotifyConfig::default()
        };
        for (answer, expected) in [
            (Ok(500), "the server answered HTTP 500"),
            (
                Err("connect to http://me:hunter22@h/hook?token=s3cret refused".into()),
                "connect to http://***@h/hook?*** refused",
            ),
        ] {
            let fake = Fake {
                answer: Some(answer),
                ..Fake::default()
            };
            let warnings = run(&config, &fake, &[event(When::Failure)]);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            let w = &warnings[0];
            assert!(
                w.starts_with("notification to webhook http://***@h/hook?*** failed"),
                "{w}"
            );
            assert!(w.contains(expected), "{w}");
            assert!(!w.contains("hunter22") && !w.contains("s3cret"), "{w}");
        }
    }

    #[test]
    fn the_time_limit_is_shared_by_all_requests() {
        /// A receiver that always takes the whole limit.
        struct Hanging(RefCell<Vec<Duration>>);
        impl Http for Hanging {
            fn post(
                &self,
                _: &str,
                _: &[(&str, String)],
                _: &[u8],
                limit: Duration,
            ) -> Result<u16, String> {
                self.0.borrow_mut().push(limit);
                std::thread::sleep(limit.min(Duration::from_millis(5)));
                Err("no answer".into())
            }
        }
        let hanging = Hanging(RefCell::new(Vec::new()));
        let config = all_channels(vec![When::Failure]);
        let mut n = Notifier::new(&config, &hanging);
        n.left = Duration::from_millis(12);
        n.started();
        let events = [event(When::Failure)];
        n.finished(&events[0]);
        n.concluded(&events);
        let warnings = n.into_warnings();
        let limits = hanging.0.borrow();
        assert!(limits.len() < 4, "{limits:?}");
        assert!(
            limits.iter().all(|l| *l <= Duration::from_millis(12)),
            "{limits:?}"
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings.last().unwrap().contains("not sent"),
            "{warnings:?}"
        );
    }

    #[test]
    fn long_errors_are_cut_and_headers_stay_ascii() {
        let mut e = event(When::Failure);
        e.error = Some("x".repeat(5000));
        e.deployment = "wéb".into();
        let (headers, text) = ntfy_message(&e);
        assert!(text.chars().count() < ERROR_MAX + 100, "{}", text.len());
        assert_eq!(headers[0].1, "Backup of w?b FAILED");
    }
}
