//! Modes of a deployment's files and directories through the real binary:
//! a crafted backup (metadata written by the test) restored in a private
//! HOME. The deployment has no volumes and no units, so `podman` and
//! `systemctl` are stand-ins in `PATH` that log their arguments and succeed
//! (`systemctl --user daemon-reload` is all a restore of it runs).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{stderr, TestEnv};

const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";
const ACTIVE: &str = ".local/share/bluebuild-quadlets/active";
const ID: &str = "modes-2025-01-01-000000";

/// `podman` and `systemctl` that succeed and print nothing, first in PATH.
fn fake_tools(env: &TestEnv) -> String {
    let script = |tool: &str| {
        let log = env.path(&format!("{tool}.log"));
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 0\n", log.display())
    };
    env.fake_tools(&[
        ("podman", &script("podman")),
        ("systemctl", &script("systemctl")),
    ])
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
}

/// A backup of the leger deployment `modes` holding `files` (relative path,
/// content, recorded mode) and recording `dirs` (relative path, mode).
fn fabricate(env: &TestEnv, files: &[(&str, &str, u32)], dirs: &[(&str, u32)]) -> PathBuf {
    let dir = env.path(BACKUPS).join(ID);
    private_dir(&env.path(BACKUPS));
    private_dir(&dir);
    let mut file_json = Vec::new();
    for (rel, text, mode) in files {
        let stored = dir.join(rel);
        std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
        std::fs::write(&stored, text).unwrap();
        file_json.push(json!({
            "location": "active",
            "path": rel,
            "stored_as": rel,
            "size": text.len(),
            "mode": mode,
            "sha256": hex::encode(Sha256::digest(text.as_bytes())),
        }));
    }
    let dir_json: Vec<_> = dirs
        .iter()
        .map(|(rel, mode)| json!({"location": "active", "path": rel, "mode": mode}))
        .collect();
    let metadata = json!({
        "id": ID,
        "deployment_name": "modes",
        "created_at": "2025-01-01T00:00:00Z",
        "type": "manual",
        "reason": "manual",
        "size": 100,
        "quadlet_files": [],
        "volumes": [],
        "format_version": 1,
        "scope": "user",
        "compression": "zstd",
        "files": file_json,
        "dirs": dir_json,
        "installation": {
            "active_dir": "/home/u/.local/share/bluebuild-quadlets/active/modes",
            "installed_root": "/home/u/.config/containers/systemd",
            "installed_from_active": true,
        },
        "services": [],
        "secrets": [],
    });
    std::fs::write(
        dir.join(".backup-metadata.json"),
        serde_json::to_string_pretty(&metadata).unwrap(),
    )
    .unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A backup whose metadata asks for setuid+setgid (0o6755) restores the
/// file as 0755; its directories come back with their recorded modes.
#[test]
fn restore_never_gives_back_setuid_or_setgid() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    fabricate(
        &env,
        &[
            ("bin/tool.sh", "#!/bin/sh\necho hi\n", 0o6755),
            ("secrets/token", "s3cret\n", 0o600),
        ],
        &[
            (".", 0o750),
            ("bin", 0o2750),
            ("secrets", 0o700),
            ("empty", 0o710),
        ],
    );
    let out = env
        .command()
        .env("PATH", &path)
        .args(["restore", ID, "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let active = env.path(ACTIVE).join("modes");
    assert_eq!(mode(&active.join("bin/tool.sh")), 0o755);
    assert_eq!(mode(&active.join("secrets/token")), 0o600);
    assert_eq!(mode(&active.join("secrets")), 0o700);
    assert_eq!(mode(&active.join("bin")), 0o750);
    assert_eq!(mode(&active.join("empty")), 0o710);
    assert_eq!(mode(&active), 0o750);
    let log = std::fs::read_to_string(env.path("systemctl.log")).unwrap_or_default();
    assert!(log.contains("daemon-reload"), "{log}");
}

/// A mode with bits above 0o7777 marks the backup invalid: `verify` and
/// `restore` refuse it naming the entry, and nothing is written.
#[test]
fn a_mode_above_permission_bits_is_refused() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    fabricate(
        &env,
        &[("conf/app.env", "A=1\n", 0o100644)],
        &[(".", 0o755), ("conf", 0o755)],
    );
    for args in [&["verify", ID][..], &["restore", ID, "--yes"][..]] {
        let out = env
            .command()
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("0o100644"), "{args:?}: {err}");
        assert!(err.contains("conf/app.env"), "{args:?}: {err}");
    }
    assert!(!env.path(ACTIVE).join("modes").exists());
}

/// A deployment file larger than the cap is refused at backup time, naming
/// it and saying where large data belongs; no backup is kept.
#[test]
fn create_refuses_a_deployment_file_over_the_cap() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    let active = env.path(ACTIVE).join("big");
    std::fs::create_dir_all(&active).unwrap();
    std::fs::write(active.join("app.env"), "A=1\n").unwrap();
    let data = std::fs::File::create(active.join("data.bin")).unwrap();
    data.set_len((64 << 20) + 1).unwrap();
    let out = env
        .command()
        .env("PATH", &path)
        .args(["create", "big"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("data.bin"), "{err}");
    assert!(err.contains("more than a deployment file may be"), "{err}");
    assert!(err.contains("move large data into a volume"), "{err}");
    let kept: Vec<_> = std::fs::read_dir(env.path(BACKUPS))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "{kept:?}");
}
