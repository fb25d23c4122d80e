//! Progress on stderr for the long operations (create, restore): a bar per
//! volume on a terminal, a line per step otherwise, nothing when disabled.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ui;

/// Progress on stderr: a bar per volume on a terminal, a line per step
/// otherwise (logs, the stop hook), nothing when disabled.
pub(crate) struct Progress {
    multi: Option<MultiProgress>,
    lines: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; silent unless `enabled`.
    pub fn new(enabled: bool) -> Progress {
        let bars = enabled && ui::stderr_is_tty();
        Progress {
            multi: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            lines: enabled && !bars,
        }
    }

    /// One step of the work.
    pub fn step(&self, message: impl std::fmt::Display) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(ui::escape(&message.to_string()));
            }
            None if self.lines => ui::note(message),
            None => {}
        }
    }

    /// A bar (or start and end lines) for streaming one volume.
    pub fn bar(&self, verb: &'static str, volume: &str) -> VolumeBar {
        let started = Instant::now();
        match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix} {bytes} ({binary_bytes_per_sec}) {elapsed} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(ui::escape(&format!("{verb} {volume}")).into_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                VolumeBar {
                    bar: Some((multi.clone(), bar)),
                    lines: false,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                }
            }
            None => {
                if self.lines {
                    ui::note(format!("{verb} volume {volume}"));
                }
                VolumeBar {
                    bar: None,
                    lines: self.lines,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                }
            }
        }
    }
}

/// Progress of one volume.
pub(crate) struct VolumeBar {
    bar: Option<(MultiProgress, ProgressBar)>,
    lines: bool,
    volume: String,
    started: Instant,
    bytes: std::cell::Cell<u64>,
}

impl VolumeBar {
    /// Bytes (uncompressed) streamed so far.
    pub fn set(&self, bytes: u64) {
        self.bytes.set(bytes);
        if let Some((_, bar)) = &self.bar {
            bar.set_position(bytes);
        }
    }

    /// The volume is done; `detail` says what came of it. The bar gives
    /// way to a summary line that stays in the scrollback.
    pub fn done(&self, detail: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes.get() as f64 / secs
        } else {
            0.0
        };
        let line = format!(
            "volume {}: {detail} in {secs:.1} s ({}/s)",
            self.volume,
            ui::human_size(rate as u64)
        );
        match &self.bar {
            Some((multi, bar)) => {
                bar.finish_and_clear();
                let _ = multi.println(ui::escape(&line));
            }
            None if self.lines => ui::note(line),
            None => {}
        }
    }

    /// The volume failed (the error is reported by the caller).
    pub fn fail(&self) {
        if let Some((_, bar)) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for VolumeBar {
    /// A bar left behind by an early error is cleared, not frozen on screen.
    fn drop(&mut self) {
        if let Some((_, bar)) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}
