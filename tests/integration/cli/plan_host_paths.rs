//! `plan` on deployments that keep data on the host: every host path with
//! its decision, from files alone.

use crate::support::{stderr, stdout, TestEnv};

/// Output with the temporary HOME and the uid-dependent runtime directory
/// replaced, so that snapshots hold on any machine.
fn normalized(env: &TestEnv, text: &str) -> String {
    let uid = nix::unistd::getuid();
    text.replace(&env.home.path().display().to_string(), "~")
        .replace(&format!("/run/user/{uid}/"), "/run/user/UID/")
}

fn plan(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "plan failed: {}", stderr(&out));
    normalized(env, &stdout(&out))
}

fn plan_json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let text = plan(env, args);
    serde_json::from_str(&text).expect("plan --json prints JSON")
}

fn album(env: &TestEnv) {
    env.copy_fixture("deployments/album", ".config/containers/systemd/album");
}

/// The homelab fixture, with a database directory and an init script.
fn homelab(env: &TestEnv) {
    env.copy_fixture("deployments/homelab", ".config/containers/systemd/homelab");
    env.write("homelab/mariadb/ibdata1", &"x".repeat(3000));
    env.write("homelab/mariadb/db/t.frm", &"y".repeat(96));
    env.write("homelab/init.sql", "create table t (id int);\n");
}

#[test]
fn album_paths_from_an_environment_file() {
    let env = TestEnv::new();
    album(&env);
    let text = plan(&env, &["plan", "album"]);
    let host = &text[text.find("Host paths:").unwrap()..text.find("Published ports:").unwrap()];
    insta::assert_snapshot!(host, @r#"
        Host paths:
          data          ~/.config/containers/systemd/album/album.env  (183 B)
                        inside the deployment's directory, whose files every backup already holds
                        in today's backups (a deployment file)
                        ~/.config/containers/systemd/album/album.env  album-db.container:9 (album-db.service)
                        %h/.config/containers/systemd/album/album.env  album-db.container:15 (album-db.service)
                        ~/.config/containers/systemd/album/album.env  album-server.container:13 (album-server.service)
                        %h/.config/containers/systemd/album/album.env  album-server.container:21 (album-server.service)
          data          /var/lib/album/postgres  (missing)
                        under /var/lib
                        backed up once it exists (nothing there to back up yet)
                        ${DB_DATA_LOCATION} -> /var/lib/postgresql/data  album-db.container:10 (album-db.service)
          system        /etc/localtime  (exists)
                        the operating system's (/etc/localtime is never backed up)
                        never backed up
                        /etc/localtime -> /etc/localtime  album-db.container:11 (album-db.service)
                        /etc/localtime -> /etc/localtime  album-server.container:15 (album-server.service)
          unresolved    ${MODEL_CACHE}
                        unresolved: ${MODEL_CACHE} not defined by the service's [Service] Environment=/EnvironmentFile= (systemd would substitute an empty string; [Container] Environment= is the container's own and not used for Volume=)
                        not backed up: cannot be known
                        ${MODEL_CACHE} -> /cache  album-ml.container:11 (album-ml.service)
          data          /srv/album/library  (missing)
                        under /srv
                        backed up once it exists (nothing there to back up yet)
                        ${UPLOAD_LOCATION} -> /data  album-server.container:14 (album-server.service)
          data          ~/.config/containers/systemd/album/config.yml  (82 B)
                        inside the deployment's directory, whose files every backup already holds
                        in today's backups (a deployment file)
                        ~/.config/containers/systemd/album/config.yml -> /config/album.yml  album-server.container:16 (album-server.service)
        "#);
}

