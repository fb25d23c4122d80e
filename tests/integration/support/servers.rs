//! Real restic servers on loopback for the repository tests (issue 13):
//! restic's REST server and an S3-compatible server (s3s-fs), each started
//! by the test that needs it, on a free port of 127.0.0.1, its data in a
//! temporary directory, killed (by PID) and removed when the guard drops.
//!
//! They run on the host. The testbed shares the host's network, so
//! `restic` inside it (run by leger-backup as the test user) reaches
//! `127.0.0.1:PORT` as well. No mock: both servers check credentials
//! (htpasswd for REST, AWS signatures for S3), so wrong ones are refused
//! the way a real provider refuses them.
//!
//! A missing server binary fails the test with what to run; it never skips.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo_root;

/// The s3s-fs version `tests/prerequisites.sh` builds (keep them equal).
pub const S3S_FS_VERSION: &str = "0.14.1";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at a free port (another process may take the one we picked
/// between our probe and the server's bind).
const PORT_ATTEMPTS: usize = 5;

/// The REST server's user and password (its `.htpasswd` holds the entry
/// below). restic takes them from `RESTIC_REST_USERNAME` and
/// `RESTIC_REST_PASSWORD`, so the repository URL itself holds no secret.
pub const REST_USER: &str = "leger-e2e";
/// See [`REST_USER`].
pub const REST_PASSWORD: &str = "leger-e2e-rest-secret";
/// `REST_USER:{SHA}base64(sha1(REST_PASSWORD))`, made once with
/// `printf %s "$REST_PASSWORD" | openssl sha1 -binary | base64`: the
/// Debian rest-server (0.13) accepts `{SHA}` entries as well as bcrypt,
/// and no crate of ours computes either.
const REST_HTPASSWD: &str = "leger-e2e:{SHA}vT3Bjl5W7XUGDSNV0yvZeC+bslA=\n";

/// The S3 server's access key ID and secret key.
pub const S3_ACCESS_KEY: &str = "LEGERE2EACCESSKEY";
/// See [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "leger-e2e-s3-secret-key";
/// The region restic signs for (s3s-fs does not check it; real providers do).
pub const S3_REGION: &str = "us-east-1";
/// The bucket the repositories live in (`restic init` creates it).
pub const S3_BUCKET: &str = "leger-e2e";

/// One server process on a loopback port, with its data directory; what
/// [`RestServer`] and [`S3Server`] share (through `Deref`).
pub struct Process {
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    port: u16,
    /// Holds the data directory and the server's output.
    dir: tempfile::TempDir,
}

impl Process {
    /// Start `program` with the arguments `args(port, data_dir)` on a free
    /// port, retrying on another port when the server exits at once (its
    /// port was taken meanwhile); panic with its output when it never
    /// accepts connections.
    fn start(
        what: &'static str,
        program: &Path,
        setup: impl Fn(&Path),
        args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Process {
        assert!(
            program.is_file(),
            "{what}: no server binary at {}; {}",
            program.display(),
            install_hint(what)
        );
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("leger-e2e-server-")
                .tempdir()
                .expect("server tempdir");
            let data = dir.path().join("data");
            std::fs::create_dir(&data).expect("server data dir");
            setup(&data);
            let port = free_port();
            let mut process = Process {
                what,
                program: program.to_owned(),
                args: args(port, &data),
                child: None,
                port,
                dir,
            };
            process.spawn();
            match process.wait_until_listening() {
                Ok(()) => return process,
                Err(why) => last_error = why,
            }
        }
        panic!("{what} did not start on 127.0.0.1 after {PORT_ATTEMPTS} attempts: {last_error}");
    }

    /// Run the server (again), its output appended to `server.log`.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: starting {}: {e}", self.what, self.program.display()));
        self.child = Some(child);
    }

    /// Start it again after [`Self::stop`], on the same port with the same data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.what);
        self.spawn();
        if let Err(why) = self.wait_until_listening() {
            panic!("{} did not restart on port {}: {why}", self.what, self.port);
        }
    }

    /// Wait until the port accepts connections while the process lives.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!("it exited ({status}):\n{}", self.output()));
            }
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let output = self.output();
                self.stop();
                panic!(
                    "{} does not accept connections on {addr} after {START_TIMEOUT:?}; its output:\n{output}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed so far (for a failing test's message).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the server (by its PID) and reap it: the repository becomes
    /// unreachable; its data stays until the guard drops.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        // The TempDir removes the data directory after this.
    }
}

/// A port of 127.0.0.1 nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("probing a free loopback port")
        .port()
}

/// What to run when a server binary is missing.
fn install_hint(what: &str) -> String {
    if what.starts_with("s3s-fs") {
        "run `tests/prerequisites.sh` (it builds s3s-fs once per machine)".to_owned()
    } else {
        "bring the testbed up once (`tests/testbed/testbed.sh up`, as root): its root \
         filesystem has Debian's restic-rest-server"
            .to_owned()
    }
}

