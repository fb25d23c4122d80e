//! Tar headers as Go's `archive/tar` writes them for `podman volume export`
//! (a header with no format chosen): USTAR when the entry fits, a long
//! ASCII path split into prefix and name when it can be; otherwise PAX,
//! with records sorted by key and the main header carrying what fits.
//! Extended attributes always make the entry PAX (`SCHILY.xattr.*`).
//! The guard (`tar_guard/header.rs`) reads exactly this subset.

use std::collections::BTreeMap;

/// Bytes in a tar block.
pub(super) const BLOCK: usize = 512;
const NAME: usize = 100;
const PREFIX: usize = 155;
/// Largest value of an 8-byte octal field (7 digits and a NUL).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits and a NUL).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// One entry's header fields.
pub(super) struct Entry<'a> {
    /// Path in the archive; directories end in `/`.
    pub name: &'a [u8],
    /// `0` file, `1` hard link, `2` symlink, `3`/`4` devices, `5` dir, `6` FIFO.
    pub typeflag: u8,
    /// `st_mode`, file type bits included (podman's export keeps them).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Data bytes that follow (regular files only).
    pub size: u64,
    /// Seconds since the epoch (podman truncates to the second).
    pub mtime: i64,
    pub linkname: &'a [u8],
    pub devmajor: u64,
    pub devminor: u64,
    /// Extended attributes to record, (name, value).
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Append the header block(s) of `entry` to `out`: a PAX extended header
/// and its records first when the entry needs one.
pub(super) fn append(entry: &Entry, out: &mut Vec<u8>) {
    let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut ustar = entry.xattrs.is_empty();
    let mut split = None;
    if !fits(entry.name) {
        pax.insert(b"path".to_vec(), entry.name.to_vec());
        split = split_ustar(entry.name);
        ustar &= split.is_some();
    }
    if !fits(entry.linkname) {
        pax.insert(b"linkpath".to_vec(), entry.linkname.to_vec());
        ustar = false;
    }
    for (key, value, max) in [
        ("uid", entry.uid, MAX_OCTAL_8),
        ("gid", entry.gid, MAX_OCTAL_8),
        ("size", entry.size, MAX_OCTAL_12),
    ] {
        if value > max {
            pax.insert(key.as_bytes().to_vec(), value.to_string().into_bytes());
            ustar = false;
        }
    }
    if !(0..=MAX_OCTAL_12 as i64).contains(&entry.mtime) {
        pax.insert(b"mtime".to_vec(), entry.mtime.to_string().into_bytes());
        ustar = false;
    }
    for (key, value) in entry.xattrs {
        pax.insert([b"SCHILY.xattr.", key.as_slice()].concat(), value.clone());
    }
    if ustar {
        let (prefix, name) = split.unwrap_or((&[], entry.name));
        let mut block = template(entry, name);
        block[345..345 + prefix.len()].copy_from_slice(prefix);
        out.extend_from_slice(&seal(block));
        return;
    }
    if !pax.is_empty() {
        append_pax(entry.name, &pax, out);
    }
    let name = ascii_field(entry.name, NAME);
    let mut block = template(entry, &name);
    block[157..257].fill(0);
    let link = ascii_field(entry.linkname, NAME);
    block[157..157 + link.len()].copy_from_slice(&link);
    out.extend_from_slice(&seal(block));
}

/// Whether a name or link target fits a USTAR field as it is.
fn fits(s: &[u8]) -> bool {
    s.is_ascii() && s.len() <= NAME
}

/// Go's `splitUSTARPath`: an ASCII path too long for the name field, cut
/// at a `/` into a prefix (up to 155 bytes) and a name (up to 100).
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME || !name.is_ascii() {
        return None;
    }
    let mut length = name.len();
    if length > PREFIX + 1 {
        length = PREFIX + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let suffix = name.len() - i - 1;
    if i == 0 || suffix > NAME || suffix == 0 || i > PREFIX {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Go's best effort for a field: the ASCII bytes, cut to the field's length.
fn ascii_field(s: &[u8], len: usize) -> Vec<u8> {
    let mut ascii: Vec<u8> = s.iter().copied().filter(u8::is_ascii).collect();
    ascii.truncate(len);
    ascii
}

/// The fields every header has; `name` goes into the name field as is.
fn template(entry: &Entry, name: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len().min(NAME)].copy_from_slice(&name[..name.len().min(NAME)]);
    octal(&mut b[100..108], u64::from(entry.mode));
    octal(&mut b[108..116], entry.uid);
    octal(&mut b[116..124], entry.gid);
    octal(&mut b[124..136], entry.size);
    octal(&mut b[136..148], u64::try_from(entry.mtime).unwrap_or(0));
    b[156] = entry.typeflag;
    let link = &entry.linkname[..entry.linkname.len().min(NAME)];
    b[157..157 + link.len()].copy_from_slice(link);
    octal(&mut b[329..337], entry.devmajor);
    octal(&mut b[337..345], entry.devminor);
    b
}

/// The PAX extended header for the entry `name` with `records`.
fn append_pax(name: &[u8], records: &BTreeMap<Vec<u8>, Vec<u8>>, out: &mut Vec<u8>) {
    let mut data = Vec::new();
    for (key, value) in records {
        pax_record(key, value, &mut data);
    }
    // Go names it DIR/PaxHeaders.0/BASE.
    let cut = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (dir, base) = name.split_at(cut);
    let mut pax_name = [dir, b"PaxHeaders.0"].concat();
    if !base.is_empty() {
        pax_name.push(b'/');
        pax_name.extend_from_slice(base);
    }
    let mut pax_name = ascii_field(&pax_name, NAME);
    while pax_name.last() == Some(&b'/') {
        pax_name.pop();
    }
    let mut b = [0u8; BLOCK];
    b[..pax_name.len()].copy_from_slice(&pax_name);
    for field in [100..108, 108..116, 116..124] {
        octal(&mut b[field], 0);
    }
    octal(&mut b[124..136], data.len() as u64);
    octal(&mut b[136..148], 0);
    b[156] = b'x';
    out.extend_from_slice(&seal(b));
    out.extend_from_slice(&data);
    out.resize(out.len() + padding(data.len() as u64) as usize, 0);
}

/// One PAX record, `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// USTAR magic and version, then the checksum (six octal digits, NUL, space).
fn seal(mut b: [u8; BLOCK]) -> [u8; BLOCK] {
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

/// Zero-padded octal digits and a NUL, as Go formats a field; a value
/// that does not fit is written as 0 (its PAX record carries it).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        field[..digits].fill(b'0');
    } else {
        field[..digits].copy_from_slice(text.as_bytes());
    }
    field[digits] = 0;
}

/// Bytes of zero padding after `size` bytes of data.
pub(super) fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut out = Vec::new();
        pax_record(b"path", b"a", &mut out);
        assert_eq!(out, b"9 path=a\n");
        let mut out = Vec::new();
        // 3 + 4 + 92 = 99 bytes of body: the length needs 3 digits.
        pax_record(b"path", &[b'x'; 91], &mut out);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 path="));
    }

    #[test]
    fn long_ascii_paths_split_as_go_splits_them() {
        let dir = "d".repeat(60);
        let name = format!("{dir}/{}", "f".repeat(60));
        assert_eq!(
            split_ustar(name.as_bytes()),
            Some((dir.as_bytes(), "f".repeat(60).as_bytes()))
        );
        // A last component over 100 bytes cannot be split.
        assert_eq!(
            split_ustar(format!("a/{}", "f".repeat(101)).as_bytes()),
            None
        );
        assert_eq!(split_ustar(b"short"), None);
    }
}
