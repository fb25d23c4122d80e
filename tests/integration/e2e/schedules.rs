//! Scheduled backups and the `dump` mode end to end in the testbed, where
//! the user generator is installed: a real timer every five seconds, the
//! real `leger-backup-scheduled@.service`, a real dump command run with
//! `podman exec` in the running container, and a failing one.
//!
//! Each test uses its own deployment (`sched<what>`: one container that
//! exits on SIGTERM, a volume at `/dump`), cleans up what an earlier run
//! may have left, and puts leger's config back (guards).

use serde_json::Value;

use crate::support::deploy::LegerConfig;
use crate::support::testbed::Testbed;

/// Shell functions (run as the test user in the testbed).
const PRELUDE: &str = r#"
set -eu
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
STATE=$HOME/.local/state/leger-backup
UNITS=$HOME/.config/containers/systemd
# install NAME: a container whose "database" is /tmp/db, a volume at /dump.
install() {
  mkdir -p "$UNITS/$1"
  printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' \
    "Volume=$1-dump.volume:/dump" \
    "Exec=sh -c 'echo \"row of $1\" > /tmp/db; trap \"exit 0\" TERM; while :; do sleep 1; done'" \
    > "$UNITS/$1/$1-db.container"
  printf '%s\n' '[Volume]' > "$UNITS/$1/$1-dump.volume"
  systemctl --user daemon-reload
  systemctl --user start "$1-db.service"
}
invocation() { systemctl --user show "$1-db.service" -p InvocationID --value; }
cleanup() {
  systemctl --user stop "leger-backup-scheduled@$1.timer" "$1-db.service" >/dev/null 2>&1 || true
  systemctl --user reset-failed "leger-backup-scheduled@$1.service" >/dev/null 2>&1 || true
  rm -rf "$UNITS/$1" "$HOME/$1".*
  systemctl --user daemon-reload
  podman volume rm -f "systemd-$1-dump" >/dev/null 2>&1 || true
  rm -rf "$BACKUPS/$1"-* "$STATE/auto/$1".*
}
# in_volume ID NAME FILE: FILE of the backup's archive of volume NAME.
in_volume() {
  b=$BACKUPS/$1
  a=$(jq -r --arg v "$2" '.volumes[] | select(.name == $v) | .archive_path' "$b/.backup-metadata.json")
  zstd -dc "$b/$a" | tar -xOf - --wildcards "*$3"
}
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

/// The deployment `name` removed with everything it left, now and when
/// dropped (even when the test fails).
struct Deployment<'a> {
    tb: &'a Testbed,
    name: &'a str,
}

impl<'a> Deployment<'a> {
    fn install(tb: &'a Testbed, name: &'a str) -> Deployment<'a> {
        tb.ok(&script(&format!("cleanup {name}")));
        let guard = Deployment { tb, name };
        tb.ok(&script(&format!("install {name}")));
        guard
    }

    /// Run a script that must succeed; its stdout.
    fn ok(&self, body: &str) -> String {
        self.tb.ok(&script(body))
    }

    /// `status --json` of this deployment.
    fn status(&self) -> Value {
        let all: Value =
            serde_json::from_str(&self.ok("leger-backup status --json")).expect("status --json");
        all["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == self.name)
            .unwrap_or_else(|| panic!("{} not in status: {all}", self.name))
            .clone()
    }

    /// Its backups, newest first (`list --json`).
    fn backups(&self) -> Vec<Value> {
        let text = self.ok(&format!(
            "leger-backup list --deployment {} --json",
            self.name
        ));
        let text = if text.trim().is_empty() { "[]" } else { &text };
        serde_json::from_str(text).unwrap_or_else(|e| panic!("list --json: {e}: {text}"))
    }
}

impl Drop for Deployment<'_> {
    fn drop(&mut self) {
        self.tb.sh(&script(&format!("cleanup {}", self.name)));
    }
}

#[test]
fn a_timer_every_five_seconds_takes_a_scheduled_backup() {
    let tb = Testbed::get();
    let name = "schedtimer";
    let _config = LegerConfig::set(
        &tb,
        &format!(
            "auto:\n  randomized_delay: 0\n  deployments:\n    {name}:\n      schedule: \"*:*:0/5\"\n      mode: live\n"
        ),
    );
    let d = Deployment::install(&tb, name);
    let timer = format!("leger-backup-scheduled@{name}.timer");
    let enable = tb.sh(&script(&format!("leger-backup enable {name}")));
    let said = String::from_utf8_lossy(&enable.stderr).into_owned();
    assert!(enable.status.success(), "{said}");
    assert!(said.contains(&format!("started {timer}")), "{said}");
    let unit = d.ok(&format!("systemctl --user cat {timer}"));
    for line in [
        "OnCalendar=*:*:0/5",
        "Persistent=true",
        "RandomizedDelaySec=0",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in {unit}");
    }
    let status = d.status();
    assert_eq!(status["schedule"]["calendar"], "*:*:0/5", "{status}");
    assert_eq!(status["schedule"]["mode"], "live", "{status}");
    let next = status["schedule"]["next_run"].as_str().unwrap_or_default();
    assert!(!next.is_empty(), "no next run in {status}");
    let text = d.ok("leger-backup status");
    assert!(text.contains("next run:"), "{text}");

    // The timer fires within five seconds; the backup takes a few more.
    d.ok(&format!(
        "for i in $(seq 1 60); do ls -d \"$BACKUPS\"/{name}-* >/dev/null 2>&1 && \
         [ \"$(systemctl --user show leger-backup-scheduled@{name}.service -p Result --value)\" = success ] && \
         [ \"$(systemctl --user show leger-backup-scheduled@{name}.service -p ActiveState --value)\" != activating ] && exit 0; \
         sleep 1; done; echo no scheduled backup >&2; systemctl --user status {timer} >&2; exit 1"
    ));
    let status = d.status();
    let last = &status["schedule"]["last_run"];
    assert_eq!(last["trigger"], "schedule", "{status}");
    assert!(last["backup_id"].is_string(), "{status}");
    d.ok(&format!("leger-backup disable {name}"));
    let state = d.ok(&format!(
        "systemctl --user show {timer} -p ActiveState --value"
    ));
    assert_eq!(state.trim(), "inactive", "disable stops the timer");
    let list = d.backups();
    let backup = list.last().expect("a backup");
    assert_eq!(backup["reason"], "scheduled", "{backup}");
    assert_eq!(backup["type"], "automatic", "{backup}");
    let id = backup["id"].as_str().unwrap();
    d.ok(&format!("leger-backup verify {id}"));
    assert_eq!(backup["retention"], "scheduled", "{backup}");
}

