//! The live progress bar on stderr (terminals only): discovered, done, failed, rate, ETA.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::Counters;

/// Draws the bar until dropped.
pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar fed by `counters` if `enabled` and stderr is a terminal.
    pub fn start(enabled: bool, label: String, counters: Arc<Counters>) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                task: None,
            };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(crate::terminal::escape(&label).into_owned());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let total = counters.admitted.load(Relaxed) + counters.resumed.load(Relaxed);
                b.set_length(total);
                b.set_position(counters.finished());
                let rate = counters.finished() as f64 / b.elapsed().as_secs_f64().max(0.001);
                b.set_message(format!(
                    "{rate:.0}/s · discovered {} · done {} · skipped {} · failed {} · item retries {}",
                    counters.emitted.load(Relaxed),
                    counters.done.load(Relaxed),
                    counters.skipped.load(Relaxed),
                    counters.quarantined.load(Relaxed) + counters.failed.load(Relaxed),
                    counters.retries.load(Relaxed),
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress {
            bar: Some(bar),
            task: Some(task),
        }
    }

    /// Stops drawing and clears the bar.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
