//! Notifications of backups (`backup.notify`): a webhook that gets a JSON
//! event, an ntfy topic that gets a message, a Healthchecks check that is
//! pinged when a backup starts and when it ends.
//!
//! Every automatic backup notifies (it has no one watching it), a manual
//! one with `create --notify`. A notification is a courtesy around the
//! backup, never part of it: each request is time-limited, all of them
//! together too, and a delivery that fails is logged, never an error of the
//! backup. No secret leaves in a message: the URLs' credentials and query
//! strings are hidden wherever a URL is shown, and error texts are scrubbed.

mod backup;
mod http;
mod send;

use serde::{Deserialize, Serialize, Serializer};

pub use backup::{backup_to_targets, check_requested, no_backup_taken};
pub use http::{Http, UreqHttp};
pub use send::{Notifier, REQUEST_LIMIT, TOTAL_LIMIT};

/// What a backup did, for `on:` and the event's `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// A backup (to one target) that failed.
    Failure,
    /// A backup (to one target) that was made.
    Success,
}

/// `backup.notify`: where notifications go and which ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// POSTed the JSON [`Event`] of each backup that `on` selects.
    #[serde(default)]
    pub webhook: Option<NotifyUrl>,
    /// An ntfy topic URL: a message for each backup that `on` selects.
    #[serde(default)]
    pub ntfy: Option<NotifyUrl>,
    /// A Healthchecks ping URL: `/start`, then success or `/fail`, for
    /// every notified backup whatever `on` says (a check that hears no
    /// success is what raises its alarm).
    #[serde(default)]
    pub healthchecks: Option<NotifyUrl>,
    /// Which outcomes the webhook and ntfy hear of: failures by default.
    #[serde(default = "default_on")]
    pub on: Vec<When>,
}

fn default_on() -> Vec<When> {
    vec![When::Failure]
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook: None,
            ntfy: None,
            healthchecks: None,
            on: default_on(),
        }
    }
}

impl NotifyConfig {
    /// Whether any channel is configured.
    pub fn is_set(&self) -> bool {
        self.urls().next().is_some()
    }

    fn urls(&self) -> impl Iterator<Item = &NotifyUrl> {
        [&self.webhook, &self.ntfy, &self.healthchecks]
            .into_iter()
            .flatten()
    }

    /// The `config show` rows of the channels set (URLs without secrets),
    /// and `on` when any is.
    pub fn rows(&self) -> Vec<(String, String)> {
        let channels = [
            ("webhook", &self.webhook),
            ("ntfy", &self.ntfy),
            ("healthchecks", &self.healthchecks),
        ];
        let mut rows: Vec<(String, String)> = channels
            .into_iter()
            .filter_map(|(key, url)| Some((format!("backup.notify.{key}"), url.as_ref()?.shown())))
            .collect();
        if !rows.is_empty() {
            let on: Vec<&str> = self
                .on
                .iter()
                .map(|w| match w {
                    When::Failure => "failure",
                    When::Success => "success",
                })
                .collect();
            rows.push(("backup.notify.on".to_owned(), on.join(", ")));
        }
        rows
    }

    /// `text` without the secrets of any configured URL: each URL as
    /// shown, and any password or query string left replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for url in self.urls() {
            out = out.replace(&url.0, &url.shown());
            for secret in url.secrets() {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

/// An `http://` or `https://` URL of a notification channel. Checked when
/// the config is read, so a typo is an error with its line; shown (in
/// messages and `config show`) without its credentials and query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyUrl(String);

/// Secrets shorter than this are not scrubbed from texts (a one-letter
/// password would make every message unreadable).
const SCRUB_MIN: usize = 4;

impl NotifyUrl {
    /// Check `text`: why it is no usable URL, without repeating its secrets.
    pub fn parse(text: &str) -> Result<NotifyUrl, String> {
        let url = NotifyUrl(text.trim().to_owned());
        let shown = url.shown();
        let bad = |why: &str| format!("invalid URL {shown:?}: {why}");
        if url.0.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains a space or a control character"));
        }
        let uri: ureq::http::Uri = url
            .0
            .parse()
            .map_err(|_| bad("not a URL (write http://host/path or https://host/path)"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("only http:// and https:// URLs can be notified")),
        }
        if uri.host().unwrap_or_default().is_empty() {
            return Err(bad("it names no host"));
        }
        Ok(url)
    }

    /// The URL to request (with its credentials: ureq sends them as basic
    /// authentication).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL for messages: `user:password@` and the query hidden.
    pub fn shown(&self) -> String {
        let (base, query) = split_query(&self.0);
        let base = crate::repository::secrets::redact_url(base);
        match query {
            Some(_) => format!("{base}?***"),
            None => base,
        }
    }

    /// This URL with `suffix` appended to its path (before any query):
    /// Healthchecks' `/start` and `/fail`.
    pub fn with_suffix(&self, suffix: &str) -> NotifyUrl {
        let (base, query) = split_query(&self.0);
        let mut out = format!("{}{suffix}", base.trim_end_matches('/'));
        if let Some(query) = query {
            out = format!("{out}?{query}");
        }
        NotifyUrl(out)
    }

    /// The password, the query string and each of its values (a token
    /// may appear alone in a text), when long enough to scrub.
    fn secrets(&self) -> impl Iterator<Item = &str> {
        let (base, query) = split_query(&self.0);
        let password = base.find("://").and_then(|start| {
            let rest = &base[start + 3..];
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            let userinfo = &authority[..authority.rfind('@')?];
            userinfo.split_once(':').map(|(_, p)| p)
        });
        let values = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|pair| pair.split_once('=').map(|(_, v)| v));
        [password, query]
            .into_iter()
            .flatten()
            .chain(values)
            .filter(|s| s.len() >= SCRUB_MIN)
    }
}

fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    }
}

impl<'de> Deserialize<'de> for NotifyUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        NotifyUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `config show --json` shows the URL as messages do, without secrets.
impl Serialize for NotifyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// One backup to one target, as the webhook gets it (exactly these keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `success` or `failure`.
    pub event: When,
    /// The deployment backed up.
    pub deployment: String,
    /// The backup's ID; null when it failed.
    pub id: Option<String>,
    /// Why it was taken (`on-stop`, `before-remove`, `manual`, ...).
    pub reason: String,
    /// Where it went: `local` or a repository's name.
    pub target: String,
    /// Why it failed (scrubbed of secrets); null when it was made.
    pub error: Option<String>,
    /// How long the backup to this target took.
    pub duration_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_secrets() {
        let url = NotifyUrl::parse("https://bob:hunter22@ntfy.example/topic?auth=tok3n").unwrap();
        assert_eq!(url.shown(), "https://***@ntfy.example/topic?***");
        assert_eq!(
            url.with_suffix("/fail").as_str(),
            "https://bob:hunter22@ntfy.example/topic/fail?auth=tok3n"
        );
        let hc = NotifyUrl::parse("http://127.0.0.1:8000/ping/uuid/").unwrap();
        assert_eq!(
            hc.with_suffix("/start").as_str(),
            "http://127.0.0.1:8000/ping/uuid/start"
        );
        assert_eq!(hc.shown(), "http://127.0.0.1:8000/ping/uuid/");
        for bad in [
            "ftp://h/x",
            "hc.example/uuid",
            "http:///x",
            "http://h/a b",
            "",
        ] {
            assert!(NotifyUrl::parse(bad).is_err(), "{bad}");
        }
        let err = NotifyUrl::parse("ftp://u:secretpw@h/").unwrap_err();
        assert!(!err.contains("secretpw"), "{err}");
    }

    #[test]
    fn scrub_hides_every_configured_secret() {
        let config = NotifyConfig {
            webhook: Some(NotifyUrl::parse("http://u:hunter22@h:1/hook?token=abcdef").unwrap()),
            ..NotifyConfig::default()
        };
        let text =
            config.scrub("POST http://u:hunter22@h:1/hook?token=abcdef failed; hunter22 abcdef");
        assert_eq!(text, "POST http://***@h:1/hook?*** failed; *** ***");
    }
}

#[cfg(test)]
mod config_tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::layout::Layout;

    fn parse(text: &str) -> crate::error::Result<Config> {
        let layout = Layout::user_at(Path::new("/h"));
        Config::parse(text, Path::new("/h/.config/leger/config.yaml"), &layout)
    }

    #[test]
    fn notify_settings_read_with_failures_by_default() {
        let c = parse("").unwrap();
        assert_eq!(c.backup.notify, NotifyConfig::default());
        assert!(!c.backup.notify.is_set());
        let c = parse(
            "backup:\n  notify:\n    webhook: http://127.0.0.1:8080/hook\n    ntfy: https://u:pw12@ntfy.example/backups\n",
        )
        .unwrap();
        let n = &c.backup.notify;
        assert_eq!(n.on, [When::Failure]);
        assert_eq!(
            n.webhook.as_ref().unwrap().as_str(),
            "http://127.0.0.1:8080/hook"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("pw12"), "{json}");
        assert!(json.contains("https://***@ntfy.example/backups"), "{json}");
        let c = parse("backup:\n  notify:\n    healthchecks: https://hc.example/ping/x\n    on: [failure, success]\n").unwrap();
        assert_eq!(c.backup.notify.on, [When::Failure, When::Success]);
    }

    #[test]
    fn notify_mistakes_name_file_line_and_column() {
        for (text, line, expected) in [
            (
                "backup:\n  notify:\n    webhok: http://h/\n",
                ":3:",
                "webhok",
            ),
            (
                "backup:\n  notify:\n    on: [failure, sucess]\n",
                ":3:",
                "sucess",
            ),
            ("backup:\n  notify:\n    on: failure\n", ":3:", "sequence"),
            (
                "backup:\n  notify:\n    ntfy: ntfy.sh/topic\n",
                ":3:",
                "not a URL",
            ),
            (
                "backup:\n  notify:\n\n    webhook: \"ftp://u:hunter22@h/\"\n",
                ":4:",
                "only http",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Config, "{text}");
            let m = &err.message;
            assert!(m.contains(&format!("config.yaml{line}")), "{text}: {m}");
            assert!(m.contains(expected), "{text}: {m}");
            assert!(!m.contains("hunter22"), "{m}");
        }
    }
}
