//! The grammars of the names leger-backup hands to `podman` and `systemctl`.
//!
//! A backup is untrusted input: a name read from its metadata reaches those
//! tools as an argument, so it must be a name and nothing else — never an
//! option (`--url=ssh://…`), never a path, never a unit of another program.
//! Each check returns why a name is refused; callers say where it came from.

/// Longest unit name systemd accepts (`UNIT_NAME_MAX`).
const UNIT_NAME_MAX: usize = 255;

/// Longest Podman volume or container name leger-backup accepts (a volume
/// name also becomes a file name in the backup).
const PODMAN_NAME_MAX: usize = 200;

/// Longest label key and value accepted from a backup.
const LABEL_KEY_MAX: usize = 255;
const LABEL_VALUE_MAX: usize = 4096;

/// A systemd service name as Quadlet generates them: systemd's unit-name
/// characters (`[A-Za-z0-9:_.\-]`, `\` for its `\x2d` escapes, one `@`
/// between a template's prefix and its instance), not starting with `-`,
/// at most 255 bytes, ending in `.service` with a non-empty prefix.
pub fn check_service(name: &str) -> Result<(), &'static str> {
    if name.len() > UNIT_NAME_MAX {
        return Err("is longer than 255 bytes");
    }
    if name.starts_with('-') {
        return Err("starts with '-'");
    }
    let Some(prefix) = name.strip_suffix(".service") else {
        return Err("does not end in .service");
    };
    let unit_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '-');
    let (head, instance) = match prefix.split_once('@') {
        Some((head, instance)) => (head, Some(instance)),
        None => (prefix, None),
    };
    if head.is_empty() {
        return Err("has no name before .service or '@'");
    }
    if !head.chars().all(unit_char) {
        return Err("holds a character systemd does not allow in unit names");
    }
    // systemd allows further '@' in an instance.
    if let Some(instance) = instance {
        if !instance.chars().all(|c| unit_char(c) || c == '@') {
            return Err("holds a character systemd does not allow in unit names");
        }
    }
    Ok(())
}

/// A Podman volume or container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (Podman's
/// own rule), at most 200 bytes. So never an option, never a path.
pub fn check_podman_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("is empty");
    };
    if !first.is_ascii_alphanumeric() {
        return Err("does not start with a letter or digit");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err("holds a character other than letters, digits, '_', '.' and '-'");
    }
    if name.len() > PODMAN_NAME_MAX {
        return Err("is longer than 200 bytes");
    }
    Ok(())
}

/// A volume label from a backup: data, passed as one `--label KEY=VALUE`
/// argument, so only its shape is checked: a non-empty key without `=`,
/// nothing that is a control character, sane lengths.
pub fn check_label(key: &str, value: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("has an empty key");
    }
    if key.contains('=') {
        return Err("has '=' in its key");
    }
    if key.len() > LABEL_KEY_MAX || value.len() > LABEL_VALUE_MAX {
        return Err("is too long (key over 255 or value over 4096 bytes)");
    }
    if key.chars().chain(value.chars()).any(char::is_control) {
        return Err("holds a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_systemd() {
        for ok in [
            "web.service",
            "data-volume.service",
            "app@.service",
            "app@1.service",
            "a:b_c.d\\x2d.service",
            "app@a@b.service",
        ] {
            assert_eq!(check_service(ok), Ok(()), "{ok}");
        }
        let long = format!("{}.service", "a".repeat(250));
        for bad in [
            "--url=ssh://x.service",
            "-H",
            "-x.service",
            "sshd.socket",
            "web",
            ".service",
            "@x.service",
            "a b.service",
            "a/b.service",
            "a\nb.service",
            "ä.service",
            long.as_str(),
        ] {
            assert!(check_service(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn podman_names_follow_podman() {
        for ok in ["systemd-data", "a.b_c-1", "0"] {
            assert_eq!(check_podman_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(201);
        for bad in [
            "",
            "-H",
            "--url=ssh://x",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "a\0b",
            long.as_str(),
        ] {
            assert!(check_podman_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_are_data_of_sane_shape() {
        assert_eq!(check_label("app", "web"), Ok(()));
        assert_eq!(check_label("com.example/x", "a=b, c"), Ok(()));
        assert!(check_label("", "x").is_err());
        assert!(check_label("a=b", "x").is_err());
        assert!(check_label("a", "x\0y").is_err());
        assert!(check_label("a", "\x1b[31mred").is_err());
        assert!(check_label("a", &"x".repeat(5000)).is_err());
    }
}
