//! The direct reader on trees made on the host (these tests run as root:
//! they chown, mknod and set `trusted.*` attributes): its tar passes the
//! guard `create` applies, and GNU tar extracting it reproduces the tree.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nix::sys::stat::{mknod, Mode, SFlag};
use sha2::{Digest, Sha256};

use super::*;
use crate::backup::tar_guard::{Specials, TarGuard};

/// A name of 120 bytes over two components: USTAR splits it.
fn splittable() -> String {
    format!("{}/{}", "p".repeat(59), "q".repeat(60))
}

/// A last component of 150 bytes: only PAX can name it.
fn unsplittable() -> String {
    format!("deep/{}", "n".repeat(150))
}

pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the length given.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// A volume as containers leave them: several owners, every entry type
/// podman exports, names long enough for a USTAR prefix and for PAX,
/// modes with setuid and sticky bits, extended attributes.
pub(crate) fn sample_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, data).unwrap();
        p
    };
    let db = w(
        "db/data.bin",
        &(0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    chown(&db, 999, 999);
    chown(&root.join("db"), 999, 998);
    fs_err::set_permissions(root.join("db"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let www = w("www/index.html", b"<h1>hi</h1>\n");
    chown(&www, 33, 33);
    fs_err::hard_link(&www, root.join("www/again.html")).unwrap();
    symlink("index.html", root.join("www/link")).unwrap();
    symlink("/etc", root.join("outside")).unwrap();
    chown(&root.join("www/link"), 33, 34);
    let suid = w("bin/tool", b"#!/bin/sh\n");
    fs_err::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    fs_err::create_dir_all(root.join("tmp")).unwrap();
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    fs_err::create_dir_all(root.join("empty")).unwrap();
    w(&splittable(), b"split\n");
    w(&unsplittable(), b"pax\n");
    symlink("t".repeat(120), root.join("longlink")).unwrap();
    w("caf\u{e9}.txt", b"utf-8 name\n");
    let attrs = w("attrs", b"x");
    set_xattr(&attrs, "user.note", b"kept\0binary");
    set_xattr(&attrs, "trusted.secret", b"not exported by podman");
    set_xattr(&attrs, "user.overlay.origin", b"overlayfs' own");
    // VFS_CAP_REVISION_2, effective; CAP_NET_BIND_SERVICE permitted.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    set_xattr(&suid, "security.capability", &cap);
    set_xattr(&root.join("empty"), "user.dir", b"on a directory");
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    mknod(
        &root.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        libc::makedev(1, 3),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let sparse = fs_err::File::create(root.join("sparse")).unwrap();
    sparse.set_len(3 << 20).unwrap();
    for rel in ["www/index.html", "db/data.bin", "bin/tool", "fifo"] {
        let times = [nix::sys::time::TimeSpec::new(1_700_000_000, 0); 2];
        nix::sys::stat::utimensat(
            None,
            &root.join(rel),
            &times[0],
            &times[1],
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

fn tar_of(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_tree(root, &mut out).unwrap();
    out
}

/// Every entry under `root`: path -> type, mode, owner, size, sha256, link
/// target, the extended attributes podman exports, mtime (not of
/// directories, which extraction changes), and for a file with several
/// names, the first of them.
fn manifest(root: &Path) -> BTreeMap<String, String> {
    manifest_of(root, false)
}

/// [`manifest`], with `exact` (what the tree writer restores) also the
/// mtimes of directories and symlinks, the ACLs, and the allocated blocks
/// of sparse files (so holes count; only theirs: a file's blocks also
/// count attributes that are not recorded).
pub(crate) fn manifest_of(root: &Path, exact: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_names: BTreeMap<u64, String> = BTreeMap::new();
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    paths.sort();
    for rel in paths {
        let p = root.join(&rel);
        let m = fs_err::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let mut line = format!("{:o} {} {} ", m.mode(), m.uid(), m.gid());
        if ft.is_file() {
            let data = fs_err::read(&p).unwrap();
            line += &format!("{} {}", m.size(), hex::encode(Sha256::digest(&data)));
        } else if ft.is_symlink() {
            line += &format!("-> {}", fs_err::read_link(&p).unwrap().display());
        } else if !ft.is_dir() {
            line += &format!("rdev {}", m.rdev());
        }
        if exact || (!ft.is_dir() && !ft.is_symlink()) {
            line += &format!(" mtime {}", m.mtime());
        }
        if exact && ft.is_file() && m.blocks() * 512 < m.size() {
            line += &format!(" blocks {}", m.blocks());
        }
        if !ft.is_dir() && !ft.is_symlink() && m.nlink() > 1 {
            let first = first_names.entry(m.ino()).or_insert_with(|| rel.clone());
            line += &format!(" links-to {first}");
        }
        let dir = fs_err::File::open(p.parent().unwrap()).unwrap();
        let fd: OwnedFd = dir.into();
        for (k, v) in wanted_xattrs(&fd, p.file_name().unwrap(), exact).unwrap() {
            line += &format!(" xattr {}={}", String::from_utf8_lossy(&k), hex::encode(v));
        }
        out.insert(rel, line);
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let p = entry.path();
        out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            collect(root, &p, out);
        }
    }
}

#[test]
fn the_tar_passes_the_guard_and_extracts_to_the_same_tree() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let tar = tar_of(src.path());

    let mut guard = TarGuard::new(Specials::Record);
    guard
        .feed(&tar)
        .expect("the guard accepts the direct reader's tar");
    assert_eq!(
        guard.finish().unwrap(),
        vec!["fifo".to_owned(), "null".to_owned()]
    );

    let dst = tempfile::tempdir().unwrap();
    let archive = dst.path().join("v.tar");
    fs_err::write(&archive, &tar).unwrap();
    let out_dir = dst.path().join("out");
    fs_err::create_dir(&out_dir).unwrap();
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-p",
            "-xf",
        ])
        .arg(&archive)
        .arg("-C")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());

    let mut expected = manifest(src.path());
    // Sockets are not archived (podman leaves them out too); the sparse
    // file comes back as plain data, the same bytes.
    assert!(expected.remove("sock").is_some());
    let got = manifest(&out_dir);
    assert_eq!(got, expected);
    assert!(
        got["attrs"].contains("xattr user.note="),
        "{}",
        got["attrs"]
    );
    assert!(
        got["bin/tool"].contains("xattr security.capability="),
        "{}",
        got["bin/tool"]
    );
    assert!(
        got["bin/tool"].starts_with("104755 "),
        "{}",
        got["bin/tool"]
    );
}

/// (typeflag, name, mode field, uname, linkname) of every entry, as the
/// `tar` crate reads them (PAX names applied).
fn headers(tar: &[u8]) -> Vec<(u8, String, String, String, String)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let mode = String::from_utf8_lossy(&h.as_bytes()[100..108]).into_owned();
        out.push((
            h.entry_type().as_byte(),
            String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            mode,
            String::from_utf8_lossy(h.username_bytes().unwrap_or_default()).into_owned(),
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default(),
        ));
    }
    out
}

