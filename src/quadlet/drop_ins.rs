//! Which drop-in directories apply to a quadlet unit, in podman 5.4's order.
//!
//! Quadlet (`UnitFile.GetUnitDropinPaths` in `pkg/systemd/parser/unitfile.go`,
//! used by `loadUnitDropins` in `cmd/quadlet/main.go`) looks, for
//! `foo-bar@baz.container`, in these directories of **every** search
//! directory, most specific first:
//!
//! `foo-bar@baz.container.d`, `foo-bar@.container.d`, `foo-@.container.d`,
//! `foo-.container.d`, `container.d`
//!
//! The search directories are walked in order and, inside each, the names
//! above in order; the first `.conf` of a given file name wins, and the
//! winners are merged in lexical order of their file names. Consequence
//! (checked on podman 5.4.2): `~/.config/containers/systemd/container.d/10-x.conf`
//! masks `~/.config/containers/systemd/app/web.container.d/10-x.conf`,
//! because the top directory is searched before its subdirectory.

/// Go's `filepath.Ext`: the suffix from the last `.` of the last path
/// element (`".conf"` for a file named `.conf`, `""` without a dot).
pub fn go_ext(name: &str) -> &str {
    let element_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[element_start..].rfind('.') {
        Some(i) => &name[element_start + i..],
        None => "",
    }
}

/// Quadlet's `removeExtension`: the name without its extension, unless the
/// only dot is the first character (`.container` stays `.container`).
pub fn remove_extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// Names of the drop-in directories that apply to the unit file `filename`
/// (a file name, no directory), most specific first.
pub fn dropin_dir_names(filename: &str) -> Vec<String> {
    let ext = go_ext(filename);
    let basename = &filename[..filename.len() - ext.len()];
    let (unit_name, instance, is_template) = match basename.split_once('@') {
        Some((unit, instance)) => (unit, instance, true),
        None => (basename, "", false),
    };
    let dropin_ext = format!("{ext}.d");
    let mut paths = vec![dropin_ext
        .strip_prefix('.')
        .unwrap_or(&dropin_ext)
        .to_owned()];
    let parts: Vec<&str> = unit_name.split('-').collect();
    if parts.len() > 1 {
        for i in 0..parts.len() - 1 {
            let truncated = format!("{}-", parts[..=i].join("-"));
            paths.push(format!("{truncated}{dropin_ext}"));
            if is_template {
                paths.push(format!("{truncated}@{dropin_ext}"));
            }
        }
    }
    if !instance.is_empty() {
        paths.push(format!("{unit_name}@{dropin_ext}"));
    }
    paths.push(format!("{filename}.d"));
    paths.reverse();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_unit() {
        assert_eq!(
            dropin_dir_names("web.container"),
            ["web.container.d", "container.d"]
        );
    }

    #[test]
    fn dashed_unit_gets_prefix_directories() {
        assert_eq!(
            dropin_dir_names("foo-bar-baz.volume"),
            [
                "foo-bar-baz.volume.d",
                "foo-bar-.volume.d",
                "foo-.volume.d",
                "volume.d"
            ]
        );
    }

    #[test]
    fn templates_and_instances() {
        assert_eq!(
            dropin_dir_names("foo-bar@baz.container"),
            [
                "foo-bar@baz.container.d",
                "foo-bar@.container.d",
                "foo-@.container.d",
                "foo-.container.d",
                "container.d"
            ]
        );
        assert_eq!(dropin_dir_names("foo@.pod"), ["foo@.pod.d", "pod.d"]);
    }

    #[test]
    fn odd_names_do_not_panic() {
        assert_eq!(
            dropin_dir_names(".container"),
            [".container.d", "container.d"]
        );
        assert_eq!(dropin_dir_names("a--b.kube").len(), 4);
        assert_eq!(dropin_dir_names("noext"), ["noext.d", "d"]);
        assert_eq!(dropin_dir_names(""), [".d", "d"]);
    }

    #[test]
    fn extensions_like_go() {
        assert_eq!(go_ext("a.conf"), ".conf");
        assert_eq!(go_ext(".conf"), ".conf");
        assert_eq!(go_ext("a"), "");
        assert_eq!(go_ext("x.d/a"), "");
        assert_eq!(remove_extension("web.container"), "web");
        assert_eq!(remove_extension(".container"), ".container");
        assert_eq!(remove_extension("a.b.volume"), "a.b");
    }
}
