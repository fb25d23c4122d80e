//! In-memory stand-ins for podman and systemd, and a temporary machine
//! (home, layout, config, store) around them: the stop/start guard, create
//! and the restore's rollback paths are unit-tested without either tool.
//! Test code only.

pub(crate) mod fake_podman;
pub(crate) mod fake_restic;
pub(crate) mod fake_systemd;
pub(crate) mod machine;

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One injected failure: calls of `op` (the trait method's name), on
/// `target` when given, fail — every such call, or only the `nth` (1-based,
/// counted over all calls of `op` since the fake was made).
#[derive(Debug, Clone)]
struct Rule {
    op: String,
    target: Option<String>,
    nth: Option<usize>,
}

/// The call log and the failures to inject, shared by both fakes.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    log: Vec<String>,
    counts: BTreeMap<String, usize>,
    rules: Vec<Rule>,
}

impl Calls {
    /// Make the `nth` call of `op` from now on fail (1-based).
    pub fn fail_nth(&mut self, op: &str, nth: usize) {
        let before = self.counts.get(op).copied().unwrap_or(0);
        self.rules.push(Rule {
            op: op.to_owned(),
            target: None,
            nth: Some(before + nth),
        });
    }

    /// Make every call of `op` on `target` fail.
    pub fn fail_on(&mut self, op: &str, target: &str) {
        self.rules.push(Rule {
            op: op.to_owned(),
            target: Some(target.to_owned()),
            nth: None,
        });
    }

    /// Every call so far, `op target...` each.
    pub fn log(&self) -> Vec<String> {
        self.log.clone()
    }

    /// Log a call of `op` on `targets` and count it; the error when a rule
    /// says it fails (naming the first target a rule matches).
    fn record(&mut self, tool: &str, op: &str, targets: &[&str]) -> Result<()> {
        self.log.push(
            std::iter::once(op)
                .chain(targets.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
        );
        let count = self.counts.entry(op.to_owned()).or_default();
        *count += 1;
        let count = *count;
        let hit = self.rules.iter().find_map(|rule| {
            if rule.op != op || rule.nth.is_some_and(|n| n != count) {
                return None;
            }
            match &rule.target {
                None => Some(targets.join(" ")),
                Some(t) => targets.iter().find(|x| **x == t).map(|x| (*x).to_owned()),
            }
        });
        match hit {
            Some(target) => Err(Error::internal(format!(
                "`{tool} {op} {target}` failed (injected failure)"
            ))),
            None => Ok(()),
        }
    }

    /// The targets of `targets` on which `op` fails by a target rule.
    fn failing_targets(&self, op: &str, targets: &[String]) -> Vec<String> {
        targets
            .iter()
            .filter(|t| {
                self.rules
                    .iter()
                    .any(|r| r.op == op && r.nth.is_none() && r.target.as_ref() == Some(t))
            })
            .cloned()
            .collect()
    }
}
