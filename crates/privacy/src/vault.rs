//! The placeholder vault: one per request or conversation, never shared. It maps each private value
//! to the token sent to the cloud in its place (a placeholder `[PERSON_1]` or a realistic
//! surrogate) and back. Anything in the user's own text that could be mistaken for a token is
//! reserved first, so restoring an answer never turns the user's literal text into someone's data.

mod surrogates;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::restore::{self, Core};
use crate::{EntityKind, Span};

/// What a private value is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replacement {
    /// `[KIND_N]`, e.g. `[PERSON_1]`.
    #[default]
    Placeholder,
    /// A realistic fictional value of the same kind, so the answer reads naturally.
    Surrogate,
}

/// Numbers longer than this in the conversation cannot be issued, so need no reservation.
const MAX_RESERVED_DIGITS: usize = 18;
/// How many surrogate candidates to try before falling back to a placeholder.
const MAX_SURROGATE_TRIES: u32 = 512;

/// One issued token.
#[derive(Clone)]
pub(crate) struct Entry {
    /// What went to the cloud: the placeholder or the surrogate.
    pub(crate) token: String,
    pub(crate) kind: EntityKind,
    /// The private value.
    pub(crate) value: String,
    /// Restore re-cased occurrences of the token too (surrogate names, places, emails).
    pub(crate) case_insensitive: bool,
}

/// The pseudonymization state of one request or conversation.
#[derive(Clone)]
pub struct Vault {
    replacement: Replacement,
    entries: Vec<Entry>,
    by_value: HashMap<(EntityKind, String), usize>,
    /// Issued placeholders by kind and number (as written in decimal).
    by_number: HashMap<EntityKind, HashMap<String, usize>>,
    /// Kinds with at least one issued placeholder, the only ones the restorer looks for.
    issued_kinds: Vec<EntityKind>,
    /// Digits of the longest issued placeholder number.
    max_digits: usize,
    /// Placeholder numbers that occur in the user's text in some form.
    reserved: HashSet<(EntityKind, u64)>,
    next_number: HashMap<EntityKind, u64>,
    next_candidate: HashMap<EntityKind, u64>,
    /// Lower-cased issued surrogates.
    taken: HashSet<String>,
    /// Lower-cased text of the conversation, which no surrogate may occur in.
    conversation: String,
    /// Lower-cased ASCII bytes that can start a token (a fast path for plain text).
    starts: [bool; 256],
}

