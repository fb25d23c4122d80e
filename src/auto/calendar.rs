//! A check of systemd's calendar expressions (`OnCalendar=`, systemd.time(7))
//! done in-process, so that a schedule systemd would refuse is a config error
//! with its line and column, and the generator, which loads the config at
//! every `daemon-reload`, never has to run `systemd-analyze`.
//!
//! The grammar: a shorthand (`daily`, `weekly`, ...) or
//! `[WEEKDAYS] [DATE] [TIME]`, each optionally followed by a time zone.
//! WEEKDAYS is a list of names and `Mon..Fri` ranges; DATE is
//! `[YEAR-]MONTH-DAY` (or `~DAY`, counted from the month's end); TIME is
//! `HOUR:MINUTE[:SECOND]`. Every DATE and TIME component is `*` or a list of
//! values and `A..B` ranges, each with an optional `/REPEAT`. The check is
//! never looser than systemd: a unit test compares it with
//! `systemd-analyze calendar` expression by expression.

/// Shorthands systemd accepts on their own (optionally with a time zone).
const SHORTHANDS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

/// Weekday names, Monday first, as systemd reads them (any case).
const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Where time zone names are looked up (what systemd itself reads).
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// `Ok` when systemd accepts `text` as a calendar expression, else why not.
pub fn check(text: &str) -> Result<(), String> {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Err("it is empty".to_owned());
    }
    if words.len() > 1 && is_time_zone(words[words.len() - 1]) {
        words.pop();
    }
    if words.len() == 1 && SHORTHANDS.contains(&words[0].to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut rest = words.as_slice();
    if let Some((first, tail)) = rest.split_first() {
        if first.starts_with(|c: char| c.is_ascii_alphabetic()) {
            weekdays(first)?;
            rest = tail;
        }
    }
    if let Some((first, tail)) = rest.split_first() {
        if !first.contains(':') {
            date(first)?;
            rest = tail;
        }
    }
    if let Some((first, tail)) = rest.split_first() {
        time(first)?;
        rest = tail;
    }
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(format!("{extra:?} is not a time zone systemd knows")),
    }
}

/// `UTC` (any case) or a zone in the tz database (`Europe/Berlin`).
fn is_time_zone(word: &str) -> bool {
    if word.eq_ignore_ascii_case("utc") {
        return true;
    }
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    plain
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && !word.contains("..")
        && std::path::Path::new(ZONEINFO).join(word).is_file()
}

/// `Mon`, `Sat,Sun`, `Mon..Fri`: names in order within a range.
fn weekdays(word: &str) -> Result<(), String> {
    for item in word.split(',') {
        let (from, to) = item.split_once("..").unwrap_or((item, item));
        let (from, to) = (weekday(from)?, weekday(to)?);
        if from > to {
            return Err(format!("the weekday range {item:?} runs backwards"));
        }
    }
    Ok(())
}

fn weekday(name: &str) -> Result<usize, String> {
    let lower = name.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .ok_or_else(|| format!("{name:?} is not a weekday (Mon, Tue, ... or Monday, ...)"))
}

/// `[YEAR-]MONTH-DAY` or `[YEAR-]MONTH~DAY`.
fn date(word: &str) -> Result<(), String> {
    let (head, day, last_days) = match word.split_once('~') {
        Some((head, day)) => (head, day, true),
        None => match word.rsplit_once('-') {
            Some((head, day)) => (head, day, false),
            None => return Err(format!("{word:?} is neither a date nor a time")),
        },
    };
    let (year, month) = match head.split_once('-') {
        Some((year, month)) => (Some(year), month),
        None => (None, head),
    };
    if let Some(year) = year {
        component(year, "year", 0, 2199, Kind::Year)?;
    }
    component(month, "month", 1, 12, Kind::Integer)?;
    component(day, "day", 1, 31, Kind::Integer)?;
    if last_days && day == "*" {
        return Err(format!("{word:?}: `~` needs a number of days"));
    }
    Ok(())
}

/// `HOUR:MINUTE[:SECOND]`.
fn time(word: &str) -> Result<(), String> {
    let parts: Vec<&str> = word.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!(
            "{word:?} is not a time (HOUR:MINUTE or HOUR:MINUTE:SECOND)"
        ));
    }
    component(parts[0], "hour", 0, 23, Kind::Integer)?;
    component(parts[1], "minute", 0, 59, Kind::Integer)?;
    if let Some(second) = parts.get(2) {
        component(second, "second", 0, 59, Kind::Seconds)?;
    }
    Ok(())
}

/// How a component's numbers are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Digits.
    Integer,
    /// Digits with an optional fraction of up to six digits (`1.5`).
    Seconds,
    /// Two digits (1970-2069) or four (1970-2199).
    Year,
}

