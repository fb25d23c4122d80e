//! The fault-injection suite: leger-backup survives the bad day. Each test
//! is one scenario of issue 5, named so that the CI log reads as its list,
//! run against the real release binary in the rootless testbed. The
//! binary's test hook `LEGER_BACKUP_FAULT=<point>[,<action>]` (see
//! `src/fault.rs`) kills it, or pauses it for a signal, at a named point.
//!
//! Every scenario installs its own small deployment `fault-NN` (two
//! containers with `RunInit=true` sharing a `.volume`, one of them also
//! mounting a plain named volume holding 3 MiB of random data, so imports
//! take several chunks), and afterwards asserts:
//! (a) every live volume (and the deployment's files) is byte-identical to
//!     its state before the command, or to a named backup: manifests of
//!     path, type, mode, uid, gid, link target and sha256, roots included,
//!     through `podman unshare` (`support::deploy::MANIFEST_SH`);
//! (b) nothing invalid is listed as a valid backup: every backup of the
//!     deployment that `list --json` calls valid passes `verify`, except
//!     those the scenario damaged in a way only reading every byte finds
//!     (then `verify` must fail, naming the file); no `.tmp-*` is left;
//! (c) the services are back in their prior state (after `recover` where
//!     that is the documented step);
//! (d) the message says what happened and what to do.
//!
//! Automatic backups are off for these deployments (config), except where a
//! scenario is about the stop hook.

use serde_json::Value;

use crate::support::deploy::{assert_same, LegerConfig, MANIFEST_SH};
use crate::support::testbed::Testbed;

/// Shell functions for every step (after [`MANIFEST_SH`]; `N` is the
/// scenario's deployment).
const PRELUDE: &str = r#"
set -eu
SIM=/src/tests/support/leger-sim
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
STATE=$HOME/.local/state/leger-backup
SRCS=$HOME/fault-e2e
ACTIVE=$HOME/.local/share/bluebuild-quadlets/active
make_src() {
  rm -rf "$2"; mkdir -p "$2/config"
  for c in app side; do
    printf '%s\n' '[Container]' 'Image=localhost/busybox:latest' 'Pull=never' 'RunInit=true' \
      'Exec=sleep 1000000' "Volume=$1-data.volume:/data" > "$2/$1-$c.container"
  done
  echo "Volume=$1-plain:/plain" >> "$2/$1-app.container"
  printf '%s\n' '[Volume]' "Label=app=$1" > "$2/$1-data.volume"
  echo "title = $1" > "$2/config/app.conf"
}
services() { echo "$1-app.service $1-side.service"; }
vols() { echo "$1-plain systemd-$1-data"; }
populate() {
  podman unshare sh -ec '
    P=$1 D=$2
    head -c 3145728 /dev/urandom > "$P/big.bin"
    mkdir -p "$P/a/b"; echo deep > "$P/a/b/deep.txt"; ln -s a/b/deep.txt "$P/link"
    echo key > "$D/secret.key"; chmod 600 "$D/secret.key"; chown 1234:1234 "$D/secret.key"
    echo page > "$D/index.html"; chown 999:999 "$D"; chmod 750 "$D"
  ' sh "$(mp "$1-plain")" "$(mp "systemd-$1-data")"
}
change() {
  podman unshare sh -ec '
    P=$1 D=$2
    echo changed > "$D/index.html"; echo new > "$P/new.txt"; rm "$P/a/b/deep.txt"; chmod 755 "$D"
  ' sh "$(mp "$1-plain")" "$(mp "systemd-$1-data")"
  echo "extra = 1" > "$ACTIVE/$1/config/extra.conf"
}
state() { volume_manifest $(vols "$1"); deployment_files_manifest "$1"; }
up() { systemctl --user is-active $(services "$1") >/dev/null; }
down() {
  for s in $(services "$1"); do
    if systemctl --user is-active --quiet "$s"; then echo "$s is running" >&2; return 1; fi
  done
}
cleanup() {
  podman rm -f -t 0 "$1-outsider" >/dev/null 2>&1 || true
  $SIM remove "$1" --no-backup >/dev/null 2>&1 || true
  systemctl --user stop $(services "$1") >/dev/null 2>&1 || true
  rm -rf "$HOME/.config/systemd/user/$1"-*.service.d "$ACTIVE/$1" "$HOME/.config/containers/systemd/$1"-*
  systemctl --user daemon-reload
  systemctl --user reset-failed $(services "$1") >/dev/null 2>&1 || true
  for v in $(vols "$1"); do podman volume rm -f "$v" >/dev/null 2>&1 || true; done
  rm -rf "$BACKUPS/$1"-* "$BACKUPS/.tmp-$1"-* "$STATE/journal/$1.json" "$STATE/auto/$1".* \
    "$SRCS/$1" "$HOME/$1"-* /tmp/"$1".*
}
install() {
  make_src "$1" "$SRCS/$1"
  $SIM install "$1" "$SRCS/$1" --no-backup >/dev/null
  up "$1"
  populate "$1"
}
# reached LOG PID: wait until the process logging to LOG reached its fault point.
reached() {
  i=0
  until grep -q 'fault injection: reached' "$1"; do
    if ! kill -0 "$2" 2>/dev/null || [ $i -ge 600 ]; then
      echo "fault point not reached:" >&2; cat "$1" >&2; return 1
    fi
    i=$((i+1)); sleep 0.05
  done
}
# The backup directory's entries of the deployment, temporary ones included.
entries() { ls -1a "$BACKUPS" | grep -e "^$1-" -e "^\.tmp-$1-" || true; }
meta_edit() { f="$BACKUPS/$1/.backup-metadata.json"; shift; jq "$@" "$f" > "$f.new"; mv "$f.new" "$f"; }
copy_backup() { cp -a "$BACKUPS/$1" "$BACKUPS/$2"; meta_edit "$2" --arg id "$2" '.id = $id'; }
flip() {
  off=$(( $(stat -c %s "$1") / 2 ))
  byte=$(dd if="$1" bs=1 skip=$off count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
  printf "$(printf '\\%03o' $(( byte ^ 1 )))" | dd of="$1" bs=1 seek=$off count=1 conv=notrunc 2>/dev/null
}
"#;

/// Automatic backups off: no stop-hook backups besides the scenario's own.
const QUIET: &str = "auto:\n  enabled: false\n";

/// What a command did.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// One scenario: its deployment installed with data, leger's config set;
/// everything removed again when dropped.
struct Scenario<'a> {
    tb: &'a Testbed,
    name: &'static str,
    _config: LegerConfig<'a>,
}

