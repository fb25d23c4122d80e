//! The files Quadlet would see, in the order it sees them.
//!
//! podman 5.4's generator (`cmd/quadlet/main.go`) walks each search
//! directory recursively (entries in lexical order, depth first, never
//! descending into a directory whose name ends in `.d`), loads unit files
//! directory by directory (the first file of a given *file name* wins,
//! whatever its subdirectory), and, for each unit, merges the drop-ins found
//! in every walked directory ([`super::drop_ins`]).
//!
//! Here the walk is rebuilt from [`SourceFile`]s alone (no I/O): a file's
//! search directory is its `origin` with its `rel_path` taken off, search
//! directories rank in the order `installed` first mentions them, and
//! deployment files not found among `installed` (a deployment that is not
//! installed yet) form a directory of their own ranked first.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use super::drop_ins::{dropin_dir_names, go_ext};
use super::unit_file::{parse, ParseError, UnitFile};
use super::{SourceFile, UnitKind};

/// A file placed in the walk.
#[derive(Debug, Clone)]
pub struct Placed<'a> {
    /// The caller's file.
    pub source: &'a SourceFile,
    /// Relative path with `/` separators: relative to the deployment for
    /// deployment files, to the search directory otherwise. Used in messages.
    pub label: String,
    /// Rank of its search directory (0 = the deployment's own, when it is
    /// not installed).
    pub root: usize,
    /// Directory components below the search directory.
    pub dirs: Vec<String>,
    /// File name.
    pub name: String,
    /// Whether the file belongs to the deployment being resolved.
    pub in_deployment: bool,
}

impl Placed<'_> {
    /// Whether Quadlet's walk reaches the directory holding this file (no
    /// directory on the way ends in `.d`).
    fn in_walked_dir(&self) -> bool {
        !self.dirs.iter().any(|d| d.ends_with(".d"))
    }

    /// For a drop-in (`<walked dir>/<name>.d/<file>.conf`): the walked
    /// directory and the drop-in directory's name.
    fn as_drop_in(&self) -> Option<(&[String], &str)> {
        if go_ext(&self.name) != ".conf" {
            return None;
        }
        let (dropin_dir, parent) = self.dirs.split_last()?;
        if !dropin_dir.ends_with(".d") || parent.iter().any(|d| d.ends_with(".d")) {
            return None;
        }
        Some((parent, dropin_dir))
    }

    fn walk_cmp(&self, other: &Placed<'_>) -> Ordering {
        (self.root, &self.dirs, &self.name).cmp(&(other.root, &other.dirs, &other.name))
    }

    /// The directory of the unit file, for paths Quadlet makes absolute
    /// relative to it (`Volume=./data:/d`).
    pub fn unit_dir(&self) -> PathBuf {
        self.source
            .origin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// The kind of unit a file name makes, as Quadlet decides it (by
/// extension only).
pub fn kind_of(name: &str) -> Option<UnitKind> {
    Some(match go_ext(name) {
        ".container" => UnitKind::Container,
        ".volume" => UnitKind::Volume,
        ".network" => UnitKind::Network,
        ".pod" => UnitKind::Pod,
        ".kube" => UnitKind::Kube,
        ".image" => UnitKind::Image,
        ".build" => UnitKind::Build,
        _ => return None,
    })
}

fn components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

/// The search directory of an installed file: `origin` minus `rel_path`.
fn root_of(file: &SourceFile) -> PathBuf {
    let depth = components(&file.rel_path).len();
    file.origin
        .ancestors()
        .nth(depth)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A unit as Quadlet loads it: base file plus merged drop-ins.
#[derive(Debug, Clone)]
pub struct LoadedUnit<'a> {
    /// The base file.
    pub file: Placed<'a>,
    /// Its kind.
    pub kind: UnitKind,
    /// Parsed base file with drop-ins merged.
    pub unit: UnitFile,
    /// Labels of the drop-ins merged, in merge order.
    pub drop_ins: Vec<String>,
}

/// Something Quadlet would do that the user should hear about.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What.
    pub message: String,
    /// Label of the file concerned.
    pub file: String,
    /// Line, when known.
    pub line: Option<usize>,
}

