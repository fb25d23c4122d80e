//! The deployment's settings applied to a classification:
//! `backup.bind_mounts` and the `include:`/`exclude:` globs of
//! `backup.deployments.NAME`.

use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};

use super::classify::Kind;
use crate::config::{BackupConfig, BindMounts, PathGlob};
use crate::error::{Error, Result};

/// Compiled settings for one deployment.
#[derive(Debug, Clone)]
pub struct Policy {
    bind_mounts: BindMounts,
    include: Globs,
    exclude: Globs,
}

/// Globs and their text, to say which one matched.
#[derive(Debug, Clone)]
struct Globs {
    texts: Vec<String>,
    set: GlobSet,
}

impl Globs {
    fn new(globs: &[PathGlob], home: &Path) -> Result<Globs> {
        let mut builder = GlobSetBuilder::new();
        for glob in globs {
            builder.add(glob.compile(home).map_err(|e| bad_glob(glob, &e))?);
        }
        let set = builder
            .build()
            .map_err(|e| Error::config(format!("invalid glob: {e}")))?;
        Ok(Globs {
            texts: globs.iter().map(|g| g.0.clone()).collect(),
            set,
        })
    }

    /// The first glob matching `path`.
    fn first_match(&self, path: &Path) -> Option<&str> {
        let first = *self.set.matches(path).first()?;
        Some(&self.texts[first])
    }
}

fn bad_glob(glob: &PathGlob, err: &globset::Error) -> Error {
    Error::config(format!("invalid glob {:?}: {err}", glob.0))
        .with_hint("fix the include:/exclude: globs under backup.deployments")
}

impl Policy {
    /// The policy of `deployment` under `config`; `~/` in globs is `home`.
    pub fn new(config: &BackupConfig, deployment: &str, home: &Path) -> Result<Policy> {
        let settings = config.deployment(deployment);
        Ok(Policy {
            bind_mounts: config.bind_mounts.value,
            include: Globs::new(&settings.include, home)?,
            exclude: Globs::new(&settings.exclude, home)?,
        })
    }

    /// The built-in defaults: data backed up, no globs.
    pub fn defaults() -> Policy {
        let empty = || Globs {
            texts: Vec::new(),
            set: GlobSet::empty(),
        };
        Policy {
            bind_mounts: BindMounts::Data,
            include: empty(),
            exclude: empty(),
        }
    }

    /// The final decision for `path`, classified `kind` for `reason`.
    /// System paths stay system whatever the globs say; an exclude wins
    /// over everything else; an include takes what needs one;
    /// `bind_mounts: none` leaves out mounted data, not what the units
    /// read otherwise (`always`: environment files, programs).
    pub fn apply(&self, kind: Kind, reason: String, path: &Path, always: bool) -> (Kind, String) {
        if matches!(kind, Kind::System | Kind::Unresolved) {
            return (kind, reason);
        }
        if let Some(glob) = self.exclude.first_match(path) {
            return (Kind::Excluded, format!("excluded by the glob {glob}"));
        }
        let included = self.include.first_match(path);
        match (kind, included) {
            (Kind::NeedsInclude | Kind::Data, Some(glob)) => {
                (Kind::Data, format!("included by the glob {glob}"))
            }
            (Kind::Data, None) if self.bind_mounts == BindMounts::None && !always => (
                Kind::Excluded,
                "backup.bind_mounts is none (an include: glob would take it)".to_owned(),
            ),
            _ => (kind, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeploymentBackup;
    use crate::layout::Layout;

    fn policy(yaml: &str) -> Policy {
        let layout = Layout::user_at(Path::new("/h"));
        let config =
            crate::config::Config::parse(yaml, Path::new("/h/config.yaml"), &layout).unwrap();
        Policy::new(&config.backup, "album", Path::new("/h")).unwrap()
    }

    fn decide(p: &Policy, kind: Kind, path: &str) -> Kind {
        p.apply(kind, "r".into(), Path::new(path), false).0
    }

    #[test]
    fn excludes_win_and_includes_take_what_needs_one() {
        let p = policy(
            "backup:\n  deployments:\n    album:\n      include: [\"~/**\", /data/*]\n      exclude: [/srv/media/**, \"~/Videos\"]\n",
        );
        assert_eq!(decide(&p, Kind::Data, "/srv/media/films"), Kind::Excluded);
        assert_eq!(decide(&p, Kind::Data, "/srv/media"), Kind::Data);
        assert_eq!(decide(&p, Kind::NeedsInclude, "/h/Videos"), Kind::Excluded);
        assert_eq!(decide(&p, Kind::NeedsInclude, "/h/x"), Kind::Data);
        assert_eq!(decide(&p, Kind::NeedsInclude, "/data/photos"), Kind::Data);
        assert_eq!(
            decide(&p, Kind::NeedsInclude, "/data/photos/2024"),
            Kind::NeedsInclude
        );
        assert_eq!(decide(&p, Kind::System, "/h/x"), Kind::System);
        let (_, reason) = p.apply(Kind::Data, "r".into(), Path::new("/srv/media/a"), false);
        assert_eq!(reason, "excluded by the glob /srv/media/**");
    }

    #[test]
    fn bind_mounts_none_keeps_referenced_files_and_includes() {
        let p = policy(
            "backup:\n  bind_mounts: none\n  deployments:\n    album:\n      include: [/srv/keep]\n",
        );
        assert_eq!(decide(&p, Kind::Data, "/srv/db"), Kind::Excluded);
        assert_eq!(decide(&p, Kind::Data, "/srv/keep"), Kind::Data);
        assert_eq!(
            decide(&p, Kind::Referenced, "/srv/init.sh"),
            Kind::Referenced
        );
        assert_eq!(
            p.apply(Kind::Data, "r".into(), Path::new("/srv/a.env"), true)
                .0,
            Kind::Data
        );
        assert_eq!(DeploymentBackup::default().include.len(), 0);
    }

    #[test]
    fn defaults_change_nothing() {
        let p = Policy::defaults();
        assert_eq!(decide(&p, Kind::Data, "/srv/db"), Kind::Data);
        assert_eq!(decide(&p, Kind::NeedsInclude, "/"), Kind::NeedsInclude);
    }
}
