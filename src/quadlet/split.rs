//! Word splitting of argument-list values, and the CSV syntax of `Mount=`.
//!
//! Quadlet splits some keys (`Secret=`, `Mount=`, `PodmanArgs=`) into words
//! the way systemd splits `ExecStart=` (its `LookupAllArgs`, a port of
//! systemd's `extract_first_word` with `RELAX | UNQUOTE | CUNESCAPE`), and
//! writes the podman command line it generates with the inverse quoting. The
//! same function therefore reads both the keys and the generated
//! `ExecStart=` lines (the differential test uses it for the latter).
//!
//! `Mount=` values are then read as one CSV record (Go's `encoding/csv`), so
//! `source="a,b"` is possible.

/// Why a value does not split; Quadlet then ignores the whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError(pub &'static str);

/// Split `input` into words as Quadlet's `LookupAllArgs` does: white space
/// separates words, `'…'` and `"…"` quote (quotes removed, unbalanced
/// quotes tolerated), `\` escapes C-style (`\n`, `\x41`, `\u00e9`, `\"`,
/// `\s`...). An unknown escape (`\q`) is an error for the whole value. As in
/// systemd, an empty word (`""`) ends the list: what follows is dropped.
pub fn split_args(input: &str) -> Result<Vec<String>, SplitError> {
    let chars: Vec<char> = input.chars().collect();
    let mut words = Vec::new();
    let mut pos = 0;
    while let Some((word, next)) = first_word(&chars, pos)? {
        words.push(word);
        pos = next;
    }
    Ok(words)
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// One word from `chars[pos..]`: `Some((word, next position))`, or `None`
/// when no (non-empty) word is left.
fn first_word(chars: &[char], mut pos: usize) -> Result<Option<(String, usize)>, SplitError> {
    // A NUL character ends the input, as the C-derived code treats it.
    let end = chars[pos..]
        .iter()
        .position(|&c| c == '\0')
        .map_or(chars.len(), |i| pos + i);
    while pos < end && is_separator(chars[pos]) {
        pos += 1;
    }
    let mut word = String::new();
    let mut quote: Option<char> = None;
    while pos < end {
        let c = chars[pos];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == '\\' {
                    pos = unescape(chars, pos + 1, end, &mut word)?;
                    continue;
                } else {
                    word.push(c);
                }
                pos += 1;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    pos += 1;
                } else if c == '\\' {
                    pos = unescape(chars, pos + 1, end, &mut word)?;
                } else if is_separator(c) {
                    while pos < end && is_separator(chars[pos]) {
                        pos += 1;
                    }
                    return Ok(finish(word, pos));
                } else {
                    word.push(c);
                    pos += 1;
                }
            }
        }
    }
    // End of input (an unbalanced quote or a trailing backslash is
    // tolerated: RELAX).
    Ok(finish(word, chars.len()))
}

fn finish(word: String, next: usize) -> Option<(String, usize)> {
    if word.is_empty() {
        None
    } else {
        Some((word, next))
    }
}

/// Decode the escape starting at `chars[pos]` (just after the backslash)
/// into `word`; return the position after it.
fn unescape(
    chars: &[char],
    pos: usize,
    end: usize,
    word: &mut String,
) -> Result<usize, SplitError> {
    if pos >= end {
        // Trailing backslash: dropped (RELAX).
        return Ok(end);
    }
    let rest = &chars[pos..end];
    let hex = |n: usize| -> Option<u32> {
        if rest.len() < 1 + n {
            return None;
        }
        rest[1..=n]
            .iter()
            .try_fold(0u32, |acc, c| c.to_digit(16).map(|d| (acc << 4) | d))
    };
    let (ch, len) = match rest[0] {
        'a' => ('\u{07}', 1),
        'b' => ('\u{08}', 1),
        'f' => ('\u{0C}', 1),
        'n' => ('\n', 1),
        'r' => ('\r', 1),
        't' => ('\t', 1),
        'v' => ('\u{0B}', 1),
        '\\' => ('\\', 1),
        '"' => ('"', 1),
        '\'' => ('\'', 1),
        's' => (' ', 1),
        'x' => match hex(2) {
            Some(v) if v != 0 => (char::from_u32(v).unwrap_or('\u{FFFD}'), 3),
            _ => return Err(SplitError("invalid \\x escape")),
        },
        'u' => match hex(4) {
            // Surrogates become U+FFFD, as Go's WriteRune makes them.
            Some(v) if v != 0 => (char::from_u32(v).unwrap_or('\u{FFFD}'), 5),
            _ => return Err(SplitError("invalid \\u escape")),
        },
        'U' => match hex(8) {
            Some(v) if v != 0 && v <= 0x10FFFF => (char::from_u32(v).unwrap_or('\u{FFFD}'), 9),
            _ => return Err(SplitError("invalid \\U escape")),
        },
        '0'..='7' => {
            let digits: Option<Vec<u32>> = rest
                .get(..3)
                .map(|d| {
                    d.iter()
                        .map(|c| c.to_digit(8))
                        .collect::<Option<Vec<u32>>>()
                })
                .unwrap_or(None);
            match digits {
                Some(d) => {
                    let v = (d[0] << 6) | (d[1] << 3) | d[2];
                    if v == 0 || v > 255 {
                        return Err(SplitError("invalid octal escape"));
                    }
                    (char::from_u32(v).unwrap_or('\u{FFFD}'), 3)
                }
                None => return Err(SplitError("invalid octal escape")),
            }
        }
        _ => return Err(SplitError("unsupported escape character")),
    };
    word.push(ch);
    Ok(pos + len)
}