#[test]
fn entries_are_written_as_podman_writes_them() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let tar = tar_of(src.path());
    let all = headers(&tar);
    let by_name: BTreeMap<&str, &(u8, String, String, String, String)> =
        all.iter().map(|h| (h.1.as_str(), h)).collect();
    // No entry for the root; directories end in '/', mode with type bits.
    assert!(!by_name.contains_key("./") && !by_name.contains_key(""));
    assert_eq!(by_name["db/"].0, b'5');
    assert_eq!(by_name["db/"].2, "0040700\0");
    assert_eq!(by_name["tmp/"].2, "0041777\0");
    assert_eq!(by_name["www/link"].2, "0120777\0");
    // Numeric owners only.
    assert!(all.iter().all(|h| h.3.is_empty()), "{all:?}");
    // The second name of a file (in walk order) is a hard link to the first.
    assert_eq!(by_name["www/again.html"].0, b'0');
    assert_eq!(by_name["www/index.html"].0, b'1');
    assert_eq!(by_name["www/index.html"].4, "www/again.html");
    assert_eq!(by_name["www/link"].0, b'2');
    assert_eq!(by_name["outside"].4, "/etc");
    assert_eq!(
        by_name[format!("{}/", unsplittable().split('/').next().unwrap()).as_str()].0,
        b'5'
    );
    assert!(by_name.contains_key(unsplittable().as_str()));
    assert_eq!(by_name["longlink"].4, "t".repeat(120));
    // Walk order: a directory, then its entries, names sorted bytewise.
    let names: Vec<&str> = all.iter().map(|h| h.1.as_str()).collect();
    let www = names.iter().position(|n| *n == "www/").unwrap();
    assert_eq!(
        &names[www..www + 4],
        ["www/", "www/again.html", "www/index.html", "www/link"]
    );
    assert!(!names.contains(&"sock"));
    // Nothing outside the volume: the symlink to /etc is not followed.
    assert!(!names.iter().any(|n| n.starts_with("outside/")));

    // The splittable name is a USTAR header with a prefix, no PAX; the
    // other needs a PAX record (Go's choices).
    let raw = raw_headers(&tar);
    let split = raw
        .iter()
        .find(|b| b[345..].starts_with(b"ppp"))
        .expect("a prefixed header");
    assert_eq!(&split[..60], "q".repeat(60).as_bytes());
    assert!(raw
        .iter()
        .any(|b| b[156] == b'x' && b[..].starts_with(b"deep/PaxHeaders.0/nnn")));
    // Extended attributes: those podman exports, no others.
    let has = |needle: &[u8]| tar.windows(needle.len()).any(|w| w == needle);
    assert!(has(b" SCHILY.xattr.user.note=kept\0binary\n"));
    assert!(has(b" SCHILY.xattr.security.capability="));
    assert!(has(b" SCHILY.xattr.user.dir=on a directory\n"));
    assert!(!has(b"trusted.secret") && !has(b"user.overlay"));
    // The end: two zero blocks, nothing after.
    assert!(tar.len() % BLOCK == 0 && tar[tar.len() - 2 * BLOCK..].iter().all(|&b| b == 0));
}

