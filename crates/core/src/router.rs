//! A trained router: logistic regression from a prompt's features (e.g. the SLM's mean-pooled
//! hidden state) to the probability that the small model gets the request wrong. The higher the
//! score, the sooner the request goes to the large model. Stored as JSON.

use serde::{Deserialize, Serialize};

/// A fitted router. Features are standardized with the training set's mean and spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRouter {
    /// What produced the features (e.g. the embedding model's id): scoring must use the same.
    pub features: String,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
}

/// How to fit.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub epochs: u32,
    pub learning_rate: f32,
    /// L2 penalty on the weights: hidden states have many more dimensions than there are
    /// training items, so an unpenalized fit memorizes them.
    pub l2: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 300,
            learning_rate: 0.1,
            l2: 0.05,
        }
    }
}

impl LogisticRouter {
    /// Fit on `rows` (one feature vector each) with labels `small_wrong` by full-batch gradient
    /// descent on the penalized log-loss. Returns `None` when there is nothing to learn from
    /// (no rows, ragged rows, or a single class).
    pub fn train(
        features: &str,
        rows: &[Vec<f32>],
        small_wrong: &[bool],
        options: TrainOptions,
    ) -> Option<Self> {
        let n = rows.len().min(small_wrong.len());
        let dim = rows.first()?.len();
        let positives = small_wrong[..n].iter().filter(|&&y| y).count();
        if n == 0 || dim == 0 || positives == 0 || positives == n {
            return None;
        }
        if rows[..n].iter().any(|r| r.len() != dim) {
            return None;
        }
        let mut mean = vec![0.0f32; dim];
        for r in &rows[..n] {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x / n as f32;
            }
        }
        let mut scale = vec![0.0f32; dim];
        for r in &rows[..n] {
            for ((s, x), m) in scale.iter_mut().zip(r).zip(&mean) {
                *s += (x - m) * (x - m) / n as f32;
            }
        }
        for s in &mut scale {
            *s = s.sqrt().max(1e-6);
        }
        let mut router = Self {
            features: features.to_string(),
            mean,
            scale,
            weights: vec![0.0; dim],
            // Start at the base rate.
            bias: (positives as f32 / (n - positives) as f32).ln(),
        };
        let standardized: Vec<Vec<f32>> = rows[..n].iter().map(|r| router.standardize(r)).collect();
        for _ in 0..options.epochs {
            let mut grad = vec![0.0f32; dim];
            let mut grad_bias = 0.0f32;
            for (x, &y) in standardized.iter().zip(small_wrong) {
                let err = sigmoid(router.logit_standardized(x)) - f32::from(u8::from(y));
                for (g, xi) in grad.iter_mut().zip(x) {
                    *g += err * xi / n as f32;
                }
                grad_bias += err / n as f32;
            }
            for (w, g) in router.weights.iter_mut().zip(&grad) {
                *w -= options.learning_rate * (g + options.l2 * *w);
            }
            router.bias -= options.learning_rate * grad_bias;
        }
        Some(router)
    }

    /// Probability that the small model gets this request wrong (0 when the features don't fit).
    pub fn score(&self, features: &[f32]) -> f64 {
        if features.len() != self.weights.len() {
            return 0.0;
        }
        f64::from(sigmoid(
            self.logit_standardized(&self.standardize(features)),
        ))
    }

    fn standardize(&self, x: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }

    fn logit_standardized(&self, x: &[f32]) -> f32 {
        self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_rule_and_round_trips_as_json() {
        // The small model fails when feature 1 is large; feature 0 is noise.
        let rows: Vec<Vec<f32>> = (0..100)
            .map(|i| vec![((i * 37) % 11) as f32, (i % 10) as f32 * 3.0])
            .collect();
        let labels: Vec<bool> = rows.iter().map(|r| r[1] > 13.0).collect();
        let router = LogisticRouter::train("test", &rows, &labels, TrainOptions::default())
            .unwrap_or_else(|| panic!("should train"));
        let correct = rows
            .iter()
            .zip(&labels)
            .filter(|(r, &y)| (router.score(r) > 0.5) == y)
            .count();
        assert!(correct >= 95, "{correct}/100");
        let json = serde_json::to_string(&router).unwrap_or_default();
        let back: LogisticRouter = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.score(&[0.0, 27.0]), router.score(&[0.0, 27.0]));
        assert_eq!(router.score(&[1.0]), 0.0, "wrong dimension scores 0");
    }

    #[test]
    fn one_class_is_nothing_to_learn() {
        let rows = vec![vec![1.0], vec![2.0]];
        assert!(
            LogisticRouter::train("t", &rows, &[true, true], TrainOptions::default()).is_none()
        );
        assert!(LogisticRouter::train("t", &[], &[], TrainOptions::default()).is_none());
    }
}
