//! Header blocks and PAX records, parsed the way Go's `archive/tar` parses
//! them (the importer is Go): only the fields that decide how the stream is
//! read and what an entry is called.

use super::{show, until_nul, Pax, Refusal};

/// The fields of a header block that decide how the stream is read.
pub(super) struct Header {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    pub size: u64,
}

impl Header {
    pub fn parse(block: &[u8]) -> Result<Header, Refusal> {
        check_checksum(block)?;
        let magic = &block[257..263];
        let mut name = until_nul(&block[..100]).to_vec();
        if magic == b"ustar " && &block[263..265] == b" \0" {
            // GNU: bytes 345.. are atime and ctime. When one does not parse,
            // Go falls back to reading them as a USTAR prefix (for files an
            // old Go wrote), so the name would differ from what we check.
            let unreadable = |field: &[u8]| field[0] != 0 && parse_number(field).is_none();
            if unreadable(&block[345..357]) || unreadable(&block[357..369]) {
                return Err(
                    "a GNU header whose time fields do not parse (Go would read them as a name prefix)"
                        .into(),
                );
            }
        } else if magic == b"ustar\0" {
            if &block[508..512] == b"tar\0" {
                return Err("a star-format header: not accepted".into());
            }
            // USTAR: a prefix field extends the name.
            let prefix = until_nul(&block[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }
        let size = parse_number(&block[124..136]).ok_or("an unreadable size field")?;
        Ok(Header {
            typeflag: block[156],
            name,
            linkname: until_nul(&block[157..257]).to_vec(),
            size,
        })
    }
}

/// The header checksum, signed or unsigned as Go accepts.
fn check_checksum(block: &[u8]) -> Result<(), Refusal> {
    // Octal only, as Go reads it (no base-256 here).
    let recorded = Some(&block[148..156])
        .filter(|field| field[0] & 0x80 == 0)
        .and_then(parse_number)
        .ok_or("an unreadable header checksum")?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if recorded == unsigned || i64::try_from(recorded).is_ok_and(|r| r == signed) {
        Ok(())
    } else {
        Err("a header with a wrong checksum: not a valid tar".into())
    }
}

/// An octal field (spaces and NULs around it), or base-256 when the high
/// bit of the first byte is set. Negative or overflowing values: None.
pub(super) fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return i64::try_from(value).ok().map(|_| value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    let value = u64::from_str_radix(digits, 8).ok()?;
    i64::try_from(value).ok().map(|_| value)
}

/// PAX records Go applies to the entry's name, size, owner or times, and
/// extended attributes: accepted. Everything else is refused, `GNU.sparse.*`
/// first of all (Go renames and resizes entries with it).
pub(super) fn parse_pax(payload: &[u8]) -> Result<Pax, Refusal> {
    let mut pax = Pax::default();
    let mut rest = payload;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a malformed PAX record")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > space + 1 && l <= rest.len())
            .ok_or("a malformed PAX record length")?;
        let record = &rest[space + 1..len];
        rest = &rest[len..];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("a PAX record without its newline")?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a PAX record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        take_pax_record(&mut pax, key, value)?;
    }
    Ok(pax)
}

fn take_pax_record(pax: &mut Pax, key: &[u8], value: &[u8]) -> Result<(), Refusal> {
    let no_nul = |what: &str| {
        if value.contains(&0) {
            Err(format!("a PAX {what} holding a NUL byte"))
        } else {
            Ok(value.to_vec())
        }
    };
    // Go keeps the header's own value when a PAX value is empty.
    if value.is_empty() && matches!(key, b"path" | b"linkpath" | b"size") {
        return Ok(());
    }
    match key {
        b"path" => pax.path = Some(no_nul("path")?),
        b"linkpath" => pax.linkpath = Some(no_nul("linkpath")?),
        b"size" => {
            let size = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&s| i64::try_from(s).is_ok())
                .ok_or("a PAX size that is not a number")?;
            pax.size = Some(size);
        }
        b"uid" | b"gid" | b"uname" | b"gname" | b"mtime" | b"atime" | b"ctime" | b"comment"
        | b"charset" => {}
        k if k.starts_with(b"SCHILY.xattr.") || k.starts_with(b"LIBARCHIVE.xattr.") => {}
        other => {
            return Err(format!(
                "a PAX record {} that could rename or reshape an entry: not accepted",
                show(other)
            ))
        }
    }
    Ok(())
}
