//! A token-level classifier over the local model's hidden states: the model stage that finds
//! people, organizations, places and addresses in one forward pass over the text, with no
//! generation. Each token is classified from its own last hidden state and the next token's
//! (a causal model's state has only seen the left context; the next one has seen this token).
//! Softmax regression, trained by `tandem privacy train` on labelled text.

use serde::{Deserialize, Serialize};
use tandem_core::linear::{FitOptions, SoftmaxRegression};

use crate::entity::{EntityKind, Source, Span};

/// The classes a token can take; index 0 is "not an entity".
pub const CLASSES: [Option<EntityKind>; 5] = [
    None,
    Some(EntityKind::Person),
    Some(EntityKind::Organization),
    Some(EntityKind::Location),
    Some(EntityKind::Address),
];

/// The class index of a kind, if the probe knows it.
pub fn class_of(kind: EntityKind) -> Option<usize> {
    CLASSES.iter().position(|c| *c == Some(kind))
}

/// A trained probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProbe {
    /// The model whose hidden states it reads (a GGUF id): another model's states mean nothing.
    pub features: String,
    /// Trained on the states of a second reading of the text (see `TokenEncoder::encode`).
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub model: SoftmaxRegression,
}

/// The features of token `i`: its state and the next token's (zeros after the last).
pub fn token_features(states: &[Vec<f32>], i: usize) -> Vec<f32> {
    let dim = states.first().map_or(0, Vec::len);
    let mut x = Vec::with_capacity(2 * dim);
    x.extend_from_slice(&states[i]);
    match states.get(i + 1) {
        Some(next) => x.extend_from_slice(next),
        None => x.extend(std::iter::repeat_n(0.0, dim)),
    }
    x
}

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    /// Entity classes weigh this many times more than their frequency alone would give
    /// (recall matters more than precision: a missed name leaks).
    pub entity_weight: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 40,
            learning_rate: 0.002,
            l2: 1e-4,
            entity_weight: 3.0,
        }
    }
}

impl TokenProbe {
    /// Softmax regression over standardized features. `examples` are (features, class index).
    pub fn train(
        features: &str,
        echo: bool,
        examples: &[(Vec<f32>, usize)],
        options: TrainOptions,
    ) -> Option<Self> {
        let n_class = CLASSES.len();
        let mut counts = vec![0usize; n_class];
        for (_, c) in examples {
            counts[(*c).min(n_class - 1)] += 1;
        }
        let class_weight: Vec<f32> = counts
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                // Square-root balancing: measured, full balancing (power 1) over-predicts
                // entities (precision 0.73 against 0.92 at the same recall).
                let base = (examples.len() as f32 / (n_class as f32 * n.max(1) as f32)).sqrt();
                if c == 0 {
                    base
                } else {
                    base * options.entity_weight
                }
            })
            .collect();
        let fit = FitOptions {
            epochs: options.epochs,
            learning_rate: options.learning_rate,
            l2: options.l2,
            batch: 128,
        };
        Some(TokenProbe {
            features: features.to_string(),
            echo,
            model: SoftmaxRegression::fit(examples, &class_weight, fit)?,
        })
    }

    /// Class probabilities of one token's raw features (wrong-sized features: all "none").
    pub fn probabilities(&self, raw: &[f32]) -> Vec<f32> {
        self.model.probabilities(raw).unwrap_or_else(|| {
            let mut p = vec![0.0; CLASSES.len()];
            p[0] = 1.0;
            p
        })
    }
}

/// The class of a token given labelled spans: the kind of the span that covers most of its
/// non-space bytes (0 when none does).
pub fn token_class(
    text: &str,
    range: (usize, usize),
    labelled: &[(usize, usize, EntityKind)],
) -> usize {
    let (start, end) = trim_range(text, range);
    if start >= end {
        return 0;
    }
    labelled
        .iter()
        .filter_map(|&(s, e, kind)| {
            let overlap = end.min(e).saturating_sub(start.max(s));
            (2 * overlap >= end - start && overlap > 0).then_some(class_of(kind)?)
        })
        .next()
        .unwrap_or(0)
}

