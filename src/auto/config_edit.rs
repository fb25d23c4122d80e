//! Minimal edits of leger's `config.yaml`: setting one boolean under
//! `auto:` (what `enable` and `disable` do when the generator is installed).
//!
//! The file is leger's and hand-written: it must keep its comments, order
//! and formatting. So the edit is made on the text (one line replaced, or a
//! few lines inserted) and then proven: the edited text is parsed and must
//! equal the original document with exactly that one value changed. Any
//! construct the line editor does not understand (flow style, anchors,
//! multi-line values, several documents) fails that proof or an earlier
//! check, and the edit is refused with a message saying what to write by
//! hand. The file is never left half-written: a temporary file is renamed
//! over it (over the real file when `config.yaml` is a symlink).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fs_err as fs;
use serde_yaml_ng::{Mapping, Value};

use crate::error::{Error, Result};
use crate::layout::Scope;

/// Why an edit cannot be made safely.
pub type Refusal = String;

/// Set `path` (e.g. `["auto", "deployments", "web", "enabled"]`) to `value`
/// in the YAML `text`, touching as little as possible, and prove that
/// nothing else changed (see the module doc).
pub fn set_bool(text: &str, path: &[&str], value: bool) -> std::result::Result<String, Refusal> {
    let before = parse_mapping(text)?;
    let edited = edit_lines(text, path, value)?;
    let mut expected = before;
    set_in_value(&mut expected, path, value)?;
    let after =
        parse_mapping(&edited).map_err(|e| format!("the edited file would not parse ({e})"))?;
    if after != expected {
        return Err("the edit would change more than that one value".to_owned());
    }
    Ok(edited)
}

/// Apply [`set_bool`] to the file at `path` (created when missing) and
/// write it atomically, keeping its permissions. Refusals become a user
/// error saying what to set by hand, and how to reload `scope`'s manager.
pub fn set_bool_in_file(file: &Path, key: &[&str], value: bool, scope: Scope) -> Result<()> {
    // A config.yaml kept in a dotfiles repository is often a symlink: edit
    // the file it points to, never replace the link.
    let real = match fs::canonicalize(file) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => file.to_owned(),
        Err(e) => return Err(e.into()),
    };
    let text = match fs::read_to_string(&real) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let edited = set_bool(&text, key, value).map_err(|why| {
        Error::user(format!("cannot edit {} safely: {why}", file.display())).with_hint(format!(
            "set `{}: {value}` in that file by hand, then run `{} daemon-reload`",
            key.join("."),
            scope.systemctl_words()
        ))
    })?;
    if let Some(parent) = real.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = real.with_file_name(format!(
        ".{}.leger-backup-{}.tmp",
        real.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.yaml"),
        std::process::id()
    ));
    fs::write(&tmp, edited)?;
    let mode = std::fs::metadata(&real)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if let Err(e) = fs::rename(&tmp, &real) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}

/// A content line: its indentation and the text after it (without the line
/// end). Blank lines and comment lines have none.
fn content(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let rest = body.trim_start_matches(' ');
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    Some((body.len() - rest.len(), rest))
}

/// Split `key: value # comment` into the key and what follows its colon.
fn key_of(rest: &str) -> Option<(String, &str)> {
    let (key, after) = match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let end = rest[1..].find(quote)? + 1;
            let after = rest[end + 1..].strip_prefix(':')?;
            (rest[1..end].to_owned(), after)
        }
        _ => {
            let bytes = rest.as_bytes();
            let i = (0..bytes.len()).find(|&i| {
                bytes[i] == b':' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace())
            })?;
            if rest[..i].contains(" #") {
                return None;
            }
            (rest[..i].trim_end().to_owned(), &rest[i + 1..])
        }
    };
    if after.chars().next().is_some_and(|c| !c.is_whitespace()) {
        return None;
    }
    Some((key, after))
}

/// The value after a colon without its trailing comment, and the comment
/// with the blanks before it (kept when the value is replaced).
fn value_and_comment(after: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev_blank = true;
    for (i, c) in after.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && prev_blank => quote = Some(c),
            None if c == '#' && prev_blank => {
                let start = after[..i].trim_end().len();
                return (after[..i].trim(), &after[start..]);
            }
            None => {}
        }
        prev_blank = c.is_whitespace();
    }
    (after.trim(), "")
}

