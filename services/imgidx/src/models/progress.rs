//! One progress line per file on stderr: redrawn in place on a terminal, a start and an
//! end line otherwise (so logs stay readable).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Redraws at most this often.
const EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    label: String,
    total: Option<u64>,
    tty: bool,
    quiet: bool,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(label: &str, quiet: bool) -> Self {
        Self { label: label.to_string(), total: None, tty: std::io::stderr().is_terminal(), quiet, last: None }
    }

    pub fn start(&mut self, total: Option<u64>) {
        self.total = total;
        if self.quiet {
            return;
        }
        if !self.tty {
            let size = total.map(|t| format!(" ({})", mb(t))).unwrap_or_default();
            eprintln!("  {}: downloading{size}", self.label);
        }
        self.update(0);
    }

    pub fn update(&mut self, done: u64) {
        if self.quiet || !self.tty || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        // Trailing spaces wipe what a longer previous line left behind.
        let _ = write!(err, "\r  {}: {}    ", self.label, self.amount(done));
        let _ = err.flush();
    }

    pub fn finish(&mut self, done: u64) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprintln!("\r  {}: {} done    ", self.label, mb(done));
        } else {
            eprintln!("  {}: {} done", self.label, mb(done));
        }
    }

    fn amount(&self, done: u64) -> String {
        match self.total {
            Some(total) if total > 0 => {
                format!("{} / {} ({}%)", mb(done), mb(total), done.saturating_mul(100) / total)
            }
            _ => mb(done),
        }
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
