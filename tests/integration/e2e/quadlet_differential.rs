//! Differential test of the Quadlet model against the real generator.
//!
//! For every fixture deployment `tests/fixtures/quadlet/<name>/`, the
//! Podman volume names (and services) that `leger-backup plan <name> --json`
//! reports must be exactly those podman 5.4.2's Quadlet generator puts into
//! the units it generates, as `/usr/libexec/podman/quadlet -dryrun -user`
//! prints them in the testbed.
//!
//! Each fixture is installed alone as `<config>/containers/systemd/<name>/`
//! where `<config>` is a private `XDG_CONFIG_HOME` (data and state
//! directories private too): the generator (`os.UserConfigDir()`) and
//! leger-backup (`Layout`) both honour it, so the fixture is the only thing
//! in the user's Quadlet directory without wiping `~/.config/containers/systemd`,
//! which other e2e tests use at the same time. Only generated units whose
//! `SourcePath=` lies in the fixture's directory are compared, so files in
//! the system-wide directories of the search path cannot disturb the result.
//!
//! How names are read from the generator's output (`cmd/quadlet/main.go`
//! prints `---<service>---` then the unit; `pkg/systemd/quadlet/quadlet.go`
//! builds the command lines, `pkg/systemd/parser/split.go` quotes them):
//! - `ExecStart=`/`ExecStartPre=` lines are split as systemd splits them
//!   (words needing it are written `"…"` with C escapes);
//! - `-v SRC:DEST[:OPTS]` / `--volume` (containers, `pod create`, `build`,
//!   and `PodmanArgs=`) name a volume when SRC is neither a path (`/`, `.`)
//!   nor a systemd specifier (`%h/...` is a host path once systemd expands it);
//! - `--mount type=volume,source=NAME,...` (a CSV record) names NAME;
//! - `podman volume create [options] NAME` (a `.volume` unit) names NAME.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::support::repo_root;
use crate::support::testbed::{Testbed, SRC};

/// Where each fixture's private XDG directories live inside the testbed.
const WORK: &str = "/tmp/leger-quadlet-differential";

/// What one side says about a deployment.
#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    volumes: BTreeSet<String>,
    services: BTreeSet<String>,
}

fn fixture_names() -> Vec<String> {
    let dir = repo_root().join("tests/fixtures/quadlet");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_safe_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The shell prologue that gives a fixture its private, freshly installed
/// Quadlet directory.
fn env_for(name: &str) -> String {
    format!(
        "base={WORK}/{name}; \
         export XDG_CONFIG_HOME=$base/config XDG_DATA_HOME=$base/data XDG_STATE_HOME=$base/state; "
    )
}

/// Split an `Exec*=` value written by Quadlet's `escapeWords`: words are
/// separated by spaces; a word needing it is wrapped in double quotes with
/// C escapes inside.
fn exec_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                let escaped = match chars.next() {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('v') => '\u{0B}',
                    Some('f') => '\u{0C}',
                    Some('a') => '\u{07}',
                    Some('b') => '\u{08}',
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{FFFD}')
                    }
                    Some(other) => other,
                    None => break,
                };
                word.push(escaped);
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Fields of one CSV record as Go's `encoding/csv` writes them (a field with
/// a comma or quote is quoted, `""` inside).
fn csv_fields(record: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            other => field.push(other),
        }
    }
    fields.push(field);
    fields
}

/// A `-v` source that is a Podman named volume (not a path, not something
/// systemd turns into a path).
fn is_named_source(source: &str) -> bool {
    !source.is_empty()
        && !source.starts_with('/')
        && !source.starts_with('.')
        && !source.starts_with('%')
}

