//! The writer against the reader: trees made on the host (these tests run
//! as root: they chown, mknod and set ACLs) read by `volume-tar --host`'s
//! reader and written back come out identical; hostile archives are
//! refused without a byte written outside DEST.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::backup::volume_reader::tests::{chown, manifest_of, sample_tree, set_xattr};
use crate::backup::volume_reader::write_host_path;

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests chown, mknod and set ACLs: run them as root"
    );
}

/// A POSIX ACL as the kernel stores it in `system.posix_acl_*`: version
/// 2, then (tag, permissions, id) entries sorted by tag and id.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

const ANY: u32 = u32::MAX;

/// user::rw-, user:1234:r--, group::r--, mask::r--, other::---
fn file_acl() -> Vec<u8> {
    acl(&[
        (0x01, 6, ANY),
        (0x02, 4, 1234),
        (0x04, 4, ANY),
        (0x10, 4, ANY),
        (0x20, 0, ANY),
    ])
}

/// user::rwx, group:4321:r-x, group::r-x, mask::r-x, other::---
fn dir_acl() -> Vec<u8> {
    acl(&[
        (0x01, 7, ANY),
        (0x04, 5, ANY),
        (0x08, 5, 4321),
        (0x10, 5, ANY),
        (0x20, 0, ANY),
    ])
}