/// Every file of the walk, and the units Quadlet would load from them.
pub struct SearchPath<'a> {
    files: Vec<Placed<'a>>,
    /// File name -> index in `files` of the unit Quadlet loads under it
    /// (`None` when Quadlet would drop it: its directory has a broken file).
    effective: HashMap<String, Option<usize>>,
    /// Broken files, by index: the parse error.
    broken: HashMap<usize, ParseError>,
    /// Things worth a warning found while placing files.
    pub notices: Vec<Notice>,
}

impl<'a> SearchPath<'a> {
    /// Place `deployment` and `installed` files as Quadlet's walk would.
    /// Fails when a deployment file does not parse (the user must fix it:
    /// Quadlet would drop every unit of its directory).
    pub fn new(
        deployment: &'a [SourceFile],
        installed: &'a [SourceFile],
    ) -> Result<SearchPath<'a>, ParseError> {
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut files: Vec<Placed<'a>> = Vec::new();
        for file in installed {
            let root = root_of(file);
            let rank = match roots.iter().position(|r| *r == root) {
                Some(i) => i + 1,
                None => {
                    roots.push(root);
                    roots.len()
                }
            };
            let comps = components(&file.rel_path);
            let (name, dirs) = comps
                .split_last()
                .map(|(n, d)| (n.clone(), d.to_vec()))
                .unwrap_or_default();
            files.push(Placed {
                source: file,
                label: comps.join("/"),
                root: rank,
                dirs,
                name,
                in_deployment: false,
            });
        }
        for file in deployment {
            let label = components(&file.rel_path).join("/");
            let same = files.iter_mut().find(|p| {
                !p.in_deployment
                    && !file.origin.as_os_str().is_empty()
                    && p.source.origin == file.origin
            });
            match same {
                Some(placed) => {
                    placed.in_deployment = true;
                    placed.source = file;
                    placed.label = label;
                }
                None => {
                    let comps = components(&file.rel_path);
                    let (name, dirs) = comps
                        .split_last()
                        .map(|(n, d)| (n.clone(), d.to_vec()))
                        .unwrap_or_default();
                    files.push(Placed {
                        source: file,
                        label,
                        root: 0,
                        dirs,
                        name,
                        in_deployment: true,
                    });
                }
            }
        }
        files.sort_by(|a, b| a.walk_cmp(b).then(b.in_deployment.cmp(&a.in_deployment)));

