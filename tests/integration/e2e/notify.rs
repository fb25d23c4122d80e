//! Notifications end to end: stop-hook backups in the testbed (real
//! systemd --user, Podman, the generated drop-ins) notify a real HTTP
//! receiver on the host's loopback, which the testbed shares: a backup
//! that succeeds and one that fails (backup directory not writable) both
//! reach the webhook and Healthchecks; a receiver that is down changes
//! nothing of the backup, and the journal names its URL without secrets.

use std::time::Duration;

use super::auto::{backups, ok, PRELUDE};
use crate::support::deploy::LegerConfig;
use crate::support::receiver::{Answer, Receiver};
use crate::support::testbed::Testbed;

/// How long a stop hook's notifications may take to arrive after
/// `systemctl stop` returned (they are sent before the hook exits, so
/// this only absorbs scheduling).
const ARRIVAL: Duration = Duration::from_secs(20);

#[test]
fn stop_hook_backups_that_succeed_and_fail_reach_the_receiver() {
    let tb = Testbed::get();
    let name = "notifystop";
    let run = |body: &str| ok(&tb, &format!("{PRELUDE}\n{body}"));
    run(&format!("cleanup {name}"));
    let r = Receiver::start(Answer::Status(200));
    let _config = LegerConfig::set(
        &tb,
        &format!(
            "backup:\n  notify:\n    webhook: {}\n    healthchecks: {}\n    on: [failure, success]\n\
             auto:\n  min_interval: 0\n",
            r.url("/hook"),
            r.url("/hc/check")
        ),
    );
    run(&format!("install {name}"));

    // Stopped, one service after the other (the last one backs up): one
    // backup, and its success notified.
    let stop = format!(
        "systemctl --user stop {name}-side.service && systemctl --user stop {name}-app.service"
    );
    run(&stop);
    let list = backups(&tb, name);
    assert_eq!(list.len(), 1, "{list:#?}");
    let got = r.wait_for(3, ARRIVAL);
    let paths: Vec<&str> = got.iter().map(|q| q.path.as_str()).collect();
    assert_eq!(paths, ["/hc/check/start", "/hook", "/hc/check"]);
    let event = got[1].json();
    assert_eq!(event["event"], "success", "{event}");
    assert_eq!(event["deployment"], name);
    assert_eq!(event["reason"], "on-stop");
    assert_eq!(event["target"], "local");
    assert_eq!(event["id"], list[0]["id"], "{event}");

    // The backup deleted (a stop right after one coalesces into it), the
    // services started and stopped again with the backup directory
    // read-only: the backup fails, and that is notified too.
    let id = list[0]["id"].as_str().unwrap();
    run(&format!(
        "leger-backup delete {id} --yes && systemctl --user start $(services {name})"
    ));
    run(&format!(
        "chmod 500 \"$BACKUPS\"; {stop} || true; chmod 700 \"$BACKUPS\""
    ));
    assert!(backups(&tb, name).is_empty(), "no backup made");
    let got = r.wait_for(6, ARRIVAL);
    let paths: Vec<&str> = got[3..].iter().map(|q| q.path.as_str()).collect();
    assert_eq!(paths, ["/hc/check/start", "/hook", "/hc/check/fail"]);
    let event = got[4].json();
    assert_eq!(event["event"], "failure", "{event}");
    assert_eq!(event["id"], serde_json::Value::Null);
    assert!(
        event["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{event}"
    );
    assert!(got[5].body.contains("backup failed"), "{}", got[5].body);

    run(&format!("cleanup {name}"));
}

#[test]
fn a_receiver_that_is_down_never_fails_a_stop_hook_backup() {
    let tb = Testbed::get();
    let name = "notifydown";
    let run = |body: &str| ok(&tb, &format!("{PRELUDE}\n{body}"));
    run(&format!("cleanup {name}"));
    let down =
        Receiver::down_url("/hook?token=s3cretvalue").replace("http://", "http://me:hunter22@");
    let _config = LegerConfig::set(
        &tb,
        &format!("backup:\n  notify:\n    webhook: \"{down}\"\n    on: [success]\n"),
    );
    run(&format!("install {name}"));
    let since = run("date +%s").trim().to_owned();
    run(&format!(
        "systemctl --user stop {name}-side.service && systemctl --user stop {name}-app.service"
    ));
    assert_eq!(backups(&tb, name).len(), 1, "the backup was made");
    let journal = run(&format!(
        "journalctl --user --since @{since} -u {name}-app.service --no-pager -o cat"
    ));
    // (The unit itself ends `failed`: busybox's sleep exits 143 on SIGTERM.)
    assert!(
        journal.contains(&format!("{name}: backed up: backup {name}-")),
        "the hook reports the backup, not a failure: {journal}"
    );
    let port = down.rsplit(':').next().unwrap().split('/').next().unwrap();
    assert!(
        journal.contains(&format!(
            "notification to webhook http://***@127.0.0.1:{port}/hook?*** failed"
        )),
        "{journal}"
    );
    assert!(
        !journal.contains("hunter22") && !journal.contains("s3cretvalue"),
        "{journal}"
    );
    run(&format!("cleanup {name}"));
}
