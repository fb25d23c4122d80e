//! How the service whose stop triggered an on-stop backup ended, read from
//! the variables systemd gives `ExecStopPost=`: only a failed stop is
//! recorded, and only as the short words systemd uses.

use super::StopResult;

impl StopResult {
    /// From systemd's variables: `None` for a clean stop (`success`) or
    /// when there are none (not run by systemd). Values that are not the
    /// short words systemd uses are dropped (an unknown result is kept as
    /// `unknown`): they end up in metadata and on terminals.
    pub fn from_systemd(
        service_result: Option<&str>,
        exit_code: Option<&str>,
        exit_status: Option<&str>,
    ) -> Option<StopResult> {
        let result = service_result?;
        if result == "success" || ended_by_the_stop(result, exit_code, exit_status) {
            return None;
        }
        let word = |v: Option<&str>| v.filter(|v| is_systemd_word(v)).map(str::to_owned);
        Some(StopResult {
            service_result: word(Some(result)).unwrap_or_else(|| "unknown".to_owned()),
            exit_code: word(exit_code),
            exit_status: word(exit_status),
        })
    }

    /// `exit-code (exited, status 1)`.
    pub fn describe(&self) -> String {
        let details: Vec<String> = self
            .exit_code
            .iter()
            .cloned()
            .chain(self.exit_status.iter().map(|s| format!("status {s}")))
            .collect();
        if details.is_empty() {
            self.service_result.clone()
        } else {
            format!("{} ({})", self.service_result, details.join(", "))
        }
    }
}

/// Whether the main process ended the way a requested stop ends it: by
/// SIGTERM (or SIGINT, SIGHUP), or by SIGKILL after the stop timeout, seen
/// either as the signal or as podman's `128 + signal` exit status. systemd
/// reports these as `exit-code` for Quadlet services (checked: a busybox
/// container stopped with `systemctl --user stop` gives `exit-code`,
/// `exited`, `143`), yet the stop was not a failure; only an exit of the
/// service's own (a crash) is.
fn ended_by_the_stop(result: &str, exit_code: Option<&str>, exit_status: Option<&str>) -> bool {
    let by_stop_signal = match (exit_code, exit_status) {
        (Some("killed"), Some(signal)) => {
            matches!(signal, "TERM" | "INT" | "HUP" | "KILL")
        }
        (Some("exited"), Some(status)) => matches!(status, "143" | "130" | "129" | "137"),
        _ => false,
    };
    matches!(result, "exit-code" | "signal") && by_stop_signal
}

/// A short word of letters, digits, `-` and `_`, as systemd's results,
/// exit codes, statuses and signal names are.
pub(super) fn is_systemd_word(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_result_only_for_failed_stops() {
        assert_eq!(StopResult::from_systemd(None, None, None), None);
        assert_eq!(
            StopResult::from_systemd(Some("success"), Some("exited"), Some("0")),
            None
        );
        let failed =
            StopResult::from_systemd(Some("exit-code"), Some("exited"), Some("1")).unwrap();
        assert_eq!(failed.describe(), "exit-code (exited, status 1)");
        // Values from the environment are bounded words, nothing else.
        let odd = StopResult::from_systemd(Some("\x1b[2J"), Some("killed"), Some(&"9".repeat(40)))
            .unwrap();
        assert_eq!(odd.describe(), "unknown (killed)");
        // A requested stop ends a container by SIGTERM, or by SIGKILL after
        // the stop timeout: not a failure, however systemd words it.
        for (code, status) in [("exited", "143"), ("exited", "137"), ("killed", "TERM")] {
            let r = StopResult::from_systemd(Some("exit-code"), Some(code), Some(status));
            assert_eq!(r, None, "{code} {status}");
        }
        let crash = StopResult::from_systemd(Some("signal"), Some("killed"), Some("SEGV"));
        assert!(crash.is_some());
    }
}
