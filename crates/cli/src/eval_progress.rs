//! One progress line on stderr for long evals: done / total, rate and time left.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub struct Progress {
    label: String,
    total: usize,
    done: AtomicUsize,
    /// Steps answered from the cache do not count toward the rate.
    fresh: AtomicUsize,
    start: Instant,
    /// When the line was last drawn (ms since start): redrawn at most every 500 ms.
    last_drawn_ms: AtomicUsize,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Self {
            label: label.into(),
            total,
            done: AtomicUsize::new(0),
            fresh: AtomicUsize::new(0),
            start: Instant::now(),
            last_drawn_ms: AtomicUsize::new(0),
        }
    }

    /// One step finished (`cached`: it cost nothing).
    pub fn step(&self, cached: bool) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let fresh = if cached {
            self.fresh.load(Ordering::Relaxed)
        } else {
            self.fresh.fetch_add(1, Ordering::Relaxed) + 1
        };
        let elapsed = self.start.elapsed().as_secs_f64();
        let now_ms = (elapsed * 1000.0) as usize;
        let last = self.last_drawn_ms.load(Ordering::Relaxed);
        if done < self.total && done > 1 && now_ms < last + 500 {
            return;
        }
        self.last_drawn_ms.store(now_ms, Ordering::Relaxed);
        let eta = if fresh > 0 {
            let left = (self.total.saturating_sub(done)) as f64 * elapsed / fresh as f64;
            format!(", about {} left", minutes(left))
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}: {done}/{} ({} elapsed{eta})",
            self.label,
            self.total,
            minutes(elapsed)
        );
        if done == self.total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

fn minutes(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}