impl<'a> Scenario<'a> {
    fn new(tb: &'a Testbed, name: &'static str, config: &str) -> Scenario<'a> {
        let s = Scenario {
            tb,
            name,
            _config: LegerConfig::set(tb, config),
        };
        s.ok("cleanup $N; install $N");
        s
    }

    fn script(&self, body: &str) -> String {
        format!("{MANIFEST_SH}\n{PRELUDE}\nN={}\n{body}", self.name)
    }

    fn run(&self, body: &str) -> Out {
        let out = self.tb.sh(&self.script(body));
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run; it must succeed.
    fn ok(&self, body: &str) -> Out {
        let out = self.run(body);
        assert!(
            out.code == Some(0),
            "`{body}` failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    /// Run; it must fail.
    fn fails(&self, body: &str) -> Out {
        let out = self.run(body);
        assert!(
            out.code != Some(0),
            "`{body}` should have failed\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        out
    }

    /// Volumes and files of the deployment.
    fn state(&self) -> String {
        self.ok("state $N").stdout
    }

    /// One backup now; its ID.
    fn create(&self) -> String {
        self.ok("leger-backup create $N 2>/dev/null")
            .stdout
            .trim()
            .to_owned()
    }

    fn backups(&self) -> Vec<Value> {
        let text = self.ok("leger-backup list --deployment $N --json").stdout;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("list --json: {e}: {text}"))
    }

    /// (b): every backup listed as valid passes `verify`, except `damaged`
    /// ones, which `verify` must refuse naming a file; no `.tmp-*` is left.
    /// Returns the sound backups, newest first, and the invalid ones with
    /// their reasons.
    fn check_listing(&self, damaged: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
        let mut sound = Vec::new();
        let mut invalid = Vec::new();
        for b in self.backups() {
            let id = b["id"].as_str().unwrap().to_owned();
            if b["valid"] == true {
                let out = self.run(&format!("leger-backup verify {id}"));
                if damaged.contains(&id.as_str()) {
                    assert_ne!(out.code, Some(0), "verify passed damaged {id}");
                    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
                } else {
                    assert_eq!(
                        out.code,
                        Some(0),
                        "{id} is listed as valid but does not verify:\n{}{}",
                        out.stdout,
                        out.stderr
                    );
                    sound.push(id);
                }
            } else {
                invalid.push((id, b["error"].as_str().unwrap_or_default().to_owned()));
            }
        }
        let left = self.ok("entries $N | grep '^\\.tmp-' || true").stdout;
        assert!(left.trim().is_empty(), "left behind: {left}");
        (sound, invalid)
    }

    fn assert_no_journal(&self) {
        self.ok("test ! -e \"$STATE/journal/$N.json\"");
    }

    /// (c): both services running.
    fn assert_up(&self) {
        self.ok("up $N");
    }

    /// (c): both services stopped.
    fn assert_down(&self) {
        self.ok("down $N");
    }

    /// Nothing a killed leger-backup started outlives it: no `podman volume
    /// export/import` of this scenario's volumes (nor its `storage-tar`
    /// helper) is left after a few seconds.
    fn assert_no_orphans(&self) {
        self.ok(
            "for i in $(seq 50); do
               pgrep -u \"$(id -u)\" -f \"volume (export|import) $N-|volumes/$N-[^/]*/_data\" >/dev/null || exit 0
               sleep 0.1
             done
             echo 'left running:' >&2
             pgrep -a -u \"$(id -u)\" -f \"volume (export|import) $N-|volumes/$N-[^/]*/_data\" >&2
             exit 1",
        );
    }

    /// (a): the live state equals `expected`.
    fn assert_state(&self, what: &str, expected: &str) {
        assert_same(what, expected, &self.state());
    }

    /// The one warning a command prints about an interrupted operation of
    /// this deployment; a second command prints none.
    fn one_warning(&self, out: &Out) -> String {
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning:") && l.contains(self.name))
            .collect();
        assert_eq!(lines.len(), 1, "one warning expected:\n{}", out.stderr);
        lines[0].to_owned()
    }
}

impl Drop for Scenario<'_> {
    fn drop(&mut self) {
        self.run("cleanup $N");
    }
}

/// A small tmpfs (as root) for the backup directory, unmounted when dropped.
struct Tmpfs<'a> {
    tb: &'a Testbed,
    dir: String,
}

impl<'a> Tmpfs<'a> {
    fn mount(tb: &'a Testbed, name: &str, size: &str) -> Tmpfs<'a> {
        let dir = format!("/home/tester/{name}-backups");
        let _ = tb.exec_root(&["umount", &dir]);
        assert!(tb.exec(&["mkdir", "-p", &dir]).status.success());
        let out = tb.exec_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},uid=1000,gid=1000,mode=0700"),
            "tmpfs",
            &dir,
        ]);
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { tb, dir }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = self.tb.exec_root(&["umount", &self.dir]);
        let _ = self.tb.exec(&["rmdir", &self.dir]);
    }
}

// ---------------------------------------------------------------------------
// Crashes of a create
// ---------------------------------------------------------------------------

