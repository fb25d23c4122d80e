//! Automatic backups end to end in the rootless testbed, where the testbed
//! installs the user generator: stop hooks through the generated drop-ins,
//! leger's hooks called by leger-sim exactly as the protocol says, the
//! generator on reload, `enable`/`disable` without the generator, pruning.
//!
//! Each test uses its own deployment (`auto<what>`: two containers sharing
//! a `.volume`), cleans up what an earlier failed run may have left, and
//! puts back leger's config, the hook scripts and the generator link it
//! changed, even when it fails (guards).

use std::time::Instant;

use serde_json::Value;

use crate::support::deploy::LegerConfig;
use crate::support::testbed::Testbed;

/// Shell functions for every step (run as the test user in the testbed).
pub(super) const PRELUDE: &str = r#"
set -eu
SIM=/src/tests/support/leger-sim
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
STATE=$HOME/.local/state/leger-backup
# make_src NAME DIR [VERSION]: a deployment of two containers sharing a volume.
make_src() {
  rm -rf "$2"; mkdir -p "$2"
  for c in app side; do
    printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' 'RunInit=true' \
      'Exec=sleep 1000000' "Volume=$1-data.volume:/data" "Environment=VERSION=${3:-1}" \
      > "$2/$1-$c.container"
  done
  printf '%s\n' '[Volume]' "Label=app=$1" > "$2/$1-data.volume"
}
vol_mp() { podman volume inspect --format '{{.Mountpoint}}' "systemd-$1-data"; }
# populate NAME: files of several kinds into the deployment's volume.
populate() {
  podman unshare sh -ec 'mkdir -p "$1/sub" && echo "hello $2" > "$1/index.html" &&
    head -c 200000 /dev/urandom > "$1/sub/blob" && ln -sf sub/blob "$1/link" &&
    echo secret > "$1/sub/key" && chmod 600 "$1/sub/key" && chown 1234:1234 "$1/sub/key"' \
    sh "$(vol_mp "$1")" "$1"
}
# manifest NAME: every entry of the volume, seen inside the user namespace.
manifest() {
  podman unshare sh -c 'cd "$1" && find . -printf "%p %y %m %U %G %l\n" | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum' sh "$(vol_mp "$1")"
}
services() { echo "$1-app.service $1-side.service"; }
cleanup() {
  $SIM remove "$1" --no-backup >/dev/null 2>&1 || true
  systemctl --user stop $(services "$1") >/dev/null 2>&1 || true
  rm -rf "$HOME/.config/containers/systemd/$1" "$HOME/auto-e2e/$1" "$HOME/auto-e2e/$1"-*
  rm -rf "$HOME/.config/systemd/user/$1"-*.service.d
  systemctl --user daemon-reload
  podman volume rm -f "systemd-$1-data" >/dev/null 2>&1 || true
  if [ -d "$BACKUPS" ]; then chmod 700 "$BACKUPS"; fi
  rm -rf "$BACKUPS/$1"-* "$STATE/auto/$1".*
}
# install NAME: leger installs it, its volume gets data.
install() {
  make_src "$1" "$HOME/auto-e2e/$1"
  $SIM install "$1" "$HOME/auto-e2e/$1" >/dev/null
  systemctl --user is-active $(services "$1") >/dev/null
  populate "$1"
}
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

/// Run a script that must succeed; its stdout.
pub(super) fn ok(tb: &Testbed, body: &str) -> String {
    tb.ok(&script(body))
}

