//! What the values of `Volume=` and `Mount=` mean, after Quadlet and before
//! systemd.
//!
//! Quadlet rewrites only two things in a volume source
//! (`handleStorageSource` in `pkg/systemd/quadlet/quadlet.go`): a source
//! starting with `.` becomes an absolute path relative to the unit file's
//! directory (so `./data` and `.hidden` are bind mounts), and `x.volume`
//! becomes that unit's Podman volume name. Everything else reaches the
//! command line verbatim, where systemd expands `%` specifiers and `$VAR`
//! environment references before podman sees it. Those are reported, never
//! guessed.

/// systemd specifiers that expand to an absolute path (systemd.unit(5),
/// "Specifiers"): a source starting with one is a host path.
const PATH_SPECIFIERS: &[char] = &[
    'C', 'd', 'D', 'E', 'f', 'h', 'L', 's', 'S', 't', 'T', 'V', 'y', 'Y',
];

/// The environment variables (`${NAME}`, `$NAME`) and specifiers (`%i`)
/// that systemd substitutes in `value`, in order of appearance, without
/// duplicates. `$$` and `%%` are literal and not reported.
pub fn substitutions(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '$' => match chars.get(i + 1) {
                Some('$') => i += 2,
                Some('{') => {
                    if let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') {
                        let name: String = chars[i + 2..i + 2 + close].iter().collect();
                        push(name);
                        i += close + 3;
                    } else {
                        i += 1;
                    }
                }
                Some(&c) if c == '_' || c.is_ascii_alphabetic() => {
                    let len = chars[i + 1..]
                        .iter()
                        .take_while(|&&c| c == '_' || c.is_ascii_alphanumeric())
                        .count();
                    push(chars[i + 1..i + 1 + len].iter().collect());
                    i += len + 1;
                }
                _ => i += 1,
            },
            '%' => match chars.get(i + 1) {
                Some('%') => i += 2,
                Some(&c) => {
                    push(format!("%{c}"));
                    i += 2;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    out
}

/// Whether `value` starts with a specifier systemd replaces by an absolute
/// path (`%h/data`).
pub fn starts_with_path_specifier(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next() == Some('%') && chars.next().is_some_and(|c| PATH_SPECIFIERS.contains(&c))
}

/// Podman's rule for volume names (`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`).
pub fn is_valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Go's `filepath.Join(dir, rel)`: joined and lexically cleaned.
pub fn join_clean(dir: &str, rel: &str) -> String {
    let joined = if dir.is_empty() {
        rel.to_owned()
    } else {
        format!("{dir}/{rel}")
    };
    clean(&joined)
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// A `Volume=` value split as Quadlet splits it (`strings.SplitN(v, ":", 3)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec<'a> {
    /// Before the first `:`; empty when there is none or it is empty.
    pub source: &'a str,
    /// The container path.
    pub dest: &'a str,
    /// Options after the second `:` (without it), if any.
    pub options: Option<&'a str>,
}

/// Split a `Volume=` value.
pub fn split_volume(value: &str) -> VolumeSpec<'_> {
    let mut parts = value.splitn(3, ':');
    let first = parts.next().unwrap_or("");
    match parts.next() {
        Some(dest) => VolumeSpec {
            source: first,
            dest,
            options: parts.next(),
        },
        None => VolumeSpec {
            source: "",
            dest: first,
            options: None,
        },
    }
}

/// A `Mount=` word read as podman 5.4 reads it (`FindMountType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// Not one CSV record.
    BadSyntax,
    /// No `type=`: podman 5.4 rejects it (5.6 defaults to `volume`).
    NoType,
    /// A mount Quadlet resolves a source for.
    WithSource {
        /// `volume`, `bind`, `glob` or `image`.
        kind: String,
        /// The last `source=`/`src=` value; `None` when there is none (or
        /// it is empty), which makes Quadlet 5.4.2 crash.
        source: Option<String>,
        /// A `source`/`src` key without `=`: Quadlet refuses the unit.
        source_without_value: bool,
        /// The last `destination=`/`dst=`/`target=` value, for messages.
        dest: Option<String>,
    },
    /// Any other type (`tmpfs`, `devpts`...): nothing to resolve.
    Other,
}

