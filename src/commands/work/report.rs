//! What `work` tells people: notes and warnings, a live progress line on a
//! terminal, and the summary at the end.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Output;

/// Counts of what happened to the deliveries this run handled.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// Handlers that exited 0 (acked).
    pub succeeded: u64,
    /// Handlers that failed (nacked with backoff, or dead).
    pub failed: u64,
    /// Of the failed, how many were on their last allowed attempt.
    pub dead: u64,
    /// Handlers stopped by a second signal (released, attempt not counted).
    pub stopped: u64,
    /// Deliveries whose lease was lost while their handler ran.
    pub lost: u64,
    /// Handlers stopped because the run could not go on (a lost database
    /// connection): not released, their leases run out.
    pub abandoned: u64,
}

impl Tally {
    /// Deliveries whose handler ran.
    pub fn handled(&self) -> u64 {
        self.succeeded + self.failed + self.stopped + self.lost + self.abandoned
    }

    /// True when every handler succeeded and its ack went through.
    pub fn all_ok(&self) -> bool {
        self.failed + self.stopped + self.lost + self.abandoned == 0
    }
}

/// Where notes and the progress line go.
pub(super) struct Report {
    out: Output,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Report {
    /// A progress line only on a terminal stderr, never with `-q` or `--json`.
    pub fn new(out: &Output) -> Report {
        let bar = out.progress().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Report {
            out: out.clone(),
            bar,
            started: Instant::now(),
        }
    }

    /// Redraws the progress line.
    pub fn progress(&self, tally: &Tally, running: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} handled: {} succeeded, {} failed · {running} running",
                tally.handled(),
                tally.succeeded,
                tally.failed
            ));
        }
    }

    /// A note for people (hidden by `-q`).
    pub fn note(&self, message: &str) {
        self.above_bar(|| self.out.note(&format!("spool: {message}")));
    }

    /// A warning (shown even with `-q`).
    pub fn warn(&self, message: &str) {
        self.above_bar(|| self.out.warn(message));
    }

    fn above_bar(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Clears the progress line and prints the summary (hidden by `-q`):
    /// a line for people, or a JSON object with `--json`.
    pub fn finish(self, tally: &Tally) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        if self.out.quiet {
            return;
        }
        if self.out.json {
            eprintln!("{}", summary_json(tally, elapsed));
        } else {
            eprintln!("spool: {}", summary_line(tally, elapsed));
        }
    }
}

/// `handled 20 in 1.32s: 18 succeeded, 2 failed (1 dead)`, with stopped and
/// lost deliveries added when there were any.
fn summary_line(t: &Tally, elapsed: Duration) -> String {
    let mut line = format!(
        "handled {} in {:.2}s: {} succeeded, {} failed ({} dead)",
        t.handled(),
        elapsed.as_secs_f64(),
        t.succeeded,
        t.failed,
        t.dead
    );
    if t.stopped > 0 {
        line.push_str(&format!(", {} stopped and released", t.stopped));
    }
    if t.lost > 0 {
        line.push_str(&format!(", {} lost their lease", t.lost));
    }
    if t.abandoned > 0 {
        line.push_str(&format!(
            ", {} stopped unfinished (their leases run out)",
            t.abandoned
        ));
    }
    line
}

fn summary_json(t: &Tally, elapsed: Duration) -> String {
    format!(
        "{{\"handled\":{},\"succeeded\":{},\"failed\":{},\"dead\":{},\"stopped\":{},\"lost\":{},\"abandoned\":{},\"elapsed_ms\":{}}}",
        t.handled(),
        t.succeeded,
        t.failed,
        t.dead,
        t.stopped,
        t.lost,
        t.abandoned,
        elapsed.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_count_that_happened() {
        let t = Tally {
            succeeded: 18,
            failed: 2,
            dead: 1,
            stopped: 0,
            lost: 1,
            abandoned: 0,
        };
        assert_eq!(
            summary_line(&t, Duration::from_millis(1320)),
            "handled 21 in 1.32s: 18 succeeded, 2 failed (1 dead), 1 lost their lease"
        );
        assert!(!t.all_ok());
        assert!(Tally::default().all_ok());
    }
}
