//! What the RPM tests (`cli::packaging`, `e2e::rpm`) share: running host
//! commands that must succeed, and building outside cargo's test
//! environment.

use std::process::{Command, Output};

use super::{stderr, stdout};

/// Run `cmd` on the host; it must succeed (the failure shows its output).
pub fn checked(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Remove the variables cargo sets for this test binary from `cmd`: they
/// describe the test, not the build `cmd` runs (`make rpm`, build.sh).
pub fn without_cargo_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                &*key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*key);
        }
    }
    cmd
}
