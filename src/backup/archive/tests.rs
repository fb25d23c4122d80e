//! Round trips through [`write_archive`] and [`check_archive_digest`] /
//! [`open_archive`], and what reading refuses.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::write::{zstd_workers, AUTO_ZSTD_WORKERS, MAX_ZSTD_WORKERS};
use super::*;
use crate::error::Result;
use sha2::{Digest, Sha256};

/// [`check_archive_digest`] with only a checksum expected.
fn check_archive(path: &Path, c: Compression, sha256: Option<&str>) -> Result<u64> {
    let expected = Expected {
        sha256,
        limit: u64::MAX,
        specials: &[],
    };
    Ok(check_archive_digest(path, c, expected)?.uncompressed_size)
}

/// A tar with a directory, a compressible file, a random-ish file and a
/// symlink, built with the `tar` crate.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    b.append_data(&mut h, "dir/", io::empty()).unwrap();
    let text = "hello volume\n".repeat(50_000);
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(text.len() as u64);
    b.append_data(&mut h, "dir/text.txt", text.as_bytes())
        .unwrap();
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    b.append_data(&mut h, "noise.bin", &noise[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "zlink", "/etc/hostname").unwrap();
    b.into_inner().unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8], c: Compression) -> (PathBuf, ArchiveStats) {
    let dest = dir.join(name);
    let mut last = 0;
    let stats = write_archive(data, &dest, c, c.default_level(), 2, &mut |n| last = n).unwrap();
    assert_eq!(last, data.len() as u64);
    (dest, stats)
}

#[test]
fn round_trip_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar();
    for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
        let (dest, stats) = write(dir.path(), &format!("v.{}", c.extension()), &tar, c);
        assert_eq!(compression_of(&dest), Some(c));
        assert_eq!(stats.uncompressed_size, tar.len() as u64);
        let on_disk = std::fs::read(&dest).unwrap();
        assert_eq!(stats.size, on_disk.len() as u64);
        assert_eq!(stats.sha256, hex::encode(Sha256::digest(&on_disk)));
        let mode = std::fs::metadata(&dest).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        if c != Compression::None {
            assert!(stats.size < tar.len() as u64, "{c:?} compresses");
        }

        let mut reader = open_archive(&dest, c).unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert!(back == tar, "{c:?}: byte-identical round trip");
        let digest = reader.finish().unwrap();
        assert_eq!(digest.sha256, stats.sha256);
        assert_eq!(digest.size, stats.size);
        assert_eq!(digest.uncompressed_size, tar.len() as u64);

        let n = check_archive(&dest, c, Some(&stats.sha256)).unwrap();
        assert_eq!(n, tar.len() as u64);
    }
}

#[test]
fn empty_input_makes_a_valid_empty_archive() {
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::Zstd, Compression::Gzip] {
        let (dest, stats) = write(dir.path(), &format!("e.{}", c.extension()), b"", c);
        assert_eq!(stats.uncompressed_size, 0);
        let mut back = Vec::new();
        let mut r = open_archive(&dest, c).unwrap();
        r.read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }
}

#[test]
fn dest_is_created_exclusively() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("v.tar.zst");
    std::fs::write(&dest, b"x").unwrap();
    let err = write_archive(&b"abc"[..], &dest, Compression::Zstd, 3, 1, &mut |_| {}).unwrap_err();
    assert!(
        err.message.contains("cannot create archive"),
        "{}",
        err.message
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"x",
        "existing file untouched"
    );
    let link = dir.path().join("l.tar");
    std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
    assert!(write_archive(&b"abc"[..], &link, Compression::None, 0, 1, &mut |_| {}).is_err());
    assert!(!dir.path().join("target").exists(), "symlink not followed");
}

#[test]
fn failing_input_removes_the_partial_file() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("export died"));
            }
            self.0 -= 1;
            buf.fill(7);
            Ok(buf.len())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("v.tar.zst");
    let err = write_archive(Broken(3), &dest, Compression::Zstd, 3, 2, &mut |_| {}).unwrap_err();
    assert!(err.message.contains("export died"), "{}", err.message);
    assert!(!dest.exists());
}

#[test]
fn flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar();
    for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
        let (dest, stats) = write(dir.path(), &format!("f.{}", c.extension()), &tar, c);
        let mut bytes = std::fs::read(&dest).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        std::fs::write(&dest, &bytes).unwrap();
        let err = check_archive(&dest, c, Some(&stats.sha256)).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::User);
        assert!(
            err.message.contains("f."),
            "names the file: {}",
            err.message
        );
        assert!(
            err.message.contains("checksum mismatch"),
            "{c:?}: {}",
            err.message
        );
        // Without a checksum, the compression frame catches it (zstd's
        // and gzip's own checks); a plain tar has none.
        if c != Compression::None {
            assert!(check_archive(&dest, c, None).is_err(), "{c:?} frame check");
        }
    }
}

