//! Off-site backups in restic repositories (issue 13) end to end, in the
//! rootless testbed, against real servers the tests start on the host's
//! loopback (the testbed shares the host's network): restic's REST server
//! and an S3 server (s3s-fs), see [`crate::support::servers`].
//!
//! - A deployment whose volume holds a mixed tree goes to a REST and to an
//!   S3 repository; plain `restic snapshots` finds the snapshot by its tags;
//!   after everything local is wiped (services, units, quadlet files, the
//!   volume, the backup directory, restic's cache, leger-backup's state),
//!   `list --repo` shows it and `restore --from` brings the deployment back
//!   byte-identical, its service running.
//! - Deduplication: a second backup with nothing changed adds almost
//!   nothing; after a one-line change, about that line.
//! - Wrong password, wrong S3 secret key, a missing env file, secret files
//!   readable by others, a repository that is down: a clear error naming
//!   the repository (or the file), a non-zero exit, the services running
//!   again, nothing left behind.
//! - `backup.targets: [local, REPO]` with REPO down when the deployment
//!   stops: the stop hook backs up locally; `sync` catches up later.
//!
//! Names (deployments `rp1`…`rp6`, volumes `leger-e2e-rpN-data`,
//! repositories `rpN-rest`, `rpN-s3`) are unique to this file; each test
//! sets leger's config and the secret files and puts them back (guards).
//! The shell helpers `running`, `forget`, `active`, `mp`, `volume_manifest`
//! and `deployment_files_manifest` are those of [`super::hostile_restore`].

use std::time::{Duration, Instant};

use serde_json::Value;

use super::hostile_restore::{fails, succeeds};
use crate::support::deploy::{assert_same, timed};
use crate::support::repo_config::{write_secrets, RepoEntry, Repositories};
use crate::support::servers::{RestServer, S3Server};
use crate::support::testbed::Testbed;

/// How long a refused or failed `create --to` may take. restic itself
/// retries an unreachable server for 15 minutes; leger-backup must not
/// make a stop hook wait that long.
const FAIL_WITHIN: Duration = Duration::from_secs(120);

/// Shell helpers of this file (after those of `hostile_restore`).
const REPO_SH: &str = r##"
# fill VOL: a mixed tree inside the user namespace: files of three
# container users, a 0600 file in a 0700 directory, a hard link, a
# symlink and a dangling one, setuid, setgid and sticky bits, an empty
# directory, a sparse file, a user extended attribute, and a volume root
# that is 0750 and 999's.
fill() {
  podman unshare sh -euc '
    cd "$1"
    mkdir -p db www empty tmp
    head -c 300000 /dev/urandom > db/data.bin
    printf "key\n" > db/secret.key
    chown -R 999:998 db
    chmod 600 db/secret.key
    chmod 700 db
    printf "<h1>hi</h1>\n" > www/index.html
    ln www/index.html www/again.html
    ln -s index.html www/link
    ln -s /does/not/exist dangling
    chown -h 33:33 www www/index.html www/link
    setfattr -n user.origin -v leger-e2e www/index.html
    printf "#!/bin/sh\n" > tool
    chmod 4755 tool
    chmod 2750 empty
    chmod 1777 tmp
    truncate -s 8M sparse
    printf end | dd of=sparse bs=1 seek=4194304 conv=notrunc 2>/dev/null
    chown 1000:1000 sparse
    chown 999:999 .
    chmod 750 .
  ' sh "$(mp "$1")"
}
# fill_big VOL: twenty 1 MB random files and a 1000-line text file.
fill_big() {
  podman unshare sh -euc 'cd "$1"; for i in $(seq 20); do
    head -c 1048576 /dev/urandom > r$i.bin; done; seq 1 1000 > lines.txt' sh "$(mp "$1")"
}
# extras VOL: what volume_manifest does not show: link counts, whether
# the hard link is still one, the extended attribute, and whether the 8 MiB
# sparse file still has its holes (restic restores them at the size of its
# chunks, 512 KiB and more, not block by block: "kept" means less than a
# quarter of the file is allocated).
extras() {
  podman unshare sh -c 'cd "$1" && echo "== links" && find . -type f -printf "%p %n\n" | LC_ALL=C sort &&
    if [ www/index.html -ef www/again.html ]; then echo "www/again.html is www/index.html";
    else echo "www/again.html is another file"; fi &&
    echo "== user.origin of www/index.html: $(getfattr -h -n user.origin --only-values www/index.html 2>&1)" &&
    if [ -e sparse ]; then kib=$(du -k sparse | cut -f1);
      if [ "$kib" -lt 2048 ]; then echo "== sparse: holes kept"; else echo "== sparse: $kib KiB allocated, holes lost"; fi; fi' sh "$(mp "$1")"
}
# state NAME VOL: the volume and the deployment's files, exactly.
state() { volume_manifest "$2"; extras "$2"; deployment_files_manifest "$1"; }
# wipe NAME VOL: a machine that lost everything local: the services, the
# units, the quadlet files, the volume, every local backup, restic's cache
# and leger-backup's own state.
wipe() {
  systemctl --user stop "$1.service" >/dev/null 2>&1 || true
  rm -rf "${Q:?}/$1"
  systemctl --user daemon-reload
  podman volume rm -f "$2" >/dev/null
  rm -rf "$BACKUPS" "$HOME/.cache/restic" "$HOME/.local/state/leger-backup"
}
# left_behind: the backup directory's entries and restic processes of the
# test user (what a failed create must not leave).
left_behind() {
  echo "== backups"; ls -A "$BACKUPS" 2>/dev/null || true
  echo "== restic processes"; pgrep -u "$(id -u)" -x restic || true
}
"##;