/// A key as written in YAML: plain when it cannot be read as anything but
/// a string, double-quoted otherwise (`"123"`, `"true"`).
fn yaml_key(key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        key.to_owned()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The edit on the lines (proven by the caller).
fn edit_lines(text: &str, path: &[&str], value: bool) -> std::result::Result<String, Refusal> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
        }
    }
    // One document, optionally opened by `---`.
    let mut start = 0;
    let mut seen_content = false;
    for (i, line) in lines.iter().enumerate() {
        let marker = line.starts_with("---") || line.starts_with("...");
        if marker {
            if seen_content || line.trim_end() != "---" {
                return Err(
                    "it holds document markers (`---`/`...`) the editor does not handle".into(),
                );
            }
            start = i + 1;
            seen_content = true;
        } else if content(line).is_some() {
            seen_content = true;
        }
    }
    let value_text = if value { "true" } else { "false" };
    let mut range = (start, lines.len());
    let mut default_indent = 0;
    for (depth, key) in path.iter().enumerate() {
        let is_leaf = depth + 1 == path.len();
        let indent = (range.0..range.1)
            .find_map(|i| content(&lines[i]).map(|(ind, _)| ind))
            .unwrap_or(default_indent);
        let mut found = None;
        for (i, line) in lines.iter().enumerate().take(range.1).skip(range.0) {
            let Some((ind, rest)) = content(line) else {
                continue;
            };
            if ind < indent {
                return Err(format!("line {} is indented unexpectedly", i + 1));
            }
            if ind > indent {
                continue;
            }
            if rest == "-" || rest.starts_with("- ") || rest.starts_with("? ") {
                return Err(format!(
                    "line {} is not a `key: value` line where one is expected",
                    i + 1
                ));
            }
            let (k, after) = key_of(rest)
                .ok_or_else(|| format!("line {} cannot be read as `key: value`", i + 1))?;
            if k == *key {
                found = Some((i, after.len()));
                break;
            }
        }
        let Some((i, after_len)) = found else {
            // Insert the rest of the path after the block's last content line.
            let pos = (range.0..range.1)
                .rev()
                .find(|&j| content(&lines[j]).is_some())
                .map_or(range.0, |j| j + 1);
            let mut inserted = String::new();
            for (d, k) in path[depth..].iter().enumerate() {
                let pad = " ".repeat(indent + 2 * d);
                if depth + d + 1 == path.len() {
                    inserted.push_str(&format!("{pad}{}: {value_text}\n", yaml_key(k)));
                } else {
                    inserted.push_str(&format!("{pad}{}:\n", yaml_key(k)));
                }
            }
            lines.insert(pos, inserted);
            return Ok(lines.concat());
        };
        let body = lines[i].trim_end_matches(['\n', '\r']).to_owned();
        let (prefix, after) = body.split_at(body.len() - after_len);
        let (val, comment) = value_and_comment(after);
        let block_end = (i + 1..range.1)
            .find(|&j| content(&lines[j]).is_some_and(|(ind, _)| ind <= indent))
            .unwrap_or(range.1);
        let has_children = (i + 1..block_end).any(|j| content(&lines[j]).is_some());
        let dotted = path[..=depth].join(".");
        if is_leaf {
            if has_children || val.is_empty() {
                return Err(format!("`{dotted}` spans several lines"));
            }
            if val.starts_with(['&', '*', '!', '|', '>', '{', '[']) {
                return Err(format!(
                    "`{dotted}` uses an anchor, alias, tag or block value"
                ));
            }
            lines[i] = format!("{prefix} {value_text}{comment}\n");
            return Ok(lines.concat());
        }
        match val {
            "" => {}
            "{}" | "~" | "null" | "Null" | "NULL" if !has_children => {
                lines[i] = format!("{prefix}{comment}\n");
            }
            _ => {
                return Err(format!(
                    "`{dotted}` is written in flow style or with an anchor, alias or tag"
                ))
            }
        }
        range = (i + 1, block_end);
        default_indent = indent + 2;
    }
    Err("empty path".to_owned())
}

fn parse_mapping(text: &str) -> std::result::Result<Value, Refusal> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("it does not parse as YAML: {e}"))?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        _ => Err("its top level is not a mapping".to_owned()),
    }
}

