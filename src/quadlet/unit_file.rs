//! systemd unit syntax exactly as Quadlet (podman 5.4) reads it.
//!
//! Quadlet does not use systemd's parser but its own
//! (`pkg/systemd/parser/unitfile.go`), and where the two differ the volume
//! names a deployment ends up with follow Quadlet's. The rules, each checked
//! against `/usr/libexec/podman/quadlet -dryrun` of podman 5.4.2:
//!
//! - the text is split at `\n`; every line is trimmed of Unicode white space
//!   (so `\r\n` endings work, a UTF-8 BOM does not);
//! - empty lines and lines starting with `#` or `;` are comments;
//! - a non-comment line ending in `\` continues on the next non-comment
//!   line: the backslash is removed and the next (trimmed) line is appended
//!   **without** a space (`Volume=foo\` + `  .volume:/d` is
//!   `Volume=foo.volume:/d`; systemd would insert a space). Comment and
//!   empty lines inside a continuation are skipped. A backslash on the last
//!   line is dropped; a continuation followed only by comments is lost;
//! - `[Name]` (white space allowed after `]`) opens a section; sections of
//!   the same name are merged;
//! - `Key=Value`: the key is trimmed at its end, the value at its start;
//!   repeated keys are kept in order.
//!
//! Values are stored raw; the lookups ([`UnitFile::lookup`],
//! [`UnitFile::lookup_all`], [`UnitFile::lookup_all_args`]) apply the
//! per-key semantics Quadlet applies (quote trimming, resets, word
//! splitting), so callers pick the one the real generator uses for a key.
//!
//! Parsing never panics, whatever the input (fuzzed by proptest below).

use std::fmt;

use super::split::split_args;

/// One `Key=Value` assignment, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, trimmed.
    pub key: String,
    /// The value as Quadlet stores it: continuation lines joined, leading
    /// white space removed, nothing else changed (quotes kept).
    pub value: String,
    /// The file it comes from (a label chosen by the caller: the relative
    /// path of the unit file or drop-in), so messages can point at it.
    pub file: String,
    /// 1-based line where the assignment starts.
    pub line: usize,
}

/// A section (`[Container]`) and its assignments in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name between the brackets.
    pub name: String,
    /// Assignments in order, drop-ins appended after the base file's.
    pub entries: Vec<Entry>,
}

/// A parsed unit file, possibly with drop-ins merged in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    /// Sections in order of first appearance; same-named sections merged.
    pub groups: Vec<Group>,
}

/// Why a file does not parse; names the file and line because that is all
/// the user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file label given to [`parse`].
    pub file: String,
    /// 1-based line where the offending statement starts.
    pub line: usize,
    /// What is wrong, in Quadlet's words where it has them.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Go's `unicode.IsSpace` for a single byte-sized character, as Quadlet
/// applies it byte by byte when trimming keys and values (`\v` included,
/// unlike Rust's `is_ascii_whitespace`).
fn is_go_ascii_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with(';')
}

/// `[Name]` followed only by spaces or tabs.
fn group_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let end = rest.find(']')?;
    let after = &rest[end + 1..];
    if after.chars().all(|c| c == ' ' || c == '\t') {
        Some(&rest[..end])
    } else {
        None
    }
}

fn group_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c != '[' && c != ']' && !c.is_control())
}

/// Parse `text` as Quadlet does. `file` labels entries and errors.
pub fn parse(file: &str, text: &str) -> Result<UnitFile, ParseError> {
    let mut unit = UnitFile::default();
    let mut current: Option<usize> = None;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = body.split('\n').collect();
    let last = lines.len() - 1;
    let mut remaining = String::new();
    let mut start = 0usize;
    for (index, raw) in lines.iter().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if is_comment(trimmed) {
            // Comments (and empty lines) are skipped, also inside a
            // continuation, which then goes on with the next line.
            continue;
        }
        let mut piece = trimmed;
        if let Some(cut) = piece.strip_suffix('\\') {
            piece = cut;
            if index != last {
                if remaining.is_empty() {
                    start = number;
                }
                remaining.push_str(piece);
                continue;
            }
        }
        let (logical, line_no) = if remaining.is_empty() {
            (std::borrow::Cow::Borrowed(piece), number)
        } else {
            let mut joined = std::mem::take(&mut remaining);
            joined.push_str(piece);
            (std::borrow::Cow::Owned(joined), start)
        };
        parse_line(file, &logical, line_no, &mut unit, &mut current)?;
    }
    Ok(unit)
}