/// A create killed at `point`: the next command cleans up at once, with one
/// warning, and starts the services again when the create had them stopped
/// (`stopped`).
fn create_killed_at(name: &'static str, point: &str, stopped: bool) {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, name, QUIET);
    let before = s.state();
    let out = s.fails(&format!(
        "LEGER_BACKUP_FAULT={point} leger-backup create $N"
    ));
    assert_eq!(out.code, Some(137), "killed by SIGKILL:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("reached {point}")),
        "{}",
        out.stderr
    );
    s.assert_no_orphans();
    // Killed with its journal left (and its services stopped, if it was
    // exporting).
    if stopped {
        s.assert_down();
    } else {
        s.assert_up();
    }
    s.ok("test -e \"$STATE/journal/$N.json\"");
    if point == "create:before-rename" {
        // Complete but not renamed: the metadata is there, yet it is not a backup.
        s.ok("test -s \"$(echo $BACKUPS/.tmp-$N-*)/.backup-metadata.json\"");
    }
    // Whatever was on disk, nothing is listed as a valid backup.
    let listed = s.run("ls -1 \"$BACKUPS\" | grep \"^$N-\" || true");
    assert!(listed.stdout.trim().is_empty(), "{}", listed.stdout);

    let out = s.ok("leger-backup list --deployment $N");
    let warning = s.one_warning(&out);
    for needle in [
        format!("backup (create) of {name} was interrupted: process"),
        "removed its unfinished backup .tmp-".to_owned(),
        format!("No backup was kept: run `leger-backup create {name}` again"),
    ] {
        assert!(warning.contains(&needle), "{needle:?} not in {warning}");
    }
    let started = format!("started {name}-app.service, {name}-side.service again");
    assert_eq!(warning.contains(&started), stopped, "{warning}");
    assert!(out.stdout.trim().is_empty(), "{}", out.stdout);
    s.assert_no_journal();
    // Once: the next command has nothing to say.
    let again = s.ok("leger-backup list --deployment $N");
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
    s.assert_up();
    s.assert_state("volumes after recovery", &before);
    let (sound, invalid) = s.check_listing(&[]);
    assert!(
        sound.is_empty() && invalid.is_empty(),
        "{sound:?} {invalid:?}"
    );
    // And the next backup works.
    s.create();
    assert_eq!(s.check_listing(&[]).0.len(), 1);
}

#[test]
fn fault_01_sigkill_during_volume_export() {
    create_killed_at("fault-01", "create:during-export", true);
}

#[test]
fn fault_02_sigkill_between_archive_and_metadata() {
    create_killed_at("fault-02", "create:after-archive", true);
}

#[test]
fn fault_03_sigkill_just_before_the_final_rename_of_a_create() {
    create_killed_at("fault-03", "create:before-rename", false);
}

// ---------------------------------------------------------------------------
// Crashes of a restore
// ---------------------------------------------------------------------------

/// A restore of an older backup killed at `point`: `status` shows the
/// pending recovery (also in `--json`), a create refuses, `recover --yes`
/// puts back the state just before the restore (rolling back to the safety
/// backup when the restore had replaced something, `rolled_back`), and the
/// restore then works and gives the named backup exactly.
fn restore_killed_at(name: &'static str, point: &str, step: &str, rolled_back: bool) {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, name, QUIET);
    let at_backup = s.state();
    let b1 = s.create();
    s.ok("change $N");
    let before = s.state();
    assert_ne!(at_backup, before);

    let out = s.fails(&format!(
        "LEGER_BACKUP_FAULT={point} leger-backup restore {b1} --yes"
    ));
    assert_eq!(out.code, Some(137), "killed by SIGKILL:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("reached {point}")),
        "{}",
        out.stderr
    );
    s.assert_no_orphans();
    s.ok("test -e \"$STATE/journal/$N.json\"");

    // Not guessed at: every command warns once and says what to do.
    let out = s.ok("leger-backup status");
    let warning = s.one_warning(&out);
    let action = if rolled_back {
        "the deployment may be half-restored; `recover` rolls it back to the safety backup"
    } else {
        "it had not replaced anything yet; `recover` starts"
    };
    for needle in [
        &format!("a restore of {name} from backup {b1} was interrupted: process"),
        step,
        action,
        "Run `leger-backup recover`",
    ] {
        assert!(warning.contains(needle), "{needle:?} not in {warning}");
    }
    assert!(out.stdout.contains("PENDING RECOVERY"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("  {name}: a restore of")),
        "{}",
        out.stdout
    );
    let status: Value =
        serde_json::from_str(&s.ok("leger-backup status --json 2>/dev/null").stdout).unwrap();
    let pending = status["pending_recovery"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["deployment"] == name)
        .unwrap_or_else(|| panic!("not pending: {status}"))
        .clone();
    let safety = pending["safety_backup"]
        .as_str()
        .unwrap_or_else(|| panic!("no complete safety backup: {pending}"))
        .to_owned();
    // A backup of a half-restored deployment is refused.
    let out = s.fails("leger-backup create $N");
    assert!(
        out.stderr.contains("run `leger-backup recover` first"),
        "{}",
        out.stderr
    );
    // The backups are sound: the one restored and the safety backup.
    let (sound, _) = s.check_listing(&[]);
    assert!(sound.contains(&b1) && sound.contains(&safety), "{sound:?}");
    // Neither a prune keeping nothing nor a delete takes what the recovery
    // needs.
    let out = s.ok("leger-backup prune --deployment $N --keep-manual 0 --keep-automatic 0 --keep-before-change 0");
    for needle in [
        format!("kept {safety} (the safety backup of the unfinished restore of {name})"),
        format!("kept {b1} (the backup the unfinished restore of {name} puts back)"),
    ] {
        assert!(
            out.stdout.contains(&needle),
            "{needle:?} not in:\n{}",
            out.stdout
        );
    }
    let out = s.fails(&format!("leger-backup delete {safety} --yes"));
    assert!(
        out.stderr.contains(&format!(
            "not deleting {safety}: it is the safety backup of the unfinished restore of {name}"
        )),
        "{}",
        out.stderr
    );
    let (sound, _) = s.check_listing(&[]);
    assert!(sound.contains(&b1) && sound.contains(&safety), "{sound:?}");

    // Without a terminal and without --yes a rollback is refused.
    if rolled_back {
        let out = s.fails("leger-backup recover </dev/null");
        assert!(out.stderr.contains("--yes"), "{}", out.stderr);
        s.ok("test -e \"$STATE/journal/$N.json\"");
    }
    let out = s.ok("leger-backup recover --yes");
    let said = if rolled_back {
        format!(
            "recovered {name}: rolled back to {safety}, its state before the interrupted restore"
        )
    } else {
        format!("recovered {name}: the interrupted restore had replaced nothing; started")
    };
    assert!(
        out.stderr.contains(&said),
        "{said:?} not in:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "To restore {b1} after all: `leger-backup restore {b1}`"
        )),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after recover", &before);
    s.assert_no_journal();
    let out = s.ok("leger-backup status");
    assert!(!out.stdout.contains("PENDING RECOVERY"), "{}", out.stdout);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    let out = s.ok("leger-backup recover");
    assert!(out.stderr.contains("nothing to recover"), "{}", out.stderr);
    // The restore itself works now and gives the named backup exactly.
    s.ok(&format!("leger-backup restore {b1} --yes"));
    s.assert_up();
    s.assert_state(&format!("state after restoring {b1}"), &at_backup);
    s.check_listing(&[]);
}

