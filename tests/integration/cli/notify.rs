//! Notifications (`backup.notify`) from the real binary in a private HOME
//! to a real HTTP receiver on loopback: what a succeeding and a failing
//! backup send, that an automatic backup (a leger hook) notifies without
//! being asked, and that a receiver that is down, fails or hangs never
//! fails the backup nor delays it past the time limit, and never gets a
//! secret into a message.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::receiver::{Answer, Receiver};
use crate::support::{stderr, stdout, TestEnv, SYSTEMCTL_ALL_INACTIVE};

const CONFIG: &str = ".config/leger/config.yaml";

/// The album fixture (its host paths under HOME) with `podman` and
/// `systemctl` stand-ins; returns the PATH to use.
pub(super) fn album(env: &TestEnv) -> String {
    let dir = env.copy_fixture("deployments/album", ".config/containers/systemd/album");
    std::fs::write(
        dir.join("album.env"),
        format!(
            "UPLOAD_LOCATION={}\nDB_DATA_LOCATION={}\n",
            env.path("album/library").display(),
            env.path("album/postgres").display()
        ),
    )
    .unwrap();
    env.write("album/library/2024/cat.jpg", "a cat\n");
    env.write("album/postgres/PG_VERSION", "16\n");
    let podman = "#!/bin/sh\ncase \"$1\" in\n  unshare) shift; exec \"$@\" ;;\n  ps) echo '[]' ;;\n  *) exit 0 ;;\nesac\n";
    env.fake_tools(&[("podman", podman), ("systemctl", SYSTEMCTL_ALL_INACTIVE)])
}

/// `backup.notify` with `channels` (YAML lines under it) and `extra`
/// lines under `backup:`.
fn config(env: &TestEnv, channels: &str, extra: &str) {
    env.write(CONFIG, &format!("backup:\n{extra}  notify:\n{channels}"));
}

/// All three channels on receiver `r`, for failures and successes.
fn every_channel(r: &Receiver) -> String {
    format!(
        "    webhook: {}\n    ntfy: {}\n    healthchecks: {}\n    on: [failure, success]\n",
        r.url("/hook"),
        r.url("/ntfy/backups"),
        r.url("/hc/uuid")
    )
}

fn run(env: &TestEnv, path: &str, args: &[&str]) -> Output {
    env.command().env("PATH", path).args(args).output().unwrap()
}

#[test]
fn create_notify_sends_a_success_to_every_channel() {
    let env = TestEnv::new();
    let path = album(&env);
    let r = Receiver::start(Answer::Status(200));
    config(&env, &every_channel(&r), "");
    let out = run(&env, &path, &["create", "album", "--notify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(
        r.paths(),
        ["/hc/uuid/start", "/hook", "/ntfy/backups", "/hc/uuid"]
    );
    let requests = r.requests();
    assert!(requests.iter().all(|q| q.method == "POST"), "{requests:?}");
    let event = requests[1].json();
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(event["event"], "success");
    assert_eq!(event["deployment"], "album");
    assert_eq!(event["id"], Value::String(id.clone()));
    assert_eq!(event["reason"], "manual");
    assert_eq!(event["target"], "local");
    assert_eq!(event["error"], Value::Null);
    assert!(
        event["duration_seconds"].as_f64().unwrap() >= 0.0,
        "{event}"
    );
    let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "exactly the documented keys: {keys:?}");
    assert_eq!(requests[2].header("title"), Some("album backed up"));
    assert!(requests[2].body.contains(&id), "{}", requests[2].body);
    assert!(requests[3].body.contains(&id), "{}", requests[3].body);
    assert!(!stderr(&out).contains("notification"), "{}", stderr(&out));
}

