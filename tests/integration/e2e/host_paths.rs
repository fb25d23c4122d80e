//! `create` backs up a deployment's host paths (issue 12, the create side),
//! in the rootless testbed: an album-like deployment whose library path
//! comes from a `${VAR}` of its `[Service] EnvironmentFile=`, whose
//! database directory is a `%h/...` bind holding files of a container
//! user (a subordinate uid the test user cannot read outside the user
//! namespace), with a bind-mounted single config file and `/etc/localtime`.
//! The backup records the library, the database directory and the config
//! file, never `/etc/localtime`.
//!
//! Needs the direct reader's single-file roots (`--host`, from the other
//! half of issue 12) for the config file.
//!
//! Names (deployment `hp1`, host paths under `~/leger-e2e-hp1*`) are unique
//! to this file. Shell helpers from [`super::hostile_restore`].

use super::hostile_restore::succeeds;
use crate::support::testbed::Testbed;

const CLEANUP_HP1: &str = r#"
systemctl --user stop hp1.service >/dev/null 2>&1 || true
rm -rf "${Q:?}/hp1" "$BACKUPS"/hp1-*
systemctl --user daemon-reload
podman unshare rm -rf "$HOME/leger-e2e-hp1" "$HOME/leger-e2e-hp1-conf"
"#;

/// The deployment, its host paths filled, its service running.
const DEPLOY_HP1: &str = r#"
mkdir -p "$Q/hp1" "$HOME/leger-e2e-hp1/library/2024" "$HOME/leger-e2e-hp1/db" "$HOME/leger-e2e-hp1-conf"
printf 'LIBRARY=%s\n' "$HOME/leger-e2e-hp1/library" > "$Q/hp1/hp1.env"
cat > "$Q/hp1/hp1.container" <<'UNIT'
[Container]
Image=localhost/busybox:latest
Exec=sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
Volume=${LIBRARY}:/data
Volume=%h/leger-e2e-hp1/db:/var/lib/db
Volume=%h/leger-e2e-hp1-conf/app.conf:/etc/app.conf:ro
Volume=/etc/localtime:/etc/localtime:ro

[Service]
EnvironmentFile=%h/.config/containers/systemd/hp1/hp1.env
UNIT
printf 'a cat\n' > "$HOME/leger-e2e-hp1/library/2024/cat.jpg"
printf 'answer = 42\n' > "$HOME/leger-e2e-hp1-conf/app.conf"
head -c 100000 /dev/urandom > "$HOME/leger-e2e-hp1/db/base.bin"
chmod 700 "$HOME/leger-e2e-hp1/db"
podman unshare chown -R 100:100 "$HOME/leger-e2e-hp1/db"
systemctl --user daemon-reload
systemctl --user start hp1.service
active hp1.service
"#;

#[test]
fn create_records_the_data_env_var_and_config_host_paths_not_localtime() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HP1);
    succeeds(&tb, DEPLOY_HP1);
    let (home, _) = succeeds(&tb, "printf %s \"$HOME\"");

    let (json, _) = succeeds(&tb, "leger-backup create hp1 --json");
    let created: serde_json::Value = serde_json::from_str(&json).expect("create --json");
    let id = created["id"].as_str().expect("id").to_owned();
    let (info, _) = succeeds(&tb, &format!("leger-backup --json info {id}"));
    let info: serde_json::Value = serde_json::from_str(&info).expect("info --json");
    let hosts = info["host_paths"].as_array().expect("host_paths");
    let mut paths: Vec<&str> = hosts.iter().map(|h| h["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    let expected = [
        format!("{home}/leger-e2e-hp1-conf/app.conf"),
        format!("{home}/leger-e2e-hp1/db"),
        format!("{home}/leger-e2e-hp1/library"),
    ];
    assert_eq!(paths, expected, "{info}");
    assert!(!paths.contains(&"/etc/localtime"), "{info}");
    let by_path = |p: &str| hosts.iter().find(|h| h["path"] == p).unwrap();
    let library = by_path(&expected[2]);
    assert_eq!(library["source"], "${LIBRARY}");
    assert_eq!(library["kind"], "dir");
    let db = by_path(&expected[1]);
    assert_eq!(db["root"]["uid"], 100, "{db}");
    assert_eq!(db["root"]["mode"], 0o700, "{db}");
    assert_eq!(by_path(&expected[0])["kind"], "file");

    // The database's files are archived with their container owner.
    let (listing, _) = succeeds(
        &tb,
        &format!(
            r#"b="$BACKUPS/{id}"
            a=$(jq -r --arg p "$HOME/leger-e2e-hp1/db" '.host_paths[] | select(.path == $p) | .archive_path' "$b/.backup-metadata.json")
            zstd -dc "$b/$a" | tar --numeric-owner -tvf -"#
        ),
    );
    assert!(listing.contains("100/100"), "{listing}");
    assert!(listing.contains("base.bin"), "{listing}");

    succeeds(&tb, &format!("leger-backup verify {id}"));
    succeeds(&tb, "active hp1.service");
    succeeds(&tb, CLEANUP_HP1);
}
