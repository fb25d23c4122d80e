//! Crash recovery without podman or systemd: journals that a dead
//! leger-backup left (written by the test, naming a pid that does not
//! exist) are found by the next command. An interrupted create is cleaned up
//! at once with one warning; an interrupted restore waits for `recover` and
//! `status` shows it. The end-to-end fault suite (`e2e::faults`) covers the
//! same against the real services.

use serde_json::{json, Value};

use crate::support::{stderr, stdout, TestEnv};

const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";
const JOURNAL: &str = ".local/state/leger-backup/journal";
/// A pid above any kernel's pid_max: never alive.
const DEAD_PID: u32 = 4_999_999;

fn journal(env: &TestEnv, record: Value) {
    let name = record["deployment"].as_str().unwrap().to_owned();
    env.write(
        &format!("{JOURNAL}/{name}.json"),
        &serde_json::to_string_pretty(&record).unwrap(),
    );
}

fn record(env: &TestEnv, operation: &str, extra: Value) -> Value {
    let mut r = json!({
        "version": 1,
        "operation": operation,
        "deployment": "web",
        "pid": DEAD_PID,
        "start_time": 1,
        "started_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:01Z",
        "owns_stops": true,
        "backup_dir": env.path(BACKUPS),
        "step": {"name": "started"},
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn warnings(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("warning:")).collect()
}

#[test]
fn recover_with_nothing_pending_says_so() {
    let env = TestEnv::new();
    let out = env.run(&["recover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to recover"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["recover", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn an_interrupted_create_is_cleaned_up_by_the_next_command_with_one_warning() {
    let env = TestEnv::new();
    env.write(
        &format!("{BACKUPS}/.tmp-web-2025-01-01-000000/partial"),
        "x",
    );
    std::fs::set_permissions(
        env.path(BACKUPS),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    journal(
        &env,
        record(
            &env,
            "create",
            json!({
                "reason": "manual",
                "backup_id": "web-2025-01-01-000000",
                "writing": "web-2025-01-01-000000",
                "step": {"name": "exporting", "volume": "web-data"},
            }),
        ),
    );
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let w = warnings(&err);
    assert_eq!(w.len(), 1, "{err}");
    assert!(
        w[0].contains(&format!(
            "a backup (create) of web was interrupted: process {DEAD_PID} ended while exporting volume web-data"
        )),
        "{err}"
    );
    assert!(
        w[0].contains("removed its unfinished backup .tmp-web-2025-01-01-000000"),
        "{err}"
    );
    assert!(
        w[0].contains("No backup was kept: run `leger-backup create web` again"),
        "{err}"
    );
    assert!(!env
        .path(&format!("{BACKUPS}/.tmp-web-2025-01-01-000000"))
        .exists());
    assert!(!env.path(&format!("{JOURNAL}/web.json")).exists());
    // Once.
    let out = env.run(&["list"]);
    assert!(warnings(&stderr(&out)).is_empty(), "{}", stderr(&out));
}

#[test]
fn an_interrupted_restore_is_pending_until_recover() {
    let env = TestEnv::new();
    journal(
        &env,
        record(
            &env,
            "restore",
            json!({
                "backup_id": "web-2025-01-01-000000",
                "safety": {"state": "taken", "id": "web-2025-01-02-000000"},
                "touched": true,
                "stopped": ["web.service"],
                "step": {"name": "replacing-volume", "volume": "web-data"},
            }),
        ),
    );
    for args in [&["list"][..], &["status"][..]] {
        let out = env.run(args);
        let err = stderr(&out);
        let w = warnings(&err);
        assert_eq!(w.len(), 1, "{args:?}: {err}");
        assert!(
            w[0].contains(
                "a restore of web from backup web-2025-01-01-000000 was interrupted: \
                 process 4999999 ended while replacing volume web-data"
            ),
            "{err}"
        );
        assert!(
            w[0].contains("`recover` rolls it back to the safety backup web-2025-01-02-000000"),
            "{err}"
        );
        assert!(w[0].contains("Run `leger-backup recover`"), "{err}");
    }
    let out = env.run(&["status"]);
    assert!(
        stdout(&out).contains("PENDING RECOVERY"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending = &status["pending_recovery"][0];
    assert_eq!(pending["deployment"], "web");
    assert_eq!(pending["safety_backup"], "web-2025-01-02-000000");
    // Still there: it is not guessed at.
    assert!(env.path(&format!("{JOURNAL}/web.json")).exists());
    // recover without the safety backup on disk changes nothing and says
    // what to do.
    let out = env.run(&["recover", "--yes"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("its safety backup web-2025-01-02-000000 cannot be used"),
        "{err}"
    );
    assert!(
        err.contains("nothing was changed")
            && err.contains("leger-backup restore web-2025-01-01-000000"),
        "{err}"
    );
    assert!(env.path(&format!("{JOURNAL}/web.json")).exists());
}
