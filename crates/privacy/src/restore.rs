//! Restoration of answers, streamed or whole. One left-to-right scan serves both: at each position
//! a matcher decides "token here", "no token here" or "can't tell yet". A whole text is scanned to
//! its end; a stream is scanned up to the first "can't tell yet" and the rest is held back, so
//! streamed and whole restoration give the same text however the stream is split.
//!
//! Accepted forms of an issued placeholder `[PERSON_1]` (case-insensitive): `[PERSON_1]`,
//! `<PERSON_1>`, `(PERSON_1)` with `_`, `-` or a space as separators, and bare `PERSON_1` or
//! `PERSON-1` between word boundaries (bare with a space would catch prose like "person 1").
//! Surrogates match exactly, names, organizations, places and emails also re-cased, between word
//! boundaries; the longest wins.

use std::ops::Range;
use std::sync::Arc;

use crate::vault::Vault;
use crate::EntityKind;

/// Restores a streamed answer chunk by chunk: holds back only a tail that could still become a
/// token, emits everything else at once, restored. The concatenation of every `push` and the
/// `finish` equals [`Vault::restore`] of the whole text, however it was split.
#[derive(Debug)]
pub struct StreamRestorer {
    vault: Arc<Vault>,
    /// Received text not yet emitted: a possible token's beginning.
    pending: String,
    /// The last character consumed, for the word boundary before the next token.
    prev: Option<char>,
    found: Vec<bool>,
    escape: Escape,
}

impl StreamRestorer {
    pub fn new(vault: Arc<Vault>) -> Self {
        Self::with_escape(vault, Escape::None)
    }

    /// For streamed tool-call `arguments` (JSON text arriving in fragments): values are written
    /// JSON-escaped, since tokens sit inside string literals.
    pub fn for_json(vault: Arc<Vault>) -> Self {
        Self::with_escape(vault, Escape::Json)
    }

    fn with_escape(vault: Arc<Vault>, escape: Escape) -> Self {
        let found = vec![false; vault.len()];
        StreamRestorer {
            vault,
            pending: String::new(),
            prev: None,
            found,
            escape,
        }
    }

    /// Restored text safe to emit now (may be empty).
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        self.drain(false)
    }

    /// The held-back rest, restored. The restorer can be reused afterwards as a fresh stream
    /// (the found tokens accumulate).
    pub fn finish(&mut self) -> String {
        let out = self.drain(true);
        self.prev = None;
        out
    }

    /// Bytes currently held back.
    pub fn held_back(&self) -> usize {
        self.pending.len()
    }

    /// The issued tokens not seen in the stream so far (see [`Vault::restore_report`]).
    pub fn missing(&self) -> Vec<String> {
        self.vault.missing(&self.found)
    }

    /// Counts the tokens `other` saw as seen here too (an answer's text and its tool calls are
    /// restored by separate restorers).
    pub fn absorb_found(&mut self, other: &StreamRestorer) {
        for (mine, theirs) in self.found.iter_mut().zip(&other.found) {
            *mine |= *theirs;
        }
    }

    fn drain(&mut self, at_end: bool) -> String {
        let mut out = String::with_capacity(self.pending.len());
        let consumed = scan(
            &self.vault,
            &self.pending,
            &mut self.prev,
            at_end,
            &mut out,
            &mut self.found,
            self.escape,
        );
        self.pending.drain(..consumed);
        out
    }
}

/// How restored values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    None,
    /// JSON-escaped, without the surrounding quotes: for the inside of a JSON string.
    Json,
}

/// Restores all of `text`, marking in `found` the entries seen.
pub(crate) fn restore_all(vault: &Vault, text: &str, found: &mut [bool], escape: Escape) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = None;
    scan(vault, text, &mut prev, true, &mut out, found, escape);
    out
}

/// Restores OpenAI tool-call `arguments`. Valid JSON: every string literal (keys too) is decoded,
/// restored and re-encoded; everything else (order, spacing, numbers) is kept byte for byte. Not
/// valid (e.g. partial): the text is restored with each value JSON-escaped, quotes excluded, as
/// tokens sit inside string literals.
/// Marks in `found` the entries seen.
pub(crate) fn tool_arguments(vault: &Vault, arguments: &str, found: &mut [bool]) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok() {
        if let Some(restored) = restore_json_strings(vault, arguments, found) {
            return restored;
        }
    }
    restore_all(vault, arguments, found, Escape::Json)
}

