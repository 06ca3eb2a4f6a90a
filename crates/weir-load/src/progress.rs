//! The live display on stderr (indicatif): joins, then the sending phase
//! with sent/received packet rates and loss. Hidden when disabled or when
//! stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            None,
            if enabled {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        Progress { bar }
    }

    /// Counts clients joining.
    pub fn joining(&self, clients: u64) {
        self.bar.set_style(style(
            "{prefix:>9} [{bar:30}] {pos}/{len} clients {elapsed:>4} {msg}",
        ));
        self.bar.set_prefix("joining");
        self.bar.set_length(clients);
        self.bar.set_position(0);
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    pub fn joined_one(&self) {
        self.bar.inc(1);
    }

    /// A step without a measure of progress.
    pub fn step(&self, what: &str) {
        self.bar
            .set_style(style("{spinner} {prefix:>9} {msg} {elapsed:>4}"));
        self.bar.set_prefix("");
        self.bar.set_message(what.to_string());
    }

    /// The sending phase, counted in tenths of seconds.
    pub fn sending(&self, duration: Duration) {
        self.bar.set_style(style("{prefix:>9} [{bar:30}] {msg}"));
        self.bar.set_prefix("sending");
        self.bar
            .set_length((duration.as_millis() / 100).max(1) as u64);
        self.bar.set_position(0);
        self.bar.set_message(String::new());
    }

    pub fn sending_update(&self, elapsed: Duration, sent_pps: f64, received_pps: f64, loss: f64) {
        self.bar.set_position((elapsed.as_millis() / 100) as u64);
        self.bar.set_message(format!(
            "{:>5.1} s  sent {sent_pps:>7.0} pkt/s  received {received_pps:>8.0} pkt/s  loss {:>6.3} %",
            elapsed.as_secs_f64(),
            loss * 100.0
        ));
    }

    /// Prints a line on stderr, above the bar.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