#[test]
fn truncated_archive_is_detected_without_a_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar();
    for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
        let (dest, stats) = write(dir.path(), &format!("t.{}", c.extension()), &tar, c);
        let bytes = std::fs::read(&dest).unwrap();
        std::fs::write(&dest, &bytes[..bytes.len() * 2 / 3]).unwrap();
        assert!(check_archive(&dest, c, Some(&stats.sha256)).is_err());
        let err = check_archive(&dest, c, None).unwrap_err();
        assert!(err.message.contains("damaged"), "{c:?}: {}", err.message);
    }
}

#[test]
fn trailing_garbage_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::Zstd, Compression::Gzip] {
        let (dest, _) = write(
            dir.path(),
            &format!("g.{}", c.extension()),
            &sample_tar(),
            c,
        );
        let mut bytes = std::fs::read(&dest).unwrap();
        bytes.extend_from_slice(b"garbage after the frame");
        std::fs::write(&dest, &bytes).unwrap();
        assert!(check_archive(&dest, c, None).is_err(), "{c:?}");
    }
}

/// Raw tar bytes with one entry named `name` (bypassing the tar crate's
/// own refusal to write `..`).
fn tar_with_name(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn unsafe_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("../escape", tar::EntryType::Regular, None, "contains '..'"),
        (
            "a/../../escape",
            tar::EntryType::Regular,
            None,
            "contains '..'",
        ),
        ("/etc/passwd", tar::EntryType::Regular, None, "is absolute"),
        (
            "hard",
            tar::EntryType::Link,
            Some("../x"),
            "the target leaves the volume",
        ),
    ];
    for (i, (name, kind, link, why)) in cases.into_iter().enumerate() {
        let tar = tar_with_name(name, kind, link);
        let (dest, stats) = write(
            dir.path(),
            &format!("u{i}.tar.zst"),
            &tar,
            Compression::Zstd,
        );
        let err = check_archive(&dest, Compression::Zstd, Some(&stats.sha256)).unwrap_err();
        assert!(err.message.contains(why), "{name}: {}", err.message);
        assert!(
            err.message.contains(&format!("u{i}.tar.zst")),
            "{}",
            err.message
        );
    }
    // A symlink may point anywhere: that is data, not an escape.
    let tar = tar_with_name("ok", tar::EntryType::Symlink, Some("/etc/x"));
    let (dest, stats) = write(dir.path(), "sym.tar", &tar, Compression::None);
    check_archive(&dest, Compression::None, Some(&stats.sha256)).unwrap();
}

#[test]
fn not_a_tar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = vec![0x41u8; 5000];
    let (dest, _) = write(dir.path(), "j.tar.gz", &junk, Compression::Gzip);
    let err = check_archive(&dest, Compression::Gzip, None).unwrap_err();
    assert!(err.message.contains("tar"), "{}", err.message);
}

#[test]
fn compression_from_name() {
    assert_eq!(
        compression_of(Path::new("volumes/a.tar.zst")),
        Some(Compression::Zstd)
    );
    assert_eq!(
        compression_of(Path::new("a.tar.gz")),
        Some(Compression::Gzip)
    );
    assert_eq!(
        compression_of(Path::new("volumes/a.tar")),
        Some(Compression::None)
    );
    assert_eq!(compression_of(Path::new("a.zip")), None);
    assert_eq!(compression_of(Path::new(".tar")), None);
}

#[test]
fn workers_are_bounded() {
    assert!(zstd_workers(0) >= 1);
    assert_eq!(zstd_workers(3), 3);
    assert!(zstd_workers(0) <= AUTO_ZSTD_WORKERS);
    assert_eq!(zstd_workers(8), 8);
    assert_eq!(zstd_workers(64), MAX_ZSTD_WORKERS);
}

#[test]
fn a_zstd_window_over_128_mib_is_refused_before_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let tar = sample_tar();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.window_log(31).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.write_all(&tar).unwrap();
    let bytes = enc.finish().unwrap();
    let dest = dir.path().join("wide.tar.zst");
    std::fs::write(&dest, &bytes).unwrap();
    let err = check_archive(&dest, Compression::Zstd, None).unwrap_err();
    assert!(
        err.message.contains("window larger than 2^24"),
        "{}",
        err.message
    );
    assert!(err.message.contains("wide.tar.zst"), "{}", err.message);
}

#[test]
fn decompression_stops_at_the_recorded_size() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of zeros in a tar: a small archive that expands a lot.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(64 << 20))
        .unwrap();
    let tar = b.into_inner().unwrap();
    let (dest, stats) = write(dir.path(), "bomb.tar.zst", &tar, Compression::Zstd);
    assert!(stats.size < 1 << 20, "{} bytes", stats.size);
    let expected = Expected {
        sha256: Some(&stats.sha256),
        limit: 4 << 20,
        specials: &[],
    };
    let err = check_archive_digest(&dest, Compression::Zstd, expected).unwrap_err();
    assert!(
        err.message.contains("more than the 4194304 bytes"),
        "{}",
        err.message
    );
    // Without a recorded size, gzip's maximum ratio bounds it.
    assert_eq!(decompressed_limit(0, 1000), 1000 * 1032 + (1 << 20));
    assert_eq!(decompressed_limit(5, 1000), 5);
}