/// A byte range without its leading and trailing whitespace.
fn trim_range(text: &str, (start, end): (usize, usize)) -> (usize, usize) {
    let Some(slice) = text.get(start..end) else {
        return (start, start);
    };
    let lead = slice.len() - slice.trim_start().len();
    let trimmed = slice.trim();
    (start + lead, start + lead + trimmed.len())
}

/// One word of the text: tokens with no whitespace between them, and their mean class
/// probabilities (a word is one decision: "Paxata" must not come out as three kinds).
struct Word {
    start: usize,
    end: usize,
    probs: Vec<f32>,
}

fn words(text: &str, ranges: &[(usize, usize)], probs: &[Vec<f32>]) -> Vec<Word> {
    let mut words: Vec<(Word, usize)> = Vec::new();
    let mut glue = false;
    for (&range, p) in ranges.iter().zip(probs) {
        let (start, end) = trim_range(text, range);
        let piece = text.get(start..end).unwrap_or("");
        // Punctuation is a separator, never part of a word: "Assen:" is the word "Assen".
        if !piece.chars().any(char::is_alphanumeric) {
            glue = false;
            continue;
        }
        let glued = glue && words.last().is_some_and(|(w, _)| w.end == start);
        glue = true;
        match words.last_mut() {
            Some((word, n)) if glued => {
                word.end = end;
                for (acc, v) in word.probs.iter_mut().zip(p) {
                    *acc += v;
                }
                *n += 1;
            }
            _ => words.push((
                Word {
                    start,
                    end,
                    probs: p.clone(),
                },
                1,
            )),
        }
    }
    words
        .into_iter()
        .map(|(mut w, n)| {
            w.probs.iter_mut().for_each(|v| *v /= n as f32);
            w
        })
        .collect()
}

/// The most likely entity class of a probability vector (never "none").
fn best_entity(probs: &[f32]) -> usize {
    probs
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(1, |(i, _)| i)
}