/// Run `body` after [`REPO_SH`]; panic unless it succeeds; its stdout.
fn ok(tb: &Testbed, body: &str) -> String {
    succeeds(tb, &format!("{REPO_SH}\n{body}")).0
}

/// `create NAME --to REPO --json`; the backup's ID.
fn create_to(tb: &Testbed, name: &str, repo: &str) -> String {
    let json = timed(&format!("create {name} --to {repo}"), || {
        ok(
            tb,
            &format!("leger-backup create {name} --to {repo} --json"),
        )
    });
    let created: Value = serde_json::from_str(&json).expect("create --json");
    created["id"].as_str().expect("id").to_owned()
}

/// Plain `restic snapshots --json --tag TAGS` on `repo` in the testbed.
fn snapshots(tb: &Testbed, repo: &RepoEntry, tags: &str) -> Vec<Value> {
    let json = ok(tb, &repo.restic(&format!("snapshots --json --tag {tags}")));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("restic snapshots: {e}: {json}"))
}

/// The tags of `snapshot`.
fn tags(snapshot: &Value) -> Vec<&str> {
    snapshot["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The one snapshot of backup `id` in `repo`, found with plain restic.
fn stored(tb: &Testbed, repo: &RepoEntry, id: &str) -> Value {
    let mut found = snapshots(tb, repo, &format!("leger-backup,id={id}"));
    assert_eq!(found.len(), 1, "not one snapshot of {id}: {found:#?}");
    found.remove(0)
}

/// The volume of the plain deployment `name`.
fn volume(name: &str) -> String {
    format!("leger-e2e-{name}-data")
}

/// Clean what an earlier run left of the plain deployment `name`; set
/// `entries` (and `targets`) in leger's config with their secrets; start
/// `name` with its volume filled by the shell function `fill`; `repo init`
/// each entry.
fn deployment_with<'a>(
    tb: &'a Testbed,
    name: &str,
    fill: &str,
    entries: &[RepoEntry],
    targets: Option<&[&str]>,
) -> Repositories<'a> {
    let vol = volume(name);
    ok(tb, &format!("forget {vol} {name}"));
    let repos = Repositories::set(tb, entries, targets);
    ok(tb, &format!("running {name} {vol} && {fill} {vol}"));
    for entry in entries {
        ok(tb, &format!("leger-backup repo init {}", entry.name));
    }
    repos
}