/// Named volumes on one podman command line.
fn volumes_in_command(words: &[String], out: &mut BTreeSet<String>) {
    if words
        .windows(2)
        .any(|w| w[0] == "volume" && w[1] == "create")
    {
        if let Some(name) = words.last() {
            out.insert(name.clone());
        }
        return;
    }
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let (flag, value) = match word {
            "-v" | "--volume" | "--mount" => {
                i += 1;
                (word, words.get(i).cloned().unwrap_or_default())
            }
            _ => match word.split_once('=') {
                Some(("--volume" | "-v", v)) => ("-v", v.to_owned()),
                Some(("--mount", v)) => ("--mount", v.to_owned()),
                _ => {
                    i += 1;
                    continue;
                }
            },
        };
        i += 1;
        if flag == "--mount" {
            let fields = csv_fields(&value);
            let is_volume = fields.iter().any(|f| f == "type=volume");
            let source = fields
                .iter()
                .filter_map(|f| f.strip_prefix("source=").or_else(|| f.strip_prefix("src=")))
                .next_back();
            if let (true, Some(source)) = (is_volume, source) {
                if is_named_source(source) {
                    out.insert(source.to_owned());
                }
            }
        } else if let Some((source, _)) = value.split_once(':') {
            if is_named_source(source) {
                out.insert(source.to_owned());
            }
        }
    }
}

/// What the generator's dry run says about the units whose source file lies
/// under `dir`.
fn generator_view(stdout: &str, dir: &str) -> Observed {
    let mut observed = Observed::default();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(name) = line
            .strip_prefix("---")
            .and_then(|rest| rest.strip_suffix("---"))
        {
            sections.push((name.to_owned(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.to_owned());
        }
    }
    for (service, lines) in sections {
        let ours = lines.iter().any(|l| {
            l.strip_prefix("SourcePath=")
                .is_some_and(|p| p.starts_with(&format!("{dir}/")))
        });
        if !ours {
            continue;
        }
        observed.services.insert(service);
        for line in &lines {
            let command = line
                .strip_prefix("ExecStart=")
                .or_else(|| line.strip_prefix("ExecStartPre="));
            if let Some(command) = command {
                volumes_in_command(&exec_words(command), &mut observed.volumes);
            }
        }
    }
    observed
}

fn plan_view(json: &str) -> Result<Observed, String> {
    let plan: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("plan --json is not JSON ({e}): {json}"))?;
    let strings = |key: &str, field: &str| -> Result<BTreeSet<String>, String> {
        plan[key]
            .as_array()
            .ok_or_else(|| format!("plan --json has no {key} array: {json}"))?
            .iter()
            .map(|v| {
                v[field]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{key}[].{field} missing: {json}"))
            })
            .collect()
    };
    Ok(Observed {
        volumes: strings("volumes", "name")?,
        services: strings("units", "service")?,
    })
}

