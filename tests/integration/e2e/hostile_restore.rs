//! `restore` never acts on what is not the deployment's, in the rootless
//! testbed: a backup whose metadata names another user unit never starts
//! it; a volume another (stopped) deployment uses is replaced only with
//! `--force`; a file of no deployment in the way of a restore is refused,
//! and with `--force` kept in the safety backup, so a rollback and the undo
//! put it back. A volume archive that writes through a symlink is refused
//! (and `podman volume import` alone is shown to write outside); a FIFO
//! recorded at backup time comes back.
//!
//! Names (deployments `hr1`, `hr2a`, `hr2b`, `hr3`, `ha1`, volumes
//! `leger-e2e-hr*`, `leger-e2e-ha1-*`, the unit `leger-e2e-canary.service`)
//! are unique to this file. No test publishes a port.

use crate::support::deploy::MANIFEST_SH;
use crate::support::testbed::Testbed;

const SIM: &str = "/src/tests/support/leger-sim";

/// Shell helpers after [`MANIFEST_SH`] (`mp VOL` is the mountpoint); other
/// e2e files use them through [`script`] and [`succeeds`].
const PRELUDE: &str = r#"
set -eu
BACKUPS=$HOME/.local/share/bluebuild-quadlets/backups
Q=$HOME/.config/containers/systemd
# A container that exits on SIGTERM (busybox sleep as PID 1 ignores it).
EXEC="Exec=sh -c 'trap \"exit 0\" TERM; while :; do sleep 1; done'"
# plain NAME VOLUME [IMAGE]: a plain Quadlet deployment Q/NAME/NAME.container.
plain() {
  mkdir -p "$Q/$1"
  printf '[Container]\nImage=%s\n%s\nVolume=%s:/data\n' "${3:-localhost/busybox:latest}" "$EXEC" "$2" \
    > "$Q/$1/$1.container"
}
# running NAME VOLUME: the plain deployment NAME installed, started and
# active, its volume's file `f` holding "original".
running() {
  plain "$1" "$2"
  systemctl --user daemon-reload
  systemctl --user start "$1.service"
  active "$1.service"
  put "$2" original
}
# plant_archive ID TAR: make TAR the (only) volume archive of backup ID,
# with the size and checksums its metadata records updated to match, so
# only the tar guard stands between it and the import.
plant_archive() {
  B="$BACKUPS/$1"; A=$(find "$B/volumes" -name '*.tar.zst')
  zstd -q -f "$2" -o "$A"
  size=$(stat -c %s "$A"); sha=$(sha256sum "$A" | cut -d' ' -f1); raw=$(stat -c %s "$2")
  jq --argjson s "$size" --arg h "$sha" --argjson r "$raw" \
    '.volumes[0].size = $s | .volumes[0].sha256 = $h | .volumes[0].uncompressed_size = $r' \
    "$B/.backup-metadata.json" > "$B/m.json"
  mv "$B/m.json" "$B/.backup-metadata.json"
}
# forget VOLUME NAME...: stop and remove the plain deployments NAME, their
# backups, and VOLUME (what a previous, failed run may have left).
forget() {
  v=$1; shift
  for n in "$@"; do
    systemctl --user stop "$n.service" >/dev/null 2>&1 || true
    rm -rf "${Q:?}/$n" "$BACKUPS/$n"-*
  done
  systemctl --user daemon-reload
  podman volume rm -f "$v" >/dev/null 2>&1 || true
}
# put VOL TEXT: write TEXT to VOL's file `f`; got VOL: print it.
put() { podman unshare sh -c 'printf "%s\n" "$2" > "$1/f"' sh "$(mp "$1")" "$2"; }
got() { podman unshare cat "$(mp "$1")/f"; }
# active UNIT: wait up to 30 s for UNIT to be active.
active() {
  i=0
  until systemctl --user is-active --quiet "$1"; do
    i=$((i + 1)); [ $i -lt 120 ] || { systemctl --user status "$1" || true; return 1; }
    sleep 0.25
  done
}
"#;

pub(super) fn script(body: &str) -> String {
    format!("{MANIFEST_SH}\n{PRELUDE}\n{body}")
}