/// `*`, or a list of `V`, `A..B`, each with an optional `/REPEAT`.
fn component(text: &str, what: &str, min: u32, max: u32, kind: Kind) -> Result<(), String> {
    if text == "*" {
        return Ok(());
    }
    for item in text.split(',') {
        let (range, repeat) = match item.split_once('/') {
            Some((range, repeat)) => (range, Some(repeat)),
            None => (item, None),
        };
        let (from, to) = range.split_once("..").unwrap_or((range, range));
        let from = value(from, what, min, max, kind)?;
        let to = value(to, what, min, max, kind)?;
        if from > to {
            return Err(format!("the {what} range {range:?} runs backwards"));
        }
        if let Some(repeat) = repeat {
            let step = if kind == Kind::Seconds {
                kind
            } else {
                Kind::Integer
            };
            if value(repeat, what, 0, u32::MAX, step)? == 0.0 {
                return Err(format!("{item:?}: a repetition of 0 never repeats"));
            }
        }
    }
    Ok(())
}

/// One number of a component, within `min..=max` (fractions of a second
/// only count towards the order of a range).
fn value(text: &str, what: &str, min: u32, max: u32, kind: Kind) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a valid {what}");
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) if kind == Kind::Seconds => (w, Some(f)),
        _ => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || whole.len() > 10 || fraction.is_some_and(|f| !digits(f) || f.len() > 6) {
        return Err(bad());
    }
    let mut n: u32 = whole.parse().map_err(|_| bad())?;
    if kind == Kind::Year {
        n = match whole.len() {
            1 | 2 if n >= 70 => 1900 + n,
            1 | 2 => 2000 + n,
            4 => n,
            _ => return Err(bad()),
        };
        if n < 1970 {
            return Err(format!("{text:?} is before 1970"));
        }
    }
    if n < min || n > max {
        return Err(format!("{what} {text:?} is outside {min}..{max}"));
    }
    let fraction: f64 = fraction.map_or(0.0, |f| format!("0.{f}").parse().unwrap_or(0.0));
    Ok(f64::from(n) + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expressions systemd accepts (checked with `systemd-analyze calendar`).
    pub(super) const VALID: &[&str] = &[
        "daily",
        "weekly",
        "hourly",
        "minutely",
        "quarterly",
        "semiannually",
        "annually",
        "daily UTC",
        "Sun 04:00",
        "Wed",
        "Mon..Fri",
        "mon..fri",
        "Tue..Tue",
        "Sun,Sun",
        "MONDAY 04:00",
        "thursday",
        "Mon,Fri 10:00",
        "Sat,Sun *-*-* 10:00 UTC",
        "*-*-* 03:00",
        "*-*-* 03:00 utc",
        "03:00 Europe/Berlin",
        "2026-01-01",
        "2026-*-*",
        "2026..2030-01-01",
        "70-01-01",
        "2199-01-01",
        "*-*-01",
        "*-*-1/2",
        "*-02~03",
        "*-*~1",
        "*-1..3,6-1",
        "01-01",
        "1-1",
        "Sun 1-1",
        "Mon *-*-1..7",
        "12:00",
        "4:0",
        "12:00:00.5",
        "00:00:59.999999",
        "00:00:1.5/2",
        "*:0/15",
        "*:*:0/5",
        "*:0..59/15",
        "*:0,30",
        "0,12:00",
        "1..5:00",
        "0/2:00",
        "0..23/2:00",
        "8,9..11:00",
        "*:*",
        "12:*:*",
        "Thu 12:*",
        "Sun 04:00,05:00",
        "Mon *-*-* *:*:*",
        "Sun 2026-01-01 03:00 UTC",
    ];

    /// Expressions systemd refuses.
    pub(super) const INVALID: &[&str] = &[
        "",
        "bogus",
        "*",
        "daily daily",
        "*-*-* 24:00",
        "*-13-01",
        "*-*-32",
        "*-*-0",
        "*-0-1",
        "*-*-* 03:00:60",
        "*-*-* 03",
        "*:*/15",
        "*:*:5/0",
        "*:00/0",
        "*:60",
        "5..1:00",
        "Fri..Mon",
        "Mon..Wed..Fri",
        "Mon, Fri 04:00",
        "Mo 04:00",
        "Weds",
        "1969-01-01",
        "2200-01-01",
        "*-*~32",
        "*-*~0",
        "*-*-1..7 Mon",
        "2026-01-01T03:00",
        "-01-01",
        "*--*",
        "03:00 Mars/Base",
        "03:00 Europe/Berlin x",
        "+5",
    ];

    #[test]
    fn accepts_what_systemd_accepts() {
        for text in VALID {
            assert_eq!(check(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_systemd_refuses_and_says_why() {
        for text in INVALID {
            let why = check(text).expect_err(text);
            assert!(!why.is_empty(), "{text:?}");
        }
        assert!(check("Fri..Mon").unwrap_err().contains("backwards"));
        assert!(check("*-13-01").unwrap_err().contains("month"));
        assert!(check("*:*:5/0").unwrap_err().contains("repetition"));
    }

    /// The same verdicts as systemd's own parser, run on this machine.
    #[test]
    fn agrees_with_systemd_analyze() {
        for (text, valid) in VALID
            .iter()
            .map(|t| (t, true))
            .chain(INVALID.iter().map(|t| (t, false)))
        {
            if text.is_empty() {
                continue;
            }
            let mut cmd = std::process::Command::new("systemd-analyze");
            cmd.args(["calendar", "--", text]);
            let out = crate::process::run_unchecked(&mut cmd)
                .expect("systemd-analyze runs (the test machines have systemd's tools)");
            assert_eq!(
                out.status.success(),
                valid,
                "systemd-analyze calendar {text:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