#[test]
fn album_json_keys_are_stable() {
    let env = TestEnv::new();
    album(&env);
    let plan = plan_json(&env, &["--json", "plan", "album"]);
    insta::assert_json_snapshot!(plan["host_paths"], @r#"
        [
          {
            "backed_up_today": true,
            "exists": true,
            "file": "album-db.container",
            "kind": "data",
            "line": 9,
            "reason": "inside the deployment's directory, whose files every backup already holds",
            "reference": "container-env-file",
            "resolved": "~/.config/containers/systemd/album/album.env",
            "service": "album-db.service",
            "size_at_least": false,
            "size_bytes": 183,
            "source": "~/.config/containers/systemd/album/album.env",
            "target": null,
            "unit": "album-db.container"
          },
          {
            "backed_up_today": false,
            "exists": false,
            "file": "album-db.container",
            "kind": "data",
            "line": 10,
            "reason": "under /var/lib",
            "reference": "mount",
            "resolved": "/var/lib/album/postgres",
            "service": "album-db.service",
            "size_at_least": false,
            "size_bytes": null,
            "source": "${DB_DATA_LOCATION}",
            "target": "/var/lib/postgresql/data",
            "unit": "album-db.container"
          },
          {
            "backed_up_today": false,
            "exists": true,
            "file": "album-db.container",
            "kind": "system",
            "line": 11,
            "reason": "the operating system's (/etc/localtime is never backed up)",
            "reference": "mount",
            "resolved": "/etc/localtime",
            "service": "album-db.service",
            "size_at_least": false,
            "size_bytes": null,
            "source": "/etc/localtime",
            "target": "/etc/localtime",
            "unit": "album-db.container"
          },
          {
            "backed_up_today": true,
            "exists": true,
            "file": "album-db.container",
            "kind": "data",
            "line": 15,
            "reason": "inside the deployment's directory, whose files every backup already holds",
            "reference": "service-env-file",
            "resolved": "~/.config/containers/systemd/album/album.env",
            "service": "album-db.service",
            "size_at_least": false,
            "size_bytes": 183,
            "source": "%h/.config/containers/systemd/album/album.env",
            "target": null,
            "unit": "album-db.container"
          },
          {
            "backed_up_today": false,
            "exists": false,
            "file": "album-ml.container",
            "kind": "unresolved",
            "line": 11,
            "reason": "unresolved: ${MODEL_CACHE} not defined by the service's [Service] Environment=/EnvironmentFile= (systemd would substitute an empty string; [Container] Environment= is the container's own and not used for Volume=)",
            "reference": "mount",
            "resolved": null,
            "service": "album-ml.service",
            "size_at_least": false,
            "size_bytes": null,
            "source": "${MODEL_CACHE}",
            "target": "/cache",
            "unit": "album-ml.container"
          },
          {
            "backed_up_today": true,
            "exists": true,
            "file": "album-server.container",
            "kind": "data",
            "line": 13,
            "reason": "inside the deployment's directory, whose files every backup already holds",
            "reference": "container-env-file",
            "resolved": "~/.config/containers/systemd/album/album.env",
            "service": "album-server.service",
            "size_at_least": false,
            "size_bytes": 183,
            "source": "~/.config/containers/systemd/album/album.env",
            "target": null,
            "unit": "album-server.container"
          },
          {
            "backed_up_today": false,
            "exists": false,
            "file": "album-server.container",
            "kind": "data",
            "line": 14,
            "reason": "under /srv",
            "reference": "mount",
            "resolved": "/srv/album/library",
            "service": "album-server.service",
            "size_at_least": false,
            "size_bytes": null,
            "source": "${UPLOAD_LOCATION}",
            "target": "/data",
            "unit": "album-server.container"
          },
          {
            "backed_up_today": false,
            "exists": true,
            "file": "album-server.container",
            "kind": "system",
            "line": 15,
            "reason": "the operating system's (/etc/localtime is never backed up)",
            "reference": "mount",
            "resolved": "/etc/localtime",
            "service": "album-server.service",
            "size_at_least": false,
            "size_bytes": null,
            "source": "/etc/localtime",
            "target": "/etc/localtime",
            "unit": "album-server.container"
          },
          {
            "backed_up_today": true,
            "exists": true,
            "file": "album-server.container",
            "kind": "data",
            "line": 16,
            "reason": "inside the deployment's directory, whose files every backup already holds",
            "reference": "mount",
            "resolved": "~/.config/containers/systemd/album/config.yml",
            "service": "album-server.service",
            "size_at_least": false,
            "size_bytes": 82,
            "source": "~/.config/containers/systemd/album/config.yml",
            "target": "/config/album.yml",
            "unit": "album-server.container"
          },
          {
            "backed_up_today": true,
            "exists": true,
            "file": "album-server.container",
            "kind": "data",
            "line": 21,
            "reason": "inside the deployment's directory, whose files every backup already holds",
            "reference": "service-env-file",
            "resolved": "~/.config/containers/systemd/album/album.env",
            "service": "album-server.service",
            "size_at_least": false,
            "size_bytes": 183,
            "source": "%h/.config/containers/systemd/album/album.env",
            "target": null,
            "unit": "album-server.container"
          }
        ]
        "#);
    assert!(plan.get("bind_mounts").is_none());
    assert_eq!(plan["unresolved"], serde_json::json!([]));
}

#[test]
fn home_binds_specifiers_and_sockets() {
    let env = TestEnv::new();
    homelab(&env);
    let text = plan(&env, &["plan", "homelab"]);
    insta::assert_snapshot!(text, @r#"
        Deployment homelab (quadlet)
          installed in:     ~/.config/containers/systemd/homelab
        Files:
          homelab-db.container
          homelab-files.container
        Units:
          homelab-db.container  ->  homelab-db.service
          homelab-files.container  ->  homelab-files.service
        Host paths:
          data          ~/homelab/mariadb  (3.0 KiB)
                        under the user's home
                        backed up (its data is in every backup)
                        %h/homelab/mariadb -> /var/lib/mysql  homelab-db.container:5 (homelab-db.service)
          referenced    ~/homelab/init.sql  (25 B)
                        a single file the unit mounts (a config or script): always backed up
                        backed up (its data is in every backup)
                        %h/homelab/init.sql -> /docker-entrypoint-initdb.d/init.sql  homelab-db.container:6 (homelab-db.service)
          needs-include ~  (3.6 KiB)
                        holds a whole home directory: backed up only when an include: glob names it
                        not backed up unless a glob in backup.deployments.homelab.include names it
                        %h -> /srv/home  homelab-files.container:5 (homelab-files.service)
          system        /run/user/UID/podman/podman.sock  (missing)
                        the service manager's runtime directory
                        never backed up
                        %t/podman/podman.sock -> /var/run/docker.sock  homelab-files.container:6 (homelab-files.service)
          data          ~/.local/state/homelab-files  (missing)
                        under the user's home
                        backed up once it exists (nothing there to back up yet)
                        %S/homelab-files -> /state  homelab-files.container:7 (homelab-files.service)
          unresolved    $FILES_ROOT/cache
                        unresolved: $FILES_ROOT without braces is expanded by systemd only as a whole command-line word, which a volume source never is: write ${FILES_ROOT}
                        not backed up: cannot be known
                        $FILES_ROOT/cache -> /cache  homelab-files.container:8 (homelab-files.service)
        "#);
}

#[test]
fn root_deployment_keeps_data_under_var_lib_and_etc() {
    let env = TestEnv::new();
    let dir = env.copy_fixture("deployments/postgresql", "checkout/postgresql");
    let text = plan(
        &env,
        &["--system", "plan", "--quadlet-dir", dir.to_str().unwrap()],
    );
    let host = &text[text.find("Host paths:").unwrap()..];
    insta::assert_snapshot!(host, @r#"
        Host paths:
          data          /var/lib/quadlets/postgresql  (missing)
                        under /var/lib
                        backed up once it exists (nothing there to back up yet)
                        /var/lib/quadlets/postgresql -> /var/lib/postgresql  postgresql-init.container:9 (postgresql-init.service)
                        /var/lib/quadlets/postgresql -> /var/lib/postgresql  postgresql.container:15 (postgresql.service)
          data          /etc/quadlets/postgresql/init.sh  (missing)
                        under /etc/<app>: a system deployment's own configuration and scripts
                        backed up once it exists (nothing there to back up yet)
                        /etc/quadlets/postgresql/init.sh -> /usr/local/bin/init.sh  postgresql-init.container:10 (postgresql-init.service)
          data          /etc/quadlets/postgresql/init.sql  (missing)
                        under /etc/<app>: a system deployment's own configuration and scripts
                        backed up once it exists (nothing there to back up yet)
                        /etc/quadlets/postgresql/init.sql -> /docker-entrypoint-initdb.d/init.sql  postgresql-init.container:11 (postgresql-init.service)
          referenced    /etc/quadlets/postgresql/config.env  (missing)
                        an environment file the unit reads: always backed up
                        backed up once it exists (nothing there to back up yet)
                        /etc/quadlets/postgresql/config.env  postgresql-init.container:15 (postgresql-init.service)
                        /etc/quadlets/postgresql/config.env  postgresql.container:14 (postgresql.service)
                        /etc/quadlets/postgresql/config.env  postgresql.container:20 (postgresql.service)
          system        /var/run/quadlets/postgresql  (missing)
                        the operating system's (/var/run is never backed up)
                        never backed up
                        /var/run/quadlets/postgresql -> /var/run/postgresql  postgresql.container:16 (postgresql.service)
          system        /etc/localtime  (exists)
                        the operating system's (/etc/localtime is never backed up)
                        never backed up
                        /etc/localtime -> /etc/localtime  postgresql.container:17 (postgresql.service)
          referenced    /etc/quadlets/postgresql/check-config.sh  (missing)
                        a program the service runs (a script): always backed up
                        backed up once it exists (nothing there to back up yet)
                        /etc/quadlets/postgresql/check-config.sh  postgresql.container:21 (postgresql.service)
        "#);
}

#[test]
fn globs_and_bind_mounts_none_decide() {
    let env = TestEnv::new();
    homelab(&env);
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  bind_mounts: none\n  deployments:\n    homelab:\n      include: [\"~\"]\n      exclude: [\"~/homelab/mariadb\"]\n",
    );
    let plan = plan_json(&env, &["--json", "plan", "homelab"]);
    let decisions: Vec<(String, String, String)> = plan["host_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["source"].as_str().unwrap().to_owned(),
                h["kind"].as_str().unwrap().to_owned(),
                h["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    insta::assert_debug_snapshot!(decisions, @r#"
        [
            (
                "%h/homelab/mariadb",
                "excluded",
                "excluded by the glob ~/homelab/mariadb",
            ),
            (
                "%h/homelab/init.sql",
                "referenced",
                "a single file the unit mounts (a config or script): always backed up",
            ),
            (
                "%h",
                "data",
                "included by the glob ~",
            ),
            (
                "%t/podman/podman.sock",
                "system",
                "the service manager's runtime directory",
            ),
            (
                "%S/homelab-files",
                "excluded",
                "backup.bind_mounts is none (an include: glob would take it)",
            ),
            (
                "$FILES_ROOT/cache",
                "unresolved",
                "unresolved: $FILES_ROOT without braces is expanded by systemd only as a whole command-line word, which a volume source never is: write ${FILES_ROOT}",
            ),
        ]
        "#);
}

#[test]
fn a_bad_glob_names_file_line_and_column() {
    let env = TestEnv::new();
    homelab(&env);
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  deployments:\n    homelab:\n      exclude: [\"media/**\"]\n",
    );
    let out = env.run(&["plan", "homelab"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("config.yaml:4:"), "{err}");
    assert!(err.contains("absolute"), "{err}");
}

#[test]
fn a_missing_environment_file_is_the_reason() {
    let env = TestEnv::new();
    album(&env);
    std::fs::remove_file(env.path(".config/containers/systemd/album/album.env")).unwrap();
    let plan = plan_json(&env, &["--json", "plan", "album"]);
    let library = plan["host_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["source"] == "${UPLOAD_LOCATION}")
        .unwrap();
    assert_eq!(library["kind"], "unresolved");
    let reason = library["reason"].as_str().unwrap();
    assert!(
        reason.contains("${UPLOAD_LOCATION} not defined"),
        "{reason}"
    );
    assert!(
        reason.contains("album-server.container:21: EnvironmentFile=%h/.config/containers/systemd/album/album.env"),
        "{reason}"
    );
    assert!(reason.contains("No such file"), "{reason}");
}

#[test]
fn config_show_lists_host_path_settings() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  bind_mounts: none\n  deployments:\n    album:\n      exclude: [/srv/album/library/**]\n",
    );
    let text = plan(&env, &["config", "show"]);
    assert!(text.contains("backup.bind_mounts"), "{text}");
    assert!(text.contains("backup.deployments.album.exclude"), "{text}");
    let json = plan_json(&env, &["--json", "config", "show"]);
    assert_eq!(json["backup"]["bind_mounts"]["value"], "none");
    assert_eq!(
        json["backup"]["deployments"]["album"]["exclude"],
        serde_json::json!(["/srv/album/library/**"])
    );
}

#[test]
fn files_of_the_deployment_ignore_host_path_settings() {
    let env = TestEnv::new();
    album(&env);
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  bind_mounts: none\n  deployments:\n    album:\n      exclude: [\"~/**\"]\n",
    );
    let plan = plan_json(&env, &["--json", "plan", "album"]);
    let config = plan["host_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == "/config/album.yml")
        .unwrap();
    assert_eq!(config["kind"], "data");
    assert_eq!(config["backed_up_today"], true);
    let library = plan["host_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["source"] == "${UPLOAD_LOCATION}")
        .unwrap();
    assert_eq!(library["kind"], "excluded");
}