/// Run `body`; panic unless its exit status is `success`; (stdout, stderr).
pub(super) fn run(tb: &Testbed, body: &str, success: bool) -> (String, String) {
    let out = tb.sh(&script(body));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.success(),
        success,
        "`{body}` ended with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

pub(super) fn succeeds(tb: &Testbed, body: &str) -> (String, String) {
    run(tb, body, true)
}

pub(super) fn fails(tb: &Testbed, body: &str) -> (String, String) {
    run(tb, body, false)
}

/// Take a backup of `name`; its ID.
pub(super) fn create(tb: &Testbed, name: &str) -> String {
    let (json, _) = succeeds(tb, &format!("leger-backup create {name} --json"));
    let created: serde_json::Value = serde_json::from_str(&json).expect("create --json");
    created["id"].as_str().expect("id").to_owned()
}

const CLEANUP_HR1: &str = r#"
rm -f ~/.config/systemd/user/leger-e2e-canary.service ~/leger-e2e-canary-started
forget leger-e2e-hr1-data hr1
"#;

#[test]
fn a_foreign_unit_named_by_metadata_is_never_started() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HR1);
    // The canary: a user unit outside any deployment that leaves a trace
    // when anything starts it.
    succeeds(
        &tb,
        r#"mkdir -p ~/.config/systemd/user
        printf '[Service]\nType=oneshot\nExecStart=/bin/sh -c "touch %%h/leger-e2e-canary-started"\n' \
          > ~/.config/systemd/user/leger-e2e-canary.service
        running hr1 leger-e2e-hr1-data"#,
    );
    let id = create(&tb, "hr1");
    // A copy whose metadata names the canary as the deployment's service
    // and as the volume's user.
    let bad = format!("{id}-canary");
    succeeds(
        &tb,
        &format!(
            r#"cp -a "$BACKUPS/{id}" "$BACKUPS/{bad}"
            m="$BACKUPS/{bad}/.backup-metadata.json"
            sed -i -e 's/"id": "{id}"/"id": "{bad}"/' -e 's/"hr1.service"/"leger-e2e-canary.service"/g' "$m"
            grep -q leger-e2e-canary.service "$m"
            put leger-e2e-hr1-data changed"#
        ),
    );
    let (_, refused) = fails(&tb, &format!("leger-backup restore {bad} --yes"));
    eprintln!("hostile backup refused:\n{refused}");
    assert!(refused.contains("refused as hostile"), "{refused}");
    assert!(refused.contains("leger-e2e-canary.service"), "{refused}");
    succeeds(&tb, "test ! -e ~/leger-e2e-canary-started");
    // Nothing live was touched: the deployment runs, its data unchanged.
    succeeds(&tb, "systemctl --user is-active hr1.service");
    let (data, _) = succeeds(&tb, "got leger-e2e-hr1-data");
    assert_eq!(data.trim(), "changed");
    // The sound backup still restores (and starts only hr1.service).
    succeeds(&tb, &format!("leger-backup restore {id} --yes"));
    let (data, _) = succeeds(&tb, "got leger-e2e-hr1-data");
    assert_eq!(data.trim(), "original");
    succeeds(&tb, "test ! -e ~/leger-e2e-canary-started");
    succeeds(&tb, CLEANUP_HR1);
}

const CLEANUP_HR2: &str = "forget leger-e2e-hr2-shared hr2a hr2b";

#[test]
fn a_volume_a_stopped_deployment_uses_is_replaced_only_with_force() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HR2);
    // hr2a runs; hr2b is installed, stopped, and uses the same volume.
    succeeds(
        &tb,
        "plain hr2a leger-e2e-hr2-shared
         plain hr2b leger-e2e-hr2-shared
         systemctl --user daemon-reload
         systemctl --user start hr2a.service
         active hr2a.service
         put leger-e2e-hr2-shared v1",
    );
    succeeds(
        &tb,
        "! systemctl --user is-active hr2b.service && systemctl --user is-active hr2a.service",
    );
    let id = create(&tb, "hr2a");
    succeeds(&tb, "put leger-e2e-hr2-shared v2");
    let (_, refused) = fails(&tb, &format!("leger-backup restore {id} --yes"));
    eprintln!("shared volume refused:\n{refused}");
    assert!(
        refused.contains("volume leger-e2e-hr2-shared is used by deployment hr2b"),
        "{refused}"
    );
    assert!(refused.contains("--force"), "{refused}");
    let (data, _) = succeeds(&tb, "got leger-e2e-hr2-shared");
    assert_eq!(data.trim(), "v2", "refused restore changed the volume");
    succeeds(&tb, "systemctl --user is-active hr2a.service");
    // --force replaces it.
    let (_, forced) = succeeds(&tb, &format!("leger-backup restore {id} --yes --force"));
    assert!(
        forced.contains("--force: volume leger-e2e-hr2-shared"),
        "{forced}"
    );
    let (data, _) = succeeds(&tb, "got leger-e2e-hr2-shared");
    assert_eq!(data.trim(), "v1");
    succeeds(&tb, "systemctl --user is-active hr2a.service");
    succeeds(&tb, CLEANUP_HR2);
}