/// Back `name` up to `repo`, wipe everything local, restore from `repo`:
/// byte-identical, service running; the snapshot is a plain restic one.
fn round_trip(tb: &Testbed, name: &str, repo: &RepoEntry) {
    let vol = volume(name);
    let _repos = deployment_with(tb, name, "fill", std::slice::from_ref(repo), None);
    let before = ok(tb, &format!("state {name} {vol}"));
    for line in [
        ". d 750 999 999",
        "./tool f 4755 0 0",
        "./tmp d 1777",
        "./empty d 2750",
        "./db/secret.key f 600 999 998",
        "./www/link l 777 33 33 index.html",
        "./sparse f 644 1000 1000",
        "www/again.html is www/index.html",
        &format!("./{name}/{name}.container f"),
    ] {
        assert!(
            before.lines().any(|l| l.starts_with(line)),
            "no `{line}` before the backup:\n{before}"
        );
    }
    let id = create_to(tb, name, &repo.name);
    ok(tb, &format!("active {name}.service"));

    // A plain restic snapshot, found by its tags without leger-backup.
    let snapshot = stored(tb, repo, &id);
    let tags = tags(&snapshot);
    for tag in [
        "leger-backup".to_owned(),
        format!("deployment={name}"),
        format!("id={id}"),
    ] {
        assert!(tags.contains(&tag.as_str()), "no tag {tag}: {tags:?}");
    }

    // The machine loses everything local.
    ok(tb, &format!("wipe {name} {vol}"));
    let wiped = ok(
        tb,
        &format!("volume_manifest {vol}; ls -A \"$BACKUPS\" 2>&1 || true"),
    );
    assert!(wiped.contains(&format!("== {vol} absent")), "{wiped}");

    // From the config entry and its secrets alone: list, restore.
    let list = ok(
        tb,
        &format!("leger-backup list --repo {} --json", repo.name),
    );
    let list: Vec<Value> = serde_json::from_str(&list).expect("list --repo --json");
    assert!(list.iter().any(|b| b["id"] == id.as_str()), "{list:#?}");
    timed(&format!("restore {id} --from {}", repo.name), || {
        ok(
            tb,
            &format!("leger-backup restore {id} --from {} --yes", repo.name),
        )
    });
    ok(tb, &format!("active {name}.service"));
    assert_same(
        &format!("{name} restored from {}", repo.name),
        &before,
        &ok(tb, &format!("state {name} {vol}")),
    );
    ok(tb, &format!("forget {vol} {name}"));
}

#[test]
fn a_backup_in_a_rest_repository_restores_exactly_on_a_wiped_machine() {
    let tb = Testbed::get();
    let server = RestServer::start();
    round_trip(&tb, "rp1", &RepoEntry::rest("rp1-rest", &server));
}

#[test]
fn a_backup_in_an_s3_repository_restores_exactly_on_a_wiped_machine() {
    let tb = Testbed::get();
    let server = S3Server::start();
    round_trip(&tb, "rp2", &RepoEntry::s3("rp2-s3", &server));
}

/// `summary.data_added` of the snapshot of backup `id`.
fn data_added(tb: &Testbed, repo: &RepoEntry, id: &str) -> u64 {
    let snapshot = stored(tb, repo, id);
    snapshot["summary"]["data_added"]
        .as_u64()
        .unwrap_or_else(|| panic!("no summary.data_added: {snapshot:#}"))
}

