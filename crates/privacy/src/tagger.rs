//! The model stage of detection: the local model lists the names, organizations, places and
//! addresses in a text, one `KIND: exact text` line each, and every listed string is located in
//! the text. Only strings that occur in the text become spans, so whatever the model invents is
//! dropped: the output is constrained to substrings of the input after the fact. A span's score
//! is the model's probability for its line (the geometric mean over the line's tokens).

use std::sync::Arc;

use futures::future::BoxFuture;
use tandem_core::{ChatModel, ChatRequest, Message, ModelError, SamplingParams, TokenLogprob};

use crate::entity::{EntityKind, Source, Span};

/// Finds the entities rules cannot: people, organizations, places, addresses.
pub trait EntityTagger: Send + Sync {
    fn tag(&self, text: &str) -> BoxFuture<'static, Result<Vec<Span>, ModelError>>;
}

/// The local chat model as a tagger, prompted with a fixed instruction and a few examples (a
/// fixed prefix, so the engine reuses its KV cache from one request to the next).
pub struct ModelTagger {
    model: Arc<dyn ChatModel>,
    name: String,
}

const INSTRUCTION: &str = "You find private details in a text: names of people, organizations, \
places (cities, regions, countries) and street addresses. For each one, write one line \
`KIND: text`, KIND being PERSON, ORGANIZATION, LOCATION or ADDRESS, and text copied exactly \
as it appears. Write NONE when there are none.";

/// Invented examples (never the eval data): one of each kind, a text with none, a dialogue.
const EXAMPLES: [(&str, &str); 4] = [
    (
        "Please send the contract to Maria Gonzalez at Brightwave Analytics, 412 Elm Street, \
         Portland, Oregon.",
        "PERSON: Maria Gonzalez\nORGANIZATION: Brightwave Analytics\nADDRESS: 412 Elm Street\n\
         LOCATION: Portland\nLOCATION: Oregon",
    ),
    ("How do I reverse a list in Python?", "NONE"),
    (
        "Kenji: Did Olga call you back from Nordvik Shipping?\nAmira: Not yet.",
        "PERSON: Kenji\nPERSON: Olga\nORGANIZATION: Nordvik Shipping\nPERSON: Amira",
    ),
    (
        "Ship it to Flat 3, 17 Rue Lepic\n75018 Paris\nFrance. Thanks, Dr. Lindqvist",
        "ADDRESS: Flat 3, 17 Rue Lepic\nADDRESS: 75018\nLOCATION: Paris\nLOCATION: France\n\
         PERSON: Lindqvist",
    ),
];

impl ModelTagger {
    /// `name` is how the model is addressed in requests (its configured name).
    pub fn new(name: impl Into<String>, model: Arc<dyn ChatModel>) -> Self {
        Self {
            model,
            name: name.into(),
        }
    }

    fn request(&self, text: &str) -> ChatRequest {
        let mut messages = vec![Message::system(INSTRUCTION)];
        for (input, output) in EXAMPLES {
            messages.push(Message::user(input));
            messages.push(Message::assistant(output));
        }
        messages.push(Message::user(text));
        let mut request = ChatRequest::new(self.name.clone(), messages);
        // Every entity costs a line of ~6 tokens; a text rarely holds more than one per 12 bytes.
        let budget = (24 + text.len() / 2).min(1024) as u32;
        request.params = SamplingParams {
            logprobs: true,
            stop: vec!["\n\n".into()],
            ..SamplingParams::greedy(budget)
        };
        request
    }
}

impl EntityTagger for ModelTagger {
    fn tag(&self, text: &str) -> BoxFuture<'static, Result<Vec<Span>, ModelError>> {
        let request = self.request(text);
        let model = self.model.clone();
        let text = text.to_string();
        Box::pin(async move {
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            let answer = model.complete(request).await?;
            let lines = scored_lines(&answer.text, answer.logprobs.as_deref().unwrap_or(&[]));
            Ok(locate(&text, &lines))
        })
    }
}

/// One `KIND: value` line of the model's answer with its probability.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    kind: EntityKind,
    value: String,
    score: f32,
}

/// The answer's lines, each scored by the geometric mean probability of its tokens.
fn scored_lines(answer: &str, logprobs: &[TokenLogprob]) -> Vec<Listed> {
    // Map every byte of the answer to the logprob of the token that wrote it.
    let mut byte_logprob = Vec::with_capacity(answer.len());
    for lp in logprobs {
        byte_logprob.extend(std::iter::repeat_n(lp.logprob, lp.bytes.len()));
    }
    let mut out = Vec::new();
    let mut offset = 0;
    for line in answer.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let Some((kind, value)) = parse_line(line) else {
            continue;
        };
        let span = &byte_logprob[start.min(byte_logprob.len())..offset.min(byte_logprob.len())];
        // Bytes of one token share its logprob; weigh each token once per byte it wrote, which
        // keeps the mean over the line's own text.
        let score = if span.is_empty() {
            0.5
        } else {
            (span.iter().map(|&l| f64::from(l)).sum::<f64>() / span.len() as f64).exp() as f32
        };
        out.push(Listed { kind, value, score });
    }
    out
}

