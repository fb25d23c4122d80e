//! `restore` of backups whose metadata was crafted to act on what is not
//! the deployment's: a foreign unit, option-like names, bind options.
//!
//! Fake `podman` and `systemctl` first in PATH log every call; a hostile
//! backup must be refused before either runs (the log stays empty). A
//! sound backup shows what may run, and when: read-only queries after
//! verification, each with `--` before the names.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::backups::{private_dir, sha256, volume_tar, BACKUPS};
use crate::support::{stderr, stdout, TestEnv};

const ID: &str = "hx-2025-01-02-030405";
const UNIT: &str = "[Container]\nImage=localhost/busybox\nVolume=hx-data:/data\n";

/// Fake `podman` and `systemctl` that append their argv to `tools.log`:
/// no volume exists (even right after `volume create`), every unit is
/// inactive and not loaded, everything else succeeds.
fn fake_tools(env: &TestEnv) -> PathBuf {
    let log = env.path("tools.log");
    let script = format!(
        r#"#!/bin/sh
echo "$(basename "$0") $*" >> '{}'
case "$*" in
  *"volume exists"*) exit 1 ;;
  *"volume inspect"*) exit 125 ;;
  *"--property=ActiveState"*) for a in "$@"; do case "$a" in *.service) echo inactive ;; esac; done ;;
