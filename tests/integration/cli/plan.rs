//! `plan`: what a backup would capture, from files alone.

use crate::support::{stderr, stdout, TestEnv};

fn plan_json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "plan"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "plan failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON")
}

#[test]
fn plain_quadlet_subdirectory_is_a_deployment() {
    let env = TestEnv::new();
    env.copy_fixture("deployments/smoke", ".config/containers/systemd/smoke");
    let plan = plan_json(&env, &["smoke"]);
    assert_eq!(plan["name"], "smoke");
    assert_eq!(plan["kind"], "quadlet");
    assert_eq!(
        plan["files"],
        serde_json::json!(["smoke-web.container", "smoke-www.volume"])
    );
    assert_eq!(plan["volumes"][0]["name"], "systemd-smoke-www");
    assert_eq!(plan["volumes"][0]["defined_by"], "smoke-www.volume");
    assert_eq!(
        plan["volumes"][0]["used_by"],
        serde_json::json!(["smoke-web.service"])
    );
    assert_eq!(plan["ports"], serde_json::json!(["127.0.0.1:18181:8080"]));
}

#[test]
fn leger_deployment_lists_active_files_and_units() {
    let env = TestEnv::new();
    env.copy_fixture(
        "deployments/smoke",
        ".local/share/bluebuild-quadlets/active/smoke",
    );
    env.write(
        ".local/share/bluebuild-quadlets/active/smoke/smoke.env",
        "A=1\n",
    );
    env.copy_fixture("deployments/smoke", ".config/containers/systemd");
    let plan = plan_json(&env, &[]);
    assert_eq!(plan["kind"], "leger");
    assert_eq!(
        plan["files"],
        serde_json::json!(["smoke-web.container", "smoke-www.volume", "smoke.env"])
    );
    let services: Vec<&str> = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["smoke-web.service", "smoke-www-volume.service"]);
}

#[test]
fn quadlet_dir_plans_an_uninstalled_directory() {
    let env = TestEnv::new();
    let dir = env.copy_fixture("deployments/smoke", "checkout/smoke");
    let plan = plan_json(&env, &["--quadlet-dir", dir.to_str().unwrap()]);
    assert_eq!(plan["name"], "smoke");
    assert_eq!(plan["kind"], "directory");
    assert_eq!(plan["volumes"][0]["name"], "systemd-smoke-www");
}

#[test]
fn human_output_says_what_is_not_backed_up() {
    let env = TestEnv::new();
    env.write(
        ".config/containers/systemd/app/app.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=%h/data:/data\nVolume=cache:/cache\n",
    );
    let out = env.run(&["plan", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Host paths:"), "{text}");
    assert!(text.contains("%h/data -> /data"), "{text}");
    assert!(
        text.contains("backed up once it exists (nothing there to back up yet)"),
        "{text}"
    );
    assert!(!text.contains("not implemented"), "{text}");
    assert!(text.contains("cache"), "{text}");
}

#[test]
fn unknown_deployment_lists_the_known_ones() {
    let env = TestEnv::new();
    env.copy_fixture("deployments/smoke", ".config/containers/systemd/smoke");
    let out = env.run(&["plan", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no deployment named \"nope\""), "{err}");
    assert!(err.contains("smoke"), "{err}");
}

#[test]
fn several_deployments_need_a_name() {
    let env = TestEnv::new();
    env.copy_fixture("deployments/smoke", ".config/containers/systemd/one");
    env.copy_fixture("deployments/smoke", ".config/containers/systemd/two");
    let out = env.run(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("one, two"), "{}", stderr(&out));
}

#[test]
fn unknown_volume_reference_names_file_and_line() {
    let env = TestEnv::new();
    env.write(
        ".config/containers/systemd/app/app.container",
        "[Container]\nImage=localhost/busybox:latest\nVolume=missing.volume:/data\n",
    );
    let out = env.run(&["plan", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("app.container"), "{err}");
    assert!(err.contains(":3") || err.contains("line 3"), "{err}");
}
