//! The output audit: checks an answer before the client gets it, streamed or whole. Three
//! checks, each one a reason to cut the answer (`finish_reason: "content_filter"`):
//!
//! - `system_prompt_leak`: the answer repeats a run of a system message's words ([`leak`]);
//! - `pii:<KIND>`: the answer holds an email, phone, card, IBAN, SSN, secret or IP address that
//!   the request did not contain ([`pii`]);
//! - `harmful_output`: the input screen, run on windows of the answer, finds it harmful (the
//!   screen is async; [`StreamAudit`] says which windows to screen and the caller runs them).
//!
//! [`StreamAudit`] consumes deltas and holds back a short tail, so that a leaked run or a
//! value is caught before any of it is released: what a stream releases is exactly what the
//! whole-text audit keeps, wherever the deltas split. Harmful content is judged by windows of
//! [`WINDOW_STRIDE`] characters, so up to one window of it may have been released when it
//! trips: screening every token would cost more than the answer.

pub mod events;
pub mod leak;
pub mod pii;

use std::collections::VecDeque;
use std::sync::Arc;

use tandem_core::{Message, Role, TokenLogprob};
use tandem_privacy::recognizers::Recognizers;
use tandem_privacy::EntityKind;

use leak::{LeakCheck, WordScanner};
use pii::PiiCheck;

/// Characters held back at the end of a stream: longer than any audited value written with
/// spaces (a grouped IBAN is at most ~42) plus the context the recognizers read after one.
pub const HOLD_CHARS: usize = 48;

/// The harmful-content screen reads the answer every this many characters, and at the end.
pub const WINDOW_STRIDE: usize = 400;

/// Characters in one screened window: the stride and some of the one before, so that content
/// across a boundary is read whole once.
pub const WINDOW_CHARS: usize = 600;

/// A word without spaces (an email, a key, an address) is held while it grows, up to this many
/// bytes; longer ones are released by [`HOLD_CHARS`] alone.
const MAX_HELD_TOKEN: usize = 256;

/// Held text never exceeds this many characters, whatever the answer looks like (a run of
/// symbols with no words cannot hold the whole stream back).
const MAX_HELD_CHARS: usize = 1024;

/// Why the audit cut an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    HarmfulOutput,
    SystemPromptLeak,
    Pii(EntityKind),
}

impl Trip {
    /// The trace's and the metrics' word: `harmful_output`, `system_prompt_leak`, `pii:EMAIL`.
    pub fn label(&self) -> String {
        match self {
            Trip::HarmfulOutput => "harmful_output".into(),
            Trip::SystemPromptLeak => "system_prompt_leak".into(),
            Trip::Pii(kind) => format!("pii:{}", kind.as_str()),
        }
    }
}

/// What one request's answer is checked against.
pub struct Audit {
    leak: LeakCheck,
    pii: PiiCheck,
}

impl Audit {
    pub fn new(recognizers: Arc<Recognizers>, messages: &[Message]) -> Self {
        let system = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str());
        Self {
            leak: LeakCheck::new(system),
            pii: PiiCheck::new(recognizers, messages),
        }
    }
}

/// What to do after a push.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Text safe to release now.
    pub text: String,
    /// The logprobs of the tokens released with it.
    pub logprobs: Vec<TokenLogprob>,
    /// Windows of the answer for the harmful-content screen, to run before releasing `text`.
    pub windows: Vec<String>,
    /// Set when a check tripped: `text` ends where the offending part starts and nothing more
    /// will be released.
    pub tripped: Option<Trip>,
}

/// The audit of one answer as it streams.
pub struct StreamAudit {
    audit: Arc<Audit>,
    text: String,
    /// Bytes of `text` released.
    released: usize,
    chars: usize,
    /// Characters the harmful-content windows have covered.
    screened: usize,
    words: WordScanner,
    /// Earliest start of a leaked run found so far.
    leak_at: Option<usize>,
    /// Logprobs waiting for their text, with the byte offset where that text ends.
    logprobs: VecDeque<(usize, Vec<TokenLogprob>)>,
    tripped: Option<Trip>,
    finished: bool,
}

impl StreamAudit {
    pub fn new(audit: Audit) -> Self {
        Self::shared(Arc::new(audit))
    }

    fn shared(audit: Arc<Audit>) -> Self {
        Self {
            audit,
            text: String::new(),
            released: 0,
            chars: 0,
            screened: 0,
            words: WordScanner::default(),
            leak_at: None,
            logprobs: VecDeque::new(),
            tripped: None,
            finished: false,
        }
    }

    /// The next piece of the answer.
    pub fn push(&mut self, delta: &str, logprobs: Vec<TokenLogprob>) -> Step {
        if self.tripped.is_some() || self.finished {
            return Step::default();
        }
        self.text.push_str(delta);
        self.chars += delta.chars().count();
        if !logprobs.is_empty() {
            self.logprobs.push_back((self.text.len(), logprobs));
        }
        self.advance(false)
    }

    /// The answer ended: release what is left, unless a check trips on it.
    pub fn finish(&mut self) -> Step {
        if self.tripped.is_some() || self.finished {
            return Step::default();
        }
        self.finished = true;
        self.advance(true)
    }

    /// An audit of another text of the same answer (a tool call's arguments), against the same
    /// request.
    pub fn sibling(&self) -> StreamAudit {
        Self::shared(self.audit.clone())
    }

    /// A check run outside (the harmful-content screen) tripped: nothing more is released.
    pub fn trip(&mut self, trip: Trip) {
        self.tripped.get_or_insert(trip);
    }

    pub fn tripped(&self) -> Option<Trip> {
        self.tripped
    }

