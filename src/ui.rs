//! Terminal output: data on stdout (a table or JSON), everything said to the
//! user on stderr, so `--json` output stays parseable and pipes stay clean.
//!
//! Every text printed goes through [`escape`] here, once: names, reasons,
//! paths and error messages come from backups and files that may be hostile,
//! and a terminal must never receive their control characters (a title
//! change, a cleared screen, a forged line). JSON output is escaped by
//! serde_json, plus [`print_json`] for the few controls it leaves raw.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Write data to stdout. A reader that went away (`leger-backup list | head`)
/// is not an error: the data was simply not wanted any more.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Whether a terminal could act on `c`: C0 controls but the newline and
/// tab of our own layout, DEL, C1 controls, and the invisible characters
/// that reorder or break lines (bidi overrides and isolates, line and
/// paragraph separators).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character ([`is_unsafe`]) written out: `\x1b`
/// for ESC and the other C0 and C1 controls and DEL, `\u{202e}` for the
/// others. Unchanged (and not copied) when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !is_unsafe(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// JSON text with the unsafe characters serde_json leaves raw (DEL, C1,
/// bidi) written as `\u` escapes: the same JSON value, and nothing a
/// terminal acts on. They can only occur inside strings (JSON's own syntax
/// is ASCII), where `\u` escapes are valid.
fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.contains(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(escape_json(&text).as_bytes())
}

/// Print lines of text on stdout, escaped.
pub fn print_text(text: &str) -> Result<()> {
    write_stdout(escape(text).as_bytes())
}

/// A line of progress or information, on stderr, escaped.
pub fn note(message: impl std::fmt::Display) {
    eprintln!("{}", escape(&message.to_string()));
}

/// A warning, on stderr, escaped.
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {}", escape(&message.to_string()));
}

/// Whether stderr is a terminal (progress bars, prompts).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdin is a terminal (confirmations are possible).
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Render an error for the user: the cause, then the hint.
pub fn print_error(err: &Error) {
    let prefix = match err.kind {
        ErrorKind::Internal => "error (internal)",
        ErrorKind::Config => "error (config)",
        ErrorKind::Usage => "error (usage)",
        ErrorKind::User => "error",
        ErrorKind::Interrupted => "interrupted",
    };
    eprintln!("{prefix}: {}", escape(&err.message));
    if let Some(hint) = &err.hint {
        eprintln!("hint: {}", escape(hint));
    }
}

/// A plain table with the given header, for stdout.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Print a table, trimming trailing blanks from each line.
pub fn print_table(table: &comfy_table::Table) -> Result<()> {
    let mut text = String::new();
    for line in table.to_string().lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    print_text(&text)
}

/// Bytes for humans: `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Ask a yes/no question on the terminal; without a terminal, refuse with
/// the flag that skips the question.
pub fn confirm(question: &str, skip_flag: &str) -> Result<bool> {
    if !stdin_is_tty() {
        return Err(
            Error::user("confirmation needed but stdin is not a terminal")
                .with_hint(format!("pass {skip_flag} to proceed without asking")),
        );
    }
    eprint!("{} [y/N] ", escape(question));
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn controls_are_escaped_layout_is_kept() {
        assert!(matches!(escape("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;pwned\x07 \x1b[2J\r\x7f\u{9b}é"),
            "\\x1b]0;pwned\\x07 \\x1b[2J\\x0d\\x7f\\x9bé"
        );
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn json_keeps_its_value_without_raw_controls() {
        let value = serde_json::json!({"reason": "\x1b]0;x\x07 \u{9b}2J \x7f \u{202e}"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let escaped = escape_json(&text);
        assert!(!escaped.contains(is_unsafe), "{escaped}");
        assert!(!escaped.contains('\x1b'));
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }
}
