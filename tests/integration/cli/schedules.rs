//! Schedules and modes without podman or a user manager: config errors
//! with line and column, the generator's timers, `enable` writing them
//! without a generator, and a `dump` backup whose `before:` fails.

use crate::support::receiver::{Answer, Receiver};
use crate::support::{stderr, stdout, TestEnv, SYSTEMCTL_ALL_INACTIVE};

fn with_db() -> TestEnv {
    let env = TestEnv::new();
    env.write(
        ".config/containers/systemd/db/db.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=db-data.volume:/dump\n",
    );
    env.write(".config/containers/systemd/db/db-data.volume", "[Volume]\n");
    env
}

#[test]
fn an_invalid_schedule_is_a_config_error_with_line_and_column() {
    let env = with_db();
    for (config, place) in [
        ("auto:\n  schedule: \"Sun 25:00\"\n", "config.yaml:2:"),
        (
            "leger: {}\nauto:\n  deployments:\n    db:\n      schedule: every-day\n",
            "config.yaml:5:",
        ),
        (
            "auto:\n  deployments:\n    db:\n      mode: snapshot\n",
            "config.yaml:4:",
        ),
    ] {
        env.write(".config/leger/config.yaml", config);
        let out = env.run(&["config", "show"]);
        assert_eq!(out.status.code(), Some(1), "{config}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(place), "{config}: {err}");
    }
    let out = env.run(&["config", "show"]);
    assert!(stderr(&out).contains("variant"), "{}", stderr(&out));
    env.write(
        ".config/leger/config.yaml",
        "auto:\n  schedule: \"Sun 25:00\"\n",
    );
    let err = stderr(&env.run(&["config", "show"]));
    assert!(err.contains("invalid schedule \"Sun 25:00\""), "{err}");
    assert!(err.contains("hour"), "{err}");
}

#[test]
fn config_show_lists_schedule_settings() {
    let env = with_db();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_scheduled: 3\nauto:\n  schedule: \"*-*-* 03:00\"\n",
    );
    let out = env.run(&["config", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["backup.keep_scheduled", "auto.schedule", "*-*-* 03:00"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn generator_writes_a_timer_per_scheduled_deployment() {
    let env = with_db();
    env.write(
        ".config/containers/systemd/web/web.container",
        "[Container]\nImage=x\n",
    );
    env.write(
        ".config/leger/config.yaml",
        "auto:\n  randomized_delay: 0\n  deployments:\n    db:\n      schedule: \"*:*:0/5\"\n",
    );
    let out_dir = env.path("run/generator");
    let out = env.run(&["generator", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let timer = std::fs::read_to_string(out_dir.join("leger-backup-scheduled@db.timer")).unwrap();
    for line in [
        "OnCalendar=*:*:0/5",
        "Persistent=true",
        "RandomizedDelaySec=0",
    ] {
        assert!(timer.lines().any(|l| l == line), "{line}: {timer}");
    }
    assert!(out_dir
        .join("timers.target.wants/leger-backup-scheduled@db.timer")
        .exists());
    let service = std::fs::read_to_string(out_dir.join("leger-backup-scheduled@.service")).unwrap();
    assert!(service.contains(" scheduled %i\n"), "{service}");
    assert!(!out_dir.join("leger-backup-scheduled@web.timer").exists());
}

#[test]
fn enable_without_generator_writes_the_timer_and_disable_removes_it() {
    let env = with_db();
    env.write(".config/leger/config.yaml", "auto:\n  schedule: daily\n");
    let path = env.fake_tools(&[("systemctl", SYSTEMCTL_ALL_INACTIVE)]);
    let run = |args: &[&str]| {
        env.command()
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["enable", "db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let timer = env.path(".config/systemd/user/leger-backup-scheduled@db.timer");
    let text = std::fs::read_to_string(&timer).unwrap();
    assert!(text.contains("OnCalendar=daily\n"), "{text}");
    assert!(env
        .path(".config/systemd/user/leger-backup-scheduled@.service")
        .exists());
    assert!(stderr(&out).contains("started leger-backup-scheduled@db.timer"));
    let out = run(&["disable", "db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!timer.exists());
    assert!(!env
        .path(".config/systemd/user/leger-backup-scheduled@.service")
        .exists());
}

#[test]
fn a_failing_before_command_takes_no_backup_and_records_the_failure() {
    let env = with_db();
    let receiver = Receiver::start(Answer::Status(200));
    env.write(
        ".config/leger/config.yaml",
        &format!(
            "backup:\n  notify:\n    webhook: {}\n    healthchecks: {}\n\
             auto:\n  deployments:\n    db:\n      schedule: daily\n      mode: dump\n      \
             before: ['echo dumping > \"$HOME/ran-$LEGER_BACKUP_DEPLOYMENT\"; echo \"pg_dumpall: no database\" >&2; exit 4']\n      \
             after: ['echo \"$LEGER_BACKUP_RESULT\" > \"$HOME/after\"']\n",
            receiver.url("/hook"),
            receiver.url("/hc")
        ),
    );
    let path = env.fake_tools(&[("systemctl", SYSTEMCTL_ALL_INACTIVE)]);
    let out = env
        .command()
        .env("PATH", &path)
        .args(["scheduled", "db"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("`before:` command 1 of db failed (exit status 4: pg_dumpall: no database)"),
        "{err}"
    );
    assert!(env.path("ran-db").exists(), "the command ran with the env");
    let after = std::fs::read_to_string(env.path("after")).unwrap();
    assert_eq!(after, "failure\n", "after: runs to undo what before: did");
    let backups = env.path(".local/share/bluebuild-quadlets/backups");
    let left = std::fs::read_dir(&backups).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "nothing half-done in {}", backups.display());
    let status = env
        .command()
        .env("PATH", &path)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let db = &status["deployments"][0];
    assert_eq!(db["name"], "db");
    assert_eq!(db["last_failure"]["trigger"], "schedule");
    assert_eq!(db["schedule"]["calendar"], "daily");
    assert_eq!(db["schedule"]["mode"], "dump");
    assert_eq!(db["schedule"]["last_run"]["trigger"], "schedule");
    // No target got a backup: the failure is notified as a failed backup's.
    assert_eq!(receiver.paths(), ["/hc/start", "/hook", "/hc/fail"]);
    let event = receiver.requests()[1].json();
    assert_eq!(event["event"], "failure");
    assert_eq!(event["deployment"], "db");
    assert_eq!(event["reason"], "scheduled");
    assert_eq!(event["target"], "local");
    assert_eq!(event["id"], serde_json::Value::Null);
    let error = event["error"].as_str().unwrap();
    assert!(
        error.contains("`before:` command 1 of db failed"),
        "{error}"
    );
}
