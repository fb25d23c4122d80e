//! How the engine reports while it works: [`Reporter`], an interface the
//! caller supplies (restic's restorer reports the same way, through
//! callbacks), so that `create` and `restore` never print themselves. The
//! CLI's is [`Terminal`]: a bar per volume on a terminal, a line per step
//! otherwise, nothing when disabled. Tests use [`Terminal::new`]`(false)`
//! or a reporter of their own.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ui;

/// What the engine reports: steps, warnings, and the streaming of each
/// volume.
pub trait Reporter: Sync {
    /// One step of the work, done or begun.
    fn report_step(&self, message: &str);
    /// Something the user should know; the work goes on.
    fn report_warning(&self, message: &str);
    /// The streaming of one volume begins (`verb`: exporting, importing).
    fn volume(&self, verb: &'static str, volume: &str) -> Box<dyn VolumeProgress>;
}

/// The streaming of one volume, as a [`Reporter`] shows it.
pub trait VolumeProgress {
    /// Bytes (uncompressed) streamed so far.
    fn set(&self, bytes: u64);
    /// The volume is done; `detail` says what came of it.
    fn done(&self, detail: &str);
    /// The volume failed (the error is reported by the caller).
    fn fail(&self);
}

/// What the engine's functions take: any [`Reporter`].
pub(crate) type Progress = dyn Reporter;

impl dyn Reporter + '_ {
    /// One step of the work.
    pub fn step(&self, message: impl std::fmt::Display) {
        self.report_step(&message.to_string())
    }

    /// A warning; the work goes on.
    pub fn warn(&self, message: impl std::fmt::Display) {
        self.report_warning(&message.to_string())
    }

    /// The streaming of one volume begins.
    pub fn bar(&self, verb: &'static str, volume: &str) -> Box<dyn VolumeProgress> {
        self.volume(verb, volume)
    }
}

/// Progress on stderr: a bar per volume on a terminal, a line per step
/// otherwise (logs, the stop hook), nothing when disabled. Warnings are
/// always shown.
pub(crate) struct Terminal {
    multi: Option<MultiProgress>,
    lines: bool,
}

impl Terminal {
    /// Bars when stderr is a terminal, lines otherwise; silent unless `enabled`.
    pub fn new(enabled: bool) -> Terminal {
        let bars = enabled && ui::stderr_is_tty();
        Terminal {
            multi: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            lines: enabled && !bars,
        }
    }
}

impl Reporter for Terminal {
    fn report_step(&self, message: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(ui::escape(message));
            }
            None if self.lines => ui::note(message),
            None => {}
        }
    }

    fn report_warning(&self, message: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| ui::warn(message)),
            None => ui::warn(message),
        }
    }

    /// A bar (or start and end lines) for streaming one volume.
    fn volume(&self, verb: &'static str, volume: &str) -> Box<dyn VolumeProgress> {
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
                Box::new(VolumeBar {
                    bar: Some((multi.clone(), bar)),
                    lines: false,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                })
            }
            None => {
                if self.lines {
                    ui::note(format!("{verb} {}", subject(volume)));
                }
                Box::new(VolumeBar {
                    bar: None,
                    lines: self.lines,
                    volume: volume.to_owned(),
                    started,
                    bytes: std::cell::Cell::new(0),
                })
            }
        }
    }
}

/// What a bar's label names, in words: a host path (absolute; no volume
/// name starts with `/`) or a volume.
fn subject(label: &str) -> String {
    if label.starts_with('/') {
        format!("host path {label}")
    } else {
        format!("volume {label}")
    }
}

/// Progress of one volume or host path.
struct VolumeBar {
    bar: Option<(MultiProgress, ProgressBar)>,
    lines: bool,
    volume: String,
    started: Instant,
    bytes: std::cell::Cell<u64>,
}

impl VolumeProgress for VolumeBar {
    fn set(&self, bytes: u64) {
        self.bytes.set(bytes);
        if let Some((_, bar)) = &self.bar {
            bar.set_position(bytes);
        }
    }

    /// The bar gives way to a summary line that stays in the scrollback.
    fn done(&self, detail: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes.get() as f64 / secs
        } else {
            0.0
        };
        let line = format!(
            "{}: {detail} in {secs:.1} s ({}/s)",
            subject(&self.volume),
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

    fn fail(&self) {
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