#[test]
fn fault_04_sigkill_during_restore_after_the_safety_backup() {
    restore_killed_at(
        "fault-04",
        "restore:after-safety",
        "ended while holding its complete safety backup, before replacing anything",
        false,
    );
}

#[test]
fn fault_05_sigkill_during_restore_after_the_files_were_replaced() {
    restore_killed_at(
        "fault-05",
        "restore:after-files",
        "ended while putting the deployment's files back",
        true,
    );
}

#[test]
fn fault_06_sigkill_in_the_middle_of_a_volume_import() {
    restore_killed_at(
        "fault-06",
        "restore:during-import",
        "ended while replacing volume fault-06-plain",
        true,
    );
}

#[test]
fn fault_07_sigkill_during_restore_before_the_services_start() {
    restore_killed_at(
        "fault-07",
        "restore:before-start",
        "ended while replacing volume systemd-fault-07-data",
        true,
    );
}

#[test]
fn fault_29_sigkill_after_the_volumes_data_was_moved_aside() {
    restore_killed_at(
        "fault-29",
        "restore:after-move-aside",
        "ended while moving volume systemd-fault-29-data's data aside",
        true,
    );
}

/// Nothing is left where a restore moves volume data aside.
const NOTHING_ASIDE: &str = "aside=~/.local/share/containers/storage/volumes/.leger-backup-aside
  test -z \"$(ls -A \"$aside\" 2>/dev/null | grep \"^$N-\")\" || { ls -lR \"$aside\" >&2; exit 1; }";

/// Killed when the restore had succeeded, before it dropped the data it
/// moved aside: the deployment is the restored one and runs; `recover`
/// only drops what was held aside (and the safety backup that needed it).
#[test]
fn fault_30_sigkill_after_the_restore_before_the_moved_data_is_dropped() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-30", QUIET);
    let at_backup = s.state();
    let b1 = s.create();
    s.ok("change $N");
    let out = s.fails(&format!(
        "LEGER_BACKUP_FAULT=restore:before-drop leger-backup restore {b1} --yes"
    ));
    assert_eq!(out.code, Some(137), "killed by SIGKILL:\n{}", out.stderr);
    s.assert_up();
    s.assert_state("state once restored", &at_backup);
    let held = s
        .ok("ls ~/.local/share/containers/storage/volumes/.leger-backup-aside/")
        .stdout;
    assert!(held.contains("fault-30-"), "{held}");

    let out = s.ok("leger-backup status");
    let warning = s.one_warning(&out);
    assert!(
        warning.contains("the restore itself had completed; `recover` drops the previous data"),
        "{warning}"
    );
    // Another restore would lose track of the held data: refused.
    let out = s.fails(&format!("leger-backup restore {b1} --yes"));
    assert!(out.stderr.contains("recover` first"), "{}", out.stderr);
    let out = s.ok("leger-backup recover --yes");
    assert!(
        out.stderr
            .contains("recovered fault-30: the interrupted restore had completed"),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after recover", &at_backup);
    s.assert_no_journal();
    s.ok(NOTHING_ASIDE);
    // Only b1 is left: the safety backup held nothing without that data.
    let (sound, invalid) = s.check_listing(&[]);
    assert_eq!(sound, [b1], "{invalid:?}");
}

/// A successful restore over the running deployment moves the volumes'
/// data aside (a rename, not a second backup) and drops it once the
/// services run: no safety backup is left, nothing is held aside.
#[test]
fn a_restore_moves_the_previous_data_aside_and_drops_it_once_up() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "aside-ok", QUIET);
    let at_backup = s.state();
    let b1 = s.create();
    s.ok("change $N");
    let out = s.ok(&format!("leger-backup restore {b1} --yes"));
    for needle in [
        "moved the data of aside-ok-plain, systemd-aside-ok-data aside",
        "dropped the previous state moved aside",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} not in:\n{}",
            out.stderr
        );
    }
    s.assert_up();
    s.assert_state("state once restored", &at_backup);
    s.assert_no_journal();
    s.ok(NOTHING_ASIDE);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1]);
}

// ---------------------------------------------------------------------------
// A stop hook killed by systemd
// ---------------------------------------------------------------------------

