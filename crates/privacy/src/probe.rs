//! A token-level classifier over the local model's hidden states: the model stage that finds
//! people, organizations, places and addresses in one forward pass over the text, with no
//! generation. Each token is classified from its own last hidden state and the next token's
//! (a causal model's state has only seen the left context; the next one has seen this token).
//! Softmax regression, trained by `tandem privacy train` on labelled text.

use serde::{Deserialize, Serialize};

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
    /// Feature standardization, per input dimension.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `[class][feature]` and per-class bias.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
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
#[derive(Debug, Clone, Copy)]
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
    /// Softmax regression by mini-batch Adam over standardized features. `examples` are
    /// (features, class index).
    pub fn train(
        features: &str,
        examples: &[(Vec<f32>, usize)],
        options: TrainOptions,
    ) -> Option<Self> {
        let dim = examples.first()?.0.len();
        let n_class = CLASSES.len();
        let (mean, scale) = standardization(examples, dim);
        let mut counts = vec![0usize; n_class];
        for (_, c) in examples {
            counts[(*c).min(n_class - 1)] += 1;
        }
        let class_weight: Vec<f32> = counts
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                let base = (examples.len() as f32 / (n_class as f32 * n.max(1) as f32)).sqrt();
                if c == 0 {
                    base
                } else {
                    base * options.entity_weight
                }
            })
            .collect();
        let mut probe = TokenProbe {
            features: features.to_string(),
            mean,
            scale,
            weights: vec![vec![0.0; dim]; n_class],
            bias: vec![0.0; n_class],
        };
        let mut adam = Adam::new(n_class, dim);
        let batch = 128;
        // A fixed shuffle (no RNG dependency): stride through the examples by a prime.
        let order: Vec<usize> = (0..examples.len())
            .map(|i| (i * 7919) % examples.len().max(1))
            .collect();
        let mut x = vec![0.0f32; dim];
        for _ in 0..options.epochs {
            for chunk in order.chunks(batch) {
                let mut grad_w = vec![vec![0.0f32; dim]; n_class];
                let mut grad_b = vec![0.0f32; n_class];
                for &i in chunk {
                    let (raw, class) = &examples[i];
                    probe.standardize_into(raw, &mut x);
                    let p = probe.softmax(&x);
                    let w = class_weight[*class];
                    for c in 0..n_class {
                        let g = w * (p[c] - f32::from(u8::from(c == *class)));
                        grad_b[c] += g;
                        for (gw, xv) in grad_w[c].iter_mut().zip(&x) {
                            *gw += g * xv;
                        }
                    }
                }
                let scale = 1.0 / chunk.len() as f32;
                for c in 0..n_class {
                    for (gw, w) in grad_w[c].iter_mut().zip(&probe.weights[c]) {
                        *gw = *gw * scale + options.l2 * w;
                    }
                    grad_b[c] *= scale;
                }
                adam.step(&mut probe, &grad_w, &grad_b, options.learning_rate);
            }
        }
        Some(probe)
    }

    fn standardize_into(&self, raw: &[f32], out: &mut [f32]) {
        for (((o, r), m), s) in out.iter_mut().zip(raw).zip(&self.mean).zip(&self.scale) {
            *o = (r - m) / s;
        }
    }

    fn softmax(&self, x: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| b + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>())
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.into_iter().map(|e| e / sum).collect()
    }

    /// Class probabilities of one token's raw features (wrong-sized features: all "none").
    pub fn probabilities(&self, raw: &[f32]) -> Vec<f32> {
        if raw.len() != self.mean.len() {
            let mut p = vec![0.0; CLASSES.len()];
            p[0] = 1.0;
            return p;
        }
        let mut x = vec![0.0; raw.len()];
        self.standardize_into(raw, &mut x);
        self.softmax(&x)
    }
}

fn standardization(examples: &[(Vec<f32>, usize)], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = examples.len().max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    for (x, _) in examples {
        for (m, v) in mean.iter_mut().zip(x) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; dim];
    for (x, _) in examples {
        for ((s, v), m) in var.iter_mut().zip(x).zip(&mean) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    let scale = var
        .iter()
        .map(|s| ((s / n).sqrt().max(1e-6)) as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

struct Adam {
    m_w: Vec<Vec<f32>>,
    v_w: Vec<Vec<f32>>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(n_class: usize, dim: usize) -> Self {
        Self {
            m_w: vec![vec![0.0; dim]; n_class],
            v_w: vec![vec![0.0; dim]; n_class],
            m_b: vec![0.0; n_class],
            v_b: vec![0.0; n_class],
            t: 0,
        }
    }

    fn step(&mut self, probe: &mut TokenProbe, grad_w: &[Vec<f32>], grad_b: &[f32], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let update = |p: &mut f32, g: f32, m: &mut f32, v: &mut f32| {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        };
        for (c, grads) in grad_w.iter().enumerate() {
            let params = probe.weights[c].iter_mut().zip(grads);
            let moments = self.m_w[c].iter_mut().zip(self.v_w[c].iter_mut());
            for ((p, g), (m, v)) in params.zip(moments) {
                update(p, *g, m, v);
            }
            update(
                &mut probe.bias[c],
                grad_b[c],
                &mut self.m_b[c],
                &mut self.v_b[c],
            );
        }
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

/// Spans from per-token class probabilities: a token belongs to an entity when its best class
/// is one and has at least `min_score`; neighbouring tokens of one class join (across the
/// whitespace between them), and the span's score is its tokens' mean probability.
pub fn spans_from_tokens(
    text: &str,
    ranges: &[(usize, usize)],
    probs: &[Vec<f32>],
    min_score: f32,
) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut scores: Vec<(f32, u32)> = Vec::new();
    for (&range, p) in ranges.iter().zip(probs) {
        let (best, score) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or((0, 0.0), |(i, s)| (i, *s));
        let Some(Some(kind)) = CLASSES.get(best) else {
            continue;
        };
        if score < min_score {
            continue;
        }
        let (start, end) = trim_range(text, range);
        if start >= end {
            continue;
        }
        let joins = spans.last().is_some_and(|last| {
            last.kind == *kind
                && text
                    .get(last.end..start)
                    .is_some_and(|gap| gap.trim().is_empty())
        });
        match (joins, spans.last_mut(), scores.last_mut()) {
            (true, Some(last), Some(acc)) => {
                last.end = end;
                acc.0 += score;
                acc.1 += 1;
            }
            _ => {
                spans.push(Span {
                    start,
                    end,
                    kind: *kind,
                    score,
                    source: Source::Model,
                });
                scores.push((score, 1));
            }
        }
    }
    for (span, (sum, n)) in spans.iter_mut().zip(scores) {
        span.score = sum / n as f32;
    }
    spans
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