esac
exit 0
"#,
        log.display()
    );
    for tool in ["podman", "systemctl"] {
        let path = env.write(&format!("bin/{tool}"), &script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    log
}

/// What the fake tools were asked, one call a line.
fn calls(log: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Run `restore` with the fake tools first in PATH (no `--yes`: stdin is
/// not a terminal, so a restore that gets that far stops at the question).
fn restore(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        env.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut args = vec!["restore", ID];
    args.extend_from_slice(extra);
    env.command()
        .env("PATH", path)
        .args(&args)
        .output()
        .unwrap()
}

/// A sound backup of deployment `hx` (one container, one plain volume),
/// its metadata changed by `edit` before it is written.
fn craft(env: &TestEnv, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let root = env.path(BACKUPS);
    if !root.exists() {
        private_dir(&root);
    }
    let dir = root.join(ID);
    private_dir(&dir);
    private_dir(&dir.join("volumes"));
    private_dir(&dir.join(".active"));
    std::fs::write(dir.join(".active/hx.container"), UNIT).unwrap();
    std::fs::write(dir.join("hx.container"), UNIT).unwrap();
    let tar = volume_tar("hx");
    let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
    std::fs::write(dir.join("volumes/hx-data.tar.zst"), &zst).unwrap();
    let mut metadata = json!({
        "id": ID, "deployment_name": "hx", "created_at": "2025-01-02T03:04:05Z",
        "type": "manual", "reason": "manual", "size": zst.len(),
        "quadlet_files": ["hx.container"],
        "volumes": [{
            "name": "hx-data", "archive_path": "volumes/hx-data.tar.zst", "size": zst.len(),
            "existed": true, "uncompressed_size": tar.len(), "sha256": sha256(&zst),
            "root": {"mode": 0o750, "uid": 0, "gid": 0}, "driver": "local",
            "labels": {}, "options": {}, "used_by": ["hx.service"],
        }],
        "format_version": 1, "scope": "user", "compression": "zstd",
        "files": [{
            "location": "active", "path": "hx.container", "stored_as": ".active/hx.container",
            "size": UNIT.len(), "mode": 0o644, "sha256": sha256(UNIT.as_bytes()),
        }, {
            "location": "installed", "path": "hx.container", "stored_as": "hx.container",
            "size": UNIT.len(), "mode": 0o644, "sha256": sha256(UNIT.as_bytes()),
        }],
        "installation": {
            "active_dir": "/home/u/.local/share/bluebuild-quadlets/active/hx",
            "installed_root": "/home/u/.config/containers/systemd",
            "installed_from_active": true,
        },
        "services": [{"name": "hx.service", "was_running": true}],
        "secrets": [], "consistency": "stopped",
    });
    edit(&mut metadata);
    std::fs::write(
        dir.join(".backup-metadata.json"),
        serde_json::to_string_pretty(&metadata).unwrap(),
    )
    .unwrap();
    dir
}

/// `restore` refuses the backup, naming `expected`, and runs nothing.
fn refused_running_nothing(env: &TestEnv, expected: &[&str]) {
    let log = fake_tools(env);
    let out = restore(env, &["--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
    assert_eq!(calls(&log), Vec::<String>::new(), "{err}");
    // Nothing was installed either.
    assert!(!env
        .path(".local/share/bluebuild-quadlets/active/hx")
        .exists());
}

#[test]
fn a_foreign_unit_in_services_is_refused_before_anything_runs() {
    let env = TestEnv::new();
    craft(&env, |m| {
        m["services"] = json!([{"name": "sshd.service", "was_running": true}]);
    });
    refused_running_nothing(
        &env,
        &[
            "refused as hostile",
            "services \"sshd.service\"",
            "its quadlet files do not produce",
        ],
    );
}

#[test]
fn a_foreign_unit_in_used_by_or_volume_service_is_refused() {
    let env = TestEnv::new();
    craft(&env, |m| {
        m["volumes"][0]["used_by"] = json!(["hx.service", "sshd.service"]);
    });
    refused_running_nothing(&env, &["refused as hostile", "used_by \"sshd.service\""]);
    let env = TestEnv::new();
    craft(&env, |m| {
        m["volumes"][0]["volume_service"] = json!("sshd.service");
    });
    refused_running_nothing(
        &env,
        &["refused as hostile", "volume_service \"sshd.service\""],
    );
}

#[test]
fn option_like_names_are_refused_and_listed_invalid() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 5] = [
        (
            |m| m["services"] = json!([{"name": "--url=ssh://x", "was_running": true}]),
            "services \"--url=ssh://x\"",
        ),
        (
            |m| m["services"] = json!([{"name": "-H", "was_running": true}]),
            "services \"-H\"",
        ),
        (
            |m| m["volumes"][0]["used_by"] = json!(["--host=x.service"]),
            "used_by \"--host=x.service\"",
        ),
        (
            |m| m["volumes"][0]["volume_service"] = json!("-H"),
            "volume_service \"-H\"",
        ),
        (
            |m| m["volumes"][0]["name"] = json!("--url=ssh://x"),
            "volume name \"--url=ssh://x\"",
        ),
    ];
    for (edit, expected) in cases {
        let env = TestEnv::new();
        craft(&env, edit);
        refused_running_nothing(&env, &[expected]);
        let out = env.run(&["list"]);
        let listed = stdout(&out);
        assert!(
            listed.contains("invalid") && listed.contains(expected),
            "{listed}"
        );
    }
}

#[test]
fn bind_options_on_a_plain_volume_are_refused() {
    let env = TestEnv::new();
    craft(&env, |m| {
        m["volumes"][0]["driver"] = json!("local");
        m["volumes"][0]["options"] = json!({"device": "/etc", "o": "bind", "type": "none"});
    });
    refused_running_nothing(
        &env,
        &[
            "refused as hostile",
            "options \"device=/etc,o=bind,type=none\" for volume hx-data",
        ],
    );
}

#[test]
fn nothing_runs_before_verification_passes() {
    let env = TestEnv::new();
    let dir = craft(&env, |_| {});
    let archive = dir.join("volumes/hx-data.tar.zst");
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&archive, bytes).unwrap();
    refused_running_nothing(&env, &["refusing to restore", ID]);
}

#[test]
fn a_sound_backup_only_queries_after_verification_with_dashdash() {
    let env = TestEnv::new();
    craft(&env, |_| {});
    let log = fake_tools(&env);
    let out = restore(&env, &[]);
    let err = stderr(&out);
    // It stops at the question (stdin is not a terminal).
    assert!(err.contains("confirmation needed"), "{err}");
    assert!(err.contains("verifying"), "{err}");
    let calls = calls(&log);
    assert_eq!(
        calls,
        [
            "podman volume exists -- hx-data",
            "systemctl --user show --property=ActiveState --value -- hx.service",
        ],
        "{err}"
    );
}

/// The Quadlet directory of the test HOME.
const QUADLETS: &str = ".config/containers/systemd";

#[test]
fn a_volume_another_deployment_uses_is_refused_without_force() {
    let env = TestEnv::new();
    craft(&env, |_| {});
    // A plain Quadlet deployment, not running (nothing runs here), that
    // mounts the same volume.
    env.write(
        &format!("{QUADLETS}/other/other.container"),
        "[Container]\nImage=localhost/busybox\nVolume=hx-data:/data\n",
    );
    refused_running_nothing(
        &env,
        &[
            "refusing to restore hx",
            "volume hx-data is used by deployment other",
            "--force",
        ],
    );
}

#[test]
fn a_file_of_no_deployment_in_the_way_is_refused_and_kept() {
    let env = TestEnv::new();
    craft(&env, |_| {});
    let stray = env.write(&format!("{QUADLETS}/hx.container"), "stray\n");
    refused_running_nothing(
        &env,
        &[
            "would overwrite files that belong to no deployment",
            &stray.display().to_string(),
            "--force",
        ],
    );
    assert_eq!(std::fs::read_to_string(&stray).unwrap(), "stray\n");
}

/// With `--force` the stray file goes into the safety backup: the restore
/// below fails at its volume (the fake podman never creates one) and the
/// rollback puts the file back instead of deleting it.
#[test]
fn with_force_a_rolled_back_restore_puts_the_stray_file_back() {
    let env = TestEnv::new();
    craft(&env, |_| {});
    let stray = env.write(&format!("{QUADLETS}/hx.container"), "stray\n");
    fake_tools(&env);
    let out = restore(&env, &["--force", "--yes"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("belongs to no deployment; replacing it anyway"),
        "{err}"
    );
    assert!(err.contains("rolled back to the previous state"), "{err}");
    assert_eq!(std::fs::read_to_string(&stray).unwrap(), "stray\n", "{err}");
    assert!(
        !env.path(".local/share/bluebuild-quadlets/active/hx")
            .exists(),
        "{err}"
    );
    let listed = stdout(&env.run(&["list"]));
    assert!(listed.contains("pre-restore"), "{listed}");
}