#[test]
fn fault_08_stop_hook_killed_by_timeout_stop_sec() {
    let tb = Testbed::get();
    let name = "fault-08";
    let s = Scenario::new(
        &tb,
        name,
        "auto:\n  enabled: false\n  stop_timeout: 3s\n  deployments:\n    fault-08:\n      enabled: true\n",
    );
    // The generated drop-in: the stop hook, TimeoutStopSec=3. Make the
    // hook's backup hang in its export, ignoring SIGTERM: systemd kills it.
    let unit = s.ok("systemctl --user cat $N-app.service").stdout;
    assert!(
        unit.contains("stop-hook --deployment fault-08") && unit.contains("TimeoutStopSec=3"),
        "{unit}"
    );
    s.ok(r#"for svc in $(services $N); do
          d=$HOME/.config/systemd/user/$svc.d; mkdir -p $d
          printf '[Service]\nEnvironment=LEGER_BACKUP_FAULT=create:during-export,hang\n' > $d/90-fault.conf
        done
        systemctl --user daemon-reload"#);
    let before = s.state();
    // The user stops the deployment; the hook's backup hangs until systemd
    // kills it (SIGTERM at 3 s, ignored; SIGKILL 3 s later).
    let out = s.run("systemctl --user stop $(services $N)");
    eprintln!("stop: {:?} {}", out.code, out.stderr);
    s.assert_down();
    s.ok("test -e \"$STATE/journal/$N.json\"");
    s.ok("ls -1a \"$BACKUPS\" | grep -q \"^\\.tmp-$N-\"");
    let hook = s.run("systemctl --user status $N-app.service $N-side.service --no-pager");
    eprintln!("{}", hook.stdout);

    // Recovered as a crash by the next command: the unfinished backup goes,
    // no service is started (they were being stopped on purpose).
    let out = s.ok("leger-backup list --deployment $N");
    let warning = s.one_warning(&out);
    for needle in [
        "an automatic (stop hook) backup (create) of fault-08 was interrupted",
        "ended while exporting volume",
        "removed its unfinished backup .tmp-fault-08-",
        "No backup was kept",
    ] {
        assert!(warning.contains(needle), "{needle:?} not in {warning}");
    }
    assert!(!warning.contains("started"), "{warning}");
    s.assert_down();
    s.assert_state("volumes after the killed stop hook", &before);
    let (sound, invalid) = s.check_listing(&[]);
    assert!(
        sound.is_empty() && invalid.is_empty(),
        "{sound:?} {invalid:?}"
    );
    // The deployment starts and backs up normally again.
    s.ok("rm -rf $HOME/.config/systemd/user/$N-*.service.d; systemctl --user daemon-reload; systemctl --user start $(services $N)");
    s.assert_up();
    s.create();
}

// ---------------------------------------------------------------------------
// Disk full
// ---------------------------------------------------------------------------

#[test]
fn fault_09_disk_full_during_a_create() {
    let tb = Testbed::get();
    let name = "fault-09";
    let tmpfs_dir = format!("/home/tester/{name}-backups");
    let s = Scenario::new(
        &tb,
        name,
        &format!("auto:\n  enabled: false\nbackup:\n  dir: {tmpfs_dir}\n"),
    );
    let _tmpfs = Tmpfs::mount(&tb, name, "1m");
    let before = s.state();
    let out = s.fails("leger-backup create $N");
    eprintln!("{}", out.stderr);
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("free space"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("starting fault-09-app.service, fault-09-side.service again")
            || out
                .stderr
                .contains("starting fault-09-app.service, fault-09-side.service"),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("volumes after a full disk", &before);
    let left = s.ok(&format!("ls -A {tmpfs_dir}")).stdout;
    assert!(left.trim().is_empty(), "left on the full disk: {left}");
    s.assert_no_journal();
    assert!(s.backups().is_empty());
}

#[test]
fn fault_10_disk_full_for_the_safety_backup_of_a_restore() {
    let tb = Testbed::get();
    let name = "fault-10";
    let tmpfs_dir = format!("/home/tester/{name}-backups");
    let s = Scenario::new(
        &tb,
        name,
        &format!("auto:\n  enabled: false\nbackup:\n  dir: {tmpfs_dir}\n"),
    );
    // Room for one backup (3 MiB of random data), then none at all: the
    // safety backup (the deployment's files; the volumes' data is moved
    // aside, not copied) finds the disk full.
    let _tmpfs = Tmpfs::mount(&tb, name, "5m");
    let b1 = s.create();
    s.ok("change $N");
    s.ok(&format!(
        "dd if=/dev/zero of={tmpfs_dir}/.filler bs=4k 2>/dev/null || test -s {tmpfs_dir}/.filler"
    ));
    let before = s.state();
    let out = s.fails(&format!("leger-backup restore {b1} --yes"));
    eprintln!("{}", out.stderr);
    assert!(
        out.stderr
            .contains("the safety backup of the current state failed; nothing was restored"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after the refused restore", &before);
    s.ok(&format!("rm {tmpfs_dir}/.filler"));
    let left = s.ok(&format!("ls -A {tmpfs_dir}")).stdout;
    assert_eq!(left.trim(), b1, "only the first backup is left");
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1]);
}

// ---------------------------------------------------------------------------
// Damaged and hostile backups: refused before anything live is touched
// ---------------------------------------------------------------------------

/// Damage copies of a sound backup with `damage` (shell, `$B1` the sound
/// one); each of `ids` must then be refused by `restore` with a message
/// containing its needle, while nothing live changes and no backup is added.
/// Returns the listing: (sound, invalid).
fn refused(
    s: &Scenario<'_>,
    b1: &str,
    damage: &str,
    cases: &[(&str, &str)],
) -> (Vec<String>, Vec<(String, String)>) {
    s.ok(&format!("B1={b1}\n{damage}"));
    let before = s.state();
    let count = s.backups().len();
    for (id, needle) in cases {
        let out = s.fails(&format!("leger-backup restore {id} --yes"));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains(needle),
            "{id}: {needle:?} not in:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("rolled back"), "{}", out.stderr);
        assert!(
            out.stderr.contains("hint:"),
            "says what to do:\n{}",
            out.stderr
        );
    }
    s.assert_up();
    s.assert_state("state after refused restores", &before);
    assert_eq!(s.backups().len(), count, "no safety backup was taken");
    let damaged: Vec<&str> = cases.iter().map(|(id, _)| *id).collect();
    let listing = s.check_listing(&damaged);
    assert!(listing.0.contains(&b1.to_owned()), "{listing:?}");
    listing
}

#[test]
fn fault_11_flipped_byte_in_an_archive() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-11", QUIET);
    let b1 = s.create();
    let bad = format!("{b1}-flipped");
    refused(
        &s,
        &b1,
        &format!("copy_backup $B1 {bad}; flip \"$BACKUPS/{bad}/volumes/$N-plain.tar.zst\""),
        &[(&bad, "volumes/fault-11-plain.tar.zst: checksum mismatch")],
    );
    let out = s.fails(&format!("leger-backup verify {bad}"));
    assert!(
        out.stdout.contains("volumes/fault-11-plain.tar.zst"),
        "{}",
        out.stdout
    );
}

#[test]
fn fault_12_truncated_archive() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-12", QUIET);
    let b1 = s.create();
    let bad = format!("{b1}-truncated");
    let (_, invalid) = refused(
        &s,
        &b1,
        &format!(
            "copy_backup $B1 {bad}; f=\"$BACKUPS/{bad}/volumes/$N-plain.tar.zst\"; \
             truncate -s $(( $(stat -c %s \"$f\") / 2 )) \"$f\""
        ),
        &[(&bad, "volumes/fault-12-plain.tar.zst")],
    );
    assert!(
        invalid
            .iter()
            .any(|(id, why)| id == &bad && why.contains("truncated")),
        "listed as invalid: {invalid:?}"
    );
}

