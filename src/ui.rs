//! Terminal output: data on stdout (a table or JSON), everything said to the
//! user on stderr, so `--json` output stays parseable and pipes stay clean.

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

/// Print `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_stdout(&text)
}

/// Print lines of text on stdout.
pub fn print_text(text: &str) -> Result<()> {
    write_stdout(text.as_bytes())
}

/// A line of progress or information, on stderr.
pub fn note(message: impl std::fmt::Display) {
    eprintln!("{message}");
}

/// A warning, on stderr.
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
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
    eprintln!("{prefix}: {}", err.message);
    if let Some(hint) = &err.hint {
        eprintln!("hint: {hint}");
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
    eprint!("{question} [y/N] ");
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
}
