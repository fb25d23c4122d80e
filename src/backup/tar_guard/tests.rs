use super::header::parse_number;
use super::*;

/// A header block as a tar writer would make it (USTAR magic), checksummed.
fn header(name: &str, typeflag: u8, size: u64, link: &str) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// A file entry with its data, padded.
fn file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = header(name, b'0', data.len() as u64, "");
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64) as usize, 0);
    out
}

/// A PAX extended header carrying `records` (key, value).
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        payload.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    let mut out = header("PaxHeaders/x", b'x', payload.len() as u64, "");
    out.extend_from_slice(&payload);
    out.resize(out.len() + padding(payload.len() as u64) as usize, 0);
    out
}

fn end() -> Vec<u8> {
    vec![0u8; 2 * BLOCK]
}

fn tar(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend(end());
    out
}

fn check(bytes: &[u8]) -> Result<Vec<String>, Refusal> {
    check_with(bytes, Specials::Allow(&[]))
}

fn check_with(bytes: &[u8], specials: Specials<'_>) -> Result<Vec<String>, Refusal> {
    let mut guard = TarGuard::new(specials);
    guard.feed(bytes)?;
    guard.finish()
}

fn refused(bytes: &[u8], expected: &str) {
    let err = check(bytes).expect_err("the guard accepted a hostile tar");
    assert!(err.contains(expected), "{err:?} does not say {expected:?}");
}

/// What `podman volume export` writes, made by a real tar writer: sorted,
/// directories first, long names, a symlink, a hard link, a big file.
fn podman_like() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    let long = format!("a/{}", "n".repeat(150));
    add("a", tar::EntryType::Directory, b"", None);
    add("a/b", tar::EntryType::Directory, b"", None);
    add("a/b/c.txt", tar::EntryType::Regular, b"deep", None);
    add(&long, tar::EntryType::Regular, &[7u8; 70_000], None);
    add("a/z-link", tar::EntryType::Link, b"", Some("a/b/c.txt"));
    add("a-c", tar::EntryType::Symlink, b"", Some("/does/not/exist"));
    add("b", tar::EntryType::Regular, b"", None);
    b.into_inner().unwrap()
}

#[test]
fn a_podman_like_tar_passes_in_any_chunking() {
    let bytes = podman_like();
    assert_eq!(check(&bytes), Ok(vec![]));
    for chunk in [1, 7, 511, 512, 513, 4096] {
        let mut guard = TarGuard::new(Specials::Allow(&[]));
        for piece in bytes.chunks(chunk) {
            guard.feed(piece).unwrap();
        }
        assert_eq!(guard.entries(), 7, "chunk {chunk}");
        assert_eq!(guard.finish(), Ok(vec![]), "chunk {chunk}");
    }
}

#[test]
fn writing_through_a_symlink_is_refused() {
    refused(
        &tar(&[
            header("a", b'2', 0, "/home/tester/x"),
            file("a/file", b"pwned"),
        ]),
        "passes through \"a\"",
    );
    // Also when the symlink replaces a directory seen earlier.
    refused(
        &tar(&[
            header("a/", b'5', 0, ""),
            header("a", b'2', 0, "/"),
            file("a/f", b""),
        ]),
        "not in the order",
    );
}

#[test]
fn hard_links_stay_inside_and_never_cross_a_symlink() {
    refused(
        &tar(&[
            header("l", b'2', 0, "/"),
            header("z", b'1', 0, "l/etc/passwd"),
        ]),
        "passes through a symlink",
    );
    refused(
        &tar(&[header("z", b'1', 0, "../outside")]),
        "leaves the volume",
    );
    refused(
        &tar(&[header("z", b'1', 0, "/etc/passwd")]),
        "leaves the volume",
    );
    refused(
        &tar(&[header("a", b'1', 0, "b"), file("b", b"x")]),
        "not an earlier entry",
    );
}

#[test]
fn renaming_pax_records_are_refused_and_pax_paths_checked() {
    let mut sparse = pax(&[("GNU.sparse.name", "../../x")]);
    sparse.extend(file("innocent", b"x"));
    refused(&tar(&[sparse]), "GNU.sparse.name");
    let mut climbing = pax(&[("path", "../escape")]);
    climbing.extend(file("innocent", b"x"));
    refused(&tar(&[climbing]), "contains '..'");
    // An allowed PAX path is what the entry is checked as.
    let mut renamed = pax(&[("path", "s/inner"), ("mtime", "1.5")]);
    renamed.extend(file("innocent", b"x"));
    refused(
        &tar(&[header("s", b'2', 0, "/"), renamed]),
        "passes through \"s\"",
    );
}

#[test]
fn a_pax_size_is_honoured_like_go_does() {
    // The header says 0 bytes; PAX says 512: the next block is data, not a header.
    let mut entry = pax(&[("size", "512")]);
    entry.extend(header("f", b'0', 0, ""));
    entry.extend(header("f2/evil", b'0', 0, "")); // data, never read as a header
    assert_eq!(check(&tar(&[entry])), Ok(vec![]));
}

#[test]
fn header_only_types_carry_no_data_like_go() {
    // A symlink header claiming 512 bytes of data: Go reads the next block as
    // a header, and so must the guard.
    refused(
        &tar(&[header("s", b'2', 512, "/"), file("s/evil", b"x")]),
        "passes through \"s\"",
    );
}