#[test]
fn a_dump_deployment_dumps_with_its_service_running_and_backs_the_dump_up() {
    let tb = Testbed::get();
    let name = "scheddump";
    let _config = LegerConfig::set(
        &tb,
        &format!(
            "auto:\n  deployments:\n    {name}:\n      schedule: daily\n      mode: dump\n      \
             before:\n        - podman exec systemd-{name}-db sh -c 'cat /tmp/db > /dump/db.sql'\n        \
             - echo \"$LEGER_BACKUP_DEPLOYMENT $LEGER_BACKUP_REASON\" > \"$HOME/{name}.env\"\n      \
             after:\n        - echo \"$LEGER_BACKUP_RESULT $LEGER_BACKUP_ID\" > \"$HOME/{name}.after\"\n"
        ),
    );
    let d = Deployment::install(&tb, name);
    let running = d.ok(&format!("invocation {name}"));
    // The real service, as the timer starts it (a oneshot: start waits).
    d.ok(&format!(
        "systemctl --user daemon-reload && systemctl --user start leger-backup-scheduled@{name}.service"
    ));
    assert_eq!(
        d.ok(&format!("invocation {name}")),
        running,
        "the service was never stopped or restarted"
    );
    let list = d.backups();
    assert_eq!(list.len(), 1, "{list:#?}");
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!(list[0]["reason"], "scheduled");
    let dump = d.ok(&format!("in_volume {id} systemd-{name}-dump db.sql"));
    assert_eq!(
        dump,
        format!("row of {name}\n"),
        "the dump is in the backup"
    );
    assert_eq!(
        d.ok(&format!("cat $HOME/{name}.env")),
        format!("{name} scheduled\n")
    );
    assert_eq!(
        d.ok(&format!("cat $HOME/{name}.after")),
        format!("success {id}\n")
    );
    let info: Value =
        serde_json::from_str(&d.ok(&format!("leger-backup info {id} --json"))).unwrap();
    assert_eq!(info["consistency"], "live", "{info}");
}

#[test]
fn a_failing_before_command_fails_the_backup_and_leaves_nothing() {
    let tb = Testbed::get();
    let name = "schedfail";
    let _config = LegerConfig::set(
        &tb,
        &format!(
            "auto:\n  deployments:\n    {name}:\n      schedule: daily\n      mode: dump\n      \
             before:\n        - podman exec systemd-{name}-db sh -c 'echo no space for the dump >&2; exit 7'\n      \
             after:\n        - echo \"$LEGER_BACKUP_RESULT\" > \"$HOME/{name}.after\"\n"
        ),
    );
    let d = Deployment::install(&tb, name);
    let running = d.ok(&format!("invocation {name}"));
    let out = tb.sh(&script(&format!(
        "systemctl --user daemon-reload && systemctl --user start leger-backup-scheduled@{name}.service"
    )));
    assert!(!out.status.success(), "the scheduled service must fail");
    let result = d.ok(&format!(
        "systemctl --user show leger-backup-scheduled@{name}.service -p Result --value"
    ));
    assert_eq!(result.trim(), "exit-code");
    assert_eq!(
        d.ok(&format!("invocation {name}")),
        running,
        "still running"
    );
    assert!(d.backups().is_empty());
    let left = d.ok(&format!(
        "ls -A \"$BACKUPS\" 2>/dev/null | grep -c {name} || true"
    ));
    assert_eq!(
        left.trim(),
        "0",
        "no backup directory, not even a pending one"
    );
    assert_eq!(
        d.ok(&format!("cat $HOME/{name}.after")),
        "failure\n",
        "after: runs (to clean up) when before: failed"
    );
    let status = d.status();
    let failure = &status["last_failure"];
    assert_eq!(failure["trigger"], "schedule", "{status}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains(
            "`before:` command 1 of schedfail failed (exit status 7: no space for the dump)"
        ),
        "{message}"
    );
}