const CLEANUP_HR3: &str = r#"
/src/tests/support/leger-sim remove hr3 --no-backup >/dev/null 2>&1 || true
rm -f "$Q/hr3.container"
systemctl --user daemon-reload
podman volume rm -f leger-e2e-hr3-data >/dev/null 2>&1 || true
podman untag localhost/busybox:latest localhost/leger-e2e-hr3:v1 >/dev/null 2>&1 || true
rm -rf "$BACKUPS"/hr3-* ~/e2e-hr3
"#;

/// A quadlet file of no deployment, with the name hr3's own has.
const STRAY: &str = "[Container]\nImage=localhost/leger-e2e-hr3-stray:none\n";

#[test]
fn a_file_of_no_deployment_is_never_silently_overwritten() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HR3);
    // hr3, a leger deployment: its quadlet file is installed at the top of
    // the Quadlet directory.
    succeeds(
        &tb,
        &format!(
            "podman tag localhost/busybox:latest localhost/leger-e2e-hr3:v1
             mkdir -p ~/e2e-hr3
             printf '[Container]\\nImage=localhost/leger-e2e-hr3:v1\\n%s\\nVolume=leger-e2e-hr3-data:/data\\n' \"$EXEC\" \
               > ~/e2e-hr3/hr3.container
             {SIM} install hr3 ~/e2e-hr3
             active hr3.service
             put leger-e2e-hr3-data backed-up"
        ),
    );
    let id = create(&tb, "hr3");
    // Removed; a file of no deployment takes the name.
    succeeds(
        &tb,
        &format!(
            "{SIM} remove hr3 --no-backup
             printf '%s' '{STRAY}' > \"$Q/hr3.container\"
             systemctl --user daemon-reload"
        ),
    );
    let stray_is_there = format!("printf '%s' '{STRAY}' | cmp - \"$Q/hr3.container\"");

    // Refused, naming the file; the file untouched.
    let (_, refused) = fails(&tb, &format!("leger-backup restore {id} --yes"));
    eprintln!("overwrite refused:\n{refused}");
    assert!(
        refused.contains("belong to no deployment") && refused.contains("hr3.container"),
        "{refused}"
    );
    succeeds(&tb, &stray_is_there);
    succeeds(
        &tb,
        "test ! -d ~/.local/share/bluebuild-quadlets/active/hr3",
    );

    // With --force, a restore that fails (its image is gone) rolls back:
    // the file comes back from the safety backup, nothing is installed.
    succeeds(
        &tb,
        "podman untag localhost/busybox:latest localhost/leger-e2e-hr3:v1",
    );
    let (_, failed) = fails(&tb, &format!("leger-backup restore {id} --yes --force"));
    eprintln!("forced restore that failed:\n{failed}");
    assert!(
        failed.contains("rolled back to the previous state"),
        "{failed}"
    );
    succeeds(&tb, &stray_is_there);
    succeeds(
        &tb,
        "test ! -d ~/.local/share/bluebuild-quadlets/active/hr3",
    );

    // With --force and its image back: restored; the undo it prints puts
    // the file back.
    succeeds(
        &tb,
        "podman tag localhost/busybox:latest localhost/leger-e2e-hr3:v1",
    );
    let (_, restored) = succeeds(&tb, &format!("leger-backup restore {id} --yes --force"));
    succeeds(&tb, "active hr3.service");
    succeeds(&tb, "grep -q leger-e2e-hr3:v1 \"$Q/hr3.container\"");
    let (data, _) = succeeds(&tb, "got leger-e2e-hr3-data");
    assert_eq!(data.trim(), "backed-up");
    let undo = restored
        .lines()
        .find_map(|l| l.strip_prefix("undo with: leger-backup restore "))
        .expect("undo line")
        .trim()
        .to_owned();
    succeeds(&tb, &format!("leger-backup restore {undo} --yes"));
    succeeds(&tb, &stray_is_there);
    succeeds(
        &tb,
        "test ! -d ~/.local/share/bluebuild-quadlets/active/hr3",
    );
    succeeds(&tb, CLEANUP_HR3);
}

const CLEANUP_HA1: &str = r#"
rm -rf ~/leger-e2e-outside ~/leger-e2e-craft
podman volume rm -f leger-e2e-ha1-scratch >/dev/null 2>&1 || true
forget leger-e2e-ha1-data ha1
"#;

