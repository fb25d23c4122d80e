//! The machine's lifecycle in the testbed (systemd as PID 1): real
//! reboots of the container's OS with rootless deployments enabled at boot
//! (`WantedBy=default.target` in plain Quadlet directories of tester's
//! `~/.config/containers/systemd`), what `auto.on_shutdown` makes the stop
//! hooks do then, the lingering user manager that starts them again at
//! boot, and a root service whose start failed.
//!
//! A reboot costs seconds, so each test reboots once and checks all it can
//! around that one reboot.

use serde_json::Value;

use crate::support::deploy::LegerConfig;
use crate::support::testbed::Testbed;

/// Shell functions for every step (as tester unless run with `root_ok`).
const PRELUDE: &str = r#"
set -eu
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
STATE=$HOME/.local/state/leger-backup
Q=$HOME/.config/containers/systemd
UNITS=$HOME/.config/systemd/user
services() { echo "$1-app.service $1-side.service"; }
# deploy NAME: two containers sharing a volume, a plain Quadlet directory,
# enabled at boot; started, with a file in the volume.
deploy() {
  mkdir -p "$Q/$1"
  for c in app side; do
    printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' 'RunInit=true' \
      'Exec=sleep 1000000' "Volume=$1-data.volume:/data" '[Install]' 'WantedBy=default.target' \
      > "$Q/$1/$1-$c.container"
  done
  printf '%s\n' '[Volume]' > "$Q/$1/$1-data.volume"
  systemctl --user daemon-reload
  systemctl --user start $(services "$1")
  podman unshare sh -c 'head -c 300000 /dev/urandom > "$1/blob"' sh \
    "$(podman volume inspect --format '{{.Mountpoint}}' "systemd-$1-data")"
}
# fault NAME ACTION: the backup of NAME's stop hooks stops in its export
# (LEGER_BACKUP_FAULT=create:during-export,ACTION).
fault() {
  for s in $(services "$1"); do
    mkdir -p "$UNITS/$s.d"
    printf '%s\n' '[Service]' "Environment=LEGER_BACKUP_FAULT=create:during-export,$2" \
      > "$UNITS/$s.d/fault.conf"
  done
  systemctl --user daemon-reload
}
cleanup() {
  # A fault drop-in left by a failed run goes first: it would hold the stop.
  rm -rf "$UNITS/$1"-*.service.d
  systemctl --user daemon-reload
  systemctl --user stop $(services "$1") >/dev/null 2>&1 || true
  rm -rf "${Q:?}/$1"
  systemctl --user daemon-reload
  systemctl --user reset-failed $(services "$1") >/dev/null 2>&1 || true
  podman volume rm -f "systemd-$1-data" >/dev/null 2>&1 || true
  if [ -d "$BACKUPS" ]; then rm -rf "$BACKUPS/$1"-* "$BACKUPS/.tmp-$1"-*; fi
  rm -rf "$STATE/auto/$1".* "$STATE/journal/$1.json" "$HOME/$1"-probe-*
}
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

fn ok(tb: &Testbed, body: &str) -> String {
    tb.ok(&script(body))
}

/// Run a script as root that must succeed; its stdout.
fn root_ok(tb: &Testbed, body: &str) -> String {
    tb.root_ok(&format!("set -eu\n{body}"))
}

