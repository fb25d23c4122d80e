//! `repo init | list | check` and `list | info | delete | prune --repo` with
//! the testbed's real restic, on a local path repository. The snapshots
//! are made with plain `restic backup` (the tags and the metadata file a
//! leger-backup snapshot has), so these tests need nothing of `create --to`
//! and show that a snapshot made without leger-backup is read the same.

use std::time::{Duration, Instant};

use crate::support::deploy::LegerConfig;
use crate::support::testbed::Testbed;

/// The repository's directory and secrets, unique to these tests.
const DIR: &str = "$HOME/e2e-repo-commands";

const CONFIG: &str = "backup:
  repositories:
    e2erepo:
      url: ~/e2e-repo-commands/repo
      password_file: ~/e2e-repo-commands/password
    e2edown:
      url: rest:http://e2e:downpass@127.0.0.1:9/none
      password_file: ~/e2e-repo-commands/password
";

/// Shell functions: `snap ID DAY REASON TYPE` makes one snapshot of
/// deployment `repocmd` the way leger-backup tags it.
const PRELUDE: &str = r#"
set -eu
D=$HOME/e2e-repo-commands
export RESTIC_REPOSITORY=$D/repo RESTIC_PASSWORD_FILE=$D/password
snap() {
  rm -rf "$D/stage" && mkdir -p "$D/stage/volumes/data"
  echo "data $2" > "$D/stage/volumes/data/f"
  printf '{"id":"%s","deployment_name":"repocmd","created_at":"2025-01-0%sT12:00:00Z","type":"%s","reason":"%s","size":10,"quadlet_files":["repocmd.container"],"volumes":[],"format_version":1,"scope":"user","compression":"zstd"}' \
    "$1" "$2" "$4" "$3" > "$D/stage/.backup-metadata.json"
  (cd "$D/stage" && restic backup -q --tag "leger-backup,deployment=repocmd,id=$1,type=$4,reason=$3" . >/dev/null)
}
"#;

fn setup(tb: &Testbed) -> LegerConfig<'_> {
    tb.ok(&format!(
        "rm -rf {DIR} && mkdir -p {DIR} && printf 'e2e-repo-pass\\n' > {DIR}/password && chmod 600 {DIR}/password"
    ));
    LegerConfig::set(tb, CONFIG)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn repo_init_list_check_then_list_info_delete_prune_a_path_repository() {
    let tb = Testbed::get();
    let _config = setup(&tb);
    tb.ok("leger-backup repo init e2erepo");
    tb.ok("leger-backup repo check e2erepo");

    tb.ok(&format!(
        "{PRELUDE}
         snap repocmd-2025-01-01-120000 1 manual manual
         snap repocmd-2025-01-02-120000 2 manual manual
         snap repocmd-2025-01-03-120000 3 on-stop automatic
         (cd $D/stage && restic backup -q --tag leger-backup,id=foreign . >/dev/null)"
    ));

    let repos = json(&tb.ok("leger-backup --json repo list"));
    let local = repos
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "e2erepo")
        .expect("e2erepo listed");
    assert_eq!(local["reachable"], true, "{repos}");
    assert_eq!(local["snapshots"], 4, "{repos}");

    let listed = json(&tb.ok("leger-backup --json list --repo e2erepo"));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed.iter().filter(|e| e["valid"] == false).count(), 1);
    let newest = listed.iter().find(|e| e["valid"] == true).unwrap();
    assert_eq!(newest["id"], "repocmd-2025-01-03-120000");
    assert_eq!(newest["retention"], "automatic");
    assert_eq!(newest["repository"], "e2erepo");

    let info = json(&tb.ok("leger-backup --json info repocmd-2025-01-01-120000 --repo e2erepo"));
    assert_eq!(info["deployment_name"], "repocmd");
    assert_eq!(info["repository"], "e2erepo");
    assert_eq!(info["snapshot"].as_str().unwrap().len(), 64);

    tb.ok("leger-backup delete repocmd-2025-01-03-120000 --repo e2erepo --yes");
    let pruned = json(&tb.ok("leger-backup --json prune --repo e2erepo --keep-manual 1"));
    assert_eq!(
        pruned["deleted"],
        serde_json::json!(["repocmd-2025-01-01-120000"])
    );
    assert_eq!(pruned["invalid"].as_array().unwrap().len(), 1);
    // What is left is a plain restic snapshot anyone can list.
    let left = tb.ok(&format!(
        "{PRELUDE} restic snapshots --json --tag leger-backup,deployment=repocmd"
    ));
    let left = json(&left);
    let left: Vec<&serde_json::Value> = left.as_array().unwrap().iter().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0]["tags"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("id=repocmd-2025-01-02-120000")));
    tb.ok(&format!("rm -rf {DIR}"));
}

#[test]
fn an_unreachable_repository_and_a_wrong_password_are_clear_errors() {
    let tb = Testbed::get();
    let _config = setup(&tb);
    tb.ok("leger-backup repo init e2erepo");

    let started = Instant::now();
    let out = tb.sh("leger-backup list --repo e2edown");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("repository e2edown"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains("downpass"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "restic's retries were not cut short"
    );
    let repos = json(&tb.ok("leger-backup --json repo list"));
    let down = repos
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "e2edown")
        .unwrap();
    assert_eq!(down["reachable"], false);

    tb.ok(&format!("printf 'wrong\\n' > {DIR}/password"));
    let out = tb.sh("leger-backup list --repo e2erepo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("wrong password for repository e2erepo"),
        "{err}"
    );
    tb.ok(&format!("rm -rf {DIR}"));
}