/// Run a script that must fail; its stderr.
fn fails(tb: &Testbed, body: &str) -> String {
    let out = tb.sh(&script(body));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected `{body}` to fail\nstdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The backups of `name`, newest first, as `list --json` gives them.
pub(super) fn backups(tb: &Testbed, name: &str) -> Vec<Value> {
    let text = ok(tb, &format!("leger-backup list --deployment {name} --json"));
    let text = if text.trim().is_empty() { "[]" } else { &text };
    serde_json::from_str::<Vec<Value>>(text).unwrap_or_else(|e| panic!("list --json: {e}: {text}"))
}

fn reasons(tb: &Testbed, name: &str) -> Vec<String> {
    backups(tb, name)
        .iter()
        .map(|b| b["reason"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// What the automatic triggers last did for `name` (`status --json`).
fn status_of(tb: &Testbed, name: &str) -> Value {
    let status: Value =
        serde_json::from_str(&ok(tb, "leger-backup status --json")).expect("status --json");
    status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {status}"))
        .clone()
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let value = f();
    eprintln!("[timing] {label}: {:.2} s", t0.elapsed().as_secs_f64());
    value
}

/// leger's config file, relative to HOME.
const CONFIG: &str = ".config/leger/config.yaml";

/// The shipped leger hooks installed in the user's hook directory (one of
/// the three leger-sim searches), removed afterwards.
struct Hooks<'a>(&'a Testbed);

impl<'a> Hooks<'a> {
    fn install(tb: &'a Testbed) -> Hooks<'a> {
        tb.ok(
            "for e in pre-remove pre-apply; do mkdir -p ~/.config/leger/hooks/$e.d && \
               cp /src/hooks/$e.d/50-leger-backup ~/.config/leger/hooks/$e.d/ && \
               chmod 755 ~/.config/leger/hooks/$e.d/50-leger-backup; done",
        );
        Hooks(tb)
    }
}

impl Drop for Hooks<'_> {
    fn drop(&mut self) {
        self.0
            .sh("rm -f ~/.config/leger/hooks/pre-remove.d/50-leger-backup ~/.config/leger/hooks/pre-apply.d/50-leger-backup");
    }
}

const GENERATOR: &str = "/usr/local/lib/systemd/user-generators/leger-backup-user-generator";

/// The testbed's generator link taken away, put back afterwards.
struct NoGenerator<'a>(&'a Testbed);

impl<'a> NoGenerator<'a> {
    fn new(tb: &'a Testbed) -> NoGenerator<'a> {
        let out = tb.exec_root(&["rm", "-f", GENERATOR]);
        assert!(out.status.success());
        tb.ok("systemctl --user daemon-reload");
        NoGenerator(tb)
    }
}

impl Drop for NoGenerator<'_> {
    fn drop(&mut self) {
        self.0
            .exec_root(&["ln", "-sfn", "/usr/local/bin/leger-backup", GENERATOR]);
        self.0.sh("systemctl --user daemon-reload");
    }
}

#[test]
fn stopping_a_deployment_takes_one_backup_with_its_services_down() {
    let tb = Testbed::get();
    let name = "autostop";
    ok(&tb, &format!("cleanup {name}"));
    let _config = LegerConfig::set(&tb, "auto:\n  min_interval: 10m\n  coalesce_seconds: 60\n");
    ok(&tb, &format!("install {name}"));
    let unit = ok(&tb, &format!("systemctl --user cat {name}-app.service"));
    assert!(
        unit.contains("50-leger-backup.conf")
            && unit.contains(&format!("stop-hook --deployment {name} --unit %n")),
        "no stop hook in {name}-app.service:\n{unit}"
    );
    let before = ok(&tb, &format!("manifest {name}"));

    // Both services stopped together: one backup, services down.
    timed("stop with backup", || {
        ok(&tb, &format!("systemctl --user stop $(services {name})"))
    });
    let list = backups(&tb, name);
    assert_eq!(list.len(), 1, "{list:#?}");
    let backup = &list[0];
    let id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(backup["reason"], "on-stop");
    assert_eq!(backup["type"], "automatic");
    assert_eq!(backup["consistency"], "stopped");
    assert_eq!(
        backup["downtime_seconds"],
        Value::Null,
        "the hook stopped nothing itself"
    );
    ok(&tb, &format!("leger-backup verify {id}"));
    let status = status_of(&tb, name);
    assert_eq!(status["automatic"], true, "{status}");
    assert_eq!(status["via"], "generator", "{status}");
    assert_eq!(status["last_backup"]["id"], id.as_str(), "{status}");
    assert_eq!(status["kept"]["automatic"], 1, "{status}");
    // The data did not change while it was taken.
    assert_eq!(ok(&tb, &format!("manifest {name}")), before);

    // Again within min_interval: nothing.
    ok(
        &tb,
        &format!(
            "systemctl --user start $(services {name}) && systemctl --user stop $(services {name})"
        ),
    );
    assert_eq!(reasons(&tb, name), ["on-stop"]);
    let skip = status_of(&tb, name)["last_skip"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        skip.starts_with("rate limited") || skip.starts_with("coalesced"),
        "{skip}"
    );

    // Deleting the backups resets the limit (derived, not stored); then one
    // service of two stopping is no backup, the last one stopping is.
    ok(&tb, &format!("leger-backup delete {id} --yes"));
    ok(&tb, &format!("systemctl --user start $(services {name})"));
    ok(&tb, &format!("systemctl --user stop {name}-app.service"));
    assert!(backups(&tb, name).is_empty());
    let skip = status_of(&tb, name)["last_skip"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        skip.contains(&format!("{name}-side.service still running")),
        "{skip}"
    );
    ok(&tb, &format!("systemctl --user stop {name}-side.service"));
    assert_eq!(reasons(&tb, name), ["on-stop"]);

    ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn leger_remove_backs_up_once_and_restore_brings_it_back() {
    let tb = Testbed::get();
    let name = "autoremove";
    ok(&tb, &format!("cleanup {name}"));
    let _config = LegerConfig::set(&tb, "auto:\n  coalesce_seconds: 60\n");
    let _hooks = Hooks::install(&tb);
    ok(&tb, &format!("install {name}"));
    let before = ok(&tb, &format!("manifest {name}"));

    timed("leger-sim remove with hook", || {
        ok(&tb, &format!("$SIM remove {name}"))
    });
    ok(
        &tb,
        &format!("test ! -e ~/.local/share/bluebuild-quadlets/active/{name}"),
    );
    let list = backups(&tb, name);
    assert_eq!(
        list.iter().map(|b| b["reason"].clone()).collect::<Vec<_>>(),
        ["before-remove"],
        "one backup, not two: {list:#?}"
    );
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["consistency"], "stopped");
    // The stop hooks that fired when leger stopped the services coalesced.
    let skip = status_of(&tb, name)["last_skip"].clone();
    assert!(
        skip["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("coalesced"),
        "{skip}"
    );

    // Wipe the data too, then restore.
    ok(&tb, &format!("podman volume rm -f systemd-{name}-data"));
    timed("restore", || {
        ok(&tb, &format!("leger-backup restore {id} --yes"))
    });
    ok(
        &tb,
        &format!("systemctl --user is-active $(services {name})"),
    );
    ok(
        &tb,
        &format!("test -d ~/.local/share/bluebuild-quadlets/active/{name}"),
    );
    assert_eq!(ok(&tb, &format!("manifest {name}")), before);

    ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn leger_apply_backs_up_unless_told_not_and_a_failed_backup_aborts_remove() {
    let tb = Testbed::get();
    let name = "autoapply";
    ok(&tb, &format!("cleanup {name}"));
    let _config = LegerConfig::set(&tb, "auto:\n  coalesce_seconds: 60\n");
    let _hooks = Hooks::install(&tb);
    ok(&tb, &format!("install {name}"));

    // A changed version: one before-apply backup, then the new version runs.
    ok(
        &tb,
        &format!(
            "make_src {name} ~/auto-e2e/{name}-v2 2 && $SIM apply {name} ~/auto-e2e/{name}-v2"
        ),
    );
    assert_eq!(reasons(&tb, name), ["before-apply"]);
    ok(
        &tb,
        &format!("systemctl --user is-active $(services {name})"),
    );
    ok(
        &tb,
        &format!("grep -q VERSION=2 ~/.config/containers/systemd/{name}-app.container"),
    );

    // --no-backup (LEGER_NO_BACKUP=1 for the hooks): none, and the stop
    // hooks do not take one either. Backups are removed first so that
    // coalescing is not what keeps them quiet.
    ok(&tb, &format!("rm -rf \"$BACKUPS\"/{name}-*"));
    let out = tb.sh(&script(&format!(
        "make_src {name} ~/auto-e2e/{name}-v3 3 && $SIM apply {name} ~/auto-e2e/{name}-v3 --no-backup"
    )));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no backup taken"), "{said}");
    assert!(reasons(&tb, name).is_empty(), "{:?}", reasons(&tb, name));
    ok(
        &tb,
        &format!("systemctl --user is-active $(services {name})"),
    );

    // The backup fails (backup directory not writable): remove aborts and
    // the deployment is untouched.
    let data = ok(&tb, &format!("manifest {name}"));
    let err = fails(
        &tb,
        &format!("chmod 500 \"$BACKUPS\"; rc=0; $SIM remove {name} || rc=$?; chmod 700 \"$BACKUPS\"; exit $rc"),
    );
    assert!(err.contains("before remove failed"), "{err}");
    assert!(err.contains("--no-backup"), "{err}");
    ok(
        &tb,
        &format!("systemctl --user is-active $(services {name})"),
    );
    ok(
        &tb,
        &format!("test -d ~/.local/share/bluebuild-quadlets/active/{name}"),
    );
    ok(
        &tb,
        &format!("test -f ~/.config/containers/systemd/{name}-app.container"),
    );
    assert_eq!(ok(&tb, &format!("manifest {name}")), data);
    let status = status_of(&tb, name);
    assert!(
        status["last_failure"]["trigger"] == "leger pre-remove",
        "{status}"
    );

    ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn generator_follows_deployments_and_config_and_survives_broken_files() {
    let tb = Testbed::get();
    let name = "autogen";
    ok(&tb, &format!("cleanup {name}; cleanup {name}broken"));
    let config = LegerConfig::set(&tb, "# leger's settings\nauto:\n  stop_timeout: 5m\n");
    let cat = |tb: &Testbed| ok(tb, &format!("systemctl --user cat {name}-app.service"));

    // A new plain Quadlet deployment and a reload: the drop-in is there.
    ok(
        &tb,
        &format!(
            "make_src {name} ~/.config/containers/systemd/{name} && systemctl --user daemon-reload"
        ),
    );
    let unit = cat(&tb);
    assert!(unit.contains("/50-leger-backup.conf"), "{unit}");
    assert!(unit.contains("TimeoutStopSec=300"), "{unit}");
    assert!(
        unit.contains(&format!("--deployment {name} --unit %n")),
        "{unit}"
    );

    // Turned off: `disable` flips the config (generator installed), reloads.
    ok(&tb, &format!("leger-backup disable {name}"));
    let yaml = ok(&tb, &format!("cat ~/{CONFIG}"));
    assert!(yaml.starts_with("# leger's settings\n"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "  deployments:\n    {name}:\n      enabled: false"
        )),
        "{yaml}"
    );
    assert!(!cat(&tb).contains("50-leger-backup"), "{}", cat(&tb));
    assert_eq!(status_of(&tb, name)["automatic"], false);
    ok(&tb, &format!("leger-backup enable {name}"));
    assert!(cat(&tb).contains("50-leger-backup"));

    // Broken quadlet files and a broken config: the reload still succeeds
    // and the healthy deployment keeps its hook.
    ok(
        &tb,
        &format!(
            "mkdir -p ~/.config/containers/systemd/{name}broken && \
             printf '[Container\\nImage=\\n' > ~/.config/containers/systemd/{name}broken/{name}broken.container"
        ),
    );
    config.write("auto:\n  enabled: maybe\n  - broken\n");
    ok(&tb, "systemctl --user daemon-reload");
    assert!(cat(&tb).contains("50-leger-backup"), "{}", cat(&tb));
    ok(
        &tb,
        "systemctl --user is-system-running | grep -Eq 'running|degraded'",
    );

    drop(config);
    ok(&tb, &format!("cleanup {name}; cleanup {name}broken"));
}

#[test]
fn enable_and_disable_without_generator_write_and_remove_dropins() {
    let tb = Testbed::get();
    let name = "autodrop";
    ok(&tb, &format!("cleanup {name}"));
    let _no_generator = NoGenerator::new(&tb);
    ok(
        &tb,
        &format!(
            "make_src {name} ~/.config/containers/systemd/{name} && systemctl --user daemon-reload"
        ),
    );
    let cat = |tb: &Testbed| ok(tb, &format!("systemctl --user cat {name}-app.service"));
    assert!(!cat(&tb).contains("50-leger-backup"), "{}", cat(&tb));
    assert_eq!(status_of(&tb, name)["automatic"], false);

    let said = ok(&tb, &format!("leger-backup enable {name} 2>&1"));
    assert!(said.contains("through drop-ins"), "{said}");
    for service in ["app", "side"] {
        ok(
            &tb,
            &format!("grep -q 'stop-hook --deployment {name}' ~/.config/systemd/user/{name}-{service}.service.d/50-leger-backup.conf"),
        );
    }
    assert!(
        cat(&tb).contains(".config/systemd/user/autodrop-app.service.d/50-leger-backup.conf"),
        "{}",
        cat(&tb)
    );
    let status = status_of(&tb, name);
    assert_eq!(status["automatic"], true, "{status}");
    assert_eq!(status["via"], "drop-ins", "{status}");

    ok(&tb, &format!("leger-backup disable {name}"));
    ok(
        &tb,
        &format!("test ! -e ~/.config/systemd/user/{name}-app.service.d"),
    );
    assert!(!cat(&tb).contains("50-leger-backup"), "{}", cat(&tb));

    ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn before_apply_backups_are_pruned_to_keep_before_change() {
    let tb = Testbed::get();
    let name = "autoprune";
    ok(&tb, &format!("cleanup {name}"));
    let _config = LegerConfig::set(
        &tb,
        "backup:\n  keep_automatic: 2\n  keep_before_change: 10\nauto:\n  live_hooks: true\n",
    );
    ok(&tb, &format!("install {name}"));
    // leger's pre-apply hook, called 12 times as leger calls it: never rate
    // limited, each followed by pruning.
    timed("12 hook backups", || {
        ok(
            &tb,
            &format!(
                "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do \
                   LEGER_EVENT=pre-apply LEGER_DEPLOYMENT={name} LEGER_SCOPE=user \
                   /src/hooks/pre-apply.d/50-leger-backup pre-apply {name}; done"
            ),
        )
    });
    let list = backups(&tb, name);
    assert_eq!(list.len(), 10, "{list:#?}");
    assert!(list.iter().all(|b| b["reason"] == "before-apply"));
    assert_eq!(status_of(&tb, name)["kept"]["automatic"], 10);

    ok(&tb, &format!("cleanup {name}"));
}

#[test]
fn a_crash_looping_service_never_pushes_out_the_before_apply_backup() {
    let tb = Testbed::get();
    let name = "autocrash";
    ok(&tb, &format!("cleanup {name}"));
    // Every stop may back up (no rate limit), and only two automatic
    // backups are kept: the retention classes must still keep the one the
    // user needs.
    let _config = LegerConfig::set(
        &tb,
        "backup:\n  keep_automatic: 2\nauto:\n  min_interval: 0\n  coalesce_seconds: 0\n  live_hooks: true\n",
    );
    // The app exits 3 on its own once /data/fail exists: a failed stop.
    ok(
        &tb,
        &format!(
            "make_src {name} \"$HOME/auto-e2e/{name}\" && \
             sed -i \"s|^Exec=.*|Exec=sh -c 'while [ ! -e /data/fail ]; do sleep 0.2; done; exit 3'|\" \
               \"$HOME/auto-e2e/{name}/{name}-app.container\" && \
             $SIM install {name} \"$HOME/auto-e2e/{name}\" >/dev/null && \
             systemctl --user is-active $(services {name}) >/dev/null"
        ),
    );
    // What leger runs before an apply: the backup to roll back to.
    ok(
        &tb,
        &format!(
            "LEGER_EVENT=pre-apply LEGER_DEPLOYMENT={name} LEGER_SCOPE=user \
             /src/hooks/pre-apply.d/50-leger-backup pre-apply {name}"
        ),
    );
    // A clean stop of the whole deployment: one good on-stop backup.
    ok(&tb, &format!("systemctl --user stop $(services {name})"));
    // Then the app crashes again and again, each time alone (side stays down).
    let wait_down = format!(
        "for i in $(seq 150); do s=$(systemctl --user show -P ActiveState {name}-app.service); \
           [ \"$s\" = failed ] || [ \"$s\" = inactive ] && break; sleep 0.2; done; \
         [ \"$s\" = failed ] || {{ echo \"app is $s\" >&2; exit 1; }}"
    );
    for round in 0..4 {
        ok(
            &tb,
            &format!(
                "podman unshare rm -f \"$(vol_mp {name})/fail\"; \
                 systemctl --user reset-failed {name}-app.service 2>/dev/null || true; \
                 systemctl --user start {name}-app.service && \
                 podman unshare touch \"$(vol_mp {name})/fail\" && {wait_down}"
            ),
        );
        eprintln!("crash {round} done");
    }
    let list = backups(&tb, name);
    let summary: Vec<(String, bool)> = list
        .iter()
        .map(|b| {
            (
                b["reason"].as_str().unwrap_or("?").to_owned(),
                b["after_failed_stop"] == true,
            )
        })
        .collect();
    // Newest first: the newest failed-stop backup only, the good on-stop
    // one(s) (the clean stop of two services with no coalescing may take
    // two; keep_automatic is 2), and the before-apply one.
    let failed = summary.iter().filter(|(_, failed)| *failed).count();
    let good_on_stop = summary
        .iter()
        .filter(|(reason, failed)| reason == "on-stop" && !failed)
        .count();
    assert_eq!(summary[0], ("on-stop".to_owned(), true), "{list:#?}");
    assert_eq!(
        failed, 1,
        "only the newest failed-stop backup is kept: {list:#?}"
    );
    assert!((1..=2).contains(&good_on_stop), "{list:#?}");
    assert_eq!(
        summary.last(),
        Some(&("before-apply".to_owned(), false)),
        "{list:#?}"
    );
    assert_eq!(
        list[0]["stop_result"],
        serde_json::json!({"service_result": "exit-code", "exit_code": "exited", "exit_status": "3"}),
        "{:#}",
        list[0]
    );
    assert_eq!(list[list.len() - 1]["retention"], "before-change");
    let id = list[0]["id"].as_str().unwrap();
    let info = ok(&tb, &format!("leger-backup info {id}"));
    assert!(
        info.contains("on-stop (after a failed stop: exit-code (exited, status 3))"),
        "{info}"
    );
    let text = ok(&tb, &format!("leger-backup list --deployment {name}"));
    assert!(text.contains("after a failed stop"), "{text}");

    ok(&tb, &format!("cleanup {name}"));
}
