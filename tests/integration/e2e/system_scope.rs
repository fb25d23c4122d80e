//! `--system` end to end, in the *booted* testbed only
//! (`LEGER_TESTBED_BOOT=1 tests/testbed/testbed.sh up`): root's deployment
//! as a plain Quadlet subdirectory of `/etc/containers/systemd`, run by the
//! system manager, backed up and restored with `leger-backup --system`,
//! its backups under `/var/lib`.
//!
//! Without a system manager these tests fail (never skip), saying so. They
//! are left out of the default run by `.config/nextest.toml`'s
//! `default-filter` until the booted testbed is the default one; run them
//! with `cargo nextest run --profile boot -E 'test(/^e2e::system_scope::/)'`.

use serde_json::Value;

use crate::support::testbed::Testbed;

/// Shell functions for every step (run as root in the testbed).
const PRELUDE: &str = r#"
set -eu
Q=/etc/containers/systemd
BACKUPS=/var/lib/bluebuild-quadlets/backups
# deploy NAME: one container with a named volume, a plain Quadlet directory.
deploy() {
  mkdir -p "$Q/$1"
  printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' 'RunInit=true' \
    'Exec=sleep 1000000' "Volume=$1-data.volume:/data" '[Install]' 'WantedBy=multi-user.target' \
    > "$Q/$1/$1-app.container"
  printf '%s\n' '[Volume]' "Label=app=$1" > "$Q/$1/$1-data.volume"
  systemctl daemon-reload
  systemctl start "$1-app.service"
}
mp() { podman volume inspect --format '{{.Mountpoint}}' "systemd-$1-data"; }
# manifest NAME: every entry of the volume with its owner, mode and content.
manifest() {
  cd "$(mp "$1")" && find . -printf "%p %y %m %U %G %l\n" | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
}
cleanup() {
  systemctl stop "$1-app.service" >/dev/null 2>&1 || true
  rm -rf "${Q:?}/$1"
  systemctl daemon-reload
  systemctl reset-failed "$1-app.service" >/dev/null 2>&1 || true
  podman volume rm -f "systemd-$1-data" >/dev/null 2>&1 || true
  rm -rf "$BACKUPS/$1"-* "$BACKUPS/$1"
}
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

/// Run a script as root that must succeed; its stdout.
fn root_ok(tb: &Testbed, body: &str) -> String {
    let out = tb.exec_root(&["sh", "-c", &script(body)]);
    assert!(
        out.status.success(),
        "in testbed as root: `{body}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The testbed, which must be the booted one: these tests need a system
/// manager, and fail (not skip) without it.
fn booted_testbed() -> Testbed {
    let tb = Testbed::get();
    let out = tb.exec_root(&["systemctl", "is-system-running"]);
    let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        state == "running" || state == "degraded",
        "this test needs the booted testbed (systemd as PID 1), but the system manager's state is \
         `{state}`: start it with `tests/testbed/testbed.sh down && LEGER_TESTBED_BOOT=1 \
         tests/testbed/testbed.sh up`"
    );
    tb
}

#[test]
fn system_deployment_is_backed_up_and_restored_under_the_system_manager() {
    let tb = booted_testbed();
    let name = "sysscope";
    root_ok(&tb, &format!("cleanup {name}"));
    root_ok(
        &tb,
        &format!(
            "deploy {name}\n\
             d=$(mp {name}); mkdir -p $d/sub; echo 'first {name}' > $d/index.html\n\
             head -c 100000 /dev/urandom > $d/sub/blob; chown 999:999 $d/sub/blob; chmod 640 $d/sub/blob"
        ),
    );
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));
    let before = root_ok(&tb, &format!("manifest {name}"));

    // create: a backup of root's deployment, under /var/lib.
    let created: Value = serde_json::from_str(&root_ok(
        &tb,
        &format!("leger-backup --system create {name} --json"),
    ))
    .expect("create --json");
    let id = created["id"].as_str().expect("id").to_owned();
    let volumes: Vec<&str> = created["metadata"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(volumes, [format!("systemd-{name}-data")], "{created}");
    root_ok(&tb, &format!("ls -d $BACKUPS/{name}* | grep -q ."));
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));

    // list shows it; the user's (rootless) list does not.
    let list: Value = serde_json::from_str(&root_ok(
        &tb,
        &format!("leger-backup --system list --deployment {name} --json"),
    ))
    .expect("list --json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("list is an array")
        .iter()
        .map(|b| b["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids, [id.as_str()], "{list}");
    let user_list = tb.sh(&format!("leger-backup list --deployment {name} --json"));
    let user_list = String::from_utf8_lossy(&user_list.stdout);
    assert!(!user_list.contains(&id), "{user_list}");

    // Change the data, then restore.
    root_ok(
        &tb,
        &format!("d=$(mp {name}); echo changed > $d/index.html; rm $d/sub/blob; touch $d/new"),
    );
    assert_ne!(root_ok(&tb, &format!("manifest {name}")), before);
    root_ok(&tb, &format!("leger-backup --system restore {id} --yes"));
    assert_eq!(root_ok(&tb, &format!("manifest {name}")), before);
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));

    root_ok(&tb, &format!("cleanup {name}"));
}