/// Twenty 1 MB random files and a 1000-line text file: backed up twice
/// unchanged, then after one line changed. restic deduplicates: the
/// second snapshot adds < 5% of the first's bytes, the third ≤ 1% (plus a
/// few KB of trees and metadata).
#[test]
fn unchanged_and_one_line_changed_backups_upload_almost_nothing() {
    let tb = Testbed::get();
    let (name, vol) = ("rp3", volume("rp3"));
    let server = S3Server::start();
    let repo = RepoEntry::s3("rp3-s3", &server);
    let _repos = deployment_with(&tb, name, "fill_big", std::slice::from_ref(&repo), None);
    let first = create_to(&tb, name, &repo.name);
    let again = create_to(&tb, name, &repo.name);
    ok(
        &tb,
        &format!("podman unshare sed -i '500s/.*/one line changed/' \"$(mp {vol})/lines.txt\""),
    );
    let changed = create_to(&tb, name, &repo.name);
    let (a, b, c) = (
        data_added(&tb, &repo, &first),
        data_added(&tb, &repo, &again),
        data_added(&tb, &repo, &changed),
    );
    eprintln!("data_added: first {a} B, unchanged {b} B, one line changed {c} B");
    assert!(a >= 20_000_000, "the first backup added only {a} B");
    assert!(
        b * 20 < a,
        "unchanged: {b} B is not < 5% of the first's {a} B"
    );
    assert!(
        c <= a / 100 + 16 * 1024,
        "one line changed: {c} B is more than 1% of the first's {a} B + 16 KiB"
    );
    ok(&tb, &format!("active {name}.service"));
    ok(&tb, &format!("forget {vol} {name}"));
}

/// `create NAME --to REPO` must fail within [`FAIL_WITHIN`], with a
/// message naming `names` (all) and one of each group of `any_of`
/// (case-insensitive), the service running again, the volume, the
/// deployment's files and the backup directory as before, no restic left.
fn refused(tb: &Testbed, name: &str, repo: &str, names: &[&str], any_of: &[&[&str]]) {
    let vol = volume(name);
    let probe = format!("state {name} {vol}; left_behind");
    let before = ok(tb, &probe);
    let t0 = Instant::now();
    let (_, stderr) = fails(
        tb,
        &format!("{REPO_SH}\nleger-backup create {name} --to {repo}"),
    );
    let took = t0.elapsed();
    eprintln!("create --to {repo} refused after {took:?}:\n{stderr}");
    assert!(took < FAIL_WITHIN, "refused only after {took:?}");
    for needle in names.iter().chain([&repo]) {
        assert!(stderr.contains(needle), "the message lacks `{needle}`");
    }
    let lower = stderr.to_lowercase();
    for group in any_of {
        assert!(
            group.iter().any(|w| lower.contains(&w.to_lowercase())),
            "the message has none of {group:?}"
        );
    }
    ok(tb, &format!("active {name}.service"));
    assert_same(
        &format!("{name} after the refused create --to {repo}"),
        &before,
        &ok(tb, &probe),
    );
}

/// A wrong password, a wrong S3 secret key, a missing env file, an env
/// file and a password file readable by others: each refused clearly,
/// nothing lost; with the right secrets back, the backup goes through.
#[test]
fn wrong_secrets_are_refused_clearly_and_lose_nothing() {
    let tb = Testbed::get();
    let name = "rp4";
    let rest_server = RestServer::start();
    let s3_server = S3Server::start();
    let rest = RepoEntry::rest("rp4-rest", &rest_server);
    let s3 = RepoEntry::s3("rp4-s3", &s3_server);
    let _repos = deployment_with(&tb, name, "fill", &[rest.clone(), s3.clone()], None);

    // The wrong password for an existing repository.
    let wrong_password = RepoEntry {
        password: "not-the-password".to_owned(),
        ..rest.clone()
    };
    write_secrets(&tb, &wrong_password);
    refused(
        &tb,
        name,
        &rest.name,
        &[],
        &[&["password"], &["wrong", "incorrect", "does not match"]],
    );
    write_secrets(&tb, &rest);

    // The wrong S3 secret key.
    let mut wrong_key = s3.clone();
    wrong_key.env[1].1 = "not-the-secret-key".to_owned();
    write_secrets(&tb, &wrong_key);
    refused(
        &tb,
        name,
        &s3.name,
        &[],
        &[&["access denied", "secret", "credentials", "signature"]],
    );
    write_secrets(&tb, &s3);

    // The env file missing: the message names it.
    ok(&tb, &format!("rm \"{}\"", s3.env_path()));
    refused(&tb, name, &s3.name, &["rp4-s3.env"], &[]);
    write_secrets(&tb, &s3);

    // Secret files readable by others: refused, with the fix.
    ok(&tb, &format!("chmod 644 \"{}\"", s3.env_path()));
    refused(
        &tb,
        name,
        &s3.name,
        &["rp4-s3.env"],
        &[&["chmod 600", "chmod 0600"]],
    );
    ok(&tb, &format!("chmod 600 \"{}\"", s3.env_path()));
    ok(&tb, &format!("chmod 644 \"{}\"", rest.password_path()));
    refused(
        &tb,
        name,
        &rest.name,
        &["rp4-rest.password"],
        &[&["chmod 600", "chmod 0600"]],
    );
    ok(&tb, &format!("chmod 600 \"{}\"", rest.password_path()));

    // With everything right again, both backups go through.
    for repo in [&rest, &s3] {
        stored(&tb, repo, &create_to(&tb, name, &repo.name));
    }
    ok(&tb, &format!("forget {} {name}", volume(name)));
}