fn restore_json_strings(vault: &Vault, json: &str, found: &mut [bool]) -> Option<String> {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut pos, mut copied) = (0, 0);
    while pos < bytes.len() {
        if bytes[pos] != b'"' {
            pos += 1;
            continue;
        }
        let end = string_end(bytes, pos)?;
        let literal = json.get(pos..=end)?;
        let decoded: String = serde_json::from_str(literal).ok()?;
        let restored = restore_all(vault, &decoded, found, Escape::None);
        if restored != decoded {
            out.push_str(json.get(copied..pos)?);
            out.push_str(&serde_json::to_string(&restored).ok()?);
            copied = end + 1;
        }
        pos = end + 1;
    }
    out.push_str(json.get(copied..)?);
    Some(out)
}

/// The index of the quote closing the string literal opened at `open`.
fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut pos = open + 1;
    while let Some(&b) = bytes.get(pos) {
        match b {
            b'\\' => pos += 2,
            b'"' => return Some(pos),
            _ => pos += 1,
        }
    }
    None
}

/// What the matcher says about one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `len` bytes from here are a token of entry `entry`.
    Match {
        len: usize,
        entry: usize,
    },
    NoMatch,
    /// The text ends in what may still become a token.
    NeedMore,
}

/// Scans `text` left to right, writing it restored to `out`, and returns how many bytes were
/// consumed: all of them when `at_end`, else up to where a token may be still arriving. `prev` is
/// the character before `text` and is updated to the last one consumed.
fn scan(
    vault: &Vault,
    text: &str,
    prev: &mut Option<char>,
    at_end: bool,
    out: &mut String,
    found: &mut [bool],
    escape: Escape,
) -> usize {
    let bytes = text.as_bytes();
    let (mut pos, mut copied) = (0, 0);
    while pos < bytes.len() {
        let step = match text.get(pos..) {
            Some(rest) if vault.can_start(bytes[pos]) => match_at(vault, rest, *prev, at_end),
            _ => Step::NoMatch,
        };
        match step {
            Step::NeedMore => break,
            Step::NoMatch => {
                let c = text.get(pos..).and_then(|r| r.chars().next());
                *prev = c.or(*prev);
                pos += c.map_or(1, char::len_utf8);
            }
            Step::Match { len, entry } => {
                out.push_str(text.get(copied..pos).unwrap_or_default());
                push_value(vault, entry, escape, out);
                if let Some(seen) = found.get_mut(entry) {
                    *seen = true;
                }
                let token = text.get(pos..pos + len).unwrap_or_default();
                *prev = token.chars().next_back().or(*prev);
                pos += len;
                copied = pos;
            }
        }
    }
    out.push_str(text.get(copied..pos).unwrap_or_default());
    pos
}

fn push_value(vault: &Vault, entry: usize, escape: Escape, out: &mut String) {
    let Some(value) = vault.entries().get(entry).map(|e| e.value.as_str()) else {
        return;
    };
    match escape {
        Escape::None => out.push_str(value),
        Escape::Json => {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'));
            out.push_str(inner.unwrap_or_default());
        }
    }
}

