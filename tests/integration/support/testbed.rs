//! A handle on the running testbed (`tests/testbed/testbed.sh`): commands run
//! inside it as the unprivileged test user with a real `systemd --user`.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::repo_root;

/// The running testbed. Obtain with [`Testbed::get`].
pub struct Testbed {
    script: std::path::PathBuf,
}

/// Where the checkout is visible inside the testbed.
pub const SRC: &str = "/src";

impl Testbed {
    /// The testbed, which must be up: an e2e test fails (never skips) when it is not.
    pub fn get() -> Testbed {
        static UP: OnceLock<bool> = OnceLock::new();
        let script = repo_root().join("tests/testbed/testbed.sh");
        let up = *UP.get_or_init(|| {
            Command::new(&script)
                .arg("status")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        assert!(
            up,
            "the testbed is not running: start it with `tests/testbed/testbed.sh up` (as root) or run `make test`"
        );
        Testbed { script }
    }

    /// Run `args` inside as the test user; output returned whatever the exit code.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .arg("exec")
            .arg("--")
            .args(args)
            .output()
            .expect("running testbed.sh exec")
    }

    /// Run `args` inside as root.
    pub fn exec_root(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .args(["exec", "--root", "--"])
            .args(args)
            .output()
            .expect("running testbed.sh exec --root")
    }

    /// Run a shell script inside as the test user.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Run a shell script inside as the test user; panic with its output
    /// unless it succeeds; return stdout.
    pub fn ok(&self, script: &str) -> String {
        succeeded(self.sh(script), "in testbed", script)
    }

    /// Run a shell script inside as root; panic with its output unless it
    /// succeeds; return stdout.
    pub fn root_ok(&self, script: &str) -> String {
        succeeded(
            self.exec_root(&["sh", "-c", script]),
            "in testbed as root",
            script,
        )
    }

    /// A real reboot of the booted testbed's OS: `systemctl reboot` inside
    /// (every service stopped, each stop hook run, as on a machine), wait
    /// until systemd-nspawn has exited (it exits on a reboot instead of
    /// restarting the container), then boot it again with its state kept
    /// (`LEGER_TESTBED_KEEP_STATE=1 testbed.sh up`): deployments enabled for
    /// boot come up, tester's user manager is started by linger. Returns how
    /// long the shutdown took, from `systemctl reboot` to nspawn's exit.
    pub fn reboot(&self) -> Duration {
        let status = || {
            Command::new(&self.script)
                .arg("status")
                .output()
                .expect("running testbed.sh status")
        };
        assert!(status().status.success(), "reboot: the testbed is not up");
        let t0 = Instant::now();
        // Its exit status is whatever the connection's end gave.
        let _ = self.exec_root(&["systemctl", "reboot"]);
        while status().status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "reboot: the testbed is still up {:?} after `systemctl reboot`",
                t0.elapsed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let shutdown = t0.elapsed();
        eprintln!("[timing] reboot: shutdown {:.2} s", shutdown.as_secs_f64());
        let t1 = Instant::now();
        let up = Command::new(&self.script)
            .arg("up")
            .env("LEGER_TESTBED_KEEP_STATE", "1")
            .output()
            .expect("running testbed.sh up");
        assert!(
            up.status.success(),
            "reboot: testbed.sh up failed with {}\nstderr:\n{}",
            up.status,
            String::from_utf8_lossy(&up.stderr)
        );
        eprintln!("[timing] reboot: boot {:.2} s", t1.elapsed().as_secs_f64());
        shutdown
    }
}

/// The stdout of a script that must have succeeded; otherwise a panic
/// showing `where` it ran, the script and its output.
fn succeeded(out: Output, place: &str, script: &str) -> String {
    assert!(
        out.status.success(),
        "{place}: `{script}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