/// The REST server is down during `create --to`: a clear error naming the
/// repository, soon; the service runs again; nothing is left behind. Once
/// the server is back, the same command succeeds.
#[test]
fn an_unreachable_repository_fails_the_backup_soon_and_loses_nothing() {
    let tb = Testbed::get();
    let name = "rp5";
    let mut server = RestServer::start();
    let repo = RepoEntry::rest("rp5-rest", &server);
    let _repos = deployment_with(&tb, name, "fill", std::slice::from_ref(&repo), None);
    server.stop();
    refused(&tb, name, &repo.name, &[], &[]);
    server.restart();
    stored(&tb, &repo, &create_to(&tb, name, &repo.name));
    ok(&tb, &format!("forget {} {name}", volume(name)));
}

/// `backup.targets: [local, REPO]` and REPO's server down when the
/// deployment stops: the stop hook's backup lands in `local` all the same,
/// soon; `status` names the repository that failed; once the server is
/// back, `sync` copies the backup into it.
#[test]
fn a_stop_hook_with_the_repository_down_backs_up_locally_and_sync_catches_up() {
    let tb = Testbed::get();
    let (name, vol) = ("rp6", volume("rp6"));
    let mut server = RestServer::start();
    let repo = RepoEntry::rest("rp6-rest", &server);
    let targets = ["local", repo.name.as_str()];
    let _repos = deployment_with(
        &tb,
        name,
        "fill",
        std::slice::from_ref(&repo),
        Some(&targets),
    );
    let unit = ok(&tb, &format!("systemctl --user cat {name}.service"));
    assert!(
        unit.contains(&format!("stop-hook --deployment {name}")),
        "no stop hook in {name}.service:\n{unit}"
    );
    let before = ok(&tb, &format!("volume_manifest {vol}"));
    server.stop();
    let t0 = Instant::now();
    ok(&tb, &format!("systemctl --user stop {name}.service"));
    let took = t0.elapsed();
    eprintln!("stop with the repository down took {took:?}");
    assert!(took < FAIL_WITHIN, "the stop hook took {took:?}");

    let list = ok(
        &tb,
        &format!("leger-backup list --deployment {name} --json"),
    );
    let list: Vec<Value> = serde_json::from_str(&list).expect("list --json");
    assert_eq!(list.len(), 1, "no local backup of the stop: {list:#?}");
    assert_eq!(list[0]["reason"], "on-stop", "{list:#?}");
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let status = ok(&tb, "leger-backup status");
    assert!(status.contains(&repo.name), "status:\n{status}");
    assert_same(
        "volume after the stop hook",
        &before,
        &ok(&tb, &format!("volume_manifest {vol}")),
    );

    server.restart();
    ok(&tb, &format!("leger-backup sync --to {}", repo.name));
    stored(&tb, &repo, &id);
    ok(&tb, &format!("forget {vol} {name}"));
}
