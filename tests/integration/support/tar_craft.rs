//! Tar streams crafted byte by byte, for tests that feed hostile archives to
//! leger-backup (a real tar writer refuses to write most of them).

/// A tar header block (USTAR magic) with its checksum.
pub fn header(name: &str, typeflag: u8, size: u64, link: &str) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"14600000000");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// Blocks of an entry's data, padded to 512 bytes.
pub fn data(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(bytes.len().div_ceil(512) * 512, 0);
    out
}

/// A PAX header carrying one record.
pub fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    let record = format!("{len}{body}");
    let mut out = header("PaxHeaders/0", b'x', record.len() as u64, "");
    out.extend(data(record.as_bytes()));
    out
}

/// The two zero blocks that end a tar.
pub fn finish_tar(mut parts: Vec<u8>) -> Vec<u8> {
    parts.extend([0u8; 1024]);
    parts
}

/// A tar that is also a gzip stream: its first header's name field starts
/// with a gzip header whose extra field swallows the rest of the block, and
/// the entry's data is the deflated `inner` tar. A tar reader sees one odd
/// file; a reader that sniffs the first bytes for compression (podman's
/// `volume import`) unpacks `inner` instead.
pub fn gzip_polyglot(inner: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate.write_all(inner).unwrap();
    let mut body = deflate.finish().unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(inner);
    body.extend_from_slice(&crc.sum().to_le_bytes());
    body.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    let mut h = header("x", b'0', body.len() as u64, "");
    // ID1 ID2 CM FLG=FEXTRA, MTIME (0: ends the tar name), XFL, OS, XLEN=500.
    h[..12].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 3, 0xf4, 0x01]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h.extend(data(&body));
    finish_tar(h)
}

/// Standard base64, to carry bytes into a testbed script.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