/// Every header block of the stream (PAX headers included), in order.
fn raw_headers(tar: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= tar.len() && tar[at..at + BLOCK].iter().any(|&b| b != 0) {
        let block = &tar[at..at + BLOCK];
        let size = u64::from_str_radix(
            std::str::from_utf8(&block[124..135])
                .unwrap()
                .trim_matches('\0'),
            8,
        )
        .unwrap();
        let data = if matches!(block[156], b'0' | b'x') {
            size
        } else {
            0
        };
        out.push(block);
        at += BLOCK + (data + header::padding(data)) as usize;
    }
    out
}

#[test]
fn an_empty_volume_is_the_end_marker_alone() {
    let src = tempfile::tempdir().unwrap();
    assert_eq!(tar_of(src.path()), vec![0u8; 2 * BLOCK]);
}

#[test]
fn the_reader_variable_takes_podman_or_direct() {
    use std::ffi::OsStr;
    assert_eq!(ReaderChoice::parse(None).unwrap(), ReaderChoice::Auto);
    assert_eq!(
        ReaderChoice::parse(Some(OsStr::new(""))).unwrap(),
        ReaderChoice::Auto
    );
    assert_eq!(
        ReaderChoice::parse(Some(OsStr::new("podman"))).unwrap(),
        ReaderChoice::Podman
    );
    assert_eq!(
        ReaderChoice::parse(Some(OsStr::new("direct"))).unwrap(),
        ReaderChoice::Direct
    );
    let err = ReaderChoice::parse(Some(OsStr::new("fast"))).unwrap_err();
    assert!(
        err.message.contains("LEGER_BACKUP_VOLUME_READER=fast"),
        "{}",
        err.message
    );
    assert!(err.hint.is_some());
}

#[test]
fn only_local_volumes_without_a_mount_of_their_own_are_read_directly() {
    let info = |driver: &str, options: &[(&str, &str)]| VolumeInfo {
        name: "v".into(),
        driver: driver.into(),
        mountpoint: "/var/lib/containers/storage/volumes/v/_data".into(),
        labels: Default::default(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert!(direct_readable(&info("local", &[])));
    assert!(direct_readable(&info("", &[])));
    assert!(!direct_readable(&info("nfs", &[])));
    assert!(!direct_readable(&info("local", &[("device", "/dev/sdb1")])));
    assert!(!direct_readable(&info("local", &[("type", "tmpfs")])));
    assert!(!direct_readable(&info("local", &[("o", "size=10m")])));
}

/// The extended attribute names recorded for each entry of `tar`.
fn recorded_xattrs(tar: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(tar).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut keys = Vec::new();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for record in pax {
                let key = record.unwrap().key().unwrap().to_owned();
                keys.extend(key.strip_prefix("SCHILY.xattr.").map(str::to_owned));
            }
        }
        out.insert(name, keys);
    }
    out
}

/// An ACL granting uid 1234 read access, as the kernel stores it.
fn read_acl() -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1234),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}

#[test]
fn host_paths_record_acls_and_volumes_stay_as_podman_writes_them() {
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("d/f");
    fs_err::create_dir(src.path().join("d")).unwrap();
    fs_err::write(&f, b"x").unwrap();
    set_xattr(&f, "system.posix_acl_access", &read_acl());
    set_xattr(
        &src.path().join("d"),
        "system.posix_acl_default",
        &read_acl(),
    );
    set_xattr(&f, "user.note", b"n");

    let mut host = Vec::new();
    write_host_path(src.path(), &mut host).unwrap();
    let host = recorded_xattrs(&host);
    assert_eq!(host["d/"], ["system.posix_acl_default"]);
    assert_eq!(host["d/f"], ["system.posix_acl_access", "user.note"]);

    let volume = recorded_xattrs(&tar_of(src.path()));
    assert_eq!(volume["d/"], Vec::<String>::new());
    assert_eq!(volume["d/f"], ["user.note"]);
}

#[test]
fn a_host_file_is_one_entry_named_by_its_base_name() {
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("app.env");
    fs_err::write(&f, b"A=1\n").unwrap();
    chown(&f, 1234, 4321);
    let mut tar = Vec::new();
    write_host_path(&f, &mut tar).unwrap();
    let mut guard = TarGuard::new(Specials::Record);
    guard.feed(&tar).expect("the guard accepts it");
    assert_eq!(guard.entries(), 1);
    let entries = headers(&tar);
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].0, entries[0].1.as_str()), (b'0', "app.env"));
    // The volume reader takes directories only, as before.
    assert!(write_tree(&f, &mut Vec::new()).is_err());
}

#[test]
fn a_host_path_that_is_a_symlink_is_refused() {
    let src = tempfile::tempdir().unwrap();
    fs_err::write(src.path().join("target"), b"x").unwrap();
    symlink("target", src.path().join("link")).unwrap();
    let err = write_host_path(&src.path().join("link"), &mut Vec::new()).unwrap_err();
    assert!(
        err.message.contains("not a directory or a regular file"),
        "{}",
        err.message
    );
    assert!(err.message.contains("link"), "{}", err.message);
}