/// Values never appear in debug output.
impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("replacement", &self.replacement)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// `conversation` = all the text of the request (every message) before pseudonymization:
    /// every placeholder-looking text in it (any variant the restorer accepts, e.g. `[PERSON_1]`,
    /// `person_1`, `<EMAIL_2>`) and, for surrogates, every surrogate candidate occurring in it
    /// (case-insensitively) is reserved and never issued.
    pub fn new(replacement: Replacement, conversation: &str) -> Self {
        let mut vault = Vault {
            replacement,
            entries: Vec::new(),
            by_value: HashMap::new(),
            by_number: HashMap::new(),
            issued_kinds: Vec::new(),
            max_digits: 0,
            reserved: HashSet::new(),
            next_number: HashMap::new(),
            next_candidate: HashMap::new(),
            taken: HashSet::new(),
            conversation: String::new(),
            starts: [false; 256],
        };
        vault.reserve(conversation);
        vault
    }

    /// Replaces each span of `text` (non-overlapping, any order) by its token. The same value
    /// (exact string, same kind) always gets the same token across calls, so a conversation's turns
    /// stay consistent. Spans out of bounds, off char boundaries or overlapping an earlier one are
    /// skipped. `text` is reserved as well, in case the caller left it out of `conversation`.
    pub fn pseudonymize(&mut self, text: &str, spans: &[Span]) -> String {
        self.reserve(text);
        let mut spans: Vec<&Span> = spans.iter().filter(|s| s.start < s.end).collect();
        spans.sort_by_key(|s| (s.start, s.end));
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for span in spans {
            let (Some(before), Some(value)) =
                (text.get(copied..span.start), text.get(span.start..span.end))
            else {
                continue;
            };
            out.push_str(before);
            let entry = self.token_for(span.kind, value);
            out.push_str(&self.entries[entry].token);
            copied = span.end;
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn replacement(&self) -> Replacement {
        self.replacement
    }

    /// For the audit: (token sent to the cloud, kind) pairs in issue order, never values. The
    /// token is the placeholder, or in surrogate mode the (fictional) surrogate.
    pub fn placeholders(&self) -> Vec<(String, EntityKind)> {
        self.entries
            .iter()
            .map(|e| (e.token.clone(), e.kind))
            .collect()
    }

    /// Restores a whole answer in one left-to-right pass: issued placeholders (and their variants)
    /// or surrogates become the values again; everything else stays as it is.
    pub fn restore(&self, text: &str) -> String {
        self.restore_report(text).0
    }

    /// Like [`Vault::restore`], and also returns the tokens (as in [`Vault::placeholders`]) that
    /// were issued but not found in `text`, in issue order: the seek step looks for how the answer
    /// refers to those.
    pub fn restore_report(&self, text: &str) -> (String, Vec<String>) {
        let mut found = vec![false; self.entries.len()];
        let out = restore::restore_all(self, text, &mut found, restore::Escape::None);
        (out, self.missing(&found))
    }

    /// Restores OpenAI tool-call `arguments` (a JSON document in a string) so it stays valid JSON
    /// whatever the values contain (quotes, newlines, backslashes). Valid JSON keeps its bytes
    /// except the restored string literals (keys too); partial JSON gets the values JSON-escaped
    /// in place.
    pub fn restore_tool_arguments(&self, arguments: &str) -> String {
        self.restore_tool_arguments_report(arguments).0
    }

    /// Like [`Vault::restore_tool_arguments`], and also the tokens not found in `arguments` (as
    /// [`Vault::restore_report`] does for text).
    pub fn restore_tool_arguments_report(&self, arguments: &str) -> (String, Vec<String>) {
        let mut found = vec![false; self.entries.len()];
        let out = restore::tool_arguments(self, arguments, &mut found);
        (out, self.missing(&found))
    }

    /// The private value behind an issued token (as in [`Vault::placeholders`]), for the seek
    /// step, which restores paraphrased mentions itself.
    pub fn original(&self, token: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.token == token)
            .map(|e| e.value.as_str())
    }

    pub(crate) fn missing(&self, found: &[bool]) -> Vec<String> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !found.get(*i).copied().unwrap_or(false))
            .map(|(_, e)| e.token.clone())
            .collect()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn issued_kinds(&self) -> &[EntityKind] {
        &self.issued_kinds
    }

    pub(crate) fn max_digits(&self) -> usize {
        self.max_digits
    }

    pub(crate) fn can_start(&self, byte: u8) -> bool {
        self.starts[usize::from(byte.to_ascii_lowercase())]
    }

    /// The entry of the issued placeholder `kind` + `digits`, if any.
    pub(crate) fn placeholder(&self, kind: EntityKind, digits: &str) -> Option<usize> {
        self.by_number.get(&kind)?.get(digits).copied()
    }

    /// Reserves every placeholder number written in `text` in any form the restorer accepts
    /// (and more: no word boundaries), and remembers the text for surrogate collisions.
    fn reserve(&mut self, text: &str) {
        let bytes = text.as_bytes();
        for (pos, &b) in bytes.iter().enumerate() {
            if !b.is_ascii_alphabetic() || !text.is_char_boundary(pos) {
                continue;
            }
            let found = restore::match_core(
                &bytes[pos..],
                &EntityKind::ALL,
                true,
                MAX_RESERVED_DIGITS,
                true,
            );
            if let Core::Found { kind, digits, .. } = found {
                let number = text.get(pos + digits.start..pos + digits.end);
                if let Some(n) = number.and_then(|d| d.parse::<u64>().ok()) {
                    self.reserved.insert((kind, n));
                }
            }
        }
        if self.replacement == Replacement::Surrogate {
            self.conversation.push_str(&text.to_lowercase());
            // A separator, so that two texts' ends don't join into a false match.
            self.conversation.push('\u{0}');
        }
    }

    /// The entry for `value`, issuing a new token if it has none yet.
    fn token_for(&mut self, kind: EntityKind, value: &str) -> usize {
        let key = (kind, value.to_string());
        if let Some(&entry) = self.by_value.get(&key) {
            return entry;
        }
        let number = self.next_free_number(kind);
        let placeholder = format!("[{}_{}]", kind.as_str(), number);
        let surrogate = match self.replacement {
            Replacement::Placeholder => None,
            Replacement::Surrogate => self.next_surrogate(kind, value),
        };
        let entry = self.entries.len();
        match surrogate {
            Some(token) => self.push_surrogate(kind, value, token, true),
            // Placeholders are safe as surrogates of last resort: their numbers skip the reserved.
            None if self.replacement == Replacement::Surrogate => {
                self.push_surrogate(kind, value, placeholder, false)
            }
            None => self.push_placeholder(kind, value, placeholder, number),
        }
        self.by_value.insert(key, entry);
        entry
    }

    fn next_free_number(&mut self, kind: EntityKind) -> u64 {
        let next = self.next_number.entry(kind).or_insert(1);
        while self.reserved.contains(&(kind, *next)) {
            *next += 1;
        }
        let number = *next;
        *next += 1;
        number
    }

    /// The first candidate that occurs neither in the conversation nor among issued surrogates.
    fn next_surrogate(&mut self, kind: EntityKind, value: &str) -> Option<String> {
        for _ in 0..MAX_SURROGATE_TRIES {
            let counter = self.next_candidate.entry(kind).or_insert(0);
            let candidate = surrogates::candidate(kind, value, *counter);
            *counter += 1;
            let lower = candidate.to_lowercase();
            if !lower.is_empty()
                && !self.taken.contains(&lower)
                && !self.conversation.contains(&lower)
            {
                return Some(candidate);
            }
        }
        None
    }

    fn push_placeholder(&mut self, kind: EntityKind, value: &str, token: String, number: u64) {
        let digits = number.to_string();
        self.max_digits = self.max_digits.max(digits.len());
        self.by_number
            .entry(kind)
            .or_default()
            .insert(digits, self.entries.len());
        if !self.issued_kinds.contains(&kind) {
            self.issued_kinds.push(kind);
            self.mark_start(kind.as_str());
        }
        for open in ["[", "<", "("] {
            self.mark_start(open);
        }
        self.entries.push(Entry {
            token,
            kind,
            value: value.to_string(),
            case_insensitive: true,
        });
    }

    fn push_surrogate(&mut self, kind: EntityKind, value: &str, token: String, natural: bool) {
        self.taken.insert(token.to_lowercase());
        self.mark_start(&token);
        self.entries.push(Entry {
            token,
            kind,
            value: value.to_string(),
            case_insensitive: natural && surrogates::case_insensitive(kind),
        });
    }

    fn mark_start(&mut self, token: &str) {
        if let Some(&b) = token.as_bytes().first() {
            self.starts[usize::from(b.to_ascii_lowercase())] = true;
        }
    }
}

#[cfg(test)]
mod tests;