/// Whether a token starts at the beginning of `rest`. A `Match` or `NoMatch` answer never changes
/// when more text is appended to `rest`: that is what makes streaming equal to whole restoration.
pub(crate) fn match_at(vault: &Vault, rest: &str, prev: Option<char>, at_end: bool) -> Step {
    match vault.replacement() {
        crate::vault::Replacement::Placeholder => match_placeholder(vault, rest, prev, at_end),
        crate::vault::Replacement::Surrogate => match_surrogate(vault, rest, prev, at_end),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn closing(open: u8) -> Option<u8> {
    match open {
        b'[' => Some(b']'),
        b'<' => Some(b'>'),
        b'(' => Some(b')'),
        _ => None,
    }
}

fn match_placeholder(vault: &Vault, rest: &str, prev: Option<char>, at_end: bool) -> Step {
    let bytes = rest.as_bytes();
    let kinds = vault.issued_kinds();
    let Some(&first) = bytes.first() else {
        return Step::NoMatch;
    };
    if let Some(close) = closing(first) {
        let inner = bytes.get(1..).unwrap_or_default();
        return match match_core(inner, kinds, true, vault.max_digits(), at_end) {
            Core::NeedMore => Step::NeedMore,
            Core::None => Step::NoMatch,
            Core::Found { kind, len, digits } => match bytes.get(1 + len) {
                Some(&c) if c == close => lookup(vault, rest, kind, shift(&digits, 1), len + 2),
                // Found without at_end implies a byte follows the digits.
                _ => Step::NoMatch,
            },
        };
    }
    if prev.is_some_and(is_word_char) {
        return Step::NoMatch;
    }
    match match_core(bytes, kinds, false, vault.max_digits(), at_end) {
        Core::NeedMore => Step::NeedMore,
        Core::None => Step::NoMatch,
        Core::Found { kind, len, digits } => {
            let next = rest.get(len..).and_then(|r| r.chars().next());
            match next {
                Some(c) if is_word_char(c) => Step::NoMatch,
                _ => lookup(vault, rest, kind, digits, len),
            }
        }
    }
}

fn shift(range: &Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

fn lookup(vault: &Vault, rest: &str, kind: EntityKind, digits: Range<usize>, len: usize) -> Step {
    let entry = rest
        .get(digits)
        .and_then(|digits| vault.placeholder(kind, digits));
    match entry {
        Some(entry) => Step::Match { len, entry },
        None => Step::NoMatch,
    }
}

/// The core of a placeholder, `KIND` + separator + digits, at the start of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Core {
    /// `len` bytes, the number at `digits`.
    Found {
        kind: EntityKind,
        len: usize,
        digits: Range<usize>,
    },
    None,
    NeedMore,
}

/// Matches `KIND_N` for any of `kinds` at the start of `text`, case-insensitively; `_` in a kind
/// name and the separator may each be `_`, `-` or (with `spaced`) a space. No kind name is a prefix
/// of another, so at most one kind can match.
pub(crate) fn match_core(
    text: &[u8],
    kinds: &[EntityKind],
    spaced: bool,
    max_digits: usize,
    at_end: bool,
) -> Core {
    let mut need_more = false;
    for &kind in kinds {
        match match_kind(text, kind, spaced, max_digits, at_end) {
            Core::None => {}
            Core::NeedMore => need_more = true,
            found => return found,
        }
    }
    if need_more {
        Core::NeedMore
    } else {
        Core::None
    }
}

fn match_kind(
    text: &[u8],
    kind: EntityKind,
    spaced: bool,
    max_digits: usize,
    at_end: bool,
) -> Core {
    let is_sep = |b: u8| b == b'_' || b == b'-' || (spaced && b == b' ');
    let ran_out = if at_end { Core::None } else { Core::NeedMore };
    let name = kind.as_str().as_bytes();
    for (pos, &n) in name.iter().chain(b"_").enumerate() {
        let Some(&b) = text.get(pos) else {
            return ran_out;
        };
        let same = if n == b'_' {
            is_sep(b)
        } else {
            b.eq_ignore_ascii_case(&n)
        };
        if !same {
            return Core::None;
        }
    }
    let start = name.len() + 1;
    let count = text
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = start + count;
    if count > max_digits {
        return Core::None;
    }
    if end == text.len() && !at_end {
        // More digits may follow, or the first one.
        return Core::NeedMore;
    }
    if count == 0 {
        return Core::None;
    }
    Core::Found {
        kind,
        len: end,
        digits: start..end,
    }
}

fn match_surrogate(vault: &Vault, rest: &str, prev: Option<char>, at_end: bool) -> Step {
    let text = rest.as_bytes();
    let after_word = prev.is_some_and(is_word_char);
    let mut best: Option<(usize, usize)> = None;
    let mut need_more = false;
    for (entry, e) in vault.entries().iter().enumerate() {
        let token = e.token.as_bytes();
        if after_word && e.token.chars().next().is_some_and(is_word_char) {
            continue;
        }
        let n = token.len().min(text.len());
        let (head, want) = (&text[..n], &token[..n]);
        let same = if e.case_insensitive {
            head.eq_ignore_ascii_case(want)
        } else {
            head == want
        };
        if !same {
            continue;
        }
        if n < token.len() {
            need_more |= !at_end;
            continue;
        }
        if e.token.chars().next_back().is_some_and(is_word_char) {
            match rest.get(n..).and_then(|r| r.chars().next()) {
                None if !at_end => {
                    need_more = true;
                    continue;
                }
                Some(c) if is_word_char(c) => continue,
                _ => {}
            }
        }
        if best.is_none_or(|(len, _)| n > len) {
            best = Some((n, entry));
        }
    }
    match (need_more, best) {
        (true, _) => Step::NeedMore,
        (false, Some((len, entry))) => Step::Match { len, entry },
        (false, None) => Step::NoMatch,
    }
}

#[cfg(test)]
mod tests;