#[test]
fn fault_13_missing_archive() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-13", QUIET);
    let b1 = s.create();
    let bad = format!("{b1}-noarchive");
    let (_, invalid) = refused(
        &s,
        &b1,
        &format!("copy_backup $B1 {bad}; rm \"$BACKUPS/{bad}/volumes/systemd-$N-data.tar.zst\""),
        &[(&bad, "volumes/systemd-fault-13-data.tar.zst")],
    );
    assert!(
        invalid
            .iter()
            .any(|(id, why)| id == &bad && why.contains("is missing")),
        "listed as invalid: {invalid:?}"
    );
}

#[test]
fn fault_14_missing_metadata() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-14", QUIET);
    let b1 = s.create();
    let bad = format!("{b1}-nometa");
    let (_, invalid) = refused(
        &s,
        &b1,
        &format!("cp -a \"$BACKUPS/$B1\" \"$BACKUPS/{bad}\"; rm \"$BACKUPS/{bad}/.backup-metadata.json\""),
        &[(&bad, "no .backup-metadata.json: incomplete backup")],
    );
    assert!(
        invalid
            .iter()
            .any(|(id, why)| id == &bad && why.contains("incomplete backup")),
        "{invalid:?}"
    );
    let out = s.fails(&format!("leger-backup info {bad}"));
    assert!(out.stderr.contains("incomplete backup"), "{}", out.stderr);
}

#[test]
fn fault_15_malformed_metadata() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-15", QUIET);
    let b1 = s.create();
    let json = format!("{b1}-json");
    let field = format!("{b1}-field");
    let version = format!("{b1}-version");
    let (_, invalid) = refused(
        &s,
        &b1,
        &format!(
            "copy_backup $B1 {json}; printf '{{\"id\": \"{json}\", ' > \"$BACKUPS/{json}/.backup-metadata.json\"
             copy_backup $B1 {field}; meta_edit {field} 'del(.volumes)'
             copy_backup $B1 {version}; meta_edit {version} '.format_version = 99'"
        ),
        &[
            (&json, ".backup-metadata.json: malformed"),
            (&field, "missing field `volumes`"),
            (&version, "format_version 99 is newer"),
        ],
    );
    for id in [&json, &field, &version] {
        assert!(
            invalid
                .iter()
                .any(|(i, why)| i == id && why.contains(".backup-metadata.json")),
            "{id} not listed invalid naming the file: {invalid:?}"
        );
    }
}

#[test]
fn fault_16_path_traversal_archive_path() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-16", QUIET);
    let b1 = s.create();
    let dotdot = format!("{b1}-dotdot");
    let abs = format!("{b1}-absolute");
    let link = format!("{b1}-symlink");
    let (_, invalid) = refused(
        &s,
        &b1,
        &format!(
            "echo secret > $HOME/$N-secret
             copy_backup $B1 {dotdot}
             meta_edit {dotdot} --arg p \"../$B1/volumes/$N-plain.tar.zst\" '(.volumes[] | select(.name | endswith(\"plain\")) | .archive_path) = $p'
             copy_backup $B1 {abs}
             meta_edit {abs} '(.volumes[] | select(.name | endswith(\"plain\")) | .archive_path) = \"/etc/passwd\"'
             copy_backup $B1 {link}
             ln -sf $HOME/$N-secret \"$BACKUPS/{link}/volumes/$N-plain.tar.zst\""
        ),
        &[
            (&dotdot, "archive_path \"../"),
            (&abs, "archive_path \"/etc/passwd\" is absolute"),
            (&link, "points outside the backup"),
        ],
    );
    for id in [&dotdot, &abs, &link] {
        assert!(
            invalid.iter().any(|(i, _)| i == id),
            "{id} not listed invalid: {invalid:?}"
        );
    }
    assert_eq!(s.ok("cat $HOME/$N-secret").stdout, "secret\n");
}

#[test]
fn fault_17_archive_holding_dotdot_escape() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-17", QUIET);
    let b1 = s.create();
    let evil = format!("{b1}-escape");
    refused(
        &s,
        &b1,
        &format!(
            "copy_backup $B1 {evil}
             w=$HOME/$N-work; rm -rf $w; mkdir -p $w/in/sub; echo pwned > $w/in/escape; echo ok > $w/in/sub/ok
             (cd $w/in/sub && tar -P -cf $w/evil.tar ok ../escape)
             tar -tf $w/evil.tar | grep -qx '../escape'
             a=\"$BACKUPS/{evil}/volumes/$N-plain.tar.zst\"
             zstd -q -f $w/evil.tar -o \"$a\"
             meta_edit {evil} --arg s \"$(sha256sum \"$a\" | cut -d' ' -f1)\" \
               --argjson n \"$(stat -c %s \"$a\")\" --argjson u \"$(stat -c %s $w/evil.tar)\" \
               '(.volumes[] | select(.name | endswith(\"plain\"))) |= (.sha256 = $s | .size = $n | .uncompressed_size = $u)'"
        ),
        &[(&evil, "contains '..'")],
    );
    // Nothing escaped the volume.
    s.ok("podman unshare sh -c 'test ! -e \"$1/../escape\" && test ! -e \"$1/../../escape\"' sh \"$(mp $N-plain)\"");
}

