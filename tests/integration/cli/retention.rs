//! Retention classes on crafted backups: backups taken before a change
//! survive a flood of on-stop backups, backups taken after a failed stop
//! are marked and never push out a good one, and the stop hook records a
//! failed stop from systemd's variables.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::backups::{fabricate, patch_metadata};
use crate::support::{stderr, stdout, TestEnv};

/// Mark a fabricated backup as taken after a failed stop, the way the stop
/// hook records it.
fn mark_failed_stop(env: &TestEnv, id: &str) {
    patch_metadata(env, id, |m| {
        m["stop_result"] = serde_json::json!({
            "service_result": "exit-code", "exit_code": "exited", "exit_status": "1",
        });
    });
}

/// `web` backups: one `before-apply` on January 1st, then one `on-stop`
/// per hour on the 2nd (IDs `web-2025-01-02-HH0000`, hours 0..count).
fn before_apply_then_on_stop(env: &TestEnv, count: u32) -> Vec<String> {
    fabricate(
        env,
        "web-2025-01-01-000000",
        "web",
        "2025-01-01T00:00:00Z",
        "before-apply",
        &["web-data"],
    );
    (0..count)
        .map(|hour| {
            let id = format!("web-2025-01-02-{hour:02}0000");
            let created = format!("2025-01-02T{hour:02}:00:00Z");
            fabricate(env, &id, "web", &created, "on-stop", &["web-data"]);
            id
        })
        .collect()
}

fn listed(env: &TestEnv) -> Vec<Value> {
    let out = env.run(&["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn prune_keeps_the_before_apply_backup_through_ten_on_stop_backups() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_automatic: 3\n",
    );
    let on_stop = before_apply_then_on_stop(&env, 10);
    let out = env.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut kept: Vec<String> = on_stop[7..].iter().rev().cloned().collect();
    kept.push("web-2025-01-01-000000".to_owned());
    assert_eq!(ids(&listed(&env)), kept);
    assert!(
        stderr(&out).contains(
            "keeping 5 manual, 5 before-change, 3 automatic and 7 scheduled per deployment"
        ),
        "{}",
        stderr(&out)
    );
    let list = listed(&env);
    assert_eq!(list.last().unwrap()["retention"], "before-change");
    assert_eq!(list[0]["retention"], "automatic");
}

#[test]
fn failed_stop_backups_are_marked_and_never_push_out_a_good_one() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_automatic: 3\n",
    );
    let on_stop = before_apply_then_on_stop(&env, 11);
    // The first on-stop backup is good, the ten after it followed failed stops.
    for id in &on_stop[1..] {
        mark_failed_stop(&env, id);
    }
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("on-stop (after a failed stop: exit-code (exited, status 1))"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["info", &on_stop[5]]);
    assert!(
        stdout(&out)
            .contains("Reason        on-stop (after a failed stop: exit-code (exited, status 1))"),
        "{}",
        stdout(&out)
    );

    let out = env.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = listed(&env);
    assert_eq!(
        ids(&list),
        [on_stop[10].as_str(), &on_stop[0], "web-2025-01-01-000000"]
    );
    assert_eq!(list[0]["after_failed_stop"], true);
    assert_eq!(list[0]["stop_result"]["service_result"], "exit-code");
    assert_eq!(list[0]["stop_result"]["exit_status"], "1");
    assert_eq!(list[1]["after_failed_stop"], false);
    assert!(list[1].get("stop_result").is_none(), "{}", list[1]);
}

#[test]
fn keep_counts_of_zero_keep_the_newest_good_backup() {
    let env = TestEnv::new();
    let on_stop = before_apply_then_on_stop(&env, 3);
    mark_failed_stop(&env, &on_stop[2]);
    let out = env.run(&[
        "prune",
        "--keep-manual",
        "0",
        "--keep-before-change",
        "0",
        "--keep-automatic",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "kept {} (the newest good backup of its deployment is never pruned)",
            on_stop[1]
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(ids(&listed(&env)), [on_stop[1].as_str()]);
}

#[test]
fn keep_before_change_is_a_checked_setting() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_before_change: many\n",
    );
    let out = env.run(&["config", "show"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("config.yaml:2:"), "{}", stderr(&out));

    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_before_change: 7\n",
    );
    let out = env.run(&["config", "show", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backup"]["keep_before_change"]["value"], 7);
    assert_eq!(json["backup"]["keep_before_change"]["source"], "file");
    let out = env.run(&["config", "show"]);
    assert!(
        stdout(&out).contains("backup.keep_before_change"),
        "{}",
        stdout(&out)
    );
}

/// A `systemctl` that answers like a user manager with every unit stopped.
fn fake_systemctl(env: &TestEnv) -> std::path::PathBuf {
    let bin = env.write(
        "fakebin/systemctl",
        "#!/bin/sh\n\
         case \" $* \" in\n\
           *' is-system-running '*) echo running ;;\n\
           *' show '*) for a in \"$@\"; do case \"$a\" in -*|show) ;; *) echo inactive ;; esac; done ;;\n\
         esac\n\
         exit 0\n",
    );
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin.parent().unwrap().to_owned()
}

#[test]
fn stop_hook_after_a_failed_stop_marks_its_backup() {
    let env = TestEnv::new();
    env.write(
        ".config/containers/systemd/solo/solo.container",
        "[Container]\nImage=localhost/busybox:latest\n",
    );
    let path = format!(
        "{}:{}",
        fake_systemctl(&env).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .command()
        .env("PATH", path)
        .env("SERVICE_RESULT", "exit-code")
        .env("EXIT_CODE", "exited")
        .env("EXIT_STATUS", "1")
        .args([
            "stop-hook",
            "--deployment",
            "solo",
            "--unit",
            "solo.service",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("backed up"), "{}", stderr(&out));
    let list = listed(&env);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reason"], "on-stop");
    assert_eq!(list[0]["after_failed_stop"], true);
    assert_eq!(
        list[0]["stop_result"],
        serde_json::json!({"service_result": "exit-code", "exit_code": "exited", "exit_status": "1"})
    );
    let out = env.run(&["info", list[0]["id"].as_str().unwrap()]);
    assert!(
        stdout(&out).contains("on-stop (after a failed stop: exit-code (exited, status 1))"),
        "{}",
        stdout(&out)
    );
}
