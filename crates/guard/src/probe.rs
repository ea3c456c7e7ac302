//! The model stage of the screen: softmax regression over the small model's mean-pooled hidden
//! state of a bounded window of the prompt (its first and last tokens). One forward pass, no
//! generation; the window bounds its cost on long jailbreaks. Trained by `tandem guard train`.

use serde::{Deserialize, Serialize};
use tandem_core::linear::{FitOptions, SoftmaxRegression};

use crate::lexical::N_CLASS;

/// Reads a text with a local model and returns the features the probe was trained on. The
/// engine lives outside this crate; the CLI implements it.
pub trait PromptEncoder: Send + Sync {
    /// The model's id (a GGUF file stem): a probe only fits the states it was trained on.
    fn id(&self) -> String;
    /// The mean-pooled last hidden state of the window of `text` (`head` first tokens and
    /// `tail` last ones; the whole text when shorter).
    fn embed(&self, text: &str, head: usize, tail: usize) -> Result<Vec<f32>, String>;
}

/// A trained probe and the window it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafetyProbe {
    /// The model whose hidden states it reads.
    pub features: String,
    pub head: usize,
    pub tail: usize,
    #[serde(flatten)]
    pub model: SoftmaxRegression,
}

impl SafetyProbe {
    /// Fit on (embedding, class index), classes balanced; `l2` as chosen on held-out items.
    pub fn train(
        features: &str,
        (head, tail): (usize, usize),
        examples: &[(Vec<f32>, usize)],
        l2: f32,
    ) -> Option<Self> {
        let mut counts = [0usize; N_CLASS];
        for (_, c) in examples {
            *counts.get_mut(*c)? += 1;
        }
        let n = examples.len() as f32;
        let class_weight: Vec<f32> = counts
            .iter()
            .map(|&c| n / (N_CLASS as f32 * c.max(1) as f32))
            .collect();
        let options = FitOptions {
            epochs: 60,
            learning_rate: 0.003,
            l2,
            batch: 64,
        };
        Some(Self {
            features: features.to_string(),
            head,
            tail,
            model: SoftmaxRegression::fit(examples, &class_weight, options)?,
        })
    }

    /// Probability per class of an embedding; `None` when its size is not the probe's.
    pub fn classify(&self, embedding: &[f32]) -> Option<[f32; N_CLASS]> {
        let p = self.model.probabilities(embedding)?;
        Some([p[0], p[1], p[2]])
    }
}