fn set_in_value(root: &mut Value, path: &[&str], value: bool) -> std::result::Result<(), Refusal> {
    let mut node = root;
    for (i, key) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!("`{}` is not a mapping", path[..i].join(".")));
        };
        let k = Value::String((*key).to_owned());
        if i + 1 == path.len() {
            map.insert(k, Value::Bool(value));
            return Ok(());
        }
        if !map.contains_key(&k) {
            map.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&k).expect("inserted above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &[&str] = &["auto", "deployments", "web", "enabled"];

    fn set(text: &str, value: bool) -> String {
        set_bool(text, PATH, value).unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
    }

    #[test]
    fn empty_file_gets_the_section() {
        assert_eq!(
            set("", false),
            "auto:\n  deployments:\n    web:\n      enabled: false\n"
        );
    }

    #[test]
    fn appends_after_leger_keys_keeping_everything() {
        let text = "# leger settings\nregistry: ghcr.io # main\nbackup:\n  keep_manual: 3\n";
        assert_eq!(
            set(text, true),
            format!("{text}auto:\n  deployments:\n    web:\n      enabled: true\n")
        );
        // No trailing newline.
        assert_eq!(
            set("registry: x", true),
            "registry: x\nauto:\n  deployments:\n    web:\n      enabled: true\n"
        );
    }

    #[test]
    fn replaces_in_place_keeping_comments_and_indentation() {
        let text = "auto:\n    enabled: true   # all\n    deployments:\n        web:\n            enabled: true # keep\n        db: {enabled: false}\nother: 1\n";
        assert_eq!(
            set(text, false),
            "auto:\n    enabled: true   # all\n    deployments:\n        web:\n            enabled: false # keep\n        db: {enabled: false}\nother: 1\n"
        );
    }

    #[test]
    fn inserts_into_existing_blocks() {
        let text = "auto:\n  min_interval: 10m\n\n# leger's own\nleger: {a: 1}\n";
        assert_eq!(
            set(text, true),
            "auto:\n  min_interval: 10m\n  deployments:\n    web:\n      enabled: true\n\n# leger's own\nleger: {a: 1}\n"
        );
        let text = "auto:\n  deployments:\n    db:\n      enabled: false\n";
        assert_eq!(
            set(text, true),
            "auto:\n  deployments:\n    db:\n      enabled: false\n    web:\n      enabled: true\n"
        );
        let text = "auto:\n  deployments: {}\n";
        assert_eq!(
            set(text, true),
            "auto:\n  deployments:\n    web:\n      enabled: true\n"
        );
        let text = "---\nauto:\n";
        assert_eq!(
            set(text, true),
            "---\nauto:\n  deployments:\n    web:\n      enabled: true\n"
        );
    }

    #[test]
    fn top_level_switch() {
        assert_eq!(
            set_bool("auto:\n  enabled: yes\n", &["auto", "enabled"], false).unwrap(),
            "auto:\n  enabled: false\n"
        );
    }

    #[test]
    fn awkward_keys_are_quoted() {
        let out = set_bool("", &["auto", "deployments", "123", "enabled"], true).unwrap();
        assert!(out.contains("\"123\":"), "{out}");
        let out = set_bool("", &["auto", "deployments", "true", "enabled"], true).unwrap();
        assert!(out.contains("\"true\":"), "{out}");
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        for text in [
            "auto: {deployments: {web: {enabled: true}}}\n",
            "auto:\n  deployments:\n    web: {enabled: true}\n",
            "base: &b\n  enabled: true\nauto:\n  deployments:\n    web: *b\n",
            "a: 1\n---\nb: 2\n",
            "- a\n- b\n",
            "auto:\n  deployments:\n    web:\n      enabled:\n        true\n",
            "auto: [1]\n",
            "auto:\n  deployments:\n    web:\n      enabled: &x true\n",
        ] {
            assert!(set_bool(text, PATH, false).is_err(), "accepted:\n{text}");
        }
    }

    #[test]
    fn file_edit_keeps_mode_and_follows_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("dotfiles/config.yaml");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "leger: 1\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = tmp.path().join("config.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_bool_in_file(&link, &["auto", "enabled"], false, Scope::User).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "leger: 1\nauto:\n  enabled: false\n"
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A missing file is created.
        let fresh = tmp.path().join("new/config.yaml");
        set_bool_in_file(&fresh, &["auto", "enabled"], true, Scope::User).unwrap();
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            "auto:\n  enabled: true\n"
        );
        // A refusal leaves the file alone and says what to do.
        std::fs::write(&real, "auto: {enabled: true}\n").unwrap();
        let err = set_bool_in_file(&link, &["auto", "enabled"], false, Scope::User).unwrap_err();
        assert!(err.message.contains("cannot edit"), "{}", err.message);
        let hint = err.hint.unwrap();
        assert!(hint.contains("auto.enabled: false"), "{hint}");
        assert!(hint.contains("`systemctl --user daemon-reload`"), "{hint}");
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "auto: {enabled: true}\n"
        );
    }

    /// Root is told to reload the system manager, not a user manager.
    #[test]
    fn refusal_hint_names_the_system_manager_in_system_scope() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.yaml");
        std::fs::write(&file, "auto: {enabled: true}\n").unwrap();
        let err = set_bool_in_file(&file, &["auto", "enabled"], false, Scope::System).unwrap_err();
        let hint = err.hint.unwrap();
        assert!(hint.contains("`systemctl daemon-reload`"), "{hint}");
        assert!(!hint.contains("--user"), "{hint}");
    }
}