fn parse_line(
    file: &str,
    line: &str,
    line_no: usize,
    unit: &mut UnitFile,
    current: &mut Option<usize>,
) -> Result<(), ParseError> {
    let error = |message: String| ParseError {
        file: file.to_owned(),
        line: line_no,
        message,
    };
    if is_comment(line) {
        return Ok(());
    }
    if let Some(name) = group_name(line) {
        if !group_name_is_valid(name) {
            return Err(error(format!("invalid section name [{name}]")));
        }
        *current = Some(unit.ensure_group(name));
        return Ok(());
    }
    match line.find('=') {
        Some(eq) if eq > 0 => {
            let Some(group) = *current else {
                return Err(error(format!(
                    "“{}” is outside any section: the file must start with a section such as [Container]",
                    shorten(line)
                )));
            };
            let key = line[..eq].trim_end_matches(is_go_ascii_space);
            if key.is_empty() || key.starts_with(' ') || key.ends_with(' ') {
                return Err(error(format!("invalid key name “{}”", shorten(key))));
            }
            let value = line[eq + 1..].trim_start_matches(is_go_ascii_space);
            unit.groups[group].entries.push(Entry {
                key: key.to_owned(),
                value: value.to_owned(),
                file: file.to_owned(),
                line: line_no,
            });
            Ok(())
        }
        _ => Err(error(format!(
            "“{}” is not a key=value pair, a [section] or a comment",
            shorten(line)
        ))),
    }
}

/// Keep messages readable when a line is huge.
fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

impl UnitFile {
    fn ensure_group(&mut self, name: &str) -> usize {
        if let Some(i) = self.groups.iter().position(|g| g.name == name) {
            i
        } else {
            self.groups.push(Group {
                name: name.to_owned(),
                entries: Vec::new(),
            });
            self.groups.len() - 1
        }
    }

    /// Merge a drop-in over this file as Quadlet does: its sections' entries
    /// are appended to the same-named sections (created when missing), so
    /// later assignments win for single-valued keys and add to list keys.
    pub fn merge(&mut self, drop_in: &UnitFile) {
        for group in &drop_in.groups {
            let i = self.ensure_group(&group.name);
            self.groups[i].entries.extend(group.entries.iter().cloned());
        }
    }

    /// The section called `name`, if any.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Whether the section exists (even empty).
    pub fn has_group(&self, name: &str) -> bool {
        self.group(name).is_some()
    }

    /// The last assignment of `key` in `group`, raw (Quadlet's `LookupLast`).
    /// An empty assignment counts: `Key=` as the last line means "empty".
    pub fn lookup_last(&self, group: &str, key: &str) -> Option<&Entry> {
        self.group(group)?
            .entries
            .iter()
            .rev()
            .find(|e| e.key == key)
    }

    /// The value of a single-valued key as Quadlet's `Lookup` returns it:
    /// the last assignment, trailing white space removed, then every
    /// leading and trailing `"` removed (`strings.Trim(v, "\"")` in podman
    /// 5.4: `VolumeName="x"` is `x`, and so is `VolumeName=x"`).
    pub fn lookup(&self, group: &str, key: &str) -> Option<(String, &Entry)> {
        let entry = self.lookup_last(group, key)?;
        let value = entry.value.trim_end().trim_matches('"').to_owned();
        Some((value, entry))
    }