    fn advance(&mut self, finished: bool) -> Step {
        let windows = self.windows(finished);
        if !self.audit.leak.is_empty() {
            for i in self.words.advance(&self.text, finished) {
                if let Some(start) = self.audit.leak.run_ending_at(&self.words.complete, i) {
                    self.leak_at = Some(self.leak_at.map_or(start, |at| at.min(start)));
                }
            }
        }
        let len = self.text.len();
        // Text after this may still change what a recognizer sees.
        let settled = if finished {
            len
        } else {
            chars_before(&self.text, len, HOLD_CHARS)
        };
        let mut bound = if finished { len } else { self.bound() };
        // Values start at least HOLD_CHARS after where the scan does, so none is cut short on
        // its left; those starting before `released` were judged by an earlier push.
        let from = chars_before(&self.text, self.released, HOLD_CHARS);
        let spans: Vec<_> = self
            .audit
            .pii
            .spans(&self.text[from..])
            .into_iter()
            .map(|mut s| {
                s.start += from;
                s.end += from;
                s
            })
            .filter(|s| s.start >= self.released)
            .collect();
        // A value not settled yet is held from its start.
        for s in spans.iter().filter(|s| s.end > settled) {
            bound = bound.min(s.start);
        }
        let bound = bound.max(self.released);
        let mut cut = self
            .leak_at
            .filter(|at| *at < bound)
            .map(|at| (at, Trip::SystemPromptLeak));
        for s in spans.iter().filter(|s| s.start < bound) {
            let value = &self.text[s.start..s.end];
            if cut.is_none_or(|(at, _)| s.start < at) && !self.audit.pii.in_request(value, s.kind) {
                cut = Some((s.start, Trip::Pii(s.kind)));
            }
        }
        let end = cut.map_or(bound, |(at, _)| at.max(self.released));
        let step = Step {
            text: self.text[self.released..end].to_string(),
            logprobs: self.release_logprobs(end, finished && cut.is_none()),
            windows,
            tripped: cut.map(|(_, trip)| trip),
        };
        self.released = end;
        if step.tripped.is_some() {
            self.tripped = step.tripped;
            self.logprobs.clear();
        }
        step
    }

    /// How far a growing answer may be released before the checks that span the tail run.
    fn bound(&self) -> usize {
        let len = self.text.len();
        let mut bound = chars_before(&self.text, len, HOLD_CHARS);
        // A word without spaces that is still growing may become an email or a key. Only the
        // tail is searched: a longer word is not held by this rule anyway.
        let mut tail = len.saturating_sub(MAX_HELD_TOKEN + 1);
        while !self.text.is_char_boundary(tail) {
            tail -= 1;
        }
        let token = match self.text[tail..].rfind(char::is_whitespace) {
            Some(i) => Some(tail + i + ch_len(&self.text, tail + i)),
            None if tail == 0 => Some(0),
            None => None,
        };
        if let Some(token) = token.filter(|t| len - t <= MAX_HELD_TOKEN) {
            bound = bound.min(token);
        }
        // The last words may begin a leaked run that is not complete yet.
        let longest = self.audit.leak.longest();
        if longest > 0 {
            let words = &self.words.complete;
            let keep = longest - 1;
            let run_start = if words.len() >= keep {
                words[words.len() - keep].start
            } else {
                0
            };
            bound = bound.min(run_start.max(chars_before(&self.text, len, MAX_HELD_CHARS)));
        }
        bound
    }

    /// Windows due for the harmful-content screen: one per [`WINDOW_STRIDE`] characters, and
    /// the rest at the end.
    fn windows(&mut self, finished: bool) -> Vec<String> {
        let mut out = Vec::new();
        while self.chars >= self.screened + WINDOW_STRIDE {
            let end = self.screened + WINDOW_STRIDE;
            out.push(char_slice(
                &self.text,
                end.saturating_sub(WINDOW_CHARS),
                end,
            ));
            self.screened = end;
        }
        if finished && self.chars > self.screened {
            let end = self.chars;
            out.push(char_slice(
                &self.text,
                end.saturating_sub(WINDOW_CHARS),
                end,
            ));
            self.screened = end;
        }
        out
    }

    /// The logprobs of tokens whose text ends by `end` (all of them when `all`).
    fn release_logprobs(&mut self, end: usize, all: bool) -> Vec<TokenLogprob> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.logprobs.front() {
            if !all && *at > end {
                break;
            }
            if let Some((_, lp)) = self.logprobs.pop_front() {
                out.extend(lp);
            }
        }
        out
    }
}

/// The whole-answer audit: what [`StreamAudit`] releases given all of it at once.
pub fn audit_text(audit: Audit, text: &str) -> Step {
    audit_whole(StreamAudit::new(audit), text)
}

/// `text` through a fresh stream audit at once.
pub fn audit_whole(mut stream: StreamAudit, text: &str) -> Step {
    let mut step = stream.push(text, Vec::new());
    if step.tripped.is_none() {
        let rest = stream.finish();
        step.text.push_str(&rest.text);
        step.windows.extend(rest.windows);
        step.tripped = rest.tripped;
    }
    step
}

/// The byte offset `n` characters before `at` in `text` (0 when there are fewer).
fn chars_before(text: &str, at: usize, n: usize) -> usize {
    if n == 0 {
        return at;
    }
    text[..at]
        .char_indices()
        .rev()
        .nth(n - 1)
        .map_or(0, |(i, _)| i)
}

fn ch_len(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(0, char::len_utf8)
}

/// Characters `from..to` of `text`.
fn char_slice(text: &str, from: usize, to: usize) -> String {
    text.chars().skip(from).take(to - from).collect()
}

#[cfg(test)]
mod tests;