/// Spans from per-token class probabilities. Tokens make words; a word is part of an entity
/// when its probability of being one (1 − P(none)) reaches `min_score` — recall first: a missed
/// name leaks. Entity words next to each other join: on one line whatever their kinds ("Johnson
/// Inc."), across a line break only when of one kind (a name above its address stays two
/// spans). A span's kind is the entity class with the most probability over its words, its
/// score their mean entity probability.
pub fn spans_from_tokens(
    text: &str,
    ranges: &[(usize, usize)],
    probs: &[Vec<f32>],
    min_score: f32,
) -> Vec<Span> {
    struct Open {
        start: usize,
        end: usize,
        sums: Vec<f32>,
        words: u32,
    }
    let mut open: Vec<Open> = Vec::new();
    for word in words(text, ranges, probs) {
        let entity = 1.0 - word.probs.first().copied().unwrap_or(1.0);
        if entity < min_score {
            continue;
        }
        let joins = open.last().is_some_and(|last| {
            let gap = text.get(last.end..word.start).unwrap_or("x");
            let same_kind = best_entity(&last.sums) == best_entity(&word.probs);
            // Words of one kind join across line breaks and the punctuation inside names and
            // addresses ("Weeks-Rivas", "Apt. 864,"); words of different kinds only across
            // spaces ("Johnson Inc"), so a list "Demystdata, Reed Elsevier" stays two.
            let inner_punctuation = gap
                .chars()
                .all(|c| c.is_whitespace() || ",.-'&/#".contains(c));
            (same_kind && inner_punctuation) || (!gap.is_empty() && gap.chars().all(|c| c == ' '))
        });
        match open.last_mut() {
            Some(last) if joins => {
                last.end = word.end;
                for (acc, v) in last.sums.iter_mut().zip(&word.probs) {
                    *acc += v;
                }
                last.words += 1;
            }
            _ => open.push(Open {
                start: word.start,
                end: word.end,
                sums: word.probs.clone(),
                words: 1,
            }),
        }
    }
    open.into_iter()
        .filter_map(|o| {
            let kind = CLASSES.get(best_entity(&o.sums)).copied().flatten()?;
            let none = o.sums.first().copied().unwrap_or(0.0);
            Some(Span {
                start: o.start,
                end: o.end,
                kind,
                score: 1.0 - none / o.words as f32,
                source: Source::Model,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_classes_follow_the_covering_span() {
        let text = "Hi Sara Schwarz, bye";
        let labelled = [(3, 15, EntityKind::Person)];
        assert_eq!(token_class(text, (0, 2), &labelled), 0);
        assert_eq!(
            token_class(text, (2, 7), &labelled),
            class_of(EntityKind::Person).unwrap_or(9)
        );
        assert_eq!(token_class(text, (15, 16), &labelled), 0);
    }

    #[test]
    fn a_word_split_into_tokens_is_one_decision_and_one_line_joins_kinds() {
        let text = "at Paxata Inc\nin Oslo";
        // "Pax" + "ata" (one word, two tokens) + " Inc", newline, " in", " Oslo".
        let ranges = [(0, 2), (2, 6), (6, 9), (9, 13), (13, 16), (16, 21)];
        let none = vec![0.9, 0.05, 0.02, 0.02, 0.01];
        let org = vec![0.1, 0.1, 0.7, 0.05, 0.05];
        let person = vec![0.2, 0.5, 0.2, 0.05, 0.05];
        let place = vec![0.2, 0.0, 0.0, 0.7, 0.1];
        let probs = vec![none.clone(), org.clone(), person, org, none, place];
        let spans = spans_from_tokens(text, &ranges, &probs, 0.5);
        let found: Vec<(&str, EntityKind)> = spans
            .iter()
            .map(|s| (&text[s.start..s.end], s.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("Paxata Inc", EntityKind::Organization),
                ("Oslo", EntityKind::Location)
            ]
        );
    }

    #[test]
    fn neighbouring_tokens_of_one_class_join_into_one_span() {
        let text = "Hi Sara Schwarz in Oslo";
        let ranges = [(0, 2), (2, 7), (7, 15), (15, 18), (18, 23)];
        let person = vec![0.1, 0.8, 0.05, 0.03, 0.02];
        let none = vec![0.9, 0.05, 0.02, 0.02, 0.01];
        let place = vec![0.2, 0.0, 0.0, 0.7, 0.1];
        let probs = vec![none.clone(), person.clone(), person, none, place];
        let spans = spans_from_tokens(text, &ranges, &probs, 0.5);
        let found: Vec<(&str, EntityKind)> = spans
            .iter()
            .map(|s| (&text[s.start..s.end], s.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("Sara Schwarz", EntityKind::Person),
                ("Oslo", EntityKind::Location)
            ]
        );
    }

    #[test]
    fn a_probe_learns_a_separable_toy_problem() {
        // Class = which of the first five coordinates is largest.
        let examples: Vec<(Vec<f32>, usize)> = (0..500)
            .map(|i| {
                let class = i % 5;
                let mut x = vec![0.0f32; 6];
                x[class] = 1.0 + (i % 7) as f32 * 0.1;
                x[5] = (i % 3) as f32;
                (x, class)
            })
            .collect();
        let probe = TokenProbe::train(
            "toy",
            false,
            &examples,
            TrainOptions {
                epochs: 30,
                learning_rate: 0.05,
                ..TrainOptions::default()
            },
        )
        .unwrap_or_else(|| panic!("no probe"));
        let right = examples
            .iter()
            .filter(|(x, c)| {
                let p = probe.probabilities(x);
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    == Some(*c)
            })
            .count();
        assert!(right >= 495, "{right}/500");
    }
}
