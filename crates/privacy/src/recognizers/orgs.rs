//! Organization names with a shape of their own: capitalized words ending in a legal or
//! corporate suffix ("Civic Impulse LLC", "Abt Associates"). The probe reads such names as people
//! or places often enough to miss them as organizations; the suffix settles them. (Partnership
//! names, "Hawkins, Richardson and Santana", were tried and dropped: the same shape is a list of
//! people — "Kevin, Brittany and Terri" — and person recall fell from 0.96 to 0.91.)

use regex::Regex;

use super::{compile, rule_span, EntityKind, Span};

pub(super) struct Orgs {
    /// The suffixes alone: a literal search, so text without one costs almost nothing.
    suffix: Regex,
    suffixed: Regex,
}

const SUFFIXES: &str =
    "Inc|LLC|Ltd|Corp|Corporation|Group|PLC|GmbH|Holdings|Associates|Partners|Solutions|Technologies";

impl Orgs {
    pub(super) fn new() -> Self {
        Orgs {
            suffix: compile(SUFFIXES),
            // Up to three capitalized words before the suffix; the suffix itself is
            // case-sensitive so "inc" or "group" in running text stay words.
            suffixed: compile(
                r"\b(?:[A-Z][\p{L}\p{N}&'.-]*\s+){1,3}(?:Inc\.?|LLC|Ltd\.?|Corp\.?|Corporation|Group|PLC|GmbH|Holdings|Associates|Partners|Solutions|Technologies)(?:\b|$)",
            ),
        }
    }

    pub(super) fn find(&self, text: &str, out: &mut Vec<Span>) {
        if !self.suffix.is_match(text) {
            return;
        }
        for m in self.suffixed.find_iter(text) {
            // A sentence's first word is capitalized anyway: "The Group met" is no name.
            let start = skip_function_words(text, m.start(), m.end());
            if start < m.end() && text[start..m.end()].contains(' ') {
                out.push(rule_span(start, m.end(), EntityKind::Organization, 0.9));
            }
        }
    }
}

/// Capitalized words that start sentences but never names.
const FUNCTION_WORDS: &[&str] = &[
    "The", "A", "An", "Our", "Your", "My", "Their", "His", "Her", "Its", "This", "That", "These",
    "Those", "Each", "Every", "Any", "Some", "No", "At", "In", "On", "For", "From", "With", "By",
    "To", "Of", "And", "Or", "But", "If", "When", "Dear", "Hi", "Hello",
];

fn skip_function_words(text: &str, mut start: usize, end: usize) -> usize {
    loop {
        let rest = &text[start..end];
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if FUNCTION_WORDS.contains(&&rest[..word_len]) && word_len < rest.len() {
            let after = &rest[word_len..];
            start += word_len + (after.len() - after.trim_start().len());
        } else {
            return start;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Orgs::new().find(text, &mut out);
        out.iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn suffixed_names_are_found() {
        assert_eq!(
            found("Invoice from Civic Impulse LLC, due Monday."),
            ["Civic Impulse LLC"]
        );
        assert_eq!(
            found("The Allstate Insurance Group called."),
            ["Allstate Insurance Group"]
        );
        assert_eq!(
            found("She joined Abt Associates in May"),
            ["Abt Associates"]
        );
    }

    #[test]
    fn ordinary_words_are_not_organizations() {
        assert!(found("The group met at noon, inc. the new members.").is_empty());
        assert!(found("The Group met at noon.").is_empty());
        assert!(found("Kevin, Brittany and Terri came along.").is_empty());
        assert!(found("Group").is_empty());
    }
}