/// A volume archive that writes through a symlink (`a -> ~/outside`, then
/// `a/file`): `podman volume import` alone writes outside the volume (shown
/// first, so the test proves the hazard is real); `restore` refuses the
/// backup, writes nothing anywhere and leaves the deployment running.
#[test]
fn a_volume_archive_writing_through_a_symlink_never_leaves_the_volume() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HA1);
    succeeds(&tb, r#"running ha1 leger-e2e-ha1-data"#);
    let id = create(&tb, "ha1");
    // The crafted tar, in podman's order: the symlink, then a file under it.
    succeeds(
        &tb,
        r#"mkdir -p ~/leger-e2e-outside ~/leger-e2e-craft/one ~/leger-e2e-craft/two/a
        ln -s "$HOME/leger-e2e-outside" ~/leger-e2e-craft/one/a
        echo pwned > ~/leger-e2e-craft/two/a/file
        tar -C ~/leger-e2e-craft/one -cf ~/leger-e2e-craft/evil.tar a
        tar -C ~/leger-e2e-craft/two -rf ~/leger-e2e-craft/evil.tar a/file
        tar -tvf ~/leger-e2e-craft/evil.tar
        podman volume create leger-e2e-ha1-scratch >/dev/null
        podman volume import leger-e2e-ha1-scratch ~/leger-e2e-craft/evil.tar
        test -f ~/leger-e2e-outside/file   # podman alone writes outside
        rm -f ~/leger-e2e-outside/file
        podman volume rm -f leger-e2e-ha1-scratch >/dev/null"#,
    );
    let (_, stderr) = fails(
        &tb,
        &format!(
            r#"plant_archive {id} ~/leger-e2e-craft/evil.tar
            put leger-e2e-ha1-data current
            leger-backup restore {id} --yes"#
        ),
    );
    assert!(
        stderr.contains("entry \"a/file\" passes through \"a\", which is not a directory"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    succeeds(
        &tb,
        r#"test ! -e ~/leger-e2e-outside/file
        test "$(got leger-e2e-ha1-data)" = current
        systemctl --user is-active --quiet ha1.service"#,
    );
    succeeds(&tb, CLEANUP_HA1);
}

/// A FIFO in a volume is recorded when the backup is created, so the
/// restore lets exactly it through and it comes back.
#[test]
fn a_fifo_recorded_at_backup_time_comes_back() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HA1);
    succeeds(
        &tb,
        r#"running ha1 leger-e2e-ha1-data
        podman unshare mkfifo "$(mp leger-e2e-ha1-data)/pipe""#,
    );
    let id = create(&tb, "ha1");
    let (specials, _) = succeeds(
        &tb,
        &format!(r#"jq -c '.volumes[0].special_files' "$BACKUPS/{id}/.backup-metadata.json""#),
    );
    assert_eq!(specials.trim(), r#"["pipe"]"#);
    succeeds(
        &tb,
        &format!(
            r#"podman unshare rm "$(mp leger-e2e-ha1-data)/pipe"
            put leger-e2e-ha1-data changed
            leger-backup restore {id} --yes
            podman unshare test -p "$(mp leger-e2e-ha1-data)/pipe"
            test "$(got leger-e2e-ha1-data)" = original
            active ha1.service"#
        ),
    );
    succeeds(&tb, CLEANUP_HA1);
}

/// A volume archive that is also a gzip stream (review finding): podman's
/// import sniffs its input for compression and would unpack the tar hidden
/// inside, which writes through a symlink out of the volume. A restore
/// sends a header of its own first, so podman reads the archive as the tar
/// the guard checked: one oddly named file, nothing outside.
#[test]
fn a_tar_that_is_also_a_gzip_stream_is_imported_as_the_tar_it_is() {
    use crate::support::tar_craft::{base64, data, finish_tar, gzip_polyglot, header};
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_HA1);
    succeeds(&tb, r#"running ha1 leger-e2e-ha1-data"#);
    let id = create(&tb, "ha1");
    let mut inner = header("a", b'2', 0, "/home/tester/leger-e2e-outside");
    inner.extend(header("a/pwned", b'0', 6, ""));
    inner.extend(data(b"pwned\n"));
    let polyglot = base64(&gzip_polyglot(&finish_tar(inner)));
    succeeds(
        &tb,
        &format!(
            r#"mkdir -p ~/leger-e2e-outside ~/leger-e2e-craft
            echo '{polyglot}' | base64 -d > ~/leger-e2e-craft/evil.tar
            podman volume create leger-e2e-ha1-scratch >/dev/null
            podman volume import leger-e2e-ha1-scratch ~/leger-e2e-craft/evil.tar || true
            test -f ~/leger-e2e-outside/pwned   # podman alone writes outside
            rm -f ~/leger-e2e-outside/pwned
            podman volume rm -f leger-e2e-ha1-scratch >/dev/null"#
        ),
    );
    succeeds(
        &tb,
        &format!(
            r#"plant_archive {id} ~/leger-e2e-craft/evil.tar
            leger-backup restore {id} --yes
            test ! -e ~/leger-e2e-outside/pwned
            podman unshare sh -c 'ls -A "$1"' sh "$(mp leger-e2e-ha1-data)" | grep -v '^f$' | od -c | head -2"#
        ),
    );
    succeeds(&tb, CLEANUP_HA1);
}