#[test]
fn devices_and_fifos_only_when_recorded() {
    let bytes = tar(&[header("dev", b'3', 0, ""), header("fifo", b'6', 0, "")]);
    refused(&bytes, "did not record");
    assert_eq!(
        check_with(&bytes, Specials::Record),
        Ok(vec!["dev".to_owned(), "fifo".to_owned()])
    );
    let recorded = ["dev".to_owned(), "fifo".to_owned()];
    assert_eq!(check_with(&bytes, Specials::Allow(&recorded)), Ok(vec![]));
    refused(&tar(&[header("x", b'4', 0, "")]), "did not record");
}

#[test]
fn vendor_types_are_refused() {
    for (flag, what) in [
        (b'g', "global"),
        (b'S', "sparse"),
        (b'V', "volume label"),
        (b'7', "contiguous"),
    ] {
        refused(&tar(&[header("x", flag, 0, "")]), what);
    }
}

#[test]
fn order_duplicates_and_the_root() {
    refused(&tar(&[file("b", b""), file("a", b"")]), "not in the order");
    refused(&tar(&[file("a", b""), file("a", b"")]), "not in the order");
    refused(
        &tar(&[file("a", b""), file("./a", b"")]),
        "not in the order",
    );
    assert!(check(&tar(&[header("./", b'5', 0, ""), file("a", b"")])).is_ok());
    refused(
        &tar(&[file("a", b""), header("./", b'5', 0, "")]),
        "volume root",
    );
    refused(&tar(&[file("/etc/passwd", b"")]), "is absolute");
}

#[test]
fn the_stream_must_end_properly() {
    let whole = tar(&[file("a", b"hello")]);
    let no_marker = &whole[..whole.len() - 2 * BLOCK];
    assert!(check(no_marker).unwrap_err().contains("end-of-archive"));
    assert!(check(&whole[..700]).unwrap_err().contains("truncated"));
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"garbage");
    refused(&trailing, "after the end-of-archive");
    let mut zeros = whole;
    zeros.extend_from_slice(&[0u8; 8192]);
    assert!(check(&zeros).is_ok(), "record padding is fine");
}

#[test]
fn damaged_headers_are_refused() {
    let mut bytes = tar(&[file("a", b"x")]);
    bytes[0] = b'b'; // checksum no longer matches
    refused(&bytes, "checksum");
    let mut big = pax(&[("comment", &"x".repeat(2 << 20))]);
    big.extend(file("a", b""));
    refused(&tar(&[big]), "more than");
}

#[test]
fn numbers_parse_like_go() {
    assert_eq!(parse_number(b"0000644\0"), Some(0o644));
    assert_eq!(parse_number(b"  17 \0"), Some(0o17));
    assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
    assert_eq!(parse_number(&[0xff, 0xff]), None, "negative base-256");
    assert_eq!(parse_number(b"9"), None);
}

/// Review findings: each of these was accepted by an earlier guard and is
/// read by Go so that an entry lands outside the volume (or elsewhere).
#[test]
fn a_gnu_header_whose_times_do_not_parse_is_refused() {
    // Go would read bytes 345.. as a prefix: the entry "b" becomes "a/b".
    let mut g = header("b", b'0', 0, "");
    g[257..263].copy_from_slice(b"ustar ");
    g[263..265].copy_from_slice(b" \0");
    g[345..347].copy_from_slice(b"a\0");
    g[148..156].copy_from_slice(b"        ");
    let sum: u32 = g.iter().map(|&x| u32::from(x)).sum();
    g[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    refused(
        &tar(&[header("a", b'2', 0, "/home/victim"), g]),
        "time fields do not parse",
    );
}

#[test]
fn a_hard_link_to_a_symlink_is_refused() {
    refused(
        &tar(&[
            header("s", b'2', 0, "/home/victim"),
            header("t", b'1', 0, "s"),
            header("u", b'1', 0, "t/.ssh/id_ed25519"),
        ]),
        "the target is a symlink",
    );
}

#[test]
fn empty_pax_paths_and_long_names_keep_the_header_name_like_go() {
    let mut p = pax(&[("path", "")]);
    p.extend(header("../../tmp/x", b'5', 0, ""));
    refused(&tar(&[p]), "contains '..'");
    let mut l = header("././@LongLink", b'L', 1, "");
    l.extend_from_slice(&[0u8; BLOCK]);
    l.extend(header("../../tmp/x", b'5', 0, ""));
    refused(&tar(&[l]), "contains '..'");
}

#[test]
fn the_root_header_a_restore_sends_first_is_accepted_before_any_archive() {
    let root = root_header();
    let mut with_root = root.to_vec();
    with_root.extend(podman_like());
    assert_eq!(check(&with_root), Ok(vec![]));
    // An archive that has a root entry of its own still reads.
    let mut twice = root.to_vec();
    twice.extend(tar(&[header("./", b'5', 0, ""), file("a", b"x")]));
    assert_eq!(check(&twice), Ok(vec![]));
    // A base-256 checksum is not something Go reads.
    let mut b256 = header("a", b'0', 0, "");
    b256[148] = 0x80;
    refused(&tar(&[b256]), "checksum");
}
