//! Metadata read from disk is untrusted: [`Metadata::load`] parses it and
//! checks every path, mode and name in it before anything uses them.

use std::io::Read;
use std::path::{Component, Path};

use super::stop_result::is_systemd_word;
use super::{volume_tree, Metadata, FORMAT_VERSION, MAX_METADATA_BYTES};
use crate::error::{Error, Result};
use crate::names;

impl Metadata {
    /// Parse and check metadata read from `path` (the metadata file).
    /// Every path in it must stay inside the backup directory.
    pub fn load(path: &Path) -> Result<Metadata> {
        let unreadable = |e: std::io::Error| {
            Error::user(format!("cannot read backup metadata: {e}")).with_hint(
                "the backup is incomplete or damaged; delete it with `leger-backup delete <ID>`",
            )
        };
        let mut bytes = Vec::new();
        fs_err::File::open(path)
            .map_err(unreadable)?
            .take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 > MAX_METADATA_BYTES {
            return Err(Error::user(format!(
                "{}: larger than {} MiB: not metadata leger-backup writes",
                path.display(),
                MAX_METADATA_BYTES >> 20
            ))
            .with_hint("the backup cannot be trusted; delete it with `leger-backup delete <ID>`"));
        }
        Self::parse(&bytes, path)
    }

    /// Parse and check metadata bytes; `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Metadata> {
        let metadata: Metadata = serde_json::from_slice(bytes).map_err(|e| {
            Error::user(format!("{}: malformed metadata: {e}", path.display())).with_hint(
                "the backup cannot be trusted; delete it with `leger-backup delete <ID>`",
            )
        })?;
        metadata.check(path)?;
        Ok(metadata)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |what: String| {
            Error::user(format!("{}: {what}", path.display()))
                .with_hint("the metadata is damaged or hostile; the backup is refused")
        };
        if let Some(v) = self.format_version {
            if v > FORMAT_VERSION {
                return Err(bad(format!(
                    "format_version {v} is newer than this leger-backup understands ({FORMAT_VERSION})"
                ))
                .with_hint("upgrade leger-backup to read this backup"));
            }
        }
        crate::deployment::validate_name(&self.deployment_name)
            .map_err(|e| bad(format!("deployment_name: {}", e.message)))?;
        for volume in &self.volumes {
            if let Some(archive) = &volume.archive_path {
                check_relative(archive)
                    .map_err(|why| bad(format!("archive_path {archive:?} {why}")))?;
            }
            if let Some(tree) = &volume.tree {
                let expected = volume_tree(&volume.name);
                if *tree != expected || volume.archive_path.is_some() {
                    return Err(bad(format!(
                        "volume {:?}: tree {tree:?} is not {expected:?}, or comes with an archive",
                        volume.name
                    )));
                }
            }
            if volume.special_files.len() > crate::backup::tar_guard::MAX_SPECIALS {
                return Err(bad(format!(
                    "volume {:?} records more than {} device nodes and FIFOs",
                    volume.name,
                    crate::backup::tar_guard::MAX_SPECIALS
                )));
            }
            for special in &volume.special_files {
                check_relative(Path::new(special))
                    .map_err(|why| bad(format!("special file {special:?} {why}")))?;
            }
        }
        for file in &self.files {
            for p in [&file.path, &file.stored_as] {
                check_relative(p).map_err(|why| bad(format!("file path {p:?} {why}")))?;
            }
            check_mode(file.mode).map_err(|why| bad(format!("file {:?}: {why}", file.path)))?;
        }
        for dir in &self.dirs {
            check_relative(&dir.path)
                .map_err(|why| bad(format!("directory path {:?} {why}", dir.path)))?;
            check_mode(dir.mode).map_err(|why| bad(format!("directory {:?}: {why}", dir.path)))?;
        }
        super::host_paths::check_entries(&self.host_paths).map_err(bad)?;
        self.check_names().map_err(bad)
    }

    /// Every name that reaches `podman` or `systemctl` follows its grammar
    /// ([`crate::names`]): a backup naming `--url=…` or a path is refused
    /// here, so `list` and `info` show it invalid too.
    fn check_names(&self) -> std::result::Result<(), String> {
        let service = |field: &str, name: &str| {
            names::check_service(name).map_err(|why| format!("{field} {name:?} {why}"))
        };
        for s in &self.services {
            service("services", &s.name)?;
        }
        for v in &self.volumes {
            names::check_podman_name(&v.name)
                .map_err(|why| format!("volume name {:?} {why}", v.name))?;
            if let Some(s) = &v.volume_service {
                service("volume_service", s)?;
            }
            for s in &v.used_by {
                service("used_by", s)?;
            }
            if let Some(d) = &v.driver {
                if !d.is_empty() {
                    names::check_podman_name(d)
                        .map_err(|why| format!("driver {d:?} of volume {} {why}", v.name))?;
                }
            }
            if let Some(file) = &v.defined_by {
                check_relative(Path::new(file))
                    .map_err(|why| format!("defined_by {file:?} {why}"))?;
            }
            for (k, value) in v.labels.iter().chain(&v.options) {
                names::check_label(k, value)
                    .map_err(|why| format!("label or option {k:?} of volume {} {why}", v.name))?;
            }
        }
        if let Some(stop) = &self.stop_result {
            let words = [
                Some(&stop.service_result),
                stop.exit_code.as_ref(),
                stop.exit_status.as_ref(),
            ];
            if let Some(word) = words.into_iter().flatten().find(|w| !is_systemd_word(w)) {
                return Err(format!(
                    "stop_result {word:?} is not a systemd result (up to 32 letters, digits, '-', '_')"
                ));
            }
        }
        Ok(())
    }
}