fn check_fixture(tb: &Testbed, name: &str) -> Result<(), String> {
    let env = env_for(name);
    let dir_expr = "$XDG_CONFIG_HOME/containers/systemd";
    let setup = format!(
        "set -e; {env} rm -rf \"$base\"; mkdir -p {dir_expr} \"$XDG_DATA_HOME\" \"$XDG_STATE_HOME\"; \
         cp -R {SRC}/tests/fixtures/quadlet/{name} {dir_expr}/{name}; \
         printf '%s' {dir_expr}/{name}"
    );
    let out = tb.sh(&setup);
    if !out.status.success() {
        return Err(format!(
            "installing the fixture failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let generated = tb.sh(&format!("{env} /usr/libexec/podman/quadlet -dryrun -user"));
    let stderr = String::from_utf8_lossy(&generated.stderr);
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&dir) && !l.contains("Loading source"))
        .filter(|l| l.contains("error") || l.contains("converting"))
        .collect();
    if !failures.is_empty() || stderr.contains("panic:") {
        return Err(format!(
            "the generator refused the fixture:\n{}",
            if failures.is_empty() {
                stderr.to_string()
            } else {
                failures.join("\n")
            }
        ));
    }
    let expected = generator_view(&String::from_utf8_lossy(&generated.stdout), &dir);

    let plan = tb.sh(&format!("{env} leger-backup plan {name} --json"));
    if !plan.status.success() {
        return Err(format!(
            "leger-backup plan {name} --json failed ({}): {}",
            plan.status,
            String::from_utf8_lossy(&plan.stderr)
        ));
    }
    let actual = plan_view(&String::from_utf8_lossy(&plan.stdout))?;

    tb.sh(&format!("{env} rm -rf \"$base\""));

    if expected.services.is_empty() {
        return Err("the generator produced no unit for the fixture".to_owned());
    }
    if actual == expected {
        Ok(())
    } else {
        let mut msg = String::new();
        let diff =
            |what: &str, gen: &BTreeSet<String>, plan: &BTreeSet<String>, msg: &mut String| {
                let missing: Vec<&String> = gen.difference(plan).collect();
                let extra: Vec<&String> = plan.difference(gen).collect();
                if !missing.is_empty() || !extra.is_empty() {
                    let _ = writeln!(
                        msg,
                        "  {what}: generator has {gen:?}, plan has {plan:?} \
                     (plan misses {missing:?}, plan adds {extra:?})"
                    );
                }
            };
        diff("volumes", &expected.volumes, &actual.volumes, &mut msg);
        diff("services", &expected.services, &actual.services, &mut msg);
        Err(msg)
    }
}

#[test]
fn plan_volume_names_match_the_quadlet_generator() {
    let names = fixture_names();
    assert!(
        names.len() >= 15,
        "expected at least 15 fixture deployments under tests/fixtures/quadlet, found {}",
        names.len()
    );
    for name in &names {
        assert!(
            is_safe_identifier(name),
            "fixture directory {name:?} must be named with letters, digits, '-' and '_'"
        );
    }
    let tb = Testbed::get();
    let mut report = String::new();
    for name in &names {
        if let Err(problem) = check_fixture(&tb, name) {
            let _ = writeln!(report, "fixture {name}:\n{problem}");
        }
    }
    assert!(
        report.is_empty(),
        "plan and the real Quadlet generator disagree:\n{report}"
    );
}

#[test]
fn extraction_reads_quadlet_command_lines() {
    // The oracle's own parsing, on lines copied from podman 5.4.2's
    // `quadlet -dryrun` output.
    let out = "---web.service---\n\
        [Unit]\n\
        SourcePath=/c/containers/systemd/dep/web.container\n\
        [Service]\n\
        ExecStart=/usr/bin/podman run --name systemd-%N --cidfile=%t/%N.cid --replace --rm \
        --cgroups=split --sdnotify=conmon -d -v quotedname:/data -v \"x:/b :ro\" -v \"\\\"q:/c\\\"\" \
        -v /tmp/dep/rel:/r -v %h/x:/y -v /empty --secret s1,type=env,target=X \
        --mount type=volume,source=mnt,destination=/m --mount type=bind,source=/s,destination=/b \
        --mount \"type=volume,\\\"source=a,b\\\"\" --volume=pa2:/x localhost/busybox:latest\n\
        ExecStop=/usr/bin/podman rm -v -f -i --cidfile=%t/%N.cid\n\
        ---data-volume.service---\n\
        SourcePath=/c/containers/systemd/dep/data.volume\n\
        ExecStart=/usr/bin/podman volume create --ignore --opt o=uid=1 systemd-data\n\
        ---p-pod.service---\n\
        SourcePath=/c/containers/systemd/dep/p.pod\n\
        ExecStartPre=/usr/bin/podman pod create --infra-conmon-pidfile=%t/%N.pid \
        --pod-id-file=%t/%N.pod-id --exit-policy=stop --replace -v podvol:/pv --infra-name systemd-p-infra\n\
        ---other.service---\n\
        SourcePath=/c/containers/systemd/other/other.container\n\
        ExecStart=/usr/bin/podman run -v foreign:/f img\n";
    let seen = generator_view(out, "/c/containers/systemd/dep");
    let volumes: Vec<&str> = seen.volumes.iter().map(String::as_str).collect();
    assert_eq!(
        volumes,
        [
            "\"q",
            "a,b",
            "mnt",
            "pa2",
            "podvol",
            "quotedname",
            "systemd-data",
            "x"
        ]
    );
    let services: Vec<&str> = seen.services.iter().map(String::as_str).collect();
    assert_eq!(
        services,
        ["data-volume.service", "p-pod.service", "web.service"]
    );
}