fn parse_line(line: &str) -> Option<(EntityKind, String)> {
    let (kind, value) = line.trim().split_once(':')?;
    let kind = match kind
        .trim()
        .trim_matches(['-', '*', ' '])
        .to_ascii_uppercase()
        .as_str()
    {
        "PERSON" | "NAME" => EntityKind::Person,
        "ORGANIZATION" | "ORGANISATION" | "ORG" | "COMPANY" => EntityKind::Organization,
        "LOCATION" | "PLACE" | "CITY" | "COUNTRY" | "GPE" => EntityKind::Location,
        "ADDRESS" | "STREET_ADDRESS" => EntityKind::Address,
        _ => return None,
    };
    let value = value.trim().trim_matches(['`', '"']).trim();
    (!value.is_empty() && value != "NONE").then(|| (kind, value.to_string()))
}

/// Spans of every occurrence of each listed value (exact, else ASCII-case-insensitive; an
/// address may also have been listed with its line breaks turned into spaces).
fn locate(text: &str, listed: &[Listed]) -> Vec<Span> {
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    for item in listed {
        let mut found = occurrences(text, &item.value);
        if found.is_empty() {
            found = occurrences(&lower, &item.value.to_ascii_lowercase());
        }
        if found.is_empty() {
            found = flexible_whitespace(text, &item.value);
        }
        spans.extend(found.into_iter().map(|(start, end)| Span {
            start,
            end,
            kind: item.kind,
            score: item.score,
            source: Source::Model,
        }));
    }
    spans
}

/// Byte ranges of `needle` in `haystack`, at word boundaries (so "Ann" is not found in "Annual").
fn occurrences(haystack: &str, needle: &str) -> Vec<(usize, usize)> {
    if needle.is_empty() {
        return Vec::new();
    }
    haystack
        .match_indices(needle)
        .map(|(start, m)| (start, start + m.len()))
        .filter(|&(start, end)| at_word_boundary(haystack, start, end))
        .collect()
}

fn at_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// Where `value`'s words occur in order separated by any whitespace and punctuation the model
/// may have normalized (`"Koskikatu 25 Apt. 864 Artilleros"` for a text with line breaks).
fn flexible_whitespace(text: &str, value: &str) -> Vec<(usize, usize)> {
    let words: Vec<String> = value.split_whitespace().map(regex::escape).collect();
    if words.len() < 2 {
        return Vec::new();
    }
    let pattern = format!(r"(?i){}", words.join(r"[\s,]+"));
    match regex::Regex::new(&pattern) {
        Ok(re) => re
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .filter(|&(s, e)| at_word_boundary(text, s, e))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(token: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            bytes: token.as_bytes().to_vec(),
            logprob,
            top_logprobs: vec![],
        }
    }

    #[test]
    fn lines_are_parsed_and_scored_per_line() {
        let answer = "PERSON: Ann\nORG: Acme\nNONE";
        let logprobs = [
            lp("PERSON", 0.0),
            lp(": Ann", 0.0),
            lp("\n", 0.0),
            lp("ORG", -1.0),
            lp(": Acme", -1.0),
            lp("\nNONE", 0.0),
        ];
        let lines = scored_lines(answer, &logprobs);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].kind, lines[0].value.as_str()),
            (EntityKind::Person, "Ann")
        );
        assert!((lines[0].score - 1.0).abs() < 1e-6);
        assert_eq!(lines[1].kind, EntityKind::Organization);
        assert!(lines[1].score < 0.5);
    }

    #[test]
    fn values_are_located_at_word_boundaries_and_inventions_dropped() {
        let text = "Annual report by Ann for ACME Corp in Paris.\nAnn agreed.";
        let listed = [
            Listed {
                kind: EntityKind::Person,
                value: "Ann".into(),
                score: 0.9,
            },
            Listed {
                kind: EntityKind::Organization,
                value: "Acme Corp".into(),
                score: 0.8,
            },
            Listed {
                kind: EntityKind::Person,
                value: "Bob".into(),
                score: 0.9,
            },
        ];
        let spans = locate(text, &listed);
        let found: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(found, vec!["Ann", "Ann", "ACME Corp"]);
    }

    #[test]
    fn an_address_listed_on_one_line_is_found_across_line_breaks() {
        let text = "Ship to 6750 Koskikatu 25 Apt. 864\nArtilleros, CO please";
        let spans = flexible_whitespace(text, "6750 Koskikatu 25 Apt. 864 Artilleros");
        assert_eq!(spans.len(), 1);
        assert_eq!(
            &text[spans[0].0..spans[0].1],
            "6750 Koskikatu 25 Apt. 864\nArtilleros"
        );
    }
}