/// Read `input` as one CSV record the way Go's `encoding/csv` reader does
/// with default settings (podman's `FindMountType`): fields separated by
/// `,`, a field starting with `"` is quoted (`""` inside is a quote), a
/// quote elsewhere is an error, and a record must be exactly one line.
/// `None` when Go would return an error.
pub fn csv_record(input: &str) -> Option<Vec<String>> {
    let input = input.strip_suffix('\n').unwrap_or(input);
    let input = input.strip_suffix('\r').unwrap_or(input);
    if input.is_empty() {
        // No record at all: podman reports a mount format error.
        return None;
    }
    let chars: Vec<char> = input.chars().collect();
    let mut fields = Vec::new();
    let mut pos = 0;
    loop {
        let mut field = String::new();
        if chars.get(pos) == Some(&'"') {
            pos += 1;
            loop {
                match chars.get(pos) {
                    None => return None,
                    Some('"') if chars.get(pos + 1) == Some(&'"') => {
                        field.push('"');
                        pos += 2;
                    }
                    Some('"') => {
                        pos += 1;
                        break;
                    }
                    Some(&c) => {
                        field.push(c);
                        pos += 1;
                    }
                }
            }
            match chars.get(pos) {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(',') => {
                    fields.push(field);
                    pos += 1;
                }
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.get(pos) {
                    None => {
                        fields.push(field);
                        return Some(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        pos += 1;
                        break;
                    }
                    Some('"') | Some('\n') => return None,
                    Some(&c) => {
                        field.push(c);
                        pos += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(s: &str) -> Vec<String> {
        split_args(s).unwrap()
    }

    #[test]
    fn splits_like_systemd() {
        assert_eq!(words("  a  b\tc "), ["a", "b", "c"]);
        assert_eq!(words("\"a b\" 'c d'"), ["a b", "c d"]);
        assert_eq!(words("x\"y z\"w"), ["xy zw"]);
        assert_eq!(words("a\\sb \\x41\\u00e9 \\101"), ["a b", "Aé", "A"]);
        assert_eq!(words("\"\\\"q:/c\\\"\""), ["\"q:/c\""]);
        assert_eq!(words("unbalanced \"quote"), ["unbalanced", "quote"]);
        assert_eq!(words("trailing\\"), ["trailing"]);
        assert!(words("").is_empty());
        // An empty word ends the list, as in systemd.
        assert_eq!(words("a \"\" b"), ["a"]);
        assert!(split_args("a\\qb").is_err());
        assert!(split_args("\\x00").is_err());
        assert!(split_args("\\U00110000").is_err());
        // NUL ends the input.
        assert_eq!(words("a\0b c"), ["a"]);
    }

    #[test]
    fn csv_like_go() {
        assert_eq!(
            csv_record("type=volume,source=x,,destination=/y").unwrap(),
            ["type=volume", "source=x", "", "destination=/y"]
        );
        assert_eq!(
            csv_record("\"source=a,b\",\"q\"\"x\"").unwrap(),
            ["source=a,b", "q\"x"]
        );
        assert_eq!(csv_record(" a , b").unwrap(), [" a ", " b"]);
        assert!(csv_record("a\"b").is_none());
        assert!(csv_record("\"a\"b").is_none());
        assert!(csv_record("\"open").is_none());
        assert!(csv_record("").is_none());
        assert!(csv_record("a\nb").is_none());
        assert_eq!(csv_record("a,").unwrap(), ["a", ""]);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}|[\\\\\"' ,\\x00ux0-9a-fA-F]{0,40}") {
            let _ = split_args(&s);
            let _ = csv_record(&s);
        }
    }
}
