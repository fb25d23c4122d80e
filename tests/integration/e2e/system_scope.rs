//! `--system` end to end in the testbed, under its system manager: root's deployment as a plain Quadlet subdirectory of
//! `/etc/containers/systemd` and as leger installs one for root
//! (`leger-sim --system`); the system generator's drop-ins, from the
//! testbed's install (/usr/local) and from the RPM (/usr); on-stop backups;
//! leger's hooks with `LEGER_SCOPE=system`; `create`, `list`, `restore`,
//! `prune` and `status` with `--system`; backups and state under `/var/lib`.

use serde_json::Value;

use super::rpm::Package;
use crate::support::testbed::Testbed;

/// Shell functions for every step (run as root in the testbed).
const PRELUDE: &str = r#"
set -eu
Q=/etc/containers/systemd
SIM=/src/tests/support/leger-sim
LEGER=/var/lib/bluebuild-quadlets
BACKUPS=$LEGER/backups
STATE=/var/lib/leger-backup
HOOKS=/etc/leger/hooks
# unit NAME: one container with a named volume, into DIR (VERSION in its environment).
unit() {
  mkdir -p "$2"
  printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' 'RunInit=true' \
    'Exec=sleep 1000000' "Volume=$1-data.volume:/data" "Environment=VERSION=${3:-1}" \
    '[Install]' 'WantedBy=multi-user.target' > "$2/$1-app.container"
  printf '%s\n' '[Volume]' "Label=app=$1" > "$2/$1-data.volume"
}
# deploy NAME: a plain Quadlet directory, started.
deploy() {
  unit "$1" "$Q/$1"
  systemctl daemon-reload
  systemctl start "$1-app.service"
}
# leger_install NAME: leger installs it for root (active dir under /var/lib).
leger_install() {
  unit "$1" "/root/sys-e2e/$1"
  $SIM --system install "$1" "/root/sys-e2e/$1" >/dev/null
  systemctl is-active "$1-app.service" >/dev/null
}
mp() { podman volume inspect --format '{{.Mountpoint}}' "systemd-$1-data"; }
# populate NAME: files of several kinds and owners into the volume.
populate() {
  d=$(mp "$1"); mkdir -p $d/sub; echo "first $1" > $d/index.html
  head -c 100000 /dev/urandom > $d/sub/blob; chown 999:999 $d/sub/blob; chmod 640 $d/sub/blob
}
# manifest NAME: every entry of the volume with its owner, mode and content.
manifest() {
  cd "$(mp "$1")" && find . -printf "%p %y %m %U %G %l\n" | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
}
# hooked NAME: the generated drop-in of NAME-app.service (fails if none).
hooked() {
  for f in $(systemctl show -P DropInPaths "$1-app.service"); do
    case $f in /run/systemd/generator/*) cat "$f"; return 0;; esac
  done
  echo "no generated drop-in for $1-app.service" >&2; return 1
}
# hooks_on / hooks_off: the shipped leger hooks in root's hook directory.
hooks_on() {
  for e in pre-remove pre-apply; do
    mkdir -p $HOOKS/$e.d && install -m 755 /src/hooks/$e.d/50-leger-backup $HOOKS/$e.d/
  done
}
hooks_off() { rm -f $HOOKS/pre-remove.d/50-leger-backup $HOOKS/pre-apply.d/50-leger-backup; }
# reasons NAME: the reasons of NAME's backups, newest first, one a line.
reasons() { leger-backup --system list --deployment "$1" --json | jq -r '.[].reason'; }
cleanup() {
  hooks_off
  rm -f /etc/leger/config.yaml
  if $SIM --system list | grep -qx "$1"; then $SIM --system remove "$1" --no-backup >/dev/null 2>&1; fi
  systemctl stop "$1-app.service" >/dev/null 2>&1 || true
  rm -rf "${Q:?}/$1" "$Q/$1"-* "$LEGER/active/$1" "/root/sys-e2e/$1"*
  systemctl daemon-reload
  systemctl reset-failed "$1-app.service" >/dev/null 2>&1 || true
  podman volume rm -f "systemd-$1-data" >/dev/null 2>&1 || true
  rm -rf "$BACKUPS/$1"-* "$BACKUPS/$1" "$STATE/auto/$1".*
}
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

/// Run a script as root that must succeed; its stdout.
fn root_ok(tb: &Testbed, body: &str) -> String {
    tb.root_ok(&script(body))
}

/// Run a script as root; its JSON output.
fn root_json(tb: &Testbed, body: &str) -> Value {
    let text = root_ok(tb, body);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{body}`: {e}: {text}"))
}

/// The reasons of `name`'s backups, newest first.
fn reasons(tb: &Testbed, name: &str) -> Vec<String> {
    root_ok(tb, &format!("reasons {name}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The IDs in a `list --json` or `prune --json` array.
fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|b| b.as_str().or_else(|| b["id"].as_str()).unwrap_or("?"))
        .collect()
}

/// The drop-in the system generator wrote for `name`'s service, calling
/// the stop hook from `binary`.
fn assert_hooked(tb: &Testbed, name: &str, binary: &str) {
    let dropin = root_ok(tb, &format!("hooked {name}"));
    let expected =
        format!("ExecStopPost=-{binary} --system stop-hook --deployment {name} --unit %n\n");
    assert!(dropin.contains(&expected), "{expected} not in:\n{dropin}");
}

#[test]
fn system_deployment_is_backed_up_restored_and_pruned_under_the_system_manager() {
    let tb = Testbed::get();
    let name = "sysscope";
    root_ok(&tb, &format!("cleanup {name}"));
    root_ok(&tb, &format!("deploy {name}\npopulate {name}"));
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));
    let before = root_ok(&tb, &format!("manifest {name}"));
    // The testbed's system generator (/usr/local) hooked the service.
    assert_hooked(&tb, name, "/usr/local/bin/leger-backup");

    // create: a backup of root's deployment, under /var/lib.
    let created = root_json(&tb, &format!("leger-backup --system create {name} --json"));
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
    let list = root_json(
        &tb,
        &format!("leger-backup --system list --deployment {name} --json"),
    );
    assert_eq!(ids(&list), [id.as_str()], "{list}");
    let user_list = tb.sh(&format!("leger-backup list --deployment {name} --json"));
    let user_list = String::from_utf8_lossy(&user_list.stdout);
    assert!(!user_list.contains(&id), "{user_list}");
    // --system is root's: another user is told to use sudo, not to chown
    // root's backup directory.
    let not_root = tb.sh("leger-backup --system list");
    let said = String::from_utf8_lossy(&not_root.stderr);
    assert!(!not_root.status.success(), "{said}");
    assert!(
        said.contains("sudo leger-backup --system") && !said.contains("chown"),
        "{said}"
    );
    // Hints name root's commands.
    let missing = tb.exec_root(&[
        "leger-backup",
        "--system",
        "delete",
        "sysscope-2000-01-01-000000",
        "--yes",
    ]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{said}");
    assert!(
        said.contains("`leger-backup --system list` shows the backups"),
        "{said}"
    );

    // Change the data, then restore.
    root_ok(
        &tb,
        &format!("d=$(mp {name}); echo changed > $d/index.html; rm $d/sub/blob; touch $d/new"),
    );
    assert_ne!(root_ok(&tb, &format!("manifest {name}")), before);
    root_ok(&tb, &format!("leger-backup --system restore {id} --yes"));
    assert_eq!(root_ok(&tb, &format!("manifest {name}")), before);
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));

    // prune: a second manual backup, one kept: the first one goes.
    let second = root_json(&tb, &format!("leger-backup --system create {name} --json"));
    let second = second["id"].as_str().expect("id").to_owned();
    let pruned = root_json(
        &tb,
        &format!("leger-backup --system prune --deployment {name} --keep-manual 1 --json"),
    );
    assert_eq!(ids(&pruned["deleted"]), [id.as_str()], "{pruned}");
    let list = root_json(
        &tb,
        &format!("leger-backup --system list --deployment {name} --json"),
    );
    assert_eq!(ids(&list), [second.as_str()], "{list}");
    root_ok(&tb, &format!("test ! -e $BACKUPS/{id}"));

    // status: root's generator, the system manager, /var/lib, the deployment.
    let status = root_json(&tb, "leger-backup --system status --json");
    assert_eq!(status["scope"], "system", "{status}");
    assert_eq!(
        status["generator"],
        "/usr/local/lib/systemd/system-generators/leger-backup-system-generator",
        "{status}"
    );
    assert_eq!(status["manager"]["reachable"], true, "{status}");
    assert_eq!(status["backup_dir"], "/var/lib/bluebuild-quadlets/backups");
    let ours = status["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {status}"));
    assert_eq!(ours["automatic"], true, "{ours}");
    assert_eq!(ours["via"], "generator", "{ours}");
    assert_eq!(ours["last_backup"]["id"], second.as_str(), "{ours}");
    let text = root_ok(&tb, "leger-backup --system status");
    assert!(text.contains("system manager:   reachable"), "{text}");

    root_ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn leger_deployment_of_root_is_backed_up_on_stop_by_hooks_and_restored() {
    let tb = Testbed::get();
    let name = "sysleger";
    root_ok(&tb, &format!("cleanup {name}"));
    root_ok(&tb, "hooks_on");
    root_ok(&tb, &format!("leger_install {name}\npopulate {name}"));
    root_ok(
        &tb,
        &format!("test -d $LEGER/active/{name} && test -f $Q/{name}-app.container"),
    );
    let before = root_ok(&tb, &format!("manifest {name}"));
    assert_hooked(&tb, name, "/usr/local/bin/leger-backup");

    // The system manager stops it: the generator's stop hook backs it up,
    // its record under /var/lib.
    root_ok(&tb, &format!("systemctl stop {name}-app.service"));
    let list = root_json(
        &tb,
        &format!("leger-backup --system list --deployment {name} --json"),
    );
    assert_eq!(list[0]["reason"], "on-stop", "{list}");
    assert_eq!(list[0]["type"], "automatic", "{list}");
    assert_eq!(list[0]["consistency"], "stopped", "{list}");
    root_ok(&tb, &format!("test -s $STATE/auto/{name}.json"));
    root_ok(&tb, &format!("systemctl start {name}-app.service"));

    // leger apply (LEGER_SCOPE=system): one before-apply backup, the new
    // version runs; the stop hooks of its stop coalesce into that backup.
    root_ok(
        &tb,
        &format!("unit {name} /root/sys-e2e/{name}-v2 2 && $SIM --system apply {name} /root/sys-e2e/{name}-v2"),
    );
    assert_eq!(reasons(&tb, name), ["before-apply", "on-stop"]);
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));
    root_ok(&tb, &format!("grep -q VERSION=2 $Q/{name}-app.container"));

    // A hook whose backup fails (a broken /etc/leger/config.yaml) stops
    // leger before it changes anything, and says how to go on in root's
    // scope.
    let out = tb.exec_root(&[
        "sh",
        "-c",
        &script(&format!(
            "echo 'backup: [' > /etc/leger/config.yaml; rc=0; $SIM --system remove {name} || rc=$?; \
             rm /etc/leger/config.yaml; exit $rc"
        )),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "`leger deploy remove {name} --system --no-backup`"
        )),
        "{said}"
    );
    root_ok(
        &tb,
        &format!("test -d $LEGER/active/{name} && systemctl is-active {name}-app.service"),
    );

    // leger deploy remove: one before-remove backup, then it is gone.
    root_ok(&tb, &format!("$SIM --system remove {name}"));
    assert_eq!(
        reasons(&tb, name),
        ["before-remove", "before-apply", "on-stop"]
    );
    root_ok(
        &tb,
        &format!("test ! -e $LEGER/active/{name} && test ! -e $Q/{name}-app.container"),
    );
    let id = root_json(
        &tb,
        &format!("leger-backup --system list --deployment {name} --json"),
    )[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // restore --system brings back leger's files, the data and the service.
    root_ok(&tb, &format!("podman volume rm -f systemd-{name}-data"));
    root_ok(&tb, &format!("leger-backup --system restore {id} --yes"));
    root_ok(&tb, &format!("systemctl is-active {name}-app.service"));
    root_ok(
        &tb,
        &format!("test -d $LEGER/active/{name} && grep -q VERSION=2 $Q/{name}-app.container"),
    );
    assert_eq!(root_ok(&tb, &format!("manifest {name}")), before);

    root_ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn rpm_system_generator_and_hooks_back_up_a_deployment_of_root() {
    let tb = Testbed::get();
    let name = "sysrpm";
    root_ok(&tb, &format!("cleanup {name}"));
    let mut package = Package::install(&tb);
    root_ok(
        &tb,
        "test ! -e /usr/local/bin/leger-backup && \
         test \"$(readlink /usr/lib/systemd/system-generators/leger-backup-system-generator)\" = \
           ../../../bin/leger-backup && \
         test -x /usr/lib/leger/hooks/pre-remove.d/50-leger-backup && \
         systemctl daemon-reload",
    );

    // The packaged system generator hooks the deployment leger installs.
    root_ok(&tb, &format!("leger_install {name}\npopulate {name}"));
    assert_hooked(&tb, name, "/usr/bin/leger-backup");
    root_ok(&tb, &format!("systemctl stop {name}-app.service"));
    assert_eq!(reasons(&tb, name), ["on-stop"]);

    // The packaged pre-remove hook (/usr/lib/leger/hooks) backs it up.
    root_ok(&tb, &format!("systemctl start {name}-app.service"));
    root_ok(&tb, &format!("$SIM --system remove {name}"));
    assert_eq!(reasons(&tb, name), ["before-remove", "on-stop"]);

    let problems = package.remove();
    assert!(problems.is_empty(), "removing the package: {problems:#?}");
    root_ok(&tb, &format!("cleanup {name}"));
}
