//! Unchanged data costs nothing, through the real binary in a private HOME:
//! a plain Quadlet deployment with one volume, `podman` and `systemctl`
//! stand-ins in `PATH` (the volume is a directory of the test; its export
//! is `tar`; no service runs). A second backup with nothing changed shares
//! the first one's archive; a change makes a new one; deleting the first
//! backup leaves the second verifiable.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::{stderr, stdout, TestEnv, SYSTEMCTL_ALL_INACTIVE};

const BACKUPS: &str = ".local/share/bluebuild-quadlets/backups";

/// `podman` answering for volumes under `volumes/` of HOME (the local
/// driver), and a `systemctl` to which every unit is inactive; first in
/// PATH.
fn fake_tools(env: &TestEnv) -> String {
    let volumes = env.path("volumes");
    let podman = format!(
        r#"#!/bin/sh
V='{volumes}'
last() {{ for a; do :; done; printf '%s' "$a"; }}
case "$1 $2" in
  "volume inspect")
    n=$(last "$@")
    [ -d "$V/$n" ] || exit 125
    printf '[{{"Name":"%s","Driver":"local","Mountpoint":"%s/%s","Labels":{{}},"Options":{{}}}}]\n' "$n" "$V" "$n" ;;
  "volume exists") [ -d "$V/$(last "$@")" ] ;;
  "volume export") cd "$V/$(last "$@")" && exec tar -cf - -- * ;;
  "ps -a") echo '[]' ;;
  unshare*) shift; exec "$@" ;;
  *) exit 0 ;;
esac
"#,
        volumes = volumes.display()
    );
    env.fake_tools(&[("podman", &podman), ("systemctl", SYSTEMCTL_ALL_INACTIVE)])
}

/// Deployment `web`: one container mounting volume `web-data`, which holds
/// `f` with `text`.
fn deploy(env: &TestEnv, text: &str) {
    env.write(
        ".config/containers/systemd/web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=web-data:/data\n",
    );
    env.write("volumes/web-data/f", text);
}

/// `leger-backup create web`; the new backup's ID.
fn create(env: &TestEnv, path: &str) -> String {
    let out = env
        .command()
        .env("PATH", path)
        .args(["--json", "create", "web"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("create --json");
    created["id"].as_str().expect("id").to_owned()
}

fn archive(env: &TestEnv, id: &str) -> PathBuf {
    env.path(BACKUPS).join(id).join("volumes/web-data.tar.zst")
}

/// (inode, links) of a file.
fn identity(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.ino(), meta.nlink())
}

#[test]
fn an_unchanged_volume_shares_the_archive_of_the_newest_backup() {
    let env = TestEnv::new();
    let path = fake_tools(&env);
    deploy(&env, "one\n");
    let first = create(&env, &path);
    let second = create(&env, &path);
    let (inode, links) = identity(&archive(&env, &first));
    assert_eq!(links, 2, "the unchanged volume was exported again");
    assert_eq!(identity(&archive(&env, &second)), (inode, 2));

    // Same size, new content: a new archive; the shared one untouched.
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.write("volumes/web-data/f", "two\n");
    let third = create(&env, &path);
    let (new_inode, new_links) = identity(&archive(&env, &third));
    assert_ne!(new_inode, inode);
    assert_eq!(new_links, 1);

    let run = |args: &[&str]| {
        let out = env
            .command()
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    run(&["delete", &first, "--yes"]);
    assert_eq!(identity(&archive(&env, &second)), (inode, 1));
    run(&["verify", &second]);
    run(&["verify", &third]);
}