/// A path from metadata must be relative and must not climb out.
pub fn check_relative(path: &Path) -> std::result::Result<(), &'static str> {
    if path.as_os_str().is_empty() {
        return Err("is empty");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    Ok(())
}

/// A mode from metadata holds permission bits only: anything above
/// `0o7777` (a file type, garbage) was not written by leger-backup.
pub fn check_mode(mode: u32) -> std::result::Result<(), String> {
    if mode > 0o7777 {
        return Err(format!("mode {mode:#o} has bits above 0o7777"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert!(check_relative(Path::new("volumes/a.tar.zst")).is_ok());
        assert_eq!(check_relative(Path::new("/etc/passwd")), Err("is absolute"));
        assert_eq!(
            check_relative(Path::new("volumes/../../x")),
            Err("contains '..'")
        );
        assert_eq!(check_relative(Path::new("")), Err("is empty"));
    }

    #[test]
    fn traversal_is_refused() {
        let json = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,
            "volumes":[{"name":"v","archive_path":"../../etc/shadow","size":0}]}"#;
        let err = Metadata::parse(json, Path::new("m.json")).unwrap_err();
        assert!(err.message.contains("contains '..'"), "{}", err.message);
    }

    #[test]
    fn future_format_is_refused() {
        let json = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"manual","reason":"m","size":0,"quadlet_files":[],"volumes":[],"format_version":99}"#;
        let err = Metadata::parse(json, Path::new("m.json")).unwrap_err();
        assert!(err.message.contains("format_version 99"), "{}", err.message);
    }

    /// Names that would reach podman or systemctl as options, or as units
    /// that are not services, make the metadata invalid, naming the field.
    #[test]
    fn option_like_names_are_refused() {
        let cases = [
            (
                r#""services":[{"name":"--host=x","was_running":true}]"#,
                "services \"--host=x\"",
            ),
            (
                r#""services":[{"name":"sshd.socket","was_running":true}]"#,
                "services \"sshd.socket\"",
            ),
            (
                r#""volumes":[{"name":"--url=ssh://x","archive_path":null,"size":0}]"#,
                "volume name \"--url=ssh://x\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"used_by":["-H"]}]"#,
                "used_by \"-H\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"volume_service":"--user"}]"#,
                "volume_service \"--user\"",
            ),
            (
                r#""volumes":[{"name":"v","archive_path":null,"size":0,"labels":{"a":"b\u0000c"}}]"#,
                "control character",
            ),
        ];
        for (field, expected) in cases {
            let json = format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"volumes":[],"format_version":1,{field}}}"#
            );
            // A later key wins in serde_json only when unique: drop the
            // empty `volumes` when the case brings its own.
            let json = if field.starts_with(r#""volumes""#) {
                json.replacen(r#""volumes":[],"#, "", 1)
            } else {
                json
            };
            let err = Metadata::parse(json.as_bytes(), Path::new("m.json")).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn stop_result_is_checked_when_loaded() {
        let json = |stop: &str| {
            format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
                "type":"automatic","reason":"on-stop","size":0,"quadlet_files":[],"volumes":[],
                "format_version":1,"stop_result":{stop}}}"#
            )
        };
        let ok = Metadata::parse(
            json(r#"{"service_result":"exit-code","exit_code":"exited","exit_status":"1"}"#)
                .as_bytes(),
            Path::new("m.json"),
        )
        .unwrap();
        assert!(ok.after_failed_stop());
        let err = Metadata::parse(
            json(r#"{"service_result":"signal","exit_status":"\u001b]0;x\u0007"}"#).as_bytes(),
            Path::new("m.json"),
        )
        .unwrap_err();
        assert!(
            err.message.contains("is not a systemd result"),
            "{}",
            err.message
        );
        // Absent in older backups.
        let old = br#"{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z",
            "type":"automatic","reason":"on-stop","size":0,"quadlet_files":[],"volumes":[]}"#;
        assert!(!Metadata::parse(old, Path::new("m.json"))
            .unwrap()
            .after_failed_stop());
    }

    #[test]
    fn a_volume_tree_is_exactly_its_own_name() {
        let with = |tree: &str, archive: &str| {
            format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,"volumes":[{{"name":"db","archive_path":{archive},"size":0,"tree":{tree:?}}}]}}"#
            )
        };
        assert!(
            Metadata::parse(with("volumes/db", "null").as_bytes(), Path::new("m.json")).is_ok()
        );
        for (tree, archive) in [
            ("volumes/other", "null"),
            ("volumes/db/../../etc", "null"),
            ("/volumes/db", "null"),
            ("volumes/db", "\"volumes/db.tar.zst\""),
        ] {
            let err =
                Metadata::parse(with(tree, archive).as_bytes(), Path::new("m.json")).unwrap_err();
            assert!(err.message.contains("tree"), "{tree}: {}", err.message);
        }
    }

    proptest::proptest! {
        /// Metadata is untrusted input: arbitrary bytes give an error naming
        /// the file, never a panic.
        #[test]
        fn loader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            if let Err(e) = Metadata::parse(&bytes, Path::new("m.json")) {
                proptest::prop_assert!(e.message.contains("m.json"));
            }
        }

        /// Valid JSON of the right shape with hostile strings in its paths.
        #[test]
        fn hostile_paths_never_pass(path in "(/|\\.\\./|[a-z]{1,3}/){1,4}[a-z.]{0,6}") {
            let json = format!(
                r#"{{"id":"x","deployment_name":"web","created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"m","size":0,"quadlet_files":[],"format_version":1,"volumes":[{{"name":"v","archive_path":{},"size":0}}]}}"#,
                serde_json::to_string(&path).unwrap()
            );
            let result = Metadata::parse(json.as_bytes(), Path::new("m.json"));
            if path.starts_with('/') || path.split('/').any(|c| c == "..") {
                proptest::prop_assert!(result.is_err());
            }
        }
    }
}