fn set_mtime(path: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

/// The volume reader's sample tree, and what host paths add: ACLs (a
/// default ACL on a directory whose entries have none), a file with data
/// between holes, a setgid directory of another owner, times on
/// directories and symlinks.
fn host_tree(root: &Path) {
    sample_tree(root);
    let holes = std::fs::File::create(root.join("holes")).unwrap();
    holes.set_len(4 << 20).unwrap();
    holes.write_all_at(&[7u8; 8192], 1 << 20).unwrap();
    holes.write_all_at(b"tail", (3 << 20) + 5).unwrap();
    drop(holes);
    let shared = root.join("shared");
    fs_err::create_dir(&shared).unwrap();
    fs_err::write(shared.join("doc"), b"shared\n").unwrap();
    chown(&shared, 1234, 4321);
    fs_err::set_permissions(&shared, std::fs::Permissions::from_mode(0o2750)).unwrap();
    set_xattr(&shared, "system.posix_acl_access", &dir_acl());
    set_xattr(&shared, "system.posix_acl_default", &dir_acl());
    set_xattr(&root.join("attrs"), "system.posix_acl_access", &file_acl());
    for (rel, secs) in [
        ("shared/doc", 1_600_000_000),
        ("shared", 1_600_000_100),
        ("db", 1_500_000_000),
        ("www/link", 1_400_000_000),
        ("empty", 1_300_000_000),
    ] {
        set_mtime(&root.join(rel), secs);
    }
}

fn host_tar(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_host_path(path, &mut out).unwrap();
    out
}

#[test]
fn a_host_tree_read_and_written_back_is_identical() {
    assert_root();
    let src = tempfile::tempdir().unwrap();
    host_tree(src.path());
    let tar = host_tar(src.path());
    let dst = tempfile::tempdir().unwrap();

    write(&tar[..], Target::Dir(dst.path())).unwrap();

    let mut expected = manifest_of(src.path(), true);
    // Sockets are not archived, as podman leaves them out.
    assert!(expected.remove("sock").is_some());
    let got = manifest_of(dst.path(), true);
    assert_eq!(got, expected);
    let has = |rel: &str, what: &str| assert!(got[rel].contains(what), "{rel}: {}", got[rel]);
    has("attrs", "xattr system.posix_acl_access=");
    has("shared", "xattr system.posix_acl_default=");
    has("shared", "mtime 1600000100");
    has("bin/tool", "xattr security.capability=");
    assert!(
        got["bin/tool"].starts_with("104755 "),
        "{}",
        got["bin/tool"]
    );
    assert!(got["db"].starts_with("40700 999 998 "), "{}", got["db"]);
    assert!(
        got["shared"].starts_with("42750 1234 4321 "),
        "{}",
        got["shared"]
    );
    has("www/index.html", "links-to www/again.html");
    assert!(
        got["shared/doc"].contains("mtime 1600000000"),
        "{}",
        got["shared/doc"]
    );
    // Holes came back: 12 KiB of data blocks, not 4 MiB.
    let holes = fs_err::metadata(dst.path().join("holes")).unwrap();
    assert_eq!(holes.len(), 4 << 20);
    assert!(
        holes.blocks() * 512 <= 64 << 10,
        "{} blocks",
        holes.blocks()
    );
}

#[test]
fn a_single_host_file_is_one_entry_written_to_its_path() {
    assert_root();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("app.env");
    fs_err::write(&file, b"DB=/srv/db\n").unwrap();
    chown(&file, 1234, 4321);
    fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    set_xattr(&file, "system.posix_acl_access", &file_acl());
    set_mtime(&file, 1_700_000_000);
    let tar = host_tar(&file);
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(names, ["app.env"]);

    let dst = tempfile::tempdir().unwrap();
    write(&tar[..], Target::File(&dst.path().join("app.env"))).unwrap();
    assert_eq!(manifest_of(dst.path(), true), manifest_of(src.path(), true));

    let again = write(&tar[..], Target::File(&dst.path().join("app.env"))).unwrap_err();
    assert!(again.message.contains("app.env"), "{}", again.message);
}

#[test]
fn a_file_restore_takes_exactly_one_regular_file() {
    let dst = tempfile::tempdir().unwrap();
    let two = raw_tar(&[(b'0', "a", "", b"1"), (b'0', "b", "", b"2")]);
    let err = write(&two[..], Target::File(&dst.path().join("f"))).unwrap_err();
    assert!(
        err.message.contains("more than one entry (\"b\")"),
        "{}",
        err.message
    );
    let dir = raw_tar(&[(b'5', "d/", "", b"")]);
    let err = write(&dir[..], Target::File(&dst.path().join("g"))).unwrap_err();
    assert!(
        err.message.contains("not one regular file"),
        "{}",
        err.message
    );
    assert!(!dst.path().join("g").exists());
}

/// A tar of raw entries (typeflag, name, link target, data): names are
/// put in the header as they are, which the `tar` crate's builder refuses
/// for `..`.
fn raw_tar(entries: &[(u8, &str, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(kind, name, link, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        header.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(data.len() as u64);
        header.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Write `entries` into `base/dest` and return the error, which must name
/// `entry`; nothing may appear in `base` but `dest` and `outside`.
fn refused(entries: &[(u8, &str, &str, &[u8])], entry: &str, why: &str) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let dest = base.path().join("dest");
    fs_err::create_dir(&dest).unwrap();
    fs_err::create_dir(base.path().join("outside")).unwrap();
    fs_err::write(base.path().join("x"), b"not yours").unwrap();
    let entries: Vec<_> = entries
        .iter()
        .map(|&(k, n, l, d)| {
            (
                k,
                n.replace("BASE", &base.path().display().to_string()),
                l.replace("BASE", &base.path().display().to_string()),
                d,
            )
        })
        .collect();
    let borrowed: Vec<_> = entries
        .iter()
        .map(|(k, n, l, d)| (*k, n.as_str(), l.as_str(), *d))
        .collect();
    let err = write(&raw_tar(&borrowed)[..], Target::Dir(&dest)).unwrap_err();
    let entry = entry.replace("BASE", &base.path().display().to_string());
    assert!(
        err.message.contains(&format!("entry {entry:?} {why}")),
        "{}",
        err.message
    );
    let mut names: Vec<_> = fs_err::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dest", "outside", "x"]);
    assert_eq!(
        fs_err::read_dir(base.path().join("outside"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs_err::read(base.path().join("x")).unwrap(), b"not yours");
    base
}

#[test]
fn names_leaving_dest_are_refused() {
    refused(
        &[(b'0', "../x", "", b"evil")],
        "../x",
        "has `.` or `..` in its name",
    );
    refused(
        &[(b'0', "a/../../y", "", b"evil")],
        "a/../../y",
        "has `.` or `..`",
    );
    refused(
        &[(b'0', "BASE/outside/f", "", b"evil")],
        "BASE/outside/f",
        "has an absolute name",
    );
}

#[test]
fn nothing_is_written_through_a_symlink_of_the_archive() {
    let base = refused(
        &[
            (b'2', "a", "BASE/outside", b""),
            (b'0', "a/file", "", b"evil"),
        ],
        "a/file",
        "is in \"a\", which is not a directory written earlier",
    );
    assert!(fs_err::symlink_metadata(base.path().join("dest/a"))
        .unwrap()
        .is_symlink());
}

#[test]
fn hard_links_only_to_files_written_earlier_inside_dest() {
    refused(
        &[(b'1', "l", "../x", b"")],
        "l",
        "links to \"../x\", which has `.` or `..`",
    );
    refused(&[(b'1', "l", "BASE/x", b"")], "l", "links to");
    refused(
        &[(b'1', "l", "later", b""), (b'0', "later", "", b"1")],
        "l",
        "links to \"later\", which is not a file written earlier",
    );
    refused(
        &[(b'5', "d/", "", b""), (b'1', "l", "d", b"")],
        "l",
        "links to \"d\", which is not a file written earlier",
    );
}

#[test]
fn entries_under_a_file_or_written_twice_are_refused() {
    refused(
        &[(b'0', "f", "", b"1"), (b'0', "f/g", "", b"2")],
        "f/g",
        "is in \"f\", which is not a directory",
    );
    refused(
        &[(b'0', "f", "", b"1"), (b'0', "f", "", b"2")],
        "f",
        "appears twice in the archive",
    );
    // A directory the archive never wrote, though it exists in DEST.
    let dest = tempfile::tempdir().unwrap();
    fs_err::create_dir(dest.path().join("pre")).unwrap();
    let err = write(
        &raw_tar(&[(b'0', "pre/f", "", b"1")])[..],
        Target::Dir(dest.path()),
    )
    .unwrap_err();
    assert!(
        err.message.contains("not a directory written earlier"),
        "{}",
        err.message
    );
}

#[test]
fn a_symlink_swapped_in_for_dest_is_not_followed() {
    let base = tempfile::tempdir().unwrap();
    fs_err::create_dir(base.path().join("outside")).unwrap();
    symlink(base.path().join("outside"), base.path().join("dest")).unwrap();
    let err = write(
        &raw_tar(&[(b'0', "f", "", b"1")])[..],
        Target::Dir(&base.path().join("dest")),
    )
    .unwrap_err();
    assert!(err.message.contains("dest"), "{}", err.message);
    assert_eq!(
        fs_err::read_dir(base.path().join("outside"))
            .unwrap()
            .count(),
        0
    );
}

/// What a host-path backup and restore run through the engine, on the
/// fake one: its reader and writer are the real ones, in-process.
#[test]
fn the_fake_engine_reads_and_writes_host_paths_for_real() {
    assert_root();
    use crate::podman::ContainerEngine;
    use std::io::Write as _;
    let podman = crate::testing::fake_podman::FakePodman::new();
    let exe = Path::new("/unused");
    let src = tempfile::tempdir().unwrap();
    host_tree(src.path());
    let mut tar = Vec::new();
    let mut reader = podman
        .host_path_tar(exe, &src.path().display().to_string())
        .unwrap();
    reader.output().unwrap().read_to_end(&mut tar).unwrap();
    reader.finish().unwrap();

    let dst = tempfile::tempdir().unwrap();
    let mut writer = podman
        .tree_write(exe, &dst.path().display().to_string(), false)
        .unwrap();
    writer.input().unwrap().write_all(&tar).unwrap();
    writer.finish().unwrap();

    let mut expected = manifest_of(src.path(), true);
    expected.remove("sock");
    assert_eq!(manifest_of(dst.path(), true), expected);
}

#[test]
fn pax_records_override_the_header_fields() {
    let mut header = tar::Header::new_ustar();
    header.set_path("f").unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(1);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("uid", b"3000000".as_slice()),
            ("gid", b"3000001".as_slice()),
            ("mtime", b"1700000000.75".as_slice()),
        ])
        .unwrap();
    builder.append(&header, &b"x"[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let meta = meta(&mut entry).unwrap();
    assert_eq!(
        (meta.uid, meta.gid, meta.mtime),
        (3_000_000, 3_000_001, 1_700_000_000)
    );
}