/// Read a `Mount=` word.
pub fn parse_mount(word: &str) -> MountSpec {
    let Some(fields) = super::split::csv_record(word) else {
        return MountSpec::BadSyntax;
    };
    let mut kind = None;
    let mut tokens = Vec::new();
    for field in fields {
        let kv: Vec<&str> = field.split('=').collect();
        if kind.is_none() && kv.len() == 2 && kv[0] == "type" {
            kind = Some(kv[1].to_owned());
        } else {
            tokens.push(field);
        }
    }
    let Some(kind) = kind else {
        return MountSpec::NoType;
    };
    if !matches!(kind.as_str(), "volume" | "bind" | "glob" | "image") {
        return MountSpec::Other;
    }
    let mut source = None;
    let mut source_without_value = false;
    let mut dest = None;
    for token in &tokens {
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token.as_str(), None),
        };
        match (key, value) {
            ("source" | "src", Some(v)) => source = Some(v.to_owned()),
            ("source" | "src", None) => source_without_value = true,
            ("destination" | "dst" | "target", Some(v)) => dest = Some(v.to_owned()),
            _ => {}
        }
    }
    MountSpec::WithSource {
        kind,
        source: source.filter(|s| !s.is_empty()),
        source_without_value,
        dest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_variables_and_specifiers() {
        assert_eq!(
            substitutions("${UPLOAD_LOCATION}:/data"),
            ["UPLOAD_LOCATION"]
        );
        assert_eq!(substitutions("$HOME/x:$A_1:/y"), ["HOME", "A_1"]);
        assert_eq!(substitutions("tv-%i:/t %h"), ["%i", "%h"]);
        assert!(substitutions("a$$b%%c:/d").is_empty());
        assert!(substitutions("plain:/d").is_empty());
        assert_eq!(substitutions("${unclosed"), Vec::<String>::new());
        assert_eq!(substitutions("$"), Vec::<String>::new());
        assert_eq!(substitutions("%"), Vec::<String>::new());
        assert_eq!(substitutions("${A}${A}"), ["A"]);
    }

    #[test]
    fn path_specifiers() {
        assert!(starts_with_path_specifier("%h/x"));
        assert!(starts_with_path_specifier("%t/sock"));
        assert!(!starts_with_path_specifier("%u-data"));
        assert!(!starts_with_path_specifier("%%h"));
        assert!(!starts_with_path_specifier("x%h"));
    }

    #[test]
    fn volume_names() {
        assert!(is_valid_volume_name("systemd-data"));
        assert!(is_valid_volume_name("a.b_c-1"));
        assert!(!is_valid_volume_name("\"q"));
        assert!(!is_valid_volume_name("-x"));
        assert!(!is_valid_volume_name(""));
    }

    #[test]
    fn cleans_like_go() {
        assert_eq!(join_clean("/q/dep", "./data"), "/q/dep/data");
        assert_eq!(join_clean("/q/dep", ".hidden"), "/q/dep/.hidden");
        assert_eq!(join_clean("/q/dep", "../x/./y/"), "/q/x/y");
        assert_eq!(join_clean("/", "../.."), "/");
        assert_eq!(join_clean("", "./a"), "a");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn splits_volumes_like_quadlet() {
        assert_eq!(
            split_volume("data:/d:ro,Z"),
            VolumeSpec {
                source: "data",
                dest: "/d",
                options: Some("ro,Z")
            }
        );
        assert_eq!(
            split_volume("/anon"),
            VolumeSpec {
                source: "",
                dest: "/anon",
                options: None
            }
        );
        assert_eq!(split_volume("a:/b:c:d").options, Some("c:d"));
        assert_eq!(split_volume(":/e:ro").source, "");
    }

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("type=volume,src=a,destination=/d,source=b"),
            MountSpec::WithSource {
                kind: "volume".into(),
                source: Some("b".into()),
                source_without_value: false,
                dest: Some("/d".into())
            }
        );
        assert_eq!(parse_mount("source=a,target=/d"), MountSpec::NoType);
        assert_eq!(parse_mount("type=tmpfs,destination=/t"), MountSpec::Other);
        assert_eq!(parse_mount("type=volume,source=\"a"), MountSpec::BadSyntax);
        assert_eq!(
            parse_mount("dst=/x,type=volume"),
            MountSpec::WithSource {
                kind: "volume".into(),
                source: None,
                source_without_value: false,
                dest: Some("/x".into())
            }
        );
        // `type=a=b` is not a type token.
        assert_eq!(parse_mount("type=volume=x,source=a"), MountSpec::NoType);
        assert!(matches!(
            parse_mount("type=bind,source,destination=/x"),
            MountSpec::WithSource {
                source_without_value: true,
                ..
            }
        ));
    }
}