        let mut search = SearchPath {
            files,
            effective: HashMap::new(),
            broken: HashMap::new(),
            notices: Vec::new(),
        };
        search.check_deployment_files()?;
        search.load_units();
        Ok(search)
    }

    /// Deployment files must parse; files Quadlet never reads are reported.
    fn check_deployment_files(&mut self) -> Result<(), ParseError> {
        for placed in &self.files {
            let is_unit = kind_of(&placed.name).is_some();
            let is_drop_in = placed
                .as_drop_in()
                .is_some_and(|(_, dir)| is_quadlet_dropin_dir(dir));
            if placed.in_deployment && (is_unit || is_drop_in) {
                parse(&placed.label, &placed.source.text)?;
            }
            if placed.in_deployment && is_unit && !placed.in_walked_dir() {
                self.notices.push(Notice {
                    message: "Quadlet never reads unit files below a directory whose name ends in \
                              `.d`: this one is ignored"
                        .to_owned(),
                    file: placed.label.clone(),
                    line: None,
                });
            }
        }
        Ok(())
    }

    /// Quadlet's `loadUnitsFromDir` over every walked directory: the first
    /// unit of each file name wins; a directory holding a broken unit file
    /// contributes no unit at all (its names still count as seen).
    fn load_units(&mut self) {
        // Group unit files by walked directory, in walk order.
        let mut by_dir: BTreeMap<(usize, Vec<String>), Vec<usize>> = BTreeMap::new();
        for (i, placed) in self.files.iter().enumerate() {
            if kind_of(&placed.name).is_some() && placed.in_walked_dir() {
                by_dir
                    .entry((placed.root, placed.dirs.clone()))
                    .or_default()
                    .push(i);
            }
        }
        for indices in by_dir.values() {
            let mut loaded = Vec::new();
            let mut dir_broken = None;
            for &i in indices {
                let placed = &self.files[i];
                // File names are unique inside one directory, so "seen" is
                // about earlier directories only.
                if self.effective.contains_key(&placed.name) {
                    if placed.in_deployment {
                        let winner = self.effective.get(&placed.name).copied().flatten();
                        let by = winner.map_or_else(
                            || "another file of the same name".to_owned(),
                            |j| describe(&self.files[j]),
                        );
                        self.notices.push(Notice {
                            message: format!(
                                "Quadlet ignores this file: {by} has the same file name and comes \
                                 first on the search path"
                            ),
                            file: placed.label.clone(),
                            line: None,
                        });
                    }
                    continue;
                }
                match parse(&placed.label, &placed.source.text) {
                    Ok(_) => loaded.push(i),
                    Err(e) => {
                        self.broken.insert(i, e);
                        dir_broken.get_or_insert(i);
                    }
                }
            }
            for &i in &loaded {
                let keep = dir_broken.is_none();
                self.effective
                    .insert(self.files[i].name.clone(), keep.then_some(i));
                if let (false, Some(b)) = (keep, dir_broken) {
                    if self.files[i].in_deployment {
                        let err = &self.broken[&b];
                        self.notices.push(Notice {
                            message: format!(
                                "Quadlet will not generate this unit: {} in the same directory \
                                 does not parse ({}), and Quadlet then drops every unit of that \
                                 directory",
                                describe(&self.files[b]),
                                err.message
                            ),
                            file: self.files[i].label.clone(),
                            line: None,
                        });
                    }
                }
            }
        }
    }

    /// The deployment's unit files that Quadlet actually loads, in label
    /// order.
    pub fn deployment_units(&self) -> Vec<&Placed<'a>> {
        let mut out: Vec<&Placed<'a>> = self
            .effective
            .values()
            .flatten()
            .map(|&i| &self.files[i])
            .filter(|p| p.in_deployment)
            .collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out
    }

    /// Why `name` (a unit file name such as `data.volume`) cannot be
    /// loaded, when a file of that name exists but is broken.
    pub fn broken_reason(&self, name: &str) -> Option<String> {
        self.broken
            .iter()
            .filter(|(i, _)| self.files[**i].name == name)
            .min_by_key(|(i, _)| **i)
            .map(|(_, e)| e.to_string())
    }

    /// Load the unit Quadlet uses for the file name `name`, drop-ins merged.
    /// `None` when there is none.
    pub fn load(&self, name: &str) -> Option<LoadedUnit<'a>> {
        let index = (*self.effective.get(name)?)?;
        let placed = &self.files[index];
        let kind = kind_of(&placed.name)?;
        let mut unit = parse(&placed.label, &placed.source.text).ok()?;
        let mut drop_ins = Vec::new();
        for d in self.drop_ins_for(&placed.name) {
            // Deployment drop-ins were checked; another deployment's broken
            // drop-in is skipped as Quadlet skips it.
            if let Ok(extra) = parse(&d.label, &d.source.text) {
                unit.merge(&extra);
                drop_ins.push(d.label.clone());
            }
        }
        Some(LoadedUnit {
            file: placed.clone(),
            kind,
            unit,
            drop_ins,
        })
    }

    /// The drop-ins Quadlet merges into the unit file `name`, in merge
    /// order.
    pub fn drop_ins_for(&self, name: &str) -> Vec<&Placed<'a>> {
        let names = dropin_dir_names(name);
        let mut candidates: Vec<(usize, &[String], usize, &Placed<'a>)> = Vec::new();
        for placed in &self.files {
            if let Some((walked, dir)) = placed.as_drop_in() {
                if let Some(rank) = names.iter().position(|n| n == dir) {
                    candidates.push((placed.root, walked, rank, placed));
                }
            }
        }
        // Walk order of the directory holding the drop-in directory, then
        // specificity of the drop-in directory's name.
        candidates.sort_by(|a, b| (a.0, a.1, a.2, &a.3.name).cmp(&(b.0, b.1, b.2, &b.3.name)));
        let mut winners: BTreeMap<&str, &Placed<'a>> = BTreeMap::new();
        for (_, _, _, placed) in candidates {
            winners.entry(placed.name.as_str()).or_insert(placed);
        }
        winners.into_values().collect()
    }
}

