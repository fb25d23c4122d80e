//! Restic repositories without restic: configuration and secret mistakes,
//! and what leger-backup hands restic (a stand-in `restic` records its
//! argv and environment), all before anything touches a repository.

use std::os::unix::fs::PermissionsExt;

use crate::support::{stderr, stdout, TestEnv};

/// A config with repository `offsite` (a password file and an env file).
fn with_repository(env: &TestEnv) {
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  repositories:\n    offsite:\n      url: \"rest:http://me:urlpass@127.0.0.1:9/r\"\n      password_file: ~/.config/leger/offsite.password\n      env_file: ~/.config/leger/offsite.env\n",
    );
}

/// Write a secret file with `mode`.
fn secret(env: &TestEnv, rel: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = env.write(rel, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn private_secrets(env: &TestEnv) {
    secret(
        env,
        ".config/leger/offsite.password",
        "hunter2pass\n",
        0o600,
    );
    secret(
        env,
        ".config/leger/offsite.env",
        "# S3\nAWS_ACCESS_KEY_ID=keyid1234\nexport AWS_SECRET_ACCESS_KEY=\"topsecret99\"\n",
        0o600,
    );
}

/// A stand-in restic: `version` says `version`; otherwise it records argv
/// and environment in HOME and runs `body`.
fn fake_restic(env: &TestEnv, version: &str, body: &str) -> String {
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo \"restic {version} compiled with go1.24 on linux/amd64\"; exit 0; fi\n\
         echo \"$@\" >> \"$HOME/restic-argv\"\nenv >> \"$HOME/restic-env\"\n{body}\n"
    );
    env.fake_tools(&[("restic", &script)])
}

/// Run the binary with `PATH` set to `path`.
fn run_with_path(
    env: &TestEnv,
    path: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> std::process::Output {
    env.command().args(args).env("PATH", path).output().unwrap()
}

#[test]
fn an_unknown_repository_is_named_with_the_configured_ones() {
    let env = TestEnv::new();
    with_repository(&env);
    for args in [
        vec!["list", "--repo", "nope"],
        vec!["info", "web-2025-01-01-120000", "--repo", "nope"],
        vec!["repo", "check", "nope"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no repository `nope` is configured"), "{err}");
        assert!(err.contains("offsite"), "{err}");
    }
}

#[test]
fn a_target_naming_no_repository_is_a_config_error_with_its_file() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  targets: [local, offsite]\n",
    );
    let out = env.run(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("config.yaml"), "{err}");
    assert!(err.contains("`offsite` is neither"), "{err}");
}

/// `create --to` is built by the coordinator (issue 13): this test fails
/// until it checks its targets with `repository::config_of`.
#[test]
fn create_to_an_unknown_repository_is_refused() {
    let env = TestEnv::new();
    with_repository(&env);
    let out = env.run(&["create", "web", "--to", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("nope"), "{err}");
    assert!(err.contains("offsite"), "{err}");
}

#[test]
fn a_missing_password_file_is_named() {
    let env = TestEnv::new();
    with_repository(&env);
    let out = env.run(&["list", "--repo", "offsite"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("offsite.password"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_password_file_readable_by_others_is_refused() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    let pw = secret(
        &env,
        ".config/leger/offsite.password",
        "hunter2pass\n",
        0o644,
    );
    let out = env.run(&["list", "--repo", "offsite"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("chmod 600 {}", pw.display())),
        "{err}"
    );
    assert!(!err.contains("hunter2pass"), "{err}");
}

#[test]
fn an_env_file_with_a_bad_line_is_named_by_file_and_line() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    let file = secret(
        &env,
        ".config/leger/offsite.env",
        "AWS_ACCESS_KEY_ID=k\nthe-secret-itself\n",
        0o600,
    );
    let out = env.run(&["repo", "init", "offsite"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:2:", file.display())), "{err}");
    assert!(!err.contains("the-secret-itself"), "{err}");
}

#[test]
fn restic_missing_from_path_names_restic_and_the_version_needed() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    let out = run_with_path(&env, env.path("empty-bin"), &["list", "--repo", "offsite"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`restic` was not found"), "{err}");
    assert!(err.contains("restic 0.17 or newer"), "{err}");
}

#[test]
fn restic_older_than_0_17_is_refused_by_version() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    let path = fake_restic(&env, "0.16.4", "echo '[]'");
    let out = run_with_path(&env, path, &["list", "--repo", "offsite"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("restic 0.16.4 is installed"), "{err}");
    assert!(err.contains("0.17 or newer"), "{err}");
}

/// Secrets reach restic through its environment only; the caller's own
/// `RESTIC_*`/`AWS_*` do not.
#[test]
fn secrets_go_to_restic_by_environment_never_by_argv() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    let path = fake_restic(&env, "0.18.0", "echo '[]'");
    let out = env
        .command()
        .args(["list", "--repo", "offsite"])
        .env("PATH", path)
        .env("AWS_SECRET_ACCESS_KEY", "callers-own")
        .env("RESTIC_PASSWORD", "callers-password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let argv = std::fs::read_to_string(env.path("restic-argv")).unwrap();
    assert_eq!(argv.trim(), "snapshots --json --tag leger-backup");
    let vars = std::fs::read_to_string(env.path("restic-env")).unwrap();
    for expected in [
        "RESTIC_REPOSITORY=rest:http://me:urlpass@127.0.0.1:9/r",
        "AWS_ACCESS_KEY_ID=keyid1234",
        "AWS_SECRET_ACCESS_KEY=topsecret99",
    ] {
        assert!(vars.lines().any(|l| l == expected), "{expected}:\n{vars}");
    }
    assert!(vars.contains("RESTIC_PASSWORD_FILE="), "{vars}");
    assert!(!vars.contains("callers-"), "{vars}");
}

/// restic's exit codes become errors with the fix, and what restic says
/// is scrubbed of the secrets before it is shown.
#[test]
fn restic_failures_are_explained_and_scrubbed() {
    let env = TestEnv::new();
    with_repository(&env);
    private_secrets(&env);
    for (code, expected, hint) in [
        (
            10,
            "repository offsite (rest:http://***@127.0.0.1:9/r) does not exist",
            "leger-backup repo init offsite",
        ),
        (
            12,
            "wrong password for repository offsite",
            "offsite.password",
        ),
        (11, "is locked", "repo check offsite"),
        (1, "restic", "repo check offsite"),
    ] {
        let body =
            format!("echo 'Fatal: key topsecret99 and hunter2pass rejected' >&2; exit {code}");
        let path = fake_restic(&env, "0.18.0", &body);
        let out = run_with_path(&env, path, &["list", "--repo", "offsite"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(expected), "{code}: {err}");
        assert!(err.contains(hint), "{code}: {err}");
        for secret in ["topsecret99", "hunter2pass", "urlpass"] {
            assert!(!err.contains(secret), "{code}: {secret} leaked: {err}");
        }
        assert!(stdout(&out).is_empty());
    }
}

/// An automatic backup (leger's hook) to `local` and a repository that
/// fails: the hook succeeds (the data is safe locally) and `status` shows
/// each target's own last result, the repository's failure included.
#[test]
fn status_shows_the_last_result_of_each_target() {
    let env = TestEnv::new();
    super::notify::album(&env);
    secret(&env, ".config/leger/offsite.password", "pw\n", 0o600);
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  targets: [local, offsite]\n  repositories:\n    offsite:\n      url: /nowhere/repo\n      password_file: ~/.config/leger/offsite.password\n",
    );
    let restic = "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'restic 0.18.0 compiled with go1.24 on linux/amd64'; exit 0; fi\n\
                  echo 'Fatal: unable to open repository at /nowhere/repo' >&2; exit 1\n";
    let path = env.fake_tools(&[("restic", restic)]);
    let hook = run_with_path(&env, &path, &["leger-hook", "pre-remove", "album"]);
    assert!(hook.status.success(), "{}", stderr(&hook));

    let status = run_with_path(&env, &path, &["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let album = &status["deployments"][0];
    let local = &album["targets"]["local"];
    let id = local["last_success"]["backup_id"]
        .as_str()
        .expect("local backup id");
    assert!(id.starts_with("album-"), "{local}");
    assert!(local["last_failure"].is_null(), "{local}");
    let offsite = &album["targets"]["offsite"];
    assert!(offsite["last_success"].is_null(), "{offsite}");
    let failure = offsite["last_failure"]["message"].as_str().unwrap();
    assert!(failure.contains("unable to open repository"), "{failure}");

    let text = stdout(&run_with_path(&env, &path, &["status"]));
    assert!(
        text.contains("to local:          ok ") && text.contains(id),
        "{text}"
    );
    assert!(text.contains("to offsite:        never ok"), "{text}");
    assert!(text.contains("last FAILED"), "{text}");
}