/// The reasons of `name`'s backups (`list --json`), newest first; `scope`
/// is "" or " --system".
fn reasons(tb: &Testbed, scope: &str, name: &str) -> Vec<String> {
    let cmd = format!("leger-backup{scope} list --deployment {name} --json");
    let text = if scope.is_empty() {
        ok(tb, &cmd)
    } else {
        root_ok(tb, &cmd)
    };
    let list: Vec<Value> = serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text })
        .unwrap_or_else(|e| panic!("list --json: {e}: {text}"));
    list.iter()
        .map(|b| b["reason"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// What the automatic triggers last did for `name` (`status --json`).
fn status_of(tb: &Testbed, scope: &str, name: &str) -> Value {
    let cmd = format!("leger-backup{scope} status --json");
    let text = if scope.is_empty() {
        ok(tb, &cmd)
    } else {
        root_ok(tb, &cmd)
    };
    let status: Value = serde_json::from_str(&text).expect("status --json");
    status["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {status}"))
        .clone()
}

fn last_skip(tb: &Testbed, scope: &str, name: &str) -> String {
    status_of(tb, scope, name)["last_skip"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `auto.on_shutdown: false` (the default): a reboot with the deployment
/// running takes no backup (each hook only records why); at boot the
/// lingering user manager starts the deployment with the generator's
/// drop-ins already in place, so a stop after boot backs up.
#[test]
fn a_reboot_without_on_shutdown_takes_no_backup_and_linger_brings_the_hooks_back() {
    let tb = Testbed::get();
    let name = "lcoff";
    ok(&tb, &format!("cleanup {name}"));
    let _config = LegerConfig::set(&tb, "auto:\n  on_shutdown: false\n");
    ok(&tb, &format!("deploy {name}"));
    // Each service, as it starts, writes down the drop-ins its manager has
    // for it then (testbed.sh's `up` reloads after boot, so what the
    // manager shows later proves nothing about boot).
    ok(
        &tb,
        &format!(
            "for s in $(services {name}); do mkdir -p $UNITS/$s.d && \
               printf '%s\\n' '[Service]' \
               'ExecStartPre=/bin/sh -c \"systemctl --user show -p DropInPaths %n > %h/{name}-probe-%n\"' \
               > $UNITS/$s.d/probe.conf; done; systemctl --user daemon-reload; rm -f $HOME/{name}-probe-*"
        ),
    );

    tb.reboot();

    ok(
        &tb,
        &format!("systemctl --user is-active $(services {name})"),
    );
    assert_eq!(reasons(&tb, "", name), Vec::<String>::new());
    let skip = last_skip(&tb, "", name);
    assert!(skip.contains("auto.on_shutdown"), "{skip}");
    for unit in ["app", "side"] {
        let unit = format!("{name}-{unit}.service");
        let dropin = format!("/run/user/1000/systemd/generator/{unit}.d/50-leger-backup.conf");
        let at_start = ok(&tb, &format!("cat $HOME/{name}-probe-{unit}"));
        assert!(at_start.contains(&dropin), "{unit} at boot: {at_start}");
    }
    ok(&tb, &format!("systemctl --user stop $(services {name})"));
    assert_eq!(reasons(&tb, "", name), ["on-stop"]);

    ok(&tb, &format!("cleanup {name}"));
}

/// `auto.on_shutdown: true`: a reboot backs each deployment up within the
/// stop timeout and the system comes back. A backup cut off by the timeout
/// (made to stop in its export) leaves nothing half-done: one that gets
/// systemd's SIGTERM cleans up after itself and records the failure; one
/// that ignores it (hung, so systemd SIGKILLs it) leaves a half-written
/// backup and a journal, which the next leger-backup run after boot
/// removes, after which the deployment backs up as before.
#[test]
fn a_reboot_with_on_shutdown_backs_up_and_a_cut_off_backup_is_cleaned_up_after_boot() {
    let tb = Testbed::get();
    let (done, term, hung) = ("lcon", "lcterm", "lchung");
    let all = format!("{done} {term} {hung}");
    ok(&tb, &format!("for n in {all}; do cleanup $n; done"));
    let _config = LegerConfig::set(&tb, "auto:\n  on_shutdown: true\n  stop_timeout: 10\n");
    ok(&tb, &format!("for n in {all}; do deploy $n; done"));
    let unit = ok(&tb, &format!("systemctl --user cat {done}-app.service"));
    assert!(unit.contains("TimeoutStopSec=10"), "{unit}");
    ok(&tb, &format!("fault {term} sleep=600; fault {hung} hang"));

    let shutdown = tb.reboot();
    // Two stop timeouts at most for the hung hook (SIGTERM, then SIGKILL).
    assert!(
        shutdown.as_secs() < 60,
        "shutdown took {shutdown:?} with a 10 s stop timeout"
    );

    ok(
        &tb,
        &format!("for n in {all}; do systemctl --user is-active $(services $n); done"),
    );
    // Before any leger-backup command: leger-backup-cleanup.service, which
    // the generator wants at boot, removed the hung backup's leftovers and
    // said so in the journal; the one that got SIGTERM left none.
    ok(
        &tb,
        &format!(
            "! ls -d $BACKUPS/.tmp-{hung}-* 2>/dev/null && test ! -e $STATE/journal/{hung}.json && \
             ! ls -d $BACKUPS/.tmp-{term}-* 2>/dev/null && test ! -e $STATE/journal/{term}.json"
        ),
    );
    let cleanup = ok(
        &tb,
        "journalctl --user -b -u leger-backup-cleanup.service --no-pager -o cat",
    );
    assert!(
        cleanup.contains(hung) && cleanup.contains("removed its unfinished backup"),
        "no word about {hung} from the clean-up at boot:\n{cleanup}"
    );
    // The completed one is listed and sound.
    let out = tb.sh(&script(&format!(
        "leger-backup list --deployment {done} --json"
    )));
    assert!(out.status.success(), "{out:?}");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("list --json");
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["reason"], "on-stop");
    let id = list[0]["id"].as_str().expect("id").to_owned();
    ok(&tb, &format!("leger-backup verify {id}"));
    // The interrupted one says what happened, and that nothing was started.
    let failure = status_of(&tb, "", term)["last_failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        failure.contains("interrupted by SIGTERM") && failure.contains("stay down"),
        "{failure}"
    );
    for name in [term, hung] {
        assert_eq!(reasons(&tb, "", name), Vec::<String>::new(), "{name}");
    }
    // Nothing half-done is in the way: their next stop backs them up.
    ok(
        &tb,
        &format!(
            "rm -rf $UNITS/{term}-*.service.d $UNITS/{hung}-*.service.d && \
             systemctl --user daemon-reload && \
             systemctl --user stop $(services {term}) $(services {hung})"
        ),
    );
    for name in [term, hung] {
        assert_eq!(reasons(&tb, "", name), ["on-stop"], "{name}");
    }

    ok(&tb, &format!("for n in {all}; do cleanup $n; done"));
}

/// A root service whose start fails (a bad `Exec=`) ran nothing, so its
/// stop hook takes no backup and records why, instead of an `on-stop`
/// success for a deployment that never came up.
#[test]
fn a_root_service_that_failed_to_start_gets_no_backup() {
    let tb = Testbed::get();
    let name = "lcfail";
    let dir = format!("/etc/containers/systemd/{name}");
    let cleanup = format!(
        "systemctl stop {name}-app.service >/dev/null 2>&1 || true; rm -rf {dir}; \
         systemctl daemon-reload; systemctl reset-failed {name}-app.service 2>/dev/null || true; \
         podman volume rm -f systemd-{name}-data >/dev/null 2>&1 || true; \
         rm -rf /var/lib/bluebuild-quadlets/backups/{name}-* /var/lib/leger-backup/auto/{name}.*"
    );
    root_ok(&tb, &cleanup);
    root_ok(
        &tb,
        &format!(
            "mkdir -p {dir}\n\
             printf '%s\\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' \
               'Exec=/no/such/program' 'Volume={name}-data.volume:/data' > {dir}/{name}-app.container\n\
             printf '%s\\n' '[Volume]' > {dir}/{name}-data.volume\n\
             systemctl daemon-reload\n\
             systemctl cat {name}-app.service | grep -q 'stop-hook --deployment {name}'\n\
             ! systemctl start {name}-app.service\n\
             test \"$(systemctl show -p ActiveState --value {name}-app.service)\" = failed"
        ),
    );
    assert_eq!(reasons(&tb, " --system", name), Vec::<String>::new());
    let skip = last_skip(&tb, " --system", name);
    assert!(skip.contains("never became active"), "{skip}");
    root_ok(&tb, &cleanup);
}
