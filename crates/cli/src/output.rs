//! Terminal output helpers: stdout lines and a progress line for long fetches.

use std::io::Write;

use tandem_models::Progress;

/// Write one line to stdout (the user-facing result of a command).
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

/// A progress callback that redraws one line on stderr.
pub fn progress_line(label: String) -> impl FnMut(Progress) {
    let mut last_percent = u64::MAX;
    let mut last_stage = String::new();
    move |p: Progress| {
        let percent = p
            .total_bytes
            .filter(|t| *t > 0)
            .map_or(0, |t| p.done_bytes.saturating_mul(100) / t);
        if percent == last_percent && p.stage == last_stage {
            return;
        }
        last_percent = percent;
        last_stage.clone_from(&p.stage);
        let total = p
            .total_bytes
            .map_or(String::new(), |t| format!(" / {} MB", t / 1_000_000));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{label}: {} — {} MB{total} ({percent}%)",
            p.stage,
            p.done_bytes / 1_000_000
        );
        if p.stage == "done" {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}
