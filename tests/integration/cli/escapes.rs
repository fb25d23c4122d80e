//! Control characters in a backup's metadata never reach the terminal raw:
//! `list`, `info`, `verify` and `prune` print them escaped, `--json`
//! carries the exact values (escaped the JSON way).

use super::backups::{fabricate, patch_metadata};
use crate::support::{stderr, stdout, TestEnv};

/// Sets the window title, rings the bell, clears the screen.
const TITLE: &str = "\x1b]0;pwned\x07";
const CLEAR: &str = "\x1b[2J";
/// A C1 control sequence introducer (U+009B), which serde_json leaves raw.
const CSI: &str = "\u{9b}31m";

const ID: &str = "web-2025-01-02-030405";

/// One backup whose reason and secrets hold escape sequences.
fn hostile() -> TestEnv {
    let env = TestEnv::new();
    fabricate(
        &env,
        ID,
        "web",
        "2025-01-02T03:04:05Z",
        "manual",
        &["web-data"],
    );
    patch_metadata(&env, ID, |m| {
        m["reason"] = format!("{TITLE}x{CLEAR}").into();
        m["secrets"] = serde_json::json!([CLEAR, format!("db{TITLE}"), CSI]);
    });
    env
}

/// Neither output stream holds a raw ESC, BEL or C1 control.
fn assert_no_raw_controls(out: &std::process::Output, what: &str) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let raw = text
            .chars()
            .find(|c| c.is_control() && *c != '\n' && *c != '\t');
        assert_eq!(raw, None, "{what}: raw control in {name}:\n{text:?}");
    }
}

#[test]
fn list_and_info_escape_reason_and_secrets() {
    let env = hostile();
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_raw_controls(&out, "list");
    assert!(
        stdout(&out).contains("\\x1b]0;pwned\\x07x\\x1b[2J"),
        "{}",
        stdout(&out)
    );

    let out = env.run(&["info", ID]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_raw_controls(&out, "info");
    let text = stdout(&out);
    assert!(
        text.contains("Reason        \\x1b]0;pwned\\x07x\\x1b[2J"),
        "{text}"
    );
    assert!(
        text.contains("Secrets       \\x1b[2J, db\\x1b]0;pwned\\x07, \\x9b31m"),
        "{text}"
    );

    for args in [
        vec!["verify", ID],
        vec!["prune", "--keep-manual", "0", "--dry-run"],
    ] {
        let out = env.run(&args);
        assert_no_raw_controls(&out, &args.join(" "));
    }
}

#[test]
fn json_carries_the_exact_values() {
    let env = hostile();
    for args in [vec!["list", "--json"], vec!["info", ID, "--json"]] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_no_raw_controls(&out, &args.join(" "));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let backup = if json.is_array() { &json[0] } else { &json };
        assert_eq!(backup["reason"], format!("{TITLE}x{CLEAR}"), "{args:?}");
        assert_eq!(
            backup["secrets"],
            serde_json::json!([CLEAR, format!("db{TITLE}"), CSI]),
            "{args:?}"
        );
    }
}

#[test]
fn errors_quoting_a_backup_are_escaped() {
    let env = hostile();
    // An archive that is not there, named with ESC, a C1 CSI (U+009B) and
    // DEL: the messages saying so quote its path.
    patch_metadata(&env, ID, |m| {
        m["volumes"][0]["archive_path"] = "volumes/\x1b[31m\u{9b}2J\u{7f}.tar.zst".into();
    });
    let out = env.run(&["list"]);
    assert!(
        stdout(&out).contains("volumes/\\x1b[31m\\x9b2J\\x7f.tar.zst"),
        "{}",
        stdout(&out)
    );
    for args in [vec!["list"], vec!["info", ID], vec!["verify", ID]] {
        let out = env.run(&args);
        assert_no_raw_controls(&out, &args.join(" "));
    }
}
