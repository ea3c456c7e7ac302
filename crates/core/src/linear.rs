//! Softmax regression over dense features: the trained classifiers that read the small model's
//! hidden states (the privacy token probe, the safety probe). Features are standardized with
//! the training set's mean and spread; fitted by mini-batch Adam with an L2 penalty.

use serde::{Deserialize, Serialize};

/// A fitted multinomial logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxRegression {
    /// Feature standardization, per input dimension.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `[class][feature]` and per-class bias.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub batch: usize,
}

impl SoftmaxRegression {
    /// Fit on `examples` (features, class index below `class_weight.len()`); each example's loss
    /// weighs `class_weight[class]`. `None` when there is nothing to fit.
    pub fn fit(
        examples: &[(Vec<f32>, usize)],
        class_weight: &[f32],
        options: FitOptions,
    ) -> Option<Self> {
        let dim = examples.first()?.0.len();
        let n_class = class_weight.len();
        if dim == 0
            || n_class < 2
            || examples
                .iter()
                .any(|(x, c)| x.len() != dim || *c >= n_class)
        {
            return None;
        }
        let (mean, scale) = standardization(examples, dim);
        let mut model = SoftmaxRegression {
            mean,
            scale,
            weights: vec![vec![0.0; dim]; n_class],
            bias: vec![0.0; n_class],
        };
        let mut adam = Adam::new(n_class, dim);
        // A fixed shuffle (no RNG dependency): stride through the examples by a prime.
        let order: Vec<usize> = (0..examples.len())
            .map(|i| (i * 7919) % examples.len())
            .collect();
        let mut x = vec![0.0f32; dim];
        for _ in 0..options.epochs {
            for chunk in order.chunks(options.batch.max(1)) {
                let mut grad_w = vec![vec![0.0f32; dim]; n_class];
                let mut grad_b = vec![0.0f32; n_class];
                for &i in chunk {
                    let (raw, class) = &examples[i];
                    model.standardize_into(raw, &mut x);
                    let p = model.softmax(&x);
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
                    for (gw, w) in grad_w[c].iter_mut().zip(&model.weights[c]) {
                        *gw = *gw * scale + options.l2 * w;
                    }
                    grad_b[c] *= scale;
                }
                adam.step(&mut model, &grad_w, &grad_b, options.learning_rate);
            }
        }
        Some(model)
    }

    /// Number of input features.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Class probabilities of raw features; `None` when their size is not the model's.
    pub fn probabilities(&self, raw: &[f32]) -> Option<Vec<f32>> {
        if raw.len() != self.mean.len() {
            return None;
        }
        let mut x = vec![0.0; raw.len()];
        self.standardize_into(raw, &mut x);
        Some(self.softmax(&x))
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
        softmax(&logits)
    }
}

/// Probabilities from logits (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
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

    fn step(
        &mut self,
        model: &mut SoftmaxRegression,
        grad_w: &[Vec<f32>],
        grad_b: &[f32],
        lr: f32,
    ) {
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
            let params = model.weights[c].iter_mut().zip(grads);
            let moments = self.m_w[c].iter_mut().zip(self.v_w[c].iter_mut());
            for ((p, g), (m, v)) in params.zip(moments) {
                update(p, *g, m, v);
            }
            update(
                &mut model.bias[c],
                grad_b[c],
                &mut self.m_b[c],
                &mut self.v_b[c],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_three_classes_and_refuses_ragged_input() {
        // Class = which of the two features is large (or neither).
        let examples: Vec<(Vec<f32>, usize)> = (0..300)
            .map(|i| {
                let class = i % 3;
                let noise = ((i * 37) % 11) as f32 / 11.0;
                let x = match class {
                    0 => vec![noise, noise],
                    1 => vec![3.0 + noise, noise],
                    _ => vec![noise, 3.0 + noise],
                };
                (x, class)
            })
            .collect();
        let options = FitOptions {
            epochs: 30,
            learning_rate: 0.05,
            l2: 1e-4,
            batch: 32,
        };
        let model = SoftmaxRegression::fit(&examples, &[1.0; 3], options)
            .unwrap_or_else(|| panic!("should fit"));
        let correct = examples
            .iter()
            .filter(|(x, c)| {
                let p = model.probabilities(x).unwrap_or_default();
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    == Some(*c)
            })
            .count();
        assert!(correct >= 290, "{correct}/300");
        assert_eq!(model.probabilities(&[1.0]), None);
        let ragged = vec![(vec![1.0, 2.0], 0), (vec![1.0], 1)];
        assert!(SoftmaxRegression::fit(&ragged, &[1.0; 2], options).is_none());
    }
}