    /// Every assignment of a list key (Quadlet's `LookupAll`): in order,
    /// values raw (quotes kept: `Volume="a:/b"` reaches podman as `"a:/b"`),
    /// an empty assignment dropping all earlier ones (`Volume=` in a drop-in
    /// clears the base file's volumes).
    pub fn lookup_all(&self, group: &str, key: &str) -> Vec<&Entry> {
        let mut out = Vec::new();
        if let Some(g) = self.group(group) {
            for entry in g.entries.iter().filter(|e| e.key == key) {
                if entry.value.is_empty() {
                    out.clear();
                } else {
                    out.push(entry);
                }
            }
        }
        out
    }

    /// Every assignment of an argument-list key (Quadlet's `LookupAllArgs`,
    /// used for `Secret=`, `Mount=`, `PodmanArgs=`): each value split into
    /// words with shell-like quoting and C escapes; a value that does not
    /// split (an unknown escape such as `\q`) is dropped whole, as Quadlet
    /// drops it.
    pub fn lookup_all_args(&self, group: &str, key: &str) -> Vec<(String, &Entry)> {
        let mut out = Vec::new();
        for entry in self.lookup_all(group, key) {
            if let Ok(words) = split_args(&entry.value) {
                out.extend(words.into_iter().map(|w| (w, entry)));
            }
        }
        out
    }

