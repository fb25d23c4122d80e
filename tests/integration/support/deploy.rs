//! Shared pieces of the end-to-end tests that install a deployment in the
//! testbed and check what became of its data: the manifests that define
//! "byte-identical" (every volume entry's path, type, mode, uid, gid, link
//! target and sha256, the volume root included, seen inside `podman
//! unshare`; and the deployment's files), comparing them, and leger's
//! config file set for one test.

use std::time::Instant;

use super::testbed::Testbed;

/// Shell functions (no `set` options: the caller's prelude decides):
/// - `mp VOL`: the volume's mountpoint;
/// - `volume_manifest VOL...`: every entry of each volume, root included;
///   `== VOL absent` for a volume that does not exist;
/// - `deployment_files_manifest NAME`: leger's active directory of NAME
///   and the quadlet files installed for it.
pub const MANIFEST_SH: &str = r#"
mp() { podman volume inspect --format '{{.Mountpoint}}' "$1"; }
volume_manifest() {
  for v in "$@"; do
    if ! podman volume exists "$v"; then echo "== $v absent"; continue; fi
    echo "== $v labels $(podman volume inspect --format '{{json .Labels}}' "$v")"
    podman unshare sh -c 'cd "$1" && find . -printf "%p %y %m %U %G %l\n" | LC_ALL=C sort &&
      find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum' sh "$(mp "$v")"
  done
}
deployment_files_manifest() {
  a=$HOME/.local/share/bluebuild-quadlets/active/$1
  q=$HOME/.config/containers/systemd
  echo "== active"
  if [ -d "$a" ]; then (cd "$a" && find . -printf "%p %y %m %l\n" | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum); fi
  echo "== installed"
  (cd "$q" && find . -path "./$1*" -printf "%p %y %m %l\n" | LC_ALL=C sort &&
    find . -path "./$1*" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}
"#;

/// Panic with the lines that differ unless `expected == actual`.
pub fn assert_same(what: &str, expected: &str, actual: &str) {
    if expected != actual {
        let diff: Vec<String> = diff_lines(expected, actual);
        panic!("{what} differs:\n{}", diff.join("\n"));
    }
}

/// Lines only in one of the two texts, marked - (expected) and + (actual).
pub fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out: Vec<String> = e
        .iter()
        .filter(|l| !a.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        a.iter()
            .filter(|l| !e.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

/// Run `f`, printing how long it took.
pub fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let value = f();
    eprintln!("[timing] {label}: {:.2} s", t0.elapsed().as_secs_f64());
    value
}

/// leger's `~/.config/leger/config.yaml` set for one test, put back (or
/// removed) when dropped, even when the test fails.
pub struct LegerConfig<'a> {
    tb: &'a Testbed,
    saved: Option<String>,
}

impl<'a> LegerConfig<'a> {
    /// Write `yaml` as the config, keeping the current one to put back.
    pub fn set(tb: &'a Testbed, yaml: &str) -> LegerConfig<'a> {
        let out = tb.sh("cat ~/.config/leger/config.yaml 2>/dev/null");
        let saved = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        let guard = LegerConfig { tb, saved };
        guard.write(yaml);
        guard
    }

    /// Replace the config with `yaml` (the saved one still comes back).
    pub fn write(&self, yaml: &str) {
        let out = self.tb.exec(&[
            "sh",
            "-c",
            "mkdir -p ~/.config/leger && printf '%s' \"$1\" > ~/.config/leger/config.yaml",
            "sh",
            yaml,
        ]);
        assert!(out.status.success(), "writing config.yaml");
    }
}

impl Drop for LegerConfig<'_> {
    fn drop(&mut self) {
        match &self.saved {
            Some(text) => self.write(text),
            None => {
                self.tb.sh("rm -f ~/.config/leger/config.yaml");
            }
        }
    }
}