#[test]
fn create_notify_sends_a_failure_and_the_backup_still_fails_as_before() {
    let env = TestEnv::new();
    let path = album(&env);
    let r = Receiver::start(Answer::Status(200));
    // The backup directory's parent is a file: the backup cannot be made.
    env.write("blocked", "a file\n");
    config(&env, &every_channel(&r), "  dir: ~/blocked/backups\n");
    let out = run(&env, &path, &["create", "album", "--notify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        r.paths(),
        ["/hc/uuid/start", "/hook", "/ntfy/backups", "/hc/uuid/fail"]
    );
    let requests = r.requests();
    let event = requests[1].json();
    assert_eq!(event["event"], "failure");
    assert_eq!(event["id"], Value::Null);
    assert_eq!(event["target"], "local");
    let error = event["error"].as_str().unwrap();
    assert!(error.contains("blocked"), "{error}");
    assert_eq!(requests[2].header("title"), Some("Backup of album FAILED"));
    assert_eq!(requests[2].header("priority"), Some("high"));
    assert!(requests[2].body.contains("blocked"), "{}", requests[2].body);
    assert!(
        requests[3].body.contains("backup failed"),
        "{}",
        requests[3].body
    );
}

#[test]
fn a_manual_backup_notifies_only_when_asked_and_only_where_configured() {
    let env = TestEnv::new();
    let path = album(&env);
    let r = Receiver::start(Answer::Status(200));
    config(&env, &every_channel(&r), "");
    let out = run(&env, &path, &["create", "album"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(r.requests().is_empty(), "{:?}", r.requests());

    env.write(CONFIG, "backup:\n  keep_manual: 3\n");
    let out = run(&env, &path, &["create", "album", "--notify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("--notify") && err.contains("backup.notify"),
        "{err}"
    );
    let list = run(&env, &path, &["--json", "list"]);
    let listed: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "refused before any backup: {listed}"
    );
}

#[test]
fn a_leger_hook_backup_notifies_without_being_asked() {
    let env = TestEnv::new();
    let path = album(&env);
    let r = Receiver::start(Answer::Status(200));
    config(
        &env,
        &format!("    webhook: {}\n    on: [success]\n", r.url("/hook")),
        "",
    );
    let out = run(&env, &path, &["leger-hook", "pre-remove", "album"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = r.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let event = requests[0].json();
    assert_eq!(event["event"], "success");
    assert_eq!(event["reason"], "before-remove");
    assert_eq!(event["deployment"], "album");
}

#[test]
fn a_receiver_down_or_failing_never_fails_the_backup_and_shows_no_secret() {
    let env = TestEnv::new();
    let path = album(&env);
    let failing = Receiver::start(Answer::Status(500));
    let down =
        Receiver::down_url("/hook?token=s3cretvalue").replace("http://", "http://me:hunter22@");
    config(
        &env,
        &format!(
            "    webhook: \"{down}\"\n    ntfy: {}\n    on: [success]\n",
            failing.url("/ntfy")
        ),
        "",
    );
    let out = run(&env, &path, &["create", "album", "--notify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let port = down.split(':').nth(3).unwrap().split('/').next().unwrap();
    assert!(
        err.contains(&format!(
            "notification to webhook http://***@127.0.0.1:{port}/hook?*** failed"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "notification to ntfy {} failed: the server answered HTTP 500",
            failing.url("/ntfy")
        )),
        "{err}"
    );
    assert!(
        !err.contains("hunter22") && !err.contains("s3cretvalue"),
        "{err}"
    );
    assert_eq!(failing.paths(), ["/ntfy"]);
    let show = run(&env, &path, &["config", "show"]);
    let text = stdout(&show);
    assert!(text.contains("backup.notify.webhook"), "{text}");
    assert!(
        !text.contains("hunter22") && !text.contains("s3cretvalue"),
        "{text}"
    );
}

#[test]
fn a_hanging_receiver_holds_the_backup_up_only_for_the_time_limit() {
    let env = TestEnv::new();
    let path = album(&env);
    let hanging = Receiver::start(Answer::Hang);
    config(
        &env,
        &format!("    webhook: {}\n    on: [success]\n", hanging.url("/hook")),
        "",
    );
    let start = Instant::now();
    let out = run(&env, &path, &["create", "album", "--notify"]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hanging.paths(), ["/hook"], "the request did reach it");
    let err = stderr(&out);
    assert!(err.contains("no answer within 5 s"), "{err}");
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took < Duration::from_secs(12), "held up {took:?}");
}

#[test]
fn no_secret_of_a_repository_reaches_a_failure_notification() {
    let env = TestEnv::new();
    album(&env);
    let r = Receiver::start(Answer::Status(200));
    let password = env.write(".config/leger/offsite.password", "hunter2pass\n");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    config(
        &env,
        &format!("    webhook: {}\n", r.url("/hook")),
        "  repositories:\n    offsite:\n      url: \"rest:http://me:urlpass99@127.0.0.1:9/r\"\n      password_file: ~/.config/leger/offsite.password\n",
    );
    // A restic that fails, repeating every secret it was given.
    let restic = "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'restic 0.18.0 compiled with go1.24 on linux/amd64'; exit 0; fi\n\
                  echo \"Fatal: $RESTIC_REPOSITORY: wrong password $(cat \"$RESTIC_PASSWORD_FILE\")\" >&2; exit 1\n";
    // In the same fake-bin/ as album()'s podman and systemctl.
    let path = env.fake_tools(&[("restic", restic)]);
    let out = run(
        &env,
        &path,
        &["create", "album", "--to", "offsite", "--notify"],
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let requests = r.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let event = requests[0].json();
    assert_eq!(event["event"], "failure");
    assert_eq!(event["target"], "offsite");
    let error = event["error"].as_str().unwrap();
    assert!(
        error.contains("wrong password ***"),
        "scrubbed, not dropped: {error}"
    );
    let body = &requests[0].body;
    assert!(
        !body.contains("hunter2pass") && !body.contains("urlpass99"),
        "{body}"
    );
}
