//! The hidden pair a host-path backup and restore use, through the real
//! binary: `volume-tar --host SRC | tree-write DEST` copies a tree (and
//! with `--file`, one file) exactly; `tree-write` refuses a hostile tar
//! without writing outside DEST; neither command shows in the help. These
//! tests chown and mknod: they run as root.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::tar_craft::{data, finish_tar, header};
use crate::support::{stderr, stdout, TestEnv};

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chowns and makes device nodes: run it as root"
    );
}

/// `leger-backup volume-tar --host SRC | leger-backup tree-write [--file] DEST`.
fn pipe(env: &TestEnv, src: &Path, dest: &Path, file: bool) -> Output {
    let exe = assert_cmd::cargo::cargo_bin("leger-backup");
    let script = if file {
        r#""$1" volume-tar --host -- "$2" | "$1" tree-write --file -- "$3""#
    } else {
        r#""$1" volume-tar --host -- "$2" | "$1" tree-write -- "$3""#
    };
    let mut cmd = env.command_for(Path::new("bash"));
    cmd.args(["-c", &format!("set -o pipefail; {script}"), "sh"])
        .arg(exe)
        .arg(src)
        .arg(dest);
    cmd.output().unwrap()
}

/// Every entry under `root` (itself left out): type and mode, numeric
/// owner, size and sha256 or link target or device, mtime, allocated
/// blocks, and the first name of a file with several.
fn manifest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut firsts = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mut line = format!("{:o} {}:{} mtime {}", m.mode(), m.uid(), m.gid(), m.mtime());
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(p.clone());
            } else if ft.is_symlink() {
                line += &format!(" -> {}", std::fs::read_link(&p).unwrap().display());
            } else if ft.is_file() {
                let sum = Command::new("sha256sum").arg(&p).output().unwrap();
                let sum = String::from_utf8_lossy(&sum.stdout);
                line += &format!(" {} {} blocks {}", m.len(), &sum[..64], m.blocks());
            } else {
                line += &format!(" rdev {}", m.rdev());
            }
            if !ft.is_dir() && m.nlink() > 1 {
                let first = firsts.entry(m.ino()).or_insert_with(|| rel.clone());
                line += &format!(" links-to {first}");
            }
            out.insert(rel, line);
        }
    }
    out
}

fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// A host directory as containers leave one: owners of the container,
/// a private directory, setuid, links of both kinds, a FIFO, a device, an
/// empty directory, a sparse file.
fn host_dir(root: &Path) {
    let db = root.join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("PG_VERSION"), b"16\n").unwrap();
    std::os::unix::fs::lchown(db.join("PG_VERSION"), Some(999), Some(999)).unwrap();
    std::os::unix::fs::lchown(&db, Some(999), Some(998)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tool = root.join("tool");
    std::fs::write(&tool, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(&tool, root.join("tool-again")).unwrap();
    symlink("db/PG_VERSION", root.join("version")).unwrap();
    std::os::unix::fs::lchown(root.join("version"), Some(1234), Some(4321)).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::libc::makedev(1, 3),
    )
    .unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", 4 << 20).unwrap();
    for (rel, secs) in [
        ("db", 1_500_000_000),
        ("version", 1_400_000_000),
        ("empty", 1_300_000_000),
    ] {
        set_mtime(&root.join(rel), secs);
    }
}

#[test]
fn volume_tar_host_piped_into_tree_write_copies_a_directory_exactly() {
    assert_root();
    let env = TestEnv::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    host_dir(&src);
    let dest = env.path("dest");
    std::fs::create_dir(&dest).unwrap();

    let out = pipe(&env, &src, &dest, false);
    assert!(out.status.success(), "{}", stderr(&out));

    let got = manifest(&dest);
    assert_eq!(got, manifest(&src));
    assert!(
        got["db"].starts_with("40700 999:998 mtime 1500000000"),
        "{}",
        got["db"]
    );
    assert!(got["tool"].starts_with("104755 "), "{}", got["tool"]);
    assert!(
        got["tool-again"].contains("links-to tool"),
        "{}",
        got["tool-again"]
    );
    assert!(got["sparse"].ends_with("blocks 8"), "{}", got["sparse"]);
}

#[test]
fn volume_tar_host_piped_into_tree_write_file_copies_one_file() {
    assert_root();
    let env = TestEnv::new();
    let src = env.write("etc/app/app.env", "DB=/srv/db\n");
    std::os::unix::fs::lchown(&src, Some(1234), Some(4321)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(env.path("restored")).unwrap();

    let out = pipe(&env, &src, &env.path("restored/app.env"), true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        manifest(&env.path("restored")),
        manifest(&env.path("etc/app"))
    );

    // The file exists now: a second write refuses to replace it.
    let out = pipe(&env, &src, &env.path("restored/app.env"), true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("restored/app.env"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tree_write_refuses_a_name_leaving_dest_and_writes_nothing_outside() {
    let env = TestEnv::new();
    let dest = env.path("dest");
    std::fs::create_dir(&dest).unwrap();
    let mut tar = header("../escaped", b'0', 5, "");
    tar.extend(data(b"evil\n"));
    let mut child = env
        .command_for(&assert_cmd::cargo::cargo_bin("leger-backup"))
        .arg("tree-write")
        .arg(&dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &finish_tar(tar)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"entry "../escaped""#),
        "{}",
        stderr(&out)
    );
    assert!(!env.path("escaped").exists());
}

#[test]
fn the_internal_pair_stays_out_of_the_help() {
    let env = TestEnv::new();
    for command in ["tree-write", "volume-tar"] {
        let out = env.run(&[command, "--help"]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }
    let out = env.run(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("tree-write"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("volume-tar"), "{}", stdout(&out));
}