// ---------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------

/// A create paused inside its first export (its services stopped) until
/// `/tmp/$N.go` exists; `body` runs meanwhile; then the create finishes and
/// must succeed. Returns what `body` did.
fn while_a_create_runs(s: &Scenario<'_>, body: &str) -> Out {
    let out = s.ok(&format!(
        "rm -f /tmp/$N.go
         LEGER_BACKUP_FAULT=create:during-export,wait=/tmp/$N.go leger-backup create $N \
           >/dev/null 2>/tmp/$N.first.log &
         first=$!
         reached /tmp/$N.first.log $first
         rc=0
         ( {body} ) >/tmp/$N.second.out 2>/tmp/$N.second.log || rc=$?
         touch /tmp/$N.go
         wait $first || {{ echo 'the paused create failed:' >&2; cat /tmp/$N.first.log >&2; exit 1; }}
         echo \"$rc\"; cat /tmp/$N.second.out >&2"
    ));
    let stderr = s.ok("cat /tmp/$N.second.log").stdout;
    Out {
        code: out.stdout.trim().parse().ok(),
        stdout: out.stderr,
        stderr,
    }
}

#[test]
fn fault_18_two_creates_of_one_deployment_at_once() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-18", QUIET);
    let before = s.state();
    let second = while_a_create_runs(
        &s,
        "if leger-backup create $N; then exit 9; fi; leger-backup create $N --wait 1",
    );
    assert_eq!(second.code, Some(1), "both refused: {}", second.stderr);
    assert!(
        second
            .stderr
            .contains("deployment \"fault-18\" is busy: process"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("(waited 1s)"), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("hint: another backup or restore of it is running"),
        "{}",
        second.stderr
    );
    s.assert_up();
    s.assert_state("volumes after two creates", &before);
    let (sound, invalid) = s.check_listing(&[]);
    assert_eq!(sound.len(), 1, "exactly one backup: {sound:?} {invalid:?}");
}

#[test]
fn fault_19_a_restore_while_a_create_runs() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-19", QUIET);
    let b1 = s.create();
    s.ok("change $N");
    let before = s.state();
    let second = while_a_create_runs(&s, &format!("leger-backup restore {b1} --yes"));
    assert_eq!(second.code, Some(1), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("deployment \"fault-19\" is busy: process"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("safety backup"),
        "{}",
        second.stderr
    );
    s.assert_up();
    s.assert_state("state after the refused restore", &before);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(
        sound.len(),
        2,
        "the first backup and the create's: {sound:?}"
    );
}

#[test]
fn fault_20_a_stop_hook_while_a_manual_create_runs() {
    let tb = Testbed::get();
    let s = Scenario::new(
        &tb,
        "fault-20",
        "auto:\n  enabled: false\n  deployments:\n    fault-20:\n      enabled: true\n",
    );
    let before = s.state();
    let unit = s.ok("systemctl --user cat $N-app.service").stdout;
    assert!(unit.contains("stop-hook --deployment fault-20"), "{unit}");
    // The create stops the services (their hooks run and skip), then, while
    // it exports, a stop hook runs again.
    let hook = while_a_create_runs(
        &s,
        "leger-backup stop-hook --deployment $N --unit $N-app.service",
    );
    assert_eq!(hook.code, Some(0), "{}", hook.stderr);
    assert!(
        hook.stderr
            .contains("no backup: leger-backup's own create (pid"),
        "{}",
        hook.stderr
    );
    s.assert_up();
    s.assert_state("volumes after the create", &before);
    let (sound, _) = s.check_listing(&[]);
    let reasons: Vec<String> = s
        .backups()
        .iter()
        .map(|b| b["reason"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(sound.len(), 1, "{reasons:?}");
    assert_eq!(reasons, ["manual"], "no stop-hook backup");
    let status: Value =
        serde_json::from_str(&s.ok("leger-backup status --json 2>/dev/null").stdout).unwrap();
    let me = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "fault-20")
        .unwrap()
        .clone();
    assert!(
        me["last_skip"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("own create"),
        "{me}"
    );
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

#[test]
fn fault_21_podman_missing_from_path() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-21", QUIET);
    let b1 = s.create();
    let before = s.state();
    let nopodman = "mkdir -p $HOME/$N-path && ln -sf /usr/bin/systemctl $HOME/$N-path/ && \
                    env PATH=$HOME/$N-path /usr/local/bin/leger-backup";
    for cmd in ["create $N".to_owned(), format!("restore {b1} --yes")] {
        let out = s.fails(&format!("{nopodman} {cmd}"));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("`podman` was not found in PATH"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("hint: install Podman (>= 4.4) or fix PATH"),
            "{}",
            out.stderr
        );
    }
    s.assert_up();
    s.assert_state("state without podman", &before);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1]);
}

#[test]
fn fault_22_user_manager_unreachable() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-22", QUIET);
    let before = s.state();
    let bogus =
        "env XDG_RUNTIME_DIR=/nonexistent DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/bus";
    let out = s.fails(&format!("{bogus} leger-backup create $N"));
    assert!(
        out.stderr.contains("Failed to connect to user scope bus"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("the systemd user manager is not reachable"),
        "{}",
        out.stderr
    );
    let out = s.ok(&format!("{bogus} leger-backup status"));
    assert!(
        out.stdout.contains("user manager:     NOT reachable"),
        "{}",
        out.stdout
    );
    s.assert_up();
    s.assert_state("volumes", &before);
    let (sound, invalid) = s.check_listing(&[]);
    assert!(sound.is_empty() && invalid.is_empty());
}

