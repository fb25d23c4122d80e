//! The command tree, help, generated docs, errors and exit codes.

use crate::support::{stderr, stdout, TestEnv};

#[test]
fn help_shows_the_command_tree() {
    let env = TestEnv::new();
    let out = env.run(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for command in [
        "create",
        "list",
        "info",
        "verify",
        "restore",
        "delete",
        "prune",
        "plan",
        "enable",
        "disable",
        "status",
        "config",
        "completions",
        "man",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from --help:\n{help}"
        );
    }
    assert!(
        !help.contains("stop-hook"),
        "hidden entry points stay hidden"
    );
}

#[test]
fn completions_and_man_page_print() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("leger-backup"), "{shell}");
    }
    let man = env.run(&["man"]);
    assert!(man.status.success());
    let page = stdout(&man);
    assert!(page.contains(".TH leger-backup 1"), "{page}");
    assert!(page.contains("restore"));
}

/// The internal entry points (`volume-tar`, the hooks, the generator) are
/// hidden from everything generated for users: `--help`, the man page and
/// the completions of every shell, including `help`'s list of commands.
#[test]
fn hidden_entry_points_are_in_no_help_man_page_or_completion() {
    let env = TestEnv::new();
    let hidden = [
        "volume-tar",
        "volume\\-tar",
        "stop-hook",
        "stop\\-hook",
        "leger-hook",
    ];
    let mut outputs = vec![
        ("--help".to_owned(), env.run(&["--help"])),
        ("help".to_owned(), env.run(&["help"])),
        ("man".to_owned(), env.run(&["man"])),
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        outputs.push((shell.to_owned(), env.run(&["completions", shell])));
    }
    for (what, out) in outputs {
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("restore"),
            "{what} lost the commands:\n{text}"
        );
        for name in hidden {
            assert!(!text.contains(name), "{what} shows {name}:\n{text}");
        }
    }
    // Hidden, not gone: the entry point still runs.
    let out = env.run(&["volume-tar", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let out = env.run(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["--user", "--system", "plan"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_errors_name_file_line_and_column() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "backup:\n  keep_manual: 3\n  compresion: gzip\n",
    );
    let out = env.run(&["config", "show"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("config.yaml:3:"), "{err}");
    assert!(err.contains("compresion"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn config_show_reports_sources() {
    let env = TestEnv::new();
    env.write(
        ".config/leger/config.yaml",
        "some_leger_key: true\nbackup:\n  keep_manual: 3\n",
    );
    let out = env.run(&["--json", "config", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backup"]["keep_manual"]["value"], 3);
    assert_eq!(json["backup"]["keep_manual"]["source"], "file");
    assert_eq!(json["backup"]["keep_automatic"]["source"], "default");
}

#[test]
fn invalid_deployment_name_is_refused() {
    let env = TestEnv::new();
    let out = env.run(&["plan", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid deployment name"),
        "{}",
        stderr(&out)
    );
}