/// Whether a directory name is one Quadlet reads drop-ins from for some
/// unit: `<file>.<ext>.d`, `<prefix>-.<ext>.d` or `<ext>.d`.
pub fn is_quadlet_dropin_dir(dir: &str) -> bool {
    let Some(stem) = dir.strip_suffix(".d") else {
        return false;
    };
    kind_of(stem).is_some() || kind_of(&format!(".{stem}")).is_some()
}

fn describe(placed: &Placed<'_>) -> String {
    placed.source.origin.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(root: &str, rel: &str, text: &str) -> SourceFile {
        SourceFile {
            rel_path: PathBuf::from(rel),
            origin: PathBuf::from(root).join(rel),
            text: text.to_owned(),
        }
    }

    const C: &str = "[Container]\nImage=i\n";

    #[test]
    fn first_file_name_on_the_walk_wins() {
        let installed = vec![
            src("/q", "a/dup.volume", "[Volume]\nVolumeName=from-a\n"),
            src("/q", "dup.volume", "[Volume]\nVolumeName=from-root\n"),
            src("/q", "b/dup.volume", "[Volume]\nVolumeName=from-b\n"),
            src("/etc", "dup.volume", "[Volume]\nVolumeName=from-etc\n"),
        ];
        let s = SearchPath::new(&[], &installed).unwrap();
        let u = s.load("dup.volume").unwrap();
        assert_eq!(
            u.unit.lookup("Volume", "VolumeName").unwrap().0,
            "from-root"
        );
    }

    #[test]
    fn later_search_directories_lose() {
        let installed = vec![
            src(
                "/home/u/.config/containers/systemd",
                "x/v.volume",
                "[Volume]\nVolumeName=user\n",
            ),
            src(
                "/etc/containers/systemd/users",
                "v.volume",
                "[Volume]\nVolumeName=etc\n",
            ),
        ];
        let s = SearchPath::new(&[], &installed).unwrap();
        assert_eq!(
            s.load("v.volume")
                .unwrap()
                .unit
                .lookup("Volume", "VolumeName")
                .unwrap()
                .0,
            "user"
        );
    }

    #[test]
    fn directories_ending_in_d_are_not_walked() {
        let installed = vec![src("/q", "x.d/hidden.volume", "[Volume]\n")];
        let s = SearchPath::new(&[], &installed).unwrap();
        assert!(s.load("hidden.volume").is_none());
    }

    #[test]
    fn drop_in_order_and_masking() {
        let installed = vec![
            src("/q", "dep/web-app.container", C),
            src(
                "/q",
                "container.d/10-top.conf",
                "[Container]\nVolume=top10:/t\n",
            ),
            src(
                "/q",
                "container.d/30-top.conf",
                "[Container]\nVolume=top30:/t\n",
            ),
            src(
                "/q",
                "dep/web-app.container.d/10-top.conf",
                "[Container]\nVolume=masked:/x\n",
            ),
            src(
                "/q",
                "dep/web-app.container.d/20-reset.conf",
                "[Container]\nVolume=\nVolume=r:/r\n",
            ),
            src(
                "/q",
                "dep/web-.container.d/30-top.conf",
                "[Container]\nVolume=masked30:/p\n",
            ),
            src(
                "/q",
                "web-app.container.d/40.conf",
                "[Container]\nVolume=root40:/q\n",
            ),
            src(
                "/q",
                "web-app.container.d/sub/50.conf",
                "[Container]\nVolume=no:/q\n",
            ),
            src(
                "/q",
                "web-app.container.d/50.txt",
                "[Container]\nVolume=no:/q\n",
            ),
        ];
        let s = SearchPath::new(&[], &installed).unwrap();
        let u = s.load("web-app.container").unwrap();
        assert_eq!(
            u.drop_ins,
            [
                "container.d/10-top.conf",
                "dep/web-app.container.d/20-reset.conf",
                "container.d/30-top.conf",
                "web-app.container.d/40.conf"
            ]
        );
        let vols: Vec<&str> = u
            .unit
            .lookup_all("Container", "Volume")
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(vols, ["r:/r", "top30:/t", "root40:/q"]);
    }

    #[test]
    fn same_directory_prefers_the_most_specific_drop_in() {
        let installed = vec![
            src("/q", "foo-bar@baz.container", C),
            src(
                "/q",
                "foo-bar@.container.d/10.conf",
                "[Container]\nVolume=base:/a\n",
            ),
            src(
                "/q",
                "foo-bar@baz.container.d/10.conf",
                "[Container]\nVolume=inst:/a\n",
            ),
            src(
                "/q",
                "foo-@.container.d/10.conf",
                "[Container]\nVolume=prefix:/a\n",
            ),
        ];
        let s = SearchPath::new(&[], &installed).unwrap();
        let u = s.load("foo-bar@baz.container").unwrap();
        assert_eq!(u.drop_ins, ["foo-bar@baz.container.d/10.conf"]);
    }

    #[test]
    fn deployment_files_are_matched_by_origin_or_ranked_first() {
        let installed = vec![src("/q", "dep/web.container", C)];
        let deployment = vec![src("/q/dep", "web.container", C)];
        let s = SearchPath::new(&deployment, &installed).unwrap();
        let units = s.deployment_units();
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].label, "web.container");
        assert_eq!(units[0].root, 1);

        // Not installed: its own directory, searched first.
        let deployment = vec![src(
            "/src/dep",
            "web.container",
            "[Container]\nImage=mine\n",
        )];
        let s = SearchPath::new(&deployment, &installed).unwrap();
        let u = s.load("web.container").unwrap();
        assert!(u.file.in_deployment);
        assert_eq!(u.unit.lookup("Container", "Image").unwrap().0, "mine");
    }

    #[test]
    fn masked_deployment_units_are_reported() {
        let installed = vec![
            src("/q", "web.container", C),
            src("/q", "dep/web.container", C),
        ];
        let deployment = vec![src("/q/dep", "web.container", C)];
        let s = SearchPath::new(&deployment, &installed).unwrap();
        assert!(s.deployment_units().is_empty());
        assert_eq!(s.notices.len(), 1);
        assert!(s.notices[0].message.contains("/q/web.container"));
    }

    #[test]
    fn a_broken_neighbour_drops_the_directory() {
        let installed = vec![
            src("/q", "web.container", C),
            src("/q", "other.container", "garbage\n"),
        ];
        let deployment = vec![src("/q", "web.container", C)];
        let s = SearchPath::new(&deployment, &installed).unwrap();
        assert!(s.deployment_units().is_empty());
        assert!(s.notices[0].message.contains("does not parse"));
        assert!(s.broken_reason("other.container").is_some());
    }

    #[test]
    fn a_broken_deployment_file_is_an_error() {
        let deployment = vec![src("/d", "web.container.d/10.conf", "oops\n")];
        let e = SearchPath::new(&deployment, &[]).err().unwrap();
        assert_eq!(e.file, "web.container.d/10.conf");
        assert_eq!(e.line, 1);
    }
}