#[test]
fn fault_23_a_volume_used_by_a_container_outside_the_deployment() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-23", QUIET);
    let b1 = s.create();
    s.ok("change $N");
    s.ok("podman run -d --name $N-outsider -v $N-plain:/x localhost/busybox:latest sleep 600 >/dev/null");
    let before = s.state();
    let out = s.fails(&format!("leger-backup restore {b1} --yes"));
    assert!(
        out.stderr.contains(
            "refusing to restore fault-23: volume fault-23-plain is used by container fault-23-outsider"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: stop and remove those containers"),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after the refused restore", &before);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(
        sound.as_slice(),
        std::slice::from_ref(&b1),
        "no safety backup"
    );
    // A backup goes through, warning that the outsider keeps writing.
    let out = s.ok("leger-backup create $N");
    assert!(
        out.stderr.contains(
            "warning: volume fault-23-plain is also used by container fault-23-outsider, \
             which is not part of fault-23 and keeps running"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(s.check_listing(&[]).0.len(), 2);
    // Once the outsider is gone the restore goes through.
    s.ok("podman rm -f -t 0 $N-outsider >/dev/null");
    s.ok(&format!("leger-backup restore {b1} --yes"));
    s.assert_up();
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// Run `cmd` with `fault` (a pausing action), send `signal` once it paused,
/// and return what it said.
fn signalled(s: &Scenario<'_>, fault: &str, cmd: &str, signal: &str) -> Out {
    let out = s.run(&format!(
        "LEGER_BACKUP_FAULT={fault} {cmd} >/tmp/$N.out 2>/tmp/$N.log &
         pid=$!
         reached /tmp/$N.log $pid
         kill -{signal} $pid
         rc=0; wait $pid || rc=$?
         cat /tmp/$N.log >&2
         exit $rc"
    ));
    eprintln!("{}", out.stderr);
    out
}

#[test]
fn fault_24_sigint_during_a_create() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-24", QUIET);
    let before = s.state();
    let out = signalled(
        &s,
        "create:during-export,sleep=60",
        "leger-backup create $N",
        "INT",
    );
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("interrupted: backup of fault-24: interrupted by SIGINT"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "hint: no backup was kept and the services stopped for it were started again"
        ),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("volumes after SIGINT", &before);
    let (sound, invalid) = s.check_listing(&[]);
    assert!(sound.is_empty() && invalid.is_empty());
}

#[test]
fn fault_25_sigint_during_a_restore() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-25", QUIET);
    let b1 = s.create();
    s.ok("change $N");
    let before = s.state();
    let out = signalled(
        &s,
        "restore:during-import,sleep=60",
        &format!("leger-backup restore {b1} --yes"),
        "INT",
    );
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "interrupted: restore of {b1} interrupted by SIGINT, rolled back to the previous state"
        )),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after the interrupted restore", &before);
    // The volumes' data came back from where it was moved aside; the
    // safety backup that held the rest went with it.
    s.ok(NOTHING_ASIDE);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1]);
}

// ---------------------------------------------------------------------------
// More of the same, at the edges
// ---------------------------------------------------------------------------

#[test]
fn fault_26_sigterm_during_the_safety_backup_of_a_restore() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-26", QUIET);
    let b1 = s.create();
    s.ok("change $N");
    let before = s.state();
    let out = signalled(
        &s,
        // The safety backup archives no volume (their data is moved aside
        // later): it is stopped after its files.
        "create:after-archive,sleep=60",
        &format!("leger-backup restore {b1} --yes"),
        "TERM",
    );
    assert_eq!(out.code, Some(130), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "restore of {b1} interrupted by SIGTERM, before anything was replaced: nothing was changed"
        )),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after SIGTERM", &before);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1], "no half safety backup");
}

#[test]
fn fault_27_sigkill_during_the_safety_backup_of_a_restore() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-27", QUIET);
    let b1 = s.create();
    s.ok("change $N");
    let before = s.state();
    let out = s.fails(&format!(
        "LEGER_BACKUP_FAULT=create:after-archive leger-backup restore {b1} --yes"
    ));
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    s.assert_no_orphans();
    s.assert_down();
    let out = s.ok("leger-backup status");
    let warning = s.one_warning(&out);
    for needle in [
        "ended while taking the safety backup (",
        "it had not replaced anything yet; `recover` starts fault-27-app.service",
    ] {
        assert!(warning.contains(needle), "{needle:?} not in {warning}");
    }
    let out = s.ok("leger-backup recover");
    assert!(
        out.stderr.contains(
            "It had not replaced anything yet: the files and volumes of fault-27 are as they were"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("recovered fault-27: the interrupted restore had replaced nothing; started"),
        "{}",
        out.stderr
    );
    s.assert_up();
    s.assert_state("state after recover", &before);
    let (sound, _) = s.check_listing(&[]);
    assert_eq!(sound, [b1]);
}

#[test]
fn fault_28_sigkill_restoring_a_removed_deployment_then_recover_removes_it() {
    let tb = Testbed::get();
    let s = Scenario::new(&tb, "fault-28", QUIET);
    let b1 = s.create();
    let at_backup = s.state();
    s.ok("$SIM remove $N --no-backup >/dev/null; for v in $(vols $N); do podman volume rm $v >/dev/null; done");
    let nothing = s.state();
    let out = s.fails(&format!(
        "LEGER_BACKUP_FAULT=restore:during-import leger-backup restore {b1} --yes"
    ));
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    let out = s.ok("leger-backup list --deployment $N");
    let warning = s.one_warning(&out);
    assert!(
        warning.contains("half-installed; `recover` removes what the restore put in place"),
        "{warning}"
    );
    let out = s.ok("leger-backup recover --yes");
    assert!(
        out.stderr
            .contains("recovered fault-28: removed what the interrupted restore had put in place"),
        "{}",
        out.stderr
    );
    s.assert_down();
    s.assert_state("nothing, as before the restore", &nothing);
    s.check_listing(&[]);
    s.ok(&format!("leger-backup restore {b1} --yes"));
    s.assert_up();
    s.assert_state("state after the restore", &at_backup);
}
