//! Unchanged data costs nothing, in the rootless testbed: a second backup of
//! a volume that has not changed shares the first one's archive (one file,
//! two links), and verifies; a change makes a new archive; deleting the
//! first backup leaves the second whole: it verifies and restores.
//!
//! Names (deployment `ru1`, volume `leger-e2e-ru1-data`) are unique to this
//! file. The shell helpers (`plain`, `forget`, `put`, `got`, `active`) are
//! those of [`super::hostile_restore`].

use super::hostile_restore::{create, succeeds};
use crate::support::testbed::Testbed;

const CLEANUP_RU1: &str = "forget leger-e2e-ru1-data ru1";

/// `inode links` of backup `id`'s archive of the one volume.
fn archive_identity(tb: &Testbed, id: &str) -> (u64, u64) {
    let (out, _) = succeeds(
        tb,
        &format!(
            r#"b="$BACKUPS/{id}"
            stat -c '%i %h' "$b/$(jq -r '.volumes[0].archive_path' "$b/.backup-metadata.json")""#
        ),
    );
    let mut fields = out.split_whitespace().map(|f| f.parse().expect("stat"));
    (fields.next().expect("inode"), fields.next().expect("links"))
}

/// The tree signature backup `id` recorded for the volume.
fn signature(tb: &Testbed, id: &str) -> String {
    let (out, _) = succeeds(
        tb,
        &format!(r#"jq -r '.volumes[0].tree_signature' "$BACKUPS/{id}/.backup-metadata.json""#),
    );
    out.trim().to_owned()
}

#[test]
fn an_unchanged_volume_shares_its_archive_and_survives_either_deletion() {
    let tb = Testbed::get();
    succeeds(&tb, CLEANUP_RU1);
    succeeds(
        &tb,
        "plain ru1 leger-e2e-ru1-data
         systemctl --user daemon-reload
         systemctl --user start ru1.service
         active ru1.service
         put leger-e2e-ru1-data one",
    );
    let first = create(&tb, "ru1");
    let second = create(&tb, "ru1");
    let signed = signature(&tb, &first);
    assert_eq!(signed.len(), 64, "no tree signature recorded: {signed:?}");
    assert_eq!(signature(&tb, &second), signed);
    let (inode, links) = archive_identity(&tb, &first);
    assert_eq!(
        archive_identity(&tb, &second),
        (inode, 2),
        "the unchanged volume was exported again"
    );
    assert_eq!(links, 2);
    succeeds(&tb, &format!("leger-backup verify {second}"));

    // One changed file: a new archive, the shared one untouched.
    succeeds(&tb, "put leger-e2e-ru1-data two");
    let third = create(&tb, "ru1");
    assert_ne!(signature(&tb, &third), signed);
    let (new_inode, new_links) = archive_identity(&tb, &third);
    assert_ne!(new_inode, inode, "a changed volume shared the old archive");
    assert_eq!(new_links, 1);
    assert_eq!(archive_identity(&tb, &second), (inode, 2));

    // Deleting the first backup leaves the second whole.
    succeeds(&tb, &format!("leger-backup delete {first} --yes"));
    assert_eq!(archive_identity(&tb, &second), (inode, 1));
    succeeds(&tb, &format!("leger-backup verify {second}"));
    succeeds(&tb, &format!("leger-backup restore {second} --yes"));
    let (data, _) = succeeds(&tb, "got leger-e2e-ru1-data");
    assert_eq!(data.trim(), "one");
    succeeds(&tb, "systemctl --user is-active ru1.service");
    succeeds(&tb, CLEANUP_RU1);
}