    /// Render as unit-file text that [`parse`] reads back to the same
    /// groups and entries (values must not contain a newline and must not
    /// end in a backslash). Used by tests and to show merged units.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(&group.name);
            out.push_str("]\n");
            for entry in &group.entries {
                out.push_str(&entry.key);
                out.push('=');
                out.push_str(&entry.value);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values<'a>(unit: &'a UnitFile, group: &str, key: &str) -> Vec<&'a str> {
        unit.lookup_all(group, key)
            .into_iter()
            .map(|e| e.value.as_str())
            .collect()
    }

    #[test]
    fn sections_keys_and_values_are_trimmed() {
        let u = parse(
            "a.container",
            "[Container]   \n  Volume  =  sp:/a  \nImage=x\n",
        )
        .unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["sp:/a"]);
        let e = u.lookup_last("Container", "Image").unwrap();
        assert_eq!((e.line, e.file.as_str()), (3, "a.container"));
    }

    #[test]
    fn continuation_joins_without_a_space_and_skips_comments() {
        let text = "[Container]\nVolume=foo\\\n   .volume:/data\nVolume=x:/b \\\n# c\n; d\n\n  :ro\nImage=i\n";
        let u = parse("a", text).unwrap();
        assert_eq!(
            values(&u, "Container", "Volume"),
            ["foo.volume:/data", "x:/b :ro"]
        );
        let lines: Vec<usize> = u
            .lookup_all("Container", "Volume")
            .iter()
            .map(|e| e.line)
            .collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(u.lookup_last("Container", "Image").unwrap().line, 9);
    }

    #[test]
    fn backslash_on_last_line_is_dropped_and_dangling_continuation_lost() {
        let u = parse("a", "[Container]\nVolume=last:/l\\").unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["last:/l"]);
        let u = parse("a", "[Container]\nVolume=e:/a\\\n# only a comment\n").unwrap();
        assert!(values(&u, "Container", "Volume").is_empty());
    }

    #[test]
    fn comment_ending_in_backslash_does_not_continue() {
        let u = parse("a", "[Container]\n# note \\\nVolume=v:/v\n").unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["v:/v"]);
    }

    #[test]
    fn a_section_header_can_be_continued() {
        let u = parse("a", "[Con\\\ntainer]\nVolume=f:/f\n").unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["f:/f"]);
    }

    #[test]
    fn double_backslash_still_continues() {
        let u = parse("a", "[Container]\nVolume=i\\\\\n:/i\n").unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["i\\:/i"]);
    }

    #[test]
    fn crlf_and_repeated_sections() {
        let u = parse(
            "a",
            "[Container]\r\nVolume=a:/a\r\n[Service]\r\nX=1\r\n[Container]\r\nVolume=b:/b\r\n",
        )
        .unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["a:/a", "b:/b"]);
        assert_eq!(u.groups.len(), 2);
    }

    #[test]
    fn empty_assignment_resets_list_keys() {
        let u = parse("a", "[Container]\nVolume=a:/a\nVolume=\nVolume=b:/b\n").unwrap();
        assert_eq!(values(&u, "Container", "Volume"), ["b:/b"]);
        // lookup_last sees the empty one when it is last.
        let u = parse("a", "[Volume]\nVolumeName=x\nVolumeName=\n").unwrap();
        assert_eq!(u.lookup("Volume", "VolumeName").unwrap().0, "");
    }

    #[test]
    fn lookup_trims_all_surrounding_quotes_but_lookup_all_keeps_them() {
        let u = parse(
            "a",
            "[Volume]\nVolumeName=\"q\"\n[X]\nA=a\"\nB=\"\"b\n[Container]\nVolume=\"q:/c\"\n",
        )
        .unwrap();
        assert_eq!(u.lookup("Volume", "VolumeName").unwrap().0, "q");
        assert_eq!(u.lookup("X", "A").unwrap().0, "a");
        assert_eq!(u.lookup("X", "B").unwrap().0, "b");
        assert_eq!(values(&u, "Container", "Volume"), ["\"q:/c\""]);
    }

    #[test]
    fn args_keys_split_with_quotes_and_drop_bad_escapes() {
        let u = parse(
            "a",
            "[Container]\nSecret=\"s2,type=mount\" s3\nSecret=a\\qb c\nSecret=s4\\x41\n",
        )
        .unwrap();
        let words: Vec<String> = u
            .lookup_all_args("Container", "Secret")
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        assert_eq!(words, ["s2,type=mount", "s3", "s4A"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("web.container", "Key=v\n[Container]\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("web.container", 1));
        assert!(e.to_string().starts_with("web.container:1: "), "{e}");

        let e = parse("web.container", "[Container]\nImage=x\n\nnot a pair\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("not a pair"), "{e}");

        let e = parse("w", "[Con\u{7}tainer]\n").unwrap_err();
        assert_eq!(e.line, 1);

        // A continued statement is reported where it starts.
        let e = parse("w", "[Container]\nbad\\\nline\n").unwrap_err();
        assert_eq!(e.line, 2);

        // A BOM is not white space for Quadlet either.
        assert!(parse("w", "\u{feff}[Container]\n").is_err());
    }

    #[test]
    fn group_with_trailing_text_is_a_key_when_it_has_an_equal_sign() {
        // `[A]x=y` is not a section; it is the key `[A]x`.
        let u = parse("w", "[Container]\n[A]x=y\n").unwrap();
        assert_eq!(u.lookup_last("Container", "[A]x").unwrap().value, "y");
        assert!(parse("w", "[Container] x\n").is_err());
    }

    #[test]
    fn merge_appends_in_order() {
        let mut base = parse("b", "[Container]\nVolume=a:/a\nImage=one\n").unwrap();
        let drop_in = parse(
            "d",
            "[Container]\nVolume=\nVolume=c:/c\nImage=two\n[Service]\nX=1\n",
        )
        .unwrap();
        base.merge(&drop_in);
        assert_eq!(values(&base, "Container", "Volume"), ["c:/c"]);
        assert_eq!(base.lookup("Container", "Image").unwrap().0, "two");
        assert_eq!(base.lookup_last("Container", "Image").unwrap().file, "d");
        assert!(base.has_group("Service"));
    }

    #[test]
    fn empty_and_comment_only_files_parse() {
        assert!(parse("w", "").unwrap().groups.is_empty());
        assert!(parse("w", "# nothing\n;\n\n").unwrap().groups.is_empty());
        assert!(parse("w", "\\").unwrap().groups.is_empty());
    }

    /// A unit model for the round trip: unique section names, keys and
    /// values that survive trimming.
    fn model() -> impl Strategy<Value = Vec<(String, Vec<(String, String)>)>> {
        let name = "[A-Za-z][A-Za-z0-9 _.-]{0,12}";
        let key = "[A-Za-z][A-Za-z0-9_.-]{0,12}";
        // Any printable text without newline; no leading/trailing white
        // space; not ending in a backslash.
        let value = "([^\\s\\\\]([^\n\r]{0,30}[^\\s\\\\])?)?";
        prop::collection::vec(
            (
                name.prop_map(|s| s.trim().to_owned()),
                prop::collection::vec((key, value), 0..6),
            ),
            0..5,
        )
        .prop_map(|groups| {
            let mut seen = std::collections::HashSet::new();
            groups
                .into_iter()
                .filter(|(n, _)| seen.insert(n.clone()))
                .collect()
        })
    }

    fn to_unit(model: &[(String, Vec<(String, String)>)]) -> UnitFile {
        UnitFile {
            groups: model
                .iter()
                .map(|(name, entries)| Group {
                    name: name.clone(),
                    entries: entries
                        .iter()
                        .map(|(k, v)| Entry {
                            key: k.clone(),
                            value: v.clone(),
                            file: "f".into(),
                            line: 0,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn strip_lines(mut u: UnitFile) -> UnitFile {
        for g in &mut u.groups {
            for e in &mut g.entries {
                e.line = 0;
            }
        }
        u
    }

    /// Split a value over continuation lines where the joined text is the
    /// same: never before white space, `#` or `;` (a continued line starting
    /// with those would be trimmed or skipped).
    fn continued(text: &str, every: usize) -> String {
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if i > 0
                && i % every == 0
                && !c.is_whitespace()
                && *c != '#'
                && *c != ';'
                && chars[i - 1] != '\\'
            {
                out.push_str("\\\n    ");
            }
            out.push(*c);
        }
        out
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(m in model()) {
            let unit = to_unit(&m);
            let parsed = parse("f", &unit.render()).unwrap();
            prop_assert_eq!(strip_lines(parsed), unit);
        }

        #[test]
        fn continuation_lines_do_not_change_the_model(m in model(), every in 3usize..9) {
            let unit = to_unit(&m);
            let mut text = String::new();
            for g in &unit.groups {
                text.push_str(&format!("[{}]\n# a comment\n", g.name));
                for e in &g.entries {
                    let line = format!("{}={}", e.key, e.value);
                    text.push_str(&continued(&line, every));
                    text.push('\n');
                }
            }
            let parsed = parse("f", &text).unwrap();
            prop_assert_eq!(strip_lines(parsed), unit);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse("f", &text);
        }

        #[test]
        fn parse_never_panics_on_unit_like_text(
            text in "([\\[\\]=#;\\\\ \t\r\n\"'%$a-z\u{0}\u{85}\u{a0}\u{feff}é]{0,200})"
        ) {
            if let Ok(u) = parse("f", &text) {
                // Whatever parses renders to something that parses again.
                for g in &u.groups {
                    let _ = u.lookup_all(&g.name, "Volume");
                    let _ = u.lookup_all_args(&g.name, "Volume");
                }
            }
        }
    }

    #[test]
    fn huge_lines_parse() {
        let long = "a".repeat(2_000_000);
        let u = parse("f", &format!("[Container]\nVolume={long}:/x\n")).unwrap();
        assert_eq!(values(&u, "Container", "Volume")[0].len(), 2_000_003);
        let cont = "x\\\n".repeat(50_000);
        let u = parse("f", &format!("[Container]\nVolume={cont}:/y\n")).unwrap();
        assert_eq!(values(&u, "Container", "Volume")[0].len(), 50_003);
    }
}
