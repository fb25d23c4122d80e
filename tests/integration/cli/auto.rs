//! Automatic backups without podman or a reachable user manager: the
//! generator, `enable`/`disable` drop-ins, the leger hook's cheap paths, the
//! stop hook's skips, `status`, and the generator benchmark script.

use crate::support::{repo_root, stderr, stdout, TestEnv};

const WEB: &str = "[Container]\nImage=localhost/busybox:latest\nVolume=web-data.volume:/data\n";

/// Two plain Quadlet deployments: `web` (two containers, a volume) and `solo`.
fn with_deployments() -> TestEnv {
    let env = TestEnv::new();
    env.write(".config/containers/systemd/web/web.container", WEB);
    env.write(
        ".config/containers/systemd/web/web-db.container",
        "[Container]\nImage=x\n",
    );
    env.write(
        ".config/containers/systemd/web/web-data.volume",
        "[Volume]\n",
    );
    env.write(
        ".config/containers/systemd/solo/solo.pod",
        "[Pod]\nPodName=solo\n",
    );
    env
}

#[test]
fn generator_writes_dropins_as_systemd_runs_it() {
    let env = with_deployments();
    env.write(
        ".config/leger/config.yaml",
        "leger_key: 1\nauto:\n  stop_timeout: 7m\n",
    );
    // systemd runs it through a symlink named *-user-generator.
    let link = env.path("leger-backup-user-generator");
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("leger-backup"), &link).unwrap();
    let out_dir = env.path("run/generator");
    let out = std::process::Command::new(&link)
        .env_clear()
        .env("HOME", env.home.path())
        .arg(&out_dir)
        .arg(env.path("run/early"))
        .arg(env.path("run/late"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |service: &str| {
        std::fs::read_to_string(out_dir.join(format!("{service}.d/50-leger-backup.conf")))
            .unwrap_or_else(|e| panic!("{service}: {e}"))
    };
    let web = read("web.service");
    assert!(
        web.contains("stop-hook --deployment web --unit %n"),
        "{web}"
    );
    assert!(web.contains("ExecStopPost=-/"), "{web}");
    assert!(web.contains("TimeoutStopSec=420"), "{web}");
    assert!(read("web-db.service").contains("--deployment web "));
    assert!(read("solo-pod.service").contains("--deployment solo "));
    assert!(!out_dir.join("web-data-volume.service.d").exists());

    // By hand, without directories: a dry run on stdout.
    let out = env.run(&["generator"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("NORMAL_DIR/web.service.d/50-leger-backup.conf"));
}

#[test]
fn generator_never_fails_on_broken_input() {
    let env = with_deployments();
    env.write(
        ".config/containers/systemd/web/web.container",
        "[Container\nImage=\n",
    );
    env.write(
        ".config/leger/config.yaml",
        "auto:\n  enabeld: true\n  - [\n",
    );
    let dir = env.path("gen");
    let out = env.run(&[
        "generator",
        dir.to_str().unwrap(),
        env.path("e").to_str().unwrap(),
        env.path("l").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("leger-backup-generator:"), "{err}");
    assert!(err.contains("default settings"), "{err}");
    // The healthy deployment is still hooked.
    assert!(dir.join("solo-pod.service.d/50-leger-backup.conf").exists());

    // An output directory that cannot be written: still exit 0.
    let blocker = env.write("blocker", "");
    let out = env.run(&["generator", blocker.join("x").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn generator_honours_the_config() {
    let env = with_deployments();
    env.write(
        ".config/leger/config.yaml",
        "auto:\n  enabled: false\n  deployments:\n    solo: {enabled: true}\n",
    );
    let out = env.run(&["generator"]);
    let text = stdout(&out);
    assert!(text.contains("solo-pod.service"), "{text}");
    assert!(!text.contains("web.service"), "{text}");
}

#[test]
fn enable_and_disable_write_and_remove_dropins_without_generator() {
    let env = with_deployments();
    let unit_dir = env.path(".config/systemd/user");
    let out = env.run(&["enable", "web"]);
    // No user manager here: the reload fails, which is only a warning.
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("through drop-ins"), "{err}");
    for service in ["web.service", "web-db.service"] {
        let text =
            std::fs::read_to_string(unit_dir.join(format!("{service}.d/50-leger-backup.conf")))
                .unwrap();
        assert!(text.contains("--deployment web --unit %n"), "{text}");
    }
    assert!(!unit_dir.join("solo-pod.service.d").exists());

    let status = env.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["generator"], serde_json::Value::Null);
    assert_eq!(status["manager"]["reachable"], false);
    let find = |name: &str| {
        status["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(find("web")["automatic"], true);
    assert_eq!(find("web")["via"], "drop-ins");
    assert_eq!(find("solo")["automatic"], false);

    let out = env.run(&["enable", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(unit_dir
        .join("solo-pod.service.d/50-leger-backup.conf")
        .exists());
    let out = env.run(&["disable", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!unit_dir.join("web.service.d").exists());
    assert!(!unit_dir.join("web-db.service.d").exists());
    assert!(unit_dir.join("solo-pod.service.d").exists());
    let out = env.run(&["disable", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!unit_dir.join("solo-pod.service.d").exists());
    // The config was never needed.
    assert!(!env.path(".config/leger/config.yaml").exists());
}

#[test]
fn enable_refuses_a_config_it_cannot_edit_safely() {
    let env = with_deployments();
    let config = "# mine\nauto: {deployments: {web: {enabled: false}}}\n";
    env.write(".config/leger/config.yaml", config);
    let out = env.run(&["enable", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot edit"), "{err}");
    assert!(err.contains("auto.deployments.web.enabled: true"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.path(".config/leger/config.yaml")).unwrap(),
        config
    );
    assert!(!env.path(".config/systemd/user/web.service.d").exists());

    let out = env.run(&["enable", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no deployment named"));
}

#[test]
fn enable_and_disable_flip_the_config_when_the_generator_is_installed() {
    let env = with_deployments();
    let generator = env.generator_dir().join("leger-backup-user-generator");
    std::fs::create_dir_all(env.generator_dir()).unwrap();
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("leger-backup"), &generator).unwrap();
    let out = env.run(&["disable", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("through the generator"), "{err}");
    assert!(err.contains(&generator.display().to_string()), "{err}");
    let config = std::fs::read_to_string(env.path(".config/leger/config.yaml")).unwrap();
    assert!(config.contains("enabled: false"), "{config}");
    assert!(!env.path(".config/systemd/user").exists());

    // Masked (a symlink to /dev/null): drop-ins again.
    std::fs::remove_file(&generator).unwrap();
    std::os::unix::fs::symlink("/dev/null", &generator).unwrap();
    let out = env.run(&["enable", "solo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("through drop-ins"),
        "{}",
        stderr(&out)
    );
    assert!(env
        .path(".config/systemd/user/solo-pod.service.d/50-leger-backup.conf")
        .exists());
}

#[test]
fn leger_hook_cheap_paths() {
    let env = with_deployments();
    let out = env.run(&["leger-hook", "post-apply", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["leger-hook", "pre-something-new", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env
        .command()
        .env("LEGER_NO_BACKUP", "1")
        .args(["leger-hook", "pre-remove", "web"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no backup taken"), "{}", stderr(&out));
    let record =
        std::fs::read_to_string(env.path(".local/state/leger-backup/auto/web.json")).unwrap();
    assert!(record.contains("\"last_declined\": {"), "{record}");

    // A first apply: nothing installed yet, nothing to back up.
    let out = env.run(&["leger-hook", "pre-apply", "newcomer"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not installed"), "{}", stderr(&out));

    let out = env.run(&["leger-hook", "pre-remove", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_shipped_hook_scripts_find_the_binary_and_pass_arguments() {
    let env = with_deployments();
    let bin_dir = assert_cmd::cargo::cargo_bin("leger-backup")
        .parent()
        .unwrap()
        .to_owned();
    for event in ["pre-remove", "pre-apply"] {
        let script = repo_root().join(format!("hooks/{event}.d/50-leger-backup"));
        let out = std::process::Command::new(&script)
            .env_clear()
            .env("HOME", env.home.path())
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("LEGER_NO_BACKUP", "1")
            .env("LEGER_EVENT", event)
            .env("LEGER_DEPLOYMENT", "web")
            .args([event, "web"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{event}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no backup taken before"),
            "{event}: {}",
            stderr(&out)
        );
    }
}

/// The shipped hook scripts name the system binaries by absolute path, so
/// they run from a copy whose `/usr/bin` and `/usr/local/bin` point into a
/// temporary directory (nothing in the shipped script can be redirected).
#[test]
fn the_hook_scripts_prefer_usr_bin_then_usr_local_bin_then_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fake = |dir: &str| {
        let path = root.join(dir).join("leger-backup");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\necho \"{dir}\" \"$@\"\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    };
    for event in ["pre-remove", "pre-apply"] {
        let shipped =
            std::fs::read_to_string(repo_root().join(format!("hooks/{event}.d/50-leger-backup")))
                .unwrap();
        for system in ["/usr/bin/leger-backup", "/usr/local/bin/leger-backup"] {
            assert_eq!(shipped.matches(system).count(), 1, "{event}: {system}");
        }
        let usr_bin = fake("usr-bin");
        let usr_local = fake("usr-local-bin");
        let in_path = fake("planted-in-path");
        let copy = root.join(format!("{event}-hook"));
        std::fs::write(
            &copy,
            shipped
                .replace("/usr/bin/leger-backup", usr_bin.to_str().unwrap())
                .replace("/usr/local/bin/leger-backup", usr_local.to_str().unwrap()),
        )
        .unwrap();
        let run = || {
            std::process::Command::new("/bin/sh")
                .arg(&copy)
                .args([event, "web"])
                .env_clear()
                .env("PATH", in_path.parent().unwrap())
                .output()
                .unwrap()
        };
        for (remove, winner) in [
            (None, "usr-bin"),
            (Some(&usr_bin), "usr-local-bin"),
            (Some(&usr_local), "planted-in-path"),
        ] {
            if let Some(path) = remove {
                std::fs::remove_file(path).unwrap();
            }
            let out = run();
            assert!(out.status.success(), "{event}: {}", stderr(&out));
            assert_eq!(stdout(&out), format!("{winner} leger-hook {event} web\n"));
        }
        std::fs::remove_file(&in_path).unwrap();
        let out = run();
        assert_eq!(out.status.code(), Some(1), "{event}");
        assert!(
            stderr(&out).contains("not found in /usr/bin, /usr/local/bin or PATH"),
            "{event}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn stop_hook_records_skips_and_status_shows_them() {
    let env = with_deployments();
    env.write(
        ".config/leger/config.yaml",
        "auto:\n  deployments:\n    web:\n      enabled: false\n",
    );
    let out = env.run(&["stop-hook", "--deployment", "web", "--unit", "web.service"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("automatic backups are off"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&[
        "stop-hook",
        "--deployment",
        "gone",
        "--unit",
        "gone.service",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not installed any more"));

    let out = env.run(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("automatic backups: off"), "{text}");
    assert!(text.contains("last skipped:"), "{text}");
    assert!(
        text.contains("(stop-hook web.service): automatic backups are off"),
        "{text}"
    );
}

#[test]
fn generator_benchmark_runs() {
    let out = std::process::Command::new(repo_root().join("tests/bench/generator.sh"))
        .args(["3", "2"])
        .env(
            "LEGER_BACKUP_BIN",
            assert_cmd::cargo::cargo_bin("leger-backup"),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with("generator: 3 deployments, 6 services: best "),
        "{line}"
    );
    assert!(line.trim_end().ends_with("ms (2 runs)"), "{line}");
}