/// The testbed's root filesystem on the host (`testbed.sh rootfs`, which
/// honours `LEGER_TESTBED_DIR`).
fn testbed_rootfs() -> PathBuf {
    let out = Command::new(repo_root().join("tests/testbed/testbed.sh"))
        .arg("rootfs")
        .output()
        .expect("running testbed.sh rootfs");
    assert!(out.status.success(), "testbed.sh rootfs failed: {out:?}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Where `tests/prerequisites.sh` installs s3s-fs (`LEGER_TEST_CACHE`, by
/// default `/var/cache/leger-backup-tests`).
pub fn s3s_fs_binary() -> PathBuf {
    let cache = std::env::var_os("LEGER_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/leger-backup-tests"));
    cache.join(format!("s3s-fs-{S3S_FS_VERSION}/bin/s3s-fs"))
}

/// restic's REST server (Debian's `restic-rest-server`, from the testbed's
/// root filesystem) with htpasswd authentication.
pub struct RestServer {
    process: Process,
}

impl RestServer {
    /// Start one on a free loopback port, with an empty data directory.
    pub fn start() -> RestServer {
        let program = testbed_rootfs().join("usr/bin/restic-rest-server");
        let process = Process::start(
            "restic-rest-server",
            &program,
            |data| std::fs::write(data.join(".htpasswd"), REST_HTPASSWD).expect(".htpasswd"),
            |port, data| {
                vec![
                    "--path".into(),
                    data.display().to_string(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--htpasswd-file".into(),
                    data.join(".htpasswd").display().to_string(),
                ]
            },
        );
        RestServer { process }
    }

    /// The restic repository string (no credentials in it).
    pub fn url(&self) -> String {
        format!("rest:http://127.0.0.1:{}/", self.process.port)
    }

    /// The environment restic needs (the lines of a repository's env file).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RESTIC_REST_USERNAME", REST_USER.to_owned()),
            ("RESTIC_REST_PASSWORD", REST_PASSWORD.to_owned()),
        ]
    }
}

impl std::ops::Deref for RestServer {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for RestServer {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// An S3-compatible server (s3s-fs over a directory) that checks the
/// requests' AWS signatures against one access key.
pub struct S3Server {
    process: Process,
}

impl S3Server {
    /// Start one on a free loopback port, with an empty data directory.
    pub fn start() -> S3Server {
        let process = Process::start(
            "s3s-fs",
            &s3s_fs_binary(),
            |_| {},
            |port, data| {
                vec![
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string(),
                    "--access-key".into(),
                    S3_ACCESS_KEY.into(),
                    "--secret-key".into(),
                    S3_SECRET_KEY.into(),
                    data.display().to_string(),
                ]
            },
        );
        S3Server { process }
    }

    /// The restic repository string of the repository at `path` in the
    /// bucket (one server can hold several repositories).
    pub fn url_at(&self, path: &str) -> String {
        format!(
            "s3:http://127.0.0.1:{}/{S3_BUCKET}/{path}",
            self.process.port
        )
    }

    /// The restic repository string of the default repository (`repo`).
    pub fn url(&self) -> String {
        self.url_at("repo")
    }

    /// The environment restic needs (the lines of a repository's env file).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_DEFAULT_REGION", S3_REGION.to_owned()),
        ]
    }
}

impl std::ops::Deref for S3Server {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for S3Server {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The servers themselves, with the testbed's restic run on the host (only
/// libc): a backup goes in and is listed; wrong credentials are refused.
/// The testbed need not be up, only its root filesystem built.
#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Output;

    /// `restic ARGS` against `url` with `env`, the password `pass`, run in
    /// `cwd`, with a private cache.
    fn restic(url: &str, env: &[(&str, String)], pass: &str, cwd: &Path, args: &[&str]) -> Output {
        let secrets = tempfile::tempdir().unwrap();
        let password_file = secrets.path().join("password");
        std::fs::write(&password_file, pass).unwrap();
        // A refused S3 request is retried by restic for up to 15 minutes;
        // `timeout` ends it so that the refusal shows in its output.
        let mut cmd = Command::new("timeout");
        cmd.arg("20")
            .arg(testbed_rootfs().join("usr/bin/restic"))
            .arg("--repo")
            .arg(url)
            .arg("--password-file")
            .arg(&password_file)
            .args(args)
            .env_clear()
            .env("HOME", secrets.path())
            .env("RESTIC_CACHE_DIR", secrets.path().join("cache"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null());
        cmd.output().expect("running restic")
    }

    fn text(out: &Output) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// init, back up a file with tags, find it by tag; then `bad_env`
    /// (wrong credentials) is refused and the wrong password is exit 12.
    fn round_trip(url: &str, env: &[(&str, String)], bad_env: &[(&str, String)], refused: &str) {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("f"), "hello\n").unwrap();
        let ok = |args: &[&str]| {
            let out = restic(url, env, "pw", data.path(), args);
            assert!(out.status.success(), "restic {args:?}: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        ok(&["init"]);
        ok(&["backup", "--json", "--tag", "leger-backup,id=t1", "."]);
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&["snapshots", "--json", "--tag", "id=t1"])).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        let out = restic(url, bad_env, "pw", data.path(), &["snapshots"]);
        assert!(!out.status.success(), "wrong credentials accepted");
        assert!(text(&out).contains(refused), "{}", text(&out));
        let out = restic(url, env, "not-pw", data.path(), &["snapshots"]);
        assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    }

    #[test]
    fn rest_server_stores_a_snapshot_and_refuses_a_wrong_user_password() {
        let server = RestServer::start();
        let mut bad = server.env();
        bad[1].1 = "wrong".to_owned();
        round_trip(&server.url(), &server.env(), &bad, "401 Unauthorized");
    }

    #[test]
    fn s3_server_stores_a_snapshot_and_refuses_a_wrong_secret_key() {
        let server = S3Server::start();
        let mut bad = server.env();
        bad[1].1 = "wrong".to_owned();
        round_trip(&server.url(), &server.env(), &bad, "Access Denied");
    }

    #[test]
    fn a_stopped_server_refuses_connections_restarts_on_its_port_and_its_data_goes_on_drop() {
        let mut server = RestServer::start();
        let port = server.port();
        let dir = server.process.dir.path().to_owned();
        assert!(dir.join("data/.htpasswd").is_file());
        server.stop();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        server.restart();
        assert_eq!(server.port(), port);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok());
        drop(server);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
