//! `create` reads a local volume itself (issue 11, part 3), in the rootless
//! testbed: the archive it writes lists exactly as `podman volume export`
//! of the same volume (names, types, modes, numeric owners, sizes, times,
//! link targets, extended attributes, order), a restore of it gives the
//! volume back byte for byte, and with `LEGER_BACKUP_VOLUME_READER=podman`
//! the same backup is made through podman's export.
//!
//! Names (deployment `dr1`, volume `leger-e2e-dr1-data`) are unique to this
//! file. The shell helpers (`plain`, `forget`, `put`, `active`, `mp`,
//! `volume_manifest`) are those of [`super::hostile_restore`].

use super::hostile_restore::succeeds;
use crate::support::deploy::assert_same;
use crate::support::testbed::Testbed;

const CLEANUP_DR1: &str = "forget leger-e2e-dr1-data dr1";

/// Fill the volume inside the user namespace: files of three container
/// users, a hard link, symlinks (one pointing outside), a path over 100
/// bytes (USTAR prefix) and a name of 150 bytes (PAX), an empty directory,
/// setuid and sticky bits, a `user.*` extended attribute (setfattr, from
/// the testbed's `attr` package), a FIFO.
const FILL: &str = r##"
podman unshare sh -euc '
  cd "$1"
  mkdir -p db www empty tmp "$(printf "a%.0s" $(seq 60))"
  long="$(printf "a%.0s" $(seq 60))/$(printf "b%.0s" $(seq 60))"
  printf "split\n" > "$long"
  printf "pax\n" > "www/$(printf "n%.0s" $(seq 150))"
  head -c 300000 /dev/urandom > db/data.bin
  chown -R 999:998 db && chmod 700 db
  printf "<h1>hi</h1>\n" > www/index.html
  ln www/index.html www/again.html
  ln -s index.html www/link
  ln -s /etc outside
  chown -h 33:33 www www/index.html www/link
  printf "#!/bin/sh\n" > tool && chmod 4755 tool
  chmod 1777 tmp
  mkfifo pipe
  printf x > attrs
  setfattr -n user.note -v kept attrs
  chown 1000:1000 attrs
' sh "$(mp leger-e2e-dr1-data)"
"##;

/// `tar -tvv` (numeric owners, extended attributes) of backup `id`'s
/// archive of the volume, and of `podman volume export` of it now.
fn listings(tb: &Testbed, id: &str) -> (String, String) {
    let list = "tar --numeric-owner --xattrs --xattrs-include='*' -tvvf -";
    let (ours, _) = succeeds(
        tb,
        &format!(
            r#"b="$BACKUPS/{id}"
            zstd -dc "$b/$(jq -r '.volumes[0].archive_path' "$b/.backup-metadata.json")" | {list}"#
        ),
    );
    let (podmans, _) = succeeds(
        tb,
        &format!("podman volume export leger-e2e-dr1-data | {list}"),
    );
    (ours, podmans)
}

/// `create dr1` with the reader `reader`; (ID, stderr).
fn create_with(tb: &Testbed, reader: &str) -> (String, String) {
    let (json, stderr) = succeeds(
        tb,
        &format!("LEGER_BACKUP_VOLUME_READER={reader} leger-backup create dr1 --json"),
    );
    let created: serde_json::Value = serde_json::from_str(&json).expect("create --json");
    (created["id"].as_str().expect("id").to_owned(), stderr)
}

#[test]
fn a_directly_read_volume_archives_and_restores_as_podmans_export() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_DR1);
    succeeds(
        &tb,
        &format!(
            "plain dr1 leger-e2e-dr1-data
             systemctl --user daemon-reload
             systemctl --user start dr1.service
             active dr1.service
             {FILL}"
        ),
    );
    let (before, _) = succeeds(&tb, "volume_manifest leger-e2e-dr1-data");
    let (id, stderr) = create_with(&tb, "direct");
    assert!(stderr.contains("(read directly)"), "{stderr}");

    // (a) The same listing as podman's export, entry for entry.
    let (ours, podmans) = listings(&tb, &id);
    assert!(ours.contains(" 999/998 "), "{ours}");
    assert!(ours.contains("pipe"), "{ours}");
    assert!(ours.contains(&"n".repeat(150)), "{ours}");
    assert_same(
        "tar listing (direct read vs podman volume export)",
        &podmans,
        &ours,
    );

    // (b) A restore over a changed volume gives it back byte for byte.
    succeeds(&tb, "put leger-e2e-dr1-data changed");
    succeeds(&tb, &format!("leger-backup restore {id} --yes"));
    let (after, _) = succeeds(&tb, "volume_manifest leger-e2e-dr1-data");
    assert_same("volume after restoring the direct read", &before, &after);
    let (note, _) = succeeds(
        &tb,
        r#"podman unshare getfattr -h -n user.note --only-values "$(mp leger-e2e-dr1-data)/attrs""#,
    );
    assert_eq!(note, "kept", "the extended attribute after the restore");
    succeeds(&tb, "active dr1.service");

    // (c) Forced through podman's export: the same backup.
    let (by_podman, stderr) = create_with(&tb, "podman");
    assert!(stderr.contains("(podman volume export)"), "{stderr}");
    let (ours, podmans) = listings(&tb, &by_podman);
    assert_same("tar listing (forced podman export)", &podmans, &ours);
    succeeds(&tb, &format!("leger-backup verify {by_podman}"));
    succeeds(&tb, CLEANUP_DR1);
}
